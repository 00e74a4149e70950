//! Who may reach what: the checks a transport passes a request through
//! before a handler sees it. Each check is a tower layer that the HTTP
//! stack composes (today `AdminAccessLayer`), and a refusal is a typed
//! error ([`Denied`]) that the transport's error edge answers (403 with an
//! OperationOutcome on HTTP), so no handler repeats an access check. The
//! accept loop both listeners share lives here too, since it is where TLS
//! and peer identities will be established; the MLLP listener has no
//! access check yet (the security issue adds one through this crate).

// Input must never reach a panic: no unwrap/expect/panic outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Request;
use tower::{Layer, Service};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A request refused by an access check; the transport's error edge
/// answers it (HTTP: 403 with an OperationOutcome carrying `reason`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct Denied {
    pub reason: &'static str,
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

/// Keeps `/admin` to loopback clients: the admin API can replay and purge
/// patient messages, and has no authentication of its own yet (see the
/// security issue), so it answers only on the gateway's own host.
#[derive(Clone, Default)]
pub struct AdminAccessLayer;

impl<S> Layer<S> for AdminAccessLayer {
    type Service = AdminAccessService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AdminAccessService { inner }
    }
}

#[derive(Clone)]
pub struct AdminAccessService<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for AdminAccessService<S>
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
        let path = request.uri().path();
        let admin = path == "/admin" || path.starts_with("/admin/");
        let loopback = request
            .extensions()
            .get::<PeerAddr>()
            .is_some_and(|peer| peer.0.ip().is_loopback());
        if admin && !loopback {
            let denied: BoxError = Box::new(Denied {
                reason: "the admin API answers loopback clients only",
            });
            return Box::pin(async move { Err(denied) });
        }
        Box::pin(self.inner.call(request))
    }
}

#[cfg(test)]
mod admin_access_tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::Full;
    use tower::ServiceExt;

    async fn status(path: &str, peer: Option<&str>) -> u16 {
        let inner = tower::service_fn(|_request: Request<()>| async {
            Ok::<_, BoxError>(http::Response::new(Full::new(Bytes::new())))
        });
        let mut request = Request::builder().uri(path).body(()).unwrap();
        if let Some(peer) = peer {
            request
                .extensions_mut()
                .insert(PeerAddr(peer.parse().unwrap()));
        }
        match AdminAccessLayer.layer(inner).oneshot(request).await {
            Ok(response) => response.status().as_u16(),
            Err(error) if error.is::<Denied>() => 403,
            Err(error) => panic!("unexpected error: {error}"),
        }
    }

    #[tokio::test]
    async fn admin_answers_loopback_clients_only() {
        assert_eq!(status("/admin/messages", Some("127.0.0.1:5000")).await, 200);
        assert_eq!(status("/admin/messages", Some("[::1]:5000")).await, 200);
        assert_eq!(status("/admin/messages", Some("10.1.2.3:5000")).await, 403);
        assert_eq!(status("/admin", Some("192.168.0.9:5000")).await, 403);
        assert_eq!(status("/admin/targets", None).await, 403);
        // Everything else is not this layer's business.
        assert_eq!(status("/fhir/metadata", Some("10.1.2.3:5000")).await, 200);
        assert_eq!(status("/administration", Some("10.1.2.3:5000")).await, 200);
    }
}
