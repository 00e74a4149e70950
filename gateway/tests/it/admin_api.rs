//! The admin API and what it is for: a mapping failure is recorded with its
//! reason and replayed after the mapper is fixed; a refusal from the
//! target becomes a dead letter keeping the target's OperationOutcome and
//! goes out again when retried; finished history is purged; bad requests
//! get OperationOutcomes. The target is the FHIR server peer behind the
//! fault proxy.

use crate::common;

use std::time::Duration;

use crate::common::{http_get_reply, http_post};
use crate::delivery::{all_messages, config, oru, start_gateway, Fault, FaultProxy, Upstream};

fn state_of(gateway: &common::Gateway, control_id: &str) -> (String, Vec<String>) {
    let messages = all_messages(gateway);
    let message = messages
        .iter()
        .find(|m| m["control_id"] == control_id)
        .unwrap_or_else(|| panic!("{control_id} not listed"));
    (
        message["state"].as_str().unwrap().to_string(),
        message["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["state"].as_str().unwrap().to_string())
            .collect(),
    )
}

/// `passerelle messages ARGS` against `gateway`; its standard output.
fn messages_cli(gateway: &common::Gateway, args: &[&str]) -> Vec<u8> {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_passerelle"))
        .arg("messages")
        .args(["--url", &gateway.base_url()])
        .args(args)
        .env("PASSERELLE_API_KEY", common::TEST_KEY)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    output.stdout
}

fn id_of(gateway: &common::Gateway, control_id: &str) -> i64 {
    all_messages(gateway)
        .iter()
        .find(|m| m["control_id"] == control_id)
        .and_then(|m| m["id"].as_i64())
        .unwrap()
}

#[test]
fn failures_and_dead_letters_are_visible_and_replayable() {
    let Some(upstream) = Upstream::start() else {
        return;
    };
    let proxy = FaultProxy::start(upstream.port, Fault::Status(422));
    let dir = tempfile::tempdir().unwrap();
    let scripts = dir.path().join("scripts");
    std::fs::create_dir(&scripts).unwrap();
    std::fs::write(
        scripts.join("oru.rhai"),
        common::observation_script("ORU^R01", "1.50"),
    )
    .unwrap();
    let settings = format!(
        "[mapping]\nscripts_dir = \"{}\"\nscripts_poll_interval_ms = 100\n{}",
        scripts.display(),
        config(proxy.port, "")
    );
    let gateway = start_gateway(&settings, dir.path(), None);
    let addr = gateway.http_addr;
    // Every target is listed, before anything is queued for it.
    let targets = common::http_get_reply(addr, "/admin/targets").json();
    let listed: Vec<&str> = targets["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["target"].as_str())
        .collect();
    assert!(listed.contains(&"hospital"), "{targets}");
    assert_eq!(targets["targets"][0]["pending"], 0, "{targets}");
    let post = |message: String| {
        let ack = http_post(
            addr,
            "/hl7v2",
            "x-application/hl7-v2+er7",
            message.as_bytes(),
        );
        assert!(ack.body.contains("MSA|AA"), "{}", ack.body);
    };

    // The script throws on this one: the message is acknowledged (it is
    // safe in the journal) and its mapping failure is recorded.
    post(oru("FAIL1", 1, 1).replace("TEST^PATIENT1", "THROW^PATIENT1"));
    // The target refuses this one for its content: a dead letter.
    post(oru("DEAD1", 2, 2));
    assert!(common::eventually(Duration::from_secs(30), || {
        state_of(&gateway, "FAIL1").0 == "failed" && state_of(&gateway, "DEAD1").1 == ["dead"]
    }));
    let failed = http_get_reply(addr, "/admin/messages?state=failed").json();
    assert_eq!(failed["messages"].as_array().unwrap().len(), 1, "{failed}");
    let journey = http_get_reply(
        addr,
        &format!("/admin/messages/{}", id_of(&gateway, "FAIL1")),
    )
    .json();
    let reason = journey["mapping_error"].as_str().unwrap();
    assert!(
        reason.contains("asked to fail") && reason.contains("route `lab`"),
        "{reason}"
    );
    let journey = http_get_reply(
        addr,
        &format!("/admin/messages/{}", id_of(&gateway, "DEAD1")),
    )
    .json();
    let attempt = &journey["attempts"][0];
    assert_eq!(attempt["status"], 422, "{journey}");
    assert_eq!(attempt["result"], "dead");
    assert!(attempt["detail"]
        .as_str()
        .unwrap()
        .contains("OperationOutcome"));
    assert_eq!(
        journey["attempts"].as_array().unwrap().len(),
        1,
        "a 422 is not retried"
    );
    let metrics = common::metrics_text(addr);
    assert!(
        metrics.contains("passerelle_dead_letters_total{target=\"hospital\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("passerelle_messages_routed_total{outcome=\"failed\"} 1"),
        "{metrics}"
    );

    // Fix the mapper and the target, then replay and retry.
    std::fs::write(
        scripts.join("oru.rhai"),
        common::observation_script("ORU^R01", "1.50").replace("\"THROW\"", "\"NEVER\""),
    )
    .unwrap();
    proxy.set(Fault::None);
    let retried = http_post(
        addr,
        "/admin/dead-letters/retry?target=hospital",
        "application/json",
        b"",
    )
    .json();
    assert_eq!(retried["retried"], 1);
    assert!(common::eventually(Duration::from_secs(30), || {
        // The script reload is polled: replay until the new version maps it.
        if state_of(&gateway, "FAIL1").0 == "failed" {
            let replayed = http_post(
                addr,
                "/admin/messages/replay?state=failed",
                "application/json",
                b"",
            )
            .json();
            assert!(replayed["replayed"].as_u64().is_some(), "{replayed}");
        }
        state_of(&gateway, "FAIL1") == ("routed".to_string(), vec!["delivered".to_string()])
            && state_of(&gateway, "DEAD1").1 == ["delivered"]
    }));
    assert_eq!(upstream.settled_count("Observation", 2), 2);

    // A single replay delivers again (the script's Bundle is a plain POST,
    // so the target gets a second Observation: replays re-send).
    let replayed = http_post(
        addr,
        &format!("/admin/messages/{}/replay", id_of(&gateway, "DEAD1")),
        "application/json",
        b"",
    )
    .json();
    assert_eq!(replayed["replayed"], 1);
    assert!(common::eventually(Duration::from_secs(30), || upstream
        .count("Observation")
        == 3));

    // Errors are OperationOutcomes.
    let bad = http_get_reply(addr, "/admin/messages?state=lost");
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["resourceType"], "OperationOutcome");
    assert_eq!(http_get_reply(addr, "/admin/nothing").status, 404);
    assert_eq!(http_get_reply(addr, "/admin/messages/999999").status, 404);
    assert_eq!(
        http_post(addr, "/admin/messages", "application/json", b"").status,
        405
    );
    assert_eq!(
        http_post(addr, "/admin/purge", "application/json", b"").status,
        400
    );
    assert_eq!(
        http_post(addr, "/admin/messages/replay", "application/json", b"").status,
        400
    );

    // Purge: everything here is over, so everything goes.
    assert!(common::eventually(Duration::from_secs(30), || {
        state_of(&gateway, "DEAD1").1 == ["delivered"]
    }));
    let purged = http_post(
        addr,
        "/admin/purge?before=2100-01-01",
        "application/json",
        b"",
    )
    .json();
    assert_eq!(purged["purged"], 2, "{purged}");
    assert!(all_messages(&gateway).is_empty());
}

#[test]
fn the_retention_policy_purges_finished_history() {
    let dir = tempfile::tempdir().unwrap();
    // Zero days, checked every second: whatever is delivered goes.
    let settings = "[retention]\njournal_payloads_days = 0\ncheck_interval_secs = 1\n";
    let gateway = start_gateway(settings, dir.path(), None);
    let ack = http_post(
        gateway.http_addr,
        "/hl7v2",
        "x-application/hl7-v2+er7",
        oru("KEEP1", 1, 1).as_bytes(),
    );
    assert!(ack.body.contains("MSA|AA"), "{}", ack.body);
    // Delivered to the local target, then purged by the policy.
    assert!(common::eventually(Duration::from_secs(30), || {
        gateway
            .logs()
            .contains("retention: data older than its retention period deleted")
    }));
    assert!(all_messages(&gateway).is_empty());
}

/// Lists say when more messages match, and page with `before`, in the API
/// and in `passerelle messages list`; the CLI's answers are sentences.
#[test]
fn message_lists_say_when_more_match_and_page() {
    let gateway = common::Gateway::start();
    let messages: Vec<String> = (0..3)
        .map(|n| crate::delivery::adt_update(&format!("PAGE{n}"), n + 1, 1))
        .collect();
    let acks = crate::delivery::send_mllp(gateway.mllp_addr, &messages);
    assert_eq!(acks, ["AA", "AA", "AA"]);
    let first = http_get_reply(gateway.http_addr, "/admin/messages?limit=2").json();
    assert_eq!(first["messages"].as_array().unwrap().len(), 2);
    assert_eq!(first["more"], true, "{first}");
    let last = first["messages"][1]["id"].as_i64().unwrap();
    let rest = http_get_reply(
        gateway.http_addr,
        &format!("/admin/messages?limit=2&before={last}"),
    )
    .json();
    assert_eq!(rest["messages"].as_array().unwrap().len(), 1);
    assert_eq!(rest["more"], false, "{rest}");

    let cli = |args: &[&str]| String::from_utf8(messages_cli(&gateway, args)).unwrap();
    let listed = cli(&["list", "--limit", "2"]);
    assert!(
        listed.contains(&format!("add --before {last} for the next page")),
        "{listed}"
    );
    let listed = cli(&["list", "--limit", "2", "--before", &last.to_string()]);
    assert!(
        listed.contains("PAGE0") && !listed.contains("more messages"),
        "{listed}"
    );
    let replayed = cli(&["replay", &last.to_string()]);
    assert_eq!(
        replayed,
        "1 message(s) replayed: mapped and delivered again\n"
    );
}

/// `messages show` (and the API under it) shows the message as received,
/// decoded in its charset, and the Bundle mapped for each delivery with
/// its numbers' digits; `--raw` gives back the very bytes.
#[test]
fn a_message_shows_its_raw_text_and_its_bundles() {
    let gateway = common::Gateway::start();
    let message: Vec<u8> = [
        &b"MSH|^~\\&|LAB|SITE|GW|GW|20261122101500||ORU^R01^ORU_R01|SHOW1|P|2.5|||||FRA|8859/1\r"[..],
        b"PID|1||P7^^^SITE^PI||DUPR\xc9^ANNE||19800101|F\r",
        b"OBR|1|PO7|FO7|2345-7^Glucose^LN|||20261122100000\r",
        b"OBX|1|NM|2345-7^Glucose^LN||1.50|g/L|||||F\r",
    ]
    .concat();
    let ack = http_post(
        gateway.http_addr,
        "/hl7v2",
        "x-application/hl7-v2+er7; charset=ISO-8859-1",
        &message,
    );
    assert!(ack.body.contains("MSA|AA"), "{}", ack.body);
    let id = id_of(&gateway, "SHOW1");
    assert!(common::eventually(Duration::from_secs(30), || {
        state_of(&gateway, "SHOW1").1 == ["delivered"]
    }));

    let shown = http_get_reply(gateway.http_addr, &format!("/admin/messages/{id}"));
    assert_eq!(shown.status, 200, "{}", shown.body);
    let journey = shown.json();
    assert_eq!(journey["charset"], "8859/1");
    assert!(
        journey["raw"]
            .as_str()
            .unwrap()
            .contains("PID|1||P7^^^SITE^PI||DUPRÉ^ANNE"),
        "{journey}"
    );
    assert_eq!(journey["bundles"][0]["target"], "local", "{journey}");
    assert_eq!(journey["bundles"][0]["bundle"]["resourceType"], "Bundle");
    // The stored text is spliced in: 1.50 keeps its zero.
    assert!(shown.body.contains("\"value\":1.50"), "{}", shown.body);
    assert_eq!(
        http_get_reply(gateway.http_addr, "/admin/messages/999999/raw").status,
        404
    );

    let cli = |args: &[&str]| messages_cli(&gateway, args);
    let human = String::from_utf8(cli(&["show", &id.to_string()])).unwrap();
    assert!(
        human.contains("message as received (8859/1")
            && human.contains("  PID|1||P7^^^SITE^PI||DUPRÉ^ANNE||19800101|F\n")
            && human.contains("Bundle of delivery")
            && human.contains("to local (route")
            && human.contains("\"value\": 1.50"),
        "{human}"
    );
    assert_eq!(cli(&["show", &id.to_string(), "--raw"]), message);
}

/// Two records that share an identifier meet in the condition a message's
/// Bundle writes by: the local target refuses the write (412 naming the
/// condition and both records), and the message is failed in mapping (what
/// `replay` maps again once the identifiers are told apart), not left as a
/// dead letter that a retry would repeat.
#[test]
fn an_identity_collision_fails_the_message_and_a_replay_maps_it_again() {
    let gateway = common::Gateway::start();
    let twin = br#"{"resourceType":"Patient","identifier":[{"system":"urn:passerelle:authority:SITE","value":"P77"}]}"#;
    let mut twins = Vec::new();
    for _ in 0..2 {
        let created = http_post(
            gateway.http_addr,
            "/fhir/Patient",
            "application/fhir+json",
            twin,
        );
        assert_eq!(created.status, 201, "{}", created.body);
        twins.push(created.json()["id"].as_str().unwrap().to_string());
    }
    let acks = crate::delivery::send_mllp(
        gateway.mllp_addr,
        &[crate::delivery::adt_update("TWIN1", 77, 1)],
    );
    assert_eq!(acks, ["AA"]);
    assert!(common::eventually(Duration::from_secs(30), || {
        state_of(&gateway, "TWIN1").0 == "failed"
    }));
    let id = id_of(&gateway, "TWIN1");
    let journey = http_get_reply(gateway.http_addr, &format!("/admin/messages/{id}")).json();
    let reason = journey["mapping_error"].as_str().unwrap();
    assert!(
        reason.starts_with("identity collision at target `local`")
            && reason.contains("Patient?identifier=urn:passerelle:authority:SITE|P77")
            && reason.contains(&format!("Patient/{}", twins[0]))
            && reason.contains(&format!("Patient/{}", twins[1])),
        "{reason}"
    );
    // The log says what the admin API says: 412, not a generic 400.
    let logs = gateway.logs();
    let logged = logs
        .lines()
        .find(|line| line.contains("delivery attempt failed"))
        .unwrap_or_default();
    assert!(logged.contains("412"), "{logs}");
    assert_eq!(journey["attempts"][0]["status"], 412, "{journey}");
    // Told apart (one twin removed), the message maps again and goes in.
    let addr = gateway.http_addr;
    let removed = common::Reply::parse(
        &common::http_request(
            addr,
            format!(
                "DELETE /fhir/Patient/{} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
                twins[1]
            )
            .as_bytes(),
        )
        .unwrap(),
    );
    assert_eq!(removed.status, 204, "{}", removed.body);
    let replayed = http_post(
        gateway.http_addr,
        &format!("/admin/messages/{id}/replay"),
        "application/json",
        b"",
    );
    assert_eq!(replayed.status, 200, "{}", replayed.body);
    assert!(common::eventually(Duration::from_secs(30), || {
        state_of(&gateway, "TWIN1") == ("routed".to_string(), vec!["delivered".to_string()])
    }));
}
