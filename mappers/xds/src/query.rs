//! The registry and repository requests beside ITI-41: ITI-18 Registry
//! Stored Query (FindDocuments by patient, GetDocuments by uniqueId;
//! answered with `LeafClass` document entries and their status), ITI-43
//! Retrieve Document Set (answered as MTOM, each document an
//! `xop:Include`) and ITI-62 Delete Document Set (IHE RMD: the entries to
//! remove, by entryUUID; answered with a `RegistryResponse`). Each request
//! and answer is written and read here, for the connector (which asks
//! before a replacement or a deletion) and the simulator (which answers).

use cda::xml::{parse, Element};

use crate::error::XdsError;
use crate::metadata::DocumentEntry;
use crate::mtom::{content_id, href_content_id, package, unpack, Package, Part};
use crate::read::{children, document_entry, first_slot, is, MAX_ENVELOPE_BYTES};
use crate::write::{document_entry_with_status, Addressing, IdCounter, Xml};
use crate::{RIM, RS, SOAP_ENV, STATUS_SUCCESS, WSA, XDS_B, XOP};

pub const ACTION_ITI18: &str = "urn:ihe:iti:2007:RegistryStoredQuery";
pub const ACTION_ITI18_RESPONSE: &str = "urn:ihe:iti:2007:RegistryStoredQueryResponse";
pub const ACTION_ITI43: &str = "urn:ihe:iti:2007:RetrieveDocumentSet";
pub const ACTION_ITI43_RESPONSE: &str = "urn:ihe:iti:2007:RetrieveDocumentSetResponse";
pub const ACTION_ITI62: &str = "urn:ihe:iti:2010:DeleteDocumentSet";
pub const ACTION_ITI62_RESPONSE: &str = "urn:ihe:iti:2010:DeleteDocumentSetResponse";
/// ebXML Registry queries.
pub const QUERY: &str = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0";
pub const FIND_DOCUMENTS: &str = "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d";
pub const GET_DOCUMENTS: &str = "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4";
pub const STATUS_APPROVED: &str = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved";
pub const STATUS_DEPRECATED: &str = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated";

/// A stored query this crate writes and reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredQuery {
    /// The approved documents of a patient (CX).
    FindDocuments { patient_id: String },
    /// Documents by uniqueId, whatever their status.
    GetDocuments { unique_ids: Vec<String> },
}

/// A document entry as the registry answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundEntry {
    /// The entryUUID (`urn:uuid:…`), the entry's `id`.
    pub entry: DocumentEntry,
    pub status: String,
    pub repository_unique_id: Option<String>,
}

/// One document asked for, or returned, by ITI-43.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrievedDocument {
    pub repository_unique_id: String,
    pub document_unique_id: String,
    pub mime_type: String,
    pub bytes: Vec<u8>,
}

/// A request as received: its addressing, its envelope and its body's
/// first element.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub action: Option<String>,
    pub message_id: Option<String>,
    pub root: Element,
    /// The envelope's bytes (for signature checks).
    pub bytes: Vec<u8>,
    /// The other MTOM parts, when the request was a package.
    pub parts: Vec<Part>,
    /// The root part's `type` (`application/soap+xml`), when the request
    /// was a package.
    pub root_type: Option<String>,
}

impl Envelope {
    /// The first element of the SOAP body.
    pub fn body(&self) -> Option<&Element> {
        self.root
            .child_in(SOAP_ENV, "Body")
            .and_then(|body| body.elements().next())
    }
}

/// Reads a SOAP 1.2 request, plain (`application/soap+xml`) or MTOM.
pub fn read_envelope(content_type: &str, body: &[u8]) -> Result<Envelope, XdsError> {
    let (bytes, parts, root_type) = if content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("multipart/related")
    {
        let unpacked = unpack(content_type, body)?;
        (unpacked.root, unpacked.parts, unpacked.root_type)
    } else {
        (body.to_vec(), Vec::new(), None)
    };
    let limits = cda::Limits {
        max_bytes: MAX_ENVELOPE_BYTES,
        max_depth: 64,
    };
    let root = parse(&bytes, &limits)?;
    if !is(&root, SOAP_ENV, "Envelope") {
        return Err(XdsError::Unexpected("not a SOAP 1.2 Envelope".into()));
    }
    let header_text = |name: &str| {
        root.child_in(SOAP_ENV, "Header")
            .and_then(|h| h.child_in(WSA, name))
            .and_then(Element::clean_text)
    };
    Ok(Envelope {
        action: header_text("Action"),
        message_id: header_text("MessageID"),
        root,
        bytes,
        parts,
        root_type,
    })
}

