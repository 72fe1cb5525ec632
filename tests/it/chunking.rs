//! CHUNKING / BDAT (RFC 3030) over real sockets: chunks are raw octets, the
//! last one delivers like DATA, the size limit and the sequencing rules hold,
//! and a refused BDAT still has its chunk read so the stream stays in sync.

use crate::common::{Client, DEADLINE, OTHER_TARGET, TARGET, TestServer, simple_message};
use mail_laser::sink::DeliveryOutcome;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Greets and opens a transaction for `TARGET`.
async fn transaction(server: &TestServer) -> Client<TcpStream> {
    let mut c = Client::greeted(server.smtp).await;
    let ehlo = c.command("EHLO client.example").await;
    assert!(ehlo.lines.iter().any(|line| line == "CHUNKING"), "{ehlo:?}");
    c.expect("MAIL FROM:<sender@example.org>", "250 2.1.0 OK")
        .await;
    c.expect(&format!("RCPT TO:<{TARGET}>"), "250 2.1.5 OK")
        .await;
    c
}

/// Sends `BDAT n [LAST]` and the chunk in one write; returns the reply.
async fn bdat(c: &mut Client<TcpStream>, chunk: &[u8], last: bool) -> String {
    let mut bytes = format!(
        "BDAT {}{}\r\n",
        chunk.len(),
        if last { " LAST" } else { "" }
    )
    .into_bytes();
    bytes.extend_from_slice(chunk);
    c.send(bytes).await;
    c.reply().await.last()
}

#[tokio::test]
async fn chunks_are_delivered_raw_as_one_message() {
    let server = TestServer::start(&[]).await;
    let mut c = transaction(&server).await;
    // Neither dots nor a terminator look-alike mean anything inside a chunk.
    let head = "From: Alice <alice@example.org>\r\nSubject: chunked\r\nMessage-ID: <bdat-1@example.org>\r\n\r\n";
    let body = ".leading dot stays\r\n.\r\nstill body\r\nQUIT\r\n";
    assert_eq!(
        bdat(&mut c, head.as_bytes(), false).await,
        format!("250 2.0.0 {} octets received", head.len())
    );
    assert_eq!(
        bdat(&mut c, b"", false).await,
        "250 2.0.0 0 octets received"
    );
    assert_eq!(
        bdat(&mut c, body.as_bytes(), true).await,
        "250 2.0.0 OK: Message accepted for delivery"
    );
    c.expect("NOOP", "250 2.0.0 OK").await;

    let payloads = server.sink.wait_for(1).await;
    assert_eq!(payloads.len(), 1);
    let payload = &payloads[0];
    assert_eq!(payload.sender, "sender@example.org");
    assert_eq!(payload.recipient, TARGET);
    assert_eq!(payload.subject, "chunked");
    assert_eq!(payload.sender_name.as_deref(), Some("Alice"));
    assert_eq!(payload.message_id.as_deref(), Some("<bdat-1@example.org>"));
    assert_eq!(payload.body, body);
    server.stop().await;
}

#[tokio::test]
async fn bdat_0_last_delivers_an_empty_message() {
    let server = TestServer::start(&[]).await;
    let mut c = transaction(&server).await;
    assert_eq!(
        bdat(&mut c, b"", true).await,
        "250 2.0.0 OK: Message accepted for delivery"
    );
    let payload = &server.sink.wait_for(1).await[0];
    assert_eq!((payload.subject.as_str(), payload.body.as_str()), ("", ""));
    server.stop().await;
}

#[tokio::test]
async fn pipelined_bdat_transaction_is_answered_with_one_write() {
    let server = TestServer::start(&[]).await;
    let mut c = Client::greeted(server.smtp).await;
    c.command("EHLO client.example").await;
    let mut stream = c.into_inner();
    let first = "Subject: piped\r\n\r\n";
    let second = "two chunks\r\n";
    let batch = format!(
        "MAIL FROM:<a@example.org>\r\nRCPT TO:<{TARGET}>\r\nRCPT TO:<{OTHER_TARGET}>\r\n\
         BDAT {}\r\n{first}BDAT {} LAST\r\n{second}NOOP\r\n",
        first.len(),
        second.len()
    );
    stream.write_all(batch.as_bytes()).await.unwrap();
    let expected = format!(
        "250 2.1.0 OK\r\n250 2.1.5 OK\r\n250 2.1.5 OK\r\n250 2.0.0 {} octets received\r\n\
         250 2.0.0 OK: Message accepted for delivery\r\n250 2.0.0 OK\r\n",
        first.len()
    );
    let mut buf = vec![0; 4096];
    let n = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    // All six replies in one read: one flush for the whole batch.
    assert_eq!(String::from_utf8_lossy(&buf[..n]), expected);
    let payloads = server.sink.wait_for(2).await;
    assert_eq!(payloads.len(), 2);
    for payload in &payloads {
        assert_eq!(payload.subject, "piped");
        assert_eq!(payload.body, second);
    }
    server.stop().await;
}

