//! The parsed DOM → html2text's DOM, within limits that keep html2text's
//! rendering work linear in the size of the HTML.
//!
//! Where html2text's work is more than linear (html2text 0.17.4, raw mode):
//! - every quote, list, heading, `<dd>` and table cell is rendered into a
//!   sub-renderer whose lines are then copied into the enclosing one, each
//!   with a prefix (`> `, `* `, `# `): a line nested n deep is copied n times
//!   and carries n prefixes, so output is quadratic in nesting (100 KB of
//!   nested `<blockquote>` with text rendered to 118 MB in 61 s);
//! - a table row is given a copy of the table's column widths, so a table
//!   costs rows × columns: one wide row (or a large `colspan`, or `rowspan`
//!   filler cells) makes every row expensive (100 KB → 474 MB of memory);
//! - a new block scans the lines already rendered until one has text, so
//!   blank lines (`<br>`, newlines in `<pre>`) ahead of many blocks cost
//!   blank lines × blocks;
//! - an `id` becomes a zero-width fragment marker that the same scan steps
//!   over one by one;
//! - each nested `<s>`/`<del>` adds a strike-through mark to every character;
//! - a link adds a footnote line.
//!
//! So the copy, one pass in document order, changes nothing in the text of
//! ordinary mail:
//! - it copies only what the rendering reads: `<head>`, `<script>`,
//!   `<style>`, `<template>` without their content (html2text renders none),
//!   comments emptied; of the attributes, `href`, `src`, `alt`, a sensible
//!   `start` on `<ol>` and the first `id`. `colspan` and `rowspan` go: raw
//!   mode does not use column widths, and some combinations crash html2text;
//! - it splits table rows after [`MAX_COLUMNS`] cells (raw mode reads cells
//!   one after another, so the text is the same);
//! - it keeps at most [`MAX_BLANK_LINES`] line breaks and [`MAX_FRAGMENTS`]
//!   `id`s in a row without visible text between them;
//! - it renders a strike-through inside another as emphasis, which plain
//!   text does not mark (the outer one's marks look the same).
//!
//! And it leaves content out, making the result lossy, where the document is
//! beyond what mail needs:
//! - quotes, lists, headings and tables nested deeper than [`MAX_NESTING`]
//!   become plain blocks (`<div>`): their text stays, their markers and
//!   prefixes go;
//! - links after the first [`MAX_LINKS`] lose their target (not their text);
//! - elements deeper than [`super::dom::MAX_DEPTH`] go (not their text);
//! - it stops at [`MAX_RENDER_WORK`], an estimate of the bytes html2text
//!   moves: each text byte, and each line with the prefixes it will carry,
//!   counts once for every sub-renderer it is copied through (a text node is
//!   cut where the estimate reaches the limit).
//!
//! The walk is iterative and takes the parsed tree apart as it goes.

use html2text::RcDom;
use html5ever::tendril::StrTendril;
use html5ever::tree_builder::{ElementFlags, NodeOrText, TreeSink};
use html5ever::{Attribute, QualName, local_name, ns};

use super::dom::{Handle, MAX_DEPTH, NodeData};

/// Quotes, lists, headings, definitions and tables nested deeper than this
/// are rendered as plain blocks.
pub(super) const MAX_NESTING: usize = 32;

/// Links rendered with a footnote; later links keep only their text.
pub(super) const MAX_LINKS: usize = 1_000;

/// Line breaks (`<br>`, newlines in `<pre>`) kept in a row without text
/// between them.
pub(super) const MAX_BLANK_LINES: usize = 8;

/// Fragment markers (`id` attributes) kept in a row without text between
/// them; later ones are left out.
const MAX_FRAGMENTS: usize = 64;

/// Cells per table row; longer rows continue in a new row.
const MAX_COLUMNS: usize = 16;

/// The estimate of html2text's rendering work (see [`Walk::line_work`])
/// after which the rest of the document is left out. A 50 KB newsletter
/// costs about 0.5 M; 32 M is some 50 ms of rendering.
pub(super) const MAX_RENDER_WORK: usize = 32 << 20;

