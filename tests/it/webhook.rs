//! The webhook path end to end: SMTP client → MailLaser → a real HTTP
//! receiver on loopback. A `250` only ever follows the receiver's `2xx`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::receiver::{Answer, Receiver};
use crate::common::{self, Client, OTHER_TARGET, TARGET, TestServer, eventually, simple_message};
use hmac::{KeyInit, Mac};
use mail_laser::webhook::{BreakerState, WebhookSink};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::Notify;

const DEFERRED: &str = "451 4.3.0 Temporary delivery failure, try again later";
const ACCEPTED: &str = "250 2.0.0 OK: Message accepted for delivery";

/// A server posting to `receiver`, with `extra` flags; returns the sink so
/// tests can watch its breaker.
async fn server(receiver: &Receiver, extra: &[&str]) -> (TestServer, WebhookSink) {
    server_at(&receiver.url(), extra).await
}

async fn server_at(url: &str, extra: &[&str]) -> (TestServer, WebhookSink) {
    TestServer::start_webhook(url, extra, common::observability()).await
}

async fn send(server: &TestServer, subject: &str, to: &[&str]) -> String {
    let mut client = Client::greeted(server.smtp).await;
    client
        .send_mail(
            "sender@example.org",
            to,
            &simple_message(subject, "body text"),
        )
        .await
        .last()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn payload_headers_idempotency_key_and_signature() {
    let receiver = Receiver::start().await;
    let (server, _) = server(&receiver, &["--webhook-signing-secret", "s3cret"]).await;
    assert_eq!(send(&server, "signed", &[TARGET]).await, ACCEPTED);

    let request = &receiver.wait_for(1).await[0];
    assert_eq!(request.header("content-type"), "application/json");
    // Sent in pieces, but with its length (not chunked): receivers that
    // need a Content-Length get one.
    assert_eq!(
        request.header("content-length"),
        request.body.len().to_string()
    );
    assert!(request.headers.get("transfer-encoding").is_none());
    assert_eq!(
        request.header("user-agent"),
        format!("MailLaser/{}", env!("CARGO_PKG_VERSION"))
    );

    let json = request.json();
    assert_eq!(json["sender"], "sender@example.org");
    assert_eq!(json["recipient"], TARGET);
    assert_eq!(json["subject"], "signed");
    assert_eq!(json["sender_name"], "Alice Example");
    assert_eq!(json["message_id"], "<id-signed@example.org>");
    assert_eq!(json["body"].as_str().unwrap().trim_end(), "body text");

    // Idempotency-Key: sha256(lower(recipient) NUL sender NUL sha256(raw
    // message)), lowercase hex; the raw message ends with the CRLF before
    // the terminating dot.
    let raw = format!("{}\r\n", simple_message("signed", "body text"));
    let mut key = Sha256::new();
    key.update(format!("{TARGET}\0sender@example.org\0"));
    key.update(Sha256::digest(raw));
    assert_eq!(request.header("idempotency-key"), hex(&key.finalize()));

    // The signature verifies with the secret over "<timestamp>.<raw body>".
    let timestamp = request.header("x-maillaser-timestamp");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(timestamp.parse().unwrap()) < 300);
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(b"s3cret").unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(&request.body);
    assert_eq!(
        request.header("x-maillaser-signature-256"),
        format!("sha256={}", hex(&mac.finalize().into_bytes()))
    );
    server.stop().await;
}

#[tokio::test]
async fn unsigned_without_a_secret() {
    let receiver = Receiver::start().await;
    let (server, _) = server(&receiver, &[]).await;
    assert_eq!(send(&server, "plain", &[TARGET]).await, ACCEPTED);
    let request = &receiver.wait_for(1).await[0];
    assert!(request.headers.get("x-maillaser-signature-256").is_none());
    assert!(request.headers.get("x-maillaser-timestamp").is_none());
    server.stop().await;
}

