//! The MIME walk: iterative, bounded in depth, finds the first `text/plain`
//! and `text/html` leaves; every other leaf is an attachment.

use mailparse::{DispositionType, MailHeader, ParsedContentType};

use super::attachment::{Attachment, attachment};
use super::budget::ParseBudget;
use super::decode::decode_text;
use super::headers::{first_value, next_line, parse_headers_lenient};
use super::{MAX_ATTACHMENTS, MAX_MULTIPART_DEPTH};

/// A part still to visit: its raw bytes (headers and body).
pub(super) struct Pending<'a> {
    raw: &'a [u8],
    depth: usize,
    in_digest: bool,
}

#[derive(Default)]
pub(super) struct Bodies {
    pub(super) text: Option<String>,
    pub(super) html: Option<String>,
    pub(super) attachments: Vec<Attachment>,
    pub(super) too_many_attachments: bool,
}

/// Depth-first, pre-order walk with an explicit stack: the first `text/plain`
/// and `text/html` leaves in message order are the bodies, every other leaf
/// an attachment, in message order. Each multipart level scans its
/// body once, so the work is at most [`MAX_MULTIPART_DEPTH`] passes over
/// the message; all of it is charged to `budget`, and the walk stops where
/// the budget is spent.
pub(super) fn find_bodies(
    top_headers: &[MailHeader<'_>],
    top_body: &[u8],
    budget: &ParseBudget,
) -> Bodies {
    let mut found = Bodies::default();
    let mut pending = Vec::new();
    let top = Pending {
        raw: top_body,
        depth: 0,
        in_digest: false,
    };
    visit(top_headers, &top, true, &mut pending, &mut found, budget);
    while let Some(part) = pending.pop() {
        if budget.is_spent() {
            break;
        }
        let (headers, body_start) = parse_headers_lenient(part.raw, budget);
        let part = Pending {
            raw: &part.raw[body_start..],
            ..part
        };
        visit(&headers, &part, false, &mut pending, &mut found, budget);
    }
    found
}

/// Handles one part whose headers are parsed and whose `raw` is its body:
/// a multipart queues its children (first child on top), a text leaf may
/// become a body, any other leaf is an attachment.
pub(super) fn visit<'a>(
    headers: &[MailHeader<'_>],
    part: &Pending<'a>,
    top: bool,
    pending: &mut Vec<Pending<'a>>,
    found: &mut Bodies,
    budget: &ParseBudget,
) {
    let ctype = content_type(headers, part.in_digest, budget);
    if ctype.mimetype.starts_with("multipart/") {
        if part.depth >= MAX_MULTIPART_DEPTH {
            tracing::debug!(
                depth = part.depth,
                "multipart nesting limit reached, parts skipped"
            );
            return;
        }
        if !budget.charge(part.raw.len()) {
            return;
        }
        let Some(delimiter) = delimiter(&ctype, part.raw) else {
            tracing::debug!(mimetype = %ctype.mimetype, "multipart without a usable boundary");
            return;
        };
        let in_digest = ctype.mimetype == "multipart/digest";
        let first = pending.len();
        split_parts(part.raw, &delimiter, |raw| {
            pending.push(Pending {
                raw,
                depth: part.depth + 1,
                in_digest,
            });
        });
        pending[first..].reverse();
        return;
    }
    if top && part.raw.iter().all(u8::is_ascii_whitespace) && !ctype.mimetype.starts_with("text/") {
        // A message without a body has no attachment.
        return;
    }
    if !budget.charge(part.raw.len()) {
        return;
    }
    let slot = match ctype.mimetype.as_str() {
        "text/plain" => Some(&mut found.text),
        "text/html" => Some(&mut found.html),
        _ => None,
    };
    match slot {
        Some(slot) if slot.is_none() && !is_attachment(headers, &ctype, top, budget) => {
            *slot = Some(decode_text(headers, part.raw, &ctype, budget));
        }
        _ if found.attachments.len() >= MAX_ATTACHMENTS => found.too_many_attachments = true,
        _ => found
            .attachments
            .push(attachment(headers, &ctype, part.raw, budget)),
    }
}

/// Content-Type with RFC 2045 defaults: `text/plain` when absent or
/// syntactically invalid, `message/rfc822` inside `multipart/digest`.
pub(super) fn content_type(
    headers: &[MailHeader<'_>],
    in_digest: bool,
    budget: &ParseBudget,
) -> ParsedContentType {
    let default_type = if in_digest {
        "message/rfc822"
    } else {
        "text/plain"
    };
    match first_value(headers, "Content-Type", budget) {
        Some(value) => {
            let mut ctype = mailparse::parse_content_type(&value);
            if !ctype.mimetype.contains('/') {
                default_type.clone_into(&mut ctype.mimetype);
            }
            ctype
        }
        None => ParsedContentType {
            mimetype: default_type.to_owned(),
            ..ParsedContentType::default()
        },
    }
}

pub(super) fn is_attachment(
    headers: &[MailHeader<'_>],
    ctype: &ParsedContentType,
    top: bool,
    budget: &ParseBudget,
) -> bool {
    let named = |params: &std::collections::BTreeMap<String, String>, key: &str| {
        params.keys().any(|k| k.starts_with(key))
    };
    if let Some(value) = first_value(headers, "Content-Disposition", budget) {
        let disposition = mailparse::parse_content_disposition(&value);
        if disposition.disposition == DispositionType::Attachment
            || (!top && named(&disposition.params, "filename"))
        {
            return true;
        }
    }
    !top && named(&ctype.params, "name")
}

/// `--boundary` from the Content-Type, or guessed from the first line that
/// starts with `--` when the parameter is missing (broken generators).
pub(super) fn delimiter(ctype: &ParsedContentType, body: &[u8]) -> Option<Vec<u8>> {
    let boundary: &[u8] = match ctype.params.get("boundary") {
        Some(boundary) if !boundary.is_empty() => boundary.as_bytes(),
        _ => {
            let mut ix = 0;
            loop {
                let end = next_line(body, ix).unwrap_or(body.len());
                let line = body[ix..end].trim_ascii_end();
                if let Some(guess) = line.strip_prefix(b"--") {
                    let guess = guess.strip_suffix(b"--").unwrap_or(guess);
                    if !guess.is_empty() {
                        break guess;
                    }
                }
                if end >= body.len() {
                    return None;
                }
                ix = end;
            }
        }
    };
    let mut delimiter = Vec::with_capacity(boundary.len() + 2);
    delimiter.extend_from_slice(b"--");
    delimiter.extend_from_slice(boundary);
    Some(delimiter)
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Delimiter {
    Open,
    Close,
}

/// Whether a delimiter line starts at `pos` (RFC 2046 §5.1.1): the
/// delimiter, then `--` (close) or only whitespace up to the line end. This
/// is stricter than a prefix match, so `--b1` never matches `--b10`.
pub(super) fn delimiter_at(body: &[u8], pos: usize, delimiter: &[u8]) -> Option<Delimiter> {
    let after = body.get(pos..)?.strip_prefix(delimiter)?;
    if after.starts_with(b"--") {
        return Some(Delimiter::Close);
    }
    match after.iter().find(|&&b| b != b' ' && b != b'\t') {
        None | Some(b'\r' | b'\n') => Some(Delimiter::Open),
        Some(_) => None,
    }
}

/// Calls `emit` with each body part between delimiter lines. The line break
/// before a delimiter belongs to the delimiter; a part whose close delimiter
/// never comes runs to the end of the data.
pub(super) fn split_parts<'a>(body: &'a [u8], delimiter: &[u8], mut emit: impl FnMut(&'a [u8])) {
    let mut part_start = None;
    let mut pos = 0;
    loop {
        if let Some(kind) = delimiter_at(body, pos, delimiter) {
            if let Some(start) = part_start {
                emit_part(
                    &body[start..strip_line_break_before(body, start, pos)],
                    &mut emit,
                );
            }
            if kind == Delimiter::Close {
                return;
            }
            part_start = next_line(body, pos);
        }
        match next_line(body, pos) {
            Some(next) if next < body.len() => pos = next,
            _ => break,
        }
    }
    if let Some(start) = part_start {
        emit_part(&body[start..], &mut emit);
    }
}

/// Parts holding only whitespace carry nothing and are dropped, so that an
/// empty part (e.g. two delimiters in a row) never shadows a real body.
pub(super) fn emit_part<'a>(part: &'a [u8], emit: &mut impl FnMut(&'a [u8])) {
    if !part.iter().all(u8::is_ascii_whitespace) {
        emit(part);
    }
}

pub(super) fn strip_line_break_before(body: &[u8], start: usize, mut end: usize) -> usize {
    if end > start && body[end - 1] == b'\n' {
        end -= 1;
        if end > start && body[end - 1] == b'\r' {
            end -= 1;
        }
    }
    end
}
