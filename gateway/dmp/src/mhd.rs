//! The FHIR route to the DMP (`mode = "mhd"`): IHE MHD ITI-65 "Provide
//! Document Bundle" as the ANS PDSm profiles it
//! (`pdsm-comprehensive-provide-document-bundle`: a List as the
//! submission set, a DocumentReference and a Binary per document), built
//! from the same metadata as the XDS route ([`crate::document`]), and
//! ITI-67 (DocumentReference search by identifier) to find the document a
//! replacement supersedes. The DMP's own FHIR guide (PDSm4DMP) is a draft:
//! the bundle follows its published examples.

use base64::Engine;
use serde_json::{json, Value};

use xds::metadata::{Code, DocumentEntry, Submission};

/// PDSm profiles.
pub const BUNDLE_PROFILE: &str =
    "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-comprehensive-provide-document-bundle";
pub const LIST_PROFILE: &str =
    "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-submissionset-comprehensive";
pub const DOCUMENT_REFERENCE_PROFILE: &str =
    "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-comprehensive-document-reference";
const CLASS_SYSTEM: &str =
    "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument";
const MHD_LIST_TYPES: &str = "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes";
const DESIGNATION_TYPE: &str =
    "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-designationType";
const SOURCE_ID: &str = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-sourceId";
const SOURCE_PATIENT_ID: &str =
    "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-sourcePatientId";

/// The FHIR system of a code system OID we know a URI for; others as
/// `urn:oid:`.
pub fn system_of(oid: &str) -> String {
    match oid {
        "2.16.840.1.113883.6.1" => "http://loinc.org".into(),
        "2.16.840.1.113883.5.25" => {
            "http://terminology.hl7.org/CodeSystem/v3-Confidentiality".into()
        }
        crate::codes::CLASS_OID => CLASS_SYSTEM.into(),
        crate::codes::IHE_FORMAT_OID => {
            "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode".into()
        }
        oid => format!("urn:oid:{oid}"),
    }
}

/// The OID of a FHIR system (the inverse of [`system_of`]).
pub fn oid_of(system: &str) -> String {
    match system {
        "http://loinc.org" => "2.16.840.1.113883.6.1".into(),
        "http://terminology.hl7.org/CodeSystem/v3-Confidentiality" => {
            "2.16.840.1.113883.5.25".into()
        }
        CLASS_SYSTEM => crate::codes::CLASS_OID.into(),
        "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode" => {
            crate::codes::IHE_FORMAT_OID.into()
        }
        system => system.strip_prefix("urn:oid:").unwrap_or(system).into(),
    }
}

fn concept(code: &Code) -> Value {
    let mut coding = json!({"system": system_of(&code.scheme), "code": code.code});
    if !code.display.is_empty() {
        coding["display"] = json!(code.display);
    }
    json!({"coding": [coding]})
}

/// An XDS DTM (UTC) as a FHIR dateTime.
fn date_time(dtm: &str) -> Option<String> {
    let d = dtm.as_bytes();
    let part = |from: usize, to: usize| dtm.get(from..to);
    Some(match d.len() {
        4 => part(0, 4)?.to_string(),
        6 => format!("{}-{}", part(0, 4)?, part(4, 6)?),
        8 => format!("{}-{}-{}", part(0, 4)?, part(4, 6)?, part(6, 8)?),
        n if n >= 12 => format!(
            "{}-{}-{}T{}:{}:{}Z",
            part(0, 4)?,
            part(4, 6)?,
            part(6, 8)?,
            part(8, 10)?,
            part(10, 12)?,
            part(12, 14).unwrap_or("00")
        ),
        _ => return None,
    })
}

/// A CX (`value^^^&OID&ISO^TYPE`) as a FHIR identifier.
fn identifier_of_cx(cx: &str) -> Value {
    json!({
        "system": format!("urn:oid:{}", xds::metadata::cx_authority(cx).unwrap_or_default()),
        "value": xds::metadata::cx_value(cx),
    })
}

