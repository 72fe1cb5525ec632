//! MIME → webhook payload (`docs/payload.md`).
//!
//! [`parse`] turns the raw bytes of one accepted message into a [`ParsedMail`]
//! (subject, bodies, sender name, forwarded headers, Message-ID); [`Payload`]
//! adds the SMTP envelope and serialises the JSON that is POSTed. Pure code, no
//! I/O: parse once per message, then build one `Payload` per recipient.
//!
//! Both halves treat the message as hostile: any byte sequence yields a best
//! effort result, with bounded stack, bounded MIME depth and bounded HTML
//! rendering time.

pub mod parse;
pub mod payload;

pub use parse::{
    Attachment, Disposition, Mailbox, ParseBudget, ParsedMail, Unrendered, has_prefix, parse,
    parse_unrendered, top_header_fields, unix_to_rfc3339,
};
pub use payload::{
    ArcFields, AttachmentDelivery, AttachmentField, AuthFields, Base64, DkimSignature, DmarcFields,
    DmarcPolicy, DmarcResult, EnvelopeTls, MessageEnvelope, MessageExtras, MessageFields,
    NamedHeader, Payload, PayloadJson, SignatureResult, SpfCheck, SpfFields, SpfResult,
    StoredLocation, payload_schema,
};
