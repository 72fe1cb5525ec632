//! Every transition of the dialogue, without a socket.

use super::*;
use crate::smtp::command::BodyType;
use crate::smtp::request::AuthAttempt;

fn config() -> SessionConfig {
    SessionConfig {
        hostname: None,
        max_message_size: 1000,
        require_tls: false,
        tls_available: true,
        auth: AuthMode::Off,
    }
}

fn session_with(config: SessionConfig) -> Session {
    Session::new(Arc::new(config), "127.0.0.1:4000".parse().unwrap())
}

fn tls13() -> TlsInfo {
    TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "TLS13_AES_256_GCM_SHA384".into(),
    }
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
        Action::Reply(reply)
        | Action::Close(reply)
        | Action::StartData(reply)
        | Action::StartTls(reply)
        | Action::ReadResponse(reply) => reply,
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
        Action::Call(RequestKind::Auth(attempt)) => session.on_response(check(&attempt)),
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
    s.on_tls_established(tls13());
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
                smtputf8: true,
                auth: false,
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
    s.on_tls_established(tls13());
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
    s.on_tls_established(tls13());
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

#[test]
fn an_unreadable_bdat_size_closes_the_session() {
    let mut s = session();
    ready_for_data(&mut s);
    let action = cmd(&mut s, "BDAT 99999999999999999999999 LAST");
    assert_eq!(action, Action::Close(Reply::bad_chunk_size()));
    assert_eq!(
        wire(&Reply::bad_chunk_size()),
        "501 5.5.4 Syntax: BDAT <size> [LAST], closing connection"
    );
}

#[test]
fn the_ehlo_reply_never_reflects_control_bytes() {
    let mut s = session();
    let action = s.on_frame(Frame::Command(Ok(Command::Ehlo(
        "evil\x1b[2J\r\n250 fake".into(),
    ))));
    let Action::Reply(reply) = action else {
        panic!("EHLO is answered at once");
    };
    let first = wire(&reply).lines().next().unwrap().to_owned();
    assert_eq!(first, "250-MailLaser greets evil?[2J??250?fake");
}

/// Finding 5 (issue 9): while the shared memory budget has no room, DATA
/// and BDAT get `452 4.3.1` before any octet is read, and the transaction
/// stays open for a later try.
#[test]
fn memory_has_a_global_bound_data_and_bdat_wait_for_room() {
    const FULL: &str = "452 4.3.1 Insufficient system storage, try again later";
    let mut s = session();
    ready_for_data(&mut s);
    s.set_buffers_full(true);
    assert_eq!(wire(&reply(&mut s, "DATA")), FULL);
    assert!(!s.in_data(), "no 354: nothing of the body is read");
    // A BDAT's octets are on their way: read and dropped, then 452, and
    // every chunk the client pipelined after it too (RFC 3030 §2).
    assert_eq!(bdat_reply(&mut s, "BDAT 5", b"Subje"), FULL);
    s.set_buffers_full(false);
    assert_eq!(
        bdat_reply(&mut s, "BDAT 3", b"ct:"),
        FULL,
        "the message already failed"
    );
    assert_eq!(bdat_reply(&mut s, "BDAT 2 LAST", b"\r\n"), FULL);
    assert!(!s.in_data());
    // The LAST ended that transaction; a new one goes through.
    ready_for_data(&mut s);
    assert_eq!(reply(&mut s, "DATA").code, 354);
}

/// Finding 5: a body or chunk the budget cannot hold mid-way is drained
/// by the codec ([`Frame::OverBudget`]) and answered `452 4.3.1`.
#[test]
fn memory_has_a_global_bound_a_body_that_runs_out_of_room_is_452() {
    let mut s = session();
    ready_for_data(&mut s);
    assert_eq!(reply(&mut s, "DATA").code, 354);
    assert_eq!(
        s.on_frame(Frame::OverBudget),
        Action::Reply(Reply::insufficient_storage())
    );
    assert!(!s.in_data());
    assert_eq!(
        reply(&mut s, "RCPT TO:<b@example.com>").code,
        503,
        "transaction reset"
    );

    ready_for_data(&mut s);
    assert_eq!(
        bdat_reply(&mut s, "BDAT 4", b"Sub:"),
        "250 2.0.0 4 octets received"
    );
    let Action::ReadChunk { keep: true, .. } = cmd(&mut s, "BDAT 3") else {
        panic!("the chunk is wanted");
    };
    assert_eq!(
        s.on_frame(Frame::OverBudget),
        Action::Reply(Reply::insufficient_storage())
    );
    assert_eq!(
        bdat_reply(&mut s, "BDAT 1 LAST", b"x"),
        "452 4.3.1 Insufficient system storage, try again later"
    );
    assert!(!s.in_data());
}

