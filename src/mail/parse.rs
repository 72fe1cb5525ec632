//! Raw RFC 5322 bytes → [`ParsedMail`], the message-derived fields of the
//! webhook payload (SPEC §3).
//!
//! mailparse supplies the primitives (header parser, RFC 2047 and address
//! parsing, Content-Type parsing, transfer and charset decoding), but the MIME
//! tree is walked here rather than by `mailparse::parse_mail`, because that
//! function recurses on the stack and gives up on the *whole* message beyond
//! 100 nested multiparts. The walk below is iterative, expands at most
//! [`MAX_MULTIPART_DEPTH`] levels, parses each part's headers exactly once and
//! stops as soon as both bodies are found, so a hostile message costs bounded
//! stack and still yields its top-level fields.
//!
//! Rules, in the order they are applied:
//! - top-level headers give `subject`, `sender_name`, `message_id` and the
//!   forwarded `headers` (first occurrence of Subject/From/Message-ID wins);
//! - the first `text/plain` leaf is `body`, the first `text/html` leaf is
//!   `html_body` (depth-first, in message order);
//! - a leaf is an attachment, never a body, when its `Content-Disposition` is
//!   `attachment`, or when inside a multipart it carries a file name
//!   (`Content-Disposition` `filename` or `Content-Type` `name`); any other
//!   type than `text/plain`/`text/html` is never a body either;
//! - HTML is rendered to text (html2text) only when no usable `text/plain`
//!   exists: none at all, or one that is blank.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use mailparse::body::Body;
use mailparse::{DispositionType, MailAddr, MailHeader, MailHeaderMap, ParsedContentType};

/// How many multipart levels the walk expands. Real mail nests 3–5 levels
/// (mixed → related → alternative); anything deeper is abuse, and parts
/// beyond this depth are skipped instead of failing the whole message.
pub const MAX_MULTIPART_DEPTH: usize = 64;

/// Render width for html2text: wide enough that paragraphs are never hard
/// wrapped (consumers re-flow text themselves).
const HTML_RENDER_WIDTH: usize = 10_000;

/// Wall-clock budget for feeding HTML to html2text. html5ever's tree builder
/// is quadratic in element nesting (100,000 nested `<div>` take ~26 s), so
/// input stops being fed once this is spent and what was parsed so far is
/// rendered. A legitimate 500 KB newsletter parses in well under this.
pub const HTML_RENDER_BUDGET: Duration = Duration::from_millis(200);

/// The message-derived fields of the webhook payload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedMail {
    /// Decoded `Subject:` (RFC 2047, unfolded, trimmed); `""` when absent.
    pub subject: String,
    /// First `text/plain` part decoded to UTF-8; for HTML-only mail a text
    /// rendering of the HTML; `""` if neither exists.
    pub body: String,
    /// First `text/html` part decoded to UTF-8.
    pub html_body: Option<String>,
    /// Decoded display name of `From:`; `None` when absent or empty.
    pub sender_name: Option<String>,
    /// Top-level headers whose names start (ASCII case-insensitively) with one
    /// of the configured prefixes: names as sent, values decoded and trimmed,
    /// in message order, repeats included.
    pub headers: Vec<(String, String)>,
    /// `Message-ID:` value trimmed, angle brackets kept.
    pub message_id: Option<String>,
}

/// Parses one message. Best effort: never panics and never fails, whatever
/// the input bytes; what cannot be decoded is left at its default.
///
/// `header_prefixes` selects the forwarded headers; empty prefixes are
/// ignored (a stray comma in the configuration must not forward every
/// header).
///
/// CPU-bound and input-dependent (HTML rendering may take up to
/// [`HTML_RENDER_BUDGET`]): call it off the async workers. It opens no span
/// of its own; the caller's `mail.parse` span covers it.
pub fn parse(raw: &[u8], header_prefixes: &[String]) -> ParsedMail {
    parse_unrendered(raw, header_prefixes).render()
}

/// [`parse`] without its one expensive step, the HTML rendering: the work
/// left is linear in the size of the message (headers, MIME walk, transfer
/// and charset decoding), so for a small message it is cheap enough to run
/// on an async worker. Call [`Unrendered::render`] (off the async workers
/// when [`Unrendered::needs_rendering`]) to finish.
pub fn parse_unrendered(raw: &[u8], header_prefixes: &[String]) -> Unrendered {
    let raw = skip_mbox_from_line(raw);
    let (headers, body_start) = parse_headers_lenient(raw);
    let mut mail = ParsedMail::default();
    read_top_headers(&headers, header_prefixes, &mut mail);

    let found = find_bodies(&headers, &raw[body_start..]);
    let render = match (&found.text, &found.html) {
        (Some(text), Some(_)) => text.trim().is_empty(),
        (None, Some(_)) => true,
        (_, None) => false,
    };
    if !render {
        mail.body = found.text.unwrap_or_default();
    }
    mail.html_body = found.html;
    Unrendered { mail, render }
}

