//! Postfix in the loop: a private Postfix instance (its own configuration,
//! queue and log under a temporary folder, loopback only, no listener of its
//! own) relays to MailLaser; mail is submitted with Postfix's `sendmail` and
//! the payloads arriving at the capturing sink are checked field by field.
//!
//! Each test runs its own instance, so the tests may run in parallel.
//! `soft_bounce = yes` keeps mail MailLaser refuses in the queue, so a wrong
//! `5xx` shows up as a failed test rather than as a bounce.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use crate::common::{
    self, DEADLINE, OTHER_TARGET, TARGET, TestServer, attachment_octets, binary, hex_sha256,
};
use mail_laser::mail::Payload;
use serde_json::json;

use crate::common::receiver::{Answer, Receiver};

/// Postfix's commands, found by [`postfix_commands!`].
struct Commands {
    postfix: PathBuf,
    sendmail: PathBuf,
    postqueue: PathBuf,
}

/// Postfix's [`Commands`], or the test is skipped (see `require_tool!`).
macro_rules! postfix_commands {
    () => {{
        let [postfix, sendmail, postqueue] = require_tool!("postfix", "sendmail", "postqueue");
        Commands {
            postfix,
            sendmail,
            postqueue,
        }
    }};
}

/// A private Postfix instance, stopped (and its folder removed) on drop,
/// whether the test passed or not.
struct Postfix {
    commands: Commands,
    dir: PathBuf,
    conf: PathBuf,
}

const MASTER_CF: &str = "\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
scache    unix  -       -       n       -       1       scache
anvil     unix  -       -       n       -       1       anvil
postlog   unix-dgram n  -       n       -       1       postlogd
";

