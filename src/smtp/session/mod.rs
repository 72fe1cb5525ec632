//! The RFC 5321 state machine as plain data.
//!
//! A [`Session`] is fed one decoded [`Frame`] at a time and answers with an
//! [`Action`]: a reply to write, a request for the Tower stack, or a change of
//! mode (DATA, a BDAT chunk, STARTTLS). It owns the dialogue's sequencing and nothing else:
//! no I/O, no business decisions (which recipients exist, what delivery
//! means), so every transition of the dialogue (`docs/smtp.md`) is a unit
//! test without a socket. The SASL exchange of `AUTH` is in [`auth`].

mod auth;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use self::auth::Sasl;
pub use self::auth::{AuthMode, MAX_AUTH_FAILURES};
use super::codec::Frame;
use super::command::{Command, CommandError, MailParams, canonical_mailbox};
use super::reply::Reply;
use super::request::{Envelope, Outcome, RequestKind, SessionInfo, SmtpResponse, TlsInfo};

/// RFC 5321 §4.5.3.1.8 requires at least 100; more is a `452`.
pub const MAX_RECIPIENTS: usize = 100;
/// Protocol errors tolerated before the session is closed with `421`.
pub const MAX_ERRORS: u32 = 10;

/// What a session needs to know about the server; shared by all sessions.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Name used in the greeting (`MAIL_LASER_HOSTNAME`).
    pub hostname: Option<String>,
    /// Advertised as `SIZE`; larger `MAIL FROM SIZE=` is refused early.
    pub max_message_size: usize,
    /// `MAIL` before `STARTTLS` is refused with `530`.
    pub require_tls: bool,
    /// Whether `STARTTLS` can be offered at all.
    pub tls_available: bool,
    /// `MAIL_LASER_AUTH`: whether `AUTH` is offered (after TLS) and required.
    pub auth: AuthMode,
}

/// What the connection must do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Write this reply; close afterwards if [`Reply::closes_connection`].
    Reply(Reply),
    /// Write this reply and close: the client is out of sync (a `BDAT`
    /// whose chunk end cannot be known), so nothing it sends after can be
    /// read as a command.
    Close(Reply),
    /// Ask the Tower stack; hand its response to [`Session::on_response`].
    Call(RequestKind),
    /// Write this `354` and switch the codec to data mode.
    StartData(Reply),
    /// Switch the codec to chunk mode for the `size` octets after `BDAT`
    /// (RFC 3030), keeping them or, when the BDAT was refused or the message
    /// is already over the limit, reading and dropping them. No reply yet:
    /// it follows the chunk.
    ReadChunk { size: u64, keep: bool },
    /// Write this `220`, discard buffered input and upgrade to TLS; then
    /// call [`Session::on_tls_established`].
    StartTls(Reply),
    /// Write this `334` challenge and switch the codec to response mode:
    /// the next line is the client's SASL response.
    ReadResponse(Reply),
}

/// The envelope being built between `MAIL` and the end of data.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Transaction {
    sender: String,
    params: MailParams,
    recipients: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Connected (or just upgraded to TLS): EHLO/HELO expected.
    Fresh,
    /// Greeted, no transaction open.
    Idle,
    /// `MAIL` accepted; collecting recipients.
    Mail(Transaction),
    /// `354` sent; the codec is reading the body.
    Data(Transaction),
    /// At least one `BDAT` chunk received; more may follow until `LAST`.
    Chunking(Chunking),
}

/// A message being received in BDAT chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Chunking {
    transaction: Transaction,
    /// The chunks so far, concatenated; never longer than the size limit.
    message: BytesMut,
    /// Why the message cannot be accepted any more: later chunks are
    /// dropped (and the chunks so far).
    failure: Option<ChunkFailure>,
}

