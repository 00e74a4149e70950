//! Unit tests of the built-in mappers on small hand-written messages; the
//! golden cases (conformance-tests/cases/mapping) and the corpus test cover
//! whole real messages.

use serde_json::Value;

use super::*;
use crate::hl7v2::Message;
use crate::mapping::{MappingContext, SiteSettings, SourceMessage};

pub(crate) fn map_text(raw: &str) -> Result<Value, crate::mapping::MappingError> {
    let site = SiteSettings::default();
    map_with(raw, &site).map(|(value, _)| value)
}

pub(crate) fn map_with(
    raw: &str,
    site: &SiteSettings,
) -> Result<(Value, String), crate::mapping::MappingError> {
    let registry = builtin_registry(&BuiltinConfig::default());
    let message = Message::parse(raw.as_bytes()).unwrap();
    let context = MappingContext {
        site,
        now: "2026-11-23T10:00:00Z",
    };
    let mapped = registry.map(SourceMessage::Hl7v2(&message), &context)?;
    crate::fhir::check_resource_json(&mapped.bundle).unwrap();
    Ok((serde_json::from_str(&mapped.bundle).unwrap(), mapped.bundle))
}

/// The fullUrls of the entries holding a `kind` resource, in Bundle order.
pub(crate) fn full_urls<'v>(bundle: &'v Value, kind: &str) -> Vec<&'v str> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["resourceType"] == kind)
        .map(|e| e["fullUrl"].as_str().unwrap())
        .collect()
}

/// The `reference` of each Reference of a repeating element.
pub(crate) fn cited(element: &Value) -> Vec<&str> {
    element
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reference"].as_str().unwrap())
        .collect()
}

pub(crate) fn resources<'v>(bundle: &'v Value, kind: &str) -> Vec<&'v Value> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == kind)
        .collect()
}

#[test]
fn builtins_register_without_conflict() {
    let mut registry = crate::mapping::MapperRegistry::default();
    for mapper in builtin_mappers(&BuiltinConfig::default()) {
        registry.register(mapper).unwrap();
    }
}

const PAMFR_A01: &str = "MSH|^~\\&|GAM|CHU-X|DPI|CHU-X|20240306111154||ADT^A01^ADT_A01|3975|D|2.5^FRA^2.11|||||FRA|UNICODE UTF-8|FR||2.11^IHE_FRANCE-2.11-PAM\rEVN||20240306111154||||20240306110000|\rPID|1||000003^^^CHU-X&000897406&N^PI~279035121518989^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS^^20101207||PAT-TROIS^DOMINIQUE^DOMINIQUE^^^^L~DUPONT^DOMINIQUE^^^^^D||19790328|F|||28 Av de Breteuil^^PARIS^^75007^FRA^H^^^^^^^~^^^^^^BDL^^63220|||||S||24000006^^^CHU-X&000897406&M^AN|||||||1|||||N||VALI|20240306111153||||||\rPD1||U||||||||||N|||||||||\rPV1|1|I|^^^CHU-X&000897406&M^O^^|R|||801234567897^Réault^Pierre^^^^^^ASIP-SANTE-PS&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS|||||||||N|801234567897^Réault^Pierre^^^^^^ASIP-SANTE-PS&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS||000897406^^^CHU-X&000897406&M^VN^^20210409|||N||||||||||||||4||||||||20240306110000|||||||V|\rZBE|312^CHU-X^000897406|20240306110000||INSERT|N||Chir V^^^^^CHU-X&000897406&N^UF^^^6268|Chir V^^^^^CHU-X&000897406&N^UF^^^6268|HMS\rZFA|ACTIF|20240306111154|||||||INO|20240306111154|IC|20240306111154\rZFM|8|||\rZFD|||Y|N|INSI|20211201||\r";

