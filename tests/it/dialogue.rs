//! Raw-socket SMTP transcripts against a real server: exact replies for the
//! dialogue of `docs/smtp.md`, limits, and hostile input.

use crate::common::{
    Client, DEADLINE, OTHER_TARGET, TARGET, TestServer, eventually, simple_message,
};
use mail_laser::sink::DeliveryOutcome;
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn greeting_and_ehlo_extensions() {
    let server = TestServer::start(&["--max-message-size", "1000"]).await;
    let mut client = server.client().await;
    assert_eq!(
        client.reply().await.last(),
        "220 MailLaser SMTP Server Ready"
    );
    let ehlo = client.command("EHLO client.example").await;
    assert_eq!(ehlo.code, 250);
    assert_eq!(
        ehlo.lines,
        [
            "MailLaser greets client.example",
            "PIPELINING",
            "SIZE 1000",
            "8BITMIME",
            "SMTPUTF8",
            "ENHANCEDSTATUSCODES",
            "CHUNKING",
            "STARTTLS"
        ]
    );
    client.expect("QUIT", "221 2.0.0 Bye").await;
    client.expect_closed().await;
    server.stop().await;
}

#[tokio::test]
async fn greeting_names_the_configured_host() {
    let server = TestServer::start(&["--hostname", "mx.example.net"]).await;
    let mut client = server.client().await;
    assert_eq!(
        client.reply().await.last(),
        "220 mx.example.net MailLaser SMTP Server Ready"
    );
    server.stop().await;
}

#[tokio::test]
async fn full_dialogue_replies() {
    let server = TestServer::start(&[]).await;
    let mut c = Client::greeted(server.smtp).await;
    c.expect("HELO client.example", "250 MailLaser").await;
    // HELO: no enhanced status codes.
    c.expect("NOOP", "250 OK").await;
    c.expect("EHLO client.example", "250 STARTTLS").await;
    c.expect("NOOP", "250 2.0.0 OK").await;
    c.expect(
        "VRFY alerts",
        "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery",
    )
    .await;
    assert_eq!(c.command("HELP").await.code, 214);
    c.expect(
        "RCPT TO:<alerts@example.com>",
        "503 5.5.1 Need MAIL before RCPT",
    )
    .await;
    c.expect("DATA", "503 5.5.1 Bad sequence of commands").await;
    c.expect(
        "MAIL FROM:<sender@example.org> BOGUS=1",
        "555 5.5.4 Unsupported MAIL or RCPT parameter",
    )
    .await;
    let syntax = c.command("MAIL FROM sender@example.org").await;
    assert_eq!((syntax.code, &syntax.lines[0][..6]), (501, "5.5.2 "));
    c.expect("mail from:<sender@example.org>", "250 2.1.0 OK")
        .await;
    c.expect(
        "MAIL FROM:<sender@example.org>",
        "503 5.5.1 Sender already specified",
    )
    .await;
    c.expect(
        "RCPT TO:<nobody@example.com>",
        "550 5.1.1 No such user here",
    )
    .await;
    c.expect("DATA", "503 5.5.1 Bad sequence of commands").await;
    c.expect("rcpt to:<ALERTS@example.com>", "250 2.1.5 OK")
        .await;
    c.expect("RSET", "250 2.0.0 OK").await;
    c.expect("DATA", "503 5.5.1 Bad sequence of commands").await;
    c.expect("FOO", "500 5.5.2 Command not recognized").await;
    c.expect("EXPN list", "502 5.5.1 Command not implemented")
        .await;
    c.expect("QUIT", "221 2.0.0 Bye").await;
    c.expect_closed().await;
    server.stop().await;
}