#[tokio::test]
async fn refused_bdat_has_its_chunk_discarded() {
    let server = TestServer::start(&[]).await;
    let mut c = Client::greeted(server.smtp).await;
    c.command("EHLO client.example").await;
    // No transaction: the chunk, which looks like commands, is dropped
    // rather than executed.
    let smuggled = format!("MAIL FROM:<evil@example.org>\r\nRCPT TO:<{TARGET}>\r\nQUIT\r\n");
    assert_eq!(
        bdat(&mut c, smuggled.as_bytes(), true).await,
        "503 5.5.1 Bad sequence of commands"
    );
    c.expect("NOOP", "250 2.0.0 OK").await;
    // Without an accepted recipient as well.
    c.expect("MAIL FROM:<a@example.org>", "250 2.1.0 OK").await;
    c.expect(
        "RCPT TO:<nobody@example.com>",
        "550 5.1.1 No such user here",
    )
    .await;
    assert_eq!(
        bdat(&mut c, b"RSET\r\n", false).await,
        "503 5.5.1 Bad sequence of commands"
    );
    c.expect("NOOP", "250 2.0.0 OK").await;
    assert!(server.sink.payloads().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn data_after_bdat_is_refused() {
    let server = TestServer::start(&[]).await;
    let mut c = transaction(&server).await;
    assert_eq!(
        bdat(&mut c, b"Subject: mixed\r\n\r\n", false).await,
        "250 2.0.0 18 octets received"
    );
    c.expect("DATA", "503 5.5.1 DATA not allowed after BDAT")
        .await;
    assert_eq!(
        bdat(&mut c, b"end\r\n", true).await,
        "250 2.0.0 OK: Message accepted for delivery"
    );
    let payload = &server.sink.wait_for(1).await[0];
    assert_eq!(
        (payload.subject.as_str(), payload.body.as_str()),
        ("mixed", "end\r\n")
    );
    server.stop().await;
}

#[tokio::test]
async fn rset_clears_the_chunks() {
    let server = TestServer::start(&[]).await;
    let mut c = transaction(&server).await;
    bdat(&mut c, b"Subject: dropped\r\n\r\n", false).await;
    c.expect("RSET", "250 2.0.0 OK").await;
    c.expect("MAIL FROM:<a@example.org>", "250 2.1.0 OK").await;
    c.expect(&format!("RCPT TO:<{TARGET}>"), "250 2.1.5 OK")
        .await;
    assert_eq!(
        bdat(&mut c, b"Subject: kept\r\n\r\nbody\r\n", true).await,
        "250 2.0.0 OK: Message accepted for delivery"
    );
    let payloads = server.sink.wait_for(1).await;
    assert_eq!(payloads.len(), 1);
    assert_eq!(payloads[0].subject, "kept");
    server.stop().await;
}

#[tokio::test]
async fn oversize_bdat_is_drained_and_refused_with_552() {
    let server = TestServer::start(&["--max-message-size", "1000"]).await;
    let mut c = transaction(&server).await;
    // 600 + 600 octets: the second chunk overflows and is dropped, the
    // transaction fails at LAST, and the session goes on in sync.
    let head = simple_message("too-big", &"x".repeat(600));
    assert_eq!(
        bdat(&mut c, &head.as_bytes()[..600], false).await,
        "250 2.0.0 600 octets received"
    );
    assert_eq!(
        bdat(&mut c, &[b'y'; 600], false).await,
        "250 2.0.0 600 octets received"
    );
    // A chunk far over the limit is read through without being buffered.
    assert_eq!(
        bdat(&mut c, &vec![b'z'; 1 << 20], true).await,
        "552 5.3.4 Message size exceeds limit"
    );
    c.expect("NOOP", "250 2.0.0 OK").await;
    // A message at the limit still goes through the same session.
    c.expect("MAIL FROM:<a@example.org>", "250 2.1.0 OK").await;
    c.expect(&format!("RCPT TO:<{TARGET}>"), "250 2.1.5 OK")
        .await;
    let mut fits = simple_message("fits", "").into_bytes();
    fits.resize(1000, b'f');
    assert_eq!(
        bdat(&mut c, &fits, true).await,
        "250 2.0.0 OK: Message accepted for delivery"
    );
    let payloads = server.sink.wait_for(1).await;
    assert_eq!(payloads.len(), 1);
    assert_eq!(payloads[0].subject, "fits");
    server.stop().await;
}

#[tokio::test]
async fn bdat_delivery_outcome_decides_the_reply() {
    let server = TestServer::start(&[]).await;
    server.sink.answer_with(DeliveryOutcome::Deferred);
    let mut c = transaction(&server).await;
    assert_eq!(
        bdat(&mut c, simple_message("retry", "x").as_bytes(), true).await,
        "451 4.3.0 Temporary delivery failure, try again later"
    );
    server.sink.answer_with(DeliveryOutcome::Delivered);
    c.expect("MAIL FROM:<sender@example.org>", "250 2.1.0 OK")
        .await;
    c.expect(&format!("RCPT TO:<{TARGET}>"), "250 2.1.5 OK")
        .await;
    assert_eq!(
        bdat(&mut c, simple_message("retry", "x").as_bytes(), true).await,
        "250 2.0.0 OK: Message accepted for delivery"
    );
    assert_eq!(server.sink.wait_for(1).await[0].subject, "retry");
    server.stop().await;
}

/// Issue "BDAT 99999999999999999999999 LAST": a size over 64 bits was read
/// as a small chunk and the octets after it ran as commands, so a second,
/// smuggled transaction was delivered. Now the size is refused, the session
/// closes, and nothing is delivered.
#[tokio::test]
async fn bdat_size_over_u64_is_refused_and_nothing_is_smuggled() {
    let server = TestServer::start(&[]).await;
    let mut c = transaction(&server).await;
    let smuggled = format!(
        "RSET\r\nMAIL FROM:<forger@example.org>\r\nRCPT TO:<{TARGET}>\r\nDATA\r\n{}\r\n.\r\n",
        simple_message("smuggled", "not from the client you think")
    );
    c.send(format!("BDAT 99999999999999999999999 LAST\r\n{smuggled}"))
        .await;
    assert_eq!(
        c.reply().await.last(),
        "501 5.5.4 Syntax: BDAT <size> [LAST], closing connection"
    );
    c.expect_closed().await;
    // The session is over: nothing it read can still be delivered.
    assert!(server.sink.payloads().is_empty());
    server.stop().await;
}
