//! Unit tests of the HPRIM mappings on small hand-written files; the golden
//! Bundles (mappers/tests/it/hprim_fhir.rs) cover whole files.

use serde_json::Value;

use super::model::{compact_datetime, decimal, quantity_value, well_formed_nir};
use super::write::{interpretation, status};
use super::*;
use crate::mapping::{MappingContext, SiteSettings};

fn context(site: &SiteSettings) -> MappingContext<'_> {
    MappingContext {
        site,
        now: "2026-11-23T10:00:00Z",
    }
}

fn bundles(format: HprimFormat, text: &str) -> Vec<Value> {
    let site = SiteSettings::default();
    let config = OruConfig::default();
    let mapped = map_content_type(
        format.content_type(),
        text.as_bytes(),
        &config,
        &context(&site),
    )
    .unwrap();
    mapped
        .iter()
        .map(|m| {
            crate::fhir::check_resource_json(&m.bundle).unwrap();
            serde_json::from_str(&m.bundle).unwrap()
        })
        .collect()
}

fn resources<'v>(bundle: &'v Value, kind: &str) -> Vec<&'v Value> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == kind)
        .collect()
}

const SANTE: &str = "H|~^\\&|MSG1||LAB01~Labo||ORU|||GW||P|H2.2~C|202601151030\r\
P|1|PAT-A|DOS-A|2750914000000 65|MARTIN~Claire||19800312|F\r\
OBR|1|REQ-A1|SPC-A1|GLY~Glycémie~L|R||202601150800\r\
OBX|1|NM|GLY~Glycémie~L||1.50|g/L|0.70-1.10|HH|||F\r\
OBX|2|NM|K~Potassium~L||1,5||3.5-5.0|LL|||P\r\
C|1|L|Contrôlé|G\r\
OBX|3|NM|CRP~CRP~L||<0,5|mg/L||L|||F\r\
OBX|4|ST|ASP~Aspect~L||Trouble||||||F\r\
P|2|PAT-B\r\
OBR|1|REQ-B1\r\
OBX|1|NM|NA~Sodium~L||140|mmol/L|136-145|N|||F\r\
L|1|N\r";

