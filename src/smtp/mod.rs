//! The SMTP protocol, pure: bytes → frames ([`codec`]), command lines →
//! [`command::Command`]s, the dialogue as a state machine ([`session`]), the
//! replies ([`reply`]) and what a session asks the Tower stack
//! ([`request`]). No I/O and nothing above it in the crate: the server drives
//! it, the stack answers it.

pub mod codec;
pub mod command;
pub mod reply;
pub mod request;
pub mod session;

pub use request::{
    AuthAttempt, Envelope, Outcome, Password, RequestKind, SessionInfo, SmtpRequest, SmtpResponse,
    TlsInfo,
};
