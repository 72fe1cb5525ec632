//! The new text of a reply: a plain-text body without its quoted history and
//! its signature (`stripped_text`, as Postmark's `StrippedTextReply`,
//! Mailgun's `stripped-text`, CloudMailin's `reply_plain`).
//!
//! Written here rather than taken from a crate, because none fits.
//! `email_reply_parser` 0.1.2 (MIT; its only release, 2024, with a
//! placeholder repository link) knows English only, compiles its regexes
//! anew for every line, `unwrap`s, and matches its multi-line header with a
//! fancy-regex look-ahead over the rest of the text at every position:
//! quadratic on a body full of "On"s. `mailrs-clean` 1.2 (MIT or Apache-2.0)
//! has `split_quoted_content`, but it knows English and Japanese headers
//! only, no wrapped header, no signature and no trailer: most of this module
//! would still be needed. mail-parser (Stalwart) has no reply extraction
//! (and 1.0 needs a newer Rust than ours); the crate named `talon` is an
//! unrelated language, and no Rust port of Mailgun's talon was found.
//!
//! The text is read once, line by line, through a window of five lines (two
//! before, two after) that each line enters once; every test on it is
//! linear in the lines it looks at, so the whole is linear in the input
//! ([`strip_reply_counting`] counts the octets looked at, for the tests).
//! The first line that starts the tail cuts the text there:
//! - a quote line (`>` after optional whitespace), together with an
//!   attribution just above it ("John Doe wrote:", a blank line between
//!   allowed);
//! - an attribution header: "On … wrote:" and its translations ("Am …
//!   schrieb …:", "Le … a écrit :", "El … escribió:", "Op … schreef …:",
//!   Italian, Portuguese, Scandinavian, Polish), on one to three lines (Gmail
//!   wraps long ones), holding a digit (its date) and ending with a colon;
//! - an Outlook header block: `From:` (`Von:`, `De :`, `Van:`, `Da:`)
//!   followed within two lines by `Sent:` or `Date:` (or a translation), or
//!   all on one line as Outlook on the web writes it, with the underscore
//!   rule Outlook puts above it;
//! - an original-message or forward marker ("-----Original Message-----",
//!   "---------- Forwarded message ---------", "Begin forwarded message:"
//!   and translations);
//! - the signature delimiter `-- ` (RFC 3676 §4.3), or `--` whose space a
//!   client trimmed.
//!
//! A mobile trailer left as the last line ("Sent from my iPhone", "Get
//! Outlook for iOS") goes too, then the blank lines around the rest.
//!
//! Inline replies (new text between quote blocks) keep only what comes
//! before the first quote, as Mailgun's talon does: which unquoted lines
//! further down are new and which are quoted history without markers cannot
//! be told reliably, and top-posting is what most clients do. A bottom-posted
//! reply therefore strips to nothing; `body` still has it all.

use std::cell::Cell;

/// How many lines after its first an attribution header may take: Gmail
/// wraps "On <date> <name> <address> wrote:" at 78 columns, which splits a
/// long one over two or three lines.
const ATTRIBUTION_EXTRA_LINES: usize = 2;

/// The longest attribution header, in octets: longer is a paragraph that
/// happens to start with "On".
const MAX_ATTRIBUTION_LEN: usize = 400;

/// The longest marker or trailer line, in octets; longer is prose. It also
/// bounds the lower-casing of a candidate marker.
const MAX_MARKER_LEN: usize = 80;

/// The longest field label before its colon (`Envoyé`, `Verzonden`).
const MAX_LABEL_LEN: usize = 16;

/// The shortest underscore or dash rule taken for Outlook's separator.
const MIN_RULE_LEN: usize = 10;

