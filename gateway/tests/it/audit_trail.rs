//! The audit trail beyond the HTTP API: HL7 v2 messages over MLLP and
//! HTTP (accepted and refused), QBP queries, deliveries to a FHIR target
//! and to the repository, and the command line's actions (`messages
//! replay`, `clients add` and `revoke`, `backup`, `restore`). Each yields
//! exactly one AuditEvent, none holds a name or an identifier value, and
//! `passerelle audit verify` still finds the chain intact. (That a
//! message's record commits with its journal row is shown at the storage
//! level: `passerelle_storage::journal`'s
//! `messages_and_their_records_commit_together`.)

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::common::{eventually, free_port, http_get_reply, http_post, Gateway};
use crate::delivery::{self, start_gateway, Fault, FaultProxy};

/// Every record of the store in `data_dir`, in chain order (read beside a
/// running gateway, as `passerelle audit verify` does).
fn trail(data_dir: &Path) -> Vec<Value> {
    let store = passerelle_storage::sqlite::SqliteStore::open(data_dir).unwrap();
    passerelle_storage::audit::records_after(&store, 0, 100_000)
        .unwrap()
        .into_iter()
        .map(|(_, event)| serde_json::from_str(&event).unwrap())
        .collect()
}

fn subtype(event: &Value) -> &str {
    event["subtype"][0]["code"].as_str().unwrap_or("")
}

/// The `valueString` of detail `kind` of the first entity that has one.
fn detail<'a>(event: &'a Value, kind: &str) -> Option<&'a str> {
    event["entity"]
        .as_array()?
        .iter()
        .flat_map(|e| e["detail"].as_array().into_iter().flatten())
        .find(|d| d["type"] == kind)
        .and_then(|d| d["valueString"].as_str())
}

fn with_subtype<'a>(trail: &'a [Value], code: &str) -> Vec<&'a Value> {
    trail.iter().filter(|e| subtype(e) == code).collect()
}

/// The records of HL7 v2 messages taken in (DICOM Import), not those of
/// HTTP requests to `/hl7v2`.
fn messages(trail: &[Value]) -> Vec<&Value> {
    with_subtype(trail, "hl7v2-message")
        .into_iter()
        .filter(|e| e["type"]["code"] == "110107")
        .collect()
}

fn patients_of(event: &Value) -> Vec<String> {
    event["entity"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["what"]["reference"].as_str())
        .map(str::to_string)
        .collect()
}

/// Runs the `passerelle` binary on `gateway`'s store and HTTP address.
fn passerelle(data_dir: &Path, http: Option<std::net::SocketAddr>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_passerelle"));
    command
        .args(args)
        .env_remove("PASSERELLE_CONFIG")
        .env_remove("PASSERELLE_API_KEY")
        .env("PASSERELLE_STORAGE__DATA_DIR", data_dir);
    if let Some(http) = http {
        command.env("PASSERELLE_HTTP__LISTEN", http.to_string());
    }
    command.output().unwrap()
}

fn verified(data_dir: &Path) {
    let verified = passerelle(data_dir, None, &["audit", "verify"]);
    assert!(verified.status.success(), "{verified:?}");
    assert!(
        String::from_utf8_lossy(&verified.stdout).starts_with("audit trail intact: "),
        "{verified:?}"
    );
}

/// What none of the records may hold: the patient's names, INS and birth
/// date (the messages' and the query's).
fn assert_no_patient_data(trail: &[Value]) {
    let text = serde_json::to_string(trail).unwrap().to_ascii_lowercase();
    for secret in ["pat-trois", "dominique", "279035121518989", "19790328"] {
        assert!(!text.contains(secret), "`{secret}` in the trail: {text}");
    }
}

fn config(proxy_port: u16) -> String {
    format!(
        r#"
[delivery]
poll_interval_ms = 100
lease_secs = 10

[targets.hospital]
kind = "fhir"
url = "http://127.0.0.1:{proxy_port}/fhir"
# A test server on this host, in clear.
allow_insecure = true
timeout_secs = 2
backoff_initial_ms = 50
backoff_max_ms = 200
circuit_failures = 100

[targets.archive]
kind = "local"

[[routes]]
name = "lab"
message_types = ["ORU^R01"]
targets = ["hospital", "archive"]
"#
    )
}