impl Chunking {
    /// The message cannot be accepted any more; the first reason stays,
    /// and the chunks so far are freed at once.
    fn fail(&mut self, failure: ChunkFailure) {
        self.failure.get_or_insert(failure);
        self.message = BytesMut::new();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkFailure {
    /// A chunk overflowed the size limit: `LAST` is answered `552`.
    TooLarge,
    /// The memory budget could not hold a chunk: it and every later chunk
    /// are answered `452` (RFC 3030 §2: the client stops on a 4xx).
    NoRoom,
}

/// The `BDAT` whose chunk the codec is reading, and what its octets are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PendingChunk {
    size: u64,
    last: bool,
    fate: ChunkFate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkFate {
    /// Append to the message.
    Keep,
    /// The message has failed ([`ChunkFailure`]): drop.
    Drop,
    /// The BDAT is out of sequence: drop, answer `503`.
    Refuse,
}

/// Which stack request is in flight, so its response can update the state.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AwaitedResponse {
    Auth { username: String },
    Mail { sender: String, params: MailParams },
    Rcpt { recipient: String },
    Message,
}

/// One SMTP session's state.
#[derive(Debug)]
pub struct Session {
    config: Arc<SessionConfig>,
    peer: SocketAddr,
    state: State,
    awaiting: Option<AwaitedResponse>,
    /// Set between `BDAT` and the end of its chunk.
    chunk: Option<PendingChunk>,
    helo: Option<String>,
    /// EHLO (not HELO) was used: enhanced status codes are in effect.
    esmtp: bool,
    /// Set once STARTTLS succeeded (or from the start on the implicit-TLS port).
    tls: Option<TlsInfo>,
    /// The user name of a successful `AUTH`.
    authenticated: Option<String>,
    /// Set while a SASL exchange waits for the client's response.
    sasl: Option<Sasl>,
    /// `AUTH` attempts the stack refused.
    auth_failures: u32,
    errors: u32,
    /// The shared memory budget has no room for a new message (set by the
    /// connection before each frame): DATA and BDAT get `452`.
    buffers_full: bool,
}

impl Session {
    pub fn new(config: Arc<SessionConfig>, peer: SocketAddr) -> Self {
        Self {
            config,
            peer,
            state: State::Fresh,
            awaiting: None,
            chunk: None,
            helo: None,
            esmtp: false,
            tls: None,
            authenticated: None,
            sasl: None,
            auth_failures: 0,
            errors: 0,
            buffers_full: false,
        }
    }

    pub fn greeting(&self) -> Reply {
        Reply::greeting(self.config.hostname.as_deref())
    }

