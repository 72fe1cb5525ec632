//! The terminal service: accepts what the layers above let through, parses
//! each message and hands one payload per recipient to the [`Sink`](crate::sink::Sink).

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::future::{self, BoxFuture};
use tower::Service;
use tracing::Instrument;

use super::attachments::{self, AttachmentError, AttachmentOptions};
use super::parse::Parsed;
use crate::auth::AuthReport;
use crate::mail::{self, AuthFields, EnvelopeTls, MessageEnvelope, MessageExtras, Payload};
use crate::routes::LiveRoutes;
use crate::sink::{DeliveryOutcome, MessageCache, RecipientPayload, SharedSink};
use crate::smtp::codec::{GRANULE, MemoryBudget, Reservation};
use crate::smtp::command::split_plus_tag;
use crate::smtp::reply::Reply;
use crate::smtp::{Envelope, Outcome, RequestKind, SessionInfo, SmtpRequest, SmtpResponse};

/// How messages are turned into payloads.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    /// Header-name prefixes forwarded in `headers` (`MAIL_LASER_HEADER_PREFIX`).
    pub header_prefixes: Arc<[String]>,
    /// `MAIL_LASER_HEADERS=all`: every top-level header goes in `all_headers`.
    pub all_headers: bool,
    /// `MAIL_LASER_PLUS_ADDRESSING`: a `local+tag@` recipient's tag goes in
    /// `recipient_tag`.
    pub plus_addressing: bool,
    /// `MAIL_LASER_INCLUDE_RAW`: the original message goes in `raw_base64`
    /// (in `s3` mode: to the store, `raw_url`).
    pub include_raw: bool,
    /// The routes, with a routes file: while a route of the transaction's
    /// needs the original message (`raw`, and the header section the
    /// provider formats send), it is kept for the sink.
    pub routes: Option<LiveRoutes>,
    pub attachments: AttachmentOptions,
}

impl ParseOptions {
    /// Whether the parse encodes the original message into `raw_base64`.
    pub fn raw_inline(&self) -> bool {
        self.include_raw && self.attachments.mode.store().is_none()
    }

    /// Whether the original message is stored as an object (`raw_url`).
    pub fn raw_stored(&self) -> bool {
        self.include_raw && self.attachments.mode.store().is_some()
    }

    /// The header prefixes the parse of a message collects (`extensions`
    /// are its request's): `MAIL_LASER_HEADER_PREFIX`'s and those of the
    /// transaction's routes (each route's payload then keeps its own,
    /// `docs/routes.md`).
    pub fn header_prefixes_in_force(&self, extensions: &http::Extensions) -> Arc<[String]> {
        let Some(routes) = &self.routes else {
            return self.header_prefixes.clone();
        };
        let routes = routes.of(extensions);
        let mut extra = routes
            .header_prefixes()
            .filter(|prefix| !self.header_prefixes.contains(prefix))
            .peekable();
        if extra.peek().is_none() {
            return self.header_prefixes.clone();
        }
        let mut all: Vec<String> = self.header_prefixes.to_vec();
        for prefix in extra {
            if !all.contains(prefix) {
                all.push(prefix.clone());
            }
        }
        all.into()
    }

    /// Whether a route of the transaction needs the original message.
    pub fn formats_need_raw(&self, extensions: &http::Extensions) -> bool {
        self.routes
            .as_ref()
            .is_some_and(|routes| routes.of(extensions).needs_raw())
    }

    /// Whether the parse keeps the original message past itself.
    pub fn raw_kept(&self, extensions: &http::Extensions) -> bool {
        self.raw_stored() || self.formats_need_raw(extensions)
    }
}

/// The terminal service: hands each message, parsed by the
/// [`ParseLayer`](super::ParseLayer) above, to the sink.
#[derive(Clone)]
pub struct Handoff {
    sink: SharedSink,
    parse: ParseOptions,
    /// The payloads count against the budget the message's bytes did.
    memory: MemoryBudget,
}

impl Handoff {
    pub fn new(sink: SharedSink, parse: ParseOptions, memory: MemoryBudget) -> Self {
        Self {
            sink,
            parse,
            memory,
        }
    }
}

impl Service<SmtpRequest> for Handoff {
    type Response = SmtpResponse;
    type Error = tower::BoxError;
    type Future = BoxFuture<'static, Result<SmtpResponse, tower::BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: SmtpRequest) -> Self::Future {
        match request.kind {
            // The credentials layer answers AUTH whenever it is offered.
            RequestKind::Auth(_) => Box::pin(future::ready(Ok(SmtpResponse::new(
                Outcome::Refused,
                Reply::not_implemented(),
            )))),
            RequestKind::Mail { .. } => {
                Box::pin(future::ready(Ok(SmtpResponse::sender_accepted())))
            }
            RequestKind::Rcpt { .. } => {
                Box::pin(future::ready(Ok(SmtpResponse::recipient_accepted())))
            }
            RequestKind::Message(envelope) => {
                let Some(parsed) = request.extensions.remove::<Parsed>() else {
                    return Box::pin(future::ready(Err(
                        "a message reached the hand-off unparsed: the stack has no ParseLayer"
                            .into(),
                    )));
                };
                // Left by the authentication layer (stack/auth.rs), unless off.
                let auth = request
                    .extensions
                    .remove::<AuthReport>()
                    .map(AuthReport::into_fields);
                Box::pin(hand_off(
                    self.clone(),
                    request.session,
                    envelope,
                    parsed,
                    auth,
                    request.extensions,
                ))
            }
        }
    }
}

