//! What the repository answers about one patient as a whole:
//! `Patient/$summary` (an International Patient Summary document Bundle),
//! `Patient/$everything`, and identifier cross-referencing (IHE PIXm
//! `$ihe-pix`, also behind HL7 v2 QBP^Q23), following ADT A40 merges.
//!
//! The document is a `document` Bundle: the Composition first (LOINC
//! 60591-5, one section per IPS section with a generated narrative, an
//! `emptyReason` when the repository holds nothing for it), then the
//! Device that authored it, the Patient, every section resource, and every
//! resource those point at (followed until nothing new is reached), so
//! every reference resolves inside the Bundle. Stored resources keep their
//! text (numbers as written) and their RESTful `fullUrl`; the Composition
//! points at them by that full URL.

use std::collections::{BTreeSet, VecDeque};

use serde_json::{json, Value};

use super::{current, params, skim, RepositoryError, StoredResource, Visibility};
use passerelle_fhir::exact_json;
use passerelle_storage::instant_from_ms;
use passerelle_storage::sql::Sql;

/// The most resources one summary or `$everything` holds.
pub const MAX_RESOURCES: usize = 5000;

/// One IPS section: where its entries come from.
struct Section {
    title: &'static str,
    loinc: &'static str,
    display: &'static str,
    /// (resource type, category token that must be present, if any).
    sources: &'static [(&'static str, Option<&'static str>)],
}

const SECTIONS: &[Section] = &[
    Section {
        title: "Active Problems",
        loinc: "11450-4",
        display: "Problem list - Reported",
        sources: &[("Condition", None)],
    },
    Section {
        title: "Allergies and Intolerances",
        loinc: "48765-2",
        display: "Allergies and adverse reactions Document",
        sources: &[("AllergyIntolerance", None)],
    },
    Section {
        title: "Medication Summary",
        loinc: "10160-0",
        display: "History of Medication use Narrative",
        sources: &[("MedicationStatement", None), ("MedicationRequest", None)],
    },
    Section {
        title: "Immunizations",
        loinc: "11369-6",
        display: "History of Immunization Narrative",
        sources: &[("Immunization", None)],
    },
    Section {
        title: "Results",
        loinc: "30954-2",
        display: "Relevant diagnostic tests/laboratory data Narrative",
        sources: &[
            ("DiagnosticReport", None),
            ("Observation", Some("laboratory")),
        ],
    },
    Section {
        title: "Vital Signs",
        loinc: "8716-3",
        display: "Vital signs",
        sources: &[("Observation", Some("vital-signs"))],
    },
    // IPS has no section for documents; Passerelle adds one, coded in a
    // code system of its own rather than a LOINC code that means
    // something else.
    Section {
        title: "Documents",
        loinc: "documents",
        display: "Documents",
        sources: &[("DocumentReference", None)],
    },
];

/// The live resources of `resource_type` in the patient's compartment
/// (its `patient` parameter), optionally with a category code, newest
/// first: one query, each row its resource.
fn compartment_resources(
    sql: &mut dyn Sql,
    resource_type: &str,
    patient: &str,
    category: Option<&str>,
) -> Result<Vec<StoredResource>, RepositoryError> {
    let reference = format!("Patient/{patient}");
    let rows = match category {
        None => sql.query(
            "SELECT i.id, r.version, r.last_updated_ms, r.deleted, r.resource \
             FROM fhir_index i JOIN fhir_resources r \
             ON r.resource_type = i.resource_type AND r.id = i.id AND r.deleted = 0 \
             WHERE i.resource_type = $1 AND i.param = 'patient' AND i.value = $2 \
             ORDER BY r.last_updated_ms DESC, i.id",
            &[resource_type.into(), reference.into()],
        )?,
        Some(category) => sql.query(
            "SELECT i.id, r.version, r.last_updated_ms, r.deleted, r.resource \
             FROM fhir_index i JOIN fhir_resources r \
             ON r.resource_type = i.resource_type AND r.id = i.id AND r.deleted = 0 \
             WHERE i.resource_type = $1 AND i.param = 'patient' AND i.value = $2 \
             AND EXISTS (SELECT 1 FROM fhir_index c WHERE c.resource_type = i.resource_type \
             AND c.id = i.id AND c.param = 'category' AND c.value = $3) \
             ORDER BY r.last_updated_ms DESC, i.id",
            &[resource_type.into(), reference.into(), category.into()],
        )?,
    };
    let mut out = Vec::new();
    for row in rows.into_iter().take(MAX_RESOURCES) {
        let mut columns = row.into_iter();
        let Some(id) = columns.next().and_then(|v| v.into_string()) else {
            continue;
        };
        out.push(StoredResource::from_row(
            resource_type,
            &id,
            columns.collect(),
        )?);
    }
    Ok(out)
}

