//! The journal and outbox rows that concern one patient, for the
//! patient's rights of access and erasure (`passerelle patients export`
//! and `erase`): found, read whole (raw message, mapped Bundles, delivery
//! states), checked for deliveries still to make, and deleted with
//! everything hanging off them (outbox rows, attempts, the `local`
//! target's copies).
//!
//! A message is tied to its patient by its outbox rows' `patient_key`,
//! the key delivery keeps each patient's messages in order by (the mapper
//! sets it; the built-in mappers hash the patient's identifier, so the
//! key never shows it). A message without outbox rows (not mapped yet,
//! unrouted, failed) has no key: [`unkeyed`] hands such messages to the
//! caller, which can map them, so that this crate stays free of HL7 v2
//! and FHIR. Written once on the [`Sql`] surface for both backends.

use std::collections::{BTreeMap, BTreeSet};

use crate::sql::{Sql, SqlRow, SqlValue};
use crate::{StorageError, Store, UnmappedMessage};

/// Keys bound in one `IN (...)` list: far below both backends' limits
/// on parameters.
const KEYS_PER_QUERY: usize = 100;

/// One journaled message, as an export shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub id: i64,
    /// FHIR instant (UTC).
    pub received_at: String,
    pub transport: String,
    pub sending_application: String,
    pub sending_facility: String,
    pub control_id: String,
    pub message_type: String,
    /// The journal state (`routed`, `failed`, ...).
    pub state: String,
    /// The message as received, byte for byte (its charset may not be
    /// UTF-8).
    pub raw: Vec<u8>,
    pub deliveries: Vec<DeliveryRecord>,
}

/// One outbox row of a message: the Bundle mapped for one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub outbox_id: i64,
    pub route: String,
    pub target: String,
    /// `pending`, `in_flight`, `delivered` or `dead`.
    pub state: String,
    /// The transaction Bundle, as JSON text (numbers as the mapper wrote
    /// them).
    pub bundle: String,
}

/// A delivery of one of the patient's messages that is not over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenDelivery {
    pub journal_id: i64,
    pub target: String,
    /// `pending` or `in_flight`.
    pub state: String,
}

/// What [`delete`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErasedMessages {
    pub messages: u64,
    /// Outbox rows (one per message and target).
    pub deliveries: u64,
    pub attempts: u64,
    /// Copies the `local` target kept of delivered Bundles.
    pub local_bundles: u64,
}

fn text(value: Option<SqlValue>) -> String {
    value.and_then(SqlValue::into_string).unwrap_or_default()
}

fn int(value: Option<SqlValue>) -> i64 {
    value.and_then(|v| v.as_i64()).unwrap_or(0)
}

/// The journal ids of the messages whose outbox rows carry one of `keys`.
pub fn by_patient_keys(sql: &mut dyn Sql, keys: &[String]) -> Result<BTreeSet<i64>, StorageError> {
    let mut ids = BTreeSet::new();
    for chunk in keys.chunks(KEYS_PER_QUERY) {
        let list = (1..=chunk.len())
            .map(|n| format!("${n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let params: Vec<SqlValue> = chunk.iter().map(|key| key.as_str().into()).collect();
        for row in sql.query(
            &format!("SELECT DISTINCT journal_id FROM outbox WHERE patient_key IN ({list})"),
            &params,
        )? {
            ids.insert(int(row.into_iter().next()));
        }
    }
    Ok(ids)
}

/// Up to `limit` journaled messages without any outbox row (so without a
/// patient key), with ids above `after`, oldest first: the caller pages
/// through them and decides which concern its patient.
pub fn unkeyed(
    store: &dyn Store,
    after: i64,
    limit: i64,
) -> Result<Vec<UnmappedMessage>, StorageError> {
    store.settle()?;
    let rows = crate::read(store, |sql| {
        sql.query(
            "SELECT j.id, j.transport, j.sending_application, j.sending_facility,
                j.message_type, j.raw
             FROM journal j
             WHERE j.id > $1
               AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.journal_id = j.id)
             ORDER BY j.id LIMIT $2",
            &[SqlValue::Int(after), SqlValue::Int(limit)],
        )
    })?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let mut row = row.into_iter();
            UnmappedMessage {
                journal_id: int(row.next()),
                transport: text(row.next()),
                sending_application: text(row.next()),
                sending_facility: text(row.next()),
                message_type: text(row.next()),
                raw: row
                    .next()
                    .and_then(SqlValue::into_bytes)
                    .unwrap_or_default(),
            }
        })
        .collect())
}

