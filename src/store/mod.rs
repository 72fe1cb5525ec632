//! Attachment and raw-message storage in S3 or an S3-compatible server,
//! over Apache Arrow's `object_store`.
//!
//! [`AttachmentStore::put`] uploads one object under a fresh, unguessable
//! key ([`key`]) and returns where it is: its plain URL and, when
//! [`StoreSettings::presign_ttl`] is set, a presigned GET URL a webhook
//! consumer can fetch without credentials.
//!
//! The SMTP client waits while we upload, and a failure becomes a `451`: so
//! every request has a deadline ([`StoreSettings::timeout`]) and retries are
//! few and bounded by that same time.

mod args;
mod error;
mod key;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::signer::{Method, Signer};
use object_store::{
    Attribute, Attributes, BackoffConfig, ClientConfigKey, ObjectStore, ObjectStoreExt, PutOptions,
    PutPayload, RetryConfig,
};

pub use args::S3Args;
pub use error::StoreError;
pub use key::{DEFAULT_NAME, MAX_NAME_BYTES, safe_name};

/// Retries after a failed request (5xx, connection errors): the client
/// waits for its reply, so two at most.
const MAX_RETRIES: usize = 2;

/// Connecting may take at most this long (or the whole timeout if shorter),
/// leaving time for a retry when a connection attempt hangs.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Deadline of one request to the store (an upload, a read, a removal):
/// an SMTP client waits for its reply meanwhile.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest validity S3 accepts for a presigned URL.
pub const MAX_PRESIGN_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Settings for the attachment store (`MAIL_LASER_S3_*` variables;
/// credentials from the standard `AWS_*` variables, so none are here).
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub bucket: String,
    /// e.g. `us-east-1`; part of every signature.
    pub region: String,
    /// An S3-compatible server's URL, addressed path-style
    /// (`{endpoint}/{bucket}/{key}`). `http://` is allowed only here, when
    /// given explicitly. `None`: AWS, virtual-hosted style.
    pub endpoint: Option<String>,
    /// Put in front of every key as it is (`""`, or e.g. `mail/`).
    pub key_prefix: String,
    /// When set, each put also returns a presigned GET URL valid this long
    /// (at most [`MAX_PRESIGN_TTL`]).
    pub presign_ttl: Option<Duration>,
    /// Deadline of one upload request, and the time after which no retry
    /// starts.
    pub timeout: Duration,
}

/// Where an uploaded object is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// `{prefix}{YYYY}/{MM}/{DD}/{32 hex}/{safe name}`.
    pub key: String,
    /// The object's plain (unsigned) URL: with an endpoint, path-style
    /// `{endpoint}/{bucket}/{key}`; without,
    /// `https://{bucket}.s3.{region}.amazonaws.com/{key}`; key characters
    /// outside `[A-Za-z0-9._~/-]` percent-encoded.
    pub url: String,
    /// A GET URL that needs no credentials, when
    /// [`StoreSettings::presign_ttl`] is set.
    pub presigned_url: Option<String>,
}

/// An S3 bucket that takes attachments. Cheap to clone (one shared client).
#[derive(Clone)]
pub struct AttachmentStore {
    inner: Arc<Inner>,
}

struct Inner {
    s3: AmazonS3,
    settings: StoreSettings,
    /// [`key::bucket_url`], computed once.
    bucket_url: String,
}

// === impl AttachmentStore ===

impl AttachmentStore {
    /// Builds the client with the credentials of the environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
    /// web identity, container or instance credentials, through
    /// `AmazonS3Builder::from_env`). The settings win over any `AWS_*`
    /// variable for bucket, region, endpoint, addressing style, plain HTTP,
    /// timeouts and retries; other transport variables (`AWS_PROXY_URL`, …)
    /// still apply. No network I/O.
    ///
    /// # Errors
    /// Invalid settings (endpoint, prefix, presign TTL) or a client that
    /// cannot be built.
    pub fn new(settings: StoreSettings) -> Result<Self, StoreError> {
        Self::build(settings, AmazonS3Builder::from_env())
    }

    /// As [`new`](Self::new), but with the given static credentials and
    /// nothing read from the environment: for tests (which must not set
    /// process-wide variables while other tests run) and for callers that
    /// hold credentials from elsewhere.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn with_credentials(
        settings: StoreSettings,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> Result<Self, StoreError> {
        let builder = AmazonS3Builder::new()
            .with_access_key_id(access_key_id)
            .with_secret_access_key(secret_access_key);
        Self::build(settings, builder)
    }

