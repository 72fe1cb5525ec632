//! `mail-laser spool` (`docs/delivery.md#operating-the-spool`), through
//! the real binary, on the folder and on a private PostgreSQL cluster: the
//! store is filled by a real spool-mode server (a receiver answering 500,
//! 503 then 422), then listed, shown, requeued and purged from outside.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::common::receiver::{Answer, Receiver};
use crate::spool_stores::{QUEUED, Store, idle, send, server};

/// What one run of `mail-laser spool …` gave.
struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

/// `mail-laser spool ARGS` against `store` (its flags after `args`), with
/// no spool variables or `.env` of the environment.
async fn spool(store: &Store, args: &[&str]) -> Run {
    let store_args = store.args();
    let mut all = args.to_vec();
    all.extend(store_args.iter().map(String::as_str));
    spool_raw(&all).await
}

/// `mail-laser spool ARGS`.
async fn spool_raw(args: &[&str]) -> Run {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_mail-laser"))
        .arg("spool")
        .args(args)
        .env_remove("MAIL_LASER_SPOOL_DIR")
        .env_remove("MAIL_LASER_SPOOL_URL")
        .current_dir(std::env::temp_dir())
        .output()
        .await
        .expect("mail-laser runs");
    Run {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// `mail-laser spool ARGS --json`: exit 0 and one JSON document.
async fn json(store: &Store, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let run = spool(store, &args).await;
    assert_eq!(run.status, 0, "{args:?}: {}", run.stderr);
    serde_json::from_str(&run.stdout).unwrap_or_else(|error| panic!("{error}: {}", run.stdout))
}

/// A failed run: `status`, and one line on stderr.
async fn fails(store: &Store, args: &[&str], status: i32) -> String {
    let run = spool(store, args).await;
    assert_eq!(
        run.status, status,
        "{args:?}: {} {}",
        run.stdout, run.stderr
    );
    assert_eq!(run.stdout, "", "{args:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {}", run.stderr);
    assert!(run.stderr.starts_with("mail-laser: "), "{}", run.stderr);
    run.stderr
}

fn kind(store: &Store) -> &'static str {
    match store {
        Store::Folder(_) => "folder",
        Store::Postgres { .. } => "postgres",
    }
}

/// A well-formed ID that names nothing.
fn missing(store: &Store) -> &'static str {
    match store {
        Store::Folder(_) => "1700000000000-0000000000000000.msg",
        Store::Postgres { .. } => "999999",
    }
}

fn ids(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect()
}

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// Makes the dead letter `id` have died `ago` ago.
async fn died_ago(store: &Store, id: &str, ago: Duration) {
    match store {
        Store::Folder(dir) => {
            let reason = dir
                .join("dead")
                .join(format!("{}.reason", id.trim_end_matches(".msg")));
            std::fs::File::options()
                .write(true)
                .open(reason)
                .unwrap()
                .set_modified(SystemTime::now() - ago)
                .unwrap();
        }
        Store::Postgres { cluster, .. } => {
            let client = cluster.connect("spool").await;
            let changed = client
                .execute(
                    "UPDATE maillaser_spool SET dead_at = now() - make_interval(secs => $2)
                     WHERE id = $1 AND dead_at IS NOT NULL",
                    &[&id.parse::<i64>().unwrap(), &ago.as_secs_f64()],
                )
                .await
                .unwrap();
            assert_eq!(changed, 1);
        }
    }
}

macro_rules! both_stores {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn folder() {
                super::$name(crate::spool_stores::Store::folder()).await;
            }

            #[tokio::test]
            async fn postgres() {
                let [initdb, pg_ctl] = require_tool!("initdb", "pg_ctl");
                let cluster = crate::common::postgres::Postgres::start(&initdb, &pg_ctl);
                super::$name(crate::spool_stores::Store::postgres(cluster).await).await;
            }
        }
    )+};
}

both_stores!(
    lists_and_shows_what_waits,
    a_requeued_dead_letter_is_delivered,
    requeue_every_dead_letter_and_purge_the_old_ones,
);