/// Work of a line apart from its text and prefixes (allocations, list
/// links), in bytes.
const LINE_WORK: usize = 32;

/// Columns a tab in `<pre>` may expand to.
const TAB_WIDTH: usize = 8;

/// Width of the largest `start` kept on an `<ol>`: html2text overflows on
/// one near the ends of i64.
const MAX_LIST_START: u64 = 1_000_000;

/// How often (in nodes) the walk asks the caller whether to go on.
const CHECK_EVERY: usize = 1024;

/// html2text's DOM for a parsed document, ready to render.
pub(super) struct Pruned {
    pub(super) dom: RcDom,
    /// Content was left out: structure flattened, link targets dropped, the
    /// work limit reached, or `keep_going` said stop.
    pub(super) lossy: bool,
    /// The estimate of rendering work the copy was charged.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) work: usize,
}

/// Copies the tree under `document` into html2text's DOM (see the module
/// documentation), emptying it on the way. Asks `keep_going` every
/// [`CHECK_EVERY`] nodes and stops, lossy, when it says no.
pub(super) fn prune(document: &Handle, keep_going: &dyn Fn() -> bool) -> Pruned {
    let mut walk = Walk {
        dom: RcDom::default(),
        links: 0,
        blank_lines: 0,
        fragments: 0,
        lossy: false,
        work: 0,
    };
    let root = Context {
        depth: 0,
        nesting: 0,
        prefix: 0,
        flatten: false,
        struck: false,
        pre: false,
        hidden: false,
        parent: Parent::Other,
    };
    let mut stack = vec![(document.clone(), walk.dom.document.clone(), root)];
    let mut visited = 0usize;
    while let Some((node, target, context)) = stack.pop() {
        visited += 1;
        if walk.work > MAX_RENDER_WORK || (visited % CHECK_EVERY == 0 && !keep_going()) {
            walk.lossy = true;
            break;
        }
        let children = std::mem::take(&mut *node.children.borrow_mut());
        let Some((output, inner)) = walk.copy(&node, &children, &target, context) else {
            continue;
        };
        // Children are pushed in reverse so that they pop in order; the
        // cells of a long row go to continuation rows, which follow the
        // row in its section because they are added now.
        let mut row = output.clone();
        let mut cells = 0;
        let start = stack.len();
        for child in children {
            if inner.parent == Parent::Row && is_element(&child, &["td", "th"]) {
                if cells > 0 && cells % MAX_COLUMNS == 0 {
                    row = walk.dom.create_element(
                        QualName::new(None, ns!(html), local_name!("tr")),
                        Vec::new(),
                        ElementFlags::default(),
                    );
                    walk.dom
                        .append(&target, NodeOrText::AppendNode(row.clone()));
                }
                cells += 1;
                stack.push((child, row.clone(), inner));
            } else {
                stack.push((child, output.clone(), inner));
            }
        }
        stack[start..].reverse();
    }
    Pruned {
        dom: walk.dom,
        lossy: walk.lossy,
        work: walk.work,
    }
}

/// Where a node sits, as far as its rendering is concerned.
#[derive(Clone, Copy)]
struct Context {
    /// Elements copied above it.
    depth: usize,
    /// Quotes, lists, headings, definitions and tables copied above it:
    /// html2text copies its lines once per level.
    nesting: usize,
    /// Width of the prefixes those levels put before each of its lines.
    prefix: usize,
    /// Inside a structure copied as plain blocks.
    flatten: bool,
    /// Inside `<s>` or `<del>`.
    struck: bool,
    /// Inside `<pre>`: whitespace kept, newlines are line breaks.
    pre: bool,
    /// In content html2text does not render: inside `<svg>` (only its
    /// title is read), or in a table, list or definition list where it
    /// keeps only rows, cells, items and terms. Text here is not visible.
    hidden: bool,
    parent: Parent,
}

/// Parents whose children html2text filters.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Parent {
    Table,
    TableSection,
    Row,
    OrderedList,
    DefinitionList,
    Other,
}