/// One message over MLLP gets one record (sender, address, MSH-9,
/// MSH-10, AA), a refused one a record with outcome 4, a QBP query one
/// naming the patients of its answer, each delivery attempt (a 503, then
/// a 200, and the repository's) one, and `passerelle messages replay` one
/// (the admin API's); the chain verifies after all of them.
#[test]
fn mllp_messages_queries_deliveries_and_replays_are_audited() {
    let proxy = FaultProxy::start(free_port(), Fault::Status(503));
    let dir = tempfile::tempdir().unwrap();
    let gateway = start_gateway(&config(proxy.port), dir.path(), None);
    let data = gateway.data_dir().to_path_buf();

    let acks = delivery::send_mllp(
        gateway.mllp_addr,
        &[delivery::ins_lab_result("AUDIT-1", "1.50")],
    );
    assert_eq!(acks, ["AA"]);
    // The message's record, from the commit that stored it.
    let received = messages(&trail(&data))
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(received.len(), 1, "{received:?}");
    let message = &received[0];
    assert_eq!(message["type"]["code"], "110107");
    assert_eq!(message["action"], "C");
    assert_eq!(message["outcome"], "0");
    assert_eq!(message["agent"][0]["who"]["display"], "local-admin");
    assert_eq!(message["agent"][0]["network"]["address"], "127.0.0.1");
    assert_eq!(detail(message, "MSH-9"), Some("ORU^R01"));
    assert_eq!(detail(message, "MSH-10"), Some("AUDIT-1"));
    assert_eq!(detail(message, "MSH-3"), Some("SIL"));
    assert_eq!(detail(message, "transport"), Some("mllp"));
    assert_eq!(detail(message, "acknowledgement"), Some("AA"));

    // The hospital answers 503 a while (retries), then takes it.
    assert!(eventually(Duration::from_secs(30), || {
        with_subtype(&trail(&data), "delivery")
            .iter()
            .any(|e| detail(e, "target") == Some("hospital") && e["outcome"] == "4")
    }));
    proxy.set(Fault::Status(200));
    delivery::wait_all_delivered(&gateway, 1, Duration::from_secs(30));
    let search = "/fhir/Patient?identifier=urn%3Aoid%3A1.2.250.1.213.1.4.10%7C279035121518989";
    let found = http_get_reply(gateway.http_addr, search).json();
    let patient = format!(
        "Patient/{}",
        found["entry"][0]["resource"]["id"].as_str().unwrap()
    );
    let journal_id = delivery::all_messages(&gateway)[0]["id"].as_i64().unwrap();

    let trail_now = trail(&data);
    let deliveries = with_subtype(&trail_now, "delivery");
    let to = |target: &str| -> Vec<&Value> {
        deliveries
            .iter()
            .copied()
            .filter(|e| detail(e, "target") == Some(target))
            .collect()
    };
    // One record per attempt: every one but the last a retry.
    let hospital = to("hospital");
    let attempts = proxy.requests() as usize;
    assert_eq!(hospital.len(), attempts, "{hospital:?}");
    assert!(hospital[..attempts - 1]
        .iter()
        .all(|e| e["outcome"] == "4" && detail(e, "HTTP status") == Some("503")));
    let last = hospital[attempts - 1];
    assert_eq!(last["outcome"], "0");
    assert_eq!(last["type"]["code"], "110106");
    assert_eq!(last["action"], "R");
    assert_eq!(last["agent"][1]["who"]["display"], "hospital");
    assert_eq!(detail(last, "MSH-10"), Some("AUDIT-1"));
    assert_eq!(
        detail(last, "journal id"),
        Some(journal_id.to_string().as_str())
    );
    // The repository's copy names the Patient it was stored under.
    let archive = to("archive");
    assert_eq!(archive.len(), 1, "{archive:?}");
    assert_eq!(archive[0]["outcome"], "0");
    assert_eq!(patients_of(archive[0]), [patient.as_str()]);

    // A refused message: a hex escape of a control character (AR).
    let acks = delivery::send_mllp(
        gateway.mllp_addr,
        &[
            "MSH|^~\\&|SIL|LABO|GW|GW|20261122101500||ORU^R01^ORU_R01|AUDIT-BAD|P|2.5\r\
           PID|1||X\\X00\\Y\r"
                .to_string(),
        ],
    );
    assert_eq!(acks, ["AR"]);
    let trail_now = trail(&data);
    let refused: Vec<&Value> = messages(&trail_now)
        .into_iter()
        .filter(|e| detail(e, "MSH-10") == Some("AUDIT-BAD"))
        .collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["outcome"], "4");
    assert!(refused[0]["outcomeDesc"]
        .as_str()
        .unwrap()
        .starts_with("refused (AR)"));

    // A PDQ query: its record names the patient of its answer.
    let answer = crate::application_acks::exchange(
        gateway.mllp_addr,
        "MSH|^~\\&|HIS|HOSP|PASSERELLE|GW|20261124090000||QBP^Q22^QBP_Q21|AUDIT-Q|P|2.5\r\
         QPD|IHE PDQ Query|TAG1|@PID.5.1.1^pat-trois~@PID.7^19790328\rRCP|I|10^RD\r",
    );
    assert!(answer.contains("\rPID|1|"), "{answer}");
    let trail_now = trail(&data);
    let queries = with_subtype(&trail_now, "ITI-21");
    assert_eq!(queries.len(), 1);
    let query = queries[0];
    assert_eq!(query["type"]["code"], "110112");
    assert_eq!(query["outcome"], "0");
    assert_eq!(patients_of(query), [patient.as_str()]);
    assert_eq!(detail(query, "query"), Some("@PID.5.1.1=***&@PID.7=***"));
    // No query is journaled, nor recorded as a message.
    assert_eq!(messages(&trail_now).len(), 2);

    // `passerelle messages replay`: one record, by the admin API.
    let replayed = passerelle(
        &data,
        Some(gateway.http_addr),
        &["messages", "replay", &journal_id.to_string()],
    );
    assert!(replayed.status.success(), "{replayed:?}");
    let replay_path = format!("POST /admin/messages/{journal_id}/replay");
    let trail_now = trail(&data);
    let replays: Vec<&Value> = trail_now
        .iter()
        .filter(|e| e["entity"][0]["description"] == replay_path.as_str())
        .collect();
    assert_eq!(replays.len(), 1, "{replays:?}");
    assert_eq!(replays[0]["agent"][0]["who"]["display"], "local-admin");
    assert_eq!(replays[0]["outcome"], "0");
    // Delivered again: one more record per target.
    assert!(eventually(Duration::from_secs(30), || {
        let deliveries = with_subtype(&trail(&data), "delivery")
            .into_iter()
            .filter(|e| e["outcome"] == "0")
            .count();
        deliveries == 4
    }));

    // The patient's trail, through the API.
    let theirs = http_get_reply(
        gateway.http_addr,
        &format!("/fhir/AuditEvent?patient={patient}"),
    )
    .json();
    let codes: Vec<&str> = theirs["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| subtype(&e["resource"]))
        .collect();
    assert!(
        codes.contains(&"ITI-21") && codes.contains(&"delivery"),
        "{codes:?}"
    );

    assert_no_patient_data(&trail(&data));
    verified(&data);
}

