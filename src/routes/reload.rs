//! Live reload of the routes file (`docs/routes.md`): on `SIGHUP` and when
//! its contents change (polled). A file that does not parse or validate
//! keeps the routes in force, says why, and counts as an error; `/ready`
//! is not touched either way.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::live::{BuildRoute, Changes, LiveRoutes, RouteSet};
use super::{RouteSpec, RoutesError, file};
use crate::telemetry::{ErrorChain, Metrics};

/// A routes file larger than this is refused (it is a few KiB in practice).
const MAX_ROUTES_FILE: u64 = 4 * 1024 * 1024;

/// Checks a route's URL by the rules of `MAIL_LASER_WEBHOOK_URL`.
pub type CheckUrl = Arc<dyn Fn(&str) -> Result<reqwest::Url, String> + Send + Sync>;

/// Where the routes come from: the file and the rules its URLs follow.
#[derive(Clone)]
pub struct RouteSource {
    path: PathBuf,
    check_url: CheckUrl,
}

impl RouteSource {
    pub fn new(path: PathBuf, check_url: CheckUrl) -> Self {
        Self { path, check_url }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads and validates the file.
    ///
    /// # Errors
    /// The file cannot be read, parsed or validated.
    pub fn load(&self) -> Result<Vec<RouteSpec>, RoutesError> {
        let text = self.read()?;
        self.parse(&text)
    }

    fn read(&self) -> Result<String, RoutesError> {
        let read = || -> std::io::Result<String> {
            let mut text = String::new();
            std::fs::File::open(&self.path)?
                .take(MAX_ROUTES_FILE + 1)
                .read_to_string(&mut text)?;
            if text.len() as u64 > MAX_ROUTES_FILE {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("larger than {MAX_ROUTES_FILE} bytes"),
                ));
            }
            Ok(text)
        };
        read().map_err(|source| RoutesError::Read {
            path: self.path.clone(),
            source,
        })
    }

    fn parse(&self, text: &str) -> Result<Vec<RouteSpec>, RoutesError> {
        file::parse(&self.path, text, &*self.check_url)
    }
}

impl std::fmt::Debug for RouteSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteSource")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// What one reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// The file is as it was when last read (polling only).
    Unchanged,
    /// The new routes are in force.
    Replaced(Changes),
    /// The routes in force are kept.
    Failed,
}

/// Watches the routes file and puts each valid version in force.
pub struct RoutesReload {
    source: RouteSource,
    live: LiveRoutes,
    build: BuildRoute,
    /// How often the file is checked for a change; `None`: `SIGHUP` only.
    interval: Option<Duration>,
    seen: Mutex<Seen>,
    metrics: Metrics,
}

impl RoutesReload {
    pub fn new(
        source: RouteSource,
        live: LiveRoutes,
        build: BuildRoute,
        interval: Option<Duration>,
        metrics: Metrics,
    ) -> Self {
        let seen = source
            .read()
            .map_or(Seen::Unreadable, |text| Seen::Contents(fingerprint(&text)));
        Self {
            source,
            live,
            build,
            interval,
            seen: Mutex::new(seen),
            metrics,
        }
    }

    /// Reloads on request and on change until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        loop {
            let forced = tokio::select! {
                () = shutdown.cancelled() => return,
                () = this.live.reload_requested() => true,
                () = sleep_or_never(this.interval) => false,
            };
            let reload = this.clone();
            // File I/O off the runtime's threads.
            let _ = tokio::task::spawn_blocking(move || reload.reload(forced)).await;
        }
    }

    /// Reads the file and, when it is new (or `forced`) and valid, puts its
    /// routes in force.
    pub fn reload(&self, forced: bool) -> Reloaded {
        let read = self.source.read();
        let now = match &read {
            Ok(text) => Seen::Contents(fingerprint(text)),
            Err(_) => Seen::Unreadable,
        };
        {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            if !forced && *seen == now {
                return Reloaded::Unchanged;
            }
            *seen = now;
        }
        match read.and_then(|text| self.source.parse(&text)) {
            Ok(specs) => {
                let (routes, changes) = RouteSet::build(specs, &self.build, &self.live.current());
                let count = routes.routes().len();
                self.live.install(routes);
                self.metrics.config_reload("success");
                tracing::info!(
                    file = %self.source.path().display(),
                    routes = count,
                    added = ?changes.added,
                    changed = ?changes.changed,
                    removed = ?changes.removed,
                    "routes reloaded: new transactions use them"
                );
                Reloaded::Replaced(changes)
            }
            Err(error) => {
                self.metrics.config_reload("error");
                tracing::error!(
                    error = %ErrorChain(&error),
                    "routes file not reloaded: the routes in force stay"
                );
                Reloaded::Failed
            }
        }
    }
}

/// The file as last read: each version (valid or not) and each spell of
/// unreadability is reported once, not at every poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Contents([u8; 32]),
    Unreadable,
}

fn fingerprint(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

async fn sleep_or_never(interval: Option<Duration>) {
    match interval {
        Some(interval) => tokio::time::sleep(interval).await,
        None => std::future::pending().await,
    }
}
