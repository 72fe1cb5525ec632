//! Why a webhook delivery did not succeed.

use std::time::Duration;

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
    /// Any other non-2xx status: temporary. `retry_after` is the wait a
    /// `429` or `503` asked for with `Retry-After` (capped), if any.
    #[error("webhook answered {status}{}", after(*.retry_after))]
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
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
    /// A temporary failure with `status` and no `Retry-After`.
    pub const fn status(status: u16) -> Self {
        Self::Status {
            status,
            retry_after: None,
        }
    }

    /// Worth another attempt (and a `451` if attempts run out).
    pub fn is_temporary(&self) -> bool {
        !matches!(self, Self::Rejected { .. })
    }

    /// The consumer is up and asks to slow down (`429`): for the circuit
    /// breaker this is no failure (`docs/webhook.md`).
    pub fn is_throttled(&self) -> bool {
        matches!(self, Self::Status { status: 429, .. })
    }

    /// The wait the consumer asked for with `Retry-After`: no attempt is
    /// made before it is over.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// ` (Retry-After 30 s)`, or nothing.
fn after(retry_after: Option<Duration>) -> String {
    retry_after
        .map(|wait| format!(" (Retry-After {} s)", wait.as_secs()))
        .unwrap_or_default()
}
