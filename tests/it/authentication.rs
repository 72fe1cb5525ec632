//! Issue 12: SPF, DKIM, DMARC and ARC end to end. A real DNS server
//! (dnsmasq, [`Dnsmasq`]) on loopback publishes the SPF records, DKIM keys
//! and DMARC policies; messages are signed and sealed in the test with
//! mail-auth's own DKIM signer and ARC sealer (Ed25519 keys made here); a
//! raw SMTP client sends them from 127.0.0.1; a real webhook receiver gets
//! the payloads.
//!
//! The domains (all under `.test`, which dnsmasq answers alone):
//! `sender.test` signs with selector `sel` and publishes `p=reject`;
//! `bank.test` publishes `p=reject` and lets only 192.0.2.1 send;
//! `evil.test` lets 127.0.0.1 send but has no DMARC record; `nodmarc.test`
//! likewise; `forwarder.test` seals ARC with selector `arc`.

use std::net::SocketAddr;

use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner};
use mail_auth::{ArcOutput, AuthenticatedMessage, AuthenticationResults, DkimOutput};
use serde_json::{Value, json};

use crate::common::dnsmasq::Dnsmasq;
use crate::common::receiver::Receiver;
use crate::common::{Client, Reply, TARGET, TestServer, http_get, observability};

const HELO: &str = "mx.sender.test";
const AUTHSERV_ID: &str = "mx.maillaser.test";
const SIGNED_HEADERS: [&str; 5] = ["From", "To", "Subject", "Date", "Message-ID"];

/// The keys of one test, made for it.
struct Keys {
    /// `sel._domainkey.sender.test`.
    sender: Vec<u8>,
    /// Published as `other._domainkey.sender.test`, never used to sign.
    other: Vec<u8>,
    /// `arc._domainkey.forwarder.test`.
    forwarder: Vec<u8>,
}

impl Keys {
    fn new() -> Self {
        let key = || Ed25519Key::generate_pkcs8().expect("an Ed25519 key");
        Self {
            sender: key(),
            other: key(),
            forwarder: key(),
        }
    }

