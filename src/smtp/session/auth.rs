//! `AUTH` (RFC 4954) with the PLAIN (RFC 4616) and LOGIN
//! (draft-murchison-sasl-login) mechanisms: the dialogue only. Whether
//! the credentials are valid is the stack's decision
//! ([`RequestKind::Auth`]); the session sequences the challenges, decodes
//! the responses and remembers who authenticated.
//!
//! Credentials never cross the wire in clear: `AUTH` is advertised and
//! accepted only once the session is in TLS.

use super::{Action, AwaitedResponse, Session, State};
use crate::smtp::command::Mechanism;
use crate::smtp::reply::Reply;
use crate::smtp::request::{AuthAttempt, Outcome, Password, RequestKind};

/// `AUTH` attempts a session may have refused (`535`, or `454` unchecked);
/// the last one is answered `421` and closes it: a guesser has to
/// reconnect, which the per-IP limits see, and a client looping on `454`
/// cannot spin.
pub const MAX_AUTH_FAILURES: u32 = 3;

/// `MAIL_LASER_AUTH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Not advertised; `AUTH` is `502`.
    #[default]
    Off,
    /// Advertised after TLS; mail is taken with or without it.
    Optional,
    /// Advertised after TLS; `MAIL` before a successful `AUTH` is `530`.
    Required,
}

/// `334` challenges: empty for PLAIN (the client sends everything at
/// once), then base64 `Username:` and `Password:` for LOGIN.
const PLAIN_CHALLENGE: &str = "";
const LOGIN_USERNAME: &str = "VXNlcm5hbWU6";
const LOGIN_PASSWORD: &str = "UGFzc3dvcmQ6";

/// Which response a SASL exchange waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Sasl {
    /// The PLAIN message: `[authzid] NUL authcid NUL passwd`.
    Plain,
    /// LOGIN's user name.
    LoginUsername,
    /// LOGIN's password, for this user name.
    LoginPassword { username: String },
}

/// Why a SASL response cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// `*`: the client gave up (RFC 4954 §4).
    Cancelled,
    /// Not base64.
    BadBase64,
    /// Decoded, but not what the mechanism expects.
    Malformed,
    /// PLAIN asked to act as another identity (an authzid that is not the
    /// authcid), which MailLaser does not offer.
    Impersonation,
}

impl Refusal {
    fn reply(self) -> Reply {
        match self {
            Self::Cancelled => Reply::auth_cancelled(),
            Self::BadBase64 => Reply::auth_bad_base64(),
            Self::Malformed => Reply::auth_malformed(),
            Self::Impersonation => Reply::auth_invalid(),
        }
    }
}

impl Session {
    /// The user name of a successful `AUTH`, once there was one.
    pub fn authenticated(&self) -> Option<&str> {
        self.authenticated.as_deref()
    }

    /// Whether `AUTH` is offered now: configured, and in TLS.
    pub(super) fn offers_auth(&self) -> bool {
        self.config.auth != AuthMode::Off && self.tls.is_some()
    }

    /// `AUTH mechanism [initial-response]`.
    pub(super) fn auth(&mut self, mechanism: Mechanism, initial: Option<String>) -> Action {
        let reply = if self.config.auth == AuthMode::Off {
            Reply::not_implemented()
        } else if matches!(self.state, State::Fresh) {
            Reply::need_ehlo()
        } else if self.tls.is_none() {
            Reply::auth_needs_tls()
        } else if self.authenticated.is_some() {
            Reply::already_authenticated()
        } else if !matches!(self.state, State::Idle) {
            Reply::auth_in_transaction()
        } else {
            return match (mechanism, initial) {
                (Mechanism::Other, _) => Action::Reply(Reply::unknown_mechanism()),
                (Mechanism::Plain, None) => self.challenge(Sasl::Plain, PLAIN_CHALLENGE),
                (Mechanism::Plain, Some(response)) => {
                    self.on_sasl(Sasl::Plain, response.as_bytes())
                }
                (Mechanism::Login, None) => self.challenge(Sasl::LoginUsername, LOGIN_USERNAME),
                (Mechanism::Login, Some(response)) => {
                    self.on_sasl(Sasl::LoginUsername, response.as_bytes())
                }
            };
        };
        Action::Reply(reply)
    }

