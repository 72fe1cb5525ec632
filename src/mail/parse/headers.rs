//! Top-level headers: lenient header parsing, the fields read from them
//! (subject, display name, Message-ID) and the forwarded prefixes.

use mailparse::MailHeader;

use super::ParsedMail;
use super::address::parse_address_list;
use super::budget::ParseBudget;
use super::date::rfc3339_utc;
use super::words::decode_value;

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
/// is taken to have no headers: all of it is body. Each octet is scanned
/// once, and charged to `budget`; once it is spent the block ends there.
pub(super) fn parse_headers_lenient<'a>(
    raw: &'a [u8],
    budget: &ParseBudget,
) -> (Vec<MailHeader<'a>>, usize) {
    let mut headers = Vec::new();
    let first_line = &raw[..next_line(raw, 0).unwrap_or(raw.len())];
    if first_line.first().is_some_and(|b| !b.is_ascii_whitespace())
        && !looks_like_header_field(first_line)
    {
        return (headers, 0);
    }
    let mut ix = 0;
    while ix < raw.len() {
        let line_start = ix;
        match raw[ix] {
            b'\n' => return (headers, ix + 1),
            b'\r' if raw.get(ix + 1) == Some(&b'\n') => return (headers, ix + 2),
            b'\r' | b' ' | b'\t' => ix = next_line(raw, ix).unwrap_or(raw.len()),
            // mailparse's header parser is linear: one pass over the field,
            // continuation lines included.
            _ => match mailparse::parse_header(&raw[ix..]) {
                Ok((header, len)) if len > 0 => {
                    headers.push(header);
                    ix += len;
                }
                _ => ix = next_line(raw, ix).unwrap_or(raw.len()),
            },
        }
        if !budget.charge(ix - line_start) {
            return (headers, raw.len());
        }
    }
    (headers, raw.len())
}

/// Every top-level header field of `raw`, in order, as (name, unfolded
/// and decoded value), and the length of the header section (where the
/// body starts). Linear in the header section, like the parse itself.
pub fn top_header_fields(raw: &[u8]) -> (Vec<(String, String)>, usize) {
    let budget = ParseBudget::for_size(raw.len());
    let (headers, body_start) = parse_headers_lenient(raw, &budget);
    let fields = headers
        .iter()
        .map(|header| {
            (
                header.get_key_ref().trim().to_owned(),
                header_value(header, &budget),
            )
        })
        .collect();
    (fields, body_start)
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
    all_headers: bool,
    mail: &mut ParsedMail,
    budget: &ParseBudget,
) {
    /// The fields read from the top-level headers; the first of each name counts.
    const FIELDS: [&str; 9] = [
        "Subject",
        "From",
        "Message-ID",
        "To",
        "Cc",
        "Reply-To",
        "Date",
        "In-Reply-To",
        "References",
    ];
    let mut first: [Option<&MailHeader<'_>>; FIELDS.len()] = [None; FIELDS.len()];
    for header in headers {
        let key = header.get_key_ref();
        let name = key.trim();
        if let Some(slot) = FIELDS
            .iter()
            .position(|field| name.eq_ignore_ascii_case(field))
        {
            first[slot] = first[slot].or(Some(header));
        }
        let prefixed = has_prefix(name, prefixes);
        if prefixed || all_headers {
            let value = header_value(header, budget);
            if all_headers {
                mail.all_headers.push((name.to_owned(), value.clone()));
            }
            if prefixed {
                mail.headers.push((name.to_owned(), value));
            }
        }
    }
    let [
        subject,
        from,
        message_id,
        to,
        cc,
        reply_to,
        date,
        in_reply_to,
        references,
    ] = first;
    let value = |header| header_value(header, budget);
    let addresses = |header: Option<&MailHeader<'_>>| {
        header.map_or_else(Vec::new, |header| {
            parse_address_list(header.get_value_raw(), budget)
        })
    };
    mail.subject = subject.map(value).unwrap_or_default();
    mail.from = addresses(from);
    mail.sender_name = mail.from.first().and_then(|mailbox| mailbox.name.clone());
    mail.message_id = message_id.map(value).filter(|id| !id.is_empty());
    mail.to = addresses(to);
    mail.cc = addresses(cc);
    mail.reply_to = addresses(reply_to);
    mail.date = date.map(value).as_deref().and_then(rfc3339_utc);
    mail.in_reply_to = in_reply_to
        .map(value)
        .and_then(|ids| message_ids(&ids).next().map(str::to_owned));
    mail.references = references.map_or_else(Vec::new, |header| {
        message_ids(&value(header)).map(str::to_owned).collect()
    });
}

/// The `<…>` message ids in a field value, in order.
fn message_ids(value: &str) -> impl Iterator<Item = &str> {
    value.split_inclusive('>').filter_map(|piece| {
        let start = piece.find('<')?;
        let id = &piece[start..];
        (id.len() > 2 && id.ends_with('>')).then_some(id)
    })
}

/// Decoded value of the first field named `name` (ASCII case-insensitive).
pub(super) fn first_value(
    headers: &[MailHeader<'_>],
    name: &str,
    budget: &ParseBudget,
) -> Option<String> {
    headers
        .iter()
        .find(|header| header.get_key_ref().trim().eq_ignore_ascii_case(name))
        .map(|header| header_value(header, budget))
}

/// Whether header `name` starts with one of `prefixes` (ASCII case-insensitive;
/// empty prefixes match nothing).
pub fn has_prefix(name: &str, prefixes: &[String]) -> bool {
    prefixes.iter().any(|prefix| {
        !prefix.is_empty()
            && name
                .as_bytes()
                .get(..prefix.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
    })
}

/// Unfolded, RFC 2047-decoded, trimmed value. Raw 8-bit octets are read
/// as UTF-8 (RFC 6532), as Latin-1 only when they are not valid UTF-8.
/// Never mailparse's `get_value`: it is quadratic (see `words`).
pub(super) fn header_value(header: &MailHeader<'_>, budget: &ParseBudget) -> String {
    trimmed(decode_value(header.get_value_raw(), budget))
}

pub(super) fn trimmed(value: String) -> String {
    let trimmed = value.trim();
    if trimmed.len() == value.len() {
        value
    } else {
        trimmed.to_owned()
    }
}
