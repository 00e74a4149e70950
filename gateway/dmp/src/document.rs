//! From a mapped Bundle to an ITI-41 submission: finds each CDA document
//! (a DocumentReference whose content is XML, its bytes in a Binary of
//! the Bundle or inline), reads its header, and fills the XDS metadata
//! the way the ANS profile "transmission of CDA documents over HL7 v2"
//! maps it (most of it from the CDA header; visibility from the
//! message's `MetaDMPMSS` observations, carried as security labels; the
//! submission set's content type from the visit's class, PV1-2). The
//! national rules are checked here, before anything is sent: the
//! patient's INS and its identity status, required metadata, value sets,
//! size.

use base64::Engine;
use serde_json::Value;

use passerelle_config::{DmpCode, DmpTarget};
use xds::metadata::{Author, Code, DocumentEntry, Submission, SubmissionSet};

use crate::codes;
use crate::refusal::Refusal;
use crate::time::{ts_to_utc, utc_now_dtm};
use crate::value_sets::ValueSets;

/// The FR Core extension holding the RNIV identity status (PID-32).
const IDENTITY_RELIABILITY: &str =
    "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability";
/// The code system of the visibility flags (`MetaDMPMSS`) as security
/// labels.
const VISIBILITY_LABELS: &str =
    "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument";
/// The OID of the DMP's confidentiality codes beyond N/R/V.
const DMP_CONFIDENTIALITY_OID: &str = "1.2.250.1.213.1.1.4.13";
/// The INS OIDs: INS-NIR, INS-NIA, and the test and demonstration NIRs.
pub const INS_OIDS: [&str; 4] = [
    "1.2.250.1.213.1.4.8",
    "1.2.250.1.213.1.4.9",
    "1.2.250.1.213.1.4.10",
    "1.2.250.1.213.1.4.11",
];
/// The RPPS-based national identifiers of health professionals.
const IDNPS_OID: &str = "1.2.250.1.71.4.2.1";
/// FINESS and SIRET-based national identifiers of structures.
const IDNST_OID: &str = "1.2.250.1.71.4.2.2";

/// One submission ready to send: its metadata and the documents' bytes
/// in the order of its entries.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub submission: Submission,
    pub documents: Vec<Vec<u8>>,
    /// Entries that replace an earlier document (the CDA's
    /// `relatedDocument typeCode="RPLC"`): the entry's id and the uniqueId
    /// of the document it replaces, whose entryUUID the registry gives.
    pub replaces: Vec<(String, String)>,
    /// The uniqueIds of documents to delete (OBX-11 `D`: the
    /// DocumentReference is `entered-in-error`); they are not submitted.
    pub deletions: Vec<String>,
}

/// What makes a submission's identifiers unique and stable: the same
/// outbox row gives the same submission set uniqueId at every attempt,
/// so a repeat after a lost answer is recognised as a duplicate.
#[derive(Debug, Clone, Copy)]
pub struct SubmissionKey<'a> {
    pub outbox_id: i64,
    pub journal_id: i64,
    pub bundle: &'a str,
}

