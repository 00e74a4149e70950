//! The HTTP transport: a hyper server whose every request passes through one
//! tower stack (request IDs, telemetry, the error edge, the admin guard,
//! authentication and scopes, load shedding, concurrency limit, timeout,
//! body limit) before reaching the router.

// Input must never reach a panic: no unwrap/expect/panic outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod access;
pub mod admin;
pub mod audit;
pub mod capability;
pub mod convert;
pub mod error;
pub mod handlers;
pub mod layers;
pub mod proxy;
pub mod rest;
pub mod routes;
pub mod server;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;

use crate::capability::CapabilityInputs;
use passerelle_intake::Intake;
use passerelle_pipeline::mapping::MappingService;
use passerelle_storage::SharedStore;
use passerelle_storage::Wakers;
use passerelle_telemetry::metrics::Metrics;

/// Response body type of every handler.
pub type ResponseBody = Full<Bytes>;
pub use passerelle_security::BoxError;

/// What the handlers share.
pub struct AppState {
    pub metrics: Metrics,
    pub store: SharedStore,
    /// Wakes the mapping stage (after a replay).
    pub mapping_wake: std::sync::Arc<tokio::sync::Notify>,
    /// Wakes delivery workers (after dead letters are retried).
    pub deliveries: Wakers,
    pub intake: Intake,
    /// The clients that may call (the access layer authenticates against
    /// it).
    pub clients: Arc<passerelle_security::ClientDirectory>,
    pub mapping: MappingService,
    pub max_body_bytes: usize,
    pub capability: CapabilityInputs,
    /// Proxy mode: the FHIR server that answers reads instead of the
    /// repository.
    pub upstream: Option<proxy::Upstream>,
    /// False while starting and once shutdown has begun, so `/ready` tells a
    /// load balancer to stop sending work.
    pub accepting: std::sync::atomic::AtomicBool,
}

pub type SharedState = Arc<AppState>;