async fn lists_and_shows_what_waits(store: Store) {
    let receiver = Receiver::start().await;
    receiver.answer_with(Answer::Status(500));
    let server = server(&receiver, &store, &[], idle).await;
    let before = now_ms();
    assert_eq!(send(&server, "first").await, QUEUED);
    let request = receiver.requests()[0].clone();

    let list = json(&store, &["list"]).await;
    assert_eq!(list["store"], kind(&store));
    assert_eq!((&list["waiting"], &list["dead"]), (&1.into(), &0.into()));
    let entries = list["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry["state"], "waiting");
    assert_eq!(entry["attempts"], 1);
    assert_eq!(entry["last_error"], "webhook answered 500");
    assert_eq!(entry["idempotency_key"], request.header("idempotency-key"));
    assert_eq!(entry["size"], request.body.len());
    assert!(entry["route"].is_null() && entry["dead_at_ms"].is_null());
    let first_seen = entry["first_seen_ms"].as_u64().unwrap();
    assert!((before..=now_ms()).contains(&first_seen), "{entry}");
    match store {
        // The folder's due times are the running server's.
        Store::Folder(_) => assert!(entry["next_attempt_ms"].is_null()),
        Store::Postgres { .. } => assert!(entry["next_attempt_ms"].as_u64().unwrap() > first_seen),
    }
    let id = entry["id"].as_str().unwrap().to_owned();

    let table = spool(&store, &["list"]).await;
    assert_eq!(table.status, 0, "{}", table.stderr);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].starts_with("STATE  "), "{}", table.stdout);
    assert_eq!(lines[0].find("ID"), lines[1].find(&id), "aligned");
    assert!(
        lines[1].starts_with("waiting") && lines[1].ends_with("webhook answered 500"),
        "{}",
        table.stdout
    );
    assert!(
        lines[2].starts_with("1 waiting, 0 dead ("),
        "{}",
        table.stdout
    );

    let shown = json(&store, &["show", &id]).await;
    assert_eq!(shown["entry"], *entry);
    assert_eq!(shown["body"], request.json());
    let text = spool(&store, &["show", &id]).await;
    assert_eq!(text.status, 0);
    assert!(
        text.stdout
            .lines()
            .any(|line| line.starts_with("idempotency key:")
                && line.ends_with(&format!(" {}", request.header("idempotency-key"))))
            && text.stdout.contains("body:\n{\n  \"")
            && text.stdout.contains("\"subject\": \"first\""),
        "{}",
        text.stdout
    );

    // Usage and IDs.
    assert!(
        fails(&store, &["show", missing(&store)], 1)
            .await
            .contains("no entry")
    );
    fails(&store, &["requeue", missing(&store)], 1).await;
    fails(&store, &["show", "../../etc/passwd"], 2).await;
    let refused = fails(&store, &["purge"], 2).await;
    assert!(refused.contains("--dead and --older-than"), "{refused}");
    fails(&store, &["purge", "--dead"], 2).await;
    fails(&store, &["purge", "--older-than", "1s"], 2).await;
    fails(&store, &["purge", "--dead", "--older-than", "7"], 2).await;
    fails(&store, &["frobnicate"], 2).await;
    // Nothing purged: waiting mail is never purged.
    let purged = json(&store, &["purge", "--dead", "--older-than", "1s"]).await;
    assert_eq!(ids(&purged["purged"]), Vec::<String>::new());
    assert_eq!(store.waiting().await, 1);

    // Requeueing a waiting entry: due now in PostgreSQL; the folder's due
    // times are the running server's, so it stays as it is.
    let requeued = json(&store, &["requeue", &id]).await;
    match store {
        Store::Folder(_) => {
            assert_eq!(ids(&requeued["requeued"]), Vec::<String>::new());
            assert_eq!(ids(&requeued["already_waiting"]), std::slice::from_ref(&id));
        }
        Store::Postgres { .. } => {
            assert_eq!(ids(&requeued["requeued"]), std::slice::from_ref(&id));
            // The server (idle for an hour otherwise) tries it at once.
            let requests = receiver.wait_for(2).await;
            assert_eq!(
                requests[1].header("idempotency-key"),
                request.header("idempotency-key")
            );
        }
    }
    server.stop().await;
}

async fn a_requeued_dead_letter_is_delivered(store: Store) {
    let receiver = Receiver::start().await;
    receiver.script([Answer::Status(503)]);
    receiver.answer_with(Answer::Text(422, "Unknown ticket queue"));
    let server = server(&receiver, &store, &[], |_| {}).await;
    assert_eq!(send(&server, "refused").await, QUEUED);
    crate::common::eventually("a dead letter", || async { !store.dead().await.is_empty() }).await;

    let list = json(&store, &["list", "--dead"]).await;
    let entry = &list["entries"][0];
    assert_eq!(list["dead"], 1);
    assert_eq!(entry["state"], "dead");
    assert_eq!(
        entry["dead_reason"],
        "rejected by the webhook (422): Unknown ticket queue"
    );
    assert!(entry["dead_at_ms"].as_u64().unwrap() >= entry["first_seen_ms"].as_u64().unwrap());
    assert!(entry["next_attempt_ms"].is_null());
    let id = entry["id"].as_str().unwrap().to_owned();
    assert_eq!(
        json(&store, &["list", "--waiting"]).await["entries"],
        serde_json::json!([])
    );
    let table = spool(&store, &["list"]).await.stdout;
    assert!(
        table.contains(" ago  ") && table.contains("rejected by the webhook (422)"),
        "{table}"
    );

    receiver.answer_with(Answer::Status(200));
    let run = spool(&store, &["requeue", &id]).await;
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(run.stdout, format!("requeued dead letter {id}: due now\n"));
    let requests = receiver.wait_for(3).await;
    assert_eq!(
        requests[2].header("idempotency-key"),
        requests[0].header("idempotency-key")
    );
    assert_eq!(requests[2].body, requests[0].body);
    crate::common::eventually("the spool to empty", || async {
        store.waiting().await == 0
    })
    .await;
    assert!(store.dead().await.is_empty(), "delivered, not dead again");
    fails(&store, &["requeue", &id], 1).await;
    server.stop().await;
}