/// Reads the Bundle and builds the submission; `Ok(None)` when it holds
/// no CDA document (nothing goes to the DMP).
pub fn prepare(
    bundle: &str,
    settings: &DmpTarget,
    value_sets: &ValueSets,
    key: SubmissionKey<'_>,
    now_ms: i64,
) -> Result<Option<Prepared>, Refusal> {
    let bundle: Value =
        serde_json::from_str(bundle).map_err(|_| Refusal::Bundle("the Bundle is not JSON"))?;
    let resources: Vec<(&str, &Value)> = bundle
        .get("entry")
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .filter_map(|e| {
                    let full_url = e.get("fullUrl").and_then(Value::as_str).unwrap_or_default();
                    Some((full_url, e.get("resource")?))
                })
                .collect()
        })
        .unwrap_or_default();
    fn of_type<'r, 'v>(
        resources: &'r [(&'v str, &'v Value)],
        kind: &'r str,
    ) -> impl Iterator<Item = &'r (&'v str, &'v Value)> + 'r {
        resources
            .iter()
            .filter(move |(_, r)| r.get("resourceType").and_then(Value::as_str) == Some(kind))
    }
    let mut cdas: Vec<(&Value, Vec<u8>)> = Vec::new();
    for (_, reference) in of_type(&resources, "DocumentReference") {
        if let Some(bytes) = cda_content(reference, &resources)? {
            cdas.push((reference, bytes));
        }
    }
    if cdas.is_empty() {
        return Ok(None);
    }
    let patient = of_type(&resources, "Patient")
        .map(|(_, p)| *p)
        .next()
        .ok_or(Refusal::NoPatient)?;
    let ins = patient_ins(patient).ok_or(Refusal::NoIns)?;
    let status = identity_status(patient);
    match status {
        Some(status) if settings.qualified_statuses.iter().any(|s| s == status) => {}
        Some(status) => {
            return Err(Refusal::IdentityNotQualified {
                status: status.to_string(),
                allowed: settings.qualified_statuses.join(", "),
            })
        }
        None => return Err(Refusal::NoIdentityStatus),
    }
    let source_patient_id = patient_local_id(patient).unwrap_or_else(|| ins.clone());
    let labels = |reference: &Value| -> Vec<Code> {
        reference
            .get("securityLabel")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|label| codings(label))
            .filter(|(system, _, _)| *system == VISIBILITY_LABELS || system.is_empty())
            .map(|(_, code, display)| Code::new(code, DMP_CONFIDENTIALITY_OID, display))
            .collect()
    };
    let mut documents = Vec::new();
    let mut entries = Vec::new();
    let mut replaces = Vec::new();
    let mut deletions = Vec::new();
    for (reference, bytes) in cdas {
        if bytes.len() > settings.max_document_bytes {
            return Err(Refusal::TooLarge {
                size: bytes.len(),
                limit: settings.max_document_bytes,
            });
        }
        if reference.get("status").and_then(Value::as_str) == Some("entered-in-error") {
            deletions.push(deleted_unique_id(&bytes, &ins)?);
            continue;
        }
        if let Some(risk) = crate::presentation::presentation_risk(&bytes) {
            return Err(Refusal::UnsafePresentation(risk));
        }
        let id = format!("Document{:02}", entries.len() + 1);
        let (entry, replaced) = document_entry(
            &id,
            &bytes,
            settings,
            &ins,
            &source_patient_id,
            labels(reference),
        )?;
        if let Some(replaced) = replaced {
            replaces.push((id.clone(), replaced));
        }
        entries.push(entry);
        documents.push(bytes);
    }
    let first_author = entries
        .first()
        .and_then(|e| e.authors.first())
        .and_then(|a| a.person.clone());
    let set = SubmissionSet {
        id: "SubmissionSet01".into(),
        unique_id: codes::uuid_oid(&[
            settings.source_oid.as_bytes(),
            &key.outbox_id.to_be_bytes(),
            &key.journal_id.to_be_bytes(),
            key.bundle.as_bytes(),
        ]),
        source_id: settings.source_oid.clone(),
        patient_id: ins,
        submission_time: utc_now_dtm(now_ms),
        content_type: content_type(of_type(&resources, "Encounter").map(|(_, e)| *e).next()),
        title: None,
        authors: vec![Author {
            person: first_author,
            institutions: vec![format!(
                "{}^^^^^&{IDNST_OID}&ISO^IDNST^^^{}",
                xcn_escape(&settings.structure_name),
                xcn_escape(&settings.structure_id)
            )],
            ..Author::default()
        }],
    };
    let submission = Submission {
        set,
        documents: entries,
        associations: Vec::new(),
    };
    if !submission.documents.is_empty() {
        check_metadata(&submission, value_sets)?;
    }
    Ok(Some(Prepared {
        submission,
        documents,
        replaces,
        deletions,
    }))
}

