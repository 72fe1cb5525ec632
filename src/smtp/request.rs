//! What a session asks the Tower stack, and what the stack answers.
//!
//! The session builds an [`SmtpRequest`] for every decision it delegates
//! (a sender, a recipient, a complete message); the stack answers with an
//! [`SmtpResponse`]: a typed [`Outcome`] that the session, spans and metrics
//! read, and the [`Reply`] the client sees, derived from the outcome once.

use std::net::SocketAddr;

use bytes::Bytes;

use super::command::MailParams;
use super::reply::Reply;

/// The TLS a session runs over (RFC 8446 / IANA names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.3`, `TLSv1.2`.
    pub version: String,
    /// The cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
}

/// What the connection knows about the client, carried by every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub peer: SocketAddr,
    /// The EHLO/HELO name.
    pub helo: String,
    /// Set once STARTTLS succeeded (or from the start on the implicit-TLS port).
    pub tls: Option<TlsInfo>,
    /// The user name of a successful `AUTH` (RFC 4954).
    pub authenticated: Option<String>,
}

/// A password as the client sent it in a SASL response. Its `Debug` shows
/// nothing, so no log line or panic message can carry it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Vec<u8>);

impl Password {
    pub fn new(octets: Vec<u8>) -> Self {
        Self(octets)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The credentials of one `AUTH` exchange, decoded from its SASL
/// mechanism (PLAIN or LOGIN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthAttempt {
    /// `PLAIN` or `LOGIN`, for logs.
    pub mechanism: &'static str,
    /// The authentication identity; UTF-8, never empty.
    pub username: String,
    pub password: Password,
}

/// A complete message with its envelope, as received after DATA or the
/// last BDAT chunk.
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
    /// Check credentials (`AUTH`): `235`, `535`, or `454` when throttled.
    Auth(AuthAttempt),
    Mail {
        sender: String,
        params: MailParams,
    },
    Rcpt {
        recipient: String,
    },
    Message(Envelope),
}

impl RequestKind {
    /// Short name for spans and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Auth(_) => "AUTH",
            Self::Mail { .. } => "MAIL",
            Self::Rcpt { .. } => "RCPT",
            Self::Message(_) => "DATA",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SmtpRequest {
    pub session: SessionInfo,
    pub kind: RequestKind,
    /// What a layer learned about the request for the layers below it
    /// (authentication results, for one), keyed by type: the layers share
    /// no other state, and the SMTP types need not know theirs.
    pub extensions: http::Extensions,
}

/// What the stack decided about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `MAIL` or `RCPT` accepted: the transaction takes it; `AUTH`
    /// credentials are valid.
    Accepted,
    /// `MAIL` or `RCPT` refused (an unknown recipient, a policy); the
    /// transaction goes on without it. `AUTH` credentials are invalid.
    Refused,
    /// The message reached the consumer for every recipient.
    Delivered,
    /// The message is durably queued and will reach the consumer later.
    Queued,
    /// The consumer refused the message for good.
    Rejected,
    /// Not taken now: the sender keeps the message and retries (also a
    /// throttled `AUTH` or a rate-limited `MAIL`).
    Deferred,
}

impl Outcome {
    /// The label used in spans and in `maillaser_messages_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Refused => "refused",
            Self::Delivered => "delivered",
            Self::Queued => "spooled",
            Self::Rejected => "rejected",
            Self::Deferred => "deferred",
        }
    }
}

/// The stack's answer: the outcome, and the reply that tells the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpResponse {
    pub outcome: Outcome,
    pub reply: Reply,
}

impl SmtpResponse {
    pub fn new(outcome: Outcome, reply: Reply) -> Self {
        Self { outcome, reply }
    }

    /// The sender is taken.
    pub fn sender_accepted() -> Self {
        Self::new(Outcome::Accepted, Reply::sender_ok())
    }

    /// The recipient is taken.
    pub fn recipient_accepted() -> Self {
        Self::new(Outcome::Accepted, Reply::recipient_ok())
    }

    /// A request the stack failed to answer: the client keeps the mail and
    /// retries.
    pub fn failed() -> Self {
        Self::new(Outcome::Deferred, Reply::local_error())
    }
}

#[cfg(test)]
impl SmtpRequest {
    /// `RCPT TO:<recipient>` from a plain session on loopback.
    pub(crate) fn test_rcpt(recipient: &str) -> Self {
        Self {
            session: SessionInfo {
                peer: SocketAddr::from(([127, 0, 0, 1], 1)),
                helo: "client.example".into(),
                tls: None,
                authenticated: None,
            },
            kind: RequestKind::Rcpt {
                recipient: recipient.into(),
            },
            extensions: http::Extensions::new(),
        }
    }
}
