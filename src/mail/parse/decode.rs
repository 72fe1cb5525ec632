//! Transfer and charset decoding of a text part to UTF-8.

use mailparse::body::Body;
use mailparse::{MailHeader, ParsedContentType};

use super::budget::ParseBudget;
use super::headers::first_value;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Charset {
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
pub(super) fn decode_text(
    headers: &[MailHeader<'_>],
    raw: &[u8],
    ctype: &ParsedContentType,
    budget: &ParseBudget,
) -> String {
    let encoding = first_value(headers, "Content-Transfer-Encoding", budget)
        .map(|value| value.to_ascii_lowercase());
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
