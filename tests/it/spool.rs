//! `spool` mode end to end (`docs/delivery.md`): SMTP client → MailLaser → a real HTTP
//! receiver on loopback, with a real spool folder. A `250` means the
//! payload is at the webhook or in a fsync'd file that the background
//! deliverer posts later under the same `Idempotency-Key`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::receiver::{Answer, Receiver};
use crate::common::{
    self, CaptureSink, Client, DEADLINE, TARGET, TestServer, eventually, simple_message,
};
use mail_laser::config::SinkConfig;
use mail_laser::spool::{SpoolConfig, SpoolEntry, SpoolSink};
use mail_laser::webhook::Backoff;

const QUEUED: &str = "250 2.0.0 OK: Message queued for delivery";
const ACCEPTED: &str = "250 2.0.0 OK: Message accepted for delivery";
const SPOOL_UNAVAILABLE: &str = "452 4.3.1 Insufficient system storage, try again later";

/// A fresh spool folder under the system temporary folder, removed on drop.
struct SpoolDir(PathBuf);

impl SpoolDir {
    fn new() -> Self {
        Self(std::env::temp_dir().join(format!(
            "maillaser-spool-test-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        )))
    }

    /// Entries waiting for delivery.
    fn waiting(&self) -> Vec<PathBuf> {
        files(&self.0, ".msg")
    }

    fn dead(&self, suffix: &str) -> Vec<PathBuf> {
        files(&self.0.join("dead"), suffix)
    }
}

impl Drop for SpoolDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_file(&self.0);
    }
}

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<_> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file() && path.to_string_lossy().ends_with(suffix))
        .collect();
    found.sort();
    found
}

fn read_entry(path: &Path) -> SpoolEntry {
    SpoolEntry::decode(std::fs::read(path).unwrap().into()).expect("a spool file")
}

/// A spool-mode server posting to `receiver` with quick backoff; `tweak`
/// adjusts the spool settings further.
async fn server(
    receiver: &Receiver,
    dir: &SpoolDir,
    extra: &[&str],
    tweak: impl FnOnce(&mut SpoolConfig),
) -> (TestServer, SpoolSink) {
    let spool_dir = dir.0.to_string_lossy().into_owned();
    let mut args = vec!["--delivery", "spool", "--spool-dir", &spool_dir];
    args.extend_from_slice(extra);
    let mut config = common::config(&receiver.url(), &args);
    let SinkConfig::Spool { webhook, spool } = &mut config.sink else {
        unreachable!("--delivery spool with a webhook URL");
    };
    if !extra.contains(&"--circuit-breaker-reset") {
        webhook.breaker.reset = Duration::from_millis(200);
    }
    spool.backoff = Backoff {
        base: Duration::from_millis(20),
        max: Duration::from_millis(100),
    };
    spool.rescan = Duration::from_millis(100);
    spool.shutdown_grace = Duration::from_millis(500);
    tweak(spool);
    let observability = common::observability();
    let sink = SpoolSink::open(webhook, spool, observability.metrics())
        .await
        .expect("spool opens");
    let server = TestServer::start_with_sink(
        config,
        observability,
        Arc::new(sink.clone()),
        CaptureSink::new(),
    )
    .await;
    (server, sink)
}

/// Backoff long enough that the background deliverer stays idle in a test.
fn idle(spool: &mut SpoolConfig) {
    spool.backoff = Backoff {
        base: Duration::from_secs(3600),
        max: Duration::from_secs(3600),
    };
    spool.rescan = Duration::from_secs(3600);
}

async fn send(server: &TestServer, subject: &str) -> String {
    let mut client = Client::greeted(server.smtp).await;
    client
        .send_mail(
            "sender@example.org",
            &[TARGET],
            &simple_message(subject, "body text"),
        )
        .await
        .last()
}

async fn metrics(server: &TestServer) -> String {
    common::http_get(server.http, "/metrics").await.1
}

/// Polls `/metrics` until it has every one of `lines`.
async fn wait_for_metrics(server: &TestServer, lines: &[&str]) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let metrics = metrics(server).await;
        let missing: Vec<_> = lines
            .iter()
            .filter(|line| !metrics.lines().any(|l| l == **line))
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "missing {missing:?} in\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the one waiting entry is in `dead/` (its reason is written
/// first, then the file moved) and returns the dead letter.
async fn wait_for_dead_letter(dir: &SpoolDir) -> PathBuf {
    eventually("a dead letter", || async {
        dir.dead(".msg").len() == 1 && dir.waiting().is_empty()
    })
    .await;
    assert_eq!(dir.dead(".reason").len(), 1, "one reason per dead letter");
    dir.dead(".msg").remove(0)
}

