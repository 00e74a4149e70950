//! Reads an ITI-41 request back into [`Submission`] metadata and its
//! documents: the receiving side (the DMP simulator). Reading is lenient
//! about order and strict about structure: every document entry must have
//! its document part and every part an entry.

use cda::xml::Element;

use crate::error::XdsError;
use crate::metadata::{Association, Author, Code, DocumentEntry, Submission, SubmissionSet};
use crate::mtom::href_content_id;
use crate::{scheme, LCM, RIM, SOAP_ENV, WSA, XDS_B, XOP};

/// Largest SOAP envelope read (metadata of a few documents and a VIHF).
pub const MAX_ENVELOPE_BYTES: usize = 4 * 1024 * 1024;

/// An ITI-41 request as received.
#[derive(Debug, Clone)]
pub struct ReceivedSubmission {
    pub action: Option<String>,
    pub message_id: Option<String>,
    pub to: Option<String>,
    /// The `wsse:Security` header block, when there is one (the VIHF).
    pub security: Option<Element>,
    pub submission: Submission,
    /// The document bytes, in the order of `submission.documents`.
    pub documents: Vec<Vec<u8>>,
    /// The package as read (for checks on the root part's type).
    pub root_type: Option<String>,
    /// The SOAP envelope's bytes (signatures are checked on them).
    pub envelope: Vec<u8>,
}

/// The WS-Security 1.0 namespace.
pub const WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";

/// Reads an MTOM-packaged ITI-41 request.
pub fn read_provide_and_register(
    content_type: &str,
    body: &[u8],
) -> Result<ReceivedSubmission, XdsError> {
    provide_and_register_of(&crate::query::read_envelope(content_type, body)?)
}

/// The ITI-41 request of an envelope already read
/// ([`crate::query::read_envelope`]): its metadata and its documents,
/// each the MTOM part its `xop:Include` names.
pub fn provide_and_register_of(
    read: &crate::query::Envelope,
) -> Result<ReceivedSubmission, XdsError> {
    if read.root_type.is_none() {
        return Err(XdsError::Mtom(
            "the request is not multipart/related (MTOM/XOP is required)",
        ));
    }
    let envelope = &read.root;
    let parts = &read.parts;
    let header = child(envelope, SOAP_ENV, "Header");
    let header_text = |name: &str| {
        header
            .and_then(|h| child(h, WSA, name))
            .and_then(Element::clean_text)
    };
    let action = header_text("Action");
    let message_id = header_text("MessageID");
    let to = header_text("To");
    let security = header.and_then(|h| child(h, WSSE, "Security")).cloned();
    let body = child(envelope, SOAP_ENV, "Body").ok_or(XdsError::Missing("soap:Body"))?;
    let request = child(body, XDS_B, "ProvideAndRegisterDocumentSetRequest").ok_or(
        XdsError::Missing("xdsb:ProvideAndRegisterDocumentSetRequest"),
    )?;
    let list = child(request, LCM, "SubmitObjectsRequest")
        .and_then(|r| child(r, RIM, "RegistryObjectList"))
        .ok_or(XdsError::Missing(
            "lcm:SubmitObjectsRequest/rim:RegistryObjectList",
        ))?;
    let submission = submission(list)?;
    let mut documents = Vec::with_capacity(submission.documents.len());
    let mut used = Vec::new();
    for entry in &submission.documents {
        let document = request
            .elements()
            .filter(|e| is(e, XDS_B, "Document"))
            .find(|e| e.attr("id") == Some(entry.id.as_str()))
            .ok_or_else(|| {
                XdsError::Document(format!("no xdsb:Document for the entry {}", entry.id))
            })?;
        let include = child(document, XOP, "Include").ok_or_else(|| {
            XdsError::Document(format!(
                "the document of {} is not an xop:Include (MTOM/XOP is required)",
                entry.id
            ))
        })?;
        let content_id = include
            .attr("href")
            .and_then(href_content_id)
            .ok_or_else(|| {
                XdsError::Document(format!("the xop:Include of {} has no cid: href", entry.id))
            })?;
        let part = parts
            .iter()
            .find(|p| p.content_id == content_id)
            .ok_or_else(|| {
                XdsError::Document(format!("no part for the document of {}", entry.id))
            })?;
        used.push(content_id);
        documents.push(part.bytes.clone());
    }
    let declared = request
        .elements()
        .filter(|e| is(e, XDS_B, "Document"))
        .count();
    if declared != submission.documents.len() || used.len() != parts.len() {
        return Err(XdsError::Document(
            "documents and document entries do not match one to one".into(),
        ));
    }
    Ok(ReceivedSubmission {
        action,
        message_id,
        to,
        security,
        submission,
        documents,
        root_type: read.root_type.clone(),
        envelope: read.bytes.clone(),
    })
}

