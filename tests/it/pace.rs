//! How long a client may take (`docs/smtp.md`): a command line has the SMTP
//! timeout as a total, a message body a minimum rate, and every write the
//! same deadline as reads, so no client holds a session by being slow.

use std::time::Duration;

use crate::common::{self, DEADLINE, TARGET, TestServer, eventually};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;

/// Reads reply lines until one without a continuation; returns its text.
async fn last_reply_line(reader: &mut BufReader<OwnedReadHalf>) -> String {
    loop {
        let mut line = String::new();
        let read = tokio::time::timeout(DEADLINE, reader.read_line(&mut line))
            .await
            .expect("a reply in time")
            .expect("readable");
        assert_ne!(read, 0, "the connection closed before the reply");
        if line.as_bytes().get(3) != Some(&b'-') {
            return line.trim_end().to_owned();
        }
    }
}

/// Connects and reads the greeting.
async fn connect(server: &TestServer) -> (BufReader<OwnedReadHalf>, OwnedWriteHalf) {
    let stream = TcpStream::connect(server.smtp).await.unwrap();
    let (read, write) = stream.into_split();
    let mut reader = BufReader::new(read);
    assert!(last_reply_line(&mut reader).await.starts_with("220 "));
    (reader, write)
}

async fn command(
    reader: &mut BufReader<OwnedReadHalf>,
    writer: &mut OwnedWriteHalf,
    line: &str,
) -> String {
    writer
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .unwrap();
    last_reply_line(reader).await
}

/// Writes `bytes` one octet every `every`, until the server closes.
fn trickle(mut writer: OwnedWriteHalf, bytes: Vec<u8>, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        for byte in bytes {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(every).await;
        }
    })
}

async fn expect_closed(reader: &mut BufReader<OwnedReadHalf>) {
    let mut rest = String::new();
    let read = tokio::time::timeout(DEADLINE, reader.read_line(&mut rest))
        .await
        .expect("close in time");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "expected the connection to close, got {rest:?}"
    );
}

/// Issue "trickle": one byte every 2 s kept a session alive for ever with
/// `SMTP_TIMEOUT=5`; a command line now has the timeout as a whole.
#[tokio::test]
async fn a_trickled_command_line_times_out_as_a_whole() {
    let server = TestServer::start(&["--smtp-timeout", "1"]).await;
    let (mut reader, mut writer) = connect(&server).await;
    assert!(
        command(&mut reader, &mut writer, "EHLO c")
            .await
            .starts_with("250 ")
    );
    // A byte every 100 ms: never silent for the timeout, never a whole line.
    let trickler = trickle(writer, vec![b'x'; 1000], Duration::from_millis(100));
    assert_eq!(
        last_reply_line(&mut reader).await,
        "421 4.4.2 Idle timeout, closing connection"
    );
    expect_closed(&mut reader).await;
    trickler.abort();
    server.stop().await;
}

/// Issue "trickle", message body: a body must average
/// `MAIL_LASER_DATA_MIN_RATE` once its grace period has passed.
#[tokio::test]
async fn a_trickled_message_body_is_closed_when_too_slow() {
    let mut config = common::config("-", &["--smtp-timeout", "5", "--data-min-rate", "1000"]);
    config.server.timeouts.data_rate_grace = Duration::from_millis(500);
    let server = TestServer::start_with(config).await;
    let (mut reader, mut writer) = connect(&server).await;
    for (line, reply) in [
        ("EHLO c", "250 "),
        ("MAIL FROM:<a@example.org>", "250 "),
        (&format!("RCPT TO:<{TARGET}>"), "250 "),
        ("DATA", "354 "),
    ] {
        let got = command(&mut reader, &mut writer, line).await;
        assert!(got.starts_with(reply), "{line}: {got}");
    }
    // About 20 bytes a second, far below the minimum, never pausing long.
    let trickler = trickle(writer, vec![b'x'; 10_000], Duration::from_millis(50));
    assert_eq!(
        last_reply_line(&mut reader).await,
        "421 4.4.2 Too slow, closing connection"
    );
    expect_closed(&mut reader).await;
    trickler.abort();
    assert!(server.sink.payloads().is_empty());
    server.stop().await;
}

/// Issue "a client that never reads": writes had no deadline, so a client
/// pipelining commands with a tiny receive window pinned its session. Now
/// the session ends once a write has waited the SMTP timeout.
#[tokio::test]
async fn a_client_that_never_reads_loses_its_session() {
    let server = TestServer::start(&["--smtp-timeout", "1"]).await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.smtp).await.unwrap();
    let (_never_read, mut writer) = stream.into_split();
    // Megabytes of replies to commands the client never reads.
    let flood = tokio::spawn(async move {
        let batch = "HELP\r\n".repeat(10_000);
        let _ = writer.write_all(b"EHLO c\r\n").await;
        for _ in 0..100 {
            if writer.write_all(batch.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    eventually("the session to end", || async {
        common::http_get(server.http, "/metrics")
            .await
            .1
            .lines()
            .any(|line| line == "maillaser_sessions_total{tls=\"false\"} 1")
    })
    .await;
    flood.abort();
    server.stop().await;
}
