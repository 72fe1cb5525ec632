//! OpenTelemetry export, received for real: an OTLP/HTTP (protobuf) receiver
//! in the test decodes what a server that just handled an SMTP session sent.
//! One test per process: the tracing subscriber is global, so the test runs
//! in a child process of the test binary, where no other test's sessions
//! are traced and no log line of its subscriber reaches other tests.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::receiver::{Answer, Receiver};
use crate::common::{Client, DEADLINE, TARGET, TestServer, simple_message};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use mail_laser::telemetry::{self, Observability, OtlpProtocol, TelemetryConfig};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;

/// What the collector stand-in received.
#[derive(Default)]
struct Received {
    spans: Mutex<Vec<Span>>,
    service_names: Mutex<Vec<String>>,
    metric_names: Mutex<Vec<String>>,
}

async fn traces(State(received): State<Arc<Received>>, body: Bytes) -> &'static str {
    let request = ExportTraceServiceRequest::decode(body).expect("a valid OTLP trace export");
    for resource in request.resource_spans {
        if let Some(resource) = &resource.resource
            && let Some(name) = string_attribute(&resource.attributes, "service.name")
        {
            received.service_names.lock().unwrap().push(name);
        }
        for scope in resource.scope_spans {
            received.spans.lock().unwrap().extend(scope.spans);
        }
    }
    ""
}

async fn metrics(State(received): State<Arc<Received>>, body: Bytes) -> &'static str {
    let request = ExportMetricsServiceRequest::decode(body).expect("a valid OTLP metrics export");
    let mut names = received.metric_names.lock().unwrap();
    for resource in request.resource_metrics {
        for scope in resource.scope_metrics {
            names.extend(scope.metrics.into_iter().map(|metric| metric.name));
        }
    }
    ""
}

async fn collector() -> (SocketAddr, Arc<Received>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(Received::default());
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/metrics", post(metrics))
        .with_state(received.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, received)
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|AnyValue { value }| value.as_ref())
}

fn string_attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    match attribute(attributes, key)? {
        Value::StringValue(value) => Some(value.clone()),
        _ => None,
    }
}

fn int_attribute(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attribute(attributes, key)? {
        Value::IntValue(value) => Some(*value),
        _ => None,
    }
}

