//! Real clients: `lettre` over plain SMTP and STARTTLS, and a raw TLS
//! session that checks the STARTTLS rules byte by byte.

use std::sync::Arc;

use crate::common::{self, Client, DEADLINE, OTHER_TARGET, TARGET, TestServer};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart};
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

fn transport(server: &TestServer, tls: bool) -> AsyncSmtpTransport<Tokio1Executor> {
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(server.smtp.port())
        .timeout(Some(DEADLINE));
    if tls {
        let parameters = TlsParameters::builder("localhost".to_owned())
            .dangerous_accept_invalid_certs(true)
            .build()
            .unwrap();
        builder = builder.tls(Tls::Required(parameters));
    }
    builder.build()
}

fn mailbox(address: &str) -> Mailbox {
    address.parse().unwrap()
}

#[tokio::test]
async fn lettre_plain_message_payload_fields() {
    let server = TestServer::start(&["--header-prefix", "X-Ticket"]).await;
    let sent_at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_591_284);
    let email = Message::builder()
        .from("Jöhn Doe <john@example.org>".parse().unwrap())
        .to(mailbox(TARGET))
        .cc(format!("Ops Team <{OTHER_TARGET}>").parse().unwrap())
        .reply_to(mailbox("replies@example.org"))
        .in_reply_to("<parent@example.org>".into())
        .references("<root@example.org> <parent@example.org>".into())
        .date(sent_at)
        .subject("Grüße aus Köln")
        .message_id(Some("<lettre-1@example.org>".into()))
        .header(ContentType::TEXT_PLAIN)
        .body("Hallo Welt €\n".to_owned())
        .unwrap();
    let response = transport(&server, false).send(email).await.unwrap();
    assert_eq!(response.code().to_string(), "250");

    let payloads = server.sink.wait_for(2).await;
    let payload = payloads
        .iter()
        .find(|payload| payload.recipient == TARGET)
        .expect("a payload for the To recipient");
    assert_eq!(payload.sender, "john@example.org");
    assert_eq!(payload.recipient, TARGET);
    assert_eq!(payload.subject, "Grüße aus Köln");
    assert_eq!(payload.sender_name.as_deref(), Some("Jöhn Doe"));
    assert_eq!(payload.body.trim_end(), "Hallo Welt €");
    assert_eq!(
        payload.message_id.as_deref(),
        Some("<lettre-1@example.org>")
    );
    assert_eq!(payload.html_body, None);
    // Issue 11: addresses, date and threading as lettre wrote them.
    let addresses = |list: &[mail_laser::mail::Mailbox]| -> Vec<(Option<String>, String)> {
        list.iter()
            .map(|m| (m.name.clone(), m.address.clone()))
            .collect()
    };
    assert_eq!(
        addresses(&payload.from),
        [(Some("Jöhn Doe".into()), "john@example.org".into())]
    );
    assert_eq!(addresses(&payload.to), [(None, TARGET.into())]);
    assert_eq!(
        addresses(&payload.cc),
        [(Some("Ops Team".into()), OTHER_TARGET.into())]
    );
    assert_eq!(
        addresses(&payload.reply_to),
        [(None, "replies@example.org".into())]
    );
    assert_eq!(payload.date.as_deref(), Some("2026-12-06T21:08:04Z"));
    assert_eq!(payload.in_reply_to.as_deref(), Some("<parent@example.org>"));
    assert_eq!(
        payload.references,
        ["<root@example.org>", "<parent@example.org>"]
    );
    let envelope = payload.envelope.as_ref().expect("an envelope");
    assert_eq!(envelope.rcpt_to, [TARGET, OTHER_TARGET]);
    assert_eq!(envelope.tls, None, "plain SMTP");
    server.stop().await;
}

