//! Gateway configuration: the typed settings, their embedded defaults, and the
//! one place where a TOML file, `${VAR}` references inside it and
//! `PASSERELLE_<SECTION>__<KEY>` environment overrides are combined.
//!
//! Environment expansion happens here and nowhere else, so that a value seen in
//! `check-config` is exactly the value the gateway runs with.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "PASSERELLE_";

/// Everything the gateway can be configured with.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub http: HttpConfig,
    pub mllp: MllpConfig,
    pub hl7v2: Hl7v2Config,
    pub storage: StorageConfig,
    pub log: LogConfig,
}

/// The HTTP listener (FHIR API, HL7 v2 over HTTP, health and metrics).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// Time a request may take before it is answered 503 with a timeout outcome.
    pub request_timeout_secs: u64,
    /// Requests processed at once; further requests are shed with 503.
    pub max_concurrent_requests: usize,
    /// On SIGINT/SIGTERM, how long in-flight requests may take to finish.
    pub shutdown_grace_secs: u64,
    /// Base URL the gateway is reached at, used in absolute links; derived
    /// from `listen` when absent.
    pub public_base_url: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 16 * 1024 * 1024,
            request_timeout_secs: 30,
            max_concurrent_requests: 512,
            shutdown_grace_secs: 30,
            public_base_url: None,
        }
    }
}

impl HttpConfig {
    pub fn base_url(&self) -> String {
        match &self.public_base_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("http://{}", self.listen),
        }
    }
}

/// The MLLP (HL7 v2 over TCP) listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MllpConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// Largest HL7 v2 message accepted in one frame, in bytes.
    pub max_message_bytes: usize,
    pub max_connections: usize,
    /// A connection idle for this long is closed.
    pub idle_timeout_secs: u64,
}

impl Default for MllpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 2575)),
            max_message_bytes: 16 * 1024 * 1024,
            max_connections: 256,
            idle_timeout_secs: 600,
        }
    }
}

/// When the intake sends an accept acknowledgement in enhanced mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AcceptAckPolicy {
    /// Every message gets an answer, whatever MSH-15 says: MLLP senders wait
    /// for one, and a silent receiver makes them time out and resend.
    #[default]
    Always,
    /// Follow MSH-15 to the letter (AL, NE, ER, SU).
    AsRequested,
}

/// HL7 v2 intake, whatever the transport.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Hl7v2Config {
    pub accept_acks: AcceptAckPolicy,
}

/// Where durable state lives.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter directive, e.g. `info` or `gateway=debug,info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: "info".to_string(),
        }
    }
}

/// Why a configuration could not be loaded; every variant names where the
/// fault is (file and line, or environment variable).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: line {line}, column {column}{key}: {message}", key = key.as_ref().map(|k| format!(", key `{k}`")).unwrap_or_default())]
    Invalid {
        path: String,
        line: usize,
        column: usize,
        key: Option<String>,
        message: String,
    },
    #[error("{path}: line {line}: environment variable `{name}` is not set (write `${{{name}:-default}}` to give a default)")]
    UnsetVariable {
        path: String,
        line: usize,
        name: String,
    },
    #[error("{path}: line {line}: unterminated `${{` reference")]
    UnterminatedReference { path: String, line: usize },
    #[error("environment variable `{var}`: {message}")]
    Override { var: String, message: String },
}

impl Config {
    /// Loads the configuration: the file when given (embedded defaults
    /// otherwise), then `PASSERELLE_<SECTION>__<KEY>` overrides from `env`.
    pub fn load(
        path: Option<&Path>,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let (name, text) = match path {
            Some(path) => {
                let name = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: name.clone(),
                    source,
                })?;
                (name, text)
            }
            None => ("<defaults>".to_string(), String::new()),
        };
        Self::from_toml(&name, &text, env)
    }

    /// Parses `text` (named `name` in errors) and applies overrides from `env`.
    pub fn from_toml(
        name: &str,
        text: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let expanded = expand_env(name, text, env)?;
        // Deserialising the text itself (not a value tree) keeps spans, so
        // errors can name the line.
        let config: Config = toml::from_str(&expanded).map_err(|err| {
            let (line, column) = err
                .span()
                .map(|span| line_and_column(&expanded, span.start))
                .unwrap_or((1, 1));
            ConfigError::Invalid {
                path: name.to_string(),
                line,
                column,
                key: key_at(&expanded, line, err.message()),
                message: err.message().trim().to_string(),
            }
        })?;
        apply_overrides(config, env)
    }
}

