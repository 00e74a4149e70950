//! FHIR XML, both ways, following the FHIR XML rules: elements in
//! definition order, primitives as `value` attributes (with their `id` and
//! extensions), `Element.id` and `Extension.url` as attributes, resources
//! wrapped in an element named after the slot that holds them, and the
//! narrative's XHTML carried as the exact text it was.
//!
//! What is an array, what is a number or a boolean, and the order of
//! elements come from `model.tsv`, generated from the R4
//! StructureDefinitions by `generate_model.py`. JSON values here are the
//! repository's (`exact_json`): numbers travel as their text,
//! so `1.50` stays `1.50` both ways. The same table carries each element's
//! `isSummary` flag and whether it is mandatory, which `_summary` reads
//! (`crate::elements`).

use std::collections::HashMap;
use std::sync::OnceLock;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use serde_json::{Map, Value};

use crate::exact_json;

const FHIR_NS: &str = "http://hl7.org/fhir";

/// Deepest element nesting read (serde_json's own limit for JSON is 128).
const MAX_DEPTH: usize = 128;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum XmlError {
    #[error("not well-formed XML: {0}")]
    NotXml(String),
    #[error("{0} is not a FHIR resource type")]
    NotAResource(String),
    #[error("{path}: no element '{name}' in FHIR R4")]
    UnknownElement { path: String, name: String },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Primitive(String),
    Complex(String),
    Resource,
}

#[derive(Debug, Clone)]
struct ElementDef {
    name: String,
    many: bool,
    kind: Kind,
    attribute: bool,
    /// Marked `isSummary` in the R4 base definition.
    summary: bool,
    /// Mandatory (`min >= 1`) in the R4 base definition.
    required: bool,
}

type Model = HashMap<String, Vec<ElementDef>>;

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let mut model: Model = HashMap::new();
        for line in include_str!("model.tsv").lines() {
            let fields: Vec<&str> = line.split('\t').collect();
            // Seven columns, as `generate_model.py` writes them; a test
            // below checks that every line has them, so nothing is skipped.
            let [owner, name, many, kind, attribute, summary, required] = fields.as_slice() else {
                continue;
            };
            let kind = match kind.split_once(':') {
                Some(("p", primitive)) => Kind::Primitive(primitive.to_string()),
                Some(("c", complex)) | Some(("b", complex)) => Kind::Complex(complex.to_string()),
                _ => Kind::Resource,
            };
            model
                .entry(owner.to_string())
                .or_default()
                .push(ElementDef {
                    name: name.to_string(),
                    many: *many == "*",
                    kind,
                    attribute: *attribute == "1",
                    summary: *summary == "1",
                    required: *required == "1",
                });
        }
        model
    })
}

fn definitions(owner: &str) -> &'static [ElementDef] {
    model().get(owner).map(Vec::as_slice).unwrap_or(&[])
}

fn is_resource_type(name: &str) -> bool {
    crate::is_r4_resource_type(name) && model().contains_key(name)
}

/// The type of an element, as FHIRPath Patch needs it (whether an added
/// element is an array, what a nested value's parts are).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Primitive,
    /// A datatype name, or a backbone element's path (`Patient.contact`),
    /// itself an owner in the model.
    Complex(&'static str),
    /// A slot holding a whole resource (`contained`).
    Resource,
}

/// Whether element `name` (its JSON name: `valueQuantity` for a choice)
/// of `owner` repeats (`0..*`) and its shape; `None` when FHIR R4 does
/// not define it there. The same table the XML codec reads, so that a
/// patch and the XML form agree on what is an array.
pub(crate) fn element_shape(owner: &str, name: &str) -> Option<(bool, Shape)> {
    let def = definitions(owner).iter().find(|def| def.name == name)?;
    let shape = match &def.kind {
        Kind::Primitive(_) => Shape::Primitive,
        Kind::Complex(complex) => Shape::Complex(complex.as_str()),
        Kind::Resource => Shape::Resource,
    };
    Some((def.many, shape))
}

/// Whether the model defines elements for `owner` (a resource, a
/// datatype or a backbone element's path).
pub(crate) fn is_known_owner(owner: &str) -> bool {
    model().contains_key(owner)
}