/// Every required attribute present and every code in its value set.
pub fn check_metadata(submission: &Submission, value_sets: &ValueSets) -> Result<(), Refusal> {
    for entry in &submission.documents {
        let missing = entry.missing();
        if !missing.is_empty() {
            return Err(Refusal::MissingMetadata(missing.join(", ")));
        }
        if let Some(refusal) = value_sets.check_entry(entry).into_iter().next() {
            return Err(refusal);
        }
    }
    let missing = submission.set.missing();
    if !missing.is_empty() {
        return Err(Refusal::MissingMetadata(format!(
            "submission set {}",
            missing.join(", ")
        )));
    }
    value_sets.check("contentTypeCode", &submission.set.content_type)?;
    Ok(())
}

/// The bytes of a DocumentReference's CDA content, when it has one: its
/// first XML attachment, inline or in a Binary of the Bundle.
fn cda_content(
    reference: &Value,
    resources: &[(&str, &Value)],
) -> Result<Option<Vec<u8>>, Refusal> {
    let attachments = reference
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("attachment"));
    for attachment in attachments {
        let content_type = attachment
            .get("contentType")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !(content_type.contains("xml") || content_type.contains("cda")) {
            continue;
        }
        let data = match attachment.get("data").and_then(Value::as_str) {
            Some(data) => Some(data),
            None => {
                let url = attachment
                    .get("url")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                resources
                    .iter()
                    .find(|(full_url, resource)| {
                        resource.get("resourceType").and_then(Value::as_str) == Some("Binary")
                            && (*full_url == url
                                || resource
                                    .get("id")
                                    .and_then(Value::as_str)
                                    .is_some_and(|id| url == format!("Binary/{id}")))
                    })
                    .and_then(|(_, binary)| binary.get("data").and_then(Value::as_str))
            }
        };
        let Some(data) = data else {
            continue;
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.as_bytes())
            .map_err(|_| Refusal::Bundle("a document's base64 content does not decode"))?;
        if looks_like_cda(&bytes) {
            return Ok(Some(bytes));
        }
    }
    Ok(None)
}

/// Whether XML bytes are a CDA document: its root element, after the
/// prolog and comments, is `ClinicalDocument` (read in full later).
fn looks_like_cda(bytes: &[u8]) -> bool {
    let head = bytes.get(..bytes.len().min(64 * 1024)).unwrap_or(bytes);
    head.windows(b"ClinicalDocument".len())
        .any(|w| w == b"ClinicalDocument")
}

/// `(system, code, display)` of each coding of a CodeableConcept.
fn codings(concept: &Value) -> Vec<(&str, &str, &str)> {
    concept
        .get("coding")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some((
                c.get("system").and_then(Value::as_str).unwrap_or_default(),
                c.get("code").and_then(Value::as_str)?,
                c.get("display").and_then(Value::as_str).unwrap_or_default(),
            ))
        })
        .collect()
}

/// The patient's INS as an XDS CX (`value^^^&OID&ISO^NH`).
fn patient_ins(patient: &Value) -> Option<String> {
    patient
        .get("identifier")
        .and_then(Value::as_array)?
        .iter()
        .find_map(|identifier| {
            let system = identifier.get("system").and_then(Value::as_str)?;
            let oid = system.strip_prefix("urn:oid:")?;
            let value = identifier.get("value").and_then(Value::as_str)?;
            INS_OIDS
                .contains(&oid)
                .then(|| format!("{}^^^&{oid}&ISO^NH", xcn_escape(value)))
        })
}

/// The patient's local identifier (IPP) as a CX, when it has one with an
/// OID system.
fn patient_local_id(patient: &Value) -> Option<String> {
    patient
        .get("identifier")
        .and_then(Value::as_array)?
        .iter()
        .find_map(|identifier| {
            let oid = identifier
                .get("system")
                .and_then(Value::as_str)?
                .strip_prefix("urn:oid:")?;
            let value = identifier.get("value").and_then(Value::as_str)?;
            (!INS_OIDS.contains(&oid)).then(|| format!("{}^^^&{oid}&ISO^PI", xcn_escape(value)))
        })
}

