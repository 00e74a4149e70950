//! What the store knows of HL7 v2 application acknowledgements: which
//! journaled messages owe their sender one (enhanced mode, MSH-16), which
//! of those are finished (mapped, and every delivery over), what became of
//! them, and that an acknowledgement went out. Also the mapping outcome an
//! `ack = "after-mapping"` route waits for. Written once on the
//! [`Sql`](crate::sql::Sql) surface for both backends.
//!
//! The journal row's `application_ack` column is the whole state: `AL`,
//! `ER` or `SU` while one is owed (the sender's MSH-16 condition), or
//! `ZAM` for the ANS profile's business acknowledgement of the DMP,
//! `sending-AL` (…) while one instance sends it (taken with a conditional
//! update, so that two instances on one PostgreSQL never both send it),
//! then `sent` or `not-wanted` (the condition said no), so that the
//! journal commit that stores the message is also what promises its
//! answer. A send cut short by a stop is given back when the sender task
//! starts again: an ACK may then go out twice, never not at all.

use crate::sql::{SqlRow, SqlValue};
use crate::{StorageError, Store};

/// The DDL, the same on both backends; the partial index keeps finding
/// owed acknowledgements independent of the history kept.
pub const SCHEMA: &str = "ALTER TABLE journal ADD COLUMN application_ack TEXT NOT NULL DEFAULT '';
    CREATE INDEX journal_application_ack_owed ON journal (id)
        WHERE application_ack IN ('AL', 'ER', 'SU', 'sending-AL', 'sending-ER', 'sending-SU');";

/// Migration 11: the ANS business acknowledgement (`ZAM`, owed to a
/// sender of the CDA-over-HL7 v2 profile that asked for the DMP's
/// reception) joins the owed states the partial index covers.
pub const ZAM_SCHEMA: &str = "DROP INDEX journal_application_ack_owed;
    CREATE INDEX journal_application_ack_owed ON journal (id)
        WHERE application_ack IN ('AL', 'ER', 'SU', 'ZAM', 'sending-AL', 'sending-ER', 'sending-SU', 'sending-ZAM');";

/// The owed condition of a `ZAM^Z01` (not an MSH-16 value).
pub const ZAM: &str = "ZAM";

/// Prefix of an acknowledgement being sent.
const SENDING: &str = "sending-";

/// An acknowledgement has gone out.
pub const SENT: &str = "sent";
/// The sender's condition (MSH-16 `ER` or `SU`) did not ask for this one.
pub const NOT_WANTED: &str = "not-wanted";