impl Parent {
    /// Of a parent's children, the elements html2text renders (`None`:
    /// any element and text).
    fn renders(self) -> Option<&'static [&'static str]> {
        match self {
            Parent::Table => Some(&["thead", "tbody"]),
            Parent::TableSection => Some(&["tr"]),
            Parent::Row => Some(&["td", "th"]),
            Parent::OrderedList => Some(&["li"]),
            Parent::DefinitionList => Some(&["dt", "dd"]),
            Parent::Other => None,
        }
    }
}

struct Walk {
    dom: RcDom,
    links: usize,
    /// Line breaks since the last visible text.
    blank_lines: usize,
    /// Fragment markers since the last visible text.
    fragments: usize,
    lossy: bool,
    work: usize,
}

impl Walk {
    /// Copies one node (not its children) into `target`. Returns where its
    /// children go and their context, or `None` when they are left out.
    fn copy(
        &mut self,
        node: &Handle,
        children: &[Handle],
        target: &html2text::Handle,
        context: Context,
    ) -> Option<(html2text::Handle, Context)> {
        // A child html2text renders and then filters out.
        let filtered = |tag: &str| {
            context
                .parent
                .renders()
                .is_some_and(|tags| !tags.contains(&tag))
        };
        match &node.data {
            NodeData::Document => Some((target.clone(), context)),
            NodeData::Other => {
                self.placeholder(target);
                None
            }
            NodeData::Text(contents) => {
                let context = Context {
                    hidden: context.hidden || filtered(""),
                    ..context
                };
                let text = self.text(&contents.borrow(), context);
                self.dom.append(target, NodeOrText::AppendText(text));
                None
            }
            NodeData::Element { name, attrs, .. } => {
                let html = (name.ns == ns!(html)).then_some(&*name.local);
                let tag = html.unwrap_or("");
                if matches!(
                    tag,
                    "head" | "script" | "style" | "link" | "meta" | "hr" | "template"
                ) {
                    // html2text renders none of these (but the fragment
                    // marker of an `id`): copied without their content.
                    let attrs = self.attributes(tag, attrs, context);
                    let output =
                        self.dom
                            .create_element(name.clone(), attrs, ElementFlags::default());
                    self.dom.append(target, NodeOrText::AppendNode(output));
                    return None;
                }
                let context = Context {
                    hidden: context.hidden || filtered(tag),
                    ..context
                };
                if tag == "br" {
                    if self.blank_lines >= MAX_BLANK_LINES {
                        self.placeholder(target);
                        return None;
                    }
                    self.blank_lines += 1;
                }
                if context.depth >= MAX_DEPTH {
                    // Too deep for an element of its own: its text goes to
                    // the nearest copied ancestor.
                    self.lossy = true;
                    let context = Context {
                        flatten: true,
                        parent: Parent::Other,
                        ..context
                    };
                    return Some((target.clone(), context));
                }
                let flatten =
                    context.flatten || (is_nesting(tag) && context.nesting >= MAX_NESTING);
                self.lossy |= flatten && !context.flatten;
                let tag = if (flatten && is_structure(tag)) || !fits(tag, context.parent) {
                    // A table part outside its table would make html2text
                    // fail.
                    "div"
                } else if context.struck && matches!(tag, "s" | "del") {
                    // Renders like a strike-through, without the marks.
                    "em"
                } else {
                    tag
                };
                self.work += self.line_work(context);
                let attrs = self.attributes(tag, attrs, context);
                let name = match html {
                    Some(_) => QualName::new(None, ns!(html), tag.into()),
                    // Foreign (SVG, MathML) elements keep their namespace.
                    None => name.clone(),
                };
                let svg = name.ns == ns!(svg) && name.local == local_name!("svg");
                let nests = !flatten && is_nesting(tag);
                let prefix = match tag {
                    _ if !nests => 0,
                    "ol" => ordered_prefix(&attrs, children),
                    "table" => 0,
                    // "# " to "###### ".
                    "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => tag[1..].parse().unwrap_or(6) + 1,
                    // "> ", "* ", and the indent of "<dd>".
                    _ => 2,
                };
                let output = self
                    .dom
                    .create_element(name, attrs, ElementFlags::default());
                self.dom
                    .append(target, NodeOrText::AppendNode(output.clone()));
                // Strike-through and <pre> belong to a sub-renderer: they
                // do not carry into a nested quote, item, heading or cell.
                let renderer = nests || matches!(tag, "td" | "th");
                let inner = Context {
                    depth: context.depth + 1,
                    nesting: context.nesting + usize::from(nests),
                    prefix: context.prefix + prefix,
                    flatten,
                    struck: !renderer && (context.struck || matches!(tag, "s" | "del")),
                    pre: !renderer && (context.pre || tag == "pre"),
                    hidden: context.hidden || svg,
                    parent: match tag {
                        "table" => Parent::Table,
                        "thead" | "tbody" => Parent::TableSection,
                        "tr" => Parent::Row,
                        "ol" => Parent::OrderedList,
                        "dl" => Parent::DefinitionList,
                        _ => Parent::Other,
                    },
                };
                Some((output, inner))
            }
        }
    }

