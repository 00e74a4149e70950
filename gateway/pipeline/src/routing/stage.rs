//! The mapping stage: takes journaled messages in order, maps them with
//! each matching route's mapper, and writes one outbox row per target in
//! the same transaction that ends the message's mapping. It runs after the
//! journal commit (the ACK never waits for mapping), and since it starts
//! from the journal, a crash between intake and mapping loses nothing: the
//! message is still `received` and is mapped at the next start.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::RouteTable;
use crate::mapping::MappingService;
use passerelle_storage::Wakers;
use passerelle_storage::{now_ms, MappingOutcome, NewDelivery, SharedStore, UnmappedMessage};
use passerelle_telemetry::events::{MappingStageFailed, MessageRouted};
use passerelle_telemetry::metrics::Metrics;

/// Everything the stage needs; cheap to clone.
#[derive(Clone)]
pub struct MappingStage {
    pub store: SharedStore,
    pub mapping: MappingService,
    pub routes: Arc<RouteTable>,
    /// This instance's lease owner name.
    pub owner: String,
    /// Notified after journal commits and replays.
    pub wake: Arc<Notify>,
    pub deliveries: Wakers,
    pub batch: usize,
    pub poll_interval: Duration,
    pub lease: Duration,
    pub metrics: Metrics,
}

impl MappingStage {
    /// Maps until `shutdown`; a batch in progress is finished first.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let stage = self.clone();
            let result = tokio::task::spawn_blocking(move || stage.map_one_batch()).await;
            let mapped = match result {
                Ok(Ok(mapped)) => mapped,
                Ok(Err(error)) => {
                    MappingStageFailed {
                        error: &error.to_string(),
                    }
                    .emit(&self.metrics);
                    0
                }
                Err(_) => 0,
            };
            if mapped > 0 {
                continue;
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.poll_interval) => {}
                () = shutdown.cancelled() => break,
            }
        }
    }

    /// Claims and maps one batch; returns how many messages it handled.
    pub fn map_one_batch(&self) -> Result<usize, passerelle_storage::StorageError> {
        let claimed = self.store.claim_unmapped(
            &self.owner,
            self.batch.max(1),
            now_ms(),
            self.lease.as_millis() as i64,
        )?;
        let mut touched = BTreeSet::new();
        let mut outcomes = Vec::with_capacity(claimed.len());
        for message in &claimed {
            let outcome = self.route(message);
            if let MappingOutcome::Routed(deliveries) = &outcome {
                touched.extend(deliveries.iter().map(|d| d.target.clone()));
            }
            outcomes.push((message.journal_id, outcome));
        }
        // One commit for the batch: a crash before it leaves the messages
        // claimed, and they are mapped again.
        self.store.record_mappings(&outcomes, now_ms())?;
        for (journal_id, outcome) in &outcomes {
            MessageRouted {
                journal_id: *journal_id,
                outcome: match outcome {
                    MappingOutcome::Routed(_) => "routed",
                    MappingOutcome::Failed { .. } => "failed",
                    MappingOutcome::Unrouted => "unrouted",
                },
                targets: match outcome {
                    MappingOutcome::Routed(d) => d.len(),
                    _ => 0,
                },
            }
            .emit(&self.metrics);
        }
        for target in touched {
            self.deliveries.wake(&target);
        }
        Ok(claimed.len())
    }

    /// The outbox rows for `message`, or why there are none. A failure of
    /// any route's mapping fails the message as a whole, so that a replay
    /// after the fix delivers it everywhere at once.
    fn route(&self, message: &UnmappedMessage) -> MappingOutcome {
        let mut deliveries: Vec<NewDelivery> = Vec::new();
        let mut mapped: HashMap<Option<String>, mappers::mapping::MappedBundle> = HashMap::new();
        let mut any = false;
        for route in self.routes.matching(message) {
            any = true;
            let bundle = match mapped.get(&route.mapper) {
                Some(bundle) => bundle.clone(),
                None => match self.mapping.map_stored(
                    &message.message_type,
                    &message.raw,
                    route.mapper.as_deref(),
                ) {
                    Ok(bundle) => {
                        mapped.insert(route.mapper.clone(), bundle.clone());
                        bundle
                    }
                    Err(error) => {
                        let location = error
                            .location()
                            .map(|l| format!("{l}: "))
                            .unwrap_or_default();
                        return MappingOutcome::Failed {
                            reason: format!("route `{}`: {location}{}", route.name, error.detail()),
                        };
                    }
                },
            };
            for target in &route.targets {
                if deliveries.iter().any(|d| &d.target == target) {
                    continue;
                }
                deliveries.push(NewDelivery {
                    route: route.name.clone(),
                    target: target.clone(),
                    patient_key: bundle
                        .patient_key
                        .clone()
                        .unwrap_or_else(|| format!("message:{}", message.journal_id)),
                    bundle: bundle.bundle.clone(),
                });
            }
        }
        if any {
            MappingOutcome::Routed(deliveries)
        } else {
            MappingOutcome::Unrouted
        }
    }
}
