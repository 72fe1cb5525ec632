//! The webhook sink: each payload is POSTed through its own Tower stack over
//! a shared `reqwest::Client` (`docs/webhook.md`, `docs/delivery.md`).
//!
//! [`build`] is the one place the outbound layers are ordered, outermost
//! first:
//!
//! ```text
//! Breaker   consecutive failed deliveries open it; while open, no request
//! Retry     tower's machinery, our policy: exponential backoff, full jitter
//! Classify  response/error → delivered, rejected (permanent) or temporary
//! Attempt   span, latency metric and `traceparent` per attempt
//! Timeout   per attempt
//! Sign      HMAC headers, fresh timestamp per attempt
//! Http      reqwest
//! ```

mod attempt;
mod breaker;
mod classify;
mod client;
mod error;
mod format;
mod request;
mod retry;
mod retry_after;
mod sign;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{self, BoxFuture};
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};

pub use attempt::{AttemptLayer, redacted};
pub use breaker::{Breaker, BreakerConfig, BreakerLayer, BreakerState};
pub use classify::{ClassifyLayer, rejection_reason};
pub use client::{HttpClient, WebhookResponse};
pub use error::WebhookError;
pub use format::{FORMAT_NAMES, FormatError, MailgunKey, WebhookFormat, mailgun_signature};
pub(crate) use request::hex;
pub use request::{Body, WebhookRequest, idempotency_key};
pub use retry::{Backoff, RetryPolicy, retry_wait};
pub use retry_after::{MAX_RETRY_AFTER, parse_retry_after};
pub use sign::{SignLayer, SigningSecret, StandardSecret, signature, standard_signature};

use crate::sink::{DeliveryOutcome, RecipientPayload, Sink};
use crate::telemetry::{ErrorChain, Metrics};

/// Everything the webhook side needs, validated at start.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// `https://…`, or `http://…` to loopback (or anywhere when allowed).
    pub url: reqwest::Url,
    /// Bound on one attempt (`MAIL_LASER_WEBHOOK_TIMEOUT`).
    pub attempt_timeout: Duration,
    /// Retries after the first attempt (`MAIL_LASER_WEBHOOK_MAX_RETRIES`).
    pub max_retries: u32,
    pub backoff: Backoff,
    /// No retry starts once it could not finish within this much time from
    /// the first attempt: the SMTP client is waiting for its reply.
    pub budget: Duration,
    pub breaker: BreakerConfig,
    pub signing_secret: Option<SigningSecret>,
    /// Standard Webhooks secrets (a route's `signing_secrets`); each signs.
    pub standard_secrets: Vec<StandardSecret>,
    /// Added to every request (a route's `headers`); values are marked
    /// sensitive, so they are never printed.
    pub headers: reqwest::header::HeaderMap,
    /// What the requests look like (a route's `format`).
    pub format: WebhookFormat,
    /// A route's `attachments`.
    pub attachments: AttachmentView,
    /// With a routes file: the `headers` this webhook's payloads keep (the
    /// route's `header_prefix`, else `MAIL_LASER_HEADER_PREFIX`), since the
    /// message was parsed for every route's prefixes. `None`: as parsed.
    pub header_prefixes: Option<Arc<[String]>>,
}

/// How a route's requests carry the message's attachments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AttachmentView {
    /// As `MAIL_LASER_ATTACHMENT_DELIVERY` settled them: octets inline, or
    /// their object-store URLs.
    #[default]
    AsSettled,
    /// Described only (name, type, size, hash), as in `metadata` mode: a
    /// route that must not receive the octets (a pager, an audit log).
    Metadata,
}

/// The assembled outbound stack.
pub type WebhookService = BoxCloneSyncService<WebhookRequest, (), WebhookError>;

/// Builds the outbound stack over `client` (shared by every route). The
/// only place its layers are ordered.
pub fn build(
    config: &WebhookConfig,
    metrics: &Metrics,
    client: reqwest::Client,
) -> (WebhookService, Breaker) {
    let http = HttpClient::shared(client, config.url.clone()).with_headers(config.headers.clone());
    let breaker = Breaker::new(config.breaker, metrics.clone());
    let service = ServiceBuilder::new()
        .layer(BreakerLayer::new(breaker.clone()))
        .retry(
            RetryPolicy::new(
                config.max_retries,
                config.backoff,
                config.budget,
                config.attempt_timeout,
            )
            .with_metrics(metrics.clone()),
        )
        .layer(ClassifyLayer)
        .layer(AttemptLayer::new(&config.url, metrics.clone()))
        .timeout(config.attempt_timeout)
        .layer(
            SignLayer::new(config.signing_secret.clone()).with_standard(&config.standard_secrets),
        )
        .service(http);
    (BoxCloneSyncService::new(service), breaker)
}

/// A [`Sink`] that resolves only once the webhook answered `2xx`.
#[derive(Clone)]
pub struct WebhookSink {
    service: WebhookService,
    breaker: Breaker,
    format: WebhookFormat,
    attachments: AttachmentView,
    header_prefixes: Option<Arc<[String]>>,
}

