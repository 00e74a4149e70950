//! No Docker engine runs here, so `docker-compose.yml` is checked statically:
//! every service, port, volume and file it references exists and agrees with
//! the gateway's defaults and configuration keys.

use std::collections::BTreeMap;
use std::path::Path;

use gateway::config::Config;
use serde_yaml_ng::Value;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn compose() -> Value {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    compose
        .get("services")
        .and_then(|s| s.get(name))
        .unwrap_or_else(|| panic!("service {name} missing"))
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_sequence)
        .map(|s| {
            s.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn services_are_the_expected_ones() {
    let compose = compose();
    let services = compose.get("services").and_then(Value::as_mapping).unwrap();
    let names: Vec<&str> = services.keys().filter_map(Value::as_str).collect();
    assert_eq!(names, ["passerelle", "postgres", "prometheus"]);
    for (_, definition) in services {
        for dependency in strings(definition.get("depends_on")) {
            assert!(
                services.contains_key(Value::from(dependency.as_str())),
                "depends_on names unknown service {dependency}"
            );
        }
    }
}

#[test]
fn every_bind_mounted_file_and_build_file_exists() {
    let compose = compose();
    let services = compose.get("services").and_then(Value::as_mapping).unwrap();
    let declared_volumes = compose.get("volumes").and_then(Value::as_mapping).unwrap();
    for (name, definition) in services {
        for volume in strings(definition.get("volumes")) {
            let source = volume.split(':').next().unwrap();
            if source.starts_with("./") {
                assert!(
                    repo().join(source).exists(),
                    "{name:?}: mounted file or directory {source} missing"
                );
            } else {
                assert!(
                    declared_volumes.contains_key(Value::from(source)),
                    "{name:?}: volume {source} not declared at top level"
                );
            }
        }
    }
    let build = service(&compose, "passerelle").get("build").unwrap();
    let dockerfile = build.get("dockerfile").and_then(Value::as_str).unwrap();
    assert!(repo().join(dockerfile).is_file());
}

/// The host path a container path of the gateway service is mounted from.
fn mounted_from(container_path: &str) -> std::path::PathBuf {
    let compose = compose();
    let volumes = strings(service(&compose, "passerelle").get("volumes"));
    let source = volumes
        .iter()
        .find_map(|volume| {
            let mut parts = volume.split(':');
            let source = parts.next()?;
            (parts.next()? == container_path).then(|| source.to_string())
        })
        .unwrap_or_else(|| panic!("{container_path} is not mounted"));
    repo().join(source)
}

/// The gateway runs the production configuration, as the container sees
/// it (TLS files made here stand in for the operator's).
#[test]
fn gateway_runs_the_production_configuration() {
    let compose = compose();
    let passerelle = service(&compose, "passerelle");
    let mut env: BTreeMap<String, String> = passerelle
        .get("environment")
        .and_then(Value::as_mapping)
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().unwrap().to_string(),
                v.as_str().unwrap().to_string(),
            )
        })
        .collect();
    let command = strings(passerelle.get("command"));
    assert_eq!(command[0], "--config");
    let config_file = mounted_from(&command[1]);
    assert!(config_file.ends_with("deploy/passerelle.production.toml"));
    // The files the operator puts in deploy/tls, made here.
    let tls = tempfile::tempdir().unwrap();
    crate::tls_listeners::write_server_files(tls.path(), "passerelle");
    assert!(mounted_from(&env["PASSERELLE_TLS_DIR"]).ends_with("deploy/tls"));
    env.insert(
        "PASSERELLE_TLS_DIR".into(),
        tls.path().display().to_string(),
    );
    let clients_file = mounted_from(&env["PASSERELLE_CLIENTS_FILE"]);
    env.insert(
        "PASSERELLE_CLIENTS_FILE".into(),
        clients_file.display().to_string(),
    );
    let config = Config::load(Some(&config_file), &env).expect("compose environment is valid");
    // Both listeners on every interface of the container, TLS only, and
    // published on exactly their ports.
    let ports = strings(passerelle.get("ports"));
    for (listen, tls, plaintext) in [
        (
            config.http.listen,
            &config.http.tls,
            config.http.allow_plaintext,
        ),
        (
            config.mllp.listen,
            &config.mllp.tls,
            config.mllp.allow_plaintext,
        ),
    ] {
        assert!(listen.ip().is_unspecified());
        assert!(tls.is_some() && !plaintext);
        assert!(
            ports.contains(&format!("{0}:{0}", listen.port())),
            "{ports:?}"
        );
    }
    assert_eq!(ports.len(), 2, "{ports:?}");
    assert!(config.mllp.tls.as_ref().unwrap().require_client_cert);
    assert!(!config.security.local_admin);
    assert_eq!(
        config.storage.backend,
        gateway::config::StorageBackend::Postgres
    );
    assert!(config
        .storage
        .postgres_url
        .as_deref()
        .unwrap()
        .contains("@postgres:5432/"));
    // The data directory is the persistent volume.
    let data_dir = config.storage.data_dir.display().to_string();
    assert!(
        strings(passerelle.get("volumes"))
            .iter()
            .any(|v| v.ends_with(&format!(":{data_dir}"))),
        "data_dir {data_dir} is not on a volume"
    );
}

