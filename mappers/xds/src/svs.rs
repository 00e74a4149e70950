//! IHE Sharing Value Sets (ITI-48) `RetrieveValueSetResponse` documents:
//! the form in which the ANS publishes the JDV value sets that XDS
//! metadata codes are drawn from (`JDV_J07_XdsTypeCode_CISIS.xml`…).

use cda::xml::parse;

use crate::error::XdsError;
use crate::metadata::Code;

/// The SVS namespace.
pub const SVS: &str = "urn:ihe:iti:svs:2008";

/// One value set: its OID, its name and its concepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueSet {
    pub id: String,
    pub name: String,
    pub concepts: Vec<Code>,
}

impl ValueSet {
    /// Whether `code` in `scheme` is a concept of the set.
    pub fn contains(&self, code: &str, scheme: &str) -> bool {
        self.concepts
            .iter()
            .any(|c| c.code == code && c.scheme == scheme)
    }

    /// The concept `code` of the set, whatever its scheme.
    pub fn concept(&self, code: &str) -> Option<&Code> {
        self.concepts.iter().find(|c| c.code == code)
    }
}

/// Largest value-set file read (the biggest JDV is a few hundred KB).
pub const MAX_VALUE_SET_BYTES: usize = 16 * 1024 * 1024;

/// Reads an SVS `RetrieveValueSetResponse` (or a bare `ValueSet`).
pub fn read(bytes: &[u8]) -> Result<ValueSet, XdsError> {
    let limits = cda::Limits {
        max_bytes: MAX_VALUE_SET_BYTES,
        max_depth: 16,
    };
    let root = parse(bytes, &limits)?;
    let in_svs = |e: &cda::xml::Element, name: &str| {
        e.name.namespace.as_deref() == Some(SVS) && e.name.name == name
    };
    let set = if in_svs(&root, "ValueSet") {
        &root
    } else {
        root.elements()
            .find(|e| in_svs(e, "ValueSet"))
            .ok_or(XdsError::Missing("svs:ValueSet"))?
    };
    let concepts = set
        .elements()
        .filter(|e| in_svs(e, "ConceptList"))
        .flat_map(|list| list.elements().filter(|e| in_svs(e, "Concept")))
        .filter_map(|c| {
            Some(Code {
                code: c.attr("code")?.to_string(),
                scheme: c.attr("codeSystem")?.to_string(),
                display: c.attr("displayName").unwrap_or_default().to_string(),
            })
        })
        .collect();
    Ok(ValueSet {
        id: set.attr("id").unwrap_or_default().to_string(),
        name: set.attr("displayName").unwrap_or_default().to_string(),
        concepts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_set_is_read() {
        let text = br#"<?xml version="1.0" encoding="UTF-8"?>
<RetrieveValueSetResponse xmlns="urn:ihe:iti:svs:2008"><ValueSet id="1.2.3" displayName="JDV_X">
<ConceptList><Concept code="A" codeSystem="1.2.4" displayName="a"/><Concept code="B" codeSystem="1.2.5"/></ConceptList>
</ValueSet></RetrieveValueSetResponse>"#;
        let set = read(text).unwrap();
        assert_eq!(set.id, "1.2.3");
        assert!(set.contains("A", "1.2.4"));
        assert!(!set.contains("A", "1.2.5"));
        assert_eq!(set.concept("B").map(|c| c.scheme.as_str()), Some("1.2.5"));
    }

    /// A value-set file is read up to [`MAX_VALUE_SET_BYTES`]; a larger
    /// one is refused, not read.
    #[test]
    fn value_sets_over_the_limit_are_refused() {
        let head = br#"<RetrieveValueSetResponse xmlns="urn:ihe:iti:svs:2008"><ValueSet id="1.2.3"><ConceptList>"#;
        let tail = br#"<Concept code="A" codeSystem="1.2.4"/></ConceptList></ValueSet></RetrieveValueSetResponse>"#;
        let sized = |size: usize| {
            let mut text = head.to_vec();
            text.resize(size - tail.len(), b' ');
            text.extend_from_slice(tail);
            text
        };
        assert!(read(&sized(MAX_VALUE_SET_BYTES))
            .unwrap()
            .contains("A", "1.2.4"));
        assert!(read(&sized(MAX_VALUE_SET_BYTES + 1)).is_err());
    }
}
