//! Observability wiring: the tracing subscriber with its OpenTelemetry
//! layer, and the metrics pipeline behind `/metrics` and OTLP.
//!
//! Configured only by the standard `OTEL_*` variables, read once at start
//! into [`TelemetryConfig`]. Without an endpoint nothing is exported and
//! nothing is paid for beyond `tracing`'s own bookkeeping. Span and metric
//! export run on the Tokio runtime in batches, off the request path.
//!
//! Numeric span fields are recorded as `i64`: tracing-opentelemetry exports
//! unsigned integers as strings.

mod metrics;

use std::time::Duration;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{MetricExporter, Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::metrics::periodic_reader_with_async_runtime::PeriodicReader;
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use prometheus::{Encoder, TextEncoder};
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

pub use metrics::Metrics;

/// The service name when `OTEL_SERVICE_NAME` is unset.
pub const DEFAULT_SERVICE_NAME: &str = "mail-laser";

/// `OTEL_EXPORTER_OTLP_PROTOCOL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    Grpc,
    HttpProtobuf,
}

/// Where telemetry goes, from the `OTEL_*` variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`; `None` disables export.
    pub endpoint: Option<String>,
    pub protocol: OtlpProtocol,
    pub service_name: String,
    /// `OTEL_TRACES_EXPORTER` is not `none`.
    pub export_traces: bool,
    /// `OTEL_METRICS_EXPORTER` is not `none`.
    pub export_metrics: bool,
    /// How often metrics are pushed (`OTEL_METRIC_EXPORT_INTERVAL`, ms).
    pub metric_interval: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OTEL_EXPORTER_OTLP_PROTOCOL: invalid value '{0}': expected grpc or http/protobuf")]
    Protocol(String),
    #[error("OTEL_METRIC_EXPORT_INTERVAL: invalid value '{0}': expected milliseconds")]
    Interval(String),
    #[error("OTEL_EXPORTER_OTLP_ENDPOINT: cannot build the OTLP exporter")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("cannot build the Prometheus exporter")]
    Prometheus(#[from] opentelemetry_sdk::error::OTelSdkError),
    #[error("cannot install the tracing subscriber")]
    Subscriber(#[from] tracing_subscriber::util::TryInitError),
}

impl TelemetryConfig {
    /// Reads the standard variables through `lookup` (the process
    /// environment in `main`, a map in tests).
    ///
    /// # Errors
    /// A malformed protocol or interval.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, TelemetryError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let protocol = match get("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
            None | Some("grpc") => OtlpProtocol::Grpc,
            Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
            Some(other) => return Err(TelemetryError::Protocol(other.to_owned())),
        };
        let metric_interval = match get("OTEL_METRIC_EXPORT_INTERVAL") {
            None => Duration::from_secs(60),
            Some(ms) => Duration::from_millis(
                ms.parse()
                    .map_err(|_| TelemetryError::Interval(ms.clone()))?,
            ),
        };
        let enabled = |name| get(name).is_none_or(|value| !value.eq_ignore_ascii_case("none"));
        Ok(Self {
            endpoint: get("OTEL_EXPORTER_OTLP_ENDPOINT"),
            protocol,
            service_name: get("OTEL_SERVICE_NAME").unwrap_or_else(|| DEFAULT_SERVICE_NAME.into()),
            export_traces: enabled("OTEL_TRACES_EXPORTER"),
            export_metrics: enabled("OTEL_METRICS_EXPORTER"),
            metric_interval,
        })
    }

    /// No export at all.
    pub fn disabled() -> Self {
        Self {
            endpoint: None,
            protocol: OtlpProtocol::Grpc,
            service_name: DEFAULT_SERVICE_NAME.into(),
            export_traces: false,
            export_metrics: false,
            metric_interval: Duration::from_secs(60),
        }
    }

    /// The endpoint for one signal: gRPC takes the base URL, OTLP/HTTP a
    /// per-signal path (`/v1/traces`, `/v1/metrics`).
    fn signal_endpoint(&self, path: &str) -> Option<String> {
        let base = self.endpoint.as_deref()?;
        Some(match self.protocol {
            OtlpProtocol::Grpc => base.to_owned(),
            OtlpProtocol::HttpProtobuf => format!("{}/{path}", base.trim_end_matches('/')),
        })
    }

    fn resource(&self) -> Resource {
        // `builder()` also applies OTEL_RESOURCE_ATTRIBUTES.
        Resource::builder()
            .with_service_name(self.service_name.clone())
            .build()
    }
}

