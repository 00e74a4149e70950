//! Writes the SOAP 1.2 envelope of an ITI-41 request: WS-Addressing
//! header (with room for a WS-Security header, where the VIHF goes), and
//! the `ProvideAndRegisterDocumentSetRequest` body whose ebRIM metadata
//! follows ITI TF-3 4.2.3 and whose documents are `xop:Include`s of the
//! package's parts ([`crate::mtom`]).

use crate::metadata::{Author, Code, DocumentEntry, Submission};
use crate::{scheme, ACTION_ITI41, LCM, RIM, SOAP_ENV, WSA, XDS_B, XOP};

/// The WS-Addressing values of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addressing {
    /// `wsa:To`: the endpoint's URL.
    pub to: String,
    /// `wsa:MessageID`, a `urn:uuid:`.
    pub message_id: String,
}

/// An XML text being written: escaping in one place.
pub(crate) struct Xml {
    out: String,
}

impl Xml {
    pub(crate) fn new() -> Xml {
        Xml {
            out: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
        }
    }

    pub(crate) fn open(&mut self, name: &str, attributes: &[(&str, &str)]) -> &mut Xml {
        self.start(name, attributes);
        self.out.push('>');
        self
    }

    pub(crate) fn empty(&mut self, name: &str, attributes: &[(&str, &str)]) -> &mut Xml {
        self.start(name, attributes);
        self.out.push_str("/>");
        self
    }

    fn start(&mut self, name: &str, attributes: &[(&str, &str)]) {
        self.out.push('<');
        self.out.push_str(name);
        for (key, value) in attributes {
            self.out.push(' ');
            self.out.push_str(key);
            self.out.push_str("=\"");
            self.out.push_str(&quick_xml::escape::escape(*value));
            self.out.push('"');
        }
    }

    pub(crate) fn text(&mut self, text: &str) -> &mut Xml {
        self.out.push_str(&quick_xml::escape::escape(text));
        self
    }

    /// Inserts XML that is already well formed (a signed assertion).
    pub(crate) fn raw(&mut self, xml: &str) -> &mut Xml {
        self.out.push_str(xml);
        self
    }

    pub(crate) fn close(&mut self, name: &str) -> &mut Xml {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
        self
    }

    /// `<name attributes>text</name>`.
    pub(crate) fn element(&mut self, name: &str, attributes: &[(&str, &str)], text: &str) {
        self.open(name, attributes).text(text).close(name);
    }

    pub(crate) fn finish(self) -> String {
        self.out
    }
}

/// The SOAP envelope of an ITI-41 request for `submission`; each document
/// entry's content is the package part whose Content-ID is
/// [`crate::mtom::content_id`] of the entry's id. `security` is a
/// WS-Security header block, written as given.
pub fn provide_and_register(
    submission: &Submission,
    addressing: &Addressing,
    security: Option<&str>,
) -> String {
    let mut xml = Xml::new();
    xml.open(
        "soap:Envelope",
        &[("xmlns:soap", SOAP_ENV), ("xmlns:wsa", WSA)],
    );
    xml.open("soap:Header", &[]);
    xml.element(
        "wsa:Action",
        &[("soap:mustUnderstand", "true")],
        ACTION_ITI41,
    );
    xml.element("wsa:MessageID", &[], &addressing.message_id);
    xml.open("wsa:ReplyTo", &[]);
    xml.element(
        "wsa:Address",
        &[],
        "http://www.w3.org/2005/08/addressing/anonymous",
    );
    xml.close("wsa:ReplyTo");
    xml.element("wsa:To", &[("soap:mustUnderstand", "true")], &addressing.to);
    if let Some(security) = security {
        xml.raw(security);
    }
    xml.close("soap:Header");
    xml.open("soap:Body", &[]);
    xml.open(
        "xdsb:ProvideAndRegisterDocumentSetRequest",
        &[
            ("xmlns:xdsb", XDS_B),
            ("xmlns:lcm", LCM),
            ("xmlns:rim", RIM),
            ("xmlns:xop", XOP),
        ],
    );
    xml.open("lcm:SubmitObjectsRequest", &[]);
    registry_objects(&mut xml, submission);
    xml.close("lcm:SubmitObjectsRequest");
    for document in &submission.documents {
        xml.open("xdsb:Document", &[("id", &document.id)]);
        let href = format!("cid:{}", crate::mtom::content_id(&document.id));
        xml.empty("xop:Include", &[("href", &href)]);
        xml.close("xdsb:Document");
    }
    xml.close("xdsb:ProvideAndRegisterDocumentSetRequest");
    xml.close("soap:Body");
    xml.close("soap:Envelope");
    xml.finish()
}

