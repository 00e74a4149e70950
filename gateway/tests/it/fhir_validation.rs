//! What the FHIR API returns (the CapabilityStatement and the error
//! OperationOutcomes) is valid FHIR R4 according to an independent
//! validator (`shared/peers/validate_r4.py`, fhir.resources 6.4.0, installed
//! by `.ci/peers.sh`). Without the validator the test says so and passes,
//! unless PASSERELLE_REQUIRE_PEERS is set (CI sets it).

use crate::common;

use std::path::Path;
use std::process::Command;

fn body(response: &str) -> &str {
    response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or("")
}

#[test]
fn capability_statement_and_outcomes_are_valid_r4() {
    let Some((python, script)) = common::r4_validator() else {
        return;
    };
    // A script that throws, for the `processing` outcome of $convert-data.
    let scripts = tempfile::tempdir().unwrap();
    std::fs::write(
        scripts.path().join("throws.rhai"),
        common::observation_script("ZPA^Z01", "1"),
    )
    .unwrap();
    let scripts_dir = scripts.path().display().to_string();
    let gateway =
        common::Gateway::start_with_env(&[("PASSERELLE_MAPPING__SCRIPTS_DIR", &scripts_dir)]);
    let dir = tempfile::tempdir().unwrap();
    let convert = |name: &'static str, content_type: &str, body: &[u8]| {
        let mut raw = format!(
            "POST /fhir/$convert-data HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(body);
        (name, String::from_utf8(raw).unwrap())
    };
    let unmapped = "MSH|^~\\&|A|B|C|D|20261122101500||ZZZ^Z99|1|P|2.5\rPID|1\r";
    let throwing = "MSH|^~\\&|A|B|C|D|20261122101500||ZPA^Z01|2|P|2.5\rPID|1||42||THROW\r";
    let convert_requests = [
        convert("convert-unmapped", "x-application/hl7-v2+er7", unmapped.as_bytes()),
        convert("convert-script-throws", "x-application/hl7-v2+er7", throwing.as_bytes()),
        convert(
            "convert-other-data-type",
            "application/fhir+json",
            &common::convert_parameters("<ClinicalDocument/>", "Ccda"),
        ),
        convert("convert-not-parameters", "application/fhir+json", b"{\"resourceType\":\"Patient\"}"),
        convert("convert-unreadable", "x-application/hl7-v2+er7", b"PID|1\r"),
        convert(
            "convert-two-messages",
            "x-application/hl7-v2+er7",
            format!("{unmapped}{unmapped}").as_bytes(),
        ),
        convert("convert-media-type", "application/pdf", b"%PDF"),
        (
            "convert-get",
            "GET /fhir/$convert-data HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string(),
        ),
        (
            "convert-definition",
            "GET /fhir/OperationDefinition/convert-data HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string(),
        ),
    ];
    let mut requests: Vec<(&str, String)> = vec![
        ("capability", "GET /fhir/metadata HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string()),
        ("not-found", "GET /fhir/NoSuchType HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string()),
        ("not-allowed", "DELETE /fhir/metadata HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string()),
        ("not-acceptable", "GET /fhir/metadata HTTP/1.1\r\nHost: x\r\nAccept: text/turtle\r\nConnection: close\r\n\r\n".to_string()),
        ("unsupported-media", "POST /hl7v2 HTTP/1.1\r\nHost: x\r\nContent-Type: application/pdf\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".to_string()),
        ("too-large", "POST /hl7v2 HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\nConnection: close\r\n\r\n".to_string()),
    ];
    requests.extend(convert_requests);
    for (name, raw) in &requests {
        let response = common::http_request(gateway.http_addr, raw.as_bytes()).unwrap();
        let json: serde_json::Value = serde_json::from_str(body(&response))
            .unwrap_or_else(|e| panic!("{name}: {e}: {response}"));
        if name.starts_with("convert-") && *name != "convert-definition" {
            assert_eq!(
                json["resourceType"], "OperationOutcome",
                "{name}: {response}"
            );
        }
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