async fn hand_off(
    handoff: Handoff,
    session: SessionInfo,
    envelope: Envelope,
    parsed: Parsed,
    auth: Option<AuthFields>,
    transaction: http::Extensions,
) -> Result<SmtpResponse, tower::BoxError> {
    let received_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|elapsed| i64::try_from(elapsed.as_secs()).ok())
        .and_then(mail::unix_to_rfc3339);
    let Handoff {
        sink,
        parse: options,
        memory,
    } = handoff;
    let Envelope {
        sender, recipients, ..
    } = envelope;
    let Parsed {
        mail: mut parsed,
        sha256: message_sha256,
        size,
        raw,
    } = parsed;
    // In `s3` mode the original message is uploaded rather than encoded.
    let raw_to_store = if options.raw_stored() {
        options.attachments.mode.store().zip(raw.clone())
    } else {
        None
    };
    let raw_for_sink = raw.filter(|_| options.formats_need_raw(&transaction));

    let found = std::mem::take(&mut parsed.attachments);
    let too_many = parsed.too_many_attachments;
    let attachments = match attachments::settle(&options.attachments, found, too_many).await {
        Ok(attachments) => attachments,
        Err(error) => return Ok(attachment_failure(&error)),
    };
    let stored_raw = match raw_to_store {
        Some((store, raw)) => match attachments::store_raw(store, raw).await {
            Ok(location) => Some(location),
            Err(error) => return Ok(attachment_failure(&error)),
        },
        None => None,
    };

    // Every recipient's payload shares the parsed message (and its JSON):
    // one copy per message, whatever the number of recipients.
    let envelope = message_envelope(session, sender, recipients);
    let extras = MessageExtras {
        envelope: None,
        received_at,
        attachments,
        raw: stored_raw,
        auth,
    };
    let mut payloads = Payload::for_message(parsed, envelope, extras);
    if options.plus_addressing {
        for payload in &mut payloads {
            payload.recipient_tag = split_plus_tag(&payload.recipient)
                .map(|(_, tag)| tag.to_owned())
                .filter(|tag| !tag.is_empty());
        }
    }
    // A route format's message-wide body is about the size of the JSON.
    let formatted = raw_for_sink.is_some();
    let held = match hold_payloads(&memory, &payloads, size, formatted) {
        Ok(held) => held,
        Err(response) => return Ok(response),
    };
    let shared = Arc::new(MessageCache::default());
    let transaction = Arc::new(transaction);
    let deliveries: Vec<_> = payloads
        .into_iter()
        .map(|payload| {
            let item = RecipientPayload {
                payload,
                message_sha256,
                raw: raw_for_sink.clone(),
                shared: shared.clone(),
                transaction: transaction.clone(),
            };
            sink.deliver(item).in_current_span()
        })
        .collect();
    let outcomes = future::join_all(deliveries).await;
    drop(held);
    Ok(response_for(&outcomes))
}

/// The reply when the attachments cannot be settled; the reason is logged,
/// never the content.
fn attachment_failure(error: &AttachmentError) -> SmtpResponse {
    let (outcome, reply) = match error {
        AttachmentError::Store(_) => (Outcome::Deferred, Reply::delivery_deferred()),
        AttachmentError::TooLarge { .. } => (Outcome::Rejected, Reply::attachment_too_large()),
        AttachmentError::TooMany { .. } => (Outcome::Rejected, Reply::too_many_attachments()),
    };
    match error {
        // The store's own error says why (status, timeout), never the content.
        AttachmentError::Store(source) => tracing::warn!(%error, %source, "message deferred"),
        _ => tracing::info!(%error, "message refused"),
    }
    SmtpResponse::new(outcome, reply)
}

/// The SMTP side of a message, for its payloads.
fn message_envelope(
    session: SessionInfo,
    sender: String,
    recipients: Vec<String>,
) -> MessageEnvelope {
    MessageEnvelope {
        mail_from: sender,
        rcpt_to: recipients,
        helo: session.helo,
        client_ip: session.peer.ip().to_string(),
        tls: session.tls.map(|tls| EnvelopeTls {
            version: tls.version,
            cipher: tls.cipher,
        }),
        authenticated_user: session.authenticated,
    }
}

