//! Test harness: a real MailLaser on ephemeral loopback ports with a
//! capturing sink, a raw SMTP client for exact transcripts, the lookup of
//! the external tools some tests drive, and private servers they talk to
//! ([`receiver`], [`moto`], [`dnsmasq`]).

pub mod dnsmasq;
pub mod moto;
pub mod postgres;
pub mod receiver;
pub mod schema;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use mail_laser::config::{Config, SinkConfig};
use mail_laser::mail::Payload;
use mail_laser::routes::LiveRoutes;
use mail_laser::sink::{DeliveryOutcome, RecipientPayload, SharedSink, Sink};
use mail_laser::telemetry::{Observability, TelemetryConfig};
use mail_laser::webhook::WebhookSink;
use mail_laser::{Listeners, run};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long any wait in a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub const TARGET: &str = "alerts@example.com";
pub const OTHER_TARGET: &str = "ops@example.com";

/// A sink that records every payload and answers with a chosen outcome.
#[derive(Clone)]
pub struct CaptureSink {
    payloads: Arc<Mutex<Vec<Payload>>>,
    /// Where the payloads do not match `docs/payload.schema.json`.
    schema_violations: Arc<Mutex<Vec<String>>>,
    outcome: Arc<Mutex<DeliveryOutcome>>,
    arrived: Arc<Notify>,
}

impl CaptureSink {
    pub fn new() -> Self {
        Self {
            payloads: Arc::default(),
            schema_violations: Arc::default(),
            outcome: Arc::new(Mutex::new(DeliveryOutcome::Delivered)),
            arrived: Arc::new(Notify::new()),
        }
    }

    pub fn answer_with(&self, outcome: DeliveryOutcome) {
        *self.outcome.lock().unwrap() = outcome;
    }

    /// The payloads so far, each checked against the payload's schema.
    pub fn payloads(&self) -> Vec<Payload> {
        let violations = self.schema_violations.lock().unwrap().clone();
        assert!(
            violations.is_empty(),
            "payloads do not match docs/payload.schema.json: {violations:#?}"
        );
        self.payloads.lock().unwrap().clone()
    }

    /// Waits until at least `count` payloads arrived (or the deadline fails the test).
    pub async fn wait_for(&self, count: usize) -> Vec<Payload> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let notified = self.arrived.notified();
            let payloads = self.payloads();
            if payloads.len() >= count {
                return payloads;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                tokio::time::timeout(left, notified).await.is_ok(),
                "expected {count} payloads, got {}",
                payloads.len()
            );
        }
    }
}

impl Sink for CaptureSink {
    fn deliver(&self, delivery: RecipientPayload) -> BoxFuture<'static, DeliveryOutcome> {
        let outcome = self.outcome.lock().unwrap().clone();
        if outcome == DeliveryOutcome::Delivered {
            // Checked where the test waits: a panic here would only end
            // the session.
            let json =
                serde_json::from_slice(&delivery.payload.to_json().to_bytes()).unwrap_or_default();
            self.schema_violations
                .lock()
                .unwrap()
                .extend(schema::violations(&json));
            self.payloads.lock().unwrap().push(delivery.payload);
            self.arrived.notify_waiters();
        }
        Box::pin(async move { outcome })
    }
}

/// A configuration accepting [`TARGET`] and [`OTHER_TARGET`], delivering to
/// `webhook_url`, with `extra` command-line flags.
pub fn config(webhook_url: &str, extra: &[&str]) -> Config {
    let targets = format!("{TARGET},{OTHER_TARGET}");
    let mut args = vec![
        "mail-laser",
        "--target-emails",
        &targets,
        "--webhook-url",
        webhook_url,
    ];
    args.extend_from_slice(extra);
    Config::from_args(args).expect("test configuration is valid")
}

/// Metrics of one test server (its own registry), no export.
pub fn observability() -> Observability {
    Observability::new(&TelemetryConfig::disabled()).expect("metrics pipeline builds")
}

/// A running server.
pub struct TestServer {
    pub smtp: SocketAddr,
    /// The implicit-TLS port (every test server has one).
    pub implicit_tls: SocketAddr,
    pub http: SocketAddr,
    pub sink: CaptureSink,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<()>,
}

impl TestServer {
    /// Starts a server accepting [`TARGET`] and [`OTHER_TARGET`]; `extra` are
    /// more command-line flags.
    pub async fn start(extra: &[&str]) -> Self {
        Self::start_with(config("-", extra)).await
    }

