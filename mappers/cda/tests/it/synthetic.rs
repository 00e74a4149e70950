//! Synthetic documents: namespaces and prefixes, `xsi:type` under another
//! prefix, exact decimals, values by type, level-1 bodies, replacements.

use cda::{read, Body, Value};

use crate::{document, result_body, RECORD_TARGET};

fn first_value(text: &str) -> Value {
    let document = read(text.as_bytes()).unwrap();
    let lab = document.lab.unwrap();
    lab.observations[0].value.clone().unwrap()
}

#[test]
fn pq_decimals_stay_as_written() {
    let text = document(
        RECORD_TARGET,
        &result_body(r#"<value xsi:type="PQ" value="1.50" unit="mmol/L"/>"#),
    );
    match first_value(&text) {
        Value::Quantity(q) => {
            assert_eq!(q.value.as_deref(), Some("1.50"));
            assert_eq!(q.unit.as_deref(), Some("mmol/L"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn prefixed_hl7_namespace_and_xsi_type_under_another_prefix() {
    // Every element under a `v3:` prefix, xsi bound to `i:`, and the type
    // value written with its own prefix `h:` bound to the HL7 namespace.
    let text = document(
        RECORD_TARGET,
        &result_body(
            r#"<value xmlns:h="urn:hl7-org:v3" i:type="h:IVL_PQ" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><low value="0.270" unit="m[IU]/L"/><high value="4.200" unit="m[IU]/L" inclusive="false"/></value>"#,
        ),
    );
    let prefixed = text
        .replace(
            "<ClinicalDocument xmlns=\"urn:hl7-org:v3\"",
            "<v3:ClinicalDocument xmlns:v3=\"urn:hl7-org:v3\"",
        )
        .replace("</ClinicalDocument>", "</v3:ClinicalDocument>");
    let prefixed = regex_free_prefix(&prefixed);
    match first_value(&prefixed) {
        Value::Interval { low, high } => {
            assert_eq!(low.unwrap().quantity.value.as_deref(), Some("0.270"));
            let high = high.unwrap();
            assert_eq!(high.quantity.value.as_deref(), Some("4.200"));
            assert!(!high.inclusive);
        }
        other => panic!("{other:?}"),
    }
}

/// Puts every unprefixed element of the body under the `v3:` prefix
/// (the test documents have no default namespace left).
fn regex_free_prefix(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('<') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let next = rest.as_bytes().get(1).copied().unwrap_or(b' ');
        if next.is_ascii_alphabetic() && !rest.starts_with("<v3:") {
            out.push_str("<v3:");
            rest = &rest[1..];
        } else if next == b'/' && !rest.starts_with("</v3:") {
            out.push_str("</v3:");
            rest = &rest[2..];
        } else {
            out.push('<');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

#[test]
fn an_element_in_another_namespace_is_not_taken_for_hl7() {
    // `lab:statusCode` is an IHE extension, not the HL7 statusCode.
    let text = document(RECORD_TARGET, &result_body(r#"<lab:statusCode xmlns:lab="urn:oid:1.3.6.1.4.1.19376.1.3.2" code="aborted"/><value xsi:type="ST">positif</value>"#))
        .replace("<statusCode code=\"completed\"/>", "");
    let document = read(text.as_bytes()).unwrap();
    let lab = document.lab.unwrap();
    assert_eq!(lab.observations[0].status, None);
    assert_eq!(
        lab.observations[0].value,
        Some(Value::Text("positif".into()))
    );
}

#[test]
fn values_by_type() {
    let cases = [
        (
            r#"<value xsi:type="CD" code="10828004" codeSystem="2.16.840.1.113883.6.96" displayName="Positive"/>"#,
            "Coded",
        ),
        (r#"<value xsi:type="INT" value="12"/>"#, "Integer"),
        (r#"<value xsi:type="REAL" value="0.10"/>"#, "Real"),
        (r#"<value xsi:type="BL" value="true"/>"#, "Boolean"),
        (
            r#"<value xsi:type="RTO"><numerator value="1"/><denominator value="160"/></value>"#,
            "Ratio",
        ),
        (
            r#"<value xsi:type="IVL_TS"><low value="2024"/></value>"#,
            "Other",
        ),
    ];
    for (value, kind) in cases {
        let read = first_value(&document(RECORD_TARGET, &result_body(value)));
        assert!(format!("{read:?}").starts_with(kind), "{value}: {read:?}");
    }
}

#[test]
fn level_one_body_and_replacement() {
    let text = document(RECORD_TARGET, "<nonXMLBody><text mediaType=\"application/pdf\" representation=\"B64\">JVBERi0x\nLjQ=</text></nonXMLBody>")
        .replace("<setId", "<relatedDocument typeCode=\"RPLC\"><parentDocument><id root=\"1.2.3.4\" extension=\"DOC-0\"/></parentDocument></relatedDocument><setId");
    let document = read(text.as_bytes()).unwrap();
    match &document.body {
        Body::NonXml(body) => {
            assert_eq!(body.media_type.as_deref(), Some("application/pdf"));
            assert_eq!(body.content, "JVBERi0x\nLjQ=");
        }
        other => panic!("{other:?}"),
    }
    let related = &document.header.related_documents[0];
    assert_eq!(related.type_code.as_deref(), Some("RPLC"));
    assert_eq!(related.parent_ids[0].extension.as_deref(), Some("DOC-0"));
}

#[test]
fn missing_record_target_reads_as_none() {
    let document = read(document("", "").as_bytes()).unwrap();
    assert!(document.header.record_targets.is_empty());
}
