//! Repository scenarios, run against both store backends (SQLite in a
//! temporary directory, PostgreSQL in a database of its own).

use serde_json::{json, Value};

use super::{
    current, history, search, version, Repository, RepositoryError, SearchRequest,
    TransactionError, TransactionOutcome, Visibility,
};
use crate::transaction::Refusal;
use passerelle_fhir::exact_json;
use passerelle_storage::SharedStore;

const SITE: &str = "urn:passerelle:authority:SITE";

fn patient_entry(full_url: &str, value: &str, family: &str, birth: &str) -> Value {
    json!({
        "fullUrl": full_url,
        "resource": {
            "resourceType": "Patient",
            "identifier": [{"system": SITE, "value": value}],
            "name": [{"family": family, "given": ["Zoé"]}],
            "gender": "female",
            "birthDate": birth
        },
        "request": {"method": "PUT", "url": format!("Patient?identifier={}%7C{value}", passerelle_fhir::query::percent_encode(SITE))}
    })
}

fn observation_entry(
    patient_url: &str,
    value: &str,
    code: &str,
    when: &str,
    number: &str,
) -> Value {
    json!({
        "fullUrl": format!("urn:uuid:obs-{value}"),
        "resource": {
            "resourceType": "Observation",
            "identifier": [{"system": SITE, "value": value}],
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": patient_url},
            "effectiveDateTime": when,
            "valueQuantity": {"value": format!("NUMBER:{number}"), "unit": "g/L"}
        },
        "request": {"method": "PUT", "url": format!("Observation?identifier={}%7C{value}", passerelle_fhir::query::percent_encode(SITE))}
    })
}

/// A transaction Bundle's text; `"NUMBER:x"` strings become the number `x`
/// as written.
fn bundle(entries: Vec<Value>) -> String {
    let text = serde_json::to_string(&json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": entries
    }))
    .unwrap();
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("\"NUMBER:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 8..];
        let end = after.find('"').unwrap();
        out.push_str(&after[..end]);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn search_ids(repository: &Repository, resource_type: &str, query: &str) -> Vec<String> {
    let pairs = passerelle_fhir::query::decode_pairs(query);
    let request = SearchRequest::parse(resource_type, &pairs, true)
        .unwrap()
        .visible_to(Visibility::Everything);
    repository
        .read(|sql| Ok(search(sql, &request)?))
        .unwrap()
        .matches
        .into_iter()
        .map(|m| m.id)
        .collect()
}

fn total(repository: &Repository, resource_type: &str, query: &str) -> i64 {
    let pairs = passerelle_fhir::query::decode_pairs(query);
    let request = SearchRequest::parse(resource_type, &pairs, true)
        .unwrap()
        .visible_to(Visibility::Everything);
    repository
        .read(|sql| Ok(search(sql, &request)?))
        .unwrap()
        .total
}

pub fn transactions_create_update_and_keep_versions(store: SharedStore) {
    let repository = Repository::new(store);
    let first = bundle(vec![
        patient_entry("urn:uuid:p1", "42", "Lefèvre", "1980-06-15"),
        observation_entry(
            "urn:uuid:p1",
            "R1",
            "2345-7",
            "2026-11-22T10:00:00+01:00",
            "1.50",
        ),
    ]);
    let outcome = repository.transaction(&first, 1_000).unwrap();
    let statuses: Vec<_> = outcome.entries.iter().map(|e| e.status).collect();
    assert_eq!(statuses, ["201 Created", "201 Created"]);
    let patient_id = outcome.entries[0].id.clone();
    let observation_id = outcome.entries[1].id.clone();

    // The reference was resolved and the decimal kept as written.
    let stored = repository
        .read(|sql| Ok(current(sql, "Observation", &observation_id)?))
        .unwrap()
        .unwrap();
    assert!(stored.text.contains("\"value\":1.50"), "{}", stored.text);
    let observation = exact_json::parse(&stored.text).unwrap();
    assert_eq!(
        observation["subject"]["reference"],
        format!("Patient/{patient_id}")
    );
    assert_eq!(observation["meta"]["versionId"], "1");
    assert_eq!(observation["id"], observation_id.as_str());

    // The same Bundle again changes nothing: same ids, same versions.
    let again = repository.transaction(&first, 2_000).unwrap();
    assert_eq!(again.entries[0].id, patient_id);
    assert_eq!(again.entries[0].status, "200 OK");
    assert_eq!(again.entries[0].version, Some(1));
    assert_eq!(again.entries[1].version, Some(1));

    // A changed Patient gets version 2; version 1 stays readable.
    let changed = bundle(vec![patient_entry(
        "urn:uuid:p1",
        "42",
        "Lefebvre",
        "1980-06-15",
    )]);
    let outcome = repository.transaction(&changed, 3_000).unwrap();
    assert_eq!(outcome.entries[0].id, patient_id);
    assert_eq!(outcome.entries[0].version, Some(2));
    let versions = repository
        .read(|sql| Ok(history(sql, "Patient", &patient_id)?))
        .unwrap();
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        [2, 1]
    );
    let first_version = repository
        .read(|sql| Ok(version(sql, "Patient", &patient_id, 1)?))
        .unwrap()
        .unwrap();
    assert!(first_version.text.contains("Lefèvre"));
    assert_eq!(
        search_ids(&repository, "Patient", "family=lefeb"),
        vec![patient_id.clone()]
    );
    assert!(search_ids(&repository, "Patient", "family=lefev").is_empty());
}

