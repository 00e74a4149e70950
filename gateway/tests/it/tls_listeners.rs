//! The gateway's own listeners over TLS, with certificates made here:
//! HTTPS and MLLP over TLS answer only inside a TLS session, a client
//! certificate from the configured authority stands for its client (a
//! search with no key, an HL7 v2 message with no address rule), and a
//! certificate that is expired, from another authority or missing where
//! required gets no session. A renewed certificate is served without a
//! restart, and a listener off loopback without TLS does not start.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::common::{self, Gateway, Options};

pub struct Authority {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Authority {
    pub fn new(name: &str) -> Authority {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        Authority {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    pub fn leaf(&self, name: &str) -> Leaf {
        self.leaf_with(name, |_| {})
    }

    fn leaf_with(&self, name: &str, adjust: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        adjust(&mut params);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// Writes `text` to `path` with mode 0600 in one rename, as a certificate
/// renewal tool does.
pub fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let staging = path.with_extension("new");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&staging)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
    drop(file);
    std::fs::rename(&staging, path).unwrap();
}

/// A TLS client session to `addr` trusting `ca_pem`, presenting `identity`.
fn connect(
    addr: SocketAddr,
    ca_pem: &str,
    identity: Option<&Leaf>,
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    let name = ServerName::try_from(addr.ip().to_string()).unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let socket = TcpStream::connect(addr)?;
    socket.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut stream = rustls::StreamOwned::new(connection, socket);
    // Completes the handshake, so that a refusal shows here; with TLS 1.3
    // the server's verdict on a client certificate arrives with its first
    // records, which the request below reads.
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
    }
    Ok(stream)
}

/// `GET path` over HTTPS; the raw answer, or the error that ended the
/// session.
fn https_get(
    addr: SocketAddr,
    ca_pem: &str,
    identity: Option<&Leaf>,
    path: &str,
    key: Option<&str>,
) -> std::io::Result<common::Reply> {
    let mut stream = connect(addr, ca_pem, identity)?;
    let auth = key
        .map(|key| format!("Authorization: Bearer {key}\r\n"))
        .unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => {}
        // Servers close without close_notify often enough; what arrived counts.
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(error) => return Err(error),
    }
    if raw.is_empty() {
        return Err(std::io::Error::other("no answer"));
    }
    Ok(common::Reply::parse(&String::from_utf8_lossy(&raw)))
}

/// One HL7 v2 message over MLLP inside TLS; the ACK, or the error that
/// ended the session.
fn mllp_tls_send(
    addr: SocketAddr,
    ca_pem: &str,
    identity: Option<&Leaf>,
    message: &str,
) -> std::io::Result<String> {
    let mut stream = connect(addr, ca_pem, identity)?;
    stream.write_all(format!("\x0b{message}\x1c\r").as_bytes())?;
    stream.flush()?;
    let mut ack = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let read = stream.read(&mut byte)?;
        if read == 0 {
            return Err(std::io::Error::other("closed without an ACK"));
        }
        if byte[0] == 0x1c {
            break;
        }
        ack.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&ack)
        .trim_start_matches('\x0b')
        .to_string())
}

fn adt(control_id: &str) -> String {
    format!(
        "MSH|^~\\&|LAB|SITE|GW|GW|20261203101500||ADT^A04^ADT_A01|{control_id}|P|2.5\rEVN|A04|20261203101500\rPID|1||TLS{control_id}^^^HOSP^PI||DUPONT^MARIE||19800101|F\rPV1|1|O\r"
    )
}

fn reachable(addr: SocketAddr) -> bool {
    TcpStream::connect(addr).is_ok()
}

struct Setup {
    gateway: Gateway,
    ca: Authority,
    dir: tempfile::TempDir,
}

