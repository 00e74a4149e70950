//! Where the shared public corpus is (`../shared/corpus`, read in place,
//! never copied), and what a test does when it is absent: it says it is
//! skipped, or fails when PASSERELLE_REQUIRE_PEERS is set (CI sets it), so
//! that a missing corpus cannot pass for a checked one.

use std::path::{Path, PathBuf};

/// `../shared/corpus`, or `None` when it is absent (see the module doc).
pub fn corpus() -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus"));
    if dir.is_dir() {
        return Some(dir);
    }
    missing("../shared/corpus", &dir);
    None
}

/// Skips a test whose shared data (`what`, expected at `path`) is absent,
/// saying so; panics instead when PASSERELLE_REQUIRE_PEERS is set.
pub fn missing(what: &str, path: &Path) {
    assert!(
        std::env::var_os("PASSERELLE_REQUIRE_PEERS").is_none(),
        "{what} is required (PASSERELLE_REQUIRE_PEERS is set): {} is missing",
        path.display()
    );
    println!("skipped: {what} not found");
}

/// Every file below `dir`, depth first, in name order (so that reports and
/// failures come in the same order on every machine).
pub fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}
