//! Unit tests of the ORU and MDM mappers on small hand-written messages:
//! value types, exact decimals, statuses, documents carried as base64.

use serde_json::Value;

use super::documents::decode_base64;
use super::tests::{map_text, map_with, resources};
use crate::mapping::{CodeMap, MappingErrorKind, SiteSettings};

const PDF_BASE64: &str = "JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PC9UeXBlL0NhdGFsb2c+PgplbmRvYmoKdHJhaWxlcjw8L1Jvb3QgMSAwIFI+Pgo=";
const PDF_BYTES: &[u8] =
    b"%PDF-1.4\n%\xc7\xec\x8f\xa2\n1 0 obj\n<</Type/Catalog>>\nendobj\ntrailer<</Root 1 0 R>>\n";
const CDA_BASE64: &str = "PD94bWwgdmVyc2lvbj0iMS4wIiBlbmNvZGluZz0iVVRGLTgiPz4KPENsaW5pY2FsRG9jdW1lbnQgeG1sbnM9InVybjpobDctb3JnOnYzIj48dGl0bGU+Q29tcHRlIHJlbmR1IMOpPC90aXRsZT48L0NsaW5pY2FsRG9jdW1lbnQ+";
const CDA_TEXT: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ClinicalDocument xmlns=\"urn:hl7-org:v3\"><title>Compte rendu é</title></ClinicalDocument>";

fn oru() -> String {
    [
        "MSH|^~\\&|LAB|LABFAC|EHR|HOSP|20240305120000+0100||ORU^R01^ORU_R01|MSG1|P|2.5.1",
        "PID|1||123^^^HOSP^PI||DOE^JANE||19800101|F",
        "PV1|1|O|CARDIO||||||||||||||||V123^^^HOSP^VN",
        "ORC|RE|PL1^EHR|FI1^LAB",
        "OBR|1|PL1^EHR|FI1^LAB|24331-1^Lipid panel^LN|||20240305083000|||||||||1234^SMITH^JOHN^^^^^^HOSP||||||20240305110000|||F|||||||L07&LABBIO&JULIE",
        "NTE|1||Requested by the cardiology ward",
        "OBX|1|NM|2345-7^Glucose^LN||1.50|mmol/L^^UCUM|3.50-5.00|L|||F|||20240305090000",
        "NTE|1||Fasting sample",
        "OBX|2|SN|1988-5^CRP^LN||<^5|mg/L|||||P",
        "OBX|3|SN|5048-4^ANA titre^LN||^1^-^5|mg/L|||||R",
        "OBX|4|SN|5049-2^Titre^LN||^1^:^40||||||F",
        "OBX|5|ST|8251-1^Comment^LN||A\\F\\B||||||F",
        "OBX|6|CE|5196-1^HBs Ag^LN||260385009^Negative^SCT||||||C",
        "OBX|7|TX|11502-2^Report^LN||Line one~Line two~~Line four||||||F",
        "OBX|8|NM|2160-0^Creatinine^LN||12.30|umol/L|>10|HH|||W",
        "OBX|9|DT|21112-8^Birth date^LN||20240301",
        &format!("OBX|10|ED|11526-1^Pathology report^LN||^AP^PDF^Base64^{PDF_BASE64}||||||F"),
        "SPM|1|SP1&EHR^SP9&LAB||BLD^Blood^HL70487|||||||||||||20240305080000|20240305081500",
    ]
    .join("\r")
}

fn observation<'v>(bundle: &'v Value, code: &str) -> &'v Value {
    resources(bundle, "Observation")
        .into_iter()
        .find(|o| o["code"]["coding"][0]["code"] == code)
        .unwrap_or_else(|| panic!("no Observation {code}"))
}

