//! What an operator does with the spool (`mail-laser spool`,
//! `docs/delivery.md#operating-the-spool`): list and show the waiting
//! entries and the dead letters, requeue, purge old dead letters. Apart
//! from the delivery path ([`super::SpoolStore`] and the worker): opening
//! a store here starts no worker, creates nothing and takes no lease.
//!
//! - **Folder**: the layout of `docs/delivery.md`, read and changed with
//!   the same single `rename`s and `unlink`s a person would use; a running
//!   server's rescan picks a requeued file up. Links are never followed
//!   and an ID is a plain file name (no `/`, no `..`).
//! - **PostgreSQL**: plain SQL on `maillaser_spool`, every statement within
//!   the queue's deadline. Migrations are not run: a database the server
//!   has never used has nothing in it, and stays as it is.

use std::fs;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use deadpool_postgres::Pool;
use serde::Serialize;
use tokio_postgres::Row;

use super::error::SpoolError;
use super::file::{SpoolEntry, now_ms, read_header};
use super::postgres::{PostgresUrl, boxed, within_deadline};
use super::store::DEAD_DIR;
use crate::store::AttachmentStore;
use crate::telemetry::ErrorChain;

/// Suffix of the entries' files, and of their dead-letter reasons.
const SUFFIX: &str = ".msg";
const REASON_SUFFIX: &str = ".reason";

/// Whether an entry waits to be tried or has been given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Waiting,
    Dead,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Dead => "dead",
        }
    }
}

/// One entry as listed. Times are Unix milliseconds; a field a store does
/// not know is `None` (the folder keeps due times in the running server's
/// memory, so `next_attempt_ms` is unknown there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryInfo {
    /// The folder: the file name; PostgreSQL: the row's `id`.
    pub id: String,
    pub state: State,
    /// The route whose webhook takes it; `None` for the implicit route.
    pub route: Option<String>,
    /// Webhook requests made so far.
    pub attempts: Option<u32>,
    /// When first spooled (`MAIL_LASER_SPOOL_MAX_AGE` counts from it).
    pub first_seen_ms: Option<u64>,
    /// When it is due next (waiting entries, PostgreSQL).
    pub next_attempt_ms: Option<u64>,
    /// When it became a dead letter (`purge --older-than` counts from it):
    /// PostgreSQL's `dead_at`; in the folder, when its `.reason` file was
    /// written (the file's modification time).
    pub dead_at_ms: Option<u64>,
    /// Bytes of the webhook body (of the whole file when it is not a spool
    /// file).
    pub size: u64,
    pub last_error: Option<String>,
    /// Why it was given up on (dead letters).
    pub dead_reason: Option<String>,
    pub idempotency_key: Option<String>,
    /// Why the entry cannot be read (the folder: not a spool file, a link,
    /// a folder); the other fields are then unknown.
    pub unreadable: Option<String>,
    /// PostgreSQL: the object-store key of a body too large for its row
    /// (`MAIL_LASER_SPOOL_INLINE_MAX`); `size` is then the row's 0.
    pub body_key: Option<String>,
}

/// One entry with its webhook body.
#[derive(Debug, Clone)]
pub struct Shown {
    pub info: EntryInfo,
    pub body: Bytes,
}

/// What `purge` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Purged {
    /// The dead letters removed.
    pub ids: Vec<String>,
    /// Their offloaded bodies still in the object store.
    pub objects_left: Vec<ObjectLeft>,
}

/// An offloaded body `purge` did not remove, and why: no object store is
/// configured (`MAIL_LASER_S3_*`), or removing it failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectLeft {
    pub key: String,
    pub reason: String,
}