    /// The estimated work of one line in `context`: html2text copies it,
    /// with the prefixes it has so far, once per nesting level. Charged for
    /// every element, whether or not it starts a line.
    fn line_work(&self, context: Context) -> usize {
        (context.nesting + 1) * (LINE_WORK + context.prefix)
    }

    /// A text node's text for html2text: within [`MAX_RENDER_WORK`], and in
    /// `<pre>` without newlines beyond [`MAX_BLANK_LINES`] in a row.
    fn text(&mut self, text: &StrTendril, context: Context) -> StrTendril {
        // A struck-through character is followed by a two-byte mark.
        let per_byte = (context.nesting + 1) * if context.struck { 3 } else { 1 };
        if !context.pre || context.hidden {
            if !context.hidden && text.chars().any(is_visible) {
                self.visible_text();
            }
            let fits = MAX_RENDER_WORK.saturating_sub(self.work) / per_byte;
            if text.len() <= fits {
                self.work += text.len() * per_byte;
                return text.clone();
            }
            self.exhausted();
            let mut end = fits;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            return StrTendril::from_slice(&text[..end]);
        }
        let line = self.line_work(context);
        let mut kept: Option<String> = None;
        for (at, c) in text.char_indices() {
            let work = match c {
                '\n' if self.blank_lines >= MAX_BLANK_LINES => {
                    kept.get_or_insert_with(|| text[..at].to_owned());
                    continue;
                }
                '\n' => {
                    self.blank_lines += 1;
                    line
                }
                '\t' => TAB_WIDTH * per_byte,
                c => {
                    if is_visible(c) {
                        self.visible_text();
                    }
                    c.len_utf8() * per_byte
                }
            };
            if self.work + work > MAX_RENDER_WORK {
                self.exhausted();
                return StrTendril::from_slice(kept.as_deref().unwrap_or(&text[..at]));
            }
            self.work += work;
            if let Some(kept) = &mut kept {
                kept.push(c);
            }
        }
        match kept {
            Some(kept) => StrTendril::from_slice(&kept),
            None => text.clone(),
        }
    }

    fn visible_text(&mut self) {
        self.blank_lines = 0;
        self.fragments = 0;
    }

    /// Stands in for a node left out, so that the text on either side stays
    /// two text nodes (in a list, each is an item).
    fn placeholder(&mut self, target: &html2text::Handle) {
        let comment = self.dom.create_comment(StrTendril::new());
        self.dom.append(target, NodeOrText::AppendNode(comment));
    }

    /// Marks the work limit reached: the walk stops at the next node.
    fn exhausted(&mut self) {
        self.lossy = true;
        self.work = MAX_RENDER_WORK + 1;
    }

