//! SMTP commands as typed values, independent of how they were framed.
//!
//! The grammar itself (RFC 5321 §4.1 plus the ESMTP parameters) is parsed by
//! `smtp-proto`, Stalwart's fuzzed parser; [`Command::parse`] maps its output
//! onto the small set of commands and parameters MailLaser implements, so the
//! rest of the server never sees the dependency.

use smtp_proto::{
    Error as ProtoError, MAIL_BODY_7BIT, MAIL_BODY_8BITMIME, MAIL_SMTPUTF8, MailFrom, Request,
};

/// `BODY=` values of RFC 6152.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyType {
    #[default]
    SevenBit,
    EightBitMime,
}

/// The parameters of `MAIL FROM` that MailLaser advertises and honours.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailParams {
    /// Declared message size (RFC 1870), if the client sent `SIZE=`.
    pub size: Option<u64>,
    pub body: Option<BodyType>,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    /// An `AUTH=` parameter (RFC 4954 §5) was given. Its value is ignored
    /// (MailLaser relays nothing it would pass it on to); the session
    /// accepts it only where `AUTH` is offered.
    pub auth: bool,
}

/// The SASL mechanism named by `AUTH` (RFC 4954); MailLaser implements
/// PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
    /// A well-formed mechanism name MailLaser does not offer: `504`.
    Other,
}

impl Mechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::Login => "LOGIN",
            Self::Other => "OTHER",
        }
    }
}

/// One parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    /// `MAIL FROM:<address>`; the null reverse-path is the empty string.
    Mail {
        from: String,
        params: MailParams,
    },
    Rcpt {
        to: String,
    },
    Data,
    /// `BDAT n [LAST]` (RFC 3030).
    Bdat {
        size: u64,
        last: bool,
    },
    Rset,
    Noop,
    Vrfy,
    Help,
    Quit,
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954 §4). The initial
    /// response is kept as sent (base64, or `=` for an empty one); the
    /// session decodes it.
    Auth {
        mechanism: Mechanism,
        initial: Option<String>,
    },
    /// A command RFC 5321 or an extension defines but MailLaser does not
    /// implement (`EXPN`, `ETRN`, …): `502`.
    NotImplemented(&'static str),
}

/// The one form of a mailbox address that recipients are matched,
/// de-duplicated and keyed by: Unicode lower case (`docs/smtp.md`). A
/// single definition, so that no two spellings the matcher accepts as one
/// target (`K`, `k` and U+212A KELVIN SIGN) are two recipients elsewhere.
pub fn canonical_mailbox(address: &str) -> String {
    address.to_lowercase()
}

/// The address in its RFC 5321 form: smtp-proto hands over a quoted local
/// part unquoted (`"john doe"@x` as `john doe@x`), which is another
/// mailbox, so a local part that is not a dot-string is quoted again,
/// with `"` and `\` escaped.
fn as_written(address: &str) -> String {
    let (local, domain) = match address.rsplit_once('@') {
        Some((local, domain)) => (local, Some(domain)),
        None => (address, None),
    };
    if address.is_empty() || is_dot_string(local) {
        return address.to_owned();
    }
    let mut written = String::with_capacity(address.len() + 4);
    written.push('"');
    for c in local.chars() {
        if matches!(c, '"' | '\\') {
            written.push('\\');
        }
        written.push(c);
    }
    written.push('"');
    if let Some(domain) = domain {
        written.push('@');
        written.push_str(domain);
    }
    written
}

/// `local+tag@domain` split into `local@domain` and `tag` (the
/// subaddress convention of Postfix's `recipient_delimiter`); `None` when
/// the local part has no `+`, starts with it, or is quoted.
pub fn split_plus_tag(address: &str) -> Option<(String, &str)> {
    let (local, domain) = address.rsplit_once('@')?;
    if local.starts_with('"') {
        return None;
    }
    let (base, tag) = local.split_once('+')?;
    (!base.is_empty()).then(|| (format!("{base}@{domain}"), tag))
}

