//! Replays the fuzz corpus (`mappers/cda/fuzz/corpus/cda_read`) through the
//! fuzz target's checks as a plain test, so every input the fuzzer ever
//! kept is checked on every test run.

use std::path::Path;

#[test]
fn fuzz_corpus_replays_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/cda_read");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        cda::fuzz_read(&bytes);
        count += 1;
    }
    assert!(count >= 8, "fuzz corpus has only {count} inputs");
}
