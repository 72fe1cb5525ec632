//! The Tower side of the server: what a session asks, and every layer that
//! decides the answer.
//!
//! [`build`] is the one place the stack is assembled, so the order of the
//! layers can be read top to bottom: tracing and metrics outermost, then the timeout that
//! bounds everything below it, then policy (recipient validation), then the
//! terminal [`Deliver`] service.

mod deliver;
mod error;
mod recipient;
mod trace;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;

pub use deliver::{Deliver, ParseOptions};
pub use error::reply_for_error;
pub use recipient::{RecipientLayer, RecipientPolicy};
pub use trace::TraceLayer;

use crate::sink::SharedSink;
use crate::smtp::command::MailParams;
use crate::smtp::reply::Reply;
use crate::telemetry::Metrics;

/// What the connection knows about the client, carried by every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub peer: SocketAddr,
    /// The EHLO/HELO name.
    pub helo: String,
    pub tls: bool,
    /// Unknown recipients seen so far in this session.
    pub unknown_recipients: u32,
}

/// A complete message with its envelope, as received after DATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The reverse-path, `""` for the null path.
    pub sender: String,
    /// Accepted recipients, as the client wrote them, without duplicates.
    pub recipients: Vec<String>,
    pub smtputf8: bool,
    /// The dot-unstuffed message (RFC 5322 headers and body).
    pub message: Bytes,
}

/// The decisions a session delegates to the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestKind {
    Mail { sender: String, params: MailParams },
    Rcpt { recipient: String },
    Message(Envelope),
}

impl RequestKind {
    /// Short name for spans and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Mail { .. } => "MAIL",
            Self::Rcpt { .. } => "RCPT",
            Self::Message(_) => "DATA",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpRequest {
    pub session: SessionInfo,
    pub kind: RequestKind,
}

/// The assembled stack as one cloneable service; each connection owns a clone.
pub type SmtpService = BoxCloneSyncService<SmtpRequest, Reply, tower::BoxError>;

/// Everything [`build`] needs, parsed once from the configuration.
#[derive(Debug, Clone)]
pub struct StackConfig {
    pub recipients: RecipientPolicy,
    pub parse: ParseOptions,
    /// Upper bound for any one request, delivery included; well under the
    /// 10 minutes a client waits for the end-of-data reply (RFC 5321 §4.5.3.2.6).
    pub request_timeout: Duration,
}

/// Builds the stack. The only place layers are ordered.
pub fn build(config: StackConfig, sink: SharedSink, metrics: Metrics) -> SmtpService {
    let service = ServiceBuilder::new()
        .layer(TraceLayer::new(metrics))
        .timeout(config.request_timeout)
        .layer(RecipientLayer::new(config.recipients))
        .service(Deliver::new(sink, config.parse));
    BoxCloneSyncService::new(service)
}
