//! HTML → plain text (html2text) within a time budget.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use super::headers::trimmed;

/// Render width for html2text: wide enough that paragraphs are never hard
/// wrapped (consumers re-flow text themselves).
const HTML_RENDER_WIDTH: usize = 10_000;

/// Plain text for HTML-only mail: no decoration markers, link targets as
/// numbered footnotes, tables read cell by cell (e-mail tables are layout,
/// not data), no hard wrapping. Input is fed for at most `budget`; on that
/// or any html2text error the best available text is returned.
pub(super) fn render_html(html: &str, budget: Duration) -> String {
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
pub(super) struct BudgetedReader<'a> {
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