    /// The DNS records the tests rely on (see the module's header).
    fn records(&self) -> Vec<(String, String)> {
        let spf_here = "v=spf1 ip4:127.0.0.1 -all";
        [
            ("sender.test", spf_here.to_owned()),
            (HELO, spf_here.to_owned()),
            ("_dmarc.sender.test", "v=DMARC1; p=reject".to_owned()),
            ("sel._domainkey.sender.test", dkim_record(&self.sender)),
            ("other._domainkey.sender.test", dkim_record(&self.other)),
            ("bank.test", "v=spf1 ip4:192.0.2.1 -all".to_owned()),
            ("_dmarc.bank.test", "v=DMARC1; p=reject".to_owned()),
            ("evil.test", spf_here.to_owned()),
            ("nodmarc.test", spf_here.to_owned()),
            ("forwarder.test", spf_here.to_owned()),
            (
                "arc._domainkey.forwarder.test",
                dkim_record(&self.forwarder),
            ),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
    }
}

/// `v=DKIM1; k=ed25519; p=…` (RFC 8463): the raw public key, base64.
fn dkim_record(pkcs8: &[u8]) -> String {
    let key = Ed25519Key::from_pkcs8_der(pkcs8).expect("the key parses");
    format!(
        "v=DKIM1; k=ed25519; p={}",
        data_encoding::BASE64.encode(&key.public_key())
    )
}

/// A message from `from` with CRLF line ends, ending in CRLF.
fn message(from: &str, subject: &str, body: &str) -> String {
    format!(
        "From: {from}\r\nTo: {TARGET}\r\nSubject: {subject}\r\n\
         Date: Sat, 05 Dec 2026 10:00:00 +0000\r\n\
         Message-ID: <{}@sender.test>\r\n\r\n{body}\r\n",
        subject.replace(' ', "-")
    )
}

/// `message` with a `DKIM-Signature` of `domain`/`selector` made by `key`.
fn sign(
    key: &[u8],
    (domain, selector): (&str, &str),
    (header, body): (Canonicalization, Canonicalization),
    message: &str,
) -> String {
    let signature = DkimSigner::from_key(Ed25519Key::from_pkcs8_der(key).unwrap())
        .domain(domain)
        .selector(selector)
        .headers(SIGNED_HEADERS)
        .header_canonicalization(header)
        .body_canonicalization(body)
        .sign(message.as_bytes())
        .expect("the message is signed");
    format!("{}{message}", signature.to_header())
}

const RELAXED: (Canonicalization, Canonicalization) =
    (Canonicalization::Relaxed, Canonicalization::Relaxed);
const SIMPLE: (Canonicalization, Canonicalization) =
    (Canonicalization::Simple, Canonicalization::Simple);

/// A MailLaser posting to a fresh receiver, asking `dns` in `mode`.
async fn start(dns: SocketAddr, mode: &str, extra: &[&str]) -> (TestServer, Receiver) {
    let receiver = Receiver::start().await;
    let dns = dns.to_string();
    let mut flags = vec![
        "--hostname",
        AUTHSERV_ID,
        "--dmarc-mode",
        mode,
        "--dmarc-dns-servers",
        &dns,
    ];
    flags.extend_from_slice(extra);
    let (server, _) = TestServer::start_webhook(&receiver.url(), &flags, observability()).await;
    (server, receiver)
}

/// One transaction from 127.0.0.1 with `EHLO mx.sender.test`; `message`
/// ends in CRLF and holds no line starting with a dot. The end-of-data reply.
async fn send(server: &TestServer, mail_from: &str, message: &str) -> Reply {
    assert!(message.ends_with("\r\n") && !message.contains("\n."));
    let mut client = Client::greeted(server.smtp).await;
    assert_eq!(client.command(&format!("EHLO {HELO}")).await.code, 250);
    client
        .expect(&format!("MAIL FROM:<{mail_from}>"), "250 2.1.0 OK")
        .await;
    client
        .expect(&format!("RCPT TO:<{TARGET}>"), "250 2.1.5 OK")
        .await;
    assert_eq!(client.command("DATA").await.code, 354);
    client.send(message).await;
    client.send(".\r\n").await;
    let reply = client.reply().await;
    client.expect("QUIT", "221 2.0.0 Bye").await;
    reply
}

/// Sends and expects `250`; the payload the receiver got for it.
async fn delivered(
    server: &TestServer,
    receiver: &Receiver,
    mail_from: &str,
    message: &str,
) -> Value {
    let before = receiver.requests().len();
    let reply = send(server, mail_from, message).await;
    assert_eq!(reply.last(), "250 2.0.0 OK: Message accepted for delivery");
    receiver.wait_for(before + 1).await[before].json()
}

/// `auth.authentication_results`, after checking it names MailLaser.
fn authentication_results(payload: &Value) -> String {
    let value = payload["auth"]["authentication_results"]
        .as_str()
        .expect("auth.authentication_results")
        .to_owned();
    assert!(value.starts_with(&format!("{AUTHSERV_ID}; ")), "{value}");
    assert!(!value.contains(['\r', '\n', '\t']), "{value}");
    value
}

#[tokio::test]
async fn spf_and_dkim_aligned_pass() {
    let [dnsmasq] = require_tool!("dnsmasq");
    let keys = Keys::new();
    let dns = Dnsmasq::start(&dnsmasq, &keys.records()).await;
    let (server, receiver) = start(dns.addr, "monitor", &[]).await;

    let signed = sign(
        &keys.sender,
        ("sender.test", "sel"),
        RELAXED,
        &message(
            "Bob <bob@sender.test>",
            "quarterly report",
            "Figures attached.",
        ),
    );
    let payload = delivered(&server, &receiver, "bob@sender.test", &signed).await;
    assert_eq!(payload["dmarc_result"], "pass");
    assert_eq!(payload["authenticated_from"], "sender.test");
    let mut auth = payload["auth"].clone();
    auth.as_object_mut()
        .unwrap()
        .remove("authentication_results");
    assert_eq!(
        auth,
        json!({
            "spf": {
                "mail_from": {"result": "pass", "domain": "sender.test"},
                "helo": {"result": "pass", "domain": HELO},
            },
            "dkim": [{"domain": "sender.test", "selector": "sel", "result": "pass"}],
            "dmarc": {
                "result": "pass",
                "policy": "reject",
                "from_domain": "sender.test",
                "spf_aligned": true,
                "dkim_aligned": true,
            },
            "arc": {"result": "none"},
        })
    );
    let header = authentication_results(&payload);
    for part in [
        "spf=pass",
        "smtp.mailfrom=bob@sender.test",
        &format!("smtp.helo={HELO}"),
        "dkim=pass header.d=sender.test header.s=sel",
        "arc=none",
        "dmarc=pass header.from=sender.test policy.dmarc=reject",
    ] {
        assert!(header.contains(part), "{part} not in {header}");
    }
    let (_, metrics) = http_get(server.http, "/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|line| line == "maillaser_auth_results_total{dmarc=\"pass\"} 1"),
        "{metrics}"
    );
    server.stop().await;
}

/// A forged `From: ceo@bank.test` sent from a host bank.test does not
/// allow, with no signature: DMARC fails under `p=reject`.
#[tokio::test]
async fn spoofed_from_is_refused_in_enforce_and_reported_in_monitor() {
    let [dnsmasq] = require_tool!("dnsmasq");
    let keys = Keys::new();
    let dns = Dnsmasq::start(&dnsmasq, &keys.records()).await;
    let forged = message(
        "CEO <ceo@bank.test>",
        "wire transfer",
        "Pay invoice 42 today.",
    );

    let (enforcing, receiver) = start(dns.addr, "enforce", &[]).await;
    let reply = send(&enforcing, "mallory@evil.test", &forged).await;
    assert_eq!(
        reply.last(),
        "550 5.7.1 Message rejected by the DMARC policy of the From domain"
    );
    assert!(
        receiver.requests().is_empty(),
        "nothing reaches the webhook"
    );
    // MAIL FROM bank.test itself fails SPF: refused too.
    let reply = send(&enforcing, "ceo@bank.test", &forged).await;
    assert_eq!(reply.code, 550);
    assert!(receiver.requests().is_empty());
    enforcing.stop().await;

    let (monitoring, receiver) = start(dns.addr, "monitor", &[]).await;
    let payload = delivered(&monitoring, &receiver, "mallory@evil.test", &forged).await;
    assert_eq!(payload["dmarc_result"], "fail");
    assert!(payload.get("authenticated_from").is_none());
    assert_eq!(
        payload["auth"]["dmarc"],
        json!({
            "result": "fail",
            "policy": "reject",
            "from_domain": "bank.test",
            "spf_aligned": false,
            "dkim_aligned": false,
        })
    );
    assert_eq!(
        payload["auth"]["spf"]["mail_from"],
        json!({"result": "pass", "domain": "evil.test"})
    );
    assert_eq!(payload["auth"]["dkim"], json!([]));
    assert!(authentication_results(&payload).contains("dmarc=fail"));
    monitoring.stop().await;
}

/// A signed message changed in transit, relayed by a host whose MAIL FROM
/// is not aligned: only DKIM could pass DMARC, and it fails.
#[tokio::test]
async fn broken_body_hash_fails() {
    let [dnsmasq] = require_tool!("dnsmasq");
    let keys = Keys::new();
    let dns = Dnsmasq::start(&dnsmasq, &keys.records()).await;
    let signed = sign(
        &keys.sender,
        ("sender.test", "sel"),
        RELAXED,
        &message("Bob <bob@sender.test>", "refund", "Refund 10 EUR."),
    );
    let tampered = signed.replace("Refund 10 EUR.", "Refund 10000 EUR.");
    assert_ne!(signed, tampered);

    let (server, receiver) = start(dns.addr, "monitor", &[]).await;
    let payload = delivered(&server, &receiver, "relay@evil.test", &tampered).await;
    assert_eq!(
        payload["auth"]["dkim"],
        json!([{"domain": "sender.test", "selector": "sel", "result": "fail"}])
    );
    assert_eq!(payload["dmarc_result"], "fail");
    assert_eq!(payload["auth"]["dmarc"]["dkim_aligned"], false);
    let header = authentication_results(&payload);
    assert!(
        header.contains("dkim=fail (body hash did not verify)"),
        "{header}"
    );
    // The untouched message passes through the same relay.
    let payload = delivered(&server, &receiver, "relay@evil.test", &signed).await;
    assert_eq!(payload["dmarc_result"], "pass");
    assert_eq!(payload["auth"]["dmarc"]["spf_aligned"], false);
    assert_eq!(payload["auth"]["dmarc"]["dkim_aligned"], true);
    server.stop().await;

    let (enforcing, receiver) = start(dns.addr, "enforce", &[]).await;
    assert_eq!(
        send(&enforcing, "relay@evil.test", &tampered).await.code,
        550
    );
    assert!(receiver.requests().is_empty());
    enforcing.stop().await;
}

/// Signed with a key other than the one the selector publishes.
#[tokio::test]
async fn wrong_key_fails() {
    let [dnsmasq] = require_tool!("dnsmasq");
    let keys = Keys::new();
    let dns = Dnsmasq::start(&dnsmasq, &keys.records()).await;
    let signed = sign(
        &keys.sender,
        ("sender.test", "other"),
        RELAXED,
        &message("Bob <bob@sender.test>", "new bank details", "Use IBAN X."),
    );
    let (server, receiver) = start(dns.addr, "monitor", &[]).await;
    let payload = delivered(&server, &receiver, "relay@evil.test", &signed).await;
    assert_eq!(
        payload["auth"]["dkim"],
        json!([{"domain": "sender.test", "selector": "other", "result": "fail"}])
    );
    assert_eq!(payload["dmarc_result"], "fail");
    assert!(authentication_results(&payload).contains("dkim=fail (verification failed)"));
    server.stop().await;
}

/// `none` is delivered even in enforce mode: a From domain without a DMARC
/// record, and a `From:` naming two domains, which RFC 9989 exempts from
/// DMARC (`docs/authentication.md`) though bank.test publishes `p=reject`.
/// Neither gets `authenticated_from`.
#[tokio::test]
async fn dmarc_none_is_delivered_in_enforce() {
    let [dnsmasq] = require_tool!("dnsmasq");
    let keys = Keys::new();
    let dns = Dnsmasq::start(&dnsmasq, &keys.records()).await;
    let (server, receiver) = start(dns.addr, "enforce", &[]).await;
    let payload = delivered(
        &server,
        &receiver,
        "news@nodmarc.test",
        &message("News <news@nodmarc.test>", "weekly", "Hello."),
    )
    .await;
    assert_eq!(payload["dmarc_result"], "none");
    assert!(payload.get("authenticated_from").is_none());
    assert_eq!(
        payload["auth"]["dmarc"],
        json!({
            "result": "none",
            "from_domain": "nodmarc.test",
            "spf_aligned": false,
            "dkim_aligned": false,
        })
    );
    assert_eq!(payload["auth"]["spf"]["mail_from"]["result"], "pass");

    let payload = delivered(
        &server,
        &receiver,
        "mallory@evil.test",
        &message("ceo@bank.test, mallory@evil.test", "two authors", "Hi."),
    )
    .await;
    assert_eq!(payload["dmarc_result"], "none");
    assert!(payload.get("authenticated_from").is_none());
    assert_eq!(payload["auth"]["dmarc"]["result"], "none");
    assert!(payload["auth"]["dmarc"].get("policy").is_none());
    server.stop().await;
}

/// A "DNS server" that never answers: a UDP socket the test binds and
/// never reads from in time. Every lookup runs into the one deadline.
#[tokio::test]
async fn dns_that_never_answers_is_temperror() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dns = silent.local_addr().unwrap();
    let forged = message("CEO <ceo@bank.test>", "urgent", "Call me.");
    let timeout = ["--dmarc-dns-timeout", "1"];