/// The RNIV identity status (FR Core `identityStatus`, from PID-32).
fn identity_status(patient: &Value) -> Option<&str> {
    patient
        .get("extension")
        .and_then(Value::as_array)?
        .iter()
        .filter(|e| e.get("url").and_then(Value::as_str) == Some(IDENTITY_RELIABILITY))
        .flat_map(|e| {
            e.get("extension")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .find(|e| e.get("url").and_then(Value::as_str) == Some("identityStatus"))
        .and_then(|e| e.get("valueCoding"))
        .and_then(|c| c.get("code"))
        .and_then(Value::as_str)
}

/// The submission set's contentTypeCode (J59, TRE_R209) from the visit's
/// class, as the ANS profile maps PV1-2: I → 03, O and E → 07, N → 97
/// (R, 19, arrives as ambulatory and is sent as 07).
fn content_type(encounter: Option<&Value>) -> Code {
    let class = encounter
        .and_then(|e| e.get("class"))
        .and_then(|c| c.get("code"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let code = match class {
        "IMP" | "ACUTE" | "NONAC" => "03",
        "AMB" | "EMER" | "VR" | "HH" => "07",
        _ => "97",
    };
    Code::new(code, codes::TYPE_ACTIVITE_OID, "")
}

/// ER7 component separators in a value would split it: they are
/// escaped as HL7 v2 says.
fn xcn_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\E\\"),
            '^' => out.push_str("\\S\\"),
            '&' => out.push_str("\\T\\"),
            '|' => out.push_str("\\F\\"),
            '~' => out.push_str("\\R\\"),
            c => out.push(c),
        }
    }
    out
}

fn code_of(code: &cda::Code) -> Option<Code> {
    Some(Code::new(
        code.code.as_deref()?,
        code.system.as_deref()?,
        code.display.as_deref().unwrap_or_default(),
    ))
}

fn setting_code(code: &DmpCode) -> Code {
    Code::new(&code.code, &code.scheme, &code.display)
}

/// A person (XCN) from a CDA participant: national identifier, names.
fn person(party: &cda::Party) -> Option<String> {
    let id = party.ids.iter().find(|i| i.extension.is_some())?;
    let root = id.root.as_deref().unwrap_or_default();
    let name = party.names.first();
    let part = |parts: Option<&Vec<cda::NamePart>>| {
        parts
            .and_then(|p| p.first())
            .map(|p| xcn_escape(&p.text))
            .unwrap_or_default()
    };
    let family = part(name.map(|n| &n.family));
    let given = part(name.map(|n| &n.given));
    let kind = if root == IDNPS_OID { "^D^^^IDNPS" } else { "" };
    Some(format!(
        "{}^{family}^{given}^^^^^^&{root}&ISO{kind}",
        xcn_escape(id.extension.as_deref().unwrap_or_default())
    ))
}

fn institution(organization: &cda::Organization) -> Option<String> {
    let id = organization.ids.iter().find(|i| i.extension.is_some())?;
    Some(format!(
        "{}^^^^^&{}&ISO^IDNST^^^{}",
        xcn_escape(organization.name.as_deref().unwrap_or_default()),
        id.root.as_deref().unwrap_or_default(),
        xcn_escape(id.extension.as_deref().unwrap_or_default())
    ))
}

/// The uniqueId of a document to delete (the CDA's `id`), once its INS is
/// the message's.
fn deleted_unique_id(bytes: &[u8], ins: &str) -> Result<String, Refusal> {
    let document = cda::read(bytes).map_err(|e| Refusal::Cda(e.to_string()))?;
    check_cda_ins(&document.header, ins)?;
    document
        .header
        .id
        .as_ref()
        .and_then(instance_unique_id)
        .ok_or_else(|| Refusal::MissingMetadata("uniqueId (the CDA's id)".into()))
}

/// An instance identifier as an XDS uniqueId: `root`, or `root^extension`.
fn instance_unique_id(id: &cda::InstanceId) -> Option<String> {
    let root = id.root.as_deref()?;
    Some(match id.extension.as_deref() {
        Some(extension) => format!("{root}^{extension}"),
        None => root.to_string(),
    })
}

/// The CDA's patient must be the message's.
fn check_cda_ins(header: &cda::Header, ins: &str) -> Result<(), Refusal> {
    let cda_ins = header
        .record_targets
        .first()
        .into_iter()
        .flat_map(|p| &p.ids)
        .find_map(|i| {
            let root = i.root.as_deref()?;
            let value = i.extension.as_deref()?;
            INS_OIDS
                .contains(&root)
                .then(|| format!("{}^^^&{root}&ISO^NH", xcn_escape(value)))
        });
    match cda_ins {
        Some(cda_ins) if cda_ins == ins => Ok(()),
        Some(_) => Err(Refusal::InsMismatch),
        None => Err(Refusal::CdaWithoutIns),
    }
}

/// One document entry from the CDA's header, and the uniqueId of the
/// document it replaces, if it does.
fn document_entry(
    id: &str,
    bytes: &[u8],
    settings: &DmpTarget,
    ins: &str,
    source_patient_id: &str,
    visibility: Vec<Code>,
) -> Result<(DocumentEntry, Option<String>), Refusal> {
    let root =
        cda::xml::parse(bytes, &cda::Limits::default()).map_err(|e| Refusal::Cda(e.to_string()))?;
    let document = cda::read_element(&root).map_err(|e| Refusal::Cda(e.to_string()))?;
    let header = &document.header;
    let replaced = match header
        .related_documents
        .iter()
        .find(|r| r.type_code.as_deref() == Some("RPLC"))
    {
        Some(related) => Some(
            related
                .parent_ids
                .first()
                .and_then(instance_unique_id)
                .ok_or(Refusal::ReplacedWithoutId)?,
        ),
        None => None,
    };
    check_cda_ins(header, ins)?;
    let unique_id = header
        .id
        .as_ref()
        .and_then(instance_unique_id)
        .unwrap_or_default();
    let type_code = header.code.as_ref().and_then(code_of).unwrap_or_default();
    let class_code = codes::class_code(&type_code.code, &settings.class_codes)
        .ok_or_else(|| Refusal::NoClassCode(type_code.code.clone()))?;
    let unstructured = match &document.body {
        cda::Body::NonXml(body) => Some(body.media_type.clone().unwrap_or_default()),
        _ => None,
    };
    let templates: Vec<&str> = header
        .template_ids
        .iter()
        .filter_map(|t| t.root.as_deref())
        .collect();
    let format_code =
        codes::format_code(&templates, unstructured.as_deref(), &settings.format_codes)
            .ok_or_else(|| Refusal::NoFormatCode(templates.join(", ")))?;
    let healthcare_facility_type = header
        .encounter
        .as_ref()
        .and_then(|e| e.facility_code.as_ref())
        .and_then(code_of)
        .or_else(|| settings.healthcare_facility_type.as_ref().map(setting_code))
        .unwrap_or_default();
    let practice_setting = practice_setting(&root)
        .or_else(|| settings.practice_setting.as_ref().map(setting_code))
        .unwrap_or_default();
    let mut confidentiality: Vec<Code> = header
        .confidentiality
        .as_ref()
        .and_then(code_of)
        .into_iter()
        .collect();
    confidentiality.extend(visibility);
    let authors = header
        .authors
        .iter()
        .map(|a| Author {
            person: person(&a.party),
            institutions: a
                .party
                .organization
                .as_ref()
                .and_then(institution)
                .into_iter()
                .collect(),
            roles: Vec::new(),
            specialties: a
                .party
                .code
                .as_ref()
                .and_then(|c| {
                    Some(format!(
                        "{}^{}^{}",
                        xcn_escape(c.code.as_deref()?),
                        xcn_escape(c.display.as_deref().unwrap_or_default()),
                        c.system.as_deref().unwrap_or_default()
                    ))
                })
                .into_iter()
                .collect(),
            telecoms: Vec::new(),
        })
        .filter(|a| a.person.is_some() || !a.institutions.is_empty())
        .collect();
    let event = header.service_events.first();
    let patient = header.record_targets.first();
    let mut source_patient_info = Vec::new();
    if let Some(name) = patient.and_then(|p| p.names.first()) {
        let family = name
            .family
            .first()
            .map(|p| xcn_escape(&p.text))
            .unwrap_or_default();
        let given = name
            .given
            .first()
            .map(|p| xcn_escape(&p.text))
            .unwrap_or_default();
        source_patient_info.push(format!("PID-5|{family}^{given}^^^^^L"));
    }
    if let Some(birth) = patient.and_then(|p| p.birth_time.as_deref()) {
        source_patient_info.push(format!("PID-7|{}", birth.get(..8).unwrap_or(birth)));
    }
    if let Some(gender) = patient.and_then(|p| p.gender.as_deref()) {
        source_patient_info.push(format!("PID-8|{gender}"));
    }
    let entry = DocumentEntry {
        id: id.to_string(),
        unique_id,
        patient_id: ins.to_string(),
        source_patient_id: source_patient_id.to_string(),
        source_patient_info,
        mime_type: "text/xml".into(),
        hash: codes::sha1_hex(bytes),
        size: bytes.len() as u64,
        language_code: header.language.clone().unwrap_or_default(),
        creation_time: header
            .effective_time
            .as_deref()
            .and_then(ts_to_utc)
            .unwrap_or_default(),
        service_start_time: event.and_then(|e| e.low.as_deref()).and_then(ts_to_utc),
        service_stop_time: event.and_then(|e| e.high.as_deref()).and_then(ts_to_utc),
        title: header.title.clone(),
        comments: None,
        class_code,
        type_code,
        format_code,
        healthcare_facility_type,
        practice_setting,
        confidentiality,
        event_codes: Vec::new(),
        authors,
        legal_authenticator: header
            .legal_authenticator
            .as_ref()
            .and_then(|l| person(&l.party)),
    };
    Ok((entry, replaced))
}

/// `documentationOf/serviceEvent/performer/assignedEntity/
/// representedOrganization/standardIndustryClassCode`: the CI-SIS
/// practiceSettingCode (J04).
fn practice_setting(root: &cda::xml::Element) -> Option<Code> {
    let organization = root
        .all("documentationOf")
        .filter_map(|d| d.child("serviceEvent"))
        .flat_map(|e| e.all("performer"))
        .filter_map(|p| p.at(&["assignedEntity", "representedOrganization"]))
        .find_map(|o| o.child("standardIndustryClassCode"))?;
    Some(Code::new(
        organization.attr("code")?,
        organization.attr("codeSystem")?,
        organization.attr("displayName").unwrap_or_default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CDA: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
  <templateId root="1.3.6.1.4.1.19376.1.3.3"/>
  <id root="1.2.3.4.5"/>
  <code code="11502-2" codeSystem="2.16.840.1.113883.6.1" displayName="CR d'examens biologiques"/>
  <title>CR</title>
  <effectiveTime value="20240105100000+0100"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25" displayName="Normal"/>
  <languageCode code="fr-FR"/>
  <recordTarget><patientRole><id root="1.2.250.1.213.1.4.10" extension="279035121518989"/>
    <patient><name><family>PAT</family><given>UN</given></name><administrativeGenderCode code="F"/><birthTime value="19790328"/></patient>
  </patientRole></recordTarget>
  <author><time value="20240105100000+0100"/><assignedAuthor><id root="1.2.250.1.71.4.2.1" extension="801234567866"/>
    <assignedPerson><name><family>DIAZ</family><given>Thierry</given></name></assignedPerson></assignedAuthor></author>
  <legalAuthenticator><time value="20240105100000+0100"/><signatureCode code="S"/><assignedEntity><id root="1.2.250.1.71.4.2.1" extension="801234567866"/>
    <assignedPerson><name><family>DIAZ</family><given>Thierry</given></name></assignedPerson></assignedEntity></legalAuthenticator>
  <documentationOf><serviceEvent><effectiveTime><low value="20240104080000+0100"/></effectiveTime>
    <performer typeCode="PRF"><assignedEntity><id root="1.2.250.1.71.4.2.1" extension="801234567866"/>
      <representedOrganization><standardIndustryClassCode code="AMBULATOIRE" codeSystem="1.2.250.1.213.1.1.4.9"/></representedOrganization>
    </assignedEntity></performer></serviceEvent></documentationOf>
  <componentOf><encompassingEncounter><effectiveTime value="20240104"/><location><healthCareFacility>
    <code code="SA25" codeSystem="1.2.250.1.71.4.2.4" displayName="Laboratoire"/></healthCareFacility></location></encompassingEncounter></componentOf>
  <component><structuredBody/></component>
</ClinicalDocument>"#;

    fn settings() -> DmpTarget {
        DmpTarget {
            mode: Default::default(),
            source_oid: "1.2.250.1.999.1".into(),
            structure_id: "1120459876".into(),
            structure_name: "Labo".into(),
            lps_name: "Passerelle".into(),
            lps_version: "0.1".into(),
            lps_homologation: "X".into(),
            qualified_statuses: vec!["QUAL".into()],
            practice_setting: None,
            healthcare_facility_type: None,
            class_codes: Default::default(),
            format_codes: Default::default(),
            value_sets_dir: None,
            max_document_bytes: 1 << 20,
            vihf: None,
            cda_checker: None,
        }
    }

    fn bundle(status: Option<&str>, ins: Option<&str>, cda: &str) -> String {
        let mut identifiers =
            vec![json!({"system": "urn:oid:1.2.250.1.71.4.2.7", "value": "IPP-1"})];
        if let Some(ins) = ins {
            identifiers.push(json!({"system": "urn:oid:1.2.250.1.213.1.4.10", "value": ins}));
        }
        let mut patient = json!({"resourceType": "Patient", "identifier": identifiers});
        if let Some(status) = status {
            patient["extension"] = json!([{"url": IDENTITY_RELIABILITY, "extension": [
                {"url": "identityStatus", "valueCoding": {"code": status}}]}]);
        }
        let data = base64::engine::general_purpose::STANDARD.encode(cda);
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:p", "resource": patient},
            {"fullUrl": "urn:uuid:e", "resource": {"resourceType": "Encounter", "class": {"code": "AMB"}}},
            {"fullUrl": "urn:uuid:d", "resource": {"resourceType": "DocumentReference",
                "securityLabel": [{"coding": [{"system": VISIBILITY_LABELS, "code": "MASQUE_PS"}]}],
                "content": [{"attachment": {"contentType": "text/xml", "url": "urn:uuid:b"}}]}},
            {"fullUrl": "urn:uuid:b", "resource": {"resourceType": "Binary", "contentType": "text/xml", "data": data}}
        ]})
        .to_string()
    }

    fn run(bundle: &str) -> Result<Option<Prepared>, Refusal> {
        let key = SubmissionKey {
            outbox_id: 7,
            journal_id: 3,
            bundle,
        };
        prepare(
            bundle,
            &settings(),
            &ValueSets::none(),
            key,
            1_704_448_800_000,
        )
    }

    #[test]
    fn metadata_comes_from_the_cda_header_and_the_message() {
        let prepared = run(&bundle(Some("QUAL"), Some("279035121518989"), CDA))
            .unwrap()
            .unwrap();
        let entry = &prepared.submission.documents[0];
        assert_eq!(
            entry.patient_id,
            "279035121518989^^^&1.2.250.1.213.1.4.10&ISO^NH"
        );
        assert_eq!(
            entry.source_patient_id,
            "IPP-1^^^&1.2.250.1.71.4.2.7&ISO^PI"
        );
        assert_eq!(entry.unique_id, "1.2.3.4.5");
        assert_eq!(entry.creation_time, "20240105090000");
        assert_eq!(entry.service_start_time.as_deref(), Some("20240104070000"));
        assert_eq!(entry.class_code.code, "10");
        assert_eq!(entry.format_code.code, "urn:ihe:lab:xd-lab:2008");
        assert_eq!(entry.healthcare_facility_type.code, "SA25");
        assert_eq!(entry.practice_setting.code, "AMBULATOIRE");
        let confidentiality: Vec<&str> = entry
            .confidentiality
            .iter()
            .map(|c| c.code.as_str())
            .collect();
        assert_eq!(confidentiality, vec!["N", "MASQUE_PS"]);
        assert_eq!(
            entry.legal_authenticator.as_deref(),
            Some("801234567866^DIAZ^Thierry^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS")
        );
        assert_eq!(entry.hash, crate::codes::sha1_hex(CDA.as_bytes()));
        assert_eq!(prepared.documents[0], CDA.as_bytes());
        assert_eq!(prepared.submission.set.content_type.code, "07");
        assert_eq!(prepared.submission.set.submission_time, "20240105100000");
        assert!(prepared.submission.set.unique_id.starts_with("2.25."));
        // The same row gives the same submission set uniqueId.
        let again = run(&bundle(Some("QUAL"), Some("279035121518989"), CDA))
            .unwrap()
            .unwrap();
        assert_eq!(
            again.submission.set.unique_id,
            prepared.submission.set.unique_id
        );
    }

    #[test]
    fn the_national_rules_refuse_before_sending() {
        let refusal = |bundle: String| run(&bundle).unwrap_err().to_string();
        let message = refusal(bundle(Some("VALI"), Some("279035121518989"), CDA));
        assert!(
            message.contains("VALI") && message.contains("PID-32"),
            "{message}"
        );
        assert!(refusal(bundle(None, Some("279035121518989"), CDA)).contains("no RNIV status"));
        assert!(refusal(bundle(Some("QUAL"), None, CDA)).contains("no INS"));
        let message = refusal(bundle(Some("QUAL"), Some("179035121518989"), CDA));
        assert!(message.contains("not the message's"), "{message}");
        let other_type = CDA.replace("11502-2", "99999-9");
        let message = refusal(bundle(Some("QUAL"), Some("279035121518989"), &other_type));
        assert!(message.contains("dmp.class_codes"), "{message}");
        let other_template = CDA.replace("1.3.6.1.4.1.19376.1.3.3", "1.2.3.9");
        let message = refusal(bundle(
            Some("QUAL"),
            Some("279035121518989"),
            &other_template,
        ));
        assert!(message.contains("dmp.format_codes"), "{message}");
        let no_facility = CDA.replace(
            "<code code=\"SA25\" codeSystem=\"1.2.250.1.71.4.2.4\" displayName=\"Laboratoire\"/>",
            "",
        );
        let message = refusal(bundle(Some("QUAL"), Some("279035121518989"), &no_facility));
        assert!(message.contains("healthcareFacilityTypeCode"), "{message}");
        let big = CDA.replace(
            "<title>CR</title>",
            &format!("<title>{}</title>", "x".repeat(1 << 20)),
        );
        let message = refusal(bundle(Some("QUAL"), Some("279035121518989"), &big));
        assert!(message.contains("over the"), "{message}");
        let scripted = CDA.replace(
            "<component><structuredBody/>",
            "<component><structuredBody><script>x()</script></structuredBody>",
        );
        let message = refusal(bundle(Some("QUAL"), Some("279035121518989"), &scripted));
        assert!(
            message.contains("<script>") && message.contains("CNDA"),
            "{message}"
        );
        let replacement = CDA.replace(
            "<documentationOf>",
            "<relatedDocument typeCode=\"RPLC\"><parentDocument><id root=\"1.2.3.4.4\"/></parentDocument></relatedDocument><documentationOf>",
        );
        let prepared = run(&bundle(Some("QUAL"), Some("279035121518989"), &replacement))
            .unwrap()
            .unwrap();
        assert_eq!(
            prepared.replaces,
            vec![("Document01".to_string(), "1.2.3.4.4".to_string())]
        );
    }

    #[test]
    fn a_message_without_a_cda_sends_nothing() {
        let bundle = json!({"resourceType": "Bundle", "entry": [
            {"resource": {"resourceType": "Patient"}}]})
        .to_string();
        assert!(run(&bundle).unwrap().is_none());
        assert!(matches!(run("not json"), Err(Refusal::Bundle(_))));
    }
}
