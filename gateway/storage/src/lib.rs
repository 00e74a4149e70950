//! Durable state behind one [`Store`] trait with two backends that pass the
//! same test suite (`storage::suite`): SQLite in the data directory (the
//! embedded default, WAL with `synchronous=FULL`) and PostgreSQL (several
//! gateway instances sharing one outbox).
//!
//! What is stored, and the one life of a message through it:
//! - the **journal**: every accepted HL7 v2 message, raw, committed before
//!   its ACK leaves (group commit, see [`journal`]). A journal row is
//!   `received`, then the mapping stage claims it (`mapping`) and ends it
//!   `routed` (outbox rows written in the same transaction), `failed` (the
//!   mapper's reason kept, replayable) or `unrouted` (no route matched);
//! - the **outbox**: one row per (message, target) with the mapped Bundle,
//!   `pending` → `in_flight` (claimed under a lease) → `delivered` or `dead`
//!   (a refusal retrying cannot fix, the target's answer kept);
//! - the **attempts**: every delivery attempt with its status and latency,
//!   so a message's journey can be shown;
//! - the **local bundles**: what the `local` target stored;
//! - the **FHIR repository** tables, owned by `passerelle_repository` and
//!   written through [`sql::Sql`];
//! - the **API clients** added from the command line ([`clients`]);
//! - the **audit trail** ([`audit`]).
//!
//! A patient's messages are found, read and erased through
//! [`patient_messages`], in one [`Store::sql_erase`] transaction whose
//! deleted bytes do not stay behind ([`Store::scrub`]).
//!
//! The trait is synchronous: SQLite is, and the PostgreSQL backend uses the
//! blocking client. Async callers go through `tokio::task::spawn_blocking`.

// Input must never reach a panic: no unwrap/expect/panic outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod application_acks;
pub mod attempts;
pub mod audit;
pub mod backup;
mod checkpoint;
pub mod clients;
pub mod clock;
pub mod content;
pub mod encryption;
pub mod inbox;
pub mod journal;
pub mod outbox;
pub mod patient_messages;
pub mod postgres;
/// Test databases on the machine's PostgreSQL, for this crate's and the
/// repository's suites.
#[cfg(any(test, feature = "test-support"))]
pub mod postgres_test;
mod postgres_tls;
pub mod retention;
pub mod schema;
pub mod sql;
pub mod sqlite;
#[cfg(test)]
pub(crate) mod suite;
mod wake;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use passerelle_config::{StorageBackend, StorageConfig};

pub use journal::{JournalEntry, Stored};
pub use wake::Wakers;

/// The outbox rows not delivered, indexed apart from the delivered
/// history, which only grows (partial indexes: SQLite and PostgreSQL
/// alike): the periodic depth sample reads the first alone, and the
/// patient-order check of every claim (an earlier message of the same
/// patient still pending or in flight) the second.
pub const OUTBOX_UNDELIVERED_INDEX: &str =
    "CREATE INDEX outbox_undelivered ON outbox (target, state, created_at_ms)
        WHERE state <> 'delivered';
    CREATE INDEX outbox_patient_open ON outbox (target, patient_key, journal_id)
        WHERE state IN ('pending', 'in_flight');";

/// File name of the SQLite database inside the data directory.
pub const DATABASE_FILE: &str = "passerelle.db";

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot create data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgresql: {0}")]
    Postgres(#[from] ::postgres::Error),
    /// The URL's TLS settings (`sslmode`, `sslrootcert`) cannot be used.
    #[error("postgresql TLS: {0}")]
    PostgresTls(String),
    #[error("storage.postgres_url is required when storage.backend = \"postgres\"")]
    NoPostgresUrl,
    /// A file of the data directory could not be read, written or renamed.
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The configuration gives a key, the file is a plain SQLite database.
    #[error("{path} is not encrypted, but [storage] asks for encryption: encrypt it with `passerelle storage rekey --from-unencrypted --new-key-file FILE` (docs/security.md)")]
    NotEncrypted { path: PathBuf },
    /// The file is not a database this key opens (never says the key).
    #[error("{path}: the configured key does not open this database (another key, or not a Passerelle database)")]
    WrongKey { path: PathBuf },
    /// No key is configured and the file is encrypted (or not a database).
    #[error("{path} is encrypted (or is not a database): set [storage] encrypted = true and its key_file or PASSERELLE_STORAGE_KEY")]
    Encrypted { path: PathBuf },
    #[error("database connection lock poisoned")]
    Poisoned,
    #[error("cannot start the storage thread: {0}")]
    Thread(std::io::Error),
    #[error("stored data is inconsistent: {0}")]
    Inconsistent(String),
    /// A read still running at its deadline was stopped (the request it
    /// served has been answered with a timeout already).
    #[error("the read took longer than the request timeout and was stopped")]
    DeadlinePassed,
}

