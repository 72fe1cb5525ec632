//! MailLaser: an SMTP server that turns every accepted email into a JSON
//! webhook call.
//!
//! Bytes become SMTP frames ([`smtp::codec`]), frames drive a session state
//! machine ([`smtp::session`]), and every decision the session delegates is a
//! Tower layer ([`stack`]) ending in a [`sink::Sink`]. [`run`] wires it all
//! to listeners the caller has already bound.

pub mod config;
pub mod http;
pub mod mail;
pub mod sink;
pub mod smtp;
pub mod spool;
pub mod stack;
pub mod telemetry;
pub mod tls;
pub mod webhook;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use config::Config;
use http::Readiness;
use sink::SharedSink;
use smtp::server::Server;
use telemetry::Observability;

/// Listeners bound by the caller (tests bind port 0 and hand them over).
pub struct Listeners {
    pub smtp: TcpListener,
    pub http: TcpListener,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
}

/// Runs MailLaser until `shutdown` fires and the sessions have drained (and
/// the sink's background work, if any, has stopped).
/// `observability` carries the instruments (build the sink with the same
/// [`telemetry::Metrics`]).
///
/// # Errors
/// A TLS set-up failure at start, or the HTTP server failing.
pub async fn run(
    listeners: Listeners,
    config: Config,
    sink: SharedSink,
    observability: Observability,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let acceptor = tls::acceptor(&config.smtp.tls)?;
    let metrics = observability.metrics().clone();
    let readiness = Readiness::new(sink.clone());
    let background = sink.background(shutdown.clone());
    let service = stack::build(config.stack, sink, metrics.clone());
    let server = Server::new(
        listeners.smtp,
        &config.smtp,
        Some(acceptor),
        service,
        metrics,
    );
    let router = http::router(readiness.clone(), observability);
    let http = http::serve(listeners.http, router, shutdown.clone());
    let background = async {
        if let Some(background) = background {
            background.await;
        }
    };
    let ((), http, ()) = tokio::join!(server.run(readiness, shutdown.clone()), http, background);
    http.map_err(RunError::Http)
}
