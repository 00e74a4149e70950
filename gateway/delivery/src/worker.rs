//! The worker of one target: claims deliverable outbox rows up to the
//! target's concurrency, delivers each, records the attempt and schedules
//! the retry, and keeps the circuit breaker. On shutdown it stops claiming
//! and lets the deliveries in flight finish.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::circuit::CircuitBreaker;
use super::policy::{classify_status, Jitter, RetryPolicy, Verdict};
use passerelle_config::{DeliveryConfig, TargetConfig};
use passerelle_dmp::{DmpConnector, Outcome, SubmissionKey};
use passerelle_fhir_client::TargetClient;
use passerelle_repository::transaction::{Refusal, TransactionError, TransactionOutcome};
use passerelle_repository::Repository;
use passerelle_storage::{
    attempts, now_ms, Attempt, AttemptReason, AttemptResult, Delivery, SharedStore,
};
use passerelle_telemetry::events::{DeliveryAttempted, DeliveryStoreFailed};
use passerelle_telemetry::metrics::Metrics;

/// Where a target's deliveries go.
#[derive(Clone)]
pub enum Destination {
    Fhir(Arc<TargetClient>),
    Dmp(Arc<DmpConnector>),
    Local,
}

/// What the circuit breaker learns from one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    /// The target answered and took it (or refused it for its content).
    Up,
    /// No answer, a 5xx, or throttling.
    Down,
    /// Nothing learnt (the store failed).
    Unknown,
}

struct Shared {
    name: String,
    destination: Destination,
    store: SharedStore,
    owner: String,
    policy: RetryPolicy,
    metrics: Metrics,
}

pub struct TargetWorker {
    shared: Arc<Shared>,
    concurrency: usize,
    lease: Duration,
    poll_interval: Duration,
    circuit: CircuitBreaker,
    wake: Arc<Notify>,
    jitter: Jitter,
}