// === AUTH (RFC 4954) ===

/// A stack that knows one user, `alice` with the password `secret`.
fn check(attempt: &AuthAttempt) -> SmtpResponse {
    if attempt.username == "alice" && attempt.password.expose() == b"secret" {
        SmtpResponse::new(Outcome::Accepted, Reply::auth_succeeded())
    } else {
        SmtpResponse::new(Outcome::Refused, Reply::auth_invalid())
    }
}

fn auth_session(mode: AuthMode) -> Session {
    session_with(SessionConfig {
        auth: mode,
        ..config()
    })
}

/// A session with AUTH offered, in TLS and greeted.
fn tls_auth_session(mode: AuthMode) -> Session {
    let mut s = auth_session(mode);
    s.on_tls_established(tls13());
    reply(&mut s, "EHLO client.example");
    s
}

fn b64(text: &[u8]) -> String {
    data_encoding::BASE64.encode(text)
}

/// Answers the last challenge with `line`, as the codec yields it.
fn respond(session: &mut Session, line: &str) -> Action {
    session.on_frame(Frame::Response(Bytes::copy_from_slice(line.as_bytes())))
}

fn respond_reply(session: &mut Session, line: &str) -> String {
    match respond(session, line) {
        Action::Call(RequestKind::Auth(attempt)) => wire(&session.on_response(check(&attempt))),
        Action::Reply(reply) | Action::ReadResponse(reply) => wire(&reply),
        other => panic!("expected a reply, got {other:?}"),
    }
}

#[test]
fn auth_is_advertised_only_in_tls_and_only_when_on() {
    let mut off = auth_session(AuthMode::Off);
    off.on_tls_established(tls13());
    assert!(!reply(&mut off, "EHLO c").text.contains("AUTH"));
    assert_eq!(
        wire(&reply(&mut off, "AUTH PLAIN")),
        "502 5.5.1 Command not implemented"
    );

    let mut plain = auth_session(AuthMode::Optional);
    let ehlo = reply(&mut plain, "EHLO c");
    assert!(!ehlo.text.contains("AUTH"), "{}", ehlo.text);
    assert_eq!(
        wire(&reply(
            &mut plain,
            &format!("AUTH PLAIN {}", b64(b"\0alice\0secret"))
        )),
        "538 5.7.11 Encryption required for requested authentication mechanism"
    );
    assert_eq!(plain.authenticated(), None);

    let mut tls = tls_auth_session(AuthMode::Optional);
    let ehlo = reply(&mut tls, "EHLO c");
    assert!(
        ehlo.text.ends_with("\nCHUNKING\nAUTH PLAIN LOGIN"),
        "{}",
        ehlo.text
    );
}

#[test]
fn auth_plain_with_an_initial_response() {
    let mut s = tls_auth_session(AuthMode::Optional);
    let line = format!("AUTH PLAIN {}", b64(b"\0alice\0secret"));
    let Action::Call(RequestKind::Auth(attempt)) = cmd(&mut s, &line) else {
        panic!("AUTH PLAIN with a response asks the stack");
    };
    assert_eq!(attempt.username, "alice");
    assert_eq!(attempt.mechanism, "PLAIN");
    assert!(!format!("{attempt:?}").contains("secret"), "{attempt:?}");
    assert_eq!(
        wire(&s.on_response(check(&attempt))),
        "235 2.7.0 Authentication successful"
    );
    assert_eq!(s.authenticated(), Some("alice"));
    assert_eq!(s.info().authenticated.as_deref(), Some("alice"));
    assert_eq!(
        wire(&reply(&mut s, "AUTH LOGIN")),
        "503 5.5.1 Already authenticated"
    );
    // RSET and a new EHLO keep the identity.
    reply(&mut s, "RSET");
    reply(&mut s, "EHLO again.example");
    assert_eq!(s.authenticated(), Some("alice"));
}

