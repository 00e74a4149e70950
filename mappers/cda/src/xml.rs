//! The one place the document's bytes are parsed: quick-xml's
//! namespace-aware pull parser, driven event by event into a small tree of
//! namespace-resolved elements that the header and body readers walk.
//!
//! This module owns the reader's safety: the size limit (checked before a
//! byte is parsed), the element-depth limit (checked at every start tag),
//! the refusal of any DOCTYPE (so no DTD, no internal or external entity,
//! no default attribute ever applies) and of any entity reference other
//! than the five predefined ones and numeric character references.
//! Element names, attribute names and `xsi:type` values are resolved to
//! (namespace URI, local name) with the prefixes in scope where they
//! appear, so `v3:PQ` and `PQ` under a default HL7 namespace are the same
//! type and a `lab:` extension is told apart from an HL7 element.

use std::sync::Arc;

use quick_xml::escape::EscapeError;
use quick_xml::events::Event;
use quick_xml::name::{QName, ResolveResult};
use quick_xml::NsReader;

use crate::error::{line_column, CdaError, CdaErrorKind};

/// The HL7 v3 namespace of CDA R2 elements.
pub const HL7_V3: &str = "urn:hl7-org:v3";
/// XML Schema instance (`xsi:type`).
pub const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// The reader's bounds. Both are checked at and over the bound by the
/// tests; a document exactly at a bound is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest document accepted, in bytes.
    pub max_bytes: usize,
    /// Deepest element nesting accepted (the root is depth 1).
    pub max_depth: usize,
}

impl Default for Limits {
    /// 64 MiB: the largest CI-SIS example (IPS-FR) is 1.5 MB and a level-1
    /// document carries its PDF in base64, a third larger than the PDF.
    /// 128 levels: the CI-SIS examples nest at most about 30 deep, so this
    /// only stops documents built to exhaust the reader.
    fn default() -> Self {
        Limits {
            max_bytes: 64 * 1024 * 1024,
            max_depth: 128,
        }
    }
}

/// A (namespace URI, local name) pair; the namespace is `None` for names
/// in no namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QualifiedName {
    pub namespace: Option<Arc<str>>,
    pub name: String,
}

impl QualifiedName {
    /// Whether this is `name` in the HL7 v3 namespace.
    pub fn is_hl7(&self, name: &str) -> bool {
        self.namespace.as_deref() == Some(HL7_V3) && self.name == name
    }
}

/// An attribute, its name resolved (unprefixed attributes are in no
/// namespace, as XML Namespaces says), its value unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: QualifiedName,
    pub value: String,
}

/// A node of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

/// An element: its resolved name, attributes, `xsi:type` (resolved with
/// the prefixes in scope on the element) and content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub name: QualifiedName,
    pub attributes: Vec<Attribute>,
    pub xsi_type: Option<QualifiedName>,
    pub children: Vec<Node>,
    /// 1-based line of the start tag, for the readers' own errors.
    pub line: usize,
}

impl Element {
    /// Whether this is `name` in the HL7 v3 namespace.
    pub fn is(&self, name: &str) -> bool {
        self.name.is_hl7(name)
    }

    /// Child elements, in document order.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|node| match node {
            Node::Element(element) => Some(element),
            Node::Text(_) => None,
        })
    }

    /// HL7 v3 child elements named `name`.
    pub fn all<'e>(&'e self, name: &'e str) -> impl Iterator<Item = &'e Element> + 'e {
        self.elements().filter(move |e| e.is(name))
    }

    /// The first HL7 v3 child element named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.elements().find(|e| e.is(name))
    }

    /// The first element at the end of a path of HL7 v3 child names.
    pub fn at(&self, path: &[&str]) -> Option<&Element> {
        path.iter()
            .try_fold(self, |element, name| element.child(name))
    }

    /// The first child element named `name` in namespace `namespace`
    /// (extensions such as `lab:statusCode`).
    pub fn child_in(&self, namespace: &str, name: &str) -> Option<&Element> {
        self.elements()
            .find(|e| e.name.namespace.as_deref() == Some(namespace) && e.name.name == name)
    }

    /// The value of the attribute `name` in no namespace, when not blank.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.name.namespace.is_none() && a.name.name == name)
            .map(|a| a.value.trim())
            .filter(|v| !v.is_empty())
    }

    /// The `xsi:type` local name when it is an HL7 v3 type (`PQ`, `CD`...).
    pub fn hl7_type(&self) -> Option<&str> {
        self.xsi_type
            .as_ref()
            .filter(|t| t.namespace.as_deref() == Some(HL7_V3))
            .map(|t| t.name.as_str())
    }

    /// All the text inside, descendants included, in document order.
    pub fn text(&self) -> String {
        let mut out = String::new();
        self.push_text(&mut out);
        out
    }

    fn push_text(&self, out: &mut String) {
        for node in &self.children {
            match node {
                Node::Text(text) => out.push_str(text),
                Node::Element(element) => element.push_text(out),
            }
        }
    }

    /// The text inside with whitespace runs collapsed to one space and
    /// trimmed; `None` when blank.
    pub fn clean_text(&self) -> Option<String> {
        let text = self.text();
        let clean = text.split_whitespace().collect::<Vec<_>>().join(" ");
        (!clean.is_empty()).then_some(clean)
    }

    /// Every element of the subtree (this one first), depth first.
    pub fn descendants(&self) -> Vec<&Element> {
        let mut out = Vec::new();
        let mut stack = vec![self];
        while let Some(element) = stack.pop() {
            out.push(element);
            let children: Vec<&Element> = element.elements().collect();
            stack.extend(children.into_iter().rev());
        }
        out
    }
}