#[test]
fn oru_values_statuses_and_exact_decimals() {
    let raw = oru();
    let (bundle, text) = map_with(&raw, &SiteSettings::default()).unwrap();
    // Decimals exactly as sent, reference range included.
    assert!(text.contains("\"value\":1.50"), "{text}");
    assert!(
        text.contains("\"low\":{\"value\":3.50,\"unit\":\"mmol/L\",\"system\":\"http://unitsofmeasure.org\",\"code\":\"mmol/L\"}"),
        "{text}"
    );
    assert!(text.contains("\"high\":{\"value\":5.00,"), "{text}");
    assert!(text.contains("\"value\":12.30"), "{text}");

    let glucose = observation(&bundle, "2345-7");
    assert_eq!(glucose["status"], "final");
    assert_eq!(glucose["valueQuantity"]["code"], "mmol/L");
    assert_eq!(
        glucose["valueQuantity"]["system"],
        "http://unitsofmeasure.org"
    );
    assert_eq!(
        glucose["interpretation"][0]["coding"][0]["system"],
        "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
    );
    assert_eq!(glucose["interpretation"][0]["coding"][0]["code"], "L");
    assert_eq!(glucose["note"][0]["text"], "Fasting sample");
    assert_eq!(glucose["category"][0]["coding"][0]["code"], "laboratory");
    assert_eq!(glucose["effectiveDateTime"], "2024-03-05T09:00:00+01:00");

    let crp = observation(&bundle, "1988-5");
    assert_eq!(crp["status"], "preliminary");
    assert_eq!(crp["valueQuantity"]["comparator"], "<");
    assert_eq!(crp["valueQuantity"]["value"], 5);
    assert_eq!(crp["valueQuantity"]["unit"], "mg/L");

    let range = observation(&bundle, "5048-4");
    assert_eq!(range["status"], "preliminary");
    assert_eq!(range["valueRange"]["low"]["value"], 1);
    assert_eq!(range["valueRange"]["high"]["value"], 5);
    // No OBX-14: the OBR-7 time.
    assert_eq!(range["effectiveDateTime"], "2024-03-05T08:30:00+01:00");

    let ratio = observation(&bundle, "5049-2");
    assert_eq!(ratio["valueRatio"]["numerator"]["value"], 1);
    assert_eq!(ratio["valueRatio"]["denominator"]["value"], 40);

    assert_eq!(observation(&bundle, "8251-1")["valueString"], "A|B");
    let coded = observation(&bundle, "5196-1");
    assert_eq!(coded["status"], "corrected");
    assert_eq!(
        coded["valueCodeableConcept"]["coding"][0]["system"],
        "http://snomed.info/sct"
    );
    assert_eq!(
        coded["valueCodeableConcept"]["coding"][0]["code"],
        "260385009"
    );
    assert_eq!(
        observation(&bundle, "11502-2")["valueString"],
        "Line one\nLine two\n\nLine four"
    );
    let creatinine = observation(&bundle, "2160-0");
    assert_eq!(creatinine["status"], "entered-in-error");
    assert_eq!(creatinine["interpretation"][0]["coding"][0]["code"], "HH");
    assert_eq!(creatinine["referenceRange"][0]["low"]["value"], 10);
    // No OBX-6.3, but umol/L reads as UCUM.
    assert_eq!(
        creatinine["valueQuantity"]["system"],
        "http://unitsofmeasure.org"
    );
    let date = observation(&bundle, "21112-8");
    assert_eq!(date["status"], "unknown");
    assert_eq!(date["valueDateTime"], "2024-03-01");

    // The report, its order and its specimen.
    let reports = resources(&bundle, "DiagnosticReport");
    assert_eq!(reports.len(), 1);
    let report = reports[0];
    assert_eq!(report["status"], "final");
    assert_eq!(report["code"]["coding"][0]["code"], "24331-1");
    assert_eq!(report["category"][0]["coding"][0]["code"], "LAB");
    assert_eq!(report["identifier"][0]["value"], "FI1");
    assert_eq!(report["effectiveDateTime"], "2024-03-05T08:30:00+01:00");
    assert_eq!(report["issued"], "2024-03-05T11:00:00+01:00");
    assert_eq!(report["result"].as_array().unwrap().len(), 9);
    assert_eq!(report["resultsInterpreter"].as_array().unwrap().len(), 1);
    let requests = resources(&bundle, "ServiceRequest");
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["status"], "completed");
    assert_eq!(requests[0]["intent"], "order");
    assert_eq!(
        requests[0]["note"][0]["text"],
        "Requested by the cardiology ward"
    );
    assert!(requests[0]["requester"]["reference"].is_string());
    let specimens = resources(&bundle, "Specimen");
    assert_eq!(specimens.len(), 1);
    assert_eq!(specimens[0]["identifier"][0]["value"], "SP9");
    assert_eq!(specimens[0]["type"]["coding"][0]["code"], "BLD");
    assert_eq!(
        specimens[0]["collection"]["collectedDateTime"],
        "2024-03-05T08:00:00+01:00"
    );
    assert_eq!(specimens[0]["receivedTime"], "2024-03-05T08:15:00+01:00");
    assert_eq!(glucose["specimen"], crp["specimen"]);
    let patient = resources(&bundle, "Patient")[0];
    assert!(patient["identifier"].is_array());
    assert!(resources(&bundle, "Encounter").len() == 1);

    // The PDF: a DocumentReference pointing at a Binary with the very bytes.
    let documents = resources(&bundle, "DocumentReference");
    assert_eq!(documents.len(), 1);
    let document = documents[0];
    assert_eq!(document["status"], "current");
    assert_eq!(document["docStatus"], "final");
    assert_eq!(document["type"]["coding"][0]["code"], "11526-1");
    let attachment = &document["content"][0]["attachment"];
    assert_eq!(attachment["contentType"], "application/pdf");
    assert_eq!(attachment["size"], PDF_BYTES.len());
    let entries = bundle["entry"].as_array().unwrap();
    let binary = entries
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Binary")
        .unwrap();
    assert_eq!(attachment["url"], binary["fullUrl"]);
    assert_eq!(binary["resource"]["contentType"], "application/pdf");
    assert_eq!(binary["resource"]["data"], PDF_BASE64);
    let data = binary["resource"]["data"].as_str().unwrap();
    assert_eq!(decode_base64(data).unwrap(), PDF_BYTES);
    let report_url = entries
        .iter()
        .find(|e| e["resource"]["resourceType"] == "DiagnosticReport")
        .unwrap()["fullUrl"]
        .clone();
    assert_eq!(document["context"]["related"][0]["reference"], report_url);
    // A lab does not own demographics: the Patient is created if absent.
    let patient_entry = entries
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Patient")
        .unwrap();
    assert_eq!(patient_entry["request"]["method"], "POST");

    // Same message, same Bundle.
    assert_eq!(map_text(&raw).unwrap(), bundle);
}

