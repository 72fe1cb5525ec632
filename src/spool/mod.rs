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
//! Both sides share one [`WebhookSink`] built with no retries (the spool is
//! the retry) and therefore one circuit breaker: while it is open, mail is
//! spooled without a request and the worker backs off.

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

/// A [`Sink`] that answers `250` once the webhook has the payload *or* it is
/// safely on disk.
#[derive(Clone)]
pub struct SpoolSink {
    webhook: WebhookSink,
    spool: Spool,
    spooled: mpsc::UnboundedSender<worker::Spooled>,
    /// Handed out once, by [`Sink::background`].
    worker: Arc<Mutex<Option<SpoolWorker>>>,
}

impl SpoolSink {
    /// Opens the spool folder (recovering what a previous run left) and
    /// builds the webhook stack. Blocks briefly on the file system.
    ///
    /// # Errors
    /// [`OpenError`]: the folder cannot be created or read, or the HTTP
    /// client cannot be built.
    pub fn open(
        webhook: &WebhookConfig,
        config: &SpoolConfig,
        metrics: &Metrics,
    ) -> Result<Self, OpenError> {
        let (spool, recovered) = Spool::open(&config.dir, config.limits)?;
        // One attempt per call: the worker's backoff replaces retries.
        let single = WebhookConfig {
            max_retries: 0,
            ..webhook.clone()
        };
        let webhook = WebhookSink::new(&single, metrics)?;
        spool.observe_depth(metrics);
        let (sender, receiver) = mpsc::unbounded_channel();
        let worker = SpoolWorker::new(
            spool.clone(),
            webhook.clone(),
            config.clone(),
            recovered,
            receiver,
            metrics.clone(),
        );
        Ok(Self {
            webhook,
            spool,
            spooled: sender,
            worker: Arc::new(Mutex::new(Some(worker))),
        })
    }

    /// The webhook side, with the circuit breaker shared by both sides.
    pub fn webhook(&self) -> &WebhookSink {
        &self.webhook
    }

    pub fn spool(&self) -> &Spool {
        &self.spool
    }
}

impl Sink for SpoolSink {
    fn deliver(&self, item: RecipientPayload) -> BoxFuture<'static, DeliveryOutcome> {
        let request = WebhookRequest::new(&item);
        let key = request.idempotency_key().unwrap_or_default().to_owned();
        let body = request.body.clone();
        let posted = self.webhook.post(request);
        let (spool, spooled) = (self.spool.clone(), self.spooled.clone());
        Box::pin(async move {
            let error = match webhook::settle(posted.await) {
                Ok(outcome) => return outcome,
                Err(error) => error,
            };
            let requested = !matches!(error, WebhookError::BreakerOpen);
            let mut entry = SpoolEntry::new(key, body, now_ms());
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
        !self.spool.is_full()
    }

    fn background(&self, shutdown: CancellationToken) -> Option<BoxFuture<'static, ()>> {
        let worker = self
            .worker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        Some(Box::pin(worker.run(shutdown)))
    }
}
