//! Gateway configuration: the typed settings, their embedded defaults, and the
//! one place where a TOML file, `${VAR}` references inside it and
//! `PASSERELLE_<SECTION>__<KEY>` environment overrides are combined.
//!
//! Environment expansion happens here and nowhere else, so that a value seen in
//! `check-config` is exactly the value the gateway runs with. Files the
//! configuration names (the scripts directory, code map CSVs) are checked
//! here too, relative paths taken from the configuration file's directory,
//! so that a broken reference stops the gateway at start (exit 2).

// Input must never reach a panic: no unwrap/expect/panic outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use mapping_settings::{BuiltinConfig, CdaSettings, CodeMap, ScriptLimits, SiteTimeZone};
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
    pub mapping: MappingConfig,
    /// Where mapped messages go, by name (`[targets.NAME]`).
    pub targets: BTreeMap<String, TargetConfig>,
    /// Which messages go where (`[[routes]]`). With no routes and no
    /// targets, every message is mapped and kept by the `local` target.
    pub routes: Vec<RouteConfig>,
    pub delivery: DeliveryConfig,
    pub fhir: FhirApiConfig,
    pub security: SecurityConfig,
    /// HPRIM files: `POST /hprim` and the watched directory.
    pub hprim: HprimConfig,
    /// How long each class of data is kept (`[retention]`).
    pub retention: RetentionConfig,
    /// The audit trail's export (`[audit]`).
    pub audit: AuditConfig,
}

/// The audit trail (`[audit]`): it is always kept in the store; this
/// section sends it on as well.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// `[audit.syslog]`: each record sent to a syslog collector (an IHE
    /// ATNA audit record repository, a SIEM); absent: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syslog: Option<SyslogConfig>,
}

/// Export of the audit trail to a syslog collector (`[audit.syslog]`):
/// every record, in chain order, as an RFC 5424 message over TLS (RFC
/// 5425, octet-counted), as IHE ATNA's Record Audit Event (ITI-20) sends
/// them; at least once (the position reached is kept in the store).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// `host:port` of the collector (6514 is syslog over TLS's port).
    pub address: String,
    /// The name the collector's certificate must carry; by default the
    /// host of `address`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// PEM: the authorities the collector's certificate is checked
    /// against; absent: the Mozilla roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// PEM: the gateway's certificate chain and key for mutual TLS (IHE
    /// ATNA's node authentication); both or neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<PathBuf>,
    /// The HOSTNAME of each message; by default the machine's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The APP-NAME of each message.
    #[serde(default = "SyslogConfig::default_app_name")]
    pub app_name: String,
    /// Records read and sent at once.
    #[serde(default = "SyslogConfig::default_batch")]
    pub batch: usize,
    /// How often the trail is looked at for new records.
    #[serde(default = "SyslogConfig::default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Connection and handshake deadline; the longest wait between two
    /// tries of an unreachable collector is ten times as long.
    #[serde(default = "SyslogConfig::default_timeout_secs")]
    pub timeout_secs: u64,
}

impl SyslogConfig {
    fn default_app_name() -> String {
        "passerelle".to_string()
    }
    fn default_batch() -> usize {
        500
    }
    fn default_poll_interval_ms() -> u64 {
        1_000
    }
    fn default_timeout_secs() -> u64 {
        10
    }

    /// The host and port of `address`.
    pub fn host_and_port(&self) -> Option<(&str, u16)> {
        let (host, port) = self.address.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = port.parse().ok().filter(|port| *port != 0)?;
        (!host.is_empty()).then_some((host, port))
    }

    /// The TLS of the connection, in the shape of a target's.
    pub fn tls(&self) -> TargetTls {
        TargetTls {
            ca_file: self.ca_file.clone(),
            client_cert_file: self.client_cert_file.clone(),
            client_key_file: self.client_key_file.clone(),
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        for path in [
            &mut self.ca_file,
            &mut self.client_cert_file,
            &mut self.client_key_file,
        ]
        .into_iter()
        .flatten()
        {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }
}

/// Retention (`[retention]`): how many days each class of data is kept,
/// each absent by default (kept for ever). A background task deletes what
/// is older, `batch` rows per transaction, every `check_interval_secs`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Messages as received (the journal) whose every delivery is over,
    /// with their delivery rows and attempts, and the `local` target's
    /// copies of their Bundles. Dead letters keep their message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal_payloads_days: Option<u32>,
    /// The Bundles of delivered deliveries (the delivery row stays), and
    /// the `local` target's Bundle copies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_bundles_days: Option<u32>,
    /// Dead letters (deliveries given up on) and their attempts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letters_days: Option<u32>,
    /// The repository's past versions (never a current version).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository_history_days: Option<u32>,
    /// Audit records, oldest first; the chain keeps verifying from its
    /// new start, and each removal is itself recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_records_days: Option<u32>,
    /// Rows deleted per transaction.
    pub batch: usize,
    /// How often the policy runs (it also runs at start).
    pub check_interval_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            journal_payloads_days: None,
            delivered_bundles_days: None,
            dead_letters_days: None,
            repository_history_days: None,
            audit_records_days: None,
            batch: 1000,
            check_interval_secs: 3600,
        }
    }
}

/// HPRIM Santé and HPRIM Net files (`[hprim]`): besides `POST /hprim`, an
/// optional directory the gateway watches, as labs' file drops expect. A
/// file is taken once its size and modification time have not changed for
/// `settle_ms` (a file renamed in is complete at once, one being copied
/// is not), journaled, then moved to `processed/` (or to `failed/` with a
/// `NAME.reason` beside it) under the watched directory.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HprimConfig {
    /// The directory watched; absent: no directory is watched.
    pub watch_dir: Option<PathBuf>,
    /// How often the directory is listed.
    pub poll_interval_ms: u64,
    /// How long a file must stay unchanged before it is taken.
    pub settle_ms: u64,
    /// The networks of the patients the watched files bring (who may read
    /// them, as a client's `networks` for what it sends).
    pub networks: Vec<String>,
}

impl Default for HprimConfig {
    fn default() -> Self {
        HprimConfig {
            watch_dir: None,
            poll_interval_ms: 500,
            settle_ms: 1_000,
            networks: Vec::new(),
        }
    }
}

/// Who may call the gateway (see `docs/security.md`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// On start, make `<data_dir>/local-admin.key` when it is missing and
    /// accept its key as the `local-admin` client (every scope); MLLP
    /// senders on loopback are accepted as that client.
    pub local_admin: bool,
    /// Clients managed as code, besides those `passerelle clients add`
    /// stores (`[[security.clients]]`).
    pub clients: Vec<ClientConfig>,
    /// A file of further `[[security.clients]]` entries (what `clients add
    /// --print-config` prints), read again every 2 s while running, so a
    /// deployment managing clients as files adds or removes one without a
    /// restart. Relative to this file's directory.
    pub clients_file: Option<PathBuf>,
    /// Authorisation servers whose JWT access tokens identify clients
    /// (SMART Backend Services), `[[security.issuers]]`.
    pub issuers: Vec<IssuerConfig>,
}

/// One `[[security.issuers]]`: an authorisation server whose signed
/// access tokens the gateway accepts as bearer credentials.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Its name here: its clients are named `<name>:<client_id or sub>`.
    pub name: String,
    /// The `iss` of its tokens.
    pub issuer: String,
    /// What a token's `aud` must hold (this gateway's FHIR base URL, as
    /// the authorisation server knows it).
    pub audience: String,
    /// The most its tokens may grant; a token's other scopes are ignored.
    pub scopes: Vec<String>,
    /// The networks its clients belong to.
    #[serde(default)]
    pub networks: Vec<String>,
    /// Its signing keys: a JWKS file (re-read when it changes) or URL
    /// (fetched at start, then every `jwks_refresh_secs`).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    #[serde(default)]
    pub jwks_url: Option<String>,
    #[serde(default = "default_jwks_refresh_secs")]
    pub jwks_refresh_secs: u64,
    /// PEM authorities to trust for `jwks_url` instead of the built-in roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept an `http://` `jwks_url` (a test server only: whoever can
    /// change the keys in transit can mint tokens).
    #[serde(default)]
    pub allow_insecure: bool,
}

fn default_jwks_refresh_secs() -> u64 {
    300
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            local_admin: true,
            clients: Vec::new(),
            clients_file: None,
            issuers: Vec::new(),
        }
    }
}

/// One client of `[[security.clients]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub name: String,
    /// What `passerelle clients add --print-config` prints: the key's id
    /// and slow hash (`<id>$pbkdf2-sha256$...`), never the key itself.
    /// Empty for a client known by its TLS certificate alone.
    #[serde(default)]
    pub key_verifier: String,
    #[serde(default)]
    pub networks: Vec<String>,
    /// SMART scopes (`system/Patient.rs`) and the gateway's own
    /// (`passerelle/admin`, `passerelle/metrics`, `passerelle/hl7v2`,
    /// `passerelle/convert`).
    pub scopes: Vec<String>,
    /// Addresses or CIDR ranges its MLLP connections come from (MLLP has
    /// no credentials of its own without TLS client certificates); needs
    /// the `passerelle/hl7v2` scope.
    #[serde(default)]
    pub mllp_addresses: Vec<String>,
    /// DNS names (or IP addresses) a TLS client certificate from a
    /// listener's `client_ca_file` must be valid for to identify this
    /// client, on HTTPS and on MLLP over TLS.
    #[serde(default)]
    pub certificate_names: Vec<String>,
    /// The MSH-3 values (sending application) its HL7 v2 messages may
    /// carry, each whole (`LABO^1.2.250.1.71^ISO`) or its namespace id
    /// (`LABO`); empty: any. With `sending_facilities`, what tells apart
    /// systems sending from one address.
    #[serde(default)]
    pub sending_applications: Vec<String>,
    /// The same for MSH-4 (sending facility).
    #[serde(default)]
    pub sending_facilities: Vec<String>,
}

/// The FHIR API on `/fhir`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FhirApiConfig {
    /// A `fhir` target whose server answers reads, searches and patient
    /// operations instead of Passerelle's own repository (proxy mode, with
    /// the target's URL, auth and TLS). Absent: the repository answers.
    pub upstream: Option<String>,
}

