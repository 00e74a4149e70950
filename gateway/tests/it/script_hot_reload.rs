//! Script mappers change under a running gateway: a new script serves
//! without restart, a broken edit is refused while the previous version
//! keeps serving, a fix takes over, and a removal takes the mapping away.

use std::path::Path;
use std::time::Duration;

use crate::common::{eventually, http_post, metrics_text, observation_script, Gateway, Reply};

const PATH: &str = "/fhir/$convert-data";
const ER7: &str = "x-application/hl7-v2+er7";
/// A site-specific message type no built-in mapper handles, so that only
/// scripts decide the outcome.
const MESSAGE: &str = "MSH|^~\\&|HIS|CHU|PASSERELLE|GW|20261122101500||ZPA^Z01|MSG1|P|2.5\rPID|1||42^^^CHU^PI||DUPONT^JEAN\r";
const SELECTOR: &str = "ZPA^Z01";
/// How long a change may take to be seen, polling every 100 ms.
const WITHIN: Duration = Duration::from_secs(10);

fn convert(gateway: &Gateway) -> Reply {
    http_post(gateway.http_addr, PATH, ER7, MESSAGE.as_bytes())
}

/// The Observation value of a successful conversion, as written.
fn value_text(reply: &Reply) -> Option<String> {
    if reply.status != 200 {
        return None;
    }
    let start = reply.body.find("\"value\":")? + "\"value\":".len();
    let rest = &reply.body[start..];
    let end = rest.find(['}', ','])?;
    Some(rest[..end].to_string())
}

/// Writes through a temporary file and a rename, as editors and deploy
/// tools do, so that the gateway never reads half a file.
fn put(dir: &Path, name: &str, content: &str) {
    let temporary = dir.join(format!(".{name}.tmp"));
    std::fs::write(&temporary, content).unwrap();
    std::fs::rename(&temporary, dir.join(name)).unwrap();
}

fn reloads(gateway: &Gateway, outcome: &str) -> u64 {
    let needle = format!("passerelle_mapping_script_reloads_total{{outcome=\"{outcome}\"}} ");
    metrics_text(gateway.http_addr)
        .lines()
        .find_map(|l| l.strip_prefix(&needle).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

#[test]
fn scripts_are_loaded_replaced_kept_and_removed_without_restart() {
    let scripts = tempfile::tempdir().unwrap();
    let dir = scripts.path().display().to_string();
    let gateway = Gateway::start_with_env(&[
        ("PASSERELLE_MAPPING__SCRIPTS_DIR", &dir),
        ("PASSERELLE_MAPPING__SCRIPTS_POLL_INTERVAL_MS", "100"),
    ]);
    let pid = gateway.child.id();

    // No script yet: nothing maps the message.
    let reply = convert(&gateway);
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert_eq!(reply.json()["issue"][0]["code"], "not-supported");

    // A new script serves.
    put(
        scripts.path(),
        "adt.rhai",
        &observation_script(SELECTOR, "1.50"),
    );
    assert!(
        eventually(WITHIN, || value_text(&convert(&gateway)).as_deref()
            == Some("1.50")),
        "the new script did not serve: {}",
        gateway.logs()
    );

    // A broken edit is refused; the previous version keeps serving.
    put(
        scripts.path(),
        "adt.rhai",
        "const SELECTORS = [\"ZPA^Z01\"];\nfn map(msg, ctx) {\n    #{ resourceType: \n}\n",
    );
    assert!(
        eventually(WITHIN, || reloads(&gateway, "refused") >= 1),
        "the broken script was not refused: {}",
        gateway.logs()
    );
    assert_eq!(value_text(&convert(&gateway)).as_deref(), Some("1.50"));
    let logs = gateway.logs();
    assert!(logs.contains("mapping script refused"), "{logs}");
    assert!(logs.contains("adt.rhai"), "{logs}");

    // The fix takes over.
    put(
        scripts.path(),
        "adt.rhai",
        &observation_script(SELECTOR, "2.250"),
    );
    assert!(
        eventually(WITHIN, || value_text(&convert(&gateway)).as_deref()
            == Some("2.250")),
        "the fixed script did not take over: {}",
        gateway.logs()
    );

    // A second script claiming the same message type is refused, naming
    // both; the first keeps serving.
    let refused_before = reloads(&gateway, "refused");
    put(
        scripts.path(),
        "zz-adt.rhai",
        &observation_script(SELECTOR, "9.9"),
    );
    assert!(
        eventually(WITHIN, || reloads(&gateway, "refused") > refused_before),
        "the conflicting script was not refused: {}",
        gateway.logs()
    );
    assert_eq!(value_text(&convert(&gateway)).as_deref(), Some("2.250"));
    let logs = gateway.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("zz-adt.rhai") && l.contains("`adt.rhai` already claims")),
        "{logs}"
    );
    std::fs::remove_file(scripts.path().join("zz-adt.rhai")).unwrap();

    // Removal takes the mapping away.
    std::fs::remove_file(scripts.path().join("adt.rhai")).unwrap();
    assert!(
        eventually(WITHIN, || convert(&gateway).status == 422),
        "the removed script still serves: {}",
        gateway.logs()
    );
    assert_eq!(
        convert(&gateway).json()["issue"][0]["code"],
        "not-supported"
    );
    assert!(metrics_text(gateway.http_addr).contains("passerelle_mapping_scripts_loaded 0"));

    // All of it without a restart.
    assert_eq!(gateway.child.id(), pid);
    assert!(reloads(&gateway, "loaded") >= 2);
    assert!(reloads(&gateway, "removed") >= 1);
}

#[test]
fn a_script_that_does_not_compile_at_start_does_not_stop_the_gateway() {
    let scripts = tempfile::tempdir().unwrap();
    put(
        scripts.path(),
        "broken.rhai",
        "const SELECTORS = [\"ZPA^Z01\"];\nfn map(msg, ctx) {\n    let = 1;\n}\n",
    );
    put(
        scripts.path(),
        "other.rhai",
        &observation_script("ZPB^Z01", "7"),
    );
    let dir = scripts.path().display().to_string();
    let gateway = Gateway::start_with_env(&[("PASSERELLE_MAPPING__SCRIPTS_DIR", &dir)]);
    assert_eq!(reloads(&gateway, "refused"), 1);
    assert_eq!(reloads(&gateway, "loaded"), 1);
    assert!(metrics_text(gateway.http_addr).contains("passerelle_mapping_scripts_loaded 1"));
    let logs = gateway.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("mapping script refused") && l.contains("broken.rhai")),
        "{logs}"
    );
    let reply = convert(&gateway);
    assert_eq!(reply.status, 422, "{}", reply.body);
}

#[test]
fn a_missing_scripts_dir_stops_startup_with_exit_2() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_passerelle"))
        .env_remove("PASSERELLE_CONFIG")
        .env(
            "PASSERELLE_MAPPING__SCRIPTS_DIR",
            "/nonexistent/passerelle-scripts",
        )
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("PASSERELLE_MAPPING__SCRIPTS_DIR"),
        "{stderr}"
    );
}
