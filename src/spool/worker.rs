//! The background worker: retries every waiting entry through the same
//! webhook stack (and circuit breaker) as the SMTP side, with exponential
//! backoff and jitter, until it is delivered (removed), rejected or too old
//! (a dead letter). Where entries wait is the store's business
//! ([`SpoolStore`]): the worker claims what is due, up to `concurrency` at
//! once, and reports each outcome.
//!
//! On shutdown it starts nothing new, gives attempts in flight
//! `shutdown_grace` to finish, then abandons and releases them: a store
//! changes an entry only when told the outcome, so an abandoned attempt
//! leaves it as it was, to be tried again (at least once).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderValue;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::file::{SpoolEntry, now_ms};
use super::queue::{Claim, Finish, SpoolStore};
use super::store::SpoolId;
use super::{SpoolConfig, Webhooks};
use crate::duration;
use crate::telemetry::{ErrorChain, Metrics};
use crate::webhook::{Backoff, Body, WebhookError, WebhookRequest};

pub struct SpoolWorker {
    attempts: Arc<AttemptContext>,
    concurrency: usize,
    shutdown_grace: Duration,
}

/// What one attempt needs, shared by the attempt tasks.
struct AttemptContext {
    store: Arc<dyn SpoolStore>,
    webhooks: Arc<dyn Webhooks>,
    backoff: Backoff,
    max_age: Duration,
    metrics: Metrics,
}

impl SpoolWorker {
    pub(super) fn new(
        store: Arc<dyn SpoolStore>,
        webhooks: Arc<dyn Webhooks>,
        config: &SpoolConfig,
        metrics: Metrics,
    ) -> Self {
        Self {
            attempts: Arc::new(AttemptContext {
                store,
                webhooks,
                backoff: config.backoff,
                max_age: config.max_age,
                metrics,
            }),
            concurrency: config.concurrency.max(1),
            shutdown_grace: config.shutdown_grace,
        }
    }

    /// Delivers until `shutdown` fires; see the module docs for the
    /// lifecycle.
    pub async fn run(self, shutdown: CancellationToken) {
        let store = self.attempts.store.clone();
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut in_flight: HashMap<tokio::task::Id, SpoolId> = HashMap::new();

        loop {
            let free = self.concurrency.saturating_sub(tasks.len());
            if free > 0 {
                for claim in store.claim(free).await {
                    let attempts = self.attempts.clone();
                    let id = match &claim {
                        Claim::Ready { id, .. } | Claim::Unreadable { id, .. } => id.clone(),
                    };
                    let handle = tasks.spawn(async move { attempts.attempt(claim).await });
                    in_flight.insert(handle.id(), id);
                }
            }
            let idle = tasks.len() < self.concurrency;
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(joined) = tasks.join_next_with_id() => match joined {
                    Ok((task, ())) => {
                        in_flight.remove(&task);
                    }
                    Err(error) => {
                        if let Some(id) = in_flight.remove(&error.id()) {
                            tracing::error!(entry = %id, %error, "spool delivery task failed");
                            store.release(&id).await;
                        }
                    }
                },
                () = store.wait(), if idle => {}
            }
        }

        if tasks.is_empty() {
            return;
        }
        tracing::info!(
            in_flight = tasks.len(),
            "waiting for spool deliveries in flight"
        );
        let drained = tokio::time::timeout(self.shutdown_grace, async {
            while let Some(joined) = tasks.join_next_with_id().await {
                let task = match &joined {
                    Ok((task, ())) => *task,
                    Err(error) => error.id(),
                };
                in_flight.remove(&task);
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                abandoned = tasks.len(),
                "abandoning spool deliveries in flight; they are tried again"
            );
            tasks.shutdown().await;
            for id in in_flight.values() {
                store.release(id).await;
            }
        }
    }
}

// === impl AttemptContext ===

