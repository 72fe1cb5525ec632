//! The spool folder: durable writes, removal, dead letters, and the count of
//! what is in it. Every state change is one `rename` or one `unlink`, so a
//! crash at any point leaves each message either where it was or where it
//! was going, never half-written under a name the worker reads.
//!
//! Layout of `MAIL_LASER_SPOOL_DIR`:
//!
//! ```text
//! 1700000000123-9f86d081884c7d65.msg    waiting: first-seen ms, random, one per recipient
//! .tmp-0123456789abcdef                  a write in progress (a crash leftover at start)
//! dead/1700000000123-9f86d081884c7d65.msg      given up on
//! dead/1700000000123-9f86d081884c7d65.reason   why, one line
//! ```

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use bytes::Bytes;

use super::SpoolLimits;
use super::error::SpoolError;
use super::file::{FormatError, SpoolEntry};

/// Prefix of files being written; never read, removed at start.
const TEMP_PREFIX: &str = ".tmp-";
/// Suffix of spooled deliveries.
const SUFFIX: &str = ".msg";
/// The dead-letter folder inside the spool folder (same file system, so a
/// move is a `rename`).
pub const DEAD_DIR: &str = "dead";

/// The file name of one spooled delivery. Names sort by first-seen time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpoolId(String);

impl SpoolId {
    fn generate(first_seen_ms: u64) -> Self {
        Self(format!(
            "{first_seen_ms:013}-{:016x}{SUFFIX}",
            fastrand::u64(..)
        ))
    }