/// Whether an address (local part unquoted) is a mailbox (RFC 5321
/// §4.1.2): a local part without control characters (C1 included) or
/// U+FFFD, and a domain of labels of letters, digits and hyphens joined by
/// dots (underscores allowed, as MTAs do). A non-ASCII domain (RFC 6531)
/// must map through IDNA to such a domain, which refuses controls, spaces
/// and the other code points no domain may hold. Address literals
/// (`[192.0.2.1]`) never get here: smtp-proto refuses them.
fn is_mailbox(address: &str) -> bool {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    let garbled = |c: char| c.is_control() || c == char::REPLACEMENT_CHARACTER;
    if local.is_empty() || local.chars().any(garbled) {
        return false;
    }
    if domain.is_ascii() {
        return is_host_name(domain);
    }
    domain.split('.').all(|label| !label.is_empty())
        && idna::domain_to_ascii_cow(domain.as_bytes(), idna::AsciiDenyList::EMPTY)
            .is_ok_and(|ascii| is_host_name(&ascii))
}

/// An ASCII domain name: labels of 1 to 63 letters, digits, hyphens and
/// underscores, 255 octets in all.
fn is_host_name(domain: &str) -> bool {
    let label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
    };
    domain.len() <= 255 && domain.split('.').all(label)
}

/// `Dot-string` (RFC 5321 §4.1.2): atoms of `atext` (RFC 6531 adds any
/// non-ASCII character) joined by single dots.
fn is_dot_string(local: &str) -> bool {
    let atext =
        |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii();
    !local.is_empty()
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(atext))
}

/// Why a command line could not be turned into a [`Command`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("unrecognised command")]
    UnknownCommand,
    #[error("syntax error, expected {0}")]
    Syntax(&'static str),
    #[error("invalid address")]
    InvalidAddress,
    #[error("invalid value for parameter {0}")]
    InvalidParameter(&'static str),
    #[error("parameter {0} not supported")]
    UnsupportedParameter(String),
    /// A `BDAT` line whose chunk size is not a decimal number that fits in
    /// 64 bits (or that has other arguments than `LAST`): where its chunk
    /// ends cannot be known, so nothing after it can be read as a command.
    #[error("malformed BDAT chunk size")]
    BadChunkSize,
}

impl Command {
    /// Parses one command line. `line` must end with `\n` (the codec passes
    /// the line including its terminator).
    ///
    /// # Errors
    /// A [`CommandError`] the session turns into a `5xx` reply.
    pub fn parse(line: &[u8]) -> Result<Self, CommandError> {
        if let Some(arguments) = bdat_arguments(line) {
            return parse_bdat(arguments);
        }
        if let Some(arguments) = verb_arguments(line, b"AUTH") {
            return parse_auth(arguments);
        }
        match Request::parse(&mut line.iter()) {
            // smtp-proto is lenient where RFC 5321 §4.1.2 is not: it skips
            // some control bytes inside a path (a CR in the domain
            // vanished), reads invalid UTF-8 lossily and takes a quoted
            // string for a domain. Such an address would not be the one
            // written, so it is refused (found by the `command` fuzz target).
            Ok(Request::Mail { .. } | Request::Rcpt { .. })
                if has_control_bytes(line) || std::str::from_utf8(line).is_err() =>
            {
                Err(CommandError::InvalidAddress)
            }
            // The null path is `<>` as written; smtp-proto reads `<"">` so too.
            Ok(Request::Mail { from })
                if from.address.is_empty() && !line.windows(2).any(|pair| pair == b"<>") =>
            {
                Err(CommandError::InvalidAddress)
            }
            Ok(Request::Mail { from })
                if !from.address.is_empty() && !is_mailbox(&from.address) =>
            {
                Err(CommandError::InvalidAddress)
            }
            Ok(Request::Rcpt { to }) if !is_mailbox(&to.address) => {
                Err(CommandError::InvalidAddress)
            }
            Ok(request) => Self::from_request(request),
            Err(error) => Err(match error {
                ProtoError::UnknownCommand => CommandError::UnknownCommand,
                ProtoError::SyntaxError { syntax } => CommandError::Syntax(syntax),
                ProtoError::InvalidSenderAddress | ProtoError::InvalidRecipientAddress => {
                    CommandError::InvalidAddress
                }
                ProtoError::InvalidParameter { param } => CommandError::InvalidParameter(param),
                ProtoError::UnsupportedParameter { param } => {
                    CommandError::UnsupportedParameter(param)
                }
                // The codec only hands over complete lines, so running out of
                // input means the line itself is malformed.
                ProtoError::NeedsMoreData { .. }
                | ProtoError::ResponseTooLong
                | ProtoError::InvalidResponse { .. } => CommandError::Syntax("a complete command"),
            }),
        }
    }

    fn from_request(request: Request<std::borrow::Cow<'_, str>>) -> Result<Self, CommandError> {
        Ok(match request {
            Request::Ehlo { host } => Self::Ehlo(host.into_owned()),
            Request::Helo { host } => Self::Helo(host.into_owned()),
            Request::Mail { from } => Self::Mail {
                params: mail_params(&from)?,
                from: as_written(&from.address),
            },
            Request::Rcpt { to } => {
                if to.flags != 0 || to.orcpt.is_some() {
                    return Err(CommandError::UnsupportedParameter("NOTIFY/ORCPT".into()));
                }
                Self::Rcpt {
                    to: as_written(&to.address),
                }
            }
            Request::Data => Self::Data,
            // `bdat_arguments` sees every BDAT line first; should one slip
            // through, its chunk end is unknown.
            Request::Bdat { .. } => return Err(CommandError::BadChunkSize),
            Request::Rset => Self::Rset,
            Request::Noop { .. } => Self::Noop,
            Request::Vrfy { .. } => Self::Vrfy,
            Request::Help { .. } => Self::Help,
            Request::Quit => Self::Quit,
            Request::StartTls => Self::StartTls,
            other => Self::NotImplemented(other.name()),
        })
    }

    /// The verb, upper case, for logs and metrics.
    pub fn verb(&self) -> &'static str {
        match self {
            Self::Ehlo(_) => "EHLO",
            Self::Helo(_) => "HELO",
            Self::Mail { .. } => "MAIL",
            Self::Rcpt { .. } => "RCPT",
            Self::Data => "DATA",
            Self::Bdat { .. } => "BDAT",
            Self::Rset => "RSET",
            Self::Noop => "NOOP",
            Self::Vrfy => "VRFY",
            Self::Help => "HELP",
            Self::Quit => "QUIT",
            Self::StartTls => "STARTTLS",
            Self::Auth { .. } => "AUTH",
            Self::NotImplemented(verb) => verb,
        }
    }
}

