//! HPRIM files in (issue 25 item 3): `POST /hprim` and the watched
//! directory, each file journaled before it is answered or moved, visible
//! at `/fhir/DiagnosticReport?patient=...` once mapped, and never lost nor
//! taken twice when the gateway is killed (SIGKILL) at any moment of its
//! pick-up.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::common::{eventually, http_post, journal_messages, json_of, Gateway, Options};

fn multi_patient_file() -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../mappers/hprim/tests/cases/sante_multi_patient.hpr"),
    )
    .expect("the multi-patient HPRIM Santé case")
}

/// A one-patient HPRIM Santé file, distinct for each `n`.
fn numbered_file(n: usize) -> Vec<u8> {
    format!(
        "H|~^\\&|MSG{n:04}||LAB01~Laboratoire des Tests||ORU|||GW~Passerelle||P|H2.2~C|202601151030\r\n\
         P|1|KILL-{n}|DOS-{n}||KILLTEST~Patient{n}||19800312|F\r\n\
         OBR|1|REQ-{n}|SPC-{n}|GLY~Glycemie~L|R||202601150800\r\n\
         OBX|1|NM|GLY~Glycemie~L||1.{n:02}|g/L|0.70-1.10|H|||F\r\n\
         L|1|N\r\n"
    )
    .into_bytes()
}

/// The id of the patient the laboratory's requester knows as `id` (the
/// mapper scopes it by the receiver, `GW`), once it is in the repository.
fn patient_id(gateway: &Gateway, id: &str) -> Option<String> {
    let bundle = json_of(
        gateway,
        &format!("/fhir/Patient?identifier=urn:passerelle:authority:GW%7C{id}"),
    )?;
    bundle["entry"][0]["resource"]["id"]
        .as_str()
        .map(str::to_string)
}

fn reports_of(gateway: &Gateway, patient: &str) -> usize {
    json_of(
        gateway,
        &format!("/fhir/DiagnosticReport?patient=Patient/{patient}"),
    )
    .and_then(|bundle| bundle["entry"].as_array().map(Vec::len))
    .unwrap_or(0)
}

fn hprim_messages(gateway: &Gateway) -> Vec<Value> {
    journal_messages(gateway, "HPRIM^")
}

