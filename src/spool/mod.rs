//! `spool` delivery (`docs/delivery.md`): the first webhook attempt still happens
//! during DATA; when it fails temporarily (or the circuit breaker is open)
//! the request is written durably and the sender gets `250` anyway, and a
//! background [`SpoolWorker`] keeps trying for up to `MAIL_LASER_SPOOL_MAX_AGE`.
//!
//! - [`file`]: the on-disk format of one entry (pure).
//! - [`store`]: the folder — atomic writes with `fsync`, caps, dead letters.
//! - [`schedule`]: which entry is tried next (pure).
//! - [`worker`]: the background task.
//!
//! Both sides share one [`WebhookSink`] per route, built with no retries
//! (the spool is the retry) and therefore one circuit breaker: while it is
//! open, mail is spooled without a request and the worker backs off. With
//! routes, one [`SpoolQueue`] (folder and worker) serves every route's
//! [`SpoolSink`]; each entry names its route, and the worker looks its
//! webhook up at each attempt ([`Webhooks`]).

mod error;
mod file;
mod schedule;
mod store;
mod worker;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use error::SpoolError;
pub use file::{FormatError, Header, SpoolEntry, now_ms};
pub use store::{DEAD_DIR, Spool, SpoolId, Usage};
pub use worker::SpoolWorker;

use crate::sink::{DeliveryOutcome, RecipientPayload, Sink};
use crate::telemetry::{ErrorChain, Metrics};
use crate::webhook::{self, Backoff, WebhookConfig, WebhookError, WebhookRequest, WebhookSink};

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

/// Everything `spool` mode needs, validated at start.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// `MAIL_LASER_SPOOL_DIR`.
    pub dir: PathBuf,
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
            max_age,
            limits,
            backoff: Backoff {
                base: Duration::from_secs(1),
                max: Duration::from_secs(300),
            },
            rescan: Duration::from_secs(60),
            concurrency: 8,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Why `spool` mode cannot start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("MAIL_LASER_WEBHOOK_URL: cannot set up the webhook client")]
    Client(#[from] reqwest::Error),
    #[error("MAIL_LASER_SPOOL_DIR")]
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

/// The spool folder and its background worker, shared by the
/// [`SpoolSink`]s of every route.
#[derive(Clone)]
pub struct SpoolQueue {
    spool: Spool,
    spooled: mpsc::UnboundedSender<worker::Spooled>,
    /// Handed out once, by [`SpoolQueue::background`].
    worker: Arc<Mutex<Option<SpoolWorker>>>,
}

impl SpoolQueue {
    /// Opens the spool folder, recovering what a previous run left; the
    /// worker delivers each entry through `webhooks`. Blocks briefly on the
    /// file system.
    ///
    /// # Errors
    /// The folder cannot be created or read.
    pub fn open(
        config: &SpoolConfig,
        webhooks: Arc<dyn Webhooks>,
        metrics: &Metrics,
    ) -> Result<Self, SpoolError> {
        let (spool, recovered) = Spool::open(&config.dir, config.limits)?;
        spool.observe_depth(metrics);
        let (sender, receiver) = mpsc::unbounded_channel();
        let worker = SpoolWorker::new(
            spool.clone(),
            webhooks,
            config.clone(),
            recovered,
            receiver,
            metrics.clone(),
        );
        Ok(Self {
            spool,
            spooled: sender,
            worker: Arc::new(Mutex::new(Some(worker))),
        })
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

    pub fn spool(&self) -> &Spool {
        &self.spool
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

/// A [`Sink`] that answers `250` once the webhook has the payload *or* it is
/// safely on disk.
#[derive(Clone)]
pub struct SpoolSink {
    webhook: WebhookSink,
    route: Option<Arc<str>>,
    queue: SpoolQueue,
}

impl SpoolSink {
    /// `spool` mode without routes: opens the folder and builds the one
    /// webhook stack. Blocks briefly on the file system.
    ///
    /// # Errors
    /// [`OpenError`]: the folder cannot be created or read, or the HTTP
    /// client cannot be built.
    pub fn open(
        webhook: &WebhookConfig,
        config: &SpoolConfig,
        metrics: &Metrics,
    ) -> Result<Self, OpenError> {
        let webhook = WebhookSink::new(&single_attempt(webhook), metrics)?;
        let queue = SpoolQueue::open(config, Arc::new(ImplicitRoute(webhook.clone())), metrics)?;
        Ok(queue.sink(webhook, None))
    }

    /// The webhook side, with the circuit breaker shared by both sides.
    pub fn webhook(&self) -> &WebhookSink {
        &self.webhook
    }

    pub fn spool(&self) -> &Spool {
        self.queue.spool()
    }
}

impl Sink for SpoolSink {
    fn deliver(&self, item: RecipientPayload) -> BoxFuture<'static, DeliveryOutcome> {
        let request = WebhookRequest::new(&item);
        let key = request.idempotency_key().unwrap_or_default().to_owned();
        let body = request.body.clone();
        let posted = self.webhook.post(request);
        let route = self.route.as_deref().map(str::to_owned);
        let (spool, spooled) = (self.queue.spool.clone(), self.queue.spooled.clone());
        Box::pin(async move {
            let error = match webhook::settle(posted.await) {
                Ok(outcome) => return outcome,
                Err(error) => error,
            };
            let requested = !matches!(error, WebhookError::BreakerOpen);
            let mut entry = SpoolEntry::new(key, body, now_ms());
            entry.header.route = route;
            entry.failed(&ErrorChain(&error).to_string(), requested);
            let attempts = entry.header.attempts;
            match spool.blocking(move |spool| spool.store(&entry)).await {
                Ok(id) => {
                    tracing::info!(file = %id, error = %ErrorChain(&error), "webhook unavailable, message spooled");
                    // A closed channel means the worker has stopped: the
                    // file is picked up at the next start.
                    let _ = spooled.send((id, attempts));
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

    /// Ready while the spool has room: an open breaker is what the spool is
    /// for, so it does not take the instance out of a load balancer.
    fn is_ready(&self) -> bool {
        !self.queue.spool.is_full()
    }

    /// The shared worker; with routes, the first route's sink hands it out.
    fn background(&self, shutdown: CancellationToken) -> Option<BoxFuture<'static, ()>> {
        self.queue.background(shutdown)
    }
}