    /// A name found in the folder, if it is one of ours to deliver.
    fn from_file_name(name: &str) -> Option<Self> {
        (name.ends_with(SUFFIX) && !name.starts_with('.')).then(|| Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A PostgreSQL row's id.
    pub(super) fn from_row(id: i64) -> Self {
        Self(id.to_string())
    }

    /// The PostgreSQL row this id names, if it names one.
    pub(super) fn row(&self) -> Option<i64> {
        self.0.parse().ok()
    }

    #[cfg(test)]
    pub(crate) fn for_tests(name: &str) -> Self {
        Self(name.to_owned())
    }

    fn reason_name(&self) -> String {
        format!("{}.reason", self.0.trim_end_matches(SUFFIX))
    }
}

impl std::fmt::Display for SpoolId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Files and bytes waiting in the spool (not counting `dead/`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub files: u64,
    pub bytes: u64,
}

/// The waiting entries this process knows of, with their sizes: exact
/// accounting, so a file seen both by a rescan and by the writer that put
/// it there is counted once.
#[derive(Debug, Default)]
struct Ledger {
    sizes: HashMap<SpoolId, u64>,
    bytes: u64,
}

impl Ledger {
    fn usage(&self) -> Usage {
        Usage {
            files: self.sizes.len() as u64,
            bytes: self.bytes,
        }
    }

    fn set(&mut self, id: &SpoolId, len: u64) {
        let old = self.sizes.insert(id.clone(), len).unwrap_or(0);
        self.bytes = (self.bytes + len).saturating_sub(old);
    }

    fn forget(&mut self, id: &SpoolId) {
        if let Some(len) = self.sizes.remove(id) {
            self.bytes = self.bytes.saturating_sub(len);
        }
    }
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    dead: PathBuf,
    limits: SpoolLimits,
    ledger: Mutex<Ledger>,
}

/// A handle on the spool folder; clones share it. The methods block (file
/// system calls and `fsync`): async callers use [`Spool::blocking`].
#[derive(Debug, Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

impl Spool {
    /// Opens (creating if needed) the folder and `dead/`, removes temporary
    /// files left by a crash mid-write, and counts what is waiting.
    /// Returns the handle and the waiting files, oldest first.
    ///
    /// # Errors
    /// The folder cannot be created or read.
    pub fn open(dir: &Path, limits: SpoolLimits) -> Result<(Self, Vec<SpoolId>), SpoolError> {
        let dead = dir.join(DEAD_DIR);
        fs::create_dir_all(&dead).map_err(SpoolError::io("create", &dead))?;
        // Mail is private: only MailLaser's own user may list or read it.
        for folder in [dir, dead.as_path()] {
            restrict_to_owner(folder)?;
        }
        remove_temporaries(&dead)?;
        remove_temporaries(dir)?;
        // Refuse an unwritable folder now rather than with a 452 for the
        // first message that needs it.
        let probe = dir.join(".tmp-write-probe");
        fs::write(&probe, b"").map_err(SpoolError::io("write to", dir))?;
        fs::remove_file(&probe).map_err(SpoolError::io("write to", dir))?;
        let mut ledger = Ledger::default();
        let mut waiting = Vec::new();
        for (id, len) in list(dir)? {
            ledger.set(&id, len);
            waiting.push(id);
        }
        waiting.sort();
        let spool = Self {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                dead,
                limits,
                ledger: Mutex::new(ledger),
            }),
        };
        Ok((spool, waiting))
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn usage(&self) -> Usage {
        self.lock().usage()
    }

    /// Whether a new message would be refused by the caps.
    pub fn is_full(&self) -> bool {
        let usage = self.usage();
        let limits = self.inner.limits;
        usage.files >= limits.max_files || usage.bytes >= limits.max_bytes
    }

    /// Runs blocking spool work off the async workers.
    ///
    /// # Errors
    /// What `work` returns, or [`SpoolError::Task`] when the runtime
    /// dropped the task.
    pub async fn blocking<T, F>(&self, work: F) -> Result<T, SpoolError>
    where
        F: FnOnce(&Spool) -> Result<T, SpoolError> + Send + 'static,
        T: Send + 'static,
    {
        let spool = self.clone();
        tokio::task::spawn_blocking(move || work(&spool))
            .await
            .map_err(SpoolError::Task)?
    }

    /// Writes a new entry durably: temporary file, `fsync`, `rename` into
    /// place, `fsync` of the folder. Only when this returns `Ok` may the
    /// sender be told `250`.
    ///
    /// # Errors
    /// [`SpoolError::Full`] over a cap; [`SpoolError::Io`] when the disk
    /// refuses (the temporary file is removed).
    pub fn store(&self, entry: &SpoolEntry) -> Result<SpoolId, SpoolError> {
        let bytes = entry.encode();
        let id = SpoolId::generate(entry.header.first_seen_ms);
        self.reserve(&id, bytes.len() as u64)?;
        if let Err(error) = write_and_rename(&self.inner.dir, id.as_str(), &bytes) {
            self.lock().forget(&id);
            return Err(error);
        }
        // In place but maybe not durable: the sender gets a 4xx and resends;
        // this copy is delivered too, and the idempotency key lets the
        // consumer drop the repeat.
        sync_dir(&self.inner.dir)?;
        Ok(id)
    }

    /// Reads one entry.
    ///
    /// # Errors
    /// [`SpoolError::Io`] (see [`SpoolError::is_not_found`]) or
    /// [`SpoolError::Format`] for a file that is not a spool file.
    pub fn load(&self, id: &SpoolId) -> Result<SpoolEntry, SpoolError> {
        let path = self.path(id);
        // A link or folder under an entry's name is never followed or read:
        // a link could make the worker POST any file MailLaser can read.
        let metadata = fs::symlink_metadata(&path).map_err(SpoolError::io("read", &path))?;
        if !metadata.is_file() {
            return Err(SpoolError::Format {
                path,
                source: FormatError::NotAFile,
            });
        }
        let bytes = fs::read(&path).map_err(SpoolError::io("read", &path))?;
        SpoolEntry::decode(Bytes::from(bytes)).map_err(|source| SpoolError::Format { path, source })
    }

    /// Replaces an entry's file (new metadata) atomically.
    ///
    /// # Errors
    /// The file is gone (it is not re-created) or the disk refuses.
    pub fn update(&self, id: &SpoolId, entry: &SpoolEntry) -> Result<(), SpoolError> {
        let path = self.path(id);
        fs::metadata(&path).map_err(SpoolError::io("read", &path))?;
        let bytes = entry.encode();
        write_and_rename(&self.inner.dir, id.as_str(), &bytes)?;
        self.lock().set(id, bytes.len() as u64);
        sync_dir(&self.inner.dir)
    }

    /// Removes a delivered entry. A file already gone is not an error.
    ///
    /// # Errors
    /// The disk refuses; the file stays and is delivered again later.
    pub fn remove(&self, id: &SpoolId) -> Result<(), SpoolError> {
        let path = self.path(id);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                self.lock().forget(id);
                return Ok(());
            }
            Err(error) => return Err(SpoolError::io("remove", &path)(error)),
        }
        self.lock().forget(id);
        sync_dir(&self.inner.dir)
    }

    /// Moves an entry to `dead/`, with `reason` in a `.reason` file next to
    /// it. The reason is written first: a crash in between leaves the
    /// entry waiting (and a stale reason that the next move replaces).
    ///
    /// # Errors
    /// The entry is gone or the disk refuses; a file that was not moved
    /// stays where it is.
    pub fn dead_letter(&self, id: &SpoolId, reason: &str) -> Result<(), SpoolError> {
        let path = self.path(id);
        // The entry itself, link or folder included, is moved.
        fs::symlink_metadata(&path).map_err(SpoolError::io("read", &path))?;
        let mut text = reason.replace(['\r', '\n'], " ");
        text.push('\n');
        write_and_rename(&self.inner.dead, &id.reason_name(), text.as_bytes())?;
        let target = self.inner.dead.join(id.as_str());
        fs::rename(&path, &target).map_err(SpoolError::io("move", &path))?;
        self.lock().forget(id);
        sync_dir(&self.inner.dead)?;
        sync_dir(&self.inner.dir)
    }

    /// The waiting entries now on disk (including ones moved in by hand).
    ///
    /// # Errors
    /// The folder cannot be read.
    pub fn list(&self) -> Result<Vec<SpoolId>, SpoolError> {
        Ok(list(&self.inner.dir)?
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    }

    /// Counts an entry found on disk that this process did not write (moved
    /// in by hand, e.g. a requeued dead letter). Known entries are left as
    /// they are.
    pub fn adopt(&self, id: &SpoolId) {
        if self.lock().sizes.contains_key(id) {
            return;
        }
        if let Ok(metadata) = fs::metadata(self.path(id)) {
            let mut ledger = self.lock();
            if !ledger.sizes.contains_key(id) {
                ledger.set(id, metadata.len());
            }
        }
    }

    fn path(&self, id: &SpoolId) -> PathBuf {
        self.inner.dir.join(id.as_str())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.inner
            .ledger
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts `id` before it is written, so concurrent writers cannot
    /// together go over a cap.
    fn reserve(&self, id: &SpoolId, len: u64) -> Result<(), SpoolError> {
        let mut ledger = self.lock();
        let usage = ledger.usage();
        let limits = self.inner.limits;
        if usage.files >= limits.max_files || usage.bytes.saturating_add(len) > limits.max_bytes {
            return Err(SpoolError::Full {
                files: usage.files,
                bytes: usage.bytes,
            });
        }
        ledger.set(id, len);
        Ok(())
    }
}

/// Writes `bytes` to a fresh temporary file in `dir`, `fsync`s it and
/// renames it to `name`. The caller `fsync`s the folder. On error the
/// temporary file is removed and `name` is untouched.
///
/// The file's modification time is set from the system clock, the one
/// `first_seen_ms` comes from: the kernel stamps files from a coarse clock
/// up to a tick (4–10 ms) behind it, and a `.reason` file's time is when
/// its letter died (`spool list`, `purge --older-than`), which must never
/// read as earlier than when the letter was first seen.
fn write_and_rename(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), SpoolError> {
    let temp = dir.join(format!("{TEMP_PREFIX}{:016x}", fastrand::u64(..)));
    let written = (|| {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(&temp)
            .map_err(SpoolError::io("create", &temp))?;
        file.write_all(bytes)
            .map_err(SpoolError::io("write", &temp))?;
        file.set_modified(SystemTime::now())
            .map_err(SpoolError::io("set the time of", &temp))?;
        file.sync_all().map_err(SpoolError::io("fsync", &temp))?;
        let target = dir.join(name);
        fs::rename(&temp, &target).map_err(SpoolError::io("rename into place", &target))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written
}

/// Makes a folder's entries (a rename, an unlink) durable.
fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(SpoolError::io("fsync", dir))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Makes `folder` readable and writable by its owner only (0700).
fn restrict_to_owner(folder: &Path) -> Result<(), SpoolError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(folder, fs::Permissions::from_mode(0o700))
            .map_err(SpoolError::io("restrict", folder))?;
    }
    let _ = folder;
    Ok(())
}

/// Waiting entries in `dir` with their sizes.
fn list(dir: &Path) -> Result<Vec<(SpoolId, u64)>, SpoolError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(SpoolError::io("read", dir))? {
        let entry = entry.map_err(SpoolError::io("read", dir))?;
        let Some(id) = entry.file_name().to_str().and_then(SpoolId::from_file_name) else {
            continue;
        };
        // Not following links: anything under an entry's name is listed
        // (a link or folder counts 0 bytes), so the worker dead-letters it
        // instead of skipping it for ever.
        match entry.metadata() {
            Ok(metadata) if metadata.is_file() => found.push((id, metadata.len())),
            Ok(_) => found.push((id, 0)),
            Err(_) => {}
        }
    }
    Ok(found)
}

