//! Header values in one linear pass: raw octets (UTF-8, RFC 6532, or else
//! Latin-1), unfolding, and RFC 2047 encoded words.
//!
//! mailparse's own `get_value` and `addrparse_header` do the same but in time
//! quadratic in the number of `=?` in one header (a 64 KB `From:` of `=?`
//! cost seconds); this scanner looks at each octet a bounded number of times.
//! Behaviour follows mailparse where mail depends on it: an encoded word
//! starts after whitespace or one of `"(),<>` (or at the start) and ends
//! before one of them, whitespace between two encoded words is dropped, a
//! folded line is joined with one space, and a word that does not decode
//! stays as written. Beyond mailparse, adjacent words of one charset are
//! decoded together, so a UTF-8 character split across two words (common in
//! long subjects) comes out whole.

use std::borrow::Cow;

use charset::Charset;

use super::budget::ParseBudget;

/// The longest charset label looked at (the longest registered one is 45).
const MAX_CHARSET_LABEL: usize = 64;

/// The raw value as text: UTF-8 when valid (RFC 6532), else Latin-1.
pub(super) fn value_text(raw: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(raw) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => Cow::Owned(raw.iter().copied().map(char::from).collect()),
    }
}

/// Unfolded and RFC 2047-decoded value of a raw header field body. The
/// octets examined are charged to `budget`; once it is spent the value
/// ends at the line where it was.
pub(super) fn decode_value(raw: &[u8], budget: &ParseBudget) -> String {
    let text = value_text(raw);
    let mut decoder = Decoder::with_capacity(text.len());
    for (index, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let examined = if index > 0 {
            decoder.whitespace(" ");
            decoder.line(line.trim_start())
        } else {
            decoder.line(line)
        };
        if !budget.charge(examined) {
            break;
        }
    }
    decoder.finish()
}

/// RFC 2047-decoded `text` that is already one line (a display name).
pub(super) fn decode_line(text: &str, budget: &ParseBudget) -> String {
    let mut decoder = Decoder::with_capacity(text.len());
    let examined = decoder.line(text);
    budget.charge(examined);
    decoder.finish()
}

/// Unfolds a raw value without decoding encoded words (the input of the
/// address parser, which decodes only display names).
pub(super) fn unfold(raw: &[u8]) -> String {
    let text = value_text(raw);
    let mut out = String::with_capacity(text.len());
    for (index, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if index > 0 {
            out.push(' ');
            out.push_str(line.trim_start());
        } else {
            out.push_str(line);
        }
    }
    out
}

/// Builds the decoded value; whitespace after an encoded word is held back
/// until it is known whether another encoded word follows (then it goes).
struct Decoder {
    out: String,
    /// Decoded octets of the run of adjacent encoded words in one charset.
    run: Option<(Charset, Vec<u8>)>,
    /// Whether the last thing seen was an encoded word.
    after_word: bool,
    held_whitespace: String,
}

impl Decoder {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            out: String::with_capacity(capacity),
            run: None,
            after_word: false,
            held_whitespace: String::new(),
        }
    }

    /// One unfolded line: text and encoded words. Returns how many octets
    /// were examined (the searches, the attempts at a word, the output),
    /// which is linear in the line: the complexity tests hold it to that.
    fn line(&mut self, line: &str) -> usize {
        let bytes = line.as_bytes();
        let mut examined = 0;
        let mut text_start = 0;
        let mut from = 0;
        while let Some(offset) = find_pair(&bytes[from..], b'=', b'?') {
            let start = from + offset;
            examined += offset + 2;
            let adjoins_word = start == text_start && self.after_word;
            if adjoins_word || is_boundary(bytes, start.checked_sub(1)) {
                let (word, reached) = encoded_word(line, start);
                examined += reached - start;
                if let Some((word, end)) = word {
                    if is_boundary(bytes, Some(end)) || bytes[end..].starts_with(b"=?") {
                        examined += start - text_start + word.1.len();
                        self.text(&line[text_start..start]);
                        self.word(word);
                        text_start = end;
                        from = end;
                        continue;
                    }
                }
            }
            from = start + 2;
        }
        examined += (bytes.len() - from) + (bytes.len() - text_start);
        self.text(&line[text_start..]);
        examined
    }

    fn whitespace(&mut self, whitespace: &str) {
        if self.after_word {
            self.held_whitespace.push_str(whitespace);
        } else {
            self.out.push_str(whitespace);
        }
    }

    fn text(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        if text.bytes().all(|b| b == b' ' || b == b'\t') {
            self.whitespace(text);
            return;
        }
        self.flush_run();
        self.out.push_str(&self.held_whitespace);
        self.held_whitespace.clear();
        self.out.push_str(text);
        self.after_word = false;
    }

    fn word(&mut self, (charset, octets): (Charset, Vec<u8>)) {
        self.held_whitespace.clear();
        self.after_word = true;
        match &mut self.run {
            Some((run_charset, run)) if *run_charset == charset => run.extend_from_slice(&octets),
            _ => {
                self.flush_run();
                self.run = Some((charset, octets));
            }
        }
    }

    fn flush_run(&mut self) {
        if let Some((charset, octets)) = self.run.take() {
            self.out
                .push_str(&charset.decode_without_bom_handling(&octets).0);
        }
    }

    fn finish(mut self) -> String {
        self.flush_run();
        self.out.push_str(&self.held_whitespace);
        self.out
    }
}

