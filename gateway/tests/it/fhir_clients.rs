//! Real FHIR clients, written by others, run a whole session against the
//! gateway: fhirpy and fhirclient (Python) and fhir-kit-client
//! (JavaScript), installed by `.ci/peers.sh`. Their scripts are in
//! `gateway/tests/clients/`; every answer they keep is checked by the
//! independent R4 validator.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{self, Gateway};

/// `path` when it is there; otherwise `None` (skipped), unless CI requires
/// the peers.
fn peer(path: &str, what: &str) -> Option<PathBuf> {
    let path = PathBuf::from(path);
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("PASSERELLE_REQUIRE_PEERS").is_none(),
        "{what} is required here: run .ci/peers.sh"
    );
    println!("skipped: {what} not installed (run .ci/peers.sh)");
    None
}

fn script(name: &str) -> String {
    format!("{}/tests/clients/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs `command` and fails the test with its output unless it succeeds.
fn succeeds(command: &mut Command, what: &str) {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{what}:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The R4 validator on every answer the clients kept (at least `at_least`).
fn kept_answers_are_valid_r4(dir: &Path, at_least: usize) {
    let kept = std::fs::read_dir(dir).unwrap().count();
    assert!(kept >= at_least, "only {kept} answers kept");
    if let Some((python, validator)) = common::r4_validator() {
        succeeds(
            Command::new(python).arg(validator).arg(dir),
            "the R4 validator",
        );
    }
}

#[test]
fn python_clients_run_a_whole_session() {
    let Some(python) = peer(
        "/tmp/peers/venv-clients/bin/python",
        "fhirpy and fhirclient",
    ) else {
        return;
    };
    let gateway = Gateway::start();
    let out = tempfile::tempdir().unwrap();
    succeeds(
        Command::new(python)
            .arg(script("python_clients.py"))
            .arg(format!("{}/fhir", gateway.base_url()))
            .arg(common::TEST_KEY)
            .arg(out.path()),
        "the Python clients",
    );
    kept_answers_are_valid_r4(out.path(), 7);
}

#[test]
fn javascript_client_runs_a_whole_session() {
    let Some(modules) = peer(
        "/tmp/peers/node/node_modules/fhir-kit-client",
        "fhir-kit-client",
    ) else {
        return;
    };
    let gateway = Gateway::start();
    let out = tempfile::tempdir().unwrap();
    succeeds(
        Command::new("node")
            .env("FHIR_KIT_CLIENT", modules.join("dist/index.js"))
            .arg(script("javascript_client.mjs"))
            .arg(format!("{}/fhir", gateway.base_url()))
            .arg(common::TEST_KEY)
            .arg(out.path()),
        "the JavaScript client",
    );
    kept_answers_are_valid_r4(out.path(), 5);
}