    fn build(settings: StoreSettings, builder: AmazonS3Builder) -> Result<Self, StoreError> {
        check_prefix(&settings.key_prefix)?;
        if let Some(ttl) = settings.presign_ttl
            && ttl > MAX_PRESIGN_TTL
        {
            return Err(StoreError::PresignTtl {
                seconds: ttl.as_secs(),
            });
        }
        let allow_http = match &settings.endpoint {
            Some(endpoint) => endpoint_is_http(endpoint)?,
            None => false,
        };
        let bucket_url = key::bucket_url(
            &settings.bucket,
            &settings.region,
            settings.endpoint.as_deref(),
        );
        // The endpoint is always given, so that an `AWS_ENDPOINT` or
        // `AWS_ENDPOINT_URL_S3` in the environment cannot send the objects
        // somewhere else than `StoredObject::url` says. Virtual-hosted:
        // the endpoint names the bucket itself.
        let (endpoint, virtual_hosted) = match &settings.endpoint {
            Some(endpoint) => (endpoint.trim_end_matches('/').to_owned(), false),
            None => (bucket_url.clone(), true),
        };
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(1),
                base: 2.0,
            },
            max_retries: MAX_RETRIES,
            retry_timeout: settings.timeout,
        };
        let s3 = builder
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_endpoint(&endpoint)
            .with_config(AmazonS3ConfigKey::S3Endpoint, &endpoint)
            .with_virtual_hosted_style_request(virtual_hosted)
            .with_s3_express(false)
            .with_allow_http(allow_http)
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
                nanos(settings.timeout),
            )
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                nanos(settings.timeout.min(MAX_CONNECT_TIMEOUT)),
            )
            .with_retry(retry)
            .build()
            .map_err(StoreError::Build)?;
        Ok(Self {
            inner: Arc::new(Inner {
                s3,
                settings,
                bucket_url,
            }),
        })
    }

    /// The settings the store was built with.
    pub fn settings(&self) -> &StoreSettings {
        &self.inner.settings
    }

    /// Uploads one object under a fresh key. `name` is the attachment's file
    /// name, if any (made safe by [`safe_name`] for the key's last segment);
    /// `content_type` becomes the object's `Content-Type`.
    ///
    /// # Errors
    /// No key could be made (clock, randomness), the upload failed or timed
    /// out (after at most [`MAX_RETRIES`] retries within the timeout), or the
    /// presigned URL could not be made.
    #[tracing::instrument(name = "store.put", skip_all, fields(bytes = bytes.len(), key))]
    pub async fn put(
        &self,
        name: Option<&str>,
        content_type: &str,
        bytes: Bytes,
    ) -> Result<StoredObject, StoreError> {
        let key = self.fresh_key(name)?;
        tracing::Span::current().record("key", key.as_str());
        // The prefix was checked in `build` and the rest of the key is made
        // of safe segments, so this parse cannot fail; map it all the same.
        let path = Path::parse(&key).map_err(|source| StoreError::Prefix {
            prefix: self.inner.settings.key_prefix.clone(),
            source,
        })?;
        let options = PutOptions {
            attributes: Attributes::from_iter([(Attribute::ContentType, content_type.to_owned())]),
            ..PutOptions::default()
        };
        self.inner
            .s3
            .put_opts(&path, PutPayload::from_bytes(bytes), options)
            .await
            .map_err(|source| StoreError::Upload {
                key: key.clone(),
                source,
            })?;
        let presigned_url = match self.inner.settings.presign_ttl {
            Some(ttl) => Some(
                self.inner
                    .s3
                    .signed_url(Method::GET, &path, ttl)
                    .await
                    .map_err(|source| StoreError::Presign {
                        key: key.clone(),
                        source,
                    })?
                    .to_string(),
            ),
            None => None,
        };
        Ok(StoredObject {
            url: key::object_url(&self.inner.bucket_url, &key),
            key,
            presigned_url,
        })
    }

    /// The octets of the object at `key` (read back in one piece; the spool
    /// keeps bodies of at most the message size there).
    ///
    /// # Errors
    /// The download failed or timed out.
    #[tracing::instrument(name = "store.get", skip_all, fields(key))]
    pub async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let failed = |source| StoreError::Download {
            key: key.to_owned(),
            source,
        };
        let path = Path::parse(key).map_err(|error| failed(error.into()))?;
        let object = self.inner.s3.get(&path).await.map_err(failed)?;
        object.bytes().await.map_err(failed)
    }

    /// Removes the object at `key`; one that is already gone is no error.
    ///
    /// # Errors
    /// The removal failed or timed out.
    #[tracing::instrument(name = "store.delete", skip_all, fields(key))]
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let failed = |source| StoreError::Delete {
            key: key.to_owned(),
            source,
        };
        let path = Path::parse(key).map_err(|error| failed(error.into()))?;
        match self.inner.s3.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(failed(error)),
        }
    }

    /// `{prefix}{today, UTC}/{128 random bits}/{safe name}`.
    fn fresh_key(&self, name: Option<&str>) -> Result<String, StoreError> {
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|since| i64::try_from(since.as_secs()).ok())
            .ok_or(StoreError::Clock)?;
        let date = key::date_path(seconds).ok_or(StoreError::Clock)?;
        // The operating system's CSPRNG, read directly (getrandom is
        // already built for object_store's rand): nothing to seed, no
        // userspace state shared with anything else.
        let mut random = [0u8; key::RANDOM_BYTES];
        getrandom::fill(&mut random).map_err(StoreError::Random)?;
        Ok(key::object_key(
            &self.inner.settings.key_prefix,
            &date,
            &random,
            name,
        ))
    }
}

