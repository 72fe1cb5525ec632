//! The Tower side of the server: every layer that decides how a session's
//! requests are answered.
//!
//! [`build`] is the one place the stack is assembled, so the order of the
//! layers reads top to bottom:
//!
//! ```text
//! ReplyOnError   errors → a typed response: the stack is infallible to the connection
//! Trace          a span per request; message outcome and size metrics
//! Timeout        bounds everything below it
//! Credentials    AUTH → 235 / 535 / 454 (Argon2id, off the async workers, throttled per IP)
//! Recipients     RCPT → accepted / unknown (550), the unknown-recipient cap (421);
//!                with routes, pins the routes in force at MAIL for the transaction
//! RateLimit      MAIL over MAIL_LASER_RATE_LIMIT_MESSAGES per client IP → 451 4.7.1
//! Auth           at end of data: SPF, DKIM, DMARC, ARC (MAIL_LASER_DMARC_MODE);
//!                enforce: DMARC fail under p=reject/quarantine → 550 5.7.1,
//!                temperror → 451 4.7.0; the results ride in the request's
//!                extensions to the payload
//! Parse          parse the message once (small ones inline, others in the
//!                ParsePool); the result travels in the request's extensions
//! Policy         the Cedar sender policy (MAIL_LASER_CEDAR_POLICIES): SendMail
//!                per recipient, Attach per attachment; a refusal → 550 5.7.1
//! Handoff        settle the attachments (inline, metadata, object store),
//!                one payload per recipient to the sink
//! ```

pub mod attachments;
mod auth;
pub mod credentials;
mod errors;
mod handoff;
mod parse;
mod policy;
pub mod rate_limit;
mod recipient;
mod trace;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;

pub use attachments::{
    AttachmentError, AttachmentMode, AttachmentOptions, DEFAULT_MAX_ATTACHMENT_SIZE,
};
pub use auth::{AuthLayer, Authenticate};
pub use credentials::{Credentials, CredentialsError, CredentialsLayer};
pub use errors::ReplyOnErrorLayer;
pub use handoff::{Handoff, ParseOptions};
pub use parse::{PARSE_TIME_LIMIT, Parse, ParseLayer, ParsePool, Parsed};
pub use policy::{Policy, PolicyLayer};
pub use rate_limit::{IpRateLimiter, RateLimitLayer};
pub use recipient::{RecipientLayer, RecipientPolicy};
pub use trace::TraceLayer;

use crate::auth::Authenticator;
use crate::policy::SenderPolicy;
use crate::sink::SharedSink;
use crate::smtp::codec::MemoryBudget;
use crate::smtp::{SmtpRequest, SmtpResponse};
use crate::telemetry::Metrics;

/// The assembled stack as one cloneable service. Each connection owns a
/// clone of a prototype that is never called itself, so what a layer keeps
/// in its service (the unknown-recipient count) is per session.
pub type SmtpService = BoxCloneSyncService<SmtpRequest, SmtpResponse, Infallible>;

/// Everything [`build`] needs, parsed once from the configuration.
#[derive(Debug, Clone)]
pub struct StackConfig {
    pub recipients: RecipientPolicy,
    pub parse: ParseOptions,
    /// Authentication at end of data (`MAIL_LASER_DMARC_*`).
    pub auth: Authenticator,
    /// The sender policy (`MAIL_LASER_CEDAR_POLICIES`); none allows all.
    pub policy: Option<Arc<SenderPolicy>>,
    /// Upper bound for any one request, delivery included; well under the
    /// 10 minutes a client waits for the end-of-data reply (RFC 5321 §4.5.3.2.6).
    pub request_timeout: Duration,
    pub access: AccessConfig,
}

/// SMTP AUTH and the per-IP limits of the stack (`docs/access.md`).
#[derive(Debug, Clone, Default)]
pub struct AccessConfig {
    /// The users file, when `MAIL_LASER_AUTH` is not `off`.
    pub credentials: Option<Arc<Credentials>>,
    /// `MAIL_LASER_RATE_LIMIT_AUTH_FAILURES`: failed `AUTH` per client IP
    /// and minute before `454`; 0 = no limit.
    pub auth_failures_per_minute: u32,
    /// `MAIL_LASER_RATE_LIMIT_MESSAGES`: `MAIL` per client IP and minute
    /// before `451 4.7.1`; 0 = no limit.
    pub messages_per_minute: u32,
}

/// Builds the stack. The only place layers are ordered.
pub fn build(
    config: StackConfig,
    sink: SharedSink,
    metrics: Metrics,
    memory: MemoryBudget,
) -> SmtpService {
    let access = config.access;
    let service = ServiceBuilder::new()
        .layer(ReplyOnErrorLayer)
        .layer(TraceLayer::new(metrics.clone()))
        .timeout(config.request_timeout)
        .layer(CredentialsLayer::new(
            access.credentials,
            access.auth_failures_per_minute,
            metrics.clone(),
        ))
        .layer(RecipientLayer::new(config.recipients))
        .layer(RateLimitLayer::new(
            access.messages_per_minute,
            metrics.clone(),
        ))
        .layer(AuthLayer::new(config.auth, metrics))
        .layer(ParseLayer::new(config.parse.clone(), ParsePool::per_core()))
        .layer(PolicyLayer::new(config.policy))
        .service(Handoff::new(sink, config.parse, memory));
    BoxCloneSyncService::new(service)
}

/// The service a layer calls for this request: the one `poll_ready` made
/// ready, leaving a fresh clone in its place for the next request (tower's
/// usual swap, for layers whose future outlives `call`).
fn take_ready<S: Clone>(inner: &mut S) -> S {
    let fresh = inner.clone();
    std::mem::replace(inner, fresh)
}
