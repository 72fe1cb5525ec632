//! The HTTP side on its own port: liveness, readiness and metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::sink::SharedSink;
use crate::telemetry::Observability;

/// What `/ready` looks at (`docs/http.md`): the SMTP listener accepting,
/// and the sink able to take new mail (in `sync` mode the breaker not open,
/// in `spool` mode room in the spool).
#[derive(Clone)]
pub struct Readiness {
    accepting: Arc<AtomicBool>,
    sink: SharedSink,
}

impl Readiness {
    pub fn new(sink: SharedSink) -> Self {
        Self {
            accepting: Arc::new(AtomicBool::new(false)),
            sink,
        }
    }

    /// Set while the SMTP listener is bound and accepting.
    pub fn set_accepting(&self, accepting: bool) {
        self.accepting.store(accepting, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.accepting.load(Ordering::Acquire) && self.sink.is_ready()
    }
}

#[derive(Clone)]
struct AppState {
    readiness: Readiness,
    observability: Observability,
}

/// The routes: `/health` (any method) is `200` with an empty body, `/ready`
/// `200` or `503`, `/metrics` the Prometheus text exposition; every other
/// path is `404 Not Found`.
pub fn router(readiness: Readiness, observability: Observability) -> Router {
    Router::new()
        .route("/health", any(|| async { StatusCode::OK }))
        .route("/ready", any(ready))
        .route("/metrics", get(metrics))
        .fallback(|| async { (StatusCode::NOT_FOUND, "Not Found") })
        .with_state(AppState {
            readiness,
            observability,
        })
}

async fn ready(State(state): State<AppState>) -> StatusCode {
    if state.readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.observability.prometheus_text(),
    )
}

/// Serves until `shutdown` fires.
///
/// # Errors
/// An I/O error from the listener.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
