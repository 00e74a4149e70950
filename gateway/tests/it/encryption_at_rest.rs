//! Encryption at rest of the embedded store, as an operator runs it: a
//! gateway on an encrypted store (`[storage] encrypted`, key in a 0600
//! file) keeps no patient's name or INS in clear in any file of its data
//! directory (database, WAL, shared memory) nor in its backup; the key is
//! rotated with `passerelle storage rekey` while the gateway is stopped,
//! after which only the new key opens the store and the audit trail,
//! which records the rotation, verifies.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::{self, json_of, Gateway, Options};
use crate::delivery::send_mllp;

const FAMILY: &[u8] = b"CHIFFREMENT";
const INS: &[u8] = b"279035121518989";

fn admission() -> String {
    [
        "MSH|^~\\&|CABINET|SITE|GW|GW|20261206101500||ADT^A04^ADT_A01|CHIFFRE-1|P|2.5",
        "EVN|A04|20261206101500",
        "PID|1||279035121518989^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS~CH42^^^SITE^PI||CHIFFREMENT^ROSALIE||19790312|F",
        "PV1||O",
    ]
    .join("\r")
}

fn write_key(path: &Path, secret: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    writeln!(file, "{secret}").unwrap();
}

/// The configuration overrides of an encrypted store in `data_dir`.
fn encrypted_env(data_dir: &Path, key_file: &Path) -> Vec<(String, String)> {
    vec![
        ("PASSERELLE_STORAGE__ENCRYPTED".into(), "true".into()),
        (
            "PASSERELLE_STORAGE__KEY_FILE".into(),
            key_file.display().to_string(),
        ),
        (
            "PASSERELLE_STORAGE__DATA_DIR".into(),
            data_dir.display().to_string(),
        ),
    ]
}

fn passerelle(env: &[(String, String)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_passerelle"))
        .env_remove("PASSERELLE_CONFIG")
        .env_remove("PASSERELLE_STORAGE_KEY")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(args)
        .output()
        .unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Fails naming the file that holds the patient's name or INS in clear.
fn assert_nothing_in_clear(files: &[PathBuf]) {
    assert!(!files.is_empty());
    for file in files {
        let bytes = std::fs::read(file).unwrap();
        for needle in [FAMILY, INS] {
            assert!(
                !contains(&bytes, needle),
                "{} holds {} in clear",
                file.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }
}

fn files_of(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    common::files_under(dir, &mut files);
    files
}

#[test]
fn an_encrypted_store_keeps_nothing_in_clear_and_its_key_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let first_key = dir.path().join("first.key");
    write_key(
        &first_key,
        "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff",
    );
    let env = encrypted_env(&live, &first_key);
    let gateway = Gateway::start_with(Options {
        data_dir: Some(live.clone()),
        env: env.clone(),
        ..Options::default()
    });
    assert_eq!(send_mllp(gateway.mllp_addr, &[admission()]), ["AA"]);
    assert!(
        common::eventually(Duration::from_secs(30), || {
            json_of(&gateway, "/fhir/Patient?family=CHIFFREMENT")
                .is_some_and(|bundle| bundle["total"] == 1)
        }),
        "the patient was not stored: {}",
        gateway.logs()
    );
    // While the gateway runs (the message and its resources in the WAL),
    // and a backup taken meanwhile.
    assert_nothing_in_clear(&files_of(&live));
    let copy = dir.path().join("backup.db");
    let made = passerelle(&env, &["backup", "--to", copy.to_str().unwrap()]);
    assert!(made.status.success(), "{made:?}");
    assert_nothing_in_clear(std::slice::from_ref(&copy));

    // The rotation needs the gateway stopped: refused while it runs.
    let second_key = dir.path().join("second.key");
    write_key(
        &second_key,
        "the practice's new passphrase, kept in its safe",
    );
    let rekey = |env: &[(String, String)]| {
        passerelle(
            env,
            &[
                "storage",
                "rekey",
                "--new-key-file",
                second_key.to_str().unwrap(),
            ],
        )
    };
    let refused = rekey(&env);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("stop the gateway"),
        "{refused:?}"
    );
    drop(gateway);
    let before = common::intact_audit_records(&passerelle(&env, &["audit", "verify"]));
    let rotated = rekey(&env);
    assert!(rotated.status.success(), "{rotated:?}");
    assert_nothing_in_clear(&files_of(&live));

    // The old key opens nothing any more; the new one opens the store,
    // whose trail records the rotation and verifies.
    let stale = passerelle(&env, &["audit", "verify"]);
    assert!(!stale.status.success());
    assert!(
        String::from_utf8_lossy(&stale.stderr).contains("does not open"),
        "{stale:?}"
    );
    let env = encrypted_env(&live, &second_key);
    let verified = passerelle(&env, &["audit", "verify"]);
    assert!(verified.status.success(), "{verified:?}");
    assert_eq!(
        common::intact_audit_records(&verified),
        before + 1,
        "the rotation is recorded"
    );
    let gateway = Gateway::start_with(Options {
        data_dir: Some(live.clone()),
        env: env.clone(),
        ..Options::default()
    });
    let found = json_of(&gateway, "/fhir/Patient?family=CHIFFREMENT").unwrap();
    assert_eq!(found["total"], 1, "{found}");
    drop(gateway);

    // The backup, taken under the first key, restores with it only.
    let restored = dir.path().join("restored");
    let restore = |key_file: &Path| {
        passerelle(
            &encrypted_env(&restored, key_file),
            &["restore", "--from", copy.to_str().unwrap()],
        )
    };
    let wrong = restore(&second_key);
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("does not open"),
        "{wrong:?}"
    );
    let right = restore(&first_key);
    assert!(right.status.success(), "{right:?}");
    assert_nothing_in_clear(&files_of(&restored));
}
