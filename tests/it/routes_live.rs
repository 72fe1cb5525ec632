//! Routes over time (`docs/routes.md`): live reload (a valid file, an
//! invalid one, a reload while transactions are open) and routes in `spool`
//! mode, where each spooled delivery keeps its route.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mail_laser::config::{RoutesConfig, SinkConfig};
use mail_laser::routes::LiveRoutes;
use mail_laser::spool::SpoolEntry;
use mail_laser::webhook::Backoff;

use crate::common::receiver::{Answer, Receiver};
use crate::common::{Client, TestServer, eventually, http_get, simple_message};

const ACCEPTED: &str = "250 2.0.0 OK: Message accepted for delivery";
const QUEUED: &str = "250 2.0.0 OK: Message queued for delivery";

/// A private folder for one test, removed on drop.
struct Folder(PathBuf);

impl Folder {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "mail-laser-routes-live-{test}-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn routes(&self) -> PathBuf {
        self.0.join("routes.toml")
    }

    /// Replaces the routes file in one `rename`, as editors and config
    /// management tools do, so a poll never reads half a file.
    fn write_routes(&self, text: &str) {
        let temporary = self.0.join("routes.toml.new");
        std::fs::write(&temporary, text).unwrap();
        std::fs::rename(&temporary, self.routes()).unwrap();
    }

    fn spool(&self) -> PathBuf {
        self.0.join("spool")
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn route(name: &str, pattern: &str, url: &str) -> String {
    format!("[[route]]\nname = \"{name}\"\nmatch = [\"{pattern}\"]\nurl = \"{url}\"\n\n")
}

/// A server routing by `folder`'s routes file through the real routed sink
/// (what `main` builds), with quick spool backoff; the live routes are
/// returned so a test can ask for a reload as `SIGHUP` does.
async fn start(folder: &Folder, extra: &[&str]) -> (TestServer, LiveRoutes) {
    TestServer::start_routed(&folder.routes(), extra, |config| {
        let SinkConfig::Routes(RoutesConfig {
            spool: Some(spool), ..
        }) = &mut config.sink
        else {
            return;
        };
        spool.backoff = Backoff {
            base: Duration::from_millis(50),
            max: Duration::from_millis(200),
        };
        spool.rescan = Duration::from_millis(100);
        spool.shutdown_grace = Duration::from_millis(500);
    })
    .await
}

async fn send(server: &TestServer, to: &str, subject: &str) -> String {
    let mut client = Client::greeted(server.smtp).await;
    client
        .send_mail(
            "alice@example.org",
            &[to],
            &simple_message(subject, "hello"),
        )
        .await
        .last()
}

async fn rcpt_code(server: &TestServer, to: &str) -> u16 {
    let mut client = Client::greeted(server.smtp).await;
    client.command("EHLO client.example").await;
    client.command("MAIL FROM:<alice@example.org>").await;
    client.command(&format!("RCPT TO:<{to}>")).await.code
}

/// The reply codes to `commands`, sent one after another.
async fn codes(client: &mut Client<tokio::net::TcpStream>, commands: &[&str]) -> Vec<u16> {
    let mut codes = Vec::new();
    for command in commands {
        codes.push(client.command(command).await.code);
    }
    codes
}

/// The value of `maillaser_config_reload_total{result="…"}`.
async fn reloads(server: &TestServer, result: &str) -> u64 {
    let (_, metrics) = http_get(server.http, "/metrics").await;
    let prefix = format!("maillaser_config_reload_total{{result=\"{result}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

/// A changed file is picked up by polling; the new routes take new
/// recipients, a removed route's recipients are refused at RCPT, and an
/// unchanged route keeps its stack.
#[tokio::test]
async fn a_changed_file_is_reloaded_for_new_transactions() {
    let (first, second) = (Receiver::start().await, Receiver::start().await);
    let folder = Folder::new("poll");
    folder.write_routes(&route("support", "support@example.com", &first.url()));
    let (server, _) = start(&folder, &["--routes-reload-interval", "1"]).await;
    assert_eq!(
        send(&server, "support@example.com", "before").await,
        ACCEPTED
    );
    assert_eq!(rcpt_code(&server, "billing@example.com").await, 550);

    folder.write_routes(&format!(
        "{}{}",
        route("billing", "billing@example.com", &second.url()),
        route("archive", "*", &second.url())
    ));
    eventually("the poll to reload the routes", || async {
        reloads(&server, "success").await == 1
    })
    .await;
    assert_eq!(
        send(&server, "billing@example.com", "after").await,
        ACCEPTED
    );
    // `support` is gone: the catch-all takes its address now.
    assert_eq!(
        send(&server, "support@example.com", "moved").await,
        ACCEPTED
    );
    let delivered = second.wait_for(3).await;
    let mut routes: Vec<_> = delivered
        .iter()
        .map(|request| request.json()["recipient"].as_str().unwrap().to_owned())
        .collect();
    routes.sort();
    assert_eq!(
        routes,
        [
            "billing@example.com",
            "billing@example.com",
            "support@example.com"
        ],
        "billing reaches both routes; support only the catch-all"
    );
    assert_eq!(first.requests().len(), 1);
    assert_eq!(reloads(&server, "error").await, 0);
    server.stop().await;
}

/// A file that does not validate keeps the routes in force, is counted as
/// an error, and leaves `/ready` alone; the next valid file applies.
#[tokio::test]
async fn an_invalid_file_keeps_the_routes_in_force() {
    let receiver = Receiver::start().await;
    let folder = Folder::new("invalid");
    let good = route("support", "support@example.com", &receiver.url());
    folder.write_routes(&good);
    let (server, live) = start(&folder, &["--routes-reload-interval", "0"]).await;

    for broken in [
        "[[route]\n".to_owned(),
        good.replace("support@example.com", "a*b@example.com"),
        good.replace("name = \"support\"", "name = \"support\"\nretries = 2"),
    ] {
        let errors = reloads(&server, "error").await;
        folder.write_routes(&broken);
        live.request_reload();
        eventually("the invalid file to be refused", || async {
            reloads(&server, "error").await == errors + 1
        })
        .await;
        assert_eq!(http_get(server.http, "/ready").await.0, 200);
        assert_eq!(send(&server, "support@example.com", "kept").await, ACCEPTED);
    }
    assert_eq!(receiver.wait_for(3).await.len(), 3);
    assert_eq!(reloads(&server, "success").await, 0);

    folder.write_routes(&route("other", "other@example.com", &receiver.url()));
    live.request_reload();
    eventually("the valid file to apply", || async {
        reloads(&server, "success").await == 1
    })
    .await;
    assert_eq!(rcpt_code(&server, "support@example.com").await, 550);
    assert_eq!(send(&server, "other@example.com", "new").await, ACCEPTED);
    server.stop().await;
}

/// A transaction keeps the routes in force at its `MAIL`, whatever a
/// reload does before its data ends: its `RCPT`s are checked against them
/// and its message goes where they said. The session's next transaction,
/// and every new session, uses the new routes.
#[tokio::test]
async fn a_transaction_keeps_the_routes_it_started_under() {
    let (old, new) = (Receiver::start().await, Receiver::start().await);
    let folder = Folder::new("open");
    folder.write_routes(&format!(
        "{}{}",
        route("support", "support@example.com", &old.url()),
        route("sales", "sales@example.com", &old.url())
    ));
    let (server, live) = start(&folder, &["--routes-reload-interval", "0"]).await;
    // In DATA when the reload lands.
    let mut in_data = Client::greeted(server.smtp).await;
    in_data
        .open_data("alice@example.org", &["sales@example.com"])
        .await;
    // Between RCPTs when the reload lands.
    let mut open = Client::greeted(server.smtp).await;
    assert_eq!(
        codes(
            &mut open,
            &[
                "EHLO client.example",
                "MAIL FROM:<alice@example.org>",
                "RCPT TO:<support@example.com>"
            ]
        )
        .await,
        [250, 250, 250]
    );

    // `support` moves to the new receiver, `sales` goes, `billing` comes.
    folder.write_routes(&format!(
        "{}{}",
        route("support", "support@example.com", &new.url()),
        route("billing", "billing@example.com", &new.url())
    ));
    live.request_reload();
    eventually("the reload", || async {
        reloads(&server, "success").await == 1
    })
    .await;
    assert_eq!(rcpt_code(&server, "sales@example.com").await, 550);
    assert_eq!(rcpt_code(&server, "billing@example.com").await, 250);

    in_data
        .send(format!("{}\r\n.\r\n", simple_message("in data", "hello")))
        .await;
    assert_eq!(in_data.reply().await.last(), ACCEPTED);
    assert_eq!(
        codes(
            &mut open,
            &[
                "RCPT TO:<sales@example.com>",
                "RCPT TO:<billing@example.com>"
            ]
        )
        .await,
        [250, 550]
    );
    assert_eq!(
        open.send_data(&simple_message("open", "hello"))
            .await
            .last(),
        ACCEPTED
    );
    let mut by_old: Vec<(String, String)> = old
        .wait_for(3)
        .await
        .iter()
        .map(|request| {
            let json = request.json();
            (
                json["subject"].as_str().unwrap().to_owned(),
                json["recipient"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    by_old.sort();
    assert_eq!(
        by_old,
        [
            ("in data".to_owned(), "sales@example.com".to_owned()),
            ("open".to_owned(), "sales@example.com".to_owned()),
            ("open".to_owned(), "support@example.com".to_owned()),
        ]
    );
    assert!(new.requests().is_empty());

    // The same session's next transaction: the new routes.
    assert_eq!(
        codes(
            &mut open,
            &[
                "MAIL FROM:<alice@example.org>",
                "RCPT TO:<sales@example.com>",
                "RCPT TO:<support@example.com>"
            ]
        )
        .await,
        [250, 550, 250]
    );
    assert_eq!(
        open.send_data(&simple_message("next", "hello"))
            .await
            .last(),
        ACCEPTED
    );
    let request = &new.wait_for(1).await[0];
    assert_eq!(
        (&request.json()["subject"], &request.json()["recipient"]),
        (&"next".into(), &"support@example.com".into())
    );
    assert_eq!(old.requests().len(), 3);
    server.stop().await;
}

/// `spool` mode with routes: a route that is down spools its delivery
/// (`250`) under the route's name, and the worker delivers it through that
/// route's own stack (its URL and Standard Webhooks secret) once it is
/// back, while another route delivers at once.
#[tokio::test]
async fn spooled_deliveries_keep_their_route() {
    let (down, up) = (Receiver::start().await, Receiver::start().await);
    // Down for the attempt during DATA; the worker's attempt waits at the
    // gate until the test has looked at the spool.
    let gate = Arc::new(tokio::sync::Notify::new());
    down.script([Answer::Status(503)]);
    down.answer_with(Answer::Gate(gate.clone()));
    let folder = Folder::new("spool");
    folder.write_routes(&format!(
        "{}\nsigning_secrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\n\n{}",
        route("helpdesk", "support@example.com", &down.url()).trim_end(),
        route("audit", "*", &up.url())
    ));
    let spool = folder.spool();
    let (server, _) = start(
        &folder,
        &[
            "--delivery",
            "spool",
            "--spool-dir",
            spool.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(
        send(&server, "support@example.com", "spooled").await,
        QUEUED
    );
    // The audit route had it at once; the helpdesk's is in the spool, and
    // the worker's attempt is at the gate.
    assert_eq!(up.wait_for(1).await[0].json()["subject"], "spooled");
    let requests = down.wait_for(2).await;
    let waiting: Vec<PathBuf> = msg_files(&spool);
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    let entry = SpoolEntry::decode(std::fs::read(&waiting[0]).unwrap().into()).unwrap();
    assert_eq!(entry.header.route.as_deref(), Some("helpdesk"));
    assert_eq!(requests[1].body, requests[0].body, "the same body");
    assert_eq!(
        requests[1].header("idempotency-key"),
        requests[0].header("idempotency-key")
    );

    gate.notify_one();
    let delivered = &requests[1];
    assert_eq!(delivered.json()["subject"], "spooled");
    assert!(delivered.header("webhook-signature").starts_with("v1,"));
    eventually("the spool file to be removed", || async {
        msg_files(&spool).is_empty()
    })
    .await;
    assert_eq!(up.requests().len(), 1, "the audit route is not retried");
    server.stop().await;
}

/// An entry whose route is no longer in the file waits for it and, past
/// `MAIL_LASER_SPOOL_MAX_AGE`, becomes a dead letter that says why.
#[tokio::test]
async fn an_entry_whose_route_is_gone_expires_with_the_reason() {
    let receiver = Receiver::start().await;
    let folder = Folder::new("gone");
    folder.write_routes(&route("audit", "*", &receiver.url()));
    let spool = folder.spool();
    std::fs::create_dir_all(&spool).unwrap();
    let two_hours_ago = mail_laser::spool::now_ms() - 2 * 3600 * 1000;
    let mut entry = SpoolEntry::new(
        "k".repeat(64),
        bytes::Bytes::from_static(b"{}"),
        two_hours_ago,
    );
    entry.header.route = Some("removed".into());
    std::fs::write(
        spool.join("0000000000001-0000000000000001.msg"),
        entry.encode(),
    )
    .unwrap();
    let (server, _) = start(
        &folder,
        &[
            "--delivery",
            "spool",
            "--spool-dir",
            spool.to_str().unwrap(),
            "--spool-max-age",
            "1h",
        ],
    )
    .await;
    let reason = spool.join("dead/0000000000001-0000000000000001.reason");
    eventually("the dead letter", || async { reason.exists() }).await;
    let reason = std::fs::read_to_string(&reason).unwrap();
    assert!(
        reason.contains("no route 'removed' in the routes in force"),
        "{reason}"
    );
    assert!(receiver.requests().is_empty());
    server.stop().await;
}

fn msg_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "msg"))
        .collect()
}