    let (server, receiver) = start(dns, "enforce", &timeout).await;
    let reply = send(&server, "ceo@bank.test", &forged).await;
    assert_eq!(
        reply.last(),
        "451 4.7.0 Temporary DMARC evaluation failure, try again later"
    );
    assert!(
        receiver.requests().is_empty(),
        "nothing reaches the webhook"
    );
    server.stop().await;
    silent.set_nonblocking(true).unwrap();
    let mut query = [0u8; 512];
    assert!(silent.recv(&mut query).is_ok(), "the server was asked");

    let accept = [
        "--dmarc-dns-timeout",
        "1",
        "--dmarc-temperror-action",
        "accept",
    ];
    let (server, receiver) = start(dns, "enforce", &accept).await;
    let payload = delivered(&server, &receiver, "ceo@bank.test", &forged).await;
    assert_eq!(payload["dmarc_result"], "temperror");
    assert_eq!(payload["auth"]["spf"]["mail_from"]["result"], "temperror");
    assert!(authentication_results(&payload).contains("dmarc=temperror"));
    server.stop().await;

    // Monitor never refuses, whatever the action.
    let (server, receiver) = start(dns, "monitor", &timeout).await;
    let payload = delivered(&server, &receiver, "ceo@bank.test", &forged).await;
    assert_eq!(payload["dmarc_result"], "temperror");
    server.stop().await;
}

