//! The `passerelle` command line as a user runs it.

use std::process::Command;

use crate::common;

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

/// Runs `passerelle` (the server) with `env` until it exits, for at most
/// 30 s: its exit status and standard error. A server that keeps running
/// is killed and fails the test.
fn server_exit(env: &[(&str, String)]) -> (std::process::ExitStatus, String) {
    let mut child = passerelle()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            return (status, stderr);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the gateway did not stop");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The environment of a gateway on free loopback ports and `data_dir`.
fn server_env(data_dir: &std::path::Path) -> Vec<(&'static str, String)> {
    vec![
        (
            "PASSERELLE_HTTP__LISTEN",
            format!("127.0.0.1:{}", common::free_port()),
        ),
        (
            "PASSERELLE_MLLP__LISTEN",
            format!("127.0.0.1:{}", common::free_port()),
        ),
        (
            "PASSERELLE_STORAGE__DATA_DIR",
            data_dir.display().to_string(),
        ),
    ]
}

/// A second gateway on the data directory of a running one stops at once,
/// saying why; kill -9 of the first frees the directory.
#[test]
fn a_second_gateway_on_the_same_data_directory_is_refused() {
    let mut first = common::Gateway::start();
    let (status, stderr) = server_exit(&server_env(first.data_dir()));
    assert!(!status.success());
    assert!(
        stderr.contains("another gateway is running on this data directory"),
        "{stderr}"
    );
    first.signal("KILL");
    first.wait_exit(std::time::Duration::from_secs(10));
    let second = passerelle()
        .envs(server_env(first.data_dir()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut second = KillOnDrop(second);
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(3) {
        assert!(
            second.0.try_wait().unwrap().is_none(),
            "the second gateway stopped though the first was killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Kills the child when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A gateway whose port is taken stops before it writes anything: no data
/// directory, no key file.
#[test]
fn a_gateway_that_cannot_listen_leaves_nothing_behind() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let (status, stderr) = server_exit(&[
        (
            "PASSERELLE_HTTP__LISTEN",
            taken.local_addr().unwrap().to_string(),
        ),
        (
            "PASSERELLE_MLLP__LISTEN",
            format!("127.0.0.1:{}", common::free_port()),
        ),
        (
            "PASSERELLE_STORAGE__DATA_DIR",
            data_dir.display().to_string(),
        ),
    ]);
    assert!(!status.success());
    assert!(stderr.contains("cannot listen"), "{stderr}");
    assert!(!data_dir.exists(), "the data directory was created");
}

/// The environment of a gateway on a fresh PostgreSQL database, its data
/// directory `data_dir` (the local admin key's home), its configuration
/// file written in `dir`; `None` when no PostgreSQL can be reached outside
/// CI.
fn on_postgres(
    test: &str,
    dir: &std::path::Path,
    data_dir: &std::path::Path,
) -> Option<Vec<(&'static str, String)>> {
    let url = passerelle_storage::postgres_test::database(test)?;
    let config = dir.join("postgres.toml");
    std::fs::write(
        &config,
        format!("[storage]\nbackend = \"postgres\"\npostgres_url = \"{url}\"\n"),
    )
    .unwrap();
    let mut env = server_env(data_dir);
    env.push(("PASSERELLE_CONFIG", config.display().to_string()));
    Some(env)
}

/// On PostgreSQL nothing else makes the data directory: the local admin
/// key's is made (private) at the first start.
#[test]
fn a_gateway_on_postgresql_makes_the_directory_of_its_admin_key() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let Some(env) = on_postgres("admin_key_dir", dir.path(), &data_dir) else {
        return;
    };
    let child = passerelle()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let key = data_dir.join("local-admin.key");
    let started = std::time::Instant::now();
    while !key.exists() {
        assert!(child.0.try_wait().unwrap().is_none(), "the gateway stopped");
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A gateway on PostgreSQL that cannot start says why and exits; it did
/// not panic while closing its database connections.
#[test]
fn a_gateway_on_postgresql_that_cannot_start_says_why() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the data directory should be: the key cannot be made.
    let data_dir = dir.path().join("data");
    std::fs::write(&data_dir, "not a directory").unwrap();
    let Some(env) = on_postgres("cannot_start", dir.path(), &data_dir.join("inner")) else {
        return;
    };
    let (status, stderr) = server_exit(&env);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("passerelle: local admin key"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