/// The JSON names of `owner`'s elements (a choice once per type).
pub(crate) fn element_names(owner: &str) -> impl Iterator<Item = &'static str> {
    definitions(owner).iter().map(|def| def.name.as_str())
}

/// What `_summary` needs to know of an element, from its R4 base
/// definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SummaryFlags {
    /// Marked `isSummary`: `_summary=true` keeps it.
    pub(crate) summary: bool,
    /// Mandatory (`min >= 1`): `_summary=text` keeps it at the top level.
    pub(crate) required: bool,
}

/// The `_summary` flags of element `name` (its JSON name) of `owner`;
/// `None` when FHIR R4 does not define it there.
pub(crate) fn summary_flags(owner: &str, name: &str) -> Option<SummaryFlags> {
    let def = definitions(owner).iter().find(|def| def.name == name)?;
    Some(SummaryFlags {
        summary: def.summary,
        required: def.required,
    })
}

/// The JSON names of the top-level elements of `resource_type` that its R4
/// base definition marks `isSummary` (a choice once per type), in
/// definition order; none for a type R4 does not define.
pub fn summary_elements(resource_type: &str) -> impl Iterator<Item = &'static str> {
    definitions(resource_type)
        .iter()
        .filter(|def| def.summary)
        .map(|def| def.name.as_str())
}

// ---------------------------------------------------------------- writing

/// A resource (JSON as the repository holds it) as FHIR XML.
pub fn to_xml(resource: &Value) -> Result<String, XmlError> {
    let mut out = String::with_capacity(1024);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    write_resource(&mut out, resource, true, "")?;
    Ok(out)
}

fn write_resource(
    out: &mut String,
    resource: &Value,
    root: bool,
    path: &str,
) -> Result<(), XmlError> {
    let resource_type = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !is_resource_type(resource_type) {
        return Err(XmlError::NotAResource(resource_type.to_string()));
    }
    let Some(object) = resource.as_object() else {
        return Err(XmlError::NotAResource(resource_type.to_string()));
    };
    out.push('<');
    out.push_str(resource_type);
    if root {
        out.push_str(" xmlns=\"");
        out.push_str(FHIR_NS);
        out.push('"');
    }
    out.push('>');
    let path = if path.is_empty() {
        resource_type.to_string()
    } else {
        format!("{path}.{resource_type}")
    };
    write_children(out, resource_type, object, &path, true)?;
    out.push_str("</");
    out.push_str(resource_type);
    out.push('>');
    Ok(())
}

fn check_known(
    owner: &str,
    object: &Map<String, Value>,
    path: &str,
    is_resource: bool,
) -> Result<(), XmlError> {
    let defs = definitions(owner);
    for key in object.keys() {
        if is_resource && key == "resourceType" {
            continue;
        }
        let name = key.strip_prefix('_').unwrap_or(key);
        if !defs.iter().any(|d| d.name == name) {
            return Err(XmlError::UnknownElement {
                path: path.to_string(),
                name: key.clone(),
            });
        }
    }
    Ok(())
}

fn write_children(
    out: &mut String,
    owner: &str,
    object: &Map<String, Value>,
    path: &str,
    is_resource: bool,
) -> Result<(), XmlError> {
    check_known(owner, object, path, is_resource)?;
    for def in definitions(owner) {
        if def.attribute {
            continue;
        }
        let value = object.get(&def.name);
        let extra = object.get(&format!("_{}", def.name));
        if value.is_none() && extra.is_none() {
            continue;
        }
        let child_path = format!("{path}.{}", def.name);
        if def.many {
            let values = value.and_then(Value::as_array);
            let extras = extra.and_then(Value::as_array);
            let count = values.map_or(0, Vec::len).max(extras.map_or(0, Vec::len));
            for index in 0..count {
                let item = values.and_then(|v| v.get(index)).filter(|v| !v.is_null());
                let item_extra = extras.and_then(|v| v.get(index)).filter(|v| !v.is_null());
                write_element(out, def, item, item_extra, &child_path)?;
            }
        } else {
            write_element(out, def, value, extra, &child_path)?;
        }
    }
    Ok(())
}

