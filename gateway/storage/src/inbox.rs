//! The journal's own SQLite file, `journal.db` beside `passerelle.db`: where
//! an accepted message (and its audit record) is made durable before its
//! ACK leaves, on a write path that nothing else takes.
//!
//! Why a file of its own: with one database file, the journal's group
//! commit waited for the one SQLite writer that the mapping stage and the
//! repository's transactions hold, and its fsync flushed every page they
//! had written meanwhile (on embedded defaults the ACK rate was a tenth of
//! the journal alone's; docs/performance.md). Each file has its own write
//! lock and WAL: a commit here waits only for other journal commits.
//!
//! The inbox is a queue in front of the main database's `journal` table,
//! which the rest of the store reads and writes as before. Every write
//! transaction on the main database first *absorbs* the inbox
//! ([`absorb`]): it copies the messages and audit records past its
//! watermark (the `journal_inbox_absorbed` row), in id order, and moves
//! the watermark, all in that one transaction, so that a row is copied
//! exactly once whatever crashes when. The journal writer deletes what the
//! watermark covers at its next commit. Each side only *reads* the other's
//! file, through a read-only attachment: neither ever waits for the
//! other's lock.
//!
//! Ids: the inbox allocates the journal's ids (`AUTOINCREMENT`, seeded at
//! open past everything the main journal holds), so they stay unique and
//! grow in commit order; commits are serialised by the file's write lock,
//! so every snapshot of the inbox holds its ids past the watermark without
//! a gap, and a copy up to the largest id it sees misses none.
//!
//! A retransmission is recognised in either place: the writer looks in the
//! main journal, then in the inbox (under the inbox's write lock, which a
//! row leaves only once the main journal holds it).

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::audit::AuditRecord;
use crate::encryption::StoreKey;
use crate::sql::{Sql, SqlValue};
use crate::{JournalEntry, StorageError, Stored};

/// File name of the journal's inbox inside the data directory.
pub const INBOX_FILE: &str = "journal.db";

/// The alias of the inbox on connections to the main database.
pub(crate) const INBOX_ALIAS: &str = "inbox";

/// The alias of the main database on the inbox's writer connection.
const STORE_ALIAS: &str = "store";

/// The inbox's own schema versions (its `user_version`).
const MIGRATIONS: &[&str] = &[
    // 1: messages and audit records not yet in the main database. The
    // message columns are the main journal's own (the absorb copies them
    // one for one): a change to one is a change to both.
    "CREATE TABLE inbox_messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
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
        raw BLOB NOT NULL,
        networks TEXT NOT NULL,
        application_ack TEXT NOT NULL
    );
    CREATE UNIQUE INDEX inbox_retransmission
        ON inbox_messages (sending_application, sending_facility, control_id, sha256);
    CREATE TABLE inbox_audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        recorded_ms INTEGER NOT NULL,
        patients TEXT NOT NULL,
        event TEXT NOT NULL
    );",
];

/// The main database's side, the same DDL on both backends (PostgreSQL
/// has no inbox: its row stays at its first value): how far the main
/// journal and audit trail have absorbed the inbox. Starts past every
/// message a database made before the inbox holds.
pub const ABSORBED_SCHEMA: &str = "CREATE TABLE journal_inbox_absorbed (
        journal_id BIGINT NOT NULL,
        audit_id BIGINT NOT NULL
    );
    INSERT INTO journal_inbox_absorbed (journal_id, audit_id)
        SELECT coalesce(max(id), 0), 0 FROM journal;";

/// `path` as an SQLite URI opened read-only: an attachment through which
/// nothing can be written, and on which `BEGIN IMMEDIATE` takes no lock.
fn read_only_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for byte in path.as_os_str().as_encoded_bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'.' | b'_' | b'~' => {
                uri.push(char::from(*byte))
            }
            other => uri.push_str(&format!("%{other:02X}")),
        }
    }
    uri.push_str("?mode=ro");
    uri
}