#[test]
fn invalid_numbers_name_the_obx() {
    let raw = [
        "MSH|^~\\&|LAB|LABFAC|EHR|HOSP|20240305120000||ORU^R01|MSG2|P|2.5",
        "PID|1||123^^^HOSP^PI||DOE^JANE",
        "OBR|1||FI2^LAB|GLU^Glucose^L",
        "OBX|1|NM|A^A^L||1",
        "OBX|2|NM|B^B^L||2",
        "OBR|2||FI3^LAB|GLU^Glucose^L",
        "OBX|1|NM|C^C^L||3,5",
    ]
    .join("\r");
    let error = map_text(&raw).unwrap_err();
    assert_eq!(error.kind, MappingErrorKind::InvalidValue);
    assert_eq!(error.to_string(), "OBX(3)-5: not a number (NM)");
    // Fixed wording: the value never shows in the error.
    assert!(!error.to_string().contains("3,5"));

    let raw = raw.replace("OBX|1|NM|C^C^L||3,5", "OBX|1|NM|C^C^L||3||||||Q");
    let error = map_text(&raw).unwrap_err();
    assert!(error.to_string().starts_with("OBX(3)-11: "), "{error}");
}

#[test]
fn orders_sharing_a_filler_number_keep_both_reports() {
    let raw = [
        "MSH|^~\\&|LAB|LABFAC|EHR|HOSP|20240305120000||ORU^R01|MSG3|P|2.5",
        "PID|1||123^^^HOSP^PI||DOE^JANE",
        "OBR|1||FI4^LAB|GLU^Glucose^L||||||||||||||||||||F",
        "OBX|1|NM|GLU^Glucose^L||5.5|mmol/L|||||F",
        "OBR|2||FI4^LAB|NA^Sodium^L||||||||||||||||||||F",
        "OBX|1|NM|NA^Sodium^L||140|mmol/L|||||F",
    ]
    .join("\r");
    let bundle = map_text(&raw).unwrap();
    assert_eq!(resources(&bundle, "DiagnosticReport").len(), 2);
    assert_eq!(resources(&bundle, "Observation").len(), 2);
    assert_eq!(resources(&bundle, "ServiceRequest").len(), 2);
}

