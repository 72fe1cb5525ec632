//! The signature verifiers of `docs/webhook.md` (`examples/verify/`), in
//! Python, Node.js and Java, run against a real request: MailLaser signs
//! it both ways (a route's two Standard Webhooks secrets and
//! `MAIL_LASER_WEBHOOK_SIGNING_SECRET`), the real receiver records it, and
//! each example must accept it as received and refuse it with one body byte
//! changed, with a wrong secret, and correctly signed but stale. The code the
//! docs show is checked to be the files' code.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use mail_laser::webhook::{SigningSecret, StandardSecret, signature, standard_signature};
use tokio::process::Command;

use crate::common::receiver::Recorded;
use crate::routes::{SECRET_A, SECRET_B, capture_signed};

/// A well-formed secret MailLaser does not sign with (the route's two,
/// `SECRET_A` and `SECRET_B`, are a rotation).
const SECRET_OTHER: &str = "whsec_b3RoZXItc2VjcmV0LW5vdC11c2VkLWJ5LW1haWxsYXNlcg==";
/// `MAIL_LASER_WEBHOOK_SIGNING_SECRET`.
const LEGACY: &str = "legacy-shared-secret";

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/verify");

/// How to run one language's example: the program and its first arguments.
struct Example {
    program: PathBuf,
    script: &'static str,
}

impl Example {
    /// Runs `<example> <scheme> <headers> <body>` with `secret` in
    /// `WEBHOOK_SECRET`: `true` for exit status 0 (`valid`), `false` for 1
    /// (`invalid`); anything else fails the test.
    async fn accepts(&self, scheme: &str, secret: &str, request: &Request) -> bool {
        let output = Command::new(&self.program)
            .arg(Path::new(EXAMPLES).join(self.script))
            .arg(scheme)
            .arg(&request.headers)
            .arg(&request.body)
            .env("WEBHOOK_SECRET", secret)
            .output()
            .await
            .expect("the example runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        match output.status.code() {
            Some(0) if stdout.trim() == "valid" => true,
            Some(1) if stdout.trim() == "invalid" => false,
            _ => panic!("{}: {output:?}", self.script),
        }
    }
}

/// One request written for the examples: `Name: value` lines and the raw body.
struct Request {
    headers: PathBuf,
    body: PathBuf,
}

impl Request {
    fn write(dir: &Path, name: &str, headers: &[(String, String)], body: &[u8]) -> Self {
        let text: String = headers
            .iter()
            .map(|(name, value)| format!("{name}: {value}\n"))
            .collect();
        let request = Self {
            headers: dir.join(format!("{name}.headers")),
            body: dir.join(format!("{name}.body")),
        };
        std::fs::write(&request.headers, text).unwrap();
        std::fs::write(&request.body, body).unwrap();
        request
    }
}

/// A request signed both ways by a real MailLaser, as the receiver got it.
async fn capture(test: &str) -> (PathBuf, Recorded) {
    capture_signed(test, LEGACY).await
}

/// Every header of `request` with the signature ones replaced.
fn headers_with(request: &Recorded, replaced: &[(&str, String)]) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .filter(|(name, _)| !replaced.iter().any(|(r, _)| name.as_str() == *r))
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
        .collect();
    headers.extend(replaced.iter().map(|(n, v)| ((*n).to_owned(), v.clone())));
    headers
}

/// The request's body signed again, both ways, as if at `timestamp`.
fn signed_at(request: &Recorded, timestamp: u64) -> Vec<(String, String)> {
    let secrets = [SECRET_A, SECRET_B].map(|s| StandardSecret::parse(s).unwrap());
    let id = request.header("webhook-id");
    headers_with(
        request,
        &[
            ("x-maillaser-timestamp", timestamp.to_string()),
            (
                "x-maillaser-signature-256",
                signature(&SigningSecret::new(LEGACY), timestamp, &request.body),
            ),
            ("webhook-timestamp", timestamp.to_string()),
            (
                "webhook-signature",
                standard_signature(&secrets, &id, timestamp, &request.body),
            ),
        ],
    )
}

