//! Proxy mode over the wire: with `[fhir] upstream` naming a FHIR target
//! (the independent FHIR server peer, `fhir_upstream.js`), reads and
//! searches on Passerelle's `/fhir` are answered by that server, with links
//! rewritten to Passerelle's base, and its refusals and its silence become
//! OperationOutcomes naming it.

use crate::common;
use crate::delivery;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::http_get_reply;
use crate::delivery::Upstream;

fn config(port: u16) -> String {
    format!(
        "[targets.hospital]\nkind = \"fhir\"\nurl = \"http://127.0.0.1:{port}/fhir\"\nallow_insecure = true\ntimeout_secs = 2\n\n\
         [[routes]]\nname = \"all\"\ntargets = [\"hospital\"]\n\n\
         [fhir]\nupstream = \"hospital\"\n"
    )
}

#[test]
fn reads_and_searches_are_answered_by_the_upstream() {
    let Some(upstream) = Upstream::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let gateway = delivery::start_gateway(&config(upstream.port), dir.path(), None);
    let acks = delivery::send_mllp(
        gateway.mllp_addr,
        &[delivery::ins_lab_result("PROXY1", "1.50")],
    );
    assert_eq!(acks, ["AA"]);
    assert_eq!(upstream.settled_count("Patient", 1), 1);

    let search = "/fhir/Patient?identifier=urn%3Aoid%3A1.2.250.1.213.1.4.10%7C279035121518989";
    let reply = http_get_reply(gateway.http_addr, search);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let bundle = reply.json();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(
        bundle["entry"].as_array().map(Vec::len),
        Some(1),
        "{bundle}"
    );
    let upstream_base = format!("127.0.0.1:{}/fhir", upstream.port);
    assert!(
        !reply.body.contains(&upstream_base),
        "an upstream link was left: {}",
        reply.body
    );
    let id = bundle["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let read = http_get_reply(gateway.http_addr, &format!("/fhir/Patient/{id}"));
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["id"], id.as_str());
    // Not in Passerelle's own repository: the answer came from upstream.
    assert_eq!(
        delivery::all_messages(&gateway)[0]["deliveries"][0]["target"],
        "hospital"
    );

    // The upstream's refusal: its status, and an outcome naming it first.
    let missing = http_get_reply(gateway.http_addr, "/fhir/Patient/no-such-id");
    assert_eq!(missing.status, 404, "{}", missing.body);
    let outcome = missing.json();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("'hospital' answered 404"),
        "{outcome}"
    );

    // The upstream gone: 502, naming it.
    drop(upstream);
    std::thread::sleep(Duration::from_millis(200));
    let gone = http_get_reply(gateway.http_addr, search);
    assert_eq!(gone.status, 502, "{}", gone.body);
    assert!(
        gone.body.contains("'hospital' did not answer"),
        "{}",
        gone.body
    );
    // Writes are not proxied.
    let put = common::http_post(
        gateway.http_addr,
        "/fhir/Patient",
        "application/fhir+json",
        b"{}",
    );
    assert_eq!(put.status, 405);
}

#[test]
fn the_upstream_must_be_a_fhir_target() {
    let env = BTreeMap::new();
    let error = gateway::config::Config::from_toml(
        "passerelle.toml",
        "[fhir]\nupstream = \"nowhere\"\n",
        &env,
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("fhir.upstream") && error.contains("nowhere"),
        "{error}"
    );
}

#[test]
fn the_proxy_configuration_of_the_docs_is_valid() {
    let page = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/fhir-api.md"),
    )
    .unwrap();
    let env: BTreeMap<String, String> = [("HOSPITAL_TOKEN".to_string(), "t".to_string())].into();
    let blocks: Vec<&str> = page
        .split("```toml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .collect();
    assert!(!blocks.is_empty());
    for block in blocks {
        let config = gateway::config::Config::from_toml("docs/fhir-api.md", block, &env)
            .unwrap_or_else(|e| panic!("{e}\n{block}"));
        assert_eq!(config.fhir.upstream.as_deref(), Some("hospital"));
    }
}
