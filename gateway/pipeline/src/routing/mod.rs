//! Routing: which accepted messages go to which targets, and with which
//! mapper. Owns the compiled route table and the mapping stage that turns
//! journal rows into outbox rows (`stage`).
//!
//! Every route whose criteria all hold applies, so one message can fan out
//! through several routes; a target reached by two routes gets the message
//! once, from the first route in the file.

pub mod stage;

use std::collections::BTreeMap;

use passerelle_config::{Config, RouteConfig, TargetConfig, TargetKind};
use passerelle_storage::UnmappedMessage;

/// Name of the implicit target and route used when the configuration has
/// neither routes nor targets: every message is mapped and kept locally.
pub const DEFAULT_LOCAL_TARGET: &str = "local";

/// A route ready to match messages.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    /// Its criteria, matched by the configuration's one rule
    /// ([`RouteConfig::matches`]), which the intake uses too.
    criteria: RouteConfig,
    pub mapper: Option<String>,
    pub targets: Vec<String>,
}

impl Route {
    fn from_config(config: &RouteConfig) -> Route {
        Route {
            name: config.name.clone(),
            criteria: config.clone(),
            mapper: config.mapper.clone(),
            targets: config.targets.clone(),
        }
    }

    /// Whether `message` meets every criterion of the route.
    pub fn matches(&self, message: &UnmappedMessage) -> bool {
        self.criteria.matches(
            &message.transport,
            &message.sending_application,
            &message.sending_facility,
            &message.message_type,
        )
    }
}

/// The routes and targets in force.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<Route>,
    targets: BTreeMap<String, TargetConfig>,
}

impl RouteTable {
    pub fn from_config(config: &Config) -> RouteTable {
        let mut targets = config.targets.clone();
        let mut routes: Vec<Route> = config.routes.iter().map(Route::from_config).collect();
        let names_local = routes
            .iter()
            .any(|r| r.targets.iter().any(|t| t == DEFAULT_LOCAL_TARGET));
        if config.routes.is_empty() && config.targets.is_empty() {
            routes.push(Route::from_config(&RouteConfig {
                name: "default".to_string(),
                sources: Vec::new(),
                sending_applications: Vec::new(),
                sending_facilities: Vec::new(),
                message_types: Vec::new(),
                // Every format: an HPRIM file is kept like an HL7 message.
                format: "*".to_string(),
                mapper: None,
                targets: vec![DEFAULT_LOCAL_TARGET.to_string()],
                ack: Default::default(),
            }));
        }
        if (names_local || routes.iter().any(|r| r.name == "default"))
            && !targets.contains_key(DEFAULT_LOCAL_TARGET)
        {
            targets.insert(DEFAULT_LOCAL_TARGET.to_string(), local_target());
        }
        RouteTable { routes, targets }
    }

    /// Routes that apply to `message`, in configuration order.
    pub fn matching<'a>(&'a self, message: &'a UnmappedMessage) -> impl Iterator<Item = &'a Route> {
        self.routes
            .iter()
            .filter(move |route| route.matches(message))
    }

    pub fn targets(&self) -> &BTreeMap<String, TargetConfig> {
        &self.targets
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

fn local_target() -> TargetConfig {
    TargetConfig {
        kind: TargetKind::Local,
        url: None,
        timeout_secs: 30,
        concurrency: 1,
        max_attempts: 0,
        backoff_initial_ms: 500,
        backoff_max_ms: 300_000,
        circuit_failures: 5,
        circuit_open_ms: 10_000,
        auth: None,
        tls: None,
        allow_insecure: false,
        dmp: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap as Env;

    fn message(transport: &str, app: &str, facility: &str, kind: &str) -> UnmappedMessage {
        UnmappedMessage {
            journal_id: 1,
            transport: transport.into(),
            sending_application: app.into(),
            sending_facility: facility.into(),
            message_type: kind.into(),
            raw: Vec::new(),
        }
    }

    fn table(toml: &str) -> RouteTable {
        RouteTable::from_config(&Config::from_toml("t.toml", toml, &Env::new()).unwrap())
    }

    #[test]
    fn no_routes_and_no_targets_keep_everything_locally() {
        let table = table("");
        let adt = message("mllp", "A", "B", "ADT^A01");
        let routed: Vec<_> = table.matching(&adt).collect();
        assert_eq!(routed.len(), 1);
        assert_eq!(routed[0].targets, vec!["local"]);
        assert_eq!(table.targets()["local"].kind, TargetKind::Local);
    }

    #[test]
    fn criteria_all_hold_and_absent_ones_match_anything() {
        let table = table(
            r#"
[targets.hospital]
kind = "fhir"
url = "http://127.0.0.1:1/fhir"
allow_insecure = true

[[routes]]
name = "lab"
sources = ["mllp"]
sending_facilities = ["LAB1"]
message_types = ["ORU^R01", "ADT"]
targets = ["hospital"]

[[routes]]
name = "all"
targets = ["hospital", "local"]
"#,
        );
        let names = |m: &UnmappedMessage| {
            table
                .matching(m)
                .map(|r| r.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&message("mllp", "X", "LAB1", "ORU^R01")),
            ["lab", "all"]
        );
        assert_eq!(
            names(&message("mllp", "X", "LAB1", "ADT^A08")),
            ["lab", "all"]
        );
        assert_eq!(names(&message("http", "X", "LAB1", "ORU^R01")), ["all"]);
        assert_eq!(names(&message("mllp", "X", "LAB2", "ORU^R01")), ["all"]);
        assert_eq!(names(&message("mllp", "X", "LAB1", "ORM^O01")), ["all"]);
        assert!(table.targets().contains_key("local"));
    }

    #[test]
    fn a_route_naming_an_unknown_target_is_refused_with_its_line() {
        let error = Config::from_toml(
            "t.toml",
            "[[routes]]\nname = \"r\"\ntargets = [\"nowhere\"]\n",
            &Env::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("t.toml: line 3"), "{error}");
        assert!(error.contains("no target named `nowhere`"), "{error}");
    }

    #[test]
    fn a_fhir_target_needs_a_url() {
        let error = Config::from_toml("t.toml", "[targets.h]\nkind = \"fhir\"\n", &Env::new())
            .unwrap_err()
            .to_string();
        assert!(error.contains("targets.h.url"), "{error}");
    }
}
