//! The spool on PostgreSQL (`MAIL_LASER_SPOOL_URL`, `docs/delivery.md`):
//! one table every instance shares, so a message accepted by one instance
//! is delivered by whichever instance is alive.
//!
//! - **Enqueue** is one `INSERT`, committed before the sender hears `250`.
//! - **Claim** leases due rows to this instance (`FOR UPDATE SKIP LOCKED`,
//!   `lease_until = now() + lease`): no two deliverers try a row at once,
//!   and a row whose instance died is claimable again once its lease has
//!   expired. Every later write checks the lease is still ours.
//! - Times are the database's (`now()`), so the instances' clocks need not
//!   agree; `first_seen_ms` (the max-age clock) is the accepting instance's.
//! - Every statement has a deadline; a database that does not answer is an
//!   error like any other (`451`/`452` for new mail, a retry for waiting
//!   mail), never a wait without end.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures_util::future::BoxFuture;
use tokio_postgres::Row;
use tokio_rustls::rustls;

use super::SpoolLimits;
use super::error::SpoolError;
use super::file::{Header, SpoolEntry};
use super::queue::{Claim, Finish, SpoolStore};
use super::store::{SpoolId, Usage};
use crate::store::AttachmentStore;
use crate::telemetry::ErrorChain;

/// The schema, in order; each runs once per database, recorded in
/// `maillaser_schema_migrations`.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../../migrations/postgres/0001_spool.sql")),
    (2, include_str!("../../migrations/postgres/0002_usage.sql")),
];

/// The waiting rows and their bytes: a scan of the whole table.
const COUNT_WAITING: &str = "SELECT count(*), coalesce(sum(octet_length(body)), 0)::bigint
                             FROM maillaser_spool WHERE dead_at IS NULL";

/// Serialises migrations of instances starting at once (an arbitrary key
/// of ours for `pg_advisory_xact_lock`).
const MIGRATION_LOCK: i64 = 0x4d61_696c_4c61_7372;

/// How long a row waits when its offloaded body cannot be fetched.
const OFFLOAD_RETRY: Duration = Duration::from_secs(30);

/// The longest any one statement may take.
const STATEMENT_DEADLINE: Duration = Duration::from_secs(10);

/// `MAIL_LASER_SPOOL_URL`: a `postgres://` URL. It holds the password, so
/// it is never printed: `Debug` and `Display` show it without.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    url: reqwest::Url,
}

impl PostgresUrl {
    /// # Errors
    /// Not a `postgres://` or `postgresql://` URL; the reason never repeats
    /// the URL (it may hold a password).
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let url = reqwest::Url::parse(text.trim())
            .map_err(|_| "a postgres://user:password@host:port/database URL")?;
        if !matches!(url.scheme(), "postgres" | "postgresql") || url.host_str().is_none() {
            return Err("a postgres://user:password@host:port/database URL");
        }
        let this = Self { url };
        this.client_config()?;
        Ok(this)
    }

    /// The connection settings, and the CA file of `sslrootcert` (libpq's
    /// parameter, which tokio-postgres does not take).
    fn client_config(&self) -> Result<(tokio_postgres::Config, Option<String>), &'static str> {
        let mut url = self.url.clone();
        let mut root_cert = None;
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .filter_map(|(key, value)| {
                if key == "sslrootcert" {
                    root_cert = Some(value.into_owned());
                    None
                } else {
                    Some((key.into_owned(), value.into_owned()))
                }
            })
            .collect();
        url.set_query(None);
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        let config = tokio_postgres::Config::from_str(url.as_str())
            .map_err(|_| "a postgres:// URL whose parameters tokio-postgres knows (sslmode, connect_timeout, …)")?;
        Ok((config, root_cert))
    }

    /// A connection pool of at most `size` connections to this database:
    /// TLS as the URL's `sslmode` and `sslrootcert` say, every wait bounded
    /// by the statement deadline. Connects lazily (the first statement).
    /// Shared by the queue ([`PostgresStore::connect`]) and the operator's
    /// commands ([`super::admin`]).
    ///
    /// # Errors
    /// [`SpoolError::Database`]: the URL's parameters or the TLS settings.
    pub(super) fn pool(&self, size: usize) -> Result<Pool, SpoolError> {
        let invalid = |reason: &'static str| SpoolError::Database {
            action: "use MAIL_LASER_SPOOL_URL",
            source: reason.into(),
        };
        let (mut client_config, root_cert) = self.client_config().map_err(invalid)?;
        if client_config.get_connect_timeout().is_none() {
            client_config.connect_timeout(STATEMENT_DEADLINE);
        }
        client_config.application_name("mail-laser");
        let tls = tls_connector(root_cert.as_deref())?;
        let manager = Manager::from_config(
            client_config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(STATEMENT_DEADLINE))
            .create_timeout(Some(STATEMENT_DEADLINE))
            .recycle_timeout(Some(STATEMENT_DEADLINE))
            .build()
            .map_err(|error| SpoolError::Database {
                action: "set up the connection pool",
                source: error.into(),
            })
    }
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.url.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("****"));
        }
        shown.set_query(None);
        f.write_str(shown.as_str())
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresUrl({self})")
    }
}

