//! The session state machine over a sequence of frames, with the stack's
//! answers drawn from the input.
//!
//! Input: [`Header`], then the client's side. Flags: bit 0
//! `require_tls`, bit 1 `tls_available`, bit 2 a configured hostname, bit 3
//! raw frames instead of a byte stream, bits 4–5 `AUTH` (0 off, 1
//! optional, 2–3 required).
//! - A byte stream (bit 3 clear) is framed by `SmtpCodec`, which the
//!   session's actions switch to data and chunk mode as the connection
//!   does; after STARTTLS the buffered rest is read as if it came after
//!   the handshake. The stack's answers come from a generator seeded by
//!   the header's seed.
//! - Raw frames (bit 3 set) are built by [`FrameReader`], including frames
//!   the codec would never yield at that point (a chunk without BDAT, a
//!   message without DATA); after each stack call one octet picks the
//!   answer.
//!
//! Checks: no panic; every reply is well-formed; the session ends after a
//! `221`/`421` or a closing reply, at the latest with the `MAX_ERRORS`-th
//! protocol error; a chunk is kept only within the limit; STARTTLS only
//! when offered; no MAIL reaches the stack before TLS when TLS is
//! required, nor before a successful AUTH when AUTH is required; no AUTH
//! reaches the stack before TLS or when AUTH is off; a message reaches the
//! stack with 1 to `MAX_RECIPIENTS` distinct recipients and within the
//! size limit.

#![no_main]

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use mail_laser::smtp::codec::{Frame, MAX_LINE, SmtpCodec};
use mail_laser::smtp::command::{Command, canonical_mailbox};
use mail_laser::smtp::reply::Reply;
use mail_laser::smtp::session::{
    Action, AuthMode, MAX_ERRORS, MAX_RECIPIENTS, Session, SessionConfig,
};
use mail_laser::smtp::{Outcome, RequestKind, SmtpResponse, TlsInfo};
use mail_laser::webhook::rejection_reason;
use mail_laser_fuzz::{Header, Rng, check_reply};
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let Some((header, input)) = Header::split(data) else {
        return;
    };
    let config = SessionConfig {
        hostname: header.flag(2).then(|| "mx.example".to_owned()),
        max_message_size: header.max_message_size,
        require_tls: header.flag(0),
        tls_available: header.flag(1),
        auth: match (header.flag(4), header.flag(5)) {
            (false, false) => AuthMode::Off,
            (true, false) => AuthMode::Optional,
            (_, true) => AuthMode::Required,
        },
    };
    let mut run = Run::new(config);
    check_reply(&run.session.greeting());
    if header.flag(3) {
        run.raw_frames(input);
    } else {
        run.byte_stream(input, header.seed);
    }
});

/// One session, the codec in front of it (byte-stream mode), and what the
/// checks need to remember.
struct Run {
    session: Session,
    config: Arc<SessionConfig>,
    codec: SmtpCodec,
    /// Protocol errors answered so far.
    errors: u32,
    /// Set once the session closed the connection.
    closed: bool,
    /// Frames come from the codec, which bounds every message; raw frames
    /// may carry more than the limit.
    framed: bool,
}

impl Run {
    fn new(config: SessionConfig) -> Self {
        let codec = SmtpCodec::new(config.max_message_size);
        let config = Arc::new(config);
        Self {
            session: Session::new(config.clone(), "192.0.2.1:4000".parse().unwrap()),
            config,
            codec,
            errors: 0,
            closed: false,
            framed: true,
        }
    }

    fn byte_stream(&mut self, stream: &[u8], seed: u8) {
        let mut rng = Rng::new(seed);
        let mut buf = BytesMut::from(stream);
        while !self.closed {
            let Some(frame) = self.codec.decode_eof(&mut buf).expect("no I/O, no error") else {
                break;
            };
            self.frame(frame, || rng.next_u32() as u8);
        }
    }