/// What `requeue` did with one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeued {
    /// A dead letter is waiting again, due now.
    Dead,
    /// A waiting entry is due now (PostgreSQL).
    Waiting,
    /// A waiting file in the folder: it stays as it is. Its due time is in
    /// the running server's memory, which a restart resets to "now".
    AlreadyWaiting,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no entry {0}")]
    NotFound(String),
    #[error("{0:?} is not an entry ID ({1})")]
    BadId(String, &'static str),
    #[error(transparent)]
    Store(#[from] SpoolError),
    #[error("cannot read the body {key} from the object store")]
    Object {
        key: String,
        #[source]
        source: Box<crate::store::StoreError>,
    },
}

/// A spool opened for its operator.
pub enum SpoolAdmin {
    Folder(PathBuf),
    Postgres {
        url: PostgresUrl,
        pool: Pool,
        /// Where bodies too large for their row are (the server's
        /// `MAIL_LASER_S3_*`), when configured.
        objects: Option<AttachmentStore>,
    },
}

impl SpoolAdmin {
    /// The folder `dir` (`MAIL_LASER_SPOOL_DIR`); nothing is read yet.
    pub fn folder(dir: &Path) -> Self {
        Self::Folder(dir.to_owned())
    }

    /// The PostgreSQL queue at `url` (`MAIL_LASER_SPOOL_URL`), with the
    /// server's connection settings; it connects on the first command.
    /// `objects` holds the bodies offloaded from rows: `show` reads them
    /// and `purge` removes them.
    ///
    /// # Errors
    /// The URL's parameters or its TLS settings are not usable.
    pub fn postgres(
        url: &PostgresUrl,
        objects: Option<AttachmentStore>,
    ) -> Result<Self, SpoolError> {
        Ok(Self::Postgres {
            url: url.clone(),
            pool: url.pool(1)?,
            objects,
        })
    }

    /// `folder` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Folder(_) => "folder",
            Self::Postgres { .. } => "postgres",
        }
    }

    /// Where the store is, for people: the folder, or the URL without its
    /// password.
    pub fn location(&self) -> String {
        match self {
            Self::Folder(dir) => dir.display().to_string(),
            Self::Postgres { url, .. } => url.to_string(),
        }
    }

    /// Every entry: the waiting ones, then the dead letters, each oldest
    /// first.
    ///
    /// # Errors
    /// The store cannot be read.
    pub async fn list(&self) -> Result<Vec<EntryInfo>, AdminError> {
        match self {
            Self::Folder(dir) => blocking(dir, folder::list).await,
            Self::Postgres { pool, .. } => sql::list(pool).await,
        }
    }

    /// One entry and its body (an offloaded one read from the object
    /// store when one is configured; otherwise empty, `body_key` saying
    /// where it is).
    ///
    /// # Errors
    /// [`AdminError::NotFound`], [`AdminError::BadId`], the store cannot be
    /// read, or an offloaded body cannot be fetched.
    pub async fn show(&self, id: &str) -> Result<Shown, AdminError> {
        match self {
            Self::Folder(dir) => {
                let id = folder::file_name(id)?;
                blocking(dir, move |dir| folder::show(dir, &id)).await
            }
            Self::Postgres { pool, objects, .. } => {
                let mut shown = sql::show(pool, sql::row_id(id)?).await?;
                if let (Some(objects), Some(key)) = (objects, &shown.info.body_key) {
                    shown.body = objects
                        .get(key)
                        .await
                        .map_err(|source| AdminError::Object {
                            key: key.clone(),
                            source: Box::new(source),
                        })?;
                }
                Ok(shown)
            }
        }
    }

    /// Makes one entry due now, its attempts kept: a dead letter waits
    /// again.
    ///
    /// # Errors
    /// As [`SpoolAdmin::show`], or the store cannot be changed.
    pub async fn requeue(&self, id: &str) -> Result<Requeued, AdminError> {
        match self {
            Self::Folder(dir) => {
                let id = folder::file_name(id)?;
                blocking(dir, move |dir| folder::requeue(dir, &id)).await
            }
            Self::Postgres { pool, .. } => sql::requeue(pool, sql::row_id(id)?).await,
        }
    }

    /// Requeues every dead letter; returns their IDs.
    ///
    /// # Errors
    /// The store cannot be read or changed (the folder: the ones moved
    /// before the error stay moved).
    pub async fn requeue_dead(&self) -> Result<Vec<String>, AdminError> {
        match self {
            Self::Folder(dir) => blocking(dir, folder::requeue_dead).await,
            Self::Postgres { pool, .. } => sql::requeue_dead(pool).await,
        }
    }

    /// Removes the dead letters that died more than `older_than` ago, and
    /// then their offloaded bodies. Waiting entries are never touched.
    ///
    /// # Errors
    /// The store cannot be read or changed. A body that cannot be removed
    /// is no error: it is in [`Purged::objects_left`].
    pub async fn purge_dead(&self, older_than: Duration) -> Result<Purged, AdminError> {
        match self {
            Self::Folder(dir) => {
                let ids = blocking(dir, move |dir| folder::purge_dead(dir, older_than)).await?;
                Ok(Purged {
                    ids,
                    objects_left: Vec::new(),
                })
            }
            Self::Postgres { pool, objects, .. } => {
                let (ids, keys) = sql::purge_dead(pool, older_than).await?;
                let mut objects_left = Vec::new();
                for key in keys {
                    let reason = match objects {
                        Some(objects) => match objects.delete(&key).await {
                            Ok(()) => continue,
                            Err(error) => ErrorChain(&error).to_string(),
                        },
                        None => "no object store configured (MAIL_LASER_S3_BUCKET)".to_owned(),
                    };
                    objects_left.push(ObjectLeft { key, reason });
                }
                Ok(Purged { ids, objects_left })
            }
        }
    }
}

