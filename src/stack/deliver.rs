//! The terminal service: accepts what the layers above let through, parses
//! each message and hands one payload per recipient to the [`Sink`].

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::{self, BoxFuture};
use tower::Service;
use tracing::Instrument;

use super::{Envelope, RequestKind, SmtpRequest};
use crate::mail::{self, ParsedMail, Payload};
use crate::sink::{Delivery, Outcome, SharedSink};
use crate::smtp::reply::Reply;

/// How messages are turned into payloads.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    /// Header-name prefixes forwarded in `headers` (`MAIL_LASER_HEADER_PREFIX`).
    pub header_prefixes: Arc<[String]>,
}

#[derive(Clone)]
pub struct Deliver {
    sink: SharedSink,
    parse: ParseOptions,
}

impl Deliver {
    pub fn new(sink: SharedSink, parse: ParseOptions) -> Self {
        Self { sink, parse }
    }
}

impl Service<SmtpRequest> for Deliver {
    type Response = Reply;
    type Error = tower::BoxError;
    type Future = BoxFuture<'static, Result<Reply, tower::BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: SmtpRequest) -> Self::Future {
        match request.kind {
            RequestKind::Mail { .. } => Box::pin(future::ready(Ok(Reply::sender_ok()))),
            RequestKind::Rcpt { .. } => Box::pin(future::ready(Ok(Reply::recipient_ok()))),
            RequestKind::Message(envelope) => {
                Box::pin(deliver(self.sink.clone(), self.parse.clone(), envelope))
            }
        }
    }
}

/// Messages up to this size are parsed on the async worker: without HTML
/// rendering, parsing is linear in the size (about 40 µs for 64 KB, see
/// `benches/payload.rs`), cheaper than handing it to the blocking pool,
/// which costs two thread wake-ups per message (13 % of the CPU at 32
/// sessions × 2 KB before this change).
const INLINE_PARSE_LIMIT: usize = 64 * 1024;

async fn deliver(
    sink: SharedSink,
    options: ParseOptions,
    envelope: Envelope,
) -> Result<Reply, tower::BoxError> {
    let Envelope {
        sender,
        recipients,
        message,
        ..
    } = envelope;
    let parsed = parse(message.clone(), options)
        .instrument(tracing::info_span!("mail.parse", size = message.len()))
        .await?;

    // The last recipient takes the parsed bodies by value: a single-recipient
    // message (the common case) is never copied.
    let mut payloads = Vec::with_capacity(recipients.len());
    if let Some((last, others)) = recipients.split_last() {
        for recipient in others {
            payloads.push(Payload::new(&parsed, &sender, recipient));
        }
        payloads.push(Payload::from_parsed(parsed, &sender, last));
    }
    let deliveries: Vec<_> = payloads
        .into_iter()
        .map(|payload| {
            let delivery = Delivery {
                payload,
                raw: message.clone(),
            };
            sink.deliver(delivery).in_current_span()
        })
        .collect();
    // Sinks take what they need of the raw message when called (a webhook
    // request is serialised up front); while they wait for the consumer our
    // copy would only hold the read buffer it lives in (up to twice the
    // message size) in memory.
    drop(message);
    let outcomes = future::join_all(deliveries).await;
    Ok(reply_for(&outcomes))
}

/// Parses off the async workers whatever may be expensive: large messages,
/// and HTML rendering (its cost depends on the client's input).
async fn parse(raw: Bytes, options: ParseOptions) -> Result<ParsedMail, tower::BoxError> {
    let span = tracing::Span::current();
    if raw.len() <= INLINE_PARSE_LIMIT {
        let unrendered = mail::parse_unrendered(&raw, &options.header_prefixes);
        if !unrendered.needs_rendering() {
            return Ok(unrendered.render());
        }
        return Ok(
            tokio::task::spawn_blocking(move || span.in_scope(|| unrendered.render())).await?,
        );
    }
    Ok(tokio::task::spawn_blocking(move || {
        span.in_scope(|| mail::parse(&raw, &options.header_prefixes))
    })
    .await?)
}

/// One reply for all recipients of a message (SPEC §5): any temporary
/// failure makes the sender retry the whole message (the idempotency key
/// lets the consumer drop repeats) — `451`, or `452` when it is the spool
/// that failed; otherwise a rejection is reported; `250` only when every
/// recipient was delivered or durably spooled, with the queued wording if
/// any was spooled.
fn reply_for(outcomes: &[Outcome]) -> Reply {
    let any = |wanted: fn(&Outcome) -> bool| outcomes.iter().any(wanted);
    if any(|outcome| matches!(outcome, Outcome::Deferred { .. })) {
        return Reply::delivery_deferred();
    }
    if any(|outcome| matches!(outcome, Outcome::SpoolUnavailable { .. })) {
        return Reply::spool_unavailable();
    }
    let rejection = outcomes.iter().find_map(|outcome| match outcome {
        Outcome::Rejected { reason } => Some(reason.as_deref()),
        _ => None,
    });
    match rejection {
        Some(reason) => Reply::rejected(reason),
        None if any(|outcome| *outcome == Outcome::Spooled) => Reply::message_queued(),
        None => Reply::message_accepted(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_delivered_is_250() {
        assert_eq!(
            reply_for(&[Outcome::Delivered, Outcome::Delivered]),
            Reply::message_accepted()
        );
    }

    #[test]
    fn any_deferred_is_451() {
        let outcomes = [
            Outcome::Delivered,
            Outcome::Rejected { reason: None },
            Outcome::Deferred {
                reason: "webhook down".into(),
            },
        ];
        assert_eq!(reply_for(&outcomes), Reply::delivery_deferred());
    }

    #[test]
    fn spooled_is_250_queued_unless_something_is_worse() {
        assert_eq!(
            reply_for(&[Outcome::Delivered, Outcome::Spooled]),
            Reply::message_queued()
        );
        assert_eq!(reply_for(&[Outcome::Spooled]).code, 250);
        let full = Outcome::SpoolUnavailable {
            reason: "full".into(),
        };
        let spool_failed = reply_for(&[Outcome::Spooled, full.clone()]);
        assert_eq!(spool_failed, Reply::spool_unavailable());
        assert_eq!(
            spool_failed.to_string(),
            "452 4.3.1 Insufficient system storage, try again later"
        );
        assert_eq!(
            reply_for(&[Outcome::Rejected { reason: None }, full.clone()]).code,
            452,
            "a temporary failure makes the sender retry everything"
        );
        let deferred = Outcome::Deferred {
            reason: "down".into(),
        };
        assert_eq!(reply_for(&[full, deferred]).code, 451);
        assert_eq!(
            reply_for(&[Outcome::Spooled, Outcome::Rejected { reason: None }]).code,
            554
        );
    }

    #[test]
    fn rejection_carries_reason() {
        let outcomes = [
            Outcome::Delivered,
            Outcome::Rejected {
                reason: Some("spam".into()),
            },
        ];
        let reply = reply_for(&outcomes);
        assert_eq!((reply.code, reply.text.as_ref()), (554, "spam"));
        assert_eq!(
            reply_for(&[Outcome::Rejected { reason: None }]).text,
            "Message rejected by webhook"
        );
    }
}
