//! The spool file format: what one spooled delivery looks like on disk.
//! Pure (no I/O), so every corner of it is unit-tested.
//!
//! ```text
//! maillaser-spool 1\n                     magic and version
//! {"idempotency_key":"…","first_seen_ms":…,"attempts":1,"last_error":"…"}\n
//! {"sender":"…","recipient":"…",…}        the exact webhook body, to the end
//! ```
//!
//! The header is one line of compact JSON (serde never writes a raw newline
//! inside it); the body follows byte for byte, so every attempt POSTs exactly
//! what the first one did and `tail -n +3 FILE | jq .` shows the payload.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::mail::PayloadJson;

/// The wall clock in Unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// The first line of every spool file.
const MAGIC: &[u8] = b"maillaser-spool 1";

/// Longest `last_error` kept in a header (error texts are short; a bound
/// keeps a pathological one from bloating every rewrite).
const MAX_ERROR_LEN: usize = 500;

/// The metadata line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Sent as `Idempotency-Key` on every attempt.
    pub idempotency_key: String,
    /// When the message was first spooled, Unix milliseconds (wall clock,
    /// so it survives restarts). `MAIL_LASER_SPOOL_MAX_AGE` counts from it.
    pub first_seen_ms: u64,
    /// Webhook requests made so far (the one during DATA included; a
    /// refusal by the open circuit breaker makes no request and is not counted).
    pub attempts: u32,
    /// Why the last attempt failed: the webhook's answer, or the breaker's
    /// refusal while no request has been made yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Lowercase hex SHA-256 of the body, checked before every attempt so
    /// a truncated or damaged file is never POSTed. Absent only in files
    /// written before it existed, which are sent unchecked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_sha256: Option<String>,
    /// The route whose webhook takes it (`docs/routes.md`); absent for
    /// the implicit route, and in files written before routes existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The body's `Content-Type` when it is not the JSON payload (a
    /// route's drop-in `format`); absent: `application/json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

/// One spooled delivery: metadata and the webhook body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolEntry {
    pub header: Header,
    pub body: PayloadJson,
}

/// Why a file is not a spool entry. Such a file is never deleted: it goes to
/// the dead-letter folder for a human to look at.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error(
        "not a MailLaser spool file (no '{}' line)",
        String::from_utf8_lossy(MAGIC)
    )]
    Magic,
    #[error("the metadata line is missing")]
    Truncated,
    #[error("the metadata line is not valid")]
    Header(#[source] serde_json::Error),
    #[error("the idempotency key is not a valid header value")]
    Key,
    #[error("the content type is not a valid header value")]
    ContentType,
    /// The body is not the one written (truncated, damaged, edited).
    #[error("the body does not match its checksum")]
    Checksum,
    /// A link or a folder under a spool file's name.
    #[error("not a regular file")]
    NotAFile,
}

impl SpoolEntry {
    pub fn new(idempotency_key: String, body: impl Into<PayloadJson>, first_seen_ms: u64) -> Self {
        let body = body.into();
        Self {
            header: Header {
                idempotency_key,
                first_seen_ms,
                attempts: 0,
                last_error: None,
                body_sha256: Some(body_digest(&body)),
                route: None,
                content_type: None,
            },
            body,
        }
    }

    /// Records a failed attempt. `requested` is false when no request was
    /// made (the breaker refused): it is not counted, and it does not hide
    /// what the webhook last said.
    pub fn failed(&mut self, error: &str, requested: bool) {
        if requested {
            self.header.attempts = self.header.attempts.saturating_add(1);
        } else if self.header.last_error.is_some() {
            return;
        }
        let mut error: String = error.chars().filter(|c| !c.is_control()).collect();
        if error.len() > MAX_ERROR_LEN {
            let mut end = MAX_ERROR_LEN;
            while !error.is_char_boundary(end) {
                end -= 1;
            }
            error.truncate(end);
        }
        self.header.last_error = Some(error);
    }

