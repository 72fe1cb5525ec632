//! HTML → a DOM that stops growing at a node and a depth limit.
//!
//! html5ever builds the tree through [`TreeSink`]; this sink is html2text's
//! `RcDom` (less what the rendering never reads: parse errors, the doctype)
//! with two differences. It counts what it creates and, past
//! [`MAX_NODES`] nodes or [`MAX_DEPTH`] levels, stops inserting anything, so
//! the memory a document can take is bounded whatever its markup (one start
//! tag can make html5ever create many elements, see [`parse`]). And its nodes
//! are ours to read: the next step ([`super::prune`]) needs the text of each
//! node, which html2text's own DOM does not expose.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use html5ever::tendril::{StrTendril, TendrilSink};
use html5ever::tree_builder::{ElementFlags, NodeOrText, QuirksMode, TreeBuilderOpts, TreeSink};
use html5ever::{Attribute, ExpandedName, ParseOpts, QualName, local_name, ns};

/// Nodes (elements, text runs, comments) the parser may create before the
/// document is cut short. A 100 KB newsletter has a few thousand.
pub(super) const MAX_NODES: usize = 50_000;

/// Element nesting beyond which the document is cut short. html5ever's tree
/// building is quadratic in nesting depth (100,000 nested `<div>` take
/// ~26 s); browsers stop nesting at 512 as well.
pub(super) const MAX_DEPTH: usize = 512;

/// Bytes of HTML fed to html5ever between two checks of the caller's
/// `keep_going` (small, so one step cannot hide much parser work).
pub(super) const CHUNK: usize = 1024;

/// A parsed document and whether its source was parsed only in part.
pub(super) struct Parsed {
    pub(super) document: Handle,
    /// Input was left unparsed (`keep_going` said stop) or the DOM reached
    /// [`MAX_NODES`] or [`MAX_DEPTH`].
    pub(super) cut_short: bool,
    /// Nodes created while parsing, for tests that measure the work done.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) nodes: usize,
}

/// Parses `html` as a document (scripting disabled, as html2text does),
/// feeding it in [`CHUNK`]s and stopping before the next chunk once
/// `keep_going` returns false or the DOM is full.
///
/// The work of one chunk is bounded too: html5ever may create many elements
/// for one token (re-opening every unclosed formatting element after a
/// block), but a full sink drops them, and every element it keeps deepens
/// the tree towards [`MAX_DEPTH`].
pub(super) fn parse(html: &str, keep_going: &dyn Fn() -> bool) -> Parsed {
    let opts = ParseOpts {
        tree_builder: TreeBuilderOpts {
            scripting_enabled: false,
            ..TreeBuilderOpts::default()
        },
        ..ParseOpts::default()
    };
    let mut parser = html5ever::parse_document(BoundedDom::default(), opts);
    let mut rest = html;
    let mut stopped = false;
    while !rest.is_empty() {
        if parser.tokenizer.sink.sink.full.get() || !keep_going() {
            stopped = true;
            break;
        }
        let mut end = rest.len().min(CHUNK);
        while !rest.is_char_boundary(end) {
            end += 1;
        }
        let (chunk, tail) = rest.split_at(end);
        parser.process(StrTendril::from_slice(chunk));
        rest = tail;
    }
    let dom = parser.finish();
    Parsed {
        cut_short: stopped || dom.full.get(),
        nodes: dom.nodes.get(),
        document: dom.document,
    }
}

/// A DOM node. Parent links are weak; dropping a node frees its subtree
/// without recursion.
pub(super) struct Node {
    parent: Cell<Option<Weak<Node>>>,
    pub(super) children: RefCell<Vec<Handle>>,
    pub(super) data: NodeData,
    /// Nesting depth when the node was inserted (the document is 0).
    depth: Cell<usize>,
}

pub(super) type Handle = Rc<Node>;

