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

use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde::ser::{Serialize, SerializeMap, Serializer};

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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MessageFields {
    pub subject: String,
    pub body: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub html_body: Option<String>,
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
    /// The original message, base64 (`MAIL_LASER_INCLUDE_RAW`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_base64: Option<String>,
    /// The message was cut short by its parse budget: the fields hold what
    /// was found until then. Present only when `true`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub parse_truncated: bool,
}

/// One header of `all_headers`: `{"name": …, "value": …}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NamedHeader {
    pub name: String,
    pub value: String,
}

/// The SMTP side of a message: what the client said, not what the message
/// says about itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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

impl SharedMessage {
    fn new(
        mail: ParsedMail,
        envelope: Option<MessageEnvelope>,
        received_at: Option<String>,
    ) -> Arc<Self> {
        Arc::new(Self {
            fields: MessageFields {
                subject: mail.subject,
                body: mail.body,
                sender_name: mail.sender_name,
                html_body: mail.html_body,
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
                raw_base64: mail.raw_base64,
                parse_truncated: mail.truncated,
            },
            json: OnceLock::new(),
        })
    }
}

impl Payload {
    /// Payload for the one recipient of a message.
    pub fn new(mail: ParsedMail, sender: &str, recipient: &str) -> Self {
        Self {
            sender: sender.to_owned(),
            recipient: recipient.to_owned(),
            recipient_tag: None,
            message: SharedMessage::new(mail, None, None),
        }
    }

    /// One payload per accepted recipient of `envelope`, all sharing the
    /// message's fields (moved out of `mail`, never copied).
    pub fn for_message(
        mail: ParsedMail,
        envelope: MessageEnvelope,
        received_at: Option<String>,
    ) -> Vec<Self> {
        let sender = envelope.mail_from.clone();
        let recipients = envelope.rcpt_to.clone();
        let message = SharedMessage::new(mail, Some(envelope), received_at);
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

    /// Bytes the message's fields take (shared by every recipient's payload).
    pub fn size_in_memory(&self) -> usize {
        let fields = &self.message.fields;
        let optional = |value: &Option<String>| value.as_ref().map_or(0, String::len);
        fields.subject.len()
            + fields.body.len()
            + optional(&fields.sender_name)
            + optional(&fields.html_body)
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
            + optional(&fields.date)
            + optional(&fields.in_reply_to)
            + fields.references.iter().map(String::len).sum::<usize>()
    }

    /// The request body: compact UTF-8 JSON, in two pieces of which the
    /// second is shared with every other recipient of the message.
    pub fn to_json(&self) -> PayloadJson {
        let tail = self
            .message
            .json
            .get_or_init(|| {
                // `{"subject":…}` without its `{`: the head ends in a comma.
                let json = to_vec(&self.message.fields, 256 + self.message.fields.body.len());
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
        PayloadJson {
            head: Bytes::from(head),
            tail,
        }
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

/// Compact JSON of a value whose keys and values are all strings, which
/// cannot fail to serialise.
fn to_vec(value: &impl Serialize, capacity: usize) -> Vec<u8> {
    let mut json = Vec::with_capacity(capacity);
    if let Err(error) = serde_json::to_writer(&mut json, value) {
        tracing::error!(%error, "payload serialisation failed");
        json.clear();
        json.extend_from_slice(b"{}");
    }
    json
}

/// A serialised payload: the recipient's own head and the message's shared
/// tail, which together are the JSON document. Cheap to clone; written,
/// signed and sent piece by piece, never joined unless asked. Equal when
/// the documents are, however they are cut.
#[derive(Debug, Clone)]
pub struct PayloadJson {
    head: Bytes,
    tail: Bytes,
}

impl PayloadJson {
    /// A document kept whole (read back from the spool).
    pub fn whole(json: Bytes) -> Self {
        Self {
            head: json,
            tail: Bytes::new(),
        }
    }

    /// Length in bytes of the whole document.
    pub fn len(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pieces, in order.
    pub fn pieces(&self) -> [&Bytes; 2] {
        [&self.head, &self.tail]
    }

    /// The document in one piece (a copy, unless it is one piece already).
    pub fn to_bytes(&self) -> Bytes {
        if self.tail.is_empty() {
            return self.head.clone();
        }
        let mut whole = Vec::with_capacity(self.len());
        whole.extend_from_slice(&self.head);
        whole.extend_from_slice(&self.tail);
        Bytes::from(whole)
    }
}

impl PartialEq for PayloadJson {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.to_bytes() == other.to_bytes()
    }
}

impl Eq for PayloadJson {}

impl From<Bytes> for PayloadJson {
    fn from(json: Bytes) -> Self {
        Self::whole(json)
    }
}

/// Forwarded headers; serialises as a JSON object in message order.
///
/// JSON object keys should be unique, so when a name repeats
/// (ASCII case-insensitively) the **first occurrence wins** and later ones
/// are dropped; the key keeps the spelling of that first occurrence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// Collects `(name, value)` pairs, keeping the first of each name.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut seen = std::collections::HashSet::new();
        Self(
            pairs
                .into_iter()
                .filter(|(name, _)| seen.insert(name.to_ascii_lowercase()))
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Value of `name`, compared ASCII case-insensitively.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// `(name, value)` pairs in message order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }
}

impl Serialize for Headers {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::parse;
    use serde_json::{Value, json};

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
        };
        let payloads = Payload::for_message(mail, envelope, Some("2026-12-06T21:08:04Z".into()));
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
}