/// Holds what the payloads of a message cost (its fields and JSON, shared,
/// plus each recipient's head; `formatted`: once more the JSON's size, for
/// the message-wide body of the routes' formats) against the memory budget until every
/// recipient is answered, as the message's bytes are. When the budget
/// cannot hold them: `452` if it could later, `552` if it never could next
/// to the message's own `size` octets (a retry would meet the same answer).
fn hold_payloads(
    memory: &MemoryBudget,
    payloads: &[Payload],
    size: usize,
    formatted: bool,
) -> Result<Reservation, SmtpResponse> {
    let shared = payloads.first().map_or(0, |payload| {
        let json = payload.to_json().len();
        payload.size_in_memory() + json + if formatted { json } else { 0 }
    });
    let heads: usize = payloads
        .iter()
        .map(|payload| payload.sender.len() + payload.recipient.len() + 64)
        .sum();
    let cost = shared + heads;
    let mut held = memory.reservation();
    if held.cover(cost) {
        return Ok(held);
    }
    tracing::warn!(
        size,
        payload = cost,
        "memory budget spent: the payload cannot be held now"
    );
    let own = size.div_ceil(GRANULE).saturating_mul(GRANULE);
    Err(if cost.saturating_add(own) > memory.limit() {
        SmtpResponse::new(Outcome::Rejected, Reply::message_too_large())
    } else {
        SmtpResponse::new(Outcome::Deferred, Reply::insufficient_storage())
    })
}

/// One response for all recipients of a message: any temporary failure
/// makes the sender retry the whole message (the idempotency key lets the
/// consumer drop repeats) — `451`, or `452` when it is the spool that failed;
/// otherwise a rejection is reported; `250` only when every recipient was
/// delivered or durably queued, with the queued wording if any was queued.
fn response_for(outcomes: &[DeliveryOutcome]) -> SmtpResponse {
    let any = |wanted: fn(&DeliveryOutcome) -> bool| outcomes.iter().any(wanted);
    if any(|outcome| matches!(outcome, DeliveryOutcome::Deferred)) {
        return SmtpResponse::new(Outcome::Deferred, Reply::delivery_deferred());
    }
    if any(|outcome| matches!(outcome, DeliveryOutcome::SpoolUnavailable)) {
        return SmtpResponse::new(Outcome::Deferred, Reply::insufficient_storage());
    }
    let rejection = outcomes.iter().find_map(|outcome| match outcome {
        DeliveryOutcome::Rejected { reason } => Some(reason.as_deref()),
        _ => None,
    });
    match rejection {
        Some(reason) => SmtpResponse::new(Outcome::Rejected, Reply::rejected(reason)),
        None if any(|outcome| matches!(outcome, DeliveryOutcome::Spooled)) => {
            SmtpResponse::new(Outcome::Queued, Reply::message_queued())
        }
        None => SmtpResponse::new(Outcome::Delivered, Reply::message_accepted()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(outcomes: &[DeliveryOutcome]) -> (Outcome, String) {
        let response = response_for(outcomes);
        (response.outcome, response.reply.to_string())
    }

    fn rejected(reason: Option<&str>) -> DeliveryOutcome {
        DeliveryOutcome::Rejected {
            reason: reason.map(str::to_owned),
        }
    }

    #[test]
    fn all_delivered_is_250() {
        assert_eq!(
            answer(&[DeliveryOutcome::Delivered, DeliveryOutcome::Delivered]),
            (
                Outcome::Delivered,
                "250 2.0.0 OK: Message accepted for delivery".into()
            )
        );
    }

    #[test]
    fn any_deferred_is_451() {
        let outcomes = [
            DeliveryOutcome::Delivered,
            rejected(None),
            DeliveryOutcome::Deferred,
        ];
        assert_eq!(
            answer(&outcomes),
            (
                Outcome::Deferred,
                "451 4.3.0 Temporary delivery failure, try again later".into()
            )
        );
    }

    #[test]
    fn spooled_is_250_queued_unless_something_is_worse() {
        use DeliveryOutcome::{Deferred, Delivered, SpoolUnavailable, Spooled};
        assert_eq!(
            answer(&[Delivered, Spooled]),
            (
                Outcome::Queued,
                "250 2.0.0 OK: Message queued for delivery".into()
            )
        );
        let full = (
            Outcome::Deferred,
            "452 4.3.1 Insufficient system storage, try again later".to_owned(),
        );
        assert_eq!(answer(&[Spooled, SpoolUnavailable]), full);
        assert_eq!(
            answer(&[rejected(None), SpoolUnavailable]),
            full,
            "a temporary failure makes the sender retry everything"
        );
        assert_eq!(response_for(&[SpoolUnavailable, Deferred]).reply.code, 451);
        assert_eq!(
            response_for(&[Spooled, rejected(None)]).outcome,
            Outcome::Rejected
        );
    }

    #[test]
    fn rejection_carries_reason() {
        assert_eq!(
            answer(&[DeliveryOutcome::Delivered, rejected(Some("spam"))]),
            (Outcome::Rejected, "554 5.6.0 spam".into())
        );
        assert_eq!(
            answer(&[rejected(None)]),
            (
                Outcome::Rejected,
                "554 5.6.0 Message rejected by webhook".into()
            )
        );
    }
}
