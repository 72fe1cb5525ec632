//! A private dnsmasq — a real DNS server, Debian's `dnsmasq-base` — serving
//! the TXT records a test gives it (SPF, DKIM keys, DMARC policies) for the
//! `.test` top-level domain on a loopback port, killed on drop. It answers
//! NXDOMAIN for every other name under `.test` and asks no upstream server.
//!
//! Find the program with `let [dnsmasq] = require_tool!("dnsmasq");`
//! (`scripts/test` installs it).

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::DEADLINE;

/// A TXT character-string holds at most 255 octets (RFC 1035 §3.3).
const TXT_STRING: usize = 255;

/// A running dnsmasq.
pub struct Dnsmasq {
    child: Child,
    pub addr: SocketAddr,
    /// Its log: one line per query (`--log-queries`).
    log: Arc<Mutex<Vec<String>>>,
}

impl Dnsmasq {
    /// Starts `binary` serving `records` (name, TXT value; a value longer
    /// than 255 octets is split into several strings, as DKIM keys are).
    /// dnsmasq cannot be told to pick its own port: a free one is chosen
    /// and, should another process take it first, another.
    pub async fn start(binary: &Path, records: &[(String, String)]) -> Self {
        for _ in 0..5 {
            if let Some(dnsmasq) = Self::try_start(binary, records).await {
                return dnsmasq;
            }
        }
        panic!("dnsmasq did not start on any of 5 ports");
    }

    async fn try_start(binary: &Path, records: &[(String, String)]) -> Option<Self> {
        let port = free_port();
        let mut args = vec![
            "--keep-in-foreground".to_owned(),
            "--conf-file=/dev/null".to_owned(),
            "--pid-file=".to_owned(),
            "--no-resolv".to_owned(),
            "--no-hosts".to_owned(),
            "--bind-interfaces".to_owned(),
            "--listen-address=127.0.0.1".to_owned(),
            format!("--port={port}"),
            // Authoritative for .test: unknown names are NXDOMAIN, not REFUSED.
            "--local=/test/".to_owned(),
            "--log-queries".to_owned(),
            "--log-facility=-".to_owned(),
        ];
        for (name, value) in records {
            let strings: Vec<String> = value
                .as_bytes()
                .chunks(TXT_STRING)
                .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
                .collect();
            assert!(
                !name.contains(',') && strings.iter().all(|s| !s.contains(',')),
                "dnsmasq separates TXT strings by commas: {name} {value}"
            );
            args.push(format!("--txt-record={name},{}", strings.join(",")));
        }
        let mut child = Command::new(binary)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("dnsmasq starts");
        let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        // Its sockets are bound before it logs "started"; a port taken in
        // the meantime ends it with "failed to create listening socket".
        let started = tokio::time::timeout(DEADLINE, async {
            while let Some(line) = lines.next_line().await.expect("dnsmasq's log") {
                if line.contains("started, version") {
                    return true;
                }
            }
            false
        })
        .await
        .expect("dnsmasq starts in time");
        if !started {
            return None;
        }
        let log = Arc::new(Mutex::new(Vec::new()));
        tokio::spawn({
            let log = log.clone();
            async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    log.lock().unwrap().push(line);
                }
            }
        });
        Some(Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
        })
    }

    /// How many queries for names ending in `suffix` it has logged so far.
    pub fn queries_for(&self, suffix: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|line| {
                line.split_once("query[")
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .is_some_and(|name| name.ends_with(suffix))
            })
            .count()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A loopback port free for both UDP and TCP now.
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("a UDP port");
        let port = udp.local_addr().expect("its address").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
