//! Authentication at end of data (`MAIL_LASER_DMARC_MODE`): SPF, DKIM,
//! DMARC and ARC for each message, then the mode's decision. A refused
//! message never reaches the layers below; an accepted one carries its
//! [`AuthReport`] in `request.extensions` for them (the hand-off puts it
//! in the payload).

use std::task::{Context, Poll};

use futures_util::future::{BoxFuture, Either};
use tower::{Layer, Service};

use crate::auth::{AuthReport, Authenticator, DmarcMode, MessageToCheck, Verdict};
use crate::smtp::reply::Reply;
use crate::smtp::{Outcome, RequestKind, SmtpRequest, SmtpResponse};
use crate::telemetry::{Metrics, Printable};

/// Authenticates messages; passes everything else, and everything in mode
/// `off`, through untouched.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    authenticator: Authenticator,
    metrics: Metrics,
}

impl AuthLayer {
    pub const fn new(authenticator: Authenticator, metrics: Metrics) -> Self {
        Self {
            authenticator,
            metrics,
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticate {
            inner,
            authenticator: self.authenticator.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

// === impl Authenticate ===

#[derive(Debug, Clone)]
pub struct Authenticate<S> {
    inner: S,
    authenticator: Authenticator,
    metrics: Metrics,
}

impl<S> Service<SmtpRequest> for Authenticate<S>
where
    S: Service<SmtpRequest, Response = SmtpResponse> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = SmtpResponse;
    type Error = S::Error;
    type Future = Either<S::Future, BoxFuture<'static, Result<SmtpResponse, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: SmtpRequest) -> Self::Future {
        if self.authenticator.mode() == DmarcMode::Off
            || !matches!(request.kind, RequestKind::Message(_))
        {
            return Either::Left(self.inner.call(request));
        }
        let mut inner = super::take_ready(&mut self.inner);
        let authenticator = self.authenticator.clone();
        let metrics = self.metrics.clone();
        let span = tracing::Span::current();
        Either::Right(Box::pin(async move {
            let report = match &request.kind {
                RequestKind::Message(envelope) => {
                    authenticator
                        .authenticate(MessageToCheck {
                            message: &envelope.message,
                            client_ip: request.session.peer.ip(),
                            helo: &request.session.helo,
                            mail_from: &envelope.sender,
                        })
                        .await
                }
                _ => None,
            };
            let Some(report) = report else {
                return inner.call(request).await;
            };
            let verdict = authenticator.verdict(&report);
            metrics.auth_result(report.dmarc_result().as_str());
            record(&span, &report, verdict);
            match verdict {
                Verdict::Reject => Ok(SmtpResponse::new(
                    Outcome::Rejected,
                    Reply::dmarc_rejected(),
                )),
                Verdict::Defer => Ok(SmtpResponse::new(
                    Outcome::Deferred,
                    Reply::dmarc_temporary_failure(),
                )),
                Verdict::Accept => {
                    request.extensions.insert(report);
                    inner.call(request).await
                }
            }
        }))
    }
}

/// The results on the transaction's span and in one log line: domains and
/// results only, never the message's content.
fn record(span: &tracing::Span, report: &AuthReport, verdict: Verdict) {
    let fields = report.fields();
    let dkim = fields
        .dkim
        .iter()
        .map(|signature| signature.result.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let spf_mail_from = fields.spf.mail_from.result.as_str();
    let spf_helo = fields.spf.helo.result.as_str();
    let arc = fields.arc.result.as_str();
    let policy = report.policy().map_or("", |policy| policy.as_str());
    let from_domain = fields.dmarc.from_domain.as_deref().unwrap_or_default();
    span.record("auth.dmarc", report.dmarc_result().as_str());
    span.record("auth.dmarc.policy", policy);
    span.record("auth.from_domain", Printable(from_domain).to_string());
    span.record("auth.spf.mail_from", spf_mail_from);
    span.record("auth.spf.helo", spf_helo);
    span.record("auth.dkim", dkim.as_str());
    span.record("auth.arc", arc);
    span.record("auth.verdict", verdict.as_str());
    let log = |message: &str| {
        tracing::info!(
            dmarc = report.dmarc_result().as_str(),
            policy,
            from_domain = %Printable(from_domain),
            spf.mail_from = spf_mail_from,
            spf.helo = spf_helo,
            dkim,
            arc,
            timed_out = report.timed_out(),
            "{message}"
        );
    };
    match verdict {
        Verdict::Accept => log("message authenticated"),
        Verdict::Reject => log("message refused by the From domain's DMARC policy"),
        Verdict::Defer => log("message deferred: DMARC could not be evaluated"),
    }
}

#[cfg(test)]
mod tests {
    use std::future::{Ready, ready};
    use std::net::SocketAddr;

    use tower::{ServiceExt, service_fn};

    use super::*;
    use crate::smtp::{Envelope, SessionInfo};

    fn message() -> SmtpRequest {
        SmtpRequest {
            session: SessionInfo {
                peer: SocketAddr::from(([127, 0, 0, 1], 1)),
                helo: "client.example".into(),
                tls: None,
                authenticated: None,
            },
            kind: RequestKind::Message(Envelope {
                sender: "a@example.com".into(),
                recipients: vec!["b@example.com".into()],
                smtputf8: false,
                message: bytes::Bytes::from_static(b"From: a@example.com\r\n\r\nhi\r\n"),
            }),
            extensions: http::Extensions::new(),
        }
    }

    /// Mode `off` hands every request on as it came: no report, no check.
    #[tokio::test]
    async fn off_passes_messages_through_untouched() {
        let inner: fn(SmtpRequest) -> Ready<Result<SmtpResponse, tower::BoxError>> = |request| {
            assert!(request.extensions.get::<AuthReport>().is_none());
            ready(Ok(SmtpResponse::new(
                Outcome::Delivered,
                Reply::message_accepted(),
            )))
        };
        let layer = AuthLayer::new(Authenticator::off(), Metrics::disabled());
        let response = layer
            .layer(service_fn(inner))
            .oneshot(message())
            .await
            .unwrap();
        assert_eq!(response.outcome, Outcome::Delivered);
        let rcpt = layer
            .layer(service_fn(inner))
            .oneshot(SmtpRequest::test_rcpt("b@example.com"))
            .await
            .unwrap();
        assert_eq!(rcpt.outcome, Outcome::Delivered);
    }
}