impl TargetWorker {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        target: &TargetConfig,
        destination: Destination,
        store: SharedStore,
        owner: &str,
        delivery: &DeliveryConfig,
        wake: Arc<Notify>,
        metrics: Metrics,
    ) -> TargetWorker {
        let seed = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        TargetWorker {
            shared: Arc::new(Shared {
                name: name.to_string(),
                destination,
                store,
                owner: owner.to_string(),
                policy: RetryPolicy {
                    initial: Duration::from_millis(target.backoff_initial_ms.max(1)),
                    max: Duration::from_millis(
                        target.backoff_max_ms.max(target.backoff_initial_ms).max(1),
                    ),
                    max_attempts: target.max_attempts,
                },
                metrics,
            }),
            concurrency: target.concurrency.max(1),
            lease: Duration::from_secs(delivery.lease_secs.max(1))
                .max(Duration::from_secs(target.timeout_secs.saturating_mul(2))),
            poll_interval: Duration::from_millis(delivery.poll_interval_ms.max(10)),
            circuit: CircuitBreaker::new(
                target.circuit_failures,
                Duration::from_millis(target.circuit_open_ms),
            ),
            wake,
            jitter: Jitter::seeded(seed),
        }
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut in_flight: JoinSet<Health> = JoinSet::new();
        loop {
            self.set_circuit_gauge();
            let stopping = shutdown.is_cancelled();
            if stopping && in_flight.is_empty() {
                break;
            }
            let mut claimed = 0;
            if !stopping {
                let capacity = self.concurrency.saturating_sub(in_flight.len());
                let permits = self.circuit.permits(Instant::now(), capacity);
                if permits > 0 {
                    claimed = self.claim_and_start(permits, &mut in_flight).await;
                    if claimed == 0 {
                        self.circuit.trial_unused();
                    }
                }
            }
            if claimed > 0 && in_flight.len() < self.concurrency {
                // More may be deliverable right away.
                continue;
            }
            let wait = if in_flight.is_empty() {
                self.idle_wait().await
            } else {
                self.poll_interval
            };
            tokio::select! {
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    self.learn(done.unwrap_or(Health::Unknown));
                }
                () = self.wake.notified(), if !stopping => {}
                () = tokio::time::sleep(wait), if !stopping => {}
                () = shutdown.cancelled(), if !stopping => {}
            }
            while let Some(done) = in_flight.try_join_next() {
                self.learn(done.unwrap_or(Health::Unknown));
            }
        }
    }

    fn learn(&mut self, health: Health) {
        match health {
            Health::Up => self.circuit.on_success(),
            Health::Down => self.circuit.on_failure(Instant::now()),
            Health::Unknown => self.circuit.trial_unused(),
        }
    }

    fn set_circuit_gauge(&self) {
        self.shared
            .metrics
            .circuit_state
            .with_label_values(&[&self.shared.name])
            .set(self.circuit.state(Instant::now()).gauge());
    }

    /// How long to sleep with nothing in flight: until the next retry is
    /// due or the circuit lets a trial through, at most the poll interval.
    async fn idle_wait(&self) -> Duration {
        let mut wait = self.poll_interval;
        if let Some(reopens) = self.circuit.reopens_at() {
            wait = wait.min(reopens.saturating_duration_since(Instant::now()));
        }
        let store = self.shared.store.clone();
        let name = self.shared.name.clone();
        if let Ok(Ok(Some(due))) = tokio::task::spawn_blocking(move || store.next_due(&name)).await
        {
            let until = (due - now_ms()).max(0) as u64;
            wait = wait.min(Duration::from_millis(until));
        }
        wait.max(Duration::from_millis(5))
    }

    async fn claim_and_start(&mut self, permits: usize, in_flight: &mut JoinSet<Health>) -> usize {
        // The local target stores a whole claim in one transaction.
        let permits = match self.shared.destination {
            Destination::Local => LOCAL_BATCH,
            Destination::Fhir(_) | Destination::Dmp(_) => permits,
        };
        let shared = self.shared.clone();
        let lease_ms = self.lease.as_millis() as i64;
        let claimed = tokio::task::spawn_blocking(move || {
            shared
                .store
                .claim_deliveries(&shared.name, &shared.owner, permits, now_ms(), lease_ms)
        })
        .await;
        let deliveries = match claimed {
            Ok(Ok(deliveries)) => deliveries,
            Ok(Err(error)) => {
                DeliveryStoreFailed {
                    target: &self.shared.name,
                    error: &error.to_string(),
                }
                .emit(&self.shared.metrics);
                tokio::time::sleep(Duration::from_millis(200)).await;
                return 0;
            }
            Err(_) => return 0,
        };
        let count = deliveries.len();
        let client = match &self.shared.destination {
            Destination::Local => {
                if count > 0 {
                    let shared = self.shared.clone();
                    in_flight.spawn(async move { deliver_locally(&shared, deliveries).await });
                }
                return count;
            }
            Destination::Fhir(client) => Remote::Fhir(client.clone()),
            Destination::Dmp(connector) => Remote::Dmp(connector.clone()),
        };
        for delivery in deliveries {
            let shared = self.shared.clone();
            let client = client.clone();
            let random = self.jitter.draw();
            in_flight.spawn(async move { deliver(&shared, &client, delivery, random).await });
        }
        count
    }
}

/// Rows claimed for the local target at once (one transaction).
const LOCAL_BATCH: usize = 256;