/// The PostgreSQL queue's settings.
#[derive(Debug, Clone)]
pub struct PostgresSpoolConfig {
    pub url: PostgresUrl,
    /// `MAIL_LASER_SPOOL_LEASE`: how long a claimed row is this instance's.
    /// Longer than the longest webhook attempt, so a live instance never
    /// loses a lease mid-attempt.
    pub lease: Duration,
    /// How often the deliverers look for due rows.
    pub poll: Duration,
    /// Connections per instance.
    pub pool_size: usize,
    /// Bodies larger than this go to the object store when one is
    /// configured (`MAIL_LASER_S3_*`), the row keeping their key.
    pub offload: Option<BodyOffload>,
}

/// Where large spooled bodies go instead of the row.
#[derive(Debug, Clone)]
pub struct BodyOffload {
    pub store: AttachmentStore,
    /// `MAIL_LASER_SPOOL_INLINE_MAX`: larger bodies are offloaded.
    pub inline_max: u64,
}

pub struct PostgresStore {
    pool: Pool,
    /// This instance, in `lease_owner`.
    owner: String,
    lease: Duration,
    poll: Duration,
    limits: SpoolLimits,
    /// As of the last poll; `enqueue` adds to it.
    usage: Mutex<Usage>,
    /// Whether the last statement reached the database.
    reachable: AtomicBool,
    offload: Option<BodyOffload>,
}

impl PostgresStore {
    /// Connects, and brings the schema up to date. Fails when the database
    /// cannot be reached within the deadline (a start-up error).
    ///
    /// # Errors
    /// [`SpoolError::Database`].
    pub async fn connect(
        config: &PostgresSpoolConfig,
        limits: SpoolLimits,
    ) -> Result<Arc<Self>, SpoolError> {
        let pool = config.url.pool(config.pool_size)?;
        let owner = format!(
            "{}:{}:{:08x}",
            hostname::get()
                .ok()
                .and_then(|name| name.into_string().ok())
                .unwrap_or_else(|| "mail-laser".into()),
            std::process::id(),
            fastrand::u32(..)
        );
        let store = Arc::new(Self {
            pool,
            owner,
            lease: config.lease,
            poll: config.poll,
            limits,
            usage: Mutex::new(Usage::default()),
            reachable: AtomicBool::new(true),
            offload: config.offload.clone(),
        });
        store.migrate().await?;
        store.refresh_usage().await?;
        Ok(store)
    }