    fn raw_frames(&mut self, input: &[u8]) {
        self.framed = false;
        let mut reader = FrameReader(input);
        while !self.closed {
            let Some((frame, buffers_full)) = reader.frame() else {
                break;
            };
            self.session.set_buffers_full(buffers_full);
            self.frame(frame, || reader.octet());
        }
    }

    /// Steps the session with `frame` and carries out its action as the
    /// connection would; `pick` chooses the stack's answer to a call.
    fn frame(&mut self, frame: Frame, mut pick: impl FnMut() -> u8) {
        let action = self.session.on_frame(frame);
        match action {
            Action::Reply(reply) => self.reply(&reply),
            Action::Close(reply) => {
                check_reply(&reply);
                assert!(reply.code >= 400, "closing with {reply:?}");
                self.closed = true;
            }
            Action::Call(kind) => {
                let response = self.answer(&kind, pick());
                let reply = self.session.on_response(response);
                self.reply(&reply);
            }
            Action::StartData(reply) => {
                check_reply(&reply);
                assert_eq!(reply.code, 354);
                assert!(self.session.in_data());
                self.codec.start_data();
            }
            Action::ReadChunk { size, keep } => {
                assert!(
                    !keep || size <= self.config.max_message_size as u64,
                    "keeps a chunk of {size} over the limit"
                );
                assert!(self.session.in_data());
                self.codec.start_chunk(size, keep);
            }
            Action::ReadResponse(reply) => {
                check_reply(&reply);
                assert_eq!(reply.code, 334);
                assert!(
                    reply.enhanced.is_none(),
                    "a challenge with an enhanced code"
                );
                assert!(self.session.is_tls(), "a SASL challenge before TLS");
                self.codec.start_response();
            }
            Action::StartTls(reply) => {
                check_reply(&reply);
                assert_eq!(reply.code, 220);
                assert!(self.config.tls_available && !self.session.is_tls());
                self.codec.reset();
                self.session.on_tls_established(TlsInfo {
                    version: "TLSv1.3".into(),
                    cipher: "TLS13_AES_128_GCM_SHA256".into(),
                });
                assert!(self.session.is_tls() && !self.session.enhanced_codes());
            }
        }
    }

    fn reply(&mut self, reply: &Reply) {
        check_reply(reply);
        if reply.is_protocol_error() {
            self.errors += 1;
            assert!(
                self.errors < MAX_ERRORS,
                "error {} not answered 421",
                self.errors
            );
        }
        if reply.closes_connection() {
            self.closed = true;
        }
    }

