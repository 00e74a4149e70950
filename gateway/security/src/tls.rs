//! TLS on the gateway's own listeners (HTTPS and MLLP over TLS): the
//! rustls server configuration built from the listener's PEM files, kept
//! current when the files change (a renewed certificate is served by the
//! next connection, no restart), the handshake with its deadline, and the
//! client a verified client certificate stands for.
//!
//! Client certificates are verified against the listener's
//! `client_ca_file` by rustls (chain, validity dates, key usage); this
//! module then asks which configured client the certificate is valid for,
//! by the DNS names or addresses in its subject alternative names, the
//! same test a TLS client applies to a server's name.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::clients::{Client, ClientDirectory};

/// How long a client may take to complete its handshake: a socket that
/// connects and says nothing must not hold a connection slot.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The files a TLS listener is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
    pub require_client_cert: bool,
}

/// Why a listener's TLS configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{path}: no {what} in this PEM file")]
    Empty { path: String, what: &'static str },
    #[error("TLS configuration refused: {0}")]
    Rustls(String),
}

/// Why a connection did not become a TLS session.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("TLS handshake not completed within {0:?}")]
    TimedOut(Duration),
    #[error("TLS handshake failed: {0}")]
    Failed(std::io::Error),
}

/// A listener's TLS: the current server configuration, rebuilt when its
/// files change.
#[derive(Debug)]
pub struct ServerTls {
    files: TlsFiles,
    current: RwLock<Current>,
}

#[derive(Debug)]
struct Current {
    config: Arc<ServerConfig>,
    stamps: Vec<Option<SystemTime>>,
}

impl ServerTls {
    /// Reads the files; an error names the file at fault.
    pub fn load(files: TlsFiles) -> Result<ServerTls, TlsError> {
        let config = build(&files)?;
        let stamps = stamps(&files);
        Ok(ServerTls {
            files,
            current: RwLock::new(Current { config, stamps }),
        })
    }

    /// The acceptor for the next connection.
    pub fn acceptor(&self) -> Option<TlsAcceptor> {
        let current = self.current.read().ok()?;
        Some(TlsAcceptor::from(current.config.clone()))
    }

    /// Rebuilds the configuration when a file changed since the last
    /// load. A file that does not load (a half-written renewal) keeps the
    /// previous configuration in use and is reported; the next check
    /// tries again.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = stamps(&self.files);
        let changed = self
            .current
            .read()
            .map(|current| current.stamps != now)
            .unwrap_or(false);
        if !changed {
            return Ok(false);
        }
        let config = build(&self.files)?;
        if let Ok(mut current) = self.current.write() {
            *current = Current {
                config,
                stamps: now,
            };
        }
        Ok(true)
    }

    /// Checks the files every `interval` until `stop`, logging each
    /// reload and each refused change.
    pub async fn watch(
        self: Arc<Self>,
        listener: &'static str,
        interval: Duration,
        stop: CancellationToken,
    ) {
        let mut ticks = tokio::time::interval(interval.max(Duration::from_secs(1)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = stop.cancelled() => return,
            }
            match self.reload_if_changed() {
                Ok(true) => tracing::info!(listener, "TLS certificate reloaded"),
                Ok(false) => {}
                Err(error) => {
                    tracing::error!(listener, error = %error, "TLS files changed but do not load; the previous certificate stays in use")
                }
            }
        }
    }
}

/// Runs the handshake within [`HANDSHAKE_TIMEOUT`].
pub async fn handshake<IO>(
    acceptor: TlsAcceptor,
    stream: IO,
) -> Result<TlsStream<IO>, HandshakeError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(error)) => Err(HandshakeError::Failed(error)),
        Err(_) => Err(HandshakeError::TimedOut(HANDSHAKE_TIMEOUT)),
    }
}

/// The client the session's verified client certificate identifies, if
/// it sent one that a client's `certificate_names` match.
pub fn certificate_client<IO>(
    stream: &TlsStream<IO>,
    directory: &ClientDirectory,
) -> Option<Arc<Client>> {
    let (_, session) = stream.get_ref();
    let leaf = session.peer_certificates()?.first()?;
    directory.by_certificate(leaf)
}

/// Whether `certificate` is valid for one of `names` (DNS names or IP
/// addresses, compared with its subject alternative names).
pub fn certificate_names_match(certificate: &CertificateDer<'_>, names: &[String]) -> bool {
    let Ok(parsed) = webpki::EndEntityCert::try_from(certificate) else {
        return false;
    };
    names.iter().any(|name| {
        ServerName::try_from(name.as_str())
            .is_ok_and(|name| parsed.verify_is_valid_for_subject_name(&name).is_ok())
    })
}

fn stamps(files: &TlsFiles) -> Vec<Option<SystemTime>> {
    [
        Some(&files.cert_file),
        Some(&files.key_file),
        files.client_ca_file.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
    .collect()
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::File {
        path: path.display().to_string(),
        message: error.to_string(),
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::File {
            path: path.display().to_string(),
            message: format!("not PEM certificates: {error}"),
        })?;
    if certificates.is_empty() {
        return Err(TlsError::Empty {
            path: path.display().to_string(),
            what: "CERTIFICATE",
        });
    }
    Ok(certificates)
}

fn build(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(&files.cert_file)?;
    let key_pem = read(&files.key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| TlsError::File {
        path: files.key_file.display().to_string(),
        message: format!("no usable private key: {error}"),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Rustls(error.to_string()))?;
    let builder = match &files.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca_file) => {
            let mut roots = RootCertStore::empty();
            for certificate in certificates(ca_file)? {
                roots.add(certificate).map_err(|error| TlsError::File {
                    path: ca_file.display().to_string(),
                    message: format!("not a usable authority: {error}"),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if files.require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier
                .build()
                .map_err(|error| TlsError::Rustls(error.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|error| TlsError::File {
            path: files.key_file.display().to_string(),
            message: format!("does not match the certificate: {error}"),
        })?;
    config.alpn_protocols = Vec::new();
    Ok(Arc::new(config))
}
