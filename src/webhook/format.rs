//! Drop-in request formats (a route's `format`, `docs/routes.md`): the
//! request an email provider sends for inbound mail, so that code written
//! for that provider's inbound webhook (Action Mailbox, django-anymail,
//! the provider's SDK) takes MailLaser's requests unchanged.
//!
//! Each body is built once per delivery, in one pass over the message, and
//! reused by every attempt; attachment octets and the original message are
//! shared pieces ([`Bytes`]), never copied.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::HeaderValue;
use serde::Serialize;
use sha2::Sha256;

use super::request::{Body, hex};
use crate::mail::{AttachmentDelivery, AttachmentField, Base64, Mailbox, top_header_fields};
use crate::sink::RecipientPayload;
use crate::smtp::command::split_plus_tag;

/// What a route's requests look like.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum WebhookFormat {
    /// MailLaser's JSON payload (`docs/payload.md`).
    #[default]
    MailLaser,
    /// The original message as `message/rfc822` (Action Mailbox's relay
    /// ingress).
    Raw,
    /// Postmark's inbound JSON.
    Postmark,
    /// SendGrid's Inbound Parse (`multipart/form-data`, parsed fields).
    SendGrid,
    /// Mailgun's route `forward()` (`multipart/form-data`), signed with
    /// the key the consumer verifies.
    Mailgun { signing_key: MailgunKey },
}

/// The names a routes file may give, in the order the docs list them.
pub const FORMAT_NAMES: [&str; 5] = ["maillaser", "raw", "postmark", "sendgrid", "mailgun"];

impl WebhookFormat {
    /// The name the routes file uses.
    pub fn name(&self) -> &'static str {
        match self {
            Self::MailLaser => "maillaser",
            Self::Raw => "raw",
            Self::Postmark => "postmark",
            Self::SendGrid => "sendgrid",
            Self::Mailgun { .. } => "mailgun",
        }
    }

    /// Whether deliveries need the original message
    /// ([`RecipientPayload::raw`]): the whole of it, or its header section.
    pub fn needs_raw(&self) -> bool {
        !matches!(self, Self::MailLaser)
    }

    /// The request body for `item`; `key` is its `Idempotency-Key`.
    ///
    /// # Errors
    /// The format needs the original message and `item` has none.
    pub fn body(&self, item: &RecipientPayload, key: &str) -> Result<Body, FormatError> {
        let raw = match (&self, &item.raw) {
            (Self::MailLaser, _) => return Ok(Body::json(item.payload.to_json())),
            (_, Some(raw)) => raw,
            (_, None) => return Err(FormatError::NoOriginal(self.name())),
        };
        Ok(match self {
            Self::MailLaser | Self::Raw => Body::parts(
                HeaderValue::from_static("message/rfc822"),
                vec![raw.clone()],
            ),
            Self::Postmark => postmark(item, raw, key),
            Self::SendGrid => sendgrid(item, raw),
            Self::Mailgun { signing_key } => mailgun(item, raw, signing_key),
        })
    }
}

/// A Mailgun webhook signing key; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct MailgunKey(Arc<str>);

impl MailgunKey {
    pub fn new(key: &str) -> Self {
        Self(key.into())
    }
}

impl fmt::Debug for MailgunKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MailgunKey(..)")
    }
}

/// Why a body cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("the {0} format needs the original message, and it was not kept")]
    NoOriginal(&'static str),
}

/// The original message's header section, read once per message (inside
/// the [`MessageCache`](crate::sink::MessageCache) entries made from it).
struct Original<'a> {
    /// Every top-level field, unfolded and decoded, in order.
    fields: Vec<(String, String)>,
    /// The header section as sent, without the blank line that ends it.
    section: &'a [u8],
}

impl<'a> Original<'a> {
    fn new(raw: &'a [u8]) -> Self {
        let (fields, body_start) = top_header_fields(raw);
        let head = &raw[..body_start.min(raw.len())];
        let section = head
            .strip_suffix(b"\r\n\r\n")
            .map(|section| &head[..section.len() + 2])
            .or_else(|| {
                head.strip_suffix(b"\n\n")
                    .map(|section| &head[..section.len() + 1])
            })
            .unwrap_or(head);
        Self { fields, section }
    }