fn write_element(
    out: &mut String,
    def: &ElementDef,
    value: Option<&Value>,
    extra: Option<&Value>,
    path: &str,
) -> Result<(), XmlError> {
    match &def.kind {
        Kind::Primitive(primitive) if primitive == "xhtml" => {
            let Some(div) = value.and_then(Value::as_str) else {
                return Err(XmlError::Invalid {
                    path: path.to_string(),
                    reason: "the narrative is not a string".into(),
                });
            };
            out.push_str(div);
        }
        Kind::Primitive(_) => {
            out.push('<');
            out.push_str(&def.name);
            if let Some(id) = extra.and_then(|e| e.get("id")).and_then(Value::as_str) {
                push_attribute(out, "id", id);
            }
            if let Some(value) = value {
                let text = match value {
                    Value::String(text) => {
                        exact_json::number_text(value).unwrap_or(text).to_string()
                    }
                    Value::Bool(flag) => flag.to_string(),
                    Value::Number(number) => number.to_string(),
                    _ => {
                        return Err(XmlError::Invalid {
                            path: path.to_string(),
                            reason: "a primitive holds an object or array".into(),
                        })
                    }
                };
                push_attribute(out, "value", &text);
            }
            let extensions = extra
                .and_then(|e| e.get("extension"))
                .and_then(Value::as_array);
            match extensions {
                Some(extensions) if !extensions.is_empty() => {
                    out.push('>');
                    let extension_def = ElementDef {
                        name: "extension".into(),
                        many: true,
                        kind: Kind::Complex("Extension".into()),
                        attribute: false,
                        // As Element.extension is defined; the writer does
                        // not read them.
                        summary: false,
                        required: false,
                    };
                    for extension in extensions {
                        write_element(
                            out,
                            &extension_def,
                            Some(extension),
                            None,
                            &format!("{path}.extension"),
                        )?;
                    }
                    out.push_str("</");
                    out.push_str(&def.name);
                    out.push('>');
                }
                _ => out.push_str("/>"),
            }
        }
        Kind::Complex(owner) => {
            let Some(object) = value.and_then(Value::as_object) else {
                return Err(XmlError::Invalid {
                    path: path.to_string(),
                    reason: "expected an object".into(),
                });
            };
            out.push('<');
            out.push_str(&def.name);
            for attribute in definitions(owner).iter().filter(|d| d.attribute) {
                if let Some(text) = object.get(&attribute.name).and_then(Value::as_str) {
                    push_attribute(out, &attribute.name, text);
                }
            }
            out.push('>');
            write_children(out, owner, object, path, false)?;
            out.push_str("</");
            out.push_str(&def.name);
            out.push('>');
        }
        Kind::Resource => {
            let Some(resource) = value else {
                return Ok(());
            };
            out.push('<');
            out.push_str(&def.name);
            out.push('>');
            write_resource(out, resource, false, path)?;
            out.push_str("</");
            out.push_str(&def.name);
            out.push('>');
        }
    }
    Ok(())
}

fn push_attribute(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            other => out.push(other),
        }
    }
    out.push('"');
}

// ---------------------------------------------------------------- reading

/// An element as read: name, attributes, child elements, and where it
/// stands in the text (for the narrative, kept verbatim).
struct Node {
    name: String,
    attributes: Vec<(String, String)>,
    children: Vec<Node>,
    start: usize,
    end: usize,
}

fn read_tree(text: &str) -> Result<Node, XmlError> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Node> = Vec::new();
    loop {
        let start = position(&reader);
        let event = reader
            .read_event()
            .map_err(|e| XmlError::NotXml(format!("at byte {}: {e}", position(&reader))))?;
        match event {
            Event::Start(element) => {
                // Reading recurses along the nesting: bound it, as
                // serde_json bounds JSON, so no body can exhaust the stack.
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::NotXml(format!(
                        "elements nested deeper than {MAX_DEPTH}"
                    )));
                }
                stack.push(node(&element, start)?);
            }
            Event::Empty(element) => {
                let mut leaf = node(&element, start)?;
                leaf.end = position(&reader);
                match stack.last_mut() {
                    Some(parent) => parent.children.push(leaf),
                    None => return Ok(leaf),
                }
            }
            Event::End(_) => {
                let Some(mut done) = stack.pop() else {
                    return Err(XmlError::NotXml("an end tag without its start".into()));
                };
                done.end = position(&reader);
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => return Ok(done),
                }
            }
            Event::Eof => {
                return Err(XmlError::NotXml(
                    "the document ends before its root element closes".into(),
                ))
            }
            Event::DocType(_) => {
                return Err(XmlError::NotXml("DOCTYPE is not accepted".into()));
            }
            _ => {}
        }
    }
}