fn assert_metric(metrics: &str, line: &str) {
    assert!(
        metrics.lines().any(|l| l == line),
        "missing {line:?} in\n{metrics}"
    );
}

#[tokio::test]
async fn webhook_down_spools_then_the_deliverer_posts_it_with_the_same_key() {
    let receiver = Receiver::start().await;
    receiver.answer_with(Answer::Status(500));
    let dir = SpoolDir::new();
    let (server, _) = server(&receiver, &dir, &[], |_| {}).await;

    assert_eq!(send(&server, "down").await, QUEUED);
    let first = receiver.requests()[0].clone();
    let waiting = dir.waiting();
    assert_eq!(waiting.len(), 1, "the 250 came after the file was written");
    let entry = read_entry(&waiting[0]);
    assert_eq!(
        entry.header.idempotency_key,
        first.header("idempotency-key")
    );
    assert_eq!(entry.body.to_bytes(), first.body, "the exact body is kept");
    assert!(entry.header.attempts >= 1);
    let metrics_now = metrics(&server).await;
    assert_metric(
        &metrics_now,
        "maillaser_messages_total{outcome=\"spooled\"} 1",
    );
    assert_metric(
        &metrics_now,
        "maillaser_messages_total{outcome=\"delivered\"} 0",
    );

    // The background deliverer keeps trying while the webhook is down.
    receiver.wait_for(3).await;
    receiver.answer_with(Answer::Status(200));
    eventually("the spool to empty", || async { dir.waiting().is_empty() }).await;

    let requests = receiver.requests();
    let last = requests.last().unwrap();
    assert_eq!(
        last.header("idempotency-key"),
        first.header("idempotency-key")
    );
    assert_eq!(last.body, first.body);
    assert!(
        requests
            .iter()
            .all(|r| r.header("idempotency-key") == first.header("idempotency-key")),
        "one key across every attempt"
    );
    assert!(dir.dead(".msg").is_empty());
    // The gauge follows the unlink; poll rather than race it.
    wait_for_metrics(&server, &["maillaser_spool_depth{store=\"folder\"} 0"]).await;
    server.stop().await;
}

#[tokio::test]
async fn a_working_webhook_is_250_accepted_and_nothing_is_spooled() {
    let receiver = Receiver::start().await;
    let dir = SpoolDir::new();
    let (server, _) = server(&receiver, &dir, &[], |_| {}).await;
    assert_eq!(send(&server, "fine").await, ACCEPTED);
    assert_eq!(receiver.requests().len(), 1);
    assert!(dir.waiting().is_empty());
    let metrics = metrics(&server).await;
    assert_metric(
        &metrics,
        "maillaser_messages_total{outcome=\"delivered\"} 1",
    );
    assert_metric(&metrics, "maillaser_spool_depth{store=\"folder\"} 0");
    server.stop().await;
}

#[tokio::test]
async fn rejection_during_data_is_554_and_nothing_is_spooled() {
    let receiver = Receiver::start().await;
    receiver.answer_with(Answer::Text(422, "Unknown ticket queue"));
    let dir = SpoolDir::new();
    let (server, _) = server(&receiver, &dir, &[], |_| {}).await;
    assert_eq!(
        send(&server, "refused").await,
        "554 5.6.0 Unknown ticket queue"
    );
    assert_eq!(receiver.requests().len(), 1);
    assert!(dir.waiting().is_empty());
    assert!(dir.dead(".msg").is_empty());
    server.stop().await;
}

/// docs/delivery.md: a background attempt answered with `Retry-After` is
/// not tried again before it, whatever the (here 20–100 ms) backoff says.
#[tokio::test]
async fn background_retry_waits_for_retry_after() {
    let receiver = Receiver::start().await;
    receiver.script([Answer::Status(500), Answer::RetryAfter(503, "1")]);
    let dir = SpoolDir::new();
    let (server, _) = server(&receiver, &dir, &[], |_| {}).await;
    assert_eq!(send(&server, "paced").await, QUEUED);
    let requests = receiver.wait_for(3).await;
    let gap = requests[2].at.duration_since(requests[1].at);
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
    eventually("the spool to empty", || async { dir.waiting().is_empty() }).await;
    server.stop().await;
}

