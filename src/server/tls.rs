//! The TLS server configuration (STARTTLS and the implicit-TLS port): PEM
//! files when configured, otherwise a self-signed certificate generated at
//! start (SAN `localhost` and the configured hostname).
//!
//! Certificate files are reloaded without a restart ([`CertReload`]): when
//! their contents change (polled) and on `SIGHUP`. The acceptor picks the certificate at each handshake from one
//! swappable slot, so new sessions get the new certificate and sessions
//! already in TLS keep theirs. A reload that fails (unreadable PEM, a key
//! that does not match) keeps the certificate in use and says why.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::{CryptoProvider, aws_lc_rs};
use tokio_rustls::rustls::pki_types::pem::{Error as PemError, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

use crate::telemetry::{ErrorChain, Metrics};

/// Where the TLS certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain and key; `None` generates a self-signed pair.
    pub pem_files: Option<(PathBuf, PathBuf)>,
    /// Extra SAN (besides `localhost`) for the self-signed certificate:
    /// `MAIL_LASER_HOSTNAME`, or the machine's host name.
    pub hostname: Option<String>,
    /// `MAIL_LASER_TLS_RELOAD_INTERVAL`: how often the PEM files are
    /// checked for a change; `None`: only on `SIGHUP`.
    pub reload_interval: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("MAIL_LASER_TLS_CERT: cannot read certificates from {path}")]
    Certificate {
        path: String,
        source: tokio_rustls::rustls::pki_types::pem::Error,
    },
    #[error("MAIL_LASER_TLS_KEY: cannot read a private key from {path}")]
    Key {
        path: String,
        source: tokio_rustls::rustls::pki_types::pem::Error,
    },
    #[error(
        "cannot generate a self-signed certificate (set MAIL_LASER_TLS_CERT and MAIL_LASER_TLS_KEY instead)"
    )]
    Generate(#[from] rcgen::Error),
    #[error(
        "MAIL_LASER_TLS_CERT / MAIL_LASER_TLS_KEY: the certificate and key cannot be used together"
    )]
    Rustls(#[from] tokio_rustls::rustls::Error),
}

/// The server's TLS: the acceptor every handshake uses, and the reloader
/// of its certificate files (none for a self-signed certificate).
#[derive(Clone)]
pub struct ServerTls {
    pub acceptor: TlsAcceptor,
    pub reload: Option<CertReload>,
}

/// Builds the acceptor once at start.
///
/// # Errors
/// Unreadable PEM files, or a certificate/key pair rustls refuses.
pub fn acceptor(config: &TlsConfig) -> Result<TlsAcceptor, TlsError> {
    load(config).map(|tls| tls.acceptor)
}

/// Builds the acceptor and, for PEM files, their reloader.
///
/// # Errors
/// As [`acceptor`].
pub fn load(config: &TlsConfig) -> Result<ServerTls, TlsError> {
    let provider = Arc::new(aws_lc_rs::default_provider());
    let (files, certified) = match &config.pem_files {
        Some((cert, key)) => {
            let files = PemFiles {
                cert: cert.clone(),
                key: key.clone(),
            };
            let contents = files.read()?;
            let certified = files.certified_key(&contents, &provider)?;
            (Some((files, Some(contents.fingerprint()))), certified)
        }
        None => {
            let (chain, key) = self_signed(config.hostname.as_deref())?;
            (None, CertifiedKey::from_der(chain, key, &provider)?)
        }
    };
    let current = Arc::new(CurrentCert(RwLock::new(Arc::new(certified))));
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(current.clone());
    let reload = files.map(|(files, seen)| CertReload {
        files,
        current,
        provider,
        interval: config.reload_interval,
        seen: Arc::new(Mutex::new(seen)),
        requested: Arc::new(Notify::new()),
    });
    Ok(ServerTls {
        acceptor: TlsAcceptor::from(Arc::new(server)),
        reload,
    })
}

// === impl CurrentCert ===

/// The certificate new handshakes get.
struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl CurrentCert {
    fn get(&self) -> Arc<CertifiedKey> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, certified: CertifiedKey) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(certified);
    }
}

impl fmt::Debug for CurrentCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CurrentCert")
    }
}

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

// === impl PemFiles ===

/// Largest PEM file read: a chain of a few certificates is a few KB.
const MAX_PEM_FILE: u64 = 1024 * 1024;

#[derive(Debug, Clone)]
struct PemFiles {
    cert: PathBuf,
    key: PathBuf,
}

/// Both files' octets, read once: what is checked for a change is what is
/// parsed.
struct PemContents {
    cert: Vec<u8>,
    key: Vec<u8>,
}

