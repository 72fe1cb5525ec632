//! The spool's behaviour, once per store (`docs/delivery.md`): every test
//! here runs against the spool folder and against a real PostgreSQL
//! server, through the same SMTP client, MailLaser and HTTP receiver. What
//! differs between the stores is only how a test looks inside them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::common::postgres::Postgres;
use crate::common::receiver::{Answer, Receiver};
use crate::common::{self, CaptureSink, Client, TARGET, TestServer, eventually, simple_message};
use mail_laser::config::SinkConfig;
use mail_laser::spool::{SpoolConfig, SpoolSink};
use mail_laser::webhook::Backoff;

pub(crate) const QUEUED: &str = "250 2.0.0 OK: Message queued for delivery";
const SPOOL_UNAVAILABLE: &str = "452 4.3.1 Insufficient system storage, try again later";

/// The store a test runs against, and how the test looks inside it.
pub(crate) enum Store {
    Folder(PathBuf),
    Postgres { cluster: Postgres, url: String },
}

impl Store {
    pub(crate) fn folder() -> Self {
        Self::Folder(std::env::temp_dir().join(format!(
            "maillaser-spool-stores-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        )))
    }

    pub(crate) async fn postgres(cluster: Postgres) -> Self {
        let url = cluster.create("spool").await;
        Self::Postgres { cluster, url }
    }

    pub(crate) fn args(&self) -> Vec<String> {
        match self {
            Self::Folder(dir) => vec!["--spool-dir".into(), dir.display().to_string()],
            Self::Postgres { url, .. } => vec!["--spool-url".into(), url.clone()],
        }
    }

    /// The `store` label of `maillaser_spool_depth`.
    fn kind(&self) -> &'static str {
        match self {
            Self::Folder(_) => "folder",
            Self::Postgres { .. } => "postgres",
        }
    }

    /// Deliveries waiting (not dead).
    pub(crate) async fn waiting(&self) -> usize {
        match self {
            Self::Folder(dir) => files(dir, ".msg").len(),
            Self::Postgres { cluster, .. } => {
                let client = cluster.connect("spool").await;
                let row = client
                    .query_one(
                        "SELECT count(*) FROM maillaser_spool WHERE dead_at IS NULL",
                        &[],
                    )
                    .await
                    .unwrap();
                usize::try_from(row.get::<_, i64>(0)).unwrap()
            }
        }
    }

    /// The reasons of the dead letters.
    pub(crate) async fn dead(&self) -> Vec<String> {
        match self {
            Self::Folder(dir) => files(&dir.join("dead"), ".reason")
                .iter()
                .map(|path| std::fs::read_to_string(path).unwrap().trim_end().to_owned())
                .collect(),
            Self::Postgres { cluster, .. } => {
                let client = cluster.connect("spool").await;
                client
                    .query(
                        "SELECT dead_reason FROM maillaser_spool WHERE dead_at IS NOT NULL",
                        &[],
                    )
                    .await
                    .unwrap()
                    .iter()
                    .map(|row| row.get(0))
                    .collect()
            }
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Self::Folder(dir) = self {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn files(dir: &std::path::Path, suffix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file() && path.to_string_lossy().ends_with(suffix))
        .collect()
}

/// A spool-mode server over `store` posting to `receiver`, with quick
/// backoff and polling; `tweak` adjusts the spool settings further.
pub(crate) async fn server(
    receiver: &Receiver,
    store: &Store,
    extra: &[&str],
    tweak: impl FnOnce(&mut SpoolConfig),
) -> TestServer {
    let store_args = store.args();
    let mut args: Vec<&str> = vec!["--delivery", "spool"];
    args.extend(store_args.iter().map(String::as_str));
    args.extend_from_slice(extra);
    let mut config = common::config(&receiver.url(), &args);
    let SinkConfig::Spool { webhook, spool } = &mut config.sink else {
        unreachable!("--delivery spool with a webhook URL");
    };
    webhook.breaker.reset = Duration::from_millis(200);
    spool.backoff = Backoff {
        base: Duration::from_millis(20),
        max: Duration::from_millis(100),
    };
    spool.rescan = Duration::from_millis(100);
    spool.shutdown_grace = Duration::from_millis(500);
    if let Some(postgres) = &mut spool.postgres {
        postgres.poll = Duration::from_millis(50);
    }
    tweak(spool);
    let observability = common::observability();
    let sink = SpoolSink::open(webhook, spool, observability.metrics())
        .await
        .expect("the spool opens");
    TestServer::start_with_sink(config, observability, Arc::new(sink), CaptureSink::new()).await
}

/// Backoff long enough that the background deliverer stays idle.
pub(crate) fn idle(spool: &mut SpoolConfig) {
    spool.backoff = Backoff {
        base: Duration::from_secs(3600),
        max: Duration::from_secs(3600),
    };
}

pub(crate) async fn send(server: &TestServer, subject: &str) -> String {
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

/// Runs a behaviour test against each store: `<name>::folder` and
/// `<name>::postgres` (skipped, with one line, without PostgreSQL).
macro_rules! both_stores {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn folder() {
                super::$name(super::Store::folder()).await;
            }

            #[tokio::test]
            async fn postgres() {
                let [initdb, pg_ctl] = require_tool!("initdb", "pg_ctl");
                let cluster = crate::common::postgres::Postgres::start(&initdb, &pg_ctl);
                super::$name(super::Store::postgres(cluster).await).await;
            }
        }
    )+};
}

both_stores!(
    down_then_up_delivers_with_the_same_key,
    a_rejection_later_is_a_dead_letter,
    too_old_is_a_dead_letter,
    a_restart_delivers_what_the_last_run_left,
    a_full_spool_is_452,
);

async fn down_then_up_delivers_with_the_same_key(store: Store) {
    let receiver = Receiver::start().await;
    receiver.answer_with(Answer::Status(500));
    let server = server(&receiver, &store, &[], |_| {}).await;
    assert_eq!(send(&server, "down").await, QUEUED);
    assert_eq!(store.waiting().await, 1, "the 250 came after the write");
    let first = receiver.requests()[0].clone();
    let depth = |count: usize| {
        format!(
            "maillaser_spool_depth{{store=\"{}\"}} {count}",
            store.kind()
        )
    };
    eventually("the depth gauge to count it", || async {
        common::http_get(server.http, "/metrics")
            .await
            .1
            .lines()
            .any(|line| line == depth(1))
    })
    .await;

    receiver.wait_for(3).await;
    receiver.answer_with(Answer::Status(200));
    eventually("the spool to empty", || async {
        store.waiting().await == 0
    })
    .await;
    let requests = receiver.requests();
    assert!(
        requests
            .iter()
            .all(
                |request| request.header("idempotency-key") == first.header("idempotency-key")
                    && request.body == first.body
            ),
        "one key and one body across every attempt"
    );
    assert!(store.dead().await.is_empty());
    eventually("the depth gauge to fall to 0", || async {
        common::http_get(server.http, "/metrics")
            .await
            .1
            .lines()
            .any(|line| line == depth(0))
    })
    .await;
    server.stop().await;
}

async fn a_rejection_later_is_a_dead_letter(store: Store) {
    let receiver = Receiver::start().await;
    receiver.script([Answer::Status(503)]);
    receiver.answer_with(Answer::Text(422, "Unknown ticket queue"));
    let server = server(&receiver, &store, &[], |_| {}).await;
    assert_eq!(send(&server, "later-refused").await, QUEUED);
    eventually("a dead letter", || async { !store.dead().await.is_empty() }).await;
    assert_eq!(
        store.dead().await,
        ["rejected by the webhook (422): Unknown ticket queue"]
    );
    assert_eq!(store.waiting().await, 0);
    assert_eq!(receiver.requests().len(), 2, "a rejection is not retried");
    server.stop().await;
}

async fn too_old_is_a_dead_letter(store: Store) {
    let receiver = Receiver::start().await;
    receiver.answer_with(Answer::Status(500));
    let server = server(&receiver, &store, &[], |spool| {
        spool.max_age = Duration::from_millis(300);
    })
    .await;
    assert_eq!(send(&server, "expiring").await, QUEUED);
    eventually("a dead letter", || async { !store.dead().await.is_empty() }).await;
    let dead = store.dead().await;
    assert!(
        dead[0].starts_with("expired: not delivered within 300ms (")
            && dead[0].ends_with("attempts); last error: webhook answered 500"),
        "{dead:?}"
    );
    assert_eq!(store.waiting().await, 0);
    server.stop().await;
}

/// What one run left waiting, the next run delivers. (Each store keeps the
/// due times it had: the folder's are in memory, so everything found at
/// start is due at once; PostgreSQL's are in the rows.)
async fn a_restart_delivers_what_the_last_run_left(store: Store) {
    let receiver = Receiver::start().await;
    receiver.answer_with(Answer::Status(500));
    let first_run = server(&receiver, &store, &[], |_| {}).await;
    assert_eq!(send(&first_run, "left-1").await, QUEUED);
    assert_eq!(send(&first_run, "left-2").await, QUEUED);
    // A retry of each in the first run: both are in the store's hands.
    receiver.wait_for(4).await;
    first_run.stop().await;
    assert_eq!(store.waiting().await, 2);
    let keys = |requests: &[crate::common::receiver::Recorded]| {
        let mut keys: Vec<String> = requests
            .iter()
            .map(|request| request.header("idempotency-key"))
            .collect();
        keys.sort();
        keys.dedup();
        keys
    };
    let left = keys(&receiver.requests());
    assert_eq!(left.len(), 2);

    receiver.answer_with(Answer::Status(200));
    let second_run = server(&receiver, &store, &[], |_| {}).await;
    eventually("the spool to empty", || async {
        store.waiting().await == 0
    })
    .await;
    assert_eq!(keys(&receiver.requests()), left, "the same two messages");
    assert!(store.dead().await.is_empty());
    second_run.stop().await;
}

async fn a_full_spool_is_452(store: Store) {
    let receiver = Receiver::start().await;
    receiver.answer_with(Answer::Status(500));
    let server = server(&receiver, &store, &["--spool-max-files", "1"], idle).await;
    assert_eq!(send(&server, "fits").await, QUEUED);
    assert_eq!(send(&server, "does not fit").await, SPOOL_UNAVAILABLE);
    assert_eq!(store.waiting().await, 1);
    let (status, _) = common::http_get(server.http, "/ready").await;
    assert_eq!(
        status, 503,
        "a full spool takes the instance out of rotation"
    );
    server.stop().await;
}

/// A database outage makes new mail `452` (the sender keeps it), never a
/// `250` that is not stored; `/ready` follows; once the database is back,
/// mail is queued again and what was stored before is delivered.
#[tokio::test]
async fn a_database_outage_is_452_never_an_unstored_250() {
    let [initdb, pg_ctl] = require_tool!("initdb", "pg_ctl");
    let store = Store::postgres(Postgres::start(&initdb, &pg_ctl)).await;
    let receiver = Receiver::start().await;
    receiver.answer_with(Answer::Status(500));
    let server = server(&receiver, &store, &[], idle).await;
    assert_eq!(send(&server, "before").await, QUEUED);

    let Store::Postgres { cluster, .. } = &store else {
        unreachable!()
    };
    cluster.kill();
    assert_eq!(send(&server, "during").await, SPOOL_UNAVAILABLE);
    eventually("/ready to fail", || async {
        common::http_get(server.http, "/ready").await.0 == 503
    })
    .await;

    cluster.restart();
    eventually("/ready to recover", || async {
        common::http_get(server.http, "/ready").await.0 == 200
    })
    .await;
    assert_eq!(send(&server, "after").await, QUEUED);
    assert_eq!(store.waiting().await, 2, "before and after, not during");
    server.stop().await;
}

/// The waiting rows are counted once for the cluster, not once per
/// instance: an instance reads the count another one stored while it is
/// fresh (under half a poll interval old), and counts, and stores, it
/// itself once it is older. The limits, `/ready` and the depth gauge follow
/// the shared count.
#[tokio::test]
async fn the_waiting_rows_are_counted_once_for_the_cluster() {
    let [initdb, pg_ctl] = require_tool!("initdb", "pg_ctl");
    let store = Store::postgres(Postgres::start(&initdb, &pg_ctl)).await;
    let receiver = Receiver::start().await;
    receiver.answer_with(Answer::Status(500));
    let server = server(&receiver, &store, &["--spool-max-files", "100"], idle).await;
    assert_eq!(send(&server, "waits").await, QUEUED);
    let Store::Postgres { cluster, .. } = &store else {
        unreachable!()
    };
    let client = cluster.connect("spool").await;
    let stored = || async {
        client
            .query_one("SELECT files FROM maillaser_spool_usage", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let gauge = |count: i64| {
        let line = format!("maillaser_spool_depth{{store=\"postgres\"}} {count}");
        let http = server.http;
        move || {
            let line = line.clone();
            async move {
                common::http_get(http, "/metrics")
                    .await
                    .1
                    .lines()
                    .any(|metric| metric == line)
            }
        }
    };
    eventually("the instance to count the row and store it", || async {
        stored().await == 1
    })
    .await;
    eventually("the gauge to show the count", gauge(1)).await;

    // Another instance's count, fresh for an hour: read, never recounted.
    let shared_count_of_100 = || async {
        client
            .execute(
                "UPDATE maillaser_spool_usage SET files = 100, counted_at = now() + interval '1 hour'",
                &[],
            )
            .await
            .unwrap();
        eventually("the gauge to show the shared count", gauge(100)).await;
    };
    shared_count_of_100().await;
    assert_eq!(
        send(&server, "full, by the shared count").await,
        SPOOL_UNAVAILABLE
    );
    assert_eq!(common::http_get(server.http, "/ready").await.0, 503);
    assert_eq!(store.waiting().await, 1);

    // Once it is stale, the instance counts again and stores its count.
    client
        .execute(
            "UPDATE maillaser_spool_usage SET counted_at = '-infinity'",
            &[],
        )
        .await
        .unwrap();
    eventually("the instance to count again", || async {
        stored().await == 1
    })
    .await;
    eventually("the gauge to follow", gauge(1)).await;
    eventually("/ready to recover", || async {
        common::http_get(server.http, "/ready").await.0 == 200
    })
    .await;
    assert_eq!(send(&server, "fits again").await, QUEUED);

    // Without the shared row (removed by hand) each instance counts alone.
    shared_count_of_100().await;
    client
        .execute("DELETE FROM maillaser_spool_usage", &[])
        .await
        .unwrap();
    eventually("the gauge to show the instance's own count", gauge(2)).await;
    server.stop().await;
}

/// TLS to the database: with `sslmode=require` and `sslrootcert`, the
/// queue works over TLS with the server's certificate verified; a
/// certificate the CA file does not vouch for stops the start, naming the
/// setting and never the password.
#[tokio::test]
async fn tls_to_the_database_is_verified() {
    let [initdb, pg_ctl] = require_tool!("initdb", "pg_ctl");
    let server_cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let cluster = Postgres::start_with(
        &initdb,
        &pg_ctl,
        Some(crate::common::postgres::ServerTls {
            cert_pem: &server_cert.cert.pem(),
            key_pem: &server_cert.signing_key.serialize_pem(),
        }),
    );
    let plain_url = cluster.create("spool").await;
    let dir = std::env::temp_dir().join(format!(
        "maillaser-pg-tls-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let (trusted, other) = (dir.join("ca.pem"), dir.join("other.pem"));
    std::fs::write(&trusted, server_cert.cert.pem()).unwrap();
    let stranger = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    std::fs::write(&other, stranger.cert.pem()).unwrap();
    let with_password = plain_url.replace("maillaser@", "maillaser:hunter2@");
    let url = |ca: &std::path::Path| {
        format!(
            "{with_password}?sslmode=require&sslrootcert={}",
            ca.display()
        )
    };

    let store = Store::Postgres {
        cluster,
        url: url(&trusted),
    };
    let receiver = Receiver::start().await;
    receiver.answer_with(Answer::Status(500));
    let server = server(&receiver, &store, &[], idle).await;
    assert_eq!(send(&server, "over tls").await, QUEUED);
    assert_eq!(store.waiting().await, 1);
    let Store::Postgres { cluster, .. } = &store else {
        unreachable!()
    };
    // MailLaser's pooled connections, while it runs: every one over TLS.
    let client = cluster.connect("spool").await;
    let ssl: Vec<bool> = client
        .query(
            "SELECT ssl FROM pg_stat_ssl JOIN pg_stat_activity USING (pid)
             WHERE application_name = 'mail-laser'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    server.stop().await;
    assert!(!ssl.is_empty() && ssl.iter().all(|ssl| *ssl), "{ssl:?}");

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_mail-laser"))
        .env("MAIL_LASER_TARGET_EMAILS", TARGET)
        .env("MAIL_LASER_WEBHOOK_URL", receiver.url())
        .env("MAIL_LASER_DELIVERY", "spool")
        .env("MAIL_LASER_SPOOL_URL", url(&other))
        .env("MAIL_LASER_PORT", "0")
        .env("MAIL_LASER_HEALTH_PORT", "0")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("MAIL_LASER_SPOOL_URL"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "the password leaked: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A body larger than `MAIL_LASER_SPOOL_INLINE_MAX` waits in the object
/// store (a real S3-compatible server), the row keeping its key; the
/// survivor of the row is delivered byte for byte, and the object removed
/// with the row.
#[tokio::test]
async fn a_large_body_waits_in_the_object_store() {
    let [initdb, pg_ctl, moto_server] = require_tool!("initdb", "pg_ctl", "moto_server");
    let offloading = Offloading::start(&initdb, &pg_ctl, &moto_server).await;
    let (store, object_store) = (&offloading.store, &offloading.objects);
    let receiver = Receiver::start().await;
    receiver.answer_with(Answer::Status(500));
    let server = offloading.server(&receiver).await;
    assert_eq!(send(&server, "large").await, QUEUED);
    let first = receiver.requests()[0].clone();

    let client = offloading.client().await;
    let row = client
        .query_one(
            "SELECT body_key, octet_length(body) FROM maillaser_spool",
            &[],
        )
        .await
        .unwrap();
    let (key, in_row): (Option<String>, i32) = (row.get(0), row.get(1));
    let key = key.expect("the body is in the object store");
    assert_eq!(in_row, 0, "and not in the row");
    assert!(key.starts_with("spool/"), "{key}");
    assert_eq!(object_store.get(&key).await.unwrap(), first.body);
    // `mail-laser spool show` says where the body is.
    let id: i64 = client
        .query_one("SELECT id FROM maillaser_spool", &[])
        .await
        .unwrap()
        .get(0);
    let shown = offloading
        .spool_cli(&["show", &id.to_string()], false)
        .await;
    assert_eq!(shown["entry"]["body_key"], key.as_str(), "{shown}");

    receiver.answer_with(Answer::Status(200));
    eventually("the spool to empty", || async {
        store.waiting().await == 0
    })
    .await;
    let last = receiver.requests().last().unwrap().clone();
    assert_eq!(last.body, first.body, "delivered byte for byte");
    assert_eq!(
        last.header("idempotency-key"),
        first.header("idempotency-key")
    );
    eventually("the object to be removed", || async {
        object_store.get(&key).await.is_err()
    })
    .await;
    server.stop().await;
}

/// A PostgreSQL queue whose bodies above 100 bytes go to a private moto
/// bucket, `spool-bodies`, under `spool/`.
struct Offloading {
    store: Store,
    objects: mail_laser::store::AttachmentStore,
    moto: crate::common::moto::Moto,
}

impl Offloading {
    async fn start(
        initdb: &std::path::Path,
        pg_ctl: &std::path::Path,
        moto_server: &std::path::Path,
    ) -> Self {
        use mail_laser::store::{AttachmentStore, StoreSettings};
        let moto = crate::common::moto::Moto::start(moto_server).await;
        moto.create_bucket("spool-bodies").await;
        let objects = AttachmentStore::with_credentials(
            StoreSettings {
                bucket: "spool-bodies".into(),
                region: "us-east-1".into(),
                endpoint: Some(moto.endpoint.clone()),
                key_prefix: "spool/".into(),
                presign_ttl: None,
                timeout: Duration::from_secs(5),
            },
            "test",
            "test",
        )
        .unwrap();
        let store = Store::postgres(Postgres::start(initdb, pg_ctl)).await;
        Self {
            store,
            objects,
            moto,
        }
    }

    async fn server(&self, receiver: &Receiver) -> TestServer {
        let offload = mail_laser::spool::BodyOffload {
            store: self.objects.clone(),
            inline_max: 100,
        };
        server(receiver, &self.store, &[], |spool| {
            if let Some(postgres) = &mut spool.postgres {
                postgres.offload = Some(offload);
            }
        })
        .await
    }

    async fn client(&self) -> tokio_postgres::Client {
        let Store::Postgres { cluster, .. } = &self.store else {
            unreachable!("Offloading::start makes a PostgreSQL store")
        };
        cluster.connect("spool").await
    }

    /// `mail-laser spool ARGS --json` on this queue, given the object
    /// store (as the server's `MAIL_LASER_S3_*` and `AWS_*`) or not.
    async fn spool_cli(&self, args: &[&str], with_objects: bool) -> serde_json::Value {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_mail-laser"));
        command
            .arg("spool")
            .args(args)
            .arg("--json")
            .args(self.store.args())
            .current_dir(std::env::temp_dir());
        for variable in [
            "MAIL_LASER_S3_BUCKET",
            "MAIL_LASER_S3_ENDPOINT",
            "MAIL_LASER_S3_KEY_PREFIX",
            "MAIL_LASER_S3_REGION",
        ] {
            command.env_remove(variable);
        }
        if with_objects {
            command.envs([
                ("MAIL_LASER_S3_BUCKET", "spool-bodies"),
                ("MAIL_LASER_S3_ENDPOINT", self.moto.endpoint.as_str()),
                ("MAIL_LASER_S3_KEY_PREFIX", "spool/"),
                ("AWS_ACCESS_KEY_ID", "test"),
                ("AWS_SECRET_ACCESS_KEY", "test"),
            ]);
        }
        let output = command.output().await.expect("mail-laser runs");
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("one JSON document")
    }
}

/// `mail-laser spool` reaches into the object store for offloaded bodies:
/// `show` prints the body, and `purge` removes the object with its row;
/// without the store's settings the row goes and the key is reported.
#[tokio::test]
async fn purging_a_dead_letter_removes_its_offloaded_body() {
    let [initdb, pg_ctl, moto_server] = require_tool!("initdb", "pg_ctl", "moto_server");
    let offloading = Offloading::start(&initdb, &pg_ctl, &moto_server).await;
    let receiver = Receiver::start().await;
    receiver.answer_with(Answer::Status(503));
    let server = offloading.server(&receiver).await;
    assert_eq!(send(&server, "first").await, QUEUED);
    assert_eq!(send(&server, "second").await, QUEUED);
    receiver.answer_with(Answer::Text(422, "Ticket closed"));
    eventually("two dead letters", || async {
        offloading.store.dead().await.len() == 2
    })
    .await;
    server.stop().await;

    let client = offloading.client().await;
    let rows = client
        .query("SELECT id, body_key FROM maillaser_spool ORDER BY id", &[])
        .await
        .unwrap();
    let dead: Vec<(String, String)> = rows
        .iter()
        .map(|row| {
            let key: Option<String> = row.get(1);
            (
                row.get::<_, i64>(0).to_string(),
                key.expect("the body is in the object store"),
            )
        })
        .collect();
    let first_body = offloading.objects.get(&dead[0].1).await.unwrap();

    let shown = offloading.spool_cli(&["show", &dead[0].0], true).await;
    let sent: serde_json::Value = serde_json::from_slice(&first_body).unwrap();
    assert_eq!(shown["body"], sent, "show reads the offloaded body");
    assert_eq!(sent["subject"], "first");
    let shown = offloading.spool_cli(&["show", &dead[0].0], false).await;
    assert_eq!(shown["body_text"], "", "no store: only the key");
    assert_eq!(shown["entry"]["body_key"], dead[0].1.as_str());

    let make_old = |id: &str| {
        let id: i64 = id.parse().unwrap();
        let client = &client;
        async move {
            client
                .execute(
                    "UPDATE maillaser_spool SET dead_at = now() - interval '2 hours' WHERE id = $1",
                    &[&id],
                )
                .await
                .unwrap();
        }
    };
    make_old(&dead[0].0).await;
    let purged = offloading
        .spool_cli(&["purge", "--dead", "--older-than", "1h"], false)
        .await;
    assert_eq!(purged["purged"], serde_json::json!([dead[0].0]));
    assert_eq!(
        purged["objects_left"],
        serde_json::json!([{
            "key": dead[0].1,
            "reason": "no object store configured (MAIL_LASER_S3_BUCKET)",
        }])
    );
    assert_eq!(
        offloading.objects.get(&dead[0].1).await.unwrap(),
        first_body,
        "nothing removed without the store's settings"
    );

    make_old(&dead[1].0).await;
    let purged = offloading
        .spool_cli(&["purge", "--dead", "--older-than", "1h"], true)
        .await;
    assert_eq!(purged["purged"], serde_json::json!([dead[1].0]));
    assert_eq!(purged["objects_left"], serde_json::json!([]));
    assert!(
        offloading.objects.get(&dead[1].1).await.is_err(),
        "the object went with its row"
    );
    assert!(offloading.store.dead().await.is_empty());
}
