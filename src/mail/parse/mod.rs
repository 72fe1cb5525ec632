//! Raw RFC 5322 bytes → [`ParsedMail`], the message-derived fields of the
//! webhook payload (`docs/payload.md`).
//!
//! mailparse supplies the primitives (header parser, RFC 2047 and address
//! parsing, Content-Type parsing, transfer and charset decoding), but the MIME
//! tree is walked here rather than by `mailparse::parse_mail`, because that
//! function recurses on the stack and gives up on the *whole* message beyond
//! 100 nested multiparts. The walk below is iterative, expands at most
//! [`MAX_MULTIPART_DEPTH`] levels, parses each part's headers exactly once and
//! visits every leaf once, so a hostile message costs bounded
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
//! - every leaf that is not one of the two bodies is an attachment, in
//!   message order: files, inline images, attached `message/rfc822` (not
//!   looked into), and further text parts, so nothing the sender wrote is
//!   lost;
//! - HTML is rendered to text (html2text) only when no usable `text/plain`
//!   exists: none at all, or one that is blank.
//!
//! Every step is linear in the size of the message (header values are
//! decoded by `words`, not by mailparse's quadratic `get_value`) and charges
//! its work to a [`ParseBudget`]; where the budget is spent the parse stops
//! and what was found so far is the result, marked [`ParsedMail::truncated`].

mod address;
mod attachment;
mod budget;
mod date;
mod decode;
mod headers;
mod html;
mod mime;
mod reply;
#[cfg(test)]
mod tests;
mod words;

use std::time::Duration;

pub use address::Mailbox;
pub use attachment::{Attachment, Disposition};
pub use budget::ParseBudget;
pub use date::unix_to_rfc3339;
pub use headers::{has_prefix, top_header_fields};
use headers::{parse_headers_lenient, read_top_headers, skip_mbox_from_line};
use html::render_html;
use mime::find_bodies;

/// How many multipart levels the walk expands. Real mail nests 3–5 levels
/// (mixed → related → alternative); anything deeper is abuse, and parts
/// beyond this depth are skipped instead of failing the whole message.
pub const MAX_MULTIPART_DEPTH: usize = 64;

/// How many attachments one message may have. Each costs a few hundred
/// octets beyond its data (its description, its JSON), so a message of
/// millions of one-octet parts would otherwise cost a hundred times its
/// size; real mail has a few, a large mailing a few hundred.
pub const MAX_ATTACHMENTS: usize = 1000;

/// Wall-clock budget for parsing HTML before it is rendered: input stops
/// being fed once this is spent, and what was parsed so far is rendered. The
/// rendering itself is bounded by the DOM's size and depth caps and the
/// pruning pass (`html/`), not by the clock. A legitimate 500 KB newsletter
/// parses in well under this.
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
    /// The new text of `body` without quoted history, reply headers and
    /// signature (`reply`); `None` when nothing was stripped or nothing
    /// new is left.
    pub stripped_text: Option<String>,
    /// Decoded display name of `From:`; `None` when absent or empty.
    pub sender_name: Option<String>,
    /// Top-level headers whose names start (ASCII case-insensitively) with one
    /// of the configured prefixes: names as sent, values decoded and trimmed,
    /// in message order, repeats included.
    pub headers: Vec<(String, String)>,
    /// `Message-ID:` value trimmed, angle brackets kept.
    pub message_id: Option<String>,
    /// Every mailbox of `From:`, `To:`, `Cc:` and `Reply-To:` (first field
    /// of each name), groups flattened.
    pub from: Vec<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub reply_to: Vec<Mailbox>,
    /// `Date:` as RFC 3339 in UTC; `None` when absent or not a valid date.
    pub date: Option<String>,
    /// Every top-level header, names as sent, values decoded and trimmed,
    /// in message order with repeats; only when asked for.
    pub all_headers: Vec<(String, String)>,
    /// The original message in base64 (`MAIL_LASER_INCLUDE_RAW`), set by
    /// the caller, which has the bytes.
    pub raw_base64: Option<String>,
    /// The first message id of `In-Reply-To:`, angle brackets kept.
    pub in_reply_to: Option<String>,
    /// The message ids of `References:`, in order, angle brackets kept.
    pub references: Vec<String>,
    /// Every leaf that is not `body` or `html_body`, in message order.
    pub attachments: Vec<Attachment>,
    /// The message has more than [`MAX_ATTACHMENTS`] attachments; those
    /// beyond are not in `attachments` (the message must be refused, not
    /// delivered without them).
    pub too_many_attachments: bool,
    /// The parse stopped early (its [`ParseBudget`] was spent): the fields
    /// hold what was found until then.
    pub truncated: bool,
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
    let budget = ParseBudget::for_size(raw.len());
    parse_unrendered(raw, header_prefixes, false, &budget).render(&budget)
}

