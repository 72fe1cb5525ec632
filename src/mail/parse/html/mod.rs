//! HTML → plain text (html2text), bounded in time, memory and output.
//!
//! html2text alone can take far more than the size of its input: 100 KB of
//! nested `<blockquote>` rendered to 118 MB of text in 61 s, 6 MB of links
//! took 450 MB of memory. So the rendering is done in steps, each bounded:
//! 1. [`dom::parse`]: html5ever parses into a DOM of at most
//!    [`dom::MAX_NODES`] nodes and [`dom::MAX_DEPTH`] levels, fed in small
//!    chunks while the caller's `keep_going` and [`HTML_RENDER_BUDGET`] allow;
//! 2. [`prune::prune`]: the DOM is copied into html2text's, leaving out or
//!    simplifying what would make html2text's work grow faster than the
//!    input (deep nesting, wide tables, runs of blank lines, links beyond
//!    [`prune::MAX_LINKS`]), up to [`prune::MAX_RENDER_WORK`];
//! 3. html2text renders that DOM;
//! 4. the text is cut to at most 4× the size of the HTML and the caller's
//!    maximum.

mod dom;
mod prune;
#[cfg(test)]
mod tests;

use std::time::Instant;

use super::HTML_RENDER_BUDGET;
use super::headers::trimmed;

/// Render width for html2text: wide enough that paragraphs are never hard
/// wrapped (consumers re-flow text themselves).
const HTML_RENDER_WIDTH: usize = 10_000;

/// The text is at most this many times the size of the HTML.
const MAX_EXPANSION: usize = 4;

/// The text rendering of an HTML body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RenderedHtml {
    /// Trimmed plain text, at most `max_text` bytes and 4× the HTML.
    pub(super) text: String,
    /// `text` is not the whole document: the HTML was parsed only in part
    /// (time, `keep_going`, or size limits), content was left out to bound
    /// the rendering (structure flattened, link targets dropped, work
    /// limit), the text was cut at the size limit, or html2text failed.
    pub(super) truncated: bool,
}

/// Plain text for HTML-only mail: no decoration markers, link targets as
/// numbered footnotes, tables read cell by cell (e-mail tables are layout,
/// not data), no hard wrapping.
///
/// Best effort and bounded: parsing stops when `keep_going` returns false
/// (it is asked between input chunks and while the DOM is pruned) or after
/// [`HTML_RENDER_BUDGET`], and what was parsed is rendered; the work of
/// rendering is bounded, and at most linear in the size of the HTML; the
/// text is cut at a char boundary to `max_text` bytes and 4× the HTML. On an
/// html2text error the text is empty (and truncated).
pub(super) fn render_html(
    html: &str,
    max_text: usize,
    keep_going: &dyn Fn() -> bool,
) -> RenderedHtml {
    let deadline = Instant::now().checked_add(HTML_RENDER_BUDGET);
    let keep_going = || deadline.is_none_or(|deadline| Instant::now() < deadline) && keep_going();
    render_measured(html, max_text, &keep_going).0
}

/// Measures of the work a rendering took, for tests that check it grows
/// linearly with the input.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Debug, Clone, Copy)]
struct Work {
    /// Nodes created while parsing.
    parsed_nodes: usize,
    /// The pruning's estimate of html2text's rendering work.
    render_work: usize,
    /// Bytes html2text produced, before the text was cut.
    rendered_bytes: usize,
}

/// [`render_html`] without its clock (tests pass a deterministic
/// `keep_going`), and with the measures of the work done.
fn render_measured(
    html: &str,
    max_text: usize,
    keep_going: &dyn Fn() -> bool,
) -> (RenderedHtml, Work) {
    let parsed = dom::parse(html, keep_going);
    let pruned = prune::prune(&parsed.document, keep_going);
    drop(parsed.document);

    let config = html2text::config::plain_no_decorate()
        .link_footnotes(true)
        .raw_mode(true)
        .allow_width_overflow();
    let rendered = config
        .dom_to_render_tree(&pruned.dom)
        .and_then(|tree| config.render_to_string(tree, HTML_RENDER_WIDTH));
    drop(pruned.dom);
    let failed = rendered.is_err();
    let mut text = match rendered {
        Ok(text) => trimmed(text),
        Err(error) => {
            tracing::debug!(%error, "HTML could not be rendered as text");
            String::new()
        }
    };
    let rendered_bytes = text.len();

    let limit = max_text.min(html.len().saturating_mul(MAX_EXPANSION));
    let cut = text.len() > limit;
    if cut {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(text[..end].trim_end().len());
    }
    let truncated = parsed.cut_short || pruned.lossy || cut || failed;
    if truncated {
        tracing::debug!(
            parsed_in_part = parsed.cut_short,
            pruned = pruned.lossy,
            cut,
            rendered_bytes,
            "HTML rendering truncated"
        );
    }
    let work = Work {
        parsed_nodes: parsed.nodes,
        render_work: pruned.work,
        rendered_bytes,
    };
    (RenderedHtml { text, truncated }, work)
}