/// Runs folder work off the async workers.
async fn blocking<T: Send + 'static>(
    dir: &Path,
    work: impl FnOnce(&Path) -> Result<T, AdminError> + Send + 'static,
) -> Result<T, AdminError> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || work(&dir))
        .await
        .map_err(|error| AdminError::Store(SpoolError::Task(error)))?
}

fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

mod folder {
    use super::*;

    /// `id` as a file name in the folder: a plain name, `.msg` added when
    /// left out.
    pub(super) fn file_name(id: &str) -> Result<String, AdminError> {
        let bad = |why| Err(AdminError::BadId(id.to_owned(), why));
        if id.is_empty() {
            return bad("empty");
        }
        if id.contains(['/', '\\', '\0']) || id == "." || id == ".." {
            return bad("a file name in the spool folder, not a path");
        }
        if id.starts_with('.') {
            return bad("a spool file's name does not start with '.'");
        }
        Ok(if id.ends_with(SUFFIX) {
            id.to_owned()
        } else {
            format!("{id}{SUFFIX}")
        })
    }

    fn reason_name(name: &str) -> String {
        format!("{}{REASON_SUFFIX}", name.trim_end_matches(SUFFIX))
    }

    fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> AdminError {
        let error = SpoolError::io(action, path);
        move |source| AdminError::Store(error(source))
    }