/// RFC 6376 §3.4: relaxed canonicalisation survives whitespace changes in
/// transit, simple survives none.
#[tokio::test]
async fn relaxed_and_simple_canonicalisation() {
    let [dnsmasq] = require_tool!("dnsmasq");
    let keys = Keys::new();
    let dns = Dnsmasq::start(&dnsmasq, &keys.records()).await;
    let (server, receiver) = start(dns.addr, "monitor", &[]).await;
    let original = message("Bob <bob@sender.test>", "canon", "Hello world.\r\nBye.");
    // What a relay may do: re-space a header and a body line.
    let respaced = |signed: &str| {
        signed
            .replace("Subject: canon", "Subject:   canon  ")
            .replace("Hello world.", "Hello   world.  ")
    };
    let header_only = |signed: &str| signed.replace("Subject: canon", "Subject:   canon  ");
    let relaxed_simple = (Canonicalization::Relaxed, Canonicalization::Simple);
    let cases = [
        (
            "relaxed/relaxed, re-spaced",
            respaced(&sign(
                &keys.sender,
                ("sender.test", "sel"),
                RELAXED,
                &original,
            )),
            "pass",
        ),
        (
            "simple/simple, untouched",
            sign(&keys.sender, ("sender.test", "sel"), SIMPLE, &original),
            "pass",
        ),
        (
            "simple/simple, re-spaced",
            respaced(&sign(
                &keys.sender,
                ("sender.test", "sel"),
                SIMPLE,
                &original,
            )),
            "fail",
        ),
        (
            "relaxed/simple, header re-spaced",
            header_only(&sign(
                &keys.sender,
                ("sender.test", "sel"),
                relaxed_simple,
                &original,
            )),
            "pass",
        ),
        (
            "relaxed/simple, body re-spaced",
            respaced(&sign(
                &keys.sender,
                ("sender.test", "sel"),
                relaxed_simple,
                &original,
            )),
            "fail",
        ),
    ];
    for (case, message, expected) in cases {
        let payload = delivered(&server, &receiver, "relay@evil.test", &message).await;
        assert_eq!(
            payload["auth"]["dkim"][0]["result"], expected,
            "{case}: {}",
            payload["auth"]
        );
        let dmarc = if expected == "pass" { "pass" } else { "fail" };
        assert_eq!(payload["dmarc_result"], dmarc, "{case}");
    }
    server.stop().await;
}

