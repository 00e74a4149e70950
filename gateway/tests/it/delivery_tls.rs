//! HTTPS delivery with mutual TLS: the target is the FHIR server peer
//! behind a TLS endpoint (rustls, run by the test) that requires a client
//! certificate from the test's CA. With the configured CA and client
//! certificate the gateway delivers; without the client certificate the
//! handshake fails and the delivery waits for a retry.

use crate::common;
use crate::delivery;

use std::sync::Arc;
use std::time::Duration;

use crate::delivery::{
    config, oru, start_gateway, wait_all_delivered, Fault, FaultProxy, Upstream,
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A test CA, a server certificate for 127.0.0.1 and a client
/// certificate it issued (PEM).
pub struct Pki {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

pub fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["passerelle.test".to_string()])
        .unwrap()
        .signed_by(&client_key, &ca)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        server_cert_pem: server.pem(),
        server_key_pem: server_key.serialize_pem(),
        client_cert_pem: client.pem(),
        client_key_pem: client_key.serialize_pem(),
    }
}

/// A TLS endpoint requiring client certificates from the CA, forwarding
/// the decrypted bytes to `backend_port`. Returns its port and runtime.
fn tls_endpoint(pki: &Pki, backend_port: u16) -> (u16, tokio::runtime::Runtime) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(pki.server_cert_pem.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    runtime.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut backend) =
                    tokio::net::TcpStream::connect(("127.0.0.1", backend_port)).await
                else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut backend).await;
            });
        }
    });
    (port, runtime)
}

fn https_config(proxy_port: u16, tls_port: u16, tls: &str) -> String {
    format!(
        "{}\n[targets.hospital.tls]\n{tls}",
        config(proxy_port, "").replace(
            &format!("http://127.0.0.1:{proxy_port}/fhir"),
            &format!("https://127.0.0.1:{tls_port}/fhir"),
        )
    )
}

#[test]
fn mutual_tls_delivers_and_a_missing_client_certificate_does_not() {
    let Some(upstream) = Upstream::start() else {
        return;
    };
    let proxy = FaultProxy::start(upstream.port, Fault::None);
    let pki = pki();
    let (tls_port, _runtime) = tls_endpoint(&pki, proxy.port);
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("ca.pem", &pki.ca_pem),
        ("client.pem", &pki.client_cert_pem),
        ("client.key", &pki.client_key_pem),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    // A private key only its owner reads (wider is refused at start).
    std::fs::set_permissions(
        dir.path().join("client.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    // Relative paths: from the configuration file's directory.
    let with_certificate = https_config(
        proxy.port,
        tls_port,
        "ca_file = \"ca.pem\"\nclient_cert_file = \"client.pem\"\nclient_key_file = \"client.key\"\n",
    );
    let gateway = start_gateway(&with_certificate, dir.path(), None);
    let ack = common::http_post(
        gateway.http_addr,
        "/hl7v2",
        "x-application/hl7-v2+er7",
        oru("TLS1", 1, 1).as_bytes(),
    );
    assert!(ack.body.contains("MSA|AA"), "{}", ack.body);
    wait_all_delivered(&gateway, 1, Duration::from_secs(30));
    assert_eq!(upstream.settled_count("DiagnosticReport", 1), 1);

    let without_certificate = https_config(proxy.port, tls_port, "ca_file = \"ca.pem\"\n");
    let refused = start_gateway(&without_certificate, dir.path(), None);
    let ack = common::http_post(
        refused.http_addr,
        "/hl7v2",
        "x-application/hl7-v2+er7",
        oru("TLS2", 2, 2).as_bytes(),
    );
    assert!(ack.body.contains("MSA|AA"), "{}", ack.body);
    assert!(common::eventually(Duration::from_secs(20), || {
        let messages = delivery::all_messages(&refused);
        let delivery = &messages[0]["deliveries"][0];
        delivery["state"] == "pending" && delivery["attempts"].as_i64() >= Some(1)
    }));
    assert_eq!(
        upstream.count("DiagnosticReport"),
        1,
        "nothing got through without the certificate"
    );
}

#[test]
fn an_unreadable_ca_file_stops_the_gateway_at_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = https_config(1, 2, "ca_file = \"missing-ca.pem\"\n");
    let path = dir.path().join("p.toml");
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_passerelle"))
        .args(["--config", &path.display().to_string()])
        .env("PASSERELLE_STORAGE__DATA_DIR", dir.path().join("data"))
        .env("PASSERELLE_HTTP__LISTEN", "127.0.0.1:0")
        .env("PASSERELLE_MLLP__LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("missing-ca.pem") && stderr.contains("hospital"),
        "{stderr}"
    );
}