/// The first word of an attribution header and its verb, per language.
const ATTRIBUTIONS: &[(&str, &[&str])] = &[
    ("On", &["wrote"]),
    ("Am", &["schrieb"]),
    ("Le", &["écrit"]),
    ("El", &["escribió"]),
    ("Op", &["schreef"]),
    ("Il", &["scritto"]),
    ("Em", &["escreveu"]),
    ("Den", &["skrev"]),
    ("W dniu", &["pisze", "napisał", "napisała"]),
];

/// Outlook's `From:` field in its languages (French and Spanish share `De`).
const FROM_LABELS: &[&str] = &["From", "Von", "De", "Van", "Da"];

/// The field Outlook writes right after `From:` (`Date:` on the Mac).
const SENT_LABELS: &[&str] = &[
    "Sent",
    "Date",
    "Gesendet",
    "Datum",
    "Envoyé",
    "Enviado",
    "Enviado el",
    "Fecha",
    "Verzonden",
    "Inviato",
    "Data",
];

/// `Sent:` and `Subject:` inside a one-line header (Outlook on the web).
const INLINE_SENT: &[&str] = &[
    " Sent:",
    " Gesendet:",
    " Envoyé :",
    " Envoyé:",
    " Enviado:",
    " Enviado el:",
    " Verzonden:",
    " Inviato:",
];
const INLINE_SUBJECT: &[&str] = &[
    " Subject:",
    " Betreff:",
    " Objet :",
    " Objet:",
    " Asunto:",
    " Onderwerp:",
    " Oggetto:",
    " Assunto:",
];

/// Text between the dashes of an original-message or forward marker,
/// lower-cased.
const DASHED_MARKERS: &[&str] = &[
    "original message",
    "forwarded message",
    "ursprüngliche nachricht",
    "weitergeleitete nachricht",
    "message d'origine",
    "message transféré",
    "mensaje original",
    "mensaje reenviado",
    "oorspronkelijk bericht",
    "doorgestuurd bericht",
    "messaggio originale",
    "messaggio inoltrato",
    "mensagem original",
    "mensagem encaminhada",
];

/// Whole-line forward markers (Apple Mail), lower-cased, spaces single.
const LINE_MARKERS: &[&str] = &[
    "begin forwarded message:",
    "anfang der weitergeleiteten nachricht:",
    "début du message réexpédié :",
    "inicio del mensaje reenviado:",
    "begin doorgestuurd bericht:",
];

/// How mobile and webmail trailers start.
const TRAILERS: &[&str] = &[
    "Sent from ",
    "Sent with ",
    "Get Outlook for ",
    "Von meinem ",
    "Gesendet von ",
    "Envoyé de mon ",
    "Envoyé depuis ",
    "Enviado desde ",
    "Enviado do meu ",
    "Verzonden vanaf mijn ",
    "Verstuurd vanaf mijn ",
    "Inviato da ",
];

/// The new text of `text`: what precedes its quoted history and signature,
/// without surrounding blank lines; `""` when the message is only a quote.
///
/// A slice of `text` rather than a copy: the lines are the body's own (line
/// endings included), and "nothing was stripped" is simply the trimmed
/// body, which an `Option` would make the caller rebuild.
pub(crate) fn strip_reply(text: &str) -> &str {
    strip_reply_counting(text).0
}

/// [`strip_reply`] and the number of octets its tests looked at, which the
/// complexity tests hold to a multiple of the input's size.
fn strip_reply_counting(text: &str) -> (&str, usize) {
    let mut window = Window::new(text);
    let mut cut = text.len();
    while window.line(CURRENT).is_some() {
        if let Some(start) = tail_start(&window) {
            cut = start;
            break;
        }
        window.advance();
    }
    (new_text(&text[..cut]), window.examined.get())
}

/// Where the tail begins if the current line starts it: the current line,
/// or a line above it that belongs to the same header.
fn tail_start(window: &Window<'_>) -> Option<usize> {
    let line = window.line(CURRENT)?;
    if is_quote(line.text) {
        return Some(attribution_above(window).unwrap_or(line.start));
    }
    if is_signature_delimiter(line.text) || is_marker(line.text) || is_attribution(window) {
        return Some(line.start);
    }
    if is_outlook_header(window) {
        return Some(rule_above(window).unwrap_or(line.start));
    }
    None
}