    /// Runs the migrations this database has not had, under a lock, in one
    /// transaction.
    async fn migrate(&self) -> Result<(), SpoolError> {
        self.with_deadline("migrate the schema", async {
            let mut client = self.pool.get().await.map_err(boxed)?;
            let transaction = client.transaction().await.map_err(boxed)?;
            transaction
                .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await
                .map_err(boxed)?;
            transaction
                .batch_execute(
                    "CREATE TABLE IF NOT EXISTS maillaser_schema_migrations (
                         version integer PRIMARY KEY,
                         applied_at timestamptz NOT NULL DEFAULT now())",
                )
                .await
                .map_err(boxed)?;
            let applied: Vec<i32> = transaction
                .query("SELECT version FROM maillaser_schema_migrations", &[])
                .await
                .map_err(boxed)?
                .iter()
                .map(|row| row.get(0))
                .collect();
            for (version, sql) in MIGRATIONS {
                if applied.contains(version) {
                    continue;
                }
                transaction.batch_execute(sql).await.map_err(boxed)?;
                transaction
                    .execute(
                        "INSERT INTO maillaser_schema_migrations (version) VALUES ($1)",
                        &[version],
                    )
                    .await
                    .map_err(boxed)?;
                tracing::info!(version, "PostgreSQL spool schema migrated");
            }
            transaction.commit().await.map_err(boxed)
        })
        .await
    }

    /// What is waiting, for the limits, `/ready` and the depth gauge.
    /// Counting scans the table (tens of milliseconds at 100,000 rows), so
    /// the whole cluster counts at most twice per poll interval: the
    /// instance that finds the shared count older than half an interval
    /// takes its row (`SKIP LOCKED`: never waiting for another counter),
    /// counts and writes it; the others read it.
    async fn refresh_usage(&self) -> Result<(), SpoolError> {
        let stale_after = self.poll.as_secs_f64() / 2.0;
        let row = self
            .with_deadline("count the waiting messages", async {
                let mut client = self.pool.get().await.map_err(boxed)?;
                let transaction = client.transaction().await.map_err(boxed)?;
                let due = transaction
                    .query_opt(
                        "SELECT 1 FROM maillaser_spool_usage
                         WHERE counted_at <= now() - make_interval(secs => $1)
                         FOR UPDATE SKIP LOCKED",
                        &[&stale_after],
                    )
                    .await
                    .map_err(boxed)?;
                let counted = if due.is_some() {
                    let count = format!(
                        "UPDATE maillaser_spool_usage SET (files, bytes) = ({COUNT_WAITING}),
                         counted_at = now() RETURNING files, bytes"
                    );
                    Some(transaction.query_one(&count, &[]).await.map_err(boxed)?)
                } else {
                    transaction
                        .query_opt("SELECT files, bytes FROM maillaser_spool_usage", &[])
                        .await
                        .map_err(boxed)?
                };
                let row = match counted {
                    Some(row) => row,
                    // The shared row is gone (removed by hand): count here.
                    None => transaction
                        .query_one(COUNT_WAITING, &[])
                        .await
                        .map_err(boxed)?,
                };
                transaction.commit().await.map_err(boxed)?;
                Ok(row)
            })
            .await?;
        let (files, bytes): (i64, i64) = (row.get(0), row.get(1));
        *self.usage.lock().unwrap_or_else(PoisonError::into_inner) = Usage {
            files: u64::try_from(files).unwrap_or(0),
            bytes: u64::try_from(bytes).unwrap_or(0),
        };
        Ok(())
    }

    /// Runs one database operation within [`STATEMENT_DEADLINE`], keeping
    /// track of whether the database answers.
    async fn with_deadline<T>(
        &self,
        action: &'static str,
        work: impl Future<Output = Result<T, Box<dyn std::error::Error + Send + Sync>>>,
    ) -> Result<T, SpoolError> {
        let result = within_deadline(action, work).await;
        self.reachable.store(result.is_ok(), Ordering::Relaxed);
        result
    }

    fn lease_seconds(&self) -> f64 {
        self.lease.as_secs_f64()
    }

    /// Runs `sql` (an update of row `$1` guarded by `lease_owner = $2`)
    /// with `params` after those two; warns when the lease was lost.
    async fn update_claimed(
        &self,
        id: &SpoolId,
        action: &'static str,
        sql: &'static str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<(), SpoolError> {
        let Some(row) = id.row() else {
            return Ok(());
        };
        let owner = self.owner.as_str();
        let mut all: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&row, &owner];
        all.extend_from_slice(params);
        let changed = self
            .with_deadline(action, async {
                let client = self.pool.get().await.map_err(boxed)?;
                client.execute(sql, &all).await.map_err(boxed)
            })
            .await?;
        if changed == 0 {
            // Our lease expired and another instance has the row: it
            // decides now (the consumer may see it twice, same key).
            tracing::warn!(entry = %id, action, "the lease on a spooled message was lost");
        }
        Ok(())
    }

    /// A claimed row as a [`Claim`], its body fetched from the object
    /// store when it was offloaded. A body that fails its checksum (edited
    /// by hand, damaged) is buried unread; one the object store cannot
    /// give now waits (`None`: the row is rescheduled).
    async fn claim_of(&self, row: &Row) -> Option<Claim> {
        let id = SpoolId::from_row(row.get("id"));
        let key: Option<String> = row.get("body_key");
        let body = match (&key, &self.offload) {
            (None, _) => Bytes::from(row.get::<_, Vec<u8>>("body")),
            (Some(key), Some(offload)) => match offload.store.get(key).await {
                Ok(body) => body,
                Err(error) => {
                    tracing::warn!(entry = %id, error = %ErrorChain(&error), "cannot fetch an offloaded body, will try again");
                    self.reschedule(&id, OFFLOAD_RETRY).await;
                    return None;
                }
            },
            (Some(key), None) => {
                return Some(Claim::Unreadable {
                    id,
                    reason: format!(
                        "unreadable: the body is in the object store ({key}), and none is configured (MAIL_LASER_S3_*)"
                    ),
                });
            }
        };
        Some(match SpoolEntry::from_parts(header_of(row), body) {
            Ok(entry) => Claim::Ready { id, entry },
            Err(error) => Claim::Unreadable {
                id,
                reason: format!("unreadable: {}", ErrorChain(&error)),
            },
        })
    }

    /// Releases a claimed row, due again after `delay`.
    async fn release_until(&self, id: &SpoolId, delay: Duration) -> Result<(), SpoolError> {
        let delay = delay.as_secs_f64();
        self.update_claimed(
            id,
            "reschedule a message",
            "UPDATE maillaser_spool
             SET next_attempt_at = now() + make_interval(secs => $3),
                 lease_owner = NULL, lease_until = NULL
             WHERE id = $1 AND lease_owner = $2",
            &[&delay],
        )
        .await
    }

    /// [`Self::release_until`], a failure only logged.
    async fn reschedule(&self, id: &SpoolId, delay: Duration) {
        if let Err(error) = self.release_until(id, delay).await {
            // The lease expires on its own.
            tracing::warn!(entry = %id, error = %ErrorChain(&error), "cannot reschedule a message");
        }
    }

    /// Deletes a delivered row (while the lease is ours); its offloaded
    /// body's key, if it had one.
    async fn remove_delivered(&self, id: &SpoolId) -> Result<Option<String>, SpoolError> {
        let Some(row) = id.row() else {
            return Ok(None);
        };
        let removed = self
            .with_deadline("remove a delivered message", async {
                let client = self.pool.get().await.map_err(boxed)?;
                client
                    .query_opt(
                        "DELETE FROM maillaser_spool WHERE id = $1 AND lease_owner = $2
                         RETURNING body_key",
                        &[&row, &self.owner],
                    )
                    .await
                    .map_err(boxed)
            })
            .await?;
        match removed {
            Some(row) => Ok(row.get(0)),
            None => {
                tracing::warn!(entry = %id, "the lease on a spooled message was lost");
                Ok(None)
            }
        }
    }

    /// Removes a delivered message's offloaded body. A failure leaves an
    /// object nothing refers to (a bucket lifecycle rule removes it).
    async fn delete_offloaded(&self, key: &str) {
        if let Some(offload) = &self.offload
            && let Err(error) = offload.store.delete(key).await
        {
            tracing::warn!(error = %ErrorChain(&error), "cannot remove a delivered message's body from the object store");
        }
    }
}

