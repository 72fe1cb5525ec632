//! Access and certificates (issue 12, `docs/access.md`): SMTP AUTH with
//! swaks and lettre, the implicit-TLS port, certificate files swapped under
//! a running server, and the per-IP rate limits.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use crate::common::{self, Client, DEADLINE, TARGET, TestServer, eventually, http_get};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use mail_laser::stack::credentials::user_line;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::Resumption;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery staple";

/// A scratch folder with a users file and certificates, removed on drop.
struct Files {
    dir: PathBuf,
}

impl Files {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ml-access-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    /// A users file with [`USER`] (made as `mail-laser hash-password` makes it).
    fn users(&self) -> String {
        let path = self.dir.join("users");
        let line = user_line(USER, PASSWORD.as_bytes()).unwrap();
        std::fs::write(&path, format!("# test users\n{line}\n")).unwrap();
        path.display().to_string()
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A certificate for `localhost` and its DER, to compare with what a
/// client is shown.
pub struct Pair {
    cert_pem: String,
    key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Pair {
    pub fn new() -> Self {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        Self {
            cert_pem: certified.cert.pem(),
            key_pem: certified.signing_key.serialize_pem(),
            der: certified.cert.der().clone(),
        }
    }

    /// Writes the pair where the server reads it: a new file renamed over
    /// the old one, as certificate tools do, so the server never reads a
    /// half-written file.
    pub fn install(&self, dir: &Path) {
        for (name, contents) in [("cert.pem", &self.cert_pem), ("key.pem", &self.key_pem)] {
            let temporary = dir.join(format!("{name}.new"));
            std::fs::write(&temporary, contents).unwrap();
            std::fs::rename(&temporary, dir.join(name)).unwrap();
        }
    }
}

/// A TLS client trusting `pairs`. It never resumes a session: a resumed
/// session is not shown a certificate again.
pub fn connector(pairs: &[&Pair]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for pair in pairs {
        roots.add(pair.der.clone()).unwrap();
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    TlsConnector::from(Arc::new(config))
}

/// A TLS connection to the implicit-TLS port, greeted.
async fn implicit_tls(
    server: &TestServer,
    connector: &TlsConnector,
) -> Client<TlsStream<TcpStream>> {
    implicit_tls_at(server.implicit_tls, connector).await
}

async fn implicit_tls_at(
    address: SocketAddr,
    connector: &TlsConnector,
) -> Client<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(address).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = tokio::time::timeout(DEADLINE, connector.connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("handshake");
    let mut client = Client::new(tls);
    let greeting = client.reply().await;
    assert_eq!(greeting.last(), "220 MailLaser SMTP Server Ready");
    client
}

/// The certificate a new connection to the implicit-TLS port is shown.
async fn certificate_shown(
    server: &TestServer,
    connector: &TlsConnector,
) -> CertificateDer<'static> {
    certificate_at(server.implicit_tls, connector).await
}

/// The certificate a new connection to the implicit-TLS port at `address`
/// is shown.
pub async fn certificate_at(
    address: SocketAddr,
    connector: &TlsConnector,
) -> CertificateDer<'static> {
    let client = implicit_tls_at(address, connector).await;
    let (_, connection) = client.stream().get_ref();
    connection.peer_certificates().expect("a certificate")[0].clone()
}

/// A server with `pair` as its certificate files (a test client can only
/// trust a certificate it knows).
async fn server_with_files(files: &Files, pair: &Pair, extra: &[&str]) -> TestServer {
    pair.install(&files.dir);
    let (cert, key) = (files.path("cert.pem"), files.path("key.pem"));
    let mut args = vec!["--tls-cert", &cert, "--tls-key", &key];
    args.extend_from_slice(extra);
    TestServer::start(&args).await
}

fn plain_auth(user: &str, password: &str) -> String {
    let message = format!("\0{user}\0{password}");
    format!(
        "AUTH PLAIN {}",
        data_encoding::BASE64.encode(message.as_bytes())
    )
}

fn authenticated_user(payload: &mail_laser::mail::Payload) -> Option<&str> {
    payload
        .envelope
        .as_ref()
        .and_then(|envelope| envelope.authenticated_user.as_deref())
}

// === SMTP AUTH with swaks ===

/// Runs swaks against the server's SMTP port (or, with `--tlsc`, the
/// implicit-TLS port).
async fn swaks(swaks: &Path, port: u16, args: &[&str]) -> (Output, String) {
    let port = port.to_string();
    let output = tokio::process::Command::new(swaks)
        .args(["--server", "127.0.0.1", "--port", &port])
        .args(["--helo", "swaks.test", "--timeout", "20"])
        .args(["--from", "app@example.org", "--to", TARGET])
        .args(args)
        .output()
        .await
        .expect("swaks runs");
    let transcript = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output, transcript)
}

#[tokio::test]
async fn swaks_auth_plain_and_login_over_starttls_put_the_user_in_the_payload() {
    let [swaks_path] = require_tool!("swaks");
    let files = Files::new("swaks-auth");
    let users = files.users();
    let server = TestServer::start(&["--auth", "required", "--auth-users", &users]).await;
    for (mechanism, subject) in [("PLAIN", "via plain"), ("LOGIN", "via login")] {
        let (output, transcript) = swaks(
            &swaks_path,
            server.smtp.port(),
            &[
                "--tls",
                "--auth",
                mechanism,
                "--auth-user",
                USER,
                "--auth-password",
                PASSWORD,
                "--header",
                &format!("Subject: {subject}"),
            ],
        )
        .await;
        assert!(output.status.success(), "{transcript}");
        let before_tls = transcript
            .split("=== TLS started")
            .next()
            .unwrap_or_default();
        assert!(!before_tls.contains("AUTH PLAIN LOGIN"), "{transcript}");
        assert!(
            transcript.contains("<~  250-AUTH PLAIN LOGIN")
                || transcript.contains("<~  250 AUTH PLAIN LOGIN"),
            "{transcript}"
        );
        assert!(
            transcript.contains("<~  235 2.7.0 Authentication successful"),
            "{transcript}"
        );
        // The password never shows in clear (swaks prints the base64 it sends).
        assert!(!transcript.contains(PASSWORD), "{transcript}");
    }
    let payloads = server.sink.wait_for(2).await;
    for payload in &payloads {
        assert_eq!(authenticated_user(payload), Some(USER));
    }
    let json: serde_json::Value =
        serde_json::from_slice(&payloads[0].to_json().to_bytes()).unwrap();
    assert_eq!(json["envelope"]["authenticated_user"], USER);
    server.stop().await;
}

#[tokio::test]
async fn swaks_wrong_password_is_535_and_required_mode_530() {
    let [swaks_path] = require_tool!("swaks");
    let files = Files::new("swaks-wrong");
    let users = files.users();
    let server = TestServer::start(&["--auth", "required", "--auth-users", &users]).await;
    let (output, transcript) = swaks(
        &swaks_path,
        server.smtp.port(),
        &[
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            USER,
            "--auth-password",
            "not the password",
        ],
    )
    .await;
    assert!(!output.status.success(), "{transcript}");
    assert!(
        transcript.contains("<~* 535 5.7.8 Authentication credentials invalid"),
        "{transcript}"
    );
    // No AUTH at all: MAIL is refused.
    let (output, transcript) = swaks(&swaks_path, server.smtp.port(), &["--tls"]).await;
    assert!(!output.status.success(), "{transcript}");
    assert!(
        transcript.contains("<~* 530 5.7.0 Authentication required"),
        "{transcript}"
    );
    assert!(server.sink.payloads().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn swaks_implicit_tls_with_auth() {
    let [swaks_path] = require_tool!("swaks");
    let files = Files::new("swaks-tlsc");
    let users = files.users();
    let server = TestServer::start(&["--auth", "optional", "--auth-users", &users]).await;
    let (output, transcript) = swaks(
        &swaks_path,
        server.implicit_tls.port(),
        &[
            "--tlsc",
            "--auth",
            "LOGIN",
            "--auth-user",
            USER,
            "--auth-password",
            PASSWORD,
            "--header",
            "Subject: implicit",
        ],
    )
    .await;
    assert!(output.status.success(), "{transcript}");
    assert!(transcript.contains("=== TLS started"), "{transcript}");
    assert!(
        transcript.contains("<~  220 MailLaser SMTP Server Ready"),
        "the greeting comes over TLS: {transcript}"
    );
    assert!(!transcript.contains("STARTTLS"), "{transcript}");
    assert!(
        transcript.contains("<~  235 2.7.0 Authentication successful"),
        "{transcript}"
    );
    let payload = &server.sink.wait_for(1).await[0];
    assert_eq!(payload.subject, "implicit");
    assert_eq!(authenticated_user(payload), Some(USER));
    let tls = payload.envelope.as_ref().and_then(|e| e.tls.as_ref());
    assert!(tls.is_some(), "the session counts as TLS");
    server.stop().await;
}

// === SMTP AUTH with lettre ===

fn message(subject: &str) -> Message {
    Message::builder()
        .from("app@example.org".parse().unwrap())
        .to(TARGET.parse().unwrap())
        .subject(subject)
        .body("sent by lettre".to_owned())
        .unwrap()
}

fn lettre(
    port: u16,
    tls: Tls,
    password: &str,
    mechanism: Mechanism,
) -> AsyncSmtpTransport<Tokio1Executor> {
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(port)
        .timeout(Some(DEADLINE))
        .tls(tls)
        .credentials(Credentials::new(USER.to_owned(), password.to_owned()))
        .authentication(vec![mechanism])
        .build()
}

fn tls_parameters() -> TlsParameters {
    TlsParameters::builder("localhost".to_owned())
        .dangerous_accept_invalid_certs(true)
        .build()
        .unwrap()
}

#[tokio::test]
async fn lettre_authenticates_over_starttls_and_implicit_tls() {
    let files = Files::new("lettre-auth");
    let users = files.users();
    let server = TestServer::start(&["--auth", "required", "--auth-users", &users]).await;
    let sends = [
        (
            server.smtp.port(),
            Tls::Required(tls_parameters()),
            Mechanism::Plain,
            "starttls plain",
        ),
        (
            server.smtp.port(),
            Tls::Required(tls_parameters()),
            Mechanism::Login,
            "starttls login",
        ),
        (
            server.implicit_tls.port(),
            Tls::Wrapper(tls_parameters()),
            Mechanism::Plain,
            "wrapper plain",
        ),
    ];
    for (port, tls, mechanism, subject) in sends {
        let response = lettre(port, tls, PASSWORD, mechanism)
            .send(message(subject))
            .await
            .unwrap_or_else(|error| panic!("{subject}: {error}"));
        assert_eq!(response.code().to_string(), "250", "{subject}");
    }
    let payloads = server.sink.wait_for(3).await;
    let mut subjects: Vec<&str> = payloads.iter().map(|p| p.subject.as_str()).collect();
    subjects.sort_unstable();
    assert_eq!(
        subjects,
        ["starttls login", "starttls plain", "wrapper plain"]
    );
    assert!(payloads.iter().all(|p| authenticated_user(p) == Some(USER)));

    let error = lettre(
        server.smtp.port(),
        Tls::Required(tls_parameters()),
        "wrong",
        Mechanism::Plain,
    )
    .send(message("refused"))
    .await
    .expect_err("a wrong password is refused");
    assert!(error.to_string().contains("535"), "{error}");
    server.stop().await;
}

// === The dialogue, byte by byte ===

#[tokio::test]
async fn auth_before_tls_is_538_and_not_advertised() {
    let files = Files::new("auth-plain-text");
    let users = files.users();
    let server = TestServer::start(&["--auth", "optional", "--auth-users", &users]).await;
    let mut client = Client::greeted(server.smtp).await;
    let ehlo = client.command("EHLO client.example").await;
    assert!(
        ehlo.lines.iter().all(|line| !line.starts_with("AUTH")),
        "{ehlo:?}"
    );
    client
        .expect(
            &plain_auth(USER, PASSWORD),
            "538 5.7.11 Encryption required for requested authentication mechanism",
        )
        .await;
    // Optional mode: mail is taken without AUTH.
    let reply = client
        .send_mail(
            "a@example.org",
            &[TARGET],
            &common::simple_message("anon", "x"),
        )
        .await;
    assert_eq!(reply.code, 250);
    assert_eq!(authenticated_user(&server.sink.wait_for(1).await[0]), None);
    server.stop().await;

    // AUTH off (the default): 502, as before.
    let server = TestServer::start(&[]).await;
    let mut client = Client::greeted(server.smtp).await;
    client.command("EHLO client.example").await;
    client
        .expect("AUTH PLAIN", "502 5.5.1 Command not implemented")
        .await;
    server.stop().await;
}

#[tokio::test]
async fn implicit_tls_session_offers_auth_not_starttls_and_required_mode_is_530() {
    let files = Files::new("implicit-dialogue");
    let users = files.users();
    let pair = Pair::new();
    let server = server_with_files(
        &files,
        &pair,
        &["--auth", "required", "--auth-users", &users],
    )
    .await;
    let mut client = implicit_tls(&server, &connector(&[&pair])).await;
    let ehlo = client.command("EHLO client.example").await;
    assert_eq!(
        ehlo.lines.last().map(String::as_str),
        Some("AUTH PLAIN LOGIN"),
        "{ehlo:?}"
    );
    assert!(ehlo.lines.iter().all(|line| line != "STARTTLS"), "{ehlo:?}");
    client
        .expect("STARTTLS", "503 5.5.1 STARTTLS already active")
        .await;
    client
        .expect(
            "MAIL FROM:<a@example.org>",
            "530 5.7.0 Authentication required",
        )
        .await;
    // LOGIN, step by step; `*` cancels.
    client.expect("AUTH LOGIN", "334 VXNlcm5hbWU6").await;
    client
        .expect("*", "501 5.7.0 Authentication cancelled")
        .await;
    client.expect("AUTH LOGIN", "334 VXNlcm5hbWU6").await;
    client
        .expect(
            &data_encoding::BASE64.encode(USER.as_bytes()),
            "334 UGFzc3dvcmQ6",
        )
        .await;
    client.expect("%%%", "501 5.5.2 Invalid base64 data").await;
    client
        .expect(
            &plain_auth(USER, PASSWORD),
            "235 2.7.0 Authentication successful",
        )
        .await;
    client
        .expect(
            &plain_auth(USER, PASSWORD),
            "503 5.5.1 Already authenticated",
        )
        .await;
    client
        .expect("MAIL FROM:<a@example.org>", "250 2.1.0 OK")
        .await;
    client
        .expect("AUTH PLAIN", "503 5.5.1 Already authenticated")
        .await;
    client
        .expect(&format!("RCPT TO:<{TARGET}>"), "250 2.1.5 OK")
        .await;
    assert_eq!(client.command("DATA").await.code, 354);
    client
        .send(common::simple_message("implicit", "body"))
        .await;
    assert_eq!(
        client.command("\r\n.").await.last(),
        "250 2.0.0 OK: Message accepted for delivery"
    );
    client.expect("QUIT", "221 2.0.0 Bye").await;
    assert_eq!(
        authenticated_user(&server.sink.wait_for(1).await[0]),
        Some(USER)
    );
    server.stop().await;
}

/// Failed AUTH: the session closes at its third failure; across sessions
/// the client IP's failure budget (here 4 a minute) runs out and even the
/// right password is answered `454` without being checked.
#[tokio::test]
async fn failed_auth_is_throttled_per_session_and_per_address() {
    let files = Files::new("auth-throttle");
    let users = files.users();
    let pair = Pair::new();
    let server = server_with_files(
        &files,
        &pair,
        &[
            "--auth",
            "optional",
            "--auth-users",
            &users,
            "--rate-limit-auth-failures",
            "4",
        ],
    )
    .await;
    let connector = connector(&[&pair]);
    let wrong = plain_auth(USER, "guess");
    let mut first = implicit_tls(&server, &connector).await;
    first.command("EHLO client.example").await;
    first
        .expect(&wrong, "535 5.7.8 Authentication credentials invalid")
        .await;
    first
        .expect(&wrong, "535 5.7.8 Authentication credentials invalid")
        .await;
    first
        .expect(
            &wrong,
            "421 4.7.0 Too many authentication failures, closing connection",
        )
        .await;
    first.expect_closed().await;

    let mut second = implicit_tls(&server, &connector).await;
    second.command("EHLO client.example").await;
    second
        .expect(&wrong, "535 5.7.8 Authentication credentials invalid")
        .await;
    second
        .expect(
            &plain_auth(USER, PASSWORD),
            "454 4.7.0 Temporary authentication failure",
        )
        .await;
    // The session goes on after a 454 (its third refused AUTH would close it).
    second.expect("NOOP", "250 2.0.0 OK").await;
    let (_, metrics) = http_get(server.http, "/metrics").await;
    assert!(
        metrics.contains("maillaser_auth_total{result=\"throttled\""),
        "{metrics}"
    );
    server.stop().await;
}

// === Implicit TLS ===

#[tokio::test]
async fn implicit_tls_has_a_handshake_deadline_and_shares_the_connection_limits() {
    let files = Files::new("implicit-limits");
    let pair = Pair::new();
    let server = server_with_files(
        &files,
        &pair,
        &["--smtp-timeout", "1", "--max-concurrent-per-ip", "1"],
    )
    .await;
    // A client that never starts its handshake is closed.
    let mut silent = Client::connect(server.implicit_tls).await;
    silent.expect_closed().await;
    // One session on the SMTP port uses the IP's only slot: the implicit-TLS
    // port refuses (by closing: a plain-text 421 would break the handshake).
    let mut plain = Client::greeted(server.smtp).await;
    let tcp = TcpStream::connect(server.implicit_tls).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let refused = tokio::time::timeout(DEADLINE, connector(&[&pair]).connect(name, tcp)).await;
    assert!(matches!(refused, Ok(Err(_))), "handshake must fail");
    plain.expect("QUIT", "221 Bye").await;
    server.stop().await;
}

// === Certificate reload ===

/// The certificate files are swapped under a running server: new sessions
/// see the new certificate, an open session keeps working on the old one,
/// and a bad file keeps the certificate in use.
#[tokio::test]
async fn certificate_files_swapped_under_a_running_server() {
    let files = Files::new("reload");
    let (old, new) = (Pair::new(), Pair::new());
    let server = server_with_files(&files, &old, &["--tls-reload-interval", "1"]).await;
    let connector = connector(&[&old, &new]);
    assert_eq!(certificate_shown(&server, &connector).await, old.der);
    let mut open = implicit_tls(&server, &connector).await;
    open.command("EHLO client.example").await;

    new.install(&files.dir);
    eventually("new sessions to get the new certificate", || async {
        certificate_shown(&server, &connector).await == new.der
    })
    .await;
    // The session opened before the swap goes on, on its old certificate.
    let (_, connection) = open.stream().get_ref();
    assert_eq!(connection.peer_certificates().unwrap()[0], old.der);
    open.expect("NOOP", "250 2.0.0 OK").await;
    let reply = open
        .send_mail(
            "a@example.org",
            &[TARGET],
            &common::simple_message("after swap", "x"),
        )
        .await;
    assert_eq!(reply.code, 250);

    // A certificate that is not PEM: the reload fails, the new one stays.
    std::fs::write(
        files.dir.join("cert.pem.new"),
        "-----BEGIN CERTIFICATE-----\nnot base64\n",
    )
    .unwrap();
    std::fs::rename(files.dir.join("cert.pem.new"), files.dir.join("cert.pem")).unwrap();
    eventually("the failed reload to be counted", || async {
        let (_, metrics) = http_get(server.http, "/metrics").await;
        metrics
            .lines()
            .any(|line| line == "maillaser_tls_reload_total{result=\"failure\"} 1")
    })
    .await;
    assert_eq!(certificate_shown(&server, &connector).await, new.der);
    let (_, metrics) = http_get(server.http, "/metrics").await;
    assert!(
        metrics.contains("maillaser_tls_reload_total{result=\"success\"} 1"),
        "{metrics}"
    );
    server.stop().await;
}

// === Rate limits ===

#[tokio::test]
async fn the_connection_after_the_rate_limit_gets_421() {
    let server = TestServer::start(&["--rate-limit-connections", "3"]).await;
    for _ in 0..3 {
        let mut client = Client::greeted(server.smtp).await;
        client.expect("QUIT", "221 Bye").await;
    }
    let mut fourth = Client::connect(server.smtp).await;
    assert_eq!(
        fourth.reply().await.last(),
        "421 4.7.0 Too many connections, try again later"
    );
    fourth.expect_closed().await;
    // The implicit-TLS port counts against the same budget: closed at once.
    let mut implicit = Client::connect(server.implicit_tls).await;
    implicit.expect_closed().await;
    let (_, metrics) = http_get(server.http, "/metrics").await;
    assert!(
        metrics.contains("maillaser_connections_refused_total{reason=\"rate_limit\"} 2"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_message_after_the_rate_limit_gets_451() {
    let server = TestServer::start(&["--rate-limit-messages", "2"]).await;
    let mut client = Client::greeted(server.smtp).await;
    for n in 0..2 {
        let reply = client
            .send_mail(
                "a@example.org",
                &[TARGET],
                &common::simple_message(&format!("m{n}"), "x"),
            )
            .await;
        assert_eq!(reply.code, 250);
    }
    client
        .expect(
            "MAIL FROM:<a@example.org>",
            "451 4.7.1 Rate limit exceeded, try again later",
        )
        .await;
    // The session survives; the limit is per client IP, not per session.
    client.expect("NOOP", "250 2.0.0 OK").await;
    let mut again = Client::greeted(server.smtp).await;
    again.command("EHLO client.example").await;
    again
        .expect(
            "MAIL FROM:<b@example.org>",
            "451 4.7.1 Rate limit exceeded, try again later",
        )
        .await;
    assert_eq!(server.sink.payloads().len(), 2);
    server.stop().await;
}

// === SMTP AUTH with Python's smtplib ===

/// smtplib as an application uses it: `SMTP_SSL` (implicit TLS) and
/// `SMTP` + `starttls()`, each with `login()` (PLAIN, its first choice of
/// what MailLaser offers) and with LOGIN forced; a wrong password raises
/// `SMTPAuthenticationError` with the 535.
#[tokio::test]
async fn smtplib_login_over_implicit_tls_and_starttls() {
    let [python3] = require_tool!("python3");
    let files = Files::new("smtplib-auth");
    let users = files.users();
    let server = TestServer::start(&["--auth", "required", "--auth-users", &users]).await;
    let script = r#"
import smtplib, ssl, sys
from email.message import EmailMessage
port, tls_port, user, password, target = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
def message(subject):
    msg = EmailMessage()
    msg["From"] = "app@example.org"
    msg["To"] = target
    msg["Subject"] = subject
    msg.set_content("from smtplib")
    return msg
with smtplib.SMTP_SSL("127.0.0.1", int(tls_port), context=context, timeout=20) as smtp:
    smtp.login(user, password)
    smtp.send_message(message("smtps plain"))
with smtplib.SMTP("127.0.0.1", int(port), timeout=20) as smtp:
    smtp.starttls(context=context)
    smtp.ehlo()
    smtp.user, smtp.password = user, password
    code, text = smtp.auth("LOGIN", smtp.auth_login)
    assert code == 235, (code, text)
    smtp.send_message(message("starttls login"))
with smtplib.SMTP_SSL("127.0.0.1", int(tls_port), context=context, timeout=20) as smtp:
    try:
        smtp.login(user, "wrong")
    except smtplib.SMTPAuthenticationError as error:
        print(error.smtp_code, error.smtp_error.decode())
"#;
    let output = tokio::process::Command::new(python3)
        .args(["-c", script])
        .arg(server.smtp.port().to_string())
        .arg(server.implicit_tls.port().to_string())
        .args([USER, PASSWORD, TARGET])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "535 5.7.8 Authentication credentials invalid"
    );
    let payloads = server.sink.wait_for(2).await;
    let mut subjects: Vec<&str> = payloads.iter().map(|p| p.subject.as_str()).collect();
    subjects.sort_unstable();
    assert_eq!(subjects, ["smtps plain", "starttls login"]);
    assert!(payloads.iter().all(|p| authenticated_user(p) == Some(USER)));
    server.stop().await;
}