#[tokio::test]
async fn message_round_trip_and_second_message_on_same_session() {
    let server = TestServer::start(&[]).await;
    let mut c = Client::greeted(server.smtp).await;
    let first = c
        .send_mail(
            "sender@example.org",
            &[TARGET],
            &simple_message("one", "first body"),
        )
        .await;
    assert_eq!(first.last(), "250 2.0.0 OK: Message accepted for delivery");
    c.expect("MAIL FROM:<>", "250 2.1.0 OK").await;
    c.expect(&format!("RCPT TO:<{OTHER_TARGET}>"), "250 2.1.5 OK")
        .await;
    c.expect("DATA", "354 Start mail input; end with <CRLF>.<CRLF>")
        .await;
    c.send(simple_message("two", "..stuffed line\r\nsecond body"))
        .await;
    c.expect("\r\n.", "250 2.0.0 OK: Message accepted for delivery")
        .await;

    let payloads = server.sink.wait_for(2).await;
    assert_eq!(payloads[0].sender, "sender@example.org");
    assert_eq!(payloads[0].recipient, TARGET);
    assert_eq!(payloads[0].subject, "one");
    assert_eq!(payloads[0].body.trim_end(), "first body");
    assert_eq!(payloads[1].sender, "");
    assert_eq!(payloads[1].recipient, OTHER_TARGET);
    // Dot-unstuffed: the client's ".." arrives as ".".
    assert!(
        payloads[1].body.starts_with(".stuffed line"),
        "{:?}",
        payloads[1].body
    );
    assert!(!payloads[1].body.contains(".."));
    server.stop().await;
}

#[tokio::test]
async fn one_payload_per_accepted_recipient() {
    let server = TestServer::start(&[]).await;
    let mut c = Client::greeted(server.smtp).await;
    let reply = c
        .send_mail(
            "sender@example.org",
            &[
                TARGET,
                "unknown@example.com",
                OTHER_TARGET,
                "Alerts@Example.com",
            ],
            &simple_message("multi", "hello"),
        )
        .await;
    assert_eq!(reply.code, 250);
    let payloads = server.sink.wait_for(2).await;
    let mut recipients: Vec<_> = payloads.iter().map(|p| p.recipient.clone()).collect();
    recipients.sort();
    assert_eq!(recipients, [TARGET, OTHER_TARGET]);
    server.stop().await;
}