fn position(reader: &Reader<&[u8]>) -> usize {
    usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX)
}

fn node(element: &BytesStart<'_>, start: usize) -> Result<Node, XmlError> {
    let name = String::from_utf8_lossy(element.local_name().as_ref()).into_owned();
    let mut attributes = Vec::new();
    for attribute in element.attributes() {
        let attribute = attribute.map_err(|e| XmlError::NotXml(e.to_string()))?;
        let key = String::from_utf8_lossy(attribute.key.as_ref()).into_owned();
        if key == "xmlns" || key.starts_with("xmlns:") {
            continue;
        }
        let value = attribute
            .unescape_value()
            .map_err(|e| XmlError::NotXml(e.to_string()))?
            .into_owned();
        attributes.push((key, value));
    }
    Ok(Node {
        name,
        attributes,
        children: Vec::new(),
        start,
        end: start,
    })
}

/// FHIR XML as a resource (JSON as the repository holds it).
pub fn from_xml(text: &str) -> Result<Value, XmlError> {
    let root = read_tree(text)?;
    read_resource(text, &root, "")
}

fn read_resource(text: &str, node: &Node, path: &str) -> Result<Value, XmlError> {
    if !is_resource_type(&node.name) {
        return Err(XmlError::NotAResource(node.name.clone()));
    }
    let path = if path.is_empty() {
        node.name.clone()
    } else {
        format!("{path}.{}", node.name)
    };
    let mut object = Map::new();
    object.insert("resourceType".into(), Value::String(node.name.clone()));
    read_children(text, &node.name, node, &path, &mut object)?;
    Ok(Value::Object(object))
}

/// An element's values and `_name` extras, gathered from its repetitions.
type Collected<'a> = (&'a ElementDef, Vec<Option<Value>>, Vec<Option<Value>>);

fn read_children(
    text: &str,
    owner: &str,
    node: &Node,
    path: &str,
    object: &mut Map<String, Value>,
) -> Result<(), XmlError> {
    let defs = definitions(owner);
    for (key, value) in &node.attributes {
        match defs.iter().find(|d| d.attribute && &d.name == key) {
            Some(def) => {
                object.insert(def.name.clone(), Value::String(value.clone()));
            }
            None => {
                return Err(XmlError::UnknownElement {
                    path: path.to_string(),
                    name: format!("@{key}"),
                })
            }
        }
    }
    // Values and `_name` extras by element, in document order.
    let mut values: Vec<Collected<'_>> = Vec::new();
    for child in &node.children {
        let Some(def) = defs.iter().find(|d| !d.attribute && d.name == child.name) else {
            return Err(XmlError::UnknownElement {
                path: path.to_string(),
                name: child.name.clone(),
            });
        };
        let child_path = format!("{path}.{}", child.name);
        let (value, extra) = read_element(text, def, child, &child_path)?;
        match values.iter_mut().find(|(d, _, _)| d.name == def.name) {
            Some((d, items, extras)) => {
                if !d.many {
                    return Err(XmlError::Invalid {
                        path: child_path,
                        reason: "repeats an element that occurs once".into(),
                    });
                }
                items.push(value);
                extras.push(extra);
            }
            None => values.push((def, vec![value], vec![extra])),
        }
    }
    for (def, items, extras) in values {
        let put = |object: &mut Map<String, Value>, key: String, list: Vec<Option<Value>>| {
            if list.iter().all(Option::is_none) {
                return;
            }
            let value = if def.many {
                Value::Array(list.into_iter().map(|v| v.unwrap_or(Value::Null)).collect())
            } else {
                list.into_iter().next().flatten().unwrap_or(Value::Null)
            };
            object.insert(key, value);
        };
        put(object, def.name.clone(), items);
        put(object, format!("_{}", def.name), extras);
    }
    Ok(())
}

