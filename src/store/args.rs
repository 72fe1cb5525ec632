//! The `MAIL_LASER_S3_*` settings as clap reads them: one definition for
//! the server and for `mail-laser spool`, which removes the bodies the
//! PostgreSQL queue keeps in the same bucket.

use std::time::Duration;

use super::{REQUEST_TIMEOUT, StoreSettings};
use crate::duration;

/// The bucket and how to reach it; credentials come from the standard
/// `AWS_*` variables ([`AttachmentStore::new`](super::AttachmentStore::new)).
#[derive(Debug, Clone, clap::Args)]
pub struct S3Args {
    /// Bucket for attachments (s3 mode); credentials from the standard AWS_* variables.
    #[arg(
        long = "s3-bucket",
        env = "MAIL_LASER_S3_BUCKET",
        value_name = "MAIL_LASER_S3_BUCKET",
        global = true
    )]
    pub bucket: Option<String>,

    /// The bucket's region.
    #[arg(
        long = "s3-region",
        env = "MAIL_LASER_S3_REGION",
        value_name = "MAIL_LASER_S3_REGION",
        default_value = "us-east-1",
        global = true
    )]
    pub region: String,

    /// An S3-compatible server's URL (path-style addressing); unset: AWS.
    #[arg(
        long = "s3-endpoint",
        env = "MAIL_LASER_S3_ENDPOINT",
        value_name = "MAIL_LASER_S3_ENDPOINT",
        global = true
    )]
    pub endpoint: Option<String>,

    /// Put in front of every object key (keys are PREFIX/YYYY/MM/DD/RANDOM/NAME).
    #[arg(
        long = "s3-key-prefix",
        env = "MAIL_LASER_S3_KEY_PREFIX",
        value_name = "MAIL_LASER_S3_KEY_PREFIX",
        default_value = "",
        global = true
    )]
    pub key_prefix: String,

    /// When set, the payload carries presigned GET URLs valid this long (90s, 30m, 12h, 7d at most).
    #[arg(
        long = "s3-presign-ttl",
        env = "MAIL_LASER_S3_PRESIGN_TTL",
        value_name = "MAIL_LASER_S3_PRESIGN_TTL",
        value_parser = duration::parse,
        global = true
    )]
    pub presign_ttl: Option<Duration>,
}

impl S3Args {
    /// The store's settings, each request bounded by
    /// [`REQUEST_TIMEOUT`]; `None` without a bucket (unset or blank).
    pub fn settings(&self) -> Option<StoreSettings> {
        let bucket = self.bucket.as_deref().map(str::trim)?;
        (!bucket.is_empty()).then(|| StoreSettings {
            bucket: bucket.to_owned(),
            region: self.region.trim().to_owned(),
            endpoint: self
                .endpoint
                .as_deref()
                .map(str::trim)
                .filter(|endpoint| !endpoint.is_empty())
                .map(str::to_owned),
            key_prefix: self.key_prefix.clone(),
            presign_ttl: self.presign_ttl,
            timeout: REQUEST_TIMEOUT,
        })
    }
}