#[tokio::test]
async fn lettre_starttls_multipart_two_recipients() {
    let server = TestServer::start(&["--require-tls", "true"]).await;
    let email = Message::builder()
        .from(mailbox("sender@example.org"))
        .to(mailbox(TARGET))
        .cc(mailbox(OTHER_TARGET))
        .subject("Report")
        .multipart(
            MultiPart::mixed()
                .multipart(MultiPart::alternative_plain_html(
                    "plain version".to_owned(),
                    "<p>html <b>version</b></p>".to_owned(),
                ))
                .singlepart(Attachment::new("data.bin".to_owned()).body(
                    vec![0u8, 159, 146, 150, 255],
                    "application/octet-stream".parse().unwrap(),
                )),
        )
        .unwrap();
    // Tls::Required: lettre refuses to send unless STARTTLS and the second EHLO worked.
    transport(&server, true).send(email).await.unwrap();

    let payloads = server.sink.wait_for(2).await;
    let mut recipients: Vec<_> = payloads.iter().map(|p| p.recipient.as_str()).collect();
    recipients.sort();
    assert_eq!(recipients, [TARGET, OTHER_TARGET]);
    for payload in &payloads {
        assert_eq!(payload.subject, "Report");
        assert_eq!(payload.body.trim_end(), "plain version");
        assert_eq!(
            payload.html_body.as_deref().map(str::trim_end),
            Some("<p>html <b>version</b></p>")
        );
        // Issue 11: the envelope, TLS included, and when it arrived.
        let envelope = payload.envelope.as_ref().expect("an envelope");
        assert_eq!(envelope.mail_from, "sender@example.org");
        assert_eq!(envelope.rcpt_to, [TARGET, OTHER_TARGET]);
        assert_eq!(envelope.client_ip, "127.0.0.1");
        assert!(!envelope.helo.is_empty());
        let tls = envelope.tls.as_ref().expect("sent over STARTTLS");
        assert_eq!(tls.version, "TLSv1.3");
        assert!(tls.cipher.starts_with("TLS13_"), "{}", tls.cipher);
        let received_at = payload.received_at.as_deref().expect("received_at");
        assert!(
            received_at.len() == 20 && received_at.ends_with('Z'),
            "{received_at}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn lettre_fifty_concurrent_sessions_two_messages_each() {
    let server = TestServer::start(&["--max-concurrent-per-ip", "0"]).await;
    let senders = (0..50).map(|session| {
        // One transport per task: its pool keeps one SMTP session for both messages.
        let transport = transport(&server, false);
        tokio::spawn(async move {
            for message in 0..2 {
                let email = Message::builder()
                    .from(mailbox("load@example.org"))
                    .to(mailbox(TARGET))
                    .subject(format!("s{session}-m{message}"))
                    .body("concurrent".to_owned())
                    .unwrap();
                transport.send(email).await.unwrap();
            }
        })
    });
    for sender in futures_util::future::join_all(senders).await {
        sender.unwrap();
    }
    let payloads = server.sink.wait_for(100).await;
    let mut subjects: Vec<_> = payloads.iter().map(|p| p.subject.clone()).collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), 100);
    server.stop().await;
}

#[tokio::test]
async fn lettre_sees_permanent_and_transient_failures() {
    let server = TestServer::start(&[]).await;
    let email = Message::builder()
        .from(mailbox("sender@example.org"))
        .to(mailbox("nobody@example.com"))
        .subject("x")
        .body("x".to_owned())
        .unwrap();
    let error = transport(&server, false).send(email).await.unwrap_err();
    assert!(error.is_permanent(), "{error}");
    assert!(server.sink.payloads().is_empty());
    server.stop().await;
}

/// A certificate the test trusts, served from PEM files.
struct TestCertificate {
    dir: std::path::PathBuf,
    roots: RootCertStore,
}

