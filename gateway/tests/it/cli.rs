//! The `passerelle` command line as a user runs it.

use std::process::Command;

fn passerelle() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_passerelle"));
    command.env_remove("PASSERELLE_CONFIG");
    command
}

#[test]
fn version_prints_the_version() {
    let output = passerelle().arg("version").output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.starts_with("passerelle "), "{text}");
}

#[test]
fn check_config_on_a_bad_file_names_the_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[http]\nlisten = \"127.0.0.1:8080\"\n\n[storage]\ndata_dri = \"/tmp\"\n",
    )
    .unwrap();
    let output = passerelle()
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.toml"), "{stderr}");
    assert!(stderr.contains("line 5"), "{stderr}");
    assert!(stderr.contains("storage.data_dri"), "{stderr}");
}

#[test]
fn check_config_on_a_good_file_prints_effective_settings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("good.toml");
    std::fs::write(&path, "[http]\nlisten = \"127.0.0.1:${GW_PORT:-9999}\"\n").unwrap();
    let output = passerelle()
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .env("PASSERELLE_LOG__FORMAT", "json")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("listen = \"127.0.0.1:9999\""), "{stdout}");
    assert!(stdout.contains("format = \"json\""), "{stdout}");
}

#[test]
fn the_example_config_in_the_repository_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../passerelle.example.toml");
    let output = passerelle()
        .arg("check-config")
        .arg("--config")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn missing_config_file_is_an_error_naming_it() {
    let output = passerelle()
        .arg("check-config")
        .arg("--config")
        .arg("/nonexistent/passerelle.toml")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/passerelle.toml"));
}

/// `check-config` compiles the scripts of the scripts directory: a bad one
/// is named with its line, exit 2; good ones pass.
#[test]
fn check_config_compiles_the_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = dir.path().join("scripts");
    std::fs::create_dir(&scripts).unwrap();
    std::fs::write(
        scripts.join("good.rhai"),
        "const SELECTORS = [\"ADT^A01\"];\nfn adjust(msg, bundle) { bundle }\n",
    )
    .unwrap();
    let config = dir.path().join("passerelle.toml");
    std::fs::write(
        &config,
        format!(
            "[mapping]\nscripts_dir = {:?}\n",
            scripts.display().to_string()
        ),
    )
    .unwrap();
    let check = || {
        passerelle()
            .arg("check-config")
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap()
    };
    let output = check();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    std::fs::write(
        scripts.join("bad.rhai"),
        "const SELECTORS = [\"ORU^R01\"];\n\nfn adjust(msg, bundle) {\n    let x = ;\n}\n",
    )
    .unwrap();
    let output = check();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.rhai:4: script refused"), "{stderr}");
    assert!(!stderr.contains("good.rhai"), "{stderr}");
}