fn live(
    sql: &mut dyn Sql,
    resource_type: &str,
    id: &str,
) -> Result<Option<StoredResource>, RepositoryError> {
    Ok(current(sql, resource_type, id)?.filter(|s| !s.deleted))
}

/// The Patient, or why not: one the reader may not see is not known to
/// them (404, not 403, which would tell them it exists).
fn patient(
    sql: &mut dyn Sql,
    id: &str,
    visibility: &Visibility,
) -> Result<StoredResource, RepositoryError> {
    if !visibility.sees_patient(sql, id)? {
        return Err(RepositoryError::NotFound(format!("Patient/{id}")));
    }
    match current(sql, "Patient", id)? {
        None => Err(RepositoryError::NotFound(format!("Patient/{id}"))),
        Some(stored) if stored.deleted => Err(RepositoryError::Gone(format!("Patient/{id}"))),
        Some(stored) => Ok(stored),
    }
}

/// Adds to `out` every resource reachable by reference from those already
/// in it that the reader may see. `known` holds the references of the
/// resources of `out` already read (by index; `None` where not): each
/// resource is read once.
fn close_over_references(
    sql: &mut dyn Sql,
    out: &mut Vec<StoredResource>,
    mut known: Vec<Option<Vec<String>>>,
    seen: &mut BTreeSet<String>,
    visibility: &Visibility,
) -> Result<(), RepositoryError> {
    let mut queue: VecDeque<usize> = (0..out.len()).collect();
    while let Some(index) = queue.pop_front() {
        let references = match known.get_mut(index).and_then(Option::take) {
            Some(references) => references,
            None => references_of(&out[index].text),
        };
        for reference in references {
            if out.len() >= MAX_RESOURCES {
                return Ok(());
            }
            let Some(relative) = params::relative_reference(&reference) else {
                continue;
            };
            if reference.contains("://") || !seen.insert(relative.clone()) {
                continue;
            }
            let (resource_type, id) = relative.split_once('/').unwrap_or(("", ""));
            if let Some(stored) = live(sql, resource_type, id)? {
                if !visibility.sees(sql, resource_type, id, &stored.text)? {
                    continue;
                }
                out.push(stored);
                queue.push_back(out.len() - 1);
            }
        }
    }
    Ok(())
}

/// The references a stored resource holds.
fn references_of(text: &str) -> Vec<String> {
    read(text, &|_| false).0
}

/// A stored resource's references and the top-level elements `keep`
/// accepts: skimmed, or built whole when serde cannot walk the text.
fn read(text: &str, keep: &dyn Fn(&str) -> bool) -> (Vec<String>, Value) {
    if let Some(skimmed) = skim::skim(text, keep) {
        return (skimmed.references, Value::Object(skimmed.kept));
    }
    let Ok(value) = exact_json::parse(text) else {
        return (Vec::new(), Value::Null);
    };
    let mut references = Vec::new();
    skim::collect(&value, &mut references);
    (references, value)
}

/// The elements a narrative row names what it is by, in order of
/// preference (CodeableConcepts).
const ROW_WHAT: [&str; 4] = ["code", "medicationCodeableConcept", "vaccineCode", "type"];
/// The elements a narrative row dates it by, in order of preference.
const ROW_WHEN: [&str; 7] = [
    "effectiveDateTime",
    "onsetDateTime",
    "occurrenceDateTime",
    "recordedDate",
    "authoredOn",
    "date",
    "issued",
];
/// The other top-level elements a narrative row shows.
const ROW_OTHERS: [&str; 6] = [
    "description",
    "effectivePeriod",
    "valueQuantity",
    "valueString",
    "valueCodeableConcept",
    "status",
];

/// Whether [`row`] reads the top-level element `name`.
fn shown_in_row(name: &str) -> bool {
    ROW_WHAT.contains(&name) || ROW_WHEN.contains(&name) || ROW_OTHERS.contains(&name)
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            other => out.push(other),
        }
    }
    out
}

