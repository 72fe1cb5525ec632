//! Issue 11, attachments end to end: a real client sends files and inline
//! images, a real HTTP receiver gets the JSON.

use std::time::Duration;

use crate::common::moto::Moto;
use crate::common::receiver::Receiver;
use crate::common::{self, Client, TARGET, TestServer, binary, hex_sha256};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use mail_laser::stack::AttachmentMode;
use mail_laser::store::{AttachmentStore, StoreSettings};
use serde_json::{Value, json};

fn transport(server: &TestServer) -> AsyncSmtpTransport<Tokio1Executor> {
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(server.smtp.port())
        .timeout(Some(common::DEADLINE))
        .build()
}

/// A newsletter-shaped message: text and HTML alternatives, an inline
/// image the HTML refers to, and a PDF with a non-ASCII name.
fn newsletter(png: &[u8], pdf: &[u8]) -> Message {
    Message::builder()
        .from("sender@example.org".parse().unwrap())
        .to(TARGET.parse().unwrap())
        .subject("Quarterly report")
        .multipart(
            MultiPart::mixed()
                .multipart(
                    MultiPart::related()
                        .multipart(MultiPart::alternative_plain_html(
                            "See the chart.".to_owned(),
                            "<p>See <img src=\"cid:chart\"></p>".to_owned(),
                        ))
                        .singlepart(
                            Attachment::new_inline("chart".to_owned())
                                .body(png.to_vec(), "image/png".parse().unwrap()),
                        ),
                )
                .singlepart(
                    Attachment::new("Q3 Übersicht.pdf".to_owned())
                        .body(pdf.to_vec(), "application/pdf".parse().unwrap()),
                ),
        )
        .unwrap()
}

async fn received(receiver: &Receiver) -> Value {
    receiver.wait_for(1).await[0].json()
}

/// Every field of an attachment, inline mode: decoded name, type, size,
/// Content-ID, disposition, SHA-256, and octets identical after base64.
#[tokio::test]
async fn attachments_inline_with_every_field() {
    let receiver = Receiver::start().await;
    let (server, _) =
        TestServer::start_webhook(&receiver.url(), &[], common::observability()).await;
    let (png, pdf) = (binary(3_000), binary(70_000));
    transport(&server)
        .send(newsletter(&png, &pdf))
        .await
        .unwrap();

    let payload = received(&receiver).await;
    assert_eq!(
        payload["body"].as_str().map(str::trim_end),
        Some("See the chart.")
    );
    let attachments = payload["attachments"].as_array().expect("attachments");
    assert_eq!(attachments.len(), 2, "{attachments:?}");
    let data = |entry: &Value| {
        let text = entry["delivery"]["data_base64"]
            .as_str()
            .expect("data_base64");
        data_encoding::BASE64.decode(text.as_bytes()).unwrap()
    };
    let without_data = |entry: &Value| {
        let mut entry = entry.clone();
        entry["delivery"].take();
        entry
    };
    assert_eq!(data(&attachments[0]), png);
    assert_eq!(
        without_data(&attachments[0]),
        json!({
            "content_type": "image/png",
            "size_bytes": 3_000,
            "content_id": "chart",
            "disposition": "inline",
            "sha256": hex_sha256(&png),
            "delivery": null,
        })
    );
    assert_eq!(data(&attachments[1]), pdf);
    assert_eq!(
        without_data(&attachments[1]),
        json!({
            "filename": "Q3 Übersicht.pdf",
            "content_type": "application/pdf",
            "size_bytes": 70_000,
            "disposition": "attachment",
            "sha256": hex_sha256(&pdf),
            "delivery": null,
        })
    );
    server.stop().await;
}

/// `MAIL_LASER_ATTACHMENT_DELIVERY=metadata`: described, no octets.
#[tokio::test]
async fn attachments_metadata_mode_sends_no_octets() {
    let receiver = Receiver::start().await;
    let (server, _) = TestServer::start_webhook(
        &receiver.url(),
        &["--attachment-delivery", "metadata"],
        common::observability(),
    )
    .await;
    let (png, pdf) = (binary(100), binary(200_000));
    transport(&server)
        .send(newsletter(&png, &pdf))
        .await
        .unwrap();

    let request = &receiver.wait_for(1).await[0];
    assert!(request.body.len() < 10_000, "{} octets", request.body.len());
    let payload = request.json();
    let attachments = payload["attachments"].as_array().expect("attachments");
    let described: Vec<_> = attachments
        .iter()
        .map(|entry| {
            (
                entry["size_bytes"].clone(),
                entry["sha256"].clone(),
                entry.get("delivery"),
            )
        })
        .collect();
    assert_eq!(
        described,
        [
            (json!(100), json!(hex_sha256(&png)), None),
            (json!(200_000), json!(hex_sha256(&pdf)), None),
        ]
    );
    server.stop().await;
}