/// The conditional reference PDSm uses for the patient (by INS).
fn patient_reference(cx: &str) -> Value {
    json!({"reference": format!(
        "Patient?identifier=urn:oid:{}|{}",
        xds::metadata::cx_authority(cx).unwrap_or_default(),
        xds::metadata::cx_value(cx)
    )})
}

/// The `urn:uuid:` full URLs of one submission's resources, derived from
/// its uniqueId (stable across retries).
fn full_url(submission: &Submission, what: &str) -> String {
    crate::codes::uuid_urn(&[submission.set.unique_id.as_bytes(), what.as_bytes()])
}

/// The ITI-65 Bundle of a submission; `replaced` gives, for entries that
/// replace a document, the id of the DocumentReference they replace.
pub fn provide_bundle(
    submission: &Submission,
    documents: &[Vec<u8>],
    replaced: &[(String, String)],
) -> Value {
    let set = &submission.set;
    let source_patient = json!({
        "resourceType": "Patient",
        "id": "patient-source",
        "identifier": [identifier_of_cx(
            submission
                .documents
                .first()
                .map_or(set.patient_id.as_str(), |d| d.source_patient_id.as_str())
        )],
    });
    let mut entries = Vec::new();
    let list_url = full_url(submission, "list");
    let mut items = Vec::new();
    let mut document_entries = Vec::new();
    for (index, (entry, bytes)) in submission.documents.iter().zip(documents).enumerate() {
        let reference_url = full_url(submission, &format!("document-reference-{index}"));
        let binary_url = full_url(submission, &format!("binary-{index}"));
        items.push(json!({"item": {"reference": reference_url}}));
        let replaces = replaced
            .iter()
            .find(|(id, _)| *id == entry.id)
            .map(|(_, target)| target.as_str());
        document_entries.push(json!({
            "fullUrl": reference_url,
            "resource": document_reference(entry, &binary_url, &source_patient, replaces),
            "request": {"method": "POST", "url": "DocumentReference"},
        }));
        document_entries.push(json!({
            "fullUrl": binary_url,
            "resource": {
                "resourceType": "Binary",
                "contentType": entry.mime_type,
                "data": base64::engine::general_purpose::STANDARD.encode(bytes),
            },
            "request": {"method": "POST", "url": "Binary"},
        }));
    }
    let mut list = json!({
        "resourceType": "List",
        "meta": {"profile": [LIST_PROFILE]},
        "contained": [source_patient],
        "extension": [
            {"url": DESIGNATION_TYPE, "valueCodeableConcept": concept(&set.content_type)},
            {"url": SOURCE_ID, "valueIdentifier": {"system": "urn:ietf:rfc:3986", "value": format!("urn:oid:{}", set.source_id)}},
            {"url": SOURCE_PATIENT_ID, "valueReference": {"reference": "#patient-source"}},
        ],
        "identifier": [{"use": "usual", "system": "urn:ietf:rfc:3986", "value": format!("urn:oid:{}", set.unique_id)}],
        "status": "current",
        "mode": "working",
        "code": {"coding": [{"system": MHD_LIST_TYPES, "code": "submissionset"}]},
        "subject": patient_reference(&set.patient_id),
        "entry": items,
    });
    if let Some(date) = date_time(&set.submission_time) {
        list["date"] = json!(date);
    }
    entries.push(json!({
        "fullUrl": list_url,
        "resource": list,
        "request": {"method": "POST", "url": "List"},
    }));
    entries.extend(document_entries);
    json!({
        "resourceType": "Bundle",
        "meta": {"profile": [BUNDLE_PROFILE]},
        "type": "transaction",
        "entry": entries,
    })
}