    /// Whether replies carry RFC 3463 codes (only after EHLO, RFC 2034 §3).
    pub fn enhanced_codes(&self) -> bool {
        self.esmtp
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The client's EHLO/HELO name, once given.
    pub fn helo(&self) -> Option<&str> {
        self.helo.as_deref()
    }

    /// The context a stack request carries.
    pub fn info(&self) -> SessionInfo {
        SessionInfo {
            peer: self.peer,
            helo: self.helo.clone().unwrap_or_default(),
            tls: self.tls.clone(),
            authenticated: self.authenticated.clone(),
        }
    }

    /// Tells the session whether the shared memory budget has room for
    /// message octets (`MAIL_LASER_MAX_BUFFERED_BYTES`); while it has none,
    /// DATA and BDAT are answered `452 4.3.1` before any octet is read.
    pub fn set_buffers_full(&mut self, full: bool) {
        self.buffers_full = full;
    }

    /// Steps the state machine with one frame from the codec.
    pub fn on_frame(&mut self, frame: Frame) -> Action {
        let action = match frame {
            Frame::Response(line) => self.on_sasl_response(&line),
            Frame::LineTooLong if self.sasl.is_some() => self.abort_sasl(),
            // The codec reads a response after every challenge: anything
            // else ends the exchange unanswered.
            _ if self.sasl.is_some() => {
                self.sasl = None;
                Action::Reply(Reply::bad_sequence())
            }
            Frame::Command(Ok(command)) => self.on_command(command),
            Frame::Command(Err(CommandError::BadChunkSize)) => {
                return Action::Close(Reply::bad_chunk_size());
            }
            Frame::Command(Err(error)) => Action::Reply(command_error_reply(&error)),
            Frame::LineTooLong => Action::Reply(Reply::line_too_long()),
            Frame::Message(message) => self.on_message(message),
            Frame::MessageTooLarge => {
                self.reset_transaction();
                Action::Reply(Reply::message_too_large())
            }
            Frame::Chunk(octets) => self.on_chunk(Some(octets)),
            Frame::ChunkSkipped => self.on_chunk(None),
            Frame::OverBudget if self.chunk.is_some() => {
                if let State::Chunking(chunking) = &mut self.state {
                    chunking.fail(ChunkFailure::NoRoom);
                }
                self.on_chunk(None)
            }
            Frame::OverBudget => {
                self.reset_transaction();
                Action::Reply(Reply::insufficient_storage())
            }
        };
        match action {
            Action::Reply(reply) => Action::Reply(self.count_errors(reply)),
            other => other,
        }
    }

    /// Folds the stack's response to the request of the last
    /// [`Action::Call`] into the state and returns the reply to write.
    pub fn on_response(&mut self, response: SmtpResponse) -> Reply {
        let accepted = response.outcome == Outcome::Accepted;
        match (self.awaiting.take(), &mut self.state) {
            (Some(AwaitedResponse::Auth { username }), _) => {
                let reply = self.on_auth_response(username, response.outcome, response.reply);
                return self.count_errors(reply);
            }
            (Some(AwaitedResponse::Mail { sender, params }), State::Idle) if accepted => {
                self.state = State::Mail(Transaction {
                    sender,
                    params,
                    recipients: Vec::new(),
                });
            }
            (Some(AwaitedResponse::Rcpt { recipient }), State::Mail(transaction)) if accepted => {
                transaction.recipients.push(recipient);
            }
            (Some(AwaitedResponse::Message), _) => self.reset_transaction(),
            _ => {}
        }
        self.count_errors(response.reply)
    }

    /// After the TLS handshake: RFC 3207 §4.2, the client starts over.
    pub fn on_tls_established(&mut self, tls: TlsInfo) {
        self.tls = Some(tls);
        self.esmtp = false;
        self.helo = None;
        self.state = State::Fresh;
        // Nothing learnt before TLS counts after it (RFC 3207 §4.2).
        self.authenticated = None;
        self.sasl = None;
    }

    /// The reply for a client that stayed silent too long.
    pub fn idle_timeout(&self) -> Reply {
        Reply::idle_timeout()
    }

    /// Whether a `BDAT` chunk is being read.
    pub fn awaits_chunk(&self) -> bool {
        self.chunk.is_some()
    }

    /// Whether the body of a message is being read, after DATA or in BDAT
    /// chunks (shutdown lets it finish).
    pub fn in_data(&self) -> bool {
        matches!(self.state, State::Data(_) | State::Chunking(_)) || self.chunk.is_some()
    }

    fn on_command(&mut self, command: Command) -> Action {
        let reply = match command {
            Command::Ehlo(host) => self.greet(host, true),
            Command::Helo(host) => self.greet(host, false),
            Command::Mail { from, params } => return self.mail(from, params),
            Command::Rcpt { to } => return self.rcpt(to),
            Command::Data => return self.data(),
            Command::Bdat { size, last } => return self.bdat(size, last),
            Command::Rset => {
                self.reset_transaction();
                Reply::ok()
            }
            Command::Noop => Reply::ok(),
            Command::Vrfy => Reply::cannot_vrfy(),
            Command::Help => Reply::help(),
            Command::Quit => Reply::bye(),
            Command::StartTls => return self.starttls(),
            Command::Auth { mechanism, initial } => return self.auth(mechanism, initial),
            Command::NotImplemented(_) => Reply::not_implemented(),
        };
        Action::Reply(reply)
    }

    fn greet(&mut self, host: String, esmtp: bool) -> Reply {
        self.reset_transaction();
        self.esmtp = esmtp;
        let reply = if esmtp {
            Reply::ehlo(&host, &self.extensions())
        } else {
            Reply::helo()
        };
        self.helo = Some(host);
        self.state = State::Idle;
        reply
    }

    /// The EHLO keywords, each only once it works.
    fn extensions(&self) -> Vec<Cow<'static, str>> {
        let mut extensions: Vec<Cow<'static, str>> = vec![
            "PIPELINING".into(),
            format!("SIZE {}", self.config.max_message_size).into(),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
            "CHUNKING".into(),
        ];
        if self.config.tls_available && self.tls.is_none() {
            extensions.push("STARTTLS".into());
        }
        if self.offers_auth() {
            extensions.push("AUTH PLAIN LOGIN".into());
        }
        extensions
    }