async fn requeue_every_dead_letter_and_purge_the_old_ones(store: Store) {
    let receiver = Receiver::start().await;
    receiver.answer_with(Answer::Status(503));
    let server = server(&receiver, &store, &[], |_| {}).await;
    assert_eq!(send(&server, "old").await, QUEUED);
    assert_eq!(send(&server, "young").await, QUEUED);
    receiver.answer_with(Answer::Text(422, "Ticket closed"));
    crate::common::eventually("two dead letters", || async {
        store.dead().await.len() == 2
    })
    .await;
    server.stop().await;

    let entries = json(&store, &["list"]).await["entries"].clone();
    let entries = entries.as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let (old, young) = (
        entries[0]["id"].as_str().unwrap().to_owned(),
        entries[1]["id"].as_str().unwrap().to_owned(),
    );
    died_ago(&store, &old, Duration::from_secs(3600)).await;

    let purged = json(&store, &["purge", "--dead", "--older-than", "30m"]).await;
    assert_eq!(ids(&purged["purged"]), std::slice::from_ref(&old));
    let left = json(&store, &["list"]).await;
    assert_eq!((&left["waiting"], &left["dead"]), (&0.into(), &1.into()));
    assert_eq!(left["entries"][0]["id"], young);
    let attempts = left["entries"][0]["attempts"].clone();
    let text = spool(&store, &["purge", "--dead", "--older-than", "30m"]).await;
    assert_eq!(
        (text.status, text.stdout.as_str()),
        (0, "no dead letter to be purged\n")
    );

    let requeued = json(&store, &["requeue", "--dead"]).await;
    assert_eq!(ids(&requeued["requeued"]), std::slice::from_ref(&young));
    let now = json(&store, &["list"]).await;
    assert_eq!((&now["waiting"], &now["dead"]), (&1.into(), &0.into()));
    let entry = &now["entries"][0];
    assert_eq!(
        (&entry["id"], &entry["state"]),
        (&young.clone().into(), &"waiting".into())
    );
    assert_eq!(entry["attempts"], attempts, "attempts are kept");
    assert!(entry["dead_reason"].is_null());
    if let Store::Postgres { .. } = store {
        assert!(
            entry["next_attempt_ms"].as_u64().unwrap() <= now_ms(),
            "due now"
        );
    }
    // Nothing dead is left; the waiting one is never purged.
    assert_eq!(
        ids(&json(&store, &["requeue", "--dead"]).await["requeued"]),
        Vec::<String>::new()
    );
    let purged = json(&store, &["purge", "--dead", "--older-than", "1s"]).await;
    assert_eq!(ids(&purged["purged"]), Vec::<String>::new());
    assert_eq!(store.waiting().await, 1);
    fails(&store, &["show", &old], 1).await;
}

/// A database the server never used: nothing in it, and the command
/// creates no table.
#[tokio::test]
async fn an_unused_database_has_nothing_and_stays_unused() {
    let [initdb, pg_ctl] = require_tool!("initdb", "pg_ctl");
    let store = Store::postgres(crate::common::postgres::Postgres::start(&initdb, &pg_ctl)).await;
    let run = spool(&store, &["list"]).await;
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .starts_with("nothing in the spool (postgres postgres://"),
        "{}",
        run.stdout
    );
    assert_eq!(
        json(&store, &["list"]).await["entries"],
        serde_json::json!([])
    );
    fails(&store, &["show", "1"], 1).await;
    fails(&store, &["show", "abc"], 2).await;
    let Store::Postgres { cluster, .. } = &store else {
        unreachable!()
    };
    let client = cluster.connect("spool").await;
    let row = client
        .query_one("SELECT to_regclass('maillaser_spool') IS NULL", &[])
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "no table created");
}

/// A store that cannot be used is exit 2 with one line, and the URL's
/// password is never printed.
#[tokio::test]
async fn an_unusable_store_is_one_line_without_the_password() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://maillaser:s3cret-pw@127.0.0.1:{closed}/spool");
    let run = spool_raw(&["list", "--spool-url", &url]).await;
    assert_eq!(run.status, 2, "{}", run.stdout);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "postgres://maillaser:****@127.0.0.1:{closed}/spool"
        )) && !run.stderr.contains("s3cret"),
        "{}",
        run.stderr
    );
    let bad = spool_raw(&["list", "--spool-url", "postgres://maillaser:s3cret-pw@"]).await;
    assert_eq!(bad.status, 2);
    assert!(
        bad.stderr.starts_with("mail-laser: MAIL_LASER_SPOOL_URL: ")
            && !bad.stderr.contains("s3cret"),
        "{}",
        bad.stderr
    );

    let nowhere =
        std::env::temp_dir().join(format!("maillaser-no-spool-{:016x}", fastrand::u64(..)));
    let run = spool_raw(&["list", "--spool-dir", nowhere.to_str().unwrap()]).await;
    assert_eq!(
        (run.status, run.stderr.lines().count()),
        (2, 1),
        "{}",
        run.stderr
    );
    assert!(!nowhere.exists(), "nothing created");
}