fn envelope(
    xml: &mut Xml,
    action: &str,
    addressing: Option<&Addressing>,
    relates_to: Option<&str>,
    security: Option<&str>,
) {
    xml.open(
        "soap:Envelope",
        &[("xmlns:soap", SOAP_ENV), ("xmlns:wsa", WSA)],
    );
    xml.open("soap:Header", &[]);
    xml.element("wsa:Action", &[("soap:mustUnderstand", "true")], action);
    if let Some(addressing) = addressing {
        xml.element("wsa:MessageID", &[], &addressing.message_id);
        xml.element("wsa:To", &[("soap:mustUnderstand", "true")], &addressing.to);
    }
    if let Some(relates_to) = relates_to {
        xml.element("wsa:RelatesTo", &[], relates_to);
    }
    if let Some(security) = security {
        xml.raw(security);
    }
    xml.close("soap:Header");
    xml.open("soap:Body", &[]);
}

fn close_envelope(xml: &mut Xml) {
    xml.close("soap:Body");
    xml.close("soap:Envelope");
}

/// A SOAP 1.2 request of `action` whose body is `body` (well-formed XML
/// written by the caller), for transactions this crate does not model.
pub fn soap_request(
    action: &str,
    addressing: &Addressing,
    security: Option<&str>,
    body: &str,
) -> String {
    let mut xml = Xml::new();
    envelope(&mut xml, action, Some(addressing), None, security);
    xml.raw(body);
    close_envelope(&mut xml);
    xml.finish()
}

/// A SOAP 1.2 answer of `action` whose body is `body`.
pub fn soap_answer(action: &str, relates_to: Option<&str>, body: &str) -> String {
    let mut xml = Xml::new();
    envelope(&mut xml, action, None, relates_to, None);
    xml.raw(body);
    close_envelope(&mut xml);
    xml.finish()
}

/// The ITI-18 request for `query` (LeafClass answers).
pub fn write_query(query: &StoredQuery, addressing: &Addressing, security: Option<&str>) -> String {
    let mut xml = Xml::new();
    envelope(&mut xml, ACTION_ITI18, Some(addressing), None, security);
    xml.open(
        "query:AdhocQueryRequest",
        &[("xmlns:query", QUERY), ("xmlns:rim", RIM)],
    );
    xml.empty(
        "query:ResponseOption",
        &[
            ("returnComposedObjects", "true"),
            ("returnType", "LeafClass"),
        ],
    );
    let (id, slots): (&str, Vec<(&str, String)>) = match query {
        StoredQuery::FindDocuments { patient_id } => (
            FIND_DOCUMENTS,
            vec![
                (
                    "$XDSDocumentEntryPatientId",
                    format!("'{}'", patient_id.replace('\'', "''")),
                ),
                ("$XDSDocumentEntryStatus", format!("('{STATUS_APPROVED}')")),
            ],
        ),
        StoredQuery::GetDocuments { unique_ids } => (
            GET_DOCUMENTS,
            vec![(
                "$XDSDocumentEntryUniqueId",
                format!(
                    "({})",
                    unique_ids
                        .iter()
                        .map(|u| format!("'{}'", u.replace('\'', "''")))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            )],
        ),
    };
    xml.open("rim:AdhocQuery", &[("id", id)]);
    for (name, value) in slots {
        xml.open("rim:Slot", &[("name", name)]);
        xml.open("rim:ValueList", &[]);
        xml.element("rim:Value", &[], &value);
        xml.close("rim:ValueList");
        xml.close("rim:Slot");
    }
    xml.close("rim:AdhocQuery");
    xml.close("query:AdhocQueryRequest");
    close_envelope(&mut xml);
    xml.finish()
}

/// The values of a stored query parameter: `'a'` or `('a','b')`, quotes
/// doubled inside.
fn query_values(text: &str) -> Vec<String> {
    let text = text.trim();
    let inner = text
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .unwrap_or(text);
    let mut values = Vec::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            if c == '\'' {
                if chars.peek() == Some(&'\'') {
                    chars.next();
                    value.push('\'');
                } else {
                    break;
                }
            } else {
                value.push(c);
            }
        }
        values.push(value);
    }
    values
}