/// A SHA-256 over both files' contents: any change shows, including one
/// that keeps the length and lands within the file system's timestamp
/// granularity (a rename-based swap, a Kubernetes secret update, a
/// certificate renewed by a script).
type Fingerprint = [u8; 32];

impl PemFiles {
    fn read(&self) -> Result<PemContents, TlsError> {
        let cert = read_bounded(&self.cert).map_err(|source| TlsError::Certificate {
            path: self.cert.display().to_string(),
            source,
        })?;
        let key = read_bounded(&self.key).map_err(|source| TlsError::Key {
            path: self.key.display().to_string(),
            source,
        })?;
        Ok(PemContents { cert, key })
    }

    fn certified_key(
        &self,
        contents: &PemContents,
        provider: &CryptoProvider,
    ) -> Result<CertifiedKey, TlsError> {
        let chain = parse_chain(&self.cert, &contents.cert)?;
        let key = PrivateKeyDer::from_pem_slice(&contents.key).map_err(|source| TlsError::Key {
            path: self.key.display().to_string(),
            source,
        })?;
        Ok(CertifiedKey::from_der(chain, key, provider)?)
    }
}

impl PemContents {
    fn fingerprint(&self) -> Fingerprint {
        use sha2::{Digest, Sha256};
        let mut digest = Sha256::new();
        for part in [&self.cert, &self.key] {
            digest.update((part.len() as u64).to_be_bytes());
            digest.update(part);
        }
        digest.finalize().into()
    }
}

/// A file's octets, at most [`MAX_PEM_FILE`] of them.
fn read_bounded(path: &Path) -> Result<Vec<u8>, PemError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(PemError::Io)?;
    let mut octets = Vec::new();
    file.take(MAX_PEM_FILE + 1)
        .read_to_end(&mut octets)
        .map_err(PemError::Io)?;
    if octets.len() as u64 > MAX_PEM_FILE {
        return Err(PemError::SectionTooLarge);
    }
    Ok(octets)
}

// === impl CertReload ===

/// Reloads the certificate files into the acceptor: [`CertReload::run`]
/// polls them and waits for [`CertReload::request`] (`SIGHUP`).
#[derive(Clone)]
pub struct CertReload {
    files: PemFiles,
    current: Arc<CurrentCert>,
    provider: Arc<CryptoProvider>,
    interval: Option<Duration>,
    /// The files' contents when they were last tried (used or not), `None`
    /// while they cannot be read: a bad file is reported once, not at
    /// every poll.
    seen: Arc<Mutex<Option<Fingerprint>>>,
    requested: Arc<Notify>,
}

impl fmt::Debug for CertReload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertReload")
            .field("files", &self.files)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// How a reload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    /// The new certificate is in use.
    Replaced,
    /// The files did not change since they were last read.
    Unchanged,
    /// The files could not be used; the certificate in use stays.
    Failed,
}

impl CertReload {
    /// Asks for a reload now, changed files or not (`SIGHUP`).
    pub fn request(&self) {
        self.requested.notify_one();
    }

    /// Reloads on a change (every `interval`) or a request until
    /// `shutdown`, counting each attempt in `maillaser_tls_reload_total`.
    pub async fn run(self, metrics: Metrics, shutdown: CancellationToken) {
        loop {
            let forced = tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.requested.notified() => true,
                () = sleep_or_never(self.interval) => false,
            };
            let this = self.clone();
            let reloaded = tokio::task::spawn_blocking(move || this.reload(forced)).await;
            match reloaded {
                Ok(Reloaded::Replaced) => metrics.tls_reload("success"),
                Ok(Reloaded::Failed) | Err(_) => metrics.tls_reload("failure"),
                Ok(Reloaded::Unchanged) => {}
            }
        }
    }

    /// Reads the files and, if they changed (or `forced`), swaps the
    /// certificate in. Blocking: file reads.
    pub fn reload(&self, forced: bool) -> Reloaded {
        let certified = self.files.read().and_then(|contents| {
            let fingerprint = Some(contents.fingerprint());
            {
                let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
                if !forced && *seen == fingerprint {
                    return Ok(None);
                }
                *seen = fingerprint;
            }
            self.files
                .certified_key(&contents, &self.provider)
                .map(Some)
        });
        match certified {
            Ok(None) => Reloaded::Unchanged,
            Ok(Some(certified)) => {
                self.current.set(certified);
                tracing::info!(
                    cert = %self.files.cert.display(),
                    key = %self.files.key.display(),
                    "TLS certificate reloaded: new sessions use it"
                );
                Reloaded::Replaced
            }
            Err(error) => {
                let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
                // An unreadable file (mid-swap, say) is retried at every
                // poll but reported once.
                let unreadable = matches!(
                    error,
                    TlsError::Certificate {
                        source: PemError::Io(_),
                        ..
                    } | TlsError::Key {
                        source: PemError::Io(_),
                        ..
                    }
                );
                if unreadable && seen.is_none() && !forced {
                    return Reloaded::Unchanged;
                }
                if unreadable {
                    *seen = None;
                }
                tracing::warn!(
                    error = %ErrorChain(&error),
                    "TLS certificate reload failed: keeping the certificate in use"
                );
                Reloaded::Failed
            }
        }
    }
}

