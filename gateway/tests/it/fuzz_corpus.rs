//! Replays the MLLP fuzz corpus (`gateway/fuzz/corpus/mllp_codec`) through
//! the fuzz target's checks as a plain test.

#[test]
fn mllp_fuzz_corpus_replays_cleanly() {
    let dir = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fuzz/corpus/mllp_codec"
    ));
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        gateway::mllp::codec::fuzz_check(&bytes);
        count += 1;
    }
    assert!(count >= 8, "fuzz corpus has only {count} inputs");
}

/// Replays the credentials corpus (`gateway/fuzz/corpus/credentials`):
/// Authorization headers, API keys, JWTs, JWKS documents, scopes, Host and
/// Origin values.
#[test]
fn credentials_fuzz_corpus_replays_cleanly() {
    let dir = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fuzz/corpus/credentials"
    ));
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        gateway::security::fuzzing::fuzz_check(&bytes);
        count += 1;
    }
    assert!(count >= 20, "fuzz corpus has only {count} inputs");
}
