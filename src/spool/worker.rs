//! The background worker: retries every waiting entry through the same
//! webhook stack (and circuit breaker) as the SMTP side, with exponential
//! backoff and jitter, until it is delivered (file removed), rejected or too
//! old (moved to `dead/`).
//!
//! Lifecycle: it starts with the entries found at start, learns of new ones
//! from the [`SpoolSink`](super::SpoolSink) as they are written, and
//! re-reads the folder every `rescan` for files moved in by hand (a
//! requeued dead letter). On shutdown it starts nothing new, gives attempts
//! in flight `shutdown_grace` to finish, then abandons them: every file
//! change is one `rename` or `unlink`, so an abandoned attempt leaves its
//! file as it was, to be tried again at the next start (at least once).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::error::SpoolError;
use super::file::{SpoolEntry, now_ms};
use super::schedule::Schedule;
use super::store::{Spool, SpoolId};
use super::{SpoolConfig, Webhooks};
use crate::duration;
use crate::telemetry::{ErrorChain, Metrics};
use crate::webhook::{Backoff, WebhookError, WebhookRequest};

/// A new entry written by the SMTP side, with the requests already made.
pub(super) type Spooled = (SpoolId, u32);

/// What to do with an entry once its attempt is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Delivered, dead-lettered or gone: forget it.
    Done,
    /// Still waiting: try again after this long.
    RetryAfter(Duration),
}

pub struct SpoolWorker {
    attempts: Arc<AttemptContext>,
    config: SpoolConfig,
    recovered: Vec<SpoolId>,
    spooled: mpsc::UnboundedReceiver<Spooled>,
}

/// What one attempt needs, shared by the attempt tasks.
struct AttemptContext {
    spool: Spool,
    webhooks: Arc<dyn Webhooks>,
    backoff: Backoff,
    max_age: Duration,
    metrics: Metrics,
}

impl SpoolWorker {
    pub(super) fn new(
        spool: Spool,
        webhooks: Arc<dyn Webhooks>,
        config: SpoolConfig,
        recovered: Vec<SpoolId>,
        spooled: mpsc::UnboundedReceiver<Spooled>,
        metrics: Metrics,
    ) -> Self {
        Self {
            attempts: Arc::new(AttemptContext {
                spool,
                webhooks,
                backoff: config.backoff,
                max_age: config.max_age,
                metrics,
            }),
            config,
            recovered,
            spooled,
        }
    }

    /// Delivers until `shutdown` fires; see the module docs for the
    /// lifecycle.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut schedule = Schedule::default();
        let start = Instant::now();
        if !self.recovered.is_empty() {
            tracing::info!(
                files = self.recovered.len(),
                "delivering messages recovered from the spool"
            );
        }
        for id in std::mem::take(&mut self.recovered) {
            schedule.insert(id, start);
        }
        let concurrency = self.config.concurrency.max(1);
        let mut tasks: JoinSet<(SpoolId, Next)> = JoinSet::new();
        let mut in_flight = std::collections::HashMap::new();
        let mut rescan = tokio::time::interval_at(start + self.config.rescan, self.config.rescan);
        rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut listening = true;

