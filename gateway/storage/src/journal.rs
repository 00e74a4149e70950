//! The HL7 v2 journal: every accepted message, raw, with its metadata, made
//! durable before its ACK leaves. One writer thread owns the connection and
//! commits whatever has queued up in one transaction (group commit), so many
//! messages share one fsync; each submitter waits for the commit that holds
//! its message.
//!
//! The audit records of the messages (`crate::audit`) go into the same
//! commits: a message submitted with its record is stored with it, and the
//! records of messages refused before the journal ([`Journal::record`])
//! ride on the next commit, so they cost no fsync of their own.
//!
//! Retransmissions (same sending application, facility, control ID and
//! content) are stored once: the second submission gets the original entry's
//! ACK code back. A different message that reuses a control ID is stored as
//! a message of its own: acknowledging it without keeping it would lose it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};

use super::{SharedStore, StorageError};
use crate::audit::AuditRecord;
use passerelle_telemetry::metrics::Metrics;

/// Most messages committed in one transaction.
const MAX_BATCH: usize = 512;
/// Submissions waiting for the writer before submitters are slowed down.
const QUEUE_DEPTH: usize = 8192;

/// What the journal keeps of one message besides its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    pub received_at: String,
    pub transport: &'static str,
    pub sending_application: String,
    pub sending_facility: String,
    pub control_id: String,
    pub message_type: String,
    pub version: String,
    pub charset: String,
    pub sha256: String,
    /// The acknowledgement code the message was (or will be) answered with.
    pub ack_code: String,
    pub raw: Vec<u8>,
    /// The networks of the client that sent it: the patients its data
    /// reaches join them (see the repository's patient networks).
    pub networks: Vec<String>,
    /// The application acknowledgement the sender asked for (enhanced
    /// mode, MSH-16 `AL`, `ER` or `SU`) and that a return endpoint is
    /// configured for; empty when none is to be sent (see
    /// [`crate::application_acks`]).
    pub application_ack: String,
}

/// The DDL of patient networks, the same on both backends: the networks
/// of each journaled message's sender (which the patients it is mapped to
/// join), and the networks each patient of the repository belongs to
/// (who may read it; the repository's `networks` module owns its use).
pub const NETWORKS_SCHEMA: &str =
    "ALTER TABLE journal ADD COLUMN networks TEXT NOT NULL DEFAULT '';
    CREATE TABLE fhir_patient_networks (
        patient TEXT NOT NULL,
        network TEXT NOT NULL,
        PRIMARY KEY (patient, network)
    );
    CREATE INDEX fhir_patient_networks_network ON fhir_patient_networks (network, patient);";

/// Marks message `journal_id` as failed in mapping, for `reason`, after
/// the fact: what a delivery finds to be the mapping's fault (the
/// identifiers of two records meeting in one condition) is fixed in the
/// mapping (an assigning authority for the sender), and a message failed
/// in mapping is what `replay` maps again; a dead letter retried as it is
/// would only fail again. Runs in the caller's transaction (the delivery's
/// own, which records the refusal).
pub fn fail_mapping(
    sql: &mut dyn crate::sql::Sql,
    journal_id: i64,
    reason: &str,
) -> Result<(), StorageError> {
    use crate::sql::SqlValue;
    let reason = reason.chars().take(4000).collect::<String>();
    sql.execute(
        "UPDATE journal SET state = 'failed', mapping_error = $2 WHERE id = $1",
        &[SqlValue::Int(journal_id), SqlValue::Text(reason)],
    )?;
    Ok(())
}

/// A sender's networks as the journal keeps them: space-separated (network
/// names are single words, checked where clients are defined).
pub fn join_networks(networks: &[String]) -> String {
    networks.join(" ")
}

/// [`join_networks`] read back.
pub fn split_networks(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

/// Where a submitted message ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Newly and durably stored.
    New { id: i64 },
    /// Already in the journal from an earlier submission.
    Duplicate { id: i64, ack_code: String },
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal writer has stopped")]
    WriterGone,
    #[error("journal commit failed: {0}")]
    Commit(String),
}

/// A message to store (with its audit record, if any), or an audit record
/// alone (a message refused before the journal).
struct Submission {
    entry: Option<JournalEntry>,
    record: Option<AuditRecord>,
    reply: Reply,
}

/// Where a submission's outcome goes.
enum Reply {
    Stored(oneshot::Sender<Result<Stored, JournalError>>),
    Recorded(oneshot::Sender<Result<(), JournalError>>),
}

