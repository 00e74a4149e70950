//! CI-SIS CDA R2 → FHIR: every example of the shared corpus (read in place
//! from `../shared/corpus`, never copied) maps to one transaction Bundle
//! that passes the HL7 v2 corpus test's checks (conditional entries,
//! references that resolve, no empty element) and the independent FHIR R4
//! validator; a missing recordTarget is a mapping error naming it.

use mappers::cda_fhir::{map_cda, OruConfig};
use mappers::mapping::{MappingContext, SiteSettings};
use serde_json::Value;

use crate::corpus_fhir::{check_bundle, validate_with_peer};
use crate::shared::corpus;

fn context_map(
    bytes: &[u8],
) -> Result<Vec<mappers::mapping::MappedBundle>, mappers::mapping::MappingError> {
    let site = SiteSettings::default();
    let context = MappingContext {
        site: &site,
        now: "2026-11-23T10:00:00Z",
    };
    map_cda(bytes, &OruConfig::default(), &context)
}

#[test]
fn every_ci_sis_example_maps_to_valid_r4() {
    let Some(corpus) = corpus() else { return };
    let dir = corpus.join("ansforge-testcontenucda-3-0/ExemplesCDA");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    let out = tempfile::tempdir().unwrap();
    let mut count = 0;
    for path in paths
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
    {
        let bytes = std::fs::read(path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let bundles = context_map(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        for bundle in &bundles {
            let value: Value = serde_json::from_str(&bundle.bundle).unwrap();
            check_bundle(&name, &value);
            count += 1;
            std::fs::write(out.path().join(format!("{count:03}.json")), &bundle.bundle).unwrap();
        }
        if name.starts_with("BIO-CR-BIO") {
            assert!(bundles[0].bundle.contains("\"DiagnosticReport\""), "{name}");
        }
    }
    assert!(count >= 37, "only {count} Bundles");
    validate_with_peer(out.path());
}

#[test]
fn missing_record_target_is_named() {
    let text = r#"<ClinicalDocument xmlns="urn:hl7-org:v3"><id root="1.2.3" extension="X"/></ClinicalDocument>"#;
    let error = context_map(text.as_bytes()).unwrap_err();
    assert!(error.to_string().contains("recordTarget"), "{error}");
}

#[test]
fn pq_decimal_stays_as_written() {
    let text = r#"<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><templateId root="1.2.250.1.213.1.1.1.55"/><id root="1.2.3" extension="X"/><recordTarget><patientRole><id root="1.2.250.1.213.1.4.10" extension="279035121518989"/></patientRole></recordTarget><component><structuredBody><component><section><entry><observation><code code="3016-3" codeSystem="2.16.840.1.113883.6.1"/><value xsi:type="PQ" value="1.50" unit="g/L"/></observation></entry></section></component></structuredBody></component></ClinicalDocument>"#;
    let bundles = context_map(text.as_bytes()).unwrap();
    assert!(
        bundles[0].bundle.contains("\"value\":1.50"),
        "{}",
        bundles[0].bundle
    );
}
