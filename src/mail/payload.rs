//! [`Payload`]: the JSON document POSTed to the webhook (`docs/payload.md`), one per
//! accepted recipient, built from a [`ParsedMail`] and the SMTP envelope.
//!
//! Optional fields are left out rather than sent as `null`, and the fields
//! appear in the order of `docs/payload.md`, so consumers and signatures see the same
//! bytes for the same message.

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::parse::ParsedMail;

/// The webhook request body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Payload {
    /// MAIL FROM address; `""` for the null reverse-path.
    pub sender: String,
    /// The accepted RCPT address, exactly as the client wrote it.
    pub recipient: String,
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
    /// The message was cut short by its parse budget: the fields hold what
    /// was found until then. Present only when `true`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub parse_truncated: bool,
}

impl Payload {
    /// Payload for one recipient of a parsed message. Takes the message by
    /// value so the (possibly large) bodies are moved, not copied: clone it
    /// for all recipients but the last.
    pub fn new(mail: ParsedMail, sender: &str, recipient: &str) -> Self {
        Self {
            sender: sender.to_owned(),
            recipient: recipient.to_owned(),
            subject: mail.subject,
            body: mail.body,
            sender_name: mail.sender_name,
            html_body: mail.html_body,
            headers: Headers::from_pairs(mail.headers),
            message_id: mail.message_id,
            parse_truncated: mail.truncated,
        }
    }

    /// The request body: compact UTF-8 JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let capacity = 256
            + self.subject.len()
            + self.body.len()
            + self.html_body.as_ref().map_or(0, String::len);
        let mut json = Vec::with_capacity(capacity);
        if let Err(error) = serde_json::to_writer(&mut json, self) {
            // Unreachable: every key is a string and every value a string.
            tracing::error!(%error, "payload serialisation failed");
            json.clear();
            json.extend_from_slice(b"{}");
        }
        json
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
        let json = payload.to_json();
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
        let text = String::from_utf8(payload.to_json()).unwrap();
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
        let value: Value = serde_json::from_slice(&payload.to_json()).unwrap();
        assert_eq!(
            value["headers"],
            json!({"X-App-Id": "first", "X-App-Other": "o"})
        );
    }

    #[test]
    fn empty_headers_are_omitted() {
        let mail = parse(b"X-Custom-A: 1\r\n\r\nbody", &[]);
        let payload = Payload::new(mail, "a@b", "c@d");
        assert!(payload.headers.is_empty());
        assert!(!keys(&payload.to_json()).contains(&"headers".to_owned()));
    }
}