    /// The `.msg` names in `dir`, sorted (by first-seen time).
    fn names(dir: &Path) -> Result<Vec<String>, AdminError> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir).map_err(io("read", dir))? {
            let entry = entry.map_err(io("read", dir))?;
            if let Some(name) = entry.file_name().to_str()
                && name.ends_with(SUFFIX)
                && !name.starts_with('.')
            {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// What one file says, its link or folder never followed. `None`: it
    /// is gone.
    fn info(dir: &Path, name: &str, state: State) -> Result<Option<EntryInfo>, AdminError> {
        let path = dir.join(name);
        let metadata = match fs::symlink_metadata(&path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io("read", &path)(error)),
        };
        let mut info = EntryInfo {
            id: name.to_owned(),
            state,
            route: None,
            attempts: None,
            first_seen_ms: None,
            next_attempt_ms: None,
            dead_at_ms: None,
            size: metadata.len(),
            last_error: None,
            dead_reason: None,
            idempotency_key: None,
            unreadable: None,
            body_key: None,
        };
        if state == State::Dead {
            let reason = dir.join(reason_name(name));
            if let Ok(reason_metadata) = fs::symlink_metadata(&reason)
                && reason_metadata.is_file()
            {
                info.dead_at_ms = reason_metadata.modified().ok().map(millis);
                info.dead_reason = fs::read_to_string(&reason)
                    .ok()
                    .map(|text| text.trim_end().to_owned());
            } else {
                // No reason file (removed by hand): the file's own time.
                info.dead_at_ms = metadata.modified().ok().map(millis);
            }
        }
        if !metadata.is_file() {
            info.size = 0;
            info.unreadable = Some("not a regular file (a link or a folder)".into());
            return Ok(Some(info));
        }
        let file = match fs::File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io("read", &path)(error)),
        };
        match read_header(BufReader::new(file)).map_err(io("read", &path))? {
            Ok((header, header_len)) => {
                info.size = metadata.len().saturating_sub(header_len);
                info.route = header.route;
                info.attempts = Some(header.attempts);
                info.first_seen_ms = Some(header.first_seen_ms);
                info.last_error = header.last_error;
                info.idempotency_key = Some(header.idempotency_key);
            }
            Err(error) => info.unreadable = Some(format!("not a spool file: {error}")),
        }
        Ok(Some(info))
    }

    pub(super) fn list(dir: &Path) -> Result<Vec<EntryInfo>, AdminError> {
        let dead = dir.join(DEAD_DIR);
        let mut entries = Vec::new();
        for name in names(dir)? {
            entries.extend(info(dir, &name, State::Waiting)?);
        }
        let dead_names = match fs::symlink_metadata(&dead) {
            Ok(metadata) if metadata.is_dir() => names(&dead)?,
            _ => Vec::new(),
        };
        for name in dead_names {
            entries.extend(info(&dead, &name, State::Dead)?);
        }
        Ok(entries)
    }

    /// Where `name` is: waiting, or in `dead/`.
    fn find(dir: &Path, name: &str) -> Result<(PathBuf, State), AdminError> {
        for (folder, state) in [
            (dir.to_owned(), State::Waiting),
            (dir.join(DEAD_DIR), State::Dead),
        ] {
            match fs::symlink_metadata(folder.join(name)) {
                Ok(_) => return Ok((folder, state)),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(io("read", &folder.join(name))(error)),
            }
        }
        // A folder that is not there at all is the operator's mistake, not
        // a missing entry.
        fs::read_dir(dir).map_err(io("read", dir))?;
        Err(AdminError::NotFound(name.to_owned()))
    }

    pub(super) fn show(dir: &Path, name: &str) -> Result<Shown, AdminError> {
        let (folder, state) = find(dir, name)?;
        let not_found = || AdminError::NotFound(name.to_owned());
        let info = info(&folder, name, state)?.ok_or_else(not_found)?;
        if info.unreadable.is_some() {
            return Ok(Shown {
                info,
                body: Bytes::new(),
            });
        }
        let path = folder.join(name);
        let bytes = fs::read(&path).map_err(io("read", &path))?;
        let body = match SpoolEntry::decode(Bytes::from(bytes)) {
            Ok(entry) => entry.body.to_bytes(),
            Err(error) => {
                let mut info = info;
                info.unreadable = Some(format!("not a spool file: {error}"));
                return Ok(Shown {
                    info,
                    body: Bytes::new(),
                });
            }
        };
        Ok(Shown { info, body })
    }

    /// Moves `dead/NAME` back into the folder without replacing a file of
    /// that name (a hard link, then the dead copy's removal), then removes
    /// its reason. A crash in between leaves both copies: the message is
    /// delivered, and its dead copy stays for a person to purge.
    fn revive(dir: &Path, name: &str) -> Result<(), AdminError> {
        let dead = dir.join(DEAD_DIR);
        let from = dead.join(name);
        let to = dir.join(name);
        let metadata = fs::symlink_metadata(&from).map_err(io("read", &from))?;
        if !metadata.is_file() {
            return Err(AdminError::BadId(
                name.to_owned(),
                "not a regular file (a link or a folder); move it by hand",
            ));
        }
        fs::hard_link(&from, &to).map_err(io("requeue", &from))?;
        fs::remove_file(&from).map_err(io("remove", &from))?;
        let reason = dead.join(reason_name(name));
        match fs::remove_file(&reason) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io("remove", &reason)(error)),
        }
        sync_dir(dir)?;
        sync_dir(&dead)
    }

    pub(super) fn requeue(dir: &Path, name: &str) -> Result<Requeued, AdminError> {
        match find(dir, name)? {
            (_, State::Waiting) => Ok(Requeued::AlreadyWaiting),
            (_, State::Dead) => {
                revive(dir, name)?;
                Ok(Requeued::Dead)
            }
        }
    }

    pub(super) fn requeue_dead(dir: &Path) -> Result<Vec<String>, AdminError> {
        let mut requeued = Vec::new();
        for entry in list(dir)? {
            if entry.state == State::Dead && entry.unreadable.is_none() {
                revive(dir, &entry.id)?;
                requeued.push(entry.id);
            }
        }
        Ok(requeued)
    }

    pub(super) fn purge_dead(dir: &Path, older_than: Duration) -> Result<Vec<String>, AdminError> {
        let dead = dir.join(DEAD_DIR);
        let cutoff =
            now_ms().saturating_sub(u64::try_from(older_than.as_millis()).unwrap_or(u64::MAX));
        let mut purged = Vec::new();
        for entry in list(dir)? {
            if entry.state != State::Dead || entry.dead_at_ms.is_none_or(|at| at >= cutoff) {
                continue;
            }
            // A link is removed, never what it points to; a folder stays.
            let path = dead.join(&entry.id);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(_) if fs::symlink_metadata(&path).is_ok_and(|meta| meta.is_dir()) => continue,
                Err(error) => return Err(io("remove", &path)(error)),
            }
            let reason = dead.join(reason_name(&entry.id));
            match fs::remove_file(&reason) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(io("remove", &reason)(error)),
            }
            purged.push(entry.id);
        }
        if !purged.is_empty() {
            sync_dir(&dead)?;
        }
        Ok(purged)
    }

    fn sync_dir(dir: &Path) -> Result<(), AdminError> {
        fs::File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io("fsync", dir))
    }
}