#[tokio::test]
async fn rejection_in_the_background_is_a_dead_letter_with_the_reason() {
    let receiver = Receiver::start().await;
    receiver.script([Answer::Status(503)]);
    receiver.answer_with(Answer::Text(422, "Unknown ticket queue\r\nmore"));
    let dir = SpoolDir::new();
    let (server, _) = server(&receiver, &dir, &[], |_| {}).await;
    assert_eq!(send(&server, "later-refused").await, QUEUED);

    // The deliverer writes the reason, then moves the file, then counts it:
    // wait for each effect before asserting it.
    let dead = wait_for_dead_letter(&dir).await;
    let reason = std::fs::read_to_string(&dir.dead(".reason")[0]).unwrap();
    assert_eq!(
        reason,
        "rejected by the webhook (422): Unknown ticket queue\n"
    );
    // The dead letter is the spool file as it was: still deliverable by hand.
    let entry = read_entry(&dead);
    assert_eq!(entry.body.to_bytes(), receiver.requests()[0].body);
    assert_eq!(receiver.requests().len(), 2, "a rejection is not retried");
    wait_for_metrics(
        &server,
        &[
            "maillaser_spool_dead_letters_total{reason=\"rejected\"} 1",
            "maillaser_spool_depth{store=\"folder\"} 0",
        ],
    )
    .await;

    // Requeue as the README says: move it back; the next rescan delivers it.
    receiver.answer_with(Answer::Status(200));
    let name = dead.file_name().unwrap();
    std::fs::rename(&dead, dir.0.join(name)).unwrap();
    receiver.wait_for(3).await;
    eventually("the requeued file to be delivered", || async {
        dir.waiting().is_empty()
    })
    .await;
    let requests = receiver.requests();
    assert_eq!(requests[2].body, requests[0].body);
    assert_eq!(
        requests[2].header("idempotency-key"),
        requests[0].header("idempotency-key")
    );
    server.stop().await;
}