    /// The line answering the last `334`, as the codec read it.
    pub(super) fn on_sasl_response(&mut self, line: &[u8]) -> Action {
        match self.sasl.take() {
            Some(step) => self.on_sasl(step, line),
            // Only a challenge puts the codec in response mode.
            None => Action::Reply(Reply::bad_sequence()),
        }
    }

    /// A response line too long to be one: the exchange is over.
    pub(super) fn abort_sasl(&mut self) -> Action {
        self.sasl = None;
        Action::Reply(Reply::line_too_long())
    }

    fn challenge(&mut self, step: Sasl, text: &'static str) -> Action {
        self.sasl = Some(step);
        Action::ReadResponse(Reply::auth_challenge(text))
    }

    /// One step of the exchange with its (base64) response.
    fn on_sasl(&mut self, step: Sasl, response: &[u8]) -> Action {
        let decoded = match decode(response) {
            Ok(decoded) => decoded,
            Err(refusal) => return Action::Reply(refusal.reply()),
        };
        let attempt = match step {
            Sasl::Plain => plain(decoded),
            Sasl::LoginUsername => {
                return match username(decoded) {
                    Ok(username) => {
                        self.challenge(Sasl::LoginPassword { username }, LOGIN_PASSWORD)
                    }
                    Err(refusal) => Action::Reply(refusal.reply()),
                };
            }
            Sasl::LoginPassword { username } => Ok(AuthAttempt {
                mechanism: Mechanism::Login.as_str(),
                username,
                password: Password::new(decoded),
            }),
        };
        match attempt {
            Ok(attempt) => {
                self.awaiting = Some(AwaitedResponse::Auth {
                    username: attempt.username.clone(),
                });
                Action::Call(RequestKind::Auth(attempt))
            }
            Err(refusal) => Action::Reply(refusal.reply()),
        }
    }

    /// Folds the stack's answer to an `AUTH` into the session: who is
    /// authenticated, and how many attempts were refused (the last allowed
    /// one is answered `421` instead).
    pub(super) fn on_auth_response(
        &mut self,
        username: String,
        outcome: Outcome,
        reply: Reply,
    ) -> Reply {
        match outcome {
            Outcome::Accepted => {
                self.authenticated = Some(username);
                reply
            }
            Outcome::Refused | Outcome::Deferred => {
                self.auth_failures += 1;
                if self.auth_failures >= MAX_AUTH_FAILURES {
                    Reply::too_many_auth_failures()
                } else {
                    reply
                }
            }
            _ => reply,
        }
    }
}

/// A response's octets: `*` cancels, `=` is empty (RFC 4954 §4), anything
/// else must be padded base64 (RFC 4648 §4).
fn decode(response: &[u8]) -> Result<Vec<u8>, Refusal> {
    match response {
        b"*" => Err(Refusal::Cancelled),
        b"=" => Ok(Vec::new()),
        base64 => data_encoding::BASE64
            .decode(base64)
            .map_err(|_| Refusal::BadBase64),
    }
}

/// `[authzid] NUL authcid NUL passwd` (RFC 4616 §2). An authzid is
/// accepted only when it names the authcid itself.
fn plain(message: Vec<u8>) -> Result<AuthAttempt, Refusal> {
    let mut parts = message.splitn(3, |&byte| byte == 0);
    let (Some(authzid), Some(authcid), Some(password)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal::Malformed);
    };
    let username = username(authcid.to_vec())?;
    if !authzid.is_empty() && authzid != username.as_bytes() {
        return Err(Refusal::Impersonation);
    }
    Ok(AuthAttempt {
        mechanism: Mechanism::Plain.as_str(),
        username,
        password: Password::new(password.to_vec()),
    })
}

/// A user name: UTF-8 (RFC 4616 §2), not empty, no NUL.
fn username(octets: Vec<u8>) -> Result<String, Refusal> {
    match String::from_utf8(octets) {
        Ok(name) if !name.is_empty() && !name.contains('\0') => Ok(name),
        _ => Err(Refusal::Malformed),
    }
}
