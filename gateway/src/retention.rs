//! The retention policy at run time (`[retention]`): at start and then
//! every `check_interval_secs`, each class of data that has an age is
//! purged of what is older, in batches of `batch` rows, one short
//! transaction each (`passerelle_storage::retention` owns the deletions).
//! The removal of audit records is itself recorded in the trail, in the
//! transaction that removes them, naming the new start of the chain.

use std::time::Duration;

use passerelle_config::RetentionConfig;
use passerelle_security::audit::{
    agents, roles, types, Action, Agent, Code, Entity, Event, Outcome, PASSERELLE_SUBTYPE,
};
use passerelle_storage::audit::AuditRecord;
use passerelle_storage::retention::{purge_batch, DataClass};
use passerelle_storage::{instant_from_ms, now_ms, SharedStore};
use passerelle_telemetry::events::RetentionPurged;
use passerelle_telemetry::metrics::Metrics;
use tokio_util::sync::CancellationToken;

const DAY_MS: i64 = 86_400_000;

/// The age of `class` in the configuration, in days.
fn days(config: &RetentionConfig, class: DataClass) -> Option<u32> {
    match class {
        DataClass::JournalPayloads => config.journal_payloads_days,
        DataClass::DeliveredBundles => config.delivered_bundles_days,
        DataClass::DeadLetters => config.dead_letters_days,
        DataClass::RepositoryHistory => config.repository_history_days,
        DataClass::AuditRecords => config.audit_records_days,
    }
}

/// Whether any class has an age (else no task runs).
pub fn configured(config: &RetentionConfig) -> bool {
    DataClass::ALL
        .iter()
        .any(|class| days(config, *class).is_some())
}

/// The record of `removed` audit records taken off the start of the
/// trail, the chain now starting after `anchor`.
fn removal_record(removed: u64, anchor: i64) -> AuditRecord {
    let recorded_ms = now_ms();
    let event = Event::new(
        types::AUDIT_LOG_USED,
        Code::new(PASSERELLE_SUBTYPE, "retention", "Retention policy applied"),
        Action::Delete,
        instant_from_ms(recorded_ms),
    )
    .outcome(
        Outcome::Success,
        format!("{removed} audit record(s) older than the retention period removed; the chain starts after record {anchor}"),
    )
    .agent(Agent {
        kind: agents::APPLICATION,
        who: "passerelle retention".to_string(),
        alt_id: String::new(),
        address: None,
        requestor: true,
    })
    .entity(
        Entity::new(Some(roles::DATA_REPOSITORY), "audit trail")
            .detail("removed", removed.to_string())
            .detail("anchor", anchor.to_string()),
    );
    AuditRecord {
        recorded_ms,
        patients: Vec::new(),
        event: event.to_json(),
    }
}

/// Applies the policy until `shutdown`.
pub async fn run(
    store: SharedStore,
    config: RetentionConfig,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let every = Duration::from_secs(config.check_interval_secs.max(1));
    loop {
        for class in DataClass::ALL {
            let Some(days) = days(&config, class) else {
                continue;
            };
            let cutoff_ms = now_ms() - i64::from(days) * DAY_MS;
            let mut removed = 0u64;
            loop {
                if shutdown.is_cancelled() {
                    return;
                }
                let store = store.clone();
                let batch = config.batch;
                let done = tokio::task::spawn_blocking(move || {
                    purge_batch(store.as_ref(), class, cutoff_ms, batch, &removal_record)
                })
                .await;
                match done {
                    Ok(Ok(0)) => break,
                    Ok(Ok(n)) => removed += n,
                    Ok(Err(error)) => {
                        RetentionPurged {
                            class: class.label(),
                            removed,
                            error: Some(&error.to_string()),
                        }
                        .emit(&metrics);
                        removed = 0;
                        break;
                    }
                    Err(_) => break,
                }
            }
            if removed > 0 {
                RetentionPurged {
                    class: class.label(),
                    removed,
                    error: None,
                }
                .emit(&metrics);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
