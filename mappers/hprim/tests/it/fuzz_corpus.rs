//! Replays the fuzz corpora (`mappers/hprim/fuzz/corpus/<target>`) through
//! the fuzz targets' checks as a plain test, so every input the fuzzer ever
//! kept is checked on every test run.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        check(&bytes);
        count += 1;
    }
    count
}

#[test]
fn sante_fuzz_corpus_replays_cleanly() {
    let count = replay("hprim_sante", hprim::fuzz_sante);
    assert!(count >= 5, "fuzz corpus has only {count} inputs");
}

#[test]
fn net_fuzz_corpus_replays_cleanly() {
    let count = replay("hprim_net", hprim::fuzz_net);
    assert!(count >= 5, "fuzz corpus has only {count} inputs");
}

#[test]
fn every_case_goes_through_both_targets() {
    // Each parser must also survive the other format.
    for path in crate::shared::files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases")) {
        let bytes = std::fs::read(&path).unwrap();
        hprim::fuzz_sante(&bytes);
        hprim::fuzz_net(&bytes);
    }
}
