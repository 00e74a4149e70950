//! The HTTP client of `fhir` targets: a pooled hyper client per target
//! over rustls (HTTPS with the Mozilla roots or a configured CA, mutual TLS
//! with a client certificate), a timeout per request, and the target's
//! authentication: static bearer token, HTTP basic, OAuth 2.0 client
//! credentials with a secret, or SMART Backend Services (a signed JWT
//! client assertion); tokens are cached until shortly before they expire.

// Input must never reach a panic: no unwrap/expect/panic outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::Mutex;

use jwt::AssertionSigner;
use passerelle_config::{TargetAuth, TargetConfig, TargetTls};

pub mod jwt;

/// Reads a `Retry-After` value: delay seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Largest answer read from a target (an OperationOutcome is small; a
/// transaction-response can be large, and is not kept).
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// A cached OAuth token is renewed this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(30);

/// What a target answered.
#[derive(Debug, Clone)]
pub struct TargetAnswer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    /// The answer's `Date` header: the target's clock.
    pub date: Option<SystemTime>,
    pub content_type: Option<String>,
    pub body: Bytes,
}

/// Why no answer came back.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("connection failed: {0}")]
    Connection(String),
    #[error("authorization server: {0}")]
    Token(String),
    #[error("invalid request: {0}")]
    Request(String),
    #[error("TLS settings: {0}")]
    Tls(String),
}

pub struct TargetClient {
    url: String,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
    auth: Auth,
}

enum Auth {
    None,
    Header(HeaderValue),
    OAuth2(Box<TokenSource>),
}

/// Where OAuth tokens come from, and the one in use.
struct TokenSource {
    token_url: String,
    client: ClientAuth,
    scope: Option<String>,
    cached: Mutex<Option<(HeaderValue, Instant)>>,
}

/// How a client proves itself to the authorization server.
enum ClientAuth {
    /// `client_secret_basic`.
    Secret(HeaderValue),
    /// `private_key_jwt` (SMART Backend Services).
    Assertion {
        client_id: String,
        signer: Box<AssertionSigner>,
    },
}