/// Keeps the trace pipeline alive; [`TracingGuard::shutdown`] flushes it.
#[must_use = "dropping the guard does not flush spans; call shutdown()"]
pub struct TracingGuard {
    provider: Option<SdkTracerProvider>,
}

impl TracingGuard {
    /// Exports the spans still batched.
    pub fn flush(&self) {
        if let Some(provider) = &self.provider
            && let Err(error) = provider.force_flush()
        {
            tracing::warn!(%error, "flushing spans failed");
        }
    }

    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "shutting down the trace exporter failed");
        }
    }
}

/// Installs the global subscriber: logs to stderr filtered by `RUST_LOG`
/// (default `info`), and MailLaser's spans to OTLP when configured. Call
/// inside the Tokio runtime: the exporters live on it.
///
/// # Errors
/// A subscriber was already installed, or the exporter could not be built.
pub fn init_tracing(config: &TelemetryConfig, ansi: bool) -> Result<TracingGuard, TelemetryError> {
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_filter(
            EnvFilter::builder()
                .with_default_directive(LevelFilter::INFO.into())
                .from_env_lossy(),
        );
    let provider = match (config.export_traces, config.signal_endpoint("v1/traces")) {
        (true, Some(endpoint)) => Some(tracer_provider(config, endpoint)?),
        _ => None,
    };
    // Spans go out whatever RUST_LOG says: logs and traces are filtered apart.
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("mail-laser"))
            .with_filter(Targets::new().with_target("mail_laser", LevelFilter::INFO))
    });
    Registry::default().with(logs).with(traces).try_init()?;
    Ok(TracingGuard { provider })
}

fn tracer_provider(
    config: &TelemetryConfig,
    endpoint: String,
) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = match config.protocol {
        OtlpProtocol::Grpc => SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()?,
        OtlpProtocol::HttpProtobuf => SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint)
            .build()?,
    };
    let processor = BatchSpanProcessor::builder(exporter, Tokio).build();
    // The sampler comes from OTEL_TRACES_SAMPLER / _ARG (the SDK reads them).
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(config.resource())
        .build())
}

/// The metrics pipeline: one set of instruments read by a Prometheus
/// registry (for `/metrics`) and, when configured, pushed over OTLP.
#[derive(Clone)]
pub struct Observability {
    metrics: Metrics,
    registry: prometheus::Registry,
    provider: SdkMeterProvider,
}

impl Observability {
    /// Call inside the Tokio runtime when OTLP export is configured.
    ///
    /// # Errors
    /// An exporter could not be built.
    pub fn new(config: &TelemetryConfig) -> Result<Self, TelemetryError> {
        let registry = prometheus::Registry::new();
        let prometheus = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_target_info()
            .scope_info_enabled(false)
            .build()?;
        let mut builder = SdkMeterProvider::builder()
            .with_reader(prometheus)
            .with_resource(config.resource());
        if let (true, Some(endpoint)) =
            (config.export_metrics, config.signal_endpoint("v1/metrics"))
        {
            let exporter = match config.protocol {
                OtlpProtocol::Grpc => MetricExporter::builder()
                    .with_tonic()
                    .with_endpoint(endpoint)
                    .build()?,
                OtlpProtocol::HttpProtobuf => MetricExporter::builder()
                    .with_http()
                    .with_protocol(Protocol::HttpBinary)
                    .with_endpoint(endpoint)
                    .build()?,
            };
            builder = builder.with_reader(
                PeriodicReader::builder(exporter, Tokio)
                    .with_interval(config.metric_interval)
                    .build(),
            );
        }
        let provider = builder.build();
        let metrics = Metrics::new(provider.meter("mail-laser"));
        Ok(Self {
            metrics,
            registry,
            provider,
        })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The Prometheus text exposition of every instrument.
    pub fn prometheus_text(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::warn!(%error, "encoding metrics failed");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }

    /// Pushes pending metrics (OTLP).
    pub fn flush(&self) {
        if let Err(error) = self.provider.force_flush() {
            tracing::warn!(%error, "flushing metrics failed");
        }
    }

    pub fn shutdown(&self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::debug!(%error, "shutting down the metrics pipeline failed");
        }
    }
}

