//! `POST /fhir/$convert-data` against the real binary: Microsoft's
//! `Parameters` contract and raw ER7 bodies, the Bundle passed through byte
//! for byte, and every refusal as an OperationOutcome with the right status.

use crate::common;

use crate::common::{convert_parameters, http_get_reply, http_post, Gateway, Reply};

const PATH: &str = "/fhir/$convert-data";
const ER7: &str = "x-application/hl7-v2+er7";
const FHIR_JSON: &str = "application/fhir+json";
const A01: &str = "MSH|^~\\&|HIS|CHU|PASSERELLE|GW|20261122101500||ADT^A01^ADT_A01|MSG1|P|2.5\rPID|1||42^^^CHU^PI||DUPONT^JEAN\r";
const A01_THROWING: &str = "MSH|^~\\&|HIS|CHU|PASSERELLE|GW|20261122101500||ADT^A01^ADT_A01|MSG2|P|2.5\rPID|1||43^^^CHU^PI||THROW\r";
const UNMAPPED: &str =
    "MSH|^~\\&|HIS|CHU|PASSERELLE|GW|20261122101500||ZZZ^Z99|MSG3|P|2.5\rPID|1\r";

struct Setup {
    gateway: Gateway,
    _scripts: tempfile::TempDir,
}

fn start() -> Setup {
    let scripts = tempfile::tempdir().unwrap();
    std::fs::write(
        scripts.path().join("adt.rhai"),
        common::observation_script("ADT^A01", "12.500"),
    )
    .unwrap();
    let dir = scripts.path().display().to_string();
    let gateway = Gateway::start_with_env(&[("PASSERELLE_MAPPING__SCRIPTS_DIR", &dir)]);
    Setup {
        gateway,
        _scripts: scripts,
    }
}

fn outcome_issue(reply: &Reply) -> serde_json::Value {
    let json = reply.json();
    assert_eq!(json["resourceType"], "OperationOutcome", "{}", reply.body);
    assert_eq!(
        reply.header("content-type"),
        Some("application/fhir+json; charset=utf-8")
    );
    json["issue"][0].clone()
}

#[test]
fn raw_er7_and_parameters_give_the_same_bundle_byte_for_byte() {
    let setup = start();
    let addr = setup.gateway.http_addr;
    let raw = http_post(addr, PATH, ER7, A01.as_bytes());
    assert_eq!(raw.status, 200, "{}", raw.body);
    assert_eq!(
        raw.header("content-type"),
        Some("application/fhir+json; charset=utf-8")
    );
    let bundle = raw.json();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "transaction");
    // The mapper's text as it wrote it: compact, the decimal unchanged.
    assert!(raw.body.contains("\"value\":12.500"), "{}", raw.body);

    let parameters = http_post(addr, PATH, FHIR_JSON, &convert_parameters(A01, "Hl7v2"));
    assert_eq!(parameters.status, 200, "{}", parameters.body);
    assert_eq!(parameters.body, raw.body);

    let plain_json = http_post(
        addr,
        PATH,
        "application/json; charset=utf-8",
        &convert_parameters(A01, "Hl7v2"),
    );
    assert_eq!(plain_json.status, 200, "{}", plain_json.body);

    let metrics = common::metrics_text(addr);
    assert!(
        metrics.contains("passerelle_mappings_total{mapper=\"adt.rhai\",outcome=\"ok\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("passerelle_mapping_scripts_loaded 1"),
        "{metrics}"
    );
}

#[test]
fn mapping_failures_are_422_outcomes() {
    let setup = start();
    let addr = setup.gateway.http_addr;
    assert_eq!(http_post(addr, PATH, ER7, A01.as_bytes()).status, 200);
    let reply = http_post(addr, PATH, ER7, A01_THROWING.as_bytes());
    assert_eq!(reply.status, 422, "{}", reply.body);
    let issue = outcome_issue(&reply);
    assert_eq!(issue["code"], "processing");
    assert_eq!(issue["diagnostics"], "adt.rhai:4: asked to fail");

    let reply = http_post(
        addr,
        PATH,
        FHIR_JSON,
        &convert_parameters(UNMAPPED, "Hl7v2"),
    );
    assert_eq!(reply.status, 422, "{}", reply.body);
    let issue = outcome_issue(&reply);
    assert_eq!(issue["code"], "not-supported");
    assert!(
        issue["diagnostics"].as_str().unwrap().contains("ZZZ^Z99"),
        "{issue}"
    );
    // Neither the message nor the error text reaches the log.
    let logs = setup.gateway.logs();
    assert!(
        !logs.contains("DUPONT") && !logs.contains("asked to fail"),
        "{logs}"
    );
    assert!(logs.contains("MSG2"), "control IDs are logged: {logs}");
}

