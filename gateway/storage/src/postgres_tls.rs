//! TLS between the gateway and PostgreSQL, as libpq's `sslmode=verify-full`
//! means it: the connection is encrypted, the server's certificate chains
//! to a trusted root (`sslrootcert`, a PEM file; the Mozilla roots without
//! it) and names the host the URL gives. The PostgreSQL client library
//! knows only `disable`, `prefer` and `require` (encryption without
//! checking who answers), so the URL's `sslmode` and `sslrootcert` are read
//! here and the handshake is rustls's (ring, as every other TLS client of
//! the gateway).
//!
//! Refused by name: `require` and `verify-ca`, which do not check the
//! server's name, and `prefer`/`allow`, which fall back to clear text.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::StorageError;

/// What the URL asks of the connection's security.
pub(crate) enum Transport {
    /// No `sslmode`, or `sslmode=disable`: in clear (loopback, a private
    /// network, or a host-local socket).
    Clear,
    /// `sslmode=verify-full`: rustls with these roots.
    VerifyFull(RustlsConnector),
}

/// Splits the libpq TLS parameters off `url` (a `postgresql://` URL):
/// returns the URL the client library takes and the transport.
pub(crate) fn transport(url: &str) -> Result<(String, Transport), StorageError> {
    let refuse = |message: String| StorageError::PostgresTls(message);
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), Transport::Clear));
    };
    let mut mode = None;
    let mut root_file = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", value)) => mode = Some(value.to_string()),
            Some(("sslrootcert", value)) => root_file = Some(percent_decoded(value)),
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    match (mode.as_deref(), root_file) {
        (None | Some("disable"), None) => Ok((url, Transport::Clear)),
        (None | Some("disable"), Some(_)) => Err(refuse(
            "sslrootcert is given without sslmode=verify-full".into(),
        )),
        (Some("verify-full"), roots) => {
            let config = client_config(roots.as_deref().map(Path::new))?;
            Ok((url, Transport::VerifyFull(RustlsConnector(Arc::new(config)))))
        }
        (Some(mode @ ("require" | "verify-ca")), _) => Err(refuse(format!(
            "sslmode={mode} does not check the server's name: use sslmode=verify-full (with sslrootcert naming the server's authority)"
        ))),
        (Some(mode @ ("prefer" | "allow")), _) => Err(refuse(format!(
            "sslmode={mode} falls back to clear text: use sslmode=verify-full, or leave sslmode out on loopback"
        ))),
        (Some(other), _) => Err(refuse(format!("sslmode={other} is not a mode"))),
    }
}

/// `%2F` and the like in a URL's file path.
fn percent_decoded(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = bytes
            .get(index + 1..index + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[index], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                index += 3;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn client_config(root_file: Option<&Path>) -> Result<rustls::ClientConfig, StorageError> {
    let fail = |message: String| StorageError::PostgresTls(message);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    match root_file {
        Some(file) => {
            let shown = file.display();
            let certificates = CertificateDer::pem_file_iter(file)
                .map_err(|e| fail(format!("sslrootcert {shown}: cannot read: {e}")))?;
            for certificate in certificates {
                let certificate = certificate.map_err(|e| {
                    fail(format!("sslrootcert {shown}: not a PEM certificate: {e}"))
                })?;
                roots
                    .add(certificate)
                    .map_err(|e| fail(format!("sslrootcert {shown}: unusable: {e}")))?;
            }
            if roots.is_empty() {
                return Err(fail(format!("sslrootcert {shown}: no certificate in it")));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// Makes one rustls handshake per connection, for the host the client
/// library connects to (its name checked against the certificate).
#[derive(Clone)]
pub(crate) struct RustlsConnector(Arc<rustls::ClientConfig>);

pub(crate) struct RustlsHandshake {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

pub(crate) struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S> MakeTlsConnect<S> for RustlsConnector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsHandshake;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<RustlsHandshake> {
        let name = ServerName::try_from(domain.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(RustlsHandshake {
            connector: tokio_rustls::TlsConnector::from(self.0.clone()),
            name,
        })
    }
}

impl<S> TlsConnect<S> for RustlsHandshake
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            self.connector
                .connect(self.name, stream)
                .await
                .map(RustlsStream)
        })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    /// SCRAM's channel binding is not offered: the certificate check above
    /// is what ties the session to the server.
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_keeps_its_other_parameters_and_refuses_weak_modes() {
        let (url, kind) = transport("postgresql://u@db/x?connect_timeout=3").unwrap();
        assert_eq!(url, "postgresql://u@db/x?connect_timeout=3");
        assert!(matches!(kind, Transport::Clear));
        let (url, kind) =
            transport("postgresql://u@db/x?sslmode=verify-full&application_name=a").unwrap();
        assert_eq!(url, "postgresql://u@db/x?application_name=a");
        assert!(matches!(kind, Transport::VerifyFull(_)));
        for (url, words) in [
            ("postgresql://u@db/x?sslmode=require", "verify-full"),
            ("postgresql://u@db/x?sslmode=verify-ca", "server's name"),
            ("postgresql://u@db/x?sslmode=prefer", "clear text"),
            ("postgresql://u@db/x?sslrootcert=/ca.pem", "without sslmode"),
            (
                "postgresql://u@db/x?sslmode=verify-full&sslrootcert=/nowhere/ca.pem",
                "/nowhere/ca.pem",
            ),
        ] {
            let error = transport(url).err().unwrap().to_string();
            assert!(error.contains(words), "{url}: {error}");
        }
        assert_eq!(percent_decoded("%2Fetc%2Fca.pem"), "/etc/ca.pem");
    }

    /// Against the local PostgreSQL server with TLS on (Debian's default:
    /// its certificate, self-signed, names `localhost`): verify-full
    /// connects encrypted with that certificate as root and the name it
    /// carries; another name, or the Mozilla roots, are refused.
    #[test]
    fn verify_full_connects_encrypted_and_checks_name_and_authority() {
        let Some(url) = crate::postgres_test::database("tls") else {
            return;
        };
        let mut plain = crate::postgres::connect(&url).unwrap();
        let on: String = plain.query_one("SHOW ssl", &[]).unwrap().get(0);
        let cert_file: String = plain.query_one("SHOW ssl_cert_file", &[]).unwrap().get(0);
        if on != "on" || !Path::new(&cert_file).is_file() {
            assert!(
                std::env::var_os("PASSERELLE_REQUIRE_PEERS").is_none(),
                "the local PostgreSQL has no TLS (ssl = {on}, {cert_file})"
            );
            eprintln!("skipped: the local PostgreSQL has no TLS");
            return;
        }
        let by_name = url.replace("@127.0.0.1:", "@localhost:");
        let tls_url = format!("{by_name}?sslmode=verify-full&sslrootcert={cert_file}");
        let mut client = crate::postgres::connect(&tls_url).unwrap();
        let encrypted: bool = client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .unwrap()
            .get(0);
        assert!(encrypted);
        // The store itself opens (and migrates) through it.
        assert!(crate::postgres::PostgresStore::open(&tls_url).is_ok());

        // The certificate does not name 127.0.0.1.
        let by_address = format!("{url}?sslmode=verify-full&sslrootcert={cert_file}");
        let error = crate::postgres::connect(&by_address).err().unwrap();
        assert!(error.to_string().contains("certificate"), "{error}");
        // Nor does a public authority sign it.
        let error = crate::postgres::connect(&format!("{by_name}?sslmode=verify-full"))
            .err()
            .unwrap();
        assert!(error.to_string().contains("certificate"), "{error}");
    }
}