/// passerelle.example.toml lists every key with its embedded default.
#[test]
fn example_configuration_equals_the_defaults() {
    let example = Config::load(
        Some(&repo().join("passerelle.example.toml")),
        &BTreeMap::new(),
    )
    .unwrap();
    assert_eq!(
        example,
        Config::default(),
        "passerelle.example.toml drifted from the defaults"
    );
}

#[test]
fn prometheus_scrapes_the_gateway_metrics_endpoint() {
    let text = std::fs::read_to_string(repo().join("deploy/prometheus/prometheus.yml")).unwrap();
    let prometheus: Value = serde_yaml_ng::from_str(&text).unwrap();
    let job = &prometheus
        .get("scrape_configs")
        .and_then(Value::as_sequence)
        .unwrap()[0];
    assert_eq!(
        job.get("metrics_path").and_then(Value::as_str),
        Some("/metrics")
    );
    let targets = strings(
        job.get("static_configs")
            .and_then(|s| s.get(0))
            .and_then(|s| s.get("targets")),
    );
    // The production HTTPS port, by the name the server certificate
    // must hold.
    assert_eq!(targets, ["passerelle:8443"]);
    assert_eq!(job.get("scheme").and_then(Value::as_str), Some("https"));
    let tls = job.get("tls_config").unwrap();
    assert_eq!(
        tls.get("server_name").and_then(Value::as_str),
        Some("passerelle")
    );
    assert!(tls
        .get("ca_file")
        .and_then(Value::as_str)
        .unwrap()
        .starts_with("/etc/prometheus/secrets/"));
    let ports = strings(service(&compose(), "prometheus").get("ports"));
    assert_eq!(ports, ["127.0.0.1:9090:9090"]);
    // /metrics needs the metrics scope: Prometheus sends a key.
    assert_eq!(
        job.get("authorization")
            .and_then(|a| a.get("credentials_file"))
            .and_then(Value::as_str),
        Some("/etc/prometheus/secrets/passerelle-metrics.key")
    );
}

/// Only the gateway's TLS ports are published beyond loopback (checked
/// against its configuration above), PostgreSQL not at all, and no
/// service carries a password of its own.
#[test]
fn nothing_is_exposed_and_no_password_is_shipped() {
    let compose = compose();
    for port in strings(service(&compose, "prometheus").get("ports")) {
        assert!(
            port.starts_with("127.0.0.1:"),
            "prometheus publishes {port}"
        );
    }
    assert_eq!(
        strings(service(&compose, "passerelle").get("ports")),
        ["8443:8443", "2576:2576"]
    );
    assert!(service(&compose, "postgres").get("ports").is_none());
    let password = service(&compose, "postgres")
        .get("environment")
        .and_then(|e| e.get("POSTGRES_PASSWORD"))
        .and_then(Value::as_str)
        .unwrap();
    assert!(password.starts_with("${POSTGRES_PASSWORD:?"), "{password}");
}