    /// The first field named `name`.
    fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// `"Name" <address>`, or the bare address.
fn display(mailbox: &Mailbox) -> String {
    match &mailbox.name {
        Some(name) => {
            let quoted = name.replace('\\', "\\\\").replace('"', "\\\"");
            format!("\"{quoted}\" <{}>", mailbox.address)
        }
        None => mailbox.address.clone(),
    }
}

fn display_list(mailboxes: &[Mailbox]) -> String {
    mailboxes.iter().map(display).collect::<Vec<_>>().join(", ")
}

/// The attachments whose octets are in the payload (`inline` delivery),
/// numbered from 1; stored or metadata-only ones cannot be sent.
fn inline_attachments(
    item: &RecipientPayload,
) -> impl Iterator<Item = (usize, &AttachmentField, &Bytes)> {
    item.payload
        .attachments
        .iter()
        .filter_map(|attachment| match &attachment.delivery {
            Some(AttachmentDelivery::Inline { data_base64 }) => Some((attachment, &data_base64.0)),
            _ => None,
        })
        .enumerate()
        .map(|(index, (attachment, data))| (index + 1, attachment, data))
}

fn filename(attachment: &AttachmentField, number: usize) -> String {
    attachment
        .filename
        .clone()
        .filter(|name| !name.trim().is_empty())
        .unwrap_or_else(|| format!("attachment{number}"))
}

// === Postmark ===

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PostmarkMessage<'a> {
    from_name: &'a str,
    message_stream: &'static str,
    from: &'a str,
    from_full: PostmarkAddress<'a>,
    to: String,
    to_full: Vec<PostmarkAddress<'a>>,
    cc: String,
    cc_full: Vec<PostmarkAddress<'a>>,
    bcc: &'static str,
    bcc_full: Vec<PostmarkAddress<'a>>,
    reply_to: String,
    subject: &'a str,
    date: &'a str,
    text_body: &'a str,
    html_body: &'a str,
    stripped_text_reply: &'a str,
    tag: &'static str,
    headers: Vec<PostmarkHeader<'a>>,
    attachments: Vec<PostmarkAttachment<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PostmarkAddress<'a> {
    email: &'a str,
    name: &'a str,
    mailbox_hash: &'a str,
}

