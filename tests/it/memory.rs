//! The memory budget (`docs/smtp.md`, `MAIL_LASER_MAX_BUFFERED_BYTES`): the
//! message octets all sessions hold together are bounded; beyond the budget
//! a body is read to its end without being kept and answered `452 4.3.1`,
//! and while nothing is left DATA is answered `452` before any octet is read.

use tokio::net::TcpStream;

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

/// Subjects of the payloads delivered so far, in order.
fn delivered_subjects(server: &TestServer) -> Vec<String> {
    let payloads = server.sink.payloads();
    payloads
        .iter()
        .map(|payload| payload.subject.clone())
        .collect()
}

async fn ready_for_data(client: &mut Client<TcpStream>) {
    assert_eq!(client.command("EHLO client.example").await.code, 250);
    assert_eq!(client.command("MAIL FROM:<a@example.org>").await.code, 250);
    assert_eq!(
        client.command(&format!("RCPT TO:<{TARGET}>")).await.code,
        250
    );
}

/// Opens a session that sends `size` octets of a message and holds it
/// unfinished, once the server counts `expect` octets held in all.
async fn hold(server: &TestServer, subject: &str, size: usize, expect: u64) -> Client<TcpStream> {
    let mut holder = Client::greeted(server.smtp).await;
    holder.open_data("a@example.org", &[TARGET]).await;
    holder.send(message_of(subject, size)).await;
    eventually("the held body to be counted", || async {
        buffered(server).await >= expect
    })
    .await;
    holder
}

/// Issue 9, finding 5: 40 sessions streaming unterminated bodies took the
/// process from 12 MB to 1 GB. Now sessions holding most of the budget
/// leave the others `452` — mid-body (the body is drained, not kept) and
/// before any octet — and once they are gone, mail flows again.
#[tokio::test]
async fn memory_has_a_global_bound() {
    let server = TestServer::start(&[
        "--max-message-size",
        "262144",
        "--max-buffered-bytes",
        "1048576",
    ])
    .await;
    // 250 KB counts as 16 steps of 16 KiB: 256 KiB.
    const HELD: u64 = 256 * 1024;
    let first = hold(&server, "held", 250_000, HELD).await;
    let second = hold(&server, "second", 250_000, 2 * HELD).await;
    let third = hold(&server, "third", 250_000, 3 * HELD).await;
    let mut fourth = hold(&server, "fourth", 100_000, 3 * HELD + 7 * 16 * 1024).await;

    // 144 KiB left: a 200 KB message is read to its end and refused.
    let mut other = Client::greeted(server.smtp).await;
    let reply = other
        .send_mail("a@example.org", &[TARGET], &message_of("dropped", 200_000))
        .await;
    assert_eq!(reply.last(), FULL);

    // Nothing left: DATA is refused before any octet.
    fourth.send("y".repeat(150_000)).await;
    eventually("the whole budget to be held", || async {
        buffered(&server).await == 4 * HELD
    })
    .await;
    ready_for_data(&mut other).await;
    other.expect("DATA", FULL).await;

    // The holders go; the first one's message completes and is delivered.
    drop((second, third, fourth));
    eventually("the others' octets to be given back", || async {
        buffered(&server).await == HELD
    })
    .await;
    let mut first = first;
    first.send("\r\n.\r\n").await;
    assert_eq!(first.reply().await.code, 250);
    assert_eq!(other.command("DATA").await.code, 354);
    other.send(message_of("later", 200_000)).await;
    other.send("\r\n.\r\n").await;
    assert_eq!(other.reply().await.code, 250);

    assert_eq!(
        delivered_subjects(&server),
        ["held", "later"],
        "the refused message was not delivered"
    );
    eventually("the budget to be free again", || async {
        buffered(&server).await == 0
    })
    .await;
    server.stop().await;
}

/// Finding 5: what a message costs after its bytes — the parsed fields and
/// the JSON, once for all recipients — is held against the same budget
/// until every recipient is answered. A payload that cannot be held now is
/// `452` (the sender retries); one larger than the whole budget never could
/// be, and is `552`.
#[tokio::test]
async fn memory_has_a_global_bound_payloads_count_too() {
    let server = TestServer::start(&[
        "--max-message-size",
        "131072",
        "--max-buffered-bytes",
        "262144",
    ])
    .await;

    // 120 KB of text: its bytes (128 KiB) plus 120 KB parsed plus 120 KB
    // of JSON can never be held in 256 KiB.
    let mut client = Client::greeted(server.smtp).await;
    let reply = client
        .send_mail("a@example.org", &[TARGET], &message_of("huge", 120_000))
        .await;
    assert_eq!(reply.last(), "552 5.3.4 Message size exceeds limit");

    // 128 KiB held by another session: a 45 KB message's bytes still fit
    // (48 KiB), its payload (90 KB) no longer does.
    let holder = hold(&server, "held", 120_000, 128 * 1024).await;
    let reply = client
        .send_mail("a@example.org", &[TARGET], &message_of("small", 45_000))
        .await;
    assert_eq!(reply.last(), FULL);

    drop(holder);
    eventually("the holder's octets to be given back", || async {
        buffered(&server).await == 0
    })
    .await;
    let reply = client
        .send_mail("a@example.org", &[TARGET], &message_of("small", 45_000))
        .await;
    assert_eq!(reply.code, 250);
    assert_eq!(delivered_subjects(&server), ["small"]);
    server.stop().await;
}