/// Applies a claim of local rows to the repository and records them, in
/// the same database transaction (a savepoint per Bundle): applied rows
/// delivered, refused ones dead with the OperationOutcome that says why.
async fn deliver_locally(shared: &Arc<Shared>, deliveries: Vec<Delivery>) -> Health {
    let started = Instant::now();
    let store = shared.store.clone();
    let owner = shared.owner.clone();
    // The rows move into the store call and back: their Bundles are not copied.
    let stored = tokio::task::spawn_blocking(move || {
        let stored = apply_locally(&store, &owner, &deliveries);
        (deliveries, stored)
    })
    .await;
    match stored {
        Ok((deliveries, Ok(refused))) => {
            for (index, delivery) in deliveries.iter().enumerate() {
                // The status the admin API shows for the same attempt.
                let status = refused
                    .iter()
                    .find(|(refused, _)| *refused == index)
                    .map(|(_, status)| *status);
                DeliveryAttempted {
                    target: &shared.name,
                    control_id: &delivery.control_id,
                    journal_id: delivery.journal_id,
                    attempt: delivery.attempt,
                    status,
                    result: if status.is_some() {
                        "dead"
                    } else {
                        "delivered"
                    },
                    elapsed: started.elapsed(),
                }
                .emit(&shared.metrics);
            }
            Health::Up
        }
        other => {
            let error = match other {
                Ok((_, Err(error))) => error.to_string(),
                _ => "storage task failed".to_string(),
            };
            DeliveryStoreFailed {
                target: &shared.name,
                error: &error,
            }
            .emit(&shared.metrics);
            Health::Unknown
        }
    }
}

/// The blocking part of [`deliver_locally`]; returns the indexes of the
/// refused rows, each with the HTTP status of its refusal.
fn apply_locally(
    store: &SharedStore,
    owner: &str,
    deliveries: &[Delivery],
) -> Result<Vec<(usize, u16)>, passerelle_storage::StorageError> {
    let now = now_ms();
    let bundles: Vec<(&str, &[String])> = deliveries
        .iter()
        .map(|d| (d.bundle.as_str(), d.networks.as_slice()))
        .collect();
    let mut refused = Vec::new();
    Repository::new(store.clone()).transactions(&bundles, now, &mut |sql, results| {
        refused.clear();
        record_locally(sql, owner, now, deliveries, results, &mut refused)
    })?;
    Ok(refused)
}

/// Records what [`Repository::transactions`] did with `deliveries`, in its
/// transaction: applied rows delivered (their audit records naming the
/// repository's Patients each Bundle wrote), refused ones dead, each
/// pushed on `refused` with the HTTP status of its refusal.
fn record_locally(
    sql: &mut dyn passerelle_storage::sql::Sql,
    owner: &str,
    now: i64,
    deliveries: &[Delivery],
    results: &[Result<TransactionOutcome, TransactionError>],
    refused: &mut Vec<(usize, u16)>,
) -> Result<(), passerelle_storage::StorageError> {
    let stored = Attempt::stored_locally(now);
    let mut applied = Vec::with_capacity(deliveries.len());
    let mut records = Vec::with_capacity(deliveries.len());
    for (index, (delivery, result)) in deliveries.iter().zip(results).enumerate() {
        match result {
            Ok(outcome) => {
                let patients: Vec<String> = outcome
                    .entries
                    .iter()
                    .filter(|entry| entry.resource_type == "Patient")
                    .map(|entry| format!("Patient/{}", entry.id))
                    .collect();
                records.push(crate::audit::attempt_record(delivery, &stored, &patients));
                applied.push(delivery);
            }
            Err(error) => {
                let outcome = passerelle_repository::transaction_outcome(error);
                refused.push((index, outcome.status.as_u16()));
                let attempt = Attempt {
                    started_at_ms: now,
                    latency_ms: 0,
                    status: Some(outcome.status.as_u16()),
                    result: AttemptResult::Dead,
                    detail: Some(outcome.to_json().to_string()),
                    reason: Default::default(),
                };
                let record = crate::audit::attempt_record(delivery, &attempt, &[]);
                attempts::record_audited(sql, delivery, owner, &attempt, now, &[record])?;
                if let TransactionError::Entry {
                    refusal: Refusal::SeveralMatches,
                    reason,
                    ..
                } = error
                {
                    passerelle_storage::journal::fail_mapping(
                        sql,
                        delivery.journal_id,
                        &format!(
                            "identity collision at target `{}`: {reason}",
                            delivery.target
                        ),
                    )?;
                }
            }
        }
    }
    attempts::record_local(sql, &applied, owner, now, &records)?;
    Ok(())
}

