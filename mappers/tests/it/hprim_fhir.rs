//! HPRIM → FHIR golden Bundles: the shared corpus's HPRIM samples (read in
//! place from `../shared/corpus`, never copied) and the hprim crate's
//! synthetic cases (`mappers/hprim/tests/cases`), mapped with a lab-to-LOINC
//! code map, compared with the committed outputs in
//! `mappers/tests/golden/hprim/`. Every Bundle must also pass the checks of
//! the HL7 v2 corpus test (conditional entries, references that resolve, no
//! empty element) and the independent FHIR R4 validator.
//!
//! Regenerate the outputs after a deliberate change with
//! `PASSERELLE_UPDATE_GOLDEN=1 cargo test -p mappers --test it hprim`, then
//! review the diff.

use std::path::{Path, PathBuf};

use mappers::hl7v2_fhir::OruConfig;
use mappers::hprim_fhir::{map_content_type, NET_CONTENT_TYPE, SANTE_CONTENT_TYPE};
use mappers::mapping::{CodeMap, MappingContext, SiteSettings};
use serde_json::Value;

use crate::corpus_fhir::{check_bundle, validate_with_peer};
use crate::shared::{corpus, walk};

const CODE_MAP: &str = "\
# HPRIM local code,LOINC,display
GLY,2345-7,Glucose [Mass/volume] in Serum or Plasma
HB,718-7,Hemoglobin [Mass/volume] in Blood
K,2823-3,Potassium [Moles/volume] in Serum or Plasma
NA,2951-2,Sodium [Moles/volume] in Serum or Plasma
CREA,2160-0,Creatinine [Mass/volume] in Serum or Plasma
AU,3084-1,Urate [Mass/volume] in Serum or Plasma
";

fn golden_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/hprim"))
}

fn cases_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/hprim/tests/cases"))
}

/// The HPRIM files to map: (golden name, path, content type).
fn inputs() -> Vec<(String, PathBuf, &'static str)> {
    let mut out = Vec::new();
    let mut cases = Vec::new();
    walk(&cases_dir(), &mut cases);
    for path in cases {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let content_type = if name.starts_with("sante") {
            SANTE_CONTENT_TYPE
        } else {
            NET_CONTENT_TYPE
        };
        out.push((format!("case-{name}"), path, content_type));
    }
    if let Some(corpus) = corpus() {
        let sante = corpus.join(
            "hprim/instamedsolutions-HPRIM/index.php@51fb21c.extracted/ORU_acide_urique_H2.2.hpr",
        );
        out.push((
            "corpus-instamed-ORU_acide_urique_H2.2".to_string(),
            sante,
            SANTE_CONTENT_TYPE,
        ));
        let mut net = Vec::new();
        walk(&corpus.join("hprim/yokoinc-hprimtool"), &mut net);
        for path in net {
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            out.push((format!("corpus-yokoinc-{name}"), path, NET_CONTENT_TYPE));
        }
    }
    out
}

/// The golden text of one file's mapping: its Bundles as a pretty JSON
/// array, or the error's message.
fn mapped(path: &Path, content_type: &str) -> (String, Vec<String>) {
    let bytes = std::fs::read(path).unwrap();
    let mut site = SiteSettings::default();
    site.code_maps.insert(
        "lab-loinc".to_string(),
        CodeMap::from_csv("http://loinc.org", CODE_MAP).unwrap(),
    );
    let config = OruConfig {
        code_map: Some("lab-loinc".to_string()),
        ..OruConfig::default()
    };
    let context = MappingContext {
        site: &site,
        now: "2026-11-23T10:00:00Z",
    };
    match map_content_type(content_type, &bytes, &config, &context) {
        Ok(bundles) => {
            let texts: Vec<String> = bundles.into_iter().map(|b| b.bundle).collect();
            let array = format!("[{}]", texts.join(","));
            (exact_json::pretty_json(&array), texts)
        }
        Err(error) => (format!("error: {error}\n"), Vec::new()),
    }
}

#[test]
fn hprim_goldens_match_and_validate() {
    let update = std::env::var_os("PASSERELLE_UPDATE_GOLDEN").is_some();
    let out = tempfile::tempdir().unwrap();
    let mut mismatches = Vec::new();
    let mut count = 0;
    for (name, path, content_type) in inputs() {
        let (text, bundles) = mapped(&path, content_type);
        for (index, bundle) in bundles.iter().enumerate() {
            let value: Value = serde_json::from_str(bundle).unwrap();
            check_bundle(&format!("{name}#{index}"), &value);
            mappers::fhir::check_resource_json(bundle)
                .unwrap_or_else(|e| panic!("{name}#{index}: {e}"));
            count += 1;
            std::fs::write(out.path().join(format!("{name}-{index}.json")), bundle).unwrap();
        }
        let golden = golden_dir().join(format!("{name}.json"));
        if update {
            std::fs::create_dir_all(golden_dir()).unwrap();
            std::fs::write(&golden, &text).unwrap();
            continue;
        }
        match std::fs::read_to_string(&golden) {
            Ok(expected) if expected == text => {}
            Ok(_) => mismatches.push(format!("{name}: differs from {}", golden.display())),
            Err(_) => mismatches.push(format!("{name}: no golden at {}", golden.display())),
        }
    }
    assert!(
        mismatches.is_empty(),
        "{}\n(regenerate with PASSERELLE_UPDATE_GOLDEN=1 and review the diff)",
        mismatches.join("\n")
    );
    assert!(count >= 10, "only {count} Bundles");
    validate_with_peer(out.path());
}