#[tokio::test]
async fn too_old_is_a_dead_letter() {
    let receiver = Receiver::start().await;
    receiver.answer_with(Answer::Status(500));
    let dir = SpoolDir::new();
    let (server, _) = server(&receiver, &dir, &[], |spool| {
        spool.max_age = Duration::from_millis(300);
    })
    .await;
    assert_eq!(send(&server, "expiring").await, QUEUED);
    wait_for_dead_letter(&dir).await;
    let reason = std::fs::read_to_string(&dir.dead(".reason")[0]).unwrap();
    assert!(
        reason.starts_with("expired: not delivered within 300ms (")
            && reason.ends_with("attempts); last error: webhook answered 500\n"),
        "{reason}"
    );
    assert!(receiver.requests().len() >= 2, "retried before giving up");
    wait_for_metrics(
        &server,
        &[
            "maillaser_spool_dead_letters_total{reason=\"expired\"} 1",
            "maillaser_spool_depth{store=\"folder\"} 0",
        ],
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn a_restart_delivers_what_the_last_run_left_and_ignores_crash_leftovers() {
    let receiver = Receiver::start().await;
    receiver.answer_with(Answer::Status(500));
    let dir = SpoolDir::new();
    let (first_run, _) = server(&receiver, &dir, &[], idle).await;
    assert_eq!(send(&first_run, "left-1").await, QUEUED);
    assert_eq!(send(&first_run, "left-2").await, QUEUED);
    first_run.stop().await;
    let keys_before: Vec<_> = receiver
        .requests()
        .iter()
        .map(|r| r.header("idempotency-key"))
        .collect();
    assert_eq!(keys_before.len(), 2);
    assert_eq!(dir.waiting().len(), 2);

    // A crash mid-write leaves a temporary file behind.
    std::fs::write(
        dir.0.join(".tmp-00000000deadbeef"),
        b"maillaser-spool 1\n{\"idempotency_key\":\"ab",
    )
    .unwrap();

    receiver.answer_with(Answer::Status(200));
    let (second_run, _) = server(&receiver, &dir, &[], |_| {}).await;
    eventually("the recovered files to be delivered", || async {
        dir.waiting().is_empty()
    })
    .await;
    let requests = receiver.requests();
    let mut keys_after: Vec<_> = requests[2..]
        .iter()
        .map(|r| r.header("idempotency-key"))
        .collect();
    keys_after.sort();
    let mut keys_before = keys_before;
    keys_before.sort();
    assert_eq!(
        keys_after, keys_before,
        "each recovered file once, same keys"
    );
    assert!(!dir.0.join(".tmp-00000000deadbeef").exists());
    assert!(dir.dead(".msg").is_empty());
    second_run.stop().await;
}

#[tokio::test]
async fn unwritable_spool_is_452() {
    let receiver = Receiver::start().await;
    receiver.answer_with(Answer::Status(500));
    let dir = SpoolDir::new();
    let (server, _) = server(&receiver, &dir, &[], idle).await;
    // The folder turns into a file: writes fail even for root.
    std::fs::remove_dir_all(&dir.0).unwrap();
    std::fs::write(&dir.0, b"").unwrap();
    assert_eq!(send(&server, "nowhere").await, SPOOL_UNAVAILABLE);
    assert_metric(
        &metrics(&server).await,
        "maillaser_messages_total{outcome=\"deferred\"} 1",
    );
    server.stop().await;
}

#[tokio::test]
async fn full_spool_is_452_and_not_ready() {
    let receiver = Receiver::start().await;
    receiver.answer_with(Answer::Status(500));
    let dir = SpoolDir::new();
    let (server, _) = server(&receiver, &dir, &["--spool-max-files", "1"], idle).await;
    assert_eq!(send(&server, "fits").await, QUEUED);
    assert_eq!(send(&server, "does-not-fit").await, SPOOL_UNAVAILABLE);
    assert_eq!(dir.waiting().len(), 1);
    assert_eq!(common::http_get(server.http, "/ready").await.0, 503);
    assert_metric(
        &metrics(&server).await,
        "maillaser_spool_depth{store=\"folder\"} 1",
    );
    server.stop().await;
}

#[tokio::test]
async fn an_open_breaker_spools_without_a_request() {
    let receiver = Receiver::start().await;
    receiver.answer_with(Answer::Status(500));
    let dir = SpoolDir::new();
    // The breaker stays open for the whole test.
    let flags = [
        "--circuit-breaker-threshold",
        "1",
        "--circuit-breaker-reset",
        "600",
    ];
    let (server, _) = server(&receiver, &dir, &flags, idle).await;
    assert_eq!(send(&server, "opens-it").await, QUEUED);
    assert_eq!(send(&server, "short-circuit").await, QUEUED);
    assert_eq!(receiver.requests().len(), 1, "no request while open");
    // Spool mode stays ready with the breaker open: that is what the spool
    // is for (docs/http.md).
    assert_eq!(common::http_get(server.http, "/ready").await.0, 200);
    let attempts: Vec<_> = dir
        .waiting()
        .iter()
        .map(|path| read_entry(path).header)
        .map(|header| (header.attempts, header.last_error.unwrap_or_default()))
        .collect();
    assert!(
        attempts.contains(&(1, "webhook answered 500".into())),
        "{attempts:?}"
    );
    assert!(
        attempts.contains(&(0, "circuit breaker open".into())),
        "{attempts:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn shutdown_abandons_a_hung_background_attempt_and_keeps_the_file() {
    let receiver = Receiver::start().await;
    receiver.script([Answer::Status(500)]);
    receiver.answer_with(Answer::Hang);
    let dir = SpoolDir::new();
    let (server, _) = server(&receiver, &dir, &[], |_| {}).await;
    assert_eq!(send(&server, "hung").await, QUEUED);
    // The background attempt is now waiting on the hung webhook.
    receiver.wait_for(2).await;
    let started = Instant::now();
    server.stop().await;
    assert!(
        started.elapsed() < DEADLINE / 2,
        "stopped in {:?}",
        started.elapsed()
    );
    let waiting = dir.waiting();
    assert_eq!(waiting.len(), 1, "the file survives");
    read_entry(&waiting[0]);
    assert!(files(&dir.0, "").iter().all(|path| {
        let name = path.file_name().unwrap().to_string_lossy();
        !name.starts_with(".tmp-")
    }));
}

/// Issue "metrics exist from the start": every labelled counter and the
/// spool and breaker gauges are on `/metrics` before their first event.
#[tokio::test]
async fn metrics_exist_from_the_start() {
    let receiver = Receiver::start().await;
    let dir = SpoolDir::new();
    let (server, _) = server(&receiver, &dir, &[], idle).await;
    let text = metrics(&server).await;
    for series in [
        "maillaser_messages_total{outcome=\"delivered\"} 0",
        "maillaser_messages_total{outcome=\"spooled\"} 0",
        "maillaser_messages_total{outcome=\"rejected\"} 0",
        "maillaser_messages_total{outcome=\"deferred\"} 0",
        "maillaser_circuit_breaker_transitions_total{to=\"open\"} 0",
        "maillaser_circuit_breaker_transitions_total{to=\"half_open\"} 0",
        "maillaser_circuit_breaker_transitions_total{to=\"closed\"} 0",
        "maillaser_connections_refused_total{reason=\"global_limit\"} 0",
        "maillaser_connections_refused_total{reason=\"per_ip_limit\"} 0",
        "maillaser_spool_dead_letters_total{reason=\"rejected\"} 0",
        "maillaser_spool_dead_letters_total{reason=\"expired\"} 0",
        "maillaser_spool_dead_letters_total{reason=\"unreadable\"} 0",
        "maillaser_sessions_total{tls=\"false\"} 0",
        "maillaser_sessions_total{tls=\"true\"} 0",
        "maillaser_webhook_retries_total 0",
        "maillaser_spool_depth{store=\"folder\"} 0",
        "maillaser_circuit_breaker_state 0",
    ] {
        assert_metric(&text, series);
    }
    server.stop().await;
}

/// Issue "spool integrity": a truncated spool file was POSTed as broken
/// JSON and deleted after the 2xx. Its checksum now fails and it becomes a
/// dead letter with the reason; nothing is sent.
#[tokio::test]
async fn spool_integrity_a_truncated_file_is_a_dead_letter_not_a_post() {
    let receiver = Receiver::start().await;
    let dir = SpoolDir::new();
    let (server, _) = server(&receiver, &dir, &[], |_| {}).await;
    let entry = SpoolEntry::new(
        "k".repeat(64),
        bytes::Bytes::from_static(b"{\"sender\":\"a@example.org\",\"subject\":\"cut\"}"),
        mail_laser::spool::now_ms(),
    );
    let bytes = entry.encode();
    std::fs::write(
        dir.0.join("1700000000000-00000000000000aa.msg"),
        &bytes[..bytes.len() - 10],
    )
    .unwrap();
    let dead = wait_for_dead_letter(&dir).await;
    let reason = std::fs::read_to_string(dead.with_extension("reason")).unwrap();
    assert!(
        reason.contains("the body does not match its checksum"),
        "{reason}"
    );
    assert!(receiver.requests().is_empty(), "nothing was POSTed");
    server.stop().await;
}

/// Issue "spool integrity": links or folders named like spool files were
/// skipped for ever. Now they are dead letters, and a link is never
/// followed: the file it points to is neither sent nor touched.
#[cfg(unix)]
#[tokio::test]
async fn spool_integrity_a_link_named_like_a_spool_file_is_not_followed() {
    let receiver = Receiver::start().await;
    let dir = SpoolDir::new();
    let (server, _) = server(&receiver, &dir, &[], |_| {}).await;
    let outside = dir.0.with_extension("outside");
    let valid = SpoolEntry::new(
        "k".repeat(64),
        bytes::Bytes::from_static(b"{\"secret\":\"outside the spool\"}"),
        mail_laser::spool::now_ms(),
    );
    std::fs::write(&outside, valid.encode()).unwrap();
    std::os::unix::fs::symlink(&outside, dir.0.join("1700000000000-00000000000000bb.msg")).unwrap();
    std::fs::create_dir(dir.0.join("1700000000000-00000000000000cc.msg")).unwrap();
    eventually("both entries in dead/", || async {
        dir.dead(".reason").len() == 2 && dir.waiting().is_empty()
    })
    .await;
    let reasons: Vec<_> = dir
        .dead(".reason")
        .iter()
        .map(|path| std::fs::read_to_string(path).unwrap())
        .collect();
    assert!(
        reasons
            .iter()
            .all(|reason| reason.contains("not a regular file")),
        "{reasons:?}"
    );
    assert!(receiver.requests().is_empty(), "nothing was POSTed");
    assert_eq!(std::fs::read(&outside).unwrap(), valid.encode());
    std::fs::remove_file(outside).unwrap();
    server.stop().await;
}