/// `MAIL_LASER_MAX_ATTACHMENT_SIZE`: one octet over refuses the whole
/// message with `552 5.3.4` at end of data, nothing reaches the webhook,
/// and the session goes on; at the limit it is delivered.
#[tokio::test]
async fn an_attachment_over_the_limit_is_552() {
    let receiver = Receiver::start().await;
    let (server, _) = TestServer::start_webhook(
        &receiver.url(),
        &["--max-attachment-size", "1000"],
        common::observability(),
    )
    .await;
    let message = |size: usize| {
        let email = Message::builder()
            .from("sender@example.org".parse().unwrap())
            .to(TARGET.parse().unwrap())
            .subject(format!("size {size}"))
            .multipart(
                MultiPart::mixed()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body("x".to_owned()),
                    )
                    .singlepart(
                        Attachment::new("f.bin".to_owned())
                            .body(binary(size), "application/octet-stream".parse().unwrap()),
                    ),
            )
            .unwrap();
        String::from_utf8(email.formatted()).unwrap()
    };
    let mut client = Client::greeted(server.smtp).await;
    let reply = client
        .send_mail("a@example.org", &[TARGET], &message(1001))
        .await;
    assert_eq!(reply.last(), "552 5.3.4 Attachment size exceeds limit");
    let reply = client
        .send_mail("a@example.org", &[TARGET], &message(1000))
        .await;
    assert_eq!(reply.code, 250);
    let requests = receiver.wait_for(1).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].json()["subject"], "size 1000");
    server.stop().await;
}

/// A message of more than `MAX_ATTACHMENTS` parts is refused rather than
/// delivered without some: each part costs its description besides its
/// octets, so a million one-octet parts would cost a hundred times the
/// message.
#[tokio::test]
async fn too_many_attachments_is_552() {
    let receiver = Receiver::start().await;
    let (server, _) =
        TestServer::start_webhook(&receiver.url(), &[], common::observability()).await;
    let message = |parts: usize| {
        let mut message = format!(
            "Subject: {parts} parts\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
             --b\r\n\r\nbody\r\n"
        );
        for _ in 0..parts {
            message.push_str("--b\r\nContent-Type: application/x-one\r\n\r\nx\r\n");
        }
        message + "--b--\r\n"
    };
    let limit = mail_laser::mail::parse::MAX_ATTACHMENTS;
    let mut client = Client::greeted(server.smtp).await;
    let reply = client
        .send_mail("a@example.org", &[TARGET], &message(limit + 1))
        .await;
    assert_eq!(reply.last(), "552 5.3.4 Too many attachments");
    let reply = client
        .send_mail("a@example.org", &[TARGET], &message(limit))
        .await;
    assert_eq!(reply.code, 250);
    let payload = receiver.wait_for(1).await[0].json();
    assert_eq!(payload["subject"], format!("{limit} parts"));
    assert_eq!(payload["attachments"].as_array().map(Vec::len), Some(limit));
    server.stop().await;
}

const BUCKET: &str = "mail-laser-attachments";

/// `s3` mode against moto with test credentials (the flags give every
/// other setting; only the credentials cannot come from the environment
/// in a test).
async fn s3_server(receiver: &Receiver, endpoint: &str, inline_max: u64) -> TestServer {
    let settings = StoreSettings {
        bucket: BUCKET.into(),
        region: "us-east-1".into(),
        endpoint: Some(endpoint.into()),
        key_prefix: "mail/".into(),
        presign_ttl: Some(Duration::from_secs(600)),
        timeout: Duration::from_secs(5),
    };
    let store = AttachmentStore::with_credentials(settings, "test", "test").unwrap();
    let (server, _) = TestServer::start_webhook_edited(
        &receiver.url(),
        &["--include-raw", "true"],
        common::observability(),
        |config| {
            config.stack.parse.attachments.mode = AttachmentMode::Store { store, inline_max };
        },
    )
    .await;
    server
}

