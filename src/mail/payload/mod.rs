//! [`Payload`]: the JSON document POSTed to the webhook (`docs/payload.md`), one per
//! accepted recipient, built from a [`ParsedMail`] and the SMTP envelope.
//!
//! Optional fields are left out rather than sent as `null`, and the fields
//! appear in the order of `docs/payload.md`, so consumers and signatures see the same
//! bytes for the same message.
//!
//! The recipients of one message share everything but `sender` and
//! `recipient`, which come first in the document: the rest is parsed,
//! stored and serialised once per message ([`PayloadJson`]), so a message to
//! 100 recipients costs its size about once, not 100 times.

mod attachment;
mod auth;
mod headers;
mod json;
mod schema;

use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use schemars::JsonSchema;
use serde::ser::Serialize;

pub use attachment::{AttachmentDelivery, AttachmentField, Base64, StoredLocation};
pub use auth::{
    ArcFields, AuthFields, DkimSignature, DmarcFields, DmarcPolicy, DmarcResult, SignatureResult,
    SpfCheck, SpfFields, SpfResult,
};
pub use headers::Headers;
pub use json::PayloadJson;
pub use schema::payload_schema;

use super::parse::{Mailbox, ParsedMail};

/// The webhook request body for one recipient.
#[derive(Debug, Clone)]
pub struct Payload {
    /// MAIL FROM address; `""` for the null reverse-path.
    pub sender: String,
    /// The accepted RCPT address, exactly as the client wrote it.
    pub recipient: String,
    /// The `tag` of a `local+tag@domain` recipient
    /// (`MAIL_LASER_PLUS_ADDRESSING`).
    pub recipient_tag: Option<String>,
    message: Arc<SharedMessage>,
}

/// The fields every recipient of a message shares, in document order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, JsonSchema)]
pub struct MessageFields {
    pub subject: String,
    pub body: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub html_body: Option<String>,
    /// The new text of a reply: `body` without quoted history, reply
    /// headers and signature; only when something was stripped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stripped_text: Option<String>,
    #[serde(skip_serializing_if = "Headers::is_empty")]
    pub headers: Headers,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<Mailbox>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<Mailbox>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cc: Vec<Mailbox>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reply_to: Vec<Mailbox>,
    /// `Date:` as RFC 3339 in UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
    /// Every top-level header (`MAIL_LASER_HEADERS=all`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub all_headers: Vec<NamedHeader>,
    /// When MailLaser received the end of the message, RFC 3339 in UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envelope: Option<MessageEnvelope>,
    /// The DMARC result (`MAIL_LASER_DMARC_MODE` monitor or enforce).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dmarc_result: Option<DmarcResult>,
    /// The domain of `From:`, only when DMARC passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authenticated_from: Option<String>,
    /// Every authentication check and its result (`docs/authentication.md`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthFields>,
    /// The original message, base64 (`MAIL_LASER_INCLUDE_RAW`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_base64: Option<String>,
    /// Where the original message was stored instead (`MAIL_LASER_INCLUDE_RAW`
    /// in `s3` mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_presigned_url: Option<String>,
    /// Every MIME leaf that is not `body` or `html_body`, in message order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<AttachmentField>,
    /// The message was cut short by its parse budget: the fields hold what
    /// was found until then. Present only when `true`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub parse_truncated: bool,
}

/// One header of `all_headers`: `{"name": …, "value": …}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, JsonSchema)]
pub struct NamedHeader {
    pub name: String,
    pub value: String,
}