/// Parses `bytes` into a tree within `limits`.
pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Element, CdaError> {
    if bytes.len() > limits.max_bytes {
        return Err(error_at(
            bytes,
            limits.max_bytes,
            &[],
            CdaErrorKind::TooLarge {
                limit: limits.max_bytes,
            },
        ));
    }
    Parser {
        bytes,
        limits,
        namespaces: Vec::new(),
        stack: Vec::new(),
    }
    .run()
}

struct Parser<'b, 'l> {
    bytes: &'b [u8],
    limits: &'l Limits,
    /// Namespace URIs met so far, shared by every name in them.
    namespaces: Vec<Arc<str>>,
    stack: Vec<Element>,
}

fn error_at(bytes: &[u8], offset: usize, stack: &[Element], kind: CdaErrorKind) -> CdaError {
    let (line, column) = line_column(bytes, offset);
    let path = if stack.is_empty() {
        "/".to_string()
    } else {
        stack.iter().fold(String::new(), |mut path, element| {
            path.push('/');
            path.push_str(&element.name.name);
            path
        })
    };
    CdaError {
        kind,
        line,
        column,
        path,
    }
}

/// What a quick-xml error is, in our own wording.
fn kind_of(error: &quick_xml::Error) -> CdaErrorKind {
    use quick_xml::Error;
    match error {
        Error::Escape(EscapeError::UnrecognizedEntity(..)) => CdaErrorKind::Entity,
        Error::Escape(_) => CdaErrorKind::Malformed("a bad character or entity reference"),
        Error::Encoding(_) => CdaErrorKind::Encoding,
        Error::Namespace(_) => CdaErrorKind::UnboundPrefix,
        Error::InvalidAttr(_) => CdaErrorKind::Malformed("a bad attribute"),
        Error::IllFormed(_) => CdaErrorKind::Malformed("tags do not match"),
        Error::Syntax(_) => CdaErrorKind::Malformed("a syntax error"),
        Error::Io(_) => CdaErrorKind::Malformed("the input could not be read"),
    }
}

impl Parser<'_, '_> {
    fn fail(&self, offset: u64, kind: CdaErrorKind) -> CdaError {
        error_at(
            self.bytes,
            usize::try_from(offset).unwrap_or(usize::MAX),
            &self.stack,
            kind,
        )
    }

    fn namespace(
        &mut self,
        resolved: &ResolveResult<'_>,
        at: u64,
    ) -> Result<Option<Arc<str>>, CdaError> {
        match resolved {
            ResolveResult::Unbound => Ok(None),
            ResolveResult::Unknown(_) => Err(self.fail(at, CdaErrorKind::UnboundPrefix)),
            ResolveResult::Bound(namespace) => {
                let uri = std::str::from_utf8(namespace.as_ref())
                    .map_err(|_| self.fail(at, CdaErrorKind::Encoding))?;
                if let Some(known) = self.namespaces.iter().find(|n| &***n == uri) {
                    return Ok(Some(known.clone()));
                }
                let shared: Arc<str> = Arc::from(uri);
                self.namespaces.push(shared.clone());
                Ok(Some(shared))
            }
        }
    }

