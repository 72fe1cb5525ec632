//! The sender policy at end of data (`MAIL_LASER_CEDAR_POLICIES`): after
//! authentication and the parse, so the policy can weigh the DMARC result
//! and each attachment, and before anything is delivered. A refusal is
//! `550 5.7.1`; the log names the rules that decided, never the content.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use tower::{BoxError, Layer, Service};

use super::parse::Parsed;
use crate::auth::AuthReport;
use crate::policy::{AttachmentFacts, MessageFacts, SenderPolicy, Verdict};
use crate::smtp::reply::Reply;
use crate::smtp::{Outcome, RequestKind, SmtpRequest, SmtpResponse};
use crate::telemetry::Printable;

/// Decisions of more Cedar requests than this (one per recipient and
/// attachment, about 17 µs each) run on a blocking thread, not on the
/// async worker that serves other sessions.
const INLINE_REQUESTS: usize = 64;

/// Applies the sender policy, when there is one.
#[derive(Debug, Clone)]
pub struct PolicyLayer {
    policy: Option<Arc<SenderPolicy>>,
}

impl PolicyLayer {
    pub fn new(policy: Option<Arc<SenderPolicy>>) -> Self {
        Self { policy }
    }
}

impl<S> Layer<S> for PolicyLayer {
    type Service = Policy<S>;

    fn layer(&self, inner: S) -> Policy<S> {
        Policy {
            inner,
            policy: self.policy.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Policy<S> {
    inner: S,
    policy: Option<Arc<SenderPolicy>>,
}

impl<S> Service<SmtpRequest> for Policy<S>
where
    S: Service<SmtpRequest, Response = SmtpResponse> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    type Response = SmtpResponse;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<SmtpResponse, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: SmtpRequest) -> Self::Future {
        let mut inner = super::take_ready(&mut self.inner);
        let facts = self
            .policy
            .clone()
            .and_then(|policy| facts(&request).map(|facts| (policy, facts)));
        Box::pin(async move {
            if let Some((policy, facts)) = facts {
                let verdict = if facts.requests() <= INLINE_REQUESTS {
                    policy.decide(&facts)
                } else {
                    tokio::task::spawn_blocking(move || policy.decide(&facts)).await?
                };
                if let Verdict::Deny {
                    action,
                    subject,
                    rules,
                } = verdict
                {
                    tracing::info!(
                        action,
                        subject = %Printable(&subject),
                        rules = %Printable(&rules),
                        "message refused by the sender policy"
                    );
                    return Ok(SmtpResponse::new(
                        Outcome::Rejected,
                        Reply::policy_refused(),
                    ));
                }
            }
            inner.call(request).await.map_err(Into::into)
        })
    }
}

/// What the policy sees of a message request (`None` for other requests).
fn facts(request: &SmtpRequest) -> Option<MessageFacts> {
    let RequestKind::Message(envelope) = &request.kind else {
        return None;
    };
    let auth = request.extensions.get::<AuthReport>();
    let attachments = request
        .extensions
        .get::<Parsed>()
        .map(|parsed| {
            parsed
                .mail
                .attachments
                .iter()
                .map(|attachment| AttachmentFacts {
                    filename: attachment.filename.clone(),
                    content_type: attachment.content_type.clone(),
                    size: attachment.data.len(),
                })
                .collect()
        })
        .unwrap_or_default();
    Some(MessageFacts {
        sender: envelope.sender.clone(),
        recipients: envelope.recipients.clone(),
        client_ip: request.session.peer.ip(),
        helo: request.session.helo.clone(),
        tls: request.session.tls.is_some(),
        authenticated_user: request.session.authenticated.clone(),
        dmarc_result: auth.map(|auth| auth.dmarc_result().as_str().to_owned()),
        authenticated_from: auth.and_then(|auth| auth.authenticated_from().map(str::to_owned)),
        size: request
            .extensions
            .get::<Parsed>()
            .map_or(envelope.message.len(), |parsed| parsed.size),
        attachments,
    })
}