mod sql {
    use super::*;

    /// Whether the server has ever created its table here; when not, the
    /// queue is empty (and stays uncreated).
    async fn exists(pool: &Pool) -> Result<bool, AdminError> {
        Ok(within_deadline("read the queue", async {
            let client = pool.get().await.map_err(boxed)?;
            let row = client
                .query_one("SELECT to_regclass('maillaser_spool') IS NOT NULL", &[])
                .await
                .map_err(boxed)?;
            Ok(row.get::<_, bool>(0))
        })
        .await?)
    }

    pub(super) fn row_id(id: &str) -> Result<i64, AdminError> {
        id.trim()
            .parse::<i64>()
            .ok()
            .filter(|row| *row > 0)
            .ok_or_else(|| AdminError::BadId(id.to_owned(), "a row number"))
    }

    const COLUMNS: &str = "id, route, attempts, first_seen_ms,
        (extract(epoch FROM next_attempt_at) * 1000)::bigint AS next_attempt_ms,
        (extract(epoch FROM dead_at) * 1000)::bigint AS dead_at_ms,
        octet_length(body)::bigint AS size, last_error, dead_reason, idempotency_key, body_key";

    fn info(row: &Row) -> EntryInfo {
        let millis = |column: &str| {
            row.get::<_, Option<i64>>(column)
                .map(|value| u64::try_from(value).unwrap_or(0))
        };
        let dead_at_ms = millis("dead_at_ms");
        let state = if dead_at_ms.is_some() {
            State::Dead
        } else {
            State::Waiting
        };
        EntryInfo {
            id: row.get::<_, i64>("id").to_string(),
            state,
            route: row.get("route"),
            attempts: Some(u32::try_from(row.get::<_, i32>("attempts")).unwrap_or(0)),
            first_seen_ms: millis("first_seen_ms"),
            next_attempt_ms: if state == State::Waiting {
                millis("next_attempt_ms")
            } else {
                None
            },
            dead_at_ms,
            size: u64::try_from(row.get::<_, i64>("size")).unwrap_or(0),
            last_error: row.get("last_error"),
            dead_reason: row.get("dead_reason"),
            idempotency_key: row.get("idempotency_key"),
            unreadable: None,
            body_key: row.get("body_key"),
        }
    }

    async fn query(
        pool: &Pool,
        action: &'static str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, AdminError> {
        Ok(within_deadline(action, async {
            let client = pool.get().await.map_err(boxed)?;
            client.query(sql, params).await.map_err(boxed)
        })
        .await?)
    }

    pub(super) async fn list(pool: &Pool) -> Result<Vec<EntryInfo>, AdminError> {
        if !exists(pool).await? {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM maillaser_spool
             ORDER BY dead_at IS NOT NULL, first_seen_ms, id"
        );
        let rows = query(pool, "list the queue", &sql, &[]).await?;
        Ok(rows.iter().map(info).collect())
    }

    pub(super) async fn show(pool: &Pool, id: i64) -> Result<Shown, AdminError> {
        if !exists(pool).await? {
            return Err(AdminError::NotFound(id.to_string()));
        }
        let sql = format!("SELECT {COLUMNS}, body FROM maillaser_spool WHERE id = $1");
        let rows = query(pool, "read a message", &sql, &[&id]).await?;
        let row = rows
            .first()
            .ok_or_else(|| AdminError::NotFound(id.to_string()))?;
        Ok(Shown {
            info: info(row),
            body: Bytes::from(row.get::<_, Vec<u8>>("body")),
        })
    }