    /// The attributes html2text reads, within the link and fragment limits.
    fn attributes(&mut self, tag: &str, attrs: &[Attribute], context: Context) -> Vec<Attribute> {
        let mut kept = self.rendered_attributes(tag, attrs, context);
        // html2text marks the first `id` (or an `<a>`'s `name`) as a
        // fragment start.
        let fragment = attrs.iter().find(|attr| {
            attr.name.ns == ns!()
                && (attr.name.local == local_name!("id")
                    || (tag == "a" && attr.name.local == local_name!("name")))
        });
        if let Some(fragment) = fragment {
            if self.fragments < MAX_FRAGMENTS {
                self.fragments += 1;
                kept.push(fragment.clone());
            }
        }
        kept
    }

    /// The attributes html2text renders, within the link limit.
    fn rendered_attributes(
        &mut self,
        tag: &str,
        attrs: &[Attribute],
        context: Context,
    ) -> Vec<Attribute> {
        let keep = |names: &[&str]| -> Vec<Attribute> {
            attrs
                .iter()
                .filter(|attr| attr.name.ns == ns!() && names.contains(&&*attr.name.local))
                .cloned()
                .collect()
        };
        let per_byte = context.nesting + 1;
        match tag {
            "a" => {
                let href = keep(&["href"]);
                let Some(target) = href.first() else {
                    return href;
                };
                if self.links >= MAX_LINKS {
                    self.lossy = true;
                    return Vec::new();
                }
                self.links += 1;
                // The footnote line, and the "[n]" marker in the text.
                self.work += target.value.len() + LINE_WORK + 8 * per_byte;
                href
            }
            "img" => {
                let kept = keep(&["src", "alt"]);
                self.work += kept.iter().map(|attr| attr.value.len()).sum::<usize>() * per_byte;
                kept
            }
            "ol" => {
                let mut kept = keep(&["start"]);
                kept.retain(|attr| list_start(attr).is_some());
                kept
            }
            _ => Vec::new(),
        }
    }
}

/// A `start` html2text can count from.
fn list_start(attr: &Attribute) -> Option<i64> {
    attr.value
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|start| start.unsigned_abs() <= MAX_LIST_START)
}

/// Width of the widest item number (`"12. "`) of an `<ol>`.
fn ordered_prefix(attrs: &[Attribute], children: &[Handle]) -> usize {
    let start = attrs
        .iter()
        .find(|attr| attr.name.local == local_name!("start"))
        .and_then(list_start)
        .unwrap_or(1);
    let items = children
        .iter()
        .filter(|child| is_element(child, &["li"]))
        .count();
    let last = start.saturating_add(i64::try_from(items).unwrap_or(i64::MAX));
    let width = |n: i64| n.to_string().len();
    width(start).max(width(last)) + 2
}

/// A character html2text renders as text. Anything else (whitespace,
/// control characters, U+200B) may leave a line blank.
fn is_visible(c: char) -> bool {
    !c.is_whitespace() && !c.is_control() && c != '\u{200b}'
}

/// Elements whose content html2text renders into a sub-renderer (or, for a
/// table, one per cell) and copies out again.
fn is_nesting(tag: &str) -> bool {
    matches!(
        tag,
        "blockquote" | "ul" | "ol" | "dd" | "table" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6"
    )
}

/// Elements that lose their meaning outside a copied structure.
fn is_structure(tag: &str) -> bool {
    is_nesting(tag)
        || matches!(
            tag,
            "li" | "dl" | "dt" | "thead" | "tbody" | "tfoot" | "tr" | "td" | "th" | "caption"
        )
}

/// Whether a table part sits where html2text expects it.
fn fits(tag: &str, parent: Parent) -> bool {
    match tag {
        "thead" | "tbody" => parent == Parent::Table,
        "tr" => parent == Parent::TableSection,
        "td" | "th" => parent == Parent::Row,
        _ => true,
    }
}

fn is_element(node: &Handle, tags: &[&str]) -> bool {
    matches!(&node.data, NodeData::Element { name, .. }
        if name.ns == ns!(html) && tags.contains(&&*name.local))
}
