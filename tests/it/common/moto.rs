//! A private moto server — a real S3-compatible server, in Python — on a
//! loopback port it chose itself, killed on drop. Each test starts its own,
//! so tests share no buckets and may run in parallel.
//!
//! Find the program with `let [moto_server] = require_tool!("moto_server");`
//! (`scripts/test` installs it with pip).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::DEADLINE;

/// A running `moto_server`.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`, the S3 endpoint.
    pub endpoint: String,
    http: reqwest::Client,
}

impl Moto {
    /// Starts `binary` on `127.0.0.1`, port 0 (so no other process can take
    /// the port between choosing and binding it), reads the port from its
    /// `Running on http://…` line, and waits until S3 answers.
    pub async fn start(binary: &Path) -> Self {
        let mut child = Command::new(binary)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("moto_server starts");
        let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let endpoint = tokio::time::timeout(DEADLINE, async {
            while let Some(line) = lines.next_line().await.expect("moto_server's log") {
                if let Some((_, url)) = line.split_once("Running on ") {
                    return Some(url.trim().trim_end_matches('/').to_owned());
                }
            }
            None
        })
        .await
        .expect("moto_server starts in time")
        .expect("moto_server logs the address it listens on");
        // Keep draining its request log so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let moto = Self {
            child,
            endpoint,
            http: reqwest::Client::new(),
        };
        moto.wait_until_ready().await;
        moto
    }

    /// Polls S3's ListBuckets until it answers `200`.
    async fn wait_until_ready(&self) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let answer = self
                .http
                .get(format!("{}/", self.endpoint))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            match answer {
                Ok(response) if response.status().is_success() => return,
                answer => assert!(
                    Instant::now() < deadline,
                    "moto_server at {} never answered: {answer:?}",
                    self.endpoint
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Creates `bucket` with a plain `PUT /{bucket}` (moto does not check
    /// signatures unless told to).
    pub async fn create_bucket(&self, bucket: &str) {
        let response = self
            .http
            .put(format!("{}/{bucket}", self.endpoint))
            .timeout(DEADLINE)
            .send()
            .await
            .expect("moto_server answers CreateBucket");
        assert!(
            response.status().is_success(),
            "CreateBucket {bucket}: {}",
            response.status()
        );
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