pub(super) enum NodeData {
    Document,
    Element {
        name: QualName,
        attrs: Vec<Attribute>,
        /// The separate fragment html5ever fills for `<template>`; never
        /// rendered (html2text ignores it too).
        template_contents: Option<Handle>,
        mathml_annotation_xml_integration_point: bool,
    },
    Text(RefCell<StrTendril>),
    /// Comments and processing instructions: never rendered.
    Other,
}

impl Node {
    fn new(data: NodeData) -> Handle {
        Rc::new(Node {
            parent: Cell::new(None),
            children: RefCell::new(Vec::new()),
            data,
            depth: Cell::new(0),
        })
    }

    fn parent(&self) -> Option<Handle> {
        let weak = self.parent.take()?;
        let parent = weak.upgrade();
        self.parent.set(Some(weak));
        parent
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let mut nodes = std::mem::take(self.children.get_mut());
        nodes.extend(self.data.take_template_contents());
        while let Some(node) = nodes.pop() {
            // The last owner empties the node before it drops, so no drop
            // recurses; a node still owned elsewhere keeps its subtree.
            if let Ok(mut node) = Rc::try_unwrap(node) {
                nodes.append(node.children.get_mut());
                nodes.extend(node.data.take_template_contents());
            }
        }
    }
}

impl NodeData {
    fn take_template_contents(&mut self) -> Option<Handle> {
        match self {
            NodeData::Element {
                template_contents, ..
            } => template_contents.take(),
            _ => None,
        }
    }
}

/// The [`TreeSink`]: html2text's `RcDom` plus the node and depth limits.
struct BoundedDom {
    document: Handle,
    nodes: Cell<usize>,
    /// Set at [`MAX_NODES`] or [`MAX_DEPTH`]; from then on nothing is
    /// inserted.
    full: Cell<bool>,
    /// Returned by `elem_name` for a non-element, which html5ever never asks.
    no_name: QualName,
}

impl Default for BoundedDom {
    fn default() -> Self {
        BoundedDom {
            document: Node::new(NodeData::Document),
            nodes: Cell::new(0),
            full: Cell::new(false),
            no_name: QualName::new(None, ns!(), local_name!("")),
        }
    }
}

impl BoundedDom {
    fn create(&self, data: NodeData) -> Handle {
        let nodes = self.nodes.get() + 1;
        self.nodes.set(nodes);
        if nodes > MAX_NODES {
            self.full.set(true);
        }
        Node::new(data)
    }

    /// Inserts `child` as the last child of `parent`, or before `sibling`,
    /// unless the DOM is full or the insertion would exceed [`MAX_DEPTH`].
    fn insert(&self, parent: &Handle, sibling: Option<&Handle>, child: NodeOrText<Handle>) {
        if self.full.get() {
            return;
        }
        let child = match child {
            NodeOrText::AppendNode(node) => node,
            NodeOrText::AppendText(text) => {
                // Adjacent text is one node, as in html2text's DOM.
                let children = parent.children.borrow();
                let previous = match sibling {
                    Some(sibling) => index_of(&children, sibling)
                        .and_then(|index| index.checked_sub(1))
                        .map(|index| &children[index]),
                    None => children.last(),
                };
                if let Some(NodeData::Text(contents)) = previous.map(|node| &node.data) {
                    contents.borrow_mut().push_tendril(&text);
                    return;
                }
                drop(children);
                self.create(NodeData::Text(RefCell::new(text)))
            }
        };
        let depth = parent.depth.get() + 1;
        if depth > MAX_DEPTH {
            self.full.set(true);
            return;
        }
        detach(&child);
        let mut children = parent.children.borrow_mut();
        let index = match sibling {
            Some(sibling) => match index_of(&children, sibling) {
                Some(index) => index,
                None => return,
            },
            None => children.len(),
        };
        child.depth.set(depth);
        if let NodeData::Element {
            template_contents: Some(contents),
            ..
        } = &child.data
        {
            contents.depth.set(depth);
        }
        child.parent.set(Some(Rc::downgrade(parent)));
        children.insert(index, child);
    }
}

