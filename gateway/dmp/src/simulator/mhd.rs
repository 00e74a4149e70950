//! The simulator's FHIR side: ITI-65 (a PDSm Provide Document Bundle
//! POSTed to `/dmp/fhir`) checked as the DMP would check it, kept in the
//! same store as ITI-41 submissions, answered with a transaction-response
//! or an OperationOutcome; and ITI-67 (`GET
//! /dmp/fhir/DocumentReference?identifier=…`) over what it holds.

use base64::Engine;
use serde_json::{json, Value};

use xds::metadata::{Code, DocumentEntry};

use super::state::{RegisterError, SimulatorState, StoredDocument};
use crate::document::INS_OIDS;
use crate::mhd::{oid_of, BUNDLE_PROFILE};

/// Largest ITI-65 Bundle read (documents travel inside, base64).
pub const MAX_BUNDLE_BYTES: usize = 64 * 1024 * 1024;

/// An answer: status and FHIR JSON.
pub type FhirReply = (u16, Value);

fn outcome(status: u16, issues: &[String]) -> FhirReply {
    (
        status,
        json!({
            "resourceType": "OperationOutcome",
            "issue": issues.iter().map(|text| json!({
                "severity": "error",
                "code": "invalid",
                "diagnostics": text,
            })).collect::<Vec<_>>(),
        }),
    )
}