/// Where a journal row is on its way to the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageState {
    Received,
    Mapping,
    Routed,
    Failed,
    Unrouted,
}

impl MessageState {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::Received => "received",
            MessageState::Mapping => "mapping",
            MessageState::Routed => "routed",
            MessageState::Failed => "failed",
            MessageState::Unrouted => "unrouted",
        }
    }

    pub fn parse(text: &str) -> Option<MessageState> {
        Some(match text {
            "received" => MessageState::Received,
            "mapping" => MessageState::Mapping,
            "routed" => MessageState::Routed,
            "failed" => MessageState::Failed,
            "unrouted" => MessageState::Unrouted,
            _ => return None,
        })
    }
}

/// Where one outbox row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    InFlight,
    Delivered,
    Dead,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::InFlight => "in_flight",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryState> {
        Some(match text {
            "pending" => DeliveryState::Pending,
            "in_flight" => DeliveryState::InFlight,
            "delivered" => DeliveryState::Delivered,
            "dead" => DeliveryState::Dead,
            _ => return None,
        })
    }
}

/// A journal row handed to the mapping stage.
#[derive(Debug, Clone)]
pub struct UnmappedMessage {
    pub journal_id: i64,
    pub transport: String,
    pub sending_application: String,
    pub sending_facility: String,
    pub message_type: String,
    pub raw: Vec<u8>,
}

/// One outbox row to create: the Bundle a route mapped for a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub route: String,
    pub target: String,
    /// Deliveries with the same key go to a target in journal order.
    pub patient_key: String,
    pub bundle: String,
}

/// How the mapping stage ended for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MappingOutcome {
    Routed(Vec<NewDelivery>),
    Failed { reason: String },
    Unrouted,
}

/// An outbox row claimed for delivery.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub outbox_id: i64,
    pub journal_id: i64,
    pub target: String,
    pub control_id: String,
    /// Attempts so far, this one included.
    pub attempt: u32,
    pub bundle: String,
    /// The networks of the message's sender (see [`JournalEntry::networks`]).
    pub networks: Vec<String>,
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    Delivered,
    /// Try again at `next_attempt_at_ms`.
    Retry {
        next_attempt_at_ms: i64,
    },
    /// Never retried by itself; the target's answer is kept.
    Dead,
}

impl AttemptResult {
    /// The outbox state the row moves to, and when it is next due.
    pub fn outbox_transition(&self, now_ms: i64) -> (&'static str, i64) {
        match *self {
            AttemptResult::Delivered => ("delivered", now_ms),
            AttemptResult::Retry { next_attempt_at_ms } => ("pending", next_attempt_at_ms),
            AttemptResult::Dead => ("dead", now_ms),
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            AttemptResult::Delivered => "delivered",
            AttemptResult::Retry { .. } => "retry",
            AttemptResult::Dead => "dead",
        }
    }
}

/// A delivery attempt, as recorded.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub started_at_ms: i64,
    pub latency_ms: i64,
    /// HTTP status, when the target answered.
    pub status: Option<u16>,
    pub result: AttemptResult,
    /// The error, or the target's OperationOutcome (bounded).
    pub detail: Option<String>,
    /// Why it was refused, for the sender's acknowledgement.
    pub reason: AttemptReason,
}