    /// Due now, not dead, not leased: an instance trying it at this moment
    /// loses its lease (it may deliver once more; same key).
    const REQUEUE: &str = "dead_at = NULL, dead_reason = NULL, next_attempt_at = now(),
        lease_owner = NULL, lease_until = NULL";

    pub(super) async fn requeue(pool: &Pool, id: i64) -> Result<Requeued, AdminError> {
        if !exists(pool).await? {
            return Err(AdminError::NotFound(id.to_string()));
        }
        let sql = format!(
            "WITH old AS (SELECT id, dead_at IS NOT NULL AS was_dead FROM maillaser_spool
                          WHERE id = $1 FOR UPDATE)
             UPDATE maillaser_spool SET {REQUEUE} FROM old
             WHERE maillaser_spool.id = old.id RETURNING old.was_dead"
        );
        let rows = query(pool, "requeue a message", &sql, &[&id]).await?;
        match rows.first() {
            None => Err(AdminError::NotFound(id.to_string())),
            Some(row) if row.get::<_, bool>(0) => Ok(Requeued::Dead),
            Some(_) => Ok(Requeued::Waiting),
        }
    }

    fn ids(rows: &[Row]) -> Vec<String> {
        let mut ids: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
        ids.sort_unstable();
        ids.iter().map(i64::to_string).collect()
    }

    pub(super) async fn requeue_dead(pool: &Pool) -> Result<Vec<String>, AdminError> {
        if !exists(pool).await? {
            return Ok(Vec::new());
        }
        let sql =
            format!("UPDATE maillaser_spool SET {REQUEUE} WHERE dead_at IS NOT NULL RETURNING id");
        Ok(ids(
            &query(pool, "requeue the dead letters", &sql, &[]).await?
        ))
    }

    /// The IDs removed, and the keys of their offloaded bodies.
    pub(super) async fn purge_dead(
        pool: &Pool,
        older_than: Duration,
    ) -> Result<(Vec<String>, Vec<String>), AdminError> {
        if !exists(pool).await? {
            return Ok(Default::default());
        }
        let seconds = older_than.as_secs_f64();
        let rows = query(
            pool,
            "purge dead letters",
            "DELETE FROM maillaser_spool
             WHERE dead_at IS NOT NULL AND dead_at < now() - make_interval(secs => $1)
             RETURNING id, body_key",
            &[&seconds],
        )
        .await?;
        let mut keys: Vec<String> = rows
            .iter()
            .filter_map(|row| row.get::<_, Option<String>>(1))
            .collect();
        keys.sort_unstable();
        Ok((ids(&rows), keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_a_plain_file_name() {
        assert_eq!(
            folder::file_name("1700000000123-9f86d081884c7d65").unwrap(),
            "1700000000123-9f86d081884c7d65.msg"
        );
        assert_eq!(folder::file_name("a.msg").unwrap(), "a.msg");
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "dead/a.msg",
            ".tmp-1",
            "/etc/passwd",
        ] {
            assert!(
                matches!(folder::file_name(bad), Err(AdminError::BadId(..))),
                "{bad:?}"
            );
        }
        assert!(sql::row_id("12").is_ok());
        for bad in ["", "x", "-1", "0", "1.msg"] {
            assert!(
                matches!(sql::row_id(bad), Err(AdminError::BadId(..))),
                "{bad:?}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn links_are_listed_never_followed_and_never_requeued() {
        let dir = std::env::temp_dir().join(format!("maillaser-admin-{:016x}", fastrand::u64(..)));
        fs::create_dir_all(dir.join(DEAD_DIR)).unwrap();
        let secret = dir.join("secret");
        fs::write(
            &secret,
            "maillaser-spool 1\n{\"idempotency_key\":\"k\",\"first_seen_ms\":1,\"attempts\":0}\n{}",
        )
        .unwrap();
        std::os::unix::fs::symlink(&secret, dir.join(DEAD_DIR).join("1-a.msg")).unwrap();
        let listed = folder::list(&dir).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].state, State::Dead);
        assert!(listed[0].unreadable.is_some() && listed[0].idempotency_key.is_none());
        assert!(matches!(
            folder::requeue(&dir, "1-a.msg"),
            Err(AdminError::BadId(..))
        ));
        assert!(folder::requeue_dead(&dir).unwrap().is_empty());
        assert_eq!(
            folder::purge_dead(&dir, Duration::from_secs(3600)).unwrap(),
            Vec::<String>::new()
        );
        assert!(secret.exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