impl SpoolStore for PostgresStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn enqueue(
        &self,
        entry: SpoolEntry,
        delay: Duration,
    ) -> BoxFuture<'_, Result<SpoolId, SpoolError>> {
        Box::pin(async move {
            let body = entry.body.to_bytes();
            {
                let usage = *self.usage.lock().unwrap_or_else(PoisonError::into_inner);
                if usage.files >= self.limits.max_files
                    || usage.bytes.saturating_add(body.len() as u64) > self.limits.max_bytes
                {
                    return Err(SpoolError::Full {
                        files: usage.files,
                        bytes: usage.bytes,
                    });
                }
            }
            let header = &entry.header;
            let first_seen = i64::try_from(header.first_seen_ms).unwrap_or(i64::MAX);
            let attempts = i32::try_from(header.attempts).unwrap_or(i32::MAX);
            let sha256 = entry.body_sha256();
            let delay = delay.as_secs_f64();
            // A large body goes to the object store first: the row that
            // names it is committed only once it is there.
            let (body_in_row, body_key) = match &self.offload {
                Some(offload) if body.len() as u64 > offload.inline_max => {
                    let content_type = header.content_type.as_deref().unwrap_or("application/json");
                    let stored = offload
                        .store
                        .put(Some("spool-body"), content_type, body.clone())
                        .await
                        .map_err(|source| SpoolError::Database {
                            action: "store a large body in the object store",
                            source: Box::new(source),
                        })?;
                    (Bytes::new(), Some(stored.key))
                }
                _ => (body.clone(), None),
            };
            let row = self
                .with_deadline("store a message", async {
                    let client = self.pool.get().await.map_err(boxed)?;
                    client
                        .query_one(
                            "INSERT INTO maillaser_spool
                               (idempotency_key, route, body, body_sha256, first_seen_ms,
                                attempts, last_error, next_attempt_at, content_type, body_key)
                             VALUES ($1, $2, $3, $4, $5, $6, $7,
                                     now() + make_interval(secs => $8), $9, $10)
                             RETURNING id",
                            &[
                                &header.idempotency_key,
                                &header.route,
                                &body_in_row.as_ref(),
                                &sha256,
                                &first_seen,
                                &attempts,
                                &header.last_error,
                                &delay,
                                &header.content_type,
                                &body_key,
                            ],
                        )
                        .await
                        .map_err(boxed)
                })
                .await?;
            {
                let mut usage = self.usage.lock().unwrap_or_else(PoisonError::into_inner);
                usage.files += 1;
                usage.bytes += body.len() as u64;
            }
            Ok(SpoolId::from_row(row.get(0)))
        })
    }

    fn claim(&self, max: usize) -> BoxFuture<'_, Vec<Claim>> {
        Box::pin(async move {
            let limit = i64::try_from(max).unwrap_or(i64::MAX);
            let lease = self.lease_seconds();
            let claimed = self
                .with_deadline("claim due messages", async {
                    let client = self.pool.get().await.map_err(boxed)?;
                    client
                        .query(
                            "UPDATE maillaser_spool
                             SET lease_owner = $1, lease_until = now() + make_interval(secs => $2)
                             WHERE id IN (
                               SELECT id FROM maillaser_spool
                               WHERE dead_at IS NULL AND next_attempt_at <= now()
                                 AND (lease_until IS NULL OR lease_until < now())
                               ORDER BY next_attempt_at
                               LIMIT $3
                               FOR UPDATE SKIP LOCKED)
                             RETURNING id, idempotency_key, route, body, body_sha256,
                                       first_seen_ms, attempts, last_error, content_type,
                                       body_key",
                            &[&self.owner, &lease, &limit],
                        )
                        .await
                        .map_err(boxed)
                })
                .await;
            match claimed {
                Ok(rows) => {
                    let mut claims = Vec::with_capacity(rows.len());
                    for row in &rows {
                        claims.extend(self.claim_of(row).await);
                    }
                    claims
                }
                Err(error) => {
                    tracing::warn!(error = %ErrorChain(&error), "cannot claim spooled messages, will try again");
                    Vec::new()
                }
            }
        })
    }

    fn finish(&self, id: &SpoolId, finish: Finish) -> BoxFuture<'_, Result<(), SpoolError>> {
        let id = id.clone();
        let leaves = matches!(finish, Finish::Delivered | Finish::Dead { .. });
        Box::pin(async move {
            let finished = match finish {
                Finish::Delivered => {
                    let removed = self.remove_delivered(&id).await;
                    if let Ok(Some(key)) = &removed {
                        self.delete_offloaded(key).await;
                    }
                    removed.map(|_| ())
                }
                Finish::Dead { reason } => {
                    self.update_claimed(
                        &id,
                        "keep a dead letter",
                        "UPDATE maillaser_spool
                         SET dead_at = now(), dead_reason = $3, lease_owner = NULL, lease_until = NULL
                         WHERE id = $1 AND lease_owner = $2",
                        &[&reason],
                    )
                    .await
                }
                Finish::Retry {
                    entry,
                    requested,
                    delay: retry_delay,
                } => {
                    let delay = retry_delay.as_secs_f64();
                    if requested {
                        let attempts = i32::try_from(entry.header.attempts).unwrap_or(i32::MAX);
                        self.update_claimed(
                            &id,
                            "record a failed attempt",
                            "UPDATE maillaser_spool
                             SET attempts = $3, last_error = $4,
                                 next_attempt_at = now() + make_interval(secs => $5),
                                 lease_owner = NULL, lease_until = NULL
                             WHERE id = $1 AND lease_owner = $2",
                            &[&attempts, &entry.header.last_error, &delay],
                        )
                        .await
                    } else {
                        self.release_until(&id, retry_delay).await
                    }
                }
            };
            if finished.is_ok() && leaves {
                // Until the next count corrects it.
                let mut usage = self.usage.lock().unwrap_or_else(PoisonError::into_inner);
                usage.files = usage.files.saturating_sub(1);
            }
            finished
        })
    }

    fn release(&self, id: &SpoolId) -> BoxFuture<'_, ()> {
        let id = id.clone();
        Box::pin(async move {
            let released = self
                .update_claimed(
                    &id,
                    "release a message",
                    "UPDATE maillaser_spool SET lease_owner = NULL, lease_until = NULL
                     WHERE id = $1 AND lease_owner = $2",
                    &[],
                )
                .await;
            if let Err(error) = released {
                // The lease expires on its own.
                tracing::warn!(entry = %id, error = %ErrorChain(&error), "cannot release a spooled message");
            }
        })
    }

    fn wait(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            tokio::time::sleep(self.poll).await;
            if let Err(error) = self.refresh_usage().await {
                tracing::warn!(error = %ErrorChain(&error), "the PostgreSQL spool does not answer");
            }
        })
    }

    fn usage(&self) -> Usage {
        *self.usage.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_ready(&self) -> bool {
        let usage = self.usage();
        self.reachable.load(Ordering::Relaxed)
            && usage.files < self.limits.max_files
            && usage.bytes < self.limits.max_bytes
    }
}