pub(crate) fn is(element: &Element, namespace: &str, name: &str) -> bool {
    element.name.namespace.as_deref() == Some(namespace) && element.name.name == name
}

fn child<'e>(element: &'e Element, namespace: &str, name: &str) -> Option<&'e Element> {
    element.child_in(namespace, name)
}

pub(crate) fn children<'e>(
    element: &'e Element,
    namespace: &'e str,
    name: &'e str,
) -> impl Iterator<Item = &'e Element> + 'e {
    element.elements().filter(move |e| is(e, namespace, name))
}

/// The values of the slot `name`.
fn slot(element: &Element, name: &str) -> Vec<String> {
    children(element, RIM, "Slot")
        .filter(|s| s.attr("name") == Some(name))
        .flat_map(|s| {
            children(s, RIM, "ValueList")
                .flat_map(|l| children(l, RIM, "Value"))
                .map(|v| v.text().trim().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

pub(crate) fn first_slot(element: &Element, name: &str) -> Option<String> {
    slot(element, name).into_iter().next()
}

/// `rim:Name/rim:LocalizedString/@value`.
fn localized(element: &Element, name: &str) -> Option<String> {
    child(element, RIM, name)
        .and_then(|n| child(n, RIM, "LocalizedString"))
        .and_then(|s| s.attr("value"))
        .map(str::to_string)
}

fn classifications<'e>(
    element: &'e Element,
    scheme_id: &'e str,
) -> impl Iterator<Item = &'e Element> + 'e {
    children(element, RIM, "Classification")
        .filter(move |c| c.attr("classificationScheme") == Some(scheme_id))
}

fn code(classification: &Element) -> Code {
    Code {
        code: classification
            .attr("nodeRepresentation")
            .unwrap_or_default()
            .to_string(),
        scheme: first_slot(classification, "codingScheme").unwrap_or_default(),
        display: localized(classification, "Name").unwrap_or_default(),
    }
}

fn codes(element: &Element, scheme_id: &str) -> Vec<Code> {
    classifications(element, scheme_id).map(code).collect()
}

fn one_code(element: &Element, scheme_id: &str) -> Code {
    codes(element, scheme_id)
        .into_iter()
        .next()
        .unwrap_or_default()
}

fn authors(element: &Element, scheme_id: &str) -> Vec<Author> {
    classifications(element, scheme_id)
        .map(|c| Author {
            person: first_slot(c, "authorPerson"),
            institutions: slot(c, "authorInstitution"),
            roles: slot(c, "authorRole"),
            specialties: slot(c, "authorSpecialty"),
            telecoms: slot(c, "authorTelecommunication"),
        })
        .collect()
}

fn external_identifier(element: &Element, scheme_id: &str) -> String {
    children(element, RIM, "ExternalIdentifier")
        .find(|e| e.attr("identificationScheme") == Some(scheme_id))
        .and_then(|e| e.attr("value"))
        .unwrap_or_default()
        .to_string()
}

/// A document entry (`rim:ExtrinsicObject`) as metadata.
pub(crate) fn document_entry(object: &Element) -> Result<DocumentEntry, XdsError> {
    let id = object
        .attr("id")
        .ok_or(XdsError::Missing("rim:ExtrinsicObject/@id"))?
        .to_string();
    Ok(DocumentEntry {
        unique_id: external_identifier(object, scheme::DE_UNIQUE_ID),
        patient_id: external_identifier(object, scheme::DE_PATIENT_ID),
        source_patient_id: first_slot(object, "sourcePatientId").unwrap_or_default(),
        source_patient_info: slot(object, "sourcePatientInfo"),
        mime_type: object.attr("mimeType").unwrap_or_default().to_string(),
        hash: first_slot(object, "hash").unwrap_or_default(),
        size: first_slot(object, "size")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        language_code: first_slot(object, "languageCode").unwrap_or_default(),
        creation_time: first_slot(object, "creationTime").unwrap_or_default(),
        service_start_time: first_slot(object, "serviceStartTime"),
        service_stop_time: first_slot(object, "serviceStopTime"),
        title: localized(object, "Name"),
        comments: localized(object, "Description"),
        class_code: one_code(object, scheme::DE_CLASS),
        type_code: one_code(object, scheme::DE_TYPE),
        format_code: one_code(object, scheme::DE_FORMAT),
        healthcare_facility_type: one_code(object, scheme::DE_FACILITY),
        practice_setting: one_code(object, scheme::DE_PRACTICE),
        confidentiality: codes(object, scheme::DE_CONFIDENTIALITY),
        event_codes: codes(object, scheme::DE_EVENT),
        authors: authors(object, scheme::DE_AUTHOR),
        legal_authenticator: first_slot(object, "legalAuthenticator"),
        id,
    })
}

fn submission(list: &Element) -> Result<Submission, XdsError> {
    let mut documents = Vec::new();
    for object in children(list, RIM, "ExtrinsicObject") {
        documents.push(document_entry(object)?);
    }
    let mut packages = children(list, RIM, "RegistryPackage");
    let package = packages.next().ok_or(XdsError::Missing(
        "rim:RegistryPackage (the submission set)",
    ))?;
    if packages.next().is_some() {
        return Err(XdsError::Unexpected(
            "more than one RegistryPackage (folders are not taken)".into(),
        ));
    }
    let set_id = package
        .attr("id")
        .ok_or(XdsError::Missing("rim:RegistryPackage/@id"))?
        .to_string();
    let classified = children(list, RIM, "Classification")
        .chain(children(package, RIM, "Classification"))
        .any(|c| {
            c.attr("classificationNode") == Some(scheme::SUBMISSION_SET_NODE)
                && c.attr("classifiedObject") == Some(set_id.as_str())
        });
    if !classified {
        return Err(XdsError::Missing(
            "the Classification that makes the RegistryPackage a submission set",
        ));
    }
    let set = SubmissionSet {
        unique_id: external_identifier(package, scheme::SS_UNIQUE_ID),
        source_id: external_identifier(package, scheme::SS_SOURCE_ID),
        patient_id: external_identifier(package, scheme::SS_PATIENT_ID),
        submission_time: first_slot(package, "submissionTime").unwrap_or_default(),
        content_type: one_code(package, scheme::SS_CONTENT_TYPE),
        title: localized(package, "Name"),
        authors: authors(package, scheme::SS_AUTHOR),
        id: set_id,
    };
    let mut associations = Vec::new();
    for association in children(list, RIM, "Association") {
        let kind = association.attr("associationType").unwrap_or_default();
        let source = association.attr("sourceObject").unwrap_or_default();
        let target = association.attr("targetObject").unwrap_or_default();
        if kind == scheme::HAS_MEMBER && source == set.id {
            if !documents.iter().any(|d| d.id == target) {
                return Err(XdsError::Unexpected(
                    "a HasMember association names no document entry".into(),
                ));
            }
            continue;
        }
        associations.push(Association {
            id: association.attr("id").unwrap_or_default().to_string(),
            kind: kind.to_string(),
            source: source.to_string(),
            target: target.to_string(),
        });
    }
    Ok(Submission {
        set,
        documents,
        associations,
    })
}
