//! The proof of the shared queue (`docs/scaling.md`): two MailLaser
//! processes share one PostgreSQL database; the webhook is down; 500
//! messages go to both; one process is killed with SIGKILL; the webhook
//! comes back; the survivor delivers every message that got a `250`. None
//! is lost, and a message reaches the webhook more than once only under
//! its one `Idempotency-Key`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::process::{Child, Command};

use crate::common::postgres::Postgres;
use crate::common::receiver::{Answer, Receiver, Recorded};
use crate::common::{DEADLINE, TARGET};

const BINARY: &str = env!("CARGO_BIN_EXE_mail-laser");
const MESSAGES: usize = 500;

/// One MailLaser process, its log in a file (a pipe nobody reads would
/// block it).
struct Instance {
    child: Child,
    smtp: SocketAddr,
}

impl Instance {
    async fn start(dir: &Path, name: &str, webhook: &str, spool_url: &str) -> Self {
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(BINARY)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("MAIL_LASER_TARGET_EMAILS", TARGET)
            .env("MAIL_LASER_WEBHOOK_URL", webhook)
            .env("MAIL_LASER_DELIVERY", "spool")
            .env("MAIL_LASER_SPOOL_URL", spool_url)
            // A short lease and attempt timeout keep the take-over quick;
            // with the breaker kept closed, every claim makes a request.
            .env("MAIL_LASER_SPOOL_LEASE", "5s")
            .env("MAIL_LASER_WEBHOOK_TIMEOUT", "4")
            .env("MAIL_LASER_CIRCUIT_BREAKER_THRESHOLD", "100000")
            .env("MAIL_LASER_MAX_CONCURRENT_PER_IP", "0")
            .env("MAIL_LASER_BIND_ADDRESS", "127.0.0.1")
            .env("MAIL_LASER_PORT", "0")
            .env("MAIL_LASER_HEALTH_BIND_ADDRESS", "127.0.0.1")
            .env("MAIL_LASER_HEALTH_PORT", "0")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("mail-laser starts");
        let deadline = Instant::now() + DEADLINE;
        let line = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(line) = text
                .lines()
                .find(|line| line.contains("MailLaser listening"))
            {
                break line.to_owned();
            }
            assert!(Instant::now() < deadline, "{name} did not start: {text}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let start = line.find("smtp=").unwrap() + "smtp=".len();
        let smtp = line[start..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        Self { child, smtp }
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// SIGKILL: no drain, no release of its claims.
    async fn kill(mut self) {
        self.child.start_kill().unwrap();
        let _ = self.child.wait().await;
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("/bin/sh")
                .args(["-c", &format!("kill -TERM {pid}")])
                .status();
        }
        let _ = tokio::time::timeout(DEADLINE, self.child.wait()).await;
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "maillaser-{name}-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Sends message `n` to `smtp`; whether it was answered `250`.
async fn send(transport: &AsyncSmtpTransport<Tokio1Executor>, n: usize) -> bool {
    let message = Message::builder()
        .from("monitor@example.org".parse().unwrap())
        .to(TARGET.parse().unwrap())
        .subject(format!("proof-{n}"))
        .body(format!("message {n}\r\n"))
        .unwrap();
    transport.send(message).await.is_ok()
}

fn subject(request: &Recorded) -> String {
    request.json()["subject"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn two_instances_one_killed_the_survivor_delivers_every_250() {
    let [initdb, pg_ctl] = require_tool!("initdb", "pg_ctl");
    let cluster = Postgres::start(&initdb, &pg_ctl);
    let url = cluster.create("shared").await;
    let receiver = Receiver::start().await;
    receiver.answer_with(Answer::Status(503));
    let dir = scratch("shared-queue");
    let doomed = Instance::start(&dir, "doomed", &receiver.url(), &url).await;
    let survivor = Instance::start(&dir, "survivor", &receiver.url(), &url).await;

    // 500 messages, alternately to each instance, 8 sessions at a time.
    let transports: Vec<_> = [doomed.smtp, survivor.smtp]
        .iter()
        .map(|address| {
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
                .port(address.port())
                .timeout(Some(DEADLINE))
                .build()
        })
        .collect();
    let replies: Vec<(usize, bool)> = futures_util::stream::iter(0..MESSAGES)
        .map(|n| {
            let transport = &transports[n % 2];
            async move { (n, send(transport, n).await) }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let accepted: BTreeSet<String> = replies
        .iter()
        .filter(|(_, ok)| *ok)
        .map(|(n, _)| format!("proof-{n}"))
        .collect();
    let to_doomed: BTreeSet<String> = accepted
        .iter()
        .filter(|subject| {
            subject
                .trim_start_matches("proof-")
                .parse::<usize>()
                .unwrap()
                % 2
                == 0
        })
        .cloned()
        .collect();
    assert_eq!(
        accepted.len(),
        MESSAGES,
        "the database was up: every message is queued"
    );

    // The webhook hangs now: each attempt holds its claim for the 4 s
    // attempt timeout. As soon as the doomed instance holds claims, kill it.
    receiver.answer_with(Answer::Hang);
    let client = cluster.connect("shared").await;
    let owner = format!("%:{}:%", doomed.pid());
    let held = "SELECT convert_from(body, 'UTF8')::json->>'subject' FROM maillaser_spool
                WHERE lease_owner LIKE $1 AND lease_until > now()";
    let deadline = Instant::now() + DEADLINE;
    while client.query(held, &[&owner]).await.unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the doomed instance never claimed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed_at = Instant::now();
    doomed.kill().await;
    let stranded: BTreeSet<String> = client
        .query(held, &[&owner])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(!stranded.is_empty(), "claims left by the killed instance");
    receiver.answer_with(Answer::Status(200));

    let delivered = |requests: &[Recorded]| -> BTreeSet<String> {
        requests
            .iter()
            .filter(|request| request.status == 200)
            .map(subject)
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    while !delivered(&receiver.requests()).is_superset(&accepted) {
        assert!(
            Instant::now() < deadline,
            "not delivered: {:?}",
            accepted
                .difference(&delivered(&receiver.requests()))
                .take(10)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let requests = receiver.requests();
    survivor.stop().await;

    // None lost, nothing invented, and one key per message.
    assert_eq!(delivered(&requests), accepted);
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for request in &requests {
        keys.entry(subject(request))
            .or_default()
            .insert(request.header("idempotency-key"));
    }
    assert!(
        keys.values().all(|keys| keys.len() == 1),
        "a message under two keys"
    );
    let left: i64 = client
        .query_one("SELECT count(*) FROM maillaser_spool", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "every row delivered and removed, none dead");

    // Figures for the notes (measured, not asserted): how long the
    // messages the killed instance had claimed waited for the survivor.
    let redelivered: Vec<Duration> = requests
        .iter()
        .filter(|request| request.status == 200 && stranded.contains(&subject(request)))
        .map(|request| request.at.saturating_duration_since(killed_at))
        .collect();
    let duplicates = requests.iter().filter(|r| r.status == 200).count() - accepted.len();
    eprintln!(
        "shared queue: {} messages ({} sent to the killed instance); {} claimed by it at SIGKILL, \
         redelivered by the survivor {:?} to {:?} after it; {} duplicate deliveries (same key)",
        accepted.len(),
        to_doomed.len(),
        stranded.len(),
        redelivered.iter().min(),
        redelivered.iter().max(),
        duplicates
    );
    let _ = std::fs::remove_dir_all(&dir);
}