    /// Starts a server whose payloads go to the [`CaptureSink`] in `sink`.
    pub async fn start_with(config: Config) -> Self {
        let sink = CaptureSink::new();
        Self::start_with_sink(config, observability(), Arc::new(sink.clone()), sink).await
    }

    /// Starts a server delivering to `shared` (e.g. a real webhook sink built
    /// with `observability`'s metrics).
    pub async fn start_with_sink(
        config: Config,
        observability: Observability,
        shared: SharedSink,
        sink: CaptureSink,
    ) -> Self {
        let smtp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let implicit_tls = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (smtp_addr, http_addr) = (smtp.local_addr().unwrap(), http.local_addr().unwrap());
        let implicit_tls_addr = implicit_tls.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                run(
                    Listeners {
                        smtp,
                        http,
                        implicit_tls: Some(implicit_tls),
                    },
                    config,
                    shared,
                    observability,
                    shutdown,
                )
                .await
                .expect("server runs");
            }
        });
        Self {
            smtp: smtp_addr,
            implicit_tls: implicit_tls_addr,
            http: http_addr,
            sink,
            shutdown,
            task,
        }
    }

    /// A server routing by the routes file at `path` through the real
    /// routed sink (what `main` builds), with webhook retries off so a
    /// failure is answered at once; `tweak` edits the configuration first.
    /// The live routes come back too, so a test can ask for a reload as
    /// `SIGHUP` does.
    pub async fn start_routed(
        path: &Path,
        extra: &[&str],
        tweak: impl FnOnce(&mut Config),
    ) -> (Self, LiveRoutes) {
        let mut args = vec![
            "mail-laser",
            "--routes",
            path.to_str().unwrap(),
            "--webhook-max-retries",
            "0",
        ];
        args.extend_from_slice(extra);
        let mut config = Config::from_args(args).expect("test configuration is valid");
        tweak(&mut config);
        let SinkConfig::Routes(routes) = &config.sink else {
            panic!("routed");
        };
        let live = routes.live.clone();
        let observability = observability();
        let sink = mail_laser::open_sink(&config.sink, observability.metrics())
            .await
            .expect("the routed sink opens");
        let server = Self::start_with_sink(config, observability, sink, CaptureSink::new()).await;
        (server, live)
    }

    pub async fn client(&self) -> Client<TcpStream> {
        Client::connect(self.smtp).await
    }

    /// Starts a server posting to the webhook at `url` (with `extra` flags)
    /// through a real [`WebhookSink`], returned so tests can watch its
    /// breaker. Backoff and breaker reset are shortened to keep tests quick;
    /// the policies themselves are unit-tested with a paused clock.
    pub async fn start_webhook(
        url: &str,
        extra: &[&str],
        observability: Observability,
    ) -> (Self, WebhookSink) {
        Self::start_webhook_edited(url, extra, observability, |_| {}).await
    }

    /// [`start_webhook`](Self::start_webhook), with the configuration
    /// changed by `edit` first (what flags cannot say, such as an attachment
    /// store with test credentials).
    pub async fn start_webhook_edited(
        url: &str,
        extra: &[&str],
        observability: Observability,
        edit: impl FnOnce(&mut Config),
    ) -> (Self, WebhookSink) {
        let mut config = config(url, extra);
        edit(&mut config);
        let webhook = config
            .sink
            .webhook_mut()
            .expect("a URL configures the webhook sink");
        webhook.backoff.base = Duration::from_millis(10);
        if !extra.contains(&"--circuit-breaker-reset") {
            webhook.breaker.reset = Duration::from_millis(300);
        }
        let sink =
            WebhookSink::new(webhook, observability.metrics()).expect("webhook client builds");
        let server = Self::start_with_sink(
            config,
            observability,
            Arc::new(sink.clone()),
            CaptureSink::new(),
        )
        .await;
        (server, sink)
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("server stops in time")
            .expect("server task did not panic");
    }
}

/// One SMTP reply: code and lines (text after the code and separator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// The last line as the server sent it, e.g. `250 2.0.0 OK`.
    pub fn last(&self) -> String {
        format!(
            "{} {}",
            self.code,
            self.lines.last().cloned().unwrap_or_default()
        )
    }
}

/// A raw SMTP client over any stream: exact bytes out, parsed replies in.
pub struct Client<S> {
    stream: BufReader<S>,
}

impl Client<TcpStream> {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = tokio::time::timeout(DEADLINE, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        Self::new(stream)
    }