#[test]
fn pam_fr_admission() {
    let bundle = map_text(PAMFR_A01).unwrap();
    let patient = resources(&bundle, "Patient")[0];
    let ins = patient["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .find(|id| id["system"] == "urn:oid:1.2.250.1.213.1.4.10")
        .unwrap();
    assert_eq!(ins["value"], "279035121518989");
    assert_eq!(ins["use"], "official");
    assert_eq!(ins["type"]["coding"][0]["code"], "INS-NIR");
    assert_eq!(patient["name"][0]["use"], "official");
    assert_eq!(patient["name"][0]["family"], "PAT-TROIS");
    // INS rules: PID-5.3 of the birth name is the list of birth given names.
    assert_eq!(
        patient["name"][0]["given"],
        serde_json::json!(["DOMINIQUE"])
    );
    assert_eq!(
        patient["name"][0]["extension"][0]["valueString"],
        "DOMINIQUE"
    );
    // PID-25 without PID-24 = Y is not a multiple birth.
    assert!(patient.get("multipleBirthInteger").is_none());
    assert_eq!(patient["name"][1]["use"], "usual");
    assert_eq!(patient["birthDate"], "1979-03-28");
    assert_eq!(patient["gender"], "female");
    let text = patient.to_string();
    assert!(text.contains("fr-core-identity-reliability"), "{text}");
    assert!(text.contains("\"VALI\""), "{text}");
    assert!(text.contains("\"63220\""), "{text}");
    assert!(text.contains("pamfr-dmp-status"), "{text}");
    let encounter = resources(&bundle, "Encounter")[0];
    assert_eq!(encounter["status"], "in-progress");
    assert_eq!(encounter["class"]["code"], "IMP");
    assert_eq!(encounter["period"]["start"], "2024-03-06T11:00:00+01:00");
    assert_eq!(encounter["identifier"][0]["value"], "000897406");
    assert!(encounter.to_string().contains("pamfr-movement"));
    // Every request is conditional.
    for entry in bundle["entry"].as_array().unwrap() {
        let request = &entry["request"];
        assert!(
            request["url"].as_str().unwrap().contains("identifier=")
                || request["ifNoneExist"].is_string(),
            "{request}"
        );
    }
}

#[test]
fn same_input_same_ids() {
    let first = map_text(PAMFR_A01).unwrap();
    let second = map_text(PAMFR_A01).unwrap();
    assert_eq!(first, second);
    let full_urls: Vec<&str> = first["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["fullUrl"].as_str().unwrap())
        .collect();
    let mut unique = full_urls.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), full_urls.len());
}

#[test]
fn merge_links_both_patients() {
    let raw = "MSH|^~\\&|A|F|B|G|20240101120000+0100||ADT^A40^ADT_A39|1|P|2.5\rEVN|A40|20240101120000\rPID|1||NEW1^^^F^PI||DOE^JOHN||19700101|M\rMRG|OLD9^^^F^PI\r";
    let bundle = map_text(raw).unwrap();
    let patients = resources(&bundle, "Patient");
    assert_eq!(patients.len(), 2);
    assert_eq!(patients[0]["link"][0]["type"], "replaces");
    assert_eq!(patients[1]["link"][0]["type"], "replaced-by");
    assert_eq!(patients[1]["active"], false);
}

#[test]
fn missing_patient_identifier_names_the_field() {
    let raw = "MSH|^~\\&|A|F|B|G|20240101120000||ADT^A01|1|P|2.5\rPID|1||||DOE^JOHN\r";
    let error = map_text(raw).unwrap_err();
    assert_eq!(error.to_string(), "PID-3: a patient identifier is required");
    let raw =
        "MSH|^~\\&|A|F|B|G|20240101120000||ADT^A01|1|P|2.5\rPID|1||1^^^F||DOE^JOHN||19701301\r";
    let error = map_text(raw).unwrap_err();
    assert!(error.to_string().starts_with("PID-7: "), "{error}");
}

#[test]
fn explicit_null_and_empty_fields_are_omitted() {
    let raw = "MSH|^~\\&|A|F|B|G|20240101120000||ADT^A08|1|P|2.5\rPID|1||1^^^F||DOE^JOHN||\"\"|\"\"|||\"\"\r";
    let bundle = map_text(raw).unwrap();
    let patient = resources(&bundle, "Patient")[0];
    assert!(patient.get("birthDate").is_none());
    assert!(patient.get("gender").is_none());
    assert!(patient.get("address").is_none());
    let text = bundle.to_string();
    assert!(!text.contains("\"\""), "{text}");
    assert!(!text.contains("{}"), "{text}");
}

#[test]
fn cancelled_discharge_and_pre_admission_statuses() {
    let a13 = "MSH|^~\\&|A|F|B|G|20240101120000+0100||ADT^A13|1|P|2.5\rPID|1||1^^^F||DOE^JOHN\rPV1|1|I|W1^R1^B1^F||||||||||||||||V1^^^F^VN|||||||||||||||||||||||||20231230100000|20240101110000\r";
    let encounter = &resources(&map_text(a13).unwrap(), "Encounter")[0].clone();
    assert_eq!(encounter["status"], "in-progress");
    assert!(encounter["period"].get("end").is_none(), "{encounter}");
    let a08 = "MSH|^~\\&|A|F|B|G|20240101120000+0100||ADT^A08|1|P|2.5\rPID|1||1^^^F||DOE^JOHN\rPV1|1|P|||||||||||||||||V1^^^F^VN\r";
    assert_eq!(
        resources(&map_text(a08).unwrap(), "Encounter")[0]["status"],
        "planned"
    );
}

