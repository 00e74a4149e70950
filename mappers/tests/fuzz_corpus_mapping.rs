//! Replays the fuzz corpora through the mapping fuzz target's checks as a
//! plain test: the ER7 corpus (HL7 v2 inputs the parser fuzzer kept) and
//! the mapping target's own corpus (`mappers/fuzz/corpus/hl7v2_to_fhir`).

#[test]
fn mapping_fuzz_corpus_replays_cleanly() {
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus"));
    let mut count = 0;
    for target in ["er7_parse", "hl7v2_to_fhir"] {
        let Ok(entries) = std::fs::read_dir(root.join(target)) else {
            continue;
        };
        for entry in entries {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            mappers::hl7v2_fhir::fuzz_map(&bytes);
            count += 1;
        }
    }
    assert!(count >= 10, "fuzz corpora have only {count} inputs");
}
