//! A patient's rights over their data, end to end on the real binary:
//! `passerelle patients export` writes one FHIR collection Bundle with
//! their resources (every version), their HL7 v2 messages as Binaries and
//! the Bundles mapped from them, and the audit records about them, and
//! nothing of anyone else; `passerelle patients erase` removes them from
//! the repository, the journal and the outbox, leaves neither the SQLite
//! database, nor its WAL, nor a backup taken afterwards holding their
//! name or identifier, keeps the audit trail verifiable with a record of
//! the erasure, and waits for (or, with `--force`, cancels) deliveries to
//! other targets. The same erasure on PostgreSQL.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use base64::Engine;
use serde_json::Value;

use crate::common::{self, http_get_reply, Gateway, Options};
use crate::delivery::{send_mllp, start_gateway, wait_all_delivered};

/// Patient A's family name and ID number (the only places they appear).
const A_FAMILY: &str = "ZORGLUBIANSKA";
const A_ID: &str = "PRA7391046";
const B_FAMILY: &str = "BRAVOVICKOVA";
const B_ID: &str = "PRB2864051";

fn adt(control: &str, id: &str, family: &str, given: &str) -> String {
    format!(
        "MSH|^~\\&|ADMIT|SITE|GW|GW|20261122101500||ADT^A08^ADT_A01|{control}|P|2.5\r\
         EVN|A08|20261122101500\r\
         PID|1||{id}^^^SITE^PI||{family}^{given}||19800101|F\r"
    )
}

fn oru(control: &str, id: &str, family: &str, report: &str, value: &str) -> String {
    format!(
        "MSH|^~\\&|LAB|SITE|GW|GW|20261122101500||ORU^R01^ORU_R01|{control}|P|2.5\r\
         PID|1||{id}^^^SITE^PI||{family}^MARIE||19800101|F\r\
         OBR|1|PO{report}|FO{report}|2345-7^Glucose^LN|||20261122100000\r\
         OBX|1|NM|2345-7^Glucose^LN||{value}|g/L|||||F\r"
    )
}

/// Runs the `passerelle` binary on `gateway`'s store (and, for
/// `messages`, its HTTP address), with `extra` environment.
fn passerelle(gateway: &Gateway, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_passerelle"));
    command
        .args(args)
        .env_remove("PASSERELLE_CONFIG")
        .env("PASSERELLE_STORAGE__DATA_DIR", gateway.data_dir())
        .env("PASSERELLE_HTTP__LISTEN", gateway.http_addr.to_string());
    for (key, value) in extra {
        command.env(key, value);
    }
    command.output().unwrap()
}

