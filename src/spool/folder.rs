//! The spool folder as a [`SpoolStore`]: the files ([`Spool`]) and, in
//! memory, when each is due ([`Schedule`]). The folder is one instance's:
//! the schedule is rebuilt from it at start (everything due at once) and
//! the folder is re-read every `rescan` for files moved in by hand (a
//! requeued dead letter).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::error::SpoolError;
use super::file::SpoolEntry;
use super::queue::{Claim, Finish, SpoolStore};
use super::schedule::Schedule;
use super::store::{Spool, SpoolId, Usage};
use crate::telemetry::ErrorChain;

pub struct FolderStore {
    spool: Spool,
    schedule: Mutex<Schedule>,
    /// An entry was enqueued (it may be due before the next wake-up).
    enqueued: Notify,
    rescan: Duration,
    next_rescan: Mutex<Instant>,
    /// How long an entry waits when its file cannot be read or written
    /// for a reason that may pass (the longest backoff).
    io_retry: Duration,
}

impl FolderStore {
    /// Over `spool`, with the files found at start (`recovered`) due now.
    pub fn new(
        spool: Spool,
        recovered: Vec<SpoolId>,
        rescan: Duration,
        io_retry: Duration,
    ) -> Self {
        let now = Instant::now();
        if !recovered.is_empty() {
            tracing::info!(
                files = recovered.len(),
                "delivering messages recovered from the spool"
            );
        }
        let mut schedule = Schedule::default();
        for id in recovered {
            schedule.insert(id, now);
        }
        Self {
            spool,
            schedule: Mutex::new(schedule),
            enqueued: Notify::new(),
            rescan,
            next_rescan: Mutex::new(now + rescan),
            io_retry,
        }
    }

    fn schedule(&self) -> MutexGuard<'_, Schedule> {
        self.schedule.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Picks up files that appeared without the SMTP side (requeued by
    /// hand), once every `rescan`.
    async fn rescan_if_due(&self) {
        let now = Instant::now();
        {
            let mut next = self
                .next_rescan
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if now < *next {
                return;
            }
            *next = now + self.rescan;
        }
        let ids = match self.spool.blocking(|spool| spool.list()).await {
            Ok(ids) => ids,
            Err(error) => {
                tracing::warn!(error = %ErrorChain(&error), "cannot read the spool folder");
                return;
            }
        };
        let new: Vec<SpoolId> = {
            let schedule = self.schedule();
            ids.into_iter()
                .filter(|id| !schedule.is_known(id))
                .collect()
        };
        for id in new {
            tracing::info!(file = %id, "found a spool file to deliver");
            let adopted = id.clone();
            let _ = self
                .spool
                .blocking(move |spool| {
                    spool.adopt(&adopted);
                    Ok(())
                })
                .await;
            self.schedule().insert(id, now);
        }
    }

    async fn load(&self, id: SpoolId) -> Option<Claim> {
        let loaded = {
            let id = id.clone();
            self.spool.blocking(move |spool| spool.load(&id)).await
        };
        match loaded {
            Ok(entry) => Some(Claim::Ready { id, entry }),
            Err(error) if error.is_not_found() => {
                tracing::info!(file = %id, "spool file is gone");
                self.forget(&id).await;
                None
            }
            Err(error @ SpoolError::Format { .. }) => Some(Claim::Unreadable {
                id,
                reason: format!("unreadable: {}", ErrorChain(&error)),
            }),
            Err(error) => {
                tracing::warn!(file = %id, error = %ErrorChain(&error), "cannot read a spool file, will try again");
                self.schedule().retry(id, Instant::now() + self.io_retry);
                None
            }
        }
    }

    /// Drops an entry from the schedule and the accounting (its file was
    /// removed by someone else).
    async fn forget(&self, id: &SpoolId) {
        self.schedule().forget(id);
        let id = id.clone();
        let _ = self.spool.blocking(move |spool| spool.remove(&id)).await;
    }

    fn retry_later(&self, id: &SpoolId, delay: Duration) {
        self.schedule().retry(id.clone(), Instant::now() + delay);
    }
}

impl SpoolStore for FolderStore {
    fn kind(&self) -> &'static str {
        "folder"
    }

    fn enqueue(
        &self,
        entry: SpoolEntry,
        delay: Duration,
    ) -> BoxFuture<'_, Result<SpoolId, SpoolError>> {
        Box::pin(async move {
            let id = self
                .spool
                .blocking(move |spool| spool.store(&entry))
                .await?;
            self.schedule().insert(id.clone(), Instant::now() + delay);
            self.enqueued.notify_one();
            Ok(id)
        })
    }

    fn claim(&self, max: usize) -> BoxFuture<'_, Vec<Claim>> {
        Box::pin(async move {
            self.rescan_if_due().await;
            let due: Vec<SpoolId> = {
                let mut schedule = self.schedule();
                let now = Instant::now();
                std::iter::from_fn(|| schedule.pop_due(now))
                    .take(max)
                    .collect()
            };
            let mut claims = Vec::with_capacity(due.len());
            for id in due {
                claims.extend(self.load(id).await);
            }
            claims
        })
    }

    fn finish(&self, id: &SpoolId, finish: Finish) -> BoxFuture<'_, Result<(), SpoolError>> {
        let id = id.clone();
        Box::pin(async move {
            let file = id.clone();
            let written = match finish {
                Finish::Delivered => self.spool.blocking(move |spool| spool.remove(&file)).await,
                Finish::Dead { reason } => {
                    self.spool
                        .blocking(move |spool| spool.dead_letter(&file, &reason))
                        .await
                }
                Finish::Retry {
                    entry,
                    requested,
                    delay,
                } => {
                    if requested {
                        let updated = self
                            .spool
                            .blocking(move |spool| spool.update(&file, &entry))
                            .await;
                        match updated {
                            Err(error) if error.is_not_found() => {
                                self.forget(&id).await;
                                return Ok(());
                            }
                            // Only the attempt count and last error are lost.
                            Err(error) => tracing::warn!(
                                error = %ErrorChain(&error),
                                "cannot record the failed attempt"
                            ),
                            Ok(()) => {}
                        }
                    }
                    self.retry_later(&id, delay);
                    return Ok(());
                }
            };
            match written {
                Ok(()) => {
                    self.schedule().forget(&id);
                    Ok(())
                }
                Err(error) if error.is_not_found() => {
                    tracing::info!(file = %id, "spool file is gone");
                    self.forget(&id).await;
                    Ok(())
                }
                Err(error) => {
                    // At least once: it is tried again, and the key lets
                    // the consumer drop a repeat.
                    self.retry_later(&id, self.io_retry);
                    Err(error)
                }
            }
        })
    }

    fn release(&self, id: &SpoolId) -> BoxFuture<'_, ()> {
        // In memory only: the file stays; the next rescan (or start)
        // finds it again.
        self.schedule().forget(id);
        Box::pin(async {})
    }

    fn wait(&self) -> BoxFuture<'_, ()> {
        let next_due = self.schedule().next_due();
        let next_rescan = *self
            .next_rescan
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let wake = next_due.map_or(next_rescan, |due| due.min(next_rescan));
        Box::pin(async move {
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                () = self.enqueued.notified() => {}
            }
        })
    }

    fn usage(&self) -> Usage {
        self.spool.usage()
    }

    fn is_ready(&self) -> bool {
        !self.spool.is_full()
    }
}
