//! Top-level headers: lenient header parsing, the fields read from them
//! (subject, display name, Message-ID) and the forwarded prefixes.

use mailparse::{MailAddr, MailHeader};

use super::ParsedMail;

/// Drops a leading mbox `From ` envelope line, which is not a header field.
pub(super) fn skip_mbox_from_line(raw: &[u8]) -> &[u8] {
    if raw.starts_with(b"From ") {
        next_line(raw, 0).map_or(&[][..], |ix| &raw[ix..])
    } else {
        raw
    }
}

/// Parses a header block, tolerating what `mailparse::parse_headers` rejects
/// (a lone CR or a continuation line where a field should start: such lines
/// are skipped). Returns the headers and where the body starts.
///
/// Input whose first line is text rather than a header field (no `name:`)
/// is taken to have no headers: all of it is body.
pub(super) fn parse_headers_lenient(raw: &[u8]) -> (Vec<MailHeader<'_>>, usize) {
    let mut headers = Vec::new();
    let first_line = &raw[..next_line(raw, 0).unwrap_or(raw.len())];
    if first_line.first().is_some_and(|b| !b.is_ascii_whitespace())
        && !looks_like_header_field(first_line)
    {
        return (headers, 0);
    }
    let mut ix = 0;
    while ix < raw.len() {
        match raw[ix] {
            b'\n' => return (headers, ix + 1),
            b'\r' if raw.get(ix + 1) == Some(&b'\n') => return (headers, ix + 2),
            b'\r' | b' ' | b'\t' => {
                ix = next_line(raw, ix).unwrap_or(raw.len());
                continue;
            }
            _ => {}
        }
        match mailparse::parse_header(&raw[ix..]) {
            Ok((header, len)) if len > 0 => {
                headers.push(header);
                ix += len;
            }
            _ => ix = next_line(raw, ix).unwrap_or(raw.len()),
        }
    }
    (headers, raw.len())
}

/// `name:` where name is printable ASCII without spaces (RFC 5322 §2.2),
/// tolerating whitespace before the colon.
pub(super) fn looks_like_header_field(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    let name = line[..colon].trim_ascii_end();
    !name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b))
}

/// Index of the first byte after the next `\n` at or after `from`.
pub(super) fn next_line(data: &[u8], from: usize) -> Option<usize> {
    data.get(from..)?
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| from + i + 1)
}

pub(super) fn read_top_headers(
    headers: &[MailHeader<'_>],
    prefixes: &[String],
    mail: &mut ParsedMail,
) {
    let mut subject = None;
    let mut from = None;
    let mut message_id = None;
    for header in headers {
        let key = header.get_key_ref();
        let name = key.trim();
        if name.eq_ignore_ascii_case("Subject") {
            subject = subject.or(Some(header));
        } else if name.eq_ignore_ascii_case("From") {
            from = from.or(Some(header));
        } else if name.eq_ignore_ascii_case("Message-ID") {
            message_id = message_id.or(Some(header));
        }
        if has_prefix(name, prefixes) {
            mail.headers.push((name.to_owned(), header_value(header)));
        }
    }
    mail.subject = subject.map(header_value).unwrap_or_default();
    mail.sender_name = from.and_then(display_name);
    mail.message_id = message_id.map(header_value).filter(|id| !id.is_empty());
}

pub(super) fn has_prefix(name: &str, prefixes: &[String]) -> bool {
    prefixes.iter().any(|prefix| {
        !prefix.is_empty()
            && name
                .as_bytes()
                .get(..prefix.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
    })
}

/// Unfolded, RFC 2047-decoded, trimmed value. mailparse decodes raw 8-bit
/// bytes as UTF-8 (RFC 6532) and only falls back to Latin-1 when they are
/// not valid UTF-8.
pub(super) fn header_value(header: &MailHeader<'_>) -> String {
    trimmed(header.get_value())
}

pub(super) fn trimmed(value: String) -> String {
    let trimmed = value.trim();
    if trimmed.len() == value.len() {
        value
    } else {
        trimmed.to_owned()
    }
}

/// Display name of the first mailbox in `From:`. When the field does not
/// parse as an address list, whatever precedes `<` is taken as the name.
pub(super) fn display_name(from: &MailHeader<'_>) -> Option<String> {
    let name = match mailparse::addrparse_header(from) {
        Ok(list) => list.iter().find_map(|addr| match addr {
            MailAddr::Single(single) => Some(single.display_name.clone()),
            MailAddr::Group(_) => None,
        })?,
        Err(_) => {
            let value = from.get_value();
            value.find('<').map(|lt| value[..lt].to_owned())
        }
    }?;
    let name = name.trim();
    let name = name
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(name)
        .trim();
    (!name.is_empty()).then(|| name.to_owned())
}
