//! The architecture as Cargo sees it: `docs/crate-graph.py --check` reads
//! `cargo metadata`, fails when a crate depends on one of its own or a
//! higher layer or when the `hl7v2` crate pulls in fhir-sdk or Rhai, and
//! when the drawing in docs/architecture.md is not the graph.

use std::path::Path;
use std::process::Command;

#[test]
fn crate_graph_is_layered_and_drawn_as_it_is() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new("python3")
        .arg(root.join("docs/crate-graph.py"))
        .arg("--check")
        .env("CARGO", env!("CARGO"))
        .current_dir(&root)
        .output()
        .expect("python3 runs docs/crate-graph.py");
    assert!(
        output.status.success(),
        "docs/crate-graph.py --check failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
}
