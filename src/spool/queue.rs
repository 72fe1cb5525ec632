//! The boundary between the spool's behaviour (the sink and the worker:
//! when to try, what a webhook answer means) and where entries are kept:
//! the folder ([`super::folder`]) or PostgreSQL ([`super::postgres`]).
//! One set of behaviour tests runs against both.

use std::time::Duration;

use futures_util::future::BoxFuture;

use super::error::SpoolError;
use super::file::SpoolEntry;
use super::store::{SpoolId, Usage};

/// An entry leased to this instance for one attempt: no other worker (of
/// this process or, with PostgreSQL, of another instance) tries it until
/// this one reports back with [`SpoolStore::finish`] or the lease expires.
#[derive(Debug)]
pub enum Claim {
    Ready {
        id: SpoolId,
        entry: SpoolEntry,
    },
    /// Not a spool entry (a damaged file, a body that fails its checksum):
    /// the worker buries it for a human to look at.
    Unreadable {
        id: SpoolId,
        reason: String,
    },
}

/// What became of a claimed entry.
#[derive(Debug)]
pub enum Finish {
    /// The webhook has it: the entry is removed.
    Delivered,
    /// Try again after `delay`. `entry` carries the updated attempt count
    /// and last error, written only when `requested` (a request was made).
    Retry {
        entry: SpoolEntry,
        requested: bool,
        delay: Duration,
    },
    /// Given up: kept as a dead letter with `reason`.
    Dead { reason: String },
}

/// Where spooled deliveries wait. Every method is safe to call from many
/// tasks; a store keeps its own errors from losing entries (an entry whose
/// state cannot be written is tried again later: at least once).
pub trait SpoolStore: Send + Sync + 'static {
    /// The store's name in logs and metrics (`folder`, `postgres`).
    fn kind(&self) -> &'static str;

    /// Writes `entry` durably, first due after `delay`. Only `Ok` allows a
    /// `250`.
    fn enqueue(
        &self,
        entry: SpoolEntry,
        delay: Duration,
    ) -> BoxFuture<'_, Result<SpoolId, SpoolError>>;

    /// Up to `max` entries due now, each leased to the caller.
    fn claim(&self, max: usize) -> BoxFuture<'_, Vec<Claim>>;

    /// Records what became of a claimed entry and releases it.
    fn finish(&self, id: &SpoolId, finish: Finish) -> BoxFuture<'_, Result<(), SpoolError>>;

    /// Releases an entry whose attempt was abandoned (shutdown, a task that
    /// failed), so it is tried again soon, here or elsewhere.
    fn release(&self, id: &SpoolId) -> BoxFuture<'_, ()>;

    /// Resolves when [`SpoolStore::claim`] may find something new: an
    /// entry falls due, one is enqueued, or it is time to look again.
    fn wait(&self) -> BoxFuture<'_, ()>;

    /// What is waiting (not counting dead letters), as last known.
    fn usage(&self) -> Usage;

    /// Whether new entries can be taken now: room left under the limits,
    /// and the store reachable as far as is known.
    fn is_ready(&self) -> bool;
}
