//! SMTP replies as typed values with named constructors: every reply text of
//! the contract (`docs/smtp.md`) is written once, here.

use std::borrow::Cow;
use std::fmt;

use bytes::{BufMut, BytesMut};

/// An RFC 3463 enhanced status code, `class.subject.detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enhanced(pub u8, pub u16, pub u16);

impl fmt::Display for Enhanced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// One SMTP reply. A multi-line reply has its lines separated by `\n` in
/// `text`; the encoder writes `code-` continuations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: Option<Enhanced>,
    pub text: Cow<'static, str>,
}

const fn reply(code: u16, enhanced: Option<Enhanced>, text: &'static str) -> Reply {
    Reply {
        code,
        enhanced,
        text: Cow::Borrowed(text),
    }
}

const fn enhanced(class: u8, subject: u16, detail: u16) -> Option<Enhanced> {
    Some(Enhanced(class, subject, detail))
}

impl Reply {
    /// A reply with a text computed at run time (greeting, EHLO, webhook reasons).
    pub fn new(code: u16, enhanced: Option<Enhanced>, text: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            enhanced,
            text: text.into(),
        }
    }

    pub fn greeting(hostname: Option<&str>) -> Self {
        match hostname {
            Some(host) => Self::new(220, None, format!("{host} MailLaser SMTP Server Ready")),
            None => reply(220, None, "MailLaser SMTP Server Ready"),
        }
    }

    /// The EHLO reply: greeting line then one line per extension. The
    /// client's name is echoed as printable ASCII only (anything else
    /// becomes `?`): a reply never carries a client's control bytes.
    pub fn ehlo(client: &str, extensions: &[Cow<'static, str>]) -> Self {
        let client: String = client
            .chars()
            .map(|c| if c.is_ascii_graphic() { c } else { '?' })
            .collect();
        let mut text = format!("MailLaser greets {client}");
        for extension in extensions {
            text.push('\n');
            text.push_str(extension);
        }
        Self::new(250, None, text)
    }

    pub const fn helo() -> Self {
        reply(250, None, "MailLaser")
    }
    pub const fn ok() -> Self {
        reply(250, enhanced(2, 0, 0), "OK")
    }
    pub const fn sender_ok() -> Self {
        reply(250, enhanced(2, 1, 0), "OK")
    }
    pub const fn recipient_ok() -> Self {
        reply(250, enhanced(2, 1, 5), "OK")
    }
    pub const fn message_accepted() -> Self {
        reply(250, enhanced(2, 0, 0), "OK: Message accepted for delivery")
    }
    /// `250` in `spool` mode when the message is on disk but not yet at the
    /// webhook. Its own text tells the sender's logs that it was queued, not
    /// delivered.
    pub const fn message_queued() -> Self {
        reply(250, enhanced(2, 0, 0), "OK: Message queued for delivery")
    }
    pub const fn bye() -> Self {
        reply(221, enhanced(2, 0, 0), "Bye")
    }
    pub const fn help() -> Self {
        reply(
            214,
            enhanced(2, 0, 0),
            "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP VRFY HELP QUIT STARTTLS",
        )
    }
    pub const fn cannot_vrfy() -> Self {
        reply(
            252,
            enhanced(2, 5, 2),
            "Cannot VRFY user, but will accept message and attempt delivery",
        )
    }
    /// The reply to a BDAT chunk that is not the last one (RFC 3030 §2).
    pub fn chunk_received(size: u64) -> Self {
        Self::new(250, enhanced(2, 0, 0), format!("{size} octets received"))
    }
    pub const fn start_data() -> Self {
        reply(354, None, "Start mail input; end with <CRLF>.<CRLF>")
    }
    pub const fn tls_go_ahead() -> Self {
        reply(220, enhanced(2, 0, 0), "Go ahead")
    }

    /// A SASL challenge (RFC 4954 §4): base64 text and never an enhanced
    /// code, which would be read as part of the challenge.
    pub const fn auth_challenge(base64: &'static str) -> Self {
        reply(334, None, base64)
    }
    pub const fn auth_succeeded() -> Self {
        reply(235, enhanced(2, 7, 0), "Authentication successful")
    }

    pub const fn shutting_down() -> Self {
        reply(421, enhanced(4, 3, 2), "Service shutting down")
    }
    pub const fn idle_timeout() -> Self {
        reply(421, enhanced(4, 4, 2), "Idle timeout, closing connection")
    }
    /// A message body arriving slower than `MAIL_LASER_DATA_MIN_RATE`.
    pub const fn too_slow() -> Self {
        reply(421, enhanced(4, 4, 2), "Too slow, closing connection")
    }
    pub const fn too_many_errors() -> Self {
        reply(
            421,
            enhanced(4, 4, 2),
            "Too many errors, closing connection",
        )
    }
    pub const fn too_many_connections() -> Self {
        reply(
            421,
            enhanced(4, 7, 0),
            "Too many connections, try again later",
        )
    }
    /// The session's third failed `AUTH` (`docs/access.md`).
    pub const fn too_many_auth_failures() -> Self {
        reply(
            421,
            enhanced(4, 7, 0),
            "Too many authentication failures, closing connection",
        )
    }
    pub const fn too_many_unknown_recipients() -> Self {
        reply(
            421,
            enhanced(4, 7, 0),
            "Too many unknown recipients, closing connection",
        )
    }
    pub const fn delivery_deferred() -> Self {
        reply(
            451,
            enhanced(4, 3, 0),
            "Temporary delivery failure, try again later",
        )
    }
    pub const fn local_error() -> Self {
        reply(
            451,
            enhanced(4, 3, 0),
            "Local error in processing, try again later",
        )
    }
    /// `MAIL_LASER_RATE_LIMIT_MESSAGES`: this client IP started too many
    /// transactions this minute.
    pub const fn rate_limited() -> Self {
        reply(
            451,
            enhanced(4, 7, 1),
            "Rate limit exceeded, try again later",
        )
    }
    /// RFC 3463 4.3.1 "mail system full" (RFC 5321 §4.5.3.1.10): the spool
    /// is full or unwritable, or the memory budget for message octets is
    /// spent.
    pub const fn insufficient_storage() -> Self {
        reply(
            452,
            enhanced(4, 3, 1),
            "Insufficient system storage, try again later",
        )
    }
    /// `MAIL_LASER_DMARC_MODE=enforce`: DMARC could not be evaluated (a DNS
    /// timeout or SERVFAIL) and `MAIL_LASER_DMARC_TEMPERROR_ACTION=reject`.
    pub const fn dmarc_temporary_failure() -> Self {
        reply(
            451,
            enhanced(4, 7, 0),
            "Temporary DMARC evaluation failure, try again later",
        )
    }
    pub const fn too_many_recipients() -> Self {
        reply(452, enhanced(4, 5, 3), "Too many recipients")
    }
    pub const fn tls_unavailable() -> Self {
        reply(454, enhanced(4, 7, 0), "TLS not available")
    }
    /// RFC 4954 §6: credentials not checked now (too many failures from
    /// this client IP, or no verifier free in time).
    pub const fn auth_temporary_failure() -> Self {
        reply(454, enhanced(4, 7, 0), "Temporary authentication failure")
    }

    pub const fn unknown_command() -> Self {
        reply(500, enhanced(5, 5, 2), "Command not recognized")
    }
    pub const fn line_too_long() -> Self {
        reply(500, enhanced(5, 5, 6), "Line too long")
    }
    pub fn syntax_error(expected: &str) -> Self {
        Self::new(
            501,
            enhanced(5, 5, 2),
            format!("Syntax error, expected {expected}"),
        )
    }
    pub const fn invalid_address() -> Self {
        reply(501, enhanced(5, 1, 3), "Bad address syntax")
    }
    /// A SASL response that is not base64 (RFC 4954 §4).
    pub const fn auth_bad_base64() -> Self {
        reply(501, enhanced(5, 5, 2), "Invalid base64 data")
    }
    /// A SASL response that decodes but is not what the mechanism expects
    /// (a PLAIN message without its two NULs, a user name not in UTF-8).
    pub const fn auth_malformed() -> Self {
        reply(501, enhanced(5, 5, 2), "Malformed authentication response")
    }
    /// The client answered a challenge with `*` (RFC 4954 §4).
    pub const fn auth_cancelled() -> Self {
        reply(501, enhanced(5, 7, 0), "Authentication cancelled")
    }
    pub const fn not_implemented() -> Self {
        reply(502, enhanced(5, 5, 1), "Command not implemented")
    }
    pub const fn bad_sequence() -> Self {
        reply(503, enhanced(5, 5, 1), "Bad sequence of commands")
    }
    pub const fn data_after_bdat() -> Self {
        reply(503, enhanced(5, 5, 1), "DATA not allowed after BDAT")
    }
    pub const fn nested_mail() -> Self {
        reply(503, enhanced(5, 5, 1), "Sender already specified")
    }
    pub const fn need_mail() -> Self {
        reply(503, enhanced(5, 5, 1), "Need MAIL before RCPT")
    }
    pub const fn need_ehlo() -> Self {
        reply(503, enhanced(5, 5, 1), "Send EHLO or HELO first")
    }
    /// A second `AUTH` after a successful one (RFC 4954 §4).
    pub const fn already_authenticated() -> Self {
        reply(503, enhanced(5, 5, 1), "Already authenticated")
    }
    /// `AUTH` inside a mail transaction (RFC 4954 §4).
    pub const fn auth_in_transaction() -> Self {
        reply(
            503,
            enhanced(5, 5, 1),
            "AUTH not permitted during a mail transaction",
        )
    }
    pub const fn unknown_mechanism() -> Self {
        reply(504, enhanced(5, 5, 4), "Unrecognized authentication type")
    }
    pub const fn tls_already_active() -> Self {
        reply(503, enhanced(5, 5, 1), "STARTTLS already active")
    }
    pub const fn tls_required() -> Self {
        reply(
            530,
            enhanced(5, 7, 0),
            "Must issue a STARTTLS command first",
        )
    }
    /// `MAIL_LASER_AUTH=required` and no successful `AUTH` yet.
    pub const fn auth_required() -> Self {
        reply(530, enhanced(5, 7, 0), "Authentication required")
    }
    pub const fn auth_invalid() -> Self {
        reply(535, enhanced(5, 7, 8), "Authentication credentials invalid")
    }
    /// `AUTH` before TLS: credentials never cross the wire in clear.
    pub const fn auth_needs_tls() -> Self {
        reply(
            538,
            enhanced(5, 7, 11),
            "Encryption required for requested authentication mechanism",
        )
    }
    pub const fn no_such_user() -> Self {
        reply(550, enhanced(5, 1, 1), "No such user here")
    }
    /// `MAIL_LASER_DMARC_MODE=enforce`: DMARC `fail` and the From domain's
    /// policy is `reject` or `quarantine` (RFC 7489 §6.6.3, RFC 7372 §3.2).
    pub const fn dmarc_rejected() -> Self {
        reply(
            550,
            enhanced(5, 7, 1),
            "Message rejected by the DMARC policy of the From domain",
        )
    }
    pub const fn message_too_large() -> Self {
        reply(552, enhanced(5, 3, 4), "Message size exceeds limit")
    }
    /// The sender policy (`MAIL_LASER_CEDAR_POLICIES`) refused the message.
    pub const fn policy_refused() -> Self {
        reply(
            550,
            enhanced(5, 7, 1),
            "Delivery not authorized, message refused",
        )
    }
    /// One attachment is larger than `MAIL_LASER_MAX_ATTACHMENT_SIZE`.
    pub const fn attachment_too_large() -> Self {
        reply(552, enhanced(5, 3, 4), "Attachment size exceeds limit")
    }
    /// More attachments than one message may have (`mail::parse::MAX_ATTACHMENTS`).
    pub const fn too_many_attachments() -> Self {
        reply(552, enhanced(5, 3, 4), "Too many attachments")
    }
    pub fn rejected(reason: Option<&str>) -> Self {
        match reason {
            Some(reason) if !reason.is_empty() => {
                Self::new(554, enhanced(5, 6, 0), reason.to_owned())
            }
            _ => reply(554, enhanced(5, 6, 0), "Message rejected by webhook"),
        }
    }
    pub fn invalid_parameter(param: &str) -> Self {
        Self::new(501, enhanced(5, 5, 4), format!("Invalid value for {param}"))
    }
    /// A `BDAT` size that is not a number within 64 bits; the session
    /// closes after it (RFC 3030 §2 grammar; Postfix hangs up likewise).
    pub const fn bad_chunk_size() -> Self {
        reply(
            501,
            enhanced(5, 5, 4),
            "Syntax: BDAT <size> [LAST], closing connection",
        )
    }
    pub const fn unsupported_parameter() -> Self {
        reply(555, enhanced(5, 5, 4), "Unsupported MAIL or RCPT parameter")
    }

    /// A `421` (or `221`) reply ends the session after it is written.
    pub fn closes_connection(&self) -> bool {
        matches!(self.code, 221 | 421)
    }

    /// A 5xx reply counts towards the per-session error cap.
    pub fn is_protocol_error(&self) -> bool {
        (500..=504).contains(&self.code) || self.code == 555
    }

    /// Appends the wire form, with the enhanced code only when the client
    /// negotiated ENHANCEDSTATUSCODES via EHLO (RFC 2034 §3).
    pub fn encode(&self, with_enhanced: bool, dst: &mut BytesMut) {
        let mut lines = self.text.split('\n').peekable();
        while let Some(line) = lines.next() {
            let separator = if lines.peek().is_some() { b'-' } else { b' ' };
            dst.reserve(line.len() + 16);
            dst.put_slice(itoa_3(self.code).as_slice());
            dst.put_u8(separator);
            if let (true, Some(code)) = (with_enhanced, self.enhanced) {
                use std::fmt::Write;
                let _ = write!(BytesMutWriter(dst), "{code} ");
            }
            dst.put_slice(line.as_bytes());
            dst.put_slice(b"\r\n");
        }
    }
}

