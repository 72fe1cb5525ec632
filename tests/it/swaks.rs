//! swaks, the SMTP test tool, as an independent client: STARTTLS,
//! pipelining, dot-stuffed `--data`, attachments and non-ASCII headers. Each
//! test checks swaks' exit status, the transcript it printed, and the
//! payloads that reached the sink (or, for the attachment fields, the JSON a
//! real HTTP receiver got).

use std::path::Path;
use std::process::Output;

use crate::common::receiver::Receiver;
use crate::common::{
    self, OTHER_TARGET, TARGET, TestServer, attachment_octets, binary, hex_sha256,
};
use mail_laser::sink::DeliveryOutcome;
use serde_json::json;

/// Runs `swaks` against `server` with `args` after the connection options.
async fn run(swaks: &Path, server: &TestServer, args: &[&str]) -> (Output, String) {
    let port = server.smtp.port().to_string();
    let output = tokio::process::Command::new(swaks)
        .args([
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "--helo",
            "swaks.test",
        ])
        .args(["--timeout", "20"])
        .args(args)
        .output()
        .await
        .expect("swaks runs");
    let transcript = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output, transcript)
}

fn assert_success(output: &Output, transcript: &str) {
    assert!(
        output.status.success(),
        "swaks exited with {}:\n{transcript}",
        output.status
    );
}

/// A scratch file for swaks to read.
fn scratch_file(name: &str, contents: &[u8]) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("ml-swaks-{}-{name}", std::process::id()));
    std::fs::write(&path, contents).unwrap();
    path
}

#[tokio::test]
async fn starttls_when_the_server_requires_it() {
    let [swaks] = require_tool!("swaks");
    let server = TestServer::start(&["--require-tls", "true"]).await;
    let (output, transcript) = run(
        &swaks,
        &server,
        &[
            "--tls",
            "--from",
            "secure@example.org",
            "--to",
            TARGET,
            "--header",
            "Subject: swaks over tls",
            "--body",
            "sent after STARTTLS",
        ],
    )
    .await;
    assert_success(&output, &transcript);
    assert!(
        transcript.contains("<-  220 2.0.0 Go ahead"),
        "{transcript}"
    );
    assert!(
        transcript.contains("=== TLS started with cipher"),
        "{transcript}"
    );
    // After the handshake STARTTLS is no longer offered.
    let after_tls = transcript
        .split("=== TLS started")
        .nth(1)
        .unwrap_or_default();
    assert!(after_tls.contains("<~  250 CHUNKING"), "{transcript}");
    assert!(!after_tls.contains("<~  250 STARTTLS"), "{transcript}");
    assert!(
        after_tls.contains("<~  250 2.0.0 OK: Message accepted for delivery"),
        "{transcript}"
    );

    let payload = &server.sink.wait_for(1).await[0];
    assert_eq!(payload.sender, "secure@example.org");
    assert_eq!(payload.recipient, TARGET);
    assert_eq!(payload.subject, "swaks over tls");
    assert_eq!(payload.body.trim_end(), "sent after STARTTLS");
    server.stop().await;
}

#[tokio::test]
async fn pipelined_envelope_with_several_recipients() {
    let [swaks] = require_tool!("swaks");
    let server = TestServer::start(&[]).await;
    let to = format!("{TARGET},nobody@example.com,{OTHER_TARGET}");
    let (output, transcript) = run(
        &swaks,
        &server,
        &[
            "--pipeline",
            "--from",
            "piper@example.org",
            "--to",
            &to,
            "--header",
            "Subject: pipelined",
            "--body",
            "one batch",
        ],
    )
    .await;
    assert_success(&output, &transcript);
    // The envelope went out as one batch, before any reply to it came back.
    let lines: Vec<&str> = transcript.lines().collect();
    let mail = lines
        .iter()
        .position(|line| line.starts_with(" -> MAIL FROM"))
        .unwrap_or_else(|| panic!("{transcript}"));
    assert_eq!(
        lines[mail..mail + 5],
        [
            " -> MAIL FROM:<piper@example.org>",
            &format!(" -> RCPT TO:<{TARGET}>"),
            " -> RCPT TO:<nobody@example.com>",
            &format!(" -> RCPT TO:<{OTHER_TARGET}>"),
            " -> DATA",
        ],
        "{transcript}"
    );
    // Its replies came back in order.
    assert_eq!(
        lines[mail + 5..mail + 10],
        [
            "<-  250 2.1.0 OK",
            "<-  250 2.1.5 OK",
            "<** 550 5.1.1 No such user here",
            "<-  250 2.1.5 OK",
            "<-  354 Start mail input; end with <CRLF>.<CRLF>",
        ],
        "{transcript}"
    );
    let payloads = server.sink.wait_for(2).await;
    let mut recipients: Vec<_> = payloads.iter().map(|p| p.recipient.as_str()).collect();
    recipients.sort_unstable();
    assert_eq!(recipients, [TARGET, OTHER_TARGET]);
    assert!(payloads.iter().all(|p| p.subject == "pipelined"));
    server.stop().await;
}