/// mailparse's word delimiters: whitespace, `"`, `(`, `)`, `<`, `>`, `,`,
/// or the edge of the line (`None`, or an index past the end).
fn is_boundary(bytes: &[u8], index: Option<usize>) -> bool {
    index.and_then(|ix| bytes.get(ix)).is_none_or(|&b| {
        b.is_ascii_whitespace() || matches!(b, b'"' | b'(' | b')' | b'<' | b'>' | b',')
    })
}

type Word = (Charset, Vec<u8>);

/// Decodes `=?charset?B|Q?text?=` starting at `start`: the charset and the
/// decoded octets with the index after the closing `?=`, or `None`; and in
/// both cases how far the attempt looked. The text holds no `?` and no
/// whitespace (RFC 2047 §2), so a failed attempt looks only up to the next
/// `?` or whitespace: no octet is scanned by two attempts.
fn encoded_word(line: &str, start: usize) -> (Option<(Word, usize)>, usize) {
    let bytes = line.as_bytes();
    let charset_start = start + 2;
    let label_window =
        &bytes[charset_start..bytes.len().min(charset_start + MAX_CHARSET_LABEL + 1)];
    let Some(label_len) = label_window.iter().position(|&b| b == b'?') else {
        return (None, charset_start + label_window.len());
    };
    let label = &bytes[charset_start..charset_start + label_len];
    // RFC 2231 §5: `charset*language`.
    let label = label.split(|&b| b == b'*').next().unwrap_or(label);
    let text_start = charset_start + label_len + 3;
    let (Some(&encoding), Some(b'?')) = (
        bytes.get(charset_start + label_len + 1),
        bytes.get(text_start - 1),
    ) else {
        return (None, bytes.len().min(text_start));
    };
    let Some(text_len) = bytes[text_start..]
        .iter()
        .position(|&b| b == b'?' || b.is_ascii_whitespace())
    else {
        return (None, bytes.len());
    };
    let text_end = text_start + text_len;
    let word = decode_word(label, encoding, &bytes[text_start..text_end])
        .filter(|_| bytes.get(text_end..text_end + 2) == Some(b"?="))
        .map(|word| (word, text_end + 2));
    (word, text_end + 1)
}

fn decode_word(label: &[u8], encoding: u8, text: &[u8]) -> Option<Word> {
    let octets = match encoding {
        b'B' | b'b' => data_encoding::BASE64_MIME_PERMISSIVE.decode(text).ok()?,
        b'Q' | b'q' => {
            let text: Vec<u8> = text
                .iter()
                .map(|&b| if b == b'_' { b' ' } else { b })
                .collect();
            quoted_printable::decode(text, quoted_printable::ParseMode::Robust).ok()?
        }
        _ => return None,
    };
    let charset = Charset::for_label_no_replacement(label)?;
    Some((charset, octets))
}

/// Index of the first `first` immediately followed by `second`.
fn find_pair(haystack: &[u8], first: u8, second: u8) -> Option<usize> {
    haystack
        .windows(2)
        .position(|w| w[0] == first && w[1] == second)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(raw: &[u8]) -> String {
        decode_value(raw, &ParseBudget::for_size(raw.len()))
    }

    #[test]
    fn words_and_text() {
        let cases = [
            ("=?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=", "Grüße aus Köln"),
            (
                "=?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=",
                "Grüße aus Köln",
            ),
            ("=?ISO-8859-1?Q?Caf=E9?=", "Café"),
            ("a =?utf-8?q?b?= c", "a b c"),
            ("=?utf-8?q?a?= =?utf-8?q?b?=", "ab"),
            ("=?utf-8?q?a?=\r\n =?utf-8?q?b?=", "ab"),
            ("=?utf-8?q?a?==?utf-8?q?b?=", "ab"),
            ("x=?utf-8?q?a?=", "x=?utf-8?q?a?="),
            ("=?utf-8?q?a?=x", "=?utf-8?q?a?=x"),
            ("=?utf-8?q?a b?=", "=?utf-8?q?a b?="),
            ("=?unknown-charset?q?a?=", "=?unknown-charset?q?a?="),
            ("=?utf-8?x?a?=", "=?utf-8?x?a?="),
            ("=?utf-8*en?q?a?=", "a"),
            ("(=?utf-8?q?a?=)", "(a)"),
            ("a\r\n b", "a b"),
            ("a\n\tb", "a b"),
            ("=?", "=?"),
            ("=?=?=?", "=?=?=?"),
        ];
        for (raw, expected) in cases {
            assert_eq!(decode(raw.as_bytes()), expected, "for {raw:?}");
        }
    }

    #[test]
    fn a_character_split_across_two_words_is_whole() {
        // "é" is C3 A9: one octet in each word.
        assert_eq!(decode(b"=?utf-8?q?caf=C3?= =?utf-8?q?=A9?="), "café");
        assert_eq!(decode(b"=?utf-8?b?w6k=?= =?iso-8859-1?q?=E9?="), "éé");
    }

    #[test]
    fn raw_octets_are_utf8_or_latin1() {
        assert_eq!(decode("Grüße".as_bytes()), "Grüße");
        assert_eq!(decode(b"Caf\xe9"), "Café");
    }

    #[test]
    fn unfolding_keeps_encoded_words() {
        assert_eq!(unfold(b"a\r\n  =?utf-8?q?b?="), "a =?utf-8?q?b?=");
        let budget = ParseBudget::for_size(64);
        assert_eq!(decode_line("=?utf-8?q?J=C3=B6?= Doe", &budget), "Jö Doe");
    }
}