/// The SMTP side of a message: what the client said, not what the message
/// says about itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, JsonSchema)]
pub struct MessageEnvelope {
    /// The `MAIL FROM` address as written; `""` for the null path.
    pub mail_from: String,
    /// Every accepted `RCPT TO` address, as written.
    pub rcpt_to: Vec<String>,
    /// The `EHLO`/`HELO` name.
    pub helo: String,
    pub client_ip: String,
    /// The TLS the message came over; left out for plain SMTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<EnvelopeTls>,
    /// The user name the client authenticated as with SMTP AUTH
    /// (`MAIL_LASER_AUTH`); left out when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authenticated_user: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, JsonSchema)]
pub struct EnvelopeTls {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: String,
    /// The cipher suite's IANA name, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
}

#[derive(Debug)]
struct SharedMessage {
    fields: MessageFields,
    /// `"subject":…}`: the serialised fields, made once for all recipients.
    json: OnceLock<Bytes>,
}

/// What the hand-off adds to a parsed message: the SMTP side, and the
/// attachments and raw message with their delivery settled.
#[derive(Debug, Clone, Default)]
pub struct MessageExtras {
    pub envelope: Option<MessageEnvelope>,
    pub received_at: Option<String>,
    /// Used instead of the parsed message's own attachments, which the
    /// caller took out to deliver them.
    pub attachments: Vec<AttachmentField>,
    /// Where the original message was stored (`raw_url`).
    pub raw: Option<StoredLocation>,
    /// The authentication results, when `MAIL_LASER_DMARC_MODE` is not `off`.
    pub auth: Option<AuthFields>,
}

impl SharedMessage {
    fn new(mail: ParsedMail, extras: MessageExtras) -> Arc<Self> {
        let MessageExtras {
            envelope,
            received_at,
            attachments,
            raw,
            auth,
        } = extras;
        let (raw_url, raw_presigned_url) =
            raw.map_or((None, None), |raw| (Some(raw.url), raw.presigned_url));
        Arc::new(Self {
            fields: MessageFields {
                subject: mail.subject,
                body: mail.body,
                sender_name: mail.sender_name,
                html_body: mail.html_body,
                stripped_text: mail.stripped_text,
                headers: Headers::from_pairs(mail.headers),
                message_id: mail.message_id,
                from: mail.from,
                to: mail.to,
                cc: mail.cc,
                reply_to: mail.reply_to,
                date: mail.date,
                in_reply_to: mail.in_reply_to,
                references: mail.references,
                all_headers: mail
                    .all_headers
                    .into_iter()
                    .map(|(name, value)| NamedHeader { name, value })
                    .collect(),
                received_at,
                envelope,
                dmarc_result: auth.as_ref().map(|auth| auth.dmarc.result),
                authenticated_from: auth
                    .as_ref()
                    .and_then(AuthFields::authenticated_from)
                    .map(str::to_owned),
                auth,
                raw_base64: mail.raw_base64,
                raw_url,
                raw_presigned_url,
                attachments,
                parse_truncated: mail.truncated,
            },
            json: OnceLock::new(),
        })
    }
}

impl Payload {
    /// Payload for the one recipient of a message, its attachments inline.
    pub fn new(mut mail: ParsedMail, sender: &str, recipient: &str) -> Self {
        let attachments = std::mem::take(&mut mail.attachments)
            .into_iter()
            .map(AttachmentField::inline)
            .collect();
        let extras = MessageExtras {
            attachments,
            ..MessageExtras::default()
        };
        Self {
            sender: sender.to_owned(),
            recipient: recipient.to_owned(),
            recipient_tag: None,
            message: SharedMessage::new(mail, extras),
        }
    }

    /// One payload per recipient of `envelope`, all sharing the message's
    /// fields (moved out of `mail`, never copied). `mail.attachments` are
    /// not read: `attachments` are what the caller made of them.
    pub fn for_message(
        mail: ParsedMail,
        envelope: MessageEnvelope,
        extras: MessageExtras,
    ) -> Vec<Self> {
        let sender = envelope.mail_from.clone();
        let recipients = envelope.rcpt_to.clone();
        let extras = MessageExtras {
            envelope: Some(envelope),
            ..extras
        };
        let message = SharedMessage::new(mail, extras);
        recipients
            .into_iter()
            .map(|recipient| Self {
                sender: sender.clone(),
                recipient,
                recipient_tag: None,
                message: message.clone(),
            })
            .collect()
    }

    /// Whether some attachment carries its octets or their location.
    pub fn has_attachment_delivery(&self) -> bool {
        self.message
            .fields
            .attachments
            .iter()
            .any(|attachment| attachment.delivery.is_some())
    }