/// The `rim:RegistryObjectList` of a submission.
fn registry_objects(xml: &mut Xml, submission: &Submission) {
    let mut ids = IdCounter::default();
    xml.open("rim:RegistryObjectList", &[]);
    for document in &submission.documents {
        document_entry_with_status(xml, document, None, &mut ids);
    }
    let set = &submission.set;
    xml.open(
        "rim:RegistryPackage",
        &[
            ("id", &set.id),
            (
                "objectType",
                "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:RegistryPackage",
            ),
        ],
    );
    slot(xml, "submissionTime", &[&set.submission_time]);
    if let Some(title) = &set.title {
        name(xml, title);
    }
    for author in &set.authors {
        author_classification(xml, scheme::SS_AUTHOR, &set.id, author, &mut ids);
    }
    code_classification(
        xml,
        scheme::SS_CONTENT_TYPE,
        &set.id,
        &set.content_type,
        &mut ids,
    );
    external_identifier(
        xml,
        scheme::SS_UNIQUE_ID,
        &set.id,
        &set.unique_id,
        "XDSSubmissionSet.uniqueId",
        &mut ids,
    );
    external_identifier(
        xml,
        scheme::SS_SOURCE_ID,
        &set.id,
        &set.source_id,
        "XDSSubmissionSet.sourceId",
        &mut ids,
    );
    external_identifier(
        xml,
        scheme::SS_PATIENT_ID,
        &set.id,
        &set.patient_id,
        "XDSSubmissionSet.patientId",
        &mut ids,
    );
    xml.close("rim:RegistryPackage");
    let id = ids.next("cl");
    xml.empty(
        "rim:Classification",
        &[
            ("id", &id),
            ("classifiedObject", &set.id),
            ("classificationNode", scheme::SUBMISSION_SET_NODE),
        ],
    );
    for document in &submission.documents {
        let id = ids.next("as");
        xml.open(
            "rim:Association",
            &[
                ("id", &id),
                ("associationType", scheme::HAS_MEMBER),
                ("sourceObject", &set.id),
                ("targetObject", &document.id),
            ],
        );
        slot(xml, "SubmissionSetStatus", &["Original"]);
        xml.close("rim:Association");
    }
    for association in &submission.associations {
        xml.empty(
            "rim:Association",
            &[
                ("id", &association.id),
                ("associationType", &association.kind),
                ("sourceObject", &association.source),
                ("targetObject", &association.target),
            ],
        );
    }
    xml.close("rim:RegistryObjectList");
}

/// A document entry as a `rim:ExtrinsicObject`; `status` for registry
/// answers (`urn:oasis:names:tc:ebxml-regrep:StatusType:Approved`...).
pub(crate) fn document_entry_with_status(
    xml: &mut Xml,
    document: &DocumentEntry,
    status: Option<&str>,
    ids: &mut IdCounter,
) {
    let mut attributes = vec![
        ("id", document.id.as_str()),
        ("mimeType", document.mime_type.as_str()),
        ("objectType", scheme::DOCUMENT_ENTRY),
    ];
    if let Some(status) = status {
        attributes.push(("status", status));
    }
    xml.open("rim:ExtrinsicObject", &attributes);
    slot(xml, "creationTime", &[&document.creation_time]);
    slot(xml, "hash", &[&document.hash]);
    slot(xml, "languageCode", &[&document.language_code]);
    if let Some(authenticator) = &document.legal_authenticator {
        slot(xml, "legalAuthenticator", &[authenticator]);
    }
    if let Some(start) = &document.service_start_time {
        slot(xml, "serviceStartTime", &[start]);
    }
    if let Some(stop) = &document.service_stop_time {
        slot(xml, "serviceStopTime", &[stop]);
    }
    slot(xml, "size", &[&document.size.to_string()]);
    slot(xml, "sourcePatientId", &[&document.source_patient_id]);
    if !document.source_patient_info.is_empty() {
        let lines: Vec<&str> = document
            .source_patient_info
            .iter()
            .map(String::as_str)
            .collect();
        slot(xml, "sourcePatientInfo", &lines);
    }
    if let Some(title) = &document.title {
        name(xml, title);
    }
    if let Some(comments) = &document.comments {
        xml.open("rim:Description", &[]);
        xml.empty("rim:LocalizedString", &[("value", comments)]);
        xml.close("rim:Description");
    }
    for author in &document.authors {
        author_classification(xml, scheme::DE_AUTHOR, &document.id, author, ids);
    }
    let id = &document.id;
    code_classification(xml, scheme::DE_CLASS, id, &document.class_code, ids);
    for code in &document.confidentiality {
        code_classification(xml, scheme::DE_CONFIDENTIALITY, id, code, ids);
    }
    for code in &document.event_codes {
        code_classification(xml, scheme::DE_EVENT, id, code, ids);
    }
    code_classification(xml, scheme::DE_FORMAT, id, &document.format_code, ids);
    code_classification(
        xml,
        scheme::DE_FACILITY,
        id,
        &document.healthcare_facility_type,
        ids,
    );
    code_classification(
        xml,
        scheme::DE_PRACTICE,
        id,
        &document.practice_setting,
        ids,
    );
    code_classification(xml, scheme::DE_TYPE, id, &document.type_code, ids);
    external_identifier(
        xml,
        scheme::DE_PATIENT_ID,
        id,
        &document.patient_id,
        "XDSDocumentEntry.patientId",
        ids,
    );
    external_identifier(
        xml,
        scheme::DE_UNIQUE_ID,
        id,
        &document.unique_id,
        "XDSDocumentEntry.uniqueId",
        ids,
    );
    xml.close("rim:ExtrinsicObject");
}