#[tokio::test]
async fn pipelined_batch_is_answered_in_order_with_one_write() {
    let server = TestServer::start(&[]).await;
    let mut c = Client::greeted(server.smtp).await;
    c.command("EHLO client.example").await;
    let mut stream = c.into_inner();
    let batch = format!(
        "MAIL FROM:<a@example.org>\r\nRCPT TO:<{TARGET}>\r\nRCPT TO:<nobody@example.com>\r\nRCPT TO:<{OTHER_TARGET}>\r\nDATA\r\n"
    );
    tokio::io::AsyncWriteExt::write_all(&mut stream, batch.as_bytes())
        .await
        .unwrap();
    let expected = "250 2.1.0 OK\r\n250 2.1.5 OK\r\n550 5.1.1 No such user here\r\n250 2.1.5 OK\r\n354 Start mail input; end with <CRLF>.<CRLF>\r\n";
    let mut buf = vec![0; 4096];
    let n = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    // All five replies arrive from one read: they were written with one flush.
    assert_eq!(String::from_utf8_lossy(&buf[..n]), expected);
    let mut c = Client::new(stream);
    c.send(simple_message("piped", "body")).await;
    assert_eq!(c.command("\r\n.").await.code, 250);
    assert_eq!(server.sink.wait_for(2).await.len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn whole_transaction_pipelined_in_one_write() {
    let server = TestServer::start(&[]).await;
    let mut c = Client::greeted(server.smtp).await;
    let message = simple_message("all-at-once", "body");
    c.send(format!(
        "EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<{TARGET}>\r\nDATA\r\n{message}\r\n.\r\nQUIT\r\n"
    ))
    .await;
    assert_eq!(c.reply().await.code, 250);
    assert_eq!(c.reply().await.code, 250);
    assert_eq!(c.reply().await.code, 250);
    assert_eq!(c.reply().await.code, 354);
    assert_eq!(
        c.reply().await.last(),
        "250 2.0.0 OK: Message accepted for delivery"
    );
    assert_eq!(c.reply().await.code, 221);
    assert_eq!(server.sink.wait_for(1).await[0].subject, "all-at-once");
    server.stop().await;
}

#[tokio::test]
async fn smuggled_terminators_stay_in_the_body() {
    let server = TestServer::start(&[]).await;
    let mut c = Client::greeted(server.smtp).await;
    let smuggle = "Subject: smuggle\r\n\r\nline\n.\r\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<ops@example.com>\r\nDATA\r\nevil\r\n.\r\n";
    // The only real terminator is the one after "evil": a bare-LF dot is body text.
    c.send("EHLO c\r\n").await;
    c.reply().await;
    c.expect("MAIL FROM:<a@example.org>", "250 2.1.0 OK").await;
    c.expect(&format!("RCPT TO:<{TARGET}>"), "250 2.1.5 OK")
        .await;
    c.expect("DATA", "354 Start mail input; end with <CRLF>.<CRLF>")
        .await;
    c.send(smuggle).await;
    assert_eq!(c.reply().await.code, 250);
    c.expect("NOOP", "250 2.0.0 OK").await;
    let payloads = server.sink.wait_for(1).await;
    assert_eq!(payloads.len(), 1, "the smuggled transaction must not exist");
    assert!(payloads[0].body.contains("MAIL FROM:<evil@example.org>"));
    server.stop().await;
}

#[tokio::test]
async fn oversize_message_is_refused_and_session_continues() {
    let server = TestServer::start(&["--max-message-size", "1000"]).await;
    let mut c = Client::greeted(server.smtp).await;
    c.command("EHLO c").await;
    c.expect(
        "MAIL FROM:<a@example.org> SIZE=5000",
        "552 5.3.4 Message size exceeds limit",
    )
    .await;
    c.expect("MAIL FROM:<a@example.org>", "250 2.1.0 OK").await;
    c.expect(&format!("RCPT TO:<{TARGET}>"), "250 2.1.5 OK")
        .await;
    c.expect("DATA", "354 Start mail input; end with <CRLF>.<CRLF>")
        .await;
    let big = simple_message("big", &"x".repeat(5000));
    c.send(&big).await;
    c.expect("\r\n.", "552 5.3.4 Message size exceeds limit")
        .await;
    c.expect("NOOP", "250 2.0.0 OK").await;
    // The session can still deliver a message that fits.
    let reply = c
        .send_mail("a@example.org", &[TARGET], &simple_message("small", "fits"))
        .await;
    assert_eq!(reply.code, 250);
    let payloads = server.sink.wait_for(1).await;
    assert_eq!(payloads.len(), 1);
    assert_eq!(payloads[0].subject, "small");
    server.stop().await;
}

#[tokio::test]
async fn overlong_command_lines() {
    let server = TestServer::start(&[]).await;
    let mut c = Client::greeted(server.smtp).await;
    c.expect(&format!("NOOP {}", "x".repeat(2043)), "250 OK")
        .await;
    c.expect(&format!("NOOP {}", "x".repeat(2044)), "500 Line too long")
        .await;
    c.command("EHLO c").await;
    let line = format!("MAIL FROM:<{}@example.org>", "a".repeat(100 * 1024));
    c.expect(&line, "500 5.5.6 Line too long").await;
    c.expect("NOOP", "250 2.0.0 OK").await;
    server.stop().await;
}

/// Deterministic pseudo-random bytes (xorshift).
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

#[tokio::test]
async fn a_megabyte_of_random_bytes_is_survived() {
    let server = TestServer::start(&[]).await;
    let stream = Client::greeted(server.smtp).await.into_inner();
    let (mut read, mut write) = stream.into_split();
    // Drain replies concurrently so the server never blocks on a full socket.
    let reader = tokio::spawn(async move {
        let mut replies = Vec::new();
        let _ = tokio::time::timeout(DEADLINE, read.read_to_end(&mut replies)).await;
        replies
    });
    let _ = tokio::io::AsyncWriteExt::write_all(&mut write, &noise(1 << 20, 0x9E37_79B9_7F4A_7C15))
        .await;
    drop(write);
    let replies = String::from_utf8_lossy(&reader.await.unwrap()).into_owned();
    // Garbage earns protocol errors until the cap closes the session.
    assert!(
        replies.contains("421 Too many errors, closing connection"),
        "{replies}"
    );
    // The server is unharmed.
    let mut fresh = Client::greeted(server.smtp).await;
    fresh.expect("EHLO c", "250 STARTTLS").await;
    server.stop().await;
}

#[tokio::test]
async fn deeply_nested_multipart_is_delivered() {
    let server = TestServer::start(&[]).await;
    let depth = 5_000;
    let mut message = String::from("Subject: deep\r\nMessage-ID: <deep@example.org>\r\n");
    for level in 0..depth {
        message.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{level}\"\r\n\r\n--b{level}\r\n"
        ));
    }
    message.push_str("Content-Type: text/plain\r\n\r\ninnermost\r\n");
    for level in (0..depth).rev() {
        message.push_str(&format!("--b{level}--\r\n"));
    }
    let mut c = Client::greeted(server.smtp).await;
    let reply = c.send_mail("a@example.org", &[TARGET], &message).await;
    assert_eq!(reply.code, 250);
    let payload = &server.sink.wait_for(1).await[0];
    assert_eq!(payload.subject, "deep");
    assert_eq!(payload.message_id.as_deref(), Some("<deep@example.org>"));
    server.stop().await;
}

