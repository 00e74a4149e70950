//! The embedded default backend: one SQLite database in the data directory,
//! in WAL mode with `synchronous=FULL` so that a committed transaction
//! survives power loss, and the journal's inbox beside it
//! ([`crate::inbox`]), a file of its own so that the journal's commits
//! (the ACK path) never wait for this database's writer. Writes go through
//! one connection (SQLite has one writer anyway, and in-process
//! serialisation avoids busy retries), each first absorbing the inbox;
//! reads use a pool of others, which WAL lets run beside writes.

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use rusqlite::types::ValueRef;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, TransactionBehavior};

use super::sql::{sqlite_placeholders, ReadWork, Sql, SqlRow, SqlValue, WriteWork};

use super::{
    bounded_detail, instant_from_ms, AttemptRecord, Delivery, DeliverySummary, MappingOutcome,
    MessageFilter, MessageJourney, MessageSummary, Scrubbed, StorageError, Store, Stored,
    TargetDepth, UnmappedMessage, DATABASE_FILE,
};
use crate::encryption::StoreKey;
use crate::JournalEntry;

/// Schema versions, applied in order at open; `user_version` records how far
/// a database has come.
const MIGRATIONS: &[&str] = &[
    // 1: the HL7 v2 journal. One row per accepted message, raw bytes kept.
    "CREATE TABLE journal (
        id INTEGER PRIMARY KEY,
        received_at TEXT NOT NULL,
        transport TEXT NOT NULL,
        sending_application TEXT NOT NULL,
        sending_facility TEXT NOT NULL,
        control_id TEXT NOT NULL,
        message_type TEXT NOT NULL,
        version TEXT NOT NULL,
        charset TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        ack_code TEXT NOT NULL,
        raw BLOB NOT NULL
    );
    CREATE UNIQUE INDEX journal_retransmission
        ON journal (sending_application, sending_facility, control_id, sha256);
    CREATE INDEX journal_control_id ON journal (control_id);",
    // 2: store and forward. Journal rows gain their mapping state; the
    // outbox holds one row per message and target; attempts are history.
    "ALTER TABLE journal ADD COLUMN state TEXT NOT NULL DEFAULT 'received';
    ALTER TABLE journal ADD COLUMN mapping_error TEXT;
    ALTER TABLE journal ADD COLUMN mapped_at_ms INTEGER;
    ALTER TABLE journal ADD COLUMN lease_owner TEXT;
    ALTER TABLE journal ADD COLUMN lease_until_ms INTEGER;
    CREATE INDEX journal_state ON journal (state, id);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        journal_id INTEGER NOT NULL REFERENCES journal (id) ON DELETE CASCADE,
        route TEXT NOT NULL,
        target TEXT NOT NULL,
        patient_key TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at_ms INTEGER NOT NULL,
        lease_owner TEXT,
        lease_until_ms INTEGER,
        created_at_ms INTEGER NOT NULL,
        last_status INTEGER,
        last_error TEXT,
        bundle TEXT NOT NULL,
        UNIQUE (journal_id, target)
    );
    CREATE INDEX outbox_ready ON outbox (target, state, next_attempt_at_ms);
    CREATE INDEX outbox_patient ON outbox (target, patient_key, journal_id);
    CREATE TABLE delivery_attempts (
        id INTEGER PRIMARY KEY,
        outbox_id INTEGER NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
        attempt INTEGER NOT NULL,
        started_at_ms INTEGER NOT NULL,
        latency_ms INTEGER NOT NULL,
        status INTEGER,
        result TEXT NOT NULL,
        instance TEXT NOT NULL,
        detail TEXT
    );
    CREATE INDEX delivery_attempts_outbox ON delivery_attempts (outbox_id, id);
    CREATE TABLE local_bundles (
        id INTEGER PRIMARY KEY,
        outbox_id INTEGER NOT NULL UNIQUE,
        journal_id INTEGER NOT NULL,
        stored_at_ms INTEGER NOT NULL,
        bundle TEXT NOT NULL
    );",
    // 3: the FHIR repository (gateway::repository).
    "CREATE TABLE fhir_resources (
        resource_type TEXT NOT NULL,
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        last_updated_ms INTEGER NOT NULL,
        deleted INTEGER NOT NULL,
        resource TEXT NOT NULL,
        PRIMARY KEY (resource_type, id)
    );
    CREATE TABLE fhir_history (
        resource_type TEXT NOT NULL,
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        last_updated_ms INTEGER NOT NULL,
        deleted INTEGER NOT NULL,
        resource TEXT NOT NULL,
        PRIMARY KEY (resource_type, id, version)
    );
    CREATE TABLE fhir_index (
        resource_type TEXT NOT NULL,
        id TEXT NOT NULL,
        param TEXT NOT NULL,
        system TEXT NOT NULL,
        value TEXT NOT NULL,
        low TEXT NOT NULL,
        high TEXT NOT NULL
    );
    CREATE INDEX fhir_index_value ON fhir_index (resource_type, param, value, system);
    CREATE INDEX fhir_index_resource ON fhir_index (resource_type, id, param);",
    // 4: API clients added with `passerelle clients add` (see `clients`).
    crate::clients::SCHEMA,
    // 5: the networks of each message's sender, and of each patient.
    crate::journal::NETWORKS_SCHEMA,
    // 6: which messages owe their sender an application acknowledgement.
    crate::application_acks::SCHEMA,
    // 7: the outbox's undelivered rows, apart from its history.
    crate::OUTBOX_UNDELIVERED_INDEX,
    // 8: the audit trail.
    crate::audit::SCHEMA,
    // 9: where the audit trail starts once retention removed its oldest
    // records.
    crate::retention::ANCHOR_SCHEMA,
    // 10: how far each export of the audit trail has sent it.
    crate::audit::EXPORTS_SCHEMA,
    // 11: the DMP's business acknowledgement (ZAM^Z01) owed too.
    crate::application_acks::ZAM_SCHEMA,
    // 12: the last refusal's code and field, beside its text.
    crate::OUTBOX_REASON_SCHEMA,
    // 13: how far the journal's inbox has been absorbed.
    crate::inbox::ABSORBED_SCHEMA,
];