/// Why an attempt was refused, as the sender's acknowledgement says it:
/// the refusal's code (the receiver's, e.g. the DMP's
/// `XDSDuplicateUniqueIdInRegistry`, or `PASSERELLE` for a rule the
/// gateway checked before sending) and the HL7 v2 field at fault
/// (`PID-32`). Kept with the outbox row, so that an acknowledgement never
/// parses a text meant for people.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttemptReason {
    pub code: Option<String>,
    pub location: Option<String>,
}

/// Migration 12: the outbox keeps the last refusal's code and field
/// ([`AttemptReason`]) beside its text.
pub const OUTBOX_REASON_SCHEMA: &str = "ALTER TABLE outbox ADD COLUMN last_error_code TEXT;
    ALTER TABLE outbox ADD COLUMN last_error_location TEXT;";

impl Attempt {
    /// A delivery to the `local` target: stored at `now_ms`, no network.
    pub fn stored_locally(now_ms: i64) -> Attempt {
        Attempt {
            started_at_ms: now_ms,
            latency_ms: 0,
            status: None,
            result: AttemptResult::Delivered,
            detail: None,
            reason: AttemptReason::default(),
        }
    }
}

/// Which journal rows an admin request is about.
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    /// A message state (`received`, `failed`, `unrouted`, ...) or a
    /// delivery state (`pending`, `in_flight`, `delivered`, `dead`).
    pub state: Option<String>,
    pub target: Option<String>,
    /// Received at or after (FHIR instant text, compared as text: UTC `Z`).
    pub since: Option<String>,
    pub until: Option<String>,
    /// Rows with an id below this (paging backwards from the newest).
    pub before_id: Option<i64>,
    pub limit: usize,
}

