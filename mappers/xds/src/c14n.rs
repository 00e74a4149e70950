//! Exclusive XML Canonicalization 1.0 without comments
//! (<http://www.w3.org/2001/10/xml-exc-c14n#>): the bytes that an XML-DSIG
//! signature over a SAML 2.0 assertion digests and signs, for the
//! assertion itself (with the enveloped-signature transform) and for its
//! `ds:SignedInfo`.
//!
//! It reads the document with quick-xml's raw events and resolves
//! namespaces here rather than through a namespace-aware tree, because the
//! canonical form keeps each name's prefix as written and renders the
//! declarations of each element from the prefixes in scope. The reading is
//! as strict as the signature needs: UTF-8 only, no DTD, no entity other
//! than the five predefined ones and character references, a bounded size
//! and depth, every prefix bound. The output is the canonical form of one
//! element's subtree (the "apex"), which is the node set of a same-document
//! reference `URI="#id"` without comments.
//!
//! Errors never quote the document: an assertion carries personal data.

use std::collections::HashMap;

use quick_xml::events::{BytesDecl, BytesPI, BytesStart, Event};
use quick_xml::Reader;

/// The algorithm identifier of this canonicalization, as a `ds:CanonicalizationMethod`
/// or `ds:Transform` names it.
pub const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
/// The XML-DSIG namespace (`ds:Signature`, `ds:SignedInfo`).
pub const XMLDSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
/// The namespace bound to the `xml` prefix, which is never declared.
const XML_NAMESPACE: &str = "http://www.w3.org/XML/1998/namespace";
/// The namespace of `xmlns` attributes, which nothing may be bound to.
const XMLNS_NAMESPACE: &str = "http://www.w3.org/2000/xmlns/";

/// The largest document read (16 MiB): far above any assertion, small
/// enough that reading a hostile one stays cheap.
pub const MAX_INPUT_BYTES: usize = 16 * 1024 * 1024;
/// The deepest element nesting read: a signed assertion nests a few tens
/// of levels at most.
pub const MAX_DEPTH: usize = 256;
/// The canonical form may be at most this many times the input (plus
/// [`OUTPUT_SLACK_BYTES`]). Exclusive canonicalization repeats a namespace
/// declaration on every element that uses it when no ancestor renders it,
/// so a document built to repeat one long namespace URI on many small
/// elements would otherwise grow without bound.
const OUTPUT_FACTOR: usize = 8;
/// See [`OUTPUT_FACTOR`].
const OUTPUT_SLACK_BYTES: usize = 64 * 1024;

/// Which element of the document is canonicalized (the apex of the subtree).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Apex<'a> {
    /// The document element.
    Root,
    /// The first element (document order) carrying an attribute named
    /// `attribute` (no namespace) with `value`, e.g. `ID="_abc"` of a SAML
    /// Assertion.
    WithId { attribute: &'a str, value: &'a str },
    /// The first element (document order) named `local` in namespace
    /// `namespace` (e.g. xmldsig SignedInfo).
    Named { namespace: &'a str, local: &'a str },
}

/// How the subtree is canonicalized.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options<'a> {
    /// The InclusiveNamespaces PrefixList (prefixes treated as in inclusive
    /// c14n; "#default" means the default namespace).
    pub inclusive_prefixes: &'a [&'a str],
    /// The enveloped-signature transform: omit every ds:Signature element
    /// (namespace http://www.w3.org/2000/09/xmldsig#, local name Signature)
    /// that is a descendant of the apex (the apex itself is never omitted).
    pub omit_signatures: bool,
}

/// Why a document could not be canonicalized. The wording is fixed: an
/// error never quotes the document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum C14nError {
    /// The document is not well-formed XML 1.0 with namespaces (the reason
    /// is one of a fixed set of phrases).
    #[error("XML not well formed: {0}")]
    NotWellFormed(&'static str),
    /// The document has a DOCTYPE: no DTD is ever processed.
    #[error("XML DOCTYPE refused")]
    DoctypeRefused,
    /// The document refers to an entity other than the five predefined ones.
    #[error("XML entity reference refused")]
    EntityRefused,
    /// A name uses a namespace prefix that is not declared.
    #[error("XML namespace prefix not declared")]
    UnboundPrefix,
    /// No element of the document is the apex asked for.
    #[error("element to canonicalize not found")]
    ApexNotFound,
    /// The document, or its canonical form, is larger than allowed.
    #[error("XML too large")]
    TooLarge,
    /// Elements are nested deeper than [`MAX_DEPTH`].
    #[error("XML nested too deeply")]
    TooDeep,
}

/// The canonical form (exclusive XML canonicalization 1.0, without
/// comments) of the subtree at `apex` of the UTF-8 document `xml`.
///
/// The whole document is read and must be well formed, even past the apex:
/// a signature is only checked over a document that a verifier and a
/// signer read alike.
pub fn canonicalize(
    xml: &[u8],
    apex: Apex<'_>,
    options: &Options<'_>,
) -> Result<Vec<u8>, C14nError> {
    if xml.len() > MAX_INPUT_BYTES {
        return Err(C14nError::TooLarge);
    }
    let xml = xml.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(xml);
    let text = std::str::from_utf8(xml).map_err(|_| C14nError::NotWellFormed("not UTF-8"))?;
    let output_limit = text
        .len()
        .saturating_mul(OUTPUT_FACTOR)
        .saturating_add(OUTPUT_SLACK_BYTES);

    let mut reader = Reader::from_str(text);
    let config = reader.config_mut();
    config.check_comments = true;
    config.check_end_names = true;
    config.expand_empty_elements = false;
    config.trim_text(false);

    let mut canonicalizer = Canonicalizer::new(apex, options);
    let mut first_event = true;
    loop {
        let event = reader
            .read_event()
            .map_err(|_| C14nError::NotWellFormed("syntax error"))?;
        match event {
            Event::Decl(declaration) => {
                if !first_event {
                    return Err(C14nError::NotWellFormed("XML declaration not at the start"));
                }
                check_declaration(&declaration)?;
            }
            Event::DocType(_) => return Err(C14nError::DoctypeRefused),
            Event::Start(start) => canonicalizer.open(&start)?,
            Event::Empty(start) => {
                canonicalizer.open(&start)?;
                canonicalizer.close(None)?;
            }
            Event::End(end) => canonicalizer.close(Some(utf8(end.name().as_ref())?))?,
            Event::Text(text) => canonicalizer.text(utf8(&text)?)?,
            Event::CData(cdata) => canonicalizer.cdata(utf8(&cdata)?)?,
            Event::Comment(comment) => {
                // Removed from the output, but still only characters XML allows.
                check_characters(utf8(&comment)?)?;
            }
            Event::PI(instruction) => canonicalizer.processing_instruction(&instruction)?,
            Event::Eof => break,
        }
        first_event = false;
        if canonicalizer.output.len() > output_limit {
            return Err(C14nError::TooLarge);
        }
    }
    canonicalizer.finish()
}

/// Where the reading stands relative to the apex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The apex has not been met yet.
    Before,
    /// Inside the apex, whose depth (document element = 1) is given.
    Inside { apex_depth: usize },
    /// The apex has been closed: nothing more is output.
    After,
}

/// Namespace bindings by prefix ("" is the default namespace), each prefix
/// with the stack of URIs bound to it by the open elements: a lookup is
/// one hash probe however many declarations a hostile document makes.
#[derive(Debug, Default)]
struct Bindings {
    by_prefix: HashMap<String, Vec<String>>,
}

impl Bindings {
    fn bind(&mut self, prefix: &str, uri: &str) {
        self.by_prefix
            .entry(prefix.to_owned())
            .or_default()
            .push(uri.to_owned());
    }

    fn unbind(&mut self, prefix: &str) {
        if let Some(stack) = self.by_prefix.get_mut(prefix) {
            stack.pop();
            if stack.is_empty() {
                self.by_prefix.remove(prefix);
            }
        }
    }

