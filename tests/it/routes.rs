//! Routes (`MAIL_LASER_ROUTES`, `docs/routes.md`): each pattern kind, fan-out
//! to several real receivers, one route down while another delivers, both
//! signing schemes checked by an independent implementation, and
//! `mail-laser check-routes`.

use std::path::{Path, PathBuf};

use tokio::process::Command;

use crate::common::receiver::{Answer, Receiver, Recorded};
use crate::common::{Client, TestServer, http_get, simple_message};

const BINARY: &str = env!("CARGO_BIN_EXE_mail-laser");

/// A Standard Webhooks secret (the specification's example key).
pub(crate) const SECRET_A: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// A second one, as during a rotation.
pub(crate) const SECRET_B: &str = "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24tdGVzdHM=";

/// A private folder for one test's files.
fn folder(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mail-laser-routes-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `text` as the routes file of `test`.
pub(crate) fn routes_file(test: &str, text: &str) -> PathBuf {
    let path = folder(test).join("routes.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A server routing by the file at `path`, through the real routed sink
/// (what `main` builds); retries off so a failure is answered at once.
pub(crate) async fn start(path: &Path, extra: &[&str]) -> TestServer {
    TestServer::start_routed(path, extra, |_| {}).await.0
}

pub(crate) async fn send(server: &TestServer, to: &[&str], subject: &str) -> String {
    send_message(server, to, &simple_message(subject, "hello")).await
}

/// Sends `message` from alice@example.org; the end-of-data reply.
async fn send_message(server: &TestServer, to: &[&str], message: &str) -> String {
    let mut client = Client::greeted(server.smtp).await;
    client
        .send_mail("alice@example.org", to, message)
        .await
        .last()
}

fn recipients(requests: &[Recorded]) -> Vec<(String, Option<String>)> {
    let mut seen: Vec<_> = requests
        .iter()
        .map(|request| {
            let payload = request.json();
            (
                payload["recipient"].as_str().unwrap().to_owned(),
                payload["recipient_tag"].as_str().map(str::to_owned),
            )
        })
        .collect();
    seen.sort();
    seen
}

#[tokio::test]
async fn each_pattern_kind_reaches_its_route() {
    let (helpdesk, alerts) = (Receiver::start().await, Receiver::start().await);
    let path = routes_file(
        "patterns",
        &format!(
            r#"
[[route]]
name = "helpdesk"
match = ["Support@Example.com", "tickets+*@example.com"]
url = "{}"

[[route]]
name = "alerts"
match = ["*@alerts.example.com"]
url = "{}"
"#,
            helpdesk.url(),
            alerts.url()
        ),
    );
    let server = start(&path, &[]).await;
    let accepted = "250 2.0.0 OK: Message accepted for delivery";
    assert_eq!(
        send(&server, &["support@EXAMPLE.com"], "exact").await,
        accepted
    );
    assert_eq!(
        send(&server, &["Tickets+42@example.com"], "tagged").await,
        accepted
    );
    assert_eq!(
        send(&server, &["pager@Alerts.Example.com"], "domain").await,
        accepted
    );

    let mut client = Client::greeted(server.smtp).await;
    assert_eq!(client.command("EHLO client.example").await.code, 250);
    client
        .expect("MAIL FROM:<a@example.org>", "250 2.1.0 OK")
        .await;
    let refused = client.command("RCPT TO:<nobody@example.com>").await;
    assert_eq!(refused.code, 550, "{refused:?}");
    assert!(refused.last().starts_with("550 5.1.1"), "{refused:?}");

    assert_eq!(
        recipients(&helpdesk.wait_for(2).await),
        vec![
            ("Tickets+42@example.com".to_owned(), Some("42".to_owned())),
            ("support@EXAMPLE.com".to_owned(), None),
        ]
    );
    assert_eq!(
        recipients(&alerts.wait_for(1).await),
        vec![("pager@Alerts.Example.com".to_owned(), None)]
    );
    server.stop().await;
    assert_eq!(helpdesk.requests().len(), 2);
    assert_eq!(alerts.requests().len(), 1);
}

#[tokio::test]
async fn fan_out_delivers_to_every_matching_route() {
    let (helpdesk, audit) = (Receiver::start().await, Receiver::start().await);
    let path = routes_file(
        "fan-out",
        &format!(
            r#"
[[route]]
name = "helpdesk"
match = ["support@example.com"]
url = "{}"

[[route]]
name = "audit"
match = ["*"]
url = "{}"
"#,
            helpdesk.url(),
            audit.url()
        ),
    );
    let server = start(&path, &[]).await;
    assert_eq!(
        send(
            &server,
            &["support@example.com", "someone@elsewhere.org"],
            "fan"
        )
        .await,
        "250 2.0.0 OK: Message accepted for delivery"
    );
    let to_helpdesk = helpdesk.wait_for(1).await;
    let to_audit = audit.wait_for(2).await;
    server.stop().await;
    assert_eq!(
        recipients(&to_helpdesk),
        vec![("support@example.com".to_owned(), None)]
    );
    assert_eq!(
        recipients(&to_audit),
        vec![
            ("someone@elsewhere.org".to_owned(), None),
            ("support@example.com".to_owned(), None),
        ]
    );
    // One delivery per (recipient, route): the same payload, the same key.
    let support_at_audit = to_audit
        .iter()
        .find(|request| request.json()["recipient"] == "support@example.com")
        .unwrap();
    assert_eq!(
        support_at_audit.header("idempotency-key"),
        to_helpdesk[0].header("idempotency-key")
    );
    assert_eq!(support_at_audit.body, to_helpdesk[0].body);
}

/// docs/delivery.md ("Several recipients"): a temporary failure of any
/// delivery of the message makes the sender retry it (`451`); the other
/// route has its payload meanwhile.
#[tokio::test]
async fn one_route_down_while_another_delivers() {
    let (down, up) = (Receiver::start().await, Receiver::start().await);
    down.answer_with(Answer::Status(503));
    // Not listening at all: a port that was bound and released.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let path = routes_file(
        "down",
        &format!(
            r#"
[[route]]
name = "down"
match = ["*@example.com"]
url = "{}"

[[route]]
name = "gone"
match = ["gone@example.com"]
url = "http://{closed}/hook"

[[route]]
name = "up"
match = ["*"]
url = "{}"
"#,
            down.url(),
            up.url()
        ),
    );
    let server = start(&path, &[]).await;
    let deferred = "451 4.3.0 Temporary delivery failure, try again later";
    assert_eq!(
        send(&server, &["support@example.com"], "503").await,
        deferred
    );
    assert_eq!(
        send(&server, &["gone@example.com"], "closed").await,
        deferred
    );
    // A recipient only the healthy route takes is delivered as usual.
    assert_eq!(
        send(&server, &["someone@elsewhere.org"], "healthy").await,
        "250 2.0.0 OK: Message accepted for delivery"
    );
    let delivered = up.wait_for(3).await;
    // Each route's attempts are counted under its own label.
    let (status, metrics) = http_get(server.http, "/metrics").await;
    assert_eq!(status, 200);
    let attempts = |route: &str, class: &str| {
        metrics.lines().any(|line| {
            line.starts_with("maillaser_webhook_request_duration_seconds_count{")
                && line.contains(&format!("route=\"{route}\""))
                && line.contains(&format!("status_class=\"{class}\""))
        })
    };
    assert!(attempts("down", "5xx"), "{metrics}");
    assert!(attempts("gone", "error"), "{metrics}");
    assert!(attempts("up", "2xx"), "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("maillaser_circuit_breaker_state{")
                && line.contains("route=\"gone\"")),
        "{metrics}"
    );
    server.stop().await;
    assert_eq!(
        recipients(&delivered),
        vec![
            ("gone@example.com".to_owned(), None),
            ("someone@elsewhere.org".to_owned(), None),
            ("support@example.com".to_owned(), None),
        ]
    );
    assert_eq!(down.requests().len(), 2, "one attempt each, no retries");
}

/// `410 Gone` from one route's endpoint: `554` as any rejection, counted
/// under the route's label so an operator sees which endpoint is gone.
#[tokio::test]
async fn gone_is_554_and_counted_per_route() {
    let (gone, up) = (Receiver::start().await, Receiver::start().await);
    gone.answer_with(Answer::Status(410));
    let path = routes_file(
        "gone",
        &format!(
            r#"
[[route]]
name = "retired"
match = ["old@example.com"]
url = "{}"

[[route]]
name = "current"
match = ["*"]
url = "{}"
"#,
            gone.url(),
            up.url()
        ),
    );
    let server = start(&path, &[]).await;
    assert_eq!(
        send(&server, &["old@example.com"], "gone").await,
        "554 5.6.0 Message rejected by webhook"
    );
    assert_eq!(gone.requests().len(), 1);
    let (_, metrics) = http_get(server.http, "/metrics").await;
    let rejections = |route: &str, status: &str| -> Option<String> {
        metrics
            .lines()
            .find(|line| {
                line.starts_with("maillaser_webhook_rejections_total{")
                    && line.contains(&format!("route=\"{route}\""))
                    && line.contains(&format!("status=\"{status}\""))
            })
            .and_then(|line| line.rsplit(' ').next())
            .map(str::to_owned)
    };
    assert_eq!(
        rejections("retired", "410").as_deref(),
        Some("1"),
        "{metrics}"
    );
    assert_eq!(
        rejections("current", "410").as_deref(),
        Some("0"),
        "{metrics}"
    );
    assert_eq!(
        rejections("retired", "422").as_deref(),
        Some("0"),
        "{metrics}"
    );
    server.stop().await;
}

/// Checks both signature schemes of a recorded request with Python's
/// `hmac` (an implementation independent of ours): the Standard Webhooks
/// one with each secret of the rotation, and `X-MailLaser-Signature-256`.
const VERIFY: &str = r#"
import base64, hashlib, hmac, json, sys

folder = sys.argv[1]
headers = json.load(open(folder + "/headers.json"))
body = open(folder + "/body.json", "rb").read()

msg_id = headers["webhook-id"]
timestamp = headers["webhook-timestamp"]
assert msg_id == headers["idempotency-key"], "webhook-id is the idempotency key"
signed = f"{msg_id}.{timestamp}.".encode() + body
offered = headers["webhook-signature"].split(" ")
for secret in sys.argv[2:4]:
    key = base64.b64decode(secret[len("whsec_"):])
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert any(hmac.compare_digest(expected, entry) for entry in offered), (secret[:8], offered)
assert len(offered) == 2, offered

legacy = sys.argv[4].encode()
ts = headers["x-maillaser-timestamp"]
expected = "sha256=" + hmac.new(legacy, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
assert hmac.compare_digest(expected, headers["x-maillaser-signature-256"]), "legacy signature"
print("verified")
"#;

/// A request signed both ways by a real MailLaser (a route with the two
/// Standard Webhooks secrets, and the legacy secret `legacy`), as the
/// receiver got it, and the test's folder.
pub(crate) async fn capture_signed(test: &str, legacy: &str) -> (PathBuf, Recorded) {
    let receiver = Receiver::start().await;
    let path = routes_file(
        test,
        &format!(
            r#"
[[route]]
name = "signed"
match = ["*"]
url = "{}"
signing_secrets = ["{SECRET_A}", "{SECRET_B}"]
"#,
            receiver.url()
        ),
    );
    let server = start(&path, &["--webhook-signing-secret", legacy]).await;
    assert_eq!(
        send(&server, &["support@example.com"], "signed").await,
        "250 2.0.0 OK: Message accepted for delivery"
    );
    let request = receiver.wait_for(1).await.remove(0);
    server.stop().await;
    (path.parent().unwrap().to_owned(), request)
}

/// [`capture_signed`], written to the test's folder as `headers.json` and
/// `body.json`; the folder is returned.
async fn signed_request(test: &str, legacy: &str) -> PathBuf {
    let (dir, request) = capture_signed(test, legacy).await;
    let headers: serde_json::Map<String, serde_json::Value> = [
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "idempotency-key",
        "x-maillaser-timestamp",
        "x-maillaser-signature-256",
    ]
    .into_iter()
    .map(|name| (name.to_owned(), request.header(name).into()))
    .collect();
    std::fs::write(
        dir.join("headers.json"),
        serde_json::to_vec(&headers).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("body.json"), &request.body).unwrap();
    dir
}

#[tokio::test]
async fn both_signing_schemes_verify_independently() {
    let [python3] = require_tool!("python3");
    let legacy = "legacy-shared-secret";
    let dir = signed_request("signing", legacy).await;
    std::fs::write(dir.join("verify.py"), VERIFY).unwrap();
    let output = Command::new(python3)
        .arg(dir.join("verify.py"))
        .arg(&dir)
        .args([SECRET_A, SECRET_B, legacy])
        .output()
        .await
        .expect("python3 runs");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "verified");
}

#[tokio::test]
async fn check_routes_prints_the_routes_of_each_address() {
    let path = routes_file(
        "check",
        r#"
[[route]]
name = "helpdesk"
match = ["support@example.com", "tickets+*@example.com"]
url = "https://helpdesk.example.com/hook"

[[route]]
name = "audit"
match = ["*@example.com"]
url = "https://audit.example.com/hook"
"#,
    );
    let output = Command::new(BINARY)
        .arg("check-routes")
        .arg(&path)
        .args(["Tickets+7@example.com", "x@example.com"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[1..],
        [
            "Tickets+7@example.com: helpdesk (recipient_tag 7), audit",
            "x@example.com: audit",
        ],
        "{stdout}"
    );

    let output = Command::new(BINARY)
        .args(["check-routes"])
        .arg(&path)
        .arg("x@elsewhere.org")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("x@elsewhere.org: no route"));
}

/// A bad routes file stops the start: one line with the file, the line and
/// the reason, exit status 2; the server never listens.
#[tokio::test]
async fn a_bad_routes_file_stops_the_start() {
    let path = routes_file(
        "bad",
        "[[route]]\nname = \"a\"\nmatch = [\"*\"]\nurl = \"http://hooks.example.com/\"\n",
    );
    for command in [
        vec!["check-routes".into(), path.clone().into_os_string()],
        vec![],
    ] {
        let mut process = Command::new(BINARY);
        for (name, _) in std::env::vars() {
            if name.starts_with("MAIL_LASER_") {
                process.env_remove(name);
            }
        }
        process
            .args(&command)
            .env("MAIL_LASER_ROUTES", &path)
            .current_dir(path.parent().unwrap());
        let output = process.output().await.unwrap();
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let expected = format!(
            "mail-laser: MAIL_LASER_ROUTES: {} line 4: route 'a': url:",
            path.display()
        );
        assert!(stderr.starts_with(&expected), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

/// The official `standardwebhooks` package (PyPI) accepts our requests with
/// either secret of the rotation, and refuses a changed body.
const VERIFY_OFFICIAL: &str = r#"
import json, sys
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

folder = sys.argv[1]
headers = json.load(open(folder + "/headers.json"))
body = open(folder + "/body.json", "rb").read()
for secret in sys.argv[2:4]:
    Webhook(secret).verify(body, headers)
try:
    Webhook(sys.argv[2]).verify(body + b" ", headers)
except WebhookVerificationError:
    print("verified")
"#;

#[tokio::test]
async fn the_official_standard_webhooks_package_verifies() {
    // `scripts/test` installs the package into `.tools/venv` (pip).
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/python");
    let installed = std::process::Command::new(&python)
        .args(["-c", "import standardwebhooks"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !installed {
        let required = std::env::var(crate::common::REQUIRE_TOOLS)
            .is_ok_and(|value| !matches!(value.trim(), "" | "0" | "false"));
        assert!(
            !required,
            "standardwebhooks is not installed in .tools/venv: run scripts/test"
        );
        let line = "skipped: routes::the_official_standard_webhooks_package_verifies: standardwebhooks not found (run scripts/test)\n";
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
        return;
    }
    let dir = signed_request("official", "legacy").await;
    std::fs::write(dir.join("verify_official.py"), VERIFY_OFFICIAL).unwrap();
    let output = Command::new(&python)
        .arg(dir.join("verify_official.py"))
        .arg(&dir)
        .args([SECRET_A, SECRET_B])
        .output()
        .await
        .expect("python runs");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "verified");
}

/// A route's `headers` go with every request of that route only, and the
/// stack's own headers cannot be replaced by them (refused at start).
#[tokio::test]
async fn route_headers_reach_their_consumer_only() {
    let (keyed, plain) = (Receiver::start().await, Receiver::start().await);
    let path = routes_file(
        "headers",
        &format!(
            r#"
[[route]]
name = "keyed"
match = ["support@example.com"]
url = "{}"
headers = {{ "Authorization" = "Bearer consumer-key", "X-Tenant" = "acme" }}

[[route]]
name = "plain"
match = ["*"]
url = "{}"
"#,
            keyed.url(),
            plain.url()
        ),
    );
    let server = start(&path, &[]).await;
    assert_eq!(
        send(&server, &["support@example.com"], "keyed").await,
        "250 2.0.0 OK: Message accepted for delivery"
    );
    let keyed_request = keyed.wait_for(1).await.remove(0);
    let plain_request = plain.wait_for(1).await.remove(0);
    server.stop().await;
    assert_eq!(keyed_request.header("authorization"), "Bearer consumer-key");
    assert_eq!(keyed_request.header("x-tenant"), "acme");
    assert_eq!(keyed_request.header("content-type"), "application/json");
    assert_eq!(
        keyed_request.header("idempotency-key"),
        plain_request.header("idempotency-key")
    );
    assert!(plain_request.headers.get("authorization").is_none());
    assert!(plain_request.headers.get("x-tenant").is_none());
}

/// `attachments = "metadata"`: that route's payload describes the
/// attachments without their octets, while another route of the same
/// message gets them in full.
#[tokio::test]
async fn a_route_can_take_attachments_as_metadata_only() {
    let (full, described) = (Receiver::start().await, Receiver::start().await);
    let path = routes_file(
        "attachments",
        &format!(
            r#"
[[route]]
name = "helpdesk"
match = ["support@example.com"]
url = "{}"

[[route]]
name = "pager"
match = ["support@example.com"]
url = "{}"
attachments = "metadata"
"#,
            full.url(),
            described.url()
        ),
    );
    let server = start(&path, &[]).await;
    let message = "From: a@example.org\r\nSubject: files\r\n\
        Content-Type: multipart/mixed; boundary=b\r\n\r\n\
        --b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
        --b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=r.pdf\r\n\
        Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n";
    assert_eq!(
        send_message(&server, &["support@example.com"], message).await,
        "250 2.0.0 OK: Message accepted for delivery"
    );
    let full = full.wait_for(1).await.remove(0).json();
    let described = described.wait_for(1).await.remove(0).json();
    server.stop().await;
    let (full, described) = (&full["attachments"][0], &described["attachments"][0]);
    assert_eq!(full["delivery"]["data_base64"], "JVBERi0xLjQK");
    assert_eq!(described["filename"], "r.pdf");
    assert_eq!(described["size_bytes"], 9);
    assert_eq!(described["sha256"], full["sha256"]);
    assert!(described.get("delivery").is_none(), "{described}");
}

/// `header_prefix` per route: each route's `headers` holds the headers of
/// its own prefixes (the message is parsed once, for all of them); a route
/// without one keeps `MAIL_LASER_HEADER_PREFIX`'s.
#[tokio::test]
async fn each_route_gets_the_headers_of_its_prefixes() {
    let (tickets, monitor) = (Receiver::start().await, Receiver::start().await);
    let path = routes_file(
        "header-prefix",
        &format!(
            r#"
[[route]]
name = "tickets"
match = ["support@example.com"]
url = "{}"
header_prefix = ["X-Ticket-"]

[[route]]
name = "monitor"
match = ["support@example.com"]
url = "{}"
"#,
            tickets.url(),
            monitor.url()
        ),
    );
    let server = start(&path, &["--header-prefix", "X-Mon-"]).await;
    let message = "From: a@example.org\r\nSubject: prefixes\r\nX-Ticket-Id: 42\r\n\
        X-Mon-Host: db1\r\nX-Other: no\r\n\r\nbody\r\n";
    assert_eq!(
        send_message(&server, &["support@example.com"], message).await,
        "250 2.0.0 OK: Message accepted for delivery"
    );
    let tickets = tickets.wait_for(1).await.remove(0).json();
    let monitor = monitor.wait_for(1).await.remove(0).json();
    server.stop().await;
    assert_eq!(tickets["headers"], serde_json::json!({"X-Ticket-Id": "42"}));
    assert_eq!(monitor["headers"], serde_json::json!({"X-Mon-Host": "db1"}));
}

/// The example routes file of docs/routes.md is a valid routes file.
#[tokio::test]
async fn the_documented_example_is_a_valid_routes_file() {
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/routes.md")).unwrap();
    let start = docs.find("```toml\n").expect("a TOML example") + "```toml\n".len();
    let end = start + docs[start..].find("```").unwrap();
    let path = routes_file("documented", &docs[start..end]);
    let output = Command::new(BINARY)
        .arg("check-routes")
        .arg(&path)
        .arg("support@example.com")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("support@example.com: helpdesk"),
        "{output:?}"
    );
}