    /// Whether [`Payload::view`] would change anything.
    pub fn differs_in_view(
        &self,
        header_prefixes: Option<&[String]>,
        describe_attachments: bool,
    ) -> bool {
        header_prefixes.is_some_and(|prefixes| !self.message.fields.headers.all_match(prefixes))
            || (describe_attachments && self.has_attachment_delivery())
    }

    /// A route's view of this payload: `headers` narrowed to
    /// `header_prefixes` (a route's `header_prefix`), and the attachments
    /// described only (`attachments = "metadata"`: no `delivery`). The
    /// message's fields are copied once here; share the result's message
    /// between recipients with [`Payload::with_message_of`].
    #[must_use]
    pub fn view(&self, header_prefixes: Option<&[String]>, describe_attachments: bool) -> Self {
        let mut fields = self.message.fields.clone();
        if let Some(prefixes) = header_prefixes {
            fields.headers = fields.headers.matching(prefixes);
        }
        if describe_attachments {
            for attachment in &mut fields.attachments {
                attachment.delivery = None;
            }
        }
        Self {
            message: Arc::new(SharedMessage {
                fields,
                json: OnceLock::new(),
            }),
            ..self.clone()
        }
    }

    /// This payload's envelope (sender, recipient, tag) with `other`'s
    /// message, shared, not copied.
    #[must_use]
    pub fn with_message_of(&self, other: &Self) -> Self {
        Self {
            message: other.message.clone(),
            ..self.clone()
        }
    }

    /// Bytes the message's fields take (shared by every recipient's payload).
    pub fn size_in_memory(&self) -> usize {
        let fields = &self.message.fields;
        let optional = |value: &Option<String>| value.as_ref().map_or(0, String::len);
        fields.subject.len()
            + fields.body.len()
            + optional(&fields.sender_name)
            + optional(&fields.html_body)
            + optional(&fields.stripped_text)
            + optional(&fields.message_id)
            + fields
                .headers
                .iter()
                .map(|(name, value)| name.len() + value.len())
                .sum::<usize>()
            + [&fields.from, &fields.to, &fields.cc, &fields.reply_to]
                .into_iter()
                .flatten()
                .map(|mailbox| optional(&mailbox.name) + mailbox.address.len())
                .sum::<usize>()
            + fields
                .all_headers
                .iter()
                .map(|header| header.name.len() + header.value.len())
                .sum::<usize>()
            + optional(&fields.raw_base64)
            + optional(&fields.raw_url)
            + optional(&fields.raw_presigned_url)
            + fields
                .attachments
                .iter()
                .map(AttachmentField::size_in_memory)
                .sum::<usize>()
            + optional(&fields.date)
            + optional(&fields.authenticated_from)
            + fields.auth.as_ref().map_or(0, AuthFields::size_in_memory)
            + optional(&fields.in_reply_to)
            + fields.references.iter().map(String::len).sum::<usize>()
    }

    /// The length of the shared JSON, closely above for real mail, so it is
    /// written with few reallocations and the attachments' base64 with none.
    fn json_len_estimate(&self) -> usize {
        let fields = &self.message.fields;
        let attachments: usize = fields
            .attachments
            .iter()
            .map(AttachmentField::json_len_bound)
            .sum();
        let others = self.size_in_memory()
            - fields
                .attachments
                .iter()
                .map(AttachmentField::size_in_memory)
                .sum::<usize>();
        // Text grows by escaping (a quote, a line break): a tenth is ample.
        256 + others + others / 10 + attachments
    }

    /// The request body: compact UTF-8 JSON, in two pieces of which the
    /// second is shared with every other recipient of the message.
    pub fn to_json(&self) -> PayloadJson {
        let tail = self
            .message
            .json
            .get_or_init(|| {
                // `{"subject":…}` without its `{`: the head ends in a comma.
                let json = to_vec(&self.message.fields, self.json_len_estimate());
                Bytes::from(json).slice(1..)
            })
            .clone();
        let mut head = to_vec(
            &Envelope {
                sender: &self.sender,
                recipient: &self.recipient,
                recipient_tag: self.recipient_tag.as_deref(),
            },
            64 + self.sender.len() + self.recipient.len(),
        );
        // `{"sender":…,"recipient":…}` → `{"sender":…,"recipient":…,`
        if let Some(close) = head.last_mut() {
            *close = b',';
        }
        PayloadJson::new(Bytes::from(head), tail)
    }
}

impl Deref for Payload {
    type Target = MessageFields;