/// An error with its whole source chain, `outer: cause: root cause`, for
/// logs: the outermost message alone rarely says what went wrong (a refused
/// connection, a DNS failure, a TLS error).
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

/// A client-controlled string for logs and span attributes: control
/// characters (ESC sequences, CR, LF) are written escaped (`\u{1b}`), so a
/// client cannot forge log lines or drive the operator's terminal.
pub struct Printable<'a>(pub &'a str);

impl std::fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_unicode())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<TelemetryConfig, TelemetryError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        TelemetryConfig::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn nothing_set_means_no_export() {
        let config = config(&[]).unwrap();
        assert_eq!(config.endpoint, None);
        assert_eq!(config.service_name, "mail-laser");
        assert_eq!(config.signal_endpoint("v1/traces"), None);
    }

    #[test]
    fn standard_variables() {
        let config = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_SERVICE_NAME", "mx-1"),
            ("OTEL_METRICS_EXPORTER", "none"),
        ])
        .unwrap();
        assert_eq!(config.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(
            config.signal_endpoint("v1/traces").as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(config.service_name, "mx-1");
        assert!(config.export_traces);
        assert!(!config.export_metrics);
        let grpc = self::config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")]).unwrap();
        assert_eq!(
            grpc.signal_endpoint("v1/traces").as_deref(),
            Some("http://c:4317")
        );
    }

    #[test]
    fn bad_protocol_is_named() {
        let error = config(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")])
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("OTEL_EXPORTER_OTLP_PROTOCOL"), "{error}");
    }

    #[test]
    fn prometheus_names_follow_conventions() {
        let observability = Observability::new(&TelemetryConfig::disabled()).unwrap();
        let metrics = observability.metrics();
        metrics.session_opened();
        metrics.command("MAIL", 250);
        metrics.message("delivered", 2048);
        metrics.webhook_attempt(Some(204), 0.003);
        metrics.webhook_retry();
        metrics.breaker_transition("open");
        metrics.connection_refused("per_ip_limit");
        metrics.session_closed(true);
        let text = observability.prometheus_text();
        for line in [
            "maillaser_sessions_active 0",
            "maillaser_sessions_total{tls=\"true\"} 1",
            "maillaser_smtp_commands_total{reply_class=\"2xx\",verb=\"MAIL\"} 1",
            "maillaser_messages_total{outcome=\"delivered\"} 1",
            "maillaser_message_size_bytes_bucket{le=\"4096\"} 1",
            "maillaser_message_size_bytes_count 1",
            "maillaser_webhook_request_duration_seconds_count{status_class=\"2xx\"} 1",
            "maillaser_webhook_retries_total 1",
            "maillaser_circuit_breaker_transitions_total{to=\"open\"} 1",
            "maillaser_connections_refused_total{reason=\"per_ip_limit\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("otel_scope"), "{text}");
        assert!(!text.contains("target_info"), "{text}");
    }

    #[test]
    fn error_chain_names_every_cause() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot connect to the webhook")]
        struct Outer(#[source] std::io::Error);
        let error = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ));
        assert_eq!(
            ErrorChain(&error).to_string(),
            "cannot connect to the webhook: connection refused"
        );
    }

    #[test]
    fn printable_escapes_control_characters() {
        assert_eq!(
            Printable("a\x1b[31mb\r\nINFO forged").to_string(),
            "a\\u{1b}[31mb\\u{d}\\u{a}INFO forged"
        );
        assert_eq!(
            Printable("müller@example.com").to_string(),
            "müller@example.com"
        );
    }
}