/// The HTTP listener (FHIR API, HL7 v2 over HTTP, health and metrics).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// Memory the requests being processed may hold at once, estimated
    /// from their body sizes; requests over it wait their turn (at most
    /// the request timeout, then 503).
    pub max_request_memory_bytes: u64,
    /// Time a request may take before it is answered 503 with a timeout outcome.
    pub request_timeout_secs: u64,
    /// Requests processed at once; further requests are shed with 503.
    pub max_concurrent_requests: usize,
    /// Connections open at once; a connection over the limit is closed as
    /// soon as it is accepted.
    pub max_connections: usize,
    /// On SIGINT/SIGTERM, how long in-flight requests may take to finish.
    pub shutdown_grace_secs: u64,
    /// Base URL the gateway is reached at, used in absolute links; derived
    /// from `listen` when absent.
    pub public_base_url: Option<String>,
    /// Host names `/admin` answers to besides loopback names and the host
    /// of `public_base_url` (a guard against DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// HTTPS: the listener speaks TLS only.
    pub tls: Option<ListenerTls>,
    /// Serve plain HTTP on an address other than loopback (behind a TLS
    /// terminating proxy on a private network); warned about at start.
    pub allow_plaintext: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 16 * 1024 * 1024,
            max_request_memory_bytes: 512 * 1024 * 1024,
            request_timeout_secs: 30,
            max_concurrent_requests: 512,
            max_connections: 1024,
            shutdown_grace_secs: 30,
            public_base_url: None,
            allowed_hosts: Vec::new(),
            tls: None,
            allow_plaintext: false,
        }
    }
}

impl HttpConfig {
    pub fn base_url(&self) -> String {
        match &self.public_base_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None if self.tls.is_some() => format!("https://{}", self.listen),
            None => format!("http://{}", self.listen),
        }
    }
}

/// TLS on a listener (`[http.tls]`, `[mllp.tls]`): its certificate, and
/// the certificate authority whose client certificates it accepts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// PEM: the listener's certificate, then its chain.
    pub cert_file: PathBuf,
    /// PEM: its private key (PKCS#8, PKCS#1 or SEC1); mode 0600.
    pub key_file: PathBuf,
    /// PEM: the authorities whose client certificates are accepted
    /// (mutual TLS). A client certificate names its client through
    /// `certificate_names` in `[[security.clients]]`.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// Refuse a connection without a client certificate from
    /// `client_ca_file` (IHE ATNA's mutual authentication).
    #[serde(default)]
    pub require_client_cert: bool,
    /// How often the files are checked for a change; a changed
    /// certificate is used by the next connection, without a restart.
    #[serde(default = "default_tls_reload_secs")]
    pub reload_interval_secs: u64,
}

fn default_tls_reload_secs() -> u64 {
    10
}

impl ListenerTls {
    fn resolve_paths(&mut self, base: &Path) {
        for path in [&mut self.cert_file, &mut self.key_file]
            .into_iter()
            .chain(self.client_ca_file.as_mut())
        {
            if path.is_relative() {
                *path = base.join(&*path);
            }
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
    /// A frame must arrive whole within this long of its start block, or
    /// the connection is closed (a sender that starts a frame and stops
    /// would hold a connection slot until the idle timeout).
    pub frame_timeout_secs: u64,
    /// MLLP over TLS (IHE ATNA): the listener speaks TLS only.
    pub tls: Option<ListenerTls>,
    /// Serve MLLP in clear on an address other than loopback (a private
    /// network the sender and the gateway share); warned about at start.
    pub allow_plaintext: bool,
}

impl Default for MllpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 2575)),
            max_message_bytes: 16 * 1024 * 1024,
            max_connections: 256,
            idle_timeout_secs: 600,
            frame_timeout_secs: 30,
            tls: None,
            allow_plaintext: false,
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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hl7v2Config {
    pub accept_acks: AcceptAckPolicy,
    /// How long a message of an `ack = "after-mapping"` route waits for its
    /// mapping before it is answered anyway (AE, saying the message is
    /// kept and will be mapped).
    pub after_mapping_timeout_ms: u64,
    /// Where enhanced-mode senders (MSH-16 `AL`, `ER`, `SU`) get their
    /// application acknowledgements, per sender
    /// (`[[hl7v2.application_acks]]`).
    pub application_acks: Vec<ApplicationAckEndpoint>,
}

impl Default for Hl7v2Config {
    fn default() -> Self {
        Hl7v2Config {
            accept_acks: AcceptAckPolicy::default(),
            after_mapping_timeout_ms: 10_000,
            application_acks: Vec::new(),
        }
    }
}

/// One `[[hl7v2.application_acks]]`: the senders it is for (MSH-3 and
/// MSH-4, as a route names them; an empty list matches any) and the
/// endpoint their application acknowledgements go to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationAckEndpoint {
    #[serde(default)]
    pub sending_applications: Vec<String>,
    #[serde(default)]
    pub sending_facilities: Vec<String>,
    /// `mllp://host:port` (an MLLP listener of the sender's), or an
    /// `https://` URL the ACK is POSTed to as `x-application/hl7-v2+er7`.
    pub endpoint: String,
    /// Accept an `http://` endpoint (a test receiver): ACKs carry what the
    /// message said went wrong.
    #[serde(default)]
    pub allow_insecure: bool,
    /// CA certificates (PEM) trusted for an `https://` endpoint, besides
    /// the Mozilla roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// Where an application ACK is sent, as [`ApplicationAckEndpoint::kind`]
/// reads `endpoint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckEndpointKind<'a> {
    /// `host:port` of an MLLP listener.
    Mllp(&'a str),
    /// An `http(s)://` URL to POST to.
    Http(&'a str),
}

impl ApplicationAckEndpoint {
    pub fn serves(&self, sending_application: &str, sending_facility: &str) -> bool {
        listed(&self.sending_applications, sending_application)
            && listed(&self.sending_facilities, sending_facility)
    }

    /// The endpoint's kind and address; `None` when it is neither an
    /// `mllp://host:port` nor an `http(s)://` URL.
    pub fn kind(&self) -> Option<AckEndpointKind<'_>> {
        let endpoint = self.endpoint.as_str();
        if let Some(rest) = endpoint.strip_prefix("mllp://") {
            let address = rest.trim_end_matches('/');
            return address
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
                .then_some(AckEndpointKind::Mllp(address));
        }
        ((endpoint.starts_with("https://") || endpoint.starts_with("http://"))
            && endpoint.parse::<http::Uri>().is_ok())
        .then_some(AckEndpointKind::Http(endpoint))
    }
}

/// The endpoint `[[hl7v2.application_acks]]` gives a sender, the first
/// that serves it.
pub fn application_ack_endpoint<'a>(
    endpoints: &'a [ApplicationAckEndpoint],
    sending_application: &str,
    sending_facility: &str,
) -> Option<&'a ApplicationAckEndpoint> {
    endpoints
        .iter()
        .find(|e| e.serves(sending_application, sending_facility))
}

/// An empty criterion matches anything.
fn listed(list: &[String], value: &str) -> bool {
    list.is_empty() || list.iter().any(|v| v == value)
}

/// Where durable state lives.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub backend: StorageBackend,
    /// The SQLite database's directory (backend `sqlite`).
    pub data_dir: PathBuf,
    /// `postgresql://user@host:port/db` (backend `postgres`).
    pub postgres_url: Option<String>,
    /// A file holding `postgres_url` (read at load into it), for a URL
    /// that carries a password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_url_file: Option<PathBuf>,
    /// This instance's name in leases and delivery attempts; must differ
    /// between instances sharing one PostgreSQL database. Defaults to the
    /// host name and the HTTP port.
    pub instance_id: Option<String>,
    /// Encryption at rest of the SQLite store (SQLCipher): its key comes
    /// from `key_file`, or from the environment variable
    /// `PASSERELLE_STORAGE_KEY`. An unencrypted store is then refused.
    pub encrypted: bool,
    /// The file holding the store's key (mode 0600): 64 hexadecimal digits
    /// (a raw 256-bit key, e.g. `openssl rand -hex 32`) or a passphrase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Lets a gateway reachable beyond this machine (a listener off
    /// loopback) run on a store Passerelle does not encrypt: for
    /// PostgreSQL, whose files the host encrypts (docs/security.md).
    pub allow_unencrypted: bool,
    /// The key, read from `key_file` or `PASSERELLE_STORAGE_KEY` when the
    /// configuration is loaded; never written back out.
    #[serde(skip)]
    pub key: Option<String>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            backend: StorageBackend::Sqlite,
            data_dir: PathBuf::from("./data"),
            postgres_url: None,
            postgres_url_file: None,
            instance_id: None,
            encrypted: false,
            key_file: None,
            allow_unencrypted: false,
            key: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// One SQLite file in `data_dir`: no server needed.
    #[default]
    Sqlite,
    /// A PostgreSQL database, shared by several gateway instances.
    Postgres,
}

/// Kinds of delivery target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// A remote FHIR R4 server: transaction Bundles are POSTed to `url`.
    Fhir,
    /// Passerelle's own store: the Bundle is kept durably in the database.
    Local,
    /// The French national shared record (DMP, "Mon espace santé"): each
    /// CDA document of a Bundle is submitted to `url` by IHE XDS.b ITI-41
    /// (docs/dmp.md); settings in the target's `dmp` table.
    Dmp,
}

/// One `[targets.NAME]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub kind: TargetKind,
    /// FHIR base URL (`kind = "fhir"`), e.g. `https://fhir.example.org/r4`.
    #[serde(default)]
    pub url: Option<String>,
    /// Time one delivery request may take.
    #[serde(default = "defaults::timeout_secs")]
    pub timeout_secs: u64,
    /// Deliveries in flight at once to this target.
    #[serde(default = "defaults::concurrency")]
    pub concurrency: usize,
    /// Attempts before a retryable failure becomes a dead letter; 0 means
    /// never give up (a target down for hours is waited for).
    #[serde(default)]
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt up to `backoff_max_ms`, with
    /// full jitter.
    #[serde(default = "defaults::backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    #[serde(default = "defaults::backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// Consecutive failures that open the circuit (no requests for
    /// `circuit_open_ms`, then one trial request).
    #[serde(default = "defaults::circuit_failures")]
    pub circuit_failures: u32,
    #[serde(default = "defaults::circuit_open_ms")]
    pub circuit_open_ms: u64,
    #[serde(default)]
    pub auth: Option<TargetAuth>,
    #[serde(default)]
    pub tls: Option<TargetTls>,
    /// Allows an `http://` url or token URL (patient data and credentials
    /// in clear on the network) and credentials written in a URL; for a
    /// test server on the gateway's own host, never for a real one.
    #[serde(default)]
    pub allow_insecure: bool,
    /// The DMP settings of a `kind = "dmp"` target.
    #[serde(default)]
    pub dmp: Option<DmpTarget>,
}

/// How a `dmp` target talks to the DMP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DmpMode {
    /// IHE XDS.b ITI-41 over SOAP with MTOM/XOP, as the DMP is fed in
    /// production.
    #[default]
    Xds,
    /// IHE MHD ITI-65 (ANS PDSm): `url` is the FHIR base the Provide
    /// Document Bundle is POSTed to.
    Mhd,
}

