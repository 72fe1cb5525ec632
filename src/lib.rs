//! MailLaser: an SMTP server that turns every accepted email into a JSON
//! webhook call.
//!
//! Bytes become SMTP frames ([`smtp::codec`]), frames drive a session state
//! machine ([`smtp::session`]), and every decision the session delegates is a
//! Tower layer ([`stack`]) ending in a [`sink::Sink`]. The [`server`] drives
//! connections over listeners the caller has already bound.
//!
//! Dependencies between the top-level modules point one way (a test checks
//! it): `smtp`, `mail`, `telemetry` and `duration` import nothing of the
//! crate; `sink` builds on `mail`; `webhook` on `sink` and `mail` (and `smtp`'s
//! canonical mailbox); `spool` on `webhook` (and `store`, for large bodies of
//! the PostgreSQL queue); `stack` on `smtp`, `mail` and
//! `sink`; `server` on `smtp`, `stack` and `http`; `store` on `mail` (its
//! civil-date helper); `auth` on `mail` (the payload's result fields);
//! `stack` on `auth` too; `policy` imports nothing of the crate; `routes` builds on
//! `webhook`, `spool`, `sink` and `smtp`, and `stack` on `routes`; `config`
//! builds every module's settings and nothing imports it.

pub mod auth;
pub mod config;
pub mod duration;
pub mod http;
pub mod mail;
pub mod policy;
pub mod routes;
pub mod server;
pub mod sink;
pub mod smtp;
pub mod spool;
pub mod stack;
pub mod store;
pub mod telemetry;
pub mod webhook;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use config::{Config, RoutesConfig, SinkConfig};
use http::Readiness;
use routes::{BuildRoute, Route, RouteSet, RouteSpec, RoutedSink, RoutesReload};
use server::Server;
use server::tls::{CertReload, ServerTls};
use sink::{SharedSink, StdoutSink};
use smtp::codec::MemoryBudget;
use spool::{OpenError, SpoolQueue, SpoolSink};
use telemetry::{Metrics, Observability};
use webhook::{HttpClient, WebhookSink};

/// Listeners bound by the caller (tests bind port 0 and hand them over).
pub struct Listeners {
    pub smtp: TcpListener,
    pub http: TcpListener,
    /// The implicit-TLS port (`MAIL_LASER_TLS_PORT`), when there is one.
    pub implicit_tls: Option<TcpListener>,
}

/// MailLaser with everything that can fail at start already done (the TLS
/// acceptor built, the sink opened), so that the binary binds its ports and
/// says it is listening only once nothing else can go wrong.
pub struct MailLaser {
    config: Config,
    sink: SharedSink,
    observability: Observability,
    tls: ServerTls,
}

impl MailLaser {
    /// `observability` carries the instruments (build the sink with the
    /// same [`telemetry::Metrics`]).
    ///
    /// # Errors
    /// The STARTTLS certificate cannot be loaded or generated.
    pub fn new(
        config: Config,
        sink: SharedSink,
        observability: Observability,
    ) -> Result<Self, server::tls::TlsError> {
        let tls = server::tls::load(&config.server.tls)?;
        Ok(Self {
            config,
            sink,
            observability,
            tls,
        })
    }

    /// Reloads the certificate files on request (`SIGHUP`); `None` for a
    /// self-signed certificate, which is never reloaded.
    pub fn tls_reload(&self) -> Option<CertReload> {
        self.tls.reload.clone()
    }