/// Applies `PASSERELLE_<SECTION>__<KEY>=value` variables. The value is read as
/// a TOML value when it is one (`8080`, `true`) and as a string otherwise.
fn apply_overrides(config: Config, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
    let overrides: Vec<(&String, &String)> = env
        .iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.contains("__"))
        .collect();
    if overrides.is_empty() {
        return Ok(config);
    }
    let mut tree = toml::Table::try_from(&config).map_err(|err| ConfigError::Override {
        var: "(all)".to_string(),
        message: err.to_string(),
    })?;
    for (var, raw) in overrides {
        let path: Vec<String> = var[ENV_PREFIX.len()..]
            .split("__")
            .map(|part| part.to_ascii_lowercase())
            .collect();
        let value = parse_override_value(raw);
        set_path(&mut tree, &path, value).map_err(|message| ConfigError::Override {
            var: var.clone(),
            message,
        })?;
    }
    Config::deserialize(toml::Value::Table(tree)).map_err(|err| ConfigError::Override {
        var: env
            .keys()
            .filter(|k| k.starts_with(ENV_PREFIX) && k.contains("__"))
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
        message: err.message().trim().to_string(),
    })
}

fn parse_override_value(raw: &str) -> toml::Value {
    let probe = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&probe) {
        Ok(mut table) => table
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    match path {
        [] => Err("empty key".to_string()),
        [key] => {
            if !table.contains_key(key) && !matches!(key.as_str(), "public_base_url") {
                return Err(format!("unknown configuration key `{key}`"));
            }
            table.insert(key.clone(), value);
            Ok(())
        }
        [section, rest @ ..] => match table.get_mut(section) {
            Some(toml::Value::Table(inner)) => set_path(inner, rest, value),
            _ => Err(format!("unknown configuration section `{section}`")),
        },
    }
}

/// Replaces `${NAME}` and `${NAME:-default}` with values from `env`; `$${`
/// stands for a literal `${`. Comments are left as they are.
fn expand_env(
    name: &str,
    text: &str,
    env: &BTreeMap<String, String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let code_end = comment_start(line).unwrap_or(line.len());
        let (code, comment) = line.split_at(code_end);
        out.push_str(&expand_line(name, index + 1, code, env)?);
        out.push_str(comment);
    }
    Ok(out)
}

/// Byte offset of a `#` that starts a comment (outside any string).
fn comment_start(line: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (offset, c) in line.char_indices() {
        match quote {
            Some('"') if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' => return Some(offset),
            None => {}
        }
    }
    None
}