/// A coded value of the DMP's value sets (`code` in the OID `scheme`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DmpCode {
    pub code: String,
    pub scheme: String,
    #[serde(default)]
    pub display: String,
}

/// The `[targets.NAME.dmp]` table of a `kind = "dmp"` target: who the
/// structure is, what the software is, and the defaults of metadata the
/// documents do not carry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DmpTarget {
    #[serde(default)]
    pub mode: DmpMode,
    /// The OID of the sending structure's system: the submission set's
    /// `sourceId`, and the root of the submission set `uniqueId`s.
    pub source_oid: String,
    /// The structure's identifier (`Identifiant_Structure` of the VIHF:
    /// FINESS, SIRET or the RPPS-based identifier of a practice).
    pub structure_id: String,
    /// The structure's name (submission set author institution).
    pub structure_name: String,
    /// The software's name, version and DMP homologation number
    /// (`LPS_Nom`, `LPS_Version`, `LPS_ID_HOMOLOGATION_DMP`).
    pub lps_name: String,
    pub lps_version: String,
    pub lps_homologation: String,
    /// The RNIV identity statuses (FR Core `identityStatus`, PID-32) under
    /// which a patient's INS may be used to feed the DMP. Only `QUAL`
    /// (an INS retrieved from INSi and checked against an identity
    /// document) by default, as the national identity rules say.
    #[serde(default = "defaults::qualified_statuses")]
    pub qualified_statuses: Vec<String>,
    /// `practiceSettingCode` (J04) when the CDA has no
    /// `standardIndustryClassCode`.
    #[serde(default)]
    pub practice_setting: Option<DmpCode>,
    /// `healthcareFacilityTypeCode` (J02) when the CDA has no
    /// `healthCareFacility/code`.
    #[serde(default)]
    pub healthcare_facility_type: Option<DmpCode>,
    /// `classCode` (J06) by document `typeCode` (LOINC), added to the
    /// built-in correspondences (docs/dmp.md).
    #[serde(default)]
    pub class_codes: BTreeMap<String, DmpCode>,
    /// `formatCode` (J10) by CDA `templateId` root, added to the built-in
    /// ones (docs/dmp.md).
    #[serde(default)]
    pub format_codes: BTreeMap<String, DmpCode>,
    /// A folder of the ANS's JDV value sets in IHE SVS XML
    /// (`JDV_J07_XdsTypeCode_CISIS.xml`...): when given, every code sent is
    /// checked against its value set before the document is sent.
    #[serde(default)]
    pub value_sets_dir: Option<PathBuf>,
    /// Largest document sent (bytes).
    #[serde(default = "defaults::dmp_max_document_bytes")]
    pub max_document_bytes: usize,
    /// A program run on each CDA before it is sent (the ANS's schema and
    /// schematrons, `validate_cda.sh`, as the CNDA requires); exit 1
    /// refuses the document.
    #[serde(default)]
    pub cda_checker: Option<PathBuf>,
    /// The VIHF every request carries (docs/dmp.md); the DMP refuses a
    /// request without one.
    #[serde(default)]
    pub vihf: Option<DmpVihf>,
}

/// The `[targets.NAME.dmp.vihf]` table: how the VIHF (the SAML assertion
/// of the WS-Security header) is made and signed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DmpVihf {
    /// The structure's seal ("cachet") certificate (PEM) and its RSA key
    /// (PEM, readable by its owner only).
    pub certificate_file: PathBuf,
    pub private_key_file: PathBuf,
    /// `Secteur_Activite` (J61, e.g. `SA07` in `1.2.250.1.71.4.2.4`).
    pub sector: DmpCode,
    /// `subject-id`: for an automated flow, the software's name and model.
    pub subject_id: String,
    /// `Subject/NameID`: for an automated flow, the identifier of the
    /// person responsible for it.
    pub responsible_id: String,
    /// `subject:role`: `AUTOMATE` (TRE_A00, `1.2.250.1.213.1.1.4.6`) for an
    /// automated flow, by default.
    #[serde(default = "defaults::vihf_role")]
    pub role: DmpCode,
}

mod defaults {
    pub fn vihf_role() -> super::DmpCode {
        super::DmpCode {
            code: "AUTOMATE".into(),
            scheme: "1.2.250.1.213.1.1.4.6".into(),
            display: "AUTOMATE".into(),
        }
    }
    pub fn qualified_statuses() -> Vec<String> {
        vec!["QUAL".to_string()]
    }
    /// 20 MiB: a CDA with an embedded PDF of a few megabytes fits, a file
    /// built to exhaust memory does not.
    pub fn dmp_max_document_bytes() -> usize {
        20 * 1024 * 1024
    }
    pub fn timeout_secs() -> u64 {
        30
    }
    pub fn concurrency() -> usize {
        4
    }
    pub fn backoff_initial_ms() -> u64 {
        500
    }
    pub fn backoff_max_ms() -> u64 {
        300_000
    }
    pub fn circuit_failures() -> u32 {
        5
    }
    pub fn circuit_open_ms() -> u64 {
        10_000
    }
}

impl TargetConfig {
    /// Makes the target's file paths relative to `base` (the configuration
    /// file's directory).
    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        };
        if let Some(dmp) = self.dmp.as_mut() {
            if let Some(dir) = dmp.value_sets_dir.as_mut() {
                resolve(dir);
            }
            if let Some(checker) = dmp.cda_checker.as_mut() {
                resolve(checker);
            }
            if let Some(vihf) = dmp.vihf.as_mut() {
                resolve(&mut vihf.certificate_file);
                resolve(&mut vihf.private_key_file);
            }
        }
        if let Some(tls) = &mut self.tls {
            for path in [
                &mut tls.ca_file,
                &mut tls.client_cert_file,
                &mut tls.client_key_file,
            ]
            .into_iter()
            .flatten()
            {
                resolve(path);
            }
        }
        match &mut self.auth {
            Some(TargetAuth::SmartBackend {
                private_key_file, ..
            }) => resolve(private_key_file),
            Some(
                TargetAuth::Bearer {
                    token_file: Some(file),
                    ..
                }
                | TargetAuth::Basic {
                    password_file: Some(file),
                    ..
                }
                | TargetAuth::Oauth2 {
                    client_secret_file: Some(file),
                    ..
                },
            ) => resolve(file),
            _ => {}
        }
    }
}

/// How Passerelle authenticates to a target.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum TargetAuth {
    /// `Authorization: Bearer TOKEN`.
    Bearer {
        /// The token, or empty with `token_file`.
        #[serde(default)]
        token: String,
        /// A file holding the token (read at load into `token`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_file: Option<PathBuf>,
    },
    /// HTTP basic authentication.
    Basic {
        username: String,
        /// The password, or empty with `password_file`.
        #[serde(default)]
        password: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password_file: Option<PathBuf>,
    },
    /// OAuth 2.0 client credentials with a client secret; the token is
    /// cached until shortly before it expires.
    Oauth2 {
        token_url: String,
        client_id: String,
        /// The secret, or empty with `client_secret_file`.
        #[serde(default)]
        client_secret: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_secret_file: Option<PathBuf>,
        #[serde(default)]
        scope: Option<String>,
    },
    /// SMART Backend Services: client credentials with a signed JWT client
    /// assertion (RFC 7523) instead of a secret.
    SmartBackend {
        token_url: String,
        client_id: String,
        /// PEM private key (PKCS#8; PKCS#1 for RSA too) whose public key
        /// the authorization server has in the client's JWKS.
        private_key_file: PathBuf,
        /// `RS384` or `ES384`, as SMART requires servers to support.
        algorithm: JwtAlgorithm,
        /// The key's `kid` in the client's JWKS.
        key_id: String,
        scope: String,
    },
}

/// Signature algorithms of SMART Backend Services client assertions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum JwtAlgorithm {
    RS384,
    ES384,
}

/// TLS settings of a target (HTTPS URLs).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetTls {
    /// PEM file of CA certificates to trust instead of the built-in roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain and key, for mutual TLS.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
}

/// One `[[routes]]` entry: which messages (every criterion given must
/// hold; an absent one matches anything), the mapper, and the targets.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub name: String,
    /// Transports the message came in by: `mllp`, `http`.
    #[serde(default)]
    pub sources: Vec<String>,
    /// MSH-3 values.
    #[serde(default)]
    pub sending_applications: Vec<String>,
    /// MSH-4 values.
    #[serde(default)]
    pub sending_facilities: Vec<String>,
    /// Message type patterns: `ORU^R01`, `ADT^*`, `ADT`.
    #[serde(default)]
    pub message_types: Vec<String>,
    /// Source format: `hl7v2` (the default), `hprim` (HPRIM Santé and
    /// HPRIM Net files), `cda` (CDA R2 documents) or `*` (any).
    #[serde(default = "defaults_format")]
    pub format: String,
    /// The mapper to use, by name; absent: the registry's choice for the
    /// message type (scripts before built-ins).
    #[serde(default)]
    pub mapper: Option<String>,
    /// Target names; at least one.
    pub targets: Vec<String>,
    /// When an original-mode sender is answered: once the message is
    /// journaled (`after-journal`, the default), or once it is also
    /// mapped (`after-mapping`: AA then means stored and mapped, and a
    /// mapping error is answered AE or AR with its ERR).
    #[serde(default)]
    pub ack: RouteAck,
}

/// See [`RouteConfig::ack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouteAck {
    #[default]
    AfterJournal,
    AfterMapping,
}

impl RouteConfig {
    /// Whether a message meets every criterion of the route (the one
    /// matching rule, for the mapping stage and the intake alike).
    /// `message_type` is `TYPE^EVENT` as the journal keeps it.
    pub fn matches(
        &self,
        transport: &str,
        sending_application: &str,
        sending_facility: &str,
        message_type: &str,
    ) -> bool {
        if self.format != "*" && self.format != message_format(message_type) {
            return false;
        }
        let (kind, event) = message_type.split_once('^').unwrap_or((message_type, ""));
        // `*` or an empty part matches any type or event.
        let part =
            |pattern: &str, value: &str| pattern.is_empty() || pattern == "*" || pattern == value;
        listed(&self.sources, transport)
            && listed(&self.sending_applications, sending_application)
            && listed(&self.sending_facilities, sending_facility)
            && (self.message_types.is_empty()
                || self
                    .message_types
                    .iter()
                    .any(|pattern| match pattern.split_once('^') {
                        Some((k, e)) => part(k, kind) && part(e, event),
                        None => part(pattern, kind),
                    }))
    }
}

/// The formats a route can name (`*`: any).
pub const ROUTE_FORMATS: &[&str] = &["hl7v2", "hprim", "cda", "*"];