    /// What a stack might answer to `kind`; `choice` picks among the
    /// answers the real layers give.
    fn answer(&self, kind: &RequestKind, choice: u8) -> SmtpResponse {
        match kind {
            RequestKind::Auth(attempt) => {
                assert!(self.session.is_tls(), "AUTH reached the stack before TLS");
                assert_ne!(
                    self.config.auth,
                    AuthMode::Off,
                    "AUTH reached the stack while off"
                );
                assert!(!attempt.username.is_empty(), "an empty user name");
                assert_eq!(self.session.authenticated(), None, "a second AUTH");
                match choice % 4 {
                    0 => SmtpResponse::new(Outcome::Accepted, Reply::auth_succeeded()),
                    1 => SmtpResponse::new(Outcome::Deferred, Reply::auth_temporary_failure()),
                    _ => SmtpResponse::new(Outcome::Refused, Reply::auth_invalid()),
                }
            }
            RequestKind::Mail { .. } => {
                assert!(
                    !self.config.require_tls || self.session.is_tls(),
                    "MAIL reached the stack before STARTTLS"
                );
                assert!(
                    self.config.auth != AuthMode::Required
                        || self.session.authenticated().is_some(),
                    "MAIL reached the stack before AUTH"
                );
                match choice % 4 {
                    0 => SmtpResponse::failed(),
                    _ => SmtpResponse::sender_accepted(),
                }
            }
            RequestKind::Rcpt { .. } => match choice % 5 {
                0 => SmtpResponse::new(Outcome::Refused, Reply::no_such_user()),
                1 => SmtpResponse::failed(),
                2 if choice > 200 => {
                    SmtpResponse::new(Outcome::Refused, Reply::too_many_unknown_recipients())
                }
                _ => SmtpResponse::recipient_accepted(),
            },
            RequestKind::Message(envelope) => {
                assert!(
                    !envelope.recipients.is_empty(),
                    "a message without recipients"
                );
                assert!(
                    envelope.recipients.len() <= MAX_RECIPIENTS,
                    "too many recipients"
                );
                let mut distinct: Vec<String> = envelope
                    .recipients
                    .iter()
                    .map(|r| canonical_mailbox(r))
                    .collect();
                distinct.sort();
                distinct.dedup();
                assert_eq!(
                    distinct.len(),
                    envelope.recipients.len(),
                    "repeated recipient"
                );
                assert!(
                    !self.framed || envelope.message.len() <= self.config.max_message_size,
                    "a message of {} octets over the limit",
                    envelope.message.len()
                );
                match choice % 6 {
                    0 => SmtpResponse::new(Outcome::Queued, Reply::message_queued()),
                    1 => SmtpResponse::new(Outcome::Deferred, Reply::delivery_deferred()),
                    2 => SmtpResponse::new(Outcome::Deferred, Reply::insufficient_storage()),
                    3 => {
                        // A consumer's rejection body, here the message itself.
                        let reason = rejection_reason(&envelope.message);
                        SmtpResponse::new(Outcome::Rejected, Reply::rejected(reason.as_deref()))
                    }
                    _ => SmtpResponse::new(Outcome::Delivered, Reply::message_accepted()),
                }
            }
        }
    }
}

/// Builds frames from octets: one octet picks the kind (its high bit: the
/// memory budget is full while the frame is handled), then
/// - 0–3: a command line, up to and including the next LF (CRLF added at
///   the end of the input); longer than `MAX_LINE` is `LineTooLong`;
/// - 4: `LineTooLong`;
/// - 5: a message, one octet of length then its octets;
/// - 6: `MessageTooLarge`;
/// - 7: a chunk, one octet of length then its octets;
/// - 8: `ChunkSkipped`;
/// - 9: `OverBudget`;
/// - 10: a SASL response line, up to and including the next LF.
struct FrameReader<'a>(&'a [u8]);

impl FrameReader<'_> {
    fn octet(&mut self) -> u8 {
        let Some((&first, rest)) = self.0.split_first() else {
            return 0xff;
        };
        self.0 = rest;
        first
    }

    fn take(&mut self, len: usize) -> Bytes {
        let (taken, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        Bytes::copy_from_slice(taken)
    }

    fn frame(&mut self) -> Option<(Frame, bool)> {
        let first = *self.0.first()?;
        let (kind, buffers_full) = ((first & 0x7f) % 11, first & 0x80 != 0);
        self.0 = &self.0[1..];
        let frame = match kind {
            0..=3 => {
                let end = self
                    .0
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(self.0.len(), |lf| lf + 1);
                let mut line = self.take(end).to_vec();
                if !line.ends_with(b"\n") {
                    line.extend_from_slice(b"\r\n");
                }
                if line.len() > MAX_LINE + 2 {
                    Frame::LineTooLong
                } else {
                    Frame::Command(Command::parse(&line))
                }
            }
            4 => Frame::LineTooLong,
            5 => {
                let len = self.octet();
                Frame::Message(self.take(len.into()))
            }
            6 => Frame::MessageTooLarge,
            7 => {
                let len = self.octet();
                Frame::Chunk(self.take(len.into()))
            }
            8 => Frame::ChunkSkipped,
            9 => Frame::OverBudget,
            _ => {
                let end = self
                    .0
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(self.0.len(), |lf| lf + 1);
                let line = self.take(end);
                let line = line.strip_suffix(b"\n").unwrap_or(&line);
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                Frame::Response(Bytes::copy_from_slice(line))
            }
        };
        Some((frame, buffers_full))
    }
}