/// Removes what a crash mid-write left behind. Safe only before anything
/// else writes to the folder, which is why [`Spool::open`] does it.
fn remove_temporaries(dir: &Path) -> Result<(), SpoolError> {
    for entry in fs::read_dir(dir).map_err(SpoolError::io("read", dir))? {
        let entry = entry.map_err(SpoolError::io("read", dir))?;
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            let path = entry.path();
            tracing::info!(path = %path.display(), "removing an unfinished spool write");
            fs::remove_file(&path).map_err(SpoolError::io("remove", &path))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh folder under the system temporary folder, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(format!(
                "maillaser-store-{}-{:016x}",
                std::process::id(),
                fastrand::u64(..)
            ));
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const ROOMY: SpoolLimits = SpoolLimits {
        max_files: 100,
        max_bytes: 1 << 20,
    };

    fn entry(body: &'static str) -> SpoolEntry {
        SpoolEntry::new(
            "k".repeat(64),
            Bytes::from_static(body.as_bytes()),
            1_700_000_000_000,
        )
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn store_leaves_exactly_one_complete_file() {
        let tmp = TempDir::new();
        let (spool, waiting) = Spool::open(&tmp.0, ROOMY).unwrap();
        assert!(waiting.is_empty());
        let entry = entry("{\"a\":1}");
        let id = spool.store(&entry).unwrap();
        assert!(id.as_str().starts_with("1700000000000-") && id.as_str().ends_with(".msg"));
        assert_eq!(
            names(&tmp.0),
            [id.as_str(), DEAD_DIR],
            "no temporary file left"
        );
        assert_eq!(fs::read(tmp.0.join(id.as_str())).unwrap(), entry.encode());
        assert_eq!(spool.load(&id).unwrap(), entry);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(tmp.0.join(id.as_str()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "payloads are private");
        }
        let usage = spool.usage();
        assert_eq!(usage.files, 1);
        assert_eq!(usage.bytes, entry.encode().len() as u64);
    }

    #[test]
    fn open_removes_crash_leftovers_and_counts_the_rest() {
        let tmp = TempDir::new();
        let (spool, _) = Spool::open(&tmp.0, ROOMY).unwrap();
        let first = spool.store(&entry("{}")).unwrap();
        let second = spool.store(&entry("{\"b\":2}")).unwrap();
        fs::write(
            tmp.0.join(".tmp-0123456789abcdef"),
            b"maillaser-spool 1\n{\"idem",
        )
        .unwrap();
        fs::write(tmp.0.join(DEAD_DIR).join(".tmp-00"), b"half a reason").unwrap();
        fs::write(tmp.0.join("README"), b"not ours").unwrap();
        drop(spool);

        let (spool, mut waiting) = Spool::open(&tmp.0, ROOMY).unwrap();
        let mut expected = vec![first, second];
        expected.sort();
        waiting.sort();
        assert_eq!(waiting, expected);
        assert_eq!(spool.usage().files, 2);
        assert!(!names(&tmp.0).iter().any(|n| n.starts_with(".tmp-")));
        assert!(names(&tmp.0.join(DEAD_DIR)).is_empty());
        assert!(
            tmp.0.join("README").exists(),
            "foreign files are left alone"
        );
    }

    #[test]
    fn caps_refuse_before_writing() {
        let tmp = TempDir::new();
        let limits = SpoolLimits {
            max_files: 2,
            max_bytes: 1 << 20,
        };
        let (spool, _) = Spool::open(&tmp.0, limits).unwrap();
        spool.store(&entry("{}")).unwrap();
        assert!(!spool.is_full());
        let id = spool.store(&entry("{}")).unwrap();
        assert!(spool.is_full());
        assert!(matches!(
            spool.store(&entry("{}")),
            Err(SpoolError::Full { files: 2, .. })
        ));
        spool.remove(&id).unwrap();
        assert!(!spool.is_full());

        let tiny = SpoolLimits {
            max_files: 10,
            max_bytes: 50,
        };
        let tmp = TempDir::new();
        let (spool, _) = Spool::open(&tmp.0, tiny).unwrap();
        assert!(matches!(
            spool.store(&entry(
                "{\"this body is long enough to go over fifty bytes\":1}"
            )),
            Err(SpoolError::Full { .. })
        ));
        assert_eq!(spool.usage(), Usage::default());
        assert_eq!(names(&tmp.0), [DEAD_DIR]);
    }

    #[test]
    fn an_unwritable_folder_is_an_error_and_counts_nothing() {
        let tmp = TempDir::new();
        let (spool, _) = Spool::open(&tmp.0, ROOMY).unwrap();
        // Works as root too: the folder is now a file.
        fs::remove_dir_all(&tmp.0).unwrap();
        fs::write(&tmp.0, b"").unwrap();
        let error = spool.store(&entry("{}")).unwrap_err();
        assert!(
            matches!(
                error,
                SpoolError::Io {
                    action: "create",
                    ..
                }
            ),
            "{error}"
        );
        assert_eq!(spool.usage(), Usage::default());
        let _ = fs::remove_file(&tmp.0);
    }

    #[test]
    fn update_rewrites_in_place_and_never_recreates() {
        let tmp = TempDir::new();
        let (spool, _) = Spool::open(&tmp.0, ROOMY).unwrap();
        let mut entry = entry("{}");
        let id = spool.store(&entry).unwrap();
        entry.failed("webhook answered 503", true);
        spool.update(&id, &entry).unwrap();
        assert_eq!(spool.load(&id).unwrap(), entry);
        assert_eq!(spool.usage().bytes, entry.encode().len() as u64);
        assert_eq!(names(&tmp.0).len(), 2);

        fs::remove_file(tmp.0.join(id.as_str())).unwrap();
        assert!(spool.update(&id, &entry).unwrap_err().is_not_found());
        assert_eq!(names(&tmp.0), [DEAD_DIR], "a removed file stays removed");
    }

    #[test]
    fn dead_letters_move_with_their_reason() {
        let tmp = TempDir::new();
        let (spool, _) = Spool::open(&tmp.0, ROOMY).unwrap();
        let entry = entry("{}");
        let id = spool.store(&entry).unwrap();
        let dying = SystemTime::now();
        spool
            .dead_letter(&id, "rejected by the webhook (422): no\nsuch queue")
            .unwrap();
        assert_eq!(names(&tmp.0), [DEAD_DIR]);
        let dead = tmp.0.join(DEAD_DIR);
        let stem = id.as_str().trim_end_matches(".msg");
        assert_eq!(
            names(&dead),
            [id.as_str().to_owned(), format!("{stem}.reason")]
        );
        let reason = dead.join(format!("{stem}.reason"));
        assert_eq!(
            fs::read_to_string(&reason).unwrap(),
            "rejected by the webhook (422): no such queue\n"
        );
        // When it died, by the clock `first_seen_ms` comes from (the
        // kernel's own file clock trails it).
        let died = fs::metadata(&reason).unwrap().modified().unwrap();
        assert!(died >= dying, "{died:?} < {dying:?}");
        assert_eq!(fs::read(dead.join(id.as_str())).unwrap(), entry.encode());
        assert_eq!(spool.usage(), Usage::default());
        assert!(spool.list().unwrap().is_empty());
        assert!(spool.dead_letter(&id, "again").unwrap_err().is_not_found());
    }

    #[test]
    fn remove_and_list() {
        let tmp = TempDir::new();
        let (spool, _) = Spool::open(&tmp.0, ROOMY).unwrap();
        let id = spool.store(&entry("{}")).unwrap();
        assert_eq!(spool.list().unwrap(), std::slice::from_ref(&id));
        spool.remove(&id).unwrap();
        assert!(spool.list().unwrap().is_empty());
        spool.remove(&id).unwrap();
        assert_eq!(spool.usage(), Usage::default());
    }

    #[cfg(unix)]
    #[test]
    fn the_folders_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = TempDir::new();
        fs::create_dir_all(&tmp.0).unwrap();
        fs::set_permissions(&tmp.0, fs::Permissions::from_mode(0o755)).unwrap();
        let (_spool, _) = Spool::open(&tmp.0, ROOMY).unwrap();
        for folder in [tmp.0.clone(), tmp.0.join(DEAD_DIR)] {
            let mode = fs::metadata(&folder).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", folder.display());
        }
    }
}