#[test]
fn bad_requests_are_400_outcomes() {
    let setup = start();
    let addr = setup.gateway.http_addr;

    // An input data type not converted here (FHIR-Converter's Json).
    let reply = http_post(addr, PATH, FHIR_JSON, &convert_parameters("{}", "Json"));
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(outcome_issue(&reply)["code"], "not-supported");
    // A CDA document as Ccda is read: this one has no patient, a 422
    // naming the element.
    let reply = http_post(
        addr,
        PATH,
        FHIR_JSON,
        &convert_parameters("<ClinicalDocument xmlns=\"urn:hl7-org:v3\"/>", "Ccda"),
    );
    assert_eq!(reply.status, 422, "{}", reply.body);

    // Not a Parameters resource, or one without inputData.
    for body in [
        b"{not json".to_vec(),
        br#"{"resourceType":"Patient"}"#.to_vec(),
        br#"{"resourceType":"Parameters","parameter":[{"name":"inputDataType","valueString":"Hl7v2"}]}"#
            .to_vec(),
    ] {
        let reply = http_post(addr, PATH, FHIR_JSON, &body);
        assert_eq!(reply.status, 400, "{}", reply.body);
        assert_eq!(outcome_issue(&reply)["code"], "invalid");
    }

    // Several messages in one input.
    let two = format!("{A01}{A01}");
    let reply = http_post(addr, PATH, ER7, two.as_bytes());
    assert_eq!(reply.status, 400, "{}", reply.body);
    let diagnostics = outcome_issue(&reply)["diagnostics"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(diagnostics.contains("one message"), "{diagnostics}");
    let reply = http_post(addr, PATH, FHIR_JSON, &convert_parameters(&two, "Hl7v2"));
    assert_eq!(reply.status, 400, "{}", reply.body);

    // Unreadable HL7 v2.
    for body in ["PID|1||42\r", "", "MSH|\r"] {
        let reply = http_post(addr, PATH, ER7, body.as_bytes());
        assert_eq!(reply.status, 400, "{body:?}: {}", reply.body);
        let issue = outcome_issue(&reply);
        assert_eq!(issue["code"], "structure");
        assert!(
            issue["diagnostics"]
                .as_str()
                .unwrap()
                .contains("unreadable HL7 v2 message"),
            "{issue}"
        );
    }
}

#[test]
fn other_content_types_get_415_and_other_methods_405() {
    let setup = start();
    let addr = setup.gateway.http_addr;
    for content_type in ["application/pdf", "application/fhir+xml"] {
        let reply = http_post(addr, PATH, content_type, b"x");
        assert_eq!(reply.status, 415, "{content_type}: {}", reply.body);
        assert_eq!(outcome_issue(&reply)["code"], "not-supported");
    }
    let reply = http_get_reply(addr, PATH);
    assert_eq!(reply.status, 405, "{}", reply.body);
    assert_eq!(reply.header("allow"), Some("POST"));
    // Other operations answer as before.
    let reply = http_post(addr, "/fhir/$no-such-operation", FHIR_JSON, b"{}");
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert_eq!(outcome_issue(&reply)["code"], "not-found");
}

#[test]
fn the_capability_statement_lists_the_operation_and_its_definition_resolves() {
    let setup = start();
    let addr = setup.gateway.http_addr;
    let statement = http_get_reply(addr, "/fhir/metadata").json();
    let operations = statement["rest"][0]["operation"].as_array().unwrap();
    let operation = operations
        .iter()
        .find(|o| o["name"] == "convert-data")
        .unwrap_or_else(|| panic!("convert-data not listed: {statement}"));
    let definition = operation["definition"].as_str().unwrap();
    let base = setup.gateway.base_url();
    let path = definition
        .strip_prefix(&base)
        .unwrap_or_else(|| panic!("{definition} is not on this instance"));
    let reply = http_get_reply(addr, path);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let resource = reply.json();
    assert_eq!(resource["resourceType"], "OperationDefinition");
    assert_eq!(resource["url"], definition);
    assert_eq!(resource["code"], "convert-data");
    assert_eq!(resource["system"], true);
}

/// The conformance suite's golden-case runner against a real gateway,
/// with cases served by a script (the suite's own cases are for built-in
/// mappers): member order is free, decimals compare by their text, and a
/// difference is reported by JSON pointer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_golden_case_runner_compares_real_answers() {
    use conformance_tests::cases::mapping::run_cases;

    let setup = start();
    let client = conformance_tests::Client::new(
        setup.gateway.base_url(),
        Some(common::TEST_KEY.to_string()),
    );
    let cases = tempfile::tempdir().unwrap();
    let case = |name: &str, files: &[(&str, &str)]| {
        let dir = cases.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, content) in files {
            std::fs::write(dir.join(file), content).unwrap();
        }
    };
    let expected = |value: &str| {
        format!(
            r#"{{
  "type": "transaction",
  "entry": [{{
    "request": {{ "url": "Observation", "method": "POST" }},
    "resource": {{
      "valueQuantity": {{ "value": {value} }},
      "code": {{ "text": "test" }},
      "status": "final",
      "resourceType": "Observation"
    }},
    "fullUrl": "urn:uuid:0b0d5d3e-8c1f-4d8a-9d6e-2f7d2e1f0a11"
  }}],
  "resourceType": "Bundle"
}}"#
        )
    };
    case(
        "adt-a01-by-script",
        &[("input.hl7", A01), ("expected.json", &expected("12.500"))],
    );
    case(
        "unmapped",
        &[
            ("input.hl7", UNMAPPED),
            (
                "expected-error.json",
                r#"{ "status": 422, "code": "not-supported" }"#,
            ),
        ],
    );
    let result = run_cases(&client, cases.path(), None).await;
    assert!(result.is_ok(), "{result:?}");

    case(
        "adt-a01-wrong-precision",
        &[("input.hl7", A01), ("expected.json", &expected("12.5"))],
    );
    let failure = run_cases(&client, cases.path(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        failure.contains("1 of 3 mapping case(s) failed"),
        "{failure}"
    );
    assert!(
        failure.contains(
            "adt-a01-wrong-precision: 1 difference(s)\n    at /entry/0/resource/valueQuantity/value: expected 12.5, actual 12.500"
        ),
        "{failure}"
    );
}