/// A CodeableConcept's words: its text, else the first display, else code.
fn concept_text(concept: &Value) -> Option<String> {
    if let Some(text) = concept.get("text").and_then(Value::as_str) {
        return Some(text.to_string());
    }
    let codings = concept.get("coding")?.as_array()?;
    codings
        .iter()
        .find_map(|c| c.get("display").and_then(Value::as_str))
        .or_else(|| {
            codings
                .iter()
                .find_map(|c| c.get("code").and_then(Value::as_str))
        })
        .map(str::to_string)
}

/// One narrative row: what, when, and (for an observation) the value.
fn row(resource_type: &str, value: &Value) -> [String; 3] {
    let what = ROW_WHAT
        .iter()
        .find_map(|key| value.get(*key).and_then(concept_text))
        .or_else(|| {
            value
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| resource_type.to_string());
    let when = ROW_WHEN
        .iter()
        .find_map(|key| value.get(*key).and_then(Value::as_str))
        .or_else(|| {
            value
                .pointer("/effectivePeriod/start")
                .and_then(Value::as_str)
        })
        .unwrap_or("")
        .to_string();
    let result = if let Some(quantity) = value.get("valueQuantity") {
        let number = quantity
            .get("value")
            .and_then(|v| exact_json::number_text(v).map(str::to_string))
            .unwrap_or_default();
        let unit = quantity.get("unit").and_then(Value::as_str).unwrap_or("");
        format!("{number} {unit}").trim().to_string()
    } else if let Some(text) = value.get("valueString").and_then(Value::as_str) {
        text.to_string()
    } else if let Some(concept) = value.get("valueCodeableConcept") {
        concept_text(concept).unwrap_or_default()
    } else {
        value
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    [what, when, result]
}

fn section_narrative(title: &str, rows: &[[String; 3]]) -> String {
    let mut div = format!(
        "<div xmlns=\"http://www.w3.org/1999/xhtml\"><table><caption>{}</caption><thead><tr><th>What</th><th>When</th><th>Value or status</th></tr></thead><tbody>",
        escape(title)
    );
    for [what, when, result] in rows {
        div.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(what),
            escape(when),
            escape(result)
        ));
    }
    div.push_str("</tbody></table></div>");
    div
}