#[tokio::test]
async fn two_500s_then_success_is_one_delivery_and_250() {
    let receiver = Receiver::start().await;
    receiver.script([Answer::Status(500), Answer::Status(500)]);
    let (server, _) = server(&receiver, &[]).await;
    assert_eq!(send(&server, "retried", &[TARGET]).await, ACCEPTED);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 3, "two failures and one success");
    let keys: Vec<_> = requests
        .iter()
        .map(|r| r.header("idempotency-key"))
        .collect();
    assert!(
        keys.iter().all(|key| *key == keys[0]),
        "one key across retries: {keys:?}"
    );
    assert!(requests.iter().all(|r| r.body == requests[0].body));

    let metrics = common::http_get(server.http, "/metrics").await.1;
    for line in [
        "maillaser_messages_total{outcome=\"delivered\"} 1",
        "maillaser_webhook_retries_total 2",
        "maillaser_webhook_request_duration_seconds_count{status_class=\"5xx\"} 2",
        "maillaser_webhook_request_duration_seconds_count{status_class=\"2xx\"} 1",
        "maillaser_smtp_commands_total{reply_class=\"2xx\",verb=\"DATA\"} 1",
        "maillaser_smtp_commands_total{reply_class=\"3xx\",verb=\"DATA\"} 1",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
    server.stop().await;
}

#[tokio::test]
async fn webhook_failing_every_attempt_is_451() {
    let receiver = Receiver::start().await;
    receiver.answer_with(Answer::Status(500));
    let (server, _) = server(&receiver, &["--webhook-max-retries", "2"]).await;
    assert_eq!(send(&server, "down", &[TARGET]).await, DEFERRED);
    assert_eq!(
        receiver.requests().len(),
        3,
        "first attempt and two retries"
    );
    server.stop().await;
}

#[tokio::test]
async fn closed_port_is_451() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let (server, _) = server_at(&url, &["--webhook-max-retries", "1"]).await;
    assert_eq!(send(&server, "nobody-listens", &[TARGET]).await, DEFERRED);
    server.stop().await;
}

