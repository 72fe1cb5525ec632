//! Why the attachment store could not be built or could not take an object.

/// The caller answers a failed [`put`](super::AttachmentStore::put) with a
/// temporary `451`; the construction errors are configuration mistakes,
/// found at start. Every variant keeps its cause as the source; none holds a
/// credential or a presigned URL.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `MAIL_LASER_S3_ENDPOINT` is not an `http://` or `https://` URL.
    #[error("S3 endpoint {endpoint:?} is not an http:// or https:// URL")]
    Endpoint { endpoint: String },
    /// The key prefix would make keys S3 clients cannot round-trip (an empty
    /// segment, `.` or `..`, a control character).
    #[error("S3 key prefix {prefix:?} does not make valid object keys")]
    Prefix {
        prefix: String,
        #[source]
        source: object_store::path::Error,
    },
    /// S3 refuses presigned URLs valid for more than seven days.
    #[error("presigned URLs can be valid for at most 7 days, not {seconds} s")]
    PresignTtl { seconds: u64 },
    /// object_store refused the settings or the credentials' environment.
    #[error("the S3 client cannot be built")]
    Build(#[source] object_store::Error),
    /// The clock is before 1970 or after 9999: no date for the key.
    #[error("the system clock is out of range")]
    Clock,
    /// The operating system gave no random bytes for the key.
    #[error("no random bytes for the object key")]
    Random(#[source] getrandom::Error),
    /// The upload failed (after object_store's few retries) or timed out.
    #[error("upload of {key} failed")]
    Upload {
        key: String,
        #[source]
        source: object_store::Error,
    },
    /// An object could not be read back (the spool's offloaded bodies).
    #[error("download of {key} failed")]
    Download {
        key: String,
        #[source]
        source: object_store::Error,
    },
    /// An object could not be removed.
    #[error("removal of {key} failed")]
    Delete {
        key: String,
        #[source]
        source: object_store::Error,
    },
    /// The object is stored but its presigned URL could not be made (the
    /// credentials could not be loaded).
    #[error("presigning {key} failed")]
    Presign {
        key: String,
        #[source]
        source: object_store::Error,
    },
}
