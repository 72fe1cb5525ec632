//! Where payloads go. The stack only knows the [`Sink`] trait, so the stdout
//! sink, the webhook, the spool and test sinks plug in without touching it.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::mail::Payload;

/// One payload for one recipient, with the SHA-256 of the raw message it
/// came from (the webhook derives its idempotency key from it).
#[derive(Debug, Clone)]
pub struct RecipientPayload {
    pub payload: Payload,
    pub message_sha256: [u8; 32],
    /// The original message, kept only when a route's format sends it or
    /// its header section (`format` in `docs/routes.md`); shared by every
    /// recipient, never copied.
    pub raw: Option<bytes::Bytes>,
    /// What sinks derive from the message once for all its recipients.
    pub shared: Arc<MessageCache>,
    /// What the stack knows of the message's transaction, keyed by type,
    /// for the sinks that need it (the routes it was started under): the
    /// stack and this trait need not know each sink's kinds.
    pub transaction: Arc<http::Extensions>,
}

/// Bodies (or parts of them) a sink derives from a message once and shares
/// between every recipient's delivery, each under a name of the sink's
/// choosing (a route format's message-wide part): a message to 100
/// recipients costs its size once, not 100 times.
#[derive(Debug, Default)]
pub struct MessageCache {
    entries: std::sync::Mutex<Vec<(&'static str, bytes::Bytes)>>,
    /// Derived payloads (a route's view of the message), by a name that
    /// describes the view.
    payloads: std::sync::Mutex<Vec<(String, Payload)>>,
}

impl MessageCache {
    /// The entry `name`, made by `make` the first time it is asked for.
    pub fn get_or_insert_with(
        &self,
        name: &'static str,
        make: impl FnOnce() -> bytes::Bytes,
    ) -> bytes::Bytes {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, entry)) = entries.iter().find(|(entry, _)| *entry == name) {
            return entry.clone();
        }
        let entry = make();
        entries.push((name, entry.clone()));
        entry
    }

    /// The derived payload `name`, made by `make` the first time.
    pub fn payload_or_insert_with(&self, name: &str, make: impl FnOnce() -> Payload) -> Payload {
        let mut payloads = self
            .payloads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, payload)) = payloads.iter().find(|(entry, _)| entry == name) {
            return payload.clone();
        }
        let payload = make();
        payloads.push((name.to_owned(), payload.clone()));
        payload
    }
}

/// What became of one payload; the stack derives the end-of-data reply from
/// the outcomes of all recipients (`docs/delivery.md`). Each sink logs the
/// cause of a failure where it happens, with its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The consumer has the payload: the only outcome that allows `250`.
    Delivered,
    /// The consumer refused this message for good (`554`), with its reason.
    Rejected { reason: Option<String> },
    /// Not delivered now; the sender must retry (`451`).
    Deferred,
    /// Not delivered yet, but durably spooled: the background worker
    /// owns it now (`250`, `spool` mode).
    Spooled,
    /// Not delivered, and the spool is full or unwritable: the sender must
    /// keep the message and retry (`452 4.3.1`).
    SpoolUnavailable,
}

impl DeliveryOutcome {
    /// The one outcome that stands for several deliveries of a payload
    /// (one per route), ranked as the end-of-data reply ranks recipients
    /// (docs/delivery.md, "Several recipients"): any temporary failure
    /// first, then a full spool, a rejection, a spooled delivery;
    /// `Delivered` only when all were.
    pub fn most_urgent(outcomes: impl IntoIterator<Item = Self>) -> Self {
        let rank = |outcome: &Self| match outcome {
            Self::Deferred => 4,
            Self::SpoolUnavailable => 3,
            Self::Rejected { .. } => 2,
            Self::Spooled => 1,
            Self::Delivered => 0,
        };
        let mut worst = Self::Delivered;
        for outcome in outcomes {
            if rank(&outcome) > rank(&worst) {
                worst = outcome;
            }
        }
        worst
    }
}

/// A destination for payloads. Implementations must resolve only once the
/// payload is safely delivered (or durably stored), never before.
pub trait Sink: Send + Sync + 'static {
    fn deliver(&self, item: RecipientPayload) -> BoxFuture<'static, DeliveryOutcome>;

    /// Whether new mail can be taken now (`/ready`, `docs/http.md`). Must
    /// not depend on traffic arriving: a load balancer that took the
    /// instance out sends none.
    fn is_ready(&self) -> bool {
        true
    }

    /// Work the sink does besides answering deliveries (the spool's
    /// background worker), run by [`crate::run`] next to the listeners
    /// until `shutdown`. Handed out once; `None` when there is none.
    fn background(&self, shutdown: CancellationToken) -> Option<BoxFuture<'static, ()>> {
        let _ = shutdown;
        None
    }
}

pub type SharedSink = Arc<dyn Sink>;

/// `MAIL_LASER_WEBHOOK_URL=-`: each payload as one JSON line on stdout.
#[derive(Debug, Clone)]
pub struct StdoutSink {
    out: Arc<tokio::sync::Mutex<tokio::io::Stdout>>,
}

impl StdoutSink {
    pub fn new() -> Self {
        Self {
            out: Arc::new(tokio::sync::Mutex::new(tokio::io::stdout())),
        }
    }
}

impl Default for StdoutSink {
    fn default() -> Self {
        Self::new()
    }
}

impl Sink for StdoutSink {
    fn deliver(&self, item: RecipientPayload) -> BoxFuture<'static, DeliveryOutcome> {
        let out = self.out.clone();
        Box::pin(async move {
            let json = item.payload.to_json();
            // One lock per line keeps concurrent payloads from interleaving.
            let mut out = out.lock().await;
            let written = async {
                for piece in json.pieces() {
                    out.write_all(piece).await?;
                }
                out.write_all(b"\n").await?;
                out.flush().await
            };
            match written.await {
                Ok(()) => DeliveryOutcome::Delivered,
                Err(error) => {
                    tracing::warn!(%error, "cannot write the payload to stdout");
                    DeliveryOutcome::Deferred
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::DeliveryOutcome::{self, Deferred, Delivered, SpoolUnavailable, Spooled};

    fn rejected() -> DeliveryOutcome {
        DeliveryOutcome::Rejected {
            reason: Some("no".into()),
        }
    }

    #[test]
    fn most_urgent_ranks_as_the_reply_does() {
        assert_eq!(DeliveryOutcome::most_urgent([]), Delivered);
        assert_eq!(
            DeliveryOutcome::most_urgent([Delivered, Delivered]),
            Delivered
        );
        assert_eq!(DeliveryOutcome::most_urgent([Delivered, Spooled]), Spooled);
        assert_eq!(
            DeliveryOutcome::most_urgent([Spooled, rejected()]),
            rejected()
        );
        assert_eq!(
            DeliveryOutcome::most_urgent([rejected(), SpoolUnavailable]),
            SpoolUnavailable
        );
        assert_eq!(
            DeliveryOutcome::most_urgent([Delivered, Deferred, rejected(), SpoolUnavailable]),
            Deferred
        );
    }
}
