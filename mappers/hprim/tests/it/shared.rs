//! Where the shared public corpus is (`../shared/corpus`, read in place,
//! never copied), and what a test does when it is absent: it says it is
//! skipped, or fails when PASSERELLE_REQUIRE_PEERS is set (CI sets it), so
//! that a missing corpus cannot pass for a checked one. Also: the synthetic
//! cases under `tests/cases/`.

use std::path::{Path, PathBuf};

/// `../shared/corpus`, or `None` when it is absent (see the module doc).
pub fn corpus() -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/corpus"
    ));
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

/// The bytes of `tests/cases/<name>`.
pub fn case(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/cases")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file under `dir`, recursively, sorted.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}
