//! Replays the ER7 fuzz corpus (`mappers/hl7v2/fuzz/corpus/er7_parse`) through
//! the fuzz target's checks as a plain test, so every input the fuzzer ever
//! kept is checked on every test run.

#[test]
fn er7_fuzz_corpus_replays_cleanly() {
    let dir = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fuzz/corpus/er7_parse"
    ));
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        hl7v2::fuzz_check(&bytes);
        count += 1;
    }
    assert!(count >= 10, "fuzz corpus has only {count} inputs");
}
