//! Who a request comes from: the directory of known clients (from the
//! configuration, the store, and the local admin key) and the one way a
//! bearer key becomes a [`Client`].
//!
//! Keys are checked against their slow hash once; a key that verified is
//! remembered by its SHA-256 (never its text) with the verifier it matched,
//! so a revoked or re-keyed client stops matching at the next refresh of
//! the directory. At most [`VERIFYING_AT_ONCE`] slow checks run at a time,
//! on blocking threads, so a flood of wrong keys costs two cores at most
//! and never stalls the runtime.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};

use crate::keys;
use crate::networks::AddressRange;
use crate::scopes::{GatewayScope, Permission, Scopes};

/// Slow key checks allowed at once.
pub const VERIFYING_AT_ONCE: usize = 2;
/// Keys remembered as verified; beyond this the memory is cleared.
const REMEMBERED: usize = 10_000;

/// A known client, as a request's extensions carry it once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub name: String,
    pub networks: Vec<String>,
    pub scopes: Scopes,
    /// Where its MLLP connections may come from (none: it does not send
    /// over MLLP, unless it is the local admin on loopback).
    pub mllp_addresses: Vec<AddressRange>,
    /// Names a TLS client certificate must be valid for to stand for this
    /// client (see [`crate::tls`]).
    pub certificate_names: Vec<String>,
    /// The MSH-3 (sending application) and MSH-4 (sending facility) its
    /// HL7 v2 messages may carry; empty: any.
    pub hl7_senders: Hl7Senders,
}

/// The MSH-3 and MSH-4 values a client's HL7 v2 messages may carry. A
/// value names a field whole (`LABO^1.2.250.1.71^ISO`) or by its namespace
/// id (`LABO`); an empty list allows any value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hl7Senders {
    pub applications: Vec<String>,
    pub facilities: Vec<String>,
}

impl Hl7Senders {
    /// Whether a message whose MSH-3 is `application` (namespace id
    /// `application_namespace`) and MSH-4 `facility` (`facility_namespace`)
    /// may come from this client.
    pub fn allow(&self, application: (&str, &str), facility: (&str, &str)) -> bool {
        self.allow_application(application) && listed(&self.facilities, facility)
    }

    /// Whether MSH-3 (whole, namespace id) is one this client may send
    /// under, whatever MSH-4.
    pub fn allow_application(&self, application: (&str, &str)) -> bool {
        listed(&self.applications, application)
    }

    /// Whether any value is listed (the client sends under some names only).
    pub fn restricted(&self) -> bool {
        !self.applications.is_empty() || !self.facilities.is_empty()
    }
}

/// Whether an HD field (whole, namespace id) is in `list` (empty: any).
fn listed(list: &[String], (whole, namespace): (&str, &str)) -> bool {
    list.is_empty()
        || list
            .iter()
            .any(|value| value == whole || value == namespace)
}

/// A client as the configuration or the store defines it.
#[derive(Debug, Clone)]
pub struct ClientRecord {
    pub client: Client,
    /// `<key id>$pbkdf2-sha256$...` (see [`keys`]).
    pub verifier: String,
}

/// Why a request is not authenticated (answered 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unauthenticated {
    #[error("this endpoint needs a client key: send `Authorization: Bearer <key>`")]
    Missing,
    #[error("the client key is not valid")]
    Invalid,
}

#[derive(Default)]
struct State {
    /// By key id: the client and its verifier.
    by_key_id: HashMap<String, (Arc<Client>, String)>,
    /// SHA-256 of keys that verified, with the verifier they matched.
    verified: HashMap<[u8; 32], String>,
    /// The local admin: the SHA-256 of its key (held in memory only).
    local: Option<([u8; 32], Arc<Client>)>,
    /// Clients a TLS client certificate can stand for, by name.
    by_certificate: Vec<Arc<Client>>,
    /// Authorisation servers whose JWTs are accepted as bearer tokens.
    issuers: Vec<Arc<crate::jwt::Issuer>>,
}

/// Every client the gateway knows.
pub struct ClientDirectory {
    state: RwLock<State>,
    verifying: tokio::sync::Semaphore,
}