impl TestCertificate {
    fn new(name: &str) -> Self {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let dir = std::env::temp_dir().join(format!("mail-laser-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cert.pem"), certified.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(certified.cert.der().clone()).unwrap();
        Self { dir, roots }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    fn connector(&self) -> TlsConnector {
        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(self.roots.clone())
            .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }
}

impl Drop for TestCertificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn starttls_discards_pipelined_input_and_refuses_a_second_starttls() {
    let certificate = TestCertificate::new("starttls");
    let (cert, key) = (certificate.path("cert.pem"), certificate.path("key.pem"));
    let server = TestServer::start(&["--tls-cert", &cert, "--tls-key", &key]).await;
    let mut c = Client::greeted(server.smtp).await;
    assert_eq!(c.command("EHLO c").await.lines.last().unwrap(), "STARTTLS");
    // A command injected behind STARTTLS in the same packet must vanish.
    c.send("STARTTLS\r\nMAIL FROM:<injected@example.org>\r\n")
        .await;
    assert_eq!(c.reply().await.last(), "220 2.0.0 Go ahead");

    let tls = certificate
        .connector()
        .connect(ServerName::try_from("localhost").unwrap(), c.into_inner())
        .await
        .expect("handshake with the configured certificate");
    let mut c = Client::new(tls);
    // The session starts over: MAIL needs a new EHLO, and the injected
    // MAIL left no trace (its reply would come first otherwise).
    c.expect("MAIL FROM:<a@example.org>", "503 Send EHLO or HELO first")
        .await;
    let ehlo = c.command("EHLO c").await;
    assert!(
        !ehlo.lines.iter().any(|line| line == "STARTTLS"),
        "{ehlo:?}"
    );
    c.expect("STARTTLS", "503 5.5.1 STARTTLS already active")
        .await;
    let reply = c
        .send_mail(
            "a@example.org",
            &[TARGET],
            &common::simple_message("tls", "secret"),
        )
        .await;
    assert_eq!(reply.code, 250);
    assert_eq!(server.sink.wait_for(1).await[0].subject, "tls");
    server.stop().await;
}

/// Issue 11: `MAIL_LASER_HEADERS=all` adds every top-level header, in
/// order, repeats kept; without it there is no `all_headers`.
#[tokio::test]
async fn all_headers_in_order_with_repeats() {
    let message = "Received: from a\r\nReceived: from b\r\nSubject: =?utf-8?q?h=C3=A9?=\r\nX-Custom: 1\r\n\r\nbody";
    for (flags, expected) in [
        (&["--headers", "all"][..], true),
        (&["--headers", "prefixed"][..], false),
    ] {
        let server = TestServer::start(flags).await;
        let mut client = Client::greeted(server.smtp).await;
        let reply = client.send_mail("a@example.org", &[TARGET], message).await;
        assert_eq!(reply.code, 250);
        let payload = &server.sink.wait_for(1).await[0];
        let all: Vec<(&str, &str)> = payload
            .all_headers
            .iter()
            .map(|header| (header.name.as_str(), header.value.as_str()))
            .collect();
        if expected {
            assert_eq!(
                all,
                [
                    ("Received", "from a"),
                    ("Received", "from b"),
                    ("Subject", "hé"),
                    ("X-Custom", "1")
                ]
            );
        } else {
            assert!(all.is_empty(), "{all:?}");
        }
        server.stop().await;
    }
}

/// Issue 11: `MAIL_LASER_PLUS_ADDRESSING=true` lets `alerts+ticket-42@`
/// reach the target `alerts@` and puts the tag in `recipient_tag`; without
/// it such a recipient is unknown.
#[tokio::test]
async fn plus_addressing_carries_the_tag() {
    let tagged = "alerts+ticket-42@example.com";
    let server = TestServer::start(&["--plus-addressing", "true"]).await;
    let mut client = Client::greeted(server.smtp).await;
    let reply = client
        .send_mail("a@example.org", &[tagged, TARGET], "Subject: t\r\n\r\nbody")
        .await;
    assert_eq!(reply.code, 250);
    let payloads = server.sink.wait_for(2).await;
    let tags: Vec<(&str, Option<&str>)> = payloads
        .iter()
        .map(|p| (p.recipient.as_str(), p.recipient_tag.as_deref()))
        .collect();
    assert!(tags.contains(&(tagged, Some("ticket-42"))), "{tags:?}");
    assert!(tags.contains(&(TARGET, None)), "{tags:?}");
    let json = payloads
        .iter()
        .find(|p| p.recipient == tagged)
        .map(|p| p.to_json().to_bytes())
        .expect("the tagged payload");
    let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(value["recipient_tag"], "ticket-42");
    server.stop().await;

    let server = TestServer::start(&[]).await;
    let mut client = Client::greeted(server.smtp).await;
    assert_eq!(client.command("EHLO client.example").await.code, 250);
    assert_eq!(client.command("MAIL FROM:<a@example.org>").await.code, 250);
    client
        .expect(
            &format!("RCPT TO:<{tagged}>"),
            "550 5.1.1 No such user here",
        )
        .await;
    server.stop().await;
}

/// Issue 11: `MAIL_LASER_INCLUDE_RAW=true` adds the original message,
/// exactly as received (dot-unstuffed), as `raw_base64` — small messages
/// and ones large enough to be parsed on a parse thread alike.
#[tokio::test]
async fn include_raw_carries_the_original_message() {
    let server = TestServer::start(&["--include-raw", "true"]).await;
    let small = "Subject: raw\r\n\r\n..dot-stuffed line\r\n";
    let large = format!("Subject: raw\r\n\r\n{}", "x".repeat(100_000));
    for message in [small.to_owned(), large] {
        let mut client = Client::greeted(server.smtp).await;
        let reply = client.send_mail("a@example.org", &[TARGET], &message).await;
        assert_eq!(reply.code, 250);
    }
    let payloads = server.sink.wait_for(2).await;
    let raw = |payload: &mail_laser::mail::Payload| {
        let encoded = payload.raw_base64.as_deref().expect("raw_base64");
        data_encoding::BASE64.decode(encoded.as_bytes()).unwrap()
    };
    assert_eq!(
        raw(&payloads[0]),
        b"Subject: raw\r\n\r\n.dot-stuffed line\r\n\r\n"
    );
    assert_eq!(
        raw(&payloads[1]).len(),
        "Subject: raw\r\n\r\n".len() + 100_000 + 2
    );
    server.stop().await;

    let server = TestServer::start(&[]).await;
    let mut client = Client::greeted(server.smtp).await;
    let reply = client.send_mail("a@example.org", &[TARGET], small).await;
    assert_eq!(reply.code, 250);
    assert_eq!(server.sink.wait_for(1).await[0].raw_base64, None);
    server.stop().await;
}