/// A string holding NUL once passed for an exact number (`"\u0000n:1"`)
/// and corrupted the stored JSON for every later reader; control
/// characters are refused with the transaction, which writes nothing.
pub fn strings_cannot_pass_for_numbers(store: SharedStore) {
    let repository = Repository::new(store);
    for family in ["\u{0}n:1", "Martin\u{1}"] {
        let text = bundle(vec![patient_entry("urn:uuid:p1", "9", family, "1990")]);
        match repository.transaction(&text, 1_000) {
            Err(RepositoryError::Transaction(TransactionError::NotJson(reason))) => {
                assert!(reason.contains("control character"), "{reason}");
            }
            other => panic!("expected the control character refused, got {other:?}"),
        }
    }
    assert_eq!(total(&repository, "Patient", ""), 0, "nothing was written");
}

pub fn transactions_are_all_or_nothing(store: SharedStore) {
    let repository = Repository::new(store);
    let dangling = bundle(vec![
        patient_entry("urn:uuid:p1", "7", "Martin", "1990"),
        observation_entry("Patient/nobody", "R7", "718-7", "2026-01-01", "13.0"),
    ]);
    match repository.transaction(&dangling, 1_000) {
        Err(RepositoryError::Transaction(TransactionError::Entry {
            index,
            refusal,
            reason,
        })) => {
            assert_eq!(index, 1);
            assert_eq!(refusal, Refusal::Invalid);
            assert!(reason.contains("Patient/nobody"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(total(&repository, "Patient", ""), 0, "nothing was written");

    let unknown_placeholder = bundle(vec![observation_entry(
        "urn:uuid:missing",
        "R8",
        "718-7",
        "2026",
        "1",
    )]);
    assert!(repository.transaction(&unknown_placeholder, 1_000).is_err());
    assert!(matches!(
        repository.transaction("{\"resourceType\":\"Bundle\",\"type\":\"batch\"}", 1_000),
        Err(RepositoryError::Transaction(
            TransactionError::InvalidBundle(_)
        ))
    ));
    assert!(matches!(
        repository.transaction("{not json", 1_000),
        Err(RepositoryError::Transaction(TransactionError::NotJson(_)))
    ));

    // Two Patients with one identifier: a condition on it is ambiguous.
    for id in ["a", "b"] {
        let mut entry = patient_entry("urn:uuid:x", "dup", "Twin", "2000");
        entry["request"] = json!({"method": "PUT", "url": format!("Patient/{id}")});
        repository.transaction(&bundle(vec![entry]), 1_000).unwrap();
    }
    match repository.transaction(
        &bundle(vec![patient_entry("urn:uuid:x", "dup", "Twin", "2000")]),
        2_000,
    ) {
        Err(RepositoryError::Transaction(TransactionError::Entry {
            refusal, reason, ..
        })) => {
            assert_eq!(refusal, Refusal::SeveralMatches);
            // The refusal names the condition and the records that meet
            // in it.
            assert!(
                reason.contains("matches 2 resources (Patient/a, Patient/b)")
                    && reason.contains("`Patient?identifier="),
                "{reason}"
            );
        }
        other => panic!("expected 412, got {other:?}"),
    }
}

pub fn conditional_creates_find_what_exists(store: SharedStore) {
    let repository = Repository::new(store);
    let organization = |name: &str| {
        json!({
            "fullUrl": "urn:uuid:org",
            "resource": {"resourceType": "Organization", "identifier": [{"system": SITE, "value": "LAB"}], "name": name},
            "request": {"method": "POST", "url": "Organization", "ifNoneExist": "identifier=urn%3Apasserelle%3Aauthority%3ASITE%7CLAB"}
        })
    };
    let first = repository
        .transaction(&bundle(vec![organization("Labo")]), 1_000)
        .unwrap();
    assert_eq!(first.entries[0].status, "201 Created");
    let second = repository
        .transaction(&bundle(vec![organization("Other name")]), 2_000)
        .unwrap();
    assert_eq!(second.entries[0].status, "200 OK");
    assert_eq!(second.entries[0].id, first.entries[0].id);
    assert_eq!(
        search_ids(&repository, "Organization", "name=labo"),
        vec![first.entries[0].id.clone()]
    );

    // Deleting leaves a tombstone that search skips.
    let delete = json!({"request": {"method": "DELETE", "url": format!("Organization/{}", first.entries[0].id)}});
    repository
        .transaction(&bundle(vec![delete]), 3_000)
        .unwrap();
    assert!(search_ids(&repository, "Organization", "").is_empty());
    let tombstone = repository
        .read(|sql| Ok(current(sql, "Organization", &first.entries[0].id)?))
        .unwrap()
        .unwrap();
    assert!(tombstone.deleted);
    assert_eq!(tombstone.version, 2);
}

pub fn search_matches_pages_sorts_and_includes(store: SharedStore) {
    let repository = Repository::new(store);
    let mut entries = vec![
        patient_entry("urn:uuid:p1", "1", "Dupont", "1980-06-15"),
        patient_entry("urn:uuid:p2", "2", "Durand", "1995-01-02"),
    ];
    for n in 0..5 {
        entries.push(observation_entry(
            "urn:uuid:p1",
            &format!("G{n}"),
            "2345-7",
            &format!("2026-11-0{}T08:00:00Z", n + 1),
            "1.0",
        ));
    }
    entries.push(observation_entry(
        "urn:uuid:p2",
        "H1",
        "718-7",
        "2026-10-01",
        "14.2",
    ));
    let outcome = repository.transaction(&bundle(entries), 1_000).unwrap();
    let p1 = outcome.entries[0].id.clone();
    let p2 = outcome.entries[1].id.clone();

    assert_eq!(
        search_ids(
            &repository,
            "Patient",
            "identifier=urn%3Apasserelle%3Aauthority%3ASITE%7C2"
        ),
        vec![p2.clone()]
    );
    assert_eq!(
        search_ids(&repository, "Patient", "identifier=2"),
        vec![p2.clone()]
    );
    assert!(search_ids(&repository, "Patient", "identifier=other%7C2").is_empty());
    assert_eq!(
        search_ids(&repository, "Patient", "name=DUP"),
        vec![p1.clone()]
    );
    assert_eq!(
        search_ids(&repository, "Patient", "family:exact=Dupont"),
        vec![p1.clone()]
    );
    assert!(search_ids(&repository, "Patient", "family:exact=dupont").is_empty());
    assert_eq!(
        search_ids(&repository, "Patient", "birthdate=1980"),
        vec![p1.clone()]
    );
    assert_eq!(
        search_ids(&repository, "Patient", "birthdate=ge1990-01-01"),
        vec![p2.clone()]
    );
    assert_eq!(
        search_ids(&repository, "Patient", "birthdate=lt1990&gender=female"),
        vec![p1.clone()]
    );
    assert_eq!(total(&repository, "Patient", "gender=male"), 0);

    assert_eq!(
        total(&repository, "Observation", &format!("patient={p1}")),
        5
    );
    assert_eq!(
        total(
            &repository,
            "Observation",
            &format!("subject=Patient/{p1}&code=http%3A%2F%2Floinc.org%7C2345-7")
        ),
        5
    );
    assert_eq!(total(&repository, "Observation", "code=718-7,2345-7"), 6);
    assert_eq!(total(&repository, "Observation", "code:not=718-7"), 5);
    assert_eq!(
        total(
            &repository,
            "Observation",
            "date=ge2026-11-03&date=lt2026-11-05"
        ),
        2
    );
    assert_eq!(
        total(
            &repository,
            "Observation",
            "category=laboratory&status=final"
        ),
        6
    );
    assert_eq!(total(&repository, "Observation", "date=2026-11"), 5);

    // Pages, newest first, with the total.
    let pairs = passerelle_fhir::query::decode_pairs(&format!(
        "patient={p1}&_sort=-date&_count=2&_offset=2"
    ));
    let request = SearchRequest::parse("Observation", &pairs, true)
        .unwrap()
        .visible_to(Visibility::Everything);
    let page = repository.read(|sql| Ok(search(sql, &request)?)).unwrap();
    assert_eq!(page.total, 5);
    let dates: Vec<String> = page
        .matches
        .iter()
        .map(|m| {
            exact_json::parse(&m.text).unwrap()["effectiveDateTime"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(dates, ["2026-11-03T08:00:00Z", "2026-11-02T08:00:00Z"]);

    // _include brings the Patient once; _revinclude the Observations.
    let pairs = passerelle_fhir::query::decode_pairs("code=2345-7&_include=Observation:patient");
    let request = SearchRequest::parse("Observation", &pairs, true)
        .unwrap()
        .visible_to(Visibility::Everything);
    let page = repository.read(|sql| Ok(search(sql, &request)?)).unwrap();
    assert_eq!(page.matches.len(), 5);
    assert_eq!(
        page.included
            .iter()
            .map(|r| r.id.clone())
            .collect::<Vec<_>>(),
        vec![p1.clone()]
    );
    let pairs =
        passerelle_fhir::query::decode_pairs(&format!("_id={p2}&_revinclude=Observation:patient"));
    let request = SearchRequest::parse("Patient", &pairs, true)
        .unwrap()
        .visible_to(Visibility::Everything);
    let page = repository.read(|sql| Ok(search(sql, &request)?)).unwrap();
    assert_eq!(page.matches.len(), 1);
    assert_eq!(page.included.len(), 1);
    assert_eq!(page.included[0].resource_type, "Observation");
}

/// A client may write only the types its scopes name: one entry it may
/// not write refuses the Bundle (403) and nothing of it is stored.
pub fn transactions_need_scopes_for_every_entry(store: SharedStore) {
    let repository = Repository::new(store);
    let patient = patient_entry("urn:uuid:p", "P1", "Durand", "1970-01-01");
    let observation = observation_entry("urn:uuid:p", "O1", "2345-7", "2026-01-01", "1.50");
    let lab = passerelle_security::Scopes::parse(&["system/Observation.cu"]).unwrap();
    match repository.transaction_as(
        &bundle(vec![observation.clone(), patient.clone()]),
        1_000,
        &lab,
        &[],
        None,
        None,
    ) {
        Err(RepositoryError::Transaction(TransactionError::Entry {
            index,
            refusal,
            reason,
        })) => {
            assert_eq!((index, refusal), (1, Refusal::Forbidden));
            assert!(reason.contains("system/Patient.u"), "{reason}");
        }
        other => panic!("expected 403, got {other:?}"),
    }
    assert_eq!(
        total(&repository, "Observation", ""),
        0,
        "nothing of a refused Bundle is stored"
    );
    let both =
        passerelle_security::Scopes::parse(&["system/Observation.cu system/Patient.cu"]).unwrap();
    repository
        .transaction_as(
            &bundle(vec![observation.clone(), patient.clone()]),
            1_000,
            &both,
            &[],
            None,
            None,
        )
        .unwrap();
    assert_eq!(total(&repository, "Observation", ""), 1);
    // Past its deadline, a transaction is rolled back, not committed.
    let past = std::time::Instant::now();
    let mut second = observation;
    second["request"] = serde_json::json!({"method": "POST", "url": "Observation"});
    assert!(matches!(
        repository.transaction_as(
            &bundle(vec![second, patient]),
            2_000,
            &both,
            &[],
            Some(past),
            None
        ),
        Err(RepositoryError::DeadlinePassed)
    ));
    assert_eq!(total(&repository, "Observation", ""), 1);
}

/// However large the stored resources, one search answer carries at most
/// `MAX_PAGE_CHARS` of them (at least one match); the rest is the next
/// page's.
pub fn search_answers_stay_within_the_page_size_limit(store: SharedStore) {
    let repository = Repository::new(store);
    let large = "x".repeat(crate::search::MAX_PAGE_CHARS / 3 + 1024);
    for n in 0..4 {
        let entry = patient_entry(
            &format!("urn:uuid:big-{n}"),
            &format!("BIG{n}"),
            &large,
            "1970-01-01",
        );
        repository
            .transaction(&bundle(vec![entry]), 1_000 + n)
            .unwrap();
    }
    assert_eq!(total(&repository, "Patient", "_count=10"), 4);
    let first = search_ids(&repository, "Patient", "_count=10");
    assert_eq!(
        first.len(),
        2,
        "two of a third of the limit each fit, not three"
    );
    let rest = search_ids(&repository, "Patient", "_count=10&_offset=2");
    assert_eq!(rest.len(), 2);
    assert!(first.iter().all(|id| !rest.contains(id)));
}

macro_rules! repository_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend {
            $(
                #[test]
                fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = passerelle_storage::sqlite::SqliteStore::open(dir.path()).unwrap();
                    super::$name(std::sync::Arc::new(store));
                }
            )*
        }
        mod postgres_backend {
            $(
                #[test]
                fn $name() {
                    let name = stringify!($name);
                    let Some(url) = passerelle_storage::postgres_test::database(&format!("repo_{}", &name[..name.len().min(20)])) else { return };
                    let store = passerelle_storage::postgres::PostgresStore::open(&url).unwrap();
                    super::$name(std::sync::Arc::new(store));
                }
            )*
        }
    };
}

/// What a client of some networks sees: the patients its networks sent
/// data about (written or matched), their compartment, and resources
/// about no patient; nothing of another network's patients, in searches,
/// includes, the summary or `$everything`.
pub fn clients_see_only_the_patients_of_their_networks(store: SharedStore) {
    let repository = Repository::new(store);
    let all = passerelle_security::Scopes::everything();
    let nord = vec!["nord".to_string()];
    let sud = vec!["sud".to_string()];
    let organization = json!({
        "fullUrl": "urn:uuid:org",
        "resource": {"resourceType": "Organization", "identifier": [{"system": SITE, "value": "ORG"}], "name": "Labo"},
        "request": {"method": "PUT", "url": format!("Organization?identifier={}%7CORG", passerelle_fhir::query::percent_encode(SITE))}
    });
    let nord_bundle = bundle(vec![
        patient_entry("urn:uuid:pn", "PN", "Nord", "1970-01-01"),
        observation_entry("urn:uuid:pn", "ON", "2345-7", "2026-01-01", "1.50"),
        organization,
    ]);
    repository
        .transaction_as(&nord_bundle, 1_000, &all, &nord, None, None)
        .unwrap();
    repository
        .transaction_as(
            &bundle(vec![
                patient_entry("urn:uuid:ps", "PS", "Sud", "1980-01-01"),
                observation_entry("urn:uuid:ps", "OS", "2345-7", "2026-01-02", "2.50"),
            ]),
            1_000,
            &all,
            &sud,
            None,
            None,
        )
        .unwrap();
    let ids = |networks: &[String], resource_type: &str, query: &str| -> Vec<String> {
        let pairs = passerelle_fhir::query::decode_pairs(query);
        let request = SearchRequest::parse(resource_type, &pairs, true)
            .unwrap()
            .visible_to(Visibility::of(networks));
        let page = repository.read(|sql| Ok(search(sql, &request)?)).unwrap();
        let mut out: Vec<String> = page
            .matches
            .iter()
            .chain(&page.included)
            .map(|m| format!("{}/{}", m.resource_type, m.id))
            .collect();
        out.sort();
        out
    };
    let nord_patient = ids(&nord, "Patient", "");
    assert_eq!(nord_patient.len(), 1, "{nord_patient:?}");
    let nord_id = nord_patient[0].trim_start_matches("Patient/").to_string();
    let sud_patient = ids(&sud, "Patient", "");
    assert_eq!(sud_patient.len(), 1, "{sud_patient:?}");
    let sud_id = sud_patient[0].trim_start_matches("Patient/").to_string();
    assert_ne!(nord_id, sud_id);
    assert_eq!(ids(&nord, "Observation", "").len(), 1);
    assert!(ids(&nord, "Patient", "identifier=PS").is_empty());
    assert!(
        !ids(&nord, "Observation", "_include=Observation:subject")
            .iter()
            .any(|r| r == &format!("Patient/{sud_id}")),
        "an include does not reach another network's patient"
    );
    assert_eq!(
        ids(&nord, "Organization", "").len(),
        1,
        "no patient data: seen by all"
    );
    assert_eq!(ids(&[], "Patient", "").len(), 0, "no network: no patient");
    assert_eq!(
        ids(&["*".to_string()], "Patient", "").len(),
        2,
        "network * sees all"
    );
    // Histories of a type and of every type, seen as each reader may.
    let history = |networks: &[String], resource_type: Option<&str>, count: usize| {
        repository
            .read(|sql| {
                Ok(crate::type_history(
                    sql,
                    resource_type,
                    Some(1_000),
                    &Visibility::of(networks),
                    count,
                    0,
                )?)
            })
            .unwrap()
    };
    let every = ["*".to_string()];
    assert_eq!(history(&every, Some("Patient"), 10).1, 2);
    assert_eq!(history(&nord, Some("Patient"), 10).1, 1);
    assert_eq!(history(&sud, Some("Observation"), 10).1, 1);
    assert_eq!(
        history(&nord, None, 10).1,
        3,
        "its patient, observation, and the organization"
    );
    let (page, total) = history(&every, None, 2);
    assert_eq!((page.len(), total), (2, 5));
    assert!(
        repository
            .read(|sql| Ok(crate::type_history(
                sql,
                None,
                Some(2_000),
                &Visibility::Everything,
                10,
                0
            )?))
            .unwrap()
            .0
            .is_empty(),
        "nothing changed since"
    );
    let nord_sees = Visibility::of(&nord);
    let summary = repository.read(|sql| {
        crate::summary::patient_summary(
            sql,
            &sud_id,
            "http://x/fhir",
            1,
            &mut || "x".into(),
            &nord_sees,
        )
    });
    assert!(
        matches!(summary, Err(RepositoryError::NotFound(_))),
        "{summary:?}"
    );
    let everything = repository.read(|sql| crate::summary::everything(sql, &sud_id, &nord_sees));
    assert!(matches!(everything, Err(RepositoryError::NotFound(_))));
    let everything = repository
        .read(|sql| crate::summary::everything(sql, &nord_id, &nord_sees))
        .unwrap();
    assert_eq!(
        everything.len(),
        2,
        "the patient and its observation: {everything:?}"
    );
    // A later message of another network about the same patient (matched
    // by identifier) makes it a patient of both.
    repository
        .transaction_as(
            &bundle(vec![patient_entry(
                "urn:uuid:again",
                "PN",
                "Nord",
                "1970-01-01",
            )]),
            2_000,
            &all,
            &sud,
            None,
            None,
        )
        .unwrap();
    assert_eq!(ids(&sud, "Patient", "").len(), 2);
    let networks = repository
        .read(|sql| Ok(crate::networks::networks_of(sql, &nord_id)?))
        .unwrap();
    assert_eq!(networks, ["nord", "sud"]);
    // Taken out of a network by hand, and granted again.
    assert!(repository.revoke(&nord_id, "sud").unwrap());
    assert!(!repository.revoke(&nord_id, "sud").unwrap());
    assert_eq!(ids(&sud, "Patient", "").len(), 1);
    repository.grant(&nord_id, "sud").unwrap();
    assert_eq!(ids(&sud, "Patient", "").len(), 2);
    assert!(matches!(
        repository.grant("no-such-patient", "sud"),
        Err(RepositoryError::NotFound(_))
    ));
}

/// Records the patients of each write it is asked for, as the HTTP API's
/// audit layer does.
struct NamesPatients;

impl crate::WriteRecorder for NamesPatients {
    fn record(&self, outcome: &TransactionOutcome) -> passerelle_storage::audit::AuditRecord {
        passerelle_storage::audit::AuditRecord {
            recorded_ms: 1_000,
            patients: outcome.patients.iter().cloned().collect(),
            event: format!("{{\"entries\":{}}}", outcome.entries.len()),
        }
    }
}

/// A write's audit record is appended in the write's transaction: it is
/// there once the write commits, names the patients written (a deleted
/// Patient too), and a refused write leaves no record.
pub fn writes_commit_with_their_audit_record(store: SharedStore) {
    let repository = Repository::new(store.clone());
    let all = passerelle_security::Scopes::everything();
    let records = || passerelle_storage::audit::records_after(store.as_ref(), 0, 100).unwrap();
    let written = repository
        .transaction_as(
            &bundle(vec![
                patient_entry("urn:uuid:a", "AU1", "Audit", "1970-01-01"),
                observation_entry("urn:uuid:a", "AO1", "2345-7", "2026-01-01", "1.50"),
            ]),
            1_000,
            &all,
            &[],
            None,
            Some(&NamesPatients),
        )
        .unwrap();
    let patient = format!("Patient/{}", written.entries[0].id);
    assert_eq!(records().len(), 1);
    assert_eq!(
        passerelle_storage::audit::for_patient(store.as_ref(), &patient, 10).unwrap(),
        ["{\"entries\":2}"]
    );
    // Refused (a reference to nothing): no write, no record.
    let mut dangling = observation_entry("urn:uuid:x", "AO2", "2345-7", "2026-01-01", "2.5");
    dangling["resource"]["subject"]["reference"] = "Patient/nobody".into();
    assert!(repository
        .transaction_as(
            &bundle(vec![dangling]),
            1_000,
            &all,
            &[],
            None,
            Some(&NamesPatients)
        )
        .is_err());
    assert_eq!(records().len(), 1);
    // A deleted Patient is named by the record of its deletion.
    let delete = serde_json::json!({"request": {"method": "DELETE", "url": patient.clone()}});
    let observation = format!("Observation/{}", written.entries[1].id);
    let delete_observation =
        serde_json::json!({"request": {"method": "DELETE", "url": observation}});
    repository
        .transaction_as(
            &bundle(vec![delete_observation, delete]),
            2_000,
            &all,
            &[],
            None,
            Some(&NamesPatients),
        )
        .unwrap();
    assert_eq!(
        passerelle_storage::audit::for_patient(store.as_ref(), &patient, 10)
            .unwrap()
            .len(),
        2
    );
    assert!(passerelle_storage::audit::verify(store.as_ref()).is_ok());
}

repository_tests!(
    transactions_create_update_and_keep_versions,
    transactions_are_all_or_nothing,
    strings_cannot_pass_for_numbers,
    conditional_creates_find_what_exists,
    search_matches_pages_sorts_and_includes,
    transactions_need_scopes_for_every_entry,
    search_answers_stay_within_the_page_size_limit,
    clients_see_only_the_patients_of_their_networks,
    writes_commit_with_their_audit_record,
);
