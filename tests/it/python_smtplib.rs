//! Python's smtplib as a third independent client: `send_message` with an
//! `email.message.EmailMessage`, as applications send mail. The script is
//! `tests/python/send_message.py`; it prints what smtplib saw as JSON and the
//! SMTP dialogue on stderr.

use std::path::Path;

use crate::common::{OTHER_TARGET, TARGET, TestServer};

struct Sent {
    /// The script's JSON report.
    report: serde_json::Value,
    /// smtplib's debug output: the dialogue as smtplib wrote and read it.
    dialogue: String,
}

async fn send_message(python3: &Path, server: &TestServer, case: &str) -> Sent {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/send_message.py");
    let output = tokio::process::Command::new(python3)
        .arg(script)
        .arg(server.smtp.port().to_string())
        .arg(case)
        .output()
        .await
        .expect("python3 runs");
    let dialogue = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "send_message.py {case} exited with {}:\n{dialogue}",
        output.status
    );
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("bad report ({error}):\n{dialogue}"));
    Sent { report, dialogue }
}

#[tokio::test]
async fn smtputf8_sender_and_headers() {
    let [python3] = require_tool!("python3");
    let server = TestServer::start(&[]).await;
    let sent = send_message(&python3, &server, "utf8").await;
    assert_eq!(sent.report["refused"], serde_json::json!({}));
    let features = sent.report["features"].to_string();
    for feature in ["smtputf8", "8bitmime", "pipelining", "chunking", "size"] {
        assert!(features.contains(feature), "{features}");
    }
    // smtplib saw the UTF-8 address and asked for SMTPUTF8 (lower-case verb:
    // commands are case-insensitive).
    assert!(
        sent.dialogue.contains("mail FROM:<jörg@example.org> size="),
        "{}",
        sent.dialogue
    );
    assert!(
        sent.dialogue.contains("SMTPUTF8 BODY=8BITMIME"),
        "{}",
        sent.dialogue
    );

    let payload = &server.sink.wait_for(1).await[0];
    assert_eq!(payload.sender, "jörg@example.org");
    assert_eq!(payload.recipient, TARGET);
    assert_eq!(payload.subject, "Grüße aus Köln ✓");
    assert_eq!(payload.sender_name.as_deref(), Some("Jörg Müller"));
    assert_eq!(
        payload.message_id.as_deref(),
        Some("<python-utf8@example.org>")
    );
    assert_eq!(payload.body, "Hallo Welt €\r\nZweite Zeile ✓\r\n");
    server.stop().await;
}

#[tokio::test]
async fn multipart_with_attachment_over_starttls_to_two_recipients() {
    let [python3] = require_tool!("python3");
    let server = TestServer::start(&["--require-tls", "true"]).await;
    let sent = send_message(&python3, &server, "multipart").await;
    assert_eq!(sent.report["refused"], serde_json::json!({}));
    assert!(
        sent.dialogue
            .contains("reply: retcode (220); Msg: b'2.0.0 Go ahead'"),
        "{}",
        sent.dialogue
    );
    // Inside TLS STARTTLS is no longer offered.
    assert!(
        !sent.report["features"].to_string().contains("starttls"),
        "{}",
        sent.report
    );

    let payloads = server.sink.wait_for(2).await;
    let mut recipients: Vec<_> = payloads.iter().map(|p| p.recipient.as_str()).collect();
    recipients.sort_unstable();
    assert_eq!(recipients, [TARGET, OTHER_TARGET]);
    for payload in &payloads {
        assert_eq!(payload.sender, "python@example.org");
        assert_eq!(payload.subject, "multipart from smtplib");
        assert_eq!(payload.sender_name.as_deref(), Some("Py Thon"));
        // smtplib stuffed the leading dot; it arrives unstuffed.
        assert_eq!(
            payload.body.replace("\r\n", "\n"),
            "plain part\n.leading dot\n"
        );
        assert_eq!(
            payload.html_body.as_deref().map(str::trim_end),
            Some("<p>html <b>part</b></p>")
        );
        assert!(!payload.body.contains("binary"));
    }
    server.stop().await;
}

#[tokio::test]
async fn unknown_recipient_is_refused_and_the_other_delivered() {
    let [python3] = require_tool!("python3");
    let server = TestServer::start(&[]).await;
    let sent = send_message(&python3, &server, "rejected").await;
    assert_eq!(
        sent.report["refused"],
        serde_json::json!({"nobody@example.com": [550, "5.1.1 No such user here"]})
    );
    let payloads = server.sink.wait_for(1).await;
    assert_eq!(payloads.len(), 1);
    assert_eq!(payloads[0].recipient, TARGET);
    assert_eq!(payloads[0].subject, "one of two");
    server.stop().await;
}