#[test]
fn decimals_stay_exact_and_commas_become_points() {
    assert_eq!(decimal("1.50").unwrap().text(), "1.50");
    assert_eq!(decimal("1,5").unwrap().text(), "1.5");
    assert_eq!(decimal("0,070").unwrap().text(), "0.070");
    assert!(decimal("1,5.0").is_none());
    assert!(decimal("85*").is_none());
    let (comparator, value) = quantity_value("<0,5").unwrap();
    assert_eq!((comparator, value.text()), (Some("<"), "0.5"));

    let bundle = &bundles(HprimFormat::Sante, SANTE)[0];
    let text = serde_json::to_string(bundle).unwrap();
    let observations = resources(bundle, "Observation");
    assert_eq!(observations.len(), 4);
    // The Bundle text keeps `1.50` as written (serde_json's Value would
    // not tell 1.50 from 1.5, so look at the text).
    let raw = map_sante(
        SANTE.as_bytes(),
        &OruConfig::default(),
        &context(&SiteSettings::default()),
    )
    .unwrap();
    assert!(
        raw[0].bundle.contains(r#""value":1.50"#),
        "{}",
        raw[0].bundle
    );
    assert!(text.contains("1.5"));
    assert_eq!(
        observations[1]["valueQuantity"]["value"].as_f64(),
        Some(1.5)
    );
    assert_eq!(observations[2]["valueQuantity"]["comparator"], "<");
    assert_eq!(observations[3]["valueString"], "Trouble");
}

#[test]
fn flags_become_v3_interpretations() {
    for (flag, code) in [
        ("HH", "HH"),
        ("LL", "LL"),
        ("H", "H"),
        ("L", "L"),
        ("N", "N"),
    ] {
        let value = interpretation(&hprim::AbnormalFlag::parse(flag).unwrap());
        assert_eq!(value["coding"][0]["code"], code);
        assert_eq!(
            value["coding"][0]["system"],
            "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
        );
    }
    let other = interpretation(&hprim::AbnormalFlag::parse("+").unwrap());
    assert_eq!(other["text"], "+");
    let bundle = &bundles(HprimFormat::Sante, SANTE)[0];
    let observations = resources(bundle, "Observation");
    assert_eq!(
        observations[0]["interpretation"][0]["coding"][0]["code"],
        "HH"
    );
    assert_eq!(
        observations[1]["interpretation"][0]["coding"][0]["code"],
        "LL"
    );
    assert_eq!(observations[1]["status"], "preliminary");
    assert_eq!(status(Some("F")), "final");
    assert_eq!(status(None), "final");
    assert_eq!(
        resources(bundle, "DiagnosticReport")[0]["status"],
        "partial"
    );
}

#[test]
fn ranges_units_and_missing_units() {
    let bundle = &bundles(HprimFormat::Sante, SANTE)[0];
    let observations = resources(bundle, "Observation");
    let glucose = observations[0];
    assert_eq!(glucose["valueQuantity"]["unit"], "g/L");
    assert_eq!(
        glucose["valueQuantity"]["system"],
        "http://unitsofmeasure.org"
    );
    assert_eq!(
        glucose["referenceRange"][0]["low"]["value"].as_f64(),
        Some(0.7)
    );
    assert_eq!(glucose["referenceRange"][0]["high"]["unit"], "g/L");
    // No unit: a value without unit, system or code.
    let potassium = observations[1];
    assert!(potassium["valueQuantity"].get("unit").is_none());
    assert!(potassium["valueQuantity"].get("code").is_none());
    assert!(potassium["referenceRange"][0]["low"].get("unit").is_none());
    assert_eq!(potassium["note"][0]["text"], "Contrôlé");
}

#[test]
fn one_bundle_per_patient_with_nir_and_scoped_ids() {
    let all = bundles(HprimFormat::Sante, SANTE);
    assert_eq!(all.len(), 2);
    let patient = resources(&all[0], "Patient")[0];
    let systems: Vec<&str> = patient["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["system"].as_str().unwrap())
        .collect();
    assert_eq!(
        systems,
        [
            "urn:passerelle:authority:GW",
            "urn:passerelle:authority:LAB01",
            "urn:oid:1.2.250.1.213.1.4.8"
        ]
    );
    assert_eq!(patient["birthDate"], "1980-03-12");
    assert_eq!(patient["gender"], "female");
    // The original file, untouched, in every Bundle.
    for bundle in &all {
        let binary = resources(bundle, "Binary")[0];
        assert_eq!(
            binary["data"].as_str().unwrap(),
            write::base64_for_tests(SANTE.as_bytes())
        );
        assert_eq!(binary["contentType"], SANTE_CONTENT_TYPE);
        assert_eq!(resources(bundle, "DocumentReference").len(), 1);
    }
    let second = resources(&all[1], "Patient")[0];
    assert_eq!(second["identifier"].as_array().unwrap().len(), 1);
}

#[test]
fn nir_must_be_well_formed() {
    assert_eq!(
        well_formed_nir("2750914000000 65").as_deref(),
        Some("275091400000065")
    );
    assert_eq!(well_formed_nir("2750914000000 55"), None);
    assert_eq!(well_formed_nir("2750914000000"), None);
    assert_eq!(well_formed_nir("PAT-A"), None);
    // Corsica: 2A counts as 19, 2B as 18.
    let body = 1_800_219_900_000_u64;
    let key = 97 - body % 97;
    assert!(well_formed_nir(&format!("180022A900000{key:02}")).is_some());
}

#[test]
fn dates_get_the_site_offset() {
    let zone = crate::mapping::SiteTimeZone::default();
    assert_eq!(
        compact_datetime("19800312", &zone).as_deref(),
        Some("1980-03-12")
    );
    assert_eq!(
        compact_datetime("202601150800", &zone).as_deref(),
        Some("2026-01-15T08:00:00+01:00")
    );
    assert_eq!(
        compact_datetime("20260715080030", &zone).as_deref(),
        Some("2026-07-15T08:00:30+02:00")
    );
    assert_eq!(compact_datetime("20260230", &zone), None);
}

#[test]
fn soit_measures_become_components() {
    let text = "IDX\nDOE\nJane\n\n\n\n01/02/1970\n\nREF1\n15/01/2026\nLAB  Labo\nDR  Doc\n\
****LAB****\nRES|CREATININE|CREA|N|9,5|mg/L|6,0|11,0|N|F\n  soit 84 µmol/L\n****FIN****\n";
    let bundle = &bundles(HprimFormat::Net, text)[0];
    let observation = resources(bundle, "Observation")[0];
    assert_eq!(observation["valueQuantity"]["unit"], "mg/L");
    let component = &observation["component"][0];
    assert_eq!(component["code"], observation["code"]);
    assert_eq!(component["valueQuantity"]["unit"], "µmol/L");
    assert_eq!(component["valueQuantity"]["code"], "umol/L");
    assert_eq!(component["valueQuantity"]["value"].as_f64(), Some(84.0));
    assert!(resources(bundle, "Specimen").is_empty());
}

#[test]
fn errors_name_the_place_never_the_value() {
    let site = SiteSettings::default();
    let config = OruConfig::default();
    let error = map_sante(b"P|1|SECRET-NAME\r", &config, &context(&site)).unwrap_err();
    assert!(!error.to_string().contains("SECRET"), "{error}");
    let text =
        "H|~^\\&|M||LAB||ORU|||GW||P|H2.2~C|2026\rP|1|X\rOBR|1|R\rOBX|1|NM|||SECRET-VALUE\rL|1\r";
    let error = map_sante(text.as_bytes(), &config, &context(&site)).unwrap_err();
    assert_eq!(error.to_string(), "line 4 OBX-4: the test code is required");
    assert!(matches!(
        map_content_type("text/plain", b"", &config, &context(&site)),
        Err(e) if e.kind == crate::mapping::MappingErrorKind::Unsupported
    ));
    assert_eq!(
        HprimFormat::from_content_type("application/x-hprim-net; charset=windows-1252"),
        Some(HprimFormat::Net)
    );
}