    /// Connects and reads the greeting.
    pub async fn greeted(addr: SocketAddr) -> Self {
        let mut client = Self::connect(addr).await;
        assert_eq!(client.reply().await.code, 220);
        client
    }

    pub fn into_inner(self) -> TcpStream {
        self.stream.into_inner()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    pub fn new(stream: S) -> Self {
        Self {
            stream: BufReader::new(stream),
        }
    }

    /// The stream underneath (a TLS stream's peer certificate, say).
    pub fn stream(&self) -> &S {
        self.stream.get_ref()
    }

    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream
            .get_mut()
            .write_all(bytes.as_ref())
            .await
            .unwrap();
        self.stream.get_mut().flush().await.unwrap();
    }

    /// Reads one (possibly multi-line) reply.
    pub async fn reply(&mut self) -> Reply {
        self.try_reply()
            .await
            .expect("a reply before the connection closed")
    }

    /// `None` when the server closed the connection.
    pub async fn try_reply(&mut self) -> Option<Reply> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let read = tokio::time::timeout(DEADLINE, self.stream.read_line(&mut line))
                .await
                .expect("reply in time");
            match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            let line = line.trim_end_matches(['\r', '\n']);
            assert!(line.len() >= 3, "short reply line {line:?}");
            let code: u16 = line[..3].parse().expect("numeric reply code");
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line.get(4..).unwrap_or_default().to_owned());
            if !more {
                return Some(Reply { code, lines });
            }
        }
    }

    /// Sends one command line and returns the reply.
    pub async fn command(&mut self, line: &str) -> Reply {
        self.send(format!("{line}\r\n")).await;
        self.reply().await
    }

    /// Sends a command and asserts the last reply line.
    pub async fn expect(&mut self, line: &str, expected: &str) {
        let reply = self.command(line).await;
        assert_eq!(reply.last(), expected, "reply to {line:?}");
    }

    /// EHLO, MAIL, RCPT for each recipient and DATA, up to the `354`.
    pub async fn open_data(&mut self, from: &str, to: &[&str]) {
        assert_eq!(self.command("EHLO client.example").await.code, 250);
        assert_eq!(self.command(&format!("MAIL FROM:<{from}>")).await.code, 250);
        for rcpt in to {
            self.command(&format!("RCPT TO:<{rcpt}>")).await;
        }
        assert_eq!(self.command("DATA").await.code, 354);
    }

    /// A whole transaction: the reply to the end of data.
    pub async fn send_mail(&mut self, from: &str, to: &[&str], message: &str) -> Reply {
        self.open_data(from, to).await;
        self.end_data(message).await
    }

    /// `DATA` and `message` in a transaction whose recipients are given:
    /// the reply to the end of data.
    pub async fn send_data(&mut self, message: &str) -> Reply {
        assert_eq!(self.command("DATA").await.code, 354);
        self.end_data(message).await
    }

    /// The rest of `message` after `354`, and the end of data.
    async fn end_data(&mut self, message: &str) -> Reply {
        self.send(message).await;
        self.send("\r\n.\r\n").await;
        self.reply().await
    }

    /// Asserts the server closed the connection (EOF or reset).
    pub async fn expect_closed(&mut self) {
        let mut rest = String::new();
        let read = tokio::time::timeout(DEADLINE, self.stream.read_line(&mut rest))
            .await
            .expect("close in time");
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "expected the connection to close, got {rest:?}"
        );
    }
}

/// A small RFC 5322 message.
pub fn simple_message(subject: &str, body: &str) -> String {
    format!(
        "From: Alice Example <alice@example.org>\r\nTo: {TARGET}\r\nSubject: {subject}\r\nMessage-ID: <id-{subject}@example.org>\r\n\r\n{body}"
    )
}

/// Polls `check` until it holds or the deadline passes.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A plain HTTP/1.1 GET: status code and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::AsyncReadExt;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(DEADLINE, stream.read_to_string(&mut response))
        .await
        .expect("HTTP response in time")
        .unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// SHA-256 in lower-case hex, as the payload's `sha256`.
pub fn hex_sha256(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(data)
        .iter()
        .map(|octet| format!("{octet:02x}"))
        .collect()
}

/// Octets that survive no text transformation: every value 0–255 in turn
/// (151 is odd, so each run of 256 holds them all), with CR, LF, NUL and
/// dots among them.
pub fn binary(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 151 % 256) as u8).collect()
}

