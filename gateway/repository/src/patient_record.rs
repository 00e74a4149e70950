//! Everything the repository holds about one person, for the patient's
//! rights of access and erasure (`passerelle patients export` and
//! `erase`): which resources are theirs, every version of each, the
//! identifiers their Patient records ever carried, and the erasure of
//! all of it (current rows, history, search index, network membership).
//!
//! `$everything` answers what a client may read now; a person's record
//! for their rights is wider and stricter at once:
//! - wider: every Patient record of the person (those joined by
//!   `Patient.link`, either way: an ADT A40 merge leaves the old record
//!   pointing at the survivor, and FHIR says every link is the same
//!   person), resources deleted earlier (their versions are still kept;
//!   they are found by their last version), and resources reached by
//!   reference that are about the person alone (a Specimen whose
//!   `subject` is them, the Binary holding a document of theirs, which the
//!   DocumentReference names by its attachment `url`), with no cap;
//! - stricter: what the person's resources point at but is not theirs
//!   alone (a practitioner, an organisation, a device shared by many
//!   patients, a resource naming another patient) is *shared*: exported
//!   for context, never erased.

use std::collections::{BTreeSet, VecDeque};

use serde_json::Value;

use crate::networks::PATIENT_FREE;
use crate::{current, history, params, StoredResource};
use passerelle_storage::sql::{Sql, SqlValue};
use passerelle_storage::StorageError;

/// The most Patient records followed through links: merges of merges are
/// a handful; a longer chain is a data error that must not hold the
/// command forever.
pub const MAX_LINKED_PATIENTS: usize = 64;

/// A resource, by type and id.
pub type Key = (String, String);

/// What the repository holds about one person.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatientRecord {
    /// The person's Patient ids: the one asked for first, then those
    /// linked to it.
    pub patients: Vec<String>,
    /// Their resources, in the order found: their Patients, then their
    /// compartment (`patient`/`subject` index, deleted resources
    /// included), then what those point at that is theirs alone.
    pub own: Vec<Key>,
    /// What their resources point at that is not theirs alone: exported
    /// (current version) for context, kept by an erasure.
    pub shared: Vec<Key>,
}

impl PatientRecord {
    /// `Patient/{id}` of each of the person's Patients.
    pub fn patient_references(&self) -> Vec<String> {
        self.patients
            .iter()
            .map(|id| format!("Patient/{id}"))
            .collect()
    }
}

/// What [`erase`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErasedResources {
    pub patients: u64,
    /// Resources (Patients included), current rows and tombstones.
    pub resources: u64,
    /// Versions in the history.
    pub versions: u64,
    pub index_rows: u64,
    /// Network memberships of the person's Patients.
    pub memberships: u64,
}

/// The text of the last version of a resource that was not a deletion
/// (its current text when live): what a deleted resource was about.
fn last_text(
    sql: &mut dyn Sql,
    resource_type: &str,
    id: &str,
) -> Result<Option<String>, StorageError> {
    if let Some(stored) = current(sql, resource_type, id)? {
        if !stored.deleted {
            return Ok(Some(stored.text));
        }
    }
    Ok(sql
        .query(
            "SELECT resource FROM fhir_history WHERE resource_type = $1 AND id = $2 \
             AND deleted = 0 ORDER BY version DESC LIMIT 1",
            &[resource_type.into(), id.into()],
        )?
        .into_iter()
        .next()
        .and_then(|row| row.into_iter().next())
        .and_then(SqlValue::into_string))
}

