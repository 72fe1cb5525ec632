//! Issue 13, drop-in formats (a route's `format`, `docs/routes.md`): a real
//! client's multipart message reaches a real Django app through
//! django-anymail's own inbound views (Postmark, SendGrid, Mailgun), which
//! parse sender, recipients, subject, text, HTML, the attachment and the
//! inline image exactly as from the provider; and `raw` delivers the original octets as
//! `message/rfc822` with the URL's credentials as basic auth, as Action
//! Mailbox's relay ingress takes them.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use lettre::address::Envelope;
use lettre::message::{Attachment, Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use mail_laser::routes::LiveRoutes;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::common::receiver::{Answer, Receiver};
use crate::common::{self, DEADLINE, TestServer, binary, hex_sha256, http_get};

/// anymail's `WEBHOOK_SECRET`: the basic auth every webhook request carries.
const BASIC_AUTH: &str = "anymail:Wq8-basic-auth";
/// The Mailgun webhook signing key the app verifies signatures with.
const MAILGUN_KEY: &str = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0";

/// A private folder for one test's files.
fn folder(test: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("mail-laser-formats-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A server routing by `routes` (the real routed sink, what `main` builds).
async fn start(dir: &Path, routes: &str, extra: &[&str]) -> TestServer {
    start_live(dir, routes, extra).await.0
}

/// [`start`], with the live routes, so that a test can ask for a reload
/// as `SIGHUP` does.
async fn start_live(dir: &Path, routes: &str, extra: &[&str]) -> (TestServer, LiveRoutes) {
    let path = dir.join("routes.toml");
    std::fs::write(&path, routes).unwrap();
    TestServer::start_routed(&path, extra, |_| {}).await
}

/// Writes `text` as the routes file in one `rename` (a poll never reads
/// half a file) and asks for a reload; waits until it counted as
/// `result` (`success` or `error`).
async fn reload(server: &TestServer, live: &LiveRoutes, dir: &Path, text: &str, result: &str) {
    let count = || async {
        let (_, metrics) = http_get(server.http, "/metrics").await;
        let prefix = format!("maillaser_config_reload_total{{result=\"{result}\"}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|value| value.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = count().await;
    let temporary = dir.join("routes.toml.new");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, dir.join("routes.toml")).unwrap();
    live.request_reload();
    common::eventually("the reload", || async { count().await == before + 1 }).await;
}

/// The venv's Python when django-anymail is installed in it; otherwise
/// one `skipped:` line (a failure under `MAIL_LASER_REQUIRE_TOOLS=1`).
fn anymail_python(test: &str) -> Option<PathBuf> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/python");
    let installed = std::process::Command::new(&python)
        .args(["-c", "import django, anymail"])
        .output()
        .is_ok_and(|output| output.status.success());
    if installed {
        return Some(python);
    }
    let required = std::env::var(common::REQUIRE_TOOLS)
        .is_ok_and(|value| !matches!(value.trim(), "" | "0" | "false"));
    assert!(
        !required,
        "{test}: django-anymail is not installed in .tools/venv: run scripts/test"
    );
    let line = format!("skipped: {test}: django-anymail not found (run scripts/test)\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
    None
}

/// tests/anymail/server.py: Django with anymail's inbound URLs on a free
/// loopback port; killed when dropped.
struct Anymail {
    child: Child,
    port: u16,
    records: PathBuf,
}

impl Anymail {
    async fn start(python: &Path, dir: &Path) -> Self {
        let records = dir.join("inbound.jsonl");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/anymail/server.py");
        let log = std::fs::File::create(dir.join("anymail.log")).unwrap();
        let mut child = Command::new(python)
            .arg(script)
            .arg(&records)
            .args([MAILGUN_KEY, BASIC_AUTH])
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("python runs");
        let stdout = child.stdout.take().unwrap();
        let line = tokio::time::timeout(DEADLINE, BufReader::new(stdout).lines().next_line())
            .await
            .expect("the Django app starts in time")
            .unwrap()
            .unwrap_or_default();
        let port = line
            .strip_prefix("port ")
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("no port from the Django app: {line:?}"));
        Self {
            child,
            port,
            records,
        }
    }

    /// anymail's inbound URL for `esp`, with the basic auth it expects.
    fn url(&self, esp: &str) -> String {
        format!(
            "http://{BASIC_AUTH}@127.0.0.1:{}/anymail/{esp}/inbound/",
            self.port
        )
    }

    fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.records)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("one JSON record per line"))
            .collect()
    }

    /// The records, sorted by provider, once `count` have arrived.
    async fn wait_for(&self, count: usize) -> Vec<Value> {
        common::eventually("anymail's inbound signals", || async {
            self.records().len() >= count
        })
        .await;
        let mut records = self.records();
        records.sort_by_key(|record| record["esp"].as_str().unwrap_or_default().to_owned());
        records
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

fn transport(server: &TestServer) -> AsyncSmtpTransport<Tokio1Executor> {
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(server.smtp.port())
        .timeout(Some(DEADLINE))
        .build()
}

const TEXT: &str = "Hello,\r\nthe report is attached.\r\n";
const HTML: &str = "<p>Hello,<br>the <b>report</b> is attached.</p><img src=\"cid:chart\">";

/// A real client's message to `to`, copied to Carol: text and HTML
/// alternatives, an inline image the HTML refers to, and a PDF with a
/// non-ASCII name. The octets as sent, the PDF, the image and the envelope.
fn message(to: &[&str]) -> (Vec<u8>, Vec<u8>, Vec<u8>, Envelope) {
    let pdf = binary(20_000);
    let png = binary(3_000);
    let mut builder = Message::builder()
        .from("Alice Example <alice@example.org>".parse().unwrap())
        .cc("Carol Cc <carol@example.net>".parse().unwrap())
        .subject("Quarterly report – Q3");
    for address in to {
        builder = builder.to(address.parse::<Mailbox>().unwrap());
    }
    let message = builder
        .multipart(
            MultiPart::mixed()
                .multipart(
                    MultiPart::related()
                        .multipart(MultiPart::alternative_plain_html(
                            TEXT.to_owned(),
                            HTML.to_owned(),
                        ))
                        .singlepart(
                            Attachment::new_inline("chart".to_owned())
                                .body(png.clone(), "image/png".parse().unwrap()),
                        ),
                )
                .singlepart(
                    Attachment::new("Q3 Übersicht.pdf".to_owned())
                        .body(pdf.clone(), "application/pdf".parse().unwrap()),
                ),
        )
        .unwrap();
    let envelope = Envelope::new(
        Some("bounce@example.org".parse().unwrap()),
        to.iter().map(|address| address.parse().unwrap()).collect(),
    )
    .unwrap();
    (message.formatted(), pdf, png, envelope)
}

/// Postmark's inbound JSON, SendGrid's Inbound Parse and Mailgun's
/// `forward()` are each parsed by django-anymail's own view into the same
/// message: sender, recipients, subject, text, HTML, the PDF's name and
/// octets, the inline image by its Content-ID, and the envelope recipient
/// of its route. Mailgun's signature verifies
/// under the app's key, and every request passed anymail's basic auth.
#[tokio::test]
async fn django_anymail_parses_each_provider_format() {
    let test = test_name!();
    let Some(python) = anymail_python(&test) else {
        return;
    };
    let dir = folder("anymail");
    let app = Anymail::start(&python, &dir).await;
    let routes = format!(
        r#"
[[route]]
name = "postmark"
match = ["pm@example.com"]
url = "{}"
format = "postmark"

[[route]]
name = "sendgrid"
match = ["sg@example.com"]
url = "{}"
format = "sendgrid"

[[route]]
name = "mailgun"
match = ["mg@example.com"]
url = "{}"
format = "mailgun"
mailgun_signing_key = "{MAILGUN_KEY}"
"#,
        app.url("postmark"),
        app.url("sendgrid"),
        app.url("mailgun"),
    );
    let server = start(&dir, &routes, &[]).await;
    let to = ["pm@example.com", "sg@example.com", "mg@example.com"];
    let (raw, pdf, png, envelope) = message(&to);
    transport(&server)
        .send_raw(&envelope, &raw)
        .await
        .expect("the message is accepted once every route has it");

    let records = app.wait_for(3).await;
    let expected = |esp: &str, recipient: &str| {
        json!({
            "esp": esp,
            "from": {"name": "Alice Example", "address": "alice@example.org"},
            "to": to.iter().map(|address| json!({"name": "", "address": address})).collect::<Vec<_>>(),
            "cc": [{"name": "Carol Cc", "address": "carol@example.net"}],
            "subject": "Quarterly report – Q3",
            "text": TEXT.replace("\r\n", "\n"),
            "html": HTML,
            "envelope_sender": "bounce@example.org",
            "envelope_recipient": recipient,
            "attachments": [{
                "filename": "Q3 Übersicht.pdf",
                "content_type": "application/pdf",
                "sha256": hex_sha256(&pdf),
            }],
            "inlines": [{
                "content_id": "chart",
                "content_type": "image/png",
                "sha256": hex_sha256(&png),
            }],
        })
    };
    let comparable = |record: &Value| {
        let mut record = record.clone();
        let object = record.as_object_mut().unwrap();
        object.remove("event_id");
        object.remove("stripped_text");
        record
    };
    assert_eq!(records.len(), 3, "{records:#?}");
    assert_eq!(
        comparable(&records[0]),
        expected("Mailgun", "mg@example.com")
    );
    assert_eq!(
        comparable(&records[1]),
        expected("Postmark", "pm@example.com")
    );
    assert_eq!(
        comparable(&records[2]),
        expected("SendGrid", "sg@example.com")
    );
    // Mailgun's event id is its token; Postmark's, our Idempotency-Key.
    assert_eq!(records[0]["event_id"].as_str().map(str::len), Some(50));
    assert_eq!(records[1]["event_id"].as_str().map(str::len), Some(64));
    server.stop().await;
    app.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// `raw`: the receiver gets the message byte for byte as the client sent
/// it, as `message/rfc822`, with the URL's user and password as basic
/// auth (Action Mailbox's relay ingress), the `Idempotency-Key` and the
/// HMAC signature over exactly those bytes.
#[tokio::test]
async fn raw_is_the_original_message_with_basic_auth() {
    let receiver = Receiver::start().await;
    let url = receiver
        .url()
        .replace("http://", "http://actionmailbox:s3cr%40t@");
    let routes = format!(
        "[[route]]\nname = \"mailbox\"\nmatch = [\"inbox@example.com\"]\nurl = \"{url}\"\nformat = \"raw\"\n"
    );
    let dir = folder("raw");
    let server = start(&dir, &routes, &["--webhook-signing-secret", "hmac-secret"]).await;
    let (raw, _, _, envelope) = message(&["inbox@example.com"]);
    transport(&server).send_raw(&envelope, &raw).await.unwrap();

    // lettre ends the data with `\r\n.\r\n`, whose first line break ends
    // the message's last line (RFC 5321 4.1.1.4): part of the message.
    let mut raw = raw;
    raw.extend_from_slice(b"\r\n");
    let request = receiver.wait_for(1).await.remove(0);
    assert_eq!(request.header("content-type"), "message/rfc822");
    assert_eq!(
        request.header("authorization"),
        format!(
            "Basic {}",
            data_encoding::BASE64.encode(b"actionmailbox:s3cr@t")
        )
    );
    assert!(
        request.body == raw,
        "not the original octets: {} octets received, {} sent, first difference at {:?}",
        request.body.len(),
        raw.len(),
        request.body.iter().zip(&raw).position(|(a, b)| a != b)
    );
    assert_eq!(request.header("content-length"), raw.len().to_string());
    assert_eq!(request.header("idempotency-key").len(), 64);
    let timestamp: u64 = request.header("x-maillaser-timestamp").parse().unwrap();
    assert_eq!(
        request.header("x-maillaser-signature-256"),
        mail_laser::webhook::signature(
            &mail_laser::webhook::SigningSecret::new("hmac-secret"),
            timestamp,
            &raw
        )
    );
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// anymail's checks are real: a Mailgun request signed with another key,
/// and a Postmark request without the right basic auth, are refused by the
/// app (`400`), so the message is refused (`554`) and no signal fired.
#[tokio::test]
async fn django_anymail_refuses_a_wrong_key_or_password() {
    let test = test_name!();
    let Some(python) = anymail_python(&test) else {
        return;
    };
    let dir = folder("anymail-refused");
    let app = Anymail::start(&python, &dir).await;
    let routes = format!(
        r#"
[[route]]
name = "mailgun"
match = ["mg@example.com"]
url = "{}"
format = "mailgun"
mailgun_signing_key = "key-not-the-apps"

[[route]]
name = "postmark"
match = ["pm@example.com"]
url = "{}"
format = "postmark"
"#,
        app.url("mailgun"),
        app.url("postmark")
            .replace(BASIC_AUTH, "anymail:not-the-password"),
    );
    let server = start(&dir, &routes, &[]).await;
    for to in ["mg@example.com", "pm@example.com"] {
        let (raw, _, _, envelope) = message(&[to]);
        let refused = transport(&server)
            .send_raw(&envelope, &raw)
            .await
            .expect_err("the app refuses the request");
        assert!(refused.to_string().contains("554"), "{to}: {refused}");
    }
    assert!(app.records().is_empty(), "{:?}", app.records());
    server.stop().await;
    app.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A reload that gives a route the `raw` format applies from the next
/// message: the original message is kept for it from then on. In `spool`
/// mode a delivery in that format is spooled as it was built, and the
/// background attempt sends the same bytes under the same `Content-Type`.
#[tokio::test]
async fn a_reload_brings_a_format_in_sync_and_spool_mode() {
    let receiver = Receiver::start().await;
    let route = |format: &str| {
        format!(
            "[[route]]\nname = \"mailbox\"\nmatch = [\"inbox@example.com\"]\nurl = \"{}\"\nformat = \"{format}\"\n",
            receiver.url()
        )
    };
    let dir = folder("reload");
    let (server, live) = start_live(
        &dir,
        &route("maillaser"),
        &["--routes-reload-interval", "0"],
    )
    .await;
    let (raw, _, _, envelope) = message(&["inbox@example.com"]);
    transport(&server).send_raw(&envelope, &raw).await.unwrap();
    assert_eq!(
        receiver.wait_for(1).await[0].header("content-type"),
        "application/json"
    );
    reload(&server, &live, &dir, &route("raw"), "success").await;
    transport(&server).send_raw(&envelope, &raw).await.unwrap();
    let request = receiver.wait_for(2).await.remove(1);
    assert_eq!(request.header("content-type"), "message/rfc822");
    assert_eq!(&request.body[..raw.len()], &raw[..]);
    server.stop().await;

    let spool = dir.join("spool");
    let (server, live) = start_live(
        &dir,
        &route("maillaser"),
        &[
            "--routes-reload-interval",
            "0",
            "--delivery",
            "spool",
            "--spool-dir",
            spool.to_str().unwrap(),
        ],
    )
    .await;
    reload(&server, &live, &dir, &route("raw"), "success").await;
    // Down for the attempt during DATA: the raw body goes to the spool.
    receiver.script([Answer::Status(503)]);
    let queued = transport(&server).send_raw(&envelope, &raw).await.unwrap();
    assert!(
        queued.message().any(|line| line.contains("queued")),
        "{queued:?}"
    );
    let requests = receiver.wait_for(4).await;
    let (first, spooled) = (&requests[2], &requests[3]);
    for request in [first, spooled] {
        assert_eq!(request.header("content-type"), "message/rfc822");
        assert_eq!(&request.body[..raw.len()], &raw[..]);
    }
    assert_eq!(spooled.body, first.body, "the same bytes");
    assert_eq!(
        spooled.header("idempotency-key"),
        first.header("idempotency-key")
    );
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
