//! Recipient validation: only configured targets are accepted, and a
//! session that keeps guessing addresses is closed.

use std::collections::HashSet;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::Either;
use tower::{Layer, Service};

use crate::routes::{LiveRoutes, RouteSet, TransactionRoutes};
use crate::smtp::command::{canonical_mailbox, split_plus_tag};
use crate::smtp::reply::Reply;
use crate::smtp::{Outcome, RequestKind, SmtpRequest, SmtpResponse};
use crate::telemetry::Printable;

/// Which recipients exist, and how many unknown ones a session may try.
#[derive(Debug, Clone)]
pub struct RecipientPolicy {
    /// Canonical addresses; matching is case-insensitive.
    targets: Arc<HashSet<String>>,
    /// After this many unknown recipients the session is closed; 0 = no cap.
    max_unknown: u32,
    /// `local+tag@domain` is accepted for the target `local@domain`.
    plus_addressing: bool,
    /// With `MAIL_LASER_ROUTES`: a recipient exists when a route in force
    /// matches it (the routes delivery uses), and `targets` is empty.
    routes: Option<LiveRoutes>,
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
                    .map(|target| canonical_mailbox(target.as_ref().trim()))
                    .filter(|target| !target.is_empty())
                    .collect(),
            ),
            max_unknown,
            plus_addressing: false,
            routes: None,
        }
    }

    /// Recipients are those some route of `routes` matches.
    pub fn routed(routes: LiveRoutes, max_unknown: u32) -> Self {
        Self {
            targets: Arc::default(),
            max_unknown,
            plus_addressing: false,
            routes: Some(routes),
        }
    }

    /// Also accepts `local+tag@domain` for a target `local@domain`
    /// (`MAIL_LASER_PLUS_ADDRESSING`).
    #[must_use]
    pub fn with_plus_addressing(mut self, enabled: bool) -> Self {
        self.plus_addressing = enabled;
        self
    }

    /// Whether `recipient` exists now.
    pub fn accepts(&self, recipient: &str) -> bool {
        self.accepts_in(recipient, &http::Extensions::new())
    }

    /// Whether `recipient` exists for the transaction of a request with
    /// these `extensions`: with routes, whether a route it pinned matches.
    fn accepts_in(&self, recipient: &str, extensions: &http::Extensions) -> bool {
        if let Some(routes) = &self.routes {
            return routes.of(extensions).table().accepts(recipient);
        }
        self.targets.contains(&canonical_mailbox(recipient))
            || (self.plus_addressing
                && split_plus_tag(recipient)
                    .is_some_and(|(base, _)| self.targets.contains(&canonical_mailbox(&base))))
    }

    /// The response to the `unknown`-th unknown recipient of a session
    /// (1-based): `550` up to the cap, then `421`, which closes the session.
    fn refuse(&self, unknown: u32) -> SmtpResponse {
        let reply = if self.max_unknown != 0 && unknown > self.max_unknown {
            Reply::too_many_unknown_recipients()
        } else {
            Reply::no_such_user()
        };
        SmtpResponse::new(Outcome::Refused, reply)
    }
}

/// Answers `RCPT` for unknown recipients itself and counts them per
/// session; passes everything else on. With routes, it pins the routes in
/// force at each `MAIL` for the rest of that transaction
/// ([`TransactionRoutes`]), for itself and the layers below.
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
            unknown: 0,
            pinned: None,
        }
    }
}

// === impl Recipients ===

/// Each connection owns a clone of the stack (see
/// [`SmtpService`](super::SmtpService)), so `unknown` counts one session.
#[derive(Debug, Clone)]
pub struct Recipients<S> {
    inner: S,
    policy: RecipientPolicy,
    /// Unknown recipients this session has tried.
    unknown: u32,
    /// The routes of the open transaction, pinned at its `MAIL`.
    pinned: Option<Arc<RouteSet>>,
}

