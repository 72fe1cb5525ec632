//! One POST: the JSON payload for one recipient and its stable headers.

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

use crate::sink::Delivery;

pub(super) static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// A request for the outbound stack. Cheap to clone (retries clone it).
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    /// The serialised payload, built once and reused by every attempt.
    pub body: Bytes,
    /// Headers that are the same on every attempt (`Idempotency-Key`);
    /// per-attempt headers (signature) are added by their layers.
    pub headers: HeaderMap,
    /// 1 for the first attempt; the retry policy counts up.
    pub attempt: u32,
}

impl WebhookRequest {
    pub fn new(delivery: &Delivery) -> Self {
        let key = idempotency_key(
            &delivery.payload.recipient,
            delivery.payload.message_id.as_deref(),
            &delivery.raw,
        );
        Self::from_parts(Bytes::from(delivery.payload.to_json()), &key, 1)
    }

    /// A request for a body and key kept from an earlier attempt (the
    /// spool): the same bytes under the same `Idempotency-Key`.
    pub fn from_parts(body: Bytes, key: &str, attempt: u32) -> Self {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(key) {
            headers.insert(IDEMPOTENCY_KEY.clone(), value);
        }
        Self {
            body,
            headers,
            attempt,
        }
    }

    /// The `Idempotency-Key` this request carries.
    pub fn idempotency_key(&self) -> Option<&str> {
        self.headers
            .get(&IDEMPOTENCY_KEY)
            .and_then(|value| value.to_str().ok())
    }
}

/// Lowercase hex SHA-256 of the recipient (lower-cased), a NUL, and the
/// `Message-ID` — or the raw message when there is none. Stable across our
/// retries, our restarts and the sender's re-sends, so consumers can drop
/// duplicates by it (SPEC §4).
pub fn idempotency_key(recipient: &str, message_id: Option<&str>, raw: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(recipient.to_lowercase().as_bytes());
    hash.update([0]);
    match message_id {
        Some(id) => hash.update(id.as_bytes()),
        None => hash.update(raw),
    }
    hex(&hash.finalize())
}

pub(super) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_stable_and_distinguishes_recipients() {
        let a = idempotency_key("A@example.com", Some("<1@x>"), b"raw");
        assert_eq!(
            a,
            idempotency_key("a@example.com", Some("<1@x>"), b"other raw")
        );
        assert_ne!(a, idempotency_key("b@example.com", Some("<1@x>"), b"raw"));
        assert_eq!(a.len(), 64);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        // Without a Message-ID the raw message decides.
        assert_ne!(
            idempotency_key("a@example.com", None, b"one"),
            idempotency_key("a@example.com", None, b"two")
        );
    }

    #[test]
    fn known_vector() {
        // sha256("a@b\0<m@x>")
        let mut hash = Sha256::new();
        hash.update(b"a@b\0<m@x>");
        assert_eq!(
            idempotency_key("a@b", Some("<m@x>"), b""),
            hex(&hash.finalize())
        );
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
    }
}