/// One message in a list.
#[derive(Debug, Clone, Serialize)]
pub struct MessageSummary {
    pub id: i64,
    pub received_at: String,
    pub transport: String,
    pub control_id: String,
    pub message_type: String,
    pub state: String,
    pub deliveries: Vec<DeliverySummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliverySummary {
    pub outbox_id: i64,
    pub route: String,
    pub target: String,
    pub state: String,
    pub attempts: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Everything known about one message, for `passerelle messages show`.
#[derive(Debug, Clone, Serialize)]
pub struct MessageJourney {
    #[serde(flatten)]
    pub summary: MessageSummary,
    pub sending_application: String,
    pub sending_facility: String,
    pub sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mapping_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mapped_at: Option<String>,
    pub attempts: Vec<AttemptRecord>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttemptRecord {
    pub outbox_id: i64,
    pub target: String,
    pub attempt: i64,
    pub at: String,
    pub latency_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<i64>,
    pub result: String,
    pub instance: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Outbox depth of one target, for metrics and the admin API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TargetDepth {
    pub target: String,
    pub pending: i64,
    pub in_flight: i64,
    pub dead: i64,
    /// Age of the oldest undelivered (pending or in flight) row, in ms.
    pub oldest_pending_age_ms: i64,
}

/// The storage every backend provides. Times are Unix milliseconds unless
/// said otherwise.
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`, for metrics labels.
    fn backend(&self) -> &'static str;

    /// Succeeds when the store can take a write right now (readiness).
    fn check_writable(&self) -> Result<(), StorageError>;

    /// Commits `entries` in one transaction; a retransmission (same sender,
    /// control ID and content) finds its earlier row.
    fn journal_commit(&self, entries: &[JournalEntry]) -> Result<Vec<Stored>, StorageError> {
        self.journal_commit_audited(entries, &[])
    }

    /// [`Store::journal_commit`], with `records` appended to the audit
    /// trail in the same transaction, after the messages: the records of
    /// these messages and of those refused meanwhile (the journal's group
    /// commit), so that no message is acknowledged without its record and
    /// the records cost no commit of their own.
    fn journal_commit_audited(
        &self,
        entries: &[JournalEntry],
        records: &[audit::AuditRecord],
    ) -> Result<Vec<Stored>, StorageError>;

    /// Makes every message and audit record the journal has committed
    /// visible to reads ([`Store::sql_read`]). Writes always see them; on
    /// SQLite the journal commits to a file of its own ([`inbox`]) whose
    /// rows reach the main database with its next write, which this one
    /// makes now. A read of what was just acknowledged (an administrator's
    /// look at a message, the audit trail) calls it first.
    fn settle(&self) -> Result<(), StorageError> {
        Ok(())
    }

    /// Claims up to `limit` `received` messages, oldest first, for mapping
    /// by `owner` until `now_ms + lease_ms`. Only one instance maps at a
    /// time (its claim is refused while another's lease runs), so the
    /// outbox is filled in journal order.
    fn claim_unmapped(
        &self,
        owner: &str,
        limit: usize,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Vec<UnmappedMessage>, StorageError>;

    /// Ends the mapping of messages `(journal id, outcome)`, in one
    /// transaction with their outbox rows (one commit for a batch). A row
    /// for the same message and target that is not in flight is replaced
    /// (a replay), keeping its place in the order.
    fn record_mappings(
        &self,
        outcomes: &[(i64, MappingOutcome)],
        now_ms: i64,
    ) -> Result<(), StorageError> {
        recorded(self, |sql| outbox::record_mappings(sql, outcomes, now_ms))
    }

    /// [`Store::record_mappings`] for one message.
    fn record_mapping(
        &self,
        journal_id: i64,
        outcome: &MappingOutcome,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        self.record_mappings(&[(journal_id, outcome.clone())], now_ms)
    }

    /// Claims up to `limit` deliverable rows of `target`: due, and with no
    /// earlier undelivered row for the same patient key.
    fn claim_deliveries(
        &self,
        target: &str,
        owner: &str,
        limit: usize,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Vec<Delivery>, StorageError>;

    /// Records an attempt and moves the row on. Returns false when the row
    /// was no longer leased to `owner` (the attempt is recorded, the state
    /// is left to the new owner).
    fn record_attempt(
        &self,
        delivery: &Delivery,
        owner: &str,
        attempt: &Attempt,
        now_ms: i64,
    ) -> Result<bool, StorageError> {
        self.record_attempt_audited(delivery, owner, attempt, now_ms, &[])
    }

    /// [`Store::record_attempt`], with the attempt's audit `records`
    /// appended in the same transaction.
    fn record_attempt_audited(
        &self,
        delivery: &Delivery,
        owner: &str,
        attempt: &Attempt,
        now_ms: i64,
        records: &[audit::AuditRecord],
    ) -> Result<bool, StorageError> {
        recorded(self, |sql| {
            attempts::record_audited(sql, delivery, owner, attempt, now_ms, records)
        })
    }

    /// Delivery to the `local` target: records the attempts as delivered,
    /// in one transaction. Returns how many rows
    /// were still leased to `owner`.
    fn deliver_locally(
        &self,
        deliveries: &[Delivery],
        owner: &str,
        now_ms: i64,
    ) -> Result<usize, StorageError> {
        self.deliver_locally_audited(deliveries, owner, now_ms, &[])
    }

    /// [`Store::deliver_locally`], with the deliveries' audit `records`
    /// appended in the same transaction.
    fn deliver_locally_audited(
        &self,
        deliveries: &[Delivery],
        owner: &str,
        now_ms: i64,
        records: &[audit::AuditRecord],
    ) -> Result<usize, StorageError> {
        let deliveries: Vec<&Delivery> = deliveries.iter().collect();
        recorded(self, |sql| {
            attempts::record_local(sql, &deliveries, owner, now_ms, records)
        })
    }

    /// Hands back every row leased to `owner` (at start: a restarted
    /// instance does not wait for its own old leases).
    fn release_leases(&self, owner: &str) -> Result<u64, StorageError> {
        recorded(self, |sql| outbox::release_leases(sql, owner))
    }

    /// When the earliest pending row of `target` that no earlier row of
    /// its patient holds back becomes due.
    fn next_due(&self, target: &str) -> Result<Option<i64>, StorageError> {
        read(self, |sql| outbox::next_due(sql, target))
    }

    /// Journal rows matching `filter`, newest first, with their deliveries
    /// (what the journal just acknowledged included: [`Store::settle`]).
    fn list_messages(&self, filter: &MessageFilter) -> Result<Vec<MessageSummary>, StorageError> {
        self.settle()?;
        read(self, |sql| outbox::list_messages(sql, filter))
    }

    fn message(&self, journal_id: i64) -> Result<Option<MessageJourney>, StorageError> {
        self.settle()?;
        read(self, |sql| outbox::message(sql, journal_id))
    }

    /// Sends messages back to the mapping stage (after a mapper fix); their
    /// deliveries are then replaced. Returns how many were re-queued.
    fn replay(&self, journal_ids: &[i64]) -> Result<u64, StorageError> {
        recorded(self, |sql| outbox::replay(sql, journal_ids))
    }

    /// Moves dead rows (of one target, or all) back to `pending`.
    fn retry_dead(
        &self,
        target: Option<&str>,
        outbox_ids: &[i64],
        now_ms: i64,
    ) -> Result<u64, StorageError> {
        recorded(self, |sql| {
            outbox::retry_dead(sql, target, outbox_ids, now_ms)
        })
    }

    /// Deletes messages received before `before` (FHIR instant) whose every
    /// delivery is over (delivered, or dead when `include_dead`), with
    /// their deliveries and attempts. Returns how many messages went.
    fn purge(&self, before: &str, include_dead: bool) -> Result<u64, StorageError> {
        recorded(self, |sql| outbox::purge(sql, before, include_dead))
    }

    fn depths(&self, now_ms: i64) -> Result<Vec<TargetDepth>, StorageError> {
        read(self, |sql| outbox::depths(sql, now_ms))
    }

    /// The Bundles delivered to `target` that retention left, oldest
    /// first (what the tests look at).
    fn delivered_bundles(&self, target: &str, limit: usize) -> Result<Vec<String>, StorageError> {
        read(self, |sql| outbox::delivered_bundles(sql, target, limit))
    }

    /// Runs `work` in one write transaction, committed when it returns
    /// `Ok(true)`. Writers are serialised (across instances on PostgreSQL),
    /// so what `work` reads stays true until it commits.
    fn sql_write(&self, work: &mut sql::WriteWork<'_>) -> Result<(), StorageError>;

    /// [`Store::sql_write`] for work that reads nothing of the repository
    /// (delivery records): on PostgreSQL it does not wait for the
    /// repository's writers of other instances.
    fn sql_record(&self, work: &mut sql::WriteWork<'_>) -> Result<(), StorageError> {
        self.sql_write(work)
    }

    /// Runs `work` on one consistent snapshot, on one of several read
    /// connections (a slow read never blocks the others). With a
    /// `deadline`, the database stops the work when it passes
    /// ([`StorageError::DeadlinePassed`]): a request answered "timeout"
    /// must not keep a connection and a core busy.
    fn sql_read(
        &self,
        deadline: Option<std::time::Instant>,
        work: &mut sql::ReadWork<'_>,
    ) -> Result<(), StorageError>;

    /// Runs `work` like [`Store::sql_write`], for an erasure: what it
    /// deletes is overwritten where the backend can (SQLite's
    /// `secure_delete` on this connection, for this transaction), not only
    /// unlinked. SQLite takes the write lock first (`BEGIN IMMEDIATE`), so
    /// that a long erasure beside a running gateway waits for the lock
    /// instead of failing when its snapshot turns stale.
    fn sql_erase(&self, work: &mut sql::WriteWork<'_>) -> Result<(), StorageError> {
        self.sql_write(work)
    }

    /// Makes sure that no copy of rows deleted or changed before is left
    /// in the store's files, after an erasure. SQLite keeps earlier copies
    /// of changed rows in the free space of its pages (a row updated
    /// before `secure_delete` was on, a message's state changes), and
    /// committed pages in its WAL: `VACUUM` rewrites the database from its
    /// live rows, then a `TRUNCATE` checkpoint empties the WAL. While it
    /// runs, other writers (a running gateway) wait. PostgreSQL's dead
    /// rows are the server's to reclaim (autovacuum): [`Scrubbed::LeftToServer`].
    fn scrub(&self) -> Result<Scrubbed, StorageError> {
        Ok(Scrubbed::LeftToServer)
    }

    /// Calls `on_change(channel, payload)` when another instance changes
    /// the journal (`passerelle_journal`) or a target's outbox
    /// (`passerelle_outbox`, payload the target). Backends with one
    /// instance only (SQLite) have nobody else to hear from.
    fn watch_changes(&self, on_change: ChangeCallback) -> Result<(), StorageError> {
        let _ = on_change;
        Ok(())
    }
}

/// What [`Store::scrub`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scrubbed {
    /// The database file was rewritten from its live rows and its log
    /// emptied: these files hold nothing deleted.
    Rewritten { files: Vec<PathBuf> },
    /// The server reclaims deleted rows itself (PostgreSQL's vacuum); its
    /// files and WAL may hold them until then.
    LeftToServer,
}

/// What `work` returns, from one read snapshot ([`Store::sql_read`]).
pub(crate) fn read<S: Store + ?Sized, T: Send>(
    store: &S,
    mut work: impl FnMut(&mut dyn sql::Sql) -> Result<T, StorageError> + Send,
) -> Result<T, StorageError> {
    let mut found = None;
    store.sql_read(None, &mut |sql| {
        found = Some(work(sql)?);
        Ok(())
    })?;
    found.ok_or_else(|| StorageError::Inconsistent("a read returned nothing".to_string()))
}

/// What `work` returns, from one committed [`Store::sql_record`]
/// transaction.
pub(crate) fn recorded<S: Store + ?Sized, T: Send>(
    store: &S,
    mut work: impl FnMut(&mut dyn sql::Sql) -> Result<T, StorageError> + Send,
) -> Result<T, StorageError> {
    let mut done = None;
    store.sql_record(&mut |sql| {
        done = Some(work(sql)?);
        Ok(true)
    })?;
    done.ok_or_else(|| StorageError::Inconsistent("a write returned nothing".to_string()))
}

/// See [`Store::watch_changes`].
pub type ChangeCallback = Arc<dyn Fn(&str, &str) + Send + Sync>;

pub type SharedStore = Arc<dyn Store>;

/// Opens the configured backend, applying migrations.
pub fn open(config: &StorageConfig) -> Result<SharedStore, StorageError> {
    Ok(match config.backend {
        StorageBackend::Sqlite => Arc::new(sqlite::SqliteStore::open_with_key(
            &config.data_dir,
            store_key(config).as_ref(),
        )?),
        StorageBackend::Postgres => {
            let url = config
                .postgres_url
                .as_deref()
                .ok_or(StorageError::NoPostgresUrl)?;
            Arc::new(postgres::PostgresStore::open(url)?)
        }
    })
}

/// The key of the embedded store when the configuration asks for
/// encryption (`[storage] encrypted`; the secret was read from `key_file`
/// or `PASSERELLE_STORAGE_KEY` when the configuration was loaded).
pub fn store_key(config: &StorageConfig) -> Option<encryption::StoreKey> {
    config
        .key
        .as_deref()
        .filter(|_| config.encrypted)
        .map(encryption::StoreKey::new)
}

/// The current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Unix milliseconds as a FHIR instant (UTC, millisecond precision).
pub fn instant_from_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000).max(0) as u64;
    let (y, m, d, hh, mm, ss) = crate::clock::civil_from_unix(secs);
    format!(
        "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{:03}Z",
        ms.rem_euclid(1000)
    )
}

/// Largest target answer kept with a dead letter.
pub const MAX_DETAIL_BYTES: usize = 16 * 1024;

/// Cuts `text` to at most [`MAX_DETAIL_BYTES`] on a character boundary.
pub fn bounded_detail(text: &str) -> String {
    if text.len() <= MAX_DETAIL_BYTES {
        return text.to_string();
    }
    let mut end = MAX_DETAIL_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