/// Reads an ITI-18 request's stored query.
pub fn read_query(envelope: &Envelope) -> Result<StoredQuery, XdsError> {
    let request = envelope
        .body()
        .filter(|b| is(b, QUERY, "AdhocQueryRequest"))
        .ok_or(XdsError::Missing("query:AdhocQueryRequest"))?;
    let query = request
        .child_in(RIM, "AdhocQuery")
        .ok_or(XdsError::Missing("rim:AdhocQuery"))?;
    let values = |name: &str| -> Vec<String> {
        children(query, RIM, "Slot")
            .filter(|s| s.attr("name") == Some(name))
            .flat_map(|s| children(s, RIM, "ValueList").flat_map(|l| children(l, RIM, "Value")))
            .flat_map(|v| query_values(&v.text()))
            .collect()
    };
    match query.attr("id") {
        Some(FIND_DOCUMENTS) => Ok(StoredQuery::FindDocuments {
            patient_id: values("$XDSDocumentEntryPatientId")
                .into_iter()
                .next()
                .ok_or(XdsError::Missing("$XDSDocumentEntryPatientId"))?,
        }),
        Some(GET_DOCUMENTS) => {
            let unique_ids = values("$XDSDocumentEntryUniqueId");
            if unique_ids.is_empty() {
                return Err(XdsError::Missing("$XDSDocumentEntryUniqueId"));
            }
            Ok(StoredQuery::GetDocuments { unique_ids })
        }
        _ => Err(XdsError::Unexpected(
            "a stored query other than FindDocuments and GetDocuments".into(),
        )),
    }
}

/// The ITI-18 answer holding `entries` (Success).
pub fn write_query_response(entries: &[FoundEntry], relates_to: Option<&str>) -> String {
    let mut xml = Xml::new();
    envelope(&mut xml, ACTION_ITI18_RESPONSE, None, relates_to, None);
    xml.open(
        "query:AdhocQueryResponse",
        &[
            ("xmlns:query", QUERY),
            ("xmlns:rim", RIM),
            ("status", STATUS_SUCCESS),
        ],
    );
    xml.open("rim:RegistryObjectList", &[]);
    let mut ids = IdCounter::default();
    for found in entries {
        document_entry_with_status(&mut xml, &found.entry, Some(&found.status), &mut ids);
    }
    xml.close("rim:RegistryObjectList");
    xml.close("query:AdhocQueryResponse");
    close_envelope(&mut xml);
    xml.finish()
}

/// Reads an ITI-18 answer: its entries, or the registry's errors.
pub fn read_query_response(
    content_type: &str,
    body: &[u8],
) -> Result<Result<Vec<FoundEntry>, String>, XdsError> {
    let envelope = read_envelope(content_type, body)?;
    let Some(response) = envelope
        .body()
        .filter(|b| is(b, QUERY, "AdhocQueryResponse"))
    else {
        return Ok(Err(match crate::response::read(content_type, body) {
            Ok(answer) => answer.summary(),
            Err(error) => error.to_string(),
        }));
    };
    if response.attr("status") != Some(STATUS_SUCCESS) {
        let errors: Vec<String> = response
            .descendants()
            .into_iter()
            .filter(|e| is(e, RS, "RegistryError"))
            .map(|e| {
                format!(
                    "{}: {}",
                    e.attr("errorCode").unwrap_or_default(),
                    e.attr("codeContext").unwrap_or_default()
                )
            })
            .collect();
        return Ok(Err(errors.join("; ")));
    }
    let mut entries = Vec::new();
    if let Some(list) = response.child_in(RIM, "RegistryObjectList") {
        for object in children(list, RIM, "ExtrinsicObject") {
            entries.push(FoundEntry {
                status: object.attr("status").unwrap_or_default().to_string(),
                repository_unique_id: first_slot(object, "repositoryUniqueId"),
                entry: document_entry(object)?,
            });
        }
    }
    Ok(Ok(entries))
}