#[tokio::test]
async fn client_vanishing_in_data_ends_the_session() {
    // One session per IP: a new connection is admitted only once the
    // abandoned session has really ended.
    let server = TestServer::start(&["--max-concurrent-per-ip", "1"]).await;
    let mut c = Client::greeted(server.smtp).await;
    c.open_data("a@example.org", &[TARGET]).await;
    c.send("Subject: half\r\n\r\nhalf a bod").await;
    drop(c);
    eventually("the abandoned session to end", || async {
        let mut next = Client::connect(server.smtp).await;
        next.reply().await.code == 220
    })
    .await;
    assert!(
        server.sink.payloads().is_empty(),
        "a half message is never delivered"
    );
    server.stop().await;
}

#[tokio::test]
async fn unknown_recipient_cap_closes_with_421() {
    let server = TestServer::start(&["--max-unknown-rcpts-per-session", "2"]).await;
    let mut c = Client::greeted(server.smtp).await;
    c.command("EHLO c").await;
    c.command("MAIL FROM:<a@example.org>").await;
    c.expect("RCPT TO:<x1@example.com>", "550 5.1.1 No such user here")
        .await;
    c.expect(&format!("RCPT TO:<{TARGET}>"), "250 2.1.5 OK")
        .await;
    c.expect("RCPT TO:<x2@example.com>", "550 5.1.1 No such user here")
        .await;
    c.expect(
        "RCPT TO:<x3@example.com>",
        "421 4.7.0 Too many unknown recipients, closing connection",
    )
    .await;
    c.expect_closed().await;
    server.stop().await;
}

#[tokio::test]
async fn error_cap_closes_with_421() {
    let server = TestServer::start(&[]).await;
    let mut c = Client::greeted(server.smtp).await;
    c.command("EHLO c").await;
    for _ in 0..9 {
        c.expect("BOGUS", "500 5.5.2 Command not recognized").await;
    }
    c.expect("BOGUS", "421 4.4.2 Too many errors, closing connection")
        .await;
    c.expect_closed().await;
    server.stop().await;
}

#[tokio::test]
async fn idle_timeout_closes_with_421() {
    let server = TestServer::start(&["--smtp-timeout", "1"]).await;
    let mut c = Client::greeted(server.smtp).await;
    c.expect("EHLO c", "250 STARTTLS").await;
    let reply = c.reply().await;
    assert_eq!(reply.last(), "421 4.4.2 Idle timeout, closing connection");
    c.expect_closed().await;
    server.stop().await;
}

