//! Address lists (`From:`, `To:`, …; RFC 5322 §3.4) in one linear pass.
//!
//! Lenient as mail readers are: a missing `>` or `;` ends at the end of the
//! field, groups are flattened, a bare `addr@example (Name)` takes its
//! comment as the name, and display names are RFC 2047-decoded — also inside
//! quotes, where broken but common senders put encoded words.

use super::budget::ParseBudget;
use super::words::{decode_line, text_of, unfold};

/// One mailbox of an address list: `{"name": …, "address": …}` in the
/// payload, `name` left out when there is none.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Mailbox {
    /// Decoded display name; `None` when absent or blank.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The address as written (quotes of a quoted local part kept).
    pub address: String,
}

/// Every mailbox of the raw field body, in order. One pass over the field
/// (charged to `budget`), then each display name is decoded once.
pub(super) fn parse_address_list(raw: &[u8], budget: &ParseBudget) -> Vec<Mailbox> {
    let text = unfold(raw);
    if !budget.charge(text.len()) {
        return Vec::new();
    }
    let mut parser = Parser {
        budget,
        mailboxes: Vec::new(),
        phrase: Vec::new(),
        raw: Vec::new(),
        comment: None,
        done: false,
        in_group: false,
    };
    // Octet by octet: every delimiter is ASCII, so the octets of a UTF-8
    // (or 8-bit) character pass through whole.
    let mut octets = text.iter().copied();
    while let Some(octet) = octets.next() {
        match octet {
            b'"' => {
                parser.raw.push(b'"');
                while let Some(octet) = octets.next() {
                    match octet {
                        b'"' => break,
                        b'\\' => {
                            if let Some(escaped) = octets.next() {
                                parser.raw.extend_from_slice(&[b'\\', escaped]);
                                parser.phrase.push(escaped);
                            }
                        }
                        octet => {
                            parser.raw.push(octet);
                            parser.phrase.push(octet);
                        }
                    }
                }
                parser.raw.push(b'"');
            }
            b'(' => {
                let mut depth = 1_usize;
                let mut comment = Vec::new();
                while let Some(octet) = octets.next() {
                    match octet {
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        b'\\' => {
                            if let Some(escaped) = octets.next() {
                                comment.push(escaped);
                            }
                            continue;
                        }
                        _ => {}
                    }
                    comment.push(octet);
                }
                if parser.comment.is_none() {
                    parser.comment = Some(comment);
                }
                parser.phrase.push(b' ');
            }
            b'<' => {
                let address: Vec<u8> = octets.by_ref().take_while(|&octet| octet != b'>').collect();
                parser.angle_address(&address);
            }
            b':' if !parser.in_group && !parser.done => {
                parser.in_group = true;
                parser.clear();
            }
            b';' if parser.in_group => {
                parser.finish_mailbox();
                parser.in_group = false;
            }
            b',' => parser.finish_mailbox(),
            octet => {
                if !parser.done {
                    parser.raw.push(octet);
                    parser.phrase.push(octet);
                }
            }
        }
    }
    parser.finish_mailbox();
    parser.mailboxes
}

struct Parser<'b> {
    budget: &'b ParseBudget,
    mailboxes: Vec<Mailbox>,
    /// The current mailbox's text, quotes and comments removed (the
    /// display name if an angle address follows).
    phrase: Vec<u8>,
    /// The same text as written, without comments (the address if none
    /// follows).
    raw: Vec<u8>,
    comment: Option<Vec<u8>>,
    /// The current mailbox ended with its angle address; what follows up to
    /// the next `,` is ignored.
    done: bool,
    in_group: bool,
}

impl Parser<'_> {
    fn angle_address(&mut self, address: &[u8]) {
        if self.done {
            return;
        }
        // An obsolete source route (`<@relay:user@host>`, RFC 5322 §4.4) is dropped.
        let address = address.trim_ascii();
        let address = match address.strip_prefix(b"@") {
            Some(routed) => routed
                .iter()
                .position(|&b| b == b':')
                .map_or(routed, |colon| &routed[colon + 1..]),
            None => address,
        };
        let name = display_name(&self.phrase, self.budget).or_else(|| self.comment_name());
        self.mailboxes.push(Mailbox {
            name,
            address: text_of(address).into_owned(),
        });
        self.clear();
        self.done = true;
    }

    fn finish_mailbox(&mut self) {
        if !self.done {
            let address = self.raw.trim_ascii();
            if !address.is_empty() {
                let name = self.comment_name();
                self.mailboxes.push(Mailbox {
                    name,
                    address: text_of(address).into_owned(),
                });
            }
        }
        self.clear();
    }

    fn comment_name(&self) -> Option<String> {
        self.comment
            .as_deref()
            .and_then(|comment| display_name(comment, self.budget))
    }

    fn clear(&mut self) {
        self.phrase.clear();
        self.raw.clear();
        self.comment = None;
        self.done = false;
    }
}

/// Decoded, with runs of whitespace collapsed to one space; `None` when blank.
fn display_name(phrase: &[u8], budget: &ParseBudget) -> Option<String> {
    let decoded = decode_line(phrase.trim_ascii(), budget);
    let mut name = String::with_capacity(decoded.len());
    for word in decoded.split_whitespace() {
        if !name.is_empty() {
            name.push(' ');
        }
        name.push_str(word);
    }
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailbox(name: Option<&str>, address: &str) -> Mailbox {
        Mailbox {
            name: name.map(str::to_owned),
            address: address.to_owned(),
        }
    }

    #[test]
    fn address_lists() {
        let cases: Vec<(&str, Vec<Mailbox>)> = vec![
            (
                "\"Doe, John\" <j@x.example>",
                vec![mailbox(Some("Doe, John"), "j@x.example")],
            ),
            (
                "=?UTF-8?B?SsO2aG4gRMWT?= <a@b.example>, c@d.example",
                vec![
                    mailbox(Some("Jöhn Dœ"), "a@b.example"),
                    mailbox(None, "c@d.example"),
                ],
            ),
            (
                "\"=?utf-8?q?Jos=C3=A9?=\" <j@x.example>",
                vec![mailbox(Some("José"), "j@x.example")],
            ),
            (
                "Team: a@x.example, B <b@x.example>; c@x.example",
                vec![
                    mailbox(None, "a@x.example"),
                    mailbox(Some("B"), "b@x.example"),
                    mailbox(None, "c@x.example"),
                ],
            ),
            (
                "j@x.example (John (the) Doe)",
                vec![mailbox(Some("John (the) Doe"), "j@x.example")],
            ),
            (
                "\"john doe\"@x.example",
                vec![mailbox(None, "\"john doe\"@x.example")],
            ),
            (
                "<@relay.example:j@x.example>",
                vec![mailbox(None, "j@x.example")],
            ),
            (
                "Broken Name <unterminated@x",
                vec![mailbox(Some("Broken Name"), "unterminated@x")],
            ),
            ("Undisclosed recipients:;", vec![]),
            ("", vec![]),
        ];
        for (raw, expected) in cases {
            let budget = ParseBudget::for_size(raw.len());
            assert_eq!(
                parse_address_list(raw.as_bytes(), &budget),
                expected,
                "for {raw:?}"
            );
        }
    }
}