/// The ITI-43 request for `documents` (repository and document uniqueIds).
pub fn write_retrieve(
    documents: &[(String, String)],
    addressing: &Addressing,
    security: Option<&str>,
) -> String {
    let mut xml = Xml::new();
    envelope(&mut xml, ACTION_ITI43, Some(addressing), None, security);
    xml.open("xdsb:RetrieveDocumentSetRequest", &[("xmlns:xdsb", XDS_B)]);
    for (repository, document) in documents {
        xml.open("xdsb:DocumentRequest", &[]);
        xml.element("xdsb:RepositoryUniqueId", &[], repository);
        xml.element("xdsb:DocumentUniqueId", &[], document);
        xml.close("xdsb:DocumentRequest");
    }
    xml.close("xdsb:RetrieveDocumentSetRequest");
    close_envelope(&mut xml);
    xml.finish()
}

/// Reads an ITI-43 request: (repository, document) uniqueIds.
pub fn read_retrieve(envelope: &Envelope) -> Result<Vec<(String, String)>, XdsError> {
    let request = envelope
        .body()
        .filter(|b| is(b, XDS_B, "RetrieveDocumentSetRequest"))
        .ok_or(XdsError::Missing("xdsb:RetrieveDocumentSetRequest"))?;
    let text = |e: &Element, name: &str| {
        e.child_in(XDS_B, name)
            .and_then(Element::clean_text)
            .unwrap_or_default()
    };
    let requests: Vec<(String, String)> = children(request, XDS_B, "DocumentRequest")
        .map(|d| (text(d, "RepositoryUniqueId"), text(d, "DocumentUniqueId")))
        .collect();
    if requests.is_empty() {
        return Err(XdsError::Missing("xdsb:DocumentRequest"));
    }
    Ok(requests)
}

/// The ITI-43 answer holding `documents`, as MTOM.
pub fn write_retrieve_response(
    documents: &[RetrievedDocument],
    relates_to: Option<&str>,
) -> Package {
    let mut xml = Xml::new();
    envelope(&mut xml, ACTION_ITI43_RESPONSE, None, relates_to, None);
    xml.open(
        "xdsb:RetrieveDocumentSetResponse",
        &[("xmlns:xdsb", XDS_B), ("xmlns:xop", XOP)],
    );
    xml.empty(
        "rs:RegistryResponse",
        &[("xmlns:rs", RS), ("status", STATUS_SUCCESS)],
    );
    let mut parts = Vec::new();
    for (index, document) in documents.iter().enumerate() {
        let id = content_id(&format!("Retrieved{index}"));
        xml.open("xdsb:DocumentResponse", &[]);
        xml.element(
            "xdsb:RepositoryUniqueId",
            &[],
            &document.repository_unique_id,
        );
        xml.element("xdsb:DocumentUniqueId", &[], &document.document_unique_id);
        xml.element("xdsb:mimeType", &[], &document.mime_type);
        xml.open("xdsb:Document", &[]);
        xml.empty("xop:Include", &[("href", &format!("cid:{id}"))]);
        xml.close("xdsb:Document");
        xml.close("xdsb:DocumentResponse");
        parts.push(Part {
            content_id: id,
            content_type: document.mime_type.clone(),
            bytes: document.bytes.clone(),
        });
    }
    xml.close("xdsb:RetrieveDocumentSetResponse");
    close_envelope(&mut xml);
    package(&xml.finish(), &parts, ACTION_ITI43_RESPONSE)
}

/// Reads an ITI-43 answer's documents.
pub fn read_retrieve_response(
    content_type: &str,
    body: &[u8],
) -> Result<Vec<RetrievedDocument>, XdsError> {
    let envelope = read_envelope(content_type, body)?;
    let response = envelope
        .body()
        .filter(|b| is(b, XDS_B, "RetrieveDocumentSetResponse"))
        .ok_or(XdsError::Missing("xdsb:RetrieveDocumentSetResponse"))?;
    let mut documents = Vec::new();
    for document in children(response, XDS_B, "DocumentResponse") {
        let text = |name: &str| {
            document
                .child_in(XDS_B, name)
                .and_then(Element::clean_text)
                .unwrap_or_default()
        };
        let href = document
            .child_in(XDS_B, "Document")
            .and_then(|d| d.child_in(XOP, "Include"))
            .and_then(|i| i.attr("href"))
            .and_then(href_content_id)
            .ok_or(XdsError::Missing("xdsb:Document/xop:Include"))?;
        let part = envelope
            .parts
            .iter()
            .find(|p| p.content_id == href)
            .ok_or_else(|| XdsError::Document("no part for a retrieved document".into()))?;
        documents.push(RetrievedDocument {
            repository_unique_id: text("RepositoryUniqueId"),
            document_unique_id: text("DocumentUniqueId"),
            mime_type: text("mimeType"),
            bytes: part.bytes.clone(),
        });
    }
    Ok(documents)
}