/// The original message of a payload sent with `MAIL_LASER_INCLUDE_RAW`.
pub fn raw_message(payload: &serde_json::Value) -> Vec<u8> {
    let text = payload["raw_base64"]
        .as_str()
        .unwrap_or_else(|| panic!("no raw_base64 in the payload"));
    data_encoding::BASE64
        .decode(text.as_bytes())
        .unwrap_or_else(|error| panic!("raw_base64 is not standard padded base64: {error}"))
}

/// An entry of the payload's `attachments` split in two: its octets, decoded
/// from `delivery.data_base64` (standard, padded, no line breaks), and the
/// entry with `delivery` taken out, to compare with a `json!` literal.
pub fn attachment_octets(entry: &serde_json::Value) -> (Vec<u8>, serde_json::Value) {
    let text = entry["delivery"]["data_base64"]
        .as_str()
        .unwrap_or_else(|| panic!("no delivery.data_base64 in {entry}"));
    let octets = data_encoding::BASE64
        .decode(text.as_bytes())
        .unwrap_or_else(|error| panic!("data_base64 is not standard padded base64: {error}"));
    assert_eq!(
        entry["delivery"].as_object().map(|delivery| delivery.len()),
        Some(1),
        "delivery holds only data_base64: {entry}"
    );
    let mut described = entry.clone();
    described
        .as_object_mut()
        .expect("an attachment is an object")
        .remove("delivery");
    (octets, described)
}

/// Looks for the external program `name` in `PATH`, then in the
/// repository's `node_modules/.bin` and `.tools/venv/bin` (where
/// `scripts/test` installs dclint and moto). `PATH` only, so that a tool
/// can be hidden by leaving its folder out: Postfix's commands are in
/// `/usr/sbin`, which root's `PATH` has.
pub fn tool(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let repository = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::split_paths(&path)
        .chain([
            repository.join("node_modules/.bin"),
            repository.join(".tools/venv/bin"),
        ])
        .chain(postgres_bins())
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

/// Debian keeps PostgreSQL's server programs (`initdb`, `pg_ctl`) off
/// `PATH`, in `/usr/lib/postgresql/<version>/bin`: the newest first.
fn postgres_bins() -> Vec<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    found.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    found.into_iter().map(|(_, bin)| bin).collect()
}

/// Set (to anything but `0` or `false`) by `scripts/test`, which installs
/// every tool: there a missing tool is a failure, never a skip.
pub const REQUIRE_TOOLS: &str = "MAIL_LASER_REQUIRE_TOOLS";

/// [`tool`] for the test `test`: `None` after printing the one `skipped:`
/// line when the tool is missing, or a panic naming the tool when
/// [`REQUIRE_TOOLS`] is set. Used through [`require_tool!`].
#[track_caller]
pub fn tool_for_test(name: &str, test: &str) -> Option<PathBuf> {
    if let Some(path) = tool(name) {
        return Some(path);
    }
    let required =
        std::env::var(REQUIRE_TOOLS).is_ok_and(|value| !matches!(value.trim(), "" | "0" | "false"));
    assert!(
        !required,
        "{test}: `{name}` not found and {REQUIRE_TOOLS} is set: install it or run scripts/test"
    );
    // Straight to the stderr file: the test harness captures `eprintln!`
    // of passing tests, and a skip must be seen.
    let line = format!("skipped: {test}: {name} not found (install it or run scripts/test)\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
    None
}

/// The test function's name as the harness prints it (`module::test`),
/// from the type name of an item declared inside it.
pub fn test_name(item: &str) -> String {
    let mut segments: Vec<&str> = item
        .split("::")
        .skip(1) // the crate: `it`
        .filter(|segment| *segment != "{{closure}}")
        .collect();
    segments.pop(); // the item itself
    segments.join("::")
}

/// The name of the test function it is used in, as the harness prints it.
macro_rules! test_name {
    () => {{
        fn here() {}
        $crate::common::test_name(::std::any::type_name_of_val(&here))
    }};
}

/// The paths of the external tools a test drives, as an array:
/// `let [swaks] = require_tool!("swaks");`. When one is missing, prints
/// `skipped: <test>: <tool> not found (install it or run scripts/test)` and
/// returns from the test (it passes), unless `MAIL_LASER_REQUIRE_TOOLS=1`
/// makes it fail. Use it at the top of the test function itself.
macro_rules! require_tool {
    ($($name:expr),+ $(,)?) => {
        [$(
            match $crate::common::tool_for_test($name, &test_name!()) {
                Some(path) => path,
                None => return,
            }
        ),+]
    };
}