/// Ids of the objects inside entries (`cl01`, `ei02`...): unique in the
/// submission, as ebRIM requires.
#[derive(Default)]
pub(crate) struct IdCounter(u32);

impl IdCounter {
    fn next(&mut self, prefix: &str) -> String {
        self.0 += 1;
        format!("{prefix}{:02}", self.0)
    }
}

fn slot(xml: &mut Xml, slot_name: &str, values: &[&str]) {
    xml.open("rim:Slot", &[("name", slot_name)]);
    xml.open("rim:ValueList", &[]);
    for value in values {
        xml.element("rim:Value", &[], value);
    }
    xml.close("rim:ValueList");
    xml.close("rim:Slot");
}

fn name(xml: &mut Xml, value: &str) {
    xml.open("rim:Name", &[]);
    xml.empty("rim:LocalizedString", &[("value", value)]);
    xml.close("rim:Name");
}

fn code_classification(
    xml: &mut Xml,
    classification_scheme: &str,
    object: &str,
    code: &Code,
    ids: &mut IdCounter,
) {
    let id = ids.next("cl");
    xml.open(
        "rim:Classification",
        &[
            ("id", &id),
            ("classificationScheme", classification_scheme),
            ("classifiedObject", object),
            ("nodeRepresentation", &code.code),
        ],
    );
    slot(xml, "codingScheme", &[&code.scheme]);
    name(xml, &code.display);
    xml.close("rim:Classification");
}

fn author_classification(
    xml: &mut Xml,
    classification_scheme: &str,
    object: &str,
    author: &Author,
    ids: &mut IdCounter,
) {
    let id = ids.next("cl");
    xml.open(
        "rim:Classification",
        &[
            ("id", &id),
            ("classificationScheme", classification_scheme),
            ("classifiedObject", object),
            ("nodeRepresentation", ""),
        ],
    );
    if let Some(person) = &author.person {
        slot(xml, "authorPerson", &[person]);
    }
    for (slot_name, values) in [
        ("authorInstitution", &author.institutions),
        ("authorRole", &author.roles),
        ("authorSpecialty", &author.specialties),
        ("authorTelecommunication", &author.telecoms),
    ] {
        if !values.is_empty() {
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            slot(xml, slot_name, &values);
        }
    }
    xml.close("rim:Classification");
}

fn external_identifier(
    xml: &mut Xml,
    identification_scheme: &str,
    object: &str,
    value: &str,
    label: &str,
    ids: &mut IdCounter,
) {
    let id = ids.next("ei");
    xml.open(
        "rim:ExternalIdentifier",
        &[
            ("id", &id),
            ("identificationScheme", identification_scheme),
            ("registryObject", object),
            ("value", value),
        ],
    );
    name(xml, label);
    xml.close("rim:ExternalIdentifier");
}