impl Default for ClientDirectory {
    fn default() -> Self {
        ClientDirectory {
            state: RwLock::new(State::default()),
            verifying: tokio::sync::Semaphore::new(VERIFYING_AT_ONCE),
        }
    }
}

impl std::fmt::Debug for ClientDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientDirectory").finish_non_exhaustive()
    }
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

impl ClientDirectory {
    /// The local admin: every scope, every network (`*`: it reads every
    /// patient), known by the key in `./data/local-admin.key`.
    pub fn set_local_admin(&self, key: &str) {
        let client = Arc::new(Client {
            name: LOCAL_ADMIN.to_string(),
            networks: vec!["*".to_string()],
            scopes: Scopes::everything(),
            mllp_addresses: Vec::new(),
            certificate_names: Vec::new(),
            hl7_senders: Hl7Senders::default(),
        });
        if let Ok(mut state) = self.state.write() {
            state.local = Some((digest(key), client));
        }
    }

    /// The local admin, when there is one (MLLP senders on loopback are
    /// accepted as it).
    pub fn local_admin(&self) -> Option<Arc<Client>> {
        let state = self.state.read().ok()?;
        state.local.as_ref().map(|(_, client)| client.clone())
    }

    /// The client a verified TLS client certificate stands for: the one
    /// (first by name) whose `certificate_names` it is valid for.
    pub fn by_certificate(
        &self,
        certificate: &rustls::pki_types::CertificateDer<'_>,
    ) -> Option<Arc<Client>> {
        let state = self.state.read().ok()?;
        state
            .by_certificate
            .iter()
            .find(|client| {
                crate::tls::certificate_names_match(certificate, &client.certificate_names)
            })
            .cloned()
    }

    /// The clients an MLLP connection from `peer` may send as, in the
    /// order a message's MSH-3/MSH-4 is tried against them: the local
    /// admin on loopback, else the clients allowed to send HL7 v2 whose
    /// `mllp_addresses` hold `peer`, those that name their senders first
    /// (several systems behind one address are told apart by MSH-3/MSH-4).
    pub fn mllp_senders(&self, peer: std::net::IpAddr) -> Vec<Arc<Client>> {
        let Ok(state) = self.state.read() else {
            return Vec::new();
        };
        if peer.is_loopback()
            || matches!(peer, std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
        {
            if let Some((_, admin)) = &state.local {
                return vec![admin.clone()];
            }
        }
        let send = Permission::Gateway(GatewayScope::Hl7v2);
        let mut candidates: Vec<Arc<Client>> = state
            .by_key_id
            .values()
            .map(|(client, _)| client)
            .filter(|client| client.scopes.permits(&send))
            .filter(|client| {
                client
                    .mllp_addresses
                    .iter()
                    .any(|range| range.contains(peer))
            })
            .cloned()
            .collect();
        // The same answer whatever the map's order.
        candidates.sort_by(|a, b| {
            (!a.hl7_senders.restricted(), &a.name).cmp(&(!b.hl7_senders.restricted(), &b.name))
        });
        candidates
    }

    /// Replaces the configured and stored clients (the local admin stays).
    pub fn replace(&self, records: Vec<ClientRecord>) {
        let mut by_key_id = HashMap::with_capacity(records.len());
        let mut by_certificate = Vec::new();
        for record in records {
            let client = Arc::new(record.client);
            if !client.certificate_names.is_empty() {
                by_certificate.push(client.clone());
            }
            // A client known by its certificate alone has no verifier.
            if let Ok(id) = keys::verifier_key_id(&record.verifier) {
                by_key_id.insert(id.to_string(), (client, record.verifier.clone()));
            }
        }
        by_certificate.sort_by(|a, b| a.name.cmp(&b.name));
        if let Ok(mut state) = self.state.write() {
            state.by_key_id = by_key_id;
            state.by_certificate = by_certificate;
        }
    }

    /// Replaces the trusted token issuers (their keys refreshed).
    pub fn set_issuers(&self, issuers: Vec<crate::jwt::Issuer>) {
        if let Ok(mut state) = self.state.write() {
            state.issuers = issuers.into_iter().map(Arc::new).collect();
        }
    }

    /// The client a bearer key (or a JWT access token from a trusted
    /// issuer) belongs to.
    pub async fn authenticate(&self, key: &str) -> Result<Arc<Client>, Unauthenticated> {
        if crate::jwt::looks_like_jwt(key) {
            let issuers = self
                .state
                .read()
                .map_err(|_| Unauthenticated::Invalid)?
                .issuers
                .clone();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| {
                    i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
                });
            // A signature check is microseconds: no cache, no slow lane.
            return match crate::jwt::verify(key, &issuers, now) {
                Ok(client) => Ok(Arc::new(client)),
                Err(why) => {
                    tracing::debug!(reason = %why, "bearer token refused");
                    Err(Unauthenticated::Invalid)
                }
            };
        }
        let sha = digest(key);
        let candidate = {
            let state = self.state.read().map_err(|_| Unauthenticated::Invalid)?;
            if let Some((local, client)) = &state.local {
                if *local == sha {
                    return Ok(client.clone());
                }
            }
            let id = keys::key_id(key).ok_or(Unauthenticated::Invalid)?;
            let (client, verifier) = state.by_key_id.get(id).ok_or(Unauthenticated::Invalid)?;
            if state.verified.get(&sha) == Some(verifier) {
                return Ok(client.clone());
            }
            (client.clone(), verifier.clone())
        };
        let (client, verifier) = candidate;
        let _permit = self
            .verifying
            .acquire()
            .await
            .map_err(|_| Unauthenticated::Invalid)?;
        let key = key.to_string();
        let checked = verifier.clone();
        let matches = tokio::task::spawn_blocking(move || keys::verify(&key, &checked))
            .await
            .unwrap_or(false);
        if !matches {
            return Err(Unauthenticated::Invalid);
        }
        if let Ok(mut state) = self.state.write() {
            if state.verified.len() >= REMEMBERED {
                state.verified.clear();
            }
            state.verified.insert(sha, verifier);
        }
        Ok(client)
    }
}