        loop {
            let now = Instant::now();
            while tasks.len() < concurrency {
                let Some(id) = schedule.pop_due(now) else {
                    break;
                };
                let attempts = self.attempts.clone();
                let handle = tasks.spawn({
                    let id = id.clone();
                    async move {
                        let next = attempts.attempt(&id).await;
                        (id, next)
                    }
                });
                in_flight.insert(handle.id(), id);
            }
            let next_due = schedule.next_due().filter(|_| tasks.len() < concurrency);

            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(joined) = tasks.join_next_with_id() => match joined {
                    Ok((task, (id, next))) => {
                        in_flight.remove(&task);
                        match next {
                            Next::Done => schedule.forget(&id),
                            Next::RetryAfter(delay) => schedule.retry(id, Instant::now() + delay),
                        }
                    }
                    Err(error) => {
                        // The file is untouched; the next rescan finds it again.
                        if let Some(id) = in_flight.remove(&error.id()) {
                            tracing::error!(file = %id, %error, "spool delivery task failed");
                            schedule.forget(&id);
                        }
                    }
                },
                received = self.spooled.recv(), if listening => match received {
                    Some((id, requests)) => {
                        let delay = self.config.backoff.delay(requests.max(1));
                        schedule.insert(id, Instant::now() + delay);
                    }
                    None => listening = false,
                },
                () = sleep_until(next_due), if next_due.is_some() => {}
                _ = rescan.tick() => self.rescan(&mut schedule).await,
            }
        }

        if tasks.is_empty() {
            return;
        }
        tracing::info!(
            in_flight = tasks.len(),
            "waiting for spool deliveries in flight"
        );
        let drained = tokio::time::timeout(self.config.shutdown_grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                abandoned = tasks.len(),
                "abandoning spool deliveries in flight; they are retried at the next start"
            );
            tasks.shutdown().await;
        }
    }

    /// Picks up files that appeared without the SMTP side (requeued by hand).
    async fn rescan(&self, schedule: &mut Schedule) {
        let spool = &self.attempts.spool;
        match spool.blocking(|spool| spool.list()).await {
            Ok(ids) => {
                let now = Instant::now();
                for id in ids {
                    if !schedule.is_known(&id) {
                        tracing::info!(file = %id, "found a spool file to deliver");
                        let adopted = id.clone();
                        let _ = spool
                            .blocking(move |spool| {
                                spool.adopt(&adopted);
                                Ok(())
                            })
                            .await;
                        schedule.insert(id, now);
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot read the spool folder"),
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

// === impl AttemptContext ===

impl AttemptContext {
    /// One delivery attempt for one file, and what it leaves on disk.
    async fn attempt(&self, id: &SpoolId) -> Next {
        let span = tracing::info_span!(parent: None, "spool.delivery", "spool.file" = %id);
        self.attempt_inner(id).instrument(span).await
    }

    async fn attempt_inner(&self, id: &SpoolId) -> Next {
        let loaded = {
            let id = id.clone();
            self.spool.blocking(move |spool| spool.load(&id)).await
        };
        let mut entry = match loaded {
            Ok(entry) => entry,
            Err(error) if error.is_not_found() => return self.gone(id).await,
            Err(error @ SpoolError::Format { .. }) => {
                return self
                    .bury(
                        id,
                        &format!("unreadable: {}", ErrorChain(&error)),
                        "unreadable",
                    )
                    .await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read a spool file, will try again");
                return Next::RetryAfter(self.backoff.max);
            }
        };

        let Some(webhook) = self.webhooks.webhook(entry.header.route.as_deref()) else {
            // Its route was removed by a reload: it waits for the route to
            // come back, and expires as any undeliverable entry does.
            let route = entry.header.route.as_deref().unwrap_or("(implicit)");
            let error = format!("no route '{route}' in the routes in force");
            entry.failed(&error, false);
            return self.unsent(id, entry, &error, false).await;
        };
        let request = WebhookRequest::from_parts(
            entry.body.clone(),
            &entry.header.idempotency_key,
            entry.header.attempts.saturating_add(1),
        );
        let error = match webhook.post(request).await {
            Ok(()) => return self.delivered(id).await,
            Err(WebhookError::Rejected { status, reason }) => {
                let reason = match reason {
                    Some(reason) => format!("rejected by the webhook ({status}): {reason}"),
                    None => format!("rejected by the webhook ({status})"),
                };
                return self.bury(id, &reason, "rejected").await;
            }
            Err(error) => error,
        };

        let requested = !matches!(error, WebhookError::BreakerOpen);
        let error = ErrorChain(&error).to_string();
        entry.failed(&error, requested);
        self.unsent(id, entry, &error, requested).await
    }

    /// A failed or impossible attempt: the entry expires into `dead/`, or
    /// waits for its next attempt (with what the attempt recorded, when a
    /// request was made).
    async fn unsent(&self, id: &SpoolId, entry: SpoolEntry, error: &str, requested: bool) -> Next {
        if entry.age_ms(now_ms()) >= u64::try_from(self.max_age.as_millis()).unwrap_or(u64::MAX) {
            let last_error = entry.header.last_error.as_deref().unwrap_or_default();
            let reason = format!(
                "expired: not delivered within {} ({} attempts); last error: {last_error}",
                duration::humane(self.max_age),
                entry.header.attempts
            );
            return self.bury(id, &reason, "expired").await;
        }
        tracing::debug!(
            error,
            attempts = entry.header.attempts,
            "spooled delivery failed, will retry"
        );
        let retry = self.backoff.delay(entry.header.attempts.max(1));
        if requested {
            let updated = {
                let id = id.clone();
                self.spool
                    .blocking(move |spool| spool.update(&id, &entry))
                    .await
            };
            match updated {
                Ok(()) => {}
                Err(error) if error.is_not_found() => return self.gone(id).await,
                // Only the attempt count and last error are lost.
                Err(error) => tracing::warn!(%error, "cannot record the failed attempt"),
            }
        }
        Next::RetryAfter(retry)
    }

    async fn delivered(&self, id: &SpoolId) -> Next {
        let removed = {
            let id = id.clone();
            self.spool.blocking(move |spool| spool.remove(&id)).await
        };
        match removed {
            Ok(()) => {
                tracing::info!("spooled message delivered");
                Next::Done
            }
            Err(error) => {
                // At least once: it will be delivered again; the key lets
                // the consumer drop the repeat.
                tracing::error!(%error, "delivered, but cannot remove the spool file");
                Next::RetryAfter(self.backoff.max)
            }
        }
    }

    /// Moves the entry to `dead/` with `reason`.
    async fn bury(&self, id: &SpoolId, reason: &str, kind: &'static str) -> Next {
        let moved = {
            let (id, reason) = (id.clone(), reason.to_owned());
            self.spool
                .blocking(move |spool| spool.dead_letter(&id, &reason))
                .await
        };
        match moved {
            Ok(()) => {
                tracing::warn!(reason, "spooled message moved to the dead-letter folder");
                self.metrics.spool_dead_letter(kind);
                Next::Done
            }
            Err(error) if error.is_not_found() => self.gone(id).await,
            Err(error) => {
                tracing::error!(%error, reason, "cannot move a spool file to the dead-letter folder");
                Next::RetryAfter(self.backoff.max)
            }
        }
    }

    /// The file was removed by someone else.
    async fn gone(&self, id: &SpoolId) -> Next {
        tracing::info!("spool file is gone");
        let id = id.clone();
        let _ = self.spool.blocking(move |spool| spool.remove(&id)).await;
        Next::Done
    }
}