fn code_of(concept: Option<&Value>) -> Code {
    let coding = concept
        .and_then(|c| c.get("coding"))
        .and_then(Value::as_array)
        .and_then(|c| c.first());
    let text = |key: &str| {
        coding
            .and_then(|c| c.get(key))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Code {
        code: text("code"),
        scheme: oid_of(&text("system")),
        display: text("display"),
    }
}

/// `Patient?identifier=urn:oid:OID|value` as an INS CX.
fn patient_cx(reference: Option<&Value>) -> Option<String> {
    let reference = reference?.get("reference")?.as_str()?;
    let (system, value) = reference
        .strip_prefix("Patient?identifier=")?
        .split_once('|')?;
    let oid = system.strip_prefix("urn:oid:")?;
    INS_OIDS
        .contains(&oid)
        .then(|| format!("{value}^^^&{oid}&ISO^NH"))
}

fn fhir_time_to_dtm(time: Option<&str>) -> String {
    time.map(|t| {
        t.chars()
            .take_while(|c| *c != '+' && *c != 'Z' && *c != '.')
            .filter(char::is_ascii_digit)
            .collect()
    })
    .unwrap_or_default()
}

/// ITI-65.
pub fn provide(body: &[u8], state: &SimulatorState) -> FhirReply {
    let Ok(bundle) = serde_json::from_slice::<Value>(body) else {
        return outcome(400, &["the body is not JSON".into()]);
    };
    state.keep_last_bundle(body);
    let mut issues = Vec::new();
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle")
        || bundle.get("type").and_then(Value::as_str) != Some("transaction")
    {
        return outcome(400, &["not a transaction Bundle".into()]);
    }
    let profiled = bundle
        .pointer("/meta/profile")
        .and_then(Value::as_array)
        .is_some_and(|p| p.iter().any(|p| p.as_str() == Some(BUNDLE_PROFILE)));
    if !profiled {
        issues.push(format!("Bundle.meta.profile must name {BUNDLE_PROFILE}"));
    }
    let entries: Vec<&Value> = bundle
        .get("entry")
        .and_then(Value::as_array)
        .map(|e| e.iter().collect())
        .unwrap_or_default();
    let of_type = |kind: &str| -> Vec<&Value> {
        entries
            .iter()
            .copied()
            .filter(|e| e.pointer("/resource/resourceType").and_then(Value::as_str) == Some(kind))
            .collect()
    };
    let lists: Vec<&Value> = of_type("List")
        .into_iter()
        .filter(|e| {
            e.pointer("/resource/code/coding/0/code")
                .and_then(Value::as_str)
                == Some("submissionset")
        })
        .collect();
    if lists.len() != 1 {
        return outcome(
            422,
            &["exactly one List with code submissionset is required".into()],
        );
    }
    let list = lists[0].get("resource").unwrap_or(&Value::Null);
    let Some(patient) = patient_cx(list.get("subject")) else {
        return outcome(
            422,
            &["List.subject must reference the patient by INS".into()],
        );
    };
    let status = state.patient(&patient);
    if status.state != crate::td02::DmpState::Active || !status.feeding_authorized {
        return outcome(
            422,
            &[format!(
                "the patient's DMP is {} or closed to feeding",
                status.state.as_str()
            )],
        );
    }
    let content_type = code_of(
        list.get("extension")
            .and_then(Value::as_array)
            .and_then(|e| {
                e.iter().find(|x| {
                    x.get("url").and_then(Value::as_str)
                        == Some("https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-designationType")
                })
            })
            .and_then(|x| x.get("valueCodeableConcept")),
    );
    if content_type.code.is_empty() {
        issues.push("the List has no designationType (contentTypeCode)".into());
    }
    let set_unique_id = list
        .pointer("/identifier/0/value")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim_start_matches("urn:oid:")
        .to_string();
    let binaries = of_type("Binary");
    let held = state.documents(None);
    let mut stored = Vec::new();
    let mut replaced = Vec::new();
    let references = of_type("DocumentReference");
    if references.is_empty() {
        issues.push("no DocumentReference".into());
    }
    for (index, entry) in references.iter().enumerate() {
        let at = format!("DocumentReference {}", index + 1);
        let resource = entry.get("resource").unwrap_or(&Value::Null);
        let text = |pointer: &str| {
            resource
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let unique_id = text("/masterIdentifier/value")
            .unwrap_or_default()
            .trim_start_matches("urn:oid:")
            .to_string();
        if unique_id.is_empty() {
            issues.push(format!("{at}: masterIdentifier is required"));
        }
        if patient_cx(resource.get("subject")).as_deref() != Some(patient.as_str()) {
            issues.push(format!("{at}: subject is not the List's patient"));
        }
        for (pointer, name) in [
            ("/type", "type"),
            ("/category/0", "category (classCode)"),
            ("/securityLabel/0", "securityLabel (confidentialityCode)"),
            ("/content/0/format", "content.format (formatCode)"),
            ("/context/facilityType", "context.facilityType"),
            ("/context/practiceSetting", "context.practiceSetting"),
        ] {
            if resource.pointer(pointer).is_none() {
                issues.push(format!("{at}: {name} is required"));
            }
        }
        let url = text("/content/0/attachment/url").unwrap_or_default();
        let Some(binary) = binaries
            .iter()
            .find(|b| b.get("fullUrl").and_then(Value::as_str) == Some(url.as_str()))
        else {
            issues.push(format!(
                "{at}: its attachment.url names no Binary of the Bundle"
            ));
            continue;
        };
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(
            binary
                .pointer("/resource/data")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        ) else {
            issues.push(format!("{at}: the Binary's data is not base64"));
            continue;
        };
        let sha1 = crate::codes::sha1_hex(&bytes);
        let hash_hex: String = base64::engine::general_purpose::STANDARD
            .decode(text("/content/0/attachment/hash").unwrap_or_default())
            .unwrap_or_default()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if hash_hex != sha1 {
            issues.push(format!(
                "{at}: attachment.hash is not the SHA-1 of the Binary"
            ));
        }
        if resource
            .pointer("/content/0/attachment/size")
            .and_then(Value::as_u64)
            != Some(bytes.len() as u64)
        {
            issues.push(format!("{at}: attachment.size is not the Binary's size"));
        }
        match cda::read(&bytes) {
            Ok(document) => {
                let same = document.header.record_targets.first().is_some_and(|p| {
                    p.ids.iter().any(|i| {
                        i.extension.as_deref() == Some(xds::metadata::cx_value(&patient))
                            && i.root.as_deref() == xds::metadata::cx_authority(&patient)
                    })
                });
                if !same {
                    issues.push(format!(
                        "{at}: the CDA's recordTarget INS is not the patient's"
                    ));
                }
                if let Some(risk) = crate::presentation::presentation_risk(&bytes) {
                    issues.push(format!(
                        "{at}: the CDA would run or fetch something when shown: {risk}"
                    ));
                }
            }
            Err(error) => issues.push(format!("{at}: not a readable CDA: {error}")),
        }
        if let Some(target) = text("/relatesTo/0/target/reference") {
            let id = target.trim_start_matches("DocumentReference/");
            match held
                .iter()
                .find(|d| d.entry_uuid.trim_start_matches("urn:uuid:") == id)
            {
                Some(old) if old.status == "Approved" && old.entry.patient_id == patient => {
                    replaced.push(old.entry_uuid.clone());
                }
                _ => issues.push(format!(
                    "{at}: relatesTo names no current DocumentReference of the patient"
                )),
            }
        }
        let entry = DocumentEntry {
            id: at.clone(),
            unique_id: unique_id.clone(),
            patient_id: patient.clone(),
            source_patient_id: String::new(),
            source_patient_info: Vec::new(),
            mime_type: text("/content/0/attachment/contentType").unwrap_or_default(),
            hash: sha1,
            size: bytes.len() as u64,
            language_code: text("/content/0/attachment/language").unwrap_or_default(),
            creation_time: fhir_time_to_dtm(text("/content/0/attachment/creation").as_deref()),
            service_start_time: text("/context/period/start").map(|t| fhir_time_to_dtm(Some(&t))),
            service_stop_time: None,
            title: text("/content/0/attachment/title"),
            comments: None,
            class_code: code_of(resource.pointer("/category/0")),
            type_code: code_of(resource.get("type")),
            format_code: Code {
                code: text("/content/0/format/code").unwrap_or_default(),
                scheme: oid_of(&text("/content/0/format/system").unwrap_or_default()),
                display: text("/content/0/format/display").unwrap_or_default(),
            },
            healthcare_facility_type: code_of(resource.pointer("/context/facilityType")),
            practice_setting: code_of(resource.pointer("/context/practiceSetting")),
            confidentiality: resource
                .get("securityLabel")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|l| code_of(Some(l)))
                .collect(),
            event_codes: Vec::new(),
            authors: Vec::new(),
            legal_authenticator: None,
        };
        for refusal in state.value_sets.check_entry(&entry) {
            issues.push(format!("{at}: {refusal}"));
        }
        stored.push(StoredDocument {
            entry_uuid: crate::codes::uuid_urn(&[set_unique_id.as_bytes(), unique_id.as_bytes()]),
            submission_set_unique_id: set_unique_id.clone(),
            content_type_code: content_type.code.clone(),
            entry,
            bytes,
            status: "Approved",
            signature: None,
        });
    }
    if !issues.is_empty() {
        return outcome(422, &issues);
    }
    let locations: Vec<String> = stored
        .iter()
        .map(|d| {
            format!(
                "DocumentReference/{}",
                d.entry_uuid.trim_start_matches("urn:uuid:")
            )
        })
        .collect();
    match state.register(set_unique_id, stored, &replaced) {
        Ok(()) => {}
        Err(RegisterError::Duplicate(unique_id)) => {
            return outcome(
                422,
                &[format!("the uniqueId {unique_id} is already registered")],
            )
        }
        Err(RegisterError::NotApproved(entry)) => {
            return outcome(422, &[format!("the replaced entry {entry} is not current")])
        }
    }
    let response_entries: Vec<Value> = entries
        .iter()
        .map(|e| {
            let kind = e
                .pointer("/resource/resourceType")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let mut response = json!({"status": "201 Created"});
            if kind == "DocumentReference" {
                if let Some(location) = locations.get(
                    entries
                        .iter()
                        .filter(|x| {
                            x.pointer("/resource/resourceType").and_then(Value::as_str)
                                == Some("DocumentReference")
                        })
                        .position(|x| std::ptr::eq(*x, *e))
                        .unwrap_or(usize::MAX),
                ) {
                    response["location"] = json!(location);
                }
            }
            json!({"response": response})
        })
        .collect();
    (
        200,
        json!({"resourceType": "Bundle", "type": "transaction-response", "entry": response_entries}),
    )
}

/// ITI-67: the current DocumentReferences with the identifier (uniqueId)
/// asked for, as a searchset.
pub fn search(query: &str, state: &SimulatorState) -> FhirReply {
    let identifier = query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == "identifier").then(|| passerelle_fhir::query::percent_decode(value))
    });
    let Some(identifier) = identifier else {
        return outcome(400, &["identifier is required".into()]);
    };
    let unique_id = identifier
        .rsplit('|')
        .next()
        .unwrap_or_default()
        .trim_start_matches("urn:oid:")
        .to_string();
    let found: Vec<Value> = state
        .documents(None)
        .into_iter()
        .filter(|d| d.entry.unique_id == unique_id && d.status == "Approved")
        .map(|d| {
            json!({"resource": {
                "resourceType": "DocumentReference",
                "id": d.entry_uuid.trim_start_matches("urn:uuid:"),
                "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": format!("urn:oid:{}", d.entry.unique_id)},
                "status": "current",
            }})
        })
        .collect();
    (
        200,
        json!({"resourceType": "Bundle", "type": "searchset", "total": found.len(), "entry": found}),
    )
}
