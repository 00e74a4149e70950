//! Who may reach what: client identities (API keys, the local admin),
//! SMART scopes, and the checks a transport passes a request through
//! before a handler sees it. Each check is a tower layer the HTTP stack
//! composes ([`AccessLayer`], [`AdminGuardLayer`]) or a function the MLLP
//! listener calls ([`check`]), and a refusal is a typed error
//! ([`Unauthenticated`], [`Denied`]) that the transport's error edge
//! answers (HTTP: 401 or 403 with an OperationOutcome), so no handler
//! repeats an access check. The accept loop both listeners share lives
//! here too, since it is where TLS and peer identities are established,
//! and so does the vocabulary of the audit trail ([`audit`]).

// Input must never reach a panic: no unwrap/expect/panic outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod audit;
pub mod clients;
pub mod fuzzing;
pub mod jwt;
pub mod keys;
pub mod layer;
pub mod networks;
pub mod scopes;
pub mod tls;

pub use clients::{
    load_or_create_key_file, Client, ClientDirectory, ClientRecord, Hl7Senders, KeyFileError,
    Unauthenticated, LOCAL_ADMIN, LOCAL_ADMIN_KEY_FILE,
};
pub use layer::{check, AccessLayer, AccessPolicy, CertifiedClient, Requirement};
pub use networks::{AddressRange, AddressRangeError};
pub use scopes::{GatewayScope, Interaction, Permission, ScopeError, Scopes};
pub use tls::{ServerTls, TlsError, TlsFiles};

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Request;
use tower::{Layer, Service};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A request refused by an access check; the transport's error edge
/// answers it (HTTP: 403 with an OperationOutcome carrying `reason`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct Denied {
    pub reason: String,
}

/// Accepts the next connection; on a failed accept (out of file
/// descriptors and the like) logs it, backs off briefly and returns `None`,
/// so the listener keeps serving.
pub async fn accept_or_back_off(
    listener: &tokio::net::TcpListener,
    name: &'static str,
) -> Option<tokio::net::TcpStream> {
    match listener.accept().await {
        Ok((stream, _peer)) => {
            let _ = stream.set_nodelay(true);
            Some(stream)
        }
        Err(error) => {
            tracing::warn!(listener = name, error = %error, "accept failed");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            None
        }
    }
}

/// The address a request's connection came from, set per connection by
/// the server.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// Keeps browsers out of `/admin`, whose writes replay and purge patient
/// messages: a request must name an allowed `Host` (a page on another
/// origin that rebinds its DNS name to this host sends its own name), and
/// a write must be `Content-Type: application/json`, which a cross-site
/// form cannot send without a CORS preflight this gateway never grants.
/// The admin scope itself is the [`AccessLayer`]'s check.
#[derive(Clone)]
pub struct AdminGuardLayer {
    allowed_hosts: std::sync::Arc<Vec<String>>,
}

impl AdminGuardLayer {
    /// `allowed_hosts`: host names (without port) requests may name;
    /// loopback names are always allowed.
    pub fn new(allowed_hosts: Vec<String>) -> Self {
        let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "[::1]", "::1"]
            .iter()
            .map(|h| h.to_string())
            .collect();
        hosts.extend(allowed_hosts.into_iter().map(|h| h.to_ascii_lowercase()));
        Self {
            allowed_hosts: std::sync::Arc::new(hosts),
        }
    }
}

impl<S> Layer<S> for AdminGuardLayer {
    type Service = AdminGuardService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AdminGuardService {
            inner,
            allowed_hosts: self.allowed_hosts.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AdminGuardService<S> {
    inner: S,
    allowed_hosts: std::sync::Arc<Vec<String>>,
}

/// The host name of a `Host` header value, without its port.
fn host_name(value: &str) -> &str {
    if value.starts_with('[') {
        return value.split_inclusive(']').next().unwrap_or(value);
    }
    value.rsplit_once(':').map_or(value, |(host, _)| host)
}

fn admin_refusal<B>(request: &Request<B>, allowed_hosts: &[String]) -> Option<&'static str> {
    let path = request.uri().path();
    if !(path == "/admin" || path.starts_with("/admin/")) {
        return None;
    }
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(|v| host_name(v).to_ascii_lowercase());
    if !host.is_some_and(|host| allowed_hosts.contains(&host)) {
        return Some(
            "the admin API answers only requests naming an allowed Host (http.allowed_hosts)",
        );
    }
    let writes = !matches!(*request.method(), http::Method::GET | http::Method::HEAD);
    let json = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if writes && !json {
        return Some(
            "admin requests that change state must be sent as Content-Type: application/json",
        );
    }
    None
}

impl<S, B> Service<Request<B>> for AdminGuardService<S>
where
    S: Service<Request<B>, Error = BoxError> + Send,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if let Some(reason) = admin_refusal(&request, &self.allowed_hosts) {
            let denied: BoxError = Box::new(Denied {
                reason: reason.to_string(),
            });
            return Box::pin(async move { Err(denied) });
        }
        Box::pin(self.inner.call(request))
    }
}

#[cfg(test)]
mod admin_guard_tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::Full;
    use tower::ServiceExt;

    async fn status(
        method: &str,
        path: &str,
        host: Option<&str>,
        content_type: Option<&str>,
    ) -> u16 {
        let inner = tower::service_fn(|_request: Request<()>| async {
            Ok::<_, BoxError>(http::Response::new(Full::new(Bytes::new())))
        });
        let mut request = Request::builder().method(method).uri(path);
        if let Some(host) = host {
            request = request.header(http::header::HOST, host);
        }
        if let Some(content_type) = content_type {
            request = request.header(http::header::CONTENT_TYPE, content_type);
        }
        let layer = AdminGuardLayer::new(vec!["gateway.example.fr".into()]);
        match layer.layer(inner).oneshot(request.body(()).unwrap()).await {
            Ok(response) => response.status().as_u16(),
            Err(error) if error.is::<Denied>() => 403,
            Err(error) => panic!("unexpected error: {error}"),
        }
    }

    #[tokio::test]
    async fn admin_needs_an_allowed_host_and_json_writes() {
        assert_eq!(
            status("GET", "/admin/messages", Some("127.0.0.1:8080"), None).await,
            200
        );
        assert_eq!(
            status("GET", "/admin/messages", Some("[::1]:8080"), None).await,
            200
        );
        assert_eq!(
            status("GET", "/admin/messages", Some("Gateway.Example.fr"), None).await,
            200
        );
        // DNS rebinding: the attacker's name reaches this host.
        assert_eq!(
            status("GET", "/admin/messages", Some("evil.example:8080"), None).await,
            403
        );
        assert_eq!(status("GET", "/admin/messages", None, None).await, 403);
        // A cross-site form.
        let replay = "/admin/messages/replay?state=routed";
        assert_eq!(
            status("POST", replay, Some("localhost:8080"), Some("text/plain")).await,
            403
        );
        assert_eq!(
            status("POST", replay, Some("localhost:8080"), None).await,
            403
        );
        assert_eq!(
            status(
                "POST",
                replay,
                Some("localhost:8080"),
                Some("application/json; charset=utf-8")
            )
            .await,
            200
        );
        // Everything else is not this layer's business.
        assert_eq!(
            status("POST", "/hl7v2", Some("evil.example"), Some("text/plain")).await,
            200
        );
        assert_eq!(status("GET", "/administration", None, None).await, 200);
    }
}
