//! The `mail-laser` binary as users run it: configuration errors, the
//! quick-start (payloads on stdout), the HTTP port, and SIGTERM.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Instant;

use crate::common::{Client, DEADLINE, TARGET, eventually, http_get, simple_message};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};

const BINARY: &str = env!("CARGO_BIN_EXE_mail-laser");

/// A command for the binary in an empty directory (no stray `.env`) with
/// no inherited MailLaser settings.
fn command(dir: &std::path::Path) -> Command {
    let mut command = Command::new(BINARY);
    command.current_dir(dir).kill_on_drop(true);
    for (name, _) in std::env::vars() {
        if name.starts_with("MAIL_LASER_") {
            command.env_remove(name);
        }
    }
    command
}

fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mail-laser-bin-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn config_failure(envs: &[(&str, &str)]) -> String {
    let dir = scratch_dir("config");
    let output = command(&dir)
        .envs(envs.iter().copied())
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
    stderr
}

#[tokio::test]
async fn configuration_errors_exit_2_with_one_line_naming_the_variable() {
    let missing = config_failure(&[("MAIL_LASER_WEBHOOK_URL", "-")]).await;
    assert!(missing.contains("MAIL_LASER_TARGET_EMAILS"), "{missing}");

    let bad_port = config_failure(&[
        ("MAIL_LASER_TARGET_EMAILS", TARGET),
        ("MAIL_LASER_WEBHOOK_URL", "-"),
        ("MAIL_LASER_PORT", "seventy"),
    ])
    .await;
    assert!(
        bad_port.contains("MAIL_LASER_PORT") && bad_port.contains("'seventy'"),
        "{bad_port}"
    );

    let bad_size = config_failure(&[
        ("MAIL_LASER_TARGET_EMAILS", TARGET),
        ("MAIL_LASER_WEBHOOK_URL", "-"),
        ("MAIL_LASER_MAX_MESSAGE_SIZE", "-5"),
    ])
    .await;
    assert!(
        bad_size.contains("MAIL_LASER_MAX_MESSAGE_SIZE"),
        "{bad_size}"
    );

    let insecure = config_failure(&[
        ("MAIL_LASER_TARGET_EMAILS", TARGET),
        ("MAIL_LASER_WEBHOOK_URL", "http://hooks.example.com/mail"),
    ])
    .await;
    assert!(
        insecure.contains("MAIL_LASER_WEBHOOK_URL")
            && insecure.contains("MAIL_LASER_ALLOW_INSECURE_WEBHOOK"),
        "{insecure}"
    );

    let missing_key = config_failure(&[
        ("MAIL_LASER_TARGET_EMAILS", TARGET),
        ("MAIL_LASER_WEBHOOK_URL", "-"),
        ("MAIL_LASER_TLS_CERT", "/nonexistent/cert.pem"),
    ])
    .await;
    assert!(missing_key.contains("MAIL_LASER_TLS_KEY"), "{missing_key}");

    let bad_age = config_failure(&[
        ("MAIL_LASER_TARGET_EMAILS", TARGET),
        ("MAIL_LASER_WEBHOOK_URL", "http://127.0.0.1:9/hook"),
        ("MAIL_LASER_DELIVERY", "spool"),
        ("MAIL_LASER_SPOOL_MAX_AGE", "72"),
    ])
    .await;
    assert!(
        bad_age.contains("MAIL_LASER_SPOOL_MAX_AGE")
            && bad_age.contains("'72'")
            && bad_age.contains("a duration such as 90s, 30m, 72h or 3d"),
        "{bad_age}"
    );
}

/// Settings for a server on free loopback ports printing payloads.
const LOOPBACK: &[(&str, &str)] = &[
    ("MAIL_LASER_TARGET_EMAILS", TARGET),
    ("MAIL_LASER_WEBHOOK_URL", "-"),
    ("MAIL_LASER_BIND_ADDRESS", "127.0.0.1"),
    ("MAIL_LASER_PORT", "0"),
    ("MAIL_LASER_HEALTH_BIND_ADDRESS", "127.0.0.1"),
    ("MAIL_LASER_HEALTH_PORT", "0"),
];