fn said(output: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `SYSTEM|VALUE` of the Patient whose ID number is `value`, and its id.
fn patient(gateway: &Gateway, value: &str) -> (String, String) {
    let found = http_get_reply(
        gateway.http_addr,
        &format!("/fhir/Patient?identifier={value}"),
    );
    assert_eq!(found.status, 200, "{}", found.body);
    let bundle = found.json();
    let resource = &bundle["entry"][0]["resource"];
    let identifier = resource["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["value"] == value)
        .unwrap_or_else(|| panic!("no identifier {value}: {bundle}"));
    (
        format!("{}|{value}", identifier["system"].as_str().unwrap()),
        resource["id"].as_str().unwrap().to_string(),
    )
}

fn search_total(gateway: &Gateway, query: &str) -> i64 {
    let found = http_get_reply(gateway.http_addr, &format!("/fhir/{query}&_total=accurate"));
    assert_eq!(found.status, 200, "{}", found.body);
    let bundle = found.json();
    bundle["total"]
        .as_i64()
        .unwrap_or_else(|| bundle["entry"].as_array().map_or(0, |e| e.len() as i64))
}

/// Whether `file` holds `needle`, in any letter case.
fn holds(file: &Path, needle: &str) -> bool {
    let Ok(bytes) = std::fs::read(file) else {
        return false;
    };
    let bytes = bytes.to_ascii_lowercase();
    let needle = needle.to_ascii_lowercase();
    bytes
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// The entries of a Bundle whose resource is of `resource_type`.
fn entries<'a>(bundle: &'a Value, resource_type: &str) -> Vec<&'a Value> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == resource_type)
        .collect()
}

#[test]
fn a_patients_data_is_exported_whole_then_erased_everywhere() {
    let gateway = Gateway::start();
    let codes = send_mllp(
        gateway.mllp_addr,
        &[
            adt("RA1", A_ID, A_FAMILY, "ANNE"),
            adt("RB1", B_ID, B_FAMILY, "BEA"),
            // A second version of A's Patient.
            adt("RA2", A_ID, A_FAMILY, "ANNABELLE"),
            oru("RA3", A_ID, A_FAMILY, "71", "1.50"),
            oru("RB2", B_ID, B_FAMILY, "72", "2.25"),
        ],
    );
    assert_eq!(codes, ["AA"; 5]);
    wait_all_delivered(&gateway, 5, Duration::from_secs(60));
    let (a_identifier, a_id) = patient(&gateway, A_ID);
    let (b_identifier, b_id) = patient(&gateway, B_ID);
    // A read of A's record: an audit record under A.
    assert_eq!(
        http_get_reply(gateway.http_addr, &format!("/fhir/Patient/{a_id}")).status,
        200
    );
    let observations = http_get_reply(
        gateway.http_addr,
        &format!("/fhir/Observation?patient={a_id}"),
    )
    .json();
    let a_observation = observations["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Export, to a file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.json");
    let exported = passerelle(
        &gateway,
        &[
            "patients",
            "export",
            "--identifier",
            &a_identifier,
            "--to",
            file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(exported.status.success(), "{}", said(&exported));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let text = std::fs::read_to_string(&file).unwrap();
    let bundle: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "collection");
    // Every version of A's Patient, and nothing of B.
    let patients = entries(&bundle, "Patient");
    assert!(
        patients.iter().all(|p| p["id"] == a_id.as_str()),
        "{patients:?}"
    );
    let versions: Vec<&str> = patients
        .iter()
        .map(|p| p["meta"]["versionId"].as_str().unwrap())
        .collect();
    assert!(versions.len() >= 2, "every version: {versions:?}");
    assert!(!text.contains(B_FAMILY) && !text.contains(B_ID) && !text.contains(&b_id));
    // The lab result with its number as written.
    assert!(entries(&bundle, "Observation")
        .iter()
        .any(|o| o["id"] == a_observation.as_str()));
    assert!(text.contains("1.50"), "numbers keep their text");
    // The three raw messages, byte for byte.
    let binaries = entries(&bundle, "Binary");
    let raw: Vec<String> = binaries
        .iter()
        .filter(|b| b["contentType"] == "x-application/hl7-v2+er7")
        .map(|b| {
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(b["data"].as_str().unwrap())
                    .unwrap(),
            )
            .unwrap()
        })
        .collect();
    assert_eq!(raw.len(), 3, "{raw:?}");
    assert!(raw.contains(&adt("RA1", A_ID, A_FAMILY, "ANNE")));
    assert!(raw.contains(&oru("RA3", A_ID, A_FAMILY, "71", "1.50")));
    // The Bundles mapped from them, each tagged with its target.
    let mapped = entries(&bundle, "Bundle");
    assert_eq!(mapped.len(), 3);
    assert!(mapped.iter().all(|m| m["type"] == "transaction"
        && m["meta"]["tag"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["system"] == "urn:passerelle:delivery-target" && t["code"] == "local")));
    // The audit records about A.
    let audit = entries(&bundle, "AuditEvent");
    assert!(!audit.is_empty());
    assert!(audit.iter().all(|e| e["entity"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["what"]["reference"] == format!("Patient/{a_id}").as_str())));
    // Valid FHIR R4, by the independent validator (when installed).
    if let Some((python, script)) = common::r4_validator() {
        let valid = tempfile::tempdir().unwrap();
        std::fs::write(valid.path().join("export.json"), &text).unwrap();
        let checked = Command::new(python)
            .arg(script)
            .arg(valid.path())
            .output()
            .unwrap();
        assert!(checked.status.success(), "{}", said(&checked));
    }
    // The alias, to standard output; an existing file is never overwritten.
    let again = passerelle(
        &gateway,
        &["patient", "export", "--identifier", &a_identifier],
        &[],
    );
    assert!(again.status.success(), "{}", said(&again));
    let printed: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(entries(&printed, "Patient").len(), patients.len());
    let refused = passerelle(
        &gateway,
        &[
            "patients",
            "export",
            "--identifier",
            &a_identifier,
            "--to",
            file.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(refused.status.code(), Some(1), "{}", said(&refused));
    let bad = passerelle(&gateway, &["patients", "export", "--identifier", A_ID], &[]);
    assert_eq!(bad.status.code(), Some(2), "{}", said(&bad));

    // Erase.
    let erased = passerelle(
        &gateway,
        &["patients", "erase", "--identifier", &a_identifier],
        &[],
    );
    assert!(erased.status.success(), "{}", said(&erased));
    let erased_text = String::from_utf8_lossy(&erased.stdout).to_string();
    assert!(
        erased_text.contains(&format!("erased Patient/{a_id}")),
        "{erased_text}"
    );
    assert!(!erased_text.contains(A_ID) && !erased_text.contains(A_FAMILY));
    // Neither the database, the journal's inbox nor their WALs hold A's
    // name or ID number.
    let database = gateway.data_dir().join("passerelle.db");
    let wal = gateway.data_dir().join("passerelle.db-wal");
    let inbox = gateway.data_dir().join("journal.db");
    let inbox_wal = gateway.data_dir().join("journal.db-wal");
    for file in [&database, &wal, &inbox, &inbox_wal] {
        assert!(
            !holds(file, A_FAMILY),
            "{} holds the family name",
            file.display()
        );
        assert!(
            !holds(file, A_ID),
            "{} holds the identifier",
            file.display()
        );
    }
    assert!(
        holds(&database, B_FAMILY),
        "the other patient is in the file"
    );

    // Not found, no history, no messages.
    assert_eq!(
        search_total(&gateway, &format!("Patient?identifier={a_identifier}")),
        0
    );
    assert_eq!(
        search_total(&gateway, &format!("Patient?family={A_FAMILY}")),
        0
    );
    for path in [
        format!("/fhir/Patient/{a_id}"),
        format!("/fhir/Patient/{a_id}/_history"),
        format!("/fhir/Observation/{a_observation}/_history"),
    ] {
        let reply = http_get_reply(gateway.http_addr, &path);
        assert_eq!(reply.status, 404, "{path}: {}", reply.body);
    }
    let messages = passerelle(&gateway, &["messages", "list"], &[]);
    assert!(messages.status.success(), "{}", said(&messages));
    let listed = String::from_utf8_lossy(&messages.stdout);
    for control in ["RA1", "RA2", "RA3"] {
        assert!(!listed.contains(&format!("\t{control}\t")), "{listed}");
    }
    for control in ["RB1", "RB2"] {
        assert!(listed.contains(&format!("\t{control}\t")), "{listed}");
    }
    // Nothing left to export or erase.
    let nothing = passerelle(
        &gateway,
        &["patients", "export", "--identifier", &a_identifier],
        &[],
    );
    assert_eq!(nothing.status.code(), Some(1), "{}", said(&nothing));
    assert!(String::from_utf8_lossy(&nothing.stderr).contains("nothing is held"));

    // The other patient is whole.
    assert_eq!(
        search_total(&gateway, &format!("Patient?identifier={b_identifier}")),
        1
    );
    assert_eq!(
        search_total(&gateway, &format!("Observation?patient={b_id}")),
        1
    );
    let b_export = passerelle(
        &gateway,
        &["patients", "export", "--identifier", &b_identifier],
        &[],
    );
    assert!(b_export.status.success(), "{}", said(&b_export));
    let b_bundle: Value = serde_json::from_slice(&b_export.stdout).unwrap();
    assert_eq!(entries(&b_bundle, "Binary").len(), 2);

    // The trail still verifies, and holds the erasure under A's id, with
    // counts and no demographics.
    let verified = passerelle(&gateway, &["audit", "verify"], &[]);
    assert!(verified.status.success(), "{}", said(&verified));
    let trail = http_get_reply(
        gateway.http_addr,
        &format!("/fhir/AuditEvent?patient=Patient/{a_id}"),
    );
    assert_eq!(trail.status, 200, "{}", trail.body);
    let erasure = trail.json()["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"].clone())
        .find(|e| e["subtype"][0]["code"] == "erase")
        .unwrap_or_else(|| panic!("no erasure record: {}", trail.body));
    assert_eq!(erasure["action"], "D");
    assert_eq!(erasure["outcome"], "0");
    assert_eq!(erasure["agent"][0]["who"]["display"], "local-admin CLI");
    assert!(!trail.body.contains(A_FAMILY) && !trail.body.contains(A_ID));
    assert!(
        trail.body.contains("\"messages\""),
        "counts: {}",
        trail.body
    );

    // A backup taken now holds nothing of A either.
    let copy = dir.path().join("after.db");
    let backup = passerelle(&gateway, &["backup", "--to", copy.to_str().unwrap()], &[]);
    assert!(backup.status.success(), "{}", said(&backup));
    assert!(!holds(&copy, A_FAMILY) && !holds(&copy, A_ID));
    assert!(holds(&copy, B_FAMILY));
    // Still true of the live files after the gateway's own later writes.
    for file in [&database, &wal] {
        assert!(
            !holds(file, A_FAMILY) && !holds(file, A_ID),
            "{}",
            file.display()
        );
    }
}

/// A route to the repository and to a hospital whose server is down:
/// the hospital's delivery stays pending.
fn config_with_a_stopped_hospital(storage: &str) -> String {
    format!(
        r#"
{storage}

[delivery]
poll_interval_ms = 200

[targets.hospital]
kind = "fhir"
url = "http://127.0.0.1:{}/fhir"
allow_insecure = true
timeout_secs = 2
backoff_initial_ms = 200
backoff_max_ms = 1000

[[routes]]
name = "adt"
message_types = ["ADT^A08"]
targets = ["local", "hospital"]
"#,
        common::free_port()
    )
}

#[test]
fn erasure_waits_for_deliveries_to_other_targets_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = start_gateway(&config_with_a_stopped_hospital(""), dir.path(), None);
    let codes = send_mllp(
        gateway.mllp_addr,
        &[
            adt("PC1", A_ID, A_FAMILY, "ANNE"),
            adt("PC2", B_ID, B_FAMILY, "BEA"),
        ],
    );
    assert_eq!(codes, ["AA", "AA"]);
    // Stored by the local target; the hospital's delivery pending.
    assert!(common::eventually(Duration::from_secs(30), || {
        search_total(&gateway, &format!("Patient?identifier={A_ID}")) == 1
    }));
    let (a_identifier, a_id) = patient(&gateway, A_ID);
    let config = dir.path().join("config.toml");
    std::fs::write(&config, config_with_a_stopped_hospital("")).unwrap();
    let with_config = ["--config", config.to_str().unwrap()];
    let erase = |force: bool| {
        let mut args = vec!["patients", "erase", "--identifier", &a_identifier];
        if force {
            args.push("--force");
        }
        args.extend(with_config);
        passerelle(&gateway, &args, &[])
    };

    let refused = erase(false);
    assert_eq!(refused.status.code(), Some(1), "{}", said(&refused));
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("hospital") && why.contains("--force"), "{why}");
    assert!(
        !why.contains("local ("),
        "the repository's deliveries wait for nobody: {why}"
    );
    // Nothing was erased, and the refusal is on record.
    assert_eq!(
        search_total(&gateway, &format!("Patient?identifier={a_identifier}")),
        1
    );
    let trail = http_get_reply(
        gateway.http_addr,
        &format!("/fhir/AuditEvent?patient=Patient/{a_id}"),
    );
    assert!(
        trail.body.contains("\"erase\"") && trail.body.contains("\"outcome\":\"4\""),
        "{}",
        trail.body
    );

    let forced = erase(true);
    assert!(forced.status.success(), "{}", said(&forced));
    assert_eq!(
        search_total(&gateway, &format!("Patient?identifier={a_identifier}")),
        0
    );
    let messages = passerelle(&gateway, &["messages", "list"], &[]);
    let listed = String::from_utf8_lossy(&messages.stdout);
    assert!(
        !listed.contains("\tPC1\t") && listed.contains("\tPC2\t"),
        "{listed}"
    );
    // B's delivery to the hospital is still waiting; A's is gone.
    let pending = || {
        let listed = passerelle(&gateway, &["messages", "list", "--state", "pending"], &[]);
        String::from_utf8_lossy(&listed.stdout).to_string()
    };
    // (Between two attempts; an attempt in flight is not `pending`.)
    assert!(
        common::eventually(Duration::from_secs(10), || pending().contains("\tPC2\t")),
        "{}",
        pending()
    );
    assert!(!pending().contains("\tPC1\t"));
    let verified = passerelle(&gateway, &["audit", "verify"], &[]);
    assert!(verified.status.success(), "{}", said(&verified));
}