    fn utf8(&self, bytes: &[u8], at: u64) -> Result<String, CdaError> {
        std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| self.fail(at, CdaErrorKind::Encoding))
    }

    fn run(mut self) -> Result<Element, CdaError> {
        let mut reader = NsReader::from_reader(self.bytes);
        let config = reader.config_mut();
        config.expand_empty_elements = true;
        config.check_end_names = true;
        config.trim_text(false);
        let mut root: Option<Element> = None;
        loop {
            let at = reader.buffer_position();
            let event = match reader.read_resolved_event() {
                Ok(event) => event,
                Err(error) => return Err(self.fail(reader.error_position(), kind_of(&error))),
            };
            match event {
                (resolved, Event::Start(start)) => {
                    if self.stack.len() >= self.limits.max_depth {
                        return Err(self.fail(
                            at,
                            CdaErrorKind::TooDeep {
                                limit: self.limits.max_depth,
                            },
                        ));
                    }
                    if root.is_some() {
                        return Err(self.fail(
                            at,
                            CdaErrorKind::Malformed("content after the root element"),
                        ));
                    }
                    let namespace = self.namespace(&resolved, at)?;
                    let name = self.utf8(start.local_name().as_ref(), at)?;
                    let mut attributes = Vec::new();
                    let mut xsi_type = None;
                    for attribute in start.attributes() {
                        let attribute = attribute.map_err(|e| {
                            self.fail(at, kind_of(&quick_xml::Error::InvalidAttr(e)))
                        })?;
                        let key = attribute.key;
                        if key.as_namespace_binding().is_some() {
                            continue;
                        }
                        let (resolved, local) = reader.resolve_attribute(key);
                        let attribute_namespace = self.namespace(&resolved, at)?;
                        let local = self.utf8(local.as_ref(), at)?;
                        let value = attribute
                            .unescape_value()
                            .map_err(|e| self.fail(at, kind_of(&e)))?
                            .into_owned();
                        if attribute_namespace.as_deref() == Some(XSI) && local == "type" {
                            // A QName value: its prefix is resolved like an
                            // element's (no prefix: the default namespace).
                            let (type_namespace, type_local) =
                                reader.resolve_element(QName(value.trim().as_bytes()));
                            xsi_type = Some(QualifiedName {
                                namespace: self.namespace(&type_namespace, at)?,
                                name: self.utf8(type_local.as_ref(), at)?,
                            });
                        }
                        attributes.push(Attribute {
                            name: QualifiedName {
                                namespace: attribute_namespace,
                                name: local,
                            },
                            value,
                        });
                    }
                    let (line, _) = line_column(self.bytes, usize::try_from(at).unwrap_or(0));
                    self.stack.push(Element {
                        name: QualifiedName { namespace, name },
                        attributes,
                        xsi_type,
                        children: Vec::new(),
                        line,
                    });
                }
                (_, Event::End(_)) => {
                    let Some(done) = self.stack.pop() else {
                        return Err(self.fail(at, CdaErrorKind::Malformed("tags do not match")));
                    };
                    match self.stack.last_mut() {
                        Some(parent) => parent.children.push(Node::Element(done)),
                        None => root = Some(done),
                    }
                }
                (_, Event::Text(text)) => {
                    let text = text
                        .unescape()
                        .map_err(|e| self.fail(at, kind_of(&e)))?
                        .into_owned();
                    self.push_text(text, at)?;
                }
                (_, Event::CData(data)) => {
                    let text = self.utf8(&data.into_inner(), at)?;
                    self.push_text(text, at)?;
                }
                (_, Event::DocType(_)) => return Err(self.fail(at, CdaErrorKind::DocType)),
                (_, Event::Decl(declaration)) => {
                    if let Some(encoding) = declaration.encoding() {
                        let encoding =
                            encoding.map_err(|_| self.fail(at, CdaErrorKind::Encoding))?;
                        if !encoding.eq_ignore_ascii_case(b"utf-8") {
                            return Err(self.fail(at, CdaErrorKind::Encoding));
                        }
                    }
                }
                // Never produced: empty elements are expanded to start and
                // end (configured above), so that one path handles both.
                (_, Event::Empty(_)) => {
                    return Err(
                        self.fail(at, CdaErrorKind::Malformed("an unexpanded empty element"))
                    )
                }
                (_, Event::PI(_)) | (_, Event::Comment(_)) => {}
                (_, Event::Eof) => break,
            }
        }
        if !self.stack.is_empty() {
            let end = u64::try_from(self.bytes.len()).unwrap_or(u64::MAX);
            return Err(self.fail(end, CdaErrorKind::Malformed("an element is not closed")));
        }
        root.ok_or_else(|| self.fail(0, CdaErrorKind::Empty))
    }

    fn push_text(&mut self, text: String, at: u64) -> Result<(), CdaError> {
        match self.stack.last_mut() {
            Some(element) => {
                if let Some(Node::Text(previous)) = element.children.last_mut() {
                    previous.push_str(&text);
                } else if !text.is_empty() {
                    element.children.push(Node::Text(text));
                }
                Ok(())
            }
            None if text.trim().is_empty() => Ok(()),
            None => Err(self.fail(at, CdaErrorKind::Malformed("text outside the root element"))),
        }
    }
}
