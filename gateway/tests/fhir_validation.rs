//! What the FHIR API returns (the CapabilityStatement and the error
//! OperationOutcomes) is valid FHIR R4 according to an independent
//! validator (`shared/peers/validate_r4.py`, fhir.resources 6.4.0, installed
//! by `.ci/peers.sh`). Without the validator the test says so and passes,
//! unless PASSERELLE_REQUIRE_PEERS is set (CI sets it).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const VALIDATOR_PYTHON: &str = "/tmp/peers/venv-r4/bin/python";

fn validator() -> Option<(PathBuf, PathBuf)> {
    let script = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/peers/validate_r4.py"
    ));
    let python = PathBuf::from(VALIDATOR_PYTHON);
    if script.is_file() && python.is_file() {
        return Some((python, script));
    }
    assert!(
        std::env::var_os("PASSERELLE_REQUIRE_PEERS").is_none(),
        "the R4 validator is required here: run .ci/peers.sh"
    );
    println!("skipped: R4 validator not installed (run .ci/peers.sh)");
    None
}

fn body(response: &str) -> &str {
    response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or("")
}

#[test]
fn capability_statement_and_outcomes_are_valid_r4() {
    let Some((python, script)) = validator() else {
        return;
    };
    let gateway = common::Gateway::start();
    let dir = tempfile::tempdir().unwrap();
    let requests: &[(&str, &str)] = &[
        ("capability", "GET /fhir/metadata HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        ("not-found", "GET /fhir/NoSuchType HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        ("not-allowed", "DELETE /fhir/metadata HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        ("not-acceptable", "GET /fhir/metadata HTTP/1.1\r\nHost: x\r\nAccept: application/fhir+xml\r\nConnection: close\r\n\r\n"),
        ("unsupported-media", "POST /hl7v2 HTTP/1.1\r\nHost: x\r\nContent-Type: application/pdf\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"),
        ("too-large", "POST /hl7v2 HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\nConnection: close\r\n\r\n"),
    ];
    for (name, raw) in requests {
        let response = common::http_request(gateway.http_addr, raw.as_bytes()).unwrap();
        let json: serde_json::Value = serde_json::from_str(body(&response))
            .unwrap_or_else(|e| panic!("{name}: {e}: {response}"));
        std::fs::write(dir.path().join(format!("{name}.json")), json.to_string()).unwrap();
    }
    let output = Command::new(&python)
        .arg(&script)
        .arg(dir.path())
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "validator found errors:\n{report}");
    assert!(count_files(dir.path()) == requests.len());
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}