/// The arguments of a `BDAT` line (verb matched case-insensitively), or
/// `None` for any other command. BDAT is parsed here rather than by
/// smtp-proto, whose size parser saturates and restarts on overflow, so an
/// oversized number would be read as a small chunk and the rest of the
/// line's octets taken for commands.
/// Like smtp-proto, leading blanks are skipped and blanks separate words.
fn bdat_arguments(line: &[u8]) -> Option<&[u8]> {
    verb_arguments(line, b"BDAT")
}

/// The arguments of a line whose verb (four letters, matched
/// case-insensitively) is `verb`, or `None` for any other command.
fn verb_arguments<'a>(line: &'a [u8], verb: &[u8; 4]) -> Option<&'a [u8]> {
    let line = without_line_end(line).trim_ascii_start();
    let (found, rest) = line.split_at_checked(4)?;
    let separated = rest.first().is_none_or(|&byte| is_blank(byte));
    (found.eq_ignore_ascii_case(verb) && separated).then_some(rest)
}

/// `AUTH SP sasl-mech [SP initial-response]` (RFC 4954 §4): the mechanism
/// 1 to 20 of `A-Z 0-9 - _` (RFC 4422 §3.1, any letter case), the initial
/// response base64 or `=`. Parsed here: smtp-proto turns unknown mechanisms
/// into a syntax error, where RFC 4954 wants `504`.
fn parse_auth(arguments: &[u8]) -> Result<Command, CommandError> {
    const EXPECTED: &str = "AUTH mechanism [initial-response]";
    let mut words = arguments
        .split(|&byte| is_blank(byte))
        .filter(|word| !word.is_empty());
    let mechanism = words.next().ok_or(CommandError::Syntax(EXPECTED))?;
    let valid_name = mechanism.len() <= 20
        && mechanism
            .iter()
            .all(|&byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_'));
    if !valid_name {
        return Err(CommandError::Syntax(EXPECTED));
    }
    let mechanism = if mechanism.eq_ignore_ascii_case(b"PLAIN") {
        Mechanism::Plain
    } else if mechanism.eq_ignore_ascii_case(b"LOGIN") {
        Mechanism::Login
    } else {
        Mechanism::Other
    };
    let initial = match words.next() {
        None => None,
        Some(response) if response.iter().all(|&byte| is_base64_char(byte)) => {
            // All ASCII, so this is the text as sent.
            Some(String::from_utf8_lossy(response).into_owned())
        }
        Some(_) => return Err(CommandError::Syntax(EXPECTED)),
    };
    if words.next().is_some() {
        return Err(CommandError::Syntax(EXPECTED));
    }
    Ok(Command::Auth { mechanism, initial })
}

/// The base64 alphabet of RFC 4648 §4 with its padding (`=` alone is
/// RFC 4954's empty initial response).
fn is_base64_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'/' | b'=')
}

