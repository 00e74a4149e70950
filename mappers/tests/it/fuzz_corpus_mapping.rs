//! Replays the fuzz corpora through the mapping fuzz target's checks as a
//! plain test: the ER7 corpus (`mappers/hl7v2/fuzz/corpus/er7_parse`, HL7
//! v2 inputs the parser fuzzer kept) and
//! the mapping target's own corpus (`mappers/fuzz/corpus/hl7v2_to_fhir`);
//! both must be there.

#[test]
fn mapping_fuzz_corpus_replays_cleanly() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut count = 0;
    for dir in ["hl7v2/fuzz/corpus/er7_parse", "fuzz/corpus/hl7v2_to_fhir"] {
        let entries = std::fs::read_dir(root.join(dir))
            .unwrap_or_else(|error| panic!("fuzz corpus {dir}: {error}"));
        for entry in entries {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            mappers::hl7v2_fhir::fuzz_map(&bytes);
            count += 1;
        }
    }
    assert!(count >= 10, "fuzz corpora have only {count} inputs");
}
