//! Response classification (`docs/webhook.md`): every response or error
//! becomes delivered, rejected (permanent) or a temporary failure.

use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use reqwest::StatusCode;
use tower::timeout::error::Elapsed;
use tower::{Layer, Service};

use super::{WebhookError, WebhookRequest, WebhookResponse};

/// The statuses by which a consumer refuses a message for good.
pub(super) fn is_rejection(status: StatusCode) -> bool {
    matches!(status.as_u16(), 400 | 406 | 410 | 413 | 415 | 422)
}

/// The first line of a rejection body, made safe for an SMTP reply: control
/// characters removed, non-ASCII replaced (RFC 5321 reply text is ASCII), at
/// most 200 characters. `None` when nothing is left.
pub fn rejection_reason(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let line = text.lines().next().unwrap_or_default();
    let reason: String = line
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if c.is_ascii() { c } else { '?' })
        .take(200)
        .collect();
    let reason = reason.trim();
    (!reason.is_empty()).then(|| reason.to_owned())
}

/// Maps the HTTP result of one attempt onto [`WebhookError`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ClassifyLayer;

impl<S> Layer<S> for ClassifyLayer {
    type Service = Classify<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Classify { inner }
    }
}

// === impl Classify ===

#[derive(Debug, Clone)]
pub struct Classify<S> {
    inner: S,
}

impl<S> Service<WebhookRequest> for Classify<S>
where
    S: Service<WebhookRequest, Response = WebhookResponse, Error = tower::BoxError>,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = WebhookError;
    type Future = BoxFuture<'static, Result<(), WebhookError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(classify_error)
    }

    fn call(&mut self, request: WebhookRequest) -> Self::Future {
        let future = self.inner.call(request);
        Box::pin(async move {
            match future.await {
                Ok(response) => classify(response),
                Err(error) => Err(classify_error(error)),
            }
        })
    }
}

fn classify(response: WebhookResponse) -> Result<(), WebhookError> {
    let status = response.status;
    if status.is_success() {
        Ok(())
    } else if is_rejection(status) {
        Err(WebhookError::Rejected {
            status: status.as_u16(),
            reason: response.reason,
        })
    } else {
        Err(WebhookError::Status {
            status: status.as_u16(),
            retry_after: response.retry_after,
        })
    }
}

/// How an attempt failed below classification: the one place transport
/// errors are told apart (the attempt span's `error.type` reads it too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FailureKind {
    Timeout,
    Connect,
    Transport,
}

impl FailureKind {
    pub(super) fn of(error: &tower::BoxError) -> Self {
        if error.is::<Elapsed>() {
            return Self::Timeout;
        }
        match error.downcast_ref::<reqwest::Error>() {
            Some(error) if error.is_timeout() => Self::Timeout,
            Some(error) if error.is_connect() => Self::Connect,
            _ => Self::Transport,
        }
    }

    /// The `error.type` attribute of the attempt span.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Transport => "transport",
        }
    }
}

fn classify_error(error: tower::BoxError) -> WebhookError {
    let kind = FailureKind::of(&error);
    // reqwest's message names the URL, query string and all: drop it.
    let error = match error.downcast::<reqwest::Error>() {
        Ok(error) => Box::new(error.without_url()) as tower::BoxError,
        Err(other) => other,
    };
    match kind {
        FailureKind::Timeout => WebhookError::Timeout,
        FailureKind::Connect => WebhookError::Connect(error),
        FailureKind::Transport => WebhookError::Transport(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, reason: Option<&str>) -> WebhookResponse {
        WebhookResponse {
            status: StatusCode::from_u16(status).unwrap(),
            reason: reason.map(str::to_owned),
            retry_after: None,
        }
    }

    #[test]
    fn the_spec_table() {
        for status in [200, 201, 202, 204] {
            assert!(classify(response(status, None)).is_ok());
        }
        for status in [400, 406, 410, 413, 415, 422] {
            let result = classify(response(status, Some("why")));
            assert!(
                matches!(&result, Err(WebhookError::Rejected { status: s, reason: Some(r) }) if *s == status && r == "why"),
                "{status}: {result:?}"
            );
        }
        for status in [301, 401, 403, 404, 408, 409, 429, 500, 502, 503, 504] {
            let error = classify(response(status, None)).unwrap_err();
            assert!(
                matches!(error, WebhookError::Status { status: s, retry_after: None } if s == status)
            );
            assert!(error.is_temporary());
        }
    }

    #[test]
    fn timeouts_and_transport_errors_are_temporary() {
        let elapsed: tower::BoxError = Box::new(Elapsed::new());
        assert_eq!(FailureKind::of(&elapsed), FailureKind::Timeout);
        assert!(matches!(classify_error(elapsed), WebhookError::Timeout));
        let other: tower::BoxError = "reset by peer".into();
        assert_eq!(FailureKind::of(&other), FailureKind::Transport);
        let error = classify_error(other);
        assert!(error.is_temporary());
        let source = std::error::Error::source(&error).map(ToString::to_string);
        assert_eq!(
            source.as_deref(),
            Some("reset by peer"),
            "the cause is kept"
        );
    }

    #[test]
    fn reasons_are_one_safe_line() {
        assert_eq!(
            rejection_reason(b"Spam score too high\r\nsecond line").as_deref(),
            Some("Spam score too high")
        );
        assert_eq!(
            rejection_reason(b"bad\x07 \x1b[31mred\x1b[0m").as_deref(),
            Some("bad [31mred[0m")
        );
        assert_eq!(
            rejection_reason("Ungültig".as_bytes()).as_deref(),
            Some("Ung?ltig")
        );
        assert_eq!(rejection_reason(&[b'x'; 500]).map(|r| r.len()), Some(200));
        assert_eq!(rejection_reason(b"  \r\n"), None);
    }
}