/// One element's JSON value and its `_name` extra (id, extensions), if any.
fn read_element(
    text: &str,
    def: &ElementDef,
    node: &Node,
    path: &str,
) -> Result<(Option<Value>, Option<Value>), XmlError> {
    match &def.kind {
        Kind::Primitive(primitive) if primitive == "xhtml" => {
            let raw = text.get(node.start..node.end).unwrap_or("");
            Ok((Some(Value::String(raw.to_string())), None))
        }
        Kind::Primitive(primitive) => {
            let mut extra = Map::new();
            let mut value = None;
            for (key, text_value) in &node.attributes {
                match key.as_str() {
                    "value" => value = Some(primitive_value(primitive, text_value, path)?),
                    "id" => {
                        extra.insert("id".into(), Value::String(text_value.clone()));
                    }
                    other => {
                        return Err(XmlError::UnknownElement {
                            path: path.to_string(),
                            name: format!("@{other}"),
                        })
                    }
                }
            }
            let mut extensions = Vec::new();
            for child in &node.children {
                if child.name != "extension" {
                    return Err(XmlError::UnknownElement {
                        path: path.to_string(),
                        name: child.name.clone(),
                    });
                }
                let mut object = Map::new();
                read_children(
                    text,
                    "Extension",
                    child,
                    &format!("{path}.extension"),
                    &mut object,
                )?;
                extensions.push(Value::Object(object));
            }
            if !extensions.is_empty() {
                extra.insert("extension".into(), Value::Array(extensions));
            }
            Ok((value, (!extra.is_empty()).then_some(Value::Object(extra))))
        }
        Kind::Complex(owner) => {
            let mut object = Map::new();
            read_children(text, owner, node, path, &mut object)?;
            Ok((Some(Value::Object(object)), None))
        }
        Kind::Resource => {
            let [inner] = node.children.as_slice() else {
                return Err(XmlError::Invalid {
                    path: path.to_string(),
                    reason: "expected exactly one resource inside".into(),
                });
            };
            Ok((Some(read_resource(text, inner, path)?), None))
        }
    }
}