/// Read connections per database: WAL lets them read while the writer
/// writes, and each serves one read at a time.
pub const READ_CONNECTIONS: usize = 4;

/// Times [`Store::scrub`] waits out a busy database (each wait is the
/// connection's busy timeout, 5 s) before it gives up.
const SCRUB_TRIES: u32 = 6;

/// Whether SQLite refused for a lock another connection holds.
fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Virtual-machine steps between two looks at a read's deadline (a few
/// microseconds of work each time).
const DEADLINE_CHECK_STEPS: i32 = 10_000;

pub struct SqliteStore {
    path: PathBuf,
    /// Checkpoints the WAL beside the writer (see [`crate::checkpoint`]).
    _checkpointer: crate::checkpoint::Checkpointer,
    data_dir: PathBuf,
    writer: Mutex<Connection>,
    /// The journal's own connection, on the inbox file.
    inbox: Mutex<Connection>,
    readers: ReaderPool,
}

/// The read connections: a read takes an idle one, or waits for one.
struct ReaderPool {
    idle: Mutex<Vec<Connection>>,
    returned: Condvar,
}

/// A read connection, back in the pool when dropped.
struct PooledReader<'a> {
    pool: &'a ReaderPool,
    connection: Option<Connection>,
}

impl std::ops::Deref for PooledReader<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        // Present from creation until drop.
        self.connection.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl std::ops::DerefMut for PooledReader<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.connection.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for PooledReader<'_> {
    fn drop(&mut self) {
        if let (Some(connection), Ok(mut idle)) = (self.connection.take(), self.pool.idle.lock()) {
            idle.push(connection);
            self.pool.returned.notify_one();
        }
    }
}

impl ReaderPool {
    fn get(&self) -> Result<PooledReader<'_>, StorageError> {
        let mut idle = self.idle.lock().map_err(|_| StorageError::Poisoned)?;
        loop {
            if let Some(connection) = idle.pop() {
                return Ok(PooledReader {
                    pool: self,
                    connection: Some(connection),
                });
            }
            idle = self
                .returned
                .wait(idle)
                .map_err(|_| StorageError::Poisoned)?;
        }
    }
}

impl SqliteStore {
    /// Opens (making it when missing) the plain database of `data_dir`.
    pub fn open(data_dir: &Path) -> Result<SqliteStore, StorageError> {
        Self::open_with_key(data_dir, None)
    }

    /// Opens (making it when missing) the database of `data_dir`,
    /// encrypted with `key` when one is given: every connection is keyed
    /// before it reads anything.
    pub fn open_with_key(
        data_dir: &Path,
        key: Option<&StoreKey>,
    ) -> Result<SqliteStore, StorageError> {
        let path = data_dir.join(DATABASE_FILE);
        create_private(data_dir, &path).map_err(|source| StorageError::CreateDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let mut writer = open_connection(&path, key)?;
        // A batch of local deliveries changes thousands of pages: with
        // SQLite's default 2 MB cache they were written to the WAL in the
        // middle of the transaction to make room, and read back.
        writer.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        writer.pragma_update(
            None,
            "wal_autocheckpoint",
            crate::checkpoint::MAIN_WRITER_CHECKPOINT_PAGES,
        )?;
        migrate(&mut writer)?;
        // The inbox is made (and its ids seeded) once the main database
        // is migrated, and attached once it exists.
        let inbox = crate::inbox::open_writer(data_dir, &path, key)?;
        crate::inbox::attach(&writer, data_dir, key)?;
        let readers = (0..READ_CONNECTIONS)
            .map(|_| open_connection(&path, key))
            .collect::<Result<Vec<_>, _>>()?;
        let checkpointer = crate::checkpoint::Checkpointer::start(vec![
            open_connection(&path, key)?,
            open_connection(&data_dir.join(crate::inbox::INBOX_FILE), key)?,
        ])?;
        let store = SqliteStore {
            path,
            _checkpointer: checkpointer,
            data_dir: data_dir.to_path_buf(),
            writer: Mutex::new(writer),
            inbox: Mutex::new(inbox),
            readers: ReaderPool {
                idle: Mutex::new(readers),
                returned: Condvar::new(),
            },
        };
        // What a stop (or a crash) left in the inbox.
        store.settle()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn writer(&self) -> Result<MutexGuard<'_, Connection>, StorageError> {
        self.writer.lock().map_err(|_| StorageError::Poisoned)
    }

    pub(crate) fn inbox(&self) -> Result<MutexGuard<'_, Connection>, StorageError> {
        self.inbox.lock().map_err(|_| StorageError::Poisoned)
    }

