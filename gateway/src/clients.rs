//! The gateway's clients: the directory the access checks authenticate
//! against (the local admin key, `[[security.clients]]` and the clients
//! stored by `passerelle clients add`, refreshed while running so that an
//! added or revoked client takes effect within [`REFRESH`]), and the
//! `passerelle clients` command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use passerelle_config::Config;
use passerelle_security::audit::{
    bounded, roles, types, Action, Code, Entity, Outcome, PASSERELLE_SUBTYPE,
};
use passerelle_security::{
    keys, load_or_create_key_file, AddressRange, Client, ClientDirectory, ClientRecord, Scopes,
    LOCAL_ADMIN_KEY_FILE,
};
use passerelle_storage::clients::{self as stored, StoredClient};
use passerelle_storage::SharedStore;

/// How often the stored clients are read again.
pub const REFRESH: Duration = Duration::from_secs(2);

/// A client of the configuration or the store that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClientSetupError {
    #[error("security.clients[{index}] (`{name}`): {message}")]
    Configured {
        index: usize,
        name: String,
        message: String,
    },
    #[error("{path}: {message}")]
    ClientsFile { path: String, message: String },
    #[error("local admin key: {0}")]
    KeyFile(#[from] passerelle_security::KeyFileError),
    #[error(transparent)]
    Storage(#[from] passerelle_storage::StorageError),
}

fn network_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A network a client may belong to: a name, or `*` (every network: the
/// client reads every patient).
pub fn network_ok(name: &str) -> bool {
    name == passerelle_repository::networks::EVERY_NETWORK || network_name_ok(name)
}

/// The clients `[[security.clients]]` defines.
pub fn configured(config: &Config) -> Result<Vec<ClientRecord>, ClientSetupError> {
    records(&config.security.clients)
}

/// What a `security.clients_file` holds: `[[security.clients]]` entries,
/// as `passerelle clients add --print-config` prints them.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientsFile {
    #[serde(default)]
    security: ClientsFileSecurity,
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ClientsFileSecurity {
    #[serde(default)]
    clients: Vec<passerelle_config::ClientConfig>,
}

/// The clients of `security.clients_file`, if one is configured.
pub fn file_clients(config: &Config) -> Result<Vec<ClientRecord>, ClientSetupError> {
    let Some(path) = &config.security.clients_file else {
        return Ok(Vec::new());
    };
    let fail = |message: String| ClientSetupError::ClientsFile {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let file: ClientsFile = toml::from_str(&text).map_err(|e| fail(e.to_string()))?;
    records(&file.security.clients).map_err(|e| fail(e.to_string()))
}

fn records(
    clients: &[passerelle_config::ClientConfig],
) -> Result<Vec<ClientRecord>, ClientSetupError> {
    let mut records = Vec::new();
    for (index, client) in clients.iter().enumerate() {
        let fail = |message: String| ClientSetupError::Configured {
            index,
            name: client.name.clone(),
            message,
        };
        let scopes = Scopes::parse(&client.scopes).map_err(|e| fail(e.to_string()))?;
        if client.key_verifier.is_empty() {
            if client.certificate_names.is_empty() {
                return Err(fail(
                    "needs key_verifier (an API key) or certificate_names (a TLS client certificate)"
                        .to_string(),
                ));
            }
        } else {
            keys::verifier_key_id(&client.key_verifier)
                .map_err(|e| fail(format!("key_verifier: {e}")))?;
        }
        if let Some(bad) = client
            .certificate_names
            .iter()
            .find(|name| rustls::pki_types::ServerName::try_from(name.as_str()).is_err())
        {
            return Err(fail(format!(
                "certificate_names: `{bad}` is not a DNS name or an IP address"
            )));
        }
        if let Some(bad) = client.networks.iter().find(|n| !network_ok(n)) {
            return Err(fail(format!(
                "network `{bad}`: use letters, digits, '-', '_' and '.'"
            )));
        }
        let mllp_addresses = client
            .mllp_addresses
            .iter()
            .map(|text| AddressRange::parse(text))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail(format!("mllp_addresses: {e}")))?;
        records.push(ClientRecord {
            client: Client {
                name: client.name.clone(),
                networks: client.networks.clone(),
                scopes,
                mllp_addresses,
                certificate_names: client.certificate_names.clone(),
                hl7_senders: passerelle_security::Hl7Senders {
                    applications: client.sending_applications.clone(),
                    facilities: client.sending_facilities.clone(),
                },
            },
            verifier: client.key_verifier.clone(),
        });
    }
    Ok(records)
}

/// The stored clients that are not revoked. A stored scope that no longer
/// parses leaves that client out (and says so) rather than stopping the
/// gateway.
fn stored_records(store: &SharedStore) -> Result<Vec<ClientRecord>, ClientSetupError> {
    let mut records = Vec::new();
    for client in stored::list(store.as_ref())? {
        if client.revoked_at.is_some() {
            continue;
        }
        match Scopes::parse(&client.scopes) {
            Ok(scopes) => records.push(ClientRecord {
                client: Client {
                    name: client.name,
                    networks: client.networks,
                    scopes,
                    mllp_addresses: Vec::new(),
                    certificate_names: Vec::new(),
                    hl7_senders: passerelle_security::Hl7Senders::default(),
                },
                verifier: client.verifier,
            }),
            Err(error) => {
                tracing::warn!(client = %client.name, error = %error, "stored client left out");
            }
        }
    }
    Ok(records)
}

/// The directory at start: the local admin (its key file made when
/// missing), the configured clients and the stored ones.
pub fn directory(
    config: &Config,
    store: &SharedStore,
) -> Result<(Arc<ClientDirectory>, Vec<ClientRecord>), ClientSetupError> {
    let directory = Arc::new(ClientDirectory::default());
    if config.security.local_admin {
        let path = local_admin_key_path(config);
        let (key, created) = load_or_create_key_file(&path)?;
        directory.set_local_admin(&key);
        if created {
            tracing::info!(path = %path.display(), "local admin key written (every scope; send it as `Authorization: Bearer <key>`)");
        } else {
            tracing::info!(path = %path.display(), "local admin key read");
        }
    }
    let configured = configured(config)?;
    let mut all = configured.clone();
    all.extend(file_clients(config)?);
    all.extend(stored_records(store)?);
    directory.replace(all);
    Ok((directory, configured))
}

pub fn local_admin_key_path(config: &Config) -> PathBuf {
    config.storage.data_dir.join(LOCAL_ADMIN_KEY_FILE)
}

/// Reads the clients file, the stored clients and the token issuers' keys
/// (when changed or due) again every [`REFRESH`] until shutdown. A clients file that no longer reads keeps its previous
/// clients (and says so): a half-saved edit must not lock everyone out.
pub async fn refresh(
    directory: Arc<ClientDirectory>,
    config: Arc<Config>,
    mut issuers: Vec<crate::issuers::IssuerKeys>,
    configured: Vec<ClientRecord>,
    store: SharedStore,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut from_file = file_clients(&config).unwrap_or_default();
    loop {
        tokio::select! {
            () = tokio::time::sleep(REFRESH) => {}
            () = shutdown.cancelled() => return,
        }
        if crate::issuers::refresh(&mut issuers).await {
            crate::issuers::install(&issuers, &directory);
        }
        let store = store.clone();
        let reading = config.clone();
        let read =
            tokio::task::spawn_blocking(move || (file_clients(&reading), stored_records(&store)))
                .await;
        match read {
            Ok((file, Ok(records))) => {
                match file {
                    Ok(records) => from_file = records,
                    Err(error) => {
                        tracing::error!(error = %error, "clients file not read; its previous clients stay")
                    }
                }
                let mut all = configured.clone();
                all.extend(from_file.iter().cloned());
                all.extend(records);
                directory.replace(all);
            }
            Ok((_, Err(error))) => tracing::warn!(error = %error, "cannot read the stored clients"),
            Err(_) => tracing::warn!("the client refresh task failed"),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ClientsArgs {
    #[command(subcommand)]
    pub command: ClientsCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ClientsCommand {
    /// Add a client and print its key (shown this once; only its hash is
    /// kept).
    Add {
        name: String,
        /// A network the client belongs to (repeatable).
        #[arg(long = "network")]
        networks: Vec<String>,
        /// A scope: `system/Patient.rs`, `system/*.cruds`,
        /// `passerelle/admin`, `passerelle/metrics`, `passerelle/hl7v2`,
        /// `passerelle/convert` (repeatable).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Print a `[[security.clients]]` entry for the configuration file
        /// instead of storing the client.
        #[arg(long)]
        print_config: bool,
    },
    /// List the clients the store holds (and those of the configuration).
    List,
    /// Revoke a stored client's key.
    Revoke { name: String },
}

/// `passerelle clients ...`: works on the store directly, running gateway
/// or not; a running gateway sees the change within [`REFRESH`].
pub fn run(config: &Config, args: &ClientsArgs) -> ExitCode {
    match run_command(config, args) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("passerelle clients: {message}");
            ExitCode::from(code)
        }
    }
}

fn run_command(config: &Config, args: &ClientsArgs) -> Result<(), (u8, String)> {
    let open = || passerelle_storage::open(&config.storage).map_err(|e| (1, e.to_string()));
    match &args.command {
        ClientsCommand::Add {
            name,
            networks,
            scopes,
            print_config,
        } => {
            if !network_name_ok(name) {
                return Err((
                    2,
                    format!("name `{name}`: use letters, digits, '-', '_' and '.'"),
                ));
            }
            if let Some(bad) = networks.iter().find(|n| !network_ok(n)) {
                return Err((
                    2,
                    format!("network `{bad}`: use letters, digits, '-', '_' and '.'"),
                ));
            }
            let parsed = Scopes::parse(scopes).map_err(|e| (2, e.to_string()))?;
            let issued = keys::issue().map_err(|e| (1, e.to_string()))?;
            if *print_config {
                let quoted = |items: &[String]| {
                    items
                        .iter()
                        .map(|i| format!("{i:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                println!(
                    "# the key of client `{name}` (give it to the client; it is not shown again):"
                );
                println!("# {}", issued.text);
                println!("[[security.clients]]");
                println!("name = {name:?}");
                println!("key_verifier = {:?}", issued.verifier);
                println!("networks = [{}]", quoted(networks));
                println!("scopes = [{}]", quoted(parsed.texts()));
                return Ok(());
            }
            let store = open()?;
            let entity = client_entity(name)
                .detail("networks", networks.join(" "))
                .detail("scopes", parsed.texts().join(" "));
            let added = stored::add_recorded(
                store.as_ref(),
                &StoredClient {
                    name: name.clone(),
                    key_id: issued.key_id.clone(),
                    verifier: issued.verifier.clone(),
                    networks: networks.clone(),
                    scopes: parsed.texts().to_vec(),
                    created_at: passerelle_storage::clock::now_fhir_datetime(),
                    revoked_at: None,
                },
                // Recorded in the transaction that adds it.
                Some(&client_record(
                    "client-add",
                    "API client added",
                    Action::Create,
                    Outcome::Success,
                    "added",
                    entity.clone(),
                )),
            );
            if let Err(error) = added {
                refused(
                    &store,
                    "client-add",
                    "API client added",
                    Action::Create,
                    &error,
                    entity,
                );
                return Err((1, error.to_string()));
            }
            eprintln!("client `{name}` added; its key (shown this once):");
            println!("{}", issued.text);
            Ok(())
        }
        ClientsCommand::List => {
            let store = open()?;
            let clients = stored::list(store.as_ref()).map_err(|e| (1, e.to_string()))?;
            println!(
                "{:<24} {:<8} {:<24} {:<26} SCOPES",
                "NAME", "SOURCE", "NETWORKS", "STATE"
            );
            for client in &config.security.clients {
                println!(
                    "{:<24} {:<8} {:<24} {:<26} {}",
                    client.name,
                    "config",
                    client.networks.join(","),
                    "active",
                    client.scopes.join(" ")
                );
            }
            for client in clients {
                let state = match &client.revoked_at {
                    Some(at) => format!("revoked {at}"),
                    None => "active".to_string(),
                };
                println!(
                    "{:<24} {:<8} {:<24} {:<26} {}",
                    client.name,
                    "store",
                    client.networks.join(","),
                    state,
                    client.scopes.join(" ")
                );
            }
            Ok(())
        }
        ClientsCommand::Revoke { name } => {
            let store = open()?;
            let revoked = stored::revoke_recorded(
                store.as_ref(),
                name,
                passerelle_storage::now_ms(),
                // Recorded in the transaction that revokes it.
                Some(&client_record(
                    "client-revoke",
                    "API client revoked",
                    Action::Delete,
                    Outcome::Success,
                    "revoked",
                    client_entity(name),
                )),
            );
            if let Err(error) = revoked {
                refused(
                    &store,
                    "client-revoke",
                    "API client revoked",
                    Action::Delete,
                    &error,
                    client_entity(name),
                );
                return Err((1, error.to_string()));
            }
            eprintln!("client `{name}` revoked");
            Ok(())
        }
    }
}

/// The client a `clients` command is about (its name, never its key).
fn client_entity(name: &str) -> Entity {
    Entity::new(
        Some(roles::SECURITY_USER),
        format!("API client {}", bounded(name, 64)),
    )
    .identified(bounded(name, 64))
}

/// The audit record of `clients add` or `clients revoke`.
fn client_record(
    subtype: &'static str,
    display: &'static str,
    action: Action,
    outcome: Outcome,
    said: &str,
    entity: Entity,
) -> passerelle_storage::audit::AuditRecord {
    crate::cli_audit::record(
        types::SECURITY_ALERT,
        Code::new(PASSERELLE_SUBTYPE, subtype, display),
        action,
        outcome,
        said,
        &[],
        entity,
    )
}

/// Records a refused `clients add` or `clients revoke` (a live client of
/// that name, no such client, a store error).
fn refused(
    store: &SharedStore,
    subtype: &'static str,
    display: &'static str,
    action: Action,
    error: &stored::ClientStoreError,
    entity: Entity,
) {
    let (outcome, said) = match error {
        stored::ClientStoreError::Duplicate(_) => (
            Outcome::MinorFailure,
            "refused: a live client has that name",
        ),
        stored::ClientStoreError::Unknown(_) => (
            Outcome::MinorFailure,
            "refused: no live client has that name",
        ),
        stored::ClientStoreError::Storage(_) => (Outcome::SeriousFailure, "failed: storage error"),
    };
    let record = client_record(subtype, display, action, outcome, said, entity);
    crate::cli_audit::append(store.as_ref(), record, "clients");
}
