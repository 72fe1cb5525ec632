//! Response classification (SPEC §4): every response or error becomes
//! delivered, rejected (permanent) or a temporary failure.

use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use reqwest::StatusCode;
use tower::timeout::error::Elapsed;
use tower::{Layer, Service};

use super::{DeliveryError, WebhookRequest, WebhookResponse};

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

/// Maps the HTTP result of one attempt onto [`DeliveryError`].
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
    type Error = DeliveryError;
    type Future = BoxFuture<'static, Result<(), DeliveryError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|error| classify_error(&error))
    }

    fn call(&mut self, request: WebhookRequest) -> Self::Future {
        let future = self.inner.call(request);
        Box::pin(async move {
            match future.await {
                Ok(response) => classify(response),
                Err(error) => Err(classify_error(&error)),
            }
        })
    }
}

fn classify(response: WebhookResponse) -> Result<(), DeliveryError> {
    let status = response.status;
    if status.is_success() {
        Ok(())
    } else if is_rejection(status) {
        Err(DeliveryError::Rejected {
            status: status.as_u16(),
            reason: response.reason,
        })
    } else {
        Err(DeliveryError::Status(status.as_u16()))
    }
}

fn classify_error(error: &tower::BoxError) -> DeliveryError {
    if error.is::<Elapsed>() {
        return DeliveryError::Timeout;
    }
    match error.downcast_ref::<reqwest::Error>() {
        Some(error) if error.is_timeout() => DeliveryError::Timeout,
        Some(error) if error.is_connect() => DeliveryError::Transport(format!("connect: {error}")),
        _ => DeliveryError::Transport(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, reason: Option<&str>) -> WebhookResponse {
        WebhookResponse {
            status: StatusCode::from_u16(status).unwrap(),
            reason: reason.map(str::to_owned),
        }
    }

    #[test]
    fn the_spec_table() {
        for status in [200, 201, 202, 204] {
            assert_eq!(classify(response(status, None)), Ok(()));
        }
        for status in [400, 406, 410, 413, 415, 422] {
            let result = classify(response(status, Some("why")));
            assert_eq!(
                result,
                Err(DeliveryError::Rejected {
                    status,
                    reason: Some("why".into())
                })
            );
        }
        for status in [301, 401, 403, 404, 408, 409, 429, 500, 502, 503, 504] {
            let error = classify(response(status, None)).unwrap_err();
            assert_eq!(error, DeliveryError::Status(status));
            assert!(error.is_temporary());
        }
    }

    #[test]
    fn timeouts_are_temporary() {
        let elapsed: tower::BoxError = Box::new(Elapsed::new());
        assert_eq!(classify_error(&elapsed), DeliveryError::Timeout);
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