/// A mailing list changes a signed message (breaking its DKIM signature)
/// and seals it with ARC (RFC 8617) before forwarding it.
#[tokio::test]
async fn arc_sealed_forwarded_message() {
    let [dnsmasq] = require_tool!("dnsmasq");
    let keys = Keys::new();
    let dns = Dnsmasq::start(&dnsmasq, &keys.records()).await;
    let signed = sign(
        &keys.sender,
        ("sender.test", "sel"),
        RELAXED,
        &message("Bob <bob@sender.test>", "list post", "Meeting at noon."),
    );
    // The list adds its footer, then seals what it sends.
    let forwarded = signed.replace(
        "Meeting at noon.\r\n",
        "Meeting at noon.\r\n--\r\nlist@forwarder.test\r\n",
    );
    let parsed = AuthenticatedMessage::parse(forwarded.as_bytes()).unwrap();
    let seen_by_list = AuthenticationResults::new("forwarder.test")
        .with_dkim_result(&DkimOutput::pass(), "bob@sender.test");
    let seal =
        mail_auth::arc::ArcSealer::from_key(Ed25519Key::from_pkcs8_der(&keys.forwarder).unwrap())
            .domain("forwarder.test")
            .selector("arc")
            .headers(["From", "To", "Subject", "DKIM-Signature"])
            .seal(&parsed, &seen_by_list, &ArcOutput::default())
            .expect("the list seals the message");
    let sealed = format!("{}{forwarded}", seal.to_header());

    let (server, receiver) = start(dns.addr, "monitor", &[]).await;
    let payload = delivered(&server, &receiver, "list@forwarder.test", &sealed).await;
    let auth = &payload["auth"];
    assert_eq!(auth["arc"], json!({"result": "pass"}));
    assert_eq!(auth["dkim"][0]["result"], "fail", "the footer broke DKIM");
    assert_eq!(
        auth["spf"]["mail_from"],
        json!({"result": "pass", "domain": "forwarder.test"})
    );
    assert_eq!(payload["dmarc_result"], "fail");
    assert!(authentication_results(&payload).contains("arc=pass"));

    // The same chain with its sealed body changed afterwards fails.
    let broken = sealed.replace("Meeting at noon.", "Meeting at one.");
    let payload = delivered(&server, &receiver, "list@forwarder.test", &broken).await;
    assert_ne!(payload["auth"]["arc"]["result"], "pass");
    server.stop().await;
}