/// A handle on the journal writer; cheap to clone.
#[derive(Clone)]
pub struct Journal {
    submissions: mpsc::Sender<Submission>,
}

impl Journal {
    /// Starts the writer thread on `store`; `committed` is notified after
    /// every commit that stored a new message (it wakes the mapping stage).
    pub fn start(
        store: SharedStore,
        metrics: Metrics,
        committed: Arc<Notify>,
    ) -> Result<Journal, StorageError> {
        let (submissions, queue) = mpsc::channel(QUEUE_DEPTH);
        std::thread::Builder::new()
            .name("journal-writer".to_string())
            .spawn(move || writer(store, queue, metrics, committed))
            .map_err(StorageError::Thread)?;
        Ok(Journal { submissions })
    }

    /// Stores `entry` durably (or finds its earlier copy) and returns once
    /// the commit is on disk.
    pub async fn store(&self, entry: JournalEntry) -> Result<Stored, JournalError> {
        self.submit(entry, None).await
    }

    /// [`Journal::store`], with the message's audit record committed in the
    /// same transaction: both are on disk, or neither.
    pub async fn store_recorded(
        &self,
        entry: JournalEntry,
        record: AuditRecord,
    ) -> Result<Stored, JournalError> {
        self.submit(entry, Some(record)).await
    }

    async fn submit(
        &self,
        entry: JournalEntry,
        record: Option<AuditRecord>,
    ) -> Result<Stored, JournalError> {
        let (reply, answer) = oneshot::channel();
        self.submissions
            .send(Submission {
                entry: Some(entry),
                record,
                reply: Reply::Stored(reply),
            })
            .await
            .map_err(|_| JournalError::WriterGone)?;
        answer.await.map_err(|_| JournalError::WriterGone)?
    }

    /// Appends `record` to the audit trail in the next group commit (a
    /// message refused before the journal) and returns once it is on disk.
    pub async fn record(&self, record: AuditRecord) -> Result<(), JournalError> {
        let (reply, answer) = oneshot::channel();
        self.submissions
            .send(Submission {
                entry: None,
                record: Some(record),
                reply: Reply::Recorded(reply),
            })
            .await
            .map_err(|_| JournalError::WriterGone)?;
        answer.await.map_err(|_| JournalError::WriterGone)?
    }
}

