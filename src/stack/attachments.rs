//! What becomes of a message's attachments before its payloads are built:
//! refused when one is too large, then kept inline, described only, or
//! uploaded to the object store (`MAIL_LASER_ATTACHMENT_DELIVERY`).

use crate::mail::parse::MAX_ATTACHMENTS;
use crate::mail::{Attachment, AttachmentField};

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

/// MailLaser 3's default, 10 MiB.
pub const DEFAULT_MAX_ATTACHMENT_SIZE: u64 = 10 * 1024 * 1024;

/// Where attachment octets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachmentMode {
    /// In the payload, base64.
    Inline,
    /// Nowhere: the payload describes each attachment (name, type, size,
    /// hash) without its octets.
    Metadata,
}

/// Why a message's attachments cannot be delivered.
#[derive(Debug, thiserror::Error)]
pub enum AttachmentError {
    #[error("an attachment of {size} octets exceeds the limit of {limit}")]
    TooLarge { size: u64, limit: u64 },
    #[error("the message has more than {limit} attachments")]
    TooMany { limit: usize },
}

/// The payload entries of a message's attachments, in message order.
/// `too_many`: the parse found more than it keeps.
///
/// # Errors
/// [`AttachmentError::TooMany`] and [`AttachmentError::TooLarge`] before
/// anything else is done.
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
    Ok(match options.mode {
        AttachmentMode::Inline => attachments
            .into_iter()
            .map(AttachmentField::inline)
            .collect(),
        AttachmentMode::Metadata => attachments.iter().map(AttachmentField::describe).collect(),
    })
}
