//! The HTTP server: binds the listener, builds the tower stack once, serves
//! HTTP/1.1 connections, and on shutdown stops accepting, lets in-flight
//! requests finish within the grace period, then returns.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::limit::ConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::ServiceBuilder;

use super::handlers::Router;
use super::layers::{
    BodyLimitLayer, ErrorEdgeLayer, MemoryBudgetLayer, RequestIdLayer, RequestTimeoutLayer,
    TelemetryLayer,
};
use super::SharedState;
use crate::access::HttpAccessPolicy;
use passerelle_config::HttpConfig;
use passerelle_security::tls::{self, ServerTls};
use passerelle_security::{
    accept_or_back_off, AccessLayer, AdminGuardLayer, CertifiedClient, PeerAddr,
};

/// Builds the service every HTTP request goes through, outermost first.
pub fn stack(
    state: SharedState,
    config: &HttpConfig,
) -> impl tower::Service<
    http::Request<Incoming>,
    Response = http::Response<super::ResponseBody>,
    Error = std::convert::Infallible,
    Future = super::layers::BoxFuture<
        Result<http::Response<super::ResponseBody>, std::convert::Infallible>,
    >,
> + Clone
       + Send
       + 'static {
    ServiceBuilder::new()
        .layer(RequestIdLayer)
        .layer(TelemetryLayer::new(state.metrics.clone()))
        .layer(ErrorEdgeLayer)
        // Who first (401 without a key), then the admin API's browser
        // guard (403 for a foreign Host or a form).
        .layer(AccessLayer::new(state.clients.clone(), HttpAccessPolicy))
        // Every access let through is recorded before its answer leaves.
        .layer(crate::audit::AuditLayer::new(state.store.clone()))
        .layer(AdminGuardLayer::new(allowed_hosts(config)))
        .layer(LoadShedLayer::new())
        .layer(ConcurrencyLimitLayer::new(
            config.max_concurrent_requests.max(1),
        ))
        .layer(RequestTimeoutLayer::new(Duration::from_secs(
            config.request_timeout_secs.max(1),
        )))
        .layer(BodyLimitLayer::new(config.max_body_bytes))
        .layer(MemoryBudgetLayer::new(
            config.max_request_memory_bytes,
            config.max_body_bytes,
            Duration::from_secs(config.request_timeout_secs.max(1)),
        ))
        .service(Router::new(state))
}

/// A connection's byte stream, plain TCP or TLS. Erased so that hyper's
/// connection machinery over the whole stack is compiled once, not once per
/// stream type (a virtual call per read or write costs nothing next to it).
trait Connection: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Connection for T {}

/// Serves one connection's requests, each carrying the connection's peer
/// address and certified client.
async fn serve<S>(
    io: Box<dyn Connection>,
    peer: std::net::SocketAddr,
    certified: Option<Arc<passerelle_security::Client>>,
    service: S,
    watcher: Watcher,
) where
    S: tower::Service<
            http::Request<Incoming>,
            Response = http::Response<super::ResponseBody>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let per_connection = ServiceBuilder::new()
        .map_request(move |mut request: http::Request<Incoming>| {
            request.extensions_mut().insert(PeerAddr(peer));
            if let Some(client) = &certified {
                request
                    .extensions_mut()
                    .insert(CertifiedClient(client.clone()));
            }
            request
        })
        .service(service);
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(per_connection));
    if let Err(error) = watcher.watch(connection).await {
        tracing::debug!(error = %error, "http connection ended with an error");
    }
}

/// The host names `/admin` answers to: the configured ones, the host of
/// the public base URL and the listener's own address.
fn allowed_hosts(config: &HttpConfig) -> Vec<String> {
    let mut hosts = config.allowed_hosts.clone();
    if let Some(url) = &config.public_base_url {
        if let Ok(uri) = url.parse::<http::Uri>() {
            if let Some(host) = uri.host() {
                hosts.push(host.to_string());
            }
        }
    }
    match config.listen.ip() {
        std::net::IpAddr::V4(ip) => hosts.push(ip.to_string()),
        std::net::IpAddr::V6(ip) => hosts.push(format!("[{ip}]")),
    }
    hosts
}

/// Serves until `shutdown` is cancelled, then drains in-flight requests for at
/// most the grace period. With `tls`, every connection is HTTPS: a client
/// that does not complete its handshake in time is closed, and a verified
/// client certificate becomes the connection's [`CertifiedClient`].
///
/// The future is boxed and this function never inlined so that the crate
/// spawning it sees a `dyn Future`: otherwise the whole tower stack and
/// hyper's connection machinery are instantiated again in the caller's
/// crate (measured: most of the `gateway` crate's release build time).
#[inline(never)]
pub fn run(
    listener: TcpListener,
    state: SharedState,
    config: HttpConfig,
    tls: Option<Arc<ServerTls>>,
    shutdown: CancellationToken,
) -> super::layers::BoxFuture<()> {
    Box::pin(serve_until_shutdown(listener, state, config, tls, shutdown))
}

/// What [`run`] boxes.
async fn serve_until_shutdown(
    listener: TcpListener,
    state: SharedState,
    config: HttpConfig,
    tls: Option<Arc<ServerTls>>,
    shutdown: CancellationToken,
) {
    let clients = state.clients.clone();
    let service = stack(state, &config);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(config.max_connections.max(1)));
    loop {
        tokio::select! {
            accepted = accept_or_back_off(&listener, "http") => {
                let Some(stream) = accepted else { continue };
                let Ok(peer) = stream.peer_addr() else { continue };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    // Over the cap: close now rather than hold sockets and
                    // memory for every connection a client opens.
                    tracing::warn!(limit = config.max_connections, "http connection refused: connection limit reached");
                    drop(stream);
                    continue;
                };
                let service = service.clone();
                let watcher = graceful.watcher();
                let tls = tls.as_ref().and_then(|tls| tls.acceptor());
                let clients = clients.clone();
                tokio::spawn(async move {
                    match tls {
                        None => serve(Box::new(stream), peer, None, service, watcher).await,
                        Some(acceptor) => match tls::handshake(acceptor, stream).await {
                            Ok(stream) => {
                                let certified = tls::certificate_client(&stream, &clients);
                                serve(Box::new(stream), peer, certified, service, watcher).await;
                            }
                            Err(error) => tracing::debug!(error = %error, "https connection closed before a session"),
                        },
                    }
                    drop(slot);
                });
            }
            () = shutdown.cancelled() => break,
        }
    }
    drop(listener);
    tracing::info!("http listener closed; draining in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("http connections drained"),
        () = tokio::time::sleep(Duration::from_secs(config.shutdown_grace_secs)) => {
            tracing::warn!(grace_secs = config.shutdown_grace_secs, "shutdown grace period elapsed with requests still in flight");
        }
    }
}
