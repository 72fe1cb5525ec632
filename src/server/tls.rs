//! The STARTTLS server configuration: PEM files when configured, otherwise a
//! self-signed certificate generated at start (SAN `localhost` and the
//! configured hostname).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Where the STARTTLS certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain and key; `None` generates a self-signed pair.
    pub pem_files: Option<(PathBuf, PathBuf)>,
    /// Extra SAN (besides `localhost`) for the self-signed certificate:
    /// `MAIL_LASER_HOSTNAME`, or the machine's host name.
    pub hostname: Option<String>,
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

/// Builds the acceptor once at start.
///
/// # Errors
/// Unreadable PEM files, or a certificate/key pair rustls refuses.
pub fn acceptor(config: &TlsConfig) -> Result<TlsAcceptor, TlsError> {
    let (chain, key) = match &config.pem_files {
        Some((cert, key)) => (read_chain(cert)?, read_key(key)?),
        None => self_signed(config.hostname.as_deref())?,
    };
    let server = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(TlsAcceptor::from(Arc::new(server)))
}

type CertifiedKey = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn self_signed(hostname: Option<&str>) -> Result<CertifiedKey, TlsError> {
    let mut names = vec!["localhost".to_owned()];
    names.extend(hostname.map(str::to_owned));
    let certified = rcgen::generate_simple_self_signed(names)?;
    let key = PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    Ok((vec![certified.cert.der().clone()], key))
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |source| TlsError::Certificate {
        path: path.display().to_string(),
        source,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(error)?;
    if chain.is_empty() {
        return Err(error(
            tokio_rustls::rustls::pki_types::pem::Error::NoItemsFound,
        ));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsError::Key {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_acceptor_builds() {
        let config = TlsConfig {
            pem_files: None,
            hostname: Some("mx.example".into()),
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
        };
        assert!(acceptor(&config).is_ok());
        let missing = TlsConfig {
            pem_files: Some((dir.join("missing.pem"), cert)),
            hostname: None,
        };
        let Err(error) = acceptor(&missing) else {
            panic!("a missing certificate file must fail");
        };
        let error = error.to_string();
        assert!(error.starts_with("MAIL_LASER_TLS_CERT"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
