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

#[test]
fn gateway_environment_is_valid_configuration_matching_defaults() {
    let compose = compose();
    let passerelle = service(&compose, "passerelle");
    let env: BTreeMap<String, String> = passerelle
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
    let mounted_config = repo().join("passerelle.example.toml");
    let config = Config::load(Some(&mounted_config), &env).expect("compose environment is valid");
    let defaults = Config::default();
    // Inside a container it listens on all interfaces, on the default ports.
    assert_eq!(config.http.listen.port(), defaults.http.listen.port());
    assert_eq!(config.mllp.listen.port(), defaults.mllp.listen.port());
    assert!(config.http.listen.ip().is_unspecified());
    // Published on the host's loopback only: the listeners are plain.
    let ports = strings(passerelle.get("ports"));
    assert!(
        ports.contains(&format!("127.0.0.1:{0}:{0}", defaults.http.listen.port())),
        "{ports:?}"
    );
    assert!(
        ports.contains(&format!("127.0.0.1:{0}:{0}", defaults.mllp.listen.port())),
        "{ports:?}"
    );
    // The data directory is the persistent volume.
    let data_dir = config.storage.data_dir.display().to_string();
    assert!(
        strings(passerelle.get("volumes"))
            .iter()
            .any(|v| v.ends_with(&format!(":{data_dir}"))),
        "data_dir {data_dir} is not on a volume"
    );
    // The example file mounted as config equals the embedded defaults.
    let example = Config::load(Some(&mounted_config), &BTreeMap::new()).unwrap();
    assert_eq!(
        example, defaults,
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
    let port = Config::default().http.listen.port();
    assert_eq!(targets, [format!("passerelle:{port}")]);
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

/// Nothing is published on every interface, PostgreSQL not at all, and no
/// service carries a password of its own.
#[test]
fn nothing_is_exposed_and_no_password_is_shipped() {
    let compose = compose();
    for name in ["passerelle", "postgres", "prometheus"] {
        for port in strings(service(&compose, name).get("ports")) {
            assert!(port.starts_with("127.0.0.1:"), "{name} publishes {port}");
        }
    }
    assert!(service(&compose, "postgres").get("ports").is_none());
    let password = service(&compose, "postgres")
        .get("environment")
        .and_then(|e| e.get("POSTGRES_PASSWORD"))
        .and_then(Value::as_str)
        .unwrap();
    assert!(password.starts_with("${POSTGRES_PASSWORD:?"), "{password}");
}