/// A target across the network.
#[derive(Clone)]
enum Remote {
    Fhir(Arc<TargetClient>),
    Dmp(Arc<DmpConnector>),
}

/// What one request to a remote target came to.
struct Sent {
    verdict: Verdict,
    /// The HTTP status, when the target answered.
    status: Option<u16>,
    /// The error, or the target's answer, for people.
    detail: Option<String>,
    /// Why it was refused, for the sender's acknowledgement.
    reason: AttemptReason,
    health: Health,
}

impl Sent {
    fn new(verdict: Verdict, status: Option<u16>, detail: Option<String>, health: Health) -> Sent {
        Sent {
            verdict,
            status,
            detail,
            reason: AttemptReason::default(),
            health,
        }
    }
}

/// Delivers one row to a remote target and records the attempt.
async fn deliver(shared: &Arc<Shared>, remote: &Remote, delivery: Delivery, random: u64) -> Health {
    let started_ms = now_ms();
    let started = Instant::now();
    let sent = match remote {
        Remote::Fhir(client) => send_fhir(client, &delivery).await,
        Remote::Dmp(connector) => send_dmp(connector, &delivery).await,
    };
    let latency = started.elapsed();
    record(shared, delivery, random, started_ms, started, latency, sent).await
}

/// The DMP's outcome as a delivery verdict: refusals (ours before
/// sending, or the DMP's) are dead letters with their reason, an
/// unreachable DMP is retried.
async fn send_dmp(connector: &DmpConnector, delivery: &Delivery) -> Sent {
    let key = SubmissionKey {
        outbox_id: delivery.outbox_id,
        journal_id: delivery.journal_id,
        bundle: &delivery.bundle,
    };
    match connector.submit(key, delivery.attempt, now_ms()).await {
        Outcome::Accepted {
            status,
            documents,
            deleted,
        } => Sent::new(
            Verdict::Delivered,
            Some(status),
            Some(match deleted {
                0 => format!("the DMP took {documents} document(s)"),
                _ => format!("the DMP took {documents} document(s) and deleted {deleted}"),
            }),
            Health::Up,
        ),
        Outcome::NothingToSend => Sent::new(
            Verdict::Delivered,
            None,
            Some("no CDA document in the message: nothing sent to the DMP".into()),
            Health::Up,
        ),
        Outcome::Refused(refusal) => Sent {
            reason: AttemptReason {
                code: Some(passerelle_dmp::PASSERELLE_CODE.into()),
                location: refusal.location().map(str::to_string),
            },
            ..Sent::new(
                Verdict::Dead,
                None,
                Some(format!("not sent to the DMP: {refusal}")),
                Health::Up,
            )
        },
        Outcome::Rejected {
            status,
            code,
            detail,
        } => Sent {
            reason: AttemptReason {
                code,
                location: None,
            },
            ..Sent::new(Verdict::Dead, Some(status), Some(detail), Health::Up)
        },
        Outcome::Unavailable {
            status,
            detail,
            retry_after,
        } => Sent::new(
            Verdict::Retry { after: retry_after },
            status,
            Some(detail),
            Health::Down,
        ),
    }
}

/// POSTs the transaction Bundle to a FHIR target.
async fn send_fhir(client: &TargetClient, delivery: &Delivery) -> Sent {
    let answer = client.post_transaction(&delivery.bundle).await;
    match answer {
        Ok(answer) => {
            let mut verdict = classify_status(answer.status, answer.retry_after);
            if answer.status == 401 && client.renews_tokens() {
                verdict = Verdict::Retry { after: None };
            }
            let health = if answer.status >= 500 || answer.status == 429 {
                Health::Down
            } else {
                Health::Up
            };
            let detail = (!(200..300).contains(&answer.status))
                .then(|| String::from_utf8_lossy(&answer.body).into_owned());
            Sent::new(verdict, Some(answer.status), detail, health)
        }
        Err(error) => Sent::new(
            Verdict::Retry { after: None },
            None,
            Some(error.to_string()),
            Health::Down,
        ),
    }
}