/// A parsed message whose `body` may still have to be rendered from its HTML.
#[derive(Debug)]
pub struct Unrendered {
    mail: ParsedMail,
    render: bool,
}

impl Unrendered {
    /// Whether [`Unrendered::render`] runs html2text (up to
    /// [`HTML_RENDER_BUDGET`] of CPU) rather than returning at once.
    pub fn needs_rendering(&self) -> bool {
        self.render
    }

    /// The finished [`ParsedMail`]: for HTML-only mail (or a blank text
    /// part) `body` is the rendering of `html_body`.
    pub fn render(mut self) -> ParsedMail {
        if self.render {
            if let Some(html) = &self.mail.html_body {
                self.mail.body = render_html(html, HTML_RENDER_BUDGET);
            }
        }
        self.mail
    }
}

// === headers ===

/// Drops a leading mbox `From ` envelope line, which is not a header field.
fn skip_mbox_from_line(raw: &[u8]) -> &[u8] {
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
fn parse_headers_lenient(raw: &[u8]) -> (Vec<MailHeader<'_>>, usize) {
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
fn looks_like_header_field(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    let name = line[..colon].trim_ascii_end();
    !name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b))
}

/// Index of the first byte after the next `\n` at or after `from`.
fn next_line(data: &[u8], from: usize) -> Option<usize> {
    data.get(from..)?
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| from + i + 1)
}

