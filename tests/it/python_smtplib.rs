//! Python's smtplib as a third independent client: `send_message` with an
//! `email.message.EmailMessage`, as applications send mail. The script is
//! `tests/python/send_message.py`; it prints what smtplib saw as JSON and the
//! SMTP dialogue on stderr. The attachment tests check the JSON a real HTTP
//! receiver got.

use std::path::Path;

use crate::common::receiver::Receiver;
use crate::common::{
    self, OTHER_TARGET, TARGET, TestServer, attachment_octets, binary, hex_sha256,
};
use serde_json::{Value, json};

struct Sent {
    /// The script's JSON report.
    report: serde_json::Value,
    /// smtplib's debug output: the dialogue as smtplib wrote and read it.
    dialogue: String,
}

/// Runs `send_message.py PORT CASE ARGS…`.
async fn send_message(python3: &Path, server: &TestServer, case: &str, args: &[&Path]) -> Sent {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/send_message.py");
    let output = tokio::process::Command::new(python3)
        .arg(script)
        .arg(server.smtp.port().to_string())
        .arg(case)
        .args(args)
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
    let sent = send_message(&python3, &server, "utf8", &[]).await;
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
    let sent = send_message(&python3, &server, "multipart", &[]).await;
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
    let sent = send_message(&python3, &server, "rejected", &[]).await;
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

/// The image and the PDF the `attachments` case reads, written for one test.
struct Files {
    image: Vec<u8>,
    pdf: Vec<u8>,
    image_path: std::path::PathBuf,
    pdf_path: std::path::PathBuf,
}

impl Files {
    fn write(test: &str) -> Self {
        let mut image = b"\x89PNG\r\n\x1a\n".to_vec();
        image.extend(binary(3_000));
        let mut pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
        pdf.extend(binary(60_000));
        let dir = std::env::temp_dir();
        let pid = std::process::id();
        let image_path = dir.join(format!("ml-py-{pid}-{test}-chart.png"));
        let pdf_path = dir.join(format!("ml-py-{pid}-{test}-resume.pdf"));
        std::fs::write(&image_path, &image).unwrap();
        std::fs::write(&pdf_path, &pdf).unwrap();
        Self {
            image,
            pdf,
            image_path,
            pdf_path,
        }
    }

    async fn send(&self, python3: &Path, server: &TestServer) -> Sent {
        let sent = send_message(
            python3,
            server,
            "attachments",
            &[&self.image_path, &self.pdf_path],
        )
        .await;
        assert_eq!(sent.report["refused"], json!({}));
        sent
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.image_path);
        let _ = std::fs::remove_file(&self.pdf_path);
    }
}

/// The attached `message/rfc822` as Python writes it and smtplib sends it
/// (CRLF line ends): the part's octets, not looked into.
const INNER_MESSAGE: &str = "From: inner@example.org\r\n\
    To: someone@example.com\r\n\
    Subject: the forwarded one\r\n\
    Message-ID: <inner-1@example.org>\r\n\
    Content-Type: text/plain; charset=\"utf-8\"\r\n\
    Content-Transfer-Encoding: 7bit\r\n\
    MIME-Version: 1.0\r\n\
    \r\n\
    inner body\r\n";

/// make_msgid's `<…@python.test>` without the angle brackets: what
/// `content_id` and a `cid:` URL carry.
fn content_id(sent: &Sent) -> String {
    let cid = sent.report["cid"].as_str().expect("the script reports cid");
    let bare = cid
        .strip_prefix('<')
        .and_then(|cid| cid.strip_suffix('>'))
        .unwrap_or_else(|| panic!("make_msgid gave {cid:?}"));
    assert!(bare.ends_with("@python.test"), "{cid}");
    bare.to_owned()
}

