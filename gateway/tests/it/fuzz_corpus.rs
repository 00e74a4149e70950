//! Replays the gateway's fuzz corpora (`gateway/fuzz/corpus/<target>`)
//! through each fuzz target's checks as plain tests.

/// Runs every input of `target`'s corpus through `check`; the corpus must
/// hold at least `at_least` inputs.
fn replay(target: &str, at_least: usize, check: fn(&[u8])) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        check(&bytes);
        count += 1;
    }
    assert!(count >= at_least, "{target} corpus has only {count} inputs");
}

#[test]
fn mllp_fuzz_corpus_replays_cleanly() {
    replay("mllp_codec", 8, gateway::mllp::codec::fuzz_check);
}

/// Authorization headers, API keys, JWTs, JWKS documents, scopes, Host and
/// Origin values.
#[test]
fn credentials_fuzz_corpus_replays_cleanly() {
    replay("credentials", 20, gateway::security::fuzzing::fuzz_check);
}