/// Control bytes (other than the blank TAB) before the line's own CRLF.
fn has_control_bytes(line: &[u8]) -> bool {
    without_line_end(line)
        .iter()
        .any(|&byte| byte.is_ascii_control() && byte != b'\t')
}

/// The line without its LF or CRLF.
fn without_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn is_blank(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t')
}

/// `BDAT SP chunk-size [SP "LAST"]` (RFC 3030 §2), strictly: the size is
/// 1*DIGIT within `u64`.
fn parse_bdat(arguments: &[u8]) -> Result<Command, CommandError> {
    let mut words = arguments
        .split(|&byte| is_blank(byte))
        .filter(|word| !word.is_empty());
    let size = words.next().ok_or(CommandError::BadChunkSize)?;
    if size.is_empty() || !size.iter().all(u8::is_ascii_digit) {
        return Err(CommandError::BadChunkSize);
    }
    let size = size.iter().try_fold(0u64, |total, digit| {
        total.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    });
    let size = size.ok_or(CommandError::BadChunkSize)?;
    let last = match words.next() {
        None => false,
        Some(word) if word.eq_ignore_ascii_case(b"LAST") => true,
        Some(_) => return Err(CommandError::BadChunkSize),
    };
    if words.next().is_some() {
        return Err(CommandError::BadChunkSize);
    }
    Ok(Command::Bdat { size, last })
}