/// `POST /hl7v2`: one record per message of the body (from the intake,
/// with its transport), none of the request itself; a request refused
/// before the intake (415) is recorded by the HTTP layer.
#[test]
fn http_hl7v2_messages_are_recorded_once_each() {
    let gateway = Gateway::start();
    let data = gateway.data_dir().to_path_buf();
    let body = format!(
        "{}{}",
        delivery::ins_lab_result("HTTP-1", "1.50"),
        delivery::ins_lab_result("HTTP-2", "2.25")
    );
    let reply = http_post(
        gateway.http_addr,
        "/hl7v2",
        "x-application/hl7-v2+er7",
        body.as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body.matches("MSA|AA").count(), 2, "{}", reply.body);
    let refused = http_post(gateway.http_addr, "/hl7v2", "application/json", b"{}");
    assert_eq!(refused.status, 415);

    let trail = trail(&data);
    let messages = messages(&trail);
    assert_eq!(messages.len(), 2, "{messages:?}");
    for (event, control_id) in messages.iter().zip(["HTTP-1", "HTTP-2"]) {
        assert_eq!(detail(event, "MSH-10"), Some(control_id));
        assert_eq!(detail(event, "transport"), Some("http"));
        assert_eq!(event["agent"][0]["who"]["display"], "local-admin");
        assert_eq!(event["agent"][0]["network"]["address"], "127.0.0.1");
    }
    let requests: Vec<&Value> = trail
        .iter()
        .filter(|e| e["entity"][0]["description"] == "POST /hl7v2")
        .collect();
    assert_eq!(requests.len(), 1, "only the refused request: {requests:?}");
    assert_eq!(requests[0]["outcome"], "4");
    assert_eq!(requests[0]["outcomeDesc"], "HTTP 415");
    assert_no_patient_data(&trail);
    verified(&data);
}