#[test]
fn erasure_on_postgresql() {
    let Some(url) = passerelle_storage::postgres_test::database("patient_rights") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let storage = format!("[storage]\nbackend = \"postgres\"\npostgres_url = \"{url}\"\n");
    let config = dir.path().join("pg.toml");
    std::fs::write(&config, &storage).unwrap();
    let gateway = Gateway::start_with(Options {
        args: vec!["--config".into(), config.display().to_string()],
        ..Options::default()
    });
    let codes = send_mllp(
        gateway.mllp_addr,
        &[
            adt("GA1", A_ID, A_FAMILY, "ANNE"),
            adt("GB1", B_ID, B_FAMILY, "BEA"),
            oru("GA2", A_ID, A_FAMILY, "81", "1.50"),
        ],
    );
    assert_eq!(codes, ["AA"; 3]);
    wait_all_delivered(&gateway, 3, Duration::from_secs(60));
    let (a_identifier, a_id) = patient(&gateway, A_ID);
    let with_config = ["--config", config.to_str().unwrap()];

    let mut args = vec!["patients", "export", "--identifier", a_identifier.as_str()];
    args.extend(with_config);
    let exported = passerelle(&gateway, &args, &[]);
    assert!(exported.status.success(), "{}", said(&exported));
    let bundle: Value = serde_json::from_slice(&exported.stdout).unwrap();
    assert_eq!(entries(&bundle, "Binary").len(), 2);
    assert!(String::from_utf8_lossy(&exported.stdout).contains("1.50"));

    let mut args = vec!["patients", "erase", "--identifier", a_identifier.as_str()];
    args.extend(with_config);
    let erased = passerelle(&gateway, &args, &[]);
    assert!(erased.status.success(), "{}", said(&erased));
    assert_eq!(
        search_total(&gateway, &format!("Patient?identifier={a_identifier}")),
        0
    );
    let history = http_get_reply(gateway.http_addr, &format!("/fhir/Patient/{a_id}/_history"));
    assert_eq!(history.status, 404, "{}", history.body);
    assert_eq!(
        search_total(&gateway, &format!("Patient?identifier={B_ID}")),
        1
    );

    // No live row of any table names A.
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let like = format!("%{A_ID}%");
    for (table, column) in [
        ("journal", "encode(raw, 'escape')"),
        ("outbox", "bundle"),
        ("local_bundles", "bundle"),
        ("fhir_resources", "resource"),
        ("fhir_history", "resource"),
        ("fhir_index", "value"),
        ("audit_events", "event"),
    ] {
        let count: i64 = db
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE {column} ILIKE $1"),
                &[&like],
            )
            .unwrap()
            .get(0);
        assert_eq!(count, 0, "{table} still names the patient");
    }
    let mut args = vec!["audit", "verify"];
    args.extend(with_config);
    let verified = passerelle(&gateway, &args, &[]);
    assert!(verified.status.success(), "{}", said(&verified));
    let trail = http_get_reply(
        gateway.http_addr,
        &format!("/fhir/AuditEvent?patient=Patient/{a_id}"),
    );
    assert!(trail.body.contains("\"erase\""), "{}", trail.body);
}