/// A gateway whose HTTP listener is HTTPS (client certificates optional)
/// and whose MLLP listener requires a client certificate; the client
/// `lab` is known by its certificate's name alone.
fn start() -> Setup {
    let ca = Authority::new("Passerelle test CA");
    let dir = tempfile::tempdir().unwrap();
    let server = ca.leaf("127.0.0.1");
    let cert = dir.path().join("server.pem");
    let key = dir.path().join("server.key");
    let ca_file = dir.path().join("clients-ca.pem");
    std::fs::write(&cert, &server.cert_pem).unwrap();
    write_private(&key, &server.key_pem);
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let config = format!(
        r#"
[http.tls]
cert_file = "{cert}"
key_file = "{key}"
client_ca_file = "{ca}"
reload_interval_secs = 1

[mllp.tls]
cert_file = "{cert}"
key_file = "{key}"
client_ca_file = "{ca}"
require_client_cert = true

[[security.clients]]
name = "lab"
scopes = ["system/Patient.rs", "passerelle/hl7v2"]
certificate_names = ["lab.passerelle.test"]
"#,
        cert = cert.display(),
        key = key.display(),
        ca = ca_file.display(),
    );
    let path = dir.path().join("tls.toml");
    std::fs::write(&path, config).unwrap();
    let gateway = Gateway::start_with(Options {
        args: vec!["--config".into(), path.display().to_string()],
        ready_probe: Some(reachable),
        ..Options::default()
    });
    Setup { gateway, ca, dir }
}

#[test]
fn https_and_mllp_over_tls_with_client_certificates() {
    let Setup { gateway, ca, dir } = start();
    let http = gateway.http_addr;
    let ca_pem = ca.pem();
    let lab = ca.leaf("lab.passerelle.test");

    // HTTPS answers; the same port in clear does not.
    let metadata = https_get(http, &ca_pem, None, "/fhir/metadata", None).unwrap();
    assert_eq!(metadata.status, 200, "{}", metadata.body);
    assert!(metadata.body.contains("CapabilityStatement"));
    let clear = common::http_get(http, "/fhir/metadata").unwrap_or_default();
    assert!(!clear.starts_with("HTTP/1.1 200"), "{clear}");

    // A client that does not trust the gateway's authority gets no session.
    let stranger = Authority::new("Another CA");
    assert!(https_get(http, &stranger.pem(), None, "/fhir/metadata", None).is_err());

    // The lab's certificate is its identity: a search without a key, and
    // a 403 (not 401) where its scopes stop.
    let search = https_get(http, &ca_pem, Some(&lab), "/fhir/Patient", None).unwrap();
    assert_eq!(search.status, 200, "{}", search.body);
    let admin = https_get(http, &ca_pem, Some(&lab), "/admin/messages", None).unwrap();
    assert_eq!(admin.status, 403, "{}", admin.body);
    // Without a certificate, the key is needed as on any listener.
    let anonymous = https_get(http, &ca_pem, None, "/fhir/Patient", None).unwrap();
    assert_eq!(anonymous.status, 401);
    let keyed = https_get(http, &ca_pem, None, "/fhir/Patient", Some(common::TEST_KEY)).unwrap();
    assert_eq!(keyed.status, 200);
    // A certificate whose name no client holds identifies nobody.
    let unnamed = ca.leaf("unknown.passerelle.test");
    let nobody = https_get(http, &ca_pem, Some(&unnamed), "/fhir/Patient", None).unwrap();
    assert_eq!(nobody.status, 401);

    // Certificates the authority did not sign, or that have expired, get
    // no session.
    let forged = stranger.leaf("lab.passerelle.test");
    assert!(https_get(http, &ca_pem, Some(&forged), "/fhir/Patient", None).is_err());
    let expired = ca.leaf_with("lab.passerelle.test", |params| {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    assert!(https_get(http, &ca_pem, Some(&expired), "/fhir/Patient", None).is_err());

    // MLLP over TLS: the lab's certificate is accepted as the lab; no
    // certificate, another authority's or an expired one: no ACK at all.
    let mllp = gateway.mllp_addr;
    let ack = mllp_tls_send(mllp, &ca_pem, Some(&lab), &adt("TLS1")).unwrap();
    assert!(ack.contains("MSA|AA|TLS1"), "{ack}");
    assert!(mllp_tls_send(mllp, &ca_pem, None, &adt("TLS2")).is_err());
    assert!(mllp_tls_send(mllp, &ca_pem, Some(&forged), &adt("TLS3")).is_err());
    assert!(mllp_tls_send(mllp, &ca_pem, Some(&expired), &adt("TLS4")).is_err());
    // In clear, nothing is acknowledged.
    let clear = common::mllp_send_raw(mllp, adt("TLS5").as_bytes());
    assert!(!clear.contains("MSA|"), "{clear}");

    // A renewed certificate (here from a new authority) is served by the
    // next connection, without a restart.
    let renewed_ca = Authority::new("Renewed CA");
    let renewed = renewed_ca.leaf("127.0.0.1");
    std::fs::write(dir.path().join("server.pem"), &renewed.cert_pem).unwrap();
    write_private(&dir.path().join("server.key"), &renewed.key_pem);
    let reloaded = common::eventually(Duration::from_secs(20), || {
        https_get(http, &renewed_ca.pem(), None, "/fhir/metadata", None)
            .is_ok_and(|reply| reply.status == 200)
    });
    assert!(
        reloaded,
        "renewed certificate not served: {}",
        gateway.logs()
    );
    assert!(https_get(http, &ca_pem, None, "/fhir/metadata", None).is_err());
    assert!(gateway.logs().contains("TLS certificate reloaded"));
}

/// A listener off loopback speaks TLS, or the configuration says that
/// clear text is wanted there; a key file others can read is refused.
#[test]
fn plaintext_off_loopback_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let check = |config: &str| {
        let path = dir.path().join("listen.toml");
        std::fs::write(&path, config).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_passerelle"))
            .args(["check-config", "--config"])
            .arg(&path)
            .env_remove("PASSERELLE_CONFIG")
            .output()
            .unwrap()
    };
    let refused = check("[http]\nlisten = \"0.0.0.0:8443\"\n");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("http.listen"), "{stderr}");
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(stderr.contains("[http.tls]"), "{stderr}");

    let allowed = check(
        "[http]\nlisten = \"0.0.0.0:8443\"\nallow_plaintext = true\n[mllp]\nenabled = false\n[storage]\nallow_unencrypted = true\n",
    );
    assert!(
        allowed.status.success(),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );

    let ca = Authority::new("CA");
    let leaf = ca.leaf("127.0.0.1");
    let cert = dir.path().join("c.pem");
    let key = dir.path().join("c.key");
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let open_key = check(&format!(
        "[mllp]\nlisten = \"0.0.0.0:2576\"\n[mllp.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        cert.display(),
        key.display()
    ));
    assert!(!open_key.status.success());
    let stderr = String::from_utf8_lossy(&open_key.stderr);
    assert!(stderr.contains("mllp.tls.key_file"), "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");
}