/// `clients add` and `revoke` (and a refused `revoke`), `backup` and
/// `restore` are recorded, each once, as the command line's.
#[test]
fn cli_actions_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ok = |output: Output| {
        assert!(output.status.success(), "{output:?}");
    };
    ok(passerelle(
        &data,
        None,
        &[
            "clients",
            "add",
            "labo",
            "--scope",
            "system/Patient.rs",
            "--network",
            "nord",
        ],
    ));
    ok(passerelle(&data, None, &["clients", "revoke", "labo"]));
    let again = passerelle(&data, None, &["clients", "revoke", "labo"]);
    assert!(!again.status.success());
    let copy = dir.path().join("copy.db");
    ok(passerelle(
        &data,
        None,
        &["backup", "--to", copy.to_str().unwrap()],
    ));
    let restored = dir.path().join("restored");
    ok(passerelle(
        &data,
        None,
        &[
            "restore",
            "--from",
            copy.to_str().unwrap(),
            "--data-dir",
            restored.to_str().unwrap(),
        ],
    ));

    let trail = trail(&data);
    let cli = |code: &str| -> Vec<&Value> {
        with_subtype(&trail, code)
            .into_iter()
            .filter(|e| e["agent"][0]["who"]["display"] == "local-admin CLI")
            .collect()
    };
    let added = cli("client-add");
    assert_eq!(added.len(), 1);
    assert_eq!(added[0]["type"]["code"], "110113");
    assert_eq!(added[0]["action"], "C");
    assert_eq!(added[0]["entity"][0]["what"]["identifier"]["value"], "labo");
    assert_eq!(detail(added[0], "scopes"), Some("system/Patient.rs"));
    let revoked = cli("client-revoke");
    assert_eq!(revoked.len(), 2, "{revoked:?}");
    assert_eq!(revoked[0]["outcome"], "0");
    assert_eq!(revoked[1]["outcome"], "4");
    let backups = cli("backup");
    assert_eq!(backups.len(), 1);
    assert_eq!(backups[0]["type"]["code"], "110106");
    assert_eq!(detail(backups[0], "to"), copy.to_str());
    assert!(!serde_json::to_string(&trail).unwrap().contains("psl_"));
    verified(&data);

    // The copy holds the backup's own record; the restored store goes on
    // from it with the restoration's.
    let restored_trail = self::trail(&restored);
    let last = restored_trail.last().unwrap();
    assert_eq!(subtype(last), "restore");
    assert_eq!(last["type"]["code"], "110107");
    assert_eq!(detail(last, "from"), copy.to_str());
    assert_eq!(
        restored_trail
            .iter()
            .filter(|e| subtype(e) == "backup")
            .count(),
        1
    );
    verified(&restored);
}
