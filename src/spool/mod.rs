//! `spool` delivery (`docs/delivery.md`): the first webhook attempt still happens
//! during DATA; when it fails temporarily (or the circuit breaker is open)
//! the request is written durably and the sender gets `250` anyway, and a
//! background [`SpoolWorker`] keeps trying for up to `MAIL_LASER_SPOOL_MAX_AGE`.
//!
//! - [`file`]: the on-disk format of one entry (pure).
//! - [`store`]: the folder — atomic writes with `fsync`, caps, dead letters.
//! - [`schedule`]: which entry is tried next (pure).
//! - [`worker`]: the background task.
//! - [`admin`] and [`cli`]: `mail-laser spool`, for the operator.
//!
//! Both sides share one [`WebhookSink`] per route, built with no retries
//! (the spool is the retry) and therefore one circuit breaker: while it is
//! open, mail is spooled without a request and the worker backs off. With
//! routes, one [`SpoolQueue`] (folder and worker) serves every route's
//! [`SpoolSink`]; each entry names its route, and the worker looks its
//! webhook up at each attempt ([`Webhooks`]).

pub mod admin;
pub mod cli;
mod error;
mod file;
mod folder;
mod postgres;
mod queue;
mod schedule;
mod store;
mod worker;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

pub use error::SpoolError;
pub use file::{FormatError, Header, SpoolEntry, now_ms};
pub use folder::FolderStore;
pub use postgres::{BodyOffload, PostgresSpoolConfig, PostgresStore, PostgresUrl};
pub use queue::{Claim, Finish, SpoolStore};
pub use store::{DEAD_DIR, Spool, SpoolId, Usage};
pub use worker::SpoolWorker;

use crate::sink::{DeliveryOutcome, RecipientPayload, Sink};
use crate::telemetry::{ErrorChain, Metrics};
use crate::webhook::{self, Backoff, WebhookConfig, WebhookError, WebhookSink};

/// When the spool counts as full: new mail gets `452 4.3.1` (the sender
/// keeps it) instead of filling the disk. A disk that fills up first
/// (`ENOSPC`) gives the same answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolLimits {
    /// Waiting files (one per message and recipient).
    pub max_files: u64,
    /// Total size of the waiting files.
    pub max_bytes: u64,
}

impl Default for SpoolLimits {
    fn default() -> Self {
        Self {
            max_files: 100_000,
            max_bytes: 1 << 30,
        }
    }
}

/// How long the background worker's attempts in flight may finish on
/// shutdown (docs/delivery.md). The Kubernetes manifests' grace period is
/// checked against it (tests/it/deploy_configs.rs).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Everything `spool` mode needs, validated at start.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// `MAIL_LASER_SPOOL_DIR`.
    pub dir: PathBuf,
    /// `MAIL_LASER_SPOOL_URL`: the shared PostgreSQL queue instead of the
    /// folder.
    pub postgres: Option<PostgresSpoolConfig>,
    /// `MAIL_LASER_SPOOL_MAX_AGE`: after this long a failed entry is a dead letter.
    pub max_age: Duration,
    pub limits: SpoolLimits,
    /// Waits between background attempts of one entry.
    pub backoff: Backoff,
    /// How often the folder is re-read for files moved in by hand.
    pub rescan: Duration,
    /// Background attempts in flight at once.
    pub concurrency: usize,
    /// How long attempts in flight may finish on shutdown.
    pub shutdown_grace: Duration,
}

impl SpoolConfig {
    /// The defaults for everything not set by a variable: backoff from 1 s
    /// up to 5 min between attempts (with full jitter), a rescan every
    /// minute, 8 attempts in flight, 5 s grace on shutdown.
    pub fn new(dir: PathBuf, max_age: Duration, limits: SpoolLimits) -> Self {
        Self {
            dir,
            postgres: None,
            max_age,
            limits,
            backoff: Backoff {
                base: Duration::from_secs(1),
                max: Duration::from_secs(300),
            },
            rescan: Duration::from_secs(60),
            concurrency: 8,
            shutdown_grace: SHUTDOWN_GRACE,
        }
    }
}