/// Attaches the database at `path` to `connection` as `alias`, read-only,
/// under `key` (or in clear).
fn attach_read_only(
    connection: &Connection,
    path: &Path,
    alias: &str,
    key: Option<&StoreKey>,
) -> Result<(), StorageError> {
    let key = key.map_or_else(|| "''".to_string(), StoreKey::literal);
    connection.execute(
        &format!("ATTACH DATABASE ?1 AS {alias} KEY {key}"),
        [read_only_uri(path)],
    )?;
    Ok(())
}

/// Attaches the inbox of `data_dir` to a connection on the main database
/// (after [`open_writer`] made it).
pub(crate) fn attach(
    connection: &Connection,
    data_dir: &Path,
    key: Option<&StoreKey>,
) -> Result<(), StorageError> {
    attach_read_only(connection, &data_dir.join(INBOX_FILE), INBOX_ALIAS, key)
}

/// Opens the inbox's writer connection (the file made, 0600, and migrated
/// when missing) with the main database at `database` attached read-only,
/// and seeds its ids past every message the main journal holds. The main
/// database must be migrated first.
pub(crate) fn open_writer(
    data_dir: &Path,
    database: &Path,
    key: Option<&StoreKey>,
) -> Result<Connection, StorageError> {
    let path = data_dir.join(INBOX_FILE);
    crate::sqlite::create_private_file(&path).map_err(|source| StorageError::File {
        path: path.clone(),
        source,
    })?;
    let mut connection = crate::sqlite::open_connection(&path, key)?;
    crate::sqlite::apply_migrations(&mut connection, MIGRATIONS)?;
    attach_read_only(&connection, database, STORE_ALIAS, key)?;
    seed_ids(&mut connection)?;
    Ok(connection)
}

/// Makes the inbox's next ids larger than any the main journal has given
/// (a database made before the inbox, or restored from a backup, comes
/// with ids and no inbox).
fn seed_ids(connection: &mut Connection) -> Result<(), StorageError> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let floor: i64 = transaction.query_row(
        "SELECT max((SELECT journal_id FROM store.journal_inbox_absorbed),
                    coalesce((SELECT max(id) FROM store.journal), 0))",
        [],
        |row| row.get(0),
    )?;
    let audit_floor: i64 = transaction.query_row(
        "SELECT audit_id FROM store.journal_inbox_absorbed",
        [],
        |row| row.get(0),
    )?;
    for (table, floor) in [("inbox_messages", floor), ("inbox_audit", audit_floor)] {
        let seq: Option<i64> = transaction
            .query_row(
                "SELECT seq FROM main.sqlite_sequence WHERE name = ?1",
                [table],
                |row| row.get(0),
            )
            .optional()?;
        match seq {
            Some(seq) if seq >= floor => {}
            Some(_) => {
                transaction.execute(
                    "UPDATE main.sqlite_sequence SET seq = ?2 WHERE name = ?1",
                    params![table, floor],
                )?;
            }
            None => {
                transaction.execute(
                    "INSERT INTO main.sqlite_sequence (name, seq) VALUES (?1, ?2)",
                    params![table, floor],
                )?;
            }
        }
    }
    transaction.commit()?;
    Ok(())
}

