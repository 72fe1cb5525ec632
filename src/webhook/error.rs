//! Why a delivery did not succeed.

/// The outcome classes of SPEC §4, plus the breaker's refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The consumer refused this message for good (`400`, `406`, `410`,
    /// `413`, `415`, `422`), with the first line of its `text/plain` reason.
    #[error("webhook rejected the message with {status}")]
    Rejected { status: u16, reason: Option<String> },
    /// Any other non-2xx status: temporary.
    #[error("webhook answered {0}")]
    Status(u16),
    #[error("webhook attempt timed out")]
    Timeout,
    #[error("webhook unreachable: {0}")]
    Transport(String),
    /// The breaker is open: no request was made.
    #[error("circuit breaker open")]
    BreakerOpen,
}

impl DeliveryError {
    /// Worth another attempt (and a `451` if attempts run out).
    pub fn is_temporary(&self) -> bool {
        !matches!(self, Self::Rejected { .. })
    }
}
