//! The HTTP side on its own port: liveness for orchestrators.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::any;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The routes: `/health` (any method) is `200` with an empty body; every
/// other path is `404 Not Found`.
pub fn router() -> Router {
    Router::new()
        .route("/health", any(|| async { StatusCode::OK }))
        .fallback(|| async { (StatusCode::NOT_FOUND, "Not Found") })
}

/// Serves until `shutdown` fires.
///
/// # Errors
/// An I/O error from the listener.
pub async fn serve(listener: TcpListener, shutdown: CancellationToken) -> std::io::Result<()> {
    axum::serve(listener, router())
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
