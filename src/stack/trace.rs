//! A span per stack request, with its outcome and reply code recorded when it
//! completes, and the message metrics (outcome, size) counted in the same
//! place.

use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use tower::{Layer, Service};
use tracing::{Instrument, field};

use crate::smtp::{Outcome, RequestKind, SmtpRequest, SmtpResponse};
use crate::telemetry::{Metrics, Printable};

/// Wraps every request in a span (`smtp.transaction` for messages).
#[derive(Debug, Clone)]
pub struct TraceLayer {
    metrics: Metrics,
}

impl TraceLayer {
    pub const fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Trace {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

// === impl Trace ===

#[derive(Debug, Clone)]
pub struct Trace<S> {
    inner: S,
    metrics: Metrics,
}

impl<S> Service<SmtpRequest> for Trace<S>
where
    S: Service<SmtpRequest, Response = SmtpResponse>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = SmtpResponse;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<SmtpResponse, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: SmtpRequest) -> Self::Future {
        let message_size = match &request.kind {
            RequestKind::Message(envelope) => Some(envelope.message.len()),
            _ => None,
        };
        let span = match &request.kind {
            RequestKind::Message(envelope) => tracing::info_span!(
                "smtp.transaction",
                "smtp.sender" = %Printable(&envelope.sender),
                "smtp.recipient_count" = envelope.recipients.len() as i64,
                "smtp.message_size" = envelope.message.len() as i64,
                "smtp.reply_code" = field::Empty,
                "smtp.outcome" = field::Empty,
                // Recorded by the authentication layer (stack/auth.rs).
                "auth.dmarc" = field::Empty,
                "auth.dmarc.policy" = field::Empty,
                "auth.from_domain" = field::Empty,
                "auth.spf.mail_from" = field::Empty,
                "auth.spf.helo" = field::Empty,
                "auth.dkim" = field::Empty,
                "auth.arc" = field::Empty,
                "auth.verdict" = field::Empty,
            ),
            other => tracing::debug_span!(
                "smtp.command",
                "smtp.verb" = other.name(),
                "smtp.reply_code" = field::Empty,
                "smtp.outcome" = field::Empty,
            ),
        };
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        let recorded = span.clone();
        let metrics = self.metrics.clone();
        Box::pin(
            async move {
                let result = future.await;
                // An error is answered as a deferral by the layer above.
                let (outcome, code) = match &result {
                    Ok(response) => (response.outcome, Some(response.reply.code)),
                    Err(_) => (Outcome::Deferred, None),
                };
                if let Some(code) = code {
                    recorded.record("smtp.reply_code", i64::from(code));
                }
                recorded.record("smtp.outcome", outcome.as_str());
                if let Some(size) = message_size {
                    metrics.message(outcome.as_str(), size);
                }
                result
            }
            .instrument(span),
        )
    }
}