/// A message with a small text file and a larger binary one.
fn two_files(small: &[u8], large: &[u8]) -> String {
    format!(
        "From: a@example.org\r\nSubject: files\r\n\
         Content-Type: multipart/mixed; boundary=b\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
         --b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=small.txt\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n\
         --b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"Q3 report.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--b--\r\n",
        data_encoding::BASE64_MIME.encode(small),
        data_encoding::BASE64_MIME.encode(large),
    )
}

async fn fetch(url: &str) -> (u16, Vec<u8>) {
    let response = reqwest::get(url).await.expect("GET answered");
    let status = response.status().as_u16();
    (status, response.bytes().await.expect("a body").to_vec())
}

/// `s3` mode: an attachment over `MAIL_LASER_ATTACHMENT_INLINE_MAX` is
/// uploaded before the webhook call and the payload carries its URLs (the
/// presigned one returns the same octets); a smaller one stays inline; the
/// raw message is stored too (`raw_url`); the payload stays small.
#[tokio::test]
async fn s3_mode_uploads_and_the_presigned_url_returns_the_octets() {
    let [moto_server] = require_tool!("moto_server");
    let moto = Moto::start(&moto_server).await;
    moto.create_bucket(BUCKET).await;
    let receiver = Receiver::start().await;
    let server = s3_server(&receiver, &moto.endpoint, 1_000).await;
    let (small, large) = (binary(1_000), binary(300_000));
    let message = two_files(&small, &large);
    let mut client = Client::greeted(server.smtp).await;
    let reply = client.send_mail("a@example.org", &[TARGET], &message).await;
    assert_eq!(reply.code, 250, "{}", reply.last());

    let request = &receiver.wait_for(1).await[0];
    assert!(request.body.len() < 8_000, "{} octets", request.body.len());
    let payload = request.json();
    let attachments = payload["attachments"].as_array().expect("attachments");
    assert_eq!(
        attachments[0]["delivery"]["data_base64"],
        json!(data_encoding::BASE64.encode(&small)),
        "at the inline limit: inline"
    );
    let stored = &attachments[1];
    assert_eq!(stored["filename"], "Q3 report.pdf");
    assert_eq!(stored["size_bytes"], 300_000);
    assert_eq!(stored["sha256"], json!(hex_sha256(&large)));
    let url = stored["delivery"]["url"].as_str().expect("a URL");
    let prefix = format!("{}/{BUCKET}/mail/", moto.endpoint);
    assert!(url.starts_with(&prefix), "{url}");
    assert!(url.ends_with("/Q3_report.pdf"), "{url}");
    let presigned = stored["delivery"]["presigned_url"]
        .as_str()
        .expect("presigned");
    assert_eq!(fetch(presigned).await, (200, large));

    let raw = payload["raw_presigned_url"]
        .as_str()
        .expect("raw_presigned_url");
    assert!(payload.get("raw_base64").is_none());
    assert!(
        payload["raw_url"]
            .as_str()
            .is_some_and(|url| url.starts_with(&prefix))
    );
    let (status, octets) = fetch(raw).await;
    assert_eq!(status, 200);
    // As received: the client's line ending before the final dot included.
    let expected = format!("{message}\r\n");
    assert!(
        octets == expected.as_bytes(),
        "the stored message ({} octets) is not the one sent ({} octets)",
        octets.len(),
        expected.len()
    );
    server.stop().await;
}

/// An upload that fails is a temporary failure: `451`, nothing reaches the
/// webhook, never a payload without its attachment.
#[tokio::test]
async fn s3_mode_an_upload_failure_is_451() {
    let [moto_server] = require_tool!("moto_server");
    let moto = Moto::start(&moto_server).await;
    // No bucket: the store refuses every upload.
    let receiver = Receiver::start().await;
    let server = s3_server(&receiver, &moto.endpoint, 0).await;
    let mut client = Client::greeted(server.smtp).await;
    let message = two_files(b"x", &binary(5_000));
    let reply = client.send_mail("a@example.org", &[TARGET], &message).await;
    assert_eq!(
        reply.last(),
        "451 4.3.0 Temporary delivery failure, try again later"
    );
    // The same message once the bucket exists: delivered.
    moto.create_bucket(BUCKET).await;
    let reply = client.send_mail("a@example.org", &[TARGET], &message).await;
    assert_eq!(reply.code, 250, "{}", reply.last());
    assert_eq!(receiver.wait_for(1).await.len(), 1);
    server.stop().await;
}