/// Keeps only the parameters we advertise; anything else `smtp-proto`
/// understood (DSN, `BY`, `MT-PRIORITY`, …) is refused as unsupported.
fn mail_params(from: &MailFrom<std::borrow::Cow<'_, str>>) -> Result<MailParams, CommandError> {
    const SUPPORTED: u64 = MAIL_BODY_7BIT | MAIL_BODY_8BITMIME | MAIL_SMTPUTF8;
    let extras = from.trans_id.is_some()
        || from.env_id.is_some()
        || from.solicit.is_some()
        || from.mtrk.is_some()
        || from.by != 0
        || from.hold_for != 0
        || from.hold_until != 0
        || from.mt_priority != 0;
    if from.flags & !SUPPORTED != 0 || extras {
        return Err(CommandError::UnsupportedParameter(
            "only SIZE, BODY, SMTPUTF8 and AUTH are supported".into(),
        ));
    }
    let body = if from.flags & MAIL_BODY_8BITMIME != 0 {
        Some(BodyType::EightBitMime)
    } else if from.flags & MAIL_BODY_7BIT != 0 {
        Some(BodyType::SevenBit)
    } else {
        None
    };
    Ok(MailParams {
        size: (from.size != 0).then_some(from.size as u64),
        body,
        smtputf8: from.flags & MAIL_SMTPUTF8 != 0,
        auth: from.auth.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Command, CommandError> {
        Command::parse(line.as_bytes())
    }

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(
            parse("ehlo a.example\r\n"),
            Ok(Command::Ehlo("a.example".into()))
        );
        assert_eq!(parse("Data\r\n"), Ok(Command::Data));
        assert_eq!(parse("qUiT\r\n"), Ok(Command::Quit));
    }

    #[test]
    fn mail_with_parameters() {
        assert_eq!(
            parse("MAIL FROM:<a@b.example> SIZE=1000 BODY=8BITMIME SMTPUTF8\r\n"),
            Ok(Command::Mail {
                from: "a@b.example".into(),
                params: MailParams {
                    size: Some(1000),
                    body: Some(BodyType::EightBitMime),
                    smtputf8: true,
                    auth: false,
                }
            })
        );
    }

    #[test]
    fn null_reverse_path() {
        assert_eq!(
            parse("MAIL FROM:<>\r\n"),
            Ok(Command::Mail {
                from: String::new(),
                params: MailParams::default()
            })
        );
    }

    #[test]
    fn unsupported_mail_parameter() {
        assert!(matches!(
            parse("MAIL FROM:<a@b.example> RET=FULL\r\n"),
            Err(CommandError::UnsupportedParameter(_))
        ));
        assert!(matches!(
            parse("MAIL FROM:<a@b.example> X-FOO=1\r\n"),
            Err(CommandError::UnsupportedParameter(_))
        ));
    }

    #[test]
    fn the_auth_mail_parameter_is_recognised() {
        for line in [
            "MAIL FROM:<a@b.example> AUTH=<>\r\n",
            "MAIL FROM:<a@b.example> AUTH=a+2Bb@c.example\r\n",
        ] {
            let Ok(Command::Mail { params, .. }) = parse(line) else {
                panic!("{line}");
            };
            assert!(params.auth, "{line}");
        }
    }

    #[test]
    fn rcpt_dsn_parameters_are_unsupported() {
        assert!(matches!(
            parse("RCPT TO:<a@b.example> NOTIFY=NEVER\r\n"),
            Err(CommandError::UnsupportedParameter(_))
        ));
        assert!(matches!(
            parse("RCPT TO:<a@b.example> ORCPT=rfc822;a@b.example\r\n"),
            Err(CommandError::UnsupportedParameter(_))
        ));
    }

    #[test]
    fn bad_syntax() {
        assert!(matches!(
            parse("MAIL TO:<a@b>\r\n"),
            Err(CommandError::Syntax(_))
        ));
        assert!(matches!(
            parse("RCPT TO:a@b\r\n"),
            Err(CommandError::Syntax(_))
        ));
        assert_eq!(parse("DATAX\r\n"), Err(CommandError::UnknownCommand));
        assert_eq!(parse("FOO bar\r\n"), Err(CommandError::UnknownCommand));
    }

    #[test]
    fn not_implemented_commands() {
        assert_eq!(parse("EXPN list\r\n"), Ok(Command::NotImplemented("EXPN")));
    }

    #[test]
    fn auth_lines() {
        assert_eq!(
            parse("AUTH PLAIN\r\n"),
            Ok(Command::Auth {
                mechanism: Mechanism::Plain,
                initial: None
            })
        );
        assert_eq!(
            parse("auth login dXNlcg==\r\n"),
            Ok(Command::Auth {
                mechanism: Mechanism::Login,
                initial: Some("dXNlcg==".into())
            })
        );
        assert_eq!(
            parse("AUTH PLAIN =\r\n"),
            Ok(Command::Auth {
                mechanism: Mechanism::Plain,
                initial: Some("=".into())
            })
        );
        assert_eq!(
            parse("AUTH CRAM-MD5\r\n"),
            Ok(Command::Auth {
                mechanism: Mechanism::Other,
                initial: None
            })
        );
        for bad in [
            "AUTH",
            "AUTH ",
            "AUTH PLAIN abc def",
            "AUTH PLAIN ab*c",
            "AUTH PL\u{e4}IN",
            "AUTH AAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(
                matches!(parse(&format!("{bad}\r\n")), Err(CommandError::Syntax(_))),
                "{bad}"
            );
        }
        assert_eq!(parse("AUTHX PLAIN\r\n"), Err(CommandError::UnknownCommand));
    }

    #[test]
    fn bdat_sizes_are_parsed_strictly() {
        let parse = |line: &str| Command::parse(format!("{line}\r\n").as_bytes());
        assert_eq!(
            parse("BDAT 0 LAST"),
            Ok(Command::Bdat {
                size: 0,
                last: true
            })
        );
        assert_eq!(
            parse("bdat 512 last"),
            Ok(Command::Bdat {
                size: 512,
                last: true
            })
        );
        assert_eq!(
            parse("BDAT 7"),
            Ok(Command::Bdat {
                size: 7,
                last: false
            })
        );
        assert_eq!(
            parse("BDAT 18446744073709551615"),
            Ok(Command::Bdat {
                size: u64::MAX,
                last: false
            })
        );
        for bad in [
            "BDAT",
            "BDAT ",
            "BDAT 18446744073709551616",
            "BDAT 99999999999999999999999 LAST",
            "BDAT -1",
            "BDAT +5",
            "BDAT 1x",
            "BDAT 0x10",
            "BDAT 10 LAST extra",
            "BDAT 10 FIRST",
            "BDAT LAST",
        ] {
            assert_eq!(parse(bad), Err(CommandError::BadChunkSize), "{bad}");
        }
        // Other verbs that start alike are not BDAT.
        assert_eq!(parse("BDATX 1"), Err(CommandError::UnknownCommand));
    }

    #[test]
    fn plus_tags_split_off() {
        assert_eq!(
            split_plus_tag("alerts+ticket-42@example.com"),
            Some(("alerts@example.com".to_owned(), "ticket-42"))
        );
        assert_eq!(
            split_plus_tag("a+b+c@x.example"),
            Some(("a@x.example".to_owned(), "b+c"))
        );
        assert_eq!(split_plus_tag("alerts@example.com"), None);
        assert_eq!(split_plus_tag("+x@example.com"), None);
        assert_eq!(split_plus_tag("\"a+b\"@example.com"), None);
    }

    #[test]
    fn mailboxes_fold_to_one_canonical_form() {
        assert_eq!(
            canonical_mailbox("Alerts@Example.COM"),
            "alerts@example.com"
        );
        assert_eq!(
            canonical_mailbox("\u{212A}elvin@example.com"),
            canonical_mailbox("kelvin@example.com")
        );
    }

    #[test]
    fn quoted_local_parts_stay_quoted() {
        let from = |line: &str| match Command::parse(format!("{line}\r\n").as_bytes()) {
            Ok(Command::Mail { from, .. }) => from,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            from("MAIL FROM:<john.doe@example.org>"),
            "john.doe@example.org"
        );
        assert_eq!(
            from("MAIL FROM:<\"john doe\"@example.org>"),
            "\"john doe\"@example.org"
        );
        assert_eq!(
            from("MAIL FROM:<\"a\\\"b\"@example.org>"),
            "\"a\\\"b\"@example.org"
        );
        assert_eq!(
            from("MAIL FROM:<\"a..b\"@example.org>"),
            "\"a..b\"@example.org"
        );
        assert_eq!(
            from("MAIL FROM:<müller@example.org> SMTPUTF8"),
            "müller@example.org"
        );
        assert_eq!(from("MAIL FROM:<>"), "");
        assert_eq!(
            from("MAIL FROM:<a@xn--mller-kva.example>"),
            "a@xn--mller-kva.example"
        );
        // U-labels (RFC 6531): 24 CJK characters are 72 octets as written
        // and fit in 63 as an A-label.
        let long_label = "\u{4f8b}".repeat(24);
        for domain in [
            "m\u{fc}ller.example",
            "\u{4f8b}\u{5b50}.\u{5e7f}\u{544a}",
            &long_label,
        ] {
            let line = format!("MAIL FROM:<a@{domain}> SMTPUTF8");
            assert_eq!(from(&line), format!("a@{domain}"));
        }
        // Found by the `command` fuzz target: a CR inside the domain was
        // dropped and the address taken without it; a quoted string was
        // taken for a domain; invalid UTF-8 was read lossily.
        for line in [
            &b"MAIL FROM:<\"a\"@\r.com>\r\n"[..],
            b"MAIL FROM:<a@exam\x00ple.com>\r\n",
            b"RCPT TO:<\"\x1b[31mx\"@example.com>\r\n",
            b"RCPT TO:<a@example.com\x7f>\r\n",
            b"MAIL FROM:<\"a\rb\"@c>\r\n",
            b"MAIL FROM:<a@\"b c\">\r\n",
            b"MAIL FROM:<a@\"\">\r\n",
            b"MAIL FROM:<\xff@\"\x00\">\r\n",
            b"RCPT TO:<a\xffb@c>\r\n",
            b"MAIL FROM:<\"\">\r\n",
            b"RCPT TO:<a@.com>\r\n",
            b"RCPT TO:<a@b..c>\r\n",
            b"RCPT TO:<\"\"@example.com>\r\n",
            "RCPT TO:<a\u{85}b@example.com>\r\n".as_bytes(),
            // A C1 control in a non-ASCII domain; U+FFFD written as such.
            "RCPT TO:<a@b\u{9a}\u{421}a>\r\n".as_bytes(),
            "RCPT TO:<a\u{fffd}@example.com>\r\n".as_bytes(),
            "RCPT TO:<a@exa\u{fffd}mple.com>\r\n".as_bytes(),
            "RCPT TO:<a@exa\u{a0}mple.com>\r\n".as_bytes(),
            "RCPT TO:<a@b\u{fc}.>\r\n".as_bytes(),
            "RCPT TO:<a@b\u{fc}!.example>\r\n".as_bytes(),
        ] {
            assert_eq!(
                Command::parse(line),
                Err(CommandError::InvalidAddress),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(
            Command::parse(b"RCPT TO:<\"x y\"@example.com>\r\n"),
            Ok(Command::Rcpt {
                to: "\"x y\"@example.com".into()
            })
        );
    }
}
