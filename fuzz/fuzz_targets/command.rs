//! `Command::parse` on arbitrary lines.
//!
//! Input: one command line; it is parsed as given and, as the codec hands
//! it over, terminated by CRLF unless it ends with LF.
//!
//! Checks: no panic; a BDAT line never reaches smtp-proto's BDAT parser;
//! and a parsed `MAIL`, `RCPT` or `BDAT` written back in its canonical form
//! parses to the same command (so an address keeps its meaning, quoted
//! local parts included, when it is handed on).
//!
//! Found here: smtp-proto accepts addresses that are not RFC 5321
//! mailboxes: a quoted domain (`a@"b c"` → `a@b c`, `a@""` → `a@`),
//! control octets in a quoted local part, a CR in or after a quoted local
//! part dropped (`"a\rb"@c` → `ab@c`, `"x"@\r.com` → `x@.com`), invalid
//! UTF-8 replaced by U+FFFD. `Command::parse` now refuses them, and an
//! ill-formed address that gets through fails this target.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mail_laser::smtp::command::{BodyType, Command, CommandError};

/// Whether `Command::parse` only accepts well-formed addresses (see the
/// known finding above); then an accepted ill-formed address fails.
const ADDRESSES_VALIDATED: bool = true;

fuzz_target!(|data: &[u8]| {
    let _ = Command::parse(data);
    let mut line = data.to_vec();
    if !line.ends_with(b"\n") {
        line.extend_from_slice(b"\r\n");
    }
    let parsed = Command::parse(&line);
    if is_bdat(&line) {
        assert!(
            matches!(
                parsed,
                Ok(Command::Bdat { .. }) | Err(CommandError::BadChunkSize)
            ),
            "a BDAT line parsed as {parsed:?}"
        );
    }
    let Ok(command) = parsed else {
        return;
    };
    assert!(!command.verb().is_empty());
    if let Command::Mail { from: address, .. } | Command::Rcpt { to: address } = &command
        && !well_formed(address)
    {
        if ADDRESSES_VALIDATED {
            panic!("ill-formed address {address:?} accepted");
        }
        return;
    }
    let Some(rendered) = render(&command) else {
        return;
    };
    assert_eq!(
        Command::parse(rendered.as_bytes()),
        Ok(command),
        "{rendered:?} (rendered from {:?}) parses differently",
        String::from_utf8_lossy(&line)
    );
});

/// Whether `line` is a BDAT command: after leading blanks, the verb (any
/// case) then a blank or the end of the line.
fn is_bdat(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.trim_ascii_start();
    line.get(..4)
        .is_some_and(|verb| verb.eq_ignore_ascii_case(b"BDAT"))
        && line
            .get(4)
            .is_none_or(|&byte| byte == b' ' || byte == b'\t')
}

/// An address as `Command` should hand it on: the null path, or a local
/// part without control characters or replaced octets and a domain of
/// dot-separated labels of letters, digits, hyphens and underscores
/// (non-ASCII letters for SMTPUTF8).
fn well_formed(address: &str) -> bool {
    if address.is_empty() {
        return true;
    }
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    let clean = |c: char| !c.is_control() && c != char::REPLACEMENT_CHARACTER;
    let domain_char =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') || !c.is_ascii();
    !local.is_empty()
        && !domain.is_empty()
        && local.chars().all(clean)
        && domain.chars().all(|c| clean(c) && domain_char(c))
        && domain.split('.').all(|label| !label.is_empty())
}

/// The canonical line of a command that carries values, `None` for the
/// others.
fn render(command: &Command) -> Option<String> {
    Some(match command {
        Command::Mail { from, params } => {
            let mut line = format!("MAIL FROM:<{from}>");
            if let Some(size) = params.size {
                line.push_str(&format!(" SIZE={size}"));
            }
            match params.body {
                Some(BodyType::SevenBit) => line.push_str(" BODY=7BIT"),
                Some(BodyType::EightBitMime) => line.push_str(" BODY=8BITMIME"),
                None => {}
            }
            if params.smtputf8 {
                line.push_str(" SMTPUTF8");
            }
            // Only whether AUTH= was given is kept (RFC 4954 §5).
            if params.auth {
                line.push_str(" AUTH=<>");
            }
            line + "\r\n"
        }
        Command::Rcpt { to } => format!("RCPT TO:<{to}>\r\n"),
        Command::Bdat { size, last } => {
            format!("BDAT {size}{}\r\n", if *last { " LAST" } else { "" })
        }
        _ => return None,
    })
}