#[test]
fn code_map_adds_a_coding() {
    let mut site = SiteSettings::default();
    site.code_maps.insert(
        "lab".to_string(),
        CodeMap::from_csv("http://loinc.org", "GLU,2345-7,Glucose").unwrap(),
    );
    let registry = super::builtin_registry(&super::BuiltinConfig {
        oru: super::OruConfig {
            code_map: Some("lab".to_string()),
            ..Default::default()
        },
        ..Default::default()
    });
    let raw = [
        "MSH|^~\\&|LAB|LABFAC|EHR|HOSP|20240305120000||ORU^R01|MSG4|P|2.5",
        "PID|1||123^^^HOSP^PI||DOE^JANE",
        "OBR|1||FI5^LAB|GLU^Glucose^L",
        "OBX|1|NM|GLU^Glucose^L||5.5|mmol/L|||||F",
    ]
    .join("\r");
    let message = crate::hl7v2::Message::parse(raw.as_bytes()).unwrap();
    let context = crate::mapping::MappingContext {
        site: &site,
        now: "2026-11-23T10:00:00Z",
    };
    let mapped = registry
        .map(crate::mapping::SourceMessage::Hl7v2(&message), &context)
        .unwrap();
    crate::fhir::check_resource_json(&mapped.bundle).unwrap();
    let bundle: Value = serde_json::from_str(&mapped.bundle).unwrap();
    let coding = &observation(&bundle, "GLU")["code"]["coding"];
    assert_eq!(coding[1]["system"], "http://loinc.org");
    assert_eq!(coding[1]["code"], "2345-7");
}

fn mdm(event: &str, number: &str, parent: &str, status: &str) -> String {
    [
        format!("MSH|^~\\&|RIS-Y|Organisation-Y|PFI-X|Organisation-X|202106060931||MDM^{event}^MDM_T02|015|P|2.6|||||FRA|UNICODE UTF-8|||2.0^CISIS_CDA_HL7_V2"),
        "EVN||20211005152908".to_string(),
        "PID|||274075176079430^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS||PatA^DOMINIQUE^^^^^L||20050101|M".to_string(),
        "PV1|1|I|UFNEPH||||||||||||||||000897406^^^AUT-AFFECTATION&120456789&M^VN".to_string(),
        format!("TXA|1|18748-4|TEXT|202212160932||||||||{number}|{parent}||||LA|||||801234564895^Eric^Thomas"),
        format!("OBX|1|ED|18748-4^CR d'imagerie médicale^LN||^text^XML^Base64^{CDA_BASE64}||||||{status}|"),
        "OBX|2|CWE|MASQUE_PS^Masqué aux professionnels de Santé^MetaDMPMSS||N^^HL70136||||||F|".to_string(),
        "OBX|3|ED|CORPSMAIL_PS^Corps du mail pour un PS^MetaDMPMSS||^text^^Base64^Q2hlcg==||||||F|".to_string(),
    ]
    .join("\r")
}