#[test]
fn identifier_changes_link_and_deletions_are_not_written() {
    let a47 = "MSH|^~\\&|A|F|B|G|20240101120000+0100||ADT^A47^ADT_A30|1|P|2.5\rPID|1||MR101^^^F^MR||DOE^JOHN\rMRG|MR102^^^F^MR\r";
    let patients = resources(&map_text(a47).unwrap(), "Patient")
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(patients.len(), 2);
    assert_eq!(patients[1]["link"][0]["type"], "replaced-by");
    let a29 = "MSH|^~\\&|A|F|B|G|20240101120000+0100||ADT^A29^ADT_A21|1|P|2.5\rPID|1||MR101^^^F^MR||DOE^JOHN\r";
    let error = map_text(a29).unwrap_err();
    assert_eq!(error.kind, crate::mapping::MappingErrorKind::Unsupported);
}

#[test]
fn subcomponents_never_leak_into_text() {
    let raw = "MSH|^~\\&|A|F|B|G|20240101120000+0100||ADT^A01|1|P|2.5\rPID|1||1^^^F||DOE^JOHN||||||1 rue A^^Lyon^^69001^FRA^H^^69381&Lyon 1er&INSEE||^PRN^PH^^^^^^^^^0478000000\rPV1|1|I|ICU&1.2.3&ISO^ROOM1&1.2.4&ISO^B2||||||||||||||||V1^^^F^VN\r";
    let bundle = map_text(raw).unwrap();
    let text = bundle.to_string();
    assert!(!text.contains('&'), "{text}");
    let patient = resources(&bundle, "Patient")[0];
    assert_eq!(patient["address"][0]["district"], "69381");
    assert_eq!(patient["telecom"][0]["value"], "0478000000");
    assert_eq!(resources(&bundle, "Location")[0]["name"], "ICU ROOM1 B2");
}

/// ADT^A45 moves visits: every MRG/PV1 group's visit becomes an Encounter
/// of the patient of PID, not only the first.
#[test]
fn visit_move_maps_every_visit() {
    let a45 = "MSH|^~\\&|ADT1|GHH|EHR|HOSP|20210914112000+0200||ADT^A45^ADT_A45|M45|P|2.5\rEVN|A45|20210115160010\rPID|1||PAT1^^^ADT1^MR||EVERYMAN^ADAM\rMRG|PAT9^^^ADT1^MR||||5001^^^AccMgr^VN\rPV1|1|O|OPD||||||||||||||||5001^^^AccMgr^VN|||||||||||||||||||||||||20210115160010\rMRG|PAT9^^^ADT1^MR||||5010^^^AccMgr^VN\rPV1|2|O|OPD||||||||||||||||5010^^^AccMgr^VN|||||||||||||||||||||||||20210215160010\r";
    let bundle = map_text(a45).unwrap();
    let encounters = resources(&bundle, "Encounter");
    let numbers: Vec<&str> = encounters
        .iter()
        .map(|e| e["identifier"][0]["value"].as_str().unwrap())
        .collect();
    assert_eq!(numbers, ["5001", "5010"]);
    let patient = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Patient")
        .unwrap()["fullUrl"]
        .clone();
    for encounter in encounters {
        assert_eq!(encounter["subject"]["reference"], patient);
    }
}

/// The OBX of an ADT (vital signs) are Observations of the patient at the
/// visit, without the laboratory category; an A08 repeating the A01's OBX
/// writes the same Observation.
#[test]
fn adt_obx_are_observations_of_the_visit() {
    let a01 = "MSH|^~\\&|GAM|CHU-X|DPI|CHU-X|20240306111154+0100||ADT^A01^ADT_A01|A1|P|2.5\rEVN|A01|20240306111154\rPID|1||000003^^^CHU-X^PI||DOE^JANE||19800101|F\rPV1|1|I|||||||||||||||||V42^^^CHU-X^VN|||||||||||||||||||||||||20240306110000\rOBX|1|NM|8867-4^Heart rate^LN||72.0|/min^^UCUM|60-100|N|||F\rNTE|1||At rest\rOBX|2|NM|29463-7^Body weight^LN||68.50|kg^^UCUM||||F\r";
    let (bundle, text) = map_with(a01, &SiteSettings::default()).unwrap();
    let observations = resources(&bundle, "Observation");
    assert_eq!(observations.len(), 2);
    let encounter = |b: &Value| {
        b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["resource"]["resourceType"] == "Encounter")
            .unwrap()["fullUrl"]
            .clone()
    };
    for observation in &observations {
        assert_eq!(observation["encounter"]["reference"], encounter(&bundle));
        assert!(observation.get("category").is_none());
    }
    assert_eq!(observations[0]["note"][0]["text"], "At rest");
    assert!(text.contains(r#""value":68.50"#), "{text}");
    let a08 = a01.replace("ADT^A01^ADT_A01|A1", "ADT^A08^ADT_A01|A2");
    assert_eq!(
        full_urls(&map_text(&a08).unwrap(), "Observation"),
        full_urls(&bundle, "Observation")
    );
}
