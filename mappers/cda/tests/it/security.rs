//! The reader's safety: DOCTYPEs (and so internal and external entities)
//! refused, only predefined and numeric references, the size and depth
//! limits at and over their bound, errors that name a place and never
//! quote the document.

use cda::{read, read_with_limits, CdaErrorKind, Limits};

use crate::{document, RECORD_TARGET};

#[test]
fn any_doctype_is_refused() {
    let internal = format!(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE ClinicalDocument [<!ENTITY secret \"CONFIDENTIEL\">]>\n{}",
        document(RECORD_TARGET, "").trim_start_matches("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
    );
    let error = read(internal.as_bytes()).unwrap_err();
    assert_eq!(error.kind, CdaErrorKind::DocType);
    assert_eq!((error.line, error.path.as_str()), (2, "/"));
    let external =
        "<!DOCTYPE x SYSTEM \"file:///etc/passwd\"><ClinicalDocument xmlns=\"urn:hl7-org:v3\"/>";
    assert_eq!(
        read(external.as_bytes()).unwrap_err().kind,
        CdaErrorKind::DocType
    );
    let plain = "<!DOCTYPE ClinicalDocument><ClinicalDocument xmlns=\"urn:hl7-org:v3\"/>";
    assert_eq!(
        read(plain.as_bytes()).unwrap_err().kind,
        CdaErrorKind::DocType
    );
}

#[test]
fn entity_expansion_is_refused_and_predefined_references_read() {
    // A billion-laughs payload cannot even declare its entities (DOCTYPE
    // refused); a reference to an undeclared one is refused, in text and
    // in attributes.
    let laughs = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;\">]><ClinicalDocument xmlns=\"urn:hl7-org:v3\"><title>&lol2;</title></ClinicalDocument>";
    assert_eq!(
        read(laughs.as_bytes()).unwrap_err().kind,
        CdaErrorKind::DocType
    );
    let in_text =
        document(RECORD_TARGET, "").replace("<title>Compte rendu</title>", "<title>&lol;</title>");
    let error = read(in_text.as_bytes()).unwrap_err();
    assert_eq!(error.kind, CdaErrorKind::Entity);
    assert_eq!(error.path, "/ClinicalDocument/title");
    let in_attribute =
        document(RECORD_TARGET, "").replace("extension=\"DOC-1\"", "extension=\"&xxe;\"");
    let error = read(in_attribute.as_bytes()).unwrap_err();
    assert_eq!(error.kind, CdaErrorKind::Entity);
    assert_eq!(error.path, "/ClinicalDocument");
    let predefined = document(RECORD_TARGET, "").replace(
        "<title>Compte rendu</title>",
        "<title>A &amp; B &lt;C&gt; &quot;&apos; &#233;&#x00E9;</title>",
    );
    let read = read(predefined.as_bytes()).unwrap();
    assert_eq!(read.header.title.as_deref(), Some("A & B <C> \"' éé"));
}

#[test]
fn size_limit_at_and_over_the_bound() {
    let text = document(RECORD_TARGET, "");
    let at = Limits {
        max_bytes: text.len(),
        ..Limits::default()
    };
    assert!(read_with_limits(text.as_bytes(), &at).is_ok());
    let under = Limits {
        max_bytes: text.len() - 1,
        ..Limits::default()
    };
    let error = read_with_limits(text.as_bytes(), &under).unwrap_err();
    assert_eq!(
        error.kind,
        CdaErrorKind::TooLarge {
            limit: text.len() - 1
        }
    );
}

#[test]
fn depth_limit_at_and_over_the_bound() {
    // ClinicalDocument / component / nonXMLBody / text: depth 4.
    let text = document(
        "",
        "<nonXMLBody><text mediaType=\"text/plain\">x</text></nonXMLBody>",
    );
    let at = Limits {
        max_depth: 4,
        ..Limits::default()
    };
    assert!(read_with_limits(text.as_bytes(), &at).is_ok());
    let under = Limits {
        max_depth: 3,
        ..Limits::default()
    };
    let error = read_with_limits(text.as_bytes(), &under).unwrap_err();
    assert_eq!(error.kind, CdaErrorKind::TooDeep { limit: 3 });
    assert_eq!(error.path, "/ClinicalDocument/component/nonXMLBody");
    // Deep nesting built to exhaust the stack stops at the default bound.
    let deep = format!(
        "<ClinicalDocument xmlns=\"urn:hl7-org:v3\">{}{}</ClinicalDocument>",
        "<a>".repeat(10_000),
        "</a>".repeat(10_000)
    );
    assert_eq!(
        read(deep.as_bytes()).unwrap_err().kind,
        CdaErrorKind::TooDeep { limit: 128 }
    );
}

#[test]
fn errors_name_line_column_and_path_without_quoting_the_document() {
    let broken = document(RECORD_TARGET, "").replace("<given>ANNE</given>", "<given>ANNE</family>");
    let error = read(broken.as_bytes()).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error.kind, CdaErrorKind::Malformed(_)),
        "{message}"
    );
    assert!(
        error
            .path
            .starts_with("/ClinicalDocument/recordTarget/patientRole/patient/name"),
        "{message}"
    );
    assert!(
        message.starts_with(&format!("line {}, column ", error.line)),
        "{message}"
    );
    assert!(
        !message.contains("ANNE") && !message.contains("PAT"),
        "{message}"
    );
    let unbound = document(RECORD_TARGET, "")
        .replace("<title>", "<x:title>")
        .replace("</title>", "</x:title>");
    assert_eq!(
        read(unbound.as_bytes()).unwrap_err().kind,
        CdaErrorKind::UnboundPrefix
    );
    let latin1 = document(RECORD_TARGET, "").replace("UTF-8", "ISO-8859-1");
    assert_eq!(
        read(latin1.as_bytes()).unwrap_err().kind,
        CdaErrorKind::Encoding
    );
    let not_cda = "<Bundle xmlns=\"http://hl7.org/fhir\"/>";
    assert_eq!(
        read(not_cda.as_bytes()).unwrap_err().kind,
        CdaErrorKind::NotClinicalDocument
    );
    assert_eq!(read(b"  ").unwrap_err().kind, CdaErrorKind::Empty);
    let unclosed = "<ClinicalDocument xmlns=\"urn:hl7-org:v3\"><title>x";
    assert!(matches!(
        read(unclosed.as_bytes()).unwrap_err().kind,
        CdaErrorKind::Malformed(_)
    ));
}