fn index_of(children: &[Handle], node: &Handle) -> Option<usize> {
    children.iter().position(|child| Rc::ptr_eq(child, node))
}

fn detach(node: &Handle) {
    if let Some(parent) = node.parent() {
        let mut children = parent.children.borrow_mut();
        if let Some(index) = index_of(&children, node) {
            children.remove(index);
        }
    }
    node.parent.set(None);
}

impl TreeSink for BoundedDom {
    type Handle = Handle;
    type Output = Self;
    type ElemName<'a> = ExpandedName<'a>;

    fn finish(self) -> Self {
        self
    }

    fn parse_error(&self, _msg: Cow<'static, str>) {}

    fn get_document(&self) -> Handle {
        self.document.clone()
    }

    fn elem_name<'a>(&'a self, target: &'a Handle) -> ExpandedName<'a> {
        match &target.data {
            NodeData::Element { name, .. } => name.expanded(),
            _ => self.no_name.expanded(),
        }
    }

    fn create_element(&self, name: QualName, attrs: Vec<Attribute>, flags: ElementFlags) -> Handle {
        self.create(NodeData::Element {
            name,
            attrs,
            template_contents: flags.template.then(|| Node::new(NodeData::Document)),
            mathml_annotation_xml_integration_point: flags.mathml_annotation_xml_integration_point,
        })
    }

    fn create_comment(&self, _text: StrTendril) -> Handle {
        self.create(NodeData::Other)
    }

    fn create_pi(&self, _target: StrTendril, _data: StrTendril) -> Handle {
        self.create(NodeData::Other)
    }

    fn append(&self, parent: &Handle, child: NodeOrText<Handle>) {
        self.insert(parent, None, child);
    }

    fn append_based_on_parent_node(
        &self,
        element: &Handle,
        prev_element: &Handle,
        child: NodeOrText<Handle>,
    ) {
        if element.parent().is_some() {
            self.append_before_sibling(element, child);
        } else {
            self.append(prev_element, child);
        }
    }

    fn append_doctype_to_document(&self, _: StrTendril, _: StrTendril, _: StrTendril) {}

    fn get_template_contents(&self, target: &Handle) -> Handle {
        match &target.data {
            NodeData::Element {
                template_contents: Some(contents),
                ..
            } => contents.clone(),
            // html5ever asks only for templates; anything else gets a
            // detached fragment.
            _ => Node::new(NodeData::Document),
        }
    }

    fn same_node(&self, x: &Handle, y: &Handle) -> bool {
        Rc::ptr_eq(x, y)
    }

    fn set_quirks_mode(&self, _mode: QuirksMode) {}

    fn append_before_sibling(&self, sibling: &Handle, new_node: NodeOrText<Handle>) {
        // A sibling left out of a full DOM has no parent: drop the node too.
        if let Some(parent) = sibling.parent() {
            self.insert(&parent, Some(sibling), new_node);
        }
    }

    /// Only repeated `<html>` and `<body>` tags add attributes, and the
    /// renderer reads none of those elements' attributes.
    fn add_attrs_if_missing(&self, _target: &Handle, _attrs: Vec<Attribute>) {}

    fn remove_from_parent(&self, target: &Handle) {
        detach(target);
    }

    fn reparent_children(&self, node: &Handle, new_parent: &Handle) {
        let moved = std::mem::take(&mut *node.children.borrow_mut());
        let depth = new_parent.depth.get() + 1;
        for child in &moved {
            child.parent.set(Some(Rc::downgrade(new_parent)));
            child.depth.set(depth);
        }
        new_parent.children.borrow_mut().extend(moved);
    }

    fn is_mathml_annotation_xml_integration_point(&self, handle: &Handle) -> bool {
        matches!(
            handle.data,
            NodeData::Element {
                mathml_annotation_xml_integration_point: true,
                ..
            }
        )
    }
}
