//! Recipient validation: only configured targets are accepted.

use std::collections::HashSet;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::Either;
use tower::{Layer, Service};

use super::{RequestKind, SmtpRequest};
use crate::smtp::reply::Reply;

/// Which recipients exist, and how many unknown ones a session may try.
#[derive(Debug, Clone)]
pub struct RecipientPolicy {
    /// Lower-cased addresses; matching is case-insensitive (SPEC §1).
    targets: Arc<HashSet<String>>,
    /// After this many unknown recipients the session is closed; 0 = no cap.
    max_unknown: u32,
}

impl RecipientPolicy {
    pub fn new<I, S>(targets: I, max_unknown: u32) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self {
            targets: Arc::new(
                targets
                    .into_iter()
                    .map(|target| target.as_ref().trim().to_lowercase())
                    .filter(|target| !target.is_empty())
                    .collect(),
            ),
            max_unknown,
        }
    }

    pub fn accepts(&self, recipient: &str) -> bool {
        self.targets.contains(&recipient.to_lowercase())
    }

    /// The reply for an unknown recipient, given how many came before it.
    fn refuse(&self, unknown_so_far: u32) -> Reply {
        if self.max_unknown != 0 && unknown_so_far >= self.max_unknown {
            Reply::too_many_unknown_recipients()
        } else {
            Reply::no_such_user()
        }
    }
}

/// Answers `RCPT` for unknown recipients itself; passes everything else on.
#[derive(Debug, Clone)]
pub struct RecipientLayer {
    policy: RecipientPolicy,
}

impl RecipientLayer {
    pub const fn new(policy: RecipientPolicy) -> Self {
        Self { policy }
    }
}

impl<S> Layer<S> for RecipientLayer {
    type Service = Recipients<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Recipients {
            inner,
            policy: self.policy.clone(),
        }
    }
}

// === impl Recipients ===

#[derive(Debug, Clone)]
pub struct Recipients<S> {
    inner: S,
    policy: RecipientPolicy,
}

impl<S> Service<SmtpRequest> for Recipients<S>
where
    S: Service<SmtpRequest, Response = Reply>,
{
    type Response = Reply;
    type Error = S::Error;
    type Future = Either<Ready<Result<Reply, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: SmtpRequest) -> Self::Future {
        if let RequestKind::Rcpt { recipient } = &request.kind
            && !self.policy.accepts(recipient)
        {
            tracing::debug!(%recipient, "unknown recipient");
            return Either::Left(ready(Ok(self
                .policy
                .refuse(request.session.unknown_recipients))));
        }
        Either::Right(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::SessionInfo;
    use tower::ServiceExt;
    use tower::service_fn;

    fn rcpt(recipient: &str, unknown_so_far: u32) -> SmtpRequest {
        SmtpRequest {
            session: SessionInfo {
                peer: "127.0.0.1:1".parse().unwrap(),
                helo: "c".into(),
                tls: false,
                unknown_recipients: unknown_so_far,
            },
            kind: RequestKind::Rcpt {
                recipient: recipient.into(),
            },
        }
    }

    async fn answer(policy: RecipientPolicy, request: SmtpRequest) -> Reply {
        let inner = service_fn(|_| async { Ok::<_, tower::BoxError>(Reply::recipient_ok()) });
        RecipientLayer::new(policy)
            .layer(inner)
            .oneshot(request)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn matches_case_insensitively_and_trims_configuration() {
        let policy = RecipientPolicy::new([" Alerts@Example.com "], 3);
        assert_eq!(
            answer(policy.clone(), rcpt("alerts@example.COM", 0))
                .await
                .code,
            250
        );
        assert_eq!(
            answer(policy, rcpt("other@example.com", 0)).await,
            Reply::no_such_user()
        );
    }

    #[tokio::test]
    async fn unknown_recipient_cap() {
        let policy = RecipientPolicy::new(["a@example.com"], 3);
        assert_eq!(
            answer(policy.clone(), rcpt("x@example.com", 2)).await.code,
            550
        );
        let closing = answer(policy, rcpt("x@example.com", 3)).await;
        assert_eq!(closing, Reply::too_many_unknown_recipients());
        assert!(closing.closes_connection());
        let unlimited = RecipientPolicy::new(["a@example.com"], 0);
        assert_eq!(
            answer(unlimited, rcpt("x@example.com", 1000)).await.code,
            550
        );
    }
}
