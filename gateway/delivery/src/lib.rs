//! Delivery: one worker per target takes outbox rows in order (per patient)
//! and delivers them, `fhir` targets by POSTing the transaction Bundle,
//! `dmp` targets by submitting its CDA documents (`passerelle-dmp`), the
//! `local` target by storing it. Retries follow the target's policy;
//! a circuit breaker stops hammering a target that keeps failing.
//!
//! A row is claimed under a lease before its request leaves and is marked
//! delivered only after the target's 2xx: a crash in between re-delivers
//! it after a restart (at least once), and the Bundles' conditional writes
//! (`ifNoneExist`, conditional `PUT`) make the repeat a no-op at the
//! target (exactly once in effect).
//!
//! Every attempt is recorded in the audit trail, in the transaction that
//! records the attempt (the `audit` module).

// Input must never reach a panic: no unwrap/expect/panic outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod audit;
pub mod circuit;
pub mod policy;
pub mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use passerelle_config::{DeliveryConfig, TargetKind};
use std::collections::BTreeMap;

use passerelle_config::TargetConfig;
use passerelle_dmp::DmpConnector;
use passerelle_fhir_client::TargetClient;
pub use passerelle_storage::Wakers;
use passerelle_storage::{now_ms, SharedStore};
use passerelle_telemetry::metrics::Metrics;
use worker::{Destination, TargetWorker};

#[derive(Debug, thiserror::Error)]
#[error("target `{target}`: {message}")]
pub struct DeliverySetupError {
    pub target: String,
    pub message: String,
}

/// Starts one worker per target, plus the sampler of outbox depths.
pub fn start(
    store: SharedStore,
    targets: &BTreeMap<String, TargetConfig>,
    config: &DeliveryConfig,
    owner: &str,
    metrics: Metrics,
    tasks: &mut tokio::task::JoinSet<()>,
    shutdown: &CancellationToken,
) -> Result<Wakers, DeliverySetupError> {
    let mut by_target = HashMap::new();
    let mut workers = Vec::new();
    for (name, target) in targets {
        let destination = match target.kind {
            TargetKind::Local => Destination::Local,
            TargetKind::Fhir => {
                Destination::Fhir(Arc::new(TargetClient::new(target).map_err(|error| {
                    DeliverySetupError {
                        target: name.clone(),
                        message: error.to_string(),
                    }
                })?))
            }
            TargetKind::Dmp => {
                let connector = DmpConnector::new(target).map_err(|error| DeliverySetupError {
                    target: name.clone(),
                    message: error.to_string(),
                })?;
                for (attribute, file) in connector.value_sets().checked() {
                    tracing::info!(target_name = %name, attribute, value_set = file, "DMP codes checked against a value set");
                }
                Destination::Dmp(Arc::new(connector))
            }
        };
        let wake = Arc::new(Notify::new());
        by_target.insert(name.clone(), wake.clone());
        workers.push(TargetWorker::new(
            name,
            target,
            destination,
            store.clone(),
            owner,
            config,
            wake,
            metrics.clone(),
        ));
    }
    for worker in workers {
        tasks.spawn(worker.run(shutdown.clone()));
    }
    tasks.spawn(sample_depths(
        store,
        metrics,
        Duration::from_millis(config.poll_interval_ms.max(100)),
        shutdown.clone(),
    ));
    Ok(Wakers::new(by_target))
}

/// Keeps the outbox depth and oldest-age gauges current.
async fn sample_depths(
    store: SharedStore,
    metrics: Metrics,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut known: Vec<String> = Vec::new();
    loop {
        let reading = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.depths(now_ms())).await
        };
        if let Ok(Ok(depths)) = reading {
            // Targets that emptied since the last reading go back to zero.
            for target in &known {
                if !depths.iter().any(|d| &d.target == target) {
                    for state in ["pending", "in_flight", "dead"] {
                        metrics
                            .outbox_depth
                            .with_label_values(&[target, state])
                            .set(0);
                    }
                    metrics
                        .outbox_oldest_age
                        .with_label_values(&[target])
                        .set(0.0);
                }
            }
            known = depths.iter().map(|d| d.target.clone()).collect();
            for depth in &depths {
                let target = depth.target.as_str();
                metrics
                    .outbox_depth
                    .with_label_values(&[target, "pending"])
                    .set(depth.pending);
                metrics
                    .outbox_depth
                    .with_label_values(&[target, "in_flight"])
                    .set(depth.in_flight);
                metrics
                    .outbox_depth
                    .with_label_values(&[target, "dead"])
                    .set(depth.dead);
                metrics
                    .outbox_oldest_age
                    .with_label_values(&[target])
                    .set(depth.oldest_pending_age_ms as f64 / 1000.0);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => break,
        }
    }
}