#[test]
fn auth_plain_with_a_challenge_and_an_authzid() {
    let mut s = tls_auth_session(AuthMode::Optional);
    assert_eq!(
        cmd(&mut s, "AUTH PLAIN"),
        Action::ReadResponse(Reply::auth_challenge(""))
    );
    assert_eq!(
        respond_reply(&mut s, &b64(b"alice\0alice\0secret")),
        "235 2.7.0 Authentication successful"
    );

    // Acting as someone else is refused without asking the stack.
    let mut s = tls_auth_session(AuthMode::Optional);
    assert_eq!(
        wire(&reply(
            &mut s,
            &format!("AUTH PLAIN {}", b64(b"bob\0alice\0secret"))
        )),
        "535 5.7.8 Authentication credentials invalid"
    );
    assert_eq!(s.authenticated(), None);
}

#[test]
fn auth_login_asks_for_name_then_password() {
    let mut s = tls_auth_session(AuthMode::Optional);
    assert_eq!(wire(&reply(&mut s, "AUTH LOGIN")), "334 VXNlcm5hbWU6");
    assert_eq!(respond_reply(&mut s, &b64(b"alice")), "334 UGFzc3dvcmQ6");
    assert_eq!(
        respond_reply(&mut s, &b64(b"wrong")),
        "535 5.7.8 Authentication credentials invalid"
    );
    // With the user name as the initial response.
    assert_eq!(
        wire(&reply(&mut s, &format!("AUTH LOGIN {}", b64(b"alice")))),
        "334 UGFzc3dvcmQ6"
    );
    assert_eq!(
        respond_reply(&mut s, &b64(b"secret")),
        "235 2.7.0 Authentication successful"
    );
    assert_eq!(s.authenticated(), Some("alice"));
}

#[test]
fn auth_cancel_bad_base64_and_malformed_responses() {
    let mut s = tls_auth_session(AuthMode::Optional);
    reply(&mut s, "AUTH LOGIN");
    assert_eq!(
        respond_reply(&mut s, "*"),
        "501 5.7.0 Authentication cancelled"
    );
    reply(&mut s, "AUTH PLAIN");
    assert_eq!(
        respond_reply(&mut s, "not base64!"),
        "501 5.5.2 Invalid base64 data"
    );
    reply(&mut s, "AUTH PLAIN");
    assert_eq!(
        respond_reply(&mut s, &b64(b"no nul at all")),
        "501 5.5.2 Malformed authentication response"
    );
    assert_eq!(
        wire(&reply(
            &mut s,
            &format!("AUTH PLAIN {}", b64(b"\0\xff\xfe\0pw"))
        )),
        "501 5.5.2 Malformed authentication response"
    );
    assert_eq!(
        wire(&reply(&mut s, "AUTH PLAIN =")),
        "501 5.5.2 Malformed authentication response"
    );
    // An overlong response ends the exchange; the session goes on.
    reply(&mut s, "AUTH PLAIN");
    let Action::Reply(too_long) = s.on_frame(Frame::LineTooLong) else {
        panic!("a reply");
    };
    assert_eq!(wire(&too_long), "500 5.5.6 Line too long");
    assert_eq!(wire(&reply(&mut s, "NOOP")), "250 2.0.0 OK");
    assert_eq!(
        wire(&reply(&mut s, "AUTH CRAM-MD5")),
        "504 5.5.4 Unrecognized authentication type"
    );
    assert_eq!(s.authenticated(), None);
}