    /// Serves until `shutdown` fires and the sessions have drained (and the
    /// sink's background work, if any, has stopped).
    ///
    /// # Errors
    /// The HTTP server failed.
    pub async fn run(
        self,
        listeners: Listeners,
        shutdown: CancellationToken,
    ) -> Result<(), std::io::Error> {
        let Self {
            config,
            sink,
            observability,
            tls,
        } = self;
        let metrics = observability.metrics().clone();
        let readiness = Readiness::new(sink.clone());
        let background = sink.background(shutdown.clone());
        // One budget for message data: the bytes sessions read, and the
        // payloads the stack builds from them.
        let memory = MemoryBudget::new(config.server.max_buffered_bytes);
        let service = stack::build(config.stack, sink, metrics.clone(), memory.clone());
        let mut server = Server::new(
            listeners.smtp,
            &config.server,
            Some(tls.acceptor),
            service,
            metrics.clone(),
            memory,
        );
        if let Some(listener) = listeners.implicit_tls {
            server = server.with_implicit_tls(listener);
        }
        let reload = async {
            if let Some(reload) = tls.reload {
                reload.run(metrics, shutdown.clone()).await;
            }
        };
        let router = http::router(readiness.clone(), observability);
        let http = http::serve(listeners.http, router, config.http_limits, shutdown.clone());
        let background = async {
            if let Some(background) = background {
                background.await;
            }
        };
        let ((), http, (), ()) = tokio::join!(
            server.run(readiness, shutdown.clone()),
            http,
            background,
            reload
        );
        http
    }
}

/// Builds the sink the configuration asks for, instruments it with
/// `metrics`, and recovers what a previous run left in the spool.
///
/// # Errors
/// The webhook client cannot be built, or the spool folder cannot be used.
pub async fn open_sink(config: &SinkConfig, metrics: &Metrics) -> Result<SharedSink, OpenError> {
    Ok(match config {
        SinkConfig::Stdout => Arc::new(StdoutSink::new()),
        SinkConfig::Webhook(webhook) => Arc::new(WebhookSink::new(webhook, metrics)?),
        SinkConfig::Routes(routes) => Arc::new(open_routes(routes, metrics).await?),
        SinkConfig::Spool { webhook, spool } => {
            let sink = SpoolSink::open(webhook, spool, metrics).await?;
            tracing::info!(
                store = sink.store().kind(),
                dir = %spool.dir.display(),
                waiting = sink.store().usage().files,
                max_age = %duration::humane(spool.max_age),
                "spool mode"
            );
            Arc::new(sink)
        }
    })
}

/// The routed sink: each route's stacks (a webhook, with the shared spool
/// in front in `spool` mode) built the same way at start and on reload.
async fn open_routes(config: &RoutesConfig, metrics: &Metrics) -> Result<RoutedSink, OpenError> {
    // One client, so every route shares one connection pool; the global
    // timeout bounds connecting for all of them.
    let client = HttpClient::client(config.global.attempt_timeout)?;
    let live = config.live.clone();
    let queue = match &config.spool {
        Some(spool) => Some(SpoolQueue::open(spool, Arc::new(live.clone()), metrics).await?),
        None => None,
    };
    let (global, metrics_base) = (config.global.clone(), metrics.clone());
    let build: BuildRoute = Arc::new(move |spec: &RouteSpec| {
        let mut webhook = spec.webhook(&global);
        if queue.is_some() {
            webhook = spool::single_attempt(&webhook);
        }
        let webhook = WebhookSink::with_client(
            &webhook,
            &metrics_base.for_route(&spec.name),
            client.clone(),
        );
        let sink: SharedSink = match &queue {
            Some(queue) => Arc::new(queue.sink(webhook.clone(), Some(&spec.name))),
            None => Arc::new(webhook.clone()),
        };
        Route {
            spec: spec.clone(),
            sink,
            webhook,
        }
    });
    let (routes, _) = RouteSet::build(config.specs.clone(), &build, &live.current());
    tracing::info!(
        routes = routes.routes().len(),
        spool = config.spool.is_some(),
        "routes"
    );
    live.install(routes);
    let reload = RoutesReload::new(
        config.source.clone(),
        live.clone(),
        build,
        config.reload_interval,
        metrics.clone(),
    );
    Ok(RoutedSink::new(live, Some(reload)))
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Tls(#[from] server::tls::TlsError),
    #[error("HTTP server failed")]
    Http(#[source] std::io::Error),
}

/// [`MailLaser::new`] and [`MailLaser::run`] in one call.
///
/// # Errors
/// As those two.
pub async fn run(
    listeners: Listeners,
    config: Config,
    sink: SharedSink,
    observability: Observability,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    MailLaser::new(config, sink, observability)?
        .run(listeners, shutdown)
        .await
        .map_err(RunError::Http)
}