/// What became of a message once mapped: the facts its application
/// acknowledgement is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Mapping failed, for this reason (as `messages show` gives it).
    MappingFailed(String),
    /// No route applies: nothing to map or deliver.
    Unrouted,
    /// Mapped; each delivery's target, final state and last HTTP status.
    Routed(Vec<DeliveryOutcome>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryOutcome {
    pub target: String,
    /// `delivered` or `dead` once over; `pending`/`in_flight` before.
    pub state: String,
    pub last_status: Option<i64>,
    /// The last attempt's error, as `messages show` gives it.
    pub last_error: Option<String>,
    /// Why the last attempt was refused (code, field), when the target
    /// said.
    pub reason: crate::AttemptReason,
}

/// A message whose application acknowledgement is due now.
#[derive(Debug, Clone)]
pub struct OwedAck {
    pub journal_id: i64,
    /// MSH-16: `AL`, `ER` or `SU`.
    pub condition: String,
    pub sending_application: String,
    pub sending_facility: String,
    pub raw: Vec<u8>,
    pub outcome: Outcome,
}

/// The owed acknowledgements of messages with no delivery under way,
/// after a cursor: the partial index on owed rows bounds it (see the
/// SQLite plan test). Whether a message is mapped yet is read after, per
/// row ([`read_outcome`]): a condition on its state here would lead the
/// planner to the state index, whose mapped rows only grow.
pub(crate) const OWED: &str =
    "SELECT j.id, j.application_ack, j.sending_application, j.sending_facility, j.raw
     FROM journal j
     WHERE j.application_ack IN ('AL', 'ER', 'SU', 'ZAM', 'sending-AL', 'sending-ER', 'sending-SU', 'sending-ZAM')
       AND j.id > $1
       AND NOT EXISTS (SELECT 1 FROM outbox o
           WHERE o.journal_id = j.id AND o.state IN ('pending', 'in_flight'))
     ORDER BY j.id LIMIT $2";

/// Messages that owe an application acknowledgement and are finished:
/// mapped (or failed, or unrouted) with no delivery still pending, oldest
/// first, at most `limit`, none at or below `after_id` (a caller's
/// cursor past messages it keeps failing to acknowledge).
pub fn owed(store: &dyn Store, after_id: i64, limit: i64) -> Result<Vec<OwedAck>, StorageError> {
    crate::read(store, |sql| {
        let mut owed = Vec::new();
        let rows = sql.query(OWED, &[SqlValue::Int(after_id), SqlValue::Int(limit)])?;
        for row in rows {
            let mut row = row.into_iter();
            let (Some(journal_id), Some(condition), Some(application), Some(facility), Some(raw)) = (
                row.next().and_then(|v| v.as_i64()),
                row.next().and_then(SqlValue::into_string),
                row.next().and_then(SqlValue::into_string),
                row.next().and_then(SqlValue::into_string),
                row.next().and_then(SqlValue::into_bytes),
            ) else {
                continue;
            };
            // Being sent (by this instance or another): not owed now. The
            // predicate stays the index's own so that the index serves.
            if condition.starts_with(SENDING) {
                continue;
            }
            let Some(outcome) = read_outcome(sql, journal_id)? else {
                continue;
            };
            owed.push(OwedAck {
                journal_id,
                condition,
                sending_application: application,
                sending_facility: facility,
                raw,
                outcome,
            });
        }
        Ok(owed)
    })
}

/// Records what was done about message `journal_id`'s acknowledgement
/// ([`SENT`] or [`NOT_WANTED`]).
pub fn settle(store: &dyn Store, journal_id: i64, state: &str) -> Result<(), StorageError> {
    let state = state.to_string();
    store.sql_write(&mut |sql| {
        sql.execute(
            "UPDATE journal SET application_ack = $2 WHERE id = $1",
            &[SqlValue::Int(journal_id), SqlValue::Text(state.clone())],
        )?;
        Ok(true)
    })
}

/// Takes message `journal_id`'s owed acknowledgement (MSH-16
/// `condition`) for sending; `false` when it is no longer owed (another
/// instance took or settled it).
pub fn take(store: &dyn Store, journal_id: i64, condition: &str) -> Result<bool, StorageError> {
    swap(
        store,
        journal_id,
        condition,
        &format!("{SENDING}{condition}"),
    )
}

/// Gives back an acknowledgement [`take`]n and not sent: owed again.
pub fn give_back(store: &dyn Store, journal_id: i64, condition: &str) -> Result<(), StorageError> {
    swap(
        store,
        journal_id,
        &format!("{SENDING}{condition}"),
        condition,
    )
    .map(drop)
}

/// Moves message `journal_id`'s acknowledgement state from `from` to
/// `to`; whether it was at `from` (the move is the claim).
fn swap(store: &dyn Store, journal_id: i64, from: &str, to: &str) -> Result<bool, StorageError> {
    let (from, to) = (from.to_string(), to.to_string());
    let mut moved = false;
    store.sql_write(&mut |sql| {
        moved = sql.execute(
            "UPDATE journal SET application_ack = $3 WHERE id = $1 AND application_ack = $2",
            &[
                SqlValue::Int(journal_id),
                SqlValue::Text(from.clone()),
                SqlValue::Text(to.clone()),
            ],
        )? == 1;
        Ok(true)
    })?;
    Ok(moved)
}

/// Gives back every acknowledgement left being sent (a stop cut its send
/// short); returns how many. Run when the sender task starts.
pub fn give_back_all(store: &dyn Store) -> Result<u64, StorageError> {
    let mut given = 0;
    store.sql_write(&mut |sql| {
        given = 0;
        for condition in ["AL", "ER", "SU"] {
            given += sql.execute(
                "UPDATE journal SET application_ack = $1 WHERE id IN (
                     SELECT id FROM journal WHERE application_ack IN
                         ('AL', 'ER', 'SU', 'sending-AL', 'sending-ER', 'sending-SU'))
                   AND application_ack = $2",
                &[
                    SqlValue::Text(condition.to_string()),
                    SqlValue::Text(format!("{SENDING}{condition}")),
                ],
            )?;
        }
        Ok(true)
    })?;
    Ok(given)
}

/// The mapping outcome of message `journal_id`, `None` while it is not
/// mapped yet (or there is no such message). Deliveries may still be
/// under way.
pub fn mapping_outcome(
    store: &dyn Store,
    journal_id: i64,
) -> Result<Option<Outcome>, StorageError> {
    crate::read(store, |sql| read_outcome(sql, journal_id))
}

fn read_outcome(
    sql: &mut dyn crate::sql::Sql,
    journal_id: i64,
) -> Result<Option<Outcome>, StorageError> {
    let mut rows = sql.query(
        "SELECT state, mapping_error FROM journal WHERE id = $1",
        &[SqlValue::Int(journal_id)],
    )?;
    let Some(row) = rows.pop() else {
        return Ok(None);
    };
    let mut row = row.into_iter();
    let state = row
        .next()
        .and_then(SqlValue::into_string)
        .unwrap_or_default();
    let error = row.next().and_then(SqlValue::into_string);
    Ok(match state.as_str() {
        "failed" => Some(Outcome::MappingFailed(error.unwrap_or_default())),
        "unrouted" => Some(Outcome::Unrouted),
        "routed" => {
            let deliveries = sql
                .query(
                    "SELECT target, state, last_status, last_error, last_error_code,
                        last_error_location FROM outbox
                     WHERE journal_id = $1 ORDER BY id",
                    &[SqlValue::Int(journal_id)],
                )?
                .into_iter()
                .filter_map(delivery_outcome)
                .collect();
            Some(Outcome::Routed(deliveries))
        }
        _ => None,
    })
}

fn delivery_outcome(row: SqlRow) -> Option<DeliveryOutcome> {
    let mut row = row.into_iter();
    Some(DeliveryOutcome {
        target: row.next()?.into_string()?,
        state: row.next()?.into_string()?,
        last_status: row.next().and_then(|v| v.as_i64()),
        last_error: row.next().and_then(SqlValue::into_string),
        reason: crate::AttemptReason {
            code: row.next().and_then(SqlValue::into_string),
            location: row.next().and_then(SqlValue::into_string),
        },
    })
}
