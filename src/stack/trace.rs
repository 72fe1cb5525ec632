//! A span per stack request, with the reply code recorded when it completes.

use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use tower::{Layer, Service};
use tracing::{Instrument, field};

use super::{RequestKind, SmtpRequest};
use crate::smtp::reply::Reply;

/// Wraps every request in a span (`smtp.transaction` for messages).
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceLayer;

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Trace { inner }
    }
}

// === impl Trace ===

#[derive(Debug, Clone)]
pub struct Trace<S> {
    inner: S,
}

impl<S> Service<SmtpRequest> for Trace<S>
where
    S: Service<SmtpRequest, Response = Reply>,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display + 'static,
{
    type Response = Reply;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Reply, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: SmtpRequest) -> Self::Future {
        let span = match &request.kind {
            RequestKind::Message(envelope) => tracing::info_span!(
                "smtp.transaction",
                sender = %envelope.sender,
                recipients = envelope.recipients.len(),
                size = envelope.message.len(),
                reply_code = field::Empty,
                outcome = field::Empty,
            ),
            other => tracing::debug_span!(
                "smtp.command",
                verb = other.name(),
                reply_code = field::Empty
            ),
        };
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        let recorded = span.clone();
        Box::pin(
            async move {
                let result = future.await;
                match &result {
                    Ok(reply) => {
                        recorded.record("reply_code", reply.code);
                        recorded.record("outcome", outcome(reply));
                    }
                    Err(error) => {
                        recorded.record("outcome", "error");
                        tracing::warn!(%error, "request failed");
                    }
                }
                result
            }
            .instrument(span),
        )
    }
}

fn outcome(reply: &Reply) -> &'static str {
    match reply.code / 100 {
        2 => "accepted",
        4 => "deferred",
        _ => "rejected",
    }
}