fn bool_attribute(attributes: &[KeyValue], key: &str) -> Option<bool> {
    match attribute(attributes, key)? {
        Value::BoolValue(value) => Some(*value),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Flushes (off the async workers: it waits for the export) until `done`.
async fn flush_until(
    what: &str,
    flush: impl Fn() + Send + Sync + Clone + 'static,
    done: impl Fn() -> bool,
) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        let flush = flush.clone();
        tokio::task::spawn_blocking(flush).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Set in the child process that runs a test on its own.
const OWN_PROCESS: &str = "MAIL_LASER_TEST_OWN_PROCESS";

/// Runs the test `name` (this one) alone in a child process of this test
/// binary and asserts it passed there.
fn in_own_process(name: &str) {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(OWN_PROCESS, "1")
        .output()
        .expect("the test binary runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{name} in its own process ({}):\n{stdout}\n{stderr}",
        output.status
    );
}

#[test]
fn spans_form_one_trace_per_session_and_the_webhook_joins_it() {
    if std::env::var_os(OWN_PROCESS).is_none() {
        return in_own_process(&test_name!());
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(one_trace_per_session());
}

async fn one_trace_per_session() {
    let (collector_addr, received) = collector().await;
    let config = TelemetryConfig {
        endpoint: Some(format!("http://{collector_addr}")),
        protocol: OtlpProtocol::HttpProtobuf,
        service_name: "mail-laser-test".into(),
        export_traces: true,
        export_metrics: true,
        metric_interval: Duration::from_secs(3600),
    };
    let tracing = Arc::new(telemetry::init_tracing(&config, false).unwrap());
    let observability = Observability::new(&config).unwrap();

    // The webhook fails once, then takes the message: two attempts.
    let receiver = Receiver::start().await;
    receiver.script([Answer::Status(500)]);
    let (server, _) = TestServer::start_webhook(&receiver.url(), &[], observability.clone()).await;

    let mut client = Client::greeted(server.smtp).await;
    let reply = client
        .send_mail(
            "sender@example.org",
            &[TARGET],
            &simple_message("traced", "hello"),
        )
        .await;
    assert_eq!(reply.code, 250);
    client.expect("QUIT", "221 2.0.0 Bye").await;
    client.expect_closed().await;

    // Spans are exported as they end, in batches: wait for every span the
    // test counts, not just the last to end.
    let guard = tracing.clone();
    let spans_in = received.clone();
    flush_until(
        "the session, transaction, parse and two attempt spans",
        move || guard.flush(),
        move || {
            let spans = spans_in.spans.lock().unwrap();
            let count = |name: &str| spans.iter().filter(|s| s.name == name).count();
            count("smtp.session") >= 1
                && count("smtp.transaction") >= 1
                && count("mail.parse") >= 1
                && count("webhook.attempt") >= 2
        },
    )
    .await;

    let spans = received.spans.lock().unwrap().clone();
    let by_name = |name: &str| -> Vec<&Span> { spans.iter().filter(|s| s.name == name).collect() };
    let session = by_name("smtp.session");
    let transaction = by_name("smtp.transaction");
    let parse = by_name("mail.parse");
    let mut attempts = by_name("webhook.attempt");
    assert_eq!(
        (
            session.len(),
            transaction.len(),
            parse.len(),
            attempts.len()
        ),
        (1, 1, 1, 2),
        "span names: {:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let (session, transaction, parse) = (session[0], transaction[0], parse[0]);

    // One trace, and the tree session → transaction → parse / attempts.
    for span in spans.iter().filter(|s| s.name != "smtp.command") {
        assert_eq!(
            span.trace_id, session.trace_id,
            "{} is in another trace",
            span.name
        );
    }
    assert!(session.parent_span_id.is_empty(), "the session is the root");
    assert_eq!(transaction.parent_span_id, session.span_id);
    assert_eq!(parse.parent_span_id, transaction.span_id);
    for attempt in &attempts {
        assert_eq!(attempt.parent_span_id, transaction.span_id);
        assert_eq!(attempt.kind, SpanKind::Client as i32);
    }

    // Key attributes.
    let a = &session.attributes;
    assert_eq!(
        string_attribute(a, "client.address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(bool_attribute(a, "smtp.tls"), Some(false));
    assert_eq!(
        string_attribute(a, "smtp.helo").as_deref(),
        Some("client.example")
    );
    let a = &transaction.attributes;
    assert_eq!(
        string_attribute(a, "smtp.sender").as_deref(),
        Some("sender@example.org")
    );
    assert_eq!(int_attribute(a, "smtp.recipient_count"), Some(1));
    assert!(int_attribute(a, "smtp.message_size").is_some_and(|size| size > 0));
    assert_eq!(int_attribute(a, "smtp.reply_code"), Some(250));
    assert_eq!(
        string_attribute(a, "smtp.outcome").as_deref(),
        Some("delivered")
    );

    attempts.sort_by_key(|s| int_attribute(&s.attributes, "maillaser.webhook.attempt"));
    let statuses: Vec<_> = attempts
        .iter()
        .map(|s| int_attribute(&s.attributes, "http.response.status_code"))
        .collect();
    assert_eq!(statuses, [Some(500), Some(200)]);
    for (index, attempt) in attempts.iter().enumerate() {
        let a = &attempt.attributes;
        assert_eq!(
            string_attribute(a, "http.request.method").as_deref(),
            Some("POST")
        );
        assert_eq!(string_attribute(a, "url.full"), Some(receiver.url()));
        assert_eq!(
            int_attribute(a, "http.request.resend_count"),
            Some(index as i64)
        );
    }
    assert_eq!(
        string_attribute(&attempts[0].attributes, "error.type").as_deref(),
        Some("500")
    );

    // The webhook received traceparent headers naming our trace and attempts.
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    for (request, attempt) in requests.iter().zip(&attempts) {
        let traceparent = request.header("traceparent");
        let parts: Vec<_> = traceparent.split('-').collect();
        assert_eq!(parts.len(), 4, "{traceparent}");
        assert_eq!(parts[1], hex(&session.trace_id), "{traceparent}");
        assert_eq!(parts[2], hex(&attempt.span_id), "{traceparent}");
    }

    assert_eq!(
        received
            .service_names
            .lock()
            .unwrap()
            .first()
            .map(String::as_str),
        Some("mail-laser-test")
    );

    // Metrics go out over OTLP too, under the same instrument names.
    const EXPORTED: [&str; 5] = [
        "maillaser.messages",
        "maillaser.smtp.commands",
        "maillaser.webhook.request.duration",
        "maillaser.webhook.retries",
        "maillaser.sessions",
    ];
    let metrics_in = received.clone();
    let exporter = observability.clone();
    flush_until(
        "an OTLP metrics export of every instrument",
        move || exporter.flush(),
        move || {
            let names = metrics_in.metric_names.lock().unwrap();
            EXPORTED.iter().all(|name| names.iter().any(|n| n == name))
        },
    )
    .await;
    server.stop().await;
}
