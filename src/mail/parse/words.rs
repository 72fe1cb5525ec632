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
//! long subjects) comes out whole, and raw 8-bit octets inside a word are
//! read in the word's charset rather than dropped.

use std::borrow::Cow;

use charset::Charset;

use super::budget::ParseBudget;

/// The longest charset label looked at (the longest registered one is 45).
const MAX_CHARSET_LABEL: usize = 64;

/// Raw octets outside encoded words as text: UTF-8 when valid (RFC 6532),
/// else Windows-1252, as mail readers read unlabelled 8-bit text.
pub(super) fn text_of(raw: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(raw) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => match Charset::for_label_no_replacement(b"windows-1252") {
            Some(windows_1252) => windows_1252.decode_without_bom_handling(raw).0,
            None => String::from_utf8_lossy(raw),
        },
    }
}

/// Unfolded and RFC 2047-decoded value of a raw header field body. The
/// octets examined are charged to `budget`; once it is spent the value
/// ends at the line where it was.
///
/// It works on the octets, not on a decoded string, so that raw 8-bit
/// octets inside an encoded word (old clients wrote
/// `=?iso-8859-1?Q?Fr\xF6sche?=`) are read in the word's own charset.
pub(super) fn decode_value(raw: &[u8], budget: &ParseBudget) -> String {
    let mut decoder = Decoder::with_capacity(raw.len());
    for (index, line) in raw.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let examined = if index > 0 {
            decoder.whitespace(" ");
            decoder.line(line.trim_ascii_start())
        } else {
            decoder.line(line)
        };
        if !budget.charge(examined) {
            break;
        }
    }
    decoder.finish()
}

/// RFC 2047-decoded octets that are already one line (a display name).
pub(super) fn decode_line(text: &[u8], budget: &ParseBudget) -> String {
    let mut decoder = Decoder::with_capacity(text.len());
    let examined = decoder.line(text);
    budget.charge(examined);
    decoder.finish()
}

/// Unfolds a raw value without decoding anything (the input of the address
/// parser, which decodes display names and addresses itself).
pub(super) fn unfold(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for (index, line) in raw.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if index > 0 {
            out.push(b' ');
            out.extend_from_slice(line.trim_ascii_start());
        } else {
            out.extend_from_slice(line);
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
    fn line(&mut self, bytes: &[u8]) -> usize {
        let mut examined = 0;
        let mut text_start = 0;
        let mut from = 0;
        while let Some(offset) = find_pair(&bytes[from..], b'=', b'?') {
            let start = from + offset;
            examined += offset + 2;
            let adjoins_word = start == text_start && self.after_word;
            if adjoins_word || is_boundary(bytes, start.checked_sub(1)) {
                let (word, reached) = encoded_word(bytes, start);
                examined += reached - start;
                if let Some((word, end)) = word {
                    if is_boundary(bytes, Some(end)) || bytes[end..].starts_with(b"=?") {
                        examined += start - text_start + word.1.len();
                        self.text(&bytes[text_start..start]);
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
        self.text(&bytes[text_start..]);
        examined
    }

    fn whitespace(&mut self, whitespace: &str) {
        if self.after_word {
            self.held_whitespace.push_str(whitespace);
        } else {
            self.out.push_str(whitespace);
        }
    }

    fn text(&mut self, text: &[u8]) {
        if text.is_empty() {
            return;
        }
        if let Some(blank) = text
            .iter()
            .all(|&b| b == b' ' || b == b'\t')
            .then(|| std::str::from_utf8(text).ok())
            .flatten()
        {
            self.whitespace(blank);
            return;
        }
        self.flush_run();
        self.out.push_str(&self.held_whitespace);
        self.held_whitespace.clear();
        self.out.push_str(&text_of(text));
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
fn encoded_word(bytes: &[u8], start: usize) -> (Option<(Word, usize)>, usize) {
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
        b'Q' | b'q' => decode_q(text),
        _ => return None,
    };
    let charset = Charset::for_label_no_replacement(label)?;
    Some((charset, octets))
}

/// The "Q" encoding (RFC 2047 §4.2): `_` is a space, `=XX` an octet; any
/// other octet stands for itself — 8-bit ones too (quoted_printable's
/// robust mode drops those), and an `=` not followed by two hex digits.
fn decode_q(text: &[u8]) -> Vec<u8> {
    let hex = |octet: u8| char::from(octet).to_digit(16);
    let mut octets = Vec::with_capacity(text.len());
    let mut ix = 0;
    while ix < text.len() {
        let octet = text[ix];
        ix += 1;
        match octet {
            b'_' => octets.push(b' '),
            b'=' => match (
                text.get(ix).copied().and_then(hex),
                text.get(ix + 1).copied().and_then(hex),
            ) {
                (Some(high), Some(low)) => {
                    // Two hex digits: at most 0xFF.
                    octets.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
                    ix += 2;
                }
                _ => octets.push(b'='),
            },
            other => octets.push(other),
        }
    }
    octets
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
    fn raw_octets_are_utf8_or_windows_1252() {
        assert_eq!(decode("Grüße".as_bytes()), "Grüße");
        assert_eq!(decode(b"Caf\xe9 \x80"), "Café €");
    }

    /// Issue 11, exactness: old clients put the 8-bit octet itself in a
    /// Q word; it is read in the word's charset, not dropped.
    #[test]
    fn raw_octets_inside_a_word_use_its_charset() {
        assert_eq!(
            decode(b"=?iso-8859-1?Q?Die_Hasen_und_die_Fr\xf6sche?="),
            "Die Hasen und die Frösche"
        );
        assert_eq!(
            decode(b"=?koi8-r?Q?\xf0\xd2\xc9\xd7\xc5\xd4?= x\xe9"),
            "Привет xé"
        );
    }

    #[test]
    fn unfolding_keeps_encoded_words() {
        assert_eq!(unfold(b"a\r\n  =?utf-8?q?b?="), b"a =?utf-8?q?b?=");
        let budget = ParseBudget::for_size(64);
        assert_eq!(decode_line(b"=?utf-8?q?J=C3=B6?= Doe", &budget), "Jö Doe");
    }
}
