//! [`AttachmentField`]: one entry of the payload's `attachments`, and
//! where its octets are.

use bytes::Bytes;
use schemars::JsonSchema;
use serde::ser::{Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::mail::parse::{Attachment, Disposition};

/// One entry of `attachments`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, JsonSchema)]
pub struct AttachmentField {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    pub content_type: String,
    /// Decoded size.
    pub size_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_id: Option<String>,
    pub disposition: Disposition,
    /// SHA-256 of the decoded octets, lower-case hex.
    pub sha256: String,
    /// Where the octets are; left out in `metadata` mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<AttachmentDelivery>,
}

impl AttachmentField {
    /// The attachment's description, without its octets.
    pub fn describe(attachment: &Attachment) -> Self {
        Self {
            filename: attachment.filename.clone(),
            content_type: attachment.content_type.clone(),
            size_bytes: attachment.data.len() as u64,
            content_id: attachment.content_id.clone(),
            disposition: attachment.disposition,
            sha256: hex(&Sha256::digest(&attachment.data)),
            delivery: None,
        }
    }

    /// The attachment with its octets in the payload.
    pub fn inline(attachment: Attachment) -> Self {
        Self {
            delivery: Some(AttachmentDelivery::Inline {
                data_base64: Base64(attachment.data.clone()),
            }),
            ..Self::describe(&attachment)
        }
    }

    /// Bytes the entry holds in memory.
    pub(super) fn size_in_memory(&self) -> usize {
        self.text_len() + self.inline_data().map_or(0, |data| data.0.len())
    }

    /// Upper bound of the entry's JSON length, so that the document is
    /// written into one allocation (a reallocation of a 27 MB document
    /// would hold both copies at once).
    pub(super) fn json_len_bound(&self) -> usize {
        // Escaping at most sextuples a text octet (`\u001f`).
        let base64 = self
            .inline_data()
            .map_or(0, |data| data.0.len().div_ceil(3) * 4);
        6 * self.text_len() + base64 + 128
    }

    /// Length of the entry's text fields.
    fn text_len(&self) -> usize {
        let optional = |value: &Option<String>| value.as_ref().map_or(0, String::len);
        let stored = match &self.delivery {
            Some(AttachmentDelivery::Stored(location)) => {
                location.url.len() + optional(&location.presigned_url)
            }
            _ => 0,
        };
        optional(&self.filename)
            + self.content_type.len()
            + optional(&self.content_id)
            + self.sha256.len()
            + stored
    }

    fn inline_data(&self) -> Option<&Base64> {
        match &self.delivery {
            Some(AttachmentDelivery::Inline { data_base64 }) => Some(data_base64),
            _ => None,
        }
    }
}

/// Where an attachment's octets are.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, JsonSchema)]
#[serde(untagged)]
pub enum AttachmentDelivery {
    /// In the payload (`inline` mode, or up to `MAIL_LASER_ATTACHMENT_INLINE_MAX`).
    Inline { data_base64: Base64 },
    /// In the object store (`s3` mode).
    Stored(StoredLocation),
}

/// An object in the store: its URL, and a presigned GET URL when
/// `MAIL_LASER_S3_PRESIGN_TTL` is set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, JsonSchema)]
pub struct StoredLocation {
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presigned_url: Option<String>,
}

/// Octets serialised as standard base64 text. The encoding is streamed
/// into the JSON writer a few kilobytes at a time: a 20 MB attachment never
/// exists as a base64 string besides the document.
#[derive(Clone, PartialEq, Eq)]
pub struct Base64(pub Bytes);

impl std::fmt::Debug for Base64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Base64({} octets)", self.0.len())
    }
}

impl std::fmt::Display for Base64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const CHUNK: usize = 3 * 1024;
        let mut text = [0u8; CHUNK / 3 * 4];
        for chunk in self.0.chunks(CHUNK) {
            let length = data_encoding::BASE64.encode_len(chunk.len());
            let text = &mut text[..length];
            data_encoding::BASE64.encode_mut(chunk, text);
            f.write_str(std::str::from_utf8(text).map_err(|_| std::fmt::Error)?)?;
        }
        Ok(())
    }
}

impl JsonSchema for Base64 {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Base64".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "contentEncoding": "base64",
            "description": "Standard base64 (RFC 4648 §4), padded, without line breaks."
        })
    }
}

impl Serialize for Base64 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

pub(super) fn hex(octets: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(octets.len() * 2);
    for octet in octets {
        text.push(char::from(DIGITS[usize::from(octet >> 4)]));
        text.push(char::from(DIGITS[usize::from(octet & 15)]));
    }
    text
}
