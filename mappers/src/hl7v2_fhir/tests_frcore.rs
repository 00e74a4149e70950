//! FR Core fidelity of the Patient: PID-32 and ZFD as FR Core's identity
//! reliability extension (sub-extension names, value types, code systems),
//! the FR Core extensions ZFD-1 and ZFD-4 map to, and the INS identifier
//! types and uses by OID.

use serde_json::{json, Value};

use super::patient::{classify_pid32, read_pid32, Pid32Code, Pid32Reading};
use super::tests::{map_text, resources};

const RELIABILITY: &str =
    "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability";
const STATUS_SYSTEM: &str = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-identity-status";
const COMMENT_SYSTEM: &str =
    "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-identity-status-comment";

/// An A28 whose PID-32 is `pid32` and whose ZFD (when given) is `zfd`.
fn a28(pid3: &str, pid32: &str, zfd: Option<&str>) -> String {
    // Indexed by PID field number; index 0 is the segment name's place.
    let mut fields = vec![""; 33];
    fields[3] = pid3;
    fields[5] = "DUPONT^JEANNE^^^^^L";
    fields[7] = "19800101";
    fields[8] = "F";
    fields[32] = pid32;
    let mut message = format!(
        "MSH|^~\\&|GAM|CHU-X|DPI|CHU-X|20240306111154||ADT^A28^ADT_A05|1|P|2.5^FRA^2.11\r\
         EVN||20240306111154\rPID|{}\r",
        fields[1..].join("|")
    );
    if let Some(zfd) = zfd {
        message.push_str(zfd);
        message.push('\r');
    }
    message
}

fn patient_of(message: &str) -> Value {
    let bundle = map_text(message).unwrap();
    resources(&bundle, "Patient")[0].clone()
}

/// The Patient's extension with `url`.
fn extension<'p>(patient: &'p Value, url: &str) -> Option<&'p Value> {
    patient["extension"]
        .as_array()?
        .iter()
        .find(|extension| extension["url"] == url)
}

/// The sub-extensions named `name` of `extension`.
fn parts<'e>(extension: &'e Value, name: &str) -> Vec<&'e Value> {
    extension["extension"]
        .as_array()
        .map(|all| all.iter().filter(|part| part["url"] == name).collect())
        .unwrap_or_default()
}

const LOCAL_ID: &str = "000042^^^CHU-X^PI";

#[test]
fn each_pid32_code_goes_to_its_fr_core_sub_extension() {
    for status in ["PROV", "RECUP", "VALI", "QUAL"] {
        assert_eq!(classify_pid32(status), Pid32Code::Status(status));
    }
    // PAM-FR's spellings of the RNIV attributes become FR Core's.
    assert_eq!(classify_pid32("DOUTE"), Pid32Code::Comment("DOUT"));
    assert_eq!(classify_pid32("DOUT"), Pid32Code::Comment("DOUT"));
    assert_eq!(classify_pid32("FICTI"), Pid32Code::Comment("FICT"));
    assert_eq!(classify_pid32("FICT"), Pid32Code::Comment("FICT"));
    for management in [
        "VIDE", "DOUB", "DESA", "DPOT", "DOUA", "COLP", "COLV", "FILI", "CACH", "ANOM", "IDVER",
        "RECD", "IDRA", "USUR", "HOMD", "HOMA", "INVA",
    ] {
        assert_eq!(classify_pid32(management), Pid32Code::Comment(management));
    }
    assert_eq!(classify_pid32("AAA"), Pid32Code::Unknown);
    // Codes are case-sensitive in FR Core's code systems.
    assert_eq!(classify_pid32("vali"), Pid32Code::Unknown);
}

#[test]
fn pid32_readings_follow_the_rniv_rules() {
    assert_eq!(read_pid32(["QUAL"]).status, Some("QUAL"));
    assert_eq!(read_pid32(["VALI", "VALI"]).status, Some("VALI"));
    // Exclusive statuses that disagree claim nothing beyond provisional.
    assert_eq!(read_pid32(["RECUP", "VALI"]).status, Some("PROV"));
    // A doubtful or fictitious identity can only be provisional.
    assert_eq!(
        read_pid32(["VALI", "DOUTE"]),
        Pid32Reading {
            status: Some("PROV"),
            comments: vec!["DOUT"],
            unknown: vec![],
        }
    );
    assert_eq!(read_pid32(["FICTI"]).status, Some("PROV"));
    // Fictitious and doubtful cannot go together: fictitious stays.
    assert_eq!(read_pid32(["DOUTE", "FICTI"]).comments, vec!["FICT"]);
    // An attribute with no status: the status is not invented, except
    // where the RNIV leaves only one possible.
    let homonym = read_pid32(["HOMA", "HOMA"]);
    assert_eq!(homonym.status, None);
    assert_eq!(homonym.comments, vec!["HOMA"]);
    assert_eq!(read_pid32(["XYZ"]).unknown, vec!["XYZ".to_string()]);
}

