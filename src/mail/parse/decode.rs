//! Transfer and charset decoding of a text part to UTF-8.

use std::borrow::Cow;

use charset::Charset;
use mailparse::body::Body;
use mailparse::{MailHeader, ParsedContentType};

use super::attachment::decode_base64_lenient;
use super::budget::ParseBudget;
use super::headers::first_value;
use super::words::text_of;

/// How a text part's octets are read.
enum Reading {
    /// `utf-8` declared: invalid sequences become U+FFFD.
    Utf8,
    /// `us-ascii`, no charset at all, or a label no registry knows: UTF-8
    /// when valid (8BITMIME senders often omit the label), else
    /// Windows-1252, as browsers read unlabelled text, so no octet is lost.
    Sniffed,
    /// A charset encoding_rs knows (every WHATWG encoding, and UTF-7).
    Declared(Charset),
}

impl Reading {
    fn of(ctype: &ParsedContentType) -> Self {
        let Some(label) = ctype.params.get("charset") else {
            return Self::Sniffed;
        };
        let label = label.trim().trim_matches('"');
        if label.eq_ignore_ascii_case("utf-8") || label.eq_ignore_ascii_case("utf8") {
            return Self::Utf8;
        }
        if label.is_empty()
            || label.eq_ignore_ascii_case("us-ascii")
            || label.eq_ignore_ascii_case("ascii")
        {
            return Self::Sniffed;
        }
        Charset::for_label_no_replacement(label.as_bytes()).map_or(Self::Sniffed, Self::Declared)
    }
}

/// Undoes the transfer encoding and the charset. Never fails: a part that
/// is not base64 or quoted-printable after all (text mislabelled by its
/// sender) is read as written.
pub(super) fn decode_text(
    headers: &[MailHeader<'_>],
    raw: &[u8],
    ctype: &ParsedContentType,
    budget: &ParseBudget,
) -> String {
    let encoding = first_value(headers, "Content-Transfer-Encoding", budget)
        .map(|value| value.to_ascii_lowercase());
    let octets: Cow<'_, [u8]> = match Body::new(raw, ctype, &encoding) {
        Body::Base64(_) if is_base64(raw) => Cow::Owned(decode_base64_lenient(raw)),
        Body::Base64(_) => Cow::Borrowed(raw),
        Body::QuotedPrintable(body) => body.get_decoded().map_or(Cow::Borrowed(raw), Cow::Owned),
        Body::SevenBit(_) | Body::EightBit(_) | Body::Binary(_) => Cow::Borrowed(raw),
    };
    let text = match Reading::of(ctype) {
        Reading::Utf8 => String::from_utf8_lossy(&octets),
        Reading::Sniffed => text_of(&octets),
        Reading::Declared(charset) => charset.decode(&octets).0,
    };
    text.into_owned()
}

/// Only base64 octets, padding and whitespace.
fn is_base64(raw: &[u8]) -> bool {
    raw.iter()
        .all(|&octet| octet.is_ascii_alphanumeric() || b"+/=\r\n\t ".contains(&octet))
}
