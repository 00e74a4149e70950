//! `passerelle backup` while a sender keeps the gateway busy over MLLP,
//! then `passerelle restore` into a new directory and a gateway started on
//! it: every message acknowledged before the backup began is there.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{self, Gateway, Options};
use crate::delivery::{adt_update, all_messages, send_mllp};

fn passerelle(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_passerelle"))
        .args(args)
        .env("PASSERELLE_STORAGE__DATA_DIR", data_dir)
        .output()
        .unwrap()
}

#[test]
fn a_backup_taken_under_load_restores_every_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let gateway = Gateway::start_with(Options {
        data_dir: Some(live.clone()),
        ..Options::default()
    });
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (acknowledged, stop, mllp) = (acknowledged.clone(), stop.clone(), gateway.mllp_addr);
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<String> = (n..n + 10)
                    .map(|i| adt_update(&format!("BK{i}"), (i % 50) as u32, i))
                    .collect();
                let codes = send_mllp(mllp, &batch);
                let mut acknowledged = acknowledged.lock().unwrap();
                for (i, code) in (n..n + 10).zip(codes) {
                    assert_eq!(code, "AA");
                    acknowledged.push(format!("BK{i}"));
                }
                n += 10;
            }
        })
    };
    assert!(common::eventually(Duration::from_secs(60), || {
        acknowledged.lock().unwrap().len() >= 200
    }));
    let before: BTreeSet<String> = acknowledged.lock().unwrap().iter().cloned().collect();
    let copy = dir.path().join("passerelle-backup.db");
    let made = passerelle(&live, &["backup", "--to", copy.to_str().unwrap()]);
    assert!(made.status.success(), "{made:?}");
    let said = String::from_utf8_lossy(&made.stdout);
    assert!(said.starts_with("backup written to "), "{said}");
    // The load went on during the backup.
    assert!(common::eventually(Duration::from_secs(30), || {
        acknowledged.lock().unwrap().len() > before.len() + 20
    }));
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    drop(gateway);

    let restored = dir.path().join("restored");
    let restore = || {
        passerelle(
            &live,
            &[
                "restore",
                "--from",
                copy.to_str().unwrap(),
                "--data-dir",
                restored.to_str().unwrap(),
            ],
        )
    };
    let made = restore();
    assert!(made.status.success(), "{made:?}");
    // Never over a database; the refusal is recorded in the trail of the
    // configured store (`live`), one record more than before it.
    let records = || common::intact_audit_records(&passerelle(&live, &["audit", "verify"]));
    let before_refusal = records();
    let again = restore();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
    assert_eq!(
        records(),
        before_refusal + 1,
        "the refused restoration is recorded"
    );

    let gateway = Gateway::start_with(Options {
        data_dir: Some(restored),
        ..Options::default()
    });
    let found: BTreeSet<String> = all_messages(&gateway)
        .iter()
        .filter_map(|m| m["control_id"].as_str().map(str::to_string))
        .collect();
    let missing: Vec<&String> = before.difference(&found).collect();
    assert!(missing.is_empty(), "lost by the backup: {missing:?}");
}
