//! A real Prometheus scrapes a running server: the counters moved as
//! expected after a known number of messages, and every PromQL expression of
//! the Grafana dashboard returns data.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::receiver::{Answer, Receiver};
use crate::common::{self, Client, DEADLINE, TARGET, TestServer, simple_message};
use reqwest::Url;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/grafana/dashboards/maillaser.json"
);

/// A private Prometheus on a loopback port it chose itself.
struct Prometheus {
    child: Child,
    api: Url,
    dir: PathBuf,
}

impl Prometheus {
    async fn scraping(binary: &Path, target: std::net::SocketAddr) -> Self {
        let dir =
            std::env::temp_dir().join(format!("mail-laser-prometheus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: mail-laser\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let mut child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg("--web.listen-address=127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // Prometheus logs the port it bound: `msg="Listening on" address=127.0.0.1:NNNN`.
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let address = tokio::time::timeout(DEADLINE, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains("msg=\"Listening on\"") {
                    return line.rsplit("address=").next().map(str::to_owned);
                }
            }
            None
        })
        .await
        .expect("Prometheus starts in time")
        .expect("Prometheus logs its address");
        // Keep draining its log so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            child,
            api: Url::parse(&format!("http://{}/api/v1/query", address.trim())).unwrap(),
            dir,
        }
    }

    /// The result vector of an instant query.
    async fn query(&self, expr: &str) -> Vec<Value> {
        let mut url = self.api.clone();
        url.query_pairs_mut().append_pair("query", expr);
        let body = reqwest::get(url).await.unwrap().bytes().await.unwrap();
        let response: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(response["status"], "success", "{expr}: {response}");
        response["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Polls `expr` until it returns data satisfying `check`.
    async fn until(&self, expr: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let result = self.query(expr).await;
            if check(&result) {
                return result;
            }
            assert!(
                Instant::now() < deadline,
                "{expr} never satisfied: {result:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The value of a single-series instant query.
    async fn value(&self, expr: &str, expected: f64) {
        self.until(expr, |result| {
            result.len() == 1 && sample(&result[0]) == Some(expected)
        })
        .await;
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sample(series: &Value) -> Option<f64> {
    series["value"][1].as_str()?.parse().ok()
}

/// Every `expr` in the dashboard, nested rows included.
fn dashboard_exprs() -> Vec<String> {
    fn walk(value: &Value, exprs: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(expr)) = map.get("expr") {
                    exprs.push(expr.clone());
                }
                map.values().for_each(|v| walk(v, exprs));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, exprs)),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(DASHBOARD).expect("the dashboard exists");
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let mut exprs = Vec::new();
    walk(&dashboard, &mut exprs);
    exprs
}

/// Grafana's built-in variables, as Grafana would expand them.
fn expand(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "5m")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_counters_and_every_dashboard_query_has_data() {
    let [binary] = require_tool!("prometheus");
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 10, "the dashboard has its panels: {exprs:?}");

    let receiver = Receiver::start().await;
    let (server, _) = TestServer::start_webhook(
        &receiver.url(),
        &["--webhook-max-retries", "1", "--max-concurrent-per-ip", "2"],
        common::observability(),
    )
    .await;
    let prometheus = Prometheus::scraping(&binary, server.http).await;
    prometheus.value("up", 1.0).await;

    // Known traffic: 5 delivered, 1 rejected, 1 deferred after one retry,
    // and a connection refused by the per-IP limit.
    let mut client = Client::greeted(server.smtp).await;
    for n in 0..5 {
        let reply = client
            .send_mail(
                "a@example.org",
                &[TARGET],
                &simple_message(&format!("m{n}"), "x"),
            )
            .await;
        assert_eq!(reply.code, 250);
    }
    receiver.script([Answer::Text(422, "no")]);
    let reply = client
        .send_mail("a@example.org", &[TARGET], &simple_message("r", "x"))
        .await;
    assert_eq!(reply.code, 554);
    receiver.script([Answer::Status(503), Answer::Status(503)]);
    let reply = client
        .send_mail("a@example.org", &[TARGET], &simple_message("d", "x"))
        .await;
    assert_eq!(reply.code, 451);
    let _second = Client::greeted(server.smtp).await;
    let mut refused = Client::connect(server.smtp).await;
    assert_eq!(refused.reply().await.code, 421);
    client.expect("QUIT", "221 2.0.0 Bye").await;
    client.expect_closed().await;

    prometheus
        .value("maillaser_messages_total{outcome=\"delivered\"}", 5.0)
        .await;
    prometheus
        .value("maillaser_messages_total{outcome=\"rejected\"}", 1.0)
        .await;
    prometheus
        .value("maillaser_messages_total{outcome=\"deferred\"}", 1.0)
        .await;
    prometheus
        .value("maillaser_webhook_retries_total", 1.0)
        .await;
    prometheus
        .value("maillaser_message_size_bytes_count", 7.0)
        .await;
    prometheus
        .value("sum(maillaser_webhook_request_duration_seconds_count)", 8.0)
        .await;
    prometheus
        .value(
            "maillaser_connections_refused_total{reason=\"per_ip_limit\"}",
            1.0,
        )
        .await;
    prometheus.value("maillaser_sessions_active", 1.0).await;
    prometheus
        .value("maillaser_sessions_total{tls=\"false\"}", 1.0)
        .await;
    prometheus
        .value(
            "maillaser_smtp_commands_total{verb=\"RCPT\",reply_class=\"2xx\"}",
            7.0,
        )
        .await;
    prometheus
        .value("maillaser_circuit_breaker_state", 0.0)
        .await;

    // Every panel works against the real metric names.
    for expr in &exprs {
        let expanded = expand(expr);
        prometheus
            .until(&expanded, |result| !result.is_empty())
            .await;
    }
    server.stop().await;
}