/// Records one remote attempt, its retry or dead letter, and its audit
/// record.
async fn record(
    shared: &Arc<Shared>,
    delivery: Delivery,
    random: u64,
    started_ms: i64,
    started: Instant,
    latency: Duration,
    sent: Sent,
) -> Health {
    let Sent {
        verdict,
        status,
        detail,
        reason,
        health,
    } = sent;
    let result = match verdict {
        Verdict::Delivered => AttemptResult::Delivered,
        Verdict::Dead => AttemptResult::Dead,
        Verdict::Retry { .. } if shared.policy.exhausted(delivery.attempt) => AttemptResult::Dead,
        Verdict::Retry { after } => AttemptResult::Retry {
            next_attempt_at_ms: now_ms()
                + shared
                    .policy
                    .delay(delivery.attempt, after, random)
                    .as_millis() as i64,
        },
    };
    let label = result.label();
    let attempt = Attempt {
        started_at_ms: started_ms,
        latency_ms: latency.as_millis() as i64,
        status,
        result,
        detail,
        reason,
    };
    // The attempt's audit record, in the transaction that records it.
    let record = crate::audit::attempt_record(&delivery, &attempt, &[]);
    // The row (and its Bundle) moves into the store call and back: no copy.
    let store = shared.store.clone();
    let owner = shared.owner.clone();
    let recorded = tokio::task::spawn_blocking(move || {
        let recorded =
            store.record_attempt_audited(&delivery, &owner, &attempt, now_ms(), &[record]);
        (delivery, recorded)
    })
    .await;
    let delivery = match recorded {
        Ok((delivery, Ok(_))) => delivery,
        Ok((delivery, Err(error))) => {
            // The lease runs out and the row is delivered again: at least once.
            DeliveryStoreFailed {
                target: &shared.name,
                error: &error.to_string(),
            }
            .emit(&shared.metrics);
            delivery
        }
        Err(_) => {
            DeliveryStoreFailed {
                target: &shared.name,
                error: "storage task failed",
            }
            .emit(&shared.metrics);
            return health;
        }
    };
    DeliveryAttempted {
        target: &shared.name,
        control_id: &delivery.control_id,
        journal_id: delivery.journal_id,
        attempt: delivery.attempt,
        status,
        result: label,
        elapsed: started.elapsed(),
    }
    .emit(&shared.metrics);
    health
}

#[cfg(test)]
mod tests {
    use super::*;
    use passerelle_storage::sqlite::SqliteStore;
    use passerelle_storage::{JournalEntry, MappingOutcome, NewDelivery, Stored};

    /// A message journaled and mapped to one Bundle for the local target
    /// (a transaction Bundle creating one Patient), claimed by `me`.
    fn claimed_local_delivery(store: &SharedStore) -> Vec<Delivery> {
        claimed_local_deliveries(store, &[patient_bundle("Martin")])
    }

