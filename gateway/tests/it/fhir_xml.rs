//! FHIR XML round trips: every example of `../shared/corpus/fhir-r4-examples`
//! (the FHIR R4 specification's examples) goes JSON → XML → JSON and comes
//! back the same resource, numbers with their written digits.

use std::path::Path;

use gateway::fhir::exact_json;
use gateway::fhir::xml::{from_xml, to_xml};

#[test]
fn every_r4_example_survives_json_to_xml_to_json() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/fhir-r4-examples");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        assert!(
            std::env::var_os("PASSERELLE_REQUIRE_PEERS").is_none(),
            "{} is required here",
            dir.display()
        );
        println!("skipped: {} not found", dir.display());
        return;
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() > 100, "the examples are there");
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let Ok(original) = exact_json::parse(&text) else {
            failures.push(format!("{}: not JSON", file.display()));
            continue;
        };
        let result = to_xml(&original)
            .map_err(|e| format!("to XML: {e}"))
            .and_then(|xml| from_xml(&xml).map_err(|e| format!("from XML: {e}")));
        match result {
            Ok(back) if back == original => {}
            Ok(back) => failures.push(format!(
                "{}: differs\n  {}\n  {}",
                file.display(),
                exact_json::to_string(&original)
                    .chars()
                    .take(300)
                    .collect::<String>(),
                exact_json::to_string(&back)
                    .chars()
                    .take(300)
                    .collect::<String>()
            )),
            Err(error) => failures.push(format!("{}: {error}", file.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} examples do not round trip:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
