//! Issue 11: the payload's JSON Schema in `docs/` is the one the code
//! derives; every payload the other tests receive is validated against it
//! (`common::schema`).

use std::path::Path;

const COMMITTED: &str = "docs/payload.schema.json";

/// Regenerate with `MAIL_LASER_UPDATE_SCHEMA=1 cargo test --test it schema::`.
#[test]
fn the_committed_schema_is_the_derived_one() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(COMMITTED);
    let derived = serde_json::to_string_pretty(&mail_laser::mail::payload_schema()).unwrap() + "\n";
    if std::env::var_os("MAIL_LASER_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &derived).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == derived,
        "{COMMITTED} differs from the payload types: run \
         `MAIL_LASER_UPDATE_SCHEMA=1 cargo test --test it schema::` and commit it"
    );
}

/// The check the other tests rely on can fail: a field the schema does not
/// list, a `null`, a wrong type.
#[test]
fn the_schema_refuses_what_is_never_sent() {
    use serde_json::json;
    let mail = mail_laser::mail::parse(b"From: A <a@b.example>\r\nSubject: s\r\n\r\nbody", &[]);
    let payload = mail_laser::mail::Payload::new(mail, "a@b.example", "c@d.example");
    let mut json: serde_json::Value =
        serde_json::from_slice(&payload.to_json().to_bytes()).unwrap();
    assert_eq!(
        crate::common::schema::violations(&json),
        Vec::<String>::new()
    );
    for (field, value) in [
        ("unlisted", json!(1)),
        ("sender_name", json!(null)),
        ("attachments", json!([{"content_type": "a/b"}])),
        ("from", json!([{"name": "A"}])),
    ] {
        let mut wrong = json.clone();
        wrong[field] = value;
        assert!(
            !crate::common::schema::violations(&wrong).is_empty(),
            "{field} accepted"
        );
    }
    json.as_object_mut().unwrap().remove("subject");
    assert!(!crate::common::schema::violations(&json).is_empty());
}

/// The examples in `docs/payload.md` are what the parser gives: each
/// message block followed by a JSON block is parsed (with
/// `MAIL_LASER_HEADER_PREFIX=X-App-`) and its message fields compared; the
/// envelope fields of an example are its own. Each example validates.
#[test]
fn the_documented_examples_are_what_the_parser_gives() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/payload.md");
    let text = std::fs::read_to_string(path).unwrap();
    let blocks: Vec<(&str, String)> = text
        .split("```")
        .skip(1)
        .step_by(2)
        .map(|block| {
            let (kind, body) = block.split_once('\n').unwrap_or((block, ""));
            (kind.trim(), body.to_owned())
        })
        .collect();
    let mut checked = 0;
    for pair in blocks.windows(2) {
        let [(message_kind, message), (json_kind, json)] = pair else {
            continue;
        };
        if !message_kind.is_empty() || *json_kind != "json" {
            continue;
        }
        let Ok(serde_json::Value::Object(documented)) = serde_json::from_str(json) else {
            continue;
        };
        let raw = message.replace('\n', "\r\n");
        let parsed = mail_laser::mail::parse(raw.as_bytes(), &["X-App-".to_owned()]);
        let sender = documented["sender"].as_str().unwrap_or_default().to_owned();
        let recipient = documented["recipient"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let payload = mail_laser::mail::Payload::new(parsed, &sender, &recipient);
        let mut produced: serde_json::Value =
            serde_json::from_slice(&payload.to_json().to_bytes()).unwrap();
        let mut documented = serde_json::Value::Object(documented);
        for own in ["received_at", "envelope"] {
            documented.as_object_mut().unwrap().remove(own);
            produced.as_object_mut().unwrap().remove(own);
        }
        assert_eq!(produced, documented, "docs/payload.md example:\n{message}");
        crate::common::schema::assert_valid(&serde_json::from_str(json).unwrap());
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} examples found");
}

/// The `all_headers` fragment in `docs/payload.md` is what
/// `MAIL_LASER_HEADERS=all` gives for the multipart example's message.
#[test]
fn the_documented_all_headers_are_what_the_parser_gives() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/payload.md");
    let text = std::fs::read_to_string(path).unwrap();
    let blocks: Vec<&str> = text.split("```").skip(1).step_by(2).collect();
    let message = blocks
        .iter()
        .find_map(|block| block.strip_prefix("\nFrom: \"Doe, John\""))
        .map(|rest| format!("From: \"Doe, John\"{rest}").replace('\n', "\r\n"))
        .expect("the multipart example");
    let fragment = blocks
        .iter()
        .find_map(|block| block.strip_prefix("json\n  \"all_headers\": "))
        .expect("an all_headers example");
    let documented: serde_json::Value = serde_json::from_str(fragment).unwrap();
    let budget = mail_laser::mail::ParseBudget::for_size(message.len());
    let parsed =
        mail_laser::mail::parse_unrendered(message.as_bytes(), &[], true, &budget).render(&budget);
    let produced: Vec<serde_json::Value> = parsed
        .all_headers
        .iter()
        .map(|(name, value)| serde_json::json!({"name": name, "value": value}))
        .collect();
    assert_eq!(serde_json::Value::Array(produced), documented);
}