/// The messages `ids` (those still in the journal), oldest first, each
/// with its outbox rows.
pub fn records(sql: &mut dyn Sql, ids: &BTreeSet<i64>) -> Result<Vec<MessageRecord>, StorageError> {
    let mut out = Vec::with_capacity(ids.len());
    for &id in ids {
        let Some(row) = sql
            .query(
                "SELECT received_at, transport, sending_application, sending_facility,
                    control_id, message_type, state, raw
                 FROM journal WHERE id = $1",
                &[SqlValue::Int(id)],
            )?
            .into_iter()
            .next()
        else {
            continue;
        };
        let mut row = row.into_iter();
        let mut record = MessageRecord {
            id,
            received_at: text(row.next()),
            transport: text(row.next()),
            sending_application: text(row.next()),
            sending_facility: text(row.next()),
            control_id: text(row.next()),
            message_type: text(row.next()),
            state: text(row.next()),
            raw: row
                .next()
                .and_then(SqlValue::into_bytes)
                .unwrap_or_default(),
            deliveries: Vec::new(),
        };
        record.deliveries = sql
            .query(
                "SELECT id, route, target, state, bundle FROM outbox
                 WHERE journal_id = $1 ORDER BY target",
                &[SqlValue::Int(id)],
            )?
            .into_iter()
            .map(|row: SqlRow| {
                let mut row = row.into_iter();
                DeliveryRecord {
                    outbox_id: int(row.next()),
                    route: text(row.next()),
                    target: text(row.next()),
                    state: text(row.next()),
                    bundle: text(row.next()),
                }
            })
            .collect();
        out.push(record);
    }
    Ok(out)
}

/// The deliveries of messages `ids` that are not over (pending or in
/// flight), by message and target.
pub fn open_deliveries(
    sql: &mut dyn Sql,
    ids: &BTreeSet<i64>,
) -> Result<Vec<OpenDelivery>, StorageError> {
    let mut out = Vec::new();
    for &id in ids {
        for row in sql.query(
            "SELECT target, state FROM outbox
             WHERE journal_id = $1 AND state IN ('pending', 'in_flight') ORDER BY target",
            &[SqlValue::Int(id)],
        )? {
            let mut row = row.into_iter();
            out.push(OpenDelivery {
                journal_id: id,
                target: text(row.next()),
                state: text(row.next()),
            });
        }
    }
    Ok(out)
}

/// How many of messages `ids` each target has been delivered: the
/// recipients an erasure must be passed on to (GDPR article 19).
pub fn delivered_targets(
    sql: &mut dyn Sql,
    ids: &BTreeSet<i64>,
) -> Result<BTreeMap<String, u64>, StorageError> {
    let mut out = BTreeMap::new();
    for &id in ids {
        for row in sql.query(
            "SELECT target FROM outbox WHERE journal_id = $1 AND state = 'delivered'",
            &[SqlValue::Int(id)],
        )? {
            *out.entry(text(row.into_iter().next())).or_insert(0) += 1;
        }
    }
    Ok(out)
}

/// The messages of `ids` the mapping stage holds right now (state
/// `mapping`): their outbox rows are about to be written.
pub fn being_mapped(sql: &mut dyn Sql, ids: &BTreeSet<i64>) -> Result<Vec<i64>, StorageError> {
    let mut out = Vec::new();
    for &id in ids {
        if !sql
            .query(
                "SELECT 1 FROM journal WHERE id = $1 AND state = 'mapping'",
                &[SqlValue::Int(id)],
            )?
            .is_empty()
        {
            out.push(id);
        }
    }
    Ok(out)
}

