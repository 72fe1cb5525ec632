//! Why a spool operation did not happen.

use std::io;
use std::path::PathBuf;

use super::file::FormatError;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A cap from [`SpoolLimits`](super::SpoolLimits) is reached: the sender
    /// is told `452 4.3.1` and keeps the message.
    #[error("spool is full ({files} files, {bytes} bytes)")]
    Full { files: u64, bytes: u64 },
    /// The disk said no (unwritable folder, no space, I/O error).
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// A file in the spool folder is not a spool file we can read.
    #[error("{} is not a spool file", path.display())]
    Format { path: PathBuf, source: FormatError },
    /// The PostgreSQL queue did not answer as it should (unreachable, an
    /// error, or no answer within the deadline).
    #[error("PostgreSQL spool: cannot {action}")]
    Database {
        action: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The blocking task doing the file work did not finish (runtime
    /// shutting down).
    #[error("spool task did not finish")]
    Task(#[from] tokio::task::JoinError),
}

impl SpoolError {
    pub(super) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }

    /// The file is gone (removed by hand, or already delivered).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}