    /// How long the message has been in the spool at `now_ms`.
    pub fn age_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.header.first_seen_ms)
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        // A struct of strings and integers always serialises.
        let header = serde_json::to_vec(&self.header).unwrap_or_default();
        let mut out = Vec::with_capacity(MAGIC.len() + header.len() + self.body.len() + 2);
        out.extend_from_slice(MAGIC);
        out.push(b'\n');
        out.extend_from_slice(&header);
        out.push(b'\n');
        for piece in self.body.pieces() {
            out.extend_from_slice(piece);
        }
        out
    }

    /// Reads a file's bytes back.
    ///
    /// # Errors
    /// [`FormatError`] when the bytes are not a spool file of this version.
    pub fn decode(bytes: Bytes) -> Result<Self, FormatError> {
        let magic_end = bytes
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(FormatError::Magic)?;
        if &bytes[..magic_end] != MAGIC {
            return Err(FormatError::Magic);
        }
        let rest = bytes.slice(magic_end + 1..);
        let header_end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(FormatError::Truncated)?;
        let header: Header =
            serde_json::from_slice(&rest[..header_end]).map_err(FormatError::Header)?;
        Self::from_parts(header, rest.slice(header_end + 1..))
    }
}

impl SpoolEntry {
    /// An entry from its metadata and body, checked: the values sent as
    /// headers, and the body against its checksum (a file's, or a
    /// PostgreSQL row's).
    ///
    /// # Errors
    /// [`FormatError::Key`] or [`FormatError::Checksum`].
    pub fn from_parts(header: Header, body: Bytes) -> Result<Self, FormatError> {
        check_header(&header)?;
        let body = PayloadJson::whole(body);
        if header
            .body_sha256
            .as_ref()
            .is_some_and(|expected| *expected != body_digest(&body))
        {
            return Err(FormatError::Checksum);
        }
        Ok(Self { header, body })
    }

    /// The lowercase hex SHA-256 of the body.
    pub fn body_sha256(&self) -> String {
        self.header
            .body_sha256
            .clone()
            .unwrap_or_else(|| body_digest(&self.body))
    }
}

/// The values sent as headers must be valid header values.
fn check_header(header: &Header) -> Result<(), FormatError> {
    let valid = |value: &str| reqwest::header::HeaderValue::from_str(value).is_ok();
    if header.idempotency_key.is_empty() || !valid(&header.idempotency_key) {
        return Err(FormatError::Key);
    }
    if header
        .content_type
        .as_deref()
        .is_some_and(|value| !valid(value))
    {
        return Err(FormatError::ContentType);
    }
    Ok(())
}

/// The longest metadata line [`read_header`] reads.
const MAX_HEADER_LEN: u64 = 64 * 1024;

/// Reads the first two lines of a spool file (magic and metadata) without
/// the body, for listings: the header and how many bytes the two lines
/// take (the body is the rest). The body's checksum is not checked.
///
/// # Errors
/// The outer error is the reader's; the inner one says the bytes are not a
/// spool file of this version.
pub fn read_header(
    reader: impl std::io::BufRead,
) -> std::io::Result<Result<(Header, u64), FormatError>> {
    use std::io::BufRead;
    let mut reader = reader.take(MAX_HEADER_LEN);
    let mut magic = Vec::new();
    reader.read_until(b'\n', &mut magic)?;
    if magic.strip_suffix(b"\n") != Some(MAGIC) {
        return Ok(Err(FormatError::Magic));
    }
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    let Some(json) = line.strip_suffix(b"\n") else {
        return Ok(Err(FormatError::Truncated));
    };
    let header: Header = match serde_json::from_slice(json) {
        Ok(header) => header,
        Err(error) => return Ok(Err(FormatError::Header(error))),
    };
    Ok(Ok((header, (magic.len() + line.len()) as u64)))
}

