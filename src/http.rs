//! The HTTP side on its own port: liveness, readiness and metrics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
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

/// What the HTTP side allows a client, so that no client of the health
/// port can hold connections or file descriptors the SMTP side needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections at once; one more closes the oldest open one, so that
    /// clients holding connections cannot keep a probe out.
    pub max_connections: usize,
    /// For a request's headers to arrive, from the connection's start or
    /// the previous response (an idle kept-alive connection is closed too).
    pub header_timeout: Duration,
    /// For a whole connection: a slow body or a client that reads the
    /// response slowly cannot hold it longer.
    pub connection_timeout: Duration,
}

impl Default for HttpLimits {
    /// 64 connections (a load balancer, Prometheus and a few people),
    /// 10 s for headers, 60 s per connection.
    fn default() -> Self {
        Self {
            max_connections: 64,
            header_timeout: Duration::from_secs(10),
            connection_timeout: Duration::from_secs(60),
        }
    }
}

/// Serves until `shutdown` fires, within `limits`.
///
/// # Errors
/// None today: a failed accept (out of file descriptors) is logged and
/// retried after a pause.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let open = OpenConnections::default();
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            // At the cap the oldest connection makes room: an attacker who
            // holds connections open cannot keep a health probe out, only
            // lose its own oldest one to it.
            Err(_) => {
                open.close_oldest();
                match tokio::time::timeout(EVICTION_WAIT, slots.clone().acquire_owned()).await {
                    Ok(Ok(slot)) => slot,
                    _ => {
                        tracing::debug!("HTTP connection refused: limit reached");
                        continue;
                    }
                }
            }
        };
        let (id, evicted) = open.add();
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .serve_connection(
                TokioIo::new(stream),
                TowerToHyperService::new(router.clone()),
            );
        let shutdown = shutdown.clone();
        let open = open.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::timeout(limits.connection_timeout, connection) => {}
                () = shutdown.cancelled() => {}
                () = evicted.cancelled() => {}
            }
            open.remove(id);
            drop(slot);
        });
    }
}

/// How long a new connection waits for the one it evicted to close.
const EVICTION_WAIT: Duration = Duration::from_millis(100);

/// The open HTTP connections, oldest first, each with the token that closes it.
#[derive(Debug, Clone, Default)]
struct OpenConnections {
    inner: Arc<Mutex<(u64, BTreeMap<u64, CancellationToken>)>>,
}

impl OpenConnections {
    fn add(&self) -> (u64, CancellationToken) {
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let (next, open) = &mut *guard;
        let id = *next;
        *next += 1;
        let token = CancellationToken::new();
        open.insert(id, token.clone());
        (id, token)
    }

    fn remove(&self, id: u64) {
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        guard.1.remove(&id);
    }

    fn close_oldest(&self) {
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, token)) = guard.1.pop_first() {
            token.cancel();
        }
    }
}