/// The ITI-62 request removing the entries `entry_uuids`.
pub fn write_delete(
    entry_uuids: &[String],
    addressing: &Addressing,
    security: Option<&str>,
) -> String {
    let mut xml = Xml::new();
    envelope(&mut xml, ACTION_ITI62, Some(addressing), None, security);
    xml.open(
        "lcm:RemoveObjectsRequest",
        &[("xmlns:lcm", crate::LCM), ("xmlns:rim", RIM)],
    );
    xml.open("rim:ObjectRefList", &[]);
    for id in entry_uuids {
        xml.empty("rim:ObjectRef", &[("id", id)]);
    }
    xml.close("rim:ObjectRefList");
    xml.close("lcm:RemoveObjectsRequest");
    close_envelope(&mut xml);
    xml.finish()
}

/// Reads an ITI-62 request: the entryUUIDs to remove.
pub fn read_delete(envelope: &Envelope) -> Result<Vec<String>, XdsError> {
    let request = envelope
        .body()
        .filter(|b| is(b, crate::LCM, "RemoveObjectsRequest"))
        .ok_or(XdsError::Missing("lcm:RemoveObjectsRequest"))?;
    let ids: Vec<String> = request
        .child_in(RIM, "ObjectRefList")
        .map(|list| {
            children(list, RIM, "ObjectRef")
                .filter_map(|r| r.attr("id").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if ids.is_empty() {
        return Err(XdsError::Missing("rim:ObjectRefList/rim:ObjectRef"));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletions_read_back() {
        let ids = vec!["urn:uuid:0f0e0d0c-0b0a-4909-8807-060504030201".to_string()];
        let text = write_delete(&ids, &addressing(), None);
        let envelope = read_envelope("application/soap+xml", text.as_bytes()).unwrap();
        assert_eq!(envelope.action.as_deref(), Some(ACTION_ITI62));
        assert_eq!(read_delete(&envelope).unwrap(), ids);
    }

    fn addressing() -> Addressing {
        Addressing {
            to: "http://x/dmp/xds".into(),
            message_id: "urn:uuid:1".into(),
        }
    }

    #[test]
    fn stored_queries_read_back() {
        for query in [
            StoredQuery::FindDocuments {
                patient_id: "1^^^&1.2&ISO^NH".into(),
            },
            StoredQuery::GetDocuments {
                unique_ids: vec!["1.2.3".into(), "it's".into()],
            },
        ] {
            let text = write_query(&query, &addressing(), None);
            let envelope = read_envelope("application/soap+xml", text.as_bytes()).unwrap();
            assert_eq!(envelope.action.as_deref(), Some(ACTION_ITI18));
            assert_eq!(read_query(&envelope).unwrap(), query);
        }
    }

    #[test]
    fn query_answers_read_back() {
        let entry = DocumentEntry {
            id: "urn:uuid:0f0e0d0c-0b0a-4909-8807-060504030201".into(),
            unique_id: "1.2.3".into(),
            patient_id: "1^^^&1.2&ISO^NH".into(),
            mime_type: "text/xml".into(),
            ..DocumentEntry::default()
        };
        let found = vec![FoundEntry {
            entry,
            status: STATUS_APPROVED.into(),
            repository_unique_id: None,
        }];
        let text = write_query_response(&found, Some("urn:uuid:1"));
        let read = read_query_response("application/soap+xml", text.as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(read, found);
    }

    #[test]
    fn retrievals_read_back() {
        let asked = vec![("1.2.250.1.999".to_string(), "1.2.3".to_string())];
        let text = write_retrieve(&asked, &addressing(), None);
        let envelope = read_envelope("application/soap+xml", text.as_bytes()).unwrap();
        assert_eq!(read_retrieve(&envelope).unwrap(), asked);
        let documents = vec![RetrievedDocument {
            repository_unique_id: "1.2.250.1.999".into(),
            document_unique_id: "1.2.3".into(),
            mime_type: "text/xml".into(),
            bytes: b"<ClinicalDocument/>\r\n".to_vec(),
        }];
        let package = write_retrieve_response(&documents, None);
        assert_eq!(
            read_retrieve_response(&package.content_type, &package.body).unwrap(),
            documents
        );
    }
}