/// [`parse`] without its one expensive step, the HTML rendering: the work
/// left is linear in the size of the message (headers, MIME walk, transfer
/// and charset decoding), so for a small message it is cheap enough to run
/// on an async worker. Call [`Unrendered::render`] (off the async workers
/// when [`Unrendered::needs_rendering`]) to finish. `all_headers` fills
/// [`ParsedMail::all_headers`] (`MAIL_LASER_HEADERS=all`).
pub fn parse_unrendered(
    raw: &[u8],
    header_prefixes: &[String],
    all_headers: bool,
    budget: &ParseBudget,
) -> Unrendered {
    let raw = skip_mbox_from_line(raw);
    let (headers, body_start) = parse_headers_lenient(raw, budget);
    let mut mail = ParsedMail::default();
    read_top_headers(&headers, header_prefixes, all_headers, &mut mail, budget);

    let found = find_bodies(&headers, &raw[body_start..], budget);
    let render = match (&found.text, &found.html) {
        (Some(text), Some(_)) => text.trim().is_empty(),
        (None, Some(_)) => true,
        (_, None) => false,
    };
    if !render {
        mail.body = found.text.unwrap_or_default();
    }
    mail.html_body = found.html;
    mail.attachments = found.attachments;
    mail.too_many_attachments = found.too_many_attachments;
    Unrendered {
        mail,
        render,
        size: raw.len(),
    }
}

/// A parsed message whose `body` may still have to be rendered from its HTML.
#[derive(Debug)]
pub struct Unrendered {
    mail: ParsedMail,
    render: bool,
    /// Size of the message: its rendered text is never longer.
    size: usize,
}

impl Unrendered {
    /// Attaches the original message in base64 (`MAIL_LASER_INCLUDE_RAW`).
    pub fn set_raw_base64(&mut self, raw_base64: Option<String>) {
        self.mail.raw_base64 = raw_base64;
    }

    /// Whether [`Unrendered::render`] runs html2text (its parse up to
    /// [`HTML_RENDER_BUDGET`], its rendering bounded by size) rather than
    /// returning at once.
    pub fn needs_rendering(&self) -> bool {
        self.render
    }

    /// The finished [`ParsedMail`]: for HTML-only mail (or a blank text
    /// part) `body` is the rendering of `html_body`, at most 4 times its
    /// length and never longer than the message; a rendering cut short or
    /// simplified marks the mail truncated.
    pub fn render(mut self, budget: &ParseBudget) -> ParsedMail {
        if self.render {
            if let Some(html) = &self.mail.html_body {
                if budget.charge(html.len()) {
                    let rendered = render_html(html, self.size, &|| budget.check());
                    self.mail.body = rendered.text;
                    self.mail.truncated |= rendered.truncated;
                }
            }
        }
        // The reply scanner looks at each octet at most 8 times.
        if budget.charge(8 * self.mail.body.len()) {
            // Only when something was stripped: the body is not repeated.
            let stripped = reply::strip_reply(&self.mail.body);
            self.mail.stripped_text = (!stripped.is_empty() && stripped != self.mail.body.trim())
                .then(|| stripped.to_owned());
        }
        self.mail.truncated |= budget.is_spent();
        self.mail
    }
}