async fn sleep_or_never(interval: Option<Duration>) {
    match interval {
        Some(interval) => tokio::time::sleep(interval).await,
        None => std::future::pending().await,
    }
}

type PemPair = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn self_signed(hostname: Option<&str>) -> Result<PemPair, TlsError> {
    let mut names = vec!["localhost".to_owned()];
    names.extend(hostname.map(str::to_owned));
    let certified = rcgen::generate_simple_self_signed(names)?;
    let key = PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    Ok((vec![certified.cert.der().clone()], key))
}

fn parse_chain(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |source| TlsError::Certificate {
        path: path.display().to_string(),
        source,
    };
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(error)?;
    if chain.is_empty() {
        return Err(error(PemError::NoItemsFound));
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_acceptor_builds() {
        let config = TlsConfig {
            pem_files: None,
            hostname: Some("mx.example".into()),
            reload_interval: None,
        };
        assert!(acceptor(&config).is_ok());
    }

    #[test]
    fn pem_files_round_trip() {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let dir = std::env::temp_dir().join(format!("mail-laser-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
        let config = TlsConfig {
            pem_files: Some((cert.clone(), key)),
            hostname: None,
            reload_interval: None,
        };
        assert!(acceptor(&config).is_ok());
        let missing = TlsConfig {
            pem_files: Some((dir.join("missing.pem"), cert)),
            hostname: None,
            reload_interval: None,
        };
        let Err(error) = acceptor(&missing) else {
            panic!("a missing certificate file must fail");
        };
        let error = error.to_string();
        assert!(error.starts_with("MAIL_LASER_TLS_CERT"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf, CertificateDer<'static>) {
        let certified = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
        (cert, key, certified.cert.der().clone())
    }

    /// The files are swapped: a reload takes the new pair; unchanged files
    /// are not read again; a bad file or a key that does not match keeps
    /// the pair in use.
    #[test]
    fn reload_swaps_good_files_and_keeps_the_old_certificate_otherwise() {
        let dir = std::env::temp_dir().join(format!("mail-laser-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key, first) = write_pair(&dir, "first.example");
        let tls = load(&TlsConfig {
            pem_files: Some((cert.clone(), key.clone())),
            hostname: None,
            reload_interval: None,
        })
        .unwrap();
        let reload = tls.reload.expect("PEM files are reloadable");
        let in_use = || reload.current.get().cert[0].clone();
        assert_eq!(in_use(), first);
        assert_eq!(reload.reload(false), Reloaded::Unchanged);

        let (_, _, second) = write_pair(&dir, "second.example");
        assert_eq!(reload.reload(false), Reloaded::Replaced);
        assert_eq!(in_use(), second);
        assert_eq!(reload.reload(false), Reloaded::Unchanged);

        std::fs::write(&cert, "not a certificate").unwrap();
        assert_eq!(reload.reload(false), Reloaded::Failed);
        assert_eq!(in_use(), second);
        assert_eq!(reload.reload(false), Reloaded::Unchanged, "reported once");

        // A certificate with another pair's key.
        let other = rcgen::generate_simple_self_signed(vec!["third.example".into()]).unwrap();
        std::fs::write(&cert, other.cert.pem()).unwrap();
        assert_eq!(reload.reload(false), Reloaded::Failed);
        assert_eq!(in_use(), second);
        // SIGHUP reads the files whatever their stamps say.
        std::fs::write(&key, other.signing_key.serialize_pem()).unwrap();
        assert_eq!(reload.reload(true), Reloaded::Replaced);
        assert_eq!(in_use(), other.cert.der().clone());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_self_signed_certificate_is_never_reloaded() {
        let tls = load(&TlsConfig {
            pem_files: None,
            hostname: None,
            reload_interval: Some(Duration::from_secs(1)),
        })
        .unwrap();
        assert!(tls.reload.is_none());
    }
}