/// Commits `entries` and `records` to the inbox in one transaction (the
/// journal's group commit), after deleting what the main database has
/// absorbed. A retransmission finds its earlier copy in the main journal
/// or in the inbox.
pub(crate) fn commit(
    connection: &mut Connection,
    entries: &[JournalEntry],
    records: &[AuditRecord],
) -> Result<Vec<Stored>, StorageError> {
    // The inbox's lock only: the main database is attached read-only.
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (absorbed_messages, absorbed_records): (i64, i64) = transaction.query_row(
        "SELECT journal_id, audit_id FROM store.journal_inbox_absorbed",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    transaction
        .prepare_cached("DELETE FROM inbox_messages WHERE id <= ?1")?
        .execute([absorbed_messages])?;
    transaction
        .prepare_cached("DELETE FROM inbox_audit WHERE id <= ?1")?
        .execute([absorbed_records])?;
    let mut results = Vec::with_capacity(entries.len());
    {
        let mut absorbed = transaction.prepare_cached(
            "SELECT id, ack_code FROM store.journal
             WHERE sending_application = ?1 AND sending_facility = ?2 AND control_id = ?3
               AND sha256 = ?4",
        )?;
        let mut insert = transaction.prepare_cached(
            "INSERT INTO inbox_messages (received_at, transport, sending_application,
                sending_facility, control_id, message_type, version, charset, sha256, ack_code,
                raw, networks, application_ack)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?;
        let mut waiting = transaction.prepare_cached(
            "SELECT id, ack_code FROM inbox_messages
             WHERE sending_application = ?1 AND sending_facility = ?2 AND control_id = ?3
               AND sha256 = ?4",
        )?;
        for entry in entries {
            let key = params![
                entry.sending_application,
                entry.sending_facility,
                entry.control_id,
                entry.sha256
            ];
            // In the main journal, then still waiting here (an id is
            // taken only by a row that is kept: AUTOINCREMENT would spend
            // one on an insert that finds a conflict).
            let earlier: Option<(i64, String)> = match absorbed
                .query_row(key, |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?
            {
                Some(found) => Some(found),
                None => waiting
                    .query_row(key, |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()?,
            };
            if let Some((id, ack_code)) = earlier {
                results.push(Stored::Duplicate { id, ack_code });
                continue;
            }
            insert.execute(params![
                entry.received_at,
                entry.transport,
                entry.sending_application,
                entry.sending_facility,
                entry.control_id,
                entry.message_type,
                entry.version,
                entry.charset,
                entry.sha256,
                entry.ack_code,
                entry.raw,
                crate::journal::join_networks(&entry.networks),
                entry.application_ack,
            ])?;
            results.push(Stored::New {
                id: transaction.last_insert_rowid(),
            });
        }
        let mut record = transaction.prepare_cached(
            "INSERT INTO inbox_audit (recorded_ms, patients, event) VALUES (?1, ?2, ?3)",
        )?;
        for one in records {
            record.execute(params![one.recorded_ms, one.patients.join(" "), one.event])?;
        }
    }
    transaction.commit()?;
    Ok(results)
}

/// Deletes what the main database has absorbed (an erasure's scrub: the
/// erased messages' copies must not wait for the next message to go).
pub(crate) fn discard_absorbed(connection: &mut Connection) -> Result<(), StorageError> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    transaction.execute(
        "DELETE FROM inbox_messages
         WHERE id <= (SELECT journal_id FROM store.journal_inbox_absorbed)",
        [],
    )?;
    transaction.execute(
        "DELETE FROM inbox_audit WHERE id <= (SELECT audit_id FROM store.journal_inbox_absorbed)",
        [],
    )?;
    transaction.commit()?;
    Ok(())
}

/// Copies into the main database, inside the caller's write transaction on
/// it, the messages and audit records the inbox holds past the watermark,
/// and moves the watermark. Costs two index lookups when there is nothing
/// to copy.
pub(crate) fn absorb(sql: &mut dyn Sql) -> Result<(), StorageError> {
    let watermark = sql.query(
        "SELECT journal_id, audit_id,
            (SELECT max(id) FROM inbox.inbox_messages),
            (SELECT max(id) FROM inbox.inbox_audit)
         FROM journal_inbox_absorbed",
        &[],
    )?;
    let Some([absorbed_messages, absorbed_records, last_message, last_record]) = watermark
        .into_iter()
        .next()
        .and_then(|row| <[SqlValue; 4]>::try_from(row).ok())
    else {
        return Err(StorageError::Inconsistent(
            "journal_inbox_absorbed holds no row".into(),
        ));
    };
    let absorbed_messages = absorbed_messages.as_i64().unwrap_or(0);
    let absorbed_records = absorbed_records.as_i64().unwrap_or(0);
    let last_message = last_message.as_i64().unwrap_or(0).max(absorbed_messages);
    let last_record = last_record.as_i64().unwrap_or(0).max(absorbed_records);
    if last_message == absorbed_messages && last_record == absorbed_records {
        return Ok(());
    }
    if last_message > absorbed_messages {
        // A row already there (impossible unless the main journal was
        // written by hand) is left as it is rather than stopping every
        // write of the store.
        sql.execute(
            "INSERT INTO journal (id, received_at, transport, sending_application,
                sending_facility, control_id, message_type, version, charset, sha256, ack_code,
                raw, networks, application_ack)
             SELECT id, received_at, transport, sending_application, sending_facility,
                control_id, message_type, version, charset, sha256, ack_code, raw, networks,
                application_ack
             FROM inbox.inbox_messages WHERE id > $1 AND id <= $2 ORDER BY id
             ON CONFLICT DO NOTHING",
            &[
                SqlValue::Int(absorbed_messages),
                SqlValue::Int(last_message),
            ],
        )?;
    }
    if last_record > absorbed_records {
        let rows = sql.query(
            "SELECT recorded_ms, patients, event FROM inbox.inbox_audit
             WHERE id > $1 AND id <= $2 ORDER BY id",
            &[SqlValue::Int(absorbed_records), SqlValue::Int(last_record)],
        )?;
        let records = rows
            .into_iter()
            .filter_map(|row| {
                let mut row = row.into_iter();
                let recorded_ms = row.next()?.as_i64()?;
                let patients = row.next()?.into_string()?;
                let event = row.next()?.into_string()?;
                Some(AuditRecord {
                    recorded_ms,
                    patients: patients.split_whitespace().map(str::to_string).collect(),
                    event,
                })
            })
            .collect::<Vec<_>>();
        crate::audit::append_in(sql, &records)?;
    }
    sql.execute(
        "UPDATE journal_inbox_absorbed SET journal_id = $1, audit_id = $2",
        &[SqlValue::Int(last_message), SqlValue::Int(last_record)],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::sqlite::SqliteStore;
    use crate::suite::entry;
    use crate::Store;

    fn record(n: i64) -> AuditRecord {
        AuditRecord {
            recorded_ms: n,
            patients: vec![format!("Patient/p{n}")],
            event: format!("{{\"n\":{n}}}"),
        }
    }

    fn main_journal_ids(store: &SqliteStore) -> Vec<i64> {
        let mut ids = Vec::new();
        store
            .sql_read(None, &mut |sql| {
                ids = sql
                    .query("SELECT id FROM journal ORDER BY id", &[])?
                    .into_iter()
                    .filter_map(|row| row.into_iter().next()?.as_i64())
                    .collect();
                Ok(())
            })
            .unwrap();
        ids
    }

    /// The point of the inbox: a journal commit (an ACK) does not wait for
    /// a transaction that holds the main database's writer (a repository
    /// write, the mapping stage), and what it committed reaches the main
    /// database with the next write.
    #[test]
    fn the_journal_commits_while_the_main_writer_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(SqliteStore::open(dir.path()).unwrap());
        let (held, holding) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let writer = {
            let store = store.clone();
            let released = std::sync::Mutex::new(released);
            std::thread::spawn(move || {
                store
                    .sql_write(&mut |sql| {
                        sql.execute(
                            "INSERT INTO local_bundles (outbox_id, journal_id, stored_at_ms, bundle)
                             VALUES (1, 1, 1, '{}')",
                            &[],
                        )?;
                        held.send(()).unwrap();
                        released.lock().unwrap().recv().unwrap();
                        Ok(true)
                    })
                    .unwrap();
            })
        };
        holding.recv().unwrap();
        let started = Instant::now();
        let stored = store
            .journal_commit_audited(&[entry("A1", "a1"), entry("A2", "a2")], &[record(1)])
            .unwrap();
        let waited = started.elapsed();
        release.send(()).unwrap();
        writer.join().unwrap();
        // SQLite's busy timeout is 5 s: a commit that had waited for the
        // lock would have waited until the release.
        assert!(
            waited < Duration::from_secs(2),
            "the journal waited {waited:?} for the main writer"
        );
        assert_eq!(stored, vec![Stored::New { id: 1 }, Stored::New { id: 2 }]);
        assert!(main_journal_ids(&store).is_empty(), "not yet absorbed");
        store.settle().unwrap();
        assert_eq!(main_journal_ids(&store), vec![1, 2]);
        assert_eq!(
            crate::audit::records_after(store.as_ref(), 0, 10).unwrap(),
            vec![(1, "{\"n\":1}".to_string())]
        );
        assert_eq!(
            crate::audit::verify(store.as_ref()).unwrap(),
            crate::audit::Verification::Intact { records: 1 }
        );
    }

    /// A retransmission is recognised while its original waits in the
    /// inbox and once it is in the main journal; the absorbed copies leave
    /// the inbox at the next commit; ids keep growing across a reopening.
    #[test]
    fn retransmissions_and_ids_across_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let first = store.journal_commit(&[entry("R1", "r1")]).unwrap();
        assert_eq!(first, vec![Stored::New { id: 1 }]);
        let waiting = store.journal_commit(&[entry("R1", "r1")]).unwrap();
        assert!(matches!(waiting[..], [Stored::Duplicate { id: 1, .. }]));
        store.settle().unwrap();
        let absorbed = store
            .journal_commit(&[entry("R1", "r1"), entry("R2", "r2")])
            .unwrap();
        assert!(
            matches!(
                absorbed[..],
                [Stored::Duplicate { id: 1, .. }, Stored::New { id: 2 }]
            ),
            "{absorbed:?}"
        );
        let inbox_rows = |store: &SqliteStore| -> i64 {
            store
                .inbox()
                .unwrap()
                .query_row("SELECT count(*) FROM inbox_messages", [], |row| row.get(0))
                .unwrap()
        };
        assert_eq!(inbox_rows(&store), 1, "the absorbed row left at the commit");
        drop(store);
        // Reopened: what the inbox held is absorbed at the opening.
        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(main_journal_ids(&store), vec![1, 2]);
        let next = store.journal_commit(&[entry("R3", "r3")]).unwrap();
        assert_eq!(next, vec![Stored::New { id: 3 }]);
        assert_eq!(inbox_rows(&store), 1);
    }

    /// A data directory whose inbox is gone (restored from a backup, or
    /// rekeyed) gets ids past those its journal already gave, not ids
    /// from 1 again.
    #[test]
    fn a_new_inbox_starts_past_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store
            .journal_commit(&[entry("S1", "s1"), entry("S2", "s2")])
            .unwrap();
        store.settle().unwrap();
        drop(store);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(dir.path().join(format!("{INBOX_FILE}{suffix}")));
        }
        let store = SqliteStore::open(dir.path()).unwrap();
        let next = store.journal_commit(&[entry("S3", "s3")]).unwrap();
        assert_eq!(next, vec![Stored::New { id: 3 }]);
        // And a purge of the newest message does not let its id (or its
        // inbox copy) come back.
        store.settle().unwrap();
        store
            .sql_write(&mut |sql| {
                sql.execute("DELETE FROM journal WHERE id = 3", &[])?;
                Ok(true)
            })
            .unwrap();
        let after = store.journal_commit(&[entry("S4", "s4")]).unwrap();
        assert_eq!(after, vec![Stored::New { id: 4 }]);
        store.settle().unwrap();
        assert_eq!(main_journal_ids(&store), vec![1, 2, 4]);
    }

    /// A path with the characters an SQLite URI gives a meaning to.
    #[test]
    fn read_only_uris_escape_the_path() {
        assert_eq!(
            read_only_uri(Path::new("/data/a b?c#d%e/journal.db")),
            "file:/data/a%20b%3Fc%23d%25e/journal.db?mode=ro"
        );
    }
}