/// The name of the client `./data/local-admin.key` authenticates.
pub const LOCAL_ADMIN: &str = "local-admin";
/// The local admin's key file, in the data directory.
pub const LOCAL_ADMIN_KEY_FILE: &str = "local-admin.key";

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: readable by other users (mode {mode:o}); make it 0600 (chmod 600)")]
    TooOpen { path: std::path::PathBuf, mode: u32 },
    #[error("{path}: does not hold a key")]
    Empty { path: std::path::PathBuf },
    #[error(transparent)]
    Key(#[from] keys::KeyError),
}

/// The key in `path`, made (mode 0600) when the file does not exist; also
/// whether it was made now. A file other users may read is refused.
pub fn load_or_create_key_file(path: &std::path::Path) -> Result<(String, bool), KeyFileError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::metadata(path) {
        Ok(metadata) => {
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyFileError::TooOpen {
                    path: path.to_path_buf(),
                    mode,
                });
            }
            let text = std::fs::read_to_string(path).map_err(io)?;
            let key = text.trim();
            if key.is_empty() {
                return Err(KeyFileError::Empty {
                    path: path.to_path_buf(),
                });
            }
            Ok((key.to_string(), false))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let issued = keys::issue()?;
            // The data directory is the SQLite store's to make; on
            // PostgreSQL nothing else makes it. Private, as the store makes it.
            if let Some(directory) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(directory)
                    .map_err(io)?;
            }
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
            file.write_all(format!("{}\n", issued.text).as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(io)?;
            Ok((issued.text, true))
        }
        Err(error) => Err(io(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, scopes: &[&str]) -> (String, ClientRecord) {
        let issued = keys::issue().unwrap();
        let record = ClientRecord {
            client: Client {
                name: name.into(),
                networks: vec!["n".into()],
                scopes: Scopes::parse(scopes).unwrap(),
                mllp_addresses: vec![AddressRange::parse("10.9.0.0/16").unwrap()],
                certificate_names: vec![],
                hl7_senders: Hl7Senders::default(),
            },
            verifier: issued.verifier,
        };
        (issued.text, record)
    }

    #[tokio::test]
    async fn keys_find_their_client_and_revocation_takes_effect() {
        let directory = ClientDirectory::default();
        let (lab_key, lab) = record("lab", &["system/Observation.c"]);
        let (gp_key, gp) = record("gp", &["system/Patient.rs"]);
        directory.replace(vec![lab.clone(), gp]);
        assert_eq!(directory.authenticate(&lab_key).await.unwrap().name, "lab");
        // Twice: the second time from the memory of verified keys.
        assert_eq!(directory.authenticate(&lab_key).await.unwrap().name, "lab");
        assert_eq!(directory.authenticate(&gp_key).await.unwrap().name, "gp");
        // A wrong secret under a known id.
        let forged = format!(
            "{}AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            &lab_key[..17]
        );
        assert_eq!(
            directory.authenticate(&forged).await,
            Err(Unauthenticated::Invalid)
        );
        assert_eq!(
            directory.authenticate("not a key").await,
            Err(Unauthenticated::Invalid)
        );
        // Revoked: the remembered verification no longer counts.
        directory.replace(vec![lab]);
        assert_eq!(
            directory.authenticate(&gp_key).await,
            Err(Unauthenticated::Invalid)
        );
    }

    #[test]
    fn the_key_file_is_made_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCAL_ADMIN_KEY_FILE);
        let (made, created) = load_or_create_key_file(&path).unwrap();
        assert!(created);
        assert!(keys::key_id(&made).is_some());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create_key_file(&path).unwrap(), (made, false));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_or_create_key_file(&path),
            Err(KeyFileError::TooOpen { mode: 0o644, .. })
        ));
    }

    #[test]
    fn the_key_file_is_made_in_a_data_directory_not_yet_made() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join(LOCAL_ADMIN_KEY_FILE);
        let (made, created) = load_or_create_key_file(&path).unwrap();
        assert!(created);
        assert_eq!(load_or_create_key_file(&path).unwrap(), (made, false));
        let mode = std::fs::metadata(dir.path().join("data"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn mllp_senders_are_found_by_address_and_scope() {
        let directory = ClientDirectory::default();
        let ip = |text: &str| text.parse::<std::net::IpAddr>().unwrap();
        let names = |peer: &str| -> Vec<String> {
            directory
                .mllp_senders(ip(peer))
                .iter()
                .map(|client| client.name.clone())
                .collect()
        };
        assert!(names("127.0.0.1").is_empty());
        directory.set_local_admin("psl_local");
        assert_eq!(names("127.0.0.1"), [LOCAL_ADMIN]);
        assert_eq!(names("::1"), [LOCAL_ADMIN]);
        let (_, lab) = record("lab", &["passerelle/hl7v2"]);
        let (_, reader) = record("reader", &["system/Patient.rs"]);
        // Two systems behind the lab's address; the one that names its
        // facility is tried first.
        let (_, mut radiology) = record("radiology", &["passerelle/hl7v2"]);
        radiology.client.hl7_senders.facilities = vec!["RADIO".into()];
        directory.replace(vec![lab, reader, radiology]);
        assert_eq!(names("10.9.3.4"), ["radiology", "lab"]);
        assert!(names("10.8.3.4").is_empty());
    }

    #[test]
    fn hl7_senders_match_whole_fields_or_namespace_ids() {
        let any = Hl7Senders::default();
        assert!(any.allow(("X", "X"), ("", "")));
        let lab = Hl7Senders {
            applications: vec!["LABO".into()],
            facilities: vec!["FINESS^1.2.250.1.71.4.2.2^ISO".into()],
        };
        assert!(lab.restricted());
        let finess = ("FINESS^1.2.250.1.71.4.2.2^ISO", "FINESS");
        assert!(lab.allow(("LABO^1.2.3^ISO", "LABO"), finess));
        assert!(lab.allow(("LABO", "LABO"), finess));
        assert!(!lab.allow(("LAB", "LAB"), finess));
        assert!(!lab.allow(("LABO", "LABO"), ("FINESS", "FINESS")));
    }

    #[tokio::test]
    async fn the_local_admin_has_every_scope() {
        let directory = ClientDirectory::default();
        assert!(directory.local_admin().is_none());
        directory.set_local_admin("psl_local");
        let admin = directory.authenticate("psl_local").await.unwrap();
        assert_eq!(admin.name, LOCAL_ADMIN);
        assert_eq!(admin.scopes, Scopes::everything());
        directory.replace(Vec::new());
        assert!(directory.authenticate("psl_local").await.is_ok());
    }
}
