//! The outermost layer: whatever fails below it becomes a typed response
//! the client can act on, so the connection never handles an error.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use futures_util::future::{Either, FutureExt, Map};
use tower::timeout::error::Elapsed;
use tower::{BoxError, Layer, Service};

use crate::smtp::reply::Reply;
use crate::smtp::{Outcome, SmtpRequest, SmtpResponse};

/// Turns every error of the inner service into a response.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplyOnErrorLayer;

impl<S> Layer<S> for ReplyOnErrorLayer {
    type Service = ReplyOnError<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ReplyOnError {
            inner,
            not_ready: None,
        }
    }
}

// === impl ReplyOnError ===

#[derive(Debug)]
pub struct ReplyOnError<S> {
    inner: S,
    /// The inner service failed to become ready: the next call is answered
    /// with this error's response instead of reaching it.
    not_ready: Option<BoxError>,
}

impl<S: Clone> Clone for ReplyOnError<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            not_ready: None,
        }
    }
}

type ToResponse = fn(Result<SmtpResponse, BoxError>) -> Result<SmtpResponse, Infallible>;

impl<S> Service<SmtpRequest> for ReplyOnError<S>
where
    S: Service<SmtpRequest, Response = SmtpResponse, Error = BoxError>,
{
    type Response = SmtpResponse;
    type Error = Infallible;
    type Future = Either<Ready<Result<SmtpResponse, Infallible>>, Map<S::Future, ToResponse>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.not_ready.is_some() {
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(error)) => {
                self.not_ready = Some(error);
                Poll::Ready(Ok(()))
            }
        }
    }

    fn call(&mut self, request: SmtpRequest) -> Self::Future {
        if let Some(error) = self.not_ready.take() {
            return Either::Left(ready(Ok(response_for_error(&error))));
        }
        let to_response: ToResponse =
            |result| Ok(result.unwrap_or_else(|error| response_for_error(&error)));
        Either::Right(self.inner.call(request).map(to_response))
    }
}

/// The one mapping from stack errors to responses. Every failure is
/// temporary from the client's point of view: it keeps the mail and retries.
pub fn response_for_error(error: &BoxError) -> SmtpResponse {
    if error.is::<Elapsed>() {
        tracing::warn!("request timed out in the stack");
        SmtpResponse::new(Outcome::Deferred, Reply::delivery_deferred())
    } else {
        tracing::error!(error = %crate::telemetry::ErrorChain(error.as_ref()), "stack error");
        SmtpResponse::failed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{ServiceExt, service_fn};

    fn request() -> SmtpRequest {
        SmtpRequest::test_rcpt("a@example.com")
    }

    #[tokio::test]
    async fn errors_become_temporary_failures() {
        let failing = service_fn(|_| async { Err::<SmtpResponse, BoxError>("boom".into()) });
        let response = ReplyOnErrorLayer.layer(failing).oneshot(request()).await;
        let Ok(response) = response;
        assert_eq!(response, SmtpResponse::failed());
        assert_eq!(response.reply.code, 451);

        let slow = service_fn(|_| async { Err::<SmtpResponse, BoxError>(Elapsed::new().into()) });
        let Ok(response) = ReplyOnErrorLayer.layer(slow).oneshot(request()).await;
        assert_eq!(response.outcome, Outcome::Deferred);
        assert_eq!(response.reply, Reply::delivery_deferred());
    }

    #[tokio::test]
    async fn answers_pass_through() {
        let accepting =
            service_fn(|_| async { Ok::<_, BoxError>(SmtpResponse::recipient_accepted()) });
        let Ok(response) = ReplyOnErrorLayer.layer(accepting).oneshot(request()).await;
        assert_eq!(response, SmtpResponse::recipient_accepted());
    }
}