#[tokio::test]
async fn data_with_dot_stuffed_lines() {
    let [swaks] = require_tool!("swaks");
    let server = TestServer::start(&[]).await;
    let body = "line one\r\n.leading dot\r\n.\r\n..two dots\r\n...\r\nlast\r\n";
    let message = format!(
        "From: Dot <dot@example.org>\r\nTo: {TARGET}\r\nSubject: dots\r\n\
         Message-ID: <dots-1@example.org>\r\n\r\n{body}"
    );
    let file = scratch_file("dots.eml", message.as_bytes());
    let (output, transcript) = run(
        &swaks,
        &server,
        &[
            "--from",
            "dot@example.org",
            "--to",
            TARGET,
            "--data",
            file.to_str().unwrap(),
        ],
    )
    .await;
    std::fs::remove_file(&file).unwrap();
    assert_success(&output, &transcript);
    // swaks stuffed each leading dot on the wire.
    for stuffed in [" -> ..leading dot", " -> ..", " -> ...two dots", " -> ...."] {
        assert!(
            transcript.lines().any(|line| line == stuffed),
            "{stuffed:?} missing:\n{transcript}"
        );
    }
    let payload = &server.sink.wait_for(1).await[0];
    assert_eq!(payload.message_id.as_deref(), Some("<dots-1@example.org>"));
    // Unstuffed exactly; swaks ends the data with one more CRLF of its own.
    assert_eq!(payload.body, format!("{body}\r\n"));
    server.stop().await;
}

#[tokio::test]
async fn attachment_and_non_ascii_headers() {
    let [swaks] = require_tool!("swaks");
    let server = TestServer::start(&["--header-prefix", "X-Ticket"]).await;
    let csv = scratch_file("report.csv", b"col1,col2\n1,2\n");
    let (output, transcript) = run(
        &swaks,
        &server,
        &[
            "--from",
            "joerg@example.org",
            "--to",
            TARGET,
            "--header",
            "From: Jörg Müller <joerg@example.org>",
            "--header",
            "Subject: Grüße aus Köln ✓",
            "--header",
            "X-Ticket-Id: Ü-42",
            "--body",
            "Bödy text €",
            "--attach-type",
            "text/csv",
            "--attach",
            csv.to_str().unwrap(),
        ],
    )
    .await;
    std::fs::remove_file(&csv).unwrap();
    assert_success(&output, &transcript);
    assert!(
        transcript.contains("Content-Disposition: attachment"),
        "{transcript}"
    );
    let payload = &server.sink.wait_for(1).await[0];
    assert_eq!(payload.subject, "Grüße aus Köln ✓");
    assert_eq!(payload.sender_name.as_deref(), Some("Jörg Müller"));
    assert_eq!(payload.body.trim_end(), "Bödy text €");
    assert!(!payload.body.contains("col1"), "{:?}", payload.body);
    assert_eq!(payload.headers.get("X-Ticket-Id"), Some("Ü-42"));
    server.stop().await;
}

#[tokio::test]
async fn temporary_failure_is_reported_to_swaks() {
    let [swaks] = require_tool!("swaks");
    let server = TestServer::start(&[]).await;
    server.sink.answer_with(DeliveryOutcome::Deferred);
    let (output, transcript) = run(
        &swaks,
        &server,
        &["--from", "a@example.org", "--to", TARGET, "--body", "later"],
    )
    .await;
    // 26: the server refused the message after the data.
    assert_eq!(output.status.code(), Some(26), "{transcript}");
    assert!(
        transcript.contains("<** 451 4.3.0 Temporary delivery failure, try again later"),
        "{transcript}"
    );
    assert!(server.sink.payloads().is_empty());
    server.stop().await;
}

/// `--attach @file`: a 100 kB file holding every octet value and a text
/// file (UTF-8, mixed line ends, no final newline) reach the webhook as
/// attachments with swaks' names and types, their decoded sizes and
/// SHA-256, and base64 that decodes to the very files; swaks' `--body`
/// stays the body.
#[tokio::test]
async fn attach_files_reach_the_webhook_byte_for_byte() {
    let [swaks] = require_tool!("swaks");
    let receiver = Receiver::start().await;
    let (server, _) =
        TestServer::start_webhook(&receiver.url(), &[], common::observability()).await;
    let blob = binary(100_000);
    let notes = "Grüße aus Köln €\r\nzweite Zeile\nletzte Zeile ohne Ende".as_bytes();
    let blob_file = scratch_file("blob.bin", &blob);
    let notes_file = scratch_file("notes.txt", notes);
    let (output, transcript) = run(
        &swaks,
        &server,
        &[
            "--from",
            "files@example.org",
            "--to",
            TARGET,
            "--header",
            "Subject: two files",
            "--body",
            "swaks body text",
            // The file's own name, swaks' default type.
            "--attach",
            &format!("@{}", blob_file.display()),
            // A type and a name of our choosing.
            "--attach-type",
            "text/plain",
            "--attach-name",
            "Notizen.txt",
            "--attach",
            &format!("@{}", notes_file.display()),
        ],
    )
    .await;
    std::fs::remove_file(&blob_file).unwrap();
    std::fs::remove_file(&notes_file).unwrap();
    assert_success(&output, &transcript);

    let payload = receiver.wait_for(1).await[0].json();
    assert_eq!(payload["subject"], "two files");
    assert_eq!(payload["body"], "swaks body text");
    assert_eq!(payload.get("html_body"), None);
    let attachments = payload["attachments"].as_array().expect("attachments");
    assert_eq!(attachments.len(), 2, "{payload}");

    let (octets, described) = attachment_octets(&attachments[0]);
    assert!(octets == blob, "the binary file arrived altered");
    let blob_name = blob_file.file_name().unwrap().to_str().unwrap();
    assert_eq!(
        described,
        json!({
            "filename": blob_name,
            "content_type": "application/octet-stream",
            "size_bytes": 100_000,
            "disposition": "attachment",
            "sha256": hex_sha256(&blob),
        })
    );

    // A text attachment is not a second body, and its line ends stay as
    // they were in the file (swaks sends it base64).
    let (octets, described) = attachment_octets(&attachments[1]);
    assert_eq!(octets, notes);
    assert_eq!(
        described,
        json!({
            "filename": "Notizen.txt",
            "content_type": "text/plain",
            "size_bytes": notes.len(),
            "disposition": "attachment",
            "sha256": hex_sha256(notes),
        })
    );
    server.stop().await;
}
