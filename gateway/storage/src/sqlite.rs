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
use rusqlite::{params, params_from_iter, Connection, TransactionBehavior};

use super::sql::{sqlite_placeholders, ReadWork, Sql, SqlRow, SqlValue, WriteWork};

use super::{Delivery, Scrubbed, StorageError, Store, Stored, UnmappedMessage, DATABASE_FILE};
use crate::encryption::StoreKey;
use crate::JournalEntry;

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
    crate::schema::MIGRATIONS.len() as i64
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
    let migrations: Vec<String> = crate::schema::MIGRATIONS
        .iter()
        .map(|migration| crate::schema::Dialect::Sqlite.ddl(migration))
        .collect();
    apply_migrations(connection, &migrations)
}

/// Applies the `migrations` a database's `user_version` says it lacks, each
/// in its own transaction with the version it brings.
pub(crate) fn apply_migrations(
    connection: &mut Connection,
    migrations: &[impl AsRef<str>],
) -> Result<(), StorageError> {
    let current: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    for (index, migration) in migrations.iter().enumerate().skip(current.max(0) as usize) {
        let transaction = connection.transaction()?;
        transaction.execute_batch(migration.as_ref())?;
        transaction.pragma_update(None, "user_version", (index + 1) as i64)?;
        transaction.commit()?;
    }
    Ok(())
}

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

/// `query_row` through the connection's statement cache: a statement of
/// the hot path (per message, per delivery) is parsed once per connection,
/// not once per call.
trait Cached {
    fn query_row_cached<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        row: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T>;
}

impl Cached for Connection {
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
        let owed = sqlite_placeholders(crate::application_acks::OWED);
        let next_due = sqlite_placeholders(crate::outbox::NEXT_DUE);
        let claim_unmapped = "SELECT id FROM journal
            WHERE state = 'received' OR (state = 'mapping' AND (lease_until_ms < ?3 OR lease_owner = ?1))
            ORDER BY id LIMIT ?4";
        // Each with the index that must bound it: the rows still to do.
        for (name, statement, index) in [
            ("depths", crate::outbox::DEPTHS, "outbox_undelivered"),
            (
                "next_due",
                next_due.as_str(),
                "outbox_ready (target=? AND state=?)",
            ),
            (
                "next_due's order check",
                next_due.as_str(),
                "outbox_patient_open",
            ),
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