/// CI-SIS visibility flags set to `Y` are the DocumentReference's security
/// labels (TRE_A07); `N` and the secret connection give none.
#[test]
fn mdm_visibility_flags_are_security_labels() {
    const A07: &str =
        "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument";
    // The profile's own example sends MASQUE_PS at N.
    let bundle = map_text(&mdm("T02", "1.2.250.1.71.4.2.2.1.81", "", "F")).unwrap();
    let document = resources(&bundle, "DocumentReference")[0];
    assert!(document.get("securityLabel").is_none(), "{document}");

    let message = [
        mdm("T02", "1.2.250.1.71.4.2.2.1.81", "", "F"),
        "OBX|4|CWE|INVISIBLE_PATIENT^Document Non Visible par le patient^MetaDMPMSS||Y^^HL70136||||||F|".to_string(),
        "OBX|5|CWE|INVISIBLE_REP_LEGAUX^Non visible par les représentants Légaux^MetaDMPMSS||Y^^HL70136||||||F|".to_string(),
        "OBX|6|CWE|CONNEXION_SECRETE^Connexion Secrete^MetaDMPMSS||Y^^HL70136||||||F|".to_string(),
    ]
    .join("\r");
    let bundle = map_text(&message).unwrap();
    let document = resources(&bundle, "DocumentReference")[0];
    let labels = document["securityLabel"].as_array().unwrap();
    let codes: Vec<(&str, &str)> = labels
        .iter()
        .map(|label| {
            let coding = &label["coding"][0];
            (
                coding["system"].as_str().unwrap(),
                coding["code"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        codes,
        [
            (A07, "INVISIBLE_PATIENT"),
            (A07, "INVISIBLE_REPRESENTANTS_LEGAUX")
        ]
    );
    // Still routing metadata, not observations.
    assert!(resources(&bundle, "Observation").is_empty());
}

#[test]
fn mdm_cda_bytes_are_untouched() {
    let bundle = map_text(&mdm("T02", "1.2.250.1.71.4.2.2.1.81", "", "F")).unwrap();
    let documents = resources(&bundle, "DocumentReference");
    assert_eq!(documents.len(), 1);
    let document = documents[0];
    assert_eq!(document["masterIdentifier"]["system"], "urn:ietf:rfc:3986");
    assert_eq!(
        document["masterIdentifier"]["value"],
        "urn:oid:1.2.250.1.71.4.2.2.1.81"
    );
    assert_eq!(document["status"], "current");
    assert_eq!(document["docStatus"], "final");
    assert_eq!(document["type"]["coding"][0]["system"], "http://loinc.org");
    assert_eq!(document["type"]["coding"][0]["code"], "18748-4");
    assert_eq!(document["date"], "2022-12-16T09:32:00+01:00");
    assert!(document["authenticator"]["reference"].is_string());
    let content = &document["content"][0];
    assert_eq!(content["attachment"]["contentType"], "text/xml");
    assert_eq!(
        content["format"]["code"],
        "urn:ihe:iti:xds:2017:mimeTypeSufficient"
    );
    // Only the document: the routing metadata (and the e-mail body) is left out.
    let binaries = resources(&bundle, "Binary");
    assert_eq!(binaries.len(), 1);
    assert!(resources(&bundle, "Observation").is_empty());
    assert_eq!(binaries[0]["data"], CDA_BASE64);
    let bytes = decode_base64(binaries[0]["data"].as_str().unwrap()).unwrap();
    assert_eq!(bytes, CDA_TEXT.as_bytes());
    let entries = bundle["entry"].as_array().unwrap();
    let binary_url = entries
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Binary")
        .unwrap()["fullUrl"]
        .clone();
    assert_eq!(content["attachment"]["url"], binary_url);
    assert_eq!(resources(&bundle, "Encounter").len(), 1);
}

#[test]
fn mdm_replacement_names_its_parent_and_deletion_withdraws() {
    let parent = "1.2.250.1.71.4.2.2.1.81";
    let original = map_text(&mdm("T02", parent, "", "F")).unwrap();
    let replacement = map_text(&mdm("T10", "1.2.250.1.71.4.2.2.1.82", parent, "C")).unwrap();
    let new = resources(&replacement, "DocumentReference")[0];
    assert_eq!(new["relatesTo"][0]["code"], "replaces");
    let target = &new["relatesTo"][0]["target"];
    assert_eq!(target["type"], "DocumentReference");
    assert_eq!(
        target["identifier"],
        resources(&original, "DocumentReference")[0]["masterIdentifier"]
    );
    assert_eq!(new["docStatus"], "amended");
    assert_eq!(new["status"], "current");

    let deletion = map_text(&mdm("T04", parent, "", "D")).unwrap();
    let withdrawn = resources(&deletion, "DocumentReference")[0];
    assert_eq!(withdrawn["status"], "entered-in-error");
    assert_eq!(withdrawn["docStatus"], "entered-in-error");
    // The same document: the same entry identity as the original.
    assert_eq!(
        deletion["entry"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["resource"]["resourceType"] == "DocumentReference")
            .unwrap()["request"],
        original["entry"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["resource"]["resourceType"] == "DocumentReference")
            .unwrap()["request"]
    );
}

#[test]
fn mdm_text_report_and_notifications() {
    let raw = [
        "MSH|^~\\&|A|F|B|G|20240101120000||MDM^T02^MDM_T02|1|P|2.5",
        "PID|1||P1^^^F^PI||DOE^JOHN",
        "TXA|1|DS|TX|20240101110000||||||||DOC-7||||||AU",
        "OBX|1|TX|REPORT^Report^L||First line||||||F",
        "OBX|2|TX|REPORT^Report^L||Second \\T\\ last line||||||F",
    ]
    .join("\r");
    let bundle = map_text(&raw).unwrap();
    let binary = resources(&bundle, "Binary")[0];
    assert_eq!(binary["contentType"], "text/plain");
    let bytes = decode_base64(binary["data"].as_str().unwrap()).unwrap();
    assert_eq!(bytes, b"First line\nSecond & last line");
    let document = resources(&bundle, "DocumentReference")[0];
    assert_eq!(document["masterIdentifier"]["value"], "DOC-7");
    assert!(document["content"][0].get("format").is_none());

    let notification = [
        "MSH|^~\\&|A|F|B|G|20240101120000||MDM^T01^MDM_T01|1|P|2.5",
        "PID|1||P1^^^F^PI||DOE^JOHN",
        "TXA|1|DS|TX|20240101110000||||||||DOC-7||||||AU",
    ]
    .join("\r");
    let error = map_text(&notification).unwrap_err();
    assert_eq!(error.kind, MappingErrorKind::Unsupported);
}

#[test]
fn bad_base64_is_an_error_at_the_obx() {
    let raw = mdm("T02", "1.2.3", "", "F").replace(CDA_BASE64, "PD94b$$$");
    let error = map_text(&raw).unwrap_err();
    assert_eq!(error.to_string(), "OBX-5: the document is not valid base64");
}

#[test]
fn narrative_lines_without_identifier_are_the_report_text() {
    let raw = [
        "MSH|^~\\&|A|F|B|G|20200802124455||ORU^R01^ORU_R01|1|T|2.6",
        "PID|1||P1^^^MRN||DOE^JOHN",
        "OBR|1|PON^LAB|FON^LAB|1487^ECHO CARDIOGRAM COMPLETE|||20200802124455|||||||||||||||||CT|F",
        "OBX|1|TX|||Findings:||||||F",
        "OBX|2|TX|||||||||F",
        "OBX|3|TX|||Normal \\T\\ stable||||||F",
    ]
    .join("\r");
    let bundle = map_text(&raw).unwrap();
    assert!(resources(&bundle, "Observation").is_empty());
    let report = resources(&bundle, "DiagnosticReport")[0];
    assert_eq!(report["presentedForm"][0]["contentType"], "text/plain");
    let text = decode_base64(report["presentedForm"][0]["data"].as_str().unwrap()).unwrap();
    assert_eq!(text, b"Findings:\n\nNormal & stable");
    assert_eq!(report["category"][0]["coding"][0]["code"], "CT");
}

#[test]
fn results_stay_with_their_own_patient() {
    let raw = [
        "MSH|^~\\&|LAB|LABFAC|EHR|HOSP|20240305120000||ORU^R01|MSG5|P|2.5",
        "PID|1||111^^^HOSP^PI||ONE^ANN",
        "OBR|1||FA^LAB|GLU^Glucose^L",
        "OBX|1|NM|GLU^Glucose^L||5.5|mmol/L|||||F",
        "PID|2||222^^^HOSP^PI||TWO^BOB",
        "OBR|1||FB^LAB|GLU^Glucose^L",
        "OBX|1|NM|GLU^Glucose^L||6.5|mmol/L|||||F",
    ]
    .join("\r");
    let bundle = map_text(&raw).unwrap();
    let patients: Vec<String> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["resourceType"] == "Patient")
        .map(|e| e["fullUrl"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(patients.len(), 2);
    let observations = resources(&bundle, "Observation");
    assert_eq!(
        observations[0]["subject"]["reference"],
        patients[0].as_str()
    );
    assert_eq!(
        observations[1]["subject"]["reference"],
        patients[1].as_str()
    );
    let reports = resources(&bundle, "DiagnosticReport");
    assert_eq!(reports[1]["subject"]["reference"], patients[1].as_str());
}

/// A sender that fills neither MSH-4 nor any assigning authority: its IDs
/// belong to the sending application (MSH-3); with MSH-3 empty too an ID
/// keeps its value without a system. No identifier ever gets the empty
/// authority `urn:passerelle:authority:`, which would merge every such ID
/// of every sender.
#[test]
fn ids_without_an_authority_never_get_an_empty_system() {
    let with_application = "MSH|^~\\&|LAB||||20240306111154||ORU^R01|M1|P|2.5\rPID|1||123456^^^^MR||DOE^JOHN\rOBR|1|P1|F1|24326-1^Electrolytes^LN|||20240306080000\rOBX|1|NM|2951-2^Sodium^LN||140|mmol/L|||||F|||||801^Reault^Pierre\rSPM|1|SPEC1||BLD\r";
    let bundle = map_text(with_application).unwrap();
    let text = bundle.to_string();
    assert!(!text.contains("urn:passerelle:authority:\""), "{text}");
    let patient = resources(&bundle, "Patient")[0];
    assert_eq!(
        patient["identifier"][0]["system"],
        "urn:passerelle:authority:LAB"
    );
    let specimen = resources(&bundle, "Specimen")[0];
    assert_eq!(specimen["identifier"][0]["value"], "SPEC1");
    assert!(specimen["identifier"][0].get("system").is_none());

    // No sender at all: a patient ID nobody qualifies is refused (matching
    // on it could merge two patients), other IDs keep their bare value.
    let anonymous = with_application.replacen("|LAB|", "||", 1);
    let error = map_text(&anonymous).unwrap_err();
    assert_eq!(
        error.to_string(),
        "PID-3: the patient identifier names no assigning authority (PID-3.4) \
         and the message no sender (MSH-3, MSH-4)"
    );
    let anonymous = anonymous.replace("123456^^^^MR", "123456^^^HOSP^MR");
    let bundle = map_text(&anonymous).unwrap();
    let text = bundle.to_string();
    assert!(!text.contains("urn:passerelle:authority:\""), "{text}");
    for practitioner in resources(&bundle, "Practitioner") {
        let identifiers = practitioner["identifier"].as_array().unwrap();
        assert_eq!(identifiers[0], serde_json::json!({"value": "801"}));
        assert_eq!(identifiers[1]["system"], "urn:ietf:rfc:3986");
    }
}

/// ORC-4, the placer group number, is the ServiceRequest's `requisition`,
/// under the placer's authority (the receiver of the result, MSH-6).
#[test]
fn placer_group_number_is_the_requisition() {
    let with_group = oru().replace("ORC|RE|PL1^EHR|FI1^LAB", "ORC|RE|PL1^EHR|FI1^LAB|G77");
    let bundle = map_text(&with_group).unwrap();
    let request = resources(&bundle, "ServiceRequest")[0];
    assert_eq!(request["requisition"]["value"], "G77");
    assert_eq!(
        request["requisition"]["system"],
        "urn:passerelle:authority:HOSP"
    );
    assert!(request["requisition"].get("type").is_none());
    let bundle = map_text(&oru()).unwrap();
    assert!(resources(&bundle, "ServiceRequest")[0]
        .get("requisition")
        .is_none());
}
