//! The HTTP server: binds the listener, builds the tower stack once, serves
//! HTTP/1.1 connections, and on shutdown stops accepting, lets in-flight
//! requests finish within the grace period, then returns.

use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::limit::ConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::timeout::TimeoutLayer;
use tower::ServiceBuilder;

use super::handlers::Router;
use super::layers::{BodyLimitLayer, ErrorEdgeLayer, RequestIdLayer, TelemetryLayer};
use super::SharedState;
use passerelle_config::HttpConfig;
use passerelle_security::{accept_or_back_off, AdminAccessLayer, PeerAddr};

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
        .layer(AdminAccessLayer)
        .layer(LoadShedLayer::new())
        .layer(ConcurrencyLimitLayer::new(
            config.max_concurrent_requests.max(1),
        ))
        .layer(TimeoutLayer::new(Duration::from_secs(
            config.request_timeout_secs.max(1),
        )))
        .layer(BodyLimitLayer::new(config.max_body_bytes))
        .service(Router::new(state))
}

/// Serves until `shutdown` is cancelled, then drains in-flight requests for at
/// most the grace period.
pub async fn run(
    listener: TcpListener,
    state: SharedState,
    config: HttpConfig,
    shutdown: CancellationToken,
) {
    let service = stack(state, &config);
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = accept_or_back_off(&listener, "http") => {
                let Some(stream) = accepted else { continue };
                let Ok(peer) = stream.peer_addr() else { continue };
                let per_connection = ServiceBuilder::new()
                    .map_request(move |mut request: http::Request<Incoming>| {
                        request.extensions_mut().insert(PeerAddr(peer));
                        request
                    })
                    .service(service.clone());
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(30))
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(per_connection));
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(error = %error, "http connection ended with an error");
                    }
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