/// The settings only: the client's credentials never reach a log.
impl fmt::Debug for AttachmentStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachmentStore")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

/// `Ok(true)` for `http://`, `Ok(false)` for `https://` (either case).
fn endpoint_is_http(endpoint: &str) -> Result<bool, StoreError> {
    let scheme = endpoint
        .split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("http") => Ok(true),
        Some("https") => Ok(false),
        _ => Err(StoreError::Endpoint {
            endpoint: endpoint.to_owned(),
        }),
    }
}

/// Keys are checked before any upload: with the prefix in front, a key must
/// parse as an object_store path that is exactly the key (no leading `/`
/// dropped, no empty, `.` or `..` segment).
fn check_prefix(prefix: &str) -> Result<(), StoreError> {
    let sample = key::object_key(prefix, "2000/01/01", &[0; key::RANDOM_BYTES], Some("name"));
    let error = |source| StoreError::Prefix {
        prefix: prefix.to_owned(),
        source,
    };
    let path = Path::parse(&sample).map_err(error)?;
    if path.as_ref() == sample {
        Ok(())
    } else {
        // A leading `/`, which `Path::parse` drops: an empty first segment.
        Err(error(object_store::path::Error::EmptySegment {
            path: sample,
        }))
    }
}

/// A duration as object_store's configuration strings take it, exactly.
fn nanos(duration: Duration) -> String {
    format!("{}ns", duration.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> StoreSettings {
        StoreSettings {
            bucket: "mail".into(),
            region: "eu-west-1".into(),
            endpoint: None,
            key_prefix: "in/".into(),
            presign_ttl: Some(Duration::from_secs(600)),
            timeout: Duration::from_secs(30),
        }
    }

    #[test]
    fn builds_without_network_and_debug_shows_no_credentials() {
        let store =
            AttachmentStore::with_credentials(settings(), "AKIDEXAMPLEKEYID", "s3cr3t-EXAMPLE")
                .unwrap();
        let debug = format!("{store:?}");
        assert!(debug.contains("mail"), "{debug}");
        assert!(!debug.contains("AKIDEXAMPLEKEYID"), "{debug}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
    }

    #[test]
    fn an_endpoint_must_be_http_or_https() {
        for endpoint in ["http://127.0.0.1:9000", "HTTPS://s3.example/"] {
            let settings = StoreSettings {
                endpoint: Some(endpoint.into()),
                ..settings()
            };
            AttachmentStore::with_credentials(settings, "k", "s").unwrap();
        }
        for endpoint in ["ftp://s3.example", "s3.example", ""] {
            let settings = StoreSettings {
                endpoint: Some(endpoint.into()),
                ..settings()
            };
            let error = AttachmentStore::with_credentials(settings, "k", "s").unwrap_err();
            assert!(matches!(error, StoreError::Endpoint { .. }), "{error:?}");
        }
    }

    #[test]
    fn a_prefix_must_make_keys_that_round_trip() {
        for prefix in ["", "in/", "mail-", "a/b/c/", "x."] {
            check_prefix(prefix).unwrap_or_else(|e| panic!("{prefix:?}: {e}"));
        }
        for prefix in ["/in/", "in//", "../", "./", "a/../", "tab\t/"] {
            let error = check_prefix(prefix).unwrap_err();
            assert!(matches!(error, StoreError::Prefix { .. }), "{prefix:?}");
        }
    }

    #[test]
    fn a_presign_ttl_over_seven_days_is_refused() {
        let settings = StoreSettings {
            presign_ttl: Some(MAX_PRESIGN_TTL + Duration::from_secs(1)),
            ..settings()
        };
        let error = AttachmentStore::with_credentials(settings, "k", "s").unwrap_err();
        assert!(matches!(error, StoreError::PresignTtl { .. }), "{error:?}");
    }

    #[test]
    fn the_store_and_its_uploads_can_move_between_tasks() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: T) {}
        let store = AttachmentStore::with_credentials(settings(), "k", "s").unwrap();
        send_sync(&store);
        send(store.put(None, "text/plain", Bytes::new()));
    }

    #[test]
    fn fresh_keys_have_the_layout_and_differ() {
        let store = AttachmentStore::with_credentials(settings(), "k", "s").unwrap();
        let first = store.fresh_key(Some("../../etc/passwd")).unwrap();
        let second = store.fresh_key(Some("../../etc/passwd")).unwrap();
        assert_ne!(first, second);
        let segments: Vec<&str> = first.split('/').collect();
        assert_eq!(segments.len(), 6, "{first}");
        assert_eq!(segments[0], "in");
        assert_eq!(segments[1].len(), 4);
        assert_eq!(segments[2].len(), 2);
        assert_eq!(segments[3].len(), 2);
        assert_eq!(segments[4].len(), 32);
        assert_eq!(segments[5], ".._.._etc_passwd");
    }
}