    /// The WAL size, in pages, past which the writer checkpoints by itself.
    #[cfg(test)]
    pub(crate) fn wal_autocheckpoint(&self) -> Result<i64, StorageError> {
        Ok(self
            .writer()?
            .pragma_query_value(None, "wal_autocheckpoint", |row| row.get(0))?)
    }

    fn reader(&self) -> Result<PooledReader<'_>, StorageError> {
        self.readers.get()
    }
}

/// The migration a database made by this version is at.
pub fn schema_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// Makes the data directory (0700) and an empty database file (0600) when
/// they are missing: health data readable by nobody else. SQLite gives its
/// WAL and shared-memory files the database file's mode.
fn create_private(data_dir: &Path, database: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !data_dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)?;
    }
    create_private_file(database)
}

/// Makes an empty database file (0600) at `path` when it is missing.
pub(crate) fn create_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if !path.exists() {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            // Made meanwhile by another process: its mode is its own.
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// `VACUUM`s the database `connection` is on (its live rows only) and
/// empties its WAL ([`Store::scrub`]).
fn rewrite_and_empty_wal(connection: &Connection) -> Result<(), StorageError> {
    // A running gateway's writes hold the lock for milliseconds at a
    // time; VACUUM waits for it (busy timeout), a few times over.
    let mut tries = 0;
    loop {
        match connection.execute_batch("VACUUM") {
            Ok(()) => break,
            Err(error) if is_busy(&error) && tries < SCRUB_TRIES => tries += 1,
            Err(error) => return Err(error.into()),
        }
    }
    // Every frame moved into the database and the WAL cut to nothing; a
    // reader of a running gateway on an older snapshot holds the
    // checkpoint back (`busy`), so it is tried again until none does.
    let mut tries = 0;
    loop {
        let busy: i64 =
            connection.query_row("PRAGMA main.wal_checkpoint(TRUNCATE)", [], |row| row.get(0))?;
        if busy == 0 {
            return Ok(());
        }
        tries += 1;
        if tries > SCRUB_TRIES * 50 {
            return Err(StorageError::Inconsistent(
                "the WAL could not be emptied: readers kept it busy; try again".into(),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Begins a write transaction on the main database that first absorbs the
/// journal's inbox ([`crate::inbox::absorb`]): whatever it does next finds
/// every message the journal has acknowledged.
fn begin_write(
    connection: &mut Connection,
    behavior: TransactionBehavior,
) -> Result<rusqlite::Transaction<'_>, StorageError> {
    let transaction = connection.transaction_with_behavior(behavior)?;
    crate::inbox::absorb(&mut SqliteSql(&transaction))?;
    Ok(transaction)
}

/// Absorbs the journal's inbox of `data_dir` into its main database from
/// a process that does not run the store (a backup, a rekeying, a test
/// reading the files): nothing acknowledged is left behind in the inbox.
/// A data directory without an inbox (made before it) has nothing to do.
pub fn absorb_inbox(data_dir: &Path, key: Option<&StoreKey>) -> Result<(), StorageError> {
    if !data_dir.join(crate::inbox::INBOX_FILE).is_file() {
        return Ok(());
    }
    let mut connection = open_connection(&data_dir.join(DATABASE_FILE), key)?;
    crate::inbox::attach(&connection, data_dir, key)?;
    begin_write(&mut connection, TransactionBehavior::Immediate)?.commit()?;
    Ok(())
}

/// The writer's page cache (KiB; pages are allocated as they are used).
const WRITER_CACHE_KIB: i64 = 64 * 1024;

/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 256;

pub(crate) fn open_connection(
    path: &Path,
    key: Option<&StoreKey>,
) -> Result<Connection, StorageError> {
    let connection = Connection::open(path).map_err(|source| StorageError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    crate::encryption::unlock(&connection, path, key)?;
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    // Room for every statement the hot path runs (journal, mapping stage,
    // repository, deliveries, audit trail): rusqlite keeps 16 by default,
    // and a statement pushed out is parsed again at its next use.
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    // The checkpoint thread copies the WAL; the commit that passes this
    // many pages copies what it has not yet, and lets the WAL start over.
    connection.pragma_update(
        None,
        "wal_autocheckpoint",
        crate::checkpoint::WRITER_CHECKPOINT_PAGES,
    )?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    Ok(connection)
}

fn migrate(connection: &mut Connection) -> Result<(), StorageError> {
    apply_migrations(connection, MIGRATIONS)
}

/// Applies the `migrations` a database's `user_version` says it lacks, each
/// in its own transaction with the version it brings.
pub(crate) fn apply_migrations(
    connection: &mut Connection,
    migrations: &[&str],
) -> Result<(), StorageError> {
    let current: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    for (index, migration) in migrations.iter().enumerate().skip(current.max(0) as usize) {
        let transaction = connection.transaction()?;
        transaction.execute_batch(migration)?;
        transaction.pragma_update(None, "user_version", (index + 1) as i64)?;
        transaction.commit()?;
    }
    Ok(())
}

/// Outbox depth per target, every second (`sample_depths`): it reads the
/// undelivered rows only, through their partial index, so it costs the
/// same after ten messages or ten million.
const DEPTHS: &str = "SELECT target,
        sum(state = 'pending'), sum(state = 'in_flight'), sum(state = 'dead'),
        min(CASE WHEN state IN ('pending', 'in_flight') THEN created_at_ms END)
     FROM outbox WHERE state <> 'delivered' GROUP BY target ORDER BY target";

/// When the next row of a target falls due (a delivery worker's sleep).
const NEXT_DUE: &str = "SELECT min(o.next_attempt_at_ms) FROM outbox o
     WHERE o.target = ?1 AND o.state = 'pending'
       AND NOT EXISTS (
           SELECT 1 FROM outbox p
           WHERE p.target = o.target AND p.patient_key = o.patient_key
             AND p.journal_id < o.journal_id AND p.state IN ('pending', 'in_flight'))";

const DELIVERABLE: &str = "
    SELECT o.id FROM outbox o
    WHERE o.target = ?1 AND o.state IN ('pending', 'in_flight')
      AND ((o.state = 'pending' AND o.next_attempt_at_ms <= ?2)
           OR (o.state = 'in_flight' AND o.lease_until_ms < ?2))
      AND NOT EXISTS (
          SELECT 1 FROM outbox p
          WHERE p.target = o.target AND p.patient_key = o.patient_key
            AND p.journal_id < o.journal_id AND p.state IN ('pending', 'in_flight'))
    ORDER BY o.journal_id";

/// `execute` and `query_row` through the connection's statement cache: a
/// statement of the hot path (per message, per delivery) is parsed once
/// per connection, not once per call.
trait Cached {
    fn execute_cached(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize>;
    fn query_row_cached<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        row: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn execute_cached(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn query_row_cached<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        row: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.prepare_cached(sql)?.query_row(params, row)
    }
}

/// [`Sql`] on a SQLite connection or transaction.
struct SqliteSql<'a>(&'a Connection);

/// A parameter bound as it is: its text or bytes are not copied (a
/// Bundle is bound on every delivery and repository write).
impl rusqlite::ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::Borrowed(match self {
            SqlValue::Null => ValueRef::Null,
            SqlValue::Int(value) => ValueRef::Integer(*value),
            SqlValue::Text(value) => ValueRef::Text(value.as_bytes()),
            SqlValue::Bytes(value) => ValueRef::Blob(value),
        }))
    }
}

impl Sql for SqliteSql<'_> {
    fn execute(&mut self, statement: &str, params: &[SqlValue]) -> Result<u64, StorageError> {
        let mut statement = self.0.prepare_cached(&sqlite_placeholders(statement))?;
        Ok(statement.execute(params_from_iter(params.iter()))? as u64)
    }

    fn query(&mut self, statement: &str, params: &[SqlValue]) -> Result<Vec<SqlRow>, StorageError> {
        let mut statement = self.0.prepare_cached(&sqlite_placeholders(statement))?;
        let columns = statement.column_count();
        let mut rows = statement.query(params_from_iter(params.iter()))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut values = Vec::with_capacity(columns);
            for column in 0..columns {
                values.push(match row.get_ref(column)? {
                    ValueRef::Null => SqlValue::Null,
                    ValueRef::Integer(value) => SqlValue::Int(value),
                    ValueRef::Real(value) => SqlValue::Int(value as i64),
                    ValueRef::Text(text) => {
                        SqlValue::Text(String::from_utf8_lossy(text).into_owned())
                    }
                    ValueRef::Blob(bytes) => SqlValue::Bytes(bytes.to_vec()),
                });
            }
            out.push(values);
        }
        Ok(out)
    }
}

impl Store for SqliteStore {
    fn sql_write(&self, work: &mut WriteWork<'_>) -> Result<(), StorageError> {
        let mut connection = self.writer()?;
        // The write lock first (`BEGIN IMMEDIATE`): work that reads before
        // it writes (the repository's conditional writes, the audit
        // trail's next record) in a process beside a running gateway (the
        // command line) would otherwise fail at its first write whenever
        // the gateway committed since its read began ("database is
        // locked"), instead of waiting for the lock. In the gateway itself
        // this connection is the only writer.
        let transaction = begin_write(&mut connection, TransactionBehavior::Immediate)?;
        if work(&mut SqliteSql(&transaction))? {
            transaction.commit()?;
        }
        Ok(())
    }

    fn sql_erase(&self, work: &mut WriteWork<'_>) -> Result<(), StorageError> {
        let mut connection = self.writer()?;
        // Deleted cells and freed pages are overwritten with zeros while
        // it is on: the erased rows' bytes do not stay in the file's free
        // space. Only for this work: it costs writes elsewhere.
        connection.pragma_update(None, "secure_delete", "ON")?;
        let erased = (|| -> Result<(), StorageError> {
            let transaction = begin_write(&mut connection, TransactionBehavior::Immediate)?;
            if work(&mut SqliteSql(&transaction))? {
                transaction.commit()?;
            }
            Ok(())
        })();
        let restored = connection.pragma_update(None, "secure_delete", "OFF");
        erased?;
        restored?;
        Ok(())
    }

    fn scrub(&self) -> Result<Scrubbed, StorageError> {
        // What the main database absorbed leaves the inbox now: an erased
        // message's copy there must not wait for the next message.
        let mut inbox = self.inbox()?;
        crate::inbox::discard_absorbed(&mut inbox)?;
        let mut files = Vec::new();
        for (connection, path) in [
            (&*self.writer()?, self.path.clone()),
            (&*inbox, self.data_dir.join(crate::inbox::INBOX_FILE)),
        ] {
            rewrite_and_empty_wal(connection)?;
            let mut wal = path.clone().into_os_string();
            wal.push("-wal");
            files.extend([path, PathBuf::from(wal)]);
        }
        Ok(Scrubbed::Rewritten { files })
    }

    fn sql_read(
        &self,
        deadline: Option<Instant>,
        work: &mut ReadWork<'_>,
    ) -> Result<(), StorageError> {
        let mut connection = self.reader()?;
        // Set on every read (replacing the previous read's), so that no
        // earlier deadline outlives its read. SQLite calls it every few
        // thousand steps; `true` stops the statement (SQLITE_INTERRUPT).
        connection.progress_handler(
            DEADLINE_CHECK_STEPS,
            Some(move || deadline.is_some_and(|deadline| Instant::now() >= deadline)),
        )?;
        let result = (|| {
            // A read transaction: one snapshot for every statement of `work`.
            let transaction = connection.transaction()?;
            work(&mut SqliteSql(&transaction))?;
            transaction.finish()?;
            Ok(())
        })();
        match result {
            Err(_) if deadline.is_some_and(|deadline| Instant::now() >= deadline) => {
                Err(StorageError::DeadlinePassed)
            }
            result => result,
        }
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn check_writable(&self) -> Result<(), StorageError> {
        let connection = self.reader()?;
        connection.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")?;
        Ok(())
    }

    fn journal_commit_audited(
        &self,
        entries: &[JournalEntry],
        records: &[crate::audit::AuditRecord],
    ) -> Result<Vec<Stored>, StorageError> {
        crate::inbox::commit(&mut *self.inbox()?, entries, records)
    }

    fn settle(&self) -> Result<(), StorageError> {
        let mut connection = self.writer()?;
        begin_write(&mut connection, TransactionBehavior::Immediate)?.commit()?;
        Ok(())
    }

    fn claim_unmapped(
        &self,
        owner: &str,
        limit: usize,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Vec<UnmappedMessage>, StorageError> {
        let mut connection = self.writer()?;
        let transaction = begin_write(&mut connection, TransactionBehavior::Deferred)?;
        let busy: bool = transaction.query_row_cached(
            "SELECT EXISTS (SELECT 1 FROM journal
                WHERE state = 'mapping' AND lease_until_ms >= ?1 AND lease_owner <> ?2)",
            params![now_ms, owner],
            |row| row.get(0),
        )?;
        if busy {
            return Ok(Vec::new());
        }
        let claimed = {
            // The limit written as a number (see `claim_deliveries`).
            let mut claim = transaction.prepare_cached(&format!(
                "UPDATE journal SET state = 'mapping', lease_owner = ?1, lease_until_ms = ?2
                 WHERE id IN (SELECT id FROM journal
                     WHERE state = 'received' OR (state = 'mapping' AND (lease_until_ms < ?3 OR lease_owner = ?1))
                     ORDER BY id LIMIT {limit})
                 RETURNING id, transport, sending_application, sending_facility, message_type, raw"
            ))?;
            let rows = claim.query_map(params![owner, now_ms + lease_ms, now_ms], |row| {
                Ok(UnmappedMessage {
                    journal_id: row.get(0)?,
                    transport: row.get(1)?,
                    sending_application: row.get(2)?,
                    sending_facility: row.get(3)?,
                    message_type: row.get(4)?,
                    raw: row.get(5)?,
                })
            })?;
            let mut claimed = rows.collect::<Result<Vec<_>, _>>()?;
            claimed.sort_by_key(|m| m.journal_id);
            claimed
        };
        transaction.commit()?;
        Ok(claimed)
    }

    fn record_mappings(
        &self,
        outcomes: &[(i64, MappingOutcome)],
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let mut connection = self.writer()?;
        let transaction = begin_write(&mut connection, TransactionBehavior::Deferred)?;
        for (journal_id, outcome) in outcomes {
            let journal_id = *journal_id;
            let (state, error) = match outcome {
                MappingOutcome::Routed(deliveries) => {
                    let mut upsert = transaction.prepare_cached(
                    "INSERT INTO outbox (journal_id, route, target, patient_key, state, attempts,
                        next_attempt_at_ms, created_at_ms, bundle)
                     VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?5, ?6)
                     ON CONFLICT (journal_id, target) DO UPDATE SET
                        route = excluded.route, patient_key = excluded.patient_key,
                        state = 'pending', attempts = 0, next_attempt_at_ms = excluded.next_attempt_at_ms,
                        lease_owner = NULL, lease_until_ms = NULL, last_status = NULL,
                        last_error = NULL, last_error_code = NULL,
                        last_error_location = NULL, bundle = excluded.bundle
                     WHERE outbox.state <> 'in_flight'",
                )?;
                    for delivery in deliveries {
                        upsert.execute(params![
                            journal_id,
                            delivery.route,
                            delivery.target,
                            delivery.patient_key,
                            now_ms,
                            delivery.bundle,
                        ])?;
                    }
                    ("routed", None)
                }
                MappingOutcome::Failed { reason } => ("failed", Some(bounded_detail(reason))),
                MappingOutcome::Unrouted => ("unrouted", None),
            };
            transaction.execute_cached(
                "UPDATE journal SET state = ?2, mapping_error = ?3, mapped_at_ms = ?4,
                lease_owner = NULL, lease_until_ms = NULL
             WHERE id = ?1",
                params![journal_id, state, error, now_ms],
            )?;
        }
        transaction.commit()?;
        Ok(())
    }

    fn claim_deliveries(
        &self,
        target: &str,
        owner: &str,
        limit: usize,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Vec<Delivery>, StorageError> {
        let mut connection = self.writer()?;
        let transaction = begin_write(&mut connection, TransactionBehavior::Deferred)?;
        let claimed = {
            // The limit is written as a number, not bound: SQLite plans a
            // bound LIMIT with its value, so every binding would prepare
            // the statement again.
            let sql = format!(
                "UPDATE outbox SET state = 'in_flight', lease_owner = ?3, lease_until_ms = ?4,
                    attempts = attempts + 1
                 WHERE id IN ({DELIVERABLE} LIMIT {limit})
                 RETURNING id, journal_id, target, attempts, bundle,
                    (SELECT control_id FROM journal WHERE journal.id = outbox.journal_id),
                    (SELECT networks FROM journal WHERE journal.id = outbox.journal_id)"
            );
            let mut claim = transaction.prepare_cached(&sql)?;
            let rows =
                claim.query_map(params![target, now_ms, owner, now_ms + lease_ms], |row| {
                    Ok(Delivery {
                        outbox_id: row.get(0)?,
                        journal_id: row.get(1)?,
                        target: row.get(2)?,
                        attempt: row.get::<_, i64>(3)?.max(0) as u32,
                        bundle: row.get(4)?,
                        control_id: row.get::<_, Option<String>>(5)?.unwrap_or_default(),
                        networks: crate::journal::split_networks(
                            &row.get::<_, Option<String>>(6)?.unwrap_or_default(),
                        ),
                    })
                })?;
            let mut claimed = rows.collect::<Result<Vec<_>, _>>()?;
            claimed.sort_by_key(|d| d.journal_id);
            claimed
        };
        transaction.commit()?;
        Ok(claimed)
    }

    fn release_leases(&self, owner: &str) -> Result<u64, StorageError> {
        let mut connection = self.writer()?;
        let transaction = begin_write(&mut connection, TransactionBehavior::Deferred)?;
        let outbox = transaction.execute(
            "UPDATE outbox SET state = 'pending', lease_owner = NULL, lease_until_ms = NULL
             WHERE state = 'in_flight' AND lease_owner = ?1",
            params![owner],
        )?;
        transaction.execute(
            "UPDATE journal SET state = 'received', lease_owner = NULL, lease_until_ms = NULL
             WHERE state = 'mapping' AND lease_owner = ?1",
            params![owner],
        )?;
        transaction.commit()?;
        Ok(outbox as u64)
    }

    fn next_due(&self, target: &str) -> Result<Option<i64>, StorageError> {
        let connection = self.reader()?;
        Ok(connection.query_row_cached(NEXT_DUE, params![target], |row| row.get(0))?)
    }

    fn list_messages(&self, filter: &MessageFilter) -> Result<Vec<MessageSummary>, StorageError> {
        self.settle()?;
        let connection = self.reader()?;
        list_messages(&connection, filter)
    }

    fn message(&self, journal_id: i64) -> Result<Option<MessageJourney>, StorageError> {
        self.settle()?;
        let connection = self.reader()?;
        let header = connection
            .query_row(
                "SELECT sending_application, sending_facility, sha256, mapping_error, mapped_at_ms
                 FROM journal WHERE id = ?1",
                params![journal_id],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, Option<String>>(3)?,
                        row.get::<_, Option<i64>>(4)?,
                    ))
                },
            )
            .optional()?;
        let Some((sending_application, sending_facility, sha256, mapping_error, mapped_at)) =
            header
        else {
            return Ok(None);
        };
        let filter = MessageFilter {
            before_id: Some(journal_id + 1),
            limit: 1,
            ..MessageFilter::default()
        };
        let Some(summary) = list_messages(&connection, &filter)?.into_iter().next() else {
            return Ok(None);
        };
        let mut statement = connection.prepare(
            "SELECT a.outbox_id, o.target, a.attempt, a.started_at_ms, a.latency_ms, a.status,
                a.result, a.instance, a.detail
             FROM delivery_attempts a JOIN outbox o ON o.id = a.outbox_id
             WHERE o.journal_id = ?1 ORDER BY a.id",
        )?;
        let attempts = statement
            .query_map(params![journal_id], |row| {
                Ok(AttemptRecord {
                    outbox_id: row.get(0)?,
                    target: row.get(1)?,
                    attempt: row.get(2)?,
                    at: instant_from_ms(row.get(3)?),
                    latency_ms: row.get(4)?,
                    status: row.get(5)?,
                    result: row.get(6)?,
                    instance: row.get(7)?,
                    detail: row.get(8)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(MessageJourney {
            summary,
            sending_application,
            sending_facility,
            sha256,
            mapping_error,
            mapped_at: mapped_at.map(instant_from_ms),
            attempts,
        }))
    }

    fn replay(&self, journal_ids: &[i64]) -> Result<u64, StorageError> {
        let mut connection = self.writer()?;
        let transaction = begin_write(&mut connection, TransactionBehavior::Deferred)?;
        let mut count = 0;
        {
            let mut update = transaction.prepare_cached(
                "UPDATE journal SET state = 'received', mapping_error = NULL,
                    lease_owner = NULL, lease_until_ms = NULL
                 WHERE id = ?1 AND state <> 'mapping'",
            )?;
            for id in journal_ids {
                count += update.execute(params![id])? as u64;
            }
        }
        transaction.commit()?;
        Ok(count)
    }

    fn retry_dead(
        &self,
        target: Option<&str>,
        outbox_ids: &[i64],
        now_ms: i64,
    ) -> Result<u64, StorageError> {
        let mut connection = self.writer()?;
        let transaction = begin_write(&mut connection, TransactionBehavior::Deferred)?;
        let count = if outbox_ids.is_empty() {
            transaction.execute(
                "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at_ms = ?2
                 WHERE state = 'dead' AND (?1 IS NULL OR target = ?1)",
                params![target, now_ms],
            )? as u64
        } else {
            let mut update = transaction.prepare_cached(
                "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at_ms = ?3
                 WHERE id = ?1 AND state = 'dead' AND (?2 IS NULL OR target = ?2)",
            )?;
            let mut count = 0;
            for id in outbox_ids {
                count += update.execute(params![id, target, now_ms])? as u64;
            }
            count
        };
        transaction.commit()?;
        Ok(count)
    }

    fn purge(&self, before: &str, include_dead: bool) -> Result<u64, StorageError> {
        let mut connection = self.writer()?;
        let transaction = begin_write(&mut connection, TransactionBehavior::Deferred)?;
        let over = if include_dead {
            "('delivered', 'dead')"
        } else {
            "('delivered')"
        };
        let sql = format!(
            "DELETE FROM journal WHERE received_at < ?1
               AND state IN ('routed', 'unrouted')
               AND NOT EXISTS (SELECT 1 FROM outbox o
                   WHERE o.journal_id = journal.id AND o.state NOT IN {over})"
        );
        // The local target's bundles are delivered data, not message
        // history: a purge leaves them.
        let count = transaction.execute(&sql, params![before])? as u64;
        transaction.commit()?;
        Ok(count)
    }

    fn depths(&self, now_ms: i64) -> Result<Vec<TargetDepth>, StorageError> {
        let connection = self.reader()?;
        let mut statement = connection.prepare_cached(DEPTHS)?;
        let rows = statement.query_map([], |row| {
            let oldest: Option<i64> = row.get(4)?;
            Ok(TargetDepth {
                target: row.get(0)?,
                pending: row.get(1)?,
                in_flight: row.get(2)?,
                dead: row.get(3)?,
                oldest_pending_age_ms: oldest.map_or(0, |t| (now_ms - t).max(0)),
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn local_bundles(&self, limit: usize) -> Result<Vec<String>, StorageError> {
        let connection = self.reader()?;
        let mut statement =
            connection.prepare("SELECT bundle FROM local_bundles ORDER BY id LIMIT ?1")?;
        let rows = statement.query_map(params![limit as i64], |row| row.get(0))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

/// The list query shared by `list_messages` and `message`: journal rows
/// matching the filter, newest first, each with its deliveries.
fn list_messages(
    connection: &Connection,
    filter: &MessageFilter,
) -> Result<Vec<MessageSummary>, StorageError> {
    let mut conditions = Vec::new();
    let mut values: Vec<rusqlite::types::Value> = Vec::new();
    if let Some(state) = &filter.state {
        if super::MessageState::parse(state).is_some() {
            values.push(state.clone().into());
            conditions.push(format!("j.state = ?{}", values.len()));
        } else {
            values.push(state.clone().into());
            let n = values.len();
            let target = if let Some(target) = &filter.target {
                values.push(target.clone().into());
                format!(" AND o.target = ?{}", values.len())
            } else {
                String::new()
            };
            conditions.push(format!(
                "EXISTS (SELECT 1 FROM outbox o WHERE o.journal_id = j.id AND o.state = ?{n}{target})"
            ));
        }
    }
    if let (Some(target), false) = (
        &filter.target,
        filter
            .state
            .as_deref()
            .is_some_and(|s| super::MessageState::parse(s).is_none()),
    ) {
        values.push(target.clone().into());
        conditions.push(format!(
            "EXISTS (SELECT 1 FROM outbox o WHERE o.journal_id = j.id AND o.target = ?{})",
            values.len()
        ));
    }
    if let Some(since) = &filter.since {
        values.push(since.clone().into());
        conditions.push(format!("j.received_at >= ?{}", values.len()));
    }
    if let Some(until) = &filter.until {
        values.push(until.clone().into());
        conditions.push(format!("j.received_at < ?{}", values.len()));
    }
    if let Some(before) = filter.before_id {
        values.push(before.into());
        conditions.push(format!("j.id < ?{}", values.len()));
    }
    let condition = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    values.push((filter.limit.clamp(1, 1000) as i64).into());
    let sql = format!(
        "SELECT j.id, j.received_at, j.transport, j.control_id, j.message_type, j.state
         FROM journal j {condition} ORDER BY j.id DESC LIMIT ?{}",
        values.len()
    );
    let mut statement = connection.prepare(&sql)?;
    let mut messages = statement
        .query_map(params_from_iter(values.iter()), |row| {
            Ok(MessageSummary {
                id: row.get(0)?,
                received_at: row.get(1)?,
                transport: row.get(2)?,
                control_id: row.get(3)?,
                message_type: row.get(4)?,
                state: row.get(5)?,
                deliveries: Vec::new(),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut deliveries = connection.prepare_cached(
        "SELECT id, route, target, state, attempts, next_attempt_at_ms, last_status, last_error
         FROM outbox WHERE journal_id = ?1 ORDER BY target",
    )?;
    for message in &mut messages {
        message.deliveries = deliveries
            .query_map(params![message.id], |row| {
                let state: String = row.get(3)?;
                let next: i64 = row.get(5)?;
                Ok(DeliverySummary {
                    outbox_id: row.get(0)?,
                    route: row.get(1)?,
                    target: row.get(2)?,
                    next_attempt_at: (state == "pending").then(|| instant_from_ms(next)),
                    state,
                    attempts: row.get(4)?,
                    last_status: row.get(6)?,
                    last_error: row.get(7)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
    }
    Ok(messages)
}

#[cfg(test)]
mod plan_tests {
    use super::*;

    /// SQLite's plan for `statement`, one line per step.
    fn plan(connection: &Connection, statement: &str) -> String {
        let mut explain = connection
            .prepare(&format!("EXPLAIN QUERY PLAN {statement}"))
            .unwrap();
        let count = explain.parameter_count();
        let params: Vec<rusqlite::types::Value> = (0..count)
            .map(|_| rusqlite::types::Value::Integer(0))
            .collect();
        explain
            .query_map(params_from_iter(params), |row| row.get::<_, String>(3))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
            .join("\n")
    }

    /// The queries a gateway runs on a timer, idle or not (the depth
    /// sample, a delivery worker's next wake-up and claim, the mapping
    /// stage's claim, the owed application ACKs) each go through an
    /// index that bounds them to rows still to do: none scans the
    /// journal or the outbox, whose delivered history only grows.
    #[test]
    fn periodic_queries_never_scan_the_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let connection = store.reader().unwrap();
        let owed = crate::application_acks::OWED.replace('$', "?");
        let claim_unmapped = "SELECT id FROM journal
            WHERE state = 'received' OR (state = 'mapping' AND (lease_until_ms < ?3 OR lease_owner = ?1))
            ORDER BY id LIMIT ?4";
        // Each with the index that must bound it: the rows still to do.
        for (name, statement, index) in [
            ("depths", DEPTHS, "outbox_undelivered"),
            ("next_due", NEXT_DUE, "outbox_ready (target=? AND state=?)"),
            ("next_due's order check", NEXT_DUE, "outbox_patient_open"),
            (
                "deliverable",
                DELIVERABLE,
                "outbox_ready (target=? AND state=?)",
            ),
            (
                "deliverable's order check",
                DELIVERABLE,
                "outbox_patient_open",
            ),
            ("claim_unmapped", claim_unmapped, "journal_state (state=?)"),
            (
                "owed application ACKs",
                owed.as_str(),
                "journal_application_ack_owed",
            ),
        ] {
            let plan = plan(&connection, statement);
            assert!(plan.contains(index), "{name} does not use {index}:\n{plan}");
            // A scan is bounded only when it walks a partial index of the
            // rows still to do.
            let bounded = |step: &str| {
                !step.starts_with("SCAN ")
                    || step.contains("USING COVERING INDEX outbox_undelivered")
                    || step.contains("USING INDEX outbox_undelivered")
                    || step.contains("journal_application_ack_owed")
            };
            assert!(plan.lines().all(bounded), "{name} scans a table:\n{plan}");
            println!("{name}:\n{plan}\n");
        }
    }
}