#[tokio::test]
async fn a_port_in_use_is_one_line_and_exit_2() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    for variable in [
        "MAIL_LASER_PORT",
        "MAIL_LASER_HEALTH_PORT",
        "MAIL_LASER_TLS_PORT",
    ] {
        let mut envs = LOOPBACK.to_vec();
        envs.push((variable, &port));
        let line = config_failure(&envs).await;
        assert!(
            line.starts_with(&format!("mail-laser: {variable}: cannot listen for ")),
            "{line}"
        );
        assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    }
}

#[tokio::test]
async fn tls_files_are_checked_before_anything_listens() {
    let mut envs = LOOPBACK.to_vec();
    envs.push(("MAIL_LASER_TLS_CERT", "/nonexistent/cert.pem"));
    envs.push(("MAIL_LASER_TLS_KEY", "/nonexistent/key.pem"));
    // One line on stderr (checked by `config_failure`): no `listening` log
    // came before it.
    let line = config_failure(&envs).await;
    assert!(
        line.starts_with(
            "mail-laser: MAIL_LASER_TLS_CERT: cannot read certificates from /nonexistent/cert.pem"
        ),
        "{line}"
    );
}

#[tokio::test]
async fn an_unusable_spool_dir_stops_start_up_with_exit_2() {
    let dir = scratch_dir("spool-dir");
    let output = command(&dir)
        .envs([
            ("MAIL_LASER_TARGET_EMAILS", TARGET),
            ("MAIL_LASER_WEBHOOK_URL", "http://127.0.0.1:9/hook"),
            ("MAIL_LASER_DELIVERY", "spool"),
            // A folder cannot be created under a regular file, even by root.
            ("MAIL_LASER_SPOOL_DIR", "/dev/null/spool"),
            ("MAIL_LASER_PORT", "0"),
            ("MAIL_LASER_HEALTH_PORT", "0"),
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("mail-laser: MAIL_LASER_SPOOL_DIR: cannot create /dev/null/spool/dead"),
        "{stderr}"
    );
}

#[tokio::test]
async fn help_lists_every_variable_with_defaults() {
    let output = Command::new(BINARY).arg("--help").output().await.unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for variable in [
        "MAIL_LASER_TARGET_EMAILS",
        "MAIL_LASER_WEBHOOK_URL",
        "MAIL_LASER_BIND_ADDRESS",
        "MAIL_LASER_PORT",
        "MAIL_LASER_HEALTH_BIND_ADDRESS",
        "MAIL_LASER_HEALTH_PORT",
        "MAIL_LASER_HEADER_PREFIX",
        "MAIL_LASER_MAX_MESSAGE_SIZE",
        "MAIL_LASER_MAX_CONCURRENT_PER_IP",
        "MAIL_LASER_MAX_CONNECTIONS",
        "MAIL_LASER_MAX_UNKNOWN_RCPTS_PER_SESSION",
        "MAIL_LASER_SMTP_TIMEOUT",
        "MAIL_LASER_TLS_CERT",
        "MAIL_LASER_TLS_KEY",
        "MAIL_LASER_REQUIRE_TLS",
        "MAIL_LASER_HOSTNAME",
        "MAIL_LASER_WEBHOOK_TIMEOUT",
        "MAIL_LASER_WEBHOOK_MAX_RETRIES",
        "MAIL_LASER_CIRCUIT_BREAKER_THRESHOLD",
        "MAIL_LASER_CIRCUIT_BREAKER_RESET",
        "MAIL_LASER_WEBHOOK_SIGNING_SECRET",
        "MAIL_LASER_ALLOW_INSECURE_WEBHOOK",
        "MAIL_LASER_DELIVERY",
        "MAIL_LASER_SPOOL_DIR",
        "MAIL_LASER_SPOOL_MAX_AGE",
        "MAIL_LASER_SPOOL_MAX_FILES",
        "MAIL_LASER_SPOOL_MAX_BYTES",
        "MAIL_LASER_DATA_MIN_RATE",
        "MAIL_LASER_DMARC_MODE",
        "MAIL_LASER_DMARC_TEMPERROR_ACTION",
        "MAIL_LASER_DMARC_DNS_TIMEOUT",
        "MAIL_LASER_DMARC_DNS_SERVERS",
        "MAIL_LASER_TLS_PORT",
        "MAIL_LASER_TLS_RELOAD_INTERVAL",
        "MAIL_LASER_AUTH",
        "MAIL_LASER_AUTH_USERS",
        "MAIL_LASER_RATE_LIMIT_AUTH_FAILURES",
        "MAIL_LASER_RATE_LIMIT_CONNECTIONS",
        "MAIL_LASER_RATE_LIMIT_MESSAGES",
        "MAIL_LASER_ROUTES",
        "MAIL_LASER_ROUTES_RELOAD_INTERVAL",
        "MAIL_LASER_SPOOL_URL",
        "MAIL_LASER_SPOOL_LEASE",
        "MAIL_LASER_SPOOL_INLINE_MAX",
    ] {
        assert!(
            help.contains(&format!("[env: {variable}")),
            "{variable} missing from --help"
        );
    }
    assert!(help.contains("[default: 2525]"));
    assert!(help.contains("[default: 26214400]"));
    assert!(help.contains("[default: sync]"));
    assert!(help.contains("[default: ./spool]"));
    assert!(help.contains("[default: 72h]"));
    assert!(help.contains("[default: off]"), "MAIL_LASER_DMARC_MODE");
}

/// A running binary with its ports, read from its start-up log line.
struct Running {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Lines<BufReader<ChildStderr>>,
    smtp: SocketAddr,
    http: SocketAddr,
    /// The `MailLaser listening` line.
    listening: String,
}

impl Running {
    async fn start(name: &str, envs: &[(&str, &str)]) -> Self {
        let dir = scratch_dir(name);
        let mut command = command(&dir);
        // A routes file replaces the recipients and the webhook URL.
        if !envs.iter().any(|(name, _)| *name == "MAIL_LASER_ROUTES") {
            command
                .env("MAIL_LASER_TARGET_EMAILS", TARGET)
                .env("MAIL_LASER_WEBHOOK_URL", "-");
        }
        let mut child = command
            .env("MAIL_LASER_BIND_ADDRESS", "127.0.0.1")
            .env("MAIL_LASER_PORT", "0")
            .env("MAIL_LASER_HEALTH_BIND_ADDRESS", "127.0.0.1")
            .env("MAIL_LASER_HEALTH_PORT", "0")
            .env("RUST_LOG", "info")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let line = wait_for_line(&mut stderr, "MailLaser listening").await;
        let field = |name: &str| -> SocketAddr {
            let start = line.find(&format!("{name}=")).unwrap() + name.len() + 1;
            line[start..]
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        let (smtp, http) = (field("smtp"), field("http"));
        Self {
            child,
            stdout,
            stderr,
            smtp,
            http,
            listening: line,
        }
    }

    /// The implicit-TLS port's address, from the start-up line.
    fn implicit_tls(&self) -> SocketAddr {
        let name = "smtp_implicit_tls=";
        let start = self.listening.find(name).unwrap() + name.len();
        self.listening[start..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("no implicit-TLS address in {}", self.listening))
    }

    /// Sends `signal` with the shell's built-in `kill`: `/bin/sh` is on
    /// every machine, the `kill` program (procps) is not.
    /// Sends `signal` and returns the exit status once the process ends.
    async fn exit_code_after(mut self, signal: &str) -> Option<i32> {
        self.signal(signal);
        let status = tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .expect("exit in time")
            .expect("a status");
        status.code()
    }

    /// Sends SIGTERM and returns everything logged until the process ends.
    async fn stop_with_logs(mut self) -> String {
        self.signal("TERM");
        let mut logs = Vec::new();
        while let Ok(Ok(Some(line))) = tokio::time::timeout(DEADLINE, self.stderr.next_line()).await
        {
            logs.push(line);
        }
        logs.join("\n")
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().unwrap();
        let status = std::process::Command::new("/bin/sh")
            .args(["-c", &format!("kill -{signal} {pid}")])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pid}: {status}");
    }
}

async fn wait_for_line<R: tokio::io::AsyncBufRead + Unpin>(
    lines: &mut Lines<R>,
    needle: &str,
) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = tokio::time::timeout(left, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no line containing {needle:?} in time"))
            .unwrap()
            .unwrap_or_else(|| panic!("stream ended before a line containing {needle:?}"));
        if line.contains(needle) {
            return line;
        }
    }
}