    /// A transaction Bundle creating one Patient named `family`.
    fn patient_bundle(family: &str) -> serde_json::Value {
        serde_json::json!({
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{
                "fullUrl": "urn:uuid:8c5e7f2a-1d3b-4c6e-9f0a-2b4d6e8f0a1c",
                "resource": {"resourceType": "Patient", "name": [{"family": family}]},
                "request": {"method": "POST", "url": "Patient"}
            }]
        })
    }

    /// One message per Bundle, journaled and mapped for the local target,
    /// all claimed by `me` in one claim.
    fn claimed_local_deliveries(
        store: &SharedStore,
        bundles: &[serde_json::Value],
    ) -> Vec<Delivery> {
        for (index, bundle) in bundles.iter().enumerate() {
            let entry = JournalEntry {
                received_at: "2026-12-07T00:00:00Z".into(),
                transport: "mllp",
                sending_application: "APP".into(),
                sending_facility: "SITE".into(),
                control_id: format!("C{index}"),
                message_type: "ADT^A04".into(),
                version: "2.5".into(),
                charset: "UNICODE UTF-8".into(),
                sha256: format!("c{index}"),
                ack_code: "AA".into(),
                raw: format!("MSH|^~\\&|APP|SITE|{index}").into_bytes(),
                networks: Vec::new(),
                application_ack: String::new(),
            };
            let Stored::New { id } = store.journal_commit(&[entry]).unwrap()[0] else {
                panic!("a new message expected")
            };
            store.claim_unmapped("me", 10, now_ms(), 60_000).unwrap();
            store
                .record_mapping(
                    id,
                    &MappingOutcome::Routed(vec![NewDelivery {
                        route: "adt".into(),
                        target: "local".into(),
                        patient_key: format!("p{index}"),
                        bundle: bundle.to_string(),
                    }]),
                    now_ms(),
                )
                .unwrap();
        }
        store
            .claim_deliveries("local", "me", 10, now_ms(), 60_000)
            .unwrap()
    }

    fn patients(store: &SharedStore) -> i64 {
        let mut count = 0;
        store
            .sql_read(None, &mut |sql| {
                let rows = sql.query(
                    "SELECT count(*) FROM fhir_resources WHERE resource_type = 'Patient'",
                    &[],
                )?;
                count = rows[0][0].as_i64().unwrap_or(-1);
                Ok(())
            })
            .unwrap();
        count
    }

    #[test]
    fn a_local_delivery_is_stored_and_recorded_in_one_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let deliveries = claimed_local_delivery(&store);
        assert_eq!(deliveries.len(), 1);
        // The record of the delivery fails: the Bundle must not be kept
        // without it (a crash between two transactions did that).
        store
            .sql_write(&mut |sql| {
                sql.execute(
                    "CREATE TRIGGER refuse_record BEFORE INSERT ON delivery_attempts
                     BEGIN SELECT RAISE(ABORT, 'refused'); END",
                    &[],
                )?;
                Ok(true)
            })
            .unwrap();
        assert!(apply_locally(&store, "me", &deliveries).is_err());
        assert_eq!(patients(&store), 0);
        // Once it can be recorded, both are kept.
        store
            .sql_write(&mut |sql| {
                sql.execute("DROP TRIGGER refuse_record", &[])?;
                Ok(true)
            })
            .unwrap();
        assert_eq!(apply_locally(&store, "me", &deliveries).unwrap(), vec![]);
        assert_eq!(patients(&store), 1);
        assert_eq!(store.delivered_bundles("local", 10).unwrap().len(), 1);
    }

    /// A Bundle refused after it wrote (its second entry's `ifMatch`
    /// fails once its first entry's Patient is written) in the middle of
    /// a batch: the batch, first applied without savepoints, is applied
    /// again with one per Bundle, so that the Bundles around it are kept
    /// and nothing of the refused one is.
    #[test]
    fn a_bundle_refused_mid_batch_leaves_no_trace_and_the_others_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let refused_after_writing = serde_json::json!({
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": {"resourceType": "Patient", "name": [{"family": "Durand"}]},
                    "request": {"method": "POST", "url": "Patient"}
                },
                {
                    "resource": {"resourceType": "Patient", "id": "nobody"},
                    "request": {"method": "PUT", "url": "Patient/nobody", "ifMatch": "W/\"9\""}
                }
            ]
        });
        let deliveries = claimed_local_deliveries(
            &store,
            &[
                patient_bundle("Martin"),
                refused_after_writing,
                patient_bundle("Bernard"),
            ],
        );
        assert_eq!(deliveries.len(), 3);
        assert_eq!(
            apply_locally(&store, "me", &deliveries).unwrap(),
            vec![(1, 412)]
        );
        assert_eq!(patients(&store), 2, "Martin and Bernard, not Durand");
        assert_eq!(store.delivered_bundles("local", 10).unwrap().len(), 2);
    }
}