    fn lookup(&self, prefix: &str) -> Option<&str> {
        self.by_prefix
            .get(prefix)
            .and_then(|stack| stack.last())
            .map(String::as_str)
    }
}

/// An open element.
#[derive(Debug)]
struct Frame {
    /// The name as written, for the end tag.
    qualified_name: String,
    /// The prefixes this element declares (to unbind when it closes).
    declared: Vec<String>,
    /// The prefixes whose declaration this element rendered, if it is
    /// output.
    rendered: Option<Vec<String>>,
}

/// An attribute of a start tag, other than a namespace declaration.
#[derive(Debug)]
struct Attribute<'x> {
    qualified_name: &'x str,
    prefix: Option<&'x str>,
    local: &'x str,
    /// The namespace URI ("" for an unprefixed attribute).
    namespace: String,
    /// The normalised value (XML 1.0 section 3.3.3, attributes of type CDATA).
    value: String,
}

struct Canonicalizer<'o> {
    apex: Apex<'o>,
    options: &'o Options<'o>,
    phase: Phase,
    /// The depth of the `ds:Signature` whose subtree is being omitted.
    omitted_from_depth: Option<usize>,
    frames: Vec<Frame>,
    /// The namespaces in scope, from every open element (also those above
    /// the apex: they are in scope for it).
    in_scope: Bindings,
    /// The namespaces rendered by the open output elements.
    rendered: Bindings,
    root_seen: bool,
    root_closed: bool,
    output: Vec<u8>,
}

impl<'o> Canonicalizer<'o> {
    fn new(apex: Apex<'o>, options: &'o Options<'o>) -> Self {
        Canonicalizer {
            apex,
            options,
            phase: Phase::Before,
            omitted_from_depth: None,
            frames: Vec::new(),
            in_scope: Bindings::default(),
            rendered: Bindings::default(),
            root_seen: false,
            root_closed: false,
            output: Vec::new(),
        }
    }

    /// Whether content at the current position is part of the output.
    fn outputting(&self) -> bool {
        matches!(self.phase, Phase::Inside { .. }) && self.omitted_from_depth.is_none()
    }

    fn open(&mut self, start: &BytesStart<'_>) -> Result<(), C14nError> {
        if self.root_closed {
            return Err(C14nError::NotWellFormed(
                "content after the document element",
            ));
        }
        let depth = self.frames.len() + 1;
        if depth > MAX_DEPTH {
            return Err(C14nError::TooDeep);
        }
        self.root_seen = true;

        let qualified_name = utf8(start.name().0)?;
        let (prefix, local) = split_qualified_name(qualified_name)?;
        if prefix == Some("xmlns") {
            return Err(C14nError::NotWellFormed(
                "element named with the xmlns prefix",
            ));
        }
        let raw_attributes = parse_attributes(utf8(start.attributes_raw())?)?;

        let mut declarations: Vec<(&str, String)> = Vec::new();
        let mut attributes: Vec<Attribute<'_>> = Vec::new();
        for (attribute_name, raw_value) in raw_attributes {
            let value = decode(raw_value, Literal::Attribute)?;
            let (attribute_prefix, attribute_local) = if attribute_name == "xmlns" {
                (Some("xmlns"), "")
            } else {
                split_qualified_name(attribute_name)?
            };
            match attribute_prefix {
                Some("xmlns") => {
                    if let Some(declared) = checked_declaration(attribute_local, &value)? {
                        declarations.push((declared, value));
                    }
                }
                _ => attributes.push(Attribute {
                    qualified_name: attribute_name,
                    prefix: attribute_prefix,
                    local: attribute_local,
                    namespace: String::new(),
                    value,
                }),
            }
        }
        let mut declared_prefixes: Vec<&str> =
            declarations.iter().map(|(prefix, _)| *prefix).collect();
        declared_prefixes.sort_unstable();
        if declared_prefixes.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(C14nError::NotWellFormed("duplicate namespace declaration"));
        }

        // Declarations apply to the element that makes them, so they are in
        // scope before its own names are resolved.
        for (declared, uri) in &declarations {
            self.in_scope.bind(declared, uri);
        }
        let frame_declared: Vec<String> = declarations
            .iter()
            .map(|(prefix, _)| (*prefix).to_owned())
            .collect();
        // Unbind at once if resolution fails, so the bindings stay consistent
        // with the frames (an error ends the reading anyway).
        let resolved = self.resolve(prefix, &mut attributes);
        let namespace = match resolved {
            Ok(namespace) => namespace,
            Err(error) => {
                for declared in &frame_declared {
                    self.in_scope.unbind(declared);
                }
                return Err(error);
            }
        };
        attributes
            .sort_by(|a, b| (a.namespace.as_str(), a.local).cmp(&(b.namespace.as_str(), b.local)));
        let duplicate = attributes
            .windows(2)
            .any(|pair| pair[0].namespace == pair[1].namespace && pair[0].local == pair[1].local);
        if duplicate {
            for declared in &frame_declared {
                self.in_scope.unbind(declared);
            }
            return Err(C14nError::NotWellFormed("duplicate attribute"));
        }

        if self.phase == Phase::Before && self.is_apex(&namespace, local, &attributes) {
            self.phase = Phase::Inside { apex_depth: depth };
        }
        if let Phase::Inside { apex_depth } = self.phase {
            let enveloped_signature = self.options.omit_signatures
                && depth > apex_depth
                && namespace == XMLDSIG
                && local == "Signature";
            if enveloped_signature && self.omitted_from_depth.is_none() {
                self.omitted_from_depth = Some(depth);
            }
        }