/// The IPS document Bundle for Patient `patient_id`, as JSON text.
pub fn patient_summary(
    sql: &mut dyn Sql,
    patient_id: &str,
    base: &str,
    now_ms: i64,
    new_id: &mut dyn FnMut() -> String,
    visibility: &Visibility,
) -> Result<String, RepositoryError> {
    let patient = patient(sql, patient_id, visibility)?;
    let mut included = vec![patient];
    // Each included resource read once: for its row in the narrative and
    // the references it holds.
    let mut known: Vec<Option<Vec<String>>> = vec![None];
    let mut seen: BTreeSet<String> = BTreeSet::from([format!("Patient/{patient_id}")]);
    let mut sections = Vec::new();
    for section in SECTIONS {
        let mut entries = Vec::new();
        let mut rows = Vec::new();
        for (resource_type, category) in section.sources {
            for stored in compartment_resources(sql, resource_type, patient_id, *category)? {
                let reference = format!("{resource_type}/{}", stored.id);
                if !seen.insert(reference.clone()) || included.len() >= MAX_RESOURCES {
                    continue;
                }
                let (references, value) = read(&stored.text, &shown_in_row);
                if !value.is_null() {
                    rows.push(row(resource_type, &value));
                }
                entries.push(json!({"reference": format!("{base}/{reference}")}));
                included.push(stored);
                known.push(Some(references));
            }
        }
        let system = if section.loinc == "documents" {
            "urn:passerelle:ips-section"
        } else {
            "http://loinc.org"
        };
        let code = json!({"coding": [{"system": system, "code": section.loinc, "display": section.display}]});
        sections.push(if entries.is_empty() {
            json!({
                "title": section.title,
                "code": code,
                "text": {"status": "generated", "div": format!(
                    "<div xmlns=\"http://www.w3.org/1999/xhtml\">{}: no information available.</div>",
                    escape(section.title))},
                "emptyReason": {"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/list-empty-reason",
                    "code": "unavailable", "display": "Unavailable"}]}
            })
        } else {
            json!({
                "title": section.title,
                "code": code,
                "text": {"status": "generated", "div": section_narrative(section.title, &rows)},
                "entry": entries
            })
        });
    }
    close_over_references(sql, &mut included, known, &mut seen, visibility)?;

    let now = instant_from_ms(now_ms);
    let composition_id = new_id();
    let device_id = new_id();
    let composition = json!({
        "resourceType": "Composition",
        "id": composition_id,
        "text": {"status": "generated", "div":
            "<div xmlns=\"http://www.w3.org/1999/xhtml\">Patient summary assembled by Passerelle from the records it holds.</div>"},
        "identifier": {"system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{composition_id}")},
        "status": "final",
        "type": {"coding": [{"system": "http://loinc.org", "code": "60591-5", "display": "Patient summary Document"}]},
        "subject": {"reference": format!("{base}/Patient/{patient_id}")},
        "date": now,
        "author": [{"reference": format!("urn:uuid:{device_id}")}],
        "title": "Patient Summary",
        "confidentiality": "N",
        "section": sections
    });
    let device = json!({
        "resourceType": "Device",
        "id": device_id,
        "deviceName": [{"name": "Passerelle", "type": "manufacturer-name"}]
    });

    let bundle_id = new_id();
    let mut out =
        String::with_capacity(4096 + included.iter().map(|s| s.text.len() + 80).sum::<usize>());
    out.push_str(&format!(
        "{{\"resourceType\":\"Bundle\",\"id\":\"{bundle_id}\",\"meta\":{{\"lastUpdated\":\"{now}\"}},\"identifier\":{{\"system\":\"urn:ietf:rfc:3986\",\"value\":\"urn:uuid:{bundle_id}\"}},\"type\":\"document\",\"timestamp\":\"{now}\",\"entry\":["
    ));
    out.push_str(&format!(
        "{{\"fullUrl\":\"urn:uuid:{composition_id}\",\"resource\":{composition}}},{{\"fullUrl\":\"urn:uuid:{device_id}\",\"resource\":{device}}}"
    ));
    for stored in &included {
        out.push_str(",{\"fullUrl\":");
        out.push_str(
            &Value::from(format!("{base}/{}/{}", stored.resource_type, stored.id)).to_string(),
        );
        out.push_str(",\"resource\":");
        out.push_str(&stored.text);
        out.push('}');
    }
    out.push_str("]}");
    Ok(out)
}

/// `Patient/$everything`: the Patient, every resource of its compartment,
/// and what those point at, as the stored resources (the caller writes the
/// `searchset` Bundle).
pub fn everything(
    sql: &mut dyn Sql,
    patient_id: &str,
    visibility: &Visibility,
) -> Result<Vec<StoredResource>, RepositoryError> {
    let patient = patient(sql, patient_id, visibility)?;
    let reference = format!("Patient/{patient_id}");
    let rows = sql.query(
        "SELECT DISTINCT i.resource_type, i.id FROM fhir_index i JOIN fhir_resources r \
         ON r.resource_type = i.resource_type AND r.id = i.id AND r.deleted = 0 \
         WHERE i.param IN ('patient', 'subject') AND i.value = $1 \
         ORDER BY i.resource_type, i.id",
        &[reference.clone().into()],
    )?;
    let mut out = vec![patient];
    let mut seen: BTreeSet<String> = BTreeSet::from([reference]);
    for row in rows {
        let mut columns = row.into_iter();
        let (Some(resource_type), Some(id)) = (
            columns.next().and_then(|v| v.into_string()),
            columns.next().and_then(|v| v.into_string()),
        ) else {
            continue;
        };
        if out.len() >= MAX_RESOURCES || !seen.insert(format!("{resource_type}/{id}")) {
            continue;
        }
        if let Some(stored) = live(sql, &resource_type, &id)? {
            out.push(stored);
        }
    }
    close_over_references(sql, &mut out, Vec::new(), &mut seen, visibility)?;
    Ok(out)
}

/// The id of the one Patient with `identifier` (`system|value`).
pub fn patient_by_identifier(
    sql: &mut dyn Sql,
    identifier: &str,
    visibility: &Visibility,
) -> Result<String, RepositoryError> {
    let pairs = vec![("identifier".to_string(), identifier.to_string())];
    let mut request =
        super::SearchRequest::parse("Patient", &pairs, true)?.visible_to(visibility.clone());
    request.count = 2;
    let page = super::search(sql, &request)?;
    match page.matches.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => Err(RepositoryError::NotFound(format!(
            "a Patient with identifier {identifier}"
        ))),
        _ => Err(RepositoryError::Ambiguous(format!(
            "several Patients have identifier {identifier}"
        ))),
    }
}