fn is_quote(line: &str) -> bool {
    line.trim_start().starts_with('>')
}

fn is_blank(line: &str) -> bool {
    line.trim().is_empty()
}

fn is_signature_delimiter(line: &str) -> bool {
    line == "-- " || line == "--"
}

/// "-----Original Message-----" and its kin, or "Begin forwarded message:".
fn is_marker(line: &str) -> bool {
    let line = line.trim();
    if line.len() > MAX_MARKER_LEN {
        return false;
    }
    if line.starts_with("--") && line.ends_with("--") {
        let inner = fold(line.trim_matches('-'));
        return DASHED_MARKERS.contains(&inner.as_str());
    }
    ends_with_colon(line) && LINE_MARKERS.contains(&fold(line).as_str())
}

/// Lower case with every run of whitespace (no-break spaces included) one
/// space, so "Le … a écrit\u{a0}:" compares like "a écrit :".
fn fold(text: &str) -> String {
    text.to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// An "On <date>, <name> wrote:" header starting at the current line, in
/// any of [`ATTRIBUTIONS`]' languages, on up to three lines.
fn is_attribution(window: &Window<'_>) -> bool {
    let Some(first) = window.line(CURRENT) else {
        return false;
    };
    let Some(verbs) = opener_verbs(first.text) else {
        return false;
    };
    let (mut len, mut has_digit, mut has_verb) = (0, false, false);
    for slot in CURRENT..=CURRENT + ATTRIBUTION_EXTRA_LINES {
        let Some(line) = window.line(slot) else {
            return false;
        };
        let text = line.text.trim();
        // A header has no blank line and no quote inside; a line that
        // opens a header of its own is that header's, not this one's.
        if text.is_empty() || (slot > CURRENT && (is_quote(text) || opener_verbs(text).is_some())) {
            return false;
        }
        len += text.len();
        if len > MAX_ATTRIBUTION_LEN {
            return false;
        }
        has_digit |= text.bytes().any(|b| b.is_ascii_digit());
        has_verb |= has_word(text, verbs);
        if ends_with_colon(text) {
            // Only a header's last line ends with a colon.
            return has_verb && has_digit;
        }
    }
    false
}

/// The verbs of the attribution language whose opener starts `line`.
fn opener_verbs(line: &str) -> Option<&'static [&'static str]> {
    let line = line.trim_start();
    ATTRIBUTIONS
        .iter()
        .find(|(opener, _)| starts_with_word(line, opener))
        .map(|(_, verbs)| *verbs)
}

/// The line above a quote when it introduces it ("John Doe wrote:"), one
/// blank line between allowed: a header without the "On <date>" opener
/// that [`is_attribution`] looks for, as older Thunderbird writes it.
fn attribution_above(window: &Window<'_>) -> Option<usize> {
    let above = match window.line(PREVIOUS) {
        Some(line) if is_blank(line.text) => window.line(BEFORE_PREVIOUS)?,
        above => above?,
    };
    let text = above.text.trim();
    let is_attribution = text.len() <= MAX_ATTRIBUTION_LEN
        && ends_with_colon(text)
        && ATTRIBUTIONS.iter().any(|(_, verbs)| has_word(text, verbs));
    is_attribution.then_some(above.start)
}

