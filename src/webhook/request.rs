//! One POST: the body for one recipient (the JSON payload, or a route's
//! drop-in format) and its stable headers.

use std::sync::Arc;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

use super::format::{FormatError, WebhookFormat};
use crate::mail::PayloadJson;
use crate::sink::RecipientPayload;
use crate::smtp::command::canonical_mailbox;

pub(super) static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// A request body in the pieces it is built in (shared octets such as an
/// attachment's or the original message's are never copied), with its
/// `Content-Type`. Cheap to clone; signed and sent piece by piece.
#[derive(Debug, Clone)]
pub struct Body {
    pieces: Pieces,
    content_type: HeaderValue,
}

#[derive(Debug, Clone)]
enum Pieces {
    Json(PayloadJson),
    Parts(Arc<[Bytes]>),
}

impl Body {
    /// The JSON payload (`application/json`).
    pub fn json(json: PayloadJson) -> Self {
        Self {
            pieces: Pieces::Json(json),
            content_type: HeaderValue::from_static("application/json"),
        }
    }

    /// A body of `parts`, sent one after the other.
    pub fn parts(content_type: HeaderValue, parts: Vec<Bytes>) -> Self {
        Self {
            pieces: Pieces::Parts(parts.into()),
            content_type,
        }
    }

    /// The pieces, in order.
    pub fn pieces(&self) -> impl Iterator<Item = &Bytes> + Clone {
        let (json, parts): (Option<[&Bytes; 2]>, &[Bytes]) = match &self.pieces {
            Pieces::Json(json) => (Some(json.pieces()), &[]),
            Pieces::Parts(parts) => (None, parts),
        };
        json.into_iter().flatten().chain(parts.iter())
    }

    pub fn content_type(&self) -> &HeaderValue {
        &self.content_type
    }

    /// Length in bytes of the whole body.
    pub fn len(&self) -> usize {
        self.pieces().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The body in one piece (a copy unless it is one piece already).
    pub fn to_bytes(&self) -> Bytes {
        match &self.pieces {
            Pieces::Json(json) => json.to_bytes(),
            Pieces::Parts(parts) if parts.len() == 1 => parts[0].clone(),
            Pieces::Parts(_) => {
                let mut whole = Vec::with_capacity(self.len());
                for piece in self.pieces() {
                    whole.extend_from_slice(piece);
                }
                Bytes::from(whole)
            }
        }
    }
}

impl From<PayloadJson> for Body {
    fn from(json: PayloadJson) -> Self {
        Self::json(json)
    }
}

impl From<Bytes> for Body {
    /// A JSON document kept whole.
    fn from(json: Bytes) -> Self {
        Self::json(PayloadJson::whole(json))
    }
}

/// The JSON payload back (the spool keeps it), without a copy; a body of
/// another format joined into one piece.
impl From<Body> for PayloadJson {
    fn from(body: Body) -> Self {
        match body.pieces {
            Pieces::Json(json) => json,
            Pieces::Parts(_) => Self::whole(body.to_bytes()),
        }
    }
}

/// A request for the outbound stack. Cheap to clone (retries clone it).
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    /// The serialised body, built once and reused by every attempt.
    pub body: Body,
    /// Headers that are the same on every attempt (`Idempotency-Key`);
    /// per-attempt headers (signature) are added by their layers.
    pub headers: HeaderMap,
    /// 1 for the first attempt; the retry policy counts up.
    pub attempt: u32,
}

impl WebhookRequest {
    pub fn new(item: &RecipientPayload) -> Self {
        let key = idempotency_key(
            &item.payload.recipient,
            &item.payload.sender,
            &item.message_sha256,
        );
        Self::from_parts(item.payload.to_json(), &key, 1)
    }

    /// The request for `item` in a route's `format`, built once for every
    /// attempt.
    ///
    /// # Errors
    /// The format needs what `item` lacks (the original message).
    pub fn formatted(item: &RecipientPayload, format: &WebhookFormat) -> Result<Self, FormatError> {
        let key = idempotency_key(
            &item.payload.recipient,
            &item.payload.sender,
            &item.message_sha256,
        );
        let body = format.body(item, &key)?;
        Ok(Self::with_body(body, &key, 1))
    }

    /// A request for a body and key kept from an earlier attempt (the
    /// spool): the same bytes under the same `Idempotency-Key`.
    pub fn from_parts(body: PayloadJson, key: &str, attempt: u32) -> Self {
        Self::with_body(Body::json(body), key, attempt)
    }

    /// [`WebhookRequest::from_parts`] for a body of any format.
    pub fn with_body(body: Body, key: &str, attempt: u32) -> Self {
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

/// Lowercase hex SHA-256 over the canonical (lower-cased) recipient, a NUL, the
/// envelope sender, a NUL and the SHA-256 of the raw message,
/// `message_sha256` (`docs/webhook.md`). Stable across our retries, our restarts and the
/// sender's re-sends of the same bytes, so consumers can drop duplicates by
/// it; a forger reusing a genuine Message-ID still gets a key of its own.
/// Addresses hold no NUL (the command parser refuses control characters),
/// and the digest has a fixed length, so no two inputs run together.
pub fn idempotency_key(recipient: &str, sender: &str, message_sha256: &[u8; 32]) -> String {
    let mut hash = Sha256::new();
    hash.update(canonical_mailbox(recipient).as_bytes());
    hash.update([0]);
    hash.update(sender.as_bytes());
    hash.update([0]);
    hash.update(message_sha256);
    hex(&hash.finalize())
}

/// Lowercase hex, for keys and digests.
pub(crate) fn hex(bytes: &[u8]) -> String {
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

    /// The key of a message given as its raw bytes.
    fn key(recipient: &str, sender: &str, raw: &[u8]) -> String {
        idempotency_key(recipient, sender, &Sha256::digest(raw).into())
    }

    #[test]
    fn key_is_stable_and_tells_messages_apart() {
        let a = key("A@example.com", "s@example.org", b"raw");
        assert_eq!(a, key("a@example.com", "s@example.org", b"raw"));
        assert_ne!(a, key("b@example.com", "s@example.org", b"raw"));
        assert_ne!(a, key("a@example.com", "t@example.org", b"raw"));
        assert_ne!(a, key("a@example.com", "s@example.org", b"raw2"));
        assert_ne!(a, key("a@example.com", "", b"raw"));
        assert_eq!(a.len(), 64);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }

    #[test]
    fn a_reused_message_id_gets_its_own_key() {
        let genuine = b"Message-ID: <alert-1@example.com>\r\n\r\ndisk full\r\n";
        let forged = b"Message-ID: <alert-1@example.com>\r\n\r\nall clear\r\n";
        assert_ne!(
            key("ops@example.com", "mon@example.com", genuine),
            key("ops@example.com", "mon@example.com", forged)
        );
    }

    #[test]
    fn known_vector() {
        let mut expected = Sha256::new();
        expected.update(b"a@b\0s@t\0");
        expected.update(Sha256::digest(b"hello"));
        assert_eq!(key("A@B", "s@t", b"hello"), hex(&expected.finalize()));
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
    }
}
