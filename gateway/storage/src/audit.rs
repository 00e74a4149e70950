//! The audit trail: one FHIR AuditEvent per access (IHE BALP), appended
//! and never changed. Each record's hash covers the previous record's
//! hash and its own content, so that changing, removing or reordering a
//! record breaks the chain from that record on, and [`verify`] names the
//! first record that no longer fits. Appends are serialised (SQLite's one
//! writer; on PostgreSQL a transaction advisory lock of the trail's own,
//! [`AUDIT_LOCK`], which [`append_in`] takes), so the chain has one order.
//! Written once on the [`Sql`](crate::sql::Sql) surface for both backends.
//!
//! Records are written in the transaction of what they record wherever
//! there is one: the journal's group commit holds the records of the
//! messages it stores (and of those refused, batched with them), a
//! delivery attempt's transaction its record, an erasure's its own, a
//! repository write through the HTTP API its record; the HTTP API's other
//! records are appended before each answer leaves.

use sha2::{Digest, Sha256};

use crate::sql::{Sql, SqlValue};
use crate::{StorageError, Store};

/// The DDL, the same on both backends.
pub const SCHEMA: &str = "CREATE TABLE audit_events (
        seq BIGINT NOT NULL PRIMARY KEY,
        recorded_ms BIGINT NOT NULL,
        patient TEXT NOT NULL,
        event TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE TABLE audit_event_patients (
        patient TEXT NOT NULL,
        seq BIGINT NOT NULL,
        PRIMARY KEY (patient, seq)
    );";

/// The DDL of the exports' positions (`[audit.syslog]`), the same on both
/// backends: the last record each export has sent. Retention keeps what
/// an export has not sent yet.
pub const EXPORTS_SCHEMA: &str = "CREATE TABLE audit_exports (
        exporter TEXT NOT NULL PRIMARY KEY,
        seq BIGINT NOT NULL
    );";

/// Records a verification reads at once.
const PAGE: i64 = 1000;

/// The PostgreSQL advisory lock that serialises appends ("PSRL" and an
/// index, as the backend's other locks). Taken by [`append_in`] as the
/// last lock of its transaction and held until it commits: a transaction
/// appends after every other write it makes, so that none waits for a row
/// while holding the trail (no lock cycle with the journal, the outbox or
/// the repository's lock, which is always taken first).
pub const AUDIT_LOCK: i64 = 0x5053_524c_0003;

/// One access to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub recorded_ms: i64,
    /// `Patient/{id}` of each patient the access concerned (the record is
    /// found under each); empty when none is known.
    pub patients: Vec<String>,
    /// The AuditEvent, as JSON text.
    pub event: String,
}