/// The transports a route can name: MLLP, `POST /hl7v2`, `POST /hprim`
/// and `POST /cda` (`http`), the watched directory (`file`).
pub const ROUTE_SOURCES: &[&str] = &["mllp", "http", "file"];

/// The journal's message type of an HPRIM Santé file; HL7 v2 types are
/// three letters (table 0076), so no HL7 message can carry it.
pub const HPRIM_SANTE_MESSAGE_TYPE: &str = "HPRIM^SANTE";
/// The journal's message type of an HPRIM Net / Médecins file.
pub const HPRIM_NET_MESSAGE_TYPE: &str = "HPRIM^NET";

/// The first part of a CDA R2 document's journal message type, whose
/// second part is the document's LOINC type code (`CDAR2^11502-2` for a
/// CR-BIO), so that routes can pick documents by type.
pub const CDA_MESSAGE_TYPE_PREFIX: &str = "CDAR2";

/// The journal's message type of a CDA R2 document of LOINC type
/// `type_code`: `CDAR2^CODE`, or `CDAR2^UNKNOWN` when the code is absent
/// or holds anything but letters, digits, `-` and `.` (the journal keeps
/// no text of the document's choosing).
pub fn cda_message_type(type_code: Option<&str>) -> String {
    let code = type_code
        .filter(|code| {
            !code.is_empty()
                && code.len() <= 32
                && code
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        })
        .unwrap_or("UNKNOWN");
    format!("{CDA_MESSAGE_TYPE_PREFIX}^{code}")
}

/// The format of a journaled message, from its message type: `hprim` for
/// HPRIM files (`HPRIM^SANTE`, `HPRIM^NET`), `cda` for CDA R2 documents
/// (`CDAR2^...`), else `hl7v2`.
pub fn message_format(message_type: &str) -> &'static str {
    match message_type.split_once('^') {
        Some(("HPRIM", _)) => "hprim",
        Some((CDA_MESSAGE_TYPE_PREFIX, _)) => "cda",
        _ => "hl7v2",
    }
}

fn defaults_format() -> String {
    "hl7v2".to_string()
}

/// How delivery workers behave, whatever the target.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// How long a claimed outbox row belongs to this instance; another
    /// instance takes it over after that. Longer than any target timeout.
    pub lease_secs: u64,
    /// Outbox polling interval (notifications wake workers earlier).
    pub poll_interval_ms: u64,
    /// Messages mapped per batch by the mapping stage.
    pub mapping_batch: usize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            lease_secs: 120,
            poll_interval_ms: 1000,
            mapping_batch: 256,
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

/// Mapping to FHIR: the site's settings handed to every mapper, the
/// built-in mappers' settings, and the script mappers' directory.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MappingConfig {
    /// IANA zone of HL7 v2 timestamps sent without an offset.
    pub timezone: TimeZoneName,
    /// Directory of `*.rhai` script mappers, watched for changes; no
    /// scripts when absent.
    pub scripts_dir: Option<PathBuf>,
    /// How often `scripts_dir` is checked for new, changed or removed
    /// scripts.
    pub scripts_poll_interval_ms: u64,
    /// Identifier system URI per assigning authority or sending facility
    /// as it appears in messages (PID-3.4, MSH-4).
    pub identifier_systems: BTreeMap<String, String>,
    /// CSV code maps, by name.
    pub code_maps: Vec<CodeMapConfig>,
    pub builtin: BuiltinConfig,
    pub script_limits: ScriptLimits,
    /// The site's CI-SIS header settings (`[mapping.cda]`: custodian,
    /// laboratory, default legal authenticator, document id root) for
    /// the CDA documents Passerelle writes; without them no CDA is
    /// written.
    pub cda: Option<CdaSettings>,
}

impl Default for MappingConfig {
    fn default() -> Self {
        Self {
            timezone: TimeZoneName::default(),
            scripts_dir: None,
            scripts_poll_interval_ms: 1000,
            identifier_systems: BTreeMap::new(),
            code_maps: Vec::new(),
            builtin: BuiltinConfig::default(),
            script_limits: ScriptLimits::default(),
            cda: None,
        }
    }
}

/// One `[[mapping.code_maps]]` entry: a CSV file
/// (`source_code,target_code[,display]` per line).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CodeMapConfig {
    pub name: String,
    /// Relative paths are relative to the configuration file's directory.
    pub file: PathBuf,
    pub target_system: String,
}

/// A time zone name checked against the IANA database when the
/// configuration is read, so that a typo is a configuration error with its
/// line rather than a mapping failure later.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeZoneName(String);

impl TimeZoneName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn zone(&self) -> Result<SiteTimeZone, String> {
        SiteTimeZone::named(&self.0)
    }
}

impl Default for TimeZoneName {
    fn default() -> Self {
        TimeZoneName("Europe/Paris".to_string())
    }
}

impl TryFrom<String> for TimeZoneName {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        SiteTimeZone::named(&name)?;
        Ok(TimeZoneName(name))
    }
}

impl From<TimeZoneName> for String {
    fn from(name: TimeZoneName) -> String {
        name.0
    }
}

/// A code map that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeMapError {
    #[error("code map `{name}`: {file}: cannot read: {message}")]
    Read {
        index: usize,
        name: String,
        file: String,
        message: String,
    },
    /// `message` starts with the CSV line (`line N: ...`).
    #[error("code map `{name}`: {file}: {message}")]
    Invalid {
        index: usize,
        name: String,
        file: String,
        message: String,
    },
    #[error("code map `{name}` is defined twice")]
    Duplicate { index: usize, name: String },
}

impl CodeMapError {
    /// Position of the entry in `mapping.code_maps`.
    pub fn index(&self) -> usize {
        match self {
            CodeMapError::Read { index, .. }
            | CodeMapError::Invalid { index, .. }
            | CodeMapError::Duplicate { index, .. } => *index,
        }
    }
}

impl MappingConfig {
    /// Reads every code map file, by name.
    pub fn load_code_maps(&self) -> Result<HashMap<String, CodeMap>, CodeMapError> {
        let mut maps = HashMap::new();
        for (index, entry) in self.code_maps.iter().enumerate() {
            let file = entry.file.display().to_string();
            if maps.contains_key(&entry.name) {
                return Err(CodeMapError::Duplicate {
                    index,
                    name: entry.name.clone(),
                });
            }
            let text =
                std::fs::read_to_string(&entry.file).map_err(|error| CodeMapError::Read {
                    index,
                    name: entry.name.clone(),
                    file: file.clone(),
                    message: error.to_string(),
                })?;
            let map = CodeMap::from_csv(&entry.target_system, &text).map_err(|message| {
                CodeMapError::Invalid {
                    index,
                    name: entry.name.clone(),
                    file,
                    message,
                }
            })?;
            maps.insert(entry.name.clone(), map);
        }
        Ok(maps)
    }

    /// Makes relative paths relative to `base` (the configuration file's
    /// directory) rather than to wherever the gateway was started from.
    fn resolve_paths(&mut self, base: &Path) {
        if let Some(dir) = &mut self.scripts_dir {
            if dir.is_relative() {
                *dir = base.join(&*dir);
            }
        }
        for entry in &mut self.code_maps {
            if entry.file.is_relative() {
                entry.file = base.join(&entry.file);
            }
        }
    }
}

/// Why a private key file may not be used: other users may read it. A
/// file that cannot be read is reported where it is loaded.
fn private_file_refusal(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "{}: a private key readable by other users (mode {mode:o}); make it 0600 (chmod 600)",
            path.display()
        )
    })
}

/// Why a target URL may not be used without `allow_insecure = true`: in
/// clear (`http://`), or with credentials in it (they end up in logs and
/// process listings; `auth` is where they go).
fn insecure_url_refusal(url: &str) -> Option<String> {
    if url.starts_with("http://") {
        return Some(format!(
            "`{}` is not https: patient data and credentials would cross the network in clear (set allow_insecure = true for a test server)",
            redact_url_password(url).unwrap_or_else(|| url.to_string())
        ));
    }
    let authority = url.split_once("://").map_or("", |(_, rest)| {
        rest.split(['/', '?', '#']).next().unwrap_or("")
    });
    authority
        .contains('@')
        .then(|| "credentials in a URL are refused: put them in the target's auth".to_string())
}

/// Keys whose values are secrets: never printed.
const SECRET_KEYS: &[&str] = &["token", "password", "client_secret"];
/// What a redacted secret prints as.
pub const REDACTED: &str = "<redacted>";

impl Config {
    /// The settings as TOML with every secret replaced by [`REDACTED`]
    /// (target tokens, passwords and client secrets, and the password of
    /// any URL), for `check-config` and anything else that shows them.
    pub fn redacted(&self) -> Result<toml::Table, toml::ser::Error> {
        let mut table = toml::Table::try_from(self)?;
        redact_table(&mut table);
        Ok(table)
    }
}

fn redact_table(table: &mut toml::Table) {
    for (key, value) in table.iter_mut() {
        if SECRET_KEYS.contains(&key.as_str()) && value.is_str() {
            *value = toml::Value::String(REDACTED.to_string());
        } else {
            redact_value(value);
        }
    }
}

fn redact_value(value: &mut toml::Value) {
    match value {
        toml::Value::Table(table) => redact_table(table),
        toml::Value::Array(items) => items.iter_mut().for_each(redact_value),
        toml::Value::String(text) => {
            if let Some(redacted) = redact_url_password(text) {
                *text = redacted;
            }
        }
        _ => {}
    }
}

/// `scheme://user:password@host...` with the password redacted; `None`
/// when `text` has no password in it.
fn redact_url_password(text: &str) -> Option<String> {
    let (scheme, rest) = text.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let (userinfo, host) = authority.rsplit_once('@')?;
    let (user, _password) = userinfo.split_once(':')?;
    Some(format!(
        "{scheme}://{user}:{REDACTED}@{host}{}",
        &rest[authority_end..]
    ))
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
    /// A value that parsed but does not hold (a missing directory, a bad
    /// code map file); `origin` is the file and line, or the environment
    /// variable, it came from.
    #[error("{origin}, key `{key}`: {message}")]
    Setting {
        origin: String,
        key: String,
        message: String,
    },
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
        let base = path.map(|p| match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        });
        Self::parse(&name, &text, env, base.as_deref())
    }

    /// Parses `text` (named `name` in errors) and applies overrides from
    /// `env`; relative paths stay relative to the working directory.
    pub fn from_toml(
        name: &str,
        text: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        Self::parse(name, text, env, None)
    }

    fn parse(
        name: &str,
        text: &str,
        env: &BTreeMap<String, String>,
        base: Option<&Path>,
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
        let mut config = config;
        if let Some(base) = base {
            // Before the overrides: a path from the environment is relative
            // to the working directory, like any command-line path.
            config.mapping.resolve_paths(base);
            for target in config.targets.values_mut() {
                target.resolve_paths(base);
            }
            let issuer_files = config
                .security
                .issuers
                .iter_mut()
                .flat_map(|issuer| [issuer.jwks_file.as_mut(), issuer.ca_file.as_mut()]);
            for file in issuer_files
                .flatten()
                .chain(config.security.clients_file.as_mut())
                .chain(config.hprim.watch_dir.as_mut())
            {
                if file.is_relative() {
                    *file = base.join(&*file);
                }
            }
            for tls in [&mut config.http.tls, &mut config.mllp.tls]
                .into_iter()
                .flatten()
            {
                tls.resolve_paths(base);
            }
            if let Some(syslog) = &mut config.audit.syslog {
                syslog.resolve_paths(base);
            }
        }
        if let Some(base) = base {
            for file in [
                config.storage.postgres_url_file.as_mut(),
                config.storage.key_file.as_mut(),
            ]
            .into_iter()
            .flatten()
            {
                if file.is_relative() {
                    *file = base.join(&*file);
                }
            }
        }
        let mut config = apply_overrides(config, env)?;
        read_secret_files(&mut config, name, &expanded, env)?;
        validate(&config, name, &expanded, env)?;
        Ok(config)
    }
}

