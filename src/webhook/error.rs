//! Why a webhook delivery did not succeed.

use tower::BoxError;

/// The outcome classes of the webhook contract (`docs/webhook.md`), plus
/// the breaker's refusal. Transport failures keep their cause as the source
/// (never the URL: it may hold a token).
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The consumer refused this message for good (`400`, `406`, `410`,
    /// `413`, `415`, `422`), with the first line of its `text/plain` reason.
    #[error("webhook rejected the message with {status}")]
    Rejected { status: u16, reason: Option<String> },
    /// Any other non-2xx status: temporary.
    #[error("webhook answered {0}")]
    Status(u16),
    #[error("webhook attempt timed out")]
    Timeout,
    /// No connection could be made (refused, DNS, TLS handshake).
    #[error("cannot connect to the webhook")]
    Connect(#[source] BoxError),
    /// The request failed once connected.
    #[error("webhook request failed")]
    Transport(#[source] BoxError),
    /// The breaker is open: no request was made.
    #[error("circuit breaker open")]
    BreakerOpen,
}

impl WebhookError {
    /// Worth another attempt (and a `451` if attempts run out).
    pub fn is_temporary(&self) -> bool {
        !matches!(self, Self::Rejected { .. })
    }
}
