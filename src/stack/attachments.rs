//! What becomes of a message's attachments before its payloads are built:
//! refused when one is too large or there are too many, then kept inline,
//! described only, or uploaded to the object store
//! (`MAIL_LASER_ATTACHMENT_DELIVERY`).

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use tracing::Instrument;

use crate::mail::parse::MAX_ATTACHMENTS;
use crate::mail::{Attachment, AttachmentDelivery, AttachmentField, StoredLocation};
use crate::store::{AttachmentStore, StoreError, StoredObject};

/// MailLaser 3's default, 10 MiB.
pub const DEFAULT_MAX_ATTACHMENT_SIZE: u64 = 10 * 1024 * 1024;

/// Uploads of one message in flight at once: enough to overlap their
/// round trips, few enough not to flood the store from one message.
const UPLOADS_IN_FLIGHT: usize = 4;

/// `MAIL_LASER_ATTACHMENT_DELIVERY` and its limits.
#[derive(Debug, Clone)]
pub struct AttachmentOptions {
    pub mode: AttachmentMode,
    /// `MAIL_LASER_MAX_ATTACHMENT_SIZE`: a larger attachment (decoded) makes
    /// the whole message `552 5.3.4`.
    pub max_size: u64,
}

impl Default for AttachmentOptions {
    fn default() -> Self {
        Self {
            mode: AttachmentMode::Inline,
            max_size: DEFAULT_MAX_ATTACHMENT_SIZE,
        }
    }
}

/// Where attachment octets go.
#[derive(Debug, Clone)]
pub enum AttachmentMode {
    /// In the payload, base64.
    Inline,
    /// Nowhere: the payload describes each attachment (name, type, size,
    /// hash) without its octets.
    Metadata,
    /// In the object store, the payload carrying their URLs; attachments of
    /// at most `inline_max` octets stay inline
    /// (`MAIL_LASER_ATTACHMENT_INLINE_MAX`).
    Store {
        store: AttachmentStore,
        inline_max: u64,
    },
}

impl AttachmentMode {
    /// The store, in `s3` mode (the raw message goes there too).
    pub fn store(&self) -> Option<&AttachmentStore> {
        match self {
            Self::Store { store, .. } => Some(store),
            _ => None,
        }
    }
}

/// Why a message's attachments cannot be delivered.
#[derive(Debug, thiserror::Error)]
pub enum AttachmentError {
    #[error("an attachment of {size} octets exceeds the limit of {limit}")]
    TooLarge { size: u64, limit: u64 },
    #[error("the message has more than {limit} attachments")]
    TooMany { limit: usize },
    /// The store did not take an object: a temporary failure, never a
    /// payload without its attachment.
    #[error("an attachment could not be stored")]
    Store(#[from] StoreError),
}

/// The payload entries of a message's attachments, in message order.
/// `too_many`: the parse found more than it keeps.
///
/// # Errors
/// [`AttachmentError::TooMany`] and [`AttachmentError::TooLarge`] before
/// anything is uploaded; [`AttachmentError::Store`] when an upload fails
/// (what was uploaded before stays: its keys are unguessable and unused).
pub async fn settle(
    options: &AttachmentOptions,
    attachments: Vec<Attachment>,
    too_many: bool,
) -> Result<Vec<AttachmentField>, AttachmentError> {
    if too_many {
        return Err(AttachmentError::TooMany {
            limit: MAX_ATTACHMENTS,
        });
    }
    if let Some(size) = attachments
        .iter()
        .map(|attachment| attachment.data.len() as u64)
        .find(|&size| size > options.max_size)
    {
        return Err(AttachmentError::TooLarge {
            size,
            limit: options.max_size,
        });
    }
    Ok(match &options.mode {
        AttachmentMode::Inline => attachments
            .into_iter()
            .map(AttachmentField::inline)
            .collect(),
        AttachmentMode::Metadata => attachments.iter().map(AttachmentField::describe).collect(),
        AttachmentMode::Store { store, inline_max } => {
            stream::iter(attachments)
                .map(|attachment| upload(store, *inline_max, attachment))
                .buffered(UPLOADS_IN_FLIGHT)
                .try_collect()
                .await?
        }
    })
}

/// One attachment in `s3` mode: inline up to `inline_max`, else uploaded
/// (its octets are dropped once the store has them).
async fn upload(
    store: &AttachmentStore,
    inline_max: u64,
    attachment: Attachment,
) -> Result<AttachmentField, StoreError> {
    if attachment.data.len() as u64 <= inline_max {
        return Ok(AttachmentField::inline(attachment));
    }
    let mut field = AttachmentField::describe(&attachment);
    let size = attachment.data.len();
    let stored = store
        .put(
            attachment.filename.as_deref(),
            &attachment.content_type,
            attachment.data,
        )
        .instrument(tracing::info_span!("store.put", size))
        .await?;
    field.delivery = Some(AttachmentDelivery::Stored(location(stored)));
    Ok(field)
}

/// Uploads the original message (`MAIL_LASER_INCLUDE_RAW` in `s3` mode).
///
/// # Errors
/// The store did not take it.
pub async fn store_raw(
    store: &AttachmentStore,
    raw: Bytes,
) -> Result<StoredLocation, AttachmentError> {
    let size = raw.len();
    let stored = store
        .put(Some("message.eml"), "message/rfc822", raw)
        .instrument(tracing::info_span!("store.put", size))
        .await?;
    Ok(location(stored))
}

fn location(stored: StoredObject) -> StoredLocation {
    StoredLocation {
        url: stored.url,
        presigned_url: stored.presigned_url,
    }
}