impl AttemptContext {
    /// One delivery attempt for one claimed entry, and what it leaves in
    /// the store.
    async fn attempt(&self, claim: Claim) {
        let (id, finish) = match claim {
            Claim::Unreadable { id, reason } => (id, self.dead(reason, "unreadable")),
            Claim::Ready { id, entry } => {
                let span = tracing::info_span!(parent: None, "spool.delivery", "spool.entry" = %id);
                let finish = self.deliver(entry).instrument(span).await;
                (id, finish)
            }
        };
        let dead = match &finish {
            Finish::Dead { reason } => Some(reason.clone()),
            _ => None,
        };
        match self.store.finish(&id, finish).await {
            Ok(()) => {
                if let Some(reason) = dead {
                    tracing::warn!(entry = %id, reason, "spooled message moved to the dead letters");
                }
            }
            Err(error) => tracing::error!(
                entry = %id,
                error = %ErrorChain(&error),
                "cannot record the outcome of a spooled delivery; it is tried again"
            ),
        }
    }

    fn dead(&self, reason: String, kind: &'static str) -> Finish {
        self.metrics.spool_dead_letter(kind);
        Finish::Dead { reason }
    }

    async fn deliver(&self, mut entry: SpoolEntry) -> Finish {
        let Some(webhook) = self.webhooks.webhook(entry.header.route.as_deref()) else {
            // Its route was removed by a reload: it waits for the route to
            // come back, and expires as any undeliverable entry does.
            let route = entry.header.route.as_deref().unwrap_or("(implicit)");
            let error = format!("no route '{route}' in the routes in force");
            entry.failed(&error, false);
            return self.unsent(entry, &error, false, None);
        };
        let request = WebhookRequest::with_body(
            body_of(&entry),
            &entry.header.idempotency_key,
            entry.header.attempts.saturating_add(1),
        );
        let error = match webhook.post(request).await {
            Ok(()) => {
                tracing::info!("spooled message delivered");
                return Finish::Delivered;
            }
            Err(WebhookError::Rejected { status, reason }) => {
                let reason = match reason {
                    Some(reason) => format!("rejected by the webhook ({status}): {reason}"),
                    None => format!("rejected by the webhook ({status})"),
                };
                return self.dead(reason, "rejected");
            }
            Err(error) => error,
        };
        let requested = !matches!(error, WebhookError::BreakerOpen);
        let asked = webhook.asked_wait(&error);
        let error = ErrorChain(&error).to_string();
        entry.failed(&error, requested);
        self.unsent(entry, &error, requested, asked)
    }

    /// A failed or impossible attempt: the entry expires into the dead
    /// letters, or waits for its next attempt (with what the attempt
    /// recorded, when a request was made): the backoff, or longer when
    /// `asked` (the consumer's `Retry-After`, capped at an hour, or the
    /// rest of the breaker's open time).
    fn unsent(
        &self,
        entry: SpoolEntry,
        error: &str,
        requested: bool,
        asked: Option<Duration>,
    ) -> Finish {
        if entry.age_ms(now_ms()) >= u64::try_from(self.max_age.as_millis()).unwrap_or(u64::MAX) {
            let last_error = entry.header.last_error.as_deref().unwrap_or_default();
            let reason = format!(
                "expired: not delivered within {} ({} attempts); last error: {last_error}",
                duration::humane(self.max_age),
                entry.header.attempts
            );
            return self.dead(reason, "expired");
        }
        tracing::debug!(
            error,
            attempts = entry.header.attempts,
            "spooled delivery failed, will retry"
        );
        let backoff = self.backoff.delay(entry.header.attempts.max(1));
        let delay = asked.map_or(backoff, |asked| asked.max(backoff));
        Finish::Retry {
            entry,
            requested,
            delay,
        }
    }
}

/// The body as first built: the JSON payload, or a route's drop-in format
/// under the `Content-Type` it was spooled with.
fn body_of(entry: &SpoolEntry) -> Body {
    let content_type = entry
        .header
        .content_type
        .as_deref()
        .and_then(|content_type| HeaderValue::from_str(content_type).ok());
    match content_type {
        Some(content_type) => Body::parts(content_type, vec![entry.body.to_bytes()]),
        None => Body::json(entry.body.clone()),
    }
}