fn expand_line(
    name: &str,
    line: usize,
    text: &str,
    env: &BTreeMap<String, String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("${") {
        if pos > 0 && rest.as_bytes().get(pos - 1) == Some(&b'$') {
            out.push_str(&rest[..pos - 1]);
            out.push_str("${");
            rest = &rest[pos + 2..];
            continue;
        }
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        let Some(end) = after.find('}') else {
            return Err(ConfigError::UnterminatedReference {
                path: name.to_string(),
                line,
            });
        };
        let reference = &after[..end];
        let (var, default) = match reference.split_once(":-") {
            Some((var, default)) => (var, Some(default)),
            None => (reference, None),
        };
        match (env.get(var), default) {
            (Some(value), _) => out.push_str(value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => {
                return Err(ConfigError::UnsetVariable {
                    path: name.to_string(),
                    line,
                    name: var.to_string(),
                })
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The dotted key an error is about: the table header above `line` plus the
/// key on that line, or the field named in the message.
fn key_at(text: &str, line: usize, message: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let here = lines.get(line.checked_sub(1)?)?.trim();
    let key_here = here
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    let section = lines
        .iter()
        .take(line)
        .rev()
        .map(|l| l.trim())
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    let key = key_here.or_else(|| {
        // "missing field `x`" points at the table, not at a key line.
        message
            .split('`')
            .nth(1)
            .map(str::to_string)
            .filter(|_| message.contains("missing field"))
    });
    match (section, key) {
        (Some(section), Some(key)) => Some(format!("{section}.{key}")),
        (None, Some(key)) => Some(key),
        (Some(section), None) => Some(section),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_file_gives_embedded_defaults() {
        let config = Config::load(None, &env(&[])).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.storage.data_dir, PathBuf::from("./data"));
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let text = "[http]\nlisten = \"127.0.0.1:9000\"\nlisen = 3\n";
        let err = Config::from_toml("gw.toml", text, &env(&[])).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("gw.toml: line 3"), "{message}");
        assert!(message.contains("http.lisen"), "{message}");
        assert!(message.contains("unknown field"), "{message}");
    }

    #[test]
    fn wrong_type_is_named_with_its_line() {
        let text = "[log]\nformat = \"json\"\n\n[http]\nmax_body_bytes = \"big\"\n";
        let err = Config::from_toml("gw.toml", text, &env(&[])).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("line 5"), "{message}");
        assert!(message.contains("http.max_body_bytes"), "{message}");
    }

    #[test]
    fn env_references_are_expanded_once_here() {
        let text = "[storage]\ndata_dir = \"${DATA:-/var/lib/passerelle}\"\n[http]\nlisten = \"127.0.0.1:${PORT}\"\n";
        let config = Config::from_toml("gw.toml", text, &env(&[("PORT", "9001")])).unwrap();
        assert_eq!(config.http.listen.port(), 9001);
        assert_eq!(
            config.storage.data_dir,
            PathBuf::from("/var/lib/passerelle")
        );
        let err = Config::from_toml("gw.toml", text, &env(&[])).unwrap_err();
        assert!(err.to_string().contains("line 4"), "{err}");
        assert!(err.to_string().contains("`PORT`"), "{err}");
    }

    #[test]
    fn references_in_comments_are_left_alone() {
        let text = "# use ${UNSET} here\n[log]\nlevel = \"debug\" # or ${ALSO_UNSET}\n";
        let config = Config::from_toml("gw.toml", text, &env(&[])).unwrap();
        assert_eq!(config.log.level, "debug");
    }

    #[test]
    fn escaped_reference_is_literal() {
        let text = "[log]\nlevel = \"$${NOT_EXPANDED}\"\n";
        let config = Config::from_toml("gw.toml", text, &env(&[])).unwrap();
        assert_eq!(config.log.level, "${NOT_EXPANDED}");
    }

    #[test]
    fn environment_overrides_file_values() {
        let text = "[http]\nlisten = \"127.0.0.1:9000\"\n";
        let config = Config::from_toml(
            "gw.toml",
            text,
            &env(&[
                ("PASSERELLE_HTTP__LISTEN", "127.0.0.1:9100"),
                ("PASSERELLE_LOG__FORMAT", "json"),
                ("PASSERELLE_MLLP__ENABLED", "false"),
                ("PASSERELLE_CONFIG", "ignored: no section separator"),
            ]),
        )
        .unwrap();
        assert_eq!(config.http.listen.port(), 9100);
        assert_eq!(config.log.format, LogFormat::Json);
        assert!(!config.mllp.enabled);
    }

    #[test]
    fn unknown_override_names_the_variable() {
        let err =
            Config::from_toml("gw.toml", "", &env(&[("PASSERELLE_HTTP__LISTN", "x")])).unwrap_err();
        assert!(err.to_string().contains("PASSERELLE_HTTP__LISTN"), "{err}");
    }
}
