//! `docs/routing.md` as a test: its example configuration routes one
//! laboratory to two FHIR servers (two independent FHIR server peers), and
//! what the page says happens does: both servers get the result, a stopped
//! server gets it when it is back while the other already has it, and
//! `passerelle messages` shows the journey. Every other TOML block of the
//! page is a valid configuration.

use crate::common;
use crate::delivery;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::delivery::{all_messages, Upstream};

fn page() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/routing.md"))
        .expect("docs/routing.md")
}

fn toml_blocks(text: &str) -> Vec<String> {
    text.split("```toml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .map(str::to_string)
        .collect()
}

fn lab_result(control_id: &str, report: u32) -> String {
    format!(
        "MSH|^~\\&|SIL|LABO-BIO|GW|GW|20261122101500||ORU^R01^ORU_R01|{control_id}|P|2.5\r\
         PID|1||42^^^LABO-BIO^PI||MARTIN^ALICE||19800101|F\r\
         OBR|1|PO{report}|FO{report}|2345-7^Glucose^LN|||20261122100000\r\
         OBX|1|NM|2345-7^Glucose^LN||1.50|g/L|||||F\r"
    )
}

fn deliveries(gateway: &common::Gateway, control_id: &str) -> BTreeMap<String, String> {
    all_messages(gateway)
        .iter()
        .filter(|m| m["control_id"] == control_id)
        .flat_map(|m| m["deliveries"].as_array().cloned().unwrap_or_default())
        .map(|d| {
            (
                d["target"].as_str().unwrap_or_default().to_string(),
                d["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn every_toml_block_of_the_page_is_a_valid_configuration() {
    let env: BTreeMap<String, String> = [("HOSPITAL_TOKEN", "t"), ("PGPASSWORD", "p")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let blocks = toml_blocks(&page());
    assert!(blocks.len() >= 3, "the page has its examples");
    for block in blocks {
        gateway::config::Config::from_toml("docs/routing.md", &block, &env)
            .unwrap_or_else(|e| panic!("{e}\n{block}"));
    }
}

#[test]
fn one_laboratory_routed_to_two_fhir_servers() {
    let Some(hospital) = Upstream::start() else {
        return;
    };
    let Some(mut regional) = Some(Upstream::start().unwrap()) else {
        return;
    };
    let example = toml_blocks(&page()).remove(0);
    assert!(example.contains("127.0.0.1:8091") && example.contains("127.0.0.1:8092"));
    let config = example
        .replace("127.0.0.1:8091", &format!("127.0.0.1:{}", hospital.port))
        .replace("127.0.0.1:8092", &format!("127.0.0.1:{}", regional.port));
    let dir = tempfile::tempdir().unwrap();
    let gateway = delivery::start_gateway(&config, dir.path(), None);

    let ack = common::http_post(
        gateway.http_addr,
        "/hl7v2",
        "x-application/hl7-v2+er7",
        lab_result("LAB0001", 1).as_bytes(),
    );
    assert!(ack.body.contains("MSA|AA|LAB0001"), "{}", ack.body);
    assert!(common::eventually(Duration::from_secs(30), || {
        deliveries(&gateway, "LAB0001")
            .values()
            .all(|s| s == "delivered")
            && deliveries(&gateway, "LAB0001").len() == 2
    }));
    assert_eq!(hospital.settled_count("Observation", 1), 1);
    assert_eq!(regional.settled_count("Observation", 1), 1);

    // Another message type from elsewhere goes to the hospital only.
    let adt = delivery::adt_update("ADT0001", 7, 1);
    let ack = common::http_post(
        gateway.http_addr,
        "/hl7v2",
        "x-application/hl7-v2+er7",
        adt.as_bytes(),
    );
    assert!(ack.body.contains("MSA|AA"), "{}", ack.body);
    assert!(common::eventually(Duration::from_secs(30), || {
        deliveries(&gateway, "ADT0001")
            == BTreeMap::from([("hospital".to_string(), "delivered".to_string())])
    }));

    // One server stopped: the other gets the next result at once, the
    // stopped one when it is back on its port.
    let port = regional.port;
    drop(regional);
    let ack = common::http_post(
        gateway.http_addr,
        "/hl7v2",
        "x-application/hl7-v2+er7",
        lab_result("LAB0002", 2).as_bytes(),
    );
    assert!(ack.body.contains("MSA|AA|LAB0002"), "{}", ack.body);
    assert!(common::eventually(Duration::from_secs(30), || {
        let states = deliveries(&gateway, "LAB0002");
        states.get("hospital").map(String::as_str) == Some("delivered")
            && states.get("regional").map(String::as_str) == Some("pending")
    }));
    assert_eq!(hospital.settled_count("Observation", 2), 2);
    regional = Upstream::start_on(port).unwrap();
    assert!(common::eventually(Duration::from_secs(60), || {
        deliveries(&gateway, "LAB0002")
            .get("regional")
            .map(String::as_str)
            == Some("delivered")
    }));
    // The restarted server is empty (it keeps nothing on disk): it holds
    // what was delivered since.
    assert_eq!(regional.settled_count("Observation", 1), 1);

    // `passerelle messages` shows the same.
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_passerelle"))
            .arg("messages")
            .args(args)
            .args(["--url", &gateway.base_url()])
            // The CLI's key: the local admin key of the data directory.
            .env("PASSERELLE_STORAGE__DATA_DIR", gateway.data_dir())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let list = run(&["list"]);
    assert!(
        list.contains("LAB0002") && list.contains("regional=delivered"),
        "{list}"
    );
    let id = all_messages(&gateway)
        .iter()
        .find(|m| m["control_id"] == "LAB0002")
        .and_then(|m| m["id"].as_i64())
        .unwrap();
    let show = run(&["show", &id.to_string()]);
    assert!(show.contains("to regional: retry"), "{show}");
    assert!(show.contains("to regional: delivered status 200"), "{show}");
    let targets = run(&["targets"]);
    assert!(targets.starts_with("TARGET"), "{targets}");
}
