//! Retention: how long each class of data is kept, and the deletions that
//! enforce it, in bounded batches (a batch is one short write transaction,
//! so intake and delivery never wait long behind a purge). Written once on
//! the [`Sql`] surface for both backends.
//!
//! The classes, each with its own age:
//! - [`DataClass::JournalPayloads`]: messages whose every delivery is done
//!   (or that no route took), with their outbox rows and attempts, and the
//!   local target's copy of their Bundles;
//! - [`DataClass::DeliveredBundles`]: the Bundle text of delivered outbox
//!   rows (the row stays, its Bundle is emptied) and the local target's
//!   Bundle copies;
//! - [`DataClass::DeadLetters`]: outbox rows given up on, with their
//!   attempts;
//! - [`DataClass::RepositoryHistory`]: the repository's past versions
//!   (never a resource's current version);
//! - [`DataClass::AuditRecords`]: the oldest audit records. The chain
//!   stays verifiable: the sequence number and hash of the last record
//!   removed are kept as its anchor (`audit_anchor`), where
//!   [`crate::audit::verify`] starts, and the removal is itself recorded
//!   in the trail, naming that anchor. Records an export
//!   (`[audit.syslog]`) has not sent yet are kept.

use crate::audit::AuditRecord;
use crate::sql::{Sql, SqlValue};
use crate::{StorageError, Store};

/// The DDL of the audit trail's anchor, the same on both backends: one
/// row at most, the last record retention removed.
pub const ANCHOR_SCHEMA: &str = "CREATE TABLE audit_anchor (
        id BIGINT NOT NULL PRIMARY KEY,
        seq BIGINT NOT NULL,
        hash TEXT NOT NULL
    );";

/// The classes of data retention deletes, each with its own age.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataClass {
    JournalPayloads,
    DeliveredBundles,
    DeadLetters,
    RepositoryHistory,
    AuditRecords,
}

impl DataClass {
    pub const ALL: [DataClass; 5] = [
        DataClass::JournalPayloads,
        DataClass::DeliveredBundles,
        DataClass::DeadLetters,
        DataClass::RepositoryHistory,
        DataClass::AuditRecords,
    ];

    /// The metrics label and configuration name.
    pub fn label(self) -> &'static str {
        match self {
            DataClass::JournalPayloads => "journal_payloads",
            DataClass::DeliveredBundles => "delivered_bundles",
            DataClass::DeadLetters => "dead_letters",
            DataClass::RepositoryHistory => "repository_history",
            DataClass::AuditRecords => "audit_records",
        }
    }
}

/// The journal's `received_at` of `ms` (second precision with `Z`), which
/// compares as text with the column.
fn journal_instant(ms: i64) -> String {
    let instant = crate::instant_from_ms(ms);
    format!("{}Z", instant.get(..19).unwrap_or(&instant))
}

/// Deletes at most `batch` items of `class` older than `cutoff_ms` (epoch
/// milliseconds), in one transaction; returns how many went. `record`
/// makes the audit record of an audit-trail removal (given the number
/// removed and the new anchor's sequence number), committed with it.
pub fn purge_batch(
    store: &dyn Store,
    class: DataClass,
    cutoff_ms: i64,
    batch: usize,
    record: &(dyn Fn(u64, i64) -> AuditRecord + Sync),
) -> Result<u64, StorageError> {
    let batch = batch.max(1) as i64;
    let mut removed = 0;
    store.sql_write(&mut |sql| {
        removed = match class {
            DataClass::JournalPayloads => journal(sql, cutoff_ms, batch)?,
            DataClass::DeliveredBundles => delivered_bundles(sql, cutoff_ms, batch)?,
            DataClass::DeadLetters => dead_letters(sql, cutoff_ms, batch)?,
            DataClass::RepositoryHistory => sql.execute(
                "DELETE FROM fhir_history WHERE (resource_type, id, version) IN (
                     SELECT h.resource_type, h.id, h.version FROM fhir_history h
                     WHERE h.last_updated_ms < $1
                       AND NOT EXISTS (SELECT 1 FROM fhir_resources r
                           WHERE r.resource_type = h.resource_type AND r.id = h.id
                             AND r.version = h.version)
                     LIMIT $2)",
                &[SqlValue::Int(cutoff_ms), SqlValue::Int(batch)],
            )?,
            DataClass::AuditRecords => audit(sql, cutoff_ms, batch, record)?,
        };
        Ok(true)
    })?;
    Ok(removed)
}

