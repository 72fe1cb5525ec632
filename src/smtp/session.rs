//! The RFC 5321 state machine as plain data.
//!
//! A [`Session`] is fed one decoded [`Frame`] at a time and answers with an
//! [`Action`]: a reply to write, a request for the Tower stack, or a change of
//! mode (DATA, a BDAT chunk, STARTTLS). It owns the dialogue's sequencing and nothing else:
//! no I/O, no business decisions (which recipients exist, what delivery
//! means), so every transition of the dialogue (`docs/smtp.md`) is a unit
//! test without a socket.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::codec::Frame;
use super::command::{Command, CommandError, MailParams};
use super::reply::Reply;
use super::request::{Envelope, Outcome, RequestKind, SessionInfo, SmtpResponse};

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
}

/// What the connection must do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Write this reply; close afterwards if [`Reply::closes_connection`].
    Reply(Reply),
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
    /// A chunk overflowed the size limit: later chunks are dropped and
    /// `LAST` is answered `552`.
    too_large: bool,
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
    /// The message is over the limit: drop, answer `552` at `LAST`.
    TooLarge,
    /// The BDAT is out of sequence: drop, answer `503`.
    Refuse,
}

/// Which stack request is in flight, so its response can update the state.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AwaitedResponse {
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
    tls: bool,
    errors: u32,
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
            tls: false,
            errors: 0,
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
        self.tls
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
            tls: self.tls,
        }
    }

    /// Steps the state machine with one frame from the codec.
    pub fn on_frame(&mut self, frame: Frame) -> Action {
        let action = match frame {
            Frame::Command(Ok(command)) => self.on_command(command),
            Frame::Command(Err(error)) => Action::Reply(command_error_reply(&error)),
            Frame::LineTooLong => Action::Reply(Reply::line_too_long()),
            Frame::Message(message) => self.on_message(message),
            Frame::MessageTooLarge => {
                self.reset_transaction();
                Action::Reply(Reply::message_too_large())
            }
            Frame::Chunk(octets) => self.on_chunk(Some(octets)),
            Frame::ChunkSkipped => self.on_chunk(None),
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
    pub fn on_tls_established(&mut self) {
        self.tls = true;
        self.esmtp = false;
        self.helo = None;
        self.state = State::Fresh;
    }

    /// The reply for a client that stayed silent too long.
    pub fn idle_timeout(&self) -> Reply {
        Reply::idle_timeout()
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
        if self.config.tls_available && !self.tls {
            extensions.push("STARTTLS".into());
        }
        extensions
    }

    fn mail(&mut self, sender: String, params: MailParams) -> Action {
        let reply = match self.state {
            State::Fresh => Reply::need_ehlo(),
            State::Mail(_) | State::Data(_) | State::Chunking(_) => Reply::nested_mail(),
            State::Idle if self.config.require_tls && !self.tls => Reply::tls_required(),
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
        if transaction
            .recipients
            .iter()
            .any(|known| known.eq_ignore_ascii_case(&recipient))
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
        let fate = match std::mem::replace(&mut self.state, State::Fresh) {
            State::Mail(transaction) if !transaction.recipients.is_empty() => {
                let fits = size <= max;
                self.state = State::Chunking(Chunking {
                    transaction,
                    message: BytesMut::new(),
                    too_large: !fits,
                });
                if fits {
                    ChunkFate::Keep
                } else {
                    ChunkFate::TooLarge
                }
            }
            State::Chunking(mut chunking) => {
                let total = (chunking.message.len() as u64).saturating_add(size);
                chunking.too_large |= total > max;
                let fate = if chunking.too_large {
                    ChunkFate::TooLarge
                } else {
                    ChunkFate::Keep
                };
                self.state = State::Chunking(chunking);
                fate
            }
            other => {
                self.state = other;
                ChunkFate::Refuse
            }
        };
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
            Some(octets) if !chunking.too_large => chunking.message.extend_from_slice(&octets),
            // The codec dropped a chunk the session meant to keep (it was
            // over the codec's own limit): the message cannot be complete.
            _ => chunking.too_large = true,
        }
        if !chunk.last {
            return Action::Reply(Reply::chunk_received(chunk.size));
        }
        let State::Chunking(chunking) = std::mem::replace(&mut self.state, State::Idle) else {
            return Action::Reply(Reply::bad_sequence());
        };
        if chunking.too_large {
            return Action::Reply(Reply::message_too_large());
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
        let reply = if self.tls {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::command::BodyType;

    fn config() -> SessionConfig {
        SessionConfig {
            hostname: None,
            max_message_size: 1000,
            require_tls: false,
            tls_available: true,
        }
    }

    fn session_with(config: SessionConfig) -> Session {
        Session::new(Arc::new(config), "127.0.0.1:4000".parse().unwrap())
    }

    fn session() -> Session {
        session_with(config())
    }

    fn cmd(session: &mut Session, line: &str) -> Action {
        let line = format!("{line}\r\n");
        session.on_frame(Frame::Command(Command::parse(line.as_bytes())))
    }

    /// Steps a command and, for stack calls, answers like a permissive stack.
    fn reply(session: &mut Session, line: &str) -> Reply {
        match cmd(session, line) {
            Action::Reply(reply) | Action::StartData(reply) | Action::StartTls(reply) => reply,
            Action::Call(RequestKind::Mail { .. }) => {
                session.on_response(SmtpResponse::sender_accepted())
            }
            Action::Call(RequestKind::Rcpt { recipient }) if recipient.starts_with("unknown") => {
                session.on_response(SmtpResponse::new(Outcome::Refused, Reply::no_such_user()))
            }
            Action::Call(RequestKind::Rcpt { .. }) => {
                session.on_response(SmtpResponse::recipient_accepted())
            }
            Action::Call(RequestKind::Message(_)) => session.on_response(SmtpResponse::new(
                Outcome::Delivered,
                Reply::message_accepted(),
            )),
            Action::ReadChunk { .. } => panic!("use `bdat` for BDAT"),
        }
    }

    /// Steps `BDAT …` and then its chunk as the codec would yield it
    /// (`octets` kept or dropped as the session asked); returns the action
    /// after the chunk.
    fn bdat(session: &mut Session, line: &str, octets: &[u8]) -> Action {
        let Action::ReadChunk { size, keep } = cmd(session, line) else {
            panic!("BDAT must always read its chunk");
        };
        assert_eq!(size, octets.len() as u64, "test chunk size");
        let frame = if keep {
            Frame::Chunk(Bytes::copy_from_slice(octets))
        } else {
            Frame::ChunkSkipped
        };
        session.on_frame(frame)
    }

    fn bdat_reply(session: &mut Session, line: &str, octets: &[u8]) -> String {
        match bdat(session, line, octets) {
            Action::Reply(reply) => wire(&reply),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn bdat_message(session: &mut Session, line: &str, octets: &[u8]) -> Envelope {
        match bdat(session, line, octets) {
            Action::Call(RequestKind::Message(envelope)) => envelope,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    fn wire(reply: &Reply) -> String {
        reply.to_string()
    }

    fn ready_for_data(session: &mut Session) {
        reply(session, "EHLO client.example");
        reply(session, "MAIL FROM:<a@example.com>");
        reply(session, "RCPT TO:<b@example.com>");
    }

    #[test]
    fn greeting_texts() {
        assert_eq!(
            wire(&session().greeting()),
            "220 MailLaser SMTP Server Ready"
        );
        let named = session_with(SessionConfig {
            hostname: Some("mx.example".into()),
            ..config()
        });
        assert_eq!(
            wire(&named.greeting()),
            "220 mx.example MailLaser SMTP Server Ready"
        );
    }

    #[test]
    fn ehlo_advertises_extensions() {
        let mut s = session();
        let ehlo = reply(&mut s, "EHLO client.example");
        assert_eq!(
            ehlo.text,
            "MailLaser greets client.example\nPIPELINING\nSIZE 1000\n8BITMIME\nSMTPUTF8\nENHANCEDSTATUSCODES\nCHUNKING\nSTARTTLS"
        );
        assert_eq!(ehlo.code, 250);
        assert!(s.enhanced_codes());
    }

    #[test]
    fn ehlo_omits_starttls_without_tls_or_inside_tls() {
        let mut s = session_with(SessionConfig {
            tls_available: false,
            ..config()
        });
        assert!(!reply(&mut s, "EHLO c").text.contains("STARTTLS"));
        let mut s = session();
        reply(&mut s, "EHLO c");
        assert!(matches!(cmd(&mut s, "STARTTLS"), Action::StartTls(_)));
        s.on_tls_established();
        assert!(!reply(&mut s, "EHLO c").text.contains("STARTTLS"));
    }

    #[test]
    fn helo_is_plain_and_disables_enhanced_codes() {
        let mut s = session();
        assert_eq!(wire(&reply(&mut s, "HELO client.example")), "250 MailLaser");
        assert!(!s.enhanced_codes());
        assert_eq!(s.helo(), Some("client.example"));
    }

    #[test]
    fn mail_before_helo_is_out_of_sequence() {
        let mut s = session();
        assert_eq!(reply(&mut s, "MAIL FROM:<a@b.example>").code, 503);
    }

    #[test]
    fn full_transaction() {
        let mut s = session();
        ready_for_data(&mut s);
        assert_eq!(cmd(&mut s, "DATA"), Action::StartData(Reply::start_data()));
        assert!(s.in_data());
        let action = s.on_frame(Frame::Message(Bytes::from_static(
            b"Subject: x\r\n\r\nhi\r\n",
        )));
        let Action::Call(RequestKind::Message(envelope)) = action else {
            panic!("expected a message request, got {action:?}");
        };
        assert_eq!(envelope.sender, "a@example.com");
        assert_eq!(envelope.recipients, vec!["b@example.com".to_string()]);
        assert_eq!(&envelope.message[..], b"Subject: x\r\n\r\nhi\r\n");
        let done = s.on_response(SmtpResponse::new(
            Outcome::Delivered,
            Reply::message_accepted(),
        ));
        assert_eq!(wire(&done), "250 2.0.0 OK: Message accepted for delivery");
        // The transaction is reset: another message may follow.
        assert_eq!(reply(&mut s, "RCPT TO:<b@example.com>").code, 503);
        assert_eq!(reply(&mut s, "MAIL FROM:<a@example.com>").code, 250);
    }

    #[test]
    fn null_sender_and_parameters() {
        let mut s = session();
        reply(&mut s, "EHLO c");
        let action = cmd(&mut s, "MAIL FROM:<> SIZE=10 BODY=8BITMIME SMTPUTF8");
        assert_eq!(
            action,
            Action::Call(RequestKind::Mail {
                sender: String::new(),
                params: MailParams {
                    size: Some(10),
                    body: Some(BodyType::EightBitMime),
                    smtputf8: true
                }
            })
        );
    }

    #[test]
    fn mail_size_over_limit_is_refused_early() {
        let mut s = session();
        reply(&mut s, "EHLO c");
        assert_eq!(
            wire(&reply(&mut s, "MAIL FROM:<a@b.example> SIZE=1001")),
            "552 5.3.4 Message size exceeds limit"
        );
        assert_eq!(reply(&mut s, "MAIL FROM:<a@b.example> SIZE=1000").code, 250);
    }

    #[test]
    fn mail_errors() {
        let mut s = session();
        reply(&mut s, "EHLO c");
        assert_eq!(
            wire(&reply(&mut s, "MAIL FROM:<a@b.example> FOO=BAR")),
            "555 5.5.4 Unsupported MAIL or RCPT parameter"
        );
        let syntax = reply(&mut s, "MAIL FROM a@b.example");
        assert_eq!(
            (syntax.code, syntax.enhanced.map(|e| e.to_string())),
            (501, Some("5.5.2".into()))
        );
        reply(&mut s, "MAIL FROM:<a@b.example>");
        assert_eq!(
            wire(&reply(&mut s, "MAIL FROM:<a@b.example>")),
            "503 5.5.1 Sender already specified"
        );
    }

    #[test]
    fn rcpt_sequence_and_unknown_recipient_keeps_others() {
        let mut s = session();
        reply(&mut s, "EHLO c");
        assert_eq!(
            wire(&reply(&mut s, "RCPT TO:<b@example.com>")),
            "503 5.5.1 Need MAIL before RCPT"
        );
        reply(&mut s, "MAIL FROM:<a@example.com>");
        assert_eq!(
            wire(&reply(&mut s, "RCPT TO:<b@example.com>")),
            "250 2.1.5 OK"
        );
        assert_eq!(
            wire(&reply(&mut s, "RCPT TO:<unknown@example.com>")),
            "550 5.1.1 No such user here"
        );
        assert!(matches!(cmd(&mut s, "DATA"), Action::StartData(_)));
    }

    #[test]
    fn duplicate_recipient_is_accepted_once() {
        let mut s = session();
        ready_for_data(&mut s);
        assert_eq!(reply(&mut s, "RCPT TO:<B@example.com>").code, 250);
        s.on_frame(Frame::Command(Ok(Command::Data)));
        let Action::Call(RequestKind::Message(envelope)) =
            s.on_frame(Frame::Message(Bytes::from_static(b"\r\n")))
        else {
            panic!("expected a message");
        };
        assert_eq!(envelope.recipients.len(), 1);
    }

    #[test]
    fn recipient_limit() {
        let mut s = session();
        reply(&mut s, "EHLO c");
        reply(&mut s, "MAIL FROM:<a@example.com>");
        for i in 0..MAX_RECIPIENTS {
            assert_eq!(
                reply(&mut s, &format!("RCPT TO:<r{i}@example.com>")).code,
                250
            );
        }
        assert_eq!(
            wire(&reply(&mut s, "RCPT TO:<one-more@example.com>")),
            "452 4.5.3 Too many recipients"
        );
    }

    #[test]
    fn data_without_recipients() {
        let mut s = session();
        reply(&mut s, "EHLO c");
        assert_eq!(
            wire(&reply(&mut s, "DATA")),
            "503 5.5.1 Bad sequence of commands"
        );
        reply(&mut s, "MAIL FROM:<a@example.com>");
        reply(&mut s, "RCPT TO:<unknown@example.com>");
        assert_eq!(
            wire(&reply(&mut s, "DATA")),
            "503 5.5.1 Bad sequence of commands"
        );
    }

    #[test]
    fn oversize_message_resets_transaction() {
        let mut s = session();
        ready_for_data(&mut s);
        cmd(&mut s, "DATA");
        assert_eq!(
            s.on_frame(Frame::MessageTooLarge),
            Action::Reply(Reply::message_too_large())
        );
        assert!(!s.in_data());
        assert_eq!(reply(&mut s, "MAIL FROM:<a@example.com>").code, 250);
    }

    #[test]
    fn simple_commands() {
        let mut s = session();
        assert_eq!(wire(&reply(&mut s, "NOOP")), "250 2.0.0 OK");
        assert_eq!(reply(&mut s, "VRFY someone").code, 252);
        assert_eq!(reply(&mut s, "HELP").code, 214);
        assert_eq!(reply(&mut s, "EXPN list").code, 502);
        assert_eq!(
            wire(&reply(&mut s, "BOGUS")),
            "500 5.5.2 Command not recognized"
        );
        let quit = reply(&mut s, "QUIT");
        assert_eq!(wire(&quit), "221 2.0.0 Bye");
        assert!(quit.closes_connection());
    }

    #[test]
    fn rset_and_second_ehlo_reset_the_transaction() {
        let mut s = session();
        ready_for_data(&mut s);
        assert_eq!(wire(&reply(&mut s, "RSET")), "250 2.0.0 OK");
        assert_eq!(reply(&mut s, "DATA").code, 503);
        ready_for_data(&mut s);
        reply(&mut s, "EHLO again");
        assert_eq!(reply(&mut s, "DATA").code, 503);
    }

    #[test]
    fn line_too_long() {
        let mut s = session();
        assert_eq!(
            s.on_frame(Frame::LineTooLong),
            Action::Reply(Reply::line_too_long())
        );
        assert_eq!(reply(&mut s, "EHLO still-alive").code, 250);
    }

    #[test]
    fn starttls_rules() {
        let mut s = session();
        assert_eq!(reply(&mut s, "STARTTLS").code, 503);
        reply(&mut s, "EHLO c");
        reply(&mut s, "MAIL FROM:<a@example.com>");
        assert_eq!(reply(&mut s, "STARTTLS").code, 503);
        reply(&mut s, "RSET");
        assert_eq!(
            cmd(&mut s, "STARTTLS"),
            Action::StartTls(Reply::tls_go_ahead())
        );
        s.on_tls_established();
        assert!(s.is_tls());
        // The client must greet again.
        assert_eq!(reply(&mut s, "MAIL FROM:<a@example.com>").code, 503);
        reply(&mut s, "EHLO c");
        assert_eq!(
            wire(&reply(&mut s, "STARTTLS")),
            "503 5.5.1 STARTTLS already active"
        );
    }

    #[test]
    fn require_tls() {
        let mut s = session_with(SessionConfig {
            require_tls: true,
            ..config()
        });
        reply(&mut s, "EHLO c");
        assert_eq!(
            wire(&reply(&mut s, "MAIL FROM:<a@example.com>")),
            "530 5.7.0 Must issue a STARTTLS command first"
        );
        cmd(&mut s, "STARTTLS");
        s.on_tls_established();
        reply(&mut s, "EHLO c");
        assert_eq!(reply(&mut s, "MAIL FROM:<a@example.com>").code, 250);
    }

    #[test]
    fn error_cap_closes_the_session() {
        let mut s = session();
        for _ in 1..MAX_ERRORS {
            assert_eq!(reply(&mut s, "BOGUS").code, 500);
        }
        let last = reply(&mut s, "BOGUS");
        assert_eq!(wire(&last), "421 4.4.2 Too many errors, closing connection");
        assert!(last.closes_connection());
    }

    #[test]
    fn delivery_failure_resets_transaction_too() {
        let mut s = session();
        ready_for_data(&mut s);
        cmd(&mut s, "DATA");
        s.on_frame(Frame::Message(Bytes::from_static(b"\r\n")));
        let reply_451 = s.on_response(SmtpResponse::new(
            Outcome::Deferred,
            Reply::delivery_deferred(),
        ));
        assert_eq!(
            wire(&reply_451),
            "451 4.3.0 Temporary delivery failure, try again later"
        );
        assert_eq!(reply(&mut s, "MAIL FROM:<a@example.com>").code, 250);
    }

    #[test]
    fn bdat_chunks_make_one_message() {
        let mut s = session();
        ready_for_data(&mut s);
        assert_eq!(
            bdat_reply(&mut s, "BDAT 9", b"Subject: "),
            "250 2.0.0 9 octets received"
        );
        assert!(s.in_data());
        assert_eq!(
            bdat_reply(&mut s, "BDAT 0", b""),
            "250 2.0.0 0 octets received"
        );
        let envelope = bdat_message(&mut s, "bdat 11 last", b"x\r\n\r\n..hi\r\n");
        assert_eq!(&envelope.message[..], b"Subject: x\r\n\r\n..hi\r\n");
        assert_eq!(envelope.sender, "a@example.com");
        assert_eq!(envelope.recipients, ["b@example.com"]);
        assert!(!s.in_data());
        assert_eq!(
            wire(&s.on_response(SmtpResponse::new(
                Outcome::Delivered,
                Reply::message_accepted()
            ))),
            "250 2.0.0 OK: Message accepted for delivery"
        );
        // The transaction is over; another one may follow.
        assert_eq!(reply(&mut s, "RCPT TO:<b@example.com>").code, 503);
        assert_eq!(reply(&mut s, "MAIL FROM:<a@example.com>").code, 250);
    }

    #[test]
    fn bdat_0_last_delivers_an_empty_message() {
        let mut s = session();
        ready_for_data(&mut s);
        assert!(bdat_message(&mut s, "BDAT 0 LAST", b"").message.is_empty());
    }

    #[test]
    fn bdat_without_transaction_is_refused_after_its_chunk() {
        let mut s = session();
        reply(&mut s, "EHLO c");
        assert_eq!(
            cmd(&mut s, "BDAT 4"),
            Action::ReadChunk {
                size: 4,
                keep: false
            }
        );
        assert_eq!(
            s.on_frame(Frame::ChunkSkipped),
            Action::Reply(Reply::bad_sequence())
        );
        // Without accepted recipients too.
        reply(&mut s, "MAIL FROM:<a@example.com>");
        reply(&mut s, "RCPT TO:<unknown@example.com>");
        assert_eq!(
            bdat_reply(&mut s, "BDAT 3 LAST", b"abc"),
            "503 5.5.1 Bad sequence of commands"
        );
        // The transaction is still open for a recipient and a real BDAT.
        reply(&mut s, "RCPT TO:<b@example.com>");
        assert_eq!(bdat_message(&mut s, "BDAT 2 LAST", b"ok").message, "ok");
    }

    #[test]
    fn data_after_bdat_is_refused_and_chunks_stay() {
        let mut s = session();
        ready_for_data(&mut s);
        bdat_reply(&mut s, "BDAT 3", b"one");
        assert_eq!(
            wire(&reply(&mut s, "DATA")),
            "503 5.5.1 DATA not allowed after BDAT"
        );
        // Neither MAIL, RCPT nor STARTTLS belong inside a BDAT transaction.
        assert_eq!(reply(&mut s, "MAIL FROM:<a@example.com>").code, 503);
        assert_eq!(
            wire(&reply(&mut s, "RCPT TO:<b@example.com>")),
            "503 5.5.1 Bad sequence of commands"
        );
        assert_eq!(reply(&mut s, "STARTTLS").code, 503);
        assert_eq!(
            bdat_message(&mut s, "BDAT 3 LAST", b"two").message,
            "onetwo"
        );
    }

    #[test]
    fn rset_clears_the_chunks() {
        let mut s = session();
        ready_for_data(&mut s);
        bdat_reply(&mut s, "BDAT 3", b"old");
        assert_eq!(wire(&reply(&mut s, "RSET")), "250 2.0.0 OK");
        assert!(!s.in_data());
        assert_eq!(
            bdat_reply(&mut s, "BDAT 3 LAST", b"new"),
            "503 5.5.1 Bad sequence of commands"
        );
        ready_for_data(&mut s);
        assert_eq!(bdat_message(&mut s, "BDAT 3 LAST", b"new").message, "new");
    }

    #[test]
    fn oversize_bdat_is_drained_and_refused_at_last() {
        // The limit is 1000 octets: 600 + 400 fits, one more does not.
        let mut s = session();
        ready_for_data(&mut s);
        bdat_reply(&mut s, "BDAT 600", &[b'a'; 600]);
        let message = bdat_message(&mut s, "BDAT 400 LAST", &[b'b'; 400]);
        assert_eq!(message.message.len(), 1000);
        s.on_response(SmtpResponse::new(
            Outcome::Delivered,
            Reply::message_accepted(),
        ));

        reply(&mut s, "MAIL FROM:<a@example.com>");
        reply(&mut s, "RCPT TO:<b@example.com>");
        bdat_reply(&mut s, "BDAT 600", &[b'a'; 600]);
        assert_eq!(
            cmd(&mut s, "BDAT 401"),
            Action::ReadChunk {
                size: 401,
                keep: false
            }
        );
        assert_eq!(
            s.on_frame(Frame::ChunkSkipped),
            Action::Reply(Reply::chunk_received(401))
        );
        // Later chunks are dropped too, whatever their size.
        assert_eq!(
            cmd(&mut s, "BDAT 1"),
            Action::ReadChunk {
                size: 1,
                keep: false
            }
        );
        assert_eq!(
            wire(&match s.on_frame(Frame::ChunkSkipped) {
                Action::Reply(reply) => reply,
                other => panic!("{other:?}"),
            }),
            "250 2.0.0 1 octets received"
        );
        assert_eq!(
            bdat_reply(&mut s, "BDAT 0 LAST", b""),
            "552 5.3.4 Message size exceeds limit"
        );
        // Reset: a new transaction works.
        assert_eq!(reply(&mut s, "MAIL FROM:<a@example.com>").code, 250);

        // A single first chunk over the limit.
        reply(&mut s, "RCPT TO:<b@example.com>");
        assert_eq!(
            bdat_reply(&mut s, "BDAT 1001 LAST", &[b'c'; 1001]),
            "552 5.3.4 Message size exceeds limit"
        );
    }

    #[test]
    fn bdat_delivery_failure_resets_transaction() {
        let mut s = session();
        ready_for_data(&mut s);
        bdat_message(&mut s, "BDAT 1 LAST", b"x");
        assert_eq!(
            s.on_response(SmtpResponse::new(
                Outcome::Deferred,
                Reply::delivery_deferred()
            ))
            .code,
            451
        );
        assert_eq!(reply(&mut s, "MAIL FROM:<a@example.com>").code, 250);
    }
}