#[tokio::test]
async fn receiver_hanging_past_the_timeout_is_451() {
    let receiver = Receiver::start().await;
    receiver.answer_with(Answer::Hang);
    let (server, _) = server(
        &receiver,
        &["--webhook-timeout", "1", "--webhook-max-retries", "0"],
    )
    .await;
    assert_eq!(send(&server, "slow", &[TARGET]).await, DEFERRED);
    // The request timed out on MailLaser's side: the receiver may record it
    // after the reply.
    assert_eq!(receiver.wait_for(1).await.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn rejection_with_reason_is_554_carrying_it() {
    let receiver = Receiver::start().await;
    receiver.answer_with(Answer::Text(
        422,
        "Unknown ticket queue\r\nstack trace follows",
    ));
    let (server, _) = server(&receiver, &[]).await;
    assert_eq!(
        send(&server, "rejected", &[TARGET]).await,
        "554 5.6.0 Unknown ticket queue"
    );
    assert_eq!(receiver.requests().len(), 1, "a rejection is never retried");

    receiver.answer_with(Answer::Status(410));
    assert_eq!(
        send(&server, "gone", &[TARGET]).await,
        "554 5.6.0 Message rejected by webhook"
    );
    server.stop().await;
}

#[tokio::test]
async fn unauthorized_is_temporary() {
    let receiver = Receiver::start().await;
    receiver.answer_with(Answer::Text(401, "bad token"));
    let (server, _) = server(&receiver, &["--webhook-max-retries", "1"]).await;
    assert_eq!(send(&server, "unauthorized", &[TARGET]).await, DEFERRED);
    assert_eq!(receiver.requests().len(), 2, "401 is retried");
    server.stop().await;
}

#[tokio::test]
async fn breaker_opens_then_one_probe_closes_it() {
    let receiver = Receiver::start().await;
    receiver.answer_with(Answer::Status(503));
    let (server, sink) = server(
        &receiver,
        &[
            "--webhook-max-retries",
            "0",
            "--circuit-breaker-threshold",
            "2",
            // Long enough that the open state is seen before it half-opens.
            "--circuit-breaker-reset",
            "3",
        ],
    )
    .await;
    assert_eq!(common::http_get(server.http, "/ready").await.0, 200);
    assert_eq!(send(&server, "fail-1", &[TARGET]).await, DEFERRED);
    assert_eq!(send(&server, "fail-2", &[TARGET]).await, DEFERRED);
    assert_eq!(sink.breaker().state(), BreakerState::Open);
    // Not ready while the breaker is open (docs/http.md).
    assert_eq!(common::http_get(server.http, "/ready").await.0, 503);
    let metrics = common::http_get(server.http, "/metrics").await.1;
    assert!(
        metrics.contains("maillaser_circuit_breaker_state 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("maillaser_circuit_breaker_transitions_total{to=\"open\"} 1"),
        "{metrics}"
    );

    // Open: answered 451 without calling the webhook.
    assert_eq!(send(&server, "short-circuit", &[TARGET]).await, DEFERRED);
    assert_eq!(receiver.requests().len(), 2);

    receiver.answer_with(Answer::Status(200));
    // Half-open after the reset time, with no traffic at all: ready again,
    // so a load balancer sends the mail that will probe the webhook.
    eventually("ready once the breaker half-opens", || async {
        common::http_get(server.http, "/ready").await.0 == 200
    })
    .await;
    assert_eq!(sink.breaker().state(), BreakerState::HalfOpen);
    assert_eq!(send(&server, "probe", &[TARGET]).await, ACCEPTED);
    assert_eq!(receiver.requests().len(), 3, "exactly one probe");
    assert_eq!(sink.breaker().state(), BreakerState::Closed);
    assert_eq!(common::http_get(server.http, "/ready").await.0, 200);
    assert_eq!(send(&server, "after", &[TARGET]).await, ACCEPTED);
    server.stop().await;
}

#[tokio::test]
async fn two_recipients_are_two_posts() {
    let receiver = Receiver::start().await;
    let (server, _) = server(&receiver, &[]).await;
    assert_eq!(
        send(&server, "both", &[TARGET, OTHER_TARGET]).await,
        ACCEPTED
    );
    let requests = receiver.wait_for(2).await;
    let mut recipients: Vec<_> = requests
        .iter()
        .map(|r| r.json()["recipient"].as_str().unwrap().to_owned())
        .collect();
    recipients.sort();
    assert_eq!(recipients, [TARGET, OTHER_TARGET]);
    assert_ne!(
        requests[0].header("idempotency-key"),
        requests[1].header("idempotency-key")
    );
    server.stop().await;
}

/// A message whose webhook request is held until the returned gate opens;
/// returns once the webhook has the request.
async fn held_delivery(subject: &str) -> (Receiver, Arc<Notify>, TestServer, Client<TcpStream>) {
    let receiver = Receiver::start().await;
    let gate = Arc::new(Notify::new());
    receiver.answer_with(Answer::Gate(gate.clone()));
    let (server, _) = server(&receiver, &[]).await;
    let mut client = Client::greeted(server.smtp).await;
    client.open_data("a@example.org", &[TARGET]).await;
    client.send(simple_message(subject, "x")).await;
    client.send("\r\n.\r\n").await;
    receiver.wait_for(1).await;
    (receiver, gate, server, client)
}

#[tokio::test]
async fn the_reply_waits_for_the_webhook() {
    let (_receiver, gate, server, client) = held_delivery("held").await;

    // The webhook holds the request: no reply may have been sent yet.
    let mut stream = client.into_inner();
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut byte)).await;
    assert!(
        early.is_err(),
        "a reply arrived before the webhook answered"
    );

    gate.notify_one();
    let mut client = Client::new(stream);
    assert_eq!(client.reply().await.last(), ACCEPTED);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_waits_for_the_delivery_in_flight() {
    let (_receiver, gate, server, mut client) = held_delivery("in-flight").await;

    server.shutdown.cancel();
    eventually("the listener to close", || async {
        tokio::net::TcpStream::connect(server.smtp).await.is_err()
    })
    .await;
    gate.notify_one();
    assert_eq!(client.reply().await.last(), ACCEPTED);
    assert_eq!(
        client.reply().await.last(),
        "421 4.3.2 Service shutting down"
    );
    tokio::time::timeout(common::DEADLINE, server.task)
        .await
        .unwrap()
        .unwrap();
}

/// The time between two recorded requests, by the receiver's own clock.
fn gap(requests: &[crate::common::receiver::Recorded], from: usize, to: usize) -> Duration {
    requests[to].at.duration_since(requests[from].at)
}

/// docs/webhook.md ("Retry-After"): a `503` asking for one second is
/// retried no sooner, within the same delivery.
#[tokio::test]
async fn retry_after_seconds_is_waited_for() {
    let receiver = Receiver::start().await;
    receiver.script([Answer::RetryAfter(503, "1")]);
    let (server, _) = server(&receiver, &[]).await;
    assert_eq!(send(&server, "retry-after", &[TARGET]).await, ACCEPTED);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    assert!(
        gap(&requests, 0, 1) >= Duration::from_secs(1),
        "retried after {:?}",
        gap(&requests, 0, 1)
    );
    server.stop().await;
}

/// The HTTP-date form: the retry comes at that date, not before.
#[tokio::test]
async fn retry_after_http_date_is_waited_for() {
    let receiver = Receiver::start().await;
    // Two seconds after the request, cut to the whole second: at least one
    // second after it.
    receiver.script([Answer::RetryAt(429, 2)]);
    let (server, _) = server(&receiver, &[]).await;
    assert_eq!(send(&server, "retry-at", &[TARGET]).await, ACCEPTED);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    assert!(
        gap(&requests, 0, 1) >= Duration::from_secs(1),
        "retried after {:?}",
        gap(&requests, 0, 1)
    );
    server.stop().await;
}

/// A `Retry-After` longer than the delivery budget (4 minutes) leaves no
/// room for a retry: `451` at once, one request. A `429` is the consumer
/// pacing us and never opens the breaker; a `503` counts as a failure.
#[tokio::test]
async fn retry_after_beyond_the_budget_is_451_without_retry() {
    let receiver = Receiver::start().await;
    receiver.answer_with(Answer::RetryAfter(429, "600"));
    let (server, sink) = server(&receiver, &["--circuit-breaker-threshold", "1"]).await;
    assert_eq!(send(&server, "throttled-1", &[TARGET]).await, DEFERRED);
    assert_eq!(receiver.requests().len(), 1, "no retry");
    assert_eq!(sink.breaker().state(), BreakerState::Closed);
    assert_eq!(send(&server, "throttled-2", &[TARGET]).await, DEFERRED);
    assert_eq!(receiver.requests().len(), 2, "the breaker let it through");

    receiver.answer_with(Answer::RetryAfter(503, "600"));
    assert_eq!(send(&server, "unavailable", &[TARGET]).await, DEFERRED);
    assert_eq!(receiver.requests().len(), 3, "no retry");
    assert_eq!(sink.breaker().state(), BreakerState::Open);
    let metrics = common::http_get(server.http, "/metrics").await.1;
    assert!(
        metrics.contains("maillaser_webhook_retries_total 0"),
        "{metrics}"
    );
    server.stop().await;
}

/// Garbage in `Retry-After` is ignored: the usual backoff applies.
#[tokio::test]
async fn garbage_retry_after_is_ignored() {
    let receiver = Receiver::start().await;
    receiver.script([Answer::RetryAfter(503, "soon")]);
    let (server, _) = server(&receiver, &[]).await;
    assert_eq!(send(&server, "garbage", &[TARGET]).await, ACCEPTED);
    assert_eq!(receiver.requests().len(), 2);
    server.stop().await;
}

/// `410 Gone` is a rejection like the others (`554`), counted by status.
#[tokio::test]
async fn gone_is_554_and_counted() {
    let receiver = Receiver::start().await;
    receiver.answer_with(Answer::Status(410));
    let (server, _) = server(&receiver, &[]).await;
    let metrics = common::http_get(server.http, "/metrics").await.1;
    assert!(
        metrics.contains("maillaser_webhook_rejections_total{status=\"410\"} 0"),
        "{metrics}"
    );
    for subject in ["gone-1", "gone-2"] {
        assert_eq!(
            send(&server, subject, &[TARGET]).await,
            "554 5.6.0 Message rejected by webhook"
        );
    }
    assert_eq!(receiver.requests().len(), 2, "never retried");
    let metrics = common::http_get(server.http, "/metrics").await.1;
    for line in [
        "maillaser_webhook_rejections_total{status=\"410\"} 2",
        "maillaser_webhook_rejections_total{status=\"422\"} 0",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
    server.stop().await;
}
