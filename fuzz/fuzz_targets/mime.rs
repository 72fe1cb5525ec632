//! Raw message → `mail::parse` → `Payload` → JSON, as the stack's handoff
//! does for every accepted message.
//!
//! Input: the message octets as received after DATA.
//!
//! Checks: no panic (the parser promises a best-effort result for any
//! octets, with bounded stack, MIME depth and HTML time); the fields are as
//! `docs/payload.md` describes them (trimmed, optional ones absent rather
//! than empty, forwarded headers only under a configured prefix); the JSON
//! is valid and carries exactly those fields.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mail_laser::mail::{self, Payload};
use serde_json::Value;

const SENDER: &str = "sender@example.com";
const RECIPIENT: &str = "\"john doe\"@example.com";

fuzz_target!(|data: &[u8]| {
    // An empty prefix must forward nothing.
    let prefixes = ["X-".to_owned(), "list-".to_owned(), String::new()];
    let parsed = mail::parse(data, &prefixes);

    assert_eq!(parsed.subject.trim(), parsed.subject, "untrimmed subject");
    for (name, field) in [
        ("sender_name", &parsed.sender_name),
        ("message_id", &parsed.message_id),
    ] {
        if let Some(value) = field {
            assert!(!value.is_empty(), "{name} present but empty");
            assert_eq!(value.trim(), value, "untrimmed {name}");
        }
    }
    for (name, value) in &parsed.headers {
        let lower = name.to_ascii_lowercase();
        assert!(
            lower.starts_with("x-") || lower.starts_with("list-"),
            "header {name:?} forwarded without a prefix"
        );
        assert_eq!(value.trim(), value, "untrimmed header {name}");
    }

    let payload = Payload::new(parsed.clone(), SENDER, RECIPIENT);
    let json = payload.to_json();
    assert_eq!(json.len(), json.to_bytes().len());
    let value: Value = serde_json::from_slice(&json.to_bytes()).expect("valid JSON");
    let object = value.as_object().expect("a JSON object");

    let string = |key: &str| object.get(key).map(|v| v.as_str().expect("a string field"));
    assert_eq!(string("sender"), Some(SENDER));
    assert_eq!(string("recipient"), Some(RECIPIENT));
    assert_eq!(string("subject"), Some(parsed.subject.as_str()));
    assert_eq!(string("body"), Some(parsed.body.as_str()));
    assert_eq!(string("sender_name"), parsed.sender_name.as_deref());
    assert_eq!(string("html_body"), parsed.html_body.as_deref());
    assert_eq!(string("message_id"), parsed.message_id.as_deref());

    let forwarded: Vec<(&str, &str)> = payload.headers.iter().collect();
    match object.get("headers") {
        None => assert!(forwarded.is_empty(), "headers left out"),
        Some(headers) => {
            let headers = headers.as_object().expect("headers is an object");
            assert!(!headers.is_empty(), "empty headers object");
            assert_eq!(headers.len(), forwarded.len());
            for (name, value) in forwarded {
                assert_eq!(headers.get(name).and_then(Value::as_str), Some(value));
            }
        }
    }
    let known = [
        "sender",
        "recipient",
        "recipient_tag",
        "subject",
        "body",
        "sender_name",
        "html_body",
        "stripped_text",
        "headers",
        "message_id",
        "from",
        "to",
        "cc",
        "reply_to",
        "date",
        "in_reply_to",
        "references",
        "all_headers",
        "received_at",
        "envelope",
        "dmarc_result",
        "authenticated_from",
        "auth",
        "raw_base64",
        "raw_url",
        "raw_presigned_url",
        "attachments",
        "parse_truncated",
    ];
    // Every attachment carries its octets, base64, decoding to its size
    // and hash.
    let attachments = object.get("attachments").map_or(&[][..], |list| {
        list.as_array().expect("attachments is a list").as_slice()
    });
    assert_eq!(attachments.len(), parsed.attachments.len());
    for (entry, attachment) in attachments.iter().zip(&parsed.attachments) {
        let text = entry["delivery"]["data_base64"].as_str().expect("inline octets");
        let data = data_encoding::BASE64
            .decode(text.as_bytes())
            .expect("standard base64");
        assert_eq!(data, attachment.data);
        assert_eq!(entry["size_bytes"].as_u64(), Some(data.len() as u64));
        assert_eq!(entry["sha256"].as_str().map(str::len), Some(64));
    }
    for key in ["from", "to", "cc", "reply_to", "references"] {
        if let Some(list) = object.get(key) {
            let list = list.as_array().expect("a list");
            assert!(!list.is_empty(), "{key} present but empty");
        }
    }
    if let Some(date) = object.get("date") {
        let date = date.as_str().expect("a string");
        assert!(
            date.len() == 20 && date.ends_with('Z') && date.as_bytes()[10] == b'T',
            "date {date:?} is not RFC 3339 UTC"
        );
    }
    assert_eq!(
        object.get("parse_truncated"),
        parsed.truncated.then_some(&Value::Bool(true)),
        "parse_truncated present exactly when true"
    );
    for key in object.keys() {
        assert!(known.contains(&key.as_str()), "unknown field {key}");
    }
});