        let rendered = if self.outputting() {
            Some(self.render_start(qualified_name, prefix, &attributes))
        } else {
            None
        };
        self.frames.push(Frame {
            qualified_name: qualified_name.to_owned(),
            declared: frame_declared,
            rendered,
        });
        Ok(())
    }

    /// The namespace of the element (prefix `prefix`), and of each attribute.
    fn resolve(
        &self,
        prefix: Option<&str>,
        attributes: &mut [Attribute<'_>],
    ) -> Result<String, C14nError> {
        let namespace = match prefix {
            Some(prefix) => self.namespace_of(prefix)?,
            None => self.in_scope.lookup("").unwrap_or("").to_owned(),
        };
        for attribute in attributes.iter_mut() {
            if let Some(attribute_prefix) = attribute.prefix {
                attribute.namespace = self.namespace_of(attribute_prefix)?;
            }
        }
        Ok(namespace)
    }

    fn namespace_of(&self, prefix: &str) -> Result<String, C14nError> {
        if prefix == "xml" {
            return Ok(XML_NAMESPACE.to_owned());
        }
        self.in_scope
            .lookup(prefix)
            .map(str::to_owned)
            .ok_or(C14nError::UnboundPrefix)
    }

    fn is_apex(&self, namespace: &str, local: &str, attributes: &[Attribute<'_>]) -> bool {
        match self.apex {
            Apex::Root => true,
            Apex::WithId { attribute, value } => attributes.iter().any(|candidate| {
                candidate.prefix.is_none()
                    && candidate.local == attribute
                    && candidate.value == value
            }),
            Apex::Named {
                namespace: wanted_namespace,
                local: wanted_local,
            } => namespace == wanted_namespace && local == wanted_local,
        }
    }

    /// Writes the start tag (namespace declarations, then attributes, both
    /// in canonical order) and returns the prefixes whose declaration it
    /// rendered. `attributes` are sorted already.
    fn render_start(
        &mut self,
        qualified_name: &str,
        prefix: Option<&str>,
        attributes: &[Attribute<'_>],
    ) -> Vec<String> {
        // The prefixes visibly utilized (the element's own, the default
        // namespace for an unprefixed element; those of its attributes),
        // then those of the InclusiveNamespaces PrefixList that are in scope.
        let mut candidates: Vec<&str> = vec![prefix.unwrap_or("")];
        candidates.extend(attributes.iter().filter_map(|attribute| attribute.prefix));
        for listed in self.options.inclusive_prefixes {
            if *listed == "#default" {
                candidates.push("");
            } else if self.in_scope.lookup(listed).is_some() {
                candidates.push(*listed);
            }
        }
        candidates.sort_unstable();
        candidates.dedup();

        let mut to_render: Vec<(String, String)> = Vec::new();
        for candidate in candidates {
            if candidate == "xml" {
                continue;
            }
            let uri = self.in_scope.lookup(candidate).unwrap_or("");
            let already = if candidate.is_empty() {
                // No default namespace rendered is the empty one: `xmlns=""`
                // only undoes a non-empty default rendered above.
                Some(self.rendered.lookup("").unwrap_or(""))
            } else {
                self.rendered.lookup(candidate)
            };
            if already != Some(uri) {
                to_render.push((candidate.to_owned(), uri.to_owned()));
            }
        }

        self.output.push(b'<');
        self.output.extend_from_slice(qualified_name.as_bytes());
        // `to_render` is in prefix order, the default namespace ("") first.
        for (declared, uri) in &to_render {
            if declared.is_empty() {
                self.output.extend_from_slice(b" xmlns=\"");
            } else {
                self.output.extend_from_slice(b" xmlns:");
                self.output.extend_from_slice(declared.as_bytes());
                self.output.extend_from_slice(b"=\"");
            }
            escape_attribute_value(uri, &mut self.output);
            self.output.push(b'"');
        }
        for attribute in attributes {
            self.output.push(b' ');
            self.output
                .extend_from_slice(attribute.qualified_name.as_bytes());
            self.output.extend_from_slice(b"=\"");
            escape_attribute_value(&attribute.value, &mut self.output);
            self.output.push(b'"');
        }
        self.output.push(b'>');

        for (declared, uri) in &to_render {
            self.rendered.bind(declared, uri);
        }
        to_render
            .into_iter()
            .map(|(declared, _)| declared)
            .collect()
    }

    /// Closes the innermost open element; `end_name` is the name of its
    /// end tag (none for an empty-element tag).
    fn close(&mut self, end_name: Option<&str>) -> Result<(), C14nError> {
        let depth = self.frames.len();
        let frame = self
            .frames
            .pop()
            .ok_or(C14nError::NotWellFormed("end tag without start tag"))?;
        if end_name.is_some_and(|name| name != frame.qualified_name) {
            return Err(C14nError::NotWellFormed("end tag does not match start tag"));
        }
        if let Some(rendered) = &frame.rendered {
            self.output.extend_from_slice(b"</");
            self.output
                .extend_from_slice(frame.qualified_name.as_bytes());
            self.output.push(b'>');
            for declared in rendered {
                self.rendered.unbind(declared);
            }
        }
        for declared in &frame.declared {
            self.in_scope.unbind(declared);
        }
        if self.omitted_from_depth == Some(depth) {
            self.omitted_from_depth = None;
        }
        if self.phase == (Phase::Inside { apex_depth: depth }) {
            self.phase = Phase::After;
        }
        if self.frames.is_empty() {
            self.root_closed = true;
        }
        Ok(())
    }

    fn text(&mut self, raw: &str) -> Result<(), C14nError> {
        if self.frames.is_empty() {
            // Outside the document element only white space may appear.
            if raw.chars().all(is_xml_space) {
                return Ok(());
            }
            return Err(C14nError::NotWellFormed(
                "text outside the document element",
            ));
        }
        if raw.contains("]]>") {
            return Err(C14nError::NotWellFormed("]]> in text"));
        }
        let text = decode(raw, Literal::Text)?;
        if self.outputting() {
            escape_text(&text, &mut self.output);
        }
        Ok(())
    }

    fn cdata(&mut self, raw: &str) -> Result<(), C14nError> {
        if self.frames.is_empty() {
            return Err(C14nError::NotWellFormed(
                "CDATA outside the document element",
            ));
        }
        check_characters(raw)?;
        if self.outputting() {
            escape_text(&normalize_line_endings(raw), &mut self.output);
        }
        Ok(())
    }

    fn processing_instruction(&mut self, instruction: &BytesPI<'_>) -> Result<(), C14nError> {
        let content = utf8(instruction)?;
        let target_end = content.find(is_xml_space).unwrap_or(content.len());
        let (target, rest) = content.split_at(target_end);
        if !is_name(target) {
            return Err(C14nError::NotWellFormed("processing instruction target"));
        }
        if target.eq_ignore_ascii_case("xml") {
            return Err(C14nError::NotWellFormed(
                "reserved processing instruction target",
            ));
        }
        let data = rest.trim_start_matches(is_xml_space);
        check_characters(data)?;
        if self.outputting() {
            self.output.extend_from_slice(b"<?");
            self.output.extend_from_slice(target.as_bytes());
            if !data.is_empty() {
                self.output.push(b' ');
                self.output
                    .extend_from_slice(normalize_line_endings(data).as_bytes());
            }
            self.output.extend_from_slice(b"?>");
        }
        Ok(())
    }

    fn finish(self) -> Result<Vec<u8>, C14nError> {
        if !self.frames.is_empty() {
            return Err(C14nError::NotWellFormed("element not closed"));
        }
        if !self.root_seen {
            return Err(C14nError::NotWellFormed("no document element"));
        }
        if self.phase != Phase::After {
            return Err(C14nError::ApexNotFound);
        }
        Ok(self.output)
    }
}

/// The XML declaration: version 1.x, UTF-8 if an encoding is named.
fn check_declaration(declaration: &BytesDecl<'_>) -> Result<(), C14nError> {
    let version = declaration
        .version()
        .map_err(|_| C14nError::NotWellFormed("XML declaration"))?;
    if !version.starts_with(b"1.") {
        return Err(C14nError::NotWellFormed("XML version"));
    }
    match declaration.encoding() {
        None => Ok(()),
        Some(Ok(encoding)) if encoding.eq_ignore_ascii_case(b"UTF-8") => Ok(()),
        Some(_) => Err(C14nError::NotWellFormed("encoding other than UTF-8")),
    }
}

/// The prefix a namespace declaration `xmlns:local` (or `xmlns` when
/// `local` is empty) binds, or none for the redundant declaration of the
/// `xml` prefix; refuses what Namespaces in XML 1.0 forbids.
fn checked_declaration<'x>(local: &'x str, uri: &str) -> Result<Option<&'x str>, C14nError> {
    if local == "xml" {
        return if uri == XML_NAMESPACE {
            Ok(None)
        } else {
            Err(C14nError::NotWellFormed("xml prefix rebound"))
        };
    }
    if local == "xmlns" {
        return Err(C14nError::NotWellFormed("xmlns prefix declared"));
    }
    if uri == XML_NAMESPACE || uri == XMLNS_NAMESPACE {
        return Err(C14nError::NotWellFormed("reserved namespace bound"));
    }
    if !local.is_empty() && uri.is_empty() {
        // Undeclaring a prefix is XML 1.1 only.
        return Err(C14nError::NotWellFormed("prefix undeclared"));
    }
    Ok(Some(local))
}

/// The (name, raw value) pairs of a start tag's attribute text, in order.
fn parse_attributes(raw: &str) -> Result<Vec<(&str, &str)>, C14nError> {
    const MALFORMED: C14nError = C14nError::NotWellFormed("attribute syntax");
    let mut attributes = Vec::new();
    let mut rest = raw;
    loop {
        let trimmed = rest.trim_start_matches(is_xml_space);
        if trimmed.is_empty() {
            return Ok(attributes);
        }
        if trimmed.len() == rest.len() {
            // Attributes are separated by white space.
            return Err(MALFORMED);
        }
        let name_end = trimmed
            .find(|c: char| c == '=' || is_xml_space(c))
            .ok_or(MALFORMED)?;
        let name = &trimmed[..name_end];
        let after_name = trimmed[name_end..].trim_start_matches(is_xml_space);
        let after_equals = after_name
            .strip_prefix('=')
            .ok_or(MALFORMED)?
            .trim_start_matches(is_xml_space);
        let quote = match after_equals.chars().next() {
            Some(quote @ ('"' | '\'')) => quote,
            _ => return Err(MALFORMED),
        };
        let body = &after_equals[1..];
        let close = body.find(quote).ok_or(MALFORMED)?;
        attributes.push((name, &body[..close]));
        rest = &body[close + 1..];
    }
}