impl<S> Service<SmtpRequest> for Recipients<S>
where
    S: Service<SmtpRequest, Response = SmtpResponse>,
{
    type Response = SmtpResponse;
    type Error = S::Error;
    type Future = Either<Ready<Result<SmtpResponse, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: SmtpRequest) -> Self::Future {
        if let (RequestKind::Mail { .. }, Some(routes)) = (&request.kind, &self.policy.routes) {
            self.pinned = Some(routes.current());
        }
        let pinned = match request.kind {
            // The end of data ends the transaction.
            RequestKind::Message(_) => self.pinned.take(),
            _ => self.pinned.clone(),
        };
        if let Some(routes) = pinned {
            request.extensions.insert(TransactionRoutes(routes));
        }
        if let RequestKind::Rcpt { recipient } = &request.kind
            && !self.policy.accepts_in(recipient, &request.extensions)
        {
            self.unknown = self.unknown.saturating_add(1);
            tracing::info!(
                recipient = %Printable(recipient),
                unknown = self.unknown,
                "unknown recipient refused"
            );
            return Either::Left(ready(Ok(self.policy.refuse(self.unknown))));
        }
        Either::Right(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;
    use tower::service_fn;

    fn rcpt(recipient: &str) -> SmtpRequest {
        SmtpRequest::test_rcpt(recipient)
    }

    type Session = Recipients<
        tower::util::ServiceFn<fn(SmtpRequest) -> Ready<Result<SmtpResponse, tower::BoxError>>>,
    >;

    fn session(policy: RecipientPolicy) -> Session {
        let inner: fn(SmtpRequest) -> Ready<Result<SmtpResponse, tower::BoxError>> =
            |_| ready(Ok(SmtpResponse::recipient_accepted()));
        RecipientLayer::new(policy).layer(service_fn(inner))
    }

    async fn answer(session: &mut Session, recipient: &str) -> SmtpResponse {
        session
            .ready()
            .await
            .unwrap()
            .call(rcpt(recipient))
            .await
            .unwrap()
    }

    /// Issue 11: with plus addressing, `local+tag@domain` reaches the
    /// target `local@domain`; without it, it is another mailbox.
    #[test]
    fn plus_addressing_reaches_the_base_address() {
        let plain = RecipientPolicy::new(["alerts@example.com"], 0);
        assert!(!plain.accepts("alerts+ticket-42@example.com"));
        let plus = plain.with_plus_addressing(true);
        assert!(plus.accepts("alerts+ticket-42@example.com"));
        assert!(plus.accepts("Alerts+x@EXAMPLE.com"));
        assert!(plus.accepts("alerts@example.com"));
        assert!(!plus.accepts("other+ticket@example.com"));
        assert!(!plus.accepts("+alerts@example.com"));
        assert!(!plus.accepts("\"alerts+x\"@example.com"));
    }

    #[tokio::test]
    async fn matches_case_insensitively_and_trims_configuration() {
        let mut session = session(RecipientPolicy::new([" Alerts@Example.com "], 3));
        assert_eq!(
            answer(&mut session, "alerts@example.COM").await,
            SmtpResponse::recipient_accepted()
        );
        let refused = answer(&mut session, "other@example.com").await;
        assert_eq!(refused.outcome, Outcome::Refused);
        assert_eq!(refused.reply, Reply::no_such_user());
    }

    #[tokio::test]
    async fn unknown_recipient_cap_counts_per_session() {
        let prototype = session(RecipientPolicy::new(["a@example.com"], 3));
        let mut first = prototype.clone();
        for _ in 0..3 {
            assert_eq!(
                answer(&mut first, "x@example.com").await.reply,
                Reply::no_such_user()
            );
        }
        // A known recipient does not count.
        assert_eq!(
            answer(&mut first, "a@example.com").await.outcome,
            Outcome::Accepted
        );
        let closing = answer(&mut first, "x@example.com").await;
        assert_eq!(closing.reply, Reply::too_many_unknown_recipients());
        assert!(closing.reply.closes_connection());
        // Another session starts from zero.
        let mut second = prototype.clone();
        assert_eq!(
            answer(&mut second, "x@example.com").await.reply,
            Reply::no_such_user()
        );
    }

    #[tokio::test]
    async fn zero_means_no_cap() {
        let mut unlimited = session(RecipientPolicy::new(["a@example.com"], 0));
        for _ in 0..1000 {
            assert_eq!(
                answer(&mut unlimited, "x@example.com").await.reply,
                Reply::no_such_user()
            );
        }
    }
}