fn primitive_value(primitive: &str, text: &str, path: &str) -> Result<Value, XmlError> {
    match primitive {
        "boolean" => match text {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(XmlError::Invalid {
                path: path.to_string(),
                reason: format!("'{text}' is not a boolean"),
            }),
        },
        "integer" | "positiveInt" | "unsignedInt" | "decimal" => {
            // A number keeps its text (exact_json's marked form).
            let number = exact_json::parse(text)
                .ok()
                .filter(|v| exact_json::number_text(v).is_some());
            number.ok_or_else(|| XmlError::Invalid {
                path: path.to_string(),
                reason: format!("'{text}' is not a number"),
            })
        }
        _ => Ok(Value::String(text.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(json: &str) -> (String, Value) {
        let value = exact_json::parse(json).unwrap();
        let xml = to_xml(&value).unwrap();
        (
            xml.clone(),
            from_xml(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}")),
        )
    }

    #[test]
    fn a_patient_is_written_in_definition_order_with_value_attributes() {
        let json = r#"{"resourceType":"Patient","gender":"female","id":"p1","birthDate":"1980-01-01","_birthDate":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime","valueDateTime":"1980-01-01T10:00:00+01:00"}]},"active":true,"name":[{"family":"Lefèvre & fils","given":["Zoé"]}],"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Zoé</p></div>"}}"#;
        let (xml, back) = round_trip(json);
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Patient xmlns=\"http://hl7.org/fhir\"><id value=\"p1\"/><text><status value=\"generated\"/><div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Zoé</p></div></text><active value=\"true\"/><name><family value=\"Lefèvre &amp; fils\"/><given value=\"Zoé\"/></name><gender value=\"female\"/><birthDate value=\"1980-01-01\"><extension url=\"http://hl7.org/fhir/StructureDefinition/patient-birthTime\"><valueDateTime value=\"1980-01-01T10:00:00+01:00\"/></extension></birthDate>"), "{xml}");
        assert_eq!(back, exact_json::parse(json).unwrap());
    }

    #[test]
    fn decimals_and_contained_resources_survive() {
        let json = r#"{"resourceType":"Observation","contained":[{"resourceType":"Patient","id":"x"}],"status":"final","code":{"text":"g"},"valueQuantity":{"value":1.50,"unit":"g/L"},"referenceRange":[{"low":{"value":0.70}}]}"#;
        let (xml, back) = round_trip(json);
        assert!(xml.contains("<value value=\"1.50\"/>"), "{xml}");
        assert!(
            xml.contains("<contained><Patient><id value=\"x\"/></Patient></contained>"),
            "{xml}"
        );
        assert_eq!(back, exact_json::parse(json).unwrap());
    }

    #[test]
    fn every_line_of_the_model_is_read_with_its_summary_flags() {
        let table = include_str!("model.tsv");
        for line in table.lines() {
            assert_eq!(line.split('\t').count(), 7, "{line}");
        }
        let read: usize = model().values().map(Vec::len).sum();
        assert_eq!(read, table.lines().count());
        let patient: Vec<_> = summary_elements("Patient").collect();
        for kept in [
            "id",
            "meta",
            "identifier",
            "name",
            "birthDate",
            "deceasedBoolean",
            "link",
        ] {
            assert!(patient.contains(&kept), "{kept}: {patient:?}");
        }
        for dropped in ["text", "contact", "communication", "photo", "extension"] {
            assert!(!patient.contains(&dropped), "{dropped}: {patient:?}");
        }
        let status = summary_flags("Observation", "status");
        assert_eq!(
            status,
            Some(SummaryFlags {
                summary: true,
                required: true
            })
        );
        assert_eq!(
            summary_flags("Attachment", "data").map(|f| f.summary),
            Some(false)
        );
        assert_eq!(summary_flags("Patient", "shoeSize"), None);
        assert_eq!(summary_elements("Nothing").count(), 0);
    }

    #[test]
    fn what_is_not_fhir_xml_is_refused() {
        assert!(matches!(from_xml("<Patient"), Err(XmlError::NotXml(_))));
        assert!(matches!(
            from_xml("<Nothing xmlns=\"http://hl7.org/fhir\"/>"),
            Err(XmlError::NotAResource(_))
        ));
        assert!(matches!(
            from_xml("<Patient xmlns=\"http://hl7.org/fhir\"><shoeSize value=\"42\"/></Patient>"),
            Err(XmlError::UnknownElement { .. })
        ));
        assert!(matches!(
            from_xml("<Patient xmlns=\"http://hl7.org/fhir\"><active value=\"yes\"/></Patient>"),
            Err(XmlError::Invalid { .. })
        ));
        let deep = format!(
            "<Patient xmlns=\"http://hl7.org/fhir\">{}{}</Patient>",
            "<extension url=\"x\">".repeat(10_000),
            "</extension>".repeat(10_000)
        );
        assert!(matches!(from_xml(&deep), Err(XmlError::NotXml(_))));
        let unknown = exact_json::parse(r#"{"resourceType":"Patient","shoeSize":42}"#).unwrap();
        assert!(matches!(
            to_xml(&unknown),
            Err(XmlError::UnknownElement { .. })
        ));
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_text_is_read_or_refused_without_panicking(text in any::<String>()) {
            let _ = from_xml(&text);
        }

        #[test]
        fn xml_like_text_is_read_or_refused_without_panicking(
            parts in proptest::collection::vec(prop_oneof![
                Just("<Patient xmlns=\"http://hl7.org/fhir\">".to_string()),
                Just("</Patient>".to_string()),
                Just("<name>".to_string()),
                Just("</name>".to_string()),
                Just("<family value=\"a&amp;b\"/>".to_string()),
                Just("<birthDate value=\"1980\"><extension url=\"u\"><valueInteger value=\"1\"/></extension></birthDate>".to_string()),
                Just("<text><div xmlns=\"http://www.w3.org/1999/xhtml\">x</div></text>".to_string()),
                Just("<contained><Patient/></contained>".to_string()),
                "[<>/a-z=\" &;]{0,12}",
            ], 0..12),
        ) {
            let text = parts.concat();
            if let Ok(value) = from_xml(&text) {
                let xml = to_xml(&value).unwrap();
                prop_assert_eq!(from_xml(&xml).unwrap(), value);
            }
        }
    }
}
