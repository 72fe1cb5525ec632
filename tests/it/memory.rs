//! The memory budget (`docs/smtp.md`, `MAIL_LASER_MAX_BUFFERED_BYTES`): the
//! message octets all sessions hold together are bounded; beyond the budget
//! a body is read to its end without being kept and answered `452 4.3.1`,
//! and while nothing is left DATA is answered `452` before any octet is read.

use crate::common::{Client, TARGET, TestServer, eventually, http_get, simple_message};

const FULL: &str = "452 4.3.1 Insufficient system storage, try again later";

/// `maillaser_buffered_bytes` as the server exports it.
async fn buffered(server: &TestServer) -> u64 {
    let (_, metrics) = http_get(server.http, "/metrics").await;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("maillaser_buffered_bytes "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

/// A message of about `size` octets.
fn message_of(subject: &str, size: usize) -> String {
    let line = format!("{}\r\n", "x".repeat(78));
    simple_message(subject, &line.repeat(size / line.len()))
}

async fn ready_for_data(client: &mut Client<tokio::net::TcpStream>) {
    assert_eq!(client.command("EHLO client.example").await.code, 250);
    assert_eq!(client.command("MAIL FROM:<a@example.org>").await.code, 250);
    assert_eq!(
        client.command(&format!("RCPT TO:<{TARGET}>")).await.code,
        250
    );
}

/// Issue 9, finding 5: 40 sessions streaming unterminated bodies took the
/// process from 12 MB to 1 GB. Now one session holding most of the budget
/// leaves the others `452` — mid-body (the body is drained, not kept) and
/// before any octet — and once it is answered, mail flows again.
#[tokio::test]
async fn memory_has_a_global_bound() {
    let mib = "1048576";
    let server = TestServer::start(&["--max-message-size", mib, "--max-buffered-bytes", mib]).await;

    // 700 KB held by an unfinished body: a 400 KB one no longer fits.
    let mut holder = Client::greeted(server.smtp).await;
    holder.open_data("a@example.org", &[TARGET]).await;
    let first = message_of("held", 700_000);
    holder.send(&first).await;
    eventually("the held body to be counted", || async {
        buffered(&server).await >= 700_000
    })
    .await;
    let mut other = Client::greeted(server.smtp).await;
    let reply = other
        .send_mail("a@example.org", &[TARGET], &message_of("dropped", 400_000))
        .await;
    assert_eq!(reply.last(), FULL);

    // The rest of the budget taken too: DATA is refused up front.
    let top_up = "y".repeat(345_000);
    holder.send(&top_up).await;
    eventually("the whole budget to be held", || async {
        buffered(&server).await >= 1_040_000
    })
    .await;
    ready_for_data(&mut other).await;
    other.expect("DATA", FULL).await;

    // The held message completes and is delivered; its octets go back.
    holder.send("\r\n.\r\n").await;
    assert_eq!(holder.reply().await.code, 250);
    eventually("the budget to be free again", || async {
        buffered(&server).await == 0
    })
    .await;
    assert_eq!(other.command("DATA").await.code, 354);
    other.send(message_of("later", 400_000)).await;
    other.send("\r\n.\r\n").await;
    assert_eq!(other.reply().await.code, 250);

    let subjects: Vec<String> = server
        .sink
        .payloads()
        .into_iter()
        .map(|payload| payload.subject.clone())
        .collect();
    assert_eq!(
        subjects,
        ["held", "later"],
        "the refused message was not delivered"
    );
    server.stop().await;
}