/// Deletes messages `ids` from the journal with their outbox rows, their
/// delivery attempts and the `local` target's copies of their Bundles.
/// Each is deleted explicitly rather than through the foreign keys'
/// cascades, so that the counts are known and `local_bundles` (which has
/// no foreign key: a purge keeps it) goes too.
pub fn delete(sql: &mut dyn Sql, ids: &BTreeSet<i64>) -> Result<ErasedMessages, StorageError> {
    let mut erased = ErasedMessages::default();
    for &id in ids {
        let id = [SqlValue::Int(id)];
        erased.attempts += sql.execute(
            "DELETE FROM delivery_attempts
             WHERE outbox_id IN (SELECT id FROM outbox WHERE journal_id = $1)",
            &id,
        )?;
        erased.local_bundles +=
            sql.execute("DELETE FROM local_bundles WHERE journal_id = $1", &id)?;
        erased.deliveries += sql.execute("DELETE FROM outbox WHERE journal_id = $1", &id)?;
        erased.messages += sql.execute("DELETE FROM journal WHERE id = $1", &id)?;
    }
    Ok(erased)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Delivery, MappingOutcome, NewDelivery};

    fn routed(patient: &str, bundle: &str, targets: &[&str]) -> MappingOutcome {
        MappingOutcome::Routed(
            targets
                .iter()
                .map(|target| NewDelivery {
                    route: "r".into(),
                    target: target.to_string(),
                    patient_key: patient.into(),
                    bundle: bundle.into(),
                })
                .collect(),
        )
    }

    fn in_write<T: Default + Send>(
        store: &dyn Store,
        mut work: impl FnMut(&mut dyn Sql) -> Result<T, StorageError> + Send,
    ) -> T {
        let mut out = T::default();
        store
            .sql_write(&mut |sql| {
                out = work(sql)?;
                Ok(true)
            })
            .unwrap();
        out
    }

    /// Three messages: two of patient `ka` (one delivered locally, one
    /// pending to a hospital), one of `kb`, and one not mapped yet.
    fn a_patients_messages_are_found_read_and_deleted(store: &dyn Store) {
        let stored = store
            .journal_commit(&[
                crate::suite::entry("A1", "A1"),
                crate::suite::entry("B1", "B1"),
                crate::suite::entry("A2", "A2"),
                crate::suite::entry("U1", "U1"),
            ])
            .unwrap();
        let ids: Vec<i64> = stored
            .iter()
            .map(|s| match s {
                crate::Stored::New { id } => *id,
                crate::Stored::Duplicate { id, .. } => *id,
            })
            .collect();
        let now = 1_000;
        store.claim_unmapped("me", 10, now, 60_000).unwrap();
        store
            .record_mappings(
                &[
                    (ids[0], routed("ka", r#"{"value":1.50}"#, &["local"])),
                    (ids[1], routed("kb", "{}", &["local"])),
                    (ids[2], routed("ka", "{}", &["hospital"])),
                ],
                now,
            )
            .unwrap();
        store.release_leases("me").unwrap();
        let claimed: Vec<Delivery> = store
            .claim_deliveries("local", "me", 10, now, 60_000)
            .unwrap();
        assert_eq!(claimed.len(), 2);
        store.deliver_locally(&claimed, "me", now).unwrap();

        let keys = vec!["ka".to_string(), "kz".to_string()];
        let found = in_write(store, |sql| by_patient_keys(sql, &keys));
        assert_eq!(found, BTreeSet::from([ids[0], ids[2]]));
        let unkeyed = unkeyed(store, 0, 10).unwrap();
        assert_eq!(
            unkeyed.iter().map(|m| m.journal_id).collect::<Vec<_>>(),
            [ids[3]]
        );
        assert!(!unkeyed[0].raw.is_empty());

        let read = in_write(store, |sql| records(sql, &found));
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].control_id, "A1");
        assert_eq!(read[0].deliveries[0].state, "delivered");
        assert_eq!(read[0].deliveries[0].bundle, r#"{"value":1.50}"#);
        assert_eq!(read[1].deliveries[0].target, "hospital");
        let open = in_write(store, |sql| open_deliveries(sql, &found));
        assert_eq!(
            open,
            [OpenDelivery {
                journal_id: ids[2],
                target: "hospital".into(),
                state: "pending".into()
            }]
        );
        assert!(in_write(store, |sql| being_mapped(sql, &found)).is_empty());
        assert_eq!(
            in_write(store, |sql| delivered_targets(sql, &found)),
            BTreeMap::from([("local".to_string(), 1)])
        );

        // A copy of the Bundle an earlier version of the local target kept.
        in_write(store, |sql| {
            sql.execute(
                "INSERT INTO local_bundles (outbox_id, journal_id, stored_at_ms, bundle)
                 VALUES ($1, $2, $3, '{}')",
                &[
                    SqlValue::Int(claimed[0].outbox_id),
                    SqlValue::Int(ids[0]),
                    SqlValue::Int(now),
                ],
            )
        });
        let erased = in_write(store, |sql| delete(sql, &found));
        assert_eq!(
            erased,
            ErasedMessages {
                messages: 2,
                deliveries: 2,
                attempts: 1,
                local_bundles: 1
            }
        );
        assert!(store.message(ids[0]).unwrap().is_none());
        assert!(store.message(ids[2]).unwrap().is_none());
        // The other patient's message and its delivered Bundle stay.
        assert!(store.message(ids[1]).unwrap().is_some());
        assert_eq!(store.delivered_bundles("local", 10).unwrap().len(), 1);
        assert!(store.depths(now).unwrap().iter().all(|d| d.pending == 0));
    }

    #[test]
    fn sqlite_patient_messages() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::sqlite::SqliteStore::open(dir.path()).unwrap();
        a_patients_messages_are_found_read_and_deleted(&store);
    }

    /// A message whose row was rewritten a few times (its state moving on,
    /// as every message's does) leaves copies of its bytes in the free
    /// space of the database's pages; an erasure then a scrub leave none,
    /// in the database file or in its WAL.
    #[test]
    fn sqlite_erased_bytes_leave_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::sqlite::SqliteStore::open(dir.path()).unwrap();
        let marker = b"ZQXWVUTSRQ-PATIENT";
        let mut entry = crate::suite::entry("S1", "S1");
        entry.raw = [b"MSH|^~\\&|LAB|SITE\rPID|1||".as_slice(), marker].concat();
        let mut other = crate::suite::entry("S2", "S2");
        other.raw = b"MSH|^~\\&|LAB|SITE\rPID|1||SOMEONE-ELSE".to_vec();
        store.journal_commit(&[entry, other]).unwrap();
        for round in 0..3 {
            store.claim_unmapped("me", 10, 1_000, 60_000).unwrap();
            store
                .record_mapping(
                    1,
                    &routed("k", &format!("{{\"round\":{round}}}"), &["local"]),
                    1_000,
                )
                .unwrap();
            store.replay(&[1, 2]).unwrap();
        }
        let files = [
            dir.path().join(crate::DATABASE_FILE),
            dir.path().join(format!("{}-wal", crate::DATABASE_FILE)),
            dir.path().join(crate::inbox::INBOX_FILE),
            dir.path().join(format!("{}-wal", crate::inbox::INBOX_FILE)),
        ];
        let holds = |needle: &[u8]| {
            files.iter().any(|file| {
                std::fs::read(file)
                    .unwrap_or_default()
                    .windows(needle.len())
                    .any(|w| w == needle)
            })
        };
        assert!(holds(marker));
        let ids = BTreeSet::from([1]);
        store
            .sql_erase(&mut |sql| {
                delete(sql, &ids)?;
                Ok(true)
            })
            .unwrap();
        let scrubbed = store.scrub().unwrap();
        assert_eq!(
            scrubbed,
            crate::Scrubbed::Rewritten {
                files: files.to_vec()
            }
        );
        assert!(!holds(marker), "the erased message's bytes are gone");
        assert!(holds(b"SOMEONE-ELSE"), "the other message stays");
        assert_eq!(std::fs::metadata(&files[1]).map_or(0, |m| m.len()), 0);
        assert_eq!(std::fs::metadata(&files[3]).map_or(0, |m| m.len()), 0);
    }

    #[test]
    fn postgres_patient_messages() {
        let Some(url) = crate::postgres_test::database("patient_messages") else {
            return;
        };
        let store = crate::postgres::PostgresStore::open(&url).unwrap();
        a_patients_messages_are_found_read_and_deleted(&store);
    }
}
