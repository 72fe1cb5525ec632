//! Issue 12, the sender policy: Cedar policies decide at end of data, on
//! the envelope, the client, the DMARC result and each attachment; a
//! refusal is `550 5.7.1` and nothing reaches the webhook.

use std::path::PathBuf;

use crate::common::receiver::Receiver;
use crate::common::{self, Client, OTHER_TARGET, TARGET, TestServer};

/// A policy file in a temp folder of its own, removed on drop.
struct PolicyFile {
    dir: PathBuf,
}

impl PolicyFile {
    fn new(test: &str, text: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("mail-laser-policy-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("policy.cedar"), text).unwrap();
        Self { dir }
    }

    fn path(&self) -> String {
        self.dir.join("policy.cedar").display().to_string()
    }
}

impl Drop for PolicyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const POLICY: &str = r#"
permit(principal, action, resource);

@id("no-executables")
forbid(principal, action == Action::"Attach", resource)
  when { context.filename like "*.exe" || context.content_type == "application/x-msdownload" };

@id("ops-from-the-office-only")
forbid(principal, action == Action::"SendMail", resource)
  when { context.recipient == "ops@example.com" && !context.client_ip.isInRange(ip("10.0.0.0/8")) };

@id("no-unauthenticated-bank-mail")
forbid(principal, action, resource)
  when { context.sender_domain == "bank.test" && context.dmarc_result != "pass" };
"#;

fn with_file(name: &str, content_type: &str) -> String {
    format!(
        "From: a@partner.test\r\nSubject: file {name}\r\n\
         Content-Type: multipart/mixed; boundary=b\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
         --b\r\nContent-Type: {content_type}\r\nContent-Disposition: attachment; filename=\"{name}\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--b--\r\n"
    )
}

/// Attachments and recipients by the rules' names: an executable is
/// refused, a PDF delivered; `ops@` only from 10/8 (the test connects from
/// 127.0.0.1), `alerts@` from anywhere. The session goes on after a refusal.
#[tokio::test]
async fn a_policy_refuses_by_attachment_and_by_client_ip() {
    let file = PolicyFile::new("rules", POLICY);
    let receiver = Receiver::start().await;
    let (server, _) = TestServer::start_webhook(
        &receiver.url(),
        &["--cedar-policies", &file.path()],
        common::observability(),
    )
    .await;
    let refused = "550 5.7.1 Delivery not authorized, message refused";
    let mut client = Client::greeted(server.smtp).await;
    let reply = client
        .send_mail(
            "a@partner.test",
            &[TARGET],
            &with_file("setup.exe", "application/octet-stream"),
        )
        .await;
    assert_eq!(reply.last(), refused);
    let reply = client
        .send_mail(
            "a@partner.test",
            &[OTHER_TARGET],
            &with_file("report.pdf", "application/pdf"),
        )
        .await;
    assert_eq!(reply.last(), refused, "ops@ is for 10/8 only");
    let reply = client
        .send_mail(
            "a@partner.test",
            &[TARGET],
            &with_file("report.pdf", "application/pdf"),
        )
        .await;
    assert_eq!(reply.code, 250, "{}", reply.last());
    let requests = receiver.wait_for(1).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].json()["subject"], "file report.pdf");
    server.stop().await;
}

/// The DMARC result reaches the policy: with monitor mode and a DNS server
/// that never answers, mail from `bank.test` is `temperror`, which the
/// policy refuses; other senders are delivered with the same result.
#[tokio::test]
async fn a_policy_sees_the_dmarc_result() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dns = silent.local_addr().unwrap().to_string();
    let file = PolicyFile::new("dmarc", POLICY);
    let receiver = Receiver::start().await;
    let (server, _) = TestServer::start_webhook(
        &receiver.url(),
        &[
            "--cedar-policies",
            &file.path(),
            "--dmarc-mode",
            "monitor",
            "--dmarc-dns-servers",
            &dns,
            "--dmarc-dns-timeout",
            "1",
        ],
        common::observability(),
    )
    .await;
    let message = |from: &str| format!("From: {from}\r\nSubject: from {from}\r\n\r\nhello\r\n");
    let mut client = Client::greeted(server.smtp).await;
    let reply = client
        .send_mail("ceo@bank.test", &[TARGET], &message("ceo@bank.test"))
        .await;
    assert_eq!(
        reply.last(),
        "550 5.7.1 Delivery not authorized, message refused"
    );
    let reply = client
        .send_mail("a@partner.test", &[TARGET], &message("a@partner.test"))
        .await;
    assert_eq!(reply.code, 250, "{}", reply.last());
    let payload = receiver.wait_for(1).await[0].json();
    assert_eq!(payload["subject"], "from a@partner.test");
    assert_eq!(payload["dmarc_result"], "temperror");
    server.stop().await;
}

/// A policy that does not validate stops the start with one line naming
/// the file, the line and the reason.
#[test]
fn a_policy_that_does_not_validate_stops_the_start() {
    let file = PolicyFile::new(
        "invalid",
        "permit(principal, action, resource);\nforbid(principal, action, resource) when { context.spam_score > 5 };\n",
    );
    let path = file.path();
    let error = mail_laser::config::Config::from_args([
        "mail-laser",
        "--target-emails",
        TARGET,
        "--webhook-url",
        "-",
        "--cedar-policies",
        &path,
    ])
    .unwrap_err()
    .to_string();
    assert!(
        error.starts_with(&format!("MAIL_LASER_CEDAR_POLICIES: {path}: line 2:")),
        "{error}"
    );
    assert!(!error.contains('\n'), "{error}");
}

/// `docs/policy.md` shows the schema MailLaser validates against, and
/// every example policy in it validates.
#[test]
fn the_documented_schema_and_examples_are_the_real_ones() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/policy.md");
    let text = std::fs::read_to_string(path).unwrap();
    let blocks: Vec<(&str, &str)> = text
        .split("```")
        .skip(1)
        .step_by(2)
        .map(|block| block.split_once('\n').unwrap_or((block, "")))
        .collect();
    let schemas: Vec<_> = blocks
        .iter()
        .filter(|(kind, _)| *kind == "cedarschema")
        .collect();
    assert_eq!(schemas.len(), 1);
    assert_eq!(schemas[0].1, mail_laser::policy::SCHEMA);
    let examples: Vec<_> = blocks.iter().filter(|(kind, _)| *kind == "cedar").collect();
    assert!(examples.len() >= 3);
    for (_, example) in examples {
        if let Err(error) = mail_laser::policy::SenderPolicy::from_text(example) {
            panic!("{error}:\n{example}");
        }
    }
}