/// `EmailMessage` as the Python documentation builds HTML mail:
/// `set_content` (text), `add_alternative` (HTML), `add_related` (an
/// image the HTML shows by `cid:`), `add_attachment` (a PDF with a
/// non-ASCII name, which Python writes RFC 2231-encoded, and a whole
/// message as `message/rfc822`). Every field of every attachment, and the
/// octets, as the webhook receiver got them.
#[tokio::test]
async fn email_message_attachments_every_field() {
    let [python3] = require_tool!("python3");
    let receiver = Receiver::start().await;
    let (server, _) = TestServer::start_webhook(
        &receiver.url(),
        &["--include-raw", "true"],
        common::observability(),
    )
    .await;
    let files = Files::write("inline");
    let sent = files.send(&python3, &server).await;
    let cid = content_id(&sent);

    let payload = receiver.wait_for(1).await[0].json();
    assert_eq!(payload["subject"], "attachments from smtplib");
    assert_eq!(payload["body"], "See the chart.\r\n");
    assert_eq!(
        payload["html_body"],
        format!("<p>See <img src=\"cid:{cid}\"></p>\r\n")
    );
    let attachments = payload["attachments"].as_array().expect("attachments");
    assert_eq!(attachments.len(), 3, "{payload}");

    // The related image: no name, inline, named by its Content-ID.
    let (octets, described) = attachment_octets(&attachments[0]);
    assert!(octets == files.image, "the image arrived altered");
    assert_eq!(
        described,
        json!({
            "content_type": "image/png",
            "size_bytes": files.image.len(),
            "content_id": cid,
            "disposition": "inline",
            "sha256": hex_sha256(&files.image),
        })
    );

    // The PDF: Python wrote its name RFC 2231-encoded, MailLaser decoded it.
    let raw = common::raw_message(&payload);
    assert!(
        String::from_utf8_lossy(&raw).contains(
            "Content-Disposition: attachment; filename*=utf-8''R%C3%A9sum%C3%A9%202026.pdf\r\n"
        ),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    let (octets, described) = attachment_octets(&attachments[1]);
    assert!(octets == files.pdf, "the PDF arrived altered");
    assert_eq!(
        described,
        json!({
            "filename": "Résumé 2026.pdf",
            "content_type": "application/pdf",
            "size_bytes": files.pdf.len(),
            "disposition": "attachment",
            "sha256": hex_sha256(&files.pdf),
        })
    );

    // The attached message: its octets as sent, its body not a body here.
    let (octets, described) = attachment_octets(&attachments[2]);
    assert_eq!(String::from_utf8_lossy(&octets), INNER_MESSAGE);
    assert_eq!(
        described,
        json!({
            "content_type": "message/rfc822",
            "size_bytes": INNER_MESSAGE.len(),
            "disposition": "attachment",
            "sha256": hex_sha256(INNER_MESSAGE.as_bytes()),
        })
    );
    server.stop().await;
}

/// `--attachment-delivery metadata` with the same message: each attachment
/// is described exactly as in inline mode, but no entry has `delivery`
/// and no octets are in the request.
#[tokio::test]
async fn email_message_attachments_metadata_mode() {
    let [python3] = require_tool!("python3");
    let receiver = Receiver::start().await;
    let (server, _) = TestServer::start_webhook(
        &receiver.url(),
        &["--attachment-delivery", "metadata"],
        common::observability(),
    )
    .await;
    let files = Files::write("metadata");
    let sent = files.send(&python3, &server).await;
    let cid = content_id(&sent);

    let request = &receiver.wait_for(1).await[0];
    // 63 kB of attachments are not in a request this small.
    assert!(request.body.len() < 4_000, "{} octets", request.body.len());
    let payload = request.json();
    assert_eq!(payload["body"], "See the chart.\r\n");
    let attachments: &Vec<Value> = payload["attachments"].as_array().expect("attachments");
    assert_eq!(
        *attachments,
        [
            json!({
                "content_type": "image/png",
                "size_bytes": files.image.len(),
                "content_id": cid,
                "disposition": "inline",
                "sha256": hex_sha256(&files.image),
            }),
            json!({
                "filename": "Résumé 2026.pdf",
                "content_type": "application/pdf",
                "size_bytes": files.pdf.len(),
                "disposition": "attachment",
                "sha256": hex_sha256(&files.pdf),
            }),
            json!({
                "content_type": "message/rfc822",
                "size_bytes": INNER_MESSAGE.len(),
                "disposition": "attachment",
                "sha256": hex_sha256(INNER_MESSAGE.as_bytes()),
            }),
        ]
    );
    server.stop().await;
}
