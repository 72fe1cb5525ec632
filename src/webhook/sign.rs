//! HMAC signing (`docs/webhook.md`): `X-MailLaser-Timestamp` and
//! `X-MailLaser-Signature-256: sha256=<hex HMAC-SHA256(secret, "<ts>.<body>")>`,
//! computed per attempt so the timestamp is fresh on every retry.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::{HeaderName, HeaderValue};
use sha2::Sha256;
use tower::{Layer, Service};

use super::WebhookRequest;
use super::request::hex;

static TIMESTAMP: HeaderName = HeaderName::from_static("x-maillaser-timestamp");
static SIGNATURE: HeaderName = HeaderName::from_static("x-maillaser-signature-256");

/// The shared secret. Never printed: `Debug` shows `<set>`.
#[derive(Clone)]
pub struct SigningSecret(Arc<[u8]>);

impl SigningSecret {
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        Self(Arc::from(secret.as_ref()))
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<set>")
    }
}

/// The value of `X-MailLaser-Signature-256` for a body sent at `timestamp`.
pub fn signature(secret: &SigningSecret, timestamp: u64, body: &[u8]) -> String {
    signature_of_pieces(secret, timestamp, [body])
}

/// [`signature`] of a body given in pieces (a [`PayloadJson`](crate::mail::PayloadJson)).
fn signature_of_pieces<'a>(
    secret: &SigningSecret,
    timestamp: u64,
    body: impl IntoIterator<Item = &'a [u8]>,
) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&secret.0)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    for piece in body {
        mac.update(piece);
    }
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

/// Adds the signature headers when a secret is configured.
#[derive(Debug, Clone)]
pub struct SignLayer {
    secret: Option<SigningSecret>,
}

impl SignLayer {
    pub const fn new(secret: Option<SigningSecret>) -> Self {
        Self { secret }
    }
}

impl<S> Layer<S> for SignLayer {
    type Service = Sign<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Sign {
            inner,
            secret: self.secret.clone(),
        }
    }
}

// === impl Sign ===

#[derive(Debug, Clone)]
pub struct Sign<S> {
    inner: S,
    secret: Option<SigningSecret>,
}

impl<S: Service<WebhookRequest>> Service<WebhookRequest> for Sign<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: WebhookRequest) -> Self::Future {
        if let Some(secret) = &self.secret {
            let timestamp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_secs());
            let pieces = request.body.pieces().map(|piece| &piece[..]);
            let value = signature_of_pieces(secret, timestamp, pieces);
            request
                .headers
                .insert(TIMESTAMP.clone(), HeaderValue::from(timestamp));
            if let Ok(value) = HeaderValue::from_str(&value) {
                request.headers.insert(SIGNATURE.clone(), value);
            }
        }
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_an_independent_implementation() {
        // HMAC-SHA256(key="key", "1700000000.{}") computed independently
        // with Python's hmac module.
        let secret = SigningSecret::new("key");
        assert_eq!(
            signature(&secret, 1_700_000_000, b"{}"),
            "sha256=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
    }

    #[test]
    fn secret_is_not_printed() {
        assert_eq!(format!("{:?}", SigningSecret::new("hunter2")), "<set>");
    }
}
