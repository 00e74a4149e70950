//! `Patient/$summary` and `Patient/$everything` over the wire: HL7 v2
//! messages pushed over MLLP become an IPS document Bundle (Composition
//! first, every IPS section with a narrative or an empty reason, every
//! reference resolved inside the Bundle) that the independent R4 validator
//! (`shared/peers/validate_r4.py`) accepts.

use crate::common;
use crate::delivery;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use crate::common::{eventually, http_get_reply, Gateway};
use serde_json::Value;

const INS: &str = "urn:oid:1.2.250.1.213.1.4.10|279035121518989";

/// Every `reference` in `value`.
fn references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            for (key, inner) in object {
                match (key.as_str(), inner) {
                    ("reference", Value::String(r)) => out.push(r.clone()),
                    _ => references(inner, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| references(i, out)),
        _ => {}
    }
}

/// Checks that every reference of every entry resolves to another entry's
/// `fullUrl` (relative ones against the entry's own base).
fn assert_references_resolve(bundle: &Value) {
    let full_urls: BTreeSet<String> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["fullUrl"].as_str().unwrap().to_string())
        .collect();
    for entry in bundle["entry"].as_array().unwrap() {
        let full_url = entry["fullUrl"].as_str().unwrap();
        let mut found = Vec::new();
        references(&entry["resource"], &mut found);
        for reference in found {
            if reference.starts_with('#') {
                continue;
            }
            let resolved = if reference.contains(':') {
                reference.clone()
            } else {
                let base = full_url.rsplitn(3, '/').nth(2).expect("a RESTful fullUrl");
                format!("{base}/{reference}")
            };
            assert!(
                full_urls.contains(&resolved),
                "{full_url}: reference {reference} is not in the Bundle"
            );
        }
    }
}