impl Postfix {
    /// Starts an instance named `name` that relays everything to
    /// `127.0.0.1:port`; `overrides` (`name = value`) replace the default
    /// of their parameter, so `main.cf` names each parameter once.
    async fn start(commands: Commands, name: &str, port: u16, overrides: &[&str]) -> Self {
        // Short: Postfix's sockets live below it and a socket path is at
        // most 107 octets.
        let dir = std::env::temp_dir().join(format!("ml-pf-{}-{name}", std::process::id()));
        let conf = dir.join("conf");
        let instance = Self {
            commands,
            dir: dir.clone(),
            conf: conf.clone(),
        };
        if dir.exists() {
            instance.stop();
            std::fs::remove_dir_all(&dir).unwrap();
        }
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::create_dir_all(dir.join("queue")).unwrap();
        // Postfix's own user must be able to reach its queue and log.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();

        let d = dir.display();
        let mut parameters: Vec<(String, String)> = [
            ("compatibility_level", "3.6".to_owned()),
            ("queue_directory", format!("{d}/queue")),
            ("data_directory", format!("{d}/data")),
            ("mail_owner", "postfix".to_owned()),
            ("setgid_group", "postdrop".to_owned()),
            ("inet_interfaces", "loopback-only".to_owned()),
            ("inet_protocols", "ipv4".to_owned()),
            ("myhostname", "postfix.test".to_owned()),
            ("mydomain", "postfix.test".to_owned()),
            ("myorigin", "postfix.test".to_owned()),
            ("mydestination", String::new()),
            ("alias_maps", String::new()),
            ("alias_database", String::new()),
            ("relayhost", format!("[127.0.0.1]:{port}")),
            ("maillog_file", format!("{d}/maillog")),
            ("maillog_file_prefixes", d.to_string()),
            ("soft_bounce", "yes".to_owned()),
            ("queue_run_delay", "1s".to_owned()),
            ("minimal_backoff_time", "1s".to_owned()),
            ("maximal_backoff_time", "2s".to_owned()),
            ("smtp_tls_security_level", "none".to_owned()),
            ("smtp_tls_loglevel", "1".to_owned()),
            ("message_size_limit", "30000000".to_owned()),
            ("debug_peer_list", "127.0.0.1".to_owned()),
            ("debug_peer_level", "1".to_owned()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
        for line in overrides {
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{line:?} is not `name = value`"));
            let (key, value) = (key.trim(), value.trim().to_owned());
            match parameters.iter_mut().find(|(known, _)| known == key) {
                Some(parameter) => parameter.1 = value,
                None => parameters.push((key.to_owned(), value)),
            }
        }
        let main_cf: String = parameters
            .iter()
            .map(|(key, value)| format!("{key} = {value}\n"))
            .collect();
        std::fs::write(conf.join("main.cf"), main_cf).unwrap();
        std::fs::write(conf.join("master.cf"), MASTER_CF).unwrap();

        // `check` creates the queue and data folders with their owners.
        let check = instance.postfix(&["check"]).await;
        assert!(check.status.success(), "postfix check: {check:?}");
        let start = instance.postfix(&["start"]).await;
        assert!(
            start.status.success(),
            "postfix start: {start:?}\n{}",
            instance.maillog()
        );
        instance
    }

    async fn postfix(&self, args: &[&str]) -> Output {
        self.run(&self.commands.postfix, args).await
    }

    async fn run(&self, program: &Path, args: &[&str]) -> Output {
        tokio::process::Command::new(program)
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .output()
            .await
            .unwrap()
    }

    /// Submits `message` with `sendmail -C conf -f from [args] -- to…`.
    async fn sendmail(&self, from: &str, args: &[&str], to: &[&str], message: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let mut child = tokio::process::Command::new(&self.commands.sendmail)
            .arg("-C")
            .arg(&self.conf)
            .arg("-f")
            .arg(from)
            .args(args)
            .arg("--")
            .args(to)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(message).await.unwrap();
        drop(stdin);
        let status = child.wait().await.unwrap();
        assert!(status.success(), "sendmail exited with {status}");
    }

    fn maillog(&self) -> String {
        std::fs::read_to_string(self.dir.join("maillog")).unwrap_or_default()
    }

    /// Waits until the maillog holds `needle` `count` times.
    async fn wait_log(&self, needle: &str, count: usize) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let log = self.maillog();
            if log.matches(needle).count() >= count {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "maillog never showed {needle:?} {count} times:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The queue as `postqueue -j` reports it: one JSON object per message.
    async fn queue(&self) -> Vec<serde_json::Value> {
        let output = self.run(&self.commands.postqueue, &["-j"]).await;
        assert!(output.status.success(), "postqueue -j: {output:?}");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// Polls the queue until `check` holds for it, and returns it.
    async fn wait_queue(
        &self,
        what: &str,
        check: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let queue = self.queue().await;
            if check(&queue) {
                return queue;
            }
            assert!(
                Instant::now() < deadline,
                "the queue never showed {what}: {queue:?}\n{}",
                self.maillog()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_queue_empty(&self) {
        self.wait_queue("nothing", <[_]>::is_empty).await;
    }

    /// `postqueue -f`: deliver everything queued now.
    async fn flush(&self) {
        let output = self.run(&self.commands.postqueue, &["-f"]).await;
        assert!(output.status.success(), "postqueue -f: {output:?}");
    }

    /// Stops the instance; never panics (it runs in `drop`).
    fn stop(&self) {
        let _ = std::process::Command::new(&self.commands.postfix)
            .arg("-c")
            .arg(&self.conf)
            .arg("stop")
            .output();
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- maillog of {}\n{}", self.dir.display(), self.maillog());
        }
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn payload_for<'a>(payloads: &'a [Payload], subject: &str) -> &'a Payload {
    payloads
        .iter()
        .find(|payload| payload.subject == subject)
        .unwrap_or_else(|| panic!("no payload with subject {subject:?} in {payloads:?}"))
}

/// Bodies come back with CRLF line ends (SMTP's), whatever the submitter used.
fn crlf(text: &str) -> String {
    text.replace('\n', "\r\n")
}

#[tokio::test]
async fn plain_and_multipart_messages() {
    let commands = postfix_commands!();
    let server = TestServer::start(&[]).await;
    let postfix = Postfix::start(commands, "mime", server.smtp.port(), &[]).await;

    // A leading dot makes Postfix dot-stuff the line; it must arrive unstuffed.
    // `-i`: a line holding only a dot is text, not sendmail's end of input.
    let plain = format!(
        "From: Alice Example <alice@example.org>\nTo: {TARGET}\nSubject: plain via postfix\n\
         Message-ID: <plain-1@example.org>\n\nfirst line\n.leading dot\n..two dots\n.\nlast line\n"
    );
    postfix
        .sendmail("alice@example.org", &["-i"], &[TARGET], plain.as_bytes())
        .await;

    let multipart = format!(
        "From: Bob <bob@example.org>\nTo: {TARGET}\nSubject: multipart via postfix\n\
         Message-ID: <multi-1@example.org>\nMIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"outer\"\n\n\
         --outer\nContent-Type: multipart/alternative; boundary=\"inner\"\n\n\
         --inner\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n\
         plain part =E2=82=AC\n--inner\nContent-Type: text/html; charset=utf-8\n\n\
         <p>html <b>part</b></p>\n--inner--\n\
         --outer\nContent-Type: application/octet-stream; name=\"data.bin\"\n\
         Content-Disposition: attachment; filename=\"data.bin\"\nContent-Transfer-Encoding: base64\n\n\
         AAECAwQFBgcICQ==\n--outer--\n"
    );
    postfix
        .sendmail("bob@example.org", &[], &[TARGET], multipart.as_bytes())
        .await;

    let payloads = server.sink.wait_for(2).await;
    assert_eq!(payloads.len(), 2);
    let plain = payload_for(&payloads, "plain via postfix");
    assert_eq!(plain.sender, "alice@example.org");
    assert_eq!(plain.recipient, TARGET);
    assert_eq!(plain.sender_name.as_deref(), Some("Alice Example"));
    assert_eq!(plain.message_id.as_deref(), Some("<plain-1@example.org>"));
    assert_eq!(
        plain.body,
        crlf("first line\n.leading dot\n..two dots\n.\nlast line\n")
    );

    let multi = payload_for(&payloads, "multipart via postfix");
    assert_eq!(multi.sender, "bob@example.org");
    assert_eq!(multi.body.trim_end(), "plain part €");
    assert_eq!(
        multi.html_body.as_deref().map(str::trim_end),
        Some("<p>html <b>part</b></p>")
    );
    assert!(!multi.body.contains("AAECAwQFBgcICQ"));

    let log = postfix
        .wait_log(
            "status=sent (250 2.0.0 OK: Message accepted for delivery)",
            2,
        )
        .await;
    assert!(!log.contains("status=deferred"), "{log}");
    postfix.wait_queue_empty().await;
    server.stop().await;
}

#[tokio::test]
async fn eight_bit_body_with_size_and_body_parameters() {
    let commands = postfix_commands!();
    let server = TestServer::start(&[]).await;
    let postfix = Postfix::start(commands, "8bit", server.smtp.port(), &[]).await;
    // ASCII headers (RFC 2047 subject), raw UTF-8 body: 8BITMIME, not SMTPUTF8.
    let message = format!(
        "From: =?UTF-8?Q?J=C3=B6rg?= <joerg@example.org>\nTo: {TARGET}\n\
         Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=\nMIME-Version: 1.0\n\
         Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n\
         Grüße, 你好, здравствуйте ✓\n"
    );
    postfix
        .sendmail(
            "joerg@example.org",
            &["-B", "8BITMIME"],
            &[TARGET],
            message.as_bytes(),
        )
        .await;
    let payload = &server.sink.wait_for(1).await[0];
    assert_eq!(payload.subject, "Grüße aus Köln");
    assert_eq!(payload.sender_name.as_deref(), Some("Jörg"));
    assert_eq!(payload.body, "Grüße, 你好, здравствуйте ✓\r\n");

    // What Postfix sent: the declared size and body type, no SMTPUTF8.
    let log = postfix.wait_log("status=sent", 1).await;
    let mail_from = log
        .lines()
        .find(|line| line.contains("> 127.0.0.1[127.0.0.1]") && line.contains("MAIL FROM:"))
        .unwrap_or_else(|| panic!("no MAIL FROM in the maillog:\n{log}"));
    assert!(mail_from.contains(" SIZE="), "{mail_from}");
    assert!(mail_from.contains(" BODY=8BITMIME"), "{mail_from}");
    assert!(!mail_from.contains("SMTPUTF8"), "{mail_from}");
    server.stop().await;
}

#[tokio::test]
async fn smtputf8_address_and_headers() {
    let commands = postfix_commands!();
    let server = TestServer::start(&[]).await;
    let postfix = Postfix::start(commands, "utf8", server.smtp.port(), &[]).await;
    // Raw UTF-8 in the sender address and headers: Postfix asks for SMTPUTF8
    // because MailLaser offers it.
    let message = format!(
        "From: Jörg Müller <jörg@müller.example>\nTo: {TARGET}\nSubject: Grüße aus Köln ✓\n\
         MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\
         Content-Transfer-Encoding: 8bit\n\nHallo Welt €\n"
    );
    postfix
        .sendmail("jörg@müller.example", &[], &[TARGET], message.as_bytes())
        .await;
    let payload = &server.sink.wait_for(1).await[0];
    assert_eq!(payload.sender, "jörg@müller.example");
    assert_eq!(payload.subject, "Grüße aus Köln ✓");
    assert_eq!(payload.sender_name.as_deref(), Some("Jörg Müller"));
    assert_eq!(payload.body, "Hallo Welt €\r\n");

    let log = postfix.wait_log("status=sent", 1).await;
    let mail_from = log
        .lines()
        .find(|line| line.contains("> 127.0.0.1[127.0.0.1]") && line.contains("MAIL FROM:"))
        .unwrap_or_else(|| panic!("no MAIL FROM in the maillog:\n{log}"));
    assert!(mail_from.contains(" SMTPUTF8"), "{mail_from}");
    server.stop().await;
}

#[tokio::test]
async fn ten_megabyte_message() {
    let commands = postfix_commands!();
    let server = TestServer::start(&[]).await;
    let postfix = Postfix::start(commands, "big", server.smtp.port(), &[]).await;
    let line = format!("{}\n", "0123456789abcdefghijklmnopqrstuvwxyz".repeat(2));
    let body = line.repeat(10 * 1024 * 1024 / line.len() + 1);
    assert!(body.len() > 10 * 1024 * 1024);
    let message = format!(
        "From: big@example.org\nTo: {TARGET}\nSubject: ten megabytes\n\
         Message-ID: <big-1@example.org>\n\n{body}"
    );
    postfix
        .sendmail("big@example.org", &[], &[TARGET], message.as_bytes())
        .await;
    let payloads = server.sink.wait_for(1).await;
    let payload = &payloads[0];
    assert_eq!(payload.subject, "ten megabytes");
    assert_eq!(payload.message_id.as_deref(), Some("<big-1@example.org>"));
    assert_eq!(payload.body.len(), crlf(&body).len());
    assert!(payload.body == crlf(&body), "the body arrived altered");
    postfix.wait_log("status=sent", 1).await;
    server.stop().await;
}

#[tokio::test]
async fn starttls_required_by_postfix() {
    let commands = postfix_commands!();
    // MailLaser refuses mail in clear; Postfix insists on TLS and accepts the
    // self-signed certificate (encrypt: no verification).
    let server = TestServer::start(&["--require-tls", "true"]).await;
    let postfix = Postfix::start(
        commands,
        "tls",
        server.smtp.port(),
        &["smtp_tls_security_level = encrypt"],
    )
    .await;
    let message = format!(
        "From: secure@example.org\nTo: {TARGET}\nSubject: over tls\n\nencrypted all the way\n"
    );
    postfix
        .sendmail("secure@example.org", &[], &[TARGET], message.as_bytes())
        .await;
    let payload = &server.sink.wait_for(1).await[0];
    assert_eq!(payload.subject, "over tls");
    assert_eq!(payload.body, "encrypted all the way\r\n");
    let log = postfix.wait_log("status=sent", 1).await;
    assert!(
        log.contains("TLS connection established to 127.0.0.1[127.0.0.1]"),
        "{log}"
    );
    server.stop().await;
}

/// Issue 12: Postfix authenticates as a SASL client (Cyrus, PLAIN) over
/// STARTTLS to a MailLaser that requires AUTH, and adds `AUTH=<>` to `MAIL
/// FROM` (RFC 4954 §5), which MailLaser takes.
#[tokio::test]
async fn postfix_authenticates_with_sasl() {
    let commands = postfix_commands!();
    let dir = std::env::temp_dir().join(format!("ml-pf-users-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let users = dir.join("users");
    let line = mail_laser::stack::credentials::user_line("relay", b"s3cret-pass").unwrap();
    std::fs::write(&users, format!("{line}\n")).unwrap();
    let users = users.display().to_string();
    let server = TestServer::start(&["--auth", "required", "--auth-users", &users]).await;
    let port = server.smtp.port();
    let credentials =
        format!("smtp_sasl_password_maps = inline:{{ [127.0.0.1]:{port}=relay:s3cret-pass }}");
    let postfix = Postfix::start(
        commands,
        "sasl",
        port,
        &[
            "smtp_tls_security_level = encrypt",
            "smtp_sasl_auth_enable = yes",
            &credentials,
            "smtp_sasl_security_options = noanonymous",
            "smtp_sasl_tls_security_options = noanonymous",
            "smtp_send_dummy_mail_auth = yes",
        ],
    )
    .await;
    let message =
        format!("From: app@example.org\nTo: {TARGET}\nSubject: via sasl\n\nauthenticated\n");
    postfix
        .sendmail("app@example.org", &[], &[TARGET], message.as_bytes())
        .await;
    let payload = &server.sink.wait_for(1).await[0];
    assert_eq!(payload.subject, "via sasl");
    let user = payload
        .envelope
        .as_ref()
        .and_then(|envelope| envelope.authenticated_user.as_deref());
    assert_eq!(user, Some("relay"));
    let log = postfix.wait_log("status=sent", 1).await;
    assert!(log.contains("AUTH=<>"), "Postfix sent AUTH=<>: {log}");
    server.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn pipelining_with_several_recipients_in_one_transaction() {
    let commands = postfix_commands!();
    let server = TestServer::start(&[]).await;
    let postfix = Postfix::start(commands, "pipe", server.smtp.port(), &[]).await;
    let message = format!(
        "From: team@example.org\nTo: {TARGET}, {OTHER_TARGET}\nSubject: to both\n\
         Message-ID: <both-1@example.org>\n\nsame for everyone\n"
    );
    postfix
        .sendmail(
            "team@example.org",
            &[],
            &[TARGET, OTHER_TARGET, "nobody@example.com"],
            message.as_bytes(),
        )
        .await;
    let payloads = server.sink.wait_for(2).await;
    let mut recipients: Vec<_> = payloads.iter().map(|p| p.recipient.as_str()).collect();
    recipients.sort_unstable();
    assert_eq!(recipients, [TARGET, OTHER_TARGET]);
    for payload in &payloads {
        assert_eq!(payload.subject, "to both");
        assert_eq!(payload.body, "same for everyone\r\n");
    }

    let log = postfix.wait_log("status=sent", 2).await;
    // MailLaser offered PIPELINING and Postfix used it.
    assert!(log.contains("< 127.0.0.1[127.0.0.1]:"), "{log}");
    assert!(log.contains("PIPELINING"), "{log}");
    assert!(log.contains("Using ESMTP PIPELINING"), "{log}");
    // One transaction: one MAIL FROM carried all three recipients.
    assert_eq!(
        log.lines()
            .filter(|line| line.contains(": MAIL FROM:<team@example.org>"))
            .count(),
        1,
        "{log}"
    );
    // The unknown recipient: 550, kept queued by soft_bounce, never a bounce.
    let log = postfix.wait_log("status=SOFTBOUNCE", 1).await;
    assert!(log.contains("550 5.1.1 No such user here"), "{log}");
    server.stop().await;
}

#[tokio::test]
async fn deferred_mail_stays_queued_until_the_webhook_recovers() {
    let commands = postfix_commands!();
    // A real webhook receiver that fails with 500 until it "recovers".
    let receiver = Receiver::start().await;
    receiver.answer_with(Answer::Status(500));
    let (server, _) = TestServer::start_webhook(
        &receiver.url(),
        &["--webhook-max-retries", "1"],
        common::observability(),
    )
    .await;
    // Long back-off: only our flush may retry.
    let postfix = Postfix::start(
        commands,
        "retry",
        server.smtp.port(),
        &[
            "queue_run_delay = 300s",
            "minimal_backoff_time = 300s",
            "maximal_backoff_time = 300s",
        ],
    )
    .await;
    let message = format!(
        "From: Carol <carol@example.org>\nTo: {TARGET}\nSubject: must not be lost\n\
         Message-ID: <no-loss-1@example.org>\n\nkeep me safe\n"
    );
    postfix
        .sendmail("carol@example.org", &[], &[TARGET], message.as_bytes())
        .await;

    // The webhook answered 500 twice (first attempt and one retry), MailLaser
    // answered 451 and Postfix kept the message.
    let log = postfix.wait_log("status=deferred", 1).await;
    assert!(
        log.contains("451 4.3.0 Temporary delivery failure, try again later"),
        "{log}"
    );
    assert_eq!(receiver.requests().len(), 2);
    // The smtp client logs the deferral before the queue manager has moved
    // the message to the deferred queue and the reason is recorded: poll.
    let queue = postfix
        .wait_queue("the message deferred with its reason", |queue| {
            queue.iter().any(|message| {
                message["queue_name"] == "deferred"
                    && message["recipients"][0]["delay_reason"]
                        .as_str()
                        .is_some_and(|reason| reason.contains("451 4.3.0"))
            })
        })
        .await;
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert_eq!(queue[0]["sender"], "carol@example.org");
    let recipients = queue[0]["recipients"].as_array().unwrap();
    assert_eq!(recipients.len(), 1);
    assert_eq!(recipients[0]["address"], TARGET);

    // The webhook recovers; a flush delivers the message exactly as sent.
    receiver.answer_with(Answer::Status(200));
    postfix.flush().await;
    postfix.wait_log("status=sent", 1).await;
    postfix.wait_queue_empty().await;
    let requests = receiver.wait_for(3).await;
    assert_eq!(
        requests.len(),
        3,
        "one successful delivery after two failures"
    );
    // Postfix's re-send carries the same Idempotency-Key as our failed attempts.
    let keys: Vec<_> = requests
        .iter()
        .map(|r| r.header("idempotency-key"))
        .collect();
    assert!(keys.iter().all(|key| *key == keys[0]), "{keys:?}");
    let payload = requests[2].json();
    assert_eq!(payload["sender"], "carol@example.org");
    assert_eq!(payload["recipient"], TARGET);
    assert_eq!(payload["subject"], "must not be lost");
    assert_eq!(payload["sender_name"], "Carol");
    assert_eq!(payload["message_id"], "<no-loss-1@example.org>");
    assert_eq!(payload["body"], "keep me safe\r\n");
    server.stop().await;
}

/// Attachments relayed by Postfix reach the webhook unchanged: a base64
/// binary holding every octet value, an `8bit` UTF-8 CSV and a
/// quoted-printable text, each with its name, type, size and SHA-256.
/// MailLaser offers 8BITMIME, so Postfix sends the 8-bit part as it is; the
/// original (`--include-raw`) shows Postfix added a `Received:` header and
/// left the MIME body octet for octet as submitted, in SMTP's CRLF.
#[tokio::test]
async fn attachments_relayed_unchanged() {
    let commands = postfix_commands!();
    let receiver = Receiver::start().await;
    let (server, _) = TestServer::start_webhook(
        &receiver.url(),
        &["--include-raw", "true"],
        common::observability(),
    )
    .await;
    let postfix = Postfix::start(commands, "attach", server.smtp.port(), &[]).await;

    let blob = binary(60_000);
    let blob_base64: String = data_encoding::BASE64
        .encode(&blob)
        .as_bytes()
        .chunks(76)
        .map(|line| format!("{}\n", std::str::from_utf8(line).unwrap()))
        .collect();
    let headers = format!(
        "From: Relay <relay@example.org>\nTo: {TARGET}\nSubject: attachments via postfix\n\
         Message-ID: <attach-1@example.org>\nDate: Mon, 07 Dec 2026 10:00:00 +0000\n\
         MIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"part\"\n"
    );
    let mime_body = format!(
        "--part\nContent-Type: text/plain; charset=utf-8\n\nThree files.\n\
         --part\nContent-Type: application/octet-stream; name=\"blob.bin\"\n\
         Content-Disposition: attachment; filename=\"blob.bin\"\n\
         Content-Transfer-Encoding: base64\n\n{blob_base64}\
         --part\nContent-Type: text/csv; charset=utf-8\n\
         Content-Disposition: attachment; filename=\"orte.csv\"\n\
         Content-Transfer-Encoding: 8bit\n\nname,stadt\nJörg,Köln €\n\
         --part\nContent-Type: text/plain; charset=utf-8\n\
         Content-Disposition: attachment; filename=\"notiz.txt\"\n\
         Content-Transfer-Encoding: quoted-printable\n\n\
         Gr=C3=BC=C3=9Fe =E2=82=AC, eine lange Zeile, =\nweich umbrochen\nzweite Zeile\n\
         --part--\n"
    );
    let message = format!("{headers}\n{mime_body}");
    postfix
        .sendmail(
            "relay@example.org",
            &["-B", "8BITMIME"],
            &[TARGET],
            message.as_bytes(),
        )
        .await;

    let payload = receiver.wait_for(1).await[0].json();
    assert_eq!(payload["subject"], "attachments via postfix");
    assert_eq!(payload["body"], "Three files.");
    let attachments = payload["attachments"].as_array().expect("attachments");
    assert_eq!(attachments.len(), 3, "{payload}");

    let (octets, described) = attachment_octets(&attachments[0]);
    assert!(octets == blob, "the binary attachment arrived altered");
    assert_eq!(
        described,
        json!({
            "filename": "blob.bin",
            "content_type": "application/octet-stream",
            "size_bytes": 60_000,
            "disposition": "attachment",
            "sha256": hex_sha256(&blob),
        })
    );

    // 8bit text: octets as written, with SMTP's CRLF line ends; the line
    // break before the boundary belongs to the boundary.
    let csv = "name,stadt\r\nJörg,Köln €".as_bytes();
    let (octets, described) = attachment_octets(&attachments[1]);
    assert_eq!(
        String::from_utf8_lossy(&octets),
        "name,stadt\r\nJörg,Köln €"
    );
    assert_eq!(
        described,
        json!({
            "filename": "orte.csv",
            "content_type": "text/csv",
            "size_bytes": csv.len(),
            "disposition": "attachment",
            "sha256": hex_sha256(csv),
        })
    );

    // Quoted-printable undone: `=` + line end is a soft break, a bare line
    // end a hard one (CRLF).
    let note = "Grüße €, eine lange Zeile, weich umbrochen\r\nzweite Zeile".as_bytes();
    let (octets, described) = attachment_octets(&attachments[2]);
    assert_eq!(
        String::from_utf8_lossy(&octets),
        String::from_utf8_lossy(note)
    );
    assert_eq!(
        described,
        json!({
            "filename": "notiz.txt",
            "content_type": "text/plain",
            "size_bytes": note.len(),
            "disposition": "attachment",
            "sha256": hex_sha256(note),
        })
    );

    // What Postfix relayed: one `Received:` header of its own (the message
    // has a Date, or Postfix would append one), ours unchanged, and the
    // MIME body exactly as submitted: no 8bit→7bit conversion, no
    // re-encoding.
    let raw = common::raw_message(&payload);
    let raw = String::from_utf8(raw).expect("the relayed message is UTF-8");
    let (relayed_headers, relayed_body) = raw.split_once("\r\n\r\n").expect("a header block");
    assert_eq!(relayed_body, crlf(&mime_body));
    let added = relayed_headers
        .strip_suffix(crlf(headers.trim_end()).as_str())
        .unwrap_or_else(|| panic!("our headers altered:\n{relayed_headers}"));
    assert!(
        added.starts_with("Received: by postfix.test (Postfix, from userid "),
        "{added}"
    );
    assert!(
        added
            .trim_end()
            .lines()
            .skip(1)
            .all(|line| line.starts_with([' ', '\t'])),
        "more than one header added:\n{added}"
    );
    let log = postfix.wait_log("status=sent", 1).await;
    let mail_from = log
        .lines()
        .find(|line| line.contains("> 127.0.0.1[127.0.0.1]") && line.contains("MAIL FROM:"))
        .unwrap_or_else(|| panic!("no MAIL FROM in the maillog:\n{log}"));
    assert!(mail_from.contains(" BODY=8BITMIME"), "{mail_from}");
    server.stop().await;
}
