//! One mapping from stack errors to SMTP replies.

use tower::timeout::error::Elapsed;

use crate::smtp::reply::Reply;

/// The reply for a request the stack failed to answer. Every failure is
/// temporary from the client's point of view: it keeps the mail and retries.
pub fn reply_for_error(error: &tower::BoxError) -> Reply {
    if error.is::<Elapsed>() {
        tracing::warn!("request timed out in the stack");
        Reply::delivery_deferred()
    } else {
        tracing::error!(error = %error, "stack error");
        Reply::local_error()
    }
}