/// Reads the secrets given as files (`token_file`, `password_file`,
/// `client_secret_file` of a target's `auth`, `storage.postgres_url_file`)
/// into their keys, so that the rest of the gateway sees one value however
/// it came: the file's content with its trailing line break dropped (what
/// `echo` and secret stores such as Docker's and Kubernetes' write).
fn read_secret_files(
    config: &mut Config,
    name: &str,
    text: &str,
    env: &BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    for (target_name, target) in config.targets.iter_mut() {
        let (value, file, key) = match &mut target.auth {
            Some(TargetAuth::Bearer { token, token_file }) => (token, token_file, "token"),
            Some(TargetAuth::Basic {
                password,
                password_file,
                ..
            }) => (password, password_file, "password"),
            Some(TargetAuth::Oauth2 {
                client_secret,
                client_secret_file,
                ..
            }) => (client_secret, client_secret_file, "client_secret"),
            _ => continue,
        };
        let section = format!("targets.{target_name}");
        let fail = |message: String| ConfigError::Setting {
            origin: origin(name, text, env, &section, "auth", 0),
            key: format!("{section}.auth.{key}"),
            message,
        };
        match (value.is_empty(), file.as_deref()) {
            (true, None) => {
                return Err(fail(format!(
                    "missing: give `{key}`, or `{key}_file` naming a file that holds it"
                )))
            }
            (false, Some(_)) => {
                return Err(fail(format!(
                    "`{key}` and `{key}_file` both given: keep one"
                )))
            }
            (false, None) => {}
            (true, Some(path)) => *value = read_secret_file(path).map_err(fail)?,
        }
    }
    let storage = &mut config.storage;
    if let Some(path) = storage.postgres_url_file.as_deref() {
        let fail = |message: String| ConfigError::Setting {
            origin: origin(name, text, env, "storage", "postgres_url_file", 0),
            key: "storage.postgres_url_file".to_string(),
            message,
        };
        if storage.postgres_url.is_some() {
            return Err(fail(
                "`postgres_url` and `postgres_url_file` both given: keep one".into(),
            ));
        }
        storage.postgres_url = Some(read_secret_file(path).map_err(fail)?);
    }
    read_store_key(storage, name, text, env)
}

/// The environment variable that may hold the store's key.
pub const STORAGE_KEY_ENV: &str = "PASSERELLE_STORAGE_KEY";

/// Reads the store's key (`[storage] encrypted`) from `key_file` (private)
/// or `PASSERELLE_STORAGE_KEY`, and refuses a key without the request for
/// encryption or the request without a key: which of the two the operator
/// meant must not be guessed.
fn read_store_key(
    storage: &mut StorageConfig,
    name: &str,
    text: &str,
    env: &BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    let fail = |key: &str, message: String| ConfigError::Setting {
        origin: origin(name, text, env, "storage", key, 0),
        key: format!("storage.{key}"),
        message,
    };
    let from_env = env.get(STORAGE_KEY_ENV).filter(|value| !value.is_empty());
    let key = match (storage.key_file.as_deref(), from_env) {
        (Some(_), Some(_)) => {
            return Err(fail(
                "key_file",
                format!("both key_file and {STORAGE_KEY_ENV} are given: keep one"),
            ))
        }
        (Some(path), None) => {
            Some(read_private_secret_file(path).map_err(|message| fail("key_file", message))?)
        }
        (None, Some(value)) => Some(value.clone()),
        (None, None) => None,
    };
    match (storage.encrypted, key.is_some()) {
        (true, false) if storage.backend == StorageBackend::Sqlite => Err(fail(
            "encrypted",
            format!("encrypted = true needs the store's key: key_file, or {STORAGE_KEY_ENV}"),
        )),
        (true, _) if storage.backend == StorageBackend::Postgres => Err(fail(
            "encrypted",
            "PostgreSQL's files are encrypted by the host (an encrypted volume), not by Passerelle: remove encrypted and set allow_unencrypted = true once the volume is (docs/security.md)".into(),
        )),
        (false, true) if storage.backend == StorageBackend::Sqlite => Err(fail(
            "encrypted",
            "a key is given but encrypted is not true: set encrypted = true to encrypt the store with it".into(),
        )),
        _ => {
            storage.key = key;
            Ok(())
        }
    }
}

/// A key file's secret (the store's key, a new key for `storage rekey`):
/// as [`read_secret_file`], and refused when other users may read it.
pub fn read_private_secret_file(path: &Path) -> Result<String, String> {
    if let Some(why) = private_file_refusal(path) {
        return Err(why);
    }
    read_secret_file(path)
}

/// A secret file's content without its trailing line break; an empty file
/// is refused rather than sent as an empty credential.
fn read_secret_file(path: &Path) -> Result<String, String> {
    let text =
        std::fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))?;
    let secret = text.strip_suffix('\n').unwrap_or(&text);
    let secret = secret.strip_suffix('\r').unwrap_or(secret);
    if secret.is_empty() {
        return Err(format!("{}: the file is empty", path.display()));
    }
    Ok(secret.to_string())
}

/// Checks what deserialising cannot: that files and directories named by
/// the configuration exist and read correctly.
fn validate(
    config: &Config,
    name: &str,
    text: &str,
    env: &BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    let mapping = &config.mapping;
    if let Some(dir) = &mapping.scripts_dir {
        if !dir.is_dir() {
            return Err(ConfigError::Setting {
                origin: origin(name, text, env, "mapping", "scripts_dir", 0),
                key: "mapping.scripts_dir".to_string(),
                message: format!("{}: not a directory", dir.display()),
            });
        }
    }
    let maps = mapping.load_code_maps().map_err(|error| {
        let index = error.index();
        let key = match error {
            CodeMapError::Duplicate { .. } => "name",
            _ => "file",
        };
        ConfigError::Setting {
            origin: origin(name, text, env, "mapping.code_maps", key, index),
            key: format!("mapping.code_maps[{index}].{key}"),
            message: error.to_string(),
        }
    })?;
    validate_routes(config, name, text, env)?;
    validate_listeners(config, name, text, env)?;
    validate_encryption_at_rest(config, name, text, env)?;
    if let Some(syslog) = &config.audit.syslog {
        validate_syslog(syslog, name, text, env)?;
    }
    for (index, issuer) in config.security.issuers.iter().enumerate() {
        let fail = |key: &str, message: String| ConfigError::Setting {
            origin: origin(name, text, env, "security.issuers", key, index),
            key: format!("security.issuers[{index}].{key}"),
            message,
        };
        match (&issuer.jwks_file, &issuer.jwks_url) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(fail(
                    "jwks_file",
                    "give exactly one of jwks_file and jwks_url".to_string(),
                ))
            }
            (Some(file), None) if !file.is_file() => {
                return Err(fail(
                    "jwks_file",
                    format!("{}: no such file", file.display()),
                ))
            }
            (None, Some(url)) if !issuer.allow_insecure => {
                if let Some(why) = insecure_url_refusal(url) {
                    return Err(fail("jwks_url", why));
                }
            }
            _ => {}
        }
    }
    if let Some(dir) = &config.hprim.watch_dir {
        if !dir.is_dir() {
            return Err(ConfigError::Setting {
                origin: origin(name, text, env, "hprim", "watch_dir", 0),
                key: "hprim.watch_dir".to_string(),
                message: format!("{}: not a directory", dir.display()),
            });
        }
    }
    if let Some(file) = &config.security.clients_file {
        if !file.is_file() {
            return Err(ConfigError::Setting {
                origin: origin(name, text, env, "security", "clients_file", 0),
                key: "security.clients_file".to_string(),
                message: format!("{}: no such file", file.display()),
            });
        }
    }
    // A mapper naming a code map that does not exist would fail every
    // message it maps: refuse it here, where the line can be named.
    if let Some(wanted) = &mapping.builtin.oru.code_map {
        if !maps.contains_key(wanted) {
            return Err(ConfigError::Setting {
                origin: origin(name, text, env, "mapping.builtin.oru", "code_map", 0),
                key: "mapping.builtin.oru.code_map".to_string(),
                message: format!("no code map named `{wanted}` in [[mapping.code_maps]]"),
            });
        }
    }
    Ok(())
}

/// The collector's address, the names each message carries (RFC 5424's
/// printable ASCII and lengths) and the TLS files.
fn validate_syslog(
    syslog: &SyslogConfig,
    name: &str,
    text: &str,
    env: &BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    let fail = |key: &str, message: String| ConfigError::Setting {
        origin: origin(name, text, env, "audit.syslog", key, 0),
        key: format!("audit.syslog.{key}"),
        message,
    };
    if syslog.host_and_port().is_none() {
        return Err(fail(
            "address",
            format!("`{}` is not host:port", syslog.address),
        ));
    }
    let printable = |value: &str, most: usize| {
        !value.is_empty() && value.len() <= most && value.bytes().all(|b| (33..=126).contains(&b))
    };
    if !printable(&syslog.app_name, 48) {
        return Err(fail(
            "app_name",
            "1 to 48 printable ASCII characters, no space (RFC 5424)".to_string(),
        ));
    }
    if let Some(hostname) = &syslog.hostname {
        if !printable(hostname, 255) {
            return Err(fail(
                "hostname",
                "1 to 255 printable ASCII characters, no space (RFC 5424)".to_string(),
            ));
        }
    }
    if !(1..=10_000).contains(&syslog.batch) {
        return Err(fail("batch", "1 to 10000 records".to_string()));
    }
    if syslog.poll_interval_ms == 0 || syslog.timeout_secs == 0 {
        return Err(fail(
            if syslog.timeout_secs == 0 {
                "timeout_secs"
            } else {
                "poll_interval_ms"
            },
            "must be above 0".to_string(),
        ));
    }
    match (&syslog.client_cert_file, &syslog.client_key_file) {
        (Some(_), None) | (None, Some(_)) => {
            return Err(fail(
                "client_cert_file",
                "give both client_cert_file and client_key_file, or neither".to_string(),
            ))
        }
        _ => {}
    }
    for (key, file) in [
        ("ca_file", &syslog.ca_file),
        ("client_cert_file", &syslog.client_cert_file),
        ("client_key_file", &syslog.client_key_file),
    ] {
        if let Some(file) = file {
            if !file.is_file() {
                return Err(fail(key, format!("{}: no such file", file.display())));
            }
        }
    }
    if let Some(refusal) = syslog
        .client_key_file
        .as_deref()
        .and_then(private_file_refusal)
    {
        return Err(fail("client_key_file", refusal));
    }
    Ok(())
}