#[test]
fn the_summary_of_a_pushed_patient_is_a_valid_ips_document() {
    let gateway = Gateway::start();
    let acks = delivery::send_mllp(
        gateway.mllp_addr,
        &[
            delivery::mapping_case_input("adt-a01-pam-fr-ins"),
            delivery::ins_lab_result("SUM1", "1.50"),
        ],
    );
    assert_eq!(acks, ["AA", "AA"]);
    let search = "/fhir/Observation?code=2345-7&_include=Observation:patient";
    assert!(eventually(Duration::from_secs(30), || {
        http_get_reply(gateway.http_addr, search).json()["total"] == 1
    }));
    let patient_id = http_get_reply(gateway.http_addr, search).json()["entry"][1]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let reply = http_get_reply(
        gateway.http_addr,
        &format!("/fhir/Patient/{patient_id}/$summary"),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply.body.contains("\"value\":1.50"),
        "the lab value keeps its digits"
    );
    let bundle = reply.json();
    assert_eq!(bundle["type"], "document");
    assert!(bundle["identifier"]["value"].is_string() && bundle["timestamp"].is_string());
    let composition = &bundle["entry"][0]["resource"];
    assert_eq!(composition["resourceType"], "Composition");
    assert_eq!(composition["type"]["coding"][0]["code"], "60591-5");
    let codes: Vec<&str> = composition["section"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["code"]["coding"][0]["code"].as_str().unwrap())
        .collect();
    for required in ["11450-4", "48765-2", "10160-0", "11369-6", "30954-2"] {
        assert!(
            codes.contains(&required),
            "section {required} missing: {codes:?}"
        );
    }
    for section in composition["section"].as_array().unwrap() {
        assert!(section["text"]["div"]
            .as_str()
            .unwrap()
            .starts_with("<div xmlns"));
        let has_entries = section.get("entry").is_some();
        assert_ne!(
            has_entries,
            section.get("emptyReason").is_some(),
            "{section}"
        );
    }
    let results = composition["section"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["code"]["coding"][0]["code"] == "30954-2")
        .unwrap();
    assert!(results["entry"].as_array().is_some_and(|e| !e.is_empty()));
    assert!(results["text"]["div"]
        .as_str()
        .unwrap()
        .contains("1.50 g/L"));
    assert_references_resolve(&bundle);

    // The same document by INS; unknown ids and identifiers are 404s.
    let by_ins = http_get_reply(
        gateway.http_addr,
        &format!(
            "/fhir/Patient/$summary?identifier={}",
            INS.replace('|', "%7C")
        ),
    );
    assert_eq!(by_ins.status, 200, "{}", by_ins.body);
    assert_eq!(
        by_ins.json()["entry"].as_array().map(Vec::len),
        bundle["entry"].as_array().map(Vec::len)
    );
    let unknown = http_get_reply(gateway.http_addr, "/fhir/Patient/nobody/$summary");
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["resourceType"], "OperationOutcome");
    let unknown = http_get_reply(gateway.http_addr, "/fhir/Patient/$summary?identifier=x%7C0");
    assert_eq!(unknown.status, 404);
    assert_eq!(
        http_get_reply(gateway.http_addr, "/fhir/Patient/$summary").status,
        400
    );

    // $everything: the compartment and what it points at.
    let everything = http_get_reply(
        gateway.http_addr,
        &format!("/fhir/Patient/{patient_id}/$everything"),
    )
    .json();
    assert_eq!(everything["type"], "searchset");
    let types: BTreeSet<&str> = everything["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["resourceType"].as_str().unwrap())
        .collect();
    for expected in ["Patient", "Encounter", "Observation", "DiagnosticReport"] {
        assert!(
            types.contains(expected),
            "{expected} missing from {types:?}"
        );
    }
    assert_references_resolve(&everything);

    if let Some((python, script)) = common::r4_validator() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("summary.json");
        std::fs::write(&file, &reply.body).unwrap();
        std::fs::write(dir.path().join("everything.json"), everything.to_string()).unwrap();
        let output = Command::new(python)
            .arg(script)
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn pixm_follows_merges_to_the_surviving_record() {
    let gateway = Gateway::start();
    let acks = delivery::send_mllp(
        gateway.mllp_addr,
        &[delivery::mapping_case_input("adt-a40-merge")],
    );
    assert_eq!(acks, ["AA"]);
    let survivor = "/fhir/Patient?identifier=urn%3Apasserelle%3Aauthority%3ACHU-X%7C000042";
    assert!(eventually(Duration::from_secs(30), || {
        http_get_reply(gateway.http_addr, survivor).json()["total"] == 1
    }));
    let survivor_id = http_get_reply(gateway.http_addr, survivor).json()["entry"][0]["resource"]
        ["id"]
        .as_str()
        .unwrap()
        .to_string();

    // The merged-away local id gives the survivor's INS.
    let pix = |query: &str| {
        http_get_reply(
            gateway.http_addr,
            &format!("/fhir/Patient/$ihe-pix?{query}"),
        )
    };
    let reply = pix("sourceIdentifier=urn%3Apasserelle%3Aauthority%3ACHU-X%7C000099&targetSystem=urn%3Aoid%3A1.2.250.1.213.1.4.8");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let parameters = reply.json();
    assert_eq!(parameters["resourceType"], "Parameters");
    let list = parameters["parameter"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{parameters}");
    assert_eq!(list[0]["name"], "targetIdentifier");
    assert_eq!(list[0]["valueIdentifier"]["value"], "1800175123456");
    assert_eq!(list[1]["name"], "targetId");
    assert!(list[1]["valueReference"]["reference"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/Patient/{survivor_id}")));

    // And the other way: the INS gives the local identifier.
    let reply = pix("sourceIdentifier=urn%3Aoid%3A1.2.250.1.213.1.4.8%7C1800175123456&targetSystem=urn%3Apasserelle%3Aauthority%3ACHU-X");
    assert_eq!(
        reply.json()["parameter"][0]["valueIdentifier"]["value"],
        "000042"
    );

    // IHE PIXm's errors.
    let status = |query: &str| pix(query).status;
    assert_eq!(status("sourceIdentifier=urn%3Anobody%7C1"), 400);
    assert_eq!(
        status("sourceIdentifier=urn%3Apasserelle%3Aauthority%3ACHU-X%7C000042&targetSystem=urn%3Anobody"),
        403
    );
    assert_eq!(
        status("sourceIdentifier=urn%3Apasserelle%3Aauthority%3ACHU-X%7C777"),
        404
    );
    assert_eq!(status("targetSystem=urn%3Anobody"), 400);
    assert_eq!(
        pix("sourceIdentifier=x").json()["resourceType"],
        "OperationOutcome"
    );
}