impl<'a> PostmarkAddress<'a> {
    fn new(mailbox: &'a Mailbox) -> Self {
        Self {
            email: &mailbox.address,
            name: mailbox.name.as_deref().unwrap_or_default(),
            mailbox_hash: split_plus_tag(&mailbox.address).map_or("", |(_, tag)| tag),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PostmarkHeader<'a> {
    name: &'a str,
    value: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PostmarkAttachment<'a> {
    name: String,
    content: Base64,
    content_type: &'a str,
    content_length: u64,
    #[serde(rename = "ContentID", skip_serializing_if = "Option::is_none")]
    content_id: Option<String>,
}

/// Fields Postmark sends as their own keys rather than in `Headers`.
const POSTMARK_OWN_FIELDS: [&str; 9] = [
    "From",
    "To",
    "Cc",
    "Bcc",
    "Subject",
    "Date",
    "Reply-To",
    "Content-Type",
    "Content-Transfer-Encoding",
];

/// Postmark's JSON: the recipient's own fields first, then the rest of
/// the document, made once per message and shared by its recipients.
fn postmark(item: &RecipientPayload, raw: &Bytes, key: &str) -> Body {
    let payload = &item.payload;
    let own = PostmarkRecipient {
        original_recipient: &payload.recipient,
        mailbox_hash: payload
            .recipient_tag
            .as_deref()
            .or_else(|| split_plus_tag(&payload.recipient).map(|(_, tag)| tag))
            .unwrap_or_default(),
        message_id: key,
    };
    let mut head = json_bytes(&own, 256);
    // `{…}` → `{…,`: the shared rest follows without its `{`.
    if let Some(close) = head.last_mut() {
        *close = b',';
    }
    let rest = item
        .shared
        .get_or_insert_with("postmark", || postmark_message(item, raw).slice(1..));
    Body::parts(
        HeaderValue::from_static("application/json"),
        vec![Bytes::from(head), rest],
    )
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PostmarkRecipient<'a> {
    original_recipient: &'a str,
    mailbox_hash: &'a str,
    #[serde(rename = "MessageID")]
    message_id: &'a str,
}

/// The message-wide fields of Postmark's JSON, as one document.
fn postmark_message(item: &RecipientPayload, raw: &[u8]) -> Bytes {
    let payload = &item.payload;
    let original = Original::new(raw);
    let empty = Mailbox {
        name: None,
        address: String::new(),
    };
    let from = payload.from.first().unwrap_or(&empty);
    let return_path = format!("<{}>", payload.sender);
    // Postmark puts the envelope sender first, as `Return-Path`.
    let headers = std::iter::once(PostmarkHeader {
        name: "Return-Path",
        value: &return_path,
    })
    .chain(
        original
            .fields
            .iter()
            .filter(|(name, _)| {
                !POSTMARK_OWN_FIELDS
                    .iter()
                    .any(|own| own.eq_ignore_ascii_case(name))
                    && !name.eq_ignore_ascii_case("Return-Path")
            })
            .map(|(name, value)| PostmarkHeader { name, value }),
    )
    .collect();
    let attachments: Vec<_> = inline_attachments(item)
        .map(|(number, attachment, data)| PostmarkAttachment {
            name: filename(attachment, number),
            content: Base64(data.clone()),
            content_type: &attachment.content_type,
            content_length: attachment.size_bytes,
            content_id: attachment.content_id.clone(),
        })
        .collect();
    let document = PostmarkMessage {
        from_name: from.name.as_deref().unwrap_or_default(),
        message_stream: "inbound",
        from: &from.address,
        from_full: PostmarkAddress::new(from),
        to: display_list(&payload.to),
        to_full: payload.to.iter().map(PostmarkAddress::new).collect(),
        cc: display_list(&payload.cc),
        cc_full: payload.cc.iter().map(PostmarkAddress::new).collect(),
        bcc: "",
        bcc_full: Vec::new(),
        reply_to: display_list(&payload.reply_to),
        subject: &payload.subject,
        date: original.get("Date").unwrap_or_default(),
        text_body: &payload.body,
        html_body: payload.html_body.as_deref().unwrap_or_default(),
        stripped_text_reply: payload.stripped_text.as_deref().unwrap_or_default(),
        tag: "",
        headers,
        attachments,
    };
    // Base64 grows octets by a third; text by its escapes, a tenth is ample.
    let octets: usize = inline_attachments(item)
        .map(|(_, _, data)| data.len())
        .sum();
    let text = payload.body.len()
        + payload.html_body.as_ref().map_or(0, String::len)
        + original.section.len();
    Bytes::from(json_bytes(
        &document,
        1024 + octets.div_ceil(3) * 4 + text + text / 10,
    ))
}

/// Compact JSON of strings, numbers and octets, which cannot fail.
fn json_bytes(value: &impl Serialize, capacity: usize) -> Vec<u8> {
    let mut json = Vec::with_capacity(capacity);
    if let Err(error) = serde_json::to_writer(&mut json, value) {
        tracing::error!(%error, "body serialisation failed");
        json.clear();
        json.extend_from_slice(b"{}");
    }
    json
}

// === multipart/form-data (SendGrid, Mailgun) ===

/// A `multipart/form-data` body in pieces: the framing and text fields
/// written into small buffers, each file's octets a shared piece.
struct Multipart {
    boundary: String,
    parts: Vec<Bytes>,
    current: Vec<u8>,
}

impl Multipart {
    fn new() -> Self {
        Self {
            boundary: format!("MailLaser-{}", random_hex::<16>()),
            parts: Vec::new(),
            current: Vec::with_capacity(4096),
        }
    }

    fn part_header(&mut self, name: &str, file: Option<(&str, &str)>) {
        self.current.extend_from_slice(b"--");
        self.current.extend_from_slice(self.boundary.as_bytes());
        self.current
            .extend_from_slice(b"\r\nContent-Disposition: form-data; name=\"");
        self.current.extend_from_slice(escape(name).as_bytes());
        self.current.push(b'"');
        if let Some((filename, content_type)) = file {
            self.current.extend_from_slice(b"; filename=\"");
            self.current.extend_from_slice(escape(filename).as_bytes());
            self.current.extend_from_slice(b"\"\r\nContent-Type: ");
            self.current
                .extend_from_slice(safe_content_type(content_type).as_bytes());
        }
        self.current.extend_from_slice(b"\r\n\r\n");
    }

    fn text(&mut self, name: &str, value: &str) {
        self.part_header(name, None);
        self.current.extend_from_slice(value.as_bytes());
        self.current.extend_from_slice(b"\r\n");
    }

    /// A text field whose value is a shared piece (made once per message).
    fn shared(&mut self, name: &str, value: Bytes) {
        self.part_header(name, None);
        self.flush();
        self.parts.push(value);
        self.current.extend_from_slice(b"\r\n");
    }

    fn file(&mut self, name: &str, filename: &str, content_type: &str, data: &Bytes) {
        self.part_header(name, Some((filename, content_type)));
        self.flush();
        self.parts.push(data.clone());
        self.current.extend_from_slice(b"\r\n");
    }

    fn flush(&mut self) {
        if !self.current.is_empty() {
            let full = std::mem::replace(&mut self.current, Vec::with_capacity(1024));
            self.parts.push(Bytes::from(full));
        }
    }

    fn finish(mut self) -> Body {
        self.current.extend_from_slice(b"--");
        self.current.extend_from_slice(self.boundary.as_bytes());
        self.current.extend_from_slice(b"--\r\n");
        self.flush();
        let content_type = format!("multipart/form-data; boundary={}", self.boundary);
        // The boundary is ASCII letters, digits and '-': always a valid value.
        let content_type = HeaderValue::from_str(&content_type)
            .unwrap_or_else(|_| HeaderValue::from_static("multipart/form-data"));
        Body::parts(content_type, self.parts)
    }
}

/// A field or file name inside a quoted parameter, as browsers write it
/// (WHATWG): `"`, CR and LF percent-encoded.
fn escape(name: &str) -> String {
    name.replace('"', "%22")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// The parsed media type, unless it holds what a header cannot.
fn safe_content_type(content_type: &str) -> &str {
    if content_type.is_empty()
        || content_type
            .chars()
            .any(|c| c.is_control() || !c.is_ascii())
    {
        "application/octet-stream"
    } else {
        content_type
    }
}

/// `N` random octets from the operating system, in hex.
fn random_hex<const N: usize>() -> String {
    let mut octets = [0u8; N];
    if getrandom::fill(&mut octets).is_err() {
        octets.fill_with(|| fastrand::u8(..));
    }
    hex(&octets)
}

fn json_text(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".into())
}

/// The text and HTML bodies as shared pieces, copied once per message.
fn text_and_html(item: &RecipientPayload) -> (Bytes, Option<Bytes>) {
    let payload = &item.payload;
    let text = item
        .shared
        .get_or_insert_with("text", || Bytes::from(payload.body.clone()));
    let html = payload.html_body.as_ref().map(|html| {
        item.shared
            .get_or_insert_with("html", || Bytes::from(html.clone()))
    });
    (text, html)
}

fn sendgrid(item: &RecipientPayload, raw: &Bytes) -> Body {
    let payload = &item.payload;
    let mut form = Multipart::new();
    // The header section as sent: a slice of the original, never copied.
    let section = item.shared.get_or_insert_with("header-section", || {
        raw.slice(..Original::new(raw).section.len())
    });
    form.shared("headers", section);
    form.text("to", &display_list(&payload.to));
    if !payload.cc.is_empty() {
        form.text("cc", &display_list(&payload.cc));
    }
    form.text("from", &display_list(&payload.from));
    form.text("subject", &payload.subject);
    let (text, html) = text_and_html(item);
    form.shared("text", text);
    if let Some(html) = html {
        form.shared("html", html);
    }
    if let Some(envelope) = &payload.envelope {
        form.text("sender_ip", &envelope.client_ip);
    }
    form.text(
        "envelope",
        &json_text(&serde_json::json!({
            "to": [payload.recipient.as_str()],
            "from": payload.sender.as_str(),
        })),
    );
    let mut info = serde_json::Map::new();
    let mut content_ids = serde_json::Map::new();
    for (number, attachment, _) in inline_attachments(item) {
        let id = format!("attachment{number}");
        let mut entry = serde_json::json!({
            "filename": filename(attachment, number),
            "name": filename(attachment, number),
            "type": attachment.content_type,
        });
        if let Some(cid) = &attachment.content_id {
            entry["content-id"] = cid.as_str().into();
            content_ids.insert(cid.clone(), id.clone().into());
        }
        info.insert(id, entry);
    }
    form.text("attachments", &info.len().to_string());
    if !info.is_empty() {
        form.text("attachment-info", &json_text(&info));
    }
    if !content_ids.is_empty() {
        form.text("content-ids", &json_text(&content_ids));
    }
    form.text(
        "charsets",
        r#"{"to":"UTF-8","cc":"UTF-8","html":"UTF-8","subject":"UTF-8","from":"UTF-8","text":"UTF-8"}"#,
    );
    for (number, attachment, data) in inline_attachments(item) {
        form.file(
            &format!("attachment{number}"),
            &filename(attachment, number),
            &attachment.content_type,
            data,
        );
    }
    form.finish()
}

fn mailgun(item: &RecipientPayload, raw: &Bytes, key: &MailgunKey) -> Body {
    let payload = &item.payload;
    let mut form = Multipart::new();
    form.text("recipient", &payload.recipient);
    form.text("sender", &payload.sender);
    // `From:` as written and every field as `[name, value]`, read once.
    let from = item.shared.get_or_insert_with("mailgun-from", || {
        let original = Original::new(raw);
        let from = original
            .get("From")
            .map_or_else(|| display_list(&payload.from), str::to_owned);
        Bytes::from(from)
    });
    form.shared("from", from);
    form.text("subject", &payload.subject);
    let (text, html) = text_and_html(item);
    let stripped = match &payload.stripped_text {
        Some(stripped) => item
            .shared
            .get_or_insert_with("stripped-text", || Bytes::from(stripped.clone())),
        None => text.clone(),
    };
    form.shared("body-plain", text);
    form.shared("stripped-text", stripped);
    if let Some(html) = html {
        form.shared("body-html", html);
    }
    let headers = item.shared.get_or_insert_with("message-headers", || {
        let original = Original::new(raw);
        let pairs: Vec<[&str; 2]> = original
            .fields
            .iter()
            .map(|(name, value)| [name.as_str(), value.as_str()])
            .collect();
        Bytes::from(json_bytes(&pairs, original.section.len() + 64))
    });
    form.shared("message-headers", headers);
    let mut content_ids = serde_json::Map::new();
    let mut count = 0;
    for (number, attachment, _) in inline_attachments(item) {
        count = number;
        if let Some(cid) = &attachment.content_id {
            content_ids.insert(format!("<{cid}>"), format!("attachment-{number}").into());
        }
    }
    form.text("attachment-count", &count.to_string());
    if !content_ids.is_empty() {
        form.text("content-id-map", &json_text(&content_ids));
    }
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
        .to_string();
    let token = random_hex::<25>();
    form.text("timestamp", &timestamp);
    form.text("token", &token);
    form.text("signature", &mailgun_signature(key, &timestamp, &token));
    for (number, attachment, data) in inline_attachments(item) {
        form.file(
            &format!("attachment-{number}"),
            &filename(attachment, number),
            &attachment.content_type,
            data,
        );
    }
    form.finish()
}

/// Mailgun's `signature`: hex HMAC-SHA256 of `timestamp` and `token`
/// under the webhook signing key.
pub fn mailgun_signature(key: &MailgunKey, timestamp: &str, token: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.0.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    hex(&mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::{MessageEnvelope, MessageExtras, Payload};

    const MESSAGE: &[u8] = b"From: \"Alice A.\" <alice@example.org>\r\nTo: Ops <ops+urgent@example.com>\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\nDate: Thu, 5 Apr 2012 16:59:01 +0200\r\nMessage-ID: <m1@example.org>\r\nX-Folded: a\r\n b\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"q\\\"1.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b--\r\n";

    fn item() -> RecipientPayload {
        let mut mail = crate::mail::parse(MESSAGE, &[]);
        let attachments = std::mem::take(&mut mail.attachments)
            .into_iter()
            .map(AttachmentField::inline)
            .collect();
        let envelope = MessageEnvelope {
            mail_from: "bounce@example.org".into(),
            rcpt_to: vec!["ops+urgent@example.com".into()],
            helo: "client".into(),
            client_ip: "192.0.2.1".into(),
            tls: None,
            authenticated_user: None,
        };
        let extras = MessageExtras {
            attachments,
            ..MessageExtras::default()
        };
        let payload = Payload::for_message(mail, envelope, extras).remove(0);
        RecipientPayload {
            payload,
            message_sha256: [0; 32],
            raw: Some(Bytes::from_static(MESSAGE)),
            shared: Arc::default(),
            transaction: Arc::default(),
        }
    }

    fn text(body: &Body) -> String {
        String::from_utf8(body.to_bytes().to_vec()).unwrap()
    }

    #[test]
    fn raw_is_the_original_octets() {
        let body = WebhookFormat::Raw.body(&item(), "k").unwrap();
        assert_eq!(body.content_type(), "message/rfc822");
        assert_eq!(&body.to_bytes()[..], MESSAGE);
        let mut without = item();
        without.raw = None;
        assert_eq!(
            WebhookFormat::Raw.body(&without, "k").unwrap_err(),
            FormatError::NoOriginal("raw")
        );
    }

    #[test]
    fn postmark_fields() {
        let body = WebhookFormat::Postmark.body(&item(), "key").unwrap();
        assert_eq!(body.content_type(), "application/json");
        let json: serde_json::Value = serde_json::from_slice(&body.to_bytes()).unwrap();
        assert_eq!(json["FromFull"]["Email"], "alice@example.org");
        assert_eq!(json["FromFull"]["Name"], "Alice A.");
        assert_eq!(json["ToFull"][0]["MailboxHash"], "urgent");
        assert_eq!(json["Subject"], "café");
        assert_eq!(json["OriginalRecipient"], "ops+urgent@example.com");
        assert_eq!(json["MailboxHash"], "urgent");
        assert_eq!(json["Date"], "Thu, 5 Apr 2012 16:59:01 +0200");
        assert_eq!(json["MessageID"], "key");
        assert_eq!(json["Headers"][0]["Name"], "Return-Path");
        assert_eq!(json["Headers"][0]["Value"], "<bounce@example.org>");
        let names: Vec<_> = json["Headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["Name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["Return-Path", "Message-ID", "X-Folded", "MIME-Version"]
        );
        assert_eq!(json["Headers"][2]["Value"], "a b");
        let attachment = &json["Attachments"][0];
        assert_eq!(attachment["Name"], "q\"1.pdf");
        assert_eq!(attachment["Content"], "JVBERi0=");
        assert_eq!(attachment["ContentType"], "application/pdf");
        assert_eq!(attachment["ContentLength"], 5);
    }

    #[test]
    fn multipart_framing_and_escaping() {
        let body = WebhookFormat::SendGrid.body(&item(), "k").unwrap();
        let content_type = body.content_type().to_str().unwrap().to_owned();
        let boundary = content_type
            .strip_prefix("multipart/form-data; boundary=")
            .unwrap();
        let text = text(&body);
        assert!(text.starts_with(&format!("--{boundary}\r\n")));
        assert!(text.ends_with(&format!("\r\n--{boundary}--\r\n")));
        assert!(text.contains(
            "name=\"attachment1\"; filename=\"q%221.pdf\"\r\nContent-Type: application/pdf\r\n\r\n%PDF-\r\n"
        ));
        assert!(
            text.contains("name=\"headers\"\r\n\r\nFrom: \"Alice A.\" <alice@example.org>\r\n")
        );
        assert!(text.contains(
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--"
        ));
        assert!(text.contains(
            "name=\"envelope\"\r\n\r\n{\"to\":[\"ops+urgent@example.com\"],\"from\":\"bounce@example.org\"}\r\n"
        ));
        // The attachment's octets are a shared piece, not a copy.
        let shared = item();
        let body = WebhookFormat::SendGrid.body(&shared, "k").unwrap();
        let Some(AttachmentDelivery::Inline { data_base64 }) =
            &shared.payload.attachments[0].delivery
        else {
            panic!("inline")
        };
        assert!(
            body.pieces()
                .any(|piece| piece.as_ptr() == data_base64.0.as_ptr())
        );
    }

    /// Two recipients of one message share the message-wide parts: only
    /// their own fields and the framing are made per delivery.
    #[test]
    fn recipients_share_the_message_wide_parts() {
        let first = item();
        let mut second = first.clone();
        second.payload.recipient = "other+x@example.com".into();
        let pieces = |body: &Body| {
            body.pieces()
                .map(|piece| piece.as_ptr())
                .collect::<Vec<_>>()
        };
        let (a, b) = (
            WebhookFormat::Postmark.body(&first, "k1").unwrap(),
            WebhookFormat::Postmark.body(&second, "k2").unwrap(),
        );
        assert_eq!(pieces(&a)[1], pieces(&b)[1], "the shared rest");
        let json: serde_json::Value = serde_json::from_slice(&b.to_bytes()).unwrap();
        assert_eq!(json["OriginalRecipient"], "other+x@example.com");
        assert_eq!(json["MailboxHash"], "x");
        assert_eq!(json["MessageID"], "k2");
        assert_eq!(json["Subject"], "café");
        for format in [
            WebhookFormat::SendGrid,
            WebhookFormat::Mailgun {
                signing_key: MailgunKey::new("k"),
            },
        ] {
            let (a, b) = (
                format.body(&first, "k1").unwrap(),
                format.body(&second, "k2").unwrap(),
            );
            let shared = pieces(&a)
                .into_iter()
                .filter(|piece| pieces(&b).contains(piece))
                .count();
            // Text, and the header section or From and message-headers,
            // and the attachment.
            assert!(shared >= 3, "{}: {shared} shared pieces", format.name());
        }
    }

    #[test]
    fn mailgun_is_signed_as_mailgun_documents() {
        // HMAC-SHA256(key="key", "1700000000token"), computed independently
        // with Python's hmac module.
        assert_eq!(
            mailgun_signature(&MailgunKey::new("key"), "1700000000", "token"),
            "2a33c3249900da6874552b261be25faacf0e833bc2d0f0f7bc4339dda5614249"
        );
        let key = MailgunKey::new("secret");
        assert_eq!(format!("{key:?}"), "MailgunKey(..)");
        let body = WebhookFormat::Mailgun { signing_key: key }
            .body(&item(), "k")
            .unwrap();
        let text = text(&body);
        assert!(text.contains("name=\"attachment-count\"\r\n\r\n1\r\n"));
        assert!(text.contains("name=\"recipient\"\r\n\r\nops+urgent@example.com\r\n"));
        assert!(text.contains("name=\"attachment-1\"; filename=\"q%221.pdf\""));
    }
}