/// A listener off loopback speaks TLS unless told otherwise; its key
/// file is private and its files exist.
fn validate_listeners(
    config: &Config,
    name: &str,
    text: &str,
    env: &BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    let listeners = [
        (
            "http",
            config.http.listen,
            &config.http.tls,
            config.http.allow_plaintext,
        ),
        (
            "mllp",
            config.mllp.listen,
            &config.mllp.tls,
            config.mllp.allow_plaintext,
        ),
    ];
    for (section, listen, tls, allow_plaintext) in listeners {
        if section == "mllp" && !config.mllp.enabled {
            continue;
        }
        let fail = |table: &str, key: &str, message: String| ConfigError::Setting {
            origin: origin(name, text, env, table, key, 0),
            key: format!("{table}.{key}"),
            message,
        };
        match tls {
            None if !listen.ip().is_loopback() && !allow_plaintext => {
                return Err(fail(
                    section,
                    "listen",
                    format!(
                        "{listen} is not loopback: add [{section}.tls] (cert_file, key_file), or set allow_plaintext = true when a TLS proxy or a private network stands in front"
                    ),
                ));
            }
            None => {}
            Some(tls) => {
                let table = format!("{section}.tls");
                let files = [
                    ("cert_file", Some(&tls.cert_file)),
                    ("key_file", Some(&tls.key_file)),
                    ("client_ca_file", tls.client_ca_file.as_ref()),
                ];
                for (key, file) in files {
                    if let Some(file) = file {
                        if !file.is_file() {
                            return Err(fail(
                                &table,
                                key,
                                format!("{}: no such file", file.display()),
                            ));
                        }
                    }
                }
                if let Some(why) = private_file_refusal(&tls.key_file) {
                    return Err(fail(&table, "key_file", why));
                }
                if tls.require_client_cert && tls.client_ca_file.is_none() {
                    return Err(fail(
                        &table,
                        "require_client_cert",
                        "needs client_ca_file: the authority client certificates come from"
                            .to_string(),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A gateway reachable beyond this machine keeps health data: its store
/// is encrypted, unless the operator says the host does it
/// (`allow_unencrypted`). Loopback-only gateways (the embedded defaults,
/// a developer's machine) are not asked.
fn validate_encryption_at_rest(
    config: &Config,
    name: &str,
    text: &str,
    env: &BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    let storage = &config.storage;
    if storage.encrypted || storage.allow_unencrypted {
        return Ok(());
    }
    let exposed = std::iter::once(config.http.listen)
        .chain(config.mllp.enabled.then_some(config.mllp.listen))
        .find(|listen| !listen.ip().is_loopback());
    match exposed {
        None => Ok(()),
        Some(listen) => Err(ConfigError::Setting {
            origin: origin(name, text, env, "storage", "encrypted", 0),
            key: "storage.encrypted".to_string(),
            message: format!(
                "{listen} is reachable beyond this machine and the store is not encrypted: set encrypted = true with key_file (SQLite, SQLCipher), or allow_unencrypted = true when the host encrypts the volume (PostgreSQL; docs/security.md)"
            ),
        }),
    }
}

/// Routes must name targets that exist; targets must be usable.
fn validate_routes(
    config: &Config,
    name: &str,
    text: &str,
    env: &BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    let mut seen = std::collections::BTreeSet::new();
    for (index, route) in config.routes.iter().enumerate() {
        let fail = |key: &str, message: String| ConfigError::Setting {
            origin: origin(name, text, env, "routes", key, index),
            key: format!("routes[{index}].{key}"),
            message,
        };
        if !seen.insert(route.name.as_str()) {
            return Err(fail(
                "name",
                format!("route `{}` is defined twice", route.name),
            ));
        }
        if route.targets.is_empty() {
            return Err(fail("targets", "a route needs at least one target".into()));
        }
        for target in &route.targets {
            if !config.targets.contains_key(target) && target != "local" {
                return Err(fail(
                    "targets",
                    format!("no target named `{target}` in [targets]"),
                ));
            }
        }
        if !ROUTE_FORMATS.contains(&route.format.as_str()) {
            return Err(fail(
                "format",
                format!(
                    "unknown format `{}` (known: {})",
                    route.format,
                    ROUTE_FORMATS.join(", ")
                ),
            ));
        }
        for source in &route.sources {
            if !ROUTE_SOURCES.contains(&source.as_str()) {
                return Err(fail(
                    "sources",
                    format!(
                        "unknown source `{source}` (known: {})",
                        ROUTE_SOURCES.join(", ")
                    ),
                ));
            }
        }
    }
    for (index, endpoint) in config.hl7v2.application_acks.iter().enumerate() {
        let fail = |message: String| ConfigError::Setting {
            origin: origin(name, text, env, "hl7v2.application_acks", "endpoint", index),
            key: format!("hl7v2.application_acks[{index}].endpoint"),
            message,
        };
        match endpoint.kind() {
            None => {
                return Err(fail(format!(
                    "`{}` is neither an mllp://host:port endpoint nor an https:// URL",
                    endpoint.endpoint
                )))
            }
            Some(AckEndpointKind::Http(url)) if !endpoint.allow_insecure => {
                if let Some(why) = insecure_url_refusal(url) {
                    return Err(fail(why));
                }
            }
            Some(_) => {}
        }
    }
    for (target_name, target) in &config.targets {
        let section = format!("targets.{target_name}");
        let fail = |key: &str, message: String| ConfigError::Setting {
            origin: origin(name, text, env, &section, key, 0),
            key: format!("{section}.{key}"),
            message,
        };
        if target.kind != TargetKind::Dmp && target.dmp.is_some() {
            return Err(fail(
                "dmp",
                "only a kind = \"dmp\" target has a dmp table".into(),
            ));
        }
        if target.kind == TargetKind::Dmp {
            let Some(dmp) = &target.dmp else {
                return Err(fail(
                    "dmp",
                    "a dmp target needs its dmp table (source_oid, structure_id, structure_name, lps_name, lps_version, lps_homologation)".into(),
                ));
            };
            let is_oid = |text: &str| {
                !text.is_empty()
                    && text.split('.').all(|arc| {
                        !arc.is_empty()
                            && arc.bytes().all(|b| b.is_ascii_digit())
                            && (arc == "0" || !arc.starts_with('0'))
                    })
            };
            if !is_oid(&dmp.source_oid) {
                return Err(fail(
                    "dmp.source_oid",
                    format!("`{}` is not an OID", dmp.source_oid),
                ));
            }
            for (key, value) in [
                ("structure_id", &dmp.structure_id),
                ("structure_name", &dmp.structure_name),
                ("lps_name", &dmp.lps_name),
                ("lps_version", &dmp.lps_version),
                ("lps_homologation", &dmp.lps_homologation),
            ] {
                if value.trim().is_empty() {
                    return Err(fail(&format!("dmp.{key}"), "must not be empty".into()));
                }
            }
            if dmp.qualified_statuses.is_empty()
                || dmp
                    .qualified_statuses
                    .iter()
                    .any(|s| !matches!(s.as_str(), "PROV" | "RECUP" | "VALI" | "QUAL"))
            {
                return Err(fail(
                    "dmp.qualified_statuses",
                    "must list RNIV statuses among PROV, RECUP, VALI, QUAL".into(),
                ));
            }
            if let Some(vihf) = &dmp.vihf {
                private_file_refusal(&vihf.private_key_file)
                    .map_or(Ok(()), |why| Err(fail("dmp.vihf.private_key_file", why)))?;
            }
        }
        match target.kind {
            TargetKind::Fhir | TargetKind::Dmp => {
                let Some(url) = &target.url else {
                    return Err(fail("url", "a fhir or dmp target needs a url".into()));
                };
                if !(url.starts_with("http://") || url.starts_with("https://"))
                    || url.parse::<http::Uri>().is_err()
                {
                    return Err(fail(
                        "url",
                        format!("`{url}` is not an http:// or https:// URL"),
                    ));
                }
                if !target.allow_insecure {
                    insecure_url_refusal(url).map_or(Ok(()), |why| Err(fail("url", why)))?;
                    let token_url = match &target.auth {
                        Some(TargetAuth::Oauth2 { token_url, .. })
                        | Some(TargetAuth::SmartBackend { token_url, .. }) => Some(token_url),
                        _ => None,
                    };
                    if let Some(token_url) = token_url {
                        insecure_url_refusal(token_url)
                            .map_or(Ok(()), |why| Err(fail("auth.token_url", why)))?;
                    }
                }
                if url.starts_with("http://") && target.tls.is_some() {
                    return Err(fail("tls", "tls settings need an https:// url".into()));
                }
                if let Some(tls) = &target.tls {
                    if tls.client_cert_file.is_some() != tls.client_key_file.is_some() {
                        return Err(fail(
                            "tls",
                            "client_cert_file and client_key_file go together".into(),
                        ));
                    }
                    if let Some(key) = &tls.client_key_file {
                        private_file_refusal(key)
                            .map_or(Ok(()), |why| Err(fail("tls.client_key_file", why)))?;
                    }
                }
                if let Some(TargetAuth::SmartBackend {
                    private_key_file, ..
                }) = &target.auth
                {
                    private_file_refusal(private_key_file)
                        .map_or(Ok(()), |why| Err(fail("auth.private_key_file", why)))?;
                }
            }
            TargetKind::Local => {
                if target.url.is_some() {
                    return Err(fail("url", "a local target has no url".into()));
                }
            }
        }
        if target.concurrency == 0 {
            return Err(fail("concurrency", "must be at least 1".into()));
        }
    }
    if let Some(upstream) = &config.fhir.upstream {
        let is_fhir = config
            .targets
            .get(upstream)
            .is_some_and(|t| t.kind == TargetKind::Fhir);
        if !is_fhir {
            return Err(ConfigError::Setting {
                origin: origin(name, text, env, "fhir", "upstream", 0),
                key: "fhir.upstream".to_string(),
                message: format!("no fhir target named `{upstream}` in [targets]"),
            });
        }
    }
    if config.storage.backend == StorageBackend::Postgres && config.storage.postgres_url.is_none() {
        return Err(ConfigError::Setting {
            origin: origin(name, text, env, "storage", "backend", 0),
            key: "storage.postgres_url".to_string(),
            message: "storage.backend = \"postgres\" needs storage.postgres_url".to_string(),
        });
    }
    Ok(())
}

/// Where a key's value came from: its environment override when set, else
/// the file and the line of `key` in the `index`-th `[section]` (or
/// `[[section]]`) table.
fn origin(
    name: &str,
    text: &str,
    env: &BTreeMap<String, String>,
    section: &str,
    key: &str,
    index: usize,
) -> String {
    let var = format!(
        "{ENV_PREFIX}{}__{}",
        section.replace('.', "__").to_ascii_uppercase(),
        key.to_ascii_uppercase()
    );
    if env.contains_key(&var) {
        return format!("environment variable `{var}`");
    }
    match key_line(text, section, key, index) {
        Some(line) => format!("{name}: line {line}"),
        None => name.to_string(),
    }
}

/// The 1-based line of `key = ...` in the `index`-th table named `section`.
fn key_line(text: &str, section: &str, key: &str, index: usize) -> Option<usize> {
    let mut tables_seen = 0usize;
    let mut inside = false;
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('[') {
            let header = line
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim();
            if header == section {
                tables_seen += 1;
                inside = tables_seen == index + 1;
            } else {
                inside = false;
            }
            continue;
        }
        if inside {
            let found = line
                .split_once('=')
                .is_some_and(|(k, _)| k.trim().trim_matches('"') == key);
            if found {
                return Some(number + 1);
            }
        }
    }
    None
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

/// Keys whose default is "absent", which an override may still set (the
/// scalar optional settings of the sections; a key in the wrong section is
/// still refused, by the section's own check of its fields).
const OPTIONAL_KEYS: &[&str] = &[
    "public_base_url",
    "scripts_dir",
    "code_map",
    "watch_dir",
    "key_file",
    "journal_payloads_days",
    "delivered_bundles_days",
    "dead_letters_days",
    "repository_history_days",
    "audit_records_days",
    "postgres_url",
    "postgres_url_file",
    "instance_id",
    "hostname",
    "clients_file",
];

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    match path {
        [] => Err("empty key".to_string()),
        [key] => {
            // Optional keys are absent from the serialised defaults.
            if !table.contains_key(key) && !OPTIONAL_KEYS.contains(&key.as_str()) {
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

    #[test]
    fn targets_in_clear_or_with_credentials_in_the_url_are_refused() {
        let load = |target: &str| {
            let text = format!("[targets.hospital]\nkind = \"fhir\"\n{target}\n");
            Config::from_toml("t.toml", &text, &BTreeMap::new())
        };
        let error = load("url = \"http://fhir.example/fhir\"")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("targets.hospital.url") && error.contains("not https"),
            "{error}"
        );
        let error = load("url = \"https://gw:pw@fhir.example/fhir\"")
            .unwrap_err()
            .to_string();
        assert!(error.contains("credentials in a URL"), "{error}");
        assert!(!error.contains("pw@"), "{error}");
        let error = load("url = \"https://fhir.example/fhir\"\nauth = { type = \"oauth2\", token_url = \"http://auth.example/token\", client_id = \"c\", client_secret = \"s\" }")
            .unwrap_err()
            .to_string();
        assert!(error.contains("auth.token_url"), "{error}");
        load("url = \"https://fhir.example/fhir\"").unwrap();
        load("url = \"http://127.0.0.1:9/fhir\"\nallow_insecure = true").unwrap();
    }

    #[test]
    fn dmp_targets_are_checked_by_name() {
        let dmp = "source_oid = \"1.2.250.1.999.1\"\nstructure_id = \"1120459876\"\n\
                   structure_name = \"Labo\"\nlps_name = \"Passerelle\"\nlps_version = \"0.1\"\n\
                   lps_homologation = \"X\"\n";
        let load = |target: &str, table: &str| {
            let text = format!(
                "[targets.dmp]\nkind = \"dmp\"\nurl = \"https://dmp.example/xds\"\n{target}\n[targets.dmp.dmp]\n{table}"
            );
            Config::from_toml("t.toml", &text, &BTreeMap::new())
        };
        let config = load("", dmp).unwrap();
        let settings = config.targets["dmp"].dmp.as_ref().unwrap();
        assert_eq!(settings.qualified_statuses, vec!["QUAL".to_string()]);
        assert_eq!(settings.mode, DmpMode::Xds);
        let error = |target: &str, table: &str| load(target, table).unwrap_err().to_string();
        let without_table = Config::from_toml(
            "t.toml",
            "[targets.dmp]\nkind = \"dmp\"\nurl = \"https://dmp.example/xds\"\n",
            &BTreeMap::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            without_table.contains("targets.dmp.dmp") && without_table.contains("source_oid"),
            "{without_table}"
        );
        let message = error("", &dmp.replace("1.2.250.1.999.1", "1.2.x"));
        assert!(
            message.contains("dmp.source_oid") && message.contains("not an OID"),
            "{message}"
        );
        let mhd = load("", &format!("{dmp}mode = \"mhd\"\n")).unwrap();
        assert_eq!(mhd.targets["dmp"].dmp.as_ref().unwrap().mode, DmpMode::Mhd);
        let message = error("", &format!("{dmp}mode = \"fhir\"\n"));
        assert!(message.contains("mode"), "{message}");
        let message = error(
            "",
            &format!("{dmp}qualified_statuses = [\"QUAL\", \"SURE\"]\n"),
        );
        assert!(message.contains("qualified_statuses"), "{message}");
        let message = error(
            "",
            &dmp.replace("lps_name = \"Passerelle\"", "lps_name = \" \""),
        );
        assert!(message.contains("dmp.lps_name"), "{message}");
        let message = error("", &format!("{dmp}surprise = 1\n"));
        assert!(message.contains("surprise"), "{message}");
        let in_clear = Config::from_toml(
            "t.toml",
            &format!("[targets.dmp]\nkind = \"dmp\"\nurl = \"http://dmp.example/xds\"\n[targets.dmp.dmp]\n{dmp}"),
            &BTreeMap::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(in_clear.contains("not https"), "{in_clear}");
        let message = Config::from_toml(
            "t.toml",
            &format!("[targets.hospital]\nkind = \"fhir\"\nurl = \"https://fhir.example\"\n[targets.hospital.dmp]\n{dmp}"),
            &BTreeMap::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            message.contains("only a kind = \"dmp\" target"),
            "{message}"
        );
    }

    #[test]
    fn private_keys_others_can_read_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("client.key");
        std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\n").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let text = format!(
            "[targets.hospital]\nkind = \"fhir\"\nurl = \"https://fhir.example/fhir\"\n\
             [targets.hospital.tls]\nclient_cert_file = \"c.pem\"\nclient_key_file = {:?}\n",
            key.display().to_string()
        );
        let error = Config::from_toml("t.toml", &text, &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("tls.client_key_file") && error.contains("chmod 600"),
            "{error}"
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        Config::from_toml("t.toml", &text, &BTreeMap::new()).unwrap();
    }

    #[test]
    fn syslog_exports_are_checked_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let with = |lines: &str| {
            format!(
                "[audit.syslog]\nca_file = {:?}\n{lines}\n",
                ca.display().to_string()
            )
        };
        let accepted = Config::from_toml(
            "t.toml",
            &with("address = \"audit.example:6514\""),
            &BTreeMap::new(),
        )
        .unwrap();
        let syslog = accepted.audit.syslog.unwrap();
        assert_eq!(syslog.host_and_port(), Some(("audit.example", 6514)));
        assert_eq!(
            (syslog.app_name.as_str(), syslog.batch),
            ("passerelle", 500)
        );
        for (lines, key) in [
            ("address = \"audit.example\"", "audit.syslog.address"),
            ("address = \"audit.example:0\"", "audit.syslog.address"),
            (
                "address = \"a:6514\"\napp_name = \"two words\"",
                "audit.syslog.app_name",
            ),
            (
                "address = \"a:6514\"\nhostname = \"\"",
                "audit.syslog.hostname",
            ),
            ("address = \"a:6514\"\nbatch = 0", "audit.syslog.batch"),
            (
                "address = \"a:6514\"\nclient_cert_file = \"c.pem\"",
                "audit.syslog.client_cert_file",
            ),
            (
                "address = \"a:6514\"\nclient_cert_file = \"c.pem\"\nclient_key_file = \"k.pem\"",
                "audit.syslog.client_cert_file",
            ),
        ] {
            let error = Config::from_toml("t.toml", &with(lines), &BTreeMap::new())
                .unwrap_err()
                .to_string();
            assert!(error.contains(&format!("key `{key}`")), "{lines}: {error}");
        }
    }

    #[test]
    fn redacted_settings_hold_no_secret() {
        let text = r#"
[storage]
backend = "postgres"
postgres_url = "postgres://passerelle:s3cret-db@db.example:5432/passerelle?sslmode=verify-full"

[targets.hospital]
kind = "fhir"
url = "https://fhir.example/fhir"
auth = { type = "bearer", token = "s3cret-token" }

[targets.lab]
kind = "fhir"
url = "https://lab.example/fhir"
auth = { type = "basic", username = "lab", password = "s3cret-basic" }

[targets.regional]
kind = "fhir"
url = "https://regional.example/fhir"
auth = { type = "oauth2", token_url = "https://auth.example/token", client_id = "gw", client_secret = "s3cret-oauth" }
"#;
        let config = Config::from_toml("t.toml", text, &BTreeMap::new()).unwrap();
        let printed = toml::to_string(&config.redacted().unwrap()).unwrap();
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(
            printed.contains(
                "postgres://passerelle:<redacted>@db.example:5432/passerelle?sslmode=verify-full"
            ),
            "{printed}"
        );
        assert!(printed.contains("client_id = \"gw\""), "{printed}");
        assert_eq!(redact_url_password("https://fhir.example/fhir"), None);
        assert_eq!(redact_url_password("https://user@fhir.example/"), None);
    }

    #[test]
    fn secrets_come_from_files_relative_to_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "s3cret-token\n").unwrap();
        std::fs::write(dir.path().join("secret"), "s3cret-oauth").unwrap();
        std::fs::write(
            dir.path().join("db-url"),
            "postgres://passerelle:s3cret-db@db.example/passerelle\r\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let text = r#"
[storage]
backend = "postgres"
postgres_url_file = "db-url"

[targets.hospital]
kind = "fhir"
url = "https://fhir.example/fhir"
auth = { type = "bearer", token_file = "token" }

[targets.regional]
kind = "fhir"
url = "https://regional.example/fhir"
auth = { type = "oauth2", token_url = "https://auth.example/token", client_id = "gw", client_secret_file = "secret" }
"#;
        let path = dir.path().join("passerelle.toml");
        std::fs::write(&path, text).unwrap();
        let config = Config::load(Some(&path), &BTreeMap::new()).unwrap();
        assert_eq!(
            config.storage.postgres_url.as_deref(),
            Some("postgres://passerelle:s3cret-db@db.example/passerelle")
        );
        assert!(matches!(
            &config.targets["hospital"].auth,
            Some(TargetAuth::Bearer { token, .. }) if token == "s3cret-token"
        ));
        assert!(matches!(
            &config.targets["regional"].auth,
            Some(TargetAuth::Oauth2 { client_secret, .. }) if client_secret == "s3cret-oauth"
        ));
        let printed = toml::to_string(&config.redacted().unwrap()).unwrap();
        assert!(!printed.contains("s3cret"), "{printed}");

        // Refused, naming the key: missing, twice, empty, unreadable.
        let refusal = |auth: &str| {
            let text = format!(
                "[targets.hospital]\nkind = \"fhir\"\nurl = \"https://fhir.example/fhir\"\nauth = {auth}\n"
            );
            std::fs::write(&path, text).unwrap();
            Config::load(Some(&path), &BTreeMap::new())
                .unwrap_err()
                .to_string()
        };
        let error = refusal(r#"{ type = "bearer" }"#);
        assert!(error.contains("targets.hospital.auth.token"), "{error}");
        assert!(error.contains("line 4"), "{error}");
        assert!(error.contains("token_file"), "{error}");
        let error = refusal(r#"{ type = "bearer", token = "t", token_file = "token" }"#);
        assert!(error.contains("both given"), "{error}");
        let error = refusal(r#"{ type = "basic", username = "u", password_file = "empty" }"#);
        assert!(error.contains("targets.hospital.auth.password"), "{error}");
        assert!(error.contains("empty"), "{error}");
        let error = refusal(r#"{ type = "bearer", token_file = "absent" }"#);
        assert!(error.contains("absent"), "{error}");
    }
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
    fn mapper_settings_are_typed_and_refuse_unknown_keys() {
        let text =
            "[mapping.builtin.oru]\nobservation_category = \"laboratory\"\ncode_mapp = \"lab\"\n";
        let message = Config::from_toml("gw.toml", text, &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(message.contains("gw.toml: line 3"), "{message}");
        assert!(
            message.contains("mapping.builtin.oru.code_mapp"),
            "{message}"
        );
        let text = "[mapping.builtin.adt]\npatient_write = \"sometimes\"\n";
        let message = Config::from_toml("gw.toml", text, &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("mapping.builtin.adt.patient_write"),
            "{message}"
        );
        let text = "[mapping.script_limits]\nmax_operations = -1\n";
        assert!(Config::from_toml("gw.toml", text, &env(&[])).is_err());
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

    /// The settings a container passes by environment (docs/security.md):
    /// the PostgreSQL URL or its file, the instance's id.
    #[test]
    fn optional_settings_are_overridable() {
        let config = Config::from_toml(
            "gw.toml",
            "",
            &env(&[
                ("PASSERELLE_STORAGE__BACKEND", "postgres"),
                (
                    "PASSERELLE_STORAGE__POSTGRES_URL",
                    "postgresql://passerelle@127.0.0.1:5432/passerelle",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(
            config.storage.postgres_url.as_deref(),
            Some("postgresql://passerelle@127.0.0.1:5432/passerelle")
        );
        // In a section that has no such setting: refused, naming it.
        let err = Config::from_toml(
            "gw.toml",
            "",
            &env(&[("PASSERELLE_HTTP__POSTGRES_URL", "postgresql://x")]),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("PASSERELLE_HTTP__POSTGRES_URL"),
            "{err}"
        );
    }

    #[test]
    fn unknown_override_names_the_variable() {
        let err =
            Config::from_toml("gw.toml", "", &env(&[("PASSERELLE_HTTP__LISTN", "x")])).unwrap_err();
        assert!(err.to_string().contains("PASSERELLE_HTTP__LISTN"), "{err}");
    }

    #[test]
    fn mapping_defaults() {
        let config = Config::load(None, &env(&[])).unwrap();
        assert_eq!(config.mapping.timezone.as_str(), "Europe/Paris");
        assert_eq!(config.mapping.scripts_dir, None);
        assert_eq!(config.mapping.scripts_poll_interval_ms, 1000);
        assert!(config.mapping.code_maps.is_empty());
    }

    #[test]
    fn unknown_time_zone_is_named_with_its_line() {
        let text = "[mapping]\ntimezone = \"Europe/Parsi\"\n";
        let err = Config::from_toml("gw.toml", text, &env(&[])).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("gw.toml: line 2"), "{message}");
        assert!(message.contains("mapping.timezone"), "{message}");
        assert!(message.contains("Europe/Parsi"), "{message}");
    }

    #[test]
    fn time_zone_override_from_the_environment() {
        let config = Config::from_toml(
            "gw.toml",
            "",
            &env(&[("PASSERELLE_MAPPING__TIMEZONE", "America/Cayenne")]),
        )
        .unwrap();
        assert_eq!(config.mapping.timezone.as_str(), "America/Cayenne");
        let err = Config::from_toml(
            "gw.toml",
            "",
            &env(&[("PASSERELLE_MAPPING__TIMEZONE", "Nowhere/Land")]),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("PASSERELLE_MAPPING__TIMEZONE"),
            "{err}"
        );
    }

    #[test]
    fn mapping_tables_and_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("scripts")).unwrap();
        std::fs::write(dir.path().join("lab.csv"), "GLU,2345-7,Glucose\n").unwrap();
        let path = dir.path().join("gw.toml");
        std::fs::write(
            &path,
            "[mapping]\nscripts_dir = \"scripts\"\nscripts_poll_interval_ms = 100\n\n\
             [mapping.identifier_systems]\n\"CHU-NANTES\" = \"urn:oid:1.2.250.1.71.4.2.7\"\n\n\
             [[mapping.code_maps]]\nname = \"lab-loinc\"\nfile = \"lab.csv\"\ntarget_system = \"http://loinc.org\"\n\n\
             [mapping.builtin.adt]\nenabled = false\n\n[mapping.script_limits]\nmax_call_depth = 8\n",
        )
        .unwrap();
        let config = Config::load(Some(&path), &env(&[])).unwrap();
        let mapping = &config.mapping;
        assert_eq!(mapping.scripts_dir, Some(dir.path().join("scripts")));
        assert_eq!(mapping.scripts_poll_interval_ms, 100);
        assert_eq!(
            mapping.identifier_systems["CHU-NANTES"],
            "urn:oid:1.2.250.1.71.4.2.7"
        );
        assert_eq!(mapping.code_maps[0].file, dir.path().join("lab.csv"));
        assert!(!mapping.builtin.adt.enabled);
        assert_eq!(mapping.script_limits.max_call_depth, 8);
        let maps = mapping.load_code_maps().unwrap();
        assert_eq!(
            maps["lab-loinc"].lookup("GLU"),
            Some(("2345-7", Some("Glucose")))
        );
        // The effective settings print and read back the same.
        let printed = toml::to_string_pretty(&config).unwrap();
        let again = Config::from_toml("printed", &printed, &env(&[])).unwrap();
        assert_eq!(again, config);
    }

    #[test]
    fn bad_code_map_names_the_csv_line_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("good.csv"), "A,1\n").unwrap();
        std::fs::write(dir.path().join("bad.csv"), "A,1\n\nbroken\n").unwrap();
        let path = dir.path().join("gw.toml");
        std::fs::write(
            &path,
            "[[mapping.code_maps]]\nname = \"one\"\nfile = \"good.csv\"\ntarget_system = \"urn:x\"\n\n\
             [[mapping.code_maps]]\nname = \"two\"\nfile = \"bad.csv\"\ntarget_system = \"urn:x\"\n",
        )
        .unwrap();
        let message = Config::load(Some(&path), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(message.contains("gw.toml: line 8"), "{message}");
        assert!(message.contains("mapping.code_maps[1].file"), "{message}");
        assert!(message.contains("bad.csv: line 3"), "{message}");

        std::fs::write(
            &path,
            "[[mapping.code_maps]]\nname = \"one\"\nfile = \"missing.csv\"\ntarget_system = \"urn:x\"\n",
        )
        .unwrap();
        let message = Config::load(Some(&path), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(message.contains("missing.csv"), "{message}");
        assert!(message.contains("cannot read"), "{message}");
    }

    #[test]
    fn a_code_map_named_by_a_mapper_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("lab.csv"), "GLU,2345-7,Glucose\n").unwrap();
        let path = dir.path().join("gw.toml");
        let maps = "[[mapping.code_maps]]\nname = \"lab\"\nfile = \"lab.csv\"\ntarget_system = \"http://loinc.org\"\n\n";
        std::fs::write(
            &path,
            format!("{maps}[mapping.builtin.oru]\ncode_map = \"lab\"\n"),
        )
        .unwrap();
        Config::load(Some(&path), &env(&[])).unwrap();
        std::fs::write(
            &path,
            format!("{maps}[mapping.builtin.oru]\ncode_map = \"labo\"\n"),
        )
        .unwrap();
        let message = Config::load(Some(&path), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(message.contains("gw.toml: line 7"), "{message}");
        assert!(
            message.contains("mapping.builtin.oru.code_map"),
            "{message}"
        );
        assert!(message.contains("no code map named `labo`"), "{message}");
    }

    #[test]
    fn missing_scripts_dir_is_an_error() {
        let text = "[mapping]\nscripts_dir = \"/nonexistent/passerelle-scripts\"\n";
        let message = Config::from_toml("gw.toml", text, &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(message.contains("gw.toml: line 2"), "{message}");
        assert!(message.contains("mapping.scripts_dir"), "{message}");
        let message = Config::from_toml(
            "gw.toml",
            "",
            &env(&[("PASSERELLE_MAPPING__SCRIPTS_DIR", "/nonexistent/x")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            message.contains("PASSERELLE_MAPPING__SCRIPTS_DIR"),
            "{message}"
        );
    }

    #[test]
    fn unknown_mapping_keys_are_refused() {
        let text = "[mapping.builtin.adt]\nenabeld = true\n";
        let message = Config::from_toml("gw.toml", text, &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(message.contains("line 2"), "{message}");
        assert!(message.contains("enabeld"), "{message}");
    }
}