fn read_top_headers(headers: &[MailHeader<'_>], prefixes: &[String], mail: &mut ParsedMail) {
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

fn has_prefix(name: &str, prefixes: &[String]) -> bool {
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
fn header_value(header: &MailHeader<'_>) -> String {
    trimmed(header.get_value())
}

fn trimmed(value: String) -> String {
    let trimmed = value.trim();
    if trimmed.len() == value.len() {
        value
    } else {
        trimmed.to_owned()
    }
}

/// Display name of the first mailbox in `From:`. When the field does not
/// parse as an address list, whatever precedes `<` is taken as the name.
fn display_name(from: &MailHeader<'_>) -> Option<String> {
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

// === MIME walk ===

/// A part still to visit: its raw bytes (headers and body).
struct Pending<'a> {
    raw: &'a [u8],
    depth: usize,
    in_digest: bool,
}

#[derive(Default)]
struct Bodies {
    text: Option<String>,
    html: Option<String>,
}

/// Depth-first, pre-order walk with an explicit stack: the first `text/plain`
/// and `text/html` leaves in message order.
fn find_bodies(top_headers: &[MailHeader<'_>], top_body: &[u8]) -> Bodies {
    let mut found = Bodies::default();
    let mut pending = Vec::new();
    let top = Pending {
        raw: top_body,
        depth: 0,
        in_digest: false,
    };
    visit(top_headers, &top, true, &mut pending, &mut found);
    while let Some(part) = pending.pop() {
        if found.text.is_some() && found.html.is_some() {
            break;
        }
        let (headers, body_start) = parse_headers_lenient(part.raw);
        let part = Pending {
            raw: &part.raw[body_start..],
            ..part
        };
        visit(&headers, &part, false, &mut pending, &mut found);
    }
    found
}

/// Handles one part whose headers are parsed and whose `raw` is its body:
/// a multipart queues its children (first child on top), a text leaf may
/// become a body, anything else is dropped.
fn visit<'a>(
    headers: &[MailHeader<'_>],
    part: &Pending<'a>,
    top: bool,
    pending: &mut Vec<Pending<'a>>,
    found: &mut Bodies,
) {
    let ctype = content_type(headers, part.in_digest);
    if ctype.mimetype.starts_with("multipart/") {
        if part.depth >= MAX_MULTIPART_DEPTH {
            tracing::debug!(
                depth = part.depth,
                "multipart nesting limit reached, parts skipped"
            );
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
    let slot = match ctype.mimetype.as_str() {
        "text/plain" => &mut found.text,
        "text/html" => &mut found.html,
        _ => return,
    };
    if slot.is_none() && !is_attachment(headers, &ctype, top) {
        *slot = Some(decode_text(headers, part.raw, &ctype));
    }
}

/// Content-Type with RFC 2045 defaults: `text/plain` when absent or
/// syntactically invalid, `message/rfc822` inside `multipart/digest`.
fn content_type(headers: &[MailHeader<'_>], in_digest: bool) -> ParsedContentType {
    let default_type = if in_digest {
        "message/rfc822"
    } else {
        "text/plain"
    };
    match headers.get_first_value("Content-Type") {
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

fn is_attachment(headers: &[MailHeader<'_>], ctype: &ParsedContentType, top: bool) -> bool {
    let named = |params: &std::collections::BTreeMap<String, String>, key: &str| {
        params.keys().any(|k| k.starts_with(key))
    };
    if let Some(value) = headers.get_first_value("Content-Disposition") {
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
fn delimiter(ctype: &ParsedContentType, body: &[u8]) -> Option<Vec<u8>> {
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
enum Delimiter {
    Open,
    Close,
}

/// Whether a delimiter line starts at `pos` (RFC 2046 §5.1.1): the
/// delimiter, then `--` (close) or only whitespace up to the line end. This
/// is stricter than a prefix match, so `--b1` never matches `--b10`.
fn delimiter_at(body: &[u8], pos: usize, delimiter: &[u8]) -> Option<Delimiter> {
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
fn split_parts<'a>(body: &'a [u8], delimiter: &[u8], mut emit: impl FnMut(&'a [u8])) {
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
fn emit_part<'a>(part: &'a [u8], emit: &mut impl FnMut(&'a [u8])) {
    if !part.iter().all(u8::is_ascii_whitespace) {
        emit(part);
    }
}

fn strip_line_break_before(body: &[u8], start: usize, mut end: usize) -> usize {
    if end > start && body[end - 1] == b'\n' {
        end -= 1;
        if end > start && body[end - 1] == b'\r' {
            end -= 1;
        }
    }
    end
}

// === decoding ===

#[derive(Clone, Copy, PartialEq, Eq)]
enum Charset {
    Utf8,
    /// `us-ascii` declared or no charset at all: valid UTF-8 is taken as
    /// UTF-8 (8BITMIME senders often omit the label), else mailparse's
    /// decoding (windows-1252, as browsers do).
    AsciiOrUndeclared,
    Other,
}

impl Charset {
    fn of(ctype: &ParsedContentType) -> Self {
        let Some(label) = ctype.params.get("charset") else {
            return Self::AsciiOrUndeclared;
        };
        let label = label.trim();
        if label.eq_ignore_ascii_case("utf-8") || label.eq_ignore_ascii_case("utf8") {
            Self::Utf8
        } else if label.is_empty()
            || label.eq_ignore_ascii_case("us-ascii")
            || label.eq_ignore_ascii_case("ascii")
        {
            Self::AsciiOrUndeclared
        } else {
            Self::Other
        }
    }
}

/// Undoes the transfer encoding and the charset. A body that does not
/// decode (e.g. invalid base64) falls back to a lossy UTF-8 reading of the
/// raw bytes rather than being dropped.
fn decode_text(headers: &[MailHeader<'_>], raw: &[u8], ctype: &ParsedContentType) -> String {
    let encoding = headers
        .get_first_value("Content-Transfer-Encoding")
        .map(|value| value.trim().to_ascii_lowercase());
    let charset = Charset::of(ctype);
    let lossy_raw = || String::from_utf8_lossy(raw).into_owned();
    let fallback = |decoded: Result<String, mailparse::MailParseError>| {
        decoded.unwrap_or_else(|error| {
            tracing::debug!(%error, "body does not decode, using its raw bytes");
            lossy_raw()
        })
    };
    match Body::new(raw, ctype, &encoding) {
        Body::Base64(body) | Body::QuotedPrintable(body) => {
            if charset == Charset::Other {
                return fallback(body.get_decoded_as_string());
            }
            match body.get_decoded() {
                Ok(bytes) => String::from_utf8(bytes).unwrap_or_else(|error| {
                    if charset == Charset::Utf8 {
                        String::from_utf8_lossy(error.as_bytes()).into_owned()
                    } else {
                        fallback(body.get_decoded_as_string())
                    }
                }),
                Err(error) => fallback(Err(error)),
            }
        }
        Body::SevenBit(body) | Body::EightBit(body) => match std::str::from_utf8(raw) {
            Ok(text) if charset != Charset::Other => text.to_owned(),
            _ if charset == Charset::Utf8 => lossy_raw(),
            _ => fallback(body.get_as_string()),
        },
        Body::Binary(body) => match std::str::from_utf8(raw) {
            Ok(text) if charset != Charset::Other => text.to_owned(),
            _ if charset == Charset::Utf8 => lossy_raw(),
            _ => fallback(body.get_as_string()),
        },
    }
}

// === HTML rendering ===

/// Plain text for HTML-only mail: no decoration markers, link targets as
/// numbered footnotes, tables read cell by cell (e-mail tables are layout,
/// not data), no hard wrapping. Input is fed for at most `budget`; on that
/// or any html2text error the best available text is returned.
fn render_html(html: &str, budget: Duration) -> String {
    let mut input = BudgetedReader {
        rest: html.as_bytes(),
        deadline: Instant::now().checked_add(budget),
        cut_short: false,
    };
    let rendered = html2text::config::plain_no_decorate()
        .link_footnotes(true)
        .raw_mode(true)
        .allow_width_overflow()
        .string_from_read(&mut input, HTML_RENDER_WIDTH);
    if input.cut_short {
        tracing::debug!(
            unread = input.rest.len(),
            "HTML rendering budget spent, rendering the part parsed so far"
        );
    }
    match rendered {
        Ok(text) => trimmed(text),
        Err(error) => {
            tracing::debug!(%error, "HTML could not be rendered as text");
            String::new()
        }
    }
}

/// Feeds a slice to html2text in small reads and reports end of input once
/// the deadline has passed.
struct BudgetedReader<'a> {
    rest: &'a [u8],
    deadline: Option<Instant>,
    cut_short: bool,
}

impl Read for BudgetedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        /// Small enough that one read cannot hide much quadratic work.
        const CHUNK: usize = 4096;
        if self.rest.is_empty() {
            return Ok(0);
        }
        if self
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            self.cut_short = true;
            return Ok(0);
        }
        let n = buf.len().min(self.rest.len()).min(CHUNK);
        let (head, tail) = self.rest.split_at(n);
        buf[..n].copy_from_slice(head);
        self.rest = tail;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixtures are written with `\n`; SMTP delivers `\r\n`.
    fn crlf(text: &str) -> Vec<u8> {
        text.replace('\n', "\r\n").into_bytes()
    }

    fn parse_str(text: &str) -> ParsedMail {
        parse(&crlf(text), &[])
    }

    fn prefixes(list: &[&str]) -> Vec<String> {
        list.iter().map(|p| (*p).to_owned()).collect()
    }

    #[test]
    fn plain_message() {
        let mail = parse_str(
            "From: Alice Example <alice@example.com>\n\
             To: ops@example.com\n\
             Subject: Server down\n\
             Message-ID: <abc@example.com>\n\
             \n\
             The server is down.\n",
        );
        assert_eq!(
            mail,
            ParsedMail {
                subject: "Server down".into(),
                body: "The server is down.\r\n".into(),
                html_body: None,
                sender_name: Some("Alice Example".into()),
                headers: vec![],
                message_id: Some("<abc@example.com>".into()),
            }
        );
    }

    #[test]
    fn plain_message_with_bare_lf() {
        let mail = parse(b"Subject: lf\n\nline one\nline two", &[]);
        assert_eq!(mail.subject, "lf");
        assert_eq!(mail.body, "line one\nline two");
    }

    #[test]
    fn multipart_alternative_takes_text_and_html() {
        let mail = parse_str(
            "Subject: alt\n\
             MIME-Version: 1.0\n\
             Content-Type: multipart/alternative; boundary=\"XYZ\"\n\
             \n\
             preamble is ignored\n\
             --XYZ\n\
             Content-Type: text/plain; charset=utf-8\n\
             \n\
             Plain version\n\
             --XYZ\n\
             Content-Type: text/html; charset=utf-8\n\
             \n\
             <p>HTML version</p>\n\
             --XYZ--\n\
             epilogue is ignored\n",
        );
        assert_eq!(mail.subject, "alt");
        assert_eq!(mail.body, "Plain version");
        assert_eq!(mail.html_body.as_deref(), Some("<p>HTML version</p>"));
    }

    #[test]
    fn html_only_is_rendered_to_text() {
        let mail = parse_str(
            "Subject: html\n\
             Content-Type: text/html; charset=utf-8\n\
             \n\
             <html><head><style>p { color: red }</style></head><body>\
             <h1>Welcome</h1><p>Hello <b>there</b>, friend &amp; colleague.</p>\
             <p><a href=\"https://example.com/confirm\">Confirm</a></p></body></html>\n",
        );
        let html = mail.html_body.as_deref().unwrap();
        assert!(html.starts_with("<html><head>"));
        for words in ["Welcome", "Hello there, friend & colleague.", "Confirm"] {
            assert!(
                mail.body.contains(words),
                "{words:?} missing in {:?}",
                mail.body
            );
        }
        assert!(
            mail.body.contains("https://example.com/confirm"),
            "{:?}",
            mail.body
        );
        assert!(
            !mail.body.contains('<') && !mail.body.contains('>'),
            "{:?}",
            mail.body
        );
        assert!(
            !mail.body.contains("color"),
            "style leaked: {:?}",
            mail.body
        );
        assert_eq!(mail.body, mail.body.trim());
    }

    #[test]
    fn only_html_bodies_are_left_for_rendering() {
        let plain = crlf("Subject: p\n\nhello\n");
        let html = crlf("Content-Type: text/html\n\n<p>hi</p>\n");
        let blank_text = crlf(
            "Content-Type: multipart/alternative; boundary=b\n\n\
             --b\nContent-Type: text/plain\n\n \n\
             --b\nContent-Type: text/html\n\n<p>hi</p>\n--b--\n",
        );
        for (raw, renders) in [(&plain, false), (&html, true), (&blank_text, true)] {
            let unrendered = parse_unrendered(raw, &[]);
            assert_eq!(unrendered.needs_rendering(), renders);
            assert_eq!(unrendered.render(), parse(raw, &[]));
        }
        assert_eq!(parse(&html, &[]).body, "hi");
    }

    #[test]
    fn blank_text_part_falls_back_to_rendered_html() {
        let mail = parse_str(
            "Content-Type: multipart/alternative; boundary=b\n\
             \n\
             --b\n\
             Content-Type: text/plain\n\
             \n\
             \x20\n\
             --b\n\
             Content-Type: text/html\n\
             \n\
             <div>Only here</div>\n\
             --b--\n",
        );
        assert_eq!(mail.body, "Only here");
        assert_eq!(mail.html_body.as_deref(), Some("<div>Only here</div>"));
    }

    #[test]
    fn nested_mixed_with_alternative_and_binary_attachment() {
        let mail = parse_str(
            "Subject: report\n\
             Content-Type: multipart/mixed; boundary=outer\n\
             \n\
             --outer\n\
             Content-Type: multipart/alternative; boundary=inner\n\
             \n\
             --inner\n\
             Content-Type: text/plain; charset=us-ascii\n\
             Content-Transfer-Encoding: 7bit\n\
             \n\
             See attached.\n\
             --inner\n\
             Content-Type: text/html\n\
             \n\
             <p>See <i>attached</i>.</p>\n\
             --inner--\n\
             \n\
             --outer\n\
             Content-Type: application/octet-stream; name=\"secret.bin\"\n\
             Content-Transfer-Encoding: base64\n\
             Content-Disposition: attachment; filename=\"secret.bin\"\n\
             \n\
             U0VDUkVUQVRUQUNITUVOVEJZVEVTAAEC\n\
             --outer--\n",
        );
        assert_eq!(mail.body, "See attached.");
        assert_eq!(
            mail.html_body.as_deref(),
            Some("<p>See <i>attached</i>.</p>")
        );
        for leaked in ["SECRET", "U0VDUkVU", "secret.bin"] {
            assert!(!mail.body.contains(leaked));
            assert!(!mail.html_body.as_deref().unwrap().contains(leaked));
        }
    }

    #[test]
    fn text_attachment_is_not_the_body() {
        let mail = parse_str(
            "Content-Type: multipart/mixed; boundary=m\n\
             \n\
             --m\n\
             Content-Type: text/plain\n\
             Content-Disposition: attachment; filename=\"notes.txt\"\n\
             \n\
             attachment text\n\
             --m\n\
             Content-Type: text/html\n\
             \n\
             <p>the real message</p>\n\
             --m--\n",
        );
        assert_eq!(mail.body, "the real message");
        assert_eq!(mail.html_body.as_deref(), Some("<p>the real message</p>"));
    }

    #[test]
    fn named_text_part_inside_multipart_is_an_attachment() {
        let mail = parse_str(
            "Content-Type: multipart/mixed; boundary=m\n\
             \n\
             --m\n\
             Content-Type: text/plain; name=\"log.txt\"\n\
             \n\
             log lines\n\
             --m\n\
             Content-Type: text/plain\n\
             Content-Disposition: inline\n\
             \n\
             body text\n\
             --m--\n",
        );
        assert_eq!(mail.body, "body text");
    }

    #[test]
    fn rfc2047_subjects() {
        let cases = [
            ("=?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=", "Grüße aus Köln"),
            (
                "=?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=",
                "Grüße aus Köln",
            ),
            ("=?ISO-8859-1?Q?Caf=E9?=", "Café"),
            ("=?iso-8859-1?B?Q2Fm6Q==?=", "Café"),
            (
                "Re: =?UTF-8?B?0J/RgNC40LLQtdGCINC80LjRgA==?= !",
                "Re: Привет мир !",
            ),
            ("  padded  ", "padded"),
        ];
        for (encoded, expected) in cases {
            let mail = parse_str(&format!("Subject: {encoded}\n\nx"));
            assert_eq!(mail.subject, expected, "for {encoded}");
        }
    }

    #[test]
    fn folded_subject_is_unfolded() {
        let mail = parse_str("Subject: a long\n subject line\n\nx");
        assert_eq!(mail.subject, "a long subject line");
    }

    #[test]
    fn quoted_printable_body_with_soft_breaks() {
        let mail = parse_str(
            "Content-Type: text/plain; charset=utf-8\n\
             Content-Transfer-Encoding: quoted-printable\n\
             \n\
             Price: 5 =E2=82=AC, and this line is so=\n\
             ft-broken.\n",
        );
        assert_eq!(mail.body, "Price: 5 €, and this line is soft-broken.\r\n");
    }

    #[test]
    fn base64_body() {
        let mail = parse_str(
            "Content-Type: text/plain; charset=UTF-8\n\
             Content-Transfer-Encoding: BASE64\n\
             \n\
             SGVsbG8sIGJhc2U2\n\
             NCB3b3JsZCEK\n",
        );
        assert_eq!(mail.body, "Hello, base64 world!\n");
    }

    #[test]
    fn iso_8859_1_body() {
        let mut raw = crlf(
            "Content-Type: text/plain; charset=ISO-8859-1\nContent-Transfer-Encoding: 8bit\n\n",
        );
        raw.extend_from_slice(b"Caf\xe9 cr\xe8me");
        assert_eq!(parse(&raw, &[]).body, "Café crème");
    }

    #[test]
    fn iso_8859_1_quoted_printable_body() {
        let mail = parse_str(
            "Content-Type: text/plain; charset=iso-8859-1\n\
             Content-Transfer-Encoding: quoted-printable\n\
             \n\
             Caf=E9",
        );
        assert_eq!(mail.body, "Café");
    }

    #[test]
    fn undeclared_charset_utf8_body_is_utf8() {
        let mail = parse("Subject: x\r\n\r\nGrüße €".as_bytes(), &[]);
        assert_eq!(mail.body, "Grüße €");
    }

    #[test]
    fn invalid_base64_falls_back_to_raw_text() {
        let mail = parse_str(
            "Content-Transfer-Encoding: base64\n\
             \n\
             this is *not* base64!",
        );
        assert_eq!(mail.body, "this is *not* base64!");
    }

    #[test]
    fn invalid_utf8_in_utf8_body_is_replaced_not_dropped() {
        let mut raw = crlf("Content-Type: text/plain; charset=utf-8\n\n");
        raw.extend_from_slice(b"ok \xff\xfe end");
        assert_eq!(parse(&raw, &[]).body, "ok \u{fffd}\u{fffd} end");
    }

    #[test]
    fn missing_subject_is_empty() {
        let mail = parse_str("From: a@b.example\n\nhello");
        assert_eq!(mail.subject, "");
        assert_eq!(mail.body, "hello");
    }

    #[test]
    fn display_names() {
        let cases: [(&str, Option<&str>); 8] = [
            ("\"Doe, John\" <j@x.example>", Some("Doe, John")),
            ("=?UTF-8?B?SsO2aG4gRMWT?= <a@b.example>", Some("Jöhn Dœ")),
            (
                "=?ISO-8859-1?Q?Andr=E9?= Pirard <pirard@vm1.ulg.ac.be>",
                Some("André Pirard"),
            ),
            ("Plain Name <p@n.example>", Some("Plain Name")),
            ("j@x.example", None),
            ("<j@x.example>", None),
            ("\"\" <j@x.example>", None),
            ("Broken Name <unterminated@x", Some("Broken Name")),
        ];
        for (from, expected) in cases {
            let mail = parse_str(&format!("From: {from}\n\nx"));
            assert_eq!(mail.sender_name.as_deref(), expected, "for {from}");
        }
        assert_eq!(parse_str("Subject: none\n\nx").sender_name, None);
    }

    #[test]
    fn header_passthrough_on() {
        let raw = crlf(
            "X-Custom-Ticket: 42\n\
             Subject: s\n\
             x-custom-lower:   spaced value  \n\
             X-App-Name: =?UTF-8?Q?caf=C3=A9?=\n\
             X-Other: not forwarded\n\
             X-APPLICATION: folded\n  value\n\
             \n\
             body",
        );
        let mail = parse(&raw, &prefixes(&["X-Custom-", "x-app"]));
        assert_eq!(
            mail.headers,
            vec![
                ("X-Custom-Ticket".to_owned(), "42".to_owned()),
                ("x-custom-lower".to_owned(), "spaced value".to_owned()),
                ("X-App-Name".to_owned(), "café".to_owned()),
                ("X-APPLICATION".to_owned(), "folded value".to_owned()),
            ]
        );
        assert_eq!(mail.subject, "s");
    }

    #[test]
    fn header_passthrough_off() {
        let raw = crlf("X-Custom-Ticket: 42\nX-App: y\n\nbody");
        assert!(parse(&raw, &[]).headers.is_empty());
        assert!(
            parse(&raw, &prefixes(&[""])).headers.is_empty(),
            "empty prefix forwards nothing"
        );
    }

    #[test]
    fn duplicate_headers_are_all_kept_in_order() {
        let raw = crlf("X-App-Id: 1\nSubject: first\nx-app-id: 2\nSubject: second\n\nb");
        let mail = parse(&raw, &prefixes(&["X-App-"]));
        assert_eq!(mail.subject, "first");
        assert_eq!(
            mail.headers,
            vec![
                ("X-App-Id".to_owned(), "1".to_owned()),
                ("x-app-id".to_owned(), "2".to_owned())
            ]
        );
    }

    #[test]
    fn eight_bit_utf8_headers() {
        let raw = "Subject: Grüße, ça va? 日本語\r\nFrom: Jöhn Dœ <j@x.example>\r\nX-App-Note: naïve\r\n\r\nbody";
        let mail = parse(raw.as_bytes(), &prefixes(&["x-app-"]));
        assert_eq!(mail.subject, "Grüße, ça va? 日本語");
        assert_eq!(mail.sender_name.as_deref(), Some("Jöhn Dœ"));
        assert_eq!(
            mail.headers,
            vec![("X-App-Note".to_owned(), "naïve".to_owned())]
        );
    }

    #[test]
    fn latin1_8bit_header_is_still_decoded() {
        let mail = parse(b"Subject: Caf\xe9\r\n\r\nb", &[]);
        assert_eq!(mail.subject, "Café");
    }

    #[test]
    fn message_id_trimmed_with_brackets() {
        let mail =
            parse_str("Message-ID:    <id.123@host.example>   \nMessage-ID: <second@x>\n\nb");
        assert_eq!(mail.message_id.as_deref(), Some("<id.123@host.example>"));
        assert_eq!(parse_str("Message-ID:   \n\nb").message_id, None);
        assert_eq!(parse_str("Subject: x\n\nb").message_id, None);
    }

    #[test]
    fn headerless_input_is_all_body() {
        let mail = parse(b"just some text, no headers\r\nsecond line", &[]);
        assert_eq!(mail.subject, "");
        assert_eq!(mail.body, "just some text, no headers\r\nsecond line");
        let mail = parse(b"\r\nbody after blank line", &[]);
        assert_eq!(mail.body, "body after blank line");
    }

    #[test]
    fn header_only_message() {
        let mail = parse(b"Subject: only headers\r\nMessage-ID: <h@x>\r\n", &[]);
        assert_eq!(mail.subject, "only headers");
        assert_eq!(mail.message_id.as_deref(), Some("<h@x>"));
        assert_eq!(mail.body, "");
        assert_eq!(mail.html_body, None);
    }

    #[test]
    fn mbox_from_line_is_skipped() {
        let mail = parse(
            b"From alice@example.com Mon Jan  1 00:00:00 2024\nSubject: mbox\n\nb",
            &[],
        );
        assert_eq!(mail.subject, "mbox");
        assert_eq!(mail.body, "b");
    }

    #[test]
    fn unparseable_header_lines_are_skipped() {
        let mail = parse(
            b" leading continuation\r\nSubject: kept\r\n\rstray\r\n\r\nbody",
            &[],
        );
        assert_eq!(mail.subject, "kept");
        assert_eq!(mail.body, "body");
    }

    #[test]
    fn boundary_that_never_closes() {
        let mail = parse_str(
            "Subject: open\n\
             Content-Type: multipart/alternative; boundary=b\n\
             \n\
             --b\n\
             Content-Type: text/plain\n\
             \n\
             still delivered\n\
             --b\n\
             Content-Type: text/html\n\
             \n\
             <p>cut off",
        );
        assert_eq!(mail.body, "still delivered");
        assert_eq!(mail.html_body.as_deref(), Some("<p>cut off"));
    }

    #[test]
    fn missing_boundary_parameter_is_guessed() {
        let mail = parse_str(
            "Content-Type: multipart/mixed\n\
             \n\
             --guess\n\
             Content-Type: text/plain\n\
             \n\
             found anyway\n\
             --guess--\n",
        );
        assert_eq!(mail.body, "found anyway");
    }

    #[test]
    fn boundary_prefix_of_nested_boundary() {
        let mail = parse_str(
            "Content-Type: multipart/mixed; boundary=b1\n\
             \n\
             --b1\n\
             Content-Type: multipart/alternative; boundary=b10\n\
             \n\
             --b10\n\
             Content-Type: text/plain\n\
             \n\
             inner text\n\
             --b10--\n\
             --b1--\n",
        );
        assert_eq!(mail.body, "inner text");
    }

    #[test]
    fn empty_part_does_not_shadow_body() {
        let mail = parse_str(
            "Content-Type: multipart/mixed; boundary=b\n\
             \n\
             --b\n\
             --b\n\
             Content-Type: text/plain\n\
             \n\
             real\n\
             --b--\n",
        );
        assert_eq!(mail.body, "real");
    }

    /// `levels` nested multiparts around a text part, built with distinct
    /// boundaries as a real generator would.
    fn nested(levels: usize, leaf: &str) -> Vec<u8> {
        let mut raw = String::from("Subject: deep\r\nMessage-ID: <deep@x>\r\n");
        for level in 0..levels {
            raw.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=\"b{level}\"\r\n\r\n--b{level}\r\n"
            ));
        }
        raw.push_str("Content-Type: text/plain\r\n\r\n");
        raw.push_str(leaf);
        for level in (0..levels).rev() {
            raw.push_str(&format!("\r\n--b{level}--"));
        }
        raw.push_str("\r\n");
        raw.into_bytes()
    }

    #[test]
    fn five_thousand_levels_deep_keeps_top_level_fields() {
        // Default test thread, default stack: the walk must not recurse.
        let mail = parse(&nested(5_000, "too deep"), &[]);
        assert_eq!(mail.subject, "deep");
        assert_eq!(mail.message_id.as_deref(), Some("<deep@x>"));
        assert_eq!(mail.body, "", "text beyond the depth bound is not reached");
    }

    #[test]
    fn text_within_depth_bound_is_found() {
        let mail = parse(&nested(MAX_MULTIPART_DEPTH, "reachable"), &[]);
        assert_eq!(mail.body, "reachable");
        let mail = parse(&nested(MAX_MULTIPART_DEPTH + 1, "unreachable"), &[]);
        assert_eq!(mail.body, "");
    }

    #[test]
    fn shallow_text_next_to_a_deep_bomb_is_found() {
        let bomb = nested(5_000, "x");
        let bomb_start = bomb.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
        let mut raw = crlf(
            "Subject: s\n\
             Content-Type: multipart/mixed; boundary=top\n\
             \n\
             --top\n\
             Content-Type: text/plain\n\
             \n\
             shallow text\n\
             --top\n",
        );
        // Drop the bomb's own Subject line so it starts with its headers.
        let bomb = &bomb[bomb_start..];
        let bomb = &bomb[bomb.windows(2).position(|w| w == b"\r\n").unwrap() + 2..];
        raw.extend_from_slice(bomb);
        raw.extend_from_slice(b"\r\n--top--\r\n");
        let mail = parse(&raw, &[]);
        assert_eq!(mail.body, "shallow text");
    }

    #[test]
    fn html_rendering_stops_at_its_budget() {
        let html = format!("{}deep{}", "<div>".repeat(50_000), "</div>".repeat(50_000));
        let started = Instant::now();
        let text = render_html(&html, Duration::ZERO);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(text, "");
        // The real budget keeps a nesting bomb cheap too.
        let started = Instant::now();
        let mail = parse(
            format!("Content-Type: text/html\r\n\r\n{html}").as_bytes(),
            &[],
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(mail.html_body.as_deref(), Some(html.as_str()));
    }

    /// Deterministic xorshift64 so failures reproduce.
    fn xorshift(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x9E37_79B9_7F4A_7C15;
        let alphabet: &[u8] = b"-\r\n:=?\"<>; \tabBQ=/\x00\xff\xc3";
        for round in 0..300 {
            let len = (xorshift(&mut seed) % 2048) as usize;
            let bytes: Vec<u8> = if round % 2 == 0 {
                (0..len).map(|_| xorshift(&mut seed) as u8).collect()
            } else {
                // Bytes biased towards MIME syntax reach deeper code paths.
                (0..len)
                    .map(|_| alphabet[(xorshift(&mut seed) % alphabet.len() as u64) as usize])
                    .collect()
            };
            let _ = parse(&bytes, &prefixes(&["x-", ""]));
        }
        for input in [
            &b""[..],
            b"\r",
            b"\n",
            b"\r\n\r\n",
            b":",
            b"\xff\xfe\x00",
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b",
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n",
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b--",
            b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n--\r\n",
            b"Content-Type: multipart/mixed\r\n\r\nno delimiter at all",
            b"Content-Type: text/plain; charset=\"\r\n\r\nx",
            b"Content-Type: text/plain; charset=bogus-42\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=ZZ=\xff=",
            b"Content-Transfer-Encoding: base64\r\n\r\n====",
            b"Content-Type: text/html\r\n\r\n<<<</>>></",
            b"From: \"unterminated\r\nSubject: =?utf-8?B?####?=\r\n\r\n",
            b"From: group: a@b, c@d;\r\n\r\n",
        ] {
            let _ = parse(input, &prefixes(&["x-"]));
        }
    }

    #[test]
    fn truncated_multipart_still_yields_top_level_fields() {
        let full = crlf(
            "Subject: cut\n\
             Message-ID: <cut@x>\n\
             Content-Type: multipart/mixed; boundary=b\n\
             \n\
             --b\n\
             Content-Type: text/plain\n\
             Content-Transfer-Encoding: base64\n\
             \n\
             SGVsbG8sIGJhc2U2NCB3b3JsZCEK\n\
             --b--\n",
        );
        for cut in 0..full.len() {
            let mail = parse(&full[..cut], &[]);
            if cut > 80 {
                assert_eq!(mail.subject, "cut", "cut at {cut}");
                assert_eq!(mail.message_id.as_deref(), Some("<cut@x>"));
            }
        }
        assert_eq!(parse(&full, &[]).body, "Hello, base64 world!\n");
    }
}