/// A gateway reachable beyond its machine keeps its store encrypted
/// (SQLCipher, key in a private file or the environment), or says the
/// host encrypts it; a key file others can read, or a key without
/// `encrypted = true`, is refused by name.
#[test]
fn an_exposed_gateway_needs_an_encrypted_store() {
    let dir = tempfile::tempdir().unwrap();
    let check = |config: &str, env: &[(&str, &str)]| {
        let path = dir.path().join("exposed.toml");
        std::fs::write(&path, config).unwrap();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_passerelle"))
            .args(["check-config", "--config"])
            .arg(&path)
            .env_remove("PASSERELLE_CONFIG")
            .env_remove("PASSERELLE_STORAGE_KEY")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let exposed =
        "[http]\nlisten = \"0.0.0.0:8443\"\nallow_plaintext = true\n[mllp]\nenabled = false\n";
    let (ok, stderr) = check(exposed, &[]);
    assert!(!ok);
    assert!(stderr.contains("storage.encrypted"), "{stderr}");
    assert!(stderr.contains("not encrypted"), "{stderr}");

    let key_file = dir.path().join("store.key");
    std::fs::write(&key_file, "a passphrase only the practice knows\n").unwrap();
    let set_mode = |mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    set_mode(0o600);
    let encrypted = format!(
        "{exposed}[storage]\ndata_dir = \"{}\"\nencrypted = true\nkey_file = \"{}\"\n",
        dir.path().join("data").display(),
        key_file.display()
    );
    let (ok, stderr) = check(&encrypted, &[]);
    assert!(ok, "{stderr}");
    set_mode(0o644);
    let (ok, stderr) = check(&encrypted, &[]);
    assert!(!ok);
    assert!(stderr.contains("storage.key_file"), "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");

    // The key from the environment instead of a file.
    let from_env = format!("{exposed}[storage]\nencrypted = true\n");
    let (ok, stderr) = check(&from_env, &[]);
    assert!(!ok);
    assert!(stderr.contains("PASSERELLE_STORAGE_KEY"), "{stderr}");
    let (ok, stderr) = check(
        &from_env,
        &[("PASSERELLE_STORAGE_KEY", "another passphrase")],
    );
    assert!(ok, "{stderr}");
    // A key nobody asked to use is a mistake to point out, not to guess.
    let (ok, stderr) = check(exposed, &[("PASSERELLE_STORAGE_KEY", "another passphrase")]);
    assert!(!ok);
    assert!(stderr.contains("encrypted = true"), "{stderr}");
}

/// Writes what an operator puts in `deploy/tls`: `server.pem` (valid for
/// `name` and 127.0.0.1), `server.key` (0600) and `clients-ca.pem`; the
/// authority that signed them all.
pub fn write_server_files(dir: &Path, name: &str) -> Authority {
    let ca = Authority::new("Passerelle deployment CA");
    let key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec![name.to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca.issuer)
        .unwrap();
    std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
    write_private(&dir.join("server.key"), &key.serialize_pem());
    std::fs::write(dir.join("clients-ca.pem"), ca.pem()).unwrap();
    ca
}

/// `deploy/passerelle.production.toml` as shipped (storage switched to
/// SQLite for the test): nothing answers without a client's credential,
/// the local admin key of the embedded defaults is not one, and a client
/// of the clients file is served within its scopes.
#[test]
fn production_configuration_answers_nothing_without_authentication() {
    let repo = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let dir = tempfile::tempdir().unwrap();
    let ca = write_server_files(dir.path(), "passerelle");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_passerelle"))
        .args([
            "clients",
            "add",
            "records-reader",
            "--scope",
            "system/Patient.rs",
            "--print-config",
        ])
        .env("PASSERELLE_STORAGE__DATA_DIR", dir.path().join("scratch"))
        .output()
        .unwrap();
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).unwrap();
    let key = printed
        .lines()
        .find_map(|line| line.strip_prefix("# psl_"))
        .map(|rest| format!("psl_{rest}"))
        .expect("key printed")
        .trim()
        .to_string();
    let clients_file = dir.path().join("clients.toml");
    std::fs::write(&clients_file, &printed).unwrap();
    let gateway = Gateway::start_with(Options {
        args: vec![
            "--config".into(),
            repo.join("deploy/passerelle.production.toml")
                .display()
                .to_string(),
        ],
        env: vec![
            (
                "PASSERELLE_TLS_DIR".into(),
                dir.path().display().to_string(),
            ),
            (
                "PASSERELLE_CLIENTS_FILE".into(),
                clients_file.display().to_string(),
            ),
            (
                "PASSERELLE_POSTGRES_URL".into(),
                "postgresql://unused@127.0.0.1:9/unused".into(),
            ),
            ("PASSERELLE_STORAGE__BACKEND".into(), "sqlite".into()),
        ],
        ready_probe: Some(reachable),
        ..Options::default()
    });
    let http = gateway.http_addr;
    let ca_pem = ca.pem();
    for path in [
        "/fhir/Patient",
        "/fhir/Patient?gender=female",
        "/fhir/Patient/x/$everything",
        "/fhir/Patient/$summary?identifier=urn:x%7C1",
        "/admin/messages",
        "/metrics",
    ] {
        for credential in [None, Some(common::TEST_KEY)] {
            let reply = https_get(http, &ca_pem, None, path, credential).unwrap();
            assert_eq!(
                reply.status, 401,
                "{path} with {credential:?}: {}",
                reply.body
            );
        }
    }
    // Open by design: the CapabilityStatement and the probes.
    let metadata = https_get(http, &ca_pem, None, "/fhir/metadata", None).unwrap();
    assert_eq!(metadata.status, 200);
    // The clients file's client, within its scopes.
    let search = https_get(http, &ca_pem, None, "/fhir/Patient", Some(&key)).unwrap();
    assert_eq!(search.status, 200, "{}", search.body);
    let admin = https_get(http, &ca_pem, None, "/admin/messages", Some(&key)).unwrap();
    assert_eq!(admin.status, 403);
    // Emptied, the clients file takes the client away without a restart.
    std::fs::write(&clients_file, "# no clients\n").unwrap();
    assert!(
        common::eventually(Duration::from_secs(10), || {
            https_get(http, &ca_pem, None, "/fhir/Patient", Some(&key))
                .is_ok_and(|reply| reply.status == 401)
        }),
        "client still accepted after leaving the clients file"
    );
    // In clear, neither listener answers; MLLP needs a client certificate.
    assert!(!common::http_get(http, "/fhir/metadata")
        .unwrap_or_default()
        .starts_with("HTTP/1.1"));
    let clear = common::mllp_send_raw(gateway.mllp_addr, adt("P1").as_bytes());
    assert!(!clear.contains("MSA|"), "{clear}");
    assert!(mllp_tls_send(gateway.mllp_addr, &ca_pem, None, &adt("P2")).is_err());
}