    fn mail(&mut self, sender: String, params: MailParams) -> Action {
        let reply = match self.state {
            State::Fresh => Reply::need_ehlo(),
            State::Mail(_) | State::Data(_) | State::Chunking(_) => Reply::nested_mail(),
            // RFC 4954 §5: `AUTH=` only where AUTH is advertised.
            State::Idle if params.auth && !self.offers_auth() => Reply::unsupported_parameter(),
            State::Idle if self.config.require_tls && self.tls.is_none() => Reply::tls_required(),
            State::Idle
                if self.config.auth == AuthMode::Required && self.authenticated.is_none() =>
            {
                Reply::auth_required()
            }
            State::Idle
                if params
                    .size
                    .is_some_and(|size| size > self.config.max_message_size as u64) =>
            {
                Reply::message_too_large()
            }
            State::Idle => {
                self.awaiting = Some(AwaitedResponse::Mail {
                    sender: sender.clone(),
                    params: params.clone(),
                });
                return Action::Call(RequestKind::Mail { sender, params });
            }
        };
        Action::Reply(reply)
    }

    fn rcpt(&mut self, recipient: String) -> Action {
        let transaction = match &self.state {
            State::Mail(transaction) => transaction,
            // Recipients are closed once the message started (RFC 3030 §3).
            State::Chunking(_) => return Action::Reply(Reply::bad_sequence()),
            _ => return Action::Reply(Reply::need_mail()),
        };
        let canonical = canonical_mailbox(&recipient);
        if transaction
            .recipients
            .iter()
            .any(|known| canonical_mailbox(known) == canonical)
        {
            // Already accepted: one payload per distinct recipient.
            return Action::Reply(Reply::recipient_ok());
        }
        if transaction.recipients.len() >= MAX_RECIPIENTS {
            return Action::Reply(Reply::too_many_recipients());
        }
        self.awaiting = Some(AwaitedResponse::Rcpt {
            recipient: recipient.clone(),
        });
        Action::Call(RequestKind::Rcpt { recipient })
    }

    fn data(&mut self) -> Action {
        match std::mem::replace(&mut self.state, State::Fresh) {
            State::Mail(transaction) if !transaction.recipients.is_empty() => {
                if self.buffers_full {
                    self.state = State::Mail(transaction);
                    return Action::Reply(Reply::insufficient_storage());
                }
                self.state = State::Data(transaction);
                Action::StartData(Reply::start_data())
            }
            // RFC 3030 §3: DATA and BDAT do not mix in one transaction. The
            // chunks so far stay; the client may go on with BDAT or RSET.
            State::Chunking(chunking) => {
                self.state = State::Chunking(chunking);
                Action::Reply(Reply::data_after_bdat())
            }
            other => {
                self.state = other;
                Action::Reply(Reply::bad_sequence())
            }
        }
    }

    /// `BDAT size [LAST]`: decides what the chunk's octets are for. Even a
    /// refused BDAT has its chunk read (and dropped): the octets are already
    /// on their way and must not be taken for commands.
    fn bdat(&mut self, size: u64, last: bool) -> Action {
        let max = self.config.max_message_size as u64;
        let mut chunking = match std::mem::replace(&mut self.state, State::Fresh) {
            State::Mail(transaction) if !transaction.recipients.is_empty() => Chunking {
                transaction,
                message: BytesMut::new(),
                failure: None,
            },
            State::Chunking(chunking) => chunking,
            other => {
                self.state = other;
                self.chunk = Some(PendingChunk {
                    size,
                    last,
                    fate: ChunkFate::Refuse,
                });
                return Action::ReadChunk { size, keep: false };
            }
        };
        if (chunking.message.len() as u64).saturating_add(size) > max {
            chunking.fail(ChunkFailure::TooLarge);
        }
        if self.buffers_full {
            chunking.fail(ChunkFailure::NoRoom);
        }
        let fate = if chunking.failure.is_some() {
            ChunkFate::Drop
        } else {
            ChunkFate::Keep
        };
        self.state = State::Chunking(chunking);
        self.chunk = Some(PendingChunk { size, last, fate });
        Action::ReadChunk {
            size,
            keep: fate == ChunkFate::Keep,
        }
    }