/// Why `spool` mode cannot start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("MAIL_LASER_WEBHOOK_URL: cannot set up the webhook client")]
    Client(#[from] reqwest::Error),
    #[error("{}", if matches!(.0, SpoolError::Database { .. }) { "MAIL_LASER_SPOOL_URL" } else { "MAIL_LASER_SPOOL_DIR" })]
    Spool(#[from] SpoolError),
}

/// Which webhook stack delivers a waiting entry. The entry names its route
/// ([`Header::route`], `None` for the implicit one); routes can be reloaded
/// while entries wait, so the worker asks at every attempt.
pub trait Webhooks: Send + Sync + 'static {
    /// `None`: no such route now; the entry waits (and expires).
    fn webhook(&self, route: Option<&str>) -> Option<WebhookSink>;
}

/// The implicit route's webhook alone (no routes file): it takes the
/// entries without a route.
struct ImplicitRoute(WebhookSink);

impl Webhooks for ImplicitRoute {
    fn webhook(&self, route: Option<&str>) -> Option<WebhookSink> {
        route.is_none().then(|| self.0.clone())
    }
}

/// The webhook settings for a stack whose temporary failures are spooled:
/// one attempt per call, the worker's backoff replaces retries.
pub fn single_attempt(webhook: &WebhookConfig) -> WebhookConfig {
    WebhookConfig {
        max_retries: 0,
        ..webhook.clone()
    }
}

/// The spool store and its background worker, shared by the
/// [`SpoolSink`]s of every route.
#[derive(Clone)]
pub struct SpoolQueue {
    store: Arc<dyn SpoolStore>,
    /// The wait before the first background attempt of a new entry.
    backoff: Backoff,
    /// Handed out once, by [`SpoolQueue::background`].
    worker: Arc<Mutex<Option<SpoolWorker>>>,
}

impl SpoolQueue {
    /// Opens the store: the PostgreSQL queue (connected, its schema up to
    /// date) or the spool folder (recovering what a previous run left; this
    /// blocks briefly on the file system). The worker delivers each entry
    /// through `webhooks`.
    ///
    /// # Errors
    /// The folder cannot be created or read, or the database reached.
    pub async fn open(
        config: &SpoolConfig,
        webhooks: Arc<dyn Webhooks>,
        metrics: &Metrics,
    ) -> Result<Self, SpoolError> {
        let store: Arc<dyn SpoolStore> = match &config.postgres {
            Some(postgres) => PostgresStore::connect(postgres, config.limits).await?,
            None => {
                let (spool, recovered) = Spool::open(&config.dir, config.limits)?;
                Arc::new(FolderStore::new(
                    spool,
                    recovered,
                    config.rescan,
                    config.backoff.max,
                ))
            }
        };
        Ok(Self::over(store, config, webhooks, metrics))
    }

    /// A queue over `store`.
    pub fn over(
        store: Arc<dyn SpoolStore>,
        config: &SpoolConfig,
        webhooks: Arc<dyn Webhooks>,
        metrics: &Metrics,
    ) -> Self {
        observe_depth(&store, metrics);
        let worker = SpoolWorker::new(store.clone(), webhooks, config, metrics.clone());
        Self {
            store,
            backoff: config.backoff,
            worker: Arc::new(Mutex::new(Some(worker))),
        }
    }

    /// A sink that first tries `webhook` and spools for `route` (`None`:
    /// the implicit route) when it fails temporarily.
    pub fn sink(&self, webhook: WebhookSink, route: Option<&str>) -> SpoolSink {
        SpoolSink {
            webhook,
            route: route.map(Arc::from),
            queue: self.clone(),
        }
    }

    pub fn store(&self) -> &Arc<dyn SpoolStore> {
        &self.store
    }

    /// The background worker, the first time it is asked for.
    pub fn background(&self, shutdown: CancellationToken) -> Option<BoxFuture<'static, ()>> {
        let worker = self
            .worker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        Some(Box::pin(worker.run(shutdown)))
    }
}

/// Exposes what waits in `store` as `maillaser_spool_depth{store}`. With
/// PostgreSQL every instance reports the whole shared queue.
fn observe_depth(store: &Arc<dyn SpoolStore>, metrics: &Metrics) {
    // A weak handle: the meter must not keep the store alive.
    let weak = Arc::downgrade(store);
    let labels = [opentelemetry::KeyValue::new("store", store.kind())];
    let _gauge = metrics
        .meter()
        .i64_observable_gauge("maillaser.spool.depth")
        .with_description("Deliveries waiting in the spool (not counting dead letters)")
        .with_callback(move |observer| {
            if let Some(store) = weak.upgrade() {
                let files = store.usage().files;
                observer.observe(i64::try_from(files).unwrap_or(i64::MAX), &labels);
            }
        })
        .build();
}