/// Mode `off`: no resolver, no query. The DNS server is a UDP socket and a
/// TCP listener on one port that must receive nothing.
#[tokio::test]
async fn off_sends_no_dns_query() {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dns = udp.local_addr().unwrap();
    let tcp = std::net::TcpListener::bind(dns).unwrap();
    udp.set_nonblocking(true).unwrap();
    tcp.set_nonblocking(true).unwrap();

    let (server, receiver) = start(dns, "off", &[]).await;
    let payload = delivered(
        &server,
        &receiver,
        "ceo@bank.test",
        &message("CEO <ceo@bank.test>", "off", "No checks."),
    )
    .await;
    for field in ["dmarc_result", "authenticated_from", "auth"] {
        assert!(payload.get(field).is_none(), "{field} in {payload}");
    }
    server.stop().await;
    let mut datagram = [0u8; 512];
    let received = udp.recv(&mut datagram);
    assert_eq!(
        received.map_err(|error| error.kind()),
        Err(std::io::ErrorKind::WouldBlock),
        "a DNS query was sent over UDP"
    );
    assert_eq!(
        tcp.accept().map(|_| ()).map_err(|error| error.kind()),
        Err(std::io::ErrorKind::WouldBlock),
        "a DNS connection was made over TCP"
    );
}

/// A message with 1,000 DKIM signatures (each with its own selector) makes
/// at most 10 key lookups and reports 10 results.
#[tokio::test]
async fn a_thousand_signatures_cost_ten_lookups() {
    let [dnsmasq] = require_tool!("dnsmasq");
    let keys = Keys::new();
    let dns = Dnsmasq::start(&dnsmasq, &keys.records()).await;
    let original = message("Bob <bob@sender.test>", "many", "Signed a lot.");
    let signed = sign(&keys.sender, ("sender.test", "sel"), RELAXED, &original);
    let header = &signed[..signed.len() - original.len()];
    assert!(header.contains("s=sel;"), "{header}");
    let many: String = (0..1000)
        .map(|n| header.replace("s=sel;", &format!("s=s{n};")))
        .collect();
    let (server, receiver) = start(dns.addr, "monitor", &[]).await;
    let payload = delivered(
        &server,
        &receiver,
        "bob@sender.test",
        &format!("{many}{original}"),
    )
    .await;
    let dkim = payload["auth"]["dkim"].as_array().unwrap();
    assert_eq!(dkim.len(), 10, "{dkim:?}");
    assert_eq!(dkim[0]["selector"], "s0");
    assert!(
        dkim.iter()
            .all(|signature| signature["result"] == "permerror")
    );
    // SPF still passes and aligns.
    assert_eq!(payload["dmarc_result"], "pass");
    let lookups = dns.queries_for("._domainkey.sender.test");
    assert!(lookups <= 10, "{lookups} key lookups");
    server.stop().await;
}

/// The payloads in `docs/authentication.md` are valid payloads: the first
/// is complete, the others are shown as what they change in it.
#[test]
fn the_documented_payloads_validate() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/authentication.md");
    let text = std::fs::read_to_string(path).unwrap();
    let blocks: Vec<Value> = text
        .split("```json\n")
        .skip(1)
        .map(|block| {
            let json = block.split("```").next().unwrap_or_default();
            serde_json::from_str(json).unwrap_or_else(|error| panic!("{error}: {json}"))
        })
        .collect();
    assert!(blocks.len() >= 2, "found {} examples", blocks.len());
    let complete = &blocks[0];
    crate::common::schema::assert_valid(complete);
    for changes in &blocks[1..] {
        let mut changed = complete.clone();
        for (field, value) in changes.as_object().unwrap() {
            changed[field] = value.clone();
        }
        if changes.get("authenticated_from").is_none() {
            changed
                .as_object_mut()
                .unwrap()
                .remove("authenticated_from");
        }
        crate::common::schema::assert_valid(&changed);
    }
}
