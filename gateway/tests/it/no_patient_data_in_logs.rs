//! Patient data sent to the gateway (names, birth dates, identifiers) must
//! never reach its logs, at any level and in either log format.

use crate::common::{http_request, Gateway, Options};

const NAME: &str = "ZYGMUNTOWICZ";
const GIVEN: &str = "Bérénice";
const BIRTH_DATE: &str = "1975-03-14";
const BIRTH_DATE_V2: &str = "19750314";
const INS_NIR: &str = "275037512345678";

fn send_patient_data(gateway: &Gateway) {
    let addr = gateway.http_addr;
    let patient = format!(
        r#"{{"resourceType":"Patient","name":[{{"family":"{NAME}","given":["{GIVEN}"]}}],"birthDate":"{BIRTH_DATE}","identifier":[{{"system":"urn:oid:1.2.250.1.213.1.4.8","value":"{INS_NIR}"}}]}}"#
    );
    let hl7 = format!(
        "MSH|^~\\&|APP|FAC|GW|GW|20240101120000||ADT^A01^ADT_A01|CTRL-LOG-1|P|2.5\rPID|||{INS_NIR}^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS||{NAME}^{GIVEN}||{BIRTH_DATE_V2}|F\r"
    );
    let query = format!(
        "MSH|^~\\&|HIS|HOSP|GW|GW|20240101120000||QBP^Q22^QBP_Q21|CTRL-LOG-2|P|2.5\rQPD|IHE PDQ Query|T1|@PID.5.1.1^{NAME}~@PID.7^{BIRTH_DATE_V2}\rRCP|I\r"
    );
    let dangling = format!(
        r#"{{"resourceType":"Bundle","type":"transaction","entry":[{{"resource":{{"resourceType":"Observation","status":"final","code":{{"text":"{GIVEN}"}},"subject":{{"reference":"Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|{INS_NIR}"}}}},"request":{{"method":"POST","url":"Observation"}}}}]}}"#
    );
    // Refused for its content: an unknown element and a code outside its
    // value set, both carrying patient data.
    let invalid = format!(
        r#"{{"resourceType":"Bundle","type":"transaction","entry":[{{"resource":{{"resourceType":"Patient","gender":"{NAME}","birthdate":"{BIRTH_DATE}"}},"request":{{"method":"POST","url":"Patient"}}}}]}}"#
    );
    let requests = [
        format!("POST /fhir HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{invalid}", invalid.len()),
        format!("POST /hl7v2 HTTP/1.1\r\nHost: x\r\nContent-Type: x-application/hl7-v2+er7\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{query}", query.len()),
        format!("POST /fhir HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{dangling}", dangling.len()),
        format!("GET /fhir/Patient/$summary?identifier=urn:oid:1.2.250.1.213.1.4.8|{INS_NIR}&_format=xml HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        format!("GET /fhir/Patient/$ihe-pix?sourceIdentifier=urn:oid:1.2.250.1.213.1.4.8|{INS_NIR} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        format!("GET /fhir/Patient?family={NAME}&birthdate={BIRTH_DATE}&identifier=urn:oid:1.2.250.1.213.1.4.8|{INS_NIR} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        format!("GET /fhir/Patient/{NAME}-{INS_NIR} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        format!("GET /{NAME}/{BIRTH_DATE} HTTP/1.1\r\nHost: x\r\nX-Request-ID: {INS_NIR}\r\nConnection: close\r\n\r\n"),
        format!("POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{patient}", patient.len()),
        format!("PUT /fhir/Patient/{INS_NIR} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{patient}", patient.len()),
        format!("POST /hl7v2 HTTP/1.1\r\nHost: x\r\nContent-Type: x-application/hl7-v2+er7\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{hl7}", hl7.len()),
        format!("POST /hl7v2 HTTP/1.1\r\nHost: x\r\nContent-Type: text/{NAME}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{hl7}", hl7.len()),
        format!("GET /fhir/metadata?_format={NAME} HTTP/1.1\r\nHost: x\r\nAccept: application/{NAME}\r\nConnection: close\r\n\r\n"),
    ];
    for request in &requests {
        let response = http_request(addr, request.as_bytes());
        assert!(response.is_some(), "no response to a request");
    }
}

fn assert_clean(gateway: &mut Gateway) {
    gateway.signal("TERM");
    let status = gateway.wait_exit(std::time::Duration::from_secs(30));
    assert!(status.success(), "gateway exit status {status}");
    let logs = gateway.logs();
    assert!(
        logs.contains("request completed"),
        "logging did not run: {logs}"
    );
    for secret in [NAME, GIVEN, BIRTH_DATE, BIRTH_DATE_V2, INS_NIR] {
        assert!(
            !logs.contains(secret),
            "patient data {secret:?} found in the logs:\n{logs}"
        );
    }
}

#[test]
fn no_patient_data_in_human_logs_at_trace_level() {
    let mut gateway = Gateway::start_with(Options {
        env: vec![("PASSERELLE_LOG__LEVEL".into(), "trace".into())],
        ..Options::default()
    });
    send_patient_data(&gateway);
    assert_clean(&mut gateway);
}

#[test]
fn no_patient_data_in_json_logs_at_trace_level() {
    let mut gateway = Gateway::start_with(Options {
        env: vec![("PASSERELLE_LOG__LEVEL".into(), "trace".into())],
        args: vec!["--log-format".into(), "json".into()],
        ..Options::default()
    });
    send_patient_data(&gateway);
    let logs = gateway.logs();
    let first = logs.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    assert!(
        serde_json::from_str::<serde_json::Value>(first).is_ok(),
        "json log line expected, got {first}"
    );
    assert_clean(&mut gateway);
}