fn document_reference(
    entry: &DocumentEntry,
    binary_url: &str,
    source_patient: &Value,
    replaces: Option<&str>,
) -> Value {
    let mut attachment = json!({
        "contentType": entry.mime_type,
        "url": binary_url,
        "size": entry.size,
        "hash": hex_to_base64(&entry.hash),
    });
    if !entry.language_code.is_empty() {
        attachment["language"] = json!(entry.language_code);
    }
    if let Some(title) = &entry.title {
        attachment["title"] = json!(title);
    }
    if let Some(creation) = date_time(&entry.creation_time) {
        attachment["creation"] = json!(creation);
    }
    let mut context = json!({
        "sourcePatientInfo": {"reference": "#patient-source"},
        "facilityType": concept(&entry.healthcare_facility_type),
        "practiceSetting": concept(&entry.practice_setting),
    });
    if let Some(start) = entry.service_start_time.as_deref().and_then(date_time) {
        context["period"] = json!({"start": start});
        if let Some(end) = entry.service_stop_time.as_deref().and_then(date_time) {
            context["period"]["end"] = json!(end);
        }
    }
    let mut resource = json!({
        "resourceType": "DocumentReference",
        "meta": {"profile": [DOCUMENT_REFERENCE_PROFILE]},
        "contained": [source_patient],
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": format!("urn:oid:{}", entry.unique_id)},
        "status": "current",
        "type": concept(&entry.type_code),
        "category": [concept(&entry.class_code)],
        "subject": patient_reference(&entry.patient_id),
        "securityLabel": entry.confidentiality.iter().map(concept).collect::<Vec<_>>(),
        "content": [{"attachment": attachment, "format": {
            "system": system_of(&entry.format_code.scheme),
            "code": entry.format_code.code,
            "display": entry.format_code.display,
        }}],
        "context": context,
    });
    if let Some(target) = replaces {
        resource["relatesTo"] = json!([{"code": "replaces", "target": {"reference": format!("DocumentReference/{target}")}}]);
    }
    resource
}

/// XDS's hex SHA-1 as FHIR's base64 `Attachment.hash`.
fn hex_to_base64(hex: &str) -> String {
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The search of ITI-67 for the current DocumentReference with uniqueId
/// `unique_id`.
pub fn search_by_unique_id(unique_id: &str) -> String {
    format!(
        "DocumentReference?identifier={}&status=current",
        passerelle_fhir::query::percent_encode(&format!("urn:ietf:rfc:3986|urn:oid:{unique_id}"))
    )
}

/// The ids of the DocumentReferences of a searchset Bundle.
pub fn found_ids(bundle: &Value) -> Vec<String> {
    bundle
        .get("entry")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.get("resource"))
        .filter(|r| r.get("resourceType").and_then(Value::as_str) == Some("DocumentReference"))
        .filter_map(|r| r.get("id").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// An OperationOutcome's diagnostics, for a refusal's text.
pub fn outcome_text(body: &[u8]) -> String {
    let Ok(outcome) = serde_json::from_slice::<Value>(body) else {
        return "no OperationOutcome".into();
    };
    let texts: Vec<String> = outcome
        .get("issue")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|issue| {
            issue
                .get("diagnostics")
                .and_then(Value::as_str)
                .or_else(|| issue.pointer("/details/text").and_then(Value::as_str))
                .map(str::to_string)
        })
        .collect();
    if texts.is_empty() {
        "no diagnostics".into()
    } else {
        texts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_hashes_and_searches() {
        assert_eq!(
            date_time("20240105090000").as_deref(),
            Some("2024-01-05T09:00:00Z")
        );
        assert_eq!(date_time("20240105").as_deref(), Some("2024-01-05"));
        assert_eq!(
            hex_to_base64("a9993e364706816aba3e25717850c26c9cd0d89d"),
            "qZk+NkcGgWq6PiVxeFDCbJzQ2J0="
        );
        assert_eq!(
            search_by_unique_id("1.2.3"),
            "DocumentReference?identifier=urn%3Aietf%3Arfc%3A3986%7Curn%3Aoid%3A1.2.3&status=current"
        );
        assert_eq!(
            oid_of(&system_of("1.2.250.1.71.4.2.4")),
            "1.2.250.1.71.4.2.4"
        );
        assert_eq!(
            oid_of(&system_of(crate::codes::CLASS_OID)),
            crate::codes::CLASS_OID
        );
    }
}
