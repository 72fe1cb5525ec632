//! One span and one latency measurement per webhook attempt, and the W3C
//! `traceparent` header that lets the consumer's trace join ours.

use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::future::BoxFuture;
use opentelemetry::propagation::{Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tower::{Layer, Service};
use tracing::{Instrument, field};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::classify::{FailureKind, is_rejection};
use super::{WebhookRequest, WebhookResponse};
use crate::telemetry::Metrics;

/// Instruments each attempt (HTTP client semantic conventions).
#[derive(Debug, Clone)]
pub struct AttemptLayer {
    /// `url.full` without credentials or query (they may hold tokens).
    url: String,
    metrics: Metrics,
}

impl AttemptLayer {
    pub fn new(url: &Url, metrics: Metrics) -> Self {
        Self {
            url: redacted(url),
            metrics,
        }
    }
}

/// The URL without credentials, query or fragment (they may hold tokens):
/// safe for logs and span attributes.
pub fn redacted(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

impl<S> Layer<S> for AttemptLayer {
    type Service = Attempt<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Attempt {
            inner,
            layer: self.clone(),
        }
    }
}

// === impl Attempt ===

#[derive(Debug, Clone)]
pub struct Attempt<S> {
    inner: S,
    layer: AttemptLayer,
}

impl<S> Service<WebhookRequest> for Attempt<S>
where
    S: Service<WebhookRequest, Response = WebhookResponse, Error = tower::BoxError>,
    S::Future: Send + 'static,
{
    type Response = WebhookResponse;
    type Error = tower::BoxError;
    type Future = BoxFuture<'static, Result<WebhookResponse, tower::BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: WebhookRequest) -> Self::Future {
        let span = tracing::info_span!(
            "webhook.attempt",
            otel.kind = "client",
            otel.status_code = field::Empty,
            "http.request.method" = "POST",
            "url.full" = %self.layer.url,
            "http.request.resend_count" = i64::from(request.attempt.saturating_sub(1)),
            "maillaser.webhook.attempt" = i64::from(request.attempt),
            "http.response.status_code" = field::Empty,
            "error.type" = field::Empty,
        );
        TraceContextPropagator::new()
            .inject_context(&span.context(), &mut HeaderInjector(&mut request.headers));
        let metrics = self.layer.metrics.clone();
        let future = self.inner.call(request);
        let recorded = span.clone();
        Box::pin(
            async move {
                let started = Instant::now();
                let result = future.await;
                let elapsed = started.elapsed().as_secs_f64();
                match &result {
                    Ok(response) => {
                        let status = response.status.as_u16();
                        recorded.record("http.response.status_code", i64::from(status));
                        if !response.status.is_success() {
                            recorded.record("error.type", field::display(status));
                            recorded.record("otel.status_code", "error");
                        }
                        metrics.webhook_attempt(Some(status), elapsed);
                        if is_rejection(response.status) {
                            rejected(&metrics, status);
                        }
                    }
                    Err(error) => {
                        recorded.record("error.type", FailureKind::of(error).as_str());
                        recorded.record("otel.status_code", "error");
                        metrics.webhook_attempt(None, elapsed);
                    }
                }
                result
            }
            .instrument(span),
        )
    }
}

/// Counts a rejection; a `410 Gone` is also logged, naming the route: the
/// consumer says the endpoint no longer exists, which an operator must hear
/// of (the mail is still only rejected, `554`; nothing is turned off).
fn rejected(metrics: &Metrics, status: u16) {
    metrics.webhook_rejection(status);
    if status == 410 {
        let route = metrics.route().unwrap_or_else(|| "default".to_owned());
        tracing::warn!(
            route,
            "webhook answered 410 Gone: the route's endpoint says it no longer exists; message rejected (554)"
        );
    }
}

/// Writes propagation headers into a request's header map.
struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The log lines written while `body` runs, as the fmt layer writes them.
    fn logged(body: impl FnOnce()) -> String {
        use std::sync::{Arc, Mutex};

        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, body);
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    /// Each `410` is one warning naming the route; other rejections are
    /// only counted.
    #[test]
    fn gone_is_logged_once_naming_the_route() {
        let lines = logged(|| {
            let routed = Metrics::disabled().for_route("billing");
            rejected(&routed, 410);
            rejected(&routed, 422);
            rejected(&Metrics::disabled(), 410);
        });
        let warnings: Vec<&str> = lines.lines().filter(|l| l.contains("WARN")).collect();
        assert_eq!(warnings.len(), 2, "{lines}");
        assert!(warnings[0].contains("route=\"billing\""), "{lines}");
        assert!(warnings[0].contains("410 Gone"), "{lines}");
        assert!(warnings[1].contains("route=\"default\""), "{lines}");
    }

    #[test]
    fn url_is_recorded_without_secrets() {
        let url = Url::parse("https://user:pw@hooks.example.com:8443/in?token=abc#x").unwrap();
        assert_eq!(redacted(&url), "https://hooks.example.com:8443/in");
    }
}
