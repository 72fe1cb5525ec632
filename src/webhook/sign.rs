//! HMAC signing (`docs/webhook.md`): `X-MailLaser-Timestamp` and
//! `X-MailLaser-Signature-256: sha256=<hex HMAC-SHA256(secret, "<ts>.<body>")>`,
//! computed per attempt so the timestamp is fresh on every retry; and, per
//! route, Standard Webhooks (<https://www.standardwebhooks.com>):
//! `webhook-id` (the idempotency key, stable across retries),
//! `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256(key,
//! "<id>.<ts>.<body>")>`, one space-separated entry per secret (rotation).

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
static WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
static WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
static WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

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

/// A Standard Webhooks secret: the key bytes of a `whsec_<base64>`. Never
/// printed: `Debug` shows `<set>`.
#[derive(Clone, PartialEq, Eq)]
pub struct StandardSecret(Arc<[u8]>);

impl StandardSecret {
    /// # Errors
    /// Not `whsec_` followed by standard base64 of at least 24 bytes; the
    /// reason never repeats the text.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let encoded = text
            .trim()
            .strip_prefix("whsec_")
            .ok_or("a secret is whsec_ followed by base64")?;
        let key = data_encoding::BASE64
            .decode(encoded.as_bytes())
            .map_err(|_| "the part after whsec_ is not standard base64")?;
        if key.len() < 24 {
            return Err("a secret needs at least 24 bytes (32 recommended)");
        }
        Ok(Self(Arc::from(key)))
    }
}

impl fmt::Debug for StandardSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<set>")
    }
}

/// The value of `webhook-signature` for a body sent as `id` at `timestamp`:
/// one `v1,<base64>` per secret, space-separated.
pub fn standard_signature(
    secrets: &[StandardSecret],
    id: &str,
    timestamp: u64,
    body: &[u8],
) -> String {
    standard_signature_of_pieces(secrets, id, timestamp, [body])
}

fn standard_signature_of_pieces<'a>(
    secrets: &[StandardSecret],
    id: &str,
    timestamp: u64,
    body: impl IntoIterator<Item = &'a [u8]> + Clone,
) -> String {
    let signatures: Vec<String> = secrets
        .iter()
        .map(|secret| {
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&secret.0)
                .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            for piece in body.clone() {
                mac.update(piece);
            }
            format!(
                "v1,{}",
                data_encoding::BASE64.encode(&mac.finalize().into_bytes())
            )
        })
        .collect();
    signatures.join(" ")
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

/// Adds the signature headers of each scheme that has a secret.
#[derive(Debug, Clone)]
pub struct SignLayer {
    secret: Option<SigningSecret>,
    standard: Arc<[StandardSecret]>,
}

impl SignLayer {
    pub fn new(secret: Option<SigningSecret>) -> Self {
        Self {
            secret,
            standard: Arc::from([]),
        }
    }

    /// Also signs the Standard Webhooks way, with every one of `secrets`.
    #[must_use]
    pub fn with_standard(mut self, secrets: &[StandardSecret]) -> Self {
        self.standard = Arc::from(secrets);
        self
    }
}

impl<S> Layer<S> for SignLayer {
    type Service = Sign<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Sign {
            inner,
            secret: self.secret.clone(),
            standard: self.standard.clone(),
        }
    }
}

// === impl Sign ===

#[derive(Debug, Clone)]
pub struct Sign<S> {
    inner: S,
    secret: Option<SigningSecret>,
    standard: Arc<[StandardSecret]>,
}

impl<S: Service<WebhookRequest>> Service<WebhookRequest> for Sign<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: WebhookRequest) -> Self::Future {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        if !self.standard.is_empty()
            && let Some(id) = request.idempotency_key().map(str::to_owned)
        {
            let pieces = request.body.pieces().map(|piece| &piece[..]);
            let value = standard_signature_of_pieces(&self.standard, &id, timestamp, pieces);
            if let (Ok(id), Ok(value)) = (HeaderValue::from_str(&id), HeaderValue::from_str(&value))
            {
                request.headers.insert(WEBHOOK_ID.clone(), id);
                request
                    .headers
                    .insert(WEBHOOK_TIMESTAMP.clone(), HeaderValue::from(timestamp));
                request.headers.insert(WEBHOOK_SIGNATURE.clone(), value);
            }
        }
        if let Some(secret) = &self.secret {
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
    fn standard_webhooks_test_vector() {
        // The example of the Standard Webhooks specification's reference
        // libraries (standard-webhooks/libraries, python/tests).
        let secret = StandardSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            standard_signature(
                std::slice::from_ref(&secret),
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                body
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert_eq!(
            standard_signature(
                &[secret.clone(), secret],
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                body
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert!(StandardSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(StandardSecret::parse("whsec_!!").is_err());
        assert!(StandardSecret::parse("whsec_c2hvcnQ=").is_err());
        assert_eq!(
            format!(
                "{secret:?}",
                secret = StandardSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()
            ),
            "<set>"
        );
    }

    #[test]
    fn secret_is_not_printed() {
        assert_eq!(format!("{:?}", SigningSecret::new("hunter2")), "<set>");
    }
}