/// Every resource a resource points at (`Type/id`): its references, and
/// the attachment URLs that name a Binary of this server (a document's
/// content). Absolute URLs name other servers' resources.
fn pointed_at(value: &Value, out: &mut BTreeSet<Key>) {
    match value {
        Value::Object(object) => {
            for (key, inner) in object {
                match (key.as_str(), inner) {
                    ("reference", Value::String(reference)) | ("url", Value::String(reference))
                        if !reference.contains("://") =>
                    {
                        let Some(relative) = params::relative_reference(reference) else {
                            continue;
                        };
                        if key == "url" && !relative.starts_with("Binary/") {
                            continue;
                        }
                        if let Some((resource_type, id)) = relative.split_once('/') {
                            out.insert((resource_type.to_string(), id.to_string()));
                        }
                    }
                    _ => pointed_at(inner, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| pointed_at(item, out)),
        _ => {}
    }
}

fn pointed_at_text(text: &str) -> BTreeSet<Key> {
    let mut out = BTreeSet::new();
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        pointed_at(&value, &mut out);
    }
    out
}

fn exists(sql: &mut dyn Sql, resource_type: &str, id: &str) -> Result<bool, StorageError> {
    Ok(current(sql, resource_type, id)?.is_some())
}

/// The person whose Patient is `patient_id` (which must exist, deleted or
/// not): their Patients, own resources and shared context.
pub fn find(sql: &mut dyn Sql, patient_id: &str) -> Result<PatientRecord, StorageError> {
    let mut record = PatientRecord::default();
    let mut own: BTreeSet<Key> = BTreeSet::new();

    // The person's Patients: links followed both ways.
    let mut queue = VecDeque::from([patient_id.to_string()]);
    let mut patients: BTreeSet<String> = BTreeSet::new();
    while let Some(id) = queue.pop_front() {
        if patients.len() >= MAX_LINKED_PATIENTS
            || patients.contains(&id)
            || !exists(sql, "Patient", &id)?
        {
            continue;
        }
        patients.insert(id.clone());
        record.patients.push(id.clone());
        if let Some(text) = last_text(sql, "Patient", &id)? {
            for (resource_type, other) in pointed_at_text(&text) {
                if resource_type == "Patient" {
                    queue.push_back(other);
                }
            }
        }
        for row in sql.query(
            "SELECT id FROM fhir_index WHERE resource_type = 'Patient' AND param = 'link' \
             AND value = $1",
            &[format!("Patient/{id}").into()],
        )? {
            if let Some(other) = row.into_iter().next().and_then(SqlValue::into_string) {
                queue.push_back(other);
            }
        }
    }
    for id in &record.patients {
        let key = ("Patient".to_string(), id.clone());
        own.insert(key.clone());
        record.own.push(key);
    }
    let references: BTreeSet<String> = record.patient_references().into_iter().collect();

    // Their compartment, as the index knows it (live resources).
    for reference in &references {
        for row in sql.query(
            "SELECT DISTINCT resource_type, id FROM fhir_index \
             WHERE param IN ('patient', 'subject') AND value = $1 ORDER BY resource_type, id",
            &[reference.as_str().into()],
        )? {
            let mut columns = row.into_iter();
            if let (Some(resource_type), Some(id)) = (
                columns.next().and_then(SqlValue::into_string),
                columns.next().and_then(SqlValue::into_string),
            ) {
                if own.insert((resource_type.clone(), id.clone())) {
                    record.own.push((resource_type, id));
                }
            }
        }
    }
    // Deleted resources have no index rows left, but their versions are
    // kept: one whose last version named the person is theirs.
    for row in sql.query(
        "SELECT resource_type, id FROM fhir_resources WHERE deleted = 1 \
         AND resource_type <> 'Patient' ORDER BY resource_type, id",
        &[],
    )? {
        let mut columns = row.into_iter();
        let (Some(resource_type), Some(id)) = (
            columns.next().and_then(SqlValue::into_string),
            columns.next().and_then(SqlValue::into_string),
        ) else {
            continue;
        };
        if own.contains(&(resource_type.clone(), id.clone())) {
            continue;
        }
        let Some(text) = last_text(sql, &resource_type, &id)? else {
            continue;
        };
        let names_person = pointed_at_text(&text)
            .iter()
            .any(|(t, i)| t == "Patient" && references.contains(&format!("Patient/{i}")));
        if names_person {
            own.insert((resource_type.clone(), id.clone()));
            record.own.push((resource_type, id));
        }
    }

    // What their resources point at, followed until nothing new is
    // reached: theirs when it points at the person or at something of
    // theirs and at no other patient; shared otherwise.
    let mut shared: BTreeSet<Key> = BTreeSet::new();
    let mut queue: VecDeque<Key> = record.own.iter().cloned().collect();
    while let Some((resource_type, id)) = queue.pop_front() {
        let Some(text) = last_text(sql, &resource_type, &id)? else {
            continue;
        };
        for target in pointed_at_text(&text) {
            if own.contains(&target) || shared.contains(&target) {
                continue;
            }
            let (target_type, target_id) = (&target.0, &target.1);
            // Another person's Patient is theirs, not context.
            if target_type == "Patient" || !exists(sql, target_type, target_id)? {
                continue;
            }
            if PATIENT_FREE.contains(&target_type.as_str()) {
                shared.insert(target.clone());
                record.shared.push(target);
                continue;
            }
            let Some(target_text) = last_text(sql, target_type, target_id)? else {
                continue;
            };
            let its = pointed_at_text(&target_text);
            let other_patient = its
                .iter()
                .any(|(t, i)| t == "Patient" && !references.contains(&format!("Patient/{i}")));
            let about_person = its.iter().any(|key| own.contains(key));
            if other_patient {
                // About someone else as well: neither exported nor erased.
                continue;
            }
            if about_person {
                own.insert(target.clone());
                record.own.push(target.clone());
                queue.push_back(target);
            } else {
                shared.insert(target.clone());
                record.shared.push(target);
            }
        }
    }
    Ok(record)
}

/// Every version of the person's own resources (newest first, deletions
/// left out: they hold nothing) and the current version of the shared
/// ones, in the record's order.
pub fn versions(
    sql: &mut dyn Sql,
    record: &PatientRecord,
) -> Result<Vec<StoredResource>, StorageError> {
    let mut out = Vec::new();
    for (resource_type, id) in &record.own {
        out.extend(
            history(sql, resource_type, id)?
                .into_iter()
                .filter(|version| !version.deleted),
        );
    }
    for (resource_type, id) in &record.shared {
        out.extend(current(sql, resource_type, id)?.filter(|stored| !stored.deleted));
    }
    Ok(out)
}

/// Every `(system, value)` identifier any version of the person's
/// Patients carried: what their messages were keyed by.
pub fn identifiers(
    sql: &mut dyn Sql,
    record: &PatientRecord,
) -> Result<BTreeSet<(String, String)>, StorageError> {
    let mut out = BTreeSet::new();
    for id in &record.patients {
        for version in history(sql, "Patient", id)? {
            let Ok(value) = serde_json::from_str::<Value>(&version.text) else {
                continue;
            };
            for identifier in value["identifier"].as_array().into_iter().flatten() {
                if let (Some(system), Some(value)) =
                    (identifier["system"].as_str(), identifier["value"].as_str())
                {
                    out.insert((system.to_string(), value.to_string()));
                }
            }
        }
    }
    Ok(out)
}

/// Removes the person's own resources for good: current rows (no
/// tombstone is left: a read answers 404, as for what never existed),
/// every version, their index rows, and their Patients' network
/// memberships. Shared resources stay.
pub fn erase(sql: &mut dyn Sql, record: &PatientRecord) -> Result<ErasedResources, StorageError> {
    let mut erased = ErasedResources::default();
    for (resource_type, id) in &record.own {
        let key = [
            SqlValue::from(resource_type.as_str()),
            SqlValue::from(id.as_str()),
        ];
        erased.index_rows += sql.execute(
            "DELETE FROM fhir_index WHERE resource_type = $1 AND id = $2",
            &key,
        )?;
        erased.versions += sql.execute(
            "DELETE FROM fhir_history WHERE resource_type = $1 AND id = $2",
            &key,
        )?;
        erased.resources += sql.execute(
            "DELETE FROM fhir_resources WHERE resource_type = $1 AND id = $2",
            &key,
        )?;
    }
    for id in &record.patients {
        erased.patients += 1;
        erased.memberships += sql.execute(
            "DELETE FROM fhir_patient_networks WHERE patient = $1",
            &[format!("Patient/{id}").into()],
        )?;
    }
    Ok(erased)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Repository;
    use passerelle_storage::SharedStore;
    use std::sync::Arc;

    fn put(repository: &Repository, resources: &[&str]) {
        let entries: Vec<String> = resources
            .iter()
            .map(|text| {
                let value: Value = serde_json::from_str(text).unwrap();
                format!(
                    r#"{{"resource":{text},"request":{{"method":"PUT","url":"{}/{}"}}}}"#,
                    value["resourceType"].as_str().unwrap(),
                    value["id"].as_str().unwrap()
                )
            })
            .collect();
        let bundle = format!(
            r#"{{"resourceType":"Bundle","type":"transaction","entry":[{}]}}"#,
            entries.join(",")
        );
        repository.transaction(&bundle, 1_000).unwrap();
    }

    fn read<T: Send>(
        repository: &Repository,
        mut work: impl FnMut(&mut dyn Sql) -> Result<T, StorageError> + Send,
    ) -> T {
        repository.read(|sql| Ok(work(sql)?)).unwrap()
    }

    /// A person with a merged older record, a lab result with its
    /// specimen, a document with its Binary, a deleted condition; a
    /// practitioner and an organisation shared with another patient,
    /// whose own result must stay out.
    #[test]
    fn a_persons_record_is_theirs_alone_and_goes_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore =
            Arc::new(passerelle_storage::sqlite::SqliteStore::open(dir.path()).unwrap());
        let repository = Repository::new(store.clone());
        put(
            &repository,
            &[
                r#"{"resourceType":"Practitioner","id":"dr","name":[{"family":"House"}]}"#,
                r#"{"resourceType":"Organization","id":"lab","name":"Labo"}"#,
                r#"{"resourceType":"Patient","id":"a","identifier":[{"system":"urn:s","value":"A1"}],"name":[{"family":"Zorglub"}]}"#,
                r#"{"resourceType":"Patient","id":"a-old","identifier":[{"system":"urn:s","value":"A0"}],"link":[{"other":{"reference":"Patient/a"},"type":"replaced-by"}]}"#,
                r#"{"resourceType":"Patient","id":"b","identifier":[{"system":"urn:s","value":"B1"}]}"#,
                r#"{"resourceType":"Specimen","id":"s1","subject":{"reference":"Patient/a"}}"#,
                r#"{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/a"},"performer":[{"reference":"Practitioner/dr"},{"reference":"Organization/lab"}],"specimen":{"reference":"Specimen/s1"},"valueQuantity":{"value":1.50}}"#,
                r#"{"resourceType":"DocumentReference","id":"d1","status":"current","subject":{"reference":"Patient/a"},"content":[{"attachment":{"contentType":"text/plain","url":"Binary/bin1"}}]}"#,
                r#"{"resourceType":"Binary","id":"bin1","contentType":"text/plain","securityContext":{"reference":"DocumentReference/d1"},"data":"eA=="}"#,
                r#"{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/a"}}"#,
                r#"{"resourceType":"Observation","id":"o2","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/b"},"performer":[{"reference":"Practitioner/dr"}]}"#,
            ],
        );
        // A second version of the result, and the condition deleted.
        put(
            &repository,
            &[
                r#"{"resourceType":"Observation","id":"o1","status":"amended","code":{"text":"x"},"subject":{"reference":"Patient/a"},"performer":[{"reference":"Practitioner/dr"},{"reference":"Organization/lab"}],"specimen":{"reference":"Specimen/s1"},"valueQuantity":{"value":1.50}}"#,
            ],
        );
        repository
            .transaction(
                r#"{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Condition/c1"}}]}"#,
                2_000,
            )
            .unwrap();

        let record = read(&repository, |sql| find(sql, "a"));
        assert_eq!(record.patients, ["a", "a-old"]);
        let own: BTreeSet<String> = record.own.iter().map(|(t, i)| format!("{t}/{i}")).collect();
        let expected: BTreeSet<String> = [
            "Patient/a",
            "Patient/a-old",
            "Observation/o1",
            "DocumentReference/d1",
            "Specimen/s1",
            "Binary/bin1",
            "Condition/c1",
        ]
        .into_iter()
        .map(str::to_string)
        .collect();
        assert_eq!(own, expected);
        let shared: BTreeSet<String> = record
            .shared
            .iter()
            .map(|(t, i)| format!("{t}/{i}"))
            .collect();
        assert_eq!(
            shared,
            BTreeSet::from(["Organization/lab".into(), "Practitioner/dr".into()])
        );
        // From the old record, the same person.
        assert_eq!(read(&repository, |sql| find(sql, "a-old")).own.len(), 7);

        let versions = read(&repository, |sql| versions(sql, &record));
        let o1: Vec<&StoredResource> = versions.iter().filter(|v| v.id == "o1").collect();
        assert_eq!(o1.len(), 2, "both versions");
        assert!(o1[0].text.contains("\"value\":1.50"), "{}", o1[0].text);
        assert!(
            versions.iter().any(|v| v.id == "c1"),
            "the deleted one's last version"
        );
        assert_eq!(
            read(&repository, |sql| identifiers(sql, &record)),
            BTreeSet::from([
                ("urn:s".to_string(), "A0".to_string()),
                ("urn:s".to_string(), "A1".to_string())
            ])
        );

        let mut erased = ErasedResources::default();
        store
            .sql_write(&mut |sql| {
                erased = erase(sql, &record)?;
                Ok(true)
            })
            .unwrap();
        assert_eq!(erased.patients, 2);
        assert_eq!(erased.resources, 7);
        assert_eq!(erased.versions, 9);
        for (resource_type, id) in &record.own {
            assert!(read(&repository, |sql| current(sql, resource_type, id)).is_none());
            assert!(read(&repository, |sql| history(sql, resource_type, id)).is_empty());
        }
        assert!(read(&repository, |sql| current(sql, "Observation", "o2")).is_some());
        assert!(read(&repository, |sql| current(sql, "Practitioner", "dr")).is_some());
        let left = read(&repository, |sql| {
            sql.query(
                "SELECT COUNT(*) FROM fhir_index WHERE value = 'Patient/a' OR id = 'a'",
                &[],
            )
        });
        assert_eq!(left[0][0], SqlValue::Int(0));
    }
}