/// A claimed row's metadata as a spool [`Header`].
fn header_of(row: &Row) -> Header {
    Header {
        idempotency_key: row.get("idempotency_key"),
        first_seen_ms: u64::try_from(row.get::<_, i64>("first_seen_ms")).unwrap_or(0),
        attempts: u32::try_from(row.get::<_, i32>("attempts")).unwrap_or(0),
        last_error: row.get("last_error"),
        body_sha256: Some(row.get("body_sha256")),
        route: row.get("route"),
        content_type: row.get("content_type"),
    }
}

/// Runs one database operation within [`STATEMENT_DEADLINE`].
pub(super) async fn within_deadline<T>(
    action: &'static str,
    work: impl Future<Output = Result<T, Box<dyn std::error::Error + Send + Sync>>>,
) -> Result<T, SpoolError> {
    match tokio::time::timeout(STATEMENT_DEADLINE, work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(SpoolError::Database { action, source }),
        Err(elapsed) => Err(SpoolError::Database {
            action,
            source: Box::new(elapsed),
        }),
    }
}

pub(super) fn boxed(
    error: impl std::error::Error + Send + Sync + 'static,
) -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(error)
}

/// rustls on aws-lc-rs: the server's certificate is checked against
/// `root_cert` (the URL's `sslrootcert`) or the platform's roots. Whether
/// TLS is used at all is the URL's `sslmode`.
fn tls_connector(
    root_cert: Option<&str>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, SpoolError> {
    let failed = |source: Box<dyn std::error::Error + Send + Sync>| SpoolError::Database {
        action: "set up TLS (sslrootcert)",
        source,
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| failed(error.into()))?;
    let config = match root_cert {
        Some(path) => {
            use rustls::pki_types::{CertificateDer, pem::PemObject};
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path).map_err(|error| failed(error.into()))? {
                roots
                    .add(cert.map_err(|error| failed(error.into()))?)
                    .map_err(|error| failed(error.into()))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => {
            use rustls_platform_verifier::BuilderVerifierExt;
            builder
                .with_platform_verifier()
                .map_err(|error| failed(error.into()))?
                .with_no_client_auth()
        }
    };
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}