/// The hash of a record: over the previous hash and every column.
fn chained(previous: &str, seq: i64, recorded_ms: i64, patient: &str, event: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [
        previous,
        &seq.to_string(),
        &recorded_ms.to_string(),
        patient,
        event,
    ] {
        hasher.update(part.len().to_string().as_bytes());
        hasher.update(b":");
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Appends `records` at the end of the chain, in one transaction.
pub fn append(store: &dyn Store, records: &[AuditRecord]) -> Result<(), StorageError> {
    if records.is_empty() {
        return Ok(());
    }
    store.sql_write(&mut |sql| {
        append_in(sql, records)?;
        Ok(true)
    })
}

/// Appends `records` at the end of the chain inside a write transaction
/// the caller holds: an action and its record then commit together, or
/// neither does (`passerelle patients erase`, the journal's commits,
/// delivery attempts). Call it after the transaction's other writes (see
/// [`AUDIT_LOCK`]).
pub fn append_in(sql: &mut dyn Sql, records: &[AuditRecord]) -> Result<(), StorageError> {
    if records.is_empty() {
        return Ok(());
    }
    sql.advisory_lock(AUDIT_LOCK)?;
    let last = sql.query(
        "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1",
        &[],
    )?;
    let (mut seq, mut previous) = seq_and_hash(last.into_iter().next());
    for record in records {
        seq += 1;
        // The patients, space-separated, are part of what the hash
        // covers; a row per patient finds the record.
        let patient = record.patients.join(" ");
        for one in &record.patients {
            sql.execute(
                "INSERT INTO audit_event_patients (patient, seq) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING",
                &[SqlValue::Text(one.clone()), SqlValue::Int(seq)],
            )?;
        }
        let hash = chained(&previous, seq, record.recorded_ms, &patient, &record.event);
        sql.execute(
            "INSERT INTO audit_events (seq, recorded_ms, patient, event, hash)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                SqlValue::Int(seq),
                SqlValue::Int(record.recorded_ms),
                SqlValue::Text(patient),
                SqlValue::Text(record.event.clone()),
                SqlValue::Text(hash.clone()),
            ],
        )?;
        previous = hash;
    }
    Ok(())
}

/// A `(seq, hash)` row of the trail (its last record, or the anchor
/// retention left), `(0, "")` when there is none: the start of a chain.
pub(crate) fn seq_and_hash(row: Option<crate::sql::SqlRow>) -> (i64, String) {
    match row {
        Some(row) => {
            let mut row = row.into_iter();
            (
                row.next().and_then(|v| v.as_i64()).unwrap_or(0),
                row.next()
                    .and_then(SqlValue::into_string)
                    .unwrap_or_default(),
            )
        }
        None => (0, String::new()),
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Every record fits the chain.
    Intact { records: i64 },
    /// Record `seq` does not (changed, or a record before it removed):
    /// the first break, counting from the start.
    BrokenAt { seq: i64, checked: i64 },
}

/// Walks the whole chain from its first record (after the anchor, when
/// retention removed the oldest records: see [`crate::retention`]).
pub fn verify(store: &dyn Store) -> Result<Verification, StorageError> {
    store.settle()?;
    let anchor = crate::read(store, crate::retention::anchor)?;
    let (mut previous, mut expected, mut checked) = (anchor.1, anchor.0 + 1, 0_i64);
    loop {
        let rows = crate::read(store, |sql| {
            sql.query(
                "SELECT seq, recorded_ms, patient, event, hash FROM audit_events
                 WHERE seq >= $1 ORDER BY seq LIMIT $2",
                &[SqlValue::Int(expected), SqlValue::Int(PAGE)],
            )
        })?;
        if rows.is_empty() {
            return Ok(Verification::Intact { records: checked });
        }
        for row in rows {
            let mut row = row.into_iter();
            let seq = row.next().and_then(|v| v.as_i64()).unwrap_or(-1);
            let recorded_ms = row.next().and_then(|v| v.as_i64()).unwrap_or(-1);
            let patient = row
                .next()
                .and_then(SqlValue::into_string)
                .unwrap_or_default();
            let event = row
                .next()
                .and_then(SqlValue::into_string)
                .unwrap_or_default();
            let hash = row
                .next()
                .and_then(SqlValue::into_string)
                .unwrap_or_default();
            if seq != expected || chained(&previous, seq, recorded_ms, &patient, &event) != hash {
                return Ok(Verification::BrokenAt {
                    seq: expected,
                    checked,
                });
            }
            previous = hash;
            expected += 1;
            checked += 1;
        }
    }
}

/// The records after sequence number `after`, in chain order, at most
/// `limit`: `(seq, AuditEvent JSON)`.
pub fn records_after(
    store: &dyn Store,
    after: i64,
    limit: i64,
) -> Result<Vec<(i64, String)>, StorageError> {
    store.settle()?;
    crate::read(store, |sql| {
        Ok(sql
            .query(
                "SELECT seq, event FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[SqlValue::Int(after), SqlValue::Int(limit)],
            )?
            .into_iter()
            .filter_map(|row| {
                let mut row = row.into_iter();
                let seq = row.next()?.as_i64()?;
                Some((seq, row.next()?.into_string()?))
            })
            .collect())
    })
}

/// How far `exporter` has sent the trail: the last record sent, `None`
/// when it never sent any.
pub fn export_position(store: &dyn Store, exporter: &str) -> Result<Option<i64>, StorageError> {
    crate::read(store, |sql| {
        Ok(sql
            .query(
                "SELECT seq FROM audit_exports WHERE exporter = $1",
                &[SqlValue::Text(exporter.to_string())],
            )?
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next())
            .and_then(|value| value.as_i64()))
    })
}

/// Notes that `exporter` has sent the trail up to record `seq`.
pub fn set_export_position(
    store: &dyn Store,
    exporter: &str,
    seq: i64,
) -> Result<(), StorageError> {
    store.sql_write(&mut |sql| {
        sql.execute(
            "INSERT INTO audit_exports (exporter, seq) VALUES ($1, $2)
             ON CONFLICT (exporter) DO UPDATE SET seq = excluded.seq",
            &[SqlValue::Text(exporter.to_string()), SqlValue::Int(seq)],
        )?;
        Ok(true)
    })
}

/// Forgets the positions of exports other than `kept` (an export taken
/// out of the configuration no longer holds back retention).
pub fn forget_exports_but(store: &dyn Store, kept: &[&str]) -> Result<(), StorageError> {
    store.sql_write(&mut |sql| {
        let rows = sql.query("SELECT exporter FROM audit_exports", &[])?;
        for exporter in rows
            .into_iter()
            .filter_map(|row| row.into_iter().next().and_then(SqlValue::into_string))
            .filter(|exporter| !kept.contains(&exporter.as_str()))
        {
            sql.execute(
                "DELETE FROM audit_exports WHERE exporter = $1",
                &[SqlValue::Text(exporter)],
            )?;
        }
        Ok(true)
    })
}

/// The AuditEvents that concern `patient` (`Patient/{id}`), newest first,
/// at most `limit`.
pub fn for_patient(
    store: &dyn Store,
    patient: &str,
    limit: i64,
) -> Result<Vec<String>, StorageError> {
    store.settle()?;
    crate::read(store, |sql| {
        Ok(sql
            .query(
                "SELECT e.event FROM audit_event_patients p
                 JOIN audit_events e ON e.seq = p.seq
                 WHERE p.patient = $1 ORDER BY p.seq DESC LIMIT $2",
                &[SqlValue::Text(patient.to_string()), SqlValue::Int(limit)],
            )?
            .into_iter()
            .filter_map(|row| row.into_iter().next().and_then(SqlValue::into_string))
            .collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: i64, patients: &[&str]) -> AuditRecord {
        AuditRecord {
            recorded_ms: 1_000 + n,
            patients: patients.iter().map(|p| p.to_string()).collect(),
            event: format!("{{\"resourceType\":\"AuditEvent\",\"n\":{n}}}"),
        }
    }

    fn chain_holds_and_names_the_first_changed_record(store: &dyn Store) {
        assert_eq!(verify(store).unwrap(), Verification::Intact { records: 0 });
        append(store, &[record(1, &["Patient/1"]), record(2, &[])]).unwrap();
        append(store, &[record(3, &["Patient/12", "Patient/1"])]).unwrap();
        assert_eq!(verify(store).unwrap(), Verification::Intact { records: 3 });
        let found = for_patient(store, "Patient/1", 10).unwrap();
        assert_eq!(found.len(), 2);
        assert!(found[0].contains("\"n\":3"), "newest first: {found:?}");
        assert_eq!(for_patient(store, "Patient/12", 10).unwrap().len(), 1);
        assert!(for_patient(store, "Patient/2", 10).unwrap().is_empty());
        // Someone with the database rewrites record 2: the chain breaks
        // there, and stays broken whatever follows.
        store
            .sql_write(&mut |sql| {
                sql.execute(
                    "UPDATE audit_events SET event = $1 WHERE seq = 2",
                    &[SqlValue::Text("{}".into())],
                )?;
                Ok(true)
            })
            .unwrap();
        append(store, &[record(4, &[])]).unwrap();
        assert_eq!(
            verify(store).unwrap(),
            Verification::BrokenAt { seq: 2, checked: 1 }
        );
        // Removing a record breaks it too.
        store
            .sql_write(&mut |sql| {
                sql.execute("DELETE FROM audit_events WHERE seq <= 2", &[])?;
                Ok(true)
            })
            .unwrap();
        assert_eq!(
            verify(store).unwrap(),
            Verification::BrokenAt { seq: 1, checked: 0 }
        );
    }

    /// Writers that append from different transactions (the journal's
    /// group commit, a repository write with its record, a delivery
    /// attempt) at once still make one chain, and each message commits
    /// with its record.
    fn concurrent_writers_keep_one_chain(store: std::sync::Arc<dyn Store>) {
        const ROUNDS: i64 = 30;
        let writers: Vec<std::thread::JoinHandle<()>> = (0..3)
            .map(|writer| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for n in 0..ROUNDS {
                        let one = [record(writer * 1000 + n, &["Patient/w"])];
                        match writer {
                            0 => {
                                let control = format!("W{n}");
                                let entry = crate::suite::entry(&control, &control);
                                store.journal_commit_audited(&[entry], &one).unwrap();
                            }
                            1 => append(store.as_ref(), &one).unwrap(),
                            _ => store.journal_commit_audited(&[], &one).map(drop).unwrap(),
                        }
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        assert_eq!(
            verify(store.as_ref()).unwrap(),
            Verification::Intact {
                records: 3 * ROUNDS
            }
        );
        assert_eq!(
            for_patient(store.as_ref(), "Patient/w", 1000)
                .unwrap()
                .len(),
            3 * ROUNDS as usize
        );
        let all = records_after(store.as_ref(), 0, 1000).unwrap();
        assert_eq!(all.len(), 3 * ROUNDS as usize);
        assert!(all.windows(2).all(|pair| pair[0].0 + 1 == pair[1].0));
    }

    #[test]
    fn sqlite_concurrent_writers() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::sqlite::SqliteStore::open(dir.path()).unwrap();
        concurrent_writers_keep_one_chain(std::sync::Arc::new(store));
    }

    #[test]
    fn postgres_concurrent_writers() {
        let Some(url) = crate::postgres_test::database("audit_writers") else {
            return;
        };
        let store = crate::postgres::PostgresStore::open(&url).unwrap();
        concurrent_writers_keep_one_chain(std::sync::Arc::new(store));
    }

    #[test]
    fn sqlite_chain() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::sqlite::SqliteStore::open(dir.path()).unwrap();
        chain_holds_and_names_the_first_changed_record(&store);
    }

    #[test]
    fn postgres_chain() {
        let Some(url) = crate::postgres_test::database("audit_chain") else {
            return;
        };
        let store = crate::postgres::PostgresStore::open(&url).unwrap();
        chain_holds_and_names_the_first_changed_record(&store);
    }
}