#[tokio::test]
async fn quick_start_prints_payload_json_on_stdout() {
    let mut running = Running::start("quickstart", &[]).await;
    let mut c = Client::greeted(running.smtp).await;
    let reply = c
        .send_mail(
            "alice@example.org",
            &[TARGET],
            &simple_message("hello", "Hi there"),
        )
        .await;
    assert_eq!(reply.code, 250);
    let line = tokio::time::timeout(DEADLINE, running.stdout.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(json["sender"], "alice@example.org");
    assert_eq!(json["recipient"], TARGET);
    assert_eq!(json["subject"], "hello");
    assert_eq!(json["sender_name"], "Alice Example");
    assert_eq!(json["body"].as_str().unwrap().trim_end(), "Hi there");
    assert!(
        json.get("html_body").is_none(),
        "optional fields are omitted"
    );
    assert_eq!(running.exit_code_after("INT").await, Some(0));
}

#[tokio::test]
async fn health_endpoint_and_not_found() {
    let running = Running::start("http", &[]).await;
    assert_eq!(
        http_get(running.http, "/health").await,
        (200, String::new())
    );
    assert_eq!(
        http_get(running.http, "/nope").await,
        (404, "Not Found".to_owned())
    );
    assert_eq!(running.exit_code_after("TERM").await, Some(0));
}

#[tokio::test]
async fn sigterm_during_data_delivers_the_message_and_exits_0() {
    let mut running = Running::start("sigterm", &[]).await;
    let mut c = Client::greeted(running.smtp).await;
    c.open_data("a@example.org", &[TARGET]).await;
    c.send(simple_message("in-flight", "first half, ")).await;

    running.signal("TERM");
    wait_for_line(&mut running.stderr, "shutting down").await;
    // No new sessions after SIGTERM: the listener closes (poll for that, not
    // for the log line about it).
    eventually("the listener to close after SIGTERM", || async {
        tokio::net::TcpStream::connect(running.smtp).await.is_err()
    })
    .await;

    c.send("second half").await;
    c.expect("\r\n.", "250 2.0.0 OK: Message accepted for delivery")
        .await;
    assert_eq!(c.reply().await.last(), "421 4.3.2 Service shutting down");
    let line = tokio::time::timeout(DEADLINE, running.stdout.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(json["subject"], "in-flight");
    let status = tokio::time::timeout(DEADLINE, running.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// Every file under `dir`, recursively, with its contents.
fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
    out
}

/// Issue "secrets in the webhook URL": a token in the URL reached WARN/INFO
/// logs, spool files and `dead/*.reason` through the HTTP client's error
/// text. Now only the redacted URL (no userinfo, query or fragment) is ever
/// written, errors included.
#[tokio::test]
async fn secrets_in_the_webhook_url_reach_no_log_or_spool_file() {
    let spool = scratch_dir("secret-url").join("spool");
    let _ = std::fs::remove_dir_all(&spool);
    let spool_dir = spool.to_string_lossy().into_owned();
    // Nothing listens on the discard port: every attempt fails to connect.
    let running = Running::start(
        "secret-url",
        &[
            (
                "MAIL_LASER_WEBHOOK_URL",
                "http://user:pw-s3cr3t@127.0.0.1:9/hook?token=s3cr3t#frag-s3cr3t",
            ),
            ("MAIL_LASER_DELIVERY", "spool"),
            ("MAIL_LASER_SPOOL_DIR", &spool_dir),
            ("MAIL_LASER_SPOOL_MAX_AGE", "1s"),
            ("RUST_LOG", "debug"),
        ],
    )
    .await;
    let mut c = Client::greeted(running.smtp).await;
    let reply = c
        .send_mail("a@example.org", &[TARGET], &simple_message("s", "x"))
        .await;
    assert_eq!(reply.last(), "250 2.0.0 OK: Message queued for delivery");
    // Too old after a second: the background worker gives up with the last
    // error in the reason file.
    let deadline = Instant::now() + DEADLINE;
    while !files_under(&spool.join("dead"))
        .iter()
        .any(|(path, _)| path.extension().is_some_and(|ext| ext == "msg"))
    {
        assert!(Instant::now() < deadline, "no dead letter in time");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let logs = running.stop_with_logs().await;
    assert!(logs.contains("cannot connect to the webhook"), "{logs}");
    assert!(logs.contains("http://127.0.0.1:9/hook"), "{logs}");
    assert!(!logs.contains("s3cr3t"), "{logs}");
    let written = files_under(&spool);
    let reason = written
        .iter()
        .find(|(path, _)| path.extension().is_some_and(|ext| ext == "reason"))
        .map(|(_, bytes)| String::from_utf8_lossy(bytes).into_owned())
        .expect("a reason file");
    assert!(reason.contains("cannot connect to the webhook"), "{reason}");
    for (path, bytes) in &written {
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains("s3cr3t"), "{}: {text}", path.display());
    }
}

/// Issue "log injection" (finding 11): a quoted local part or an EHLO name
/// with ESC sequences or line breaks was logged raw. Client-controlled
/// values are now written with control characters escaped, and an address
/// holding one is refused outright (RFC 5321 allows none).
#[tokio::test]
async fn client_controlled_values_are_escaped_in_logs() {
    let running = Running::start("log-injection", &[("RUST_LOG", "info")]).await;
    let mut c = Client::greeted(running.smtp).await;
    c.command("EHLO evil\x1b[2J").await;
    c.expect("MAIL FROM:<a@example.org>", "250 2.1.0 OK").await;
    c.expect(
        "RCPT TO:<\"\x1b[31mforged\x1b[0m\"@example.org>",
        "501 5.1.3 Bad address syntax",
    )
    .await;
    let refused = c.command("RCPT TO:<\"forged\\\"x\"@example.org>").await;
    assert_eq!(refused.code, 550, "{refused:?}");
    c.command("QUIT").await;
    let logs = running.stop_with_logs().await;
    let refusal = logs
        .lines()
        .find(|line| line.contains("unknown recipient refused"))
        .unwrap_or_else(|| panic!("the refusal is logged at INFO: {logs}"));
    assert!(refusal.contains("forged"), "{refusal}");
    assert!(refusal.contains("evil\\u{1b}[2J"), "{refusal}");
    assert!(!logs.contains('\x1b'), "{logs:?}");
}

// === Issue 12: access and certificates ===

/// The users file is checked at start like every other setting: one line
/// naming the variable, the file and the line, never the hash; AUTH on
/// without a file is refused.
#[tokio::test]
async fn auth_settings_are_checked_at_start() {
    let mut envs = LOOPBACK.to_vec();
    envs.push(("MAIL_LASER_AUTH", "required"));
    let line = config_failure(&envs).await;
    assert!(
        line.starts_with("mail-laser: MAIL_LASER_AUTH_USERS: "),
        "{line}"
    );

    let dir = scratch_dir("auth-users");
    let users = dir.join("users");
    let hash = "$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";
    std::fs::write(&users, format!("# users\n\nalice:{hash}\n")).unwrap();
    let path = users.display().to_string();
    envs.push(("MAIL_LASER_AUTH_USERS", &path));
    let line = config_failure(&envs).await;
    assert!(
        line.starts_with(&format!(
            "mail-laser: MAIL_LASER_AUTH_USERS: {path} line 3: "
        )),
        "{line}"
    );
    assert!(
        !line.contains("c2FsdHNhbHQ"),
        "the hash is never echoed: {line}"
    );

    let missing = dir.join("missing").display().to_string();
    let mut envs = LOOPBACK.to_vec();
    envs.push(("MAIL_LASER_AUTH", "optional"));
    envs.push(("MAIL_LASER_AUTH_USERS", &missing));
    let line = config_failure(&envs).await;
    assert!(
        line.starts_with(&format!(
            "mail-laser: MAIL_LASER_AUTH_USERS: cannot read {missing}"
        )),
        "{line}"
    );
}

/// `mail-laser hash-password NAME` makes a users-file line; the server
/// started with it authenticates that user (lettre, implicit TLS).
#[tokio::test]
async fn hash_password_makes_a_line_the_server_accepts() {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    use tokio::io::AsyncWriteExt;

    let dir = scratch_dir("hash-password");
    let mut child = command(&dir)
        .args(["hash-password", "printer@example.com"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"s3cret pass\n").await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(output.stderr.is_empty(), "{output:?}");
    let line = String::from_utf8(output.stdout).unwrap();
    assert!(
        line.starts_with("printer@example.com:$argon2id$v=19$"),
        "{line}"
    );
    assert!(!line.contains("s3cret"), "{line}");
    let users = dir.join("users");
    std::fs::write(&users, &line).unwrap();

    // A bad name or no password: exit 2, one line.
    let output = command(&dir)
        .args(["hash-password", "two words"])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let output = command(&dir)
        .args(["hash-password", "alice"])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr, "mail-laser: no password on standard input\n");

    let users = users.display().to_string();
    let mut running = Running::start(
        "hash-password-server",
        &[
            ("MAIL_LASER_AUTH", "required"),
            ("MAIL_LASER_AUTH_USERS", &users),
            ("MAIL_LASER_TLS_PORT", "0"),
        ],
    )
    .await;
    let tls = TlsParameters::builder("localhost".to_owned())
        .dangerous_accept_invalid_certs(true)
        .build()
        .unwrap();
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(running.implicit_tls().port())
        .timeout(Some(DEADLINE))
        .tls(Tls::Wrapper(tls))
        .credentials(Credentials::new(
            "printer@example.com".into(),
            "s3cret pass".into(),
        ))
        .build();
    let message = Message::builder()
        .from("printer@example.com".parse().unwrap())
        .to(TARGET.parse().unwrap())
        .subject("scan")
        .body("page 1".to_owned())
        .unwrap();
    transport.send(message).await.unwrap();
    let payload = tokio::time::timeout(DEADLINE, running.stdout.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(
        json["envelope"]["authenticated_user"],
        "printer@example.com"
    );
    let logs = running.stop_with_logs().await;
    assert!(!logs.contains("s3cret"), "{logs}");
    assert!(!logs.contains("$argon2id$"), "{logs}");
}

/// SIGHUP reloads the certificate files (here with polling off), and does
/// not stop the process.
#[tokio::test]
async fn sighup_reloads_the_certificate_files() {
    use crate::access::{Pair, certificate_at, connector};
    let dir = scratch_dir("sighup");
    let (old, new) = (Pair::new(), Pair::new());
    old.install(&dir);
    let (cert, key) = (
        dir.join("cert.pem").display().to_string(),
        dir.join("key.pem").display().to_string(),
    );
    let running = Running::start(
        "sighup-server",
        &[
            ("MAIL_LASER_TLS_CERT", &cert),
            ("MAIL_LASER_TLS_KEY", &key),
            ("MAIL_LASER_TLS_PORT", "0"),
            ("MAIL_LASER_TLS_RELOAD_INTERVAL", "0"),
        ],
    )
    .await;
    let connector = connector(&[&old, &new]);
    let address = running.implicit_tls();
    assert_eq!(certificate_at(address, &connector).await, old.der);
    new.install(&dir);
    running.signal("HUP");
    eventually("SIGHUP to reload the certificate", || async {
        certificate_at(address, &connector).await == new.der
    })
    .await;
    let logs = running.stop_with_logs().await;
    assert!(logs.contains("TLS certificate reloaded"), "{logs}");
}

/// SIGHUP reloads the routes file (here with polling off): a recipient the
/// new file adds is taken by the next transaction.
#[tokio::test]
async fn sighup_reloads_the_routes_file() {
    let receiver = crate::common::receiver::Receiver::start().await;
    let dir = scratch_dir("sighup-routes");
    let routes = dir.join("routes.toml");
    let route = |pattern: &str| {
        format!(
            "[[route]]\nname = \"r\"\nmatch = [\"{pattern}\"]\nurl = \"{}\"\n",
            receiver.url()
        )
    };
    std::fs::write(&routes, route("old@example.com")).unwrap();
    let running = Running::start(
        "sighup-routes-server",
        &[
            ("MAIL_LASER_ROUTES", routes.to_str().unwrap()),
            ("MAIL_LASER_ROUTES_RELOAD_INTERVAL", "0"),
        ],
    )
    .await;
    let rcpt = |address: &'static str| {
        let smtp = running.smtp;
        async move {
            let mut client = Client::greeted(smtp).await;
            client.command("EHLO client.example").await;
            client.command("MAIL FROM:<a@example.org>").await;
            client.command(&format!("RCPT TO:<{address}>")).await.code
        }
    };
    assert_eq!(rcpt("new@example.com").await, 550);
    std::fs::write(&routes, route("new@example.com")).unwrap();
    running.signal("HUP");
    eventually("SIGHUP to reload the routes", || async {
        rcpt("new@example.com").await == 250
    })
    .await;
    assert_eq!(rcpt("old@example.com").await, 550);
    let logs = running.stop_with_logs().await;
    assert!(logs.contains("routes reloaded"), "{logs}");
}