    fn deref(&self) -> &MessageFields {
        &self.message.fields
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.sender == other.sender
            && self.recipient == other.recipient
            && self.recipient_tag == other.recipient_tag
            && self.message.fields == other.message.fields
    }
}

impl Eq for Payload {}

#[derive(serde::Serialize)]
struct Envelope<'a> {
    sender: &'a str,
    recipient: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    recipient_tag: Option<&'a str>,
}

/// Compact JSON of a value made of strings, numbers and base64 octets,
/// which cannot fail to serialise.
fn to_vec(value: &impl Serialize, capacity: usize) -> Vec<u8> {
    let mut json = Vec::with_capacity(capacity);
    if let Err(error) = serde_json::to_writer(&mut json, value) {
        tracing::error!(%error, "payload serialisation failed");
        json.clear();
        json.extend_from_slice(b"{}");
    }
    json
}

#[cfg(test)]
mod tests {
    use super::attachment::hex;
    use super::*;
    use crate::mail::parse;
    use serde_json::{Value, json};
    use sha2::{Digest, Sha256};

    fn keys(json: &[u8]) -> Vec<String> {
        match serde_json::from_slice::<Value>(json).unwrap() {
            Value::Object(map) => map.keys().cloned().collect(),
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn minimal_payload_omits_optional_fields() {
        let mail = parse(b"\r\nhello\r\n", &[]);
        let payload = Payload::new(mail, "", "Ops@Example.com");
        let json = payload.to_json().to_bytes().to_vec();
        let mut found = keys(&json);
        found.sort();
        assert_eq!(found, ["body", "recipient", "sender", "subject"]);
        let value: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            value,
            json!({"sender": "", "recipient": "Ops@Example.com", "subject": "", "body": "hello\r\n"})
        );
        assert!(!String::from_utf8(json).unwrap().contains("null"));
    }

    #[test]
    fn full_payload_values() {
        let raw = concat!(
            "From: \"Doe, John\" <j@x.example>\r\n",
            "Subject: Hi\r\n",
            "X-Custom-Ticket: 42\r\n",
            "X-Custom-Prio: high\r\n",
            "Message-ID: <m1@x.example>\r\n",
            "Content-Type: multipart/alternative; boundary=b\r\n",
            "\r\n",
            "--b\r\nContent-Type: text/plain\r\n\r\nplain\r\n",
            "--b\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n",
            "--b--\r\n",
        );
        let mail = parse(raw.as_bytes(), &["X-Custom-".to_owned()]);
        let payload = Payload::new(mail, "j@x.example", "to@y.example");
        let text = String::from_utf8(payload.to_json().to_bytes().to_vec()).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            json!({
                "sender": "j@x.example",
                "recipient": "to@y.example",
                "subject": "Hi",
                "body": "plain",
                "sender_name": "Doe, John",
                "html_body": "<p>html</p>",
                "headers": {"X-Custom-Ticket": "42", "X-Custom-Prio": "high"},
                "message_id": "<m1@x.example>",
                "from": [{"name": "Doe, John", "address": "j@x.example"}],
            })
        );
        // Field order as in `docs/payload.md`, headers in message order.
        let order = [
            "\"sender\"",
            "\"recipient\"",
            "\"subject\"",
            "\"body\"",
            "\"sender_name\"",
            "\"html_body\"",
            "\"headers\"",
            "\"X-Custom-Ticket\"",
            "\"X-Custom-Prio\"",
            "\"message_id\"",
            "\"from\"",
        ];
        let positions: Vec<usize> = order.iter().map(|k| text.find(k).unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
    }

    #[test]
    fn duplicate_header_first_occurrence_wins() {
        let raw = concat!(
            "X-App-Id: first\r\n",
            "x-app-id: second\r\n",
            "X-APP-ID: third\r\n",
            "X-App-Other: o\r\n",
            "\r\n",
            "body\r\n",
        );
        let mail = parse(raw.as_bytes(), &["x-app".to_owned()]);
        // The parse keeps every occurrence; the payload keeps the first.
        assert_eq!(mail.headers.len(), 4);
        let payload = Payload::new(mail, "a@b", "c@d");
        assert_eq!(payload.headers.len(), 2);
        assert_eq!(payload.headers.get("X-APP-ID"), Some("first"));
        assert_eq!(
            payload.headers.iter().collect::<Vec<_>>(),
            [("X-App-Id", "first"), ("X-App-Other", "o")]
        );
        let value: Value = serde_json::from_slice(&payload.to_json().to_bytes()).unwrap();
        assert_eq!(
            value["headers"],
            json!({"X-App-Id": "first", "X-App-Other": "o"})
        );
    }

    /// Finding 5 (issue 9): a message to many recipients is serialised
    /// once; each recipient adds only its own head.
    #[test]
    fn recipients_share_one_serialised_message() {
        let mail = parse(b"Subject: s\r\n\r\nbody", &[]);
        let envelope = MessageEnvelope {
            mail_from: "a@b".into(),
            rcpt_to: vec!["c@d".into(), "e@f".into()],
            helo: "client.example".into(),
            client_ip: "192.0.2.1".into(),
            tls: None,
            authenticated_user: None,
        };
        let extras = MessageExtras {
            received_at: Some("2026-12-06T21:08:04Z".into()),
            ..MessageExtras::default()
        };
        let payloads = Payload::for_message(mail, envelope, extras);
        let (first, second) = (payloads[0].to_json(), payloads[1].to_json());
        let [_, first_tail] = first.pieces();
        let [_, second_tail] = second.pieces();
        assert_eq!(first_tail.as_ptr(), second_tail.as_ptr(), "one shared tail");
        let value: Value = serde_json::from_slice(&second.to_bytes()).unwrap();
        assert_eq!(
            value,
            json!({
                "sender": "a@b",
                "recipient": "e@f",
                "subject": "s",
                "body": "body",
                "received_at": "2026-12-06T21:08:04Z",
                "envelope": {
                    "mail_from": "a@b",
                    "rcpt_to": ["c@d", "e@f"],
                    "helo": "client.example",
                    "client_ip": "192.0.2.1"
                }
            })
        );
        assert_eq!(first.len(), first.to_bytes().len());
    }

    #[test]
    fn empty_headers_are_omitted() {
        let mail = parse(b"X-Custom-A: 1\r\n\r\nbody", &[]);
        let payload = Payload::new(mail, "a@b", "c@d");
        assert!(payload.headers.is_empty());
        assert!(!keys(&payload.to_json().to_bytes()).contains(&"headers".to_owned()));
    }

    /// Issue 11: attachments serialise in message order with their
    /// description; inline octets as standard base64, streamed in pieces
    /// longer than one chunk; the document needs no reallocation.
    #[test]
    fn attachments_inline_and_described() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 256) as u8).collect();
        let raw = format!(
            "Subject: a\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
             --b\r\nContent-Type: application/octet-stream\r\n\
             Content-Disposition: attachment; filename=\"d.bin\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--b--\r\n",
            data_encoding::BASE64_MIME.encode(&data)
        );
        let mail = parse(raw.as_bytes(), &[]);
        let described = AttachmentField::describe(&mail.attachments[0]);
        let payload = Payload::new(mail, "a@b", "c@d");
        let value: Value = serde_json::from_slice(&payload.to_json().to_bytes()).unwrap();
        let sha256 = hex(&Sha256::digest(&data));
        assert_eq!(
            value["attachments"],
            json!([{
                "filename": "d.bin",
                "content_type": "application/octet-stream",
                "size_bytes": 10_000,
                "disposition": "attachment",
                "sha256": sha256,
                "delivery": {"data_base64": data_encoding::BASE64.encode(&data)},
            }])
        );
        let described = serde_json::to_value(&described).unwrap();
        assert_eq!(described["sha256"], json!(sha256));
        assert!(described.get("delivery").is_none(), "metadata: no octets");
        let json = payload.to_json();
        let [_, tail] = json.pieces();
        assert!(tail.len() <= payload.json_len_estimate(), "one allocation");
    }
}