async fn check(example: Example, test: &str) {
    let (dir, request) = capture(test).await;
    assert_eq!(
        request.header("webhook-signature").split(' ').count(),
        2,
        "one signature per secret"
    );
    let as_received = headers_with(&request, &[]);
    let genuine = Request::write(&dir, "genuine", &as_received, &request.body);
    let mut changed = request.body.to_vec();
    let middle = changed.len() / 2;
    changed[middle] ^= 0x01;
    let tampered = Request::write(&dir, "tampered", &as_received, &changed);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Signed again now (the control) and ten minutes ago (a replay).
    let resigned = Request::write(&dir, "resigned", &signed_at(&request, now), &request.body);
    let stale = Request::write(
        &dir,
        "stale",
        &signed_at(&request, now - 600),
        &request.body,
    );

    let script = example.script;
    for (scheme, secret, request, expected, case) in [
        ("maillaser", LEGACY, &genuine, true, "genuine"),
        (
            "standard",
            SECRET_A,
            &genuine,
            true,
            "genuine, first secret",
        ),
        (
            "standard",
            SECRET_B,
            &genuine,
            true,
            "genuine, second secret",
        ),
        (
            "maillaser",
            LEGACY,
            &tampered,
            false,
            "one body byte changed",
        ),
        (
            "standard",
            SECRET_A,
            &tampered,
            false,
            "one body byte changed",
        ),
        ("maillaser", "wrong-secret", &genuine, false, "wrong secret"),
        ("standard", SECRET_OTHER, &genuine, false, "wrong secret"),
        ("maillaser", LEGACY, &resigned, true, "signed again now"),
        ("standard", SECRET_B, &resigned, true, "signed again now"),
        ("maillaser", LEGACY, &stale, false, "stale timestamp"),
        ("standard", SECRET_A, &stale, false, "stale timestamp"),
    ] {
        assert_eq!(
            example.accepts(scheme, secret, request).await,
            expected,
            "{script}: {scheme}: {case}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn python_example_verifies_both_schemes() {
    let [python3] = require_tool!("python3");
    let example = Example {
        program: python3,
        script: "python/verify.py",
    };
    check(example, "verify-python").await;
}

#[tokio::test]
async fn node_example_verifies_both_schemes() {
    let [node] = require_tool!("node");
    let example = Example {
        program: node,
        script: "node/verify.js",
    };
    check(example, "verify-node").await;
}

#[tokio::test]
async fn java_example_verifies_both_schemes() {
    let [java] = require_tool!("java");
    let example = Example {
        program: java,
        script: "java/Verify.java",
    };
    check(example, "verify-java").await;
}

/// Each code block of `docs/webhook.md` under a line `From
/// [examples/verify/…](…)` is, line for line, a part of that file; and
/// each example is shown.
#[test]
fn the_docs_show_the_examples_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = std::fs::read_to_string(root.join("docs/webhook.md")).unwrap();
    let mut shown = Vec::new();
    let mut lines = docs.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.strip_prefix("From [") else {
            continue;
        };
        let file = rest.split(']').next().unwrap();
        assert!(
            lines.next().is_some_and(str::is_empty),
            "a blank line after {line:?}"
        );
        let fence = lines.next().unwrap_or_default();
        assert!(fence.starts_with("```"), "a code block after {line:?}");
        let block: String = lines
            .by_ref()
            .take_while(|line| *line != "```")
            .map(|line| format!("{line}\n"))
            .collect();
        let code = std::fs::read_to_string(root.join(file))
            .unwrap_or_else(|error| panic!("{file}: {error}"));
        assert!(
            code.starts_with(&block) || code.contains(&format!("\n{block}")),
            "docs/webhook.md shows code that is not in {file}:\n{block}"
        );
        shown.push(file.to_owned());
    }
    for file in [
        "examples/verify/python/verify.py",
        "examples/verify/node/verify.js",
        "examples/verify/java/Verify.java",
    ] {
        assert!(
            shown.iter().any(|shown| shown == file),
            "docs/webhook.md does not show {file}"
        );
    }
}