#[test]
fn auth_is_not_permitted_in_a_transaction_or_before_ehlo() {
    let mut s = auth_session(AuthMode::Optional);
    s.on_tls_established(tls13());
    assert_eq!(
        wire(&reply(&mut s, "AUTH PLAIN")),
        "503 5.5.1 Send EHLO or HELO first"
    );
    reply(&mut s, "EHLO c");
    reply(&mut s, "MAIL FROM:<a@example.com>");
    assert_eq!(
        wire(&reply(&mut s, "AUTH PLAIN")),
        "503 5.5.1 AUTH not permitted during a mail transaction"
    );
    // The transaction is untouched.
    assert_eq!(reply(&mut s, "RCPT TO:<b@example.com>").code, 250);
}

/// RFC 4954 §5: clients that authenticated (Exim, sendmail) add `AUTH=` to
/// `MAIL`; it is taken where AUTH is offered, and unknown elsewhere.
#[test]
fn the_auth_mail_parameter_is_accepted_only_where_auth_is_offered() {
    let mut s = tls_auth_session(AuthMode::Optional);
    assert_eq!(reply(&mut s, "MAIL FROM:<a@example.com> AUTH=<>").code, 250);
    let mut s = session();
    reply(&mut s, "EHLO c");
    assert_eq!(
        wire(&reply(&mut s, "MAIL FROM:<a@example.com> AUTH=<>")),
        "555 5.5.4 Unsupported MAIL or RCPT parameter"
    );
}

#[test]
fn required_auth_refuses_mail_until_authenticated() {
    let mut s = tls_auth_session(AuthMode::Required);
    assert_eq!(
        wire(&reply(&mut s, "MAIL FROM:<a@example.com>")),
        "530 5.7.0 Authentication required"
    );
    reply(&mut s, &format!("AUTH PLAIN {}", b64(b"\0alice\0secret")));
    assert_eq!(reply(&mut s, "MAIL FROM:<a@example.com>").code, 250);

    // Optional: mail is taken either way.
    let mut s = tls_auth_session(AuthMode::Optional);
    assert_eq!(reply(&mut s, "MAIL FROM:<a@example.com>").code, 250);
    // Before TLS in required mode too.
    let mut s = auth_session(AuthMode::Required);
    reply(&mut s, "EHLO c");
    assert_eq!(reply(&mut s, "MAIL FROM:<a@example.com>").code, 530);
}

#[test]
fn the_third_failed_auth_closes_the_session() {
    let mut s = tls_auth_session(AuthMode::Optional);
    let wrong = format!("AUTH PLAIN {}", b64(b"\0alice\0wrong"));
    for _ in 1..MAX_AUTH_FAILURES {
        assert_eq!(
            wire(&reply(&mut s, &wrong)),
            "535 5.7.8 Authentication credentials invalid"
        );
    }
    let last = reply(&mut s, &wrong);
    assert_eq!(
        wire(&last),
        "421 4.7.0 Too many authentication failures, closing connection"
    );
    assert!(last.closes_connection());
    // A throttled attempt (454) counts too: a client looping on it
    // cannot spin.
    let mut s = tls_auth_session(AuthMode::Optional);
    let mut throttled = || {
        let Action::Call(RequestKind::Auth(_)) = cmd(&mut s, &wrong) else {
            panic!("asks the stack");
        };
        let response = SmtpResponse::new(Outcome::Deferred, Reply::auth_temporary_failure());
        wire(&s.on_response(response))
    };
    assert_eq!(throttled(), "454 4.7.0 Temporary authentication failure");
    assert_eq!(throttled(), "454 4.7.0 Temporary authentication failure");
    assert_eq!(
        throttled(),
        "421 4.7.0 Too many authentication failures, closing connection"
    );
}

#[test]
fn a_frame_out_of_place_ends_the_exchange() {
    let mut s = tls_auth_session(AuthMode::Optional);
    reply(&mut s, "AUTH LOGIN");
    // A command where a response was expected (only raw frames can do this).
    assert_eq!(
        wire(&reply(&mut s, "NOOP")),
        "503 5.5.1 Bad sequence of commands"
    );
    assert_eq!(wire(&reply(&mut s, "NOOP")), "250 2.0.0 OK");
    // A response without a challenge.
    assert_eq!(
        respond_reply(&mut s, "YWxpY2U="),
        "503 5.5.1 Bad sequence of commands"
    );
}