/// How many `replaced-by` links a cross-reference follows (merges of
/// merges), so a cycle cannot hold a request.
const MAX_MERGE_HOPS: usize = 10;

/// Whether some Patient has an identifier in `system` (an identifier
/// domain the repository knows, for PIXm and HL7 v2 queries).
pub fn known_domain(sql: &mut dyn Sql, system: &str) -> Result<bool, RepositoryError> {
    Ok(!sql
        .query(
            "SELECT id FROM fhir_index WHERE resource_type = 'Patient' AND param = 'identifier' \
             AND system = $1 LIMIT 1",
            &[system.into()],
        )?
        .is_empty())
}

/// IHE PIXm (`Patient/$ihe-pix`): the identifiers the Patient with
/// `source` (`system|value`) has in `target_systems` (every other one
/// when empty), following `replaced-by` links left by merges (ADT A40) to
/// the surviving record, as a Parameters resource (JSON text).
pub fn cross_reference(
    sql: &mut dyn Sql,
    source: &str,
    target_systems: &[String],
    base: &str,
    visibility: &Visibility,
) -> Result<String, RepositoryError> {
    let Some((system, value)) = source
        .split_once('|')
        .filter(|(s, v)| !s.is_empty() && !v.is_empty())
    else {
        return Err(RepositoryError::UnknownDomain(format!(
            "sourceIdentifier '{source}' is not system|value"
        )));
    };
    if !known_domain(sql, system)? {
        return Err(RepositoryError::UnknownDomain(format!(
            "sourceIdentifier Assigning Authority not found: {system}"
        )));
    }
    for target in target_systems {
        if !known_domain(sql, target)? {
            return Err(RepositoryError::UnknownTargetDomain(format!(
                "targetSystem not found: {target}"
            )));
        }
    }
    let mut id = patient_by_identifier(sql, source, visibility).map_err(|e| match e {
        RepositoryError::NotFound(_) => RepositoryError::NotFound(format!(
            "sourceIdentifier Patient Identifier not found: {value}"
        )),
        other => other,
    })?;
    let mut patient = patient(sql, &id, visibility)?;
    for _ in 0..MAX_MERGE_HOPS {
        let Ok(value) = exact_json::parse(&patient.text) else {
            break;
        };
        let successor = value["link"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|link| {
                (link["type"] == "replaced-by")
                    .then(|| link["other"]["reference"].as_str())
                    .flatten()
                    .and_then(params::relative_reference)
                    .and_then(|r| r.strip_prefix("Patient/").map(str::to_string))
            });
        match successor {
            Some(next) if next != id => match live(sql, "Patient", &next)? {
                // The surviving record is followed only when the reader
                // may see it.
                Some(stored) if visibility.sees_patient(sql, &next)? => {
                    id = next;
                    patient = stored;
                }
                _ => break,
            },
            _ => break,
        }
    }
    let value = exact_json::parse(&patient.text).unwrap_or(Value::Null);
    let mut parameters: Vec<Value> = value["identifier"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|identifier| {
            let (s, v) = (
                identifier["system"].as_str().unwrap_or(""),
                identifier["value"].as_str().unwrap_or(""),
            );
            !(s == system && v == value_of(source))
                && (target_systems.is_empty() || target_systems.iter().any(|t| t == s))
        })
        .map(|identifier| {
            let mut plain = serde_json::Map::new();
            for key in ["use", "type", "system", "value"] {
                if let Some(inner) = identifier.get(key) {
                    plain.insert(key.to_string(), inner.clone());
                }
            }
            json!({"name": "targetIdentifier", "valueIdentifier": plain})
        })
        .collect();
    parameters.push(json!({"name": "targetId", "valueReference": {"reference": format!("{base}/Patient/{id}")}}));
    Ok(exact_json::to_string(
        &json!({"resourceType": "Parameters", "parameter": parameters}),
    ))
}

fn value_of(source: &str) -> &str {
    source.split_once('|').map_or(source, |(_, value)| value)
}
