//! The HTTP transport: a hyper server whose every request passes through one
//! tower stack (request IDs, telemetry, the error edge, load shedding,
//! concurrency limit, timeout, body limit) before reaching the router.

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

use crate::delivery::Wakers;
use crate::fhir::capability::CapabilityInputs;
use crate::intake::Intake;
use crate::mapping::MappingService;
use crate::storage::SharedStore;
use crate::telemetry::metrics::Metrics;

/// Response body type of every handler.
pub type ResponseBody = Full<Bytes>;
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the handlers share.
pub struct AppState {
    pub metrics: Metrics,
    pub store: SharedStore,
    /// Wakes the mapping stage (after a replay).
    pub mapping_wake: std::sync::Arc<tokio::sync::Notify>,
    /// Wakes delivery workers (after dead letters are retried).
    pub deliveries: Wakers,
    pub intake: Intake,
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