fn itoa_3(code: u16) -> [u8; 3] {
    let code = code.min(999);
    [
        b'0' + (code / 100) as u8,
        b'0' + (code / 10 % 10) as u8,
        b'0' + (code % 10) as u8,
    ]
}

struct BytesMutWriter<'a>(&'a mut BytesMut);

impl fmt::Write for BytesMutWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = BytesMut::new();
        self.encode(true, &mut buf);
        f.write_str(String::from_utf8_lossy(&buf).trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(reply: &Reply, enhanced: bool) -> String {
        let mut buf = BytesMut::new();
        reply.encode(enhanced, &mut buf);
        String::from_utf8(buf.to_vec()).unwrap()
    }

    #[test]
    fn single_line_with_and_without_enhanced_code() {
        assert_eq!(
            wire(&Reply::no_such_user(), true),
            "550 5.1.1 No such user here\r\n"
        );
        assert_eq!(
            wire(&Reply::no_such_user(), false),
            "550 No such user here\r\n"
        );
    }

    #[test]
    fn multi_line_uses_continuations() {
        let reply = Reply::ehlo("c.example", &["PIPELINING".into(), "8BITMIME".into()]);
        assert_eq!(
            wire(&reply, true),
            "250-MailLaser greets c.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
        );
    }

    #[test]
    fn sasl_challenges_never_carry_an_enhanced_code() {
        assert_eq!(wire(&Reply::auth_challenge(""), true), "334 \r\n");
        assert_eq!(
            wire(&Reply::auth_challenge("VXNlcm5hbWU6"), true),
            "334 VXNlcm5hbWU6\r\n"
        );
        assert_eq!(
            wire(&Reply::auth_needs_tls(), true),
            "538 5.7.11 Encryption required for requested authentication mechanism\r\n"
        );
    }

    #[test]
    fn greeting_with_hostname() {
        assert_eq!(
            wire(&Reply::greeting(Some("mx.example")), true),
            "220 mx.example MailLaser SMTP Server Ready\r\n"
        );
    }
}