fn body_digest(body: &PayloadJson) -> String {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    for piece in body.pieces() {
        digest.update(piece);
    }
    crate::webhook::hex(&digest.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> SpoolEntry {
        SpoolEntry::new(
            "ab".repeat(32),
            Bytes::from_static(b"{\"subject\":\"line\\nbreak\",\"body\":\"x\\r\\n\"}"),
            1_700_000_000_123,
        )
    }

    #[test]
    fn round_trips_byte_for_byte() {
        let mut entry = entry();
        entry.failed("webhook answered 500", true);
        let bytes = entry.encode();
        let text = String::from_utf8(bytes.clone()).unwrap();
        let lines: Vec<_> = text.splitn(3, '\n').collect();
        assert_eq!(lines[0], "maillaser-spool 1");
        assert_eq!(
            lines[1],
            format!(
                "{{\"idempotency_key\":\"{}\",\"first_seen_ms\":1700000000123,\"attempts\":1,\"last_error\":\"webhook answered 500\",\"body_sha256\":\"{}\"}}",
                "ab".repeat(32),
                body_digest(&entry.body)
            )
        );
        assert_eq!(lines[2].as_bytes(), &entry.body.to_bytes()[..]);
        assert_eq!(SpoolEntry::decode(Bytes::from(bytes)).unwrap(), entry);
    }

    #[test]
    fn errors_stay_on_the_metadata_line() {
        let mut entry = entry();
        entry.failed("line one\nline two\r\t", true);
        assert_eq!(entry.header.last_error.as_deref(), Some("line oneline two"));
        entry.failed("circuit breaker open", false);
        assert_eq!(entry.header.attempts, 1, "no request, not counted");
        assert_eq!(
            entry.header.last_error.as_deref(),
            Some("line oneline two"),
            "the webhook's last word is kept"
        );
        entry.failed(&"é".repeat(400), true);
        let error = entry.header.last_error.clone().unwrap();
        assert!(error.len() <= MAX_ERROR_LEN && error.starts_with('é'));
        let decoded = SpoolEntry::decode(Bytes::from(entry.encode())).unwrap();
        assert_eq!(decoded, entry);
        let mut refused = SpoolEntry::new("k".into(), Bytes::new(), 1);
        refused.failed("circuit breaker open", false);
        assert_eq!(refused.header.attempts, 0);
        assert_eq!(
            refused.header.last_error.as_deref(),
            Some("circuit breaker open")
        );
    }

    #[test]
    fn the_header_is_read_without_the_body() {
        let mut entry = entry();
        entry.failed("webhook answered 500", true);
        let bytes = entry.encode();
        let (header, len) = read_header(&bytes[..]).unwrap().unwrap();
        assert_eq!(header, entry.header);
        assert_eq!(len as usize + entry.body.len(), bytes.len());
        assert!(matches!(
            read_header(&b"{}"[..]).unwrap(),
            Err(FormatError::Magic)
        ));
        assert!(matches!(
            read_header(&b"maillaser-spool 1\n{"[..]).unwrap(),
            Err(FormatError::Truncated)
        ));
    }

    #[test]
    fn an_empty_body_is_kept_empty() {
        let entry = SpoolEntry::new("k".into(), Bytes::new(), 1);
        assert_eq!(
            SpoolEntry::decode(Bytes::from(entry.encode())).unwrap(),
            entry
        );
    }

    #[test]
    fn foreign_or_damaged_files_are_refused() {
        let good = entry().encode();
        let cases: Vec<(Vec<u8>, FormatError)> = vec![
            (b"".to_vec(), FormatError::Magic),
            (b"{\"sender\":\"x\"}".to_vec(), FormatError::Magic),
            (b"maillaser-spool 2\n{}\n{}".to_vec(), FormatError::Magic),
            (good[..25].to_vec(), FormatError::Truncated),
            (
                b"maillaser-spool 1\n{\"idempotency_key\":\"\",\"first_seen_ms\":1,\"attempts\":0}\n{}"
                    .to_vec(),
                FormatError::Key,
            ),
        ];
        for (bytes, expected) in cases {
            let result = SpoolEntry::decode(Bytes::from(bytes.clone()));
            assert_eq!(
                result.map_err(|error| error.to_string()),
                Err(expected.to_string()),
                "{:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
        for header in [
            &b"maillaser-spool 1\n{\"idempotency_key\":\"k\"}\n{}"[..],
            b"maillaser-spool 1\n{\"idempotency_key\":\"a\nb\"}\n{}",
            b"maillaser-spool 1\nnot json\n{}",
        ] {
            assert!(matches!(
                SpoolEntry::decode(Bytes::copy_from_slice(header)),
                Err(FormatError::Header(_))
            ));
        }
    }

    #[test]
    fn a_damaged_body_fails_its_checksum() {
        let bytes = entry().encode();
        let truncated = Bytes::copy_from_slice(&bytes[..bytes.len() - 3]);
        assert!(matches!(
            SpoolEntry::decode(truncated),
            Err(FormatError::Checksum)
        ));
        let mut edited = bytes.clone();
        let last = edited.len() - 1;
        edited[last] ^= 0x20;
        assert!(matches!(
            SpoolEntry::decode(Bytes::from(edited)),
            Err(FormatError::Checksum)
        ));
        // A file written before checksums existed is read unchecked.
        let old = b"maillaser-spool 1\n{\"idempotency_key\":\"k\",\"first_seen_ms\":1,\"attempts\":0}\n{}";
        assert!(SpoolEntry::decode(Bytes::from_static(old)).is_ok());
    }
}