#[tokio::test]
async fn connection_limits_answer_421() {
    let server =
        TestServer::start(&["--max-connections", "2", "--max-concurrent-per-ip", "0"]).await;
    let _first = Client::greeted(server.smtp).await;
    let _second = Client::greeted(server.smtp).await;
    let mut third = Client::connect(server.smtp).await;
    assert_eq!(
        third.reply().await.last(),
        "421 4.7.0 Too many connections, try again later"
    );
    third.expect_closed().await;
    server.stop().await;

    let server = TestServer::start(&["--max-concurrent-per-ip", "1"]).await;
    let first = Client::greeted(server.smtp).await;
    let mut second = Client::connect(server.smtp).await;
    assert_eq!(
        second.reply().await.last(),
        "421 4.7.0 Too many connections, try again later"
    );
    drop(first);
    eventually("the per-IP slot to be released", || async {
        Client::connect(server.smtp).await.reply().await.code == 220
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn require_tls_refuses_mail_in_clear() {
    let server = TestServer::start(&["--require-tls", "true"]).await;
    let mut c = Client::greeted(server.smtp).await;
    c.command("EHLO c").await;
    c.expect(
        "MAIL FROM:<a@example.org>",
        "530 5.7.0 Must issue a STARTTLS command first",
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn delivery_outcomes_decide_the_final_reply() {
    let server = TestServer::start(&[]).await;
    server.sink.answer_with(DeliveryOutcome::Deferred);
    let mut c = Client::greeted(server.smtp).await;
    let reply = c
        .send_mail("a@example.org", &[TARGET], &simple_message("d", "x"))
        .await;
    assert_eq!(
        reply.last(),
        "451 4.3.0 Temporary delivery failure, try again later"
    );
    server.sink.answer_with(DeliveryOutcome::Rejected {
        reason: Some("no thanks".into()),
    });
    let reply = c
        .send_mail("a@example.org", &[TARGET], &simple_message("r", "x"))
        .await;
    assert_eq!(reply.last(), "554 5.6.0 no thanks");
    server.stop().await;
}

#[tokio::test]
async fn shutdown_answers_idle_sessions_and_finishes_data() {
    let server = TestServer::start(&[]).await;
    let mut idle = Client::greeted(server.smtp).await;
    idle.command("EHLO idle").await;
    let mut busy = Client::greeted(server.smtp).await;
    busy.open_data("a@example.org", &[TARGET]).await;
    busy.send(simple_message("in-flight", "first half ")).await;

    server.shutdown.cancel();
    assert_eq!(idle.reply().await.last(), "421 4.3.2 Service shutting down");
    idle.expect_closed().await;
    // New connections are no longer accepted.
    eventually("the listener to close", || async {
        tokio::net::TcpStream::connect(server.smtp).await.is_err()
    })
    .await;

    busy.send("second half").await;
    busy.expect("\r\n.", "250 2.0.0 OK: Message accepted for delivery")
        .await;
    assert_eq!(busy.reply().await.last(), "421 4.3.2 Service shutting down");
    let payloads = server.sink.wait_for(1).await;
    assert_eq!(payloads[0].subject, "in-flight");
    tokio::time::timeout(DEADLINE, server.task)
        .await
        .unwrap()
        .unwrap();
}

/// Issue "recipient duplicates": acceptance folded case with Unicode rules
/// and duplicate removal with ASCII rules, so two spellings of one mailbox
/// (`k` and U+212A KELVIN SIGN) were accepted twice and POSTed twice. One
/// canonical form now decides both (and the idempotency key).
#[tokio::test]
async fn recipient_spellings_of_one_mailbox_are_one_recipient() {
    let config = mail_laser::config::Config::from_args([
        "mail-laser",
        "--target-emails",
        "kelvin@example.com",
        "--webhook-url",
        "-",
    ])
    .unwrap();
    let server = TestServer::start_with(config).await;
    let mut c = Client::greeted(server.smtp).await;
    c.command("EHLO c").await;
    c.expect("MAIL FROM:<a@example.org> SMTPUTF8", "250 2.1.0 OK")
        .await;
    for spelling in [
        "kelvin@example.com",
        "KELVIN@example.com",
        "\u{212A}elvin@example.com",
    ] {
        c.expect(&format!("RCPT TO:<{spelling}>"), "250 2.1.5 OK")
            .await;
    }
    c.expect("DATA", "354 Start mail input; end with <CRLF>.<CRLF>")
        .await;
    c.send(simple_message("once", "one mailbox")).await;
    c.expect("\r\n.", "250 2.0.0 OK: Message accepted for delivery")
        .await;
    // Every payload reached the sink before the 250.
    let payloads = server.sink.payloads();
    assert_eq!(payloads.len(), 1, "{payloads:?}");
    assert_eq!(payloads[0].recipient, "kelvin@example.com");
    server.stop().await;
}

/// Issue "log injection" (its second half): quotes were lost in `sender`,
/// which made `"john doe"@example.org` another mailbox.
#[tokio::test]
async fn a_quoted_sender_keeps_its_quotes() {
    let server = TestServer::start(&[]).await;
    let mut c = Client::greeted(server.smtp).await;
    let reply = c
        .send_mail(
            "\"john doe\"@example.org",
            &[TARGET],
            &simple_message("quoted", "x"),
        )
        .await;
    assert_eq!(reply.last(), "250 2.0.0 OK: Message accepted for delivery");
    let payloads = server.sink.payloads();
    assert_eq!(payloads.len(), 1);
    assert_eq!(payloads[0].sender, "\"john doe\"@example.org");
    server.stop().await;
}