/// Where a literal is read: text content or an attribute value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Literal {
    Text,
    Attribute,
}

/// The characters a literal stands for: line endings normalised, character
/// and predefined entity references replaced, and in an attribute value
/// each literal white-space character made a space (XML 1.0 sections 2.11
/// and 3.3.3; a character written as a reference is kept as it is).
fn decode(raw: &str, literal: Literal) -> Result<String, C14nError> {
    let mut decoded = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(position) = rest.find(['&', '\r', '\n', '\t', '<']) {
        let (plain, special) = rest.split_at(position);
        check_characters(plain)?;
        decoded.push_str(plain);
        let mut characters = special.chars();
        let first = characters.next().unwrap_or('&');
        rest = characters.as_str();
        match (first, literal) {
            ('\r', _) => {
                rest = rest.strip_prefix('\n').unwrap_or(rest);
                decoded.push(if literal == Literal::Attribute {
                    ' '
                } else {
                    '\n'
                });
            }
            ('\n' | '\t', Literal::Attribute) => decoded.push(' '),
            ('\n' | '\t', Literal::Text) => decoded.push(first),
            ('<', _) => return Err(C14nError::NotWellFormed("unescaped <")),
            _ => {
                let end = rest
                    .find(';')
                    .ok_or(C14nError::NotWellFormed("reference without ;"))?;
                decoded.push(dereference(&rest[..end])?);
                rest = &rest[end + 1..];
            }
        }
    }
    check_characters(rest)?;
    decoded.push_str(rest);
    Ok(decoded)
}

/// The character a reference `&name;` stands for.
fn dereference(name: &str) -> Result<char, C14nError> {
    let character = match name {
        "lt" => return Ok('<'),
        "gt" => return Ok('>'),
        "amp" => return Ok('&'),
        "quot" => return Ok('"'),
        "apos" => return Ok('\''),
        _ => {
            let (digits, radix) = if let Some(hex) = name.strip_prefix("#x") {
                (hex, 16)
            } else if let Some(decimal) = name.strip_prefix('#') {
                (decimal, 10)
            } else if is_name(name) {
                return Err(C14nError::EntityRefused);
            } else {
                return Err(C14nError::NotWellFormed("reference syntax"));
            };
            // `from_str_radix` alone would also take a leading `+`.
            if digits.is_empty() || !digits.chars().all(|digit| digit.is_digit(radix)) {
                return Err(C14nError::NotWellFormed("character reference syntax"));
            }
            u32::from_str_radix(digits, radix)
                .ok()
                .and_then(char::from_u32)
                .ok_or(C14nError::NotWellFormed("character reference"))?
        }
    };
    if is_xml_char(character) {
        Ok(character)
    } else {
        Err(C14nError::NotWellFormed("character reference"))
    }
}

/// Line endings as an XML processor passes them on: CR LF and lone CR
/// become LF.
fn normalize_line_endings(raw: &str) -> String {
    if !raw.contains('\r') {
        return raw.to_owned();
    }
    raw.replace("\r\n", "\n").replace('\r', "\n")
}

fn check_characters(text: &str) -> Result<(), C14nError> {
    if text.chars().all(is_xml_char) {
        Ok(())
    } else {
        Err(C14nError::NotWellFormed("character not allowed in XML"))
    }
}

/// Text content in canonical form.
fn escape_text(text: &str, output: &mut Vec<u8>) {
    for character in text.chars() {
        match character {
            '&' => output.extend_from_slice(b"&amp;"),
            '<' => output.extend_from_slice(b"&lt;"),
            '>' => output.extend_from_slice(b"&gt;"),
            '\r' => output.extend_from_slice(b"&#xD;"),
            other => push_char(other, output),
        }
    }
}

/// An attribute value (or namespace URI) in canonical form.
fn escape_attribute_value(value: &str, output: &mut Vec<u8>) {
    for character in value.chars() {
        match character {
            '&' => output.extend_from_slice(b"&amp;"),
            '<' => output.extend_from_slice(b"&lt;"),
            '"' => output.extend_from_slice(b"&quot;"),
            '\t' => output.extend_from_slice(b"&#x9;"),
            '\n' => output.extend_from_slice(b"&#xA;"),
            '\r' => output.extend_from_slice(b"&#xD;"),
            other => push_char(other, output),
        }
    }
}

fn push_char(character: char, output: &mut Vec<u8>) {
    let mut buffer = [0u8; 4];
    output.extend_from_slice(character.encode_utf8(&mut buffer).as_bytes());
}

fn utf8(bytes: &[u8]) -> Result<&str, C14nError> {
    std::str::from_utf8(bytes).map_err(|_| C14nError::NotWellFormed("not UTF-8"))
}

/// `(prefix, local name)` of a QName; refuses a name that is not one.
fn split_qualified_name(name: &str) -> Result<(Option<&str>, &str), C14nError> {
    match name.split_once(':') {
        Some((prefix, local)) if is_ncname(prefix) && is_ncname(local) => Ok((Some(prefix), local)),
        None if is_ncname(name) => Ok((None, name)),
        _ => Err(C14nError::NotWellFormed("name")),
    }
}

fn is_xml_space(character: char) -> bool {
    matches!(character, ' ' | '\t' | '\n' | '\r')
}

/// XML 1.0 `Char` (a Rust `char` is never a surrogate).
fn is_xml_char(character: char) -> bool {
    matches!(character, '\t' | '\n' | '\r' | '\u{20}'..='\u{FFFD}' | '\u{10000}'..)
}

/// XML 1.0 (fifth edition) `Name`.
fn is_name(name: &str) -> bool {
    let mut characters = name.chars();
    characters
        .next()
        .is_some_and(|first| first == ':' || is_name_start_char(first))
        && characters.all(|other| other == ':' || is_name_char(other))
}

/// Namespaces in XML `NCName`: a `Name` without a colon.
fn is_ncname(name: &str) -> bool {
    let mut characters = name.chars();
    characters.next().is_some_and(is_name_start_char) && characters.all(is_name_char)
}

/// `NameStartChar` without the colon.
fn is_name_start_char(character: char) -> bool {
    matches!(character,
        'A'..='Z' | '_' | 'a'..='z'
        | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}'
        | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}'
        | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}' | '\u{10000}'..='\u{EFFFF}')
}