/// Outlook's header block: `From:` and, within the next two lines (a long
/// `From:` wraps), `Sent:`; or everything on one line (Outlook on the web).
fn is_outlook_header(window: &Window<'_>) -> bool {
    let Some(first) = window.line(CURRENT) else {
        return false;
    };
    if !label(first.text).is_some_and(|label| is_one_of(label, FROM_LABELS)) {
        return false;
    }
    let text = first.text;
    if INLINE_SENT.iter().any(|sent| text.contains(sent))
        && INLINE_SUBJECT.iter().any(|subject| text.contains(subject))
    {
        return true;
    }
    for slot in [NEXT, AFTER_NEXT] {
        let Some(line) = window.line(slot) else {
            return false;
        };
        if label(line.text).is_some_and(|label| is_one_of(label, SENT_LABELS)) {
            return true;
        }
        if is_blank(line.text) {
            return false;
        }
    }
    false
}

/// The underscore (or dash) rule Outlook puts right above its header.
fn rule_above(window: &Window<'_>) -> Option<usize> {
    let above = window.line(PREVIOUS)?;
    let text = above.text.trim();
    let is_rule = text.len() >= MIN_RULE_LEN
        && (text.bytes().all(|b| b == b'_') || text.bytes().all(|b| b == b'-'));
    is_rule.then_some(above.start)
}

/// A header field's label: the text before a colon near the start, without
/// Gmail's `*bold*` stars or French's space before the colon.
fn label(line: &str) -> Option<&str> {
    let line = line.trim_start().trim_start_matches('*');
    let colon = line
        .bytes()
        .take(MAX_LABEL_LEN + 2)
        .position(|b| b == b':')?;
    let label = line[..colon].trim_end_matches('*').trim_end();
    (!label.is_empty()).then_some(label)
}

fn is_one_of(word: &str, words: &[&str]) -> bool {
    words
        .iter()
        .any(|candidate| candidate.eq_ignore_ascii_case(word))
}

/// Whether `line` starts with `word` followed by whitespace (ASCII case
/// ignored), so "On" does not match "Once".
fn starts_with_word(line: &str, word: &str) -> bool {
    line.get(..word.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(word))
        && line[word.len()..]
            .chars()
            .next()
            .is_some_and(char::is_whitespace)
}

/// Whether one of `words` is a whole word of `line`.
fn has_word(line: &str, words: &[&str]) -> bool {
    line.split(|c: char| !c.is_alphanumeric())
        .any(|word| is_one_of(word, words))
}

/// Ends with a colon, ASCII or full-width (CJK clients).
fn ends_with_colon(line: &str) -> bool {
    line.ends_with(':') || line.ends_with('：')
}

/// Trims the kept text: a trailer as its last line, then the blank lines
/// around it. The first line keeps its indentation.
fn new_text(kept: &str) -> &str {
    let mut kept = kept.trim_end();
    let last_start = kept.rfind('\n').map_or(0, |ix| ix + 1);
    if is_trailer(&kept[last_start..]) {
        kept = kept[..last_start].trim_end();
    }
    let leading = kept.len() - kept.trim_start().len();
    let start = kept[..leading].rfind('\n').map_or(0, |ix| ix + 1);
    &kept[start..]
}

/// "Sent from my iPhone", "Get Outlook for Android" and their kin.
fn is_trailer(line: &str) -> bool {
    let line = line.trim();
    line.len() <= MAX_MARKER_LEN
        && TRAILERS.iter().any(|trailer| {
            line.get(..trailer.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(trailer))
        })
}

/// One line of the text: where it starts, and its content without the line
/// ending (LF or CRLF).
#[derive(Clone, Copy)]
struct Line<'a> {
    start: usize,
    text: &'a str,
}

/// Window slots: two lines above the current one, and two below.
const BEFORE_PREVIOUS: usize = 0;
const PREVIOUS: usize = 1;
const CURRENT: usize = 2;
const NEXT: usize = 3;
const AFTER_NEXT: usize = 4;
const WINDOW: usize = 5;

/// The lines around the current one. Each line of the text is split off
/// once, when it enters the window; the tests see lines only through
/// [`Window::line`], which counts the octets handed out.
struct Window<'a> {
    text: &'a str,
    /// Where the next line to enter the window starts.
    next_start: usize,
    slots: [Option<Line<'a>>; WINDOW],
    examined: Cell<usize>,
}