impl TargetClient {
    pub fn new(config: &TargetConfig) -> Result<TargetClient, SendError> {
        let url = config
            .url
            .clone()
            .ok_or_else(|| SendError::Request("the target has no url".into()))?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(config.timeout_secs.clamp(1, 30))));
        // https_or_http: the token endpoint may be plain HTTP on loopback
        // while the FHIR server is HTTPS, or the other way round.
        connector.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(config.tls.as_ref())?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(config.concurrency.max(1))
            .build(connector);
        let auth = match &config.auth {
            None => Auth::None,
            Some(TargetAuth::Bearer { token, .. }) => {
                Auth::Header(header(&format!("Bearer {token}"))?)
            }
            Some(TargetAuth::Basic {
                username, password, ..
            }) => Auth::Header(basic(username, password)?),
            Some(TargetAuth::Oauth2 {
                token_url,
                client_id,
                client_secret,
                scope,
                ..
            }) => Auth::OAuth2(Box::new(TokenSource {
                token_url: token_url.clone(),
                client: ClientAuth::Secret(basic(client_id, client_secret)?),
                scope: scope.clone(),
                cached: Mutex::new(None),
            })),
            Some(TargetAuth::SmartBackend {
                token_url,
                client_id,
                private_key_file,
                algorithm,
                key_id,
                scope,
            }) => Auth::OAuth2(Box::new(TokenSource {
                token_url: token_url.clone(),
                client: ClientAuth::Assertion {
                    client_id: client_id.clone(),
                    signer: Box::new(
                        AssertionSigner::load(private_key_file, *algorithm, key_id)
                            .map_err(|e| SendError::Token(e.to_string()))?,
                    ),
                },
                scope: Some(scope.clone()),
                cached: Mutex::new(None),
            })),
        };
        Ok(TargetClient {
            url,
            http,
            timeout: Duration::from_secs(config.timeout_secs.max(1)),
            auth,
        })
    }

    /// POSTs a transaction Bundle to the target's base URL.
    pub async fn post_transaction(&self, bundle: &str) -> Result<TargetAnswer, SendError> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(&self.url)
            .header(CONTENT_TYPE, "application/fhir+json")
            .header(ACCEPT, "application/fhir+json")
            .header(
                USER_AGENT,
                concat!("passerelle/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::copy_from_slice(bundle.as_bytes())))
            .map_err(|e| SendError::Request(e.to_string()))?;
        self.send_authorized(request).await
    }

    /// POSTs `body` as `content_type` to the target's URL with its
    /// credentials (a SOAP request to the DMP).
    pub async fn post(
        &self,
        content_type: &str,
        accept: &str,
        body: Bytes,
    ) -> Result<TargetAnswer, SendError> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(&self.url)
            .header(CONTENT_TYPE, content_type)
            .header(ACCEPT, accept)
            .header(
                USER_AGENT,
                concat!("passerelle/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(body))
            .map_err(|e| SendError::Request(e.to_string()))?;
        self.send_authorized(request).await
    }

    /// `GET {url}/{path_and_query}` (proxy mode), with the target's auth.
    pub async fn get(&self, path_and_query: &str) -> Result<TargetAnswer, SendError> {
        let uri = format!(
            "{}/{}",
            self.url.trim_end_matches('/'),
            path_and_query.trim_start_matches('/')
        );
        let request = Request::builder()
            .method(Method::GET)
            .uri(&uri)
            .header(ACCEPT, "application/fhir+json")
            .header(
                USER_AGENT,
                concat!("passerelle/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::new()))
            .map_err(|e| SendError::Request(e.to_string()))?;
        self.send_authorized(request).await
    }

    /// Sends `request` with the target's credentials; a 401 drops a cached
    /// OAuth2 token (expired or revoked) so that the next request fetches
    /// a new one.
    async fn send_authorized(
        &self,
        mut request: Request<Full<Bytes>>,
    ) -> Result<TargetAnswer, SendError> {
        if let Some(value) = self.authorization().await? {
            request.headers_mut().insert(AUTHORIZATION, value);
        }
        let answer = self.send(request).await?;
        if answer.status == StatusCode::UNAUTHORIZED.as_u16() {
            if let Auth::OAuth2(source) = &self.auth {
                *source.cached.lock().await = None;
            }
        }
        Ok(answer)
    }

    /// The target's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether a 401 from this target is worth retrying (a fresh token may
    /// fix it).
    pub fn renews_tokens(&self) -> bool {
        matches!(self.auth, Auth::OAuth2(_))
    }

    async fn send(&self, request: Request<Full<Bytes>>) -> Result<TargetAnswer, SendError> {
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| SendError::Connection(error_chain(&e)))?;
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            let date = response
                .headers()
                .get(http::header::DATE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| httpdate::parse_http_date(v).ok());
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| SendError::Connection(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok(TargetAnswer {
                status,
                retry_after,
                date,
                content_type,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| SendError::Timeout(self.timeout))?
    }

    async fn authorization(&self) -> Result<Option<HeaderValue>, SendError> {
        match &self.auth {
            Auth::None => Ok(None),
            Auth::Header(value) => Ok(Some(value.clone())),
            Auth::OAuth2(source) => {
                let TokenSource {
                    token_url,
                    client,
                    scope,
                    cached,
                } = source.as_ref();
                let mut cached = cached.lock().await;
                if let Some((value, expires)) = cached.as_ref() {
                    if Instant::now() + TOKEN_MARGIN < *expires {
                        return Ok(Some(value.clone()));
                    }
                }
                let (value, lifetime) = self
                    .fetch_token(token_url, client, scope.as_deref())
                    .await?;
                *cached = Some((value.clone(), Instant::now() + lifetime));
                Ok(Some(value))
            }
        }
    }

    /// The client-credentials grant (RFC 6749 §4.4), the client
    /// authenticating with HTTP basic as §2.3.1 recommends, or with a JWT
    /// assertion (RFC 7523, SMART Backend Services).
    async fn fetch_token(
        &self,
        token_url: &str,
        client: &ClientAuth,
        scope: Option<&str>,
    ) -> Result<(HeaderValue, Duration), SendError> {
        let mut form = String::from("grant_type=client_credentials");
        if let Some(scope) = scope {
            form.push_str("&scope=");
            form.push_str(&form_encode(scope));
        }
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(token_url)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json");
        match client {
            ClientAuth::Secret(basic) => request = request.header(AUTHORIZATION, basic.clone()),
            ClientAuth::Assertion { client_id, signer } => {
                let now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let assertion = signer
                    .assertion(client_id, token_url, now)
                    .map_err(|e| SendError::Token(e.to_string()))?;
                form.push_str("&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=");
                form.push_str(&assertion);
            }
        }
        let request = request
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| SendError::Token(e.to_string()))?;
        let answer = self
            .send(request)
            .await
            .map_err(|e| SendError::Token(e.to_string()))?;
        if !(200..300).contains(&answer.status) {
            return Err(SendError::Token(format!("answered {}", answer.status)));
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            access_token: String,
            #[serde(default)]
            token_type: Option<String>,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let token: TokenResponse = serde_json::from_slice(&answer.body)
            .map_err(|e| SendError::Token(format!("unreadable token response: {e}")))?;
        if token
            .token_type
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
        {
            return Err(SendError::Token("token_type is not Bearer".into()));
        }
        let value = header(&format!("Bearer {}", token.access_token))
            .map_err(|_| SendError::Token("the access token is not a valid header value".into()))?;
        // No expires_in: assume a short life rather than caching for ever.
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(300));
        Ok((value, lifetime))
    }
}

/// The rustls configuration of a target (and of the gateway's other
/// outbound TLS, the audit trail's syslog export): the Mozilla roots (or
/// the configured CA file instead), and a client certificate for mutual
/// TLS.
pub fn tls_config(tls: Option<&TargetTls>) -> Result<rustls::ClientConfig, SendError> {
    let fail = |file: &std::path::Path, what: &str, e: &dyn std::fmt::Display| {
        SendError::Tls(format!("{}: {what}: {e}", file.display()))
    };
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SendError::Tls(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    match tls.and_then(|t| t.ca_file.as_deref()) {
        Some(file) => {
            let certificates =
                CertificateDer::pem_file_iter(file).map_err(|e| fail(file, "cannot read", &e))?;
            for certificate in certificates {
                let certificate =
                    certificate.map_err(|e| fail(file, "not a PEM certificate", &e))?;
                roots
                    .add(certificate)
                    .map_err(|e| fail(file, "unusable CA certificate", &e))?;
            }
            if roots.is_empty() {
                return Err(SendError::Tls(format!(
                    "{}: no certificate in it",
                    file.display()
                )));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = builder.with_root_certificates(roots);
    let client_files = tls.and_then(|t| {
        t.client_cert_file
            .as_deref()
            .zip(t.client_key_file.as_deref())
    });
    let config = match client_files {
        Some((cert_file, key_file)) => {
            let chain = CertificateDer::pem_file_iter(cert_file)
                .map_err(|e| fail(cert_file, "cannot read", &e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| fail(cert_file, "not a PEM certificate", &e))?;
            let key = PrivateKeyDer::from_pem_file(key_file)
                .map_err(|e| fail(key_file, "no PEM private key", &e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| fail(cert_file, "client certificate and key do not match", &e))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(config)
}

fn header(text: &str) -> Result<HeaderValue, SendError> {
    let mut value = HeaderValue::from_str(text)
        .map_err(|_| SendError::Request("credentials are not a valid header value".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

fn basic(user: &str, password: &str) -> Result<HeaderValue, SendError> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    header(&format!("Basic {encoded}"))
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// An error with its causes, for a connection failure's detail.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Largest document [`fetch_document`] reads (a JWKS is a few kilobytes).
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// GETs a small document (a JWKS) over the same TLS as targets (the
/// Mozilla roots, or `ca_file`), within `timeout`; anything but 200 is an
/// error.
pub async fn fetch_document(
    url: &str,
    ca_file: Option<&std::path::Path>,
    timeout: Duration,
) -> Result<Bytes, SendError> {
    let request = Request::get(url).header(ACCEPT, "application/json");
    let (status, body) = one_shot(request, Bytes::new(), ca_file, timeout).await?;
    if status != StatusCode::OK {
        return Err(SendError::Connection(format!("answered {status}")));
    }
    body
}

/// POSTs `body` as `content_type` to `url` (an HL7 v2 application ACK to
/// a sender's HTTP endpoint) over the same TLS as targets, within
/// `timeout`; anything but a 2xx is an error. The answer's body is read
/// (at most [`MAX_DOCUMENT_BYTES`]) and dropped.
pub async fn post_document(
    url: &str,
    body: Bytes,
    content_type: &str,
    ca_file: Option<&std::path::Path>,
    timeout: Duration,
) -> Result<(), SendError> {
    let request = Request::post(url).header(CONTENT_TYPE, content_type);
    let (status, _) = one_shot(request, body, ca_file, timeout).await?;
    if status.is_success() {
        Ok(())
    } else {
        Err(SendError::Connection(format!("answered {status}")))
    }
}

/// One request on a [`one_shot_client`], within `timeout`: the answer's
/// status and its body (read to the end, at most [`MAX_DOCUMENT_BYTES`],
/// so that the connection closes cleanly; a body that cannot be read is
/// the caller's to judge).
async fn one_shot(
    request: http::request::Builder,
    body: Bytes,
    ca_file: Option<&std::path::Path>,
    timeout: Duration,
) -> Result<(StatusCode, Result<Bytes, SendError>), SendError> {
    let client = one_shot_client(ca_file)?;
    let request = request
        .header(
            USER_AGENT,
            concat!("passerelle/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(body))
        .map_err(|e| SendError::Request(e.to_string()))?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| SendError::Connection(error_chain(&e)))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map(|collected| collected.to_bytes())
            .map_err(|e| SendError::Connection(format!("reading the answer: {e}")));
        Ok((status, body))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| SendError::Timeout(timeout))?
}

/// A client for one request: plain HTTP or HTTPS with the Mozilla roots
/// (or `ca_file`), no pooling across calls.
fn one_shot_client(
    ca_file: Option<&std::path::Path>,
) -> Result<Client<HttpsConnector<HttpConnector>, Full<Bytes>>, SendError> {
    let tls = TargetTls {
        ca_file: ca_file.map(std::path::Path::to_path_buf),
        client_cert_file: None,
        client_key_file: None,
    };
    let mut connector = HttpConnector::new();
    connector.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(Some(&tls))?)
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector);
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_encoded() {
        assert_eq!(form_encode("system/*.write user"), "system%2F*.write+user");
    }
}