/// `NameChar` without the colon.
fn is_name_char(character: char) -> bool {
    is_name_start_char(character)
        || matches!(character,
            '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn canonical(xml: &str, apex: Apex<'_>, options: &Options<'_>) -> String {
        let bytes = canonicalize(xml.as_bytes(), apex, options).unwrap();
        String::from_utf8(bytes).unwrap()
    }

    fn root(xml: &str) -> String {
        canonical(xml, Apex::Root, &Options::default())
    }

    fn refused(xml: &str) -> C14nError {
        canonicalize(xml.as_bytes(), Apex::Root, &Options::default()).unwrap_err()
    }

    #[test]
    fn declarations_come_first_by_prefix_then_attributes_by_namespace_and_local_name() {
        let xml = r#"<r xmlns:b="urn:b" xmlns:a="urn:a" xmlns="urn:d" z="1" b:y="2" a:y="3" a="4"><x/></r>"#;
        assert_eq!(
            root(xml),
            r#"<r xmlns="urn:d" xmlns:a="urn:a" xmlns:b="urn:b" a="4" z="1" a:y="3" b:y="2"><x></x></r>"#
        );
        // Declarations by prefix, attributes by namespace URI, not by prefix.
        let xml = r#"<r xmlns:a="urn:z" xmlns:b="urn:y" a:k="1" b:k="2" k="3"/>"#;
        assert_eq!(
            root(xml),
            r#"<r xmlns:a="urn:z" xmlns:b="urn:y" k="3" b:k="2" a:k="1"></r>"#
        );
        // Single quotes and white space around `=` are not kept.
        assert_eq!(
            root("<r  b = 'x\"y'\ta='1' />"),
            r#"<r a="1" b="x&quot;y"></r>"#
        );
    }

    #[test]
    fn text_and_attribute_values_are_escaped_as_canonical_xml_says() {
        let xml =
            "<r a=\"&lt;&amp;&gt;&quot;'&#9;&#10;&#13;&#x41;\">&lt;&amp;&gt;\"'&#13;&#xe9;</r>";
        assert_eq!(
            root(xml),
            "<r a=\"&lt;&amp;>&quot;'&#x9;&#xA;&#xD;A\">&lt;&amp;&gt;\"'&#xD;\u{e9}</r>"
        );
        // Literal white space in an attribute value becomes a space.
        assert_eq!(root("<r a=\"x\ty\nz\"/>"), r#"<r a="x y z"></r>"#);
        // CDATA is text.
        assert_eq!(root("<r><![CDATA[<&>]]]]></r>"), "<r>&lt;&amp;&gt;]]</r>");
    }

    #[test]
    fn line_endings_are_normalised_before_anything() {
        assert_eq!(
            root("<r a=\"x\r\ny\rz\">l1\r\nl2\rl3\r\n<![CDATA[c\r\nd]]><?p a\r\nb?></r>"),
            "<r a=\"x y z\">l1\nl2\nl3\nc\nd<?p a\nb?></r>"
        );
    }

    #[test]
    fn empty_elements_become_start_end_pairs_and_the_prolog_goes() {
        let xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<!-- before -->\n<?before?>\n<r>\n  <e/><f></f>\n</r>\n<!-- after -->\n";
        assert_eq!(root(xml), "<r>\n  <e></e><f></f>\n</r>");
    }

    #[test]
    fn comments_go_and_processing_instructions_stay() {
        let xml = "<r><!-- a comment -->t<?pi   data  here ?><?empty?><?sp ?></r>";
        assert_eq!(root(xml), "<r>t<?pi data  here ?><?empty?><?sp?></r>");
    }

    #[test]
    fn the_default_namespace_is_undone_only_below_an_output_element_that_rendered_one() {
        let xml = r#"<r xmlns="urn:a"><s xmlns=""><t/></s></r>"#;
        assert_eq!(root(xml), r#"<r xmlns="urn:a"><s xmlns=""><t></t></s></r>"#);
        let s = Apex::Named {
            namespace: "",
            local: "s",
        };
        assert_eq!(canonical(xml, s, &Options::default()), "<s><t></t></s>");
        // The prefixed parent does not use the default namespace, so does not
        // render it, so there is nothing to undo.
        let xml = r#"<p:r xmlns:p="urn:p" xmlns="urn:a"><s xmlns=""/><u/></p:r>"#;
        assert_eq!(
            root(xml),
            r#"<p:r xmlns:p="urn:p"><s></s><u xmlns="urn:a"></u></p:r>"#
        );
    }

    #[test]
    fn a_declaration_is_rendered_where_used_unless_an_output_ancestor_rendered_it() {
        assert_eq!(
            root(r#"<a:r xmlns:a="urn:a"><a:s xmlns:a="urn:a"/><a:s xmlns:a="urn:b"/></a:r>"#),
            r#"<a:r xmlns:a="urn:a"><a:s></a:s><a:s xmlns:a="urn:b"></a:s></a:r>"#
        );
        // Siblings each declare what their parent did not render.
        assert_eq!(
            root(r#"<r xmlns:a="urn:a" xmlns:unused="urn:u"><a:s/><a:s a:k=""/></r>"#),
            r#"<r><a:s xmlns:a="urn:a"></a:s><a:s xmlns:a="urn:a" a:k=""></a:s></r>"#
        );
        // The xml prefix is never declared.
        assert_eq!(
            root(r#"<r xmlns:xml="http://www.w3.org/XML/1998/namespace" xml:lang="fr"/>"#),
            r#"<r xml:lang="fr"></r>"#
        );
    }

    /// The examples of Exclusive XML Canonicalization 1.0, section 2.2.
    #[test]
    fn the_examples_of_the_exclusive_canonicalization_recommendation() {
        let elem2 = Apex::Named {
            namespace: "http://example.net",
            local: "elem2",
        };
        let first = "<n0:local xmlns:n0=\"foo:bar\" xmlns:n3=\"ftp://example.org\">\n  <n1:elem2 xmlns:n1=\"http://example.net\" xml:lang=\"en\">\n    <n3:stuff xmlns:n3=\"ftp://example.org\"/>\n  </n1:elem2>\n</n0:local>";
        let second = "<n2:pdu xmlns:n1=\"http://example.com\"\n           xmlns:n2=\"http://foo.example\"\n           xmlns:n4=\"http://foo.example\"\n           xml:lang=\"fr\"\n           xml:foo=\"bar\">\n  <n1:elem2 xmlns:n1=\"http://example.net\" xml:lang=\"en\">\n    <n3:stuff xmlns:n3=\"ftp://example.org\"/>\n    <n4:stuff/>\n  </n1:elem2>\n</n2:pdu>";
        assert_eq!(
            canonical(first, elem2, &Options::default()),
            "<n1:elem2 xmlns:n1=\"http://example.net\" xml:lang=\"en\">\n    <n3:stuff xmlns:n3=\"ftp://example.org\"></n3:stuff>\n  </n1:elem2>"
        );
        assert_eq!(
            canonical(second, elem2, &Options::default()),
            "<n1:elem2 xmlns:n1=\"http://example.net\" xml:lang=\"en\">\n    <n3:stuff xmlns:n3=\"ftp://example.org\"></n3:stuff>\n    <n4:stuff xmlns:n4=\"http://foo.example\"></n4:stuff>\n  </n1:elem2>"
        );
    }

    const ENVELOPED: &str = r#"<env:E xmlns:env="urn:env" xmlns:unused="urn:u" xmlns="urn:d"><env:H><a:x xmlns:a="urn:a" ID="i1" env:m="1"><y/></a:x></env:H></env:E>"#;

    #[test]
    fn namespaces_declared_above_the_apex_are_rendered_where_used() {
        let apex = Apex::WithId {
            attribute: "ID",
            value: "i1",
        };
        assert_eq!(
            canonical(ENVELOPED, apex, &Options::default()),
            r#"<a:x xmlns:a="urn:a" xmlns:env="urn:env" ID="i1" env:m="1"><y xmlns="urn:d"></y></a:x>"#
        );
    }

    #[test]
    fn inclusive_prefixes_are_rendered_when_in_scope() {
        let apex = Apex::WithId {
            attribute: "ID",
            value: "i1",
        };
        let options = Options {
            inclusive_prefixes: &["unused", "#default", "absent"],
            omit_signatures: false,
        };
        assert_eq!(
            canonical(ENVELOPED, apex, &options),
            r#"<a:x xmlns="urn:d" xmlns:a="urn:a" xmlns:env="urn:env" xmlns:unused="urn:u" ID="i1" env:m="1"><y></y></a:x>"#
        );
        // An inclusive default namespace that is empty is undone like any.
        let options = Options {
            inclusive_prefixes: &["#default"],
            omit_signatures: false,
        };
        assert_eq!(
            canonical(
                r#"<p:r xmlns:p="urn:p" xmlns="urn:a"><p:s xmlns=""/></p:r>"#,
                Apex::Root,
                &options
            ),
            r#"<p:r xmlns="urn:a" xmlns:p="urn:p"><p:s xmlns=""></p:s></p:r>"#
        );
    }

    #[test]
    fn enveloped_signatures_below_the_apex_are_omitted() {
        let xml = r#"<a ID="x"><ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo a="1"><ds:X/></ds:SignedInfo></ds:Signature><b/><c><ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"/></c></a>"#;
        let apex = Apex::WithId {
            attribute: "ID",
            value: "x",
        };
        let omit = Options {
            inclusive_prefixes: &[],
            omit_signatures: true,
        };
        assert_eq!(
            canonical(xml, apex, &omit),
            r#"<a ID="x"><b></b><c></c></a>"#
        );
        let signed_info = Apex::Named {
            namespace: XMLDSIG,
            local: "SignedInfo",
        };
        assert_eq!(
            canonical(xml, signed_info, &Options::default()),
            r#"<ds:SignedInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#" a="1"><ds:X></ds:X></ds:SignedInfo>"#
        );
        // The apex itself is never omitted.
        let signature = Apex::Named {
            namespace: XMLDSIG,
            local: "Signature",
        };
        assert!(canonical(xml, signature, &omit).starts_with("<ds:Signature xmlns:ds="));
    }

    #[test]
    fn the_apex_is_the_first_match_in_document_order() {
        let xml = r#"<r><a ID="1"><b ID="1"/></a><c ID="1"/></r>"#;
        let apex = Apex::WithId {
            attribute: "ID",
            value: "1",
        };
        assert_eq!(
            canonical(xml, apex, &Options::default()),
            r#"<a ID="1"><b ID="1"></b></a>"#
        );
        // A namespaced attribute is not the ID asked for.
        let xml = r#"<r xmlns:p="urn:p"><a p:ID="1"/></r>"#;
        assert_eq!(
            canonicalize(xml.as_bytes(), apex, &Options::default()),
            Err(C14nError::ApexNotFound)
        );
    }

    #[test]
    fn a_hostile_or_malformed_document_is_refused_with_a_fixed_reason() {
        assert_eq!(
            refused("<!DOCTYPE r [<!ENTITY e \"secret\">]><r>&e;</r>"),
            C14nError::DoctypeRefused
        );
        assert_eq!(refused("<r>&e;</r>"), C14nError::EntityRefused);
        assert_eq!(refused("<r a=\"&nbsp;\"/>"), C14nError::EntityRefused);
        assert_eq!(refused("<p:r/>"), C14nError::UnboundPrefix);
        assert_eq!(refused("<r p:a=\"1\"/>"), C14nError::UnboundPrefix);
        assert!(matches!(
            canonicalize(
                b"<r/>",
                Apex::Named {
                    namespace: "urn:x",
                    local: "r"
                },
                &Options::default()
            ),
            Err(C14nError::ApexNotFound)
        ));
        for malformed in [
            "",
            "<r>",
            "<r></s>",
            "</r>",
            "<r/><r/>",
            "<r/>text",
            "text<r/>",
            "<r a=\"<\"/>",
            "<r a=\"1\" a=\"2\"/>",
            "<r xmlns:p=\"urn:x\" xmlns:q=\"urn:x\" p:a=\"1\" q:a=\"2\"/>",
            "<r xmlns:p=\"urn:x\" xmlns:p=\"urn:y\"/>",
            "<r a=\"1\"b=\"2\"/>",
            "<r a/>",
            "<r>&#0;</r>",
            "<r>&#xD800;</r>",
            "<r>&#x+41;</r>",
            "<r>&amp</r>",
            "<r>\u{1}</r>",
            "<r>]]></r>",
            "<r><!-- a -- b --></r>",
            " <?xml version=\"1.0\"?><r/>",
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><r/>",
            "<r><?xml version=\"1.0\"?></r>",
            "<r xmlns:p=\"\"/>",
            "<r xmlns:xml=\"urn:x\"/>",
            "<r xmlns:xmlns=\"urn:x\"/>",
            "<r xmlns=\"http://www.w3.org/2000/xmlns/\"/>",
            "<xmlns:r/>",
            "<a:b:c/>",
            "<1r/>",
            "<![CDATA[x]]><r/>",
        ] {
            assert!(
                matches!(refused(malformed), C14nError::NotWellFormed(_)),
                "{malformed:?} gave {:?}",
                canonicalize(malformed.as_bytes(), Apex::Root, &Options::default())
            );
        }
        assert!(matches!(
            canonicalize(b"<r>\xFF</r>", Apex::Root, &Options::default()),
            Err(C14nError::NotWellFormed(_))
        ));
        // The wording never quotes the document.
        let error = refused("<secret>&secret;</secret>");
        assert!(!error.to_string().contains("secret"));
        let error = refused("<secret><secret2></secret>");
        assert!(!error.to_string().contains("secret"));
    }

    #[test]
    fn size_and_depth_are_bounded() {
        let mut large = b"<r>".to_vec();
        large.resize(MAX_INPUT_BYTES + 1, b' ');
        assert_eq!(
            canonicalize(&large, Apex::Root, &Options::default()),
            Err(C14nError::TooLarge)
        );
        let deep = |depth: usize| "<a>".repeat(depth) + &"</a>".repeat(depth);
        assert!(canonicalize(deep(MAX_DEPTH).as_bytes(), Apex::Root, &Options::default()).is_ok());
        assert_eq!(
            canonicalize(
                deep(MAX_DEPTH + 1).as_bytes(),
                Apex::Root,
                &Options::default()
            ),
            Err(C14nError::TooDeep)
        );
        // One long namespace repeated on many elements that use it.
        let bomb = format!(
            "<r xmlns:p=\"urn:{}\">{}</r>",
            "x".repeat(100_000),
            "<p:a/>".repeat(10_000)
        );
        assert_eq!(
            canonicalize(bomb.as_bytes(), Apex::Root, &Options::default()),
            Err(C14nError::TooLarge)
        );
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        assert_eq!(
            canonicalize(b"\xEF\xBB\xBF<r/>", Apex::Root, &Options::default()),
            Ok(b"<r></r>".to_vec())
        );
    }

    /// A document that uses everything the canonical form treats specially.
    const SAMPLE: &str = "<?xml version=\"1.0\"?>\r\n<s:E xmlns:s=\"urn:s\" xmlns:x=\"urn:x\" xmlns=\"urn:d\">\r\n <s:H><A xmlns=\"urn:a\" xmlns:xsi=\"urn:xsi\" ID=\"_1\" b=\"t&#9;\r\nu\">\r\n  <I>i &amp; &lt;j&gt;</I><!-- c -->\r\n  <ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:SignedInfo><ds:R URI=\"#_1\"/></ds:SignedInfo></ds:Signature>\r\n  <V xsi:type=\"x:string\"><R xmlns=\"\" s:k=\"1\"/><![CDATA[<c>]]><?p d?></V>\r\n </A></s:H>\r\n</s:E>\r\n";

    fn apexes() -> [Apex<'static>; 3] {
        [
            Apex::Root,
            Apex::WithId {
                attribute: "ID",
                value: "_1",
            },
            Apex::Named {
                namespace: XMLDSIG,
                local: "SignedInfo",
            },
        ]
    }

    /// A random element tree written as XML, with prefixes a, b and c
    /// bound on the root and rebound below, default namespaces set and
    /// unset, attributes, text needing escapes, comments, PIs and CDATA.
    fn arbitrary_document() -> impl Strategy<Value = String> {
        let name = prop_oneof![Just("e"), Just("a:e"), Just("b:f"), Just("c:g"), Just("h")];
        let declaration = prop_oneof![
            Just(""),
            Just(" xmlns=\"urn:1\""),
            Just(" xmlns=\"\""),
            Just(" xmlns:a=\"urn:2\""),
            Just(" xmlns:b=\"urn:1\""),
        ];
        let attributes = prop::sample::subsequence(
            vec![
                " k=\"1\"",
                " a:k=\"&amp;\t\"",
                " b:j='\"&#13;'",
                " c:k=\"&#x9;x\"",
                " z=\"\r\n\"",
            ],
            0..4,
        );
        let leaf = prop_oneof![
            "[a-z &<>\"'\r\n\t\u{e9}]{0,8}".prop_map(|text| text
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&#62;")),
            Just("<!-- note -->".to_owned()),
            Just("<?pi some data?>".to_owned()),
            Just("<![CDATA[<x>&]]>".to_owned()),
            Just("&#13;\r\n".to_owned()),
        ];
        let tree = leaf.prop_recursive(5, 48, 4, move |inner| {
            (
                name.clone(),
                declaration.clone(),
                attributes.clone(),
                prop::collection::vec(inner, 0..4),
            )
                .prop_map(|(name, declaration, attributes, children)| {
                    format!(
                        "<{name}{declaration}{}>{}</{name}>",
                        attributes.concat(),
                        children.concat()
                    )
                })
        });
        tree.prop_map(|content| {
            format!("<a:root xmlns:a=\"urn:a\" xmlns:b=\"urn:b\" xmlns:c=\"urn:c\" ID=\"_1\">{content}</a:root>")
        })
    }

    /// The canonical form is canonical: canonicalizing it again changes nothing.
    fn assert_idempotent(canonical: &[u8], options: &Options<'_>) {
        let again = canonicalize(
            canonical,
            Apex::Root,
            &Options {
                inclusive_prefixes: options.inclusive_prefixes,
                omit_signatures: false,
            },
        );
        assert_eq!(again.as_deref(), Ok(canonical));
    }

    #[test]
    fn the_sample_is_canonical_once_canonicalized() {
        let omit = Options {
            inclusive_prefixes: &[],
            omit_signatures: true,
        };
        let assertion = canonical(SAMPLE, apexes()[1], &omit);
        assert_eq!(
            assertion,
            "<A xmlns=\"urn:a\" ID=\"_1\" b=\"t&#x9; u\">\n  <I>i &amp; &lt;j&gt;</I>\n  \n  <V xmlns:xsi=\"urn:xsi\" xsi:type=\"x:string\"><R xmlns=\"\" xmlns:s=\"urn:s\" s:k=\"1\"></R>&lt;c&gt;<?p d?></V>\n </A>"
        );
        assert_idempotent(assertion.as_bytes(), &omit);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            for apex in apexes() {
                let _ = canonicalize(&bytes, apex, &Options::default());
            }
        }

        #[test]
        fn a_mutated_document_never_panics_and_what_is_read_is_canonical(
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..6),
            omit_signatures in any::<bool>(),
        ) {
            let mut bytes = SAMPLE.as_bytes().to_vec();
            for (index, byte, kind) in edits {
                let position = index.index(bytes.len() + 1);
                match kind {
                    0 => bytes.insert(position, byte),
                    1 if position < bytes.len() => bytes[position] = byte,
                    _ if position < bytes.len() => { bytes.remove(position); }
                    _ => {}
                }
            }
            let options = Options { inclusive_prefixes: &[], omit_signatures };
            for apex in apexes() {
                if let Ok(canonical) = canonicalize(&bytes, apex, &options) {
                    assert_idempotent(&canonical, &options);
                }
            }
        }

        #[test]
        fn a_canonical_form_is_its_own_canonical_form(
            document in arbitrary_document(),
            inclusive in any::<bool>(),
        ) {
            let options = Options {
                inclusive_prefixes: if inclusive { &["b", "#default"] } else { &[] },
                omit_signatures: false,
            };
            // Every generated document is well formed except where an
            // attribute's prefix is rebound to the namespace of another
            // attribute of the same name.
            match canonicalize(document.as_bytes(), Apex::Root, &options) {
                Ok(canonical) => assert_idempotent(&canonical, &options),
                Err(error) => prop_assert_eq!(error, C14nError::NotWellFormed("duplicate attribute")),
            }
        }
    }

    /// Interoperability with xmlsec1 (libxmlsec1 over libxml2's
    /// canonicalizer), which the DMP's and most SAML peers' signatures come
    /// from: a signature xmlsec1 makes checks here, and one made here checks
    /// in xmlsec1.
    mod xmlsec1 {
        use super::*;
        use base64::engine::general_purpose::STANDARD as BASE64;
        use base64::Engine as _;
        use ring::signature::{
            RsaKeyPair, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256,
        };
        use std::path::Path;
        use std::process::Command;

        const SAML: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
        const ASSERTION_ID: &str = "_c0ffee-2a";
        const SIGNED_INFO: Apex<'static> = Apex::Named {
            namespace: XMLDSIG,
            local: "SignedInfo",
        };

        /// A SAML 2.0 assertion in a WS-Security header, signed with an
        /// empty signature template, written compactly.
        const COMPACT: &str = concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            "\n",
            r#"<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://www.w3.org/2005/08/addressing" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns="urn:unused:default">"#,
            r#"<soap:Header><wsa:Action>urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b</wsa:Action>"#,
            r#"<wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd" xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd" soap:mustUnderstand="true">"#,
            r#"<Assertion xmlns="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="_c0ffee-2a" IssueInstant="2024-05-02T10:00:00Z" Version="2.0">"#,
            r#"<Issuer Format="urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName">CN=passerelle,O=Test</Issuer>"#,
            r#"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>"#,
            r#"<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>"#,
            r#"<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>"#,
            r##"<ds:Reference URI="#_c0ffee-2a"><ds:Transforms>"##,
            r#"<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>"#,
            r#"<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>"#,
            r#"</ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>"#,
            r#"<ds:DigestValue/></ds:Reference></ds:SignedInfo><ds:SignatureValue/>"#,
            r#"<ds:KeyInfo><ds:KeyName>test</ds:KeyName></ds:KeyInfo></ds:Signature>"#,
            r#"<Subject><NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified">DUPONT &amp; fils &lt;r&gt; "é"</NameID></Subject>"#,
            r#"<Conditions NotBefore="2024-05-02T10:00:00Z" NotOnOrAfter="2024-05-02T11:00:00Z"/><!-- a comment -->"#,
            r#"<AttributeStatement><Attribute Name="urn:oasis:names:tc:xacml:2.0:subject:role"><AttributeValue>"#,
            r#"<Role xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CE" code="AUTOMATE" codeSystem="1.2.250.1.213.1.1.4.6" displayName="Automate&#10;tab&#9;end"/>"#,
            r#"</AttributeValue></Attribute><Attribute Name="urn:oasis:names:tc:xspa:1.0:subject:purposeofuse"><AttributeValue xsi:type="xsd:string">NORMAL&#13;</AttributeValue></Attribute>"#,
            r#"</AttributeStatement></Assertion></wsse:Security></soap:Header><soap:Body/></soap:Envelope>"#,
            "\n",
        );

        /// The same assertion pretty-printed with CR LF line ends, other
        /// attribute orders and quotes, a CDATA section and a processing
        /// instruction, and an InclusiveNamespaces PrefixList for `xsd`
        /// (used only in an attribute value, so rendered only when listed).
        const PRETTY: &str = "<?xml version='1.0' encoding='UTF-8'?>\r
<!-- before -->\r
<soap:Envelope xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\"\r
               xmlns:soap=\"http://www.w3.org/2003/05/soap-envelope\">\r
  <soap:Header>\r
    <wsse:Security soap:mustUnderstand=\"true\"\r
        xmlns:wsse=\"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd\">\r
      <Assertion Version=\"2.0\" IssueInstant=\"2024-05-02T10:00:00Z\"\r
                 ID='_c0ffee-2a'\r
                 xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns=\"urn:oasis:names:tc:SAML:2.0:assertion\">\r
        <Issuer>CN=passerelle,O=Test</Issuer>\r
        <ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\">\r
          <ds:SignedInfo>\r
            <ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"></ds:CanonicalizationMethod>\r
            <ds:SignatureMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256\" />\r
            <ds:Reference URI=\"#_c0ffee-2a\">\r
              <ds:Transforms>\r
                <ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>\r
                <ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\">\r
                  <ec:InclusiveNamespaces xmlns:ec=\"http://www.w3.org/2001/10/xml-exc-c14n#\" PrefixList=\"xsd\"/>\r
                </ds:Transform>\r
              </ds:Transforms>\r
              <ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/>\r
              <ds:DigestValue></ds:DigestValue>\r
            </ds:Reference>\r
          </ds:SignedInfo>\r
          <ds:SignatureValue></ds:SignatureValue>\r
          <ds:KeyInfo><ds:KeyName>test</ds:KeyName></ds:KeyInfo>\r
        </ds:Signature>\r
        <Subject>\r
          <NameID>DUPONT <![CDATA[& fils <r>]]> \"\u{e9}\"</NameID>\r
        </Subject>\r
        <?audit kept  inside?>\r
        <AttributeStatement>\r
          <Attribute Name=\"urn:oasis:names:tc:xacml:2.0:subject:role\">\r
            <AttributeValue>\r
              <Role codeSystem=\"1.2.250.1.213.1.1.4.6\" code=\"AUTOMATE\"\r
                    xsi:type=\"CE\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns=\"urn:hl7-org:v3\"\r
                    displayName=\"Automate&#10;tab&#9;end\"/>\r
            </AttributeValue>\r
          </Attribute>\r
          <Attribute Name=\"urn:oasis:names:tc:xspa:1.0:subject:purposeofuse\">\r
            <AttributeValue xsi:type=\"xsd:string\">NORMAL</AttributeValue>\r
          </Attribute>\r
        </AttributeStatement>\r
      </Assertion>\r
    </wsse:Security>\r
  </soap:Header>\r
  <soap:Body/>\r
</soap:Envelope>\r
";

        /// The template and the PrefixList of its Reference's transform.
        const TEMPLATES: [(&str, &str, &[&str]); 2] =
            [("compact", COMPACT, &[]), ("pretty", PRETTY, &["xsd"])];

        fn run(command: &mut Command) -> Vec<u8> {
            let output = command.output().unwrap();
            assert!(
                output.status.success(),
                "{command:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            output.stdout
        }

        fn openssl(dir: &Path, arguments: &[&str]) {
            run(Command::new("openssl").current_dir(dir).args(arguments));
        }

        fn xmlsec1(dir: &Path, arguments: &[&str]) -> Vec<u8> {
            run(Command::new("xmlsec1").current_dir(dir).args(arguments))
        }

        /// The base64 text of the first `local` element of the ds namespace
        /// (written with the `ds` prefix), decoded.
        fn base64_content(xml: &str, local: &str) -> Vec<u8> {
            let start_tag = format!("<ds:{local}>");
            let start = xml.find(&start_tag).unwrap() + start_tag.len();
            let end = start + xml[start..].find("</ds:").unwrap();
            let text: String = xml[start..end]
                .chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect();
            BASE64.decode(text).unwrap()
        }

        /// `xml` with the empty `ds:local` element given a base64 content.
        fn fill(xml: &str, local: &str, value: &[u8]) -> String {
            let filled = format!("<ds:{local}>{}</ds:{local}>", BASE64.encode(value));
            let empty = format!("<ds:{local}/>");
            let empty_pair = format!("<ds:{local}></ds:{local}>");
            let target = if xml.contains(&empty) {
                empty
            } else {
                empty_pair
            };
            assert!(xml.contains(&target));
            xml.replacen(&target, &filled, 1)
        }

        fn reference_digest(xml: &str, prefix_list: &[&str]) -> Vec<u8> {
            let options = Options {
                inclusive_prefixes: prefix_list,
                omit_signatures: true,
            };
            let apex = Apex::WithId {
                attribute: "ID",
                value: ASSERTION_ID,
            };
            let canonical = canonicalize(xml.as_bytes(), apex, &options).unwrap();
            ring::digest::digest(&ring::digest::SHA256, &canonical)
                .as_ref()
                .to_vec()
        }

        /// Whether the signature of `xml` checks here with the public key
        /// `rsa_public_key` (PKCS#1 DER), digest first.
        fn checks_here(xml: &str, prefix_list: &[&str], rsa_public_key: &[u8]) -> bool {
            if reference_digest(xml, prefix_list) != base64_content(xml, "DigestValue") {
                return false;
            }
            let signed_info =
                canonicalize(xml.as_bytes(), SIGNED_INFO, &Options::default()).unwrap();
            UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, rsa_public_key)
                .verify(&signed_info, &base64_content(xml, "SignatureValue"))
                .is_ok()
        }

        /// The template signed here: digest, then the signature of SignedInfo.
        fn sign_here(template: &str, prefix_list: &[&str], key_pair: &RsaKeyPair) -> String {
            let digested = fill(
                template,
                "DigestValue",
                &reference_digest(template, prefix_list),
            );
            let signed_info =
                canonicalize(digested.as_bytes(), SIGNED_INFO, &Options::default()).unwrap();
            let mut signature = vec![0; key_pair.public().modulus_len()];
            key_pair
                .sign(
                    &RSA_PKCS1_SHA256,
                    &ring::rand::SystemRandom::new(),
                    &signed_info,
                    &mut signature,
                )
                .unwrap();
            fill(&digested, "SignatureValue", &signature)
        }

        #[test]
        fn signatures_made_by_xmlsec1_check_here_and_the_other_way_round() {
            let installed = |tool: &str| Command::new(tool).arg("version").output().is_ok();
            if !installed("xmlsec1") || !installed("openssl") {
                assert!(
                    std::env::var_os("PASSERELLE_REQUIRE_PEERS").is_none(),
                    "xmlsec1 and openssl are required here: run .ci/peers.sh"
                );
                println!("skipped: xmlsec1 or openssl not installed (run .ci/peers.sh)");
                return;
            }
            let version = xmlsec1(Path::new("."), &["--version"]);
            println!("{}", String::from_utf8_lossy(&version).trim());

            let dir = tempfile::tempdir().unwrap();
            let dir = dir.path();
            openssl(
                dir,
                &[
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                    "-out",
                    "key.pem",
                ],
            );
            openssl(
                dir,
                &["pkey", "-in", "key.pem", "-pubout", "-out", "public.pem"],
            );
            openssl(
                dir,
                &[
                    "rsa",
                    "-in",
                    "key.pem",
                    "-RSAPublicKey_out",
                    "-outform",
                    "DER",
                    "-out",
                    "public.der",
                ],
            );
            openssl(
                dir,
                &[
                    "pkcs8", "-topk8", "-nocrypt", "-in", "key.pem", "-outform", "DER", "-out",
                    "key.der",
                ],
            );
            let rsa_public_key = std::fs::read(dir.join("public.der")).unwrap();
            let key_pair =
                RsaKeyPair::from_pkcs8(&std::fs::read(dir.join("key.der")).unwrap()).unwrap();
            let id_attribute = format!("{SAML}:Assertion");

            for (name, template, prefix_list) in TEMPLATES {
                // xmlsec1 signs, the signature checks here.
                let template_file = format!("{name}-template.xml");
                let signed_file = format!("{name}-signed-by-xmlsec1.xml");
                std::fs::write(dir.join(&template_file), template).unwrap();
                xmlsec1(
                    dir,
                    &[
                        "--sign",
                        "--privkey-pem:test",
                        "key.pem",
                        "--id-attr:ID",
                        &id_attribute,
                        "--output",
                        &signed_file,
                        &template_file,
                    ],
                );
                let signed = std::fs::read_to_string(dir.join(&signed_file)).unwrap();
                assert!(
                    checks_here(&signed, prefix_list, &rsa_public_key),
                    "{name}: {signed}"
                );
                // A changed assertion no longer does.
                let tampered = signed.replacen("AUTOMATE", "AUTOMATF", 1);
                assert!(
                    !checks_here(&tampered, prefix_list, &rsa_public_key),
                    "{name}"
                );

                // Signed here, the signature checks in xmlsec1.
                let ours = sign_here(template, prefix_list, &key_pair);
                assert!(checks_here(&ours, prefix_list, &rsa_public_key), "{name}");
                let ours_file = format!("{name}-signed-here.xml");
                std::fs::write(dir.join(&ours_file), &ours).unwrap();
                xmlsec1(
                    dir,
                    &[
                        "--verify",
                        "--pubkey-pem:test",
                        "public.pem",
                        "--id-attr:ID",
                        &id_attribute,
                        &ours_file,
                    ],
                );
                // xmlsec1 digested what this module canonicalizes.
                assert_eq!(
                    base64_content(&signed, "DigestValue"),
                    base64_content(&ours, "DigestValue"),
                    "{name}"
                );
            }
        }
    }
}