impl<'a> Window<'a> {
    fn new(text: &'a str) -> Self {
        let mut window = Self {
            text,
            next_start: 0,
            slots: [None; WINDOW],
            examined: Cell::new(0),
        };
        for slot in CURRENT..WINDOW {
            window.slots[slot] = window.split_line();
        }
        window
    }

    fn advance(&mut self) {
        self.slots.rotate_left(1);
        self.slots[WINDOW - 1] = self.split_line();
    }

    fn line(&self, slot: usize) -> Option<Line<'a>> {
        let line = self.slots.get(slot).copied().flatten()?;
        self.examined.set(self.examined.get() + line.text.len() + 1);
        Some(line)
    }

    fn split_line(&mut self) -> Option<Line<'a>> {
        let start = self.next_start;
        let rest = self.text.get(start..).filter(|rest| !rest.is_empty())?;
        let (text, len) = match rest.find('\n') {
            Some(end) => (&rest[..end], end + 1),
            None => (rest, rest.len()),
        };
        self.next_start = start + len;
        let text = text.strip_suffix('\r').unwrap_or(text);
        Some(Line { start, text })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn strip(text: &str) -> &str {
        strip_reply(text)
    }

    #[test]
    fn gmail() {
        let text = "Sounds good, see you Thursday.\n\
                    \n\
                    On Tue, Mar 12, 2024 at 10:15 AM John Doe <john@example.com> wrote:\n\
                    \n\
                    > Can we meet on Thursday?\n\
                    >\n\
                    > John\n";
        assert_eq!(strip(text), "Sounds good, see you Thursday.");
    }

    #[test]
    fn gmail_wrapped_header() {
        let two_lines = "Yes.\n\
                         \n\
                         On Tue, Mar 12, 2024 at 10:15 AM Jonathan Doe-Smithson <\n\
                         jonathan.doe-smithson@example.com> wrote:\n\
                         \n\
                         > Ready?\n";
        assert_eq!(strip(two_lines), "Yes.");
        let three_lines = "Yes.\n\
                           \n\
                           On Tue, Mar 12, 2024 at 10:15 AM\n\
                           Jonathan Doe-Smithson <jonathan.doe-smithson@example.com>\n\
                           wrote:\n\
                           \n\
                           > Ready?\n";
        assert_eq!(strip(three_lines), "Yes.");
    }

    #[test]
    fn outlook_desktop() {
        let text = "Thanks, I'll send it today.\r\n\
                    \r\n\
                    -----Original Message-----\r\n\
                    From: John Doe <john@example.com>\r\n\
                    Sent: Tuesday, March 12, 2024 10:15 AM\r\n\
                    To: Jane Roe <jane@example.com>\r\n\
                    Subject: Report\r\n\
                    \r\n\
                    Could you send the report?\r\n";
        assert_eq!(strip(text), "Thanks, I'll send it today.");
    }

    #[test]
    fn outlook_header_block_under_a_rule() {
        let text = "Approved.\r\n\
                    \r\n\
                    ________________________________\r\n\
                    From: John Doe <john@example.com>\r\n\
                    Sent: Tuesday, March 12, 2024 10:15\r\n\
                    To: Jane Roe <jane@example.com>\r\n\
                    Subject: Budget\r\n\
                    \r\n\
                    Please approve.\r\n";
        assert_eq!(strip(text), "Approved.");
        let bold = "Approved.\n\n*From:* John Doe <john@example.com>\n\
                    *Sent:* Tuesday, March 12, 2024 10:15\n*Subject:* Budget\n";
        assert_eq!(strip(bold), "Approved.");
        let mac = "Approved.\n\nFrom: John Doe <john@example.com>\n\
                   Date: Tuesday, 12 March 2024 at 10:15\nTo: Jane\n";
        assert_eq!(strip(mac), "Approved.");
    }

    #[test]
    fn outlook_web_one_line_header() {
        let text = "Works for me.\n\
                    \n\
                    From: John Doe <john@example.com> Sent: Tuesday, March 12, 2024 10:15 AM \
                    To: Jane Roe <jane@example.com> Subject: Re: Q3 numbers\n\
                    \n\
                    Numbers attached.\n";
        assert_eq!(strip(text), "Works for me.");
    }

    #[test]
    fn apple_mail() {
        let text = "Perfect, thanks!\n\
                    \n\
                    Sent from my iPhone\n\
                    \n\
                    > On 12 Mar 2024, at 10:15, John Doe <john@example.com> wrote:\n\
                    > \n\
                    > Here it is.\n";
        assert_eq!(strip(text), "Perfect, thanks!");
        let unquoted_header = "Perfect.\n\
                               \n\
                               On 12 Mar 2024, at 10:15, John Doe <john@example.com> wrote:\n\
                               \n\
                               Here it is.\n";
        assert_eq!(strip(unquoted_header), "Perfect.");
    }

    #[test]
    fn thunderbird() {
        let text = "See below.\n\
                    \n\
                    On 3/12/24 10:15 AM, John Doe wrote:\n\
                    > Question?\n";
        assert_eq!(strip(text), "See below.");
        let old_style = "See below.\n\nJohn Doe wrote:\n> Question?\n";
        assert_eq!(strip(old_style), "See below.");
        let blank_between = "See below.\n\nJohn Doe wrote:\n\n> Question?\n";
        assert_eq!(strip(blank_between), "See below.");
        let forward = "FYI\n\n-------- Forwarded Message --------\nSubject: x\nDate: y\n";
        assert_eq!(strip(forward), "FYI");
    }

    #[test]
    fn german() {
        let text = "Passt mir gut.\n\
                    \n\
                    Am Di., 12. März 2024 um 10:15 Uhr schrieb Max Mustermann <max@example.de>:\n\
                    > Passt dir Donnerstag?\n";
        assert_eq!(strip(text), "Passt mir gut.");
        let outlook = "Passt.\n\nVon: Max Mustermann <max@example.de>\n\
                       Gesendet: Dienstag, 12. März 2024 10:15\nAn: Erika\nBetreff: Termin\n";
        assert_eq!(strip(outlook), "Passt.");
        let original = "Passt.\n\n-----Ursprüngliche Nachricht-----\nVon: Max\n";
        assert_eq!(strip(original), "Passt.");
        let iphone = "Passt.\n\nVon meinem iPhone gesendet\n";
        assert_eq!(strip(iphone), "Passt.");
    }

    #[test]
    fn french() {
        // Gmail puts a no-break space before the colon.
        let text = "Ça me va.\n\
                    \n\
                    Le mar. 12 mars 2024 à 10:15, Jean Dupont <jean@example.fr> a écrit\u{a0}:\n\
                    \n\
                    > Jeudi ?\n";
        assert_eq!(strip(text), "Ça me va.");
        let outlook = "Ça me va.\n\nDe : Jean Dupont <jean@example.fr>\n\
                       Envoyé : mardi 12 mars 2024 10:15\nÀ : Marie\nObjet : Réunion\n";
        assert_eq!(strip(outlook), "Ça me va.");
        let original = "Ça me va.\n\n-----Message d'origine-----\nDe : Jean\n";
        assert_eq!(strip(original), "Ça me va.");
    }

    #[test]
    fn spanish() {
        let text = "Me parece bien.\n\
                    \n\
                    El mar, 12 mar 2024 a las 10:15, Juan Pérez (<juan@example.es>) escribió:\n\
                    > ¿El jueves?\n";
        assert_eq!(strip(text), "Me parece bien.");
        let outlook = "Bien.\n\nDe: Juan Pérez <juan@example.es>\n\
                       Enviado: martes, 12 de marzo de 2024 10:15\nPara: Ana\nAsunto: Reunión\n";
        assert_eq!(strip(outlook), "Bien.");
    }

    #[test]
    fn dutch() {
        let text = "Prima.\n\
                    \n\
                    Op di 12 mrt 2024 om 10:15 schreef Jan Jansen <jan@example.nl>:\n\
                    \n\
                    > Donderdag?\n";
        assert_eq!(strip(text), "Prima.");
        let outlook = "Prima.\n\nVan: Jan Jansen <jan@example.nl>\n\
                       Verzonden: dinsdag 12 maart 2024 10:15\nAan: Piet\nOnderwerp: Overleg\n";
        assert_eq!(strip(outlook), "Prima.");
    }

    #[test]
    fn signature() {
        let text = "Hello,\n\nthe build is green.\n\n-- \nJane Roe\nExample Corp\n";
        assert_eq!(strip(text), "Hello,\n\nthe build is green.");
        let trimmed_space = "Hello.\n--\nJane\n";
        assert_eq!(strip(trimmed_space), "Hello.");
        let crlf = "Hello.\r\n-- \r\nJane\r\n";
        assert_eq!(strip(crlf), "Hello.");
    }

    #[test]
    fn trailers() {
        assert_eq!(strip("On my way.\n\nSent from my iPhone\n"), "On my way.");
        assert_eq!(
            strip("Yes\n\nGet Outlook for iOS<https://aka.ms/o0ukef>\n"),
            "Yes"
        );
        assert_eq!(strip("Sí.\n\nEnviado desde mi iPhone"), "Sí.");
        assert_eq!(strip("Sent from my iPhone"), "");
        // Only as the last line: mid-text it is the sender's own sentence.
        let prose = "Sent from my desk, this one.\nMore text.";
        assert_eq!(strip(prose), prose);
    }

    #[test]
    fn no_quote_is_unchanged_but_trimmed() {
        let text = "Hi team,\n\nthe release is out.\n\n\nCheers,\nJane";
        assert_eq!(strip(text), text);
        assert_eq!(strip(&format!("\n\n  \n{text}\n\n \n")), text);
        assert_eq!(
            strip("   indented first line\nsecond"),
            "   indented first line\nsecond"
        );
        assert_eq!(strip(""), "");
        assert_eq!(strip("\r\n\r\n"), "");
    }

    #[test]
    fn crlf_inside_the_new_text_stays() {
        let text =
            "One\r\n\r\nTwo\r\n\r\nOn Tue, Mar 12, 2024 at 10:15 AM J <j@x> wrote:\r\n> q\r\n";
        assert_eq!(strip(text), "One\r\n\r\nTwo");
    }

    #[test]
    fn only_a_quote_is_empty() {
        assert_eq!(strip("> just\n> quoted\n"), "");
        assert_eq!(strip("On 1 Jan 2024, J <j@x> wrote:\n> q\n"), "");
        assert_eq!(strip("\n\n-----Original Message-----\nFrom: x\n"), "");
    }

    #[test]
    fn greater_than_inside_a_sentence_is_not_a_quote() {
        let text = "Values > 5 are rejected,\nand a -> b maps.\nSo x>y holds.";
        assert_eq!(strip(text), text);
    }

    #[test]
    fn prose_that_looks_like_a_header_is_kept() {
        // No date, no colon at the end, or a word that only starts with "On".
        let text = "On second thought, here is what I wrote:\n\
                    Once upon 1 time he wrote:\n\
                    On Monday at 10 we meet.\n\
                    From: the team\n\
                    Thanks";
        assert_eq!(strip(text), text);
    }

    #[test]
    fn a_line_starting_like_a_header_above_one_is_kept() {
        let text = "On Friday at 3 we ship.\n\
                    On Tue, Mar 12, 2024 at 10:15 AM John Doe <john@example.com> wrote:\n\
                    > Ship when?\n";
        assert_eq!(strip(text), "On Friday at 3 we ship.");
    }

    #[test]
    fn inline_reply_keeps_only_the_text_before_the_first_quote() {
        let text = "Answers inline.\n\n> First question?\nYes.\n> Second?\nNo.\n";
        assert_eq!(strip(text), "Answers inline.");
        assert_eq!(strip("> Question?\nBottom-posted answer.\n"), "");
    }

    /// Bodies built to make a careless scanner quadratic: headers that never
    /// close, quote lines, almost-attributions, one endless line.
    fn hostile(size: usize) -> Vec<String> {
        let repeat = |piece: &str| piece.repeat(size / piece.len() + 1);
        vec![
            repeat("On 1 Jan 2024 John <j@x>\n"),
            repeat("John 1 wrote: \n"),
            repeat("On On On 1 wrote wrote "),
            repeat("From: a\n"),
            repeat("-----Original-----\n"),
            repeat("x\n") + &repeat("On 1 wrote:\n"),
            repeat("x\n") + &repeat(">\n"),
            repeat("x\n") + &repeat("> On 1 wrote:\n>> On 2 wrote:\n"),
            repeat("é\u{a0}\r\n"),
        ]
    }

    #[test]
    fn work_is_linear_in_the_input() {
        for (small, large) in hostile(64 * 1024).iter().zip(hostile(128 * 1024).iter()) {
            let (_, small_cost) = strip_reply_counting(small);
            let (_, large_cost) = strip_reply_counting(large);
            assert!(
                small_cost <= 8 * small.len() + 8,
                "{small_cost} for {}",
                small.len()
            );
            assert!(
                large_cost * 10 <= small_cost * 22 + 10,
                "{small_cost} then {large_cost} for twice the input"
            );
        }
    }

    #[test]
    fn four_megabytes_of_hostile_input_complete() {
        for text in hostile(4 << 20) {
            let out = strip(&text);
            assert!(out.len() <= text.len());
        }
    }

    /// Pieces of replies and near-misses, plus arbitrary text.
    fn body() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("> ".to_owned()),
            Just(">".to_owned()),
            Just("On 1 Jan 2024, J <j@x>".to_owned()),
            Just(" wrote:".to_owned()),
            Just("Am 1. schrieb X:".to_owned()),
            Just("a écrit\u{a0}:".to_owned()),
            Just("From: a".to_owned()),
            Just("Sent: b Subject: c".to_owned()),
            Just("-----Original Message-----".to_owned()),
            Just("____________".to_owned()),
            Just("-- ".to_owned()),
            Just("--".to_owned()),
            Just("Sent from my iPhone".to_owned()),
            Just("\n".to_owned()),
            Just("\r\n".to_owned()),
            Just("\r".to_owned()),
            Just(" ".to_owned()),
            Just("\u{a0}".to_owned()),
            Just("：".to_owned()),
            "\\PC{0,12}",
            any::<String>(),
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

        /// Never panics, and the result is a run of whole lines of the input
        /// (the last one possibly without its trailing whitespace).
        #[test]
        fn output_is_whole_lines_of_the_input(text in body()) {
            let out = strip_reply(&text);
            let offset = (out.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
            prop_assert!(offset <= text.len());
            prop_assert_eq!(text.get(offset..offset + out.len()), Some(out));
            prop_assert!(offset == 0 || text[..offset].ends_with('\n'));
            let input_lines: Vec<&str> = text.split('\n').collect();
            let out_lines: Vec<&str> = out.split('\n').filter(|_| !out.is_empty()).collect();
            for (ix, line) in out_lines.iter().enumerate() {
                let whole = input_lines.contains(line);
                let last = ix + 1 == out_lines.len()
                    && input_lines.iter().any(|input| input.trim_end() == *line);
                prop_assert!(whole || last, "{line:?} is not a line of the input");
            }
            prop_assert_eq!(out, out.trim_end());
        }
    }
}