#[test]
fn post_hprim_journals_then_maps_and_refuses_what_it_cannot_read() {
    let gateway = Gateway::start();
    let file = multi_patient_file();

    let reply = http_post(
        gateway.http_addr,
        "/hprim",
        "application/x-hprim-sante",
        &file,
    );
    assert_eq!(reply.status, 202, "{}", reply.body);
    let outcome = reply.json();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["severity"], "information");
    let said = outcome["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(said.contains("2 patient(s)"), "{said}");

    // Both patients of the file, each with their reports.
    let mut found = (None, None);
    assert!(
        eventually(Duration::from_secs(20), || {
            found = (patient_id(&gateway, "PAT-A"), patient_id(&gateway, "PAT-B"));
            found.0.is_some() && found.1.is_some()
        }),
        "patients not in the repository: {}",
        gateway.logs()
    );
    let (a, b) = (found.0.unwrap(), found.1.unwrap());
    assert_eq!(reports_of(&gateway, &a), 2);
    assert_eq!(reports_of(&gateway, &b), 1);

    // The same file again: stored once.
    let again = http_post(
        gateway.http_addr,
        "/hprim",
        "application/x-hprim-sante",
        &file,
    );
    assert_eq!(again.status, 200, "{}", again.body);
    assert!(again.body.contains("stored before"), "{}", again.body);
    assert_eq!(hprim_messages(&gateway).len(), 1);

    // A generic media type: the format is read from the file.
    let detected = http_post(gateway.http_addr, "/hprim", "text/plain", &numbered_file(1));
    assert_eq!(detected.status, 202, "{}", detected.body);
    assert_eq!(hprim_messages(&gateway)[0]["message_type"], "HPRIM^SANTE");

    // Unreadable: 400 naming the line and record, the file not quoted.
    let broken = b"H|~^\\&|||LAB01\r\nP|1|SECRET-ID\r\nthis is no record\r\n";
    let refused = http_post(
        gateway.http_addr,
        "/hprim",
        "application/x-hprim-sante",
        broken,
    );
    assert_eq!(refused.status, 400, "{}", refused.body);
    let why = refused.json()["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(why.contains("line 3"), "{why}");
    assert!(
        !why.contains("SECRET") && !why.contains("no record"),
        "{why}"
    );
    assert_eq!(hprim_messages(&gateway).len(), 2);

    // Not a file type of ours.
    let json = http_post(gateway.http_addr, "/hprim", "application/json", b"{}");
    assert_eq!(json.status, 415, "{}", json.body);
    // Nothing of the patients reached the log.
    let logs = gateway.logs();
    for secret in ["MARTIN", "DURAND", "SECRET-ID", "PAT-A"] {
        assert!(!logs.contains(secret), "{secret} in the log");
    }
}

fn watch_options(watch: &Path, data_dir: Option<PathBuf>) -> Options {
    Options {
        env: vec![
            (
                "PASSERELLE_HPRIM__WATCH_DIR".to_string(),
                watch.display().to_string(),
            ),
            (
                "PASSERELLE_HPRIM__POLL_INTERVAL_MS".to_string(),
                "20".to_string(),
            ),
            ("PASSERELLE_HPRIM__SETTLE_MS".to_string(), "100".to_string()),
        ],
        data_dir,
        ..Options::default()
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn the_watched_directory_takes_complete_files_and_sets_bad_ones_aside() {
    let watch = tempfile::tempdir().unwrap();
    let gateway = Gateway::start_with(watch_options(watch.path(), None));

    // Written in two halves with a pause longer than a poll: not taken
    // while it grows.
    let file = numbered_file(7);
    let path = watch.path().join("result-7.hpr");
    std::fs::write(&path, &file[..40]).unwrap();
    std::thread::sleep(Duration::from_millis(60));
    assert!(path.exists(), "a growing file was taken");
    let mut whole = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut whole, &file[40..]).unwrap();
    drop(whole);
    // Renamed in, the usual way: written as .part, then renamed.
    std::fs::write(watch.path().join("result-8.hpr.part"), numbered_file(8)).unwrap();
    std::fs::rename(
        watch.path().join("result-8.hpr.part"),
        watch.path().join("result-8.hpr"),
    )
    .unwrap();
    std::fs::write(
        watch.path().join("broken.hpr"),
        b"H|~^\\&|\r\nnot a record\r\n",
    )
    .unwrap();

    let processed = watch.path().join("processed");
    let failed = watch.path().join("failed");
    assert!(
        eventually(Duration::from_secs(20), || {
            names_in(&processed) == ["result-7.hpr", "result-8.hpr"]
                && names_in(&failed) == ["broken.hpr", "broken.hpr.reason"]
        }),
        "processed {:?}, failed {:?}, left {:?}: {}",
        names_in(&processed),
        names_in(&failed),
        names_in(watch.path()),
        gateway.logs()
    );
    assert_eq!(std::fs::read(processed.join("result-7.hpr")).unwrap(), file);
    let reason = std::fs::read_to_string(failed.join("broken.hpr.reason")).unwrap();
    assert!(reason.contains("line 2"), "{reason}");
    assert!(names_in(watch.path()).is_empty());

    // Visible at /fhir/DiagnosticReport?patient=... within seconds.
    let mut patient = None;
    assert!(eventually(Duration::from_secs(20), || {
        patient = patient_id(&gateway, "KILL-7");
        patient
            .as_ref()
            .is_some_and(|id| reports_of(&gateway, id) == 1)
    }));
    let messages = hprim_messages(&gateway);
    assert_eq!(messages.len(), 2);
    assert!(messages.iter().all(|m| m["transport"] == "file"));
}

#[test]
fn a_kill_at_any_moment_of_the_pick_up_loses_no_file_and_takes_none_twice() {
    const FILES: usize = 60;
    let watch = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("data");
    for n in 0..FILES {
        let name = format!("result-{n:02}.hpr");
        std::fs::write(watch.path().join(&name), numbered_file(n)).unwrap();
    }
    // Kill after various times, so that kills fall before, during and
    // after journal commits and moves, until everything is taken.
    let processed = watch.path().join("processed");
    let mut interrupted = 0;
    for round in 0..40u64 {
        let mut gateway = Gateway::start_with(watch_options(watch.path(), Some(data_dir.clone())));
        std::thread::sleep(Duration::from_millis(80 + (round * 13) % 70));
        gateway.signal("KILL");
        gateway.wait_exit(Duration::from_secs(10));
        let done = names_in(&processed).len();
        if done == FILES {
            break;
        }
        if done > 0 {
            interrupted += 1;
        }
    }
    // At least one kill fell in the middle of the directory's pick-up.
    assert!(interrupted >= 1, "no kill fell during the pick-up");
    let gateway = Gateway::start_with(watch_options(watch.path(), Some(data_dir.clone())));
    assert!(
        eventually(Duration::from_secs(30), || names_in(&processed).len()
            == FILES),
        "processed {:?}, left {:?}",
        names_in(&processed),
        names_in(watch.path())
    );
    assert!(names_in(watch.path()).is_empty());
    assert!(names_in(&watch.path().join("failed")).is_empty());
    // Each file under its own name, untouched (no second copy `.1`).
    for n in 0..FILES {
        let name = format!("result-{n:02}.hpr");
        assert_eq!(
            std::fs::read(processed.join(&name)).unwrap(),
            numbered_file(n),
            "{name}"
        );
    }
    // Journaled once each, and every patient's report in the repository.
    let messages = hprim_messages(&gateway);
    assert_eq!(messages.len(), FILES, "{messages:?}");
    for n in [0, FILES / 2, FILES - 1] {
        let mut ok = false;
        assert!(eventually(Duration::from_secs(30), || {
            ok = patient_id(&gateway, &format!("KILL-{n}"))
                .is_some_and(|id| reports_of(&gateway, &id) == 1);
            ok
        }));
    }
}