fn journal(sql: &mut dyn Sql, cutoff_ms: i64, batch: i64) -> Result<u64, StorageError> {
    let ids: Vec<i64> = sql
        .query(
            "SELECT id FROM journal WHERE received_at < $1
               AND state IN ('routed', 'unrouted')
               AND NOT EXISTS (SELECT 1 FROM outbox o
                   WHERE o.journal_id = journal.id AND o.state <> 'delivered')
             ORDER BY id LIMIT $2",
            &[
                SqlValue::Text(journal_instant(cutoff_ms)),
                SqlValue::Int(batch),
            ],
        )?
        .into_iter()
        .filter_map(|row| row.into_iter().next().and_then(|v| v.as_i64()))
        .collect();
    for id in &ids {
        // The local target's copies are the message's data too.
        sql.execute(
            "DELETE FROM local_bundles WHERE journal_id = $1",
            &[SqlValue::Int(*id)],
        )?;
        // Outbox rows and their attempts go with the message (ON DELETE
        // CASCADE on both backends).
        sql.execute("DELETE FROM journal WHERE id = $1", &[SqlValue::Int(*id)])?;
    }
    Ok(ids.len() as u64)
}

fn delivered_bundles(sql: &mut dyn Sql, cutoff_ms: i64, batch: i64) -> Result<u64, StorageError> {
    let emptied = sql.execute(
        "UPDATE outbox SET bundle = '' WHERE id IN (
             SELECT id FROM outbox
             WHERE state = 'delivered' AND created_at_ms < $1 AND bundle <> ''
             ORDER BY id LIMIT $2)",
        &[SqlValue::Int(cutoff_ms), SqlValue::Int(batch)],
    )?;
    let copies = sql.execute(
        "DELETE FROM local_bundles WHERE id IN (
             SELECT id FROM local_bundles WHERE stored_at_ms < $1 ORDER BY id LIMIT $2)",
        &[SqlValue::Int(cutoff_ms), SqlValue::Int(batch)],
    )?;
    Ok(emptied + copies)
}

fn dead_letters(sql: &mut dyn Sql, cutoff_ms: i64, batch: i64) -> Result<u64, StorageError> {
    sql.execute(
        "DELETE FROM outbox WHERE id IN (
             SELECT id FROM outbox WHERE state = 'dead' AND created_at_ms < $1
             ORDER BY id LIMIT $2)",
        &[SqlValue::Int(cutoff_ms), SqlValue::Int(batch)],
    )
}

fn audit(
    sql: &mut dyn Sql,
    cutoff_ms: i64,
    batch: i64,
    record: &(dyn Fn(u64, i64) -> AuditRecord + Sync),
) -> Result<u64, StorageError> {
    sql.advisory_lock(crate::audit::AUDIT_LOCK)?;
    // The oldest records, in chain order, up to the first one young
    // enough to keep: the trail is removed from its start only, so what
    // remains is one unbroken chain from the anchor.
    // Not past what an export has yet to send.
    let unsent = sql
        .query("SELECT MIN(seq) FROM audit_exports", &[])?
        .into_iter()
        .next()
        .and_then(|row| row.into_iter().next())
        .and_then(|value| value.as_i64())
        .unwrap_or(i64::MAX);
    let rows = sql.query(
        "SELECT seq, recorded_ms, hash FROM audit_events WHERE seq <= $2 ORDER BY seq LIMIT $1",
        &[SqlValue::Int(batch), SqlValue::Int(unsent)],
    )?;
    let mut last: Option<(i64, String)> = None;
    for row in rows {
        let mut row = row.into_iter();
        let seq = row.next().and_then(|v| v.as_i64());
        let recorded_ms = row.next().and_then(|v| v.as_i64());
        let hash = row.next().and_then(SqlValue::into_string);
        match (seq, recorded_ms, hash) {
            (Some(seq), Some(recorded_ms), Some(hash)) if recorded_ms < cutoff_ms => {
                last = Some((seq, hash));
            }
            _ => break,
        }
    }
    let Some((seq, hash)) = last else {
        return Ok(0);
    };
    sql.execute(
        "DELETE FROM audit_event_patients WHERE seq <= $1",
        &[SqlValue::Int(seq)],
    )?;
    let removed = sql.execute(
        "DELETE FROM audit_events WHERE seq <= $1",
        &[SqlValue::Int(seq)],
    )?;
    sql.execute("DELETE FROM audit_anchor", &[])?;
    sql.execute(
        "INSERT INTO audit_anchor (id, seq, hash) VALUES (1, $1, $2)",
        &[SqlValue::Int(seq), SqlValue::Text(hash)],
    )?;
    crate::audit::append_in(sql, &[record(removed, seq)])?;
    Ok(removed)
}

/// The anchor of the audit trail: the sequence number and hash of the last
/// record retention removed, or `(0, "")` when none was.
pub fn anchor(sql: &mut dyn Sql) -> Result<(i64, String), StorageError> {
    let row = sql
        .query("SELECT seq, hash FROM audit_anchor WHERE id = 1", &[])?
        .into_iter()
        .next();
    Ok(crate::audit::seq_and_hash(row))
}