/// A [`Sink`] that answers `250` once the webhook has the payload *or* it is
/// safely on disk.
#[derive(Clone)]
pub struct SpoolSink {
    webhook: WebhookSink,
    route: Option<Arc<str>>,
    queue: SpoolQueue,
}

impl SpoolSink {
    /// `spool` mode without routes: opens the store and builds the one
    /// webhook stack.
    ///
    /// # Errors
    /// [`OpenError`]: the folder cannot be created or read, or the HTTP
    /// client cannot be built.
    pub async fn open(
        webhook: &WebhookConfig,
        config: &SpoolConfig,
        metrics: &Metrics,
    ) -> Result<Self, OpenError> {
        let webhook = WebhookSink::new(&single_attempt(webhook), metrics)?;
        let queue =
            SpoolQueue::open(config, Arc::new(ImplicitRoute(webhook.clone())), metrics).await?;
        Ok(queue.sink(webhook, None))
    }

    /// The webhook side, with the circuit breaker shared by both sides.
    pub fn webhook(&self) -> &WebhookSink {
        &self.webhook
    }

    /// Where entries wait.
    pub fn store(&self) -> &Arc<dyn SpoolStore> {
        self.queue.store()
    }
}

impl Sink for SpoolSink {
    fn deliver(&self, item: RecipientPayload) -> BoxFuture<'static, DeliveryOutcome> {
        // In the route's format; the spool keeps exactly these bytes.
        let request = match self.webhook.request(&item) {
            Ok(request) => request,
            Err(error) => {
                tracing::error!(error = %ErrorChain(&error), "cannot build the webhook request");
                return Box::pin(std::future::ready(DeliveryOutcome::Deferred));
            }
        };
        let key = request.idempotency_key().unwrap_or_default().to_owned();
        let body = request.body.clone();
        let content_type = Some(body.content_type())
            .filter(|content_type| *content_type != "application/json")
            .and_then(|content_type| content_type.to_str().ok())
            .map(str::to_owned);
        let posted = self.webhook.post(request);
        let stack = self.webhook.clone();
        let route = self.route.as_deref().map(str::to_owned);
        let (store, backoff) = (self.queue.store.clone(), self.queue.backoff);
        Box::pin(async move {
            let error = match webhook::settle(posted.await) {
                Ok(outcome) => return outcome,
                Err(error) => error,
            };
            let requested = !matches!(error, WebhookError::BreakerOpen);
            let asked = stack.asked_wait(&error);
            let mut entry = SpoolEntry::new(key, body, now_ms());
            entry.header.route = route;
            entry.header.content_type = content_type;
            entry.failed(&ErrorChain(&error).to_string(), requested);
            // Not before the consumer's `Retry-After`, nor while the
            // breaker stays open.
            let backoff = backoff.delay(entry.header.attempts.max(1));
            let delay = asked.map_or(backoff, |asked| asked.max(backoff));
            match store.enqueue(entry, delay).await {
                Ok(id) => {
                    tracing::info!(entry = %id, store = store.kind(), error = %ErrorChain(&error), "webhook unavailable, message spooled");
                    DeliveryOutcome::Spooled
                }
                Err(spool_error) => {
                    tracing::error!(
                        error = %ErrorChain(&error),
                        spool_error = %ErrorChain(&spool_error),
                        "webhook unavailable and cannot spool"
                    );
                    DeliveryOutcome::SpoolUnavailable
                }
            }
        })
    }

    /// Ready while the spool has room (and, with PostgreSQL, answers): an
    /// open breaker is what the spool is for, so it does not take the
    /// instance out of a load balancer.
    fn is_ready(&self) -> bool {
        self.queue.store.is_ready()
    }

    /// The shared worker; with routes, the first route's sink hands it out.
    fn background(&self, shutdown: CancellationToken) -> Option<BoxFuture<'static, ()>> {
        self.queue.background(shutdown)
    }
}