fn writer(
    store: SharedStore,
    mut queue: mpsc::Receiver<Submission>,
    metrics: Metrics,
    committed: Arc<Notify>,
) {
    let mut batch: Vec<Submission> = Vec::with_capacity(MAX_BATCH);
    let mut entries: Vec<JournalEntry> = Vec::with_capacity(MAX_BATCH);
    let mut records: Vec<AuditRecord> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        // The entries and records move into the commit, so the raw bytes
        // are never copied.
        for submission in batch.iter_mut() {
            entries.extend(submission.entry.take());
            records.extend(submission.record.take());
        }
        let messages = entries.len();
        let results = store.journal_commit_audited(&entries, &records);
        entries.clear();
        records.clear();
        if messages > 0 {
            metrics
                .journal_commit_batch
                .with_label_values(&[store.backend()])
                .observe(messages as f64);
        }
        match results {
            Ok(results) => {
                if results.iter().any(|r| matches!(r, Stored::New { .. })) {
                    committed.notify_one();
                }
                let mut results = results.into_iter();
                for submission in batch.drain(..) {
                    match submission.reply {
                        Reply::Stored(reply) => {
                            let result = results.next().ok_or_else(|| {
                                JournalError::Commit("the store answered too few entries".into())
                            });
                            let _ = reply.send(result);
                        }
                        Reply::Recorded(reply) => {
                            let _ = reply.send(Ok(()));
                        }
                    }
                }
            }
            Err(error) => {
                tracing::error!(error = %error, messages, submissions = batch.len(), "journal commit failed; messages will be refused");
                for submission in batch.drain(..) {
                    let failed = JournalError::Commit(error.to_string());
                    match submission.reply {
                        Reply::Stored(reply) => {
                            let _ = reply.send(Err(failed));
                        }
                        Reply::Recorded(reply) => {
                            let _ = reply.send(Err(failed));
                        }
                    }
                }
                // A failing disk is usually not fixed in microseconds.
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> crate::MessageFilter {
        crate::MessageFilter {
            limit: 1000,
            ..Default::default()
        }
    }

    fn entry(control_id: &str) -> JournalEntry {
        JournalEntry {
            received_at: "2026-11-22T10:00:00Z".into(),
            transport: "test",
            sending_application: "LAB".into(),
            sending_facility: "SITE".into(),
            control_id: control_id.into(),
            message_type: "ORU^R01".into(),
            version: "2.5".into(),
            charset: "UNICODE UTF-8".into(),
            sha256: "00".into(),
            ack_code: "AA".into(),
            raw: b"MSH|...".to_vec(),
            application_ack: String::new(),
            networks: Vec::new(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stores_once_and_reports_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(crate::sqlite::SqliteStore::open(dir.path()).unwrap());
        let journal = Journal::start(
            store.clone(),
            Metrics::new("test").unwrap(),
            Arc::new(Notify::new()),
        )
        .unwrap();
        let first = journal.store(entry("C1")).await.unwrap();
        assert!(matches!(first, Stored::New { .. }));
        let again = journal.store(entry("C1")).await.unwrap();
        assert!(matches!(again, Stored::Duplicate { ref ack_code, .. } if ack_code == "AA"));
        let count = store.list_messages(&all()).unwrap().len();
        assert_eq!(count, 1);
        // Same control id, different content: kept, not swallowed.
        let mut other = entry("C1");
        other.sha256 = "11".into();
        let reused = journal.store(other).await.unwrap();
        assert!(matches!(reused, Stored::New { .. }));
    }

    fn record(n: u32) -> AuditRecord {
        AuditRecord {
            recorded_ms: 1_000,
            patients: Vec::new(),
            event: format!("{{\"resourceType\":\"AuditEvent\",\"n\":{n}}}"),
        }
    }

    fn journal_rows(store: &SharedStore) -> usize {
        store.list_messages(&all()).unwrap().len()
    }

    /// A message and its audit record commit together, or neither does;
    /// a refusal's record rides on the journal's commits.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn messages_and_their_records_commit_together() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Arc::new(crate::sqlite::SqliteStore::open(dir.path()).unwrap());
        let store: SharedStore = sqlite.clone();
        let journal = Journal::start(
            store.clone(),
            Metrics::new("test").unwrap(),
            Arc::new(Notify::new()),
        )
        .unwrap();
        let stored = journal.store_recorded(entry("A1"), record(1)).await;
        assert!(matches!(stored, Ok(Stored::New { .. })));
        journal.record(record(2)).await.unwrap();
        let trail = crate::audit::records_after(store.as_ref(), 0, 10).unwrap();
        assert_eq!(trail.len(), 2);
        assert!(trail[0].1.contains("\"n\":1") && trail[1].1.contains("\"n\":2"));
        assert_eq!(journal_rows(&store), 1);
        // The records cannot be written (where the journal commits them,
        // its inbox): the message is not stored either (and is answered
        // with an error, so its sender sends it again).
        sqlite
            .inbox()
            .unwrap()
            .execute_batch("ALTER TABLE inbox_audit RENAME TO inbox_audit_away")
            .unwrap();
        let refused = journal.store_recorded(entry("A2"), record(3)).await;
        assert!(
            matches!(refused, Err(JournalError::Commit(_))),
            "{refused:?}"
        );
        assert!(journal.record(record(4)).await.is_err());
        sqlite
            .inbox()
            .unwrap()
            .execute_batch("ALTER TABLE inbox_audit_away RENAME TO inbox_audit")
            .unwrap();
        assert_eq!(journal_rows(&store), 1, "no message without its record");
        assert!(matches!(
            journal.store_recorded(entry("A2"), record(5)).await,
            Ok(Stored::New { .. })
        ));
        assert_eq!(journal_rows(&store), 2);
        assert_eq!(
            crate::audit::verify(store.as_ref()).unwrap(),
            crate::audit::Verification::Intact { records: 3 }
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_submissions_share_commits_and_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(crate::sqlite::SqliteStore::open(dir.path()).unwrap());
        let journal = Journal::start(
            store.clone(),
            Metrics::new("test").unwrap(),
            Arc::new(Notify::new()),
        )
        .unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..500 {
            let journal = journal.clone();
            // Every id twice: each must be stored exactly once.
            tasks.spawn(async move { journal.store(entry(&format!("C{}", n % 250))).await });
        }
        let mut new = 0;
        while let Some(result) = tasks.join_next().await {
            if let Stored::New { .. } = result.unwrap().unwrap() {
                new += 1;
            }
        }
        assert_eq!(new, 250);
        let count = store.list_messages(&all()).unwrap().len();
        assert_eq!(count, 250);
    }
}