#[test]
fn a_pid32_status_is_an_identity_status_coding() {
    for status in ["PROV", "RECUP", "VALI", "QUAL"] {
        let patient = patient_of(&a28(LOCAL_ID, status, None));
        let reliability = extension(&patient, RELIABILITY).unwrap();
        assert_eq!(
            reliability["extension"],
            json!([{
                "url": "identityStatus",
                "valueCoding": {"system": STATUS_SYSTEM, "code": status}
            }]),
            "{status}"
        );
    }
}

#[test]
fn pid32_attributes_are_comment_concepts() {
    let patient = patient_of(&a28(LOCAL_ID, "VALI~HOMA~DOUTE~ZZZ", None));
    let reliability = extension(&patient, RELIABILITY).unwrap();
    assert_eq!(
        parts(reliability, "identityStatus")[0]["valueCoding"],
        json!({"system": STATUS_SYSTEM, "code": "PROV"})
    );
    let comments: Vec<&Value> = parts(reliability, "comment")
        .into_iter()
        .map(|part| &part["valueCodeableConcept"])
        .collect();
    assert_eq!(
        comments,
        vec![
            &json!({"coding": [{"system": COMMENT_SYSTEM, "code": "HOMA"}]}),
            &json!({"coding": [{"system": COMMENT_SYSTEM, "code": "DOUT"}]}),
            &json!({"text": "ZZZ"}),
        ]
    );
}

#[test]
fn zfd_fills_fr_core_sub_extensions_and_extensions() {
    let patient = patient_of(&a28(
        LOCAL_ID,
        "QUAL",
        Some("ZFD|15/07/1402|38|Y|Y|INSI|20211201103000|CN|20300101"),
    ));
    let reliability = extension(&patient, RELIABILITY).unwrap();
    assert_eq!(
        reliability["extension"],
        json!([
            {"url": "identityStatus", "valueCoding": {"system": STATUS_SYSTEM, "code": "QUAL"}},
            {"url": "methodCollection", "valueCoding": {
                "system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-method-collection",
                "code": "INSI"
            }},
            // FR Core types it as a date: the day, not the time of day.
            {"url": "dateInterrogationINSi", "valueDate": "2021-12-01"},
            {"url": "validationMode", "valueCoding": {
                "system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-mode-validation-identity",
                "code": "CN"
            }}
        ])
    );
    assert_eq!(
        extension(
            &patient,
            "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-lunar-date"
        )
        .unwrap()["valueString"],
        "15/07/1402"
    );
    assert_eq!(
        extension(
            &patient,
            "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient-birthdate-update-indicator"
        )
        .unwrap()["valueBoolean"],
        true
    );
    let own = extension(
        &patient,
        "https://passerelle.fr/fhir/StructureDefinition/pamfr-demographics",
    )
    .unwrap();
    assert_eq!(
        own["extension"],
        json!([
            {"url": "gestationWeeks", "valueInteger": 38},
            {"url": "smsConsent", "valueBoolean": true},
            {"url": "identityProofExpiry", "valueDateTime": "2030-01-01"}
        ])
    );
    // Nothing under Passerelle's URL for what FR Core defines.
    let text = patient.to_string();
    for gone in [
        "identityObtention",
        "insiQueryDate",
        "proofExpiry\"",
        "ihe-france-zfd",
    ] {
        assert!(!text.contains(gone), "{gone} in {text}");
    }
}

#[test]
fn zfd_without_pid32_still_writes_identity_reliability() {
    let patient = patient_of(&a28(LOCAL_ID, "", Some("ZFD|||||CV|20240101")));
    let reliability = extension(&patient, RELIABILITY).unwrap();
    assert!(parts(reliability, "identityStatus").is_empty());
    assert_eq!(
        parts(reliability, "methodCollection")[0]["valueCoding"]["code"],
        "CV"
    );
    assert_eq!(
        parts(reliability, "dateInterrogationINSi")[0]["valueDate"],
        "2024-01-01"
    );
}

#[test]
fn no_pid32_and_no_zfd_writes_no_identity_reliability() {
    let patient = patient_of(&a28(LOCAL_ID, "", None));
    assert!(extension(&patient, RELIABILITY).is_none());
}

#[test]
fn ins_identifiers_are_typed_by_oid() {
    let cases = [
        ("1.2.250.1.213.1.4.8", "INS-NIR", "official"),
        ("1.2.250.1.213.1.4.9", "INS-NIA", "temp"),
        ("1.2.250.1.213.1.4.10", "INS-NIR", "official"),
        // The demonstration OID is a NIR, not a NIA.
        ("1.2.250.1.213.1.4.11", "INS-NIR", "official"),
    ];
    for (oid, kind, expected_use) in cases {
        let pid3 = format!("{LOCAL_ID}~279035121518989^^^ASIP-SANTE-INS&{oid}&ISO^INS");
        let patient = patient_of(&a28(&pid3, "", None));
        let system = format!("urn:oid:{oid}");
        let ins = patient["identifier"]
            .as_array()
            .unwrap()
            .iter()
            .find(|id| id["system"] == system.as_str())
            .unwrap();
        assert_eq!(
            ins["type"]["coding"][0],
            json!({"system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203", "code": kind}),
            "{oid}"
        );
        assert_eq!(ins["use"], expected_use, "{oid}");
    }
}