impl WebhookSink {
    /// With a client of its own.
    ///
    /// # Errors
    /// The HTTP client could not be built (TLS roots unavailable).
    pub fn new(config: &WebhookConfig, metrics: &Metrics) -> Result<Self, reqwest::Error> {
        Ok(Self::with_client(
            config,
            metrics,
            HttpClient::client(config.attempt_timeout)?,
        ))
    }

    /// Over `client`, whose connection pool other routes share.
    pub fn with_client(config: &WebhookConfig, metrics: &Metrics, client: reqwest::Client) -> Self {
        let (service, breaker) = build(config, metrics, client);
        breaker.observe_state(metrics);
        Self {
            service,
            breaker,
            format: config.format.clone(),
            attachments: config.attachments,
            header_prefixes: config.header_prefixes.clone(),
        }
    }

    /// Sends one request through the whole outbound stack; the returned
    /// future owns what it needs.
    ///
    /// # Errors
    /// How the delivery failed, [`WebhookError::Rejected`] included.
    pub fn post(
        &self,
        request: WebhookRequest,
    ) -> impl Future<Output = Result<(), WebhookError>> + Send + 'static {
        self.service.clone().oneshot(request)
    }

    /// The circuit breaker, for readiness and metrics.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }
}

impl WebhookSink {
    /// The least wait before `error`'s delivery is tried again: the
    /// consumer's `Retry-After`, or while the breaker is open, until it
    /// lets a probe through (a refused delivery tried sooner would only be
    /// refused again).
    pub fn asked_wait(&self, error: &WebhookError) -> Option<Duration> {
        match error {
            WebhookError::BreakerOpen => self.breaker.open_for(),
            other => other.retry_after(),
        }
    }
}

/// What a finished [`WebhookSink::post`] means for the payload: delivered,
/// rejected for good, or the temporary failure left for the caller to
/// handle (answer `451`, or spool it).
///
/// # Errors
/// The temporary failure.
pub fn settle(result: Result<(), WebhookError>) -> Result<DeliveryOutcome, WebhookError> {
    match result {
        Ok(()) => Ok(DeliveryOutcome::Delivered),
        Err(WebhookError::Rejected { reason, .. }) => Ok(DeliveryOutcome::Rejected { reason }),
        Err(error) => Err(error),
    }
}

impl WebhookSink {
    /// The request for `item` in this webhook's format, built once for
    /// every attempt.
    ///
    /// # Errors
    /// The format needs what `item` lacks (the original message).
    pub fn request(&self, item: &RecipientPayload) -> Result<WebhookRequest, FormatError> {
        let prefixes = self.header_prefixes.as_deref();
        let describe = self.attachments == AttachmentView::Metadata;
        if item.payload.differs_in_view(prefixes, describe) {
            // This route's view of the message, made once for every
            // recipient (and every route with the same view).
            let name = format!("view {describe} {prefixes:?}");
            let viewed = item
                .shared
                .payload_or_insert_with(&name, || item.payload.view(prefixes, describe));
            let item = RecipientPayload {
                payload: item.payload.with_message_of(&viewed),
                ..item.clone()
            };
            return WebhookRequest::formatted(&item, &self.format);
        }
        WebhookRequest::formatted(item, &self.format)
    }
}

impl Sink for WebhookSink {
    /// Ready unless the breaker is open: once its reset time has passed it
    /// is half-open and lets the next delivery probe, so readiness never
    /// waits for traffic that a load balancer would withhold.
    fn is_ready(&self) -> bool {
        self.breaker.state() != BreakerState::Open
    }

    fn deliver(&self, item: RecipientPayload) -> BoxFuture<'static, DeliveryOutcome> {
        let request = match self.request(&item) {
            Ok(request) => request,
            Err(error) => {
                tracing::error!(error = %ErrorChain(&error), "cannot build the webhook request");
                return Box::pin(future::ready(DeliveryOutcome::Deferred));
            }
        };
        let posted = self.post(request);
        Box::pin(async move {
            settle(posted.await).unwrap_or_else(|error| {
                tracing::warn!(error = %ErrorChain(&error), "webhook delivery failed");
                DeliveryOutcome::Deferred
            })
        })
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! A `tower_test` mock standing in for the layers below the one tested.

    use bytes::Bytes;
    use tower::ServiceExt;
    use tower::util::MapErr;
    use tower_test::mock;

    use super::{WebhookError, WebhookRequest};

    pub type MockWebhook =
        MapErr<mock::Mock<WebhookRequest, ()>, fn(tower::BoxError) -> WebhookError>;

    pub fn mock_webhook() -> (MockWebhook, mock::Handle<WebhookRequest, ()>) {
        let (service, handle) = mock::pair::<WebhookRequest, ()>();
        let to_webhook_error: fn(tower::BoxError) -> WebhookError =
            |error| match error.downcast::<WebhookError>() {
                Ok(error) => *error,
                Err(other) => WebhookError::Transport(other),
            };
        (service.map_err(to_webhook_error), handle)
    }

    pub fn request() -> WebhookRequest {
        WebhookRequest {
            body: Bytes::from_static(b"{}").into(),
            headers: Default::default(),
            attempt: 1,
        }
    }
}