    /// The chunk announced by the last `BDAT` was read (`None`: dropped).
    fn on_chunk(&mut self, octets: Option<Bytes>) -> Action {
        let Some(chunk) = self.chunk.take() else {
            // Only a BDAT puts the codec in chunk mode.
            return Action::Reply(Reply::bad_sequence());
        };
        if chunk.fate == ChunkFate::Refuse {
            return Action::Reply(Reply::bad_sequence());
        }
        let State::Chunking(chunking) = &mut self.state else {
            return Action::Reply(Reply::bad_sequence());
        };
        match octets {
            Some(octets) if chunking.failure.is_none() => {
                chunking.message.extend_from_slice(&octets);
            }
            Some(_) => {}
            // The codec dropped a chunk the session meant to keep (it was
            // over the codec's own limit): the message cannot be complete.
            None => chunking.fail(ChunkFailure::TooLarge),
        }
        let failure = chunking.failure;
        if !chunk.last {
            return Action::Reply(match failure {
                Some(ChunkFailure::NoRoom) => Reply::insufficient_storage(),
                _ => Reply::chunk_received(chunk.size),
            });
        }
        let State::Chunking(chunking) = std::mem::replace(&mut self.state, State::Idle) else {
            return Action::Reply(Reply::bad_sequence());
        };
        match failure {
            Some(ChunkFailure::NoRoom) => return Action::Reply(Reply::insufficient_storage()),
            Some(ChunkFailure::TooLarge) => return Action::Reply(Reply::message_too_large()),
            None => {}
        }
        let transaction = chunking.transaction;
        self.awaiting = Some(AwaitedResponse::Message);
        Action::Call(RequestKind::Message(Envelope {
            sender: transaction.sender,
            recipients: transaction.recipients,
            smtputf8: transaction.params.smtputf8,
            message: chunking.message.freeze(),
        }))
    }

    fn on_message(&mut self, message: Bytes) -> Action {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Data(transaction) => {
                self.awaiting = Some(AwaitedResponse::Message);
                Action::Call(RequestKind::Message(Envelope {
                    sender: transaction.sender,
                    recipients: transaction.recipients,
                    smtputf8: transaction.params.smtputf8,
                    message,
                }))
            }
            other => {
                self.state = other;
                Action::Reply(Reply::bad_sequence())
            }
        }
    }

    fn starttls(&mut self) -> Action {
        let reply = if self.tls.is_some() {
            Reply::tls_already_active()
        } else if !self.config.tls_available {
            Reply::tls_unavailable()
        } else {
            match self.state {
                State::Idle => return Action::StartTls(Reply::tls_go_ahead()),
                State::Fresh => Reply::need_ehlo(),
                State::Mail(_) | State::Data(_) | State::Chunking(_) => Reply::bad_sequence(),
            }
        };
        Action::Reply(reply)
    }

    fn reset_transaction(&mut self) {
        if !matches!(self.state, State::Fresh) {
            self.state = State::Idle;
        }
    }

    /// Counts protocol errors; the one that reaches the cap is answered with
    /// `421` instead, which closes the session.
    fn count_errors(&mut self, reply: Reply) -> Reply {
        if !reply.is_protocol_error() {
            return reply;
        }
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            Reply::too_many_errors()
        } else {
            reply
        }
    }
}

/// One place maps parse errors to replies.
fn command_error_reply(error: &CommandError) -> Reply {
    match error {
        CommandError::UnknownCommand => Reply::unknown_command(),
        CommandError::Syntax(expected) => Reply::syntax_error(expected),
        CommandError::InvalidAddress => Reply::invalid_address(),
        CommandError::InvalidParameter(param) => Reply::invalid_parameter(param),
        CommandError::UnsupportedParameter(_) => Reply::unsupported_parameter(),
        CommandError::BadChunkSize => Reply::bad_chunk_size(),
    }
}

#[cfg(test)]
mod tests;
