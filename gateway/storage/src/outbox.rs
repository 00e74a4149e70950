//! The outbox and the journal rows around it, written once for both
//! backends through [`Sql`]: a batch's mapping outcomes recorded with their
//! outbox rows, leases handed back, when a target's next row falls due,
//! depths, the local target's Bundles, and an administrator's view of the
//! messages (list, journey, replay, retry, purge). What differs per backend
//! stays in `sqlite` and `postgres`: the claims (their locks) and the
//! journal's commit; wake-ups go through [`Sql::notify`].

use crate::sql::{Sql, SqlRow, SqlValue};
use crate::{
    bounded_detail, instant_from_ms, AttemptRecord, DeliverySummary, MappingOutcome, MessageFilter,
    MessageJourney, MessageState, MessageSummary, StorageError, TargetDepth,
};

/// The channel that wakes the mapping stage of every instance.
pub const JOURNAL_CHANNEL: &str = "passerelle_journal";
/// The channel that wakes a target's delivery workers (payload: the target).
pub const OUTBOX_CHANNEL: &str = "passerelle_outbox";

/// Outbox depth per target, every second (`sample_depths`): it reads the
/// undelivered rows only, through their partial index, so it costs the
/// same after ten messages or ten million.
pub(crate) const DEPTHS: &str = "SELECT target,
        sum(CASE WHEN state = 'pending' THEN 1 ELSE 0 END),
        sum(CASE WHEN state = 'in_flight' THEN 1 ELSE 0 END),
        sum(CASE WHEN state = 'dead' THEN 1 ELSE 0 END),
        min(CASE WHEN state IN ('pending', 'in_flight') THEN created_at_ms END)
     FROM outbox WHERE state <> 'delivered' GROUP BY target ORDER BY target";

/// When the next row of a target falls due (a delivery worker's sleep).
pub(crate) const NEXT_DUE: &str = "SELECT min(o.next_attempt_at_ms) FROM outbox o
     WHERE o.target = $1 AND o.state = 'pending'
       AND NOT EXISTS (
           SELECT 1 FROM outbox p
           WHERE p.target = o.target AND p.patient_key = o.patient_key
             AND p.journal_id < o.journal_id AND p.state IN ('pending', 'in_flight'))";

/// A mapped Bundle becomes a pending row; a row for the same message and
/// target that is not in flight is replaced (a replay), keeping its place.
const UPSERT_DELIVERY: &str = "INSERT INTO outbox (journal_id, route, target, patient_key,
        state, attempts, next_attempt_at_ms, created_at_ms, bundle)
     VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5, $6)
     ON CONFLICT (journal_id, target) DO UPDATE SET
        route = excluded.route, patient_key = excluded.patient_key,
        state = 'pending', attempts = 0, next_attempt_at_ms = excluded.next_attempt_at_ms,
        lease_owner = NULL, lease_until_ms = NULL, last_status = NULL,
        last_error = NULL, last_error_code = NULL,
        last_error_location = NULL, bundle = excluded.bundle
     WHERE outbox.state <> 'in_flight'";

const END_MAPPING: &str = "UPDATE journal SET state = $2, mapping_error = $3, mapped_at_ms = $4,
        lease_owner = NULL, lease_until_ms = NULL
     WHERE id = $1";

/// See [`crate::Store::record_mappings`].
pub fn record_mappings(
    sql: &mut dyn Sql,
    outcomes: &[(i64, MappingOutcome)],
    now_ms: i64,
) -> Result<(), StorageError> {
    let mut targets: Vec<&str> = Vec::new();
    for (journal_id, outcome) in outcomes {
        let (state, error) = match outcome {
            MappingOutcome::Routed(deliveries) => {
                for delivery in deliveries {
                    sql.execute(
                        UPSERT_DELIVERY,
                        &[
                            SqlValue::Int(*journal_id),
                            delivery.route.as_str().into(),
                            delivery.target.as_str().into(),
                            delivery.patient_key.as_str().into(),
                            SqlValue::Int(now_ms),
                            delivery.bundle.as_str().into(),
                        ],
                    )?;
                    if !targets.contains(&delivery.target.as_str()) {
                        targets.push(&delivery.target);
                    }
                }
                ("routed", SqlValue::Null)
            }
            MappingOutcome::Failed { reason } => ("failed", bounded_detail(reason).into()),
            MappingOutcome::Unrouted => ("unrouted", SqlValue::Null),
        };
        sql.execute(
            END_MAPPING,
            &[
                SqlValue::Int(*journal_id),
                state.into(),
                error,
                SqlValue::Int(now_ms),
            ],
        )?;
    }
    for target in targets {
        sql.notify(OUTBOX_CHANNEL, target)?;
    }
    Ok(())
}

/// See [`crate::Store::release_leases`].
pub fn release_leases(sql: &mut dyn Sql, owner: &str) -> Result<u64, StorageError> {
    let outbox = sql.execute(
        "UPDATE outbox SET state = 'pending', lease_owner = NULL, lease_until_ms = NULL
         WHERE state = 'in_flight' AND lease_owner = $1",
        &[owner.into()],
    )?;
    sql.execute(
        "UPDATE journal SET state = 'received', lease_owner = NULL, lease_until_ms = NULL
         WHERE state = 'mapping' AND lease_owner = $1",
        &[owner.into()],
    )?;
    Ok(outbox)
}

/// See [`crate::Store::next_due`].
pub fn next_due(sql: &mut dyn Sql, target: &str) -> Result<Option<i64>, StorageError> {
    let rows = sql.query(NEXT_DUE, &[target.into()])?;
    Ok(rows
        .into_iter()
        .next()
        .and_then(|row| row.into_iter().next())
        .and_then(|value| value.as_i64()))
}

/// See [`crate::Store::depths`].
pub fn depths(sql: &mut dyn Sql, now_ms: i64) -> Result<Vec<TargetDepth>, StorageError> {
    sql.query(DEPTHS, &[])?
        .into_iter()
        .map(|row| {
            decode(row, "outbox depth", |row| {
                Some(TargetDepth {
                    target: row.next()?.into_string()?,
                    pending: row.next()?.as_i64().unwrap_or(0),
                    in_flight: row.next()?.as_i64().unwrap_or(0),
                    dead: row.next()?.as_i64().unwrap_or(0),
                    oldest_pending_age_ms: row
                        .next()?
                        .as_i64()
                        .map_or(0, |created| (now_ms - created).max(0)),
                })
            })
        })
        .collect()
}

/// See [`crate::Store::delivered_bundles`].
pub fn delivered_bundles(
    sql: &mut dyn Sql,
    target: &str,
    limit: usize,
) -> Result<Vec<String>, StorageError> {
    // The limit written as a number: SQLite plans a bound LIMIT with its
    // value, so a bound one prepares the statement again at every call.
    sql.query(
        &format!(
            "SELECT bundle FROM outbox WHERE target = $1 AND state = 'delivered' AND bundle <> ''
             ORDER BY id LIMIT {limit}"
        ),
        &[SqlValue::from(target)],
    )?
    .into_iter()
    .map(|row| decode(row, "delivered bundle", |row| row.next()?.into_string()))
    .collect()
}

/// See [`crate::Store::list_messages`]: journal rows matching the filter,
/// newest first, each with its deliveries.
pub fn list_messages(
    sql: &mut dyn Sql,
    filter: &MessageFilter,
) -> Result<Vec<MessageSummary>, StorageError> {
    let mut conditions = Vec::new();
    let mut values: Vec<SqlValue> = Vec::new();
    let delivery_state = filter
        .state
        .as_deref()
        .filter(|state| MessageState::parse(state).is_none());
    if let Some(state) = &filter.state {
        values.push(state.as_str().into());
        let n = values.len();
        if delivery_state.is_none() {
            conditions.push(format!("j.state = ${n}"));
        } else {
            let target = match &filter.target {
                Some(target) => {
                    values.push(target.as_str().into());
                    format!(" AND o.target = ${}", values.len())
                }
                None => String::new(),
            };
            conditions.push(format!(
                "EXISTS (SELECT 1 FROM outbox o WHERE o.journal_id = j.id AND o.state = ${n}{target})"
            ));
        }
    }
    if let (Some(target), None) = (&filter.target, delivery_state) {
        values.push(target.as_str().into());
        conditions.push(format!(
            "EXISTS (SELECT 1 FROM outbox o WHERE o.journal_id = j.id AND o.target = ${})",
            values.len()
        ));
    }
    if let Some(since) = &filter.since {
        values.push(since.as_str().into());
        conditions.push(format!("j.received_at >= ${}", values.len()));
    }
    if let Some(until) = &filter.until {
        values.push(until.as_str().into());
        conditions.push(format!("j.received_at < ${}", values.len()));
    }
    if let Some(before) = filter.before_id {
        values.push(SqlValue::Int(before));
        conditions.push(format!("j.id < ${}", values.len()));
    }
    let condition = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let limit = filter.limit.clamp(1, 1000);
    let statement = format!(
        "SELECT j.id, j.received_at, j.transport, j.control_id, j.message_type, j.state
         FROM journal j {condition} ORDER BY j.id DESC LIMIT {limit}"
    );
    let mut messages = sql
        .query(&statement, &values)?
        .into_iter()
        .map(|row| {
            decode(row, "journal row", |row| {
                Some(MessageSummary {
                    id: row.next()?.as_i64()?,
                    received_at: row.next()?.into_string()?,
                    transport: row.next()?.into_string()?,
                    control_id: row.next()?.into_string()?,
                    message_type: row.next()?.into_string()?,
                    state: row.next()?.into_string()?,
                    deliveries: Vec::new(),
                })
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    for message in &mut messages {
        message.deliveries = sql
            .query(
                "SELECT id, route, target, state, attempts, next_attempt_at_ms, last_status,
                    last_error
                 FROM outbox WHERE journal_id = $1 ORDER BY target",
                &[SqlValue::Int(message.id)],
            )?
            .into_iter()
            .map(|row| {
                decode(row, "outbox row", |row| {
                    let outbox_id = row.next()?.as_i64()?;
                    let route = row.next()?.into_string()?;
                    let target = row.next()?.into_string()?;
                    let state = row.next()?.into_string()?;
                    let attempts = row.next()?.as_i64()?;
                    let next = row.next()?.as_i64()?;
                    Some(DeliverySummary {
                        outbox_id,
                        route,
                        target,
                        next_attempt_at: (state == "pending").then(|| instant_from_ms(next)),
                        state,
                        attempts,
                        last_status: row.next()?.as_i64(),
                        last_error: row.next()?.into_string(),
                    })
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
    }
    Ok(messages)
}

/// See [`crate::Store::message`].
pub fn message(sql: &mut dyn Sql, journal_id: i64) -> Result<Option<MessageJourney>, StorageError> {
    let Some(header) = sql
        .query(
            "SELECT sending_application, sending_facility, sha256, mapping_error, mapped_at_ms
             FROM journal WHERE id = $1",
            &[SqlValue::Int(journal_id)],
        )?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    let (sending_application, sending_facility, sha256, mapping_error, mapped_at) =
        decode(header, "journal row", |row| {
            Some((
                row.next()?.into_string()?,
                row.next()?.into_string()?,
                row.next()?.into_string()?,
                row.next()?.into_string(),
                row.next()?.as_i64(),
            ))
        })?;
    let filter = MessageFilter {
        before_id: Some(journal_id + 1),
        limit: 1,
        ..MessageFilter::default()
    };
    let Some(summary) = list_messages(sql, &filter)?.into_iter().next() else {
        return Ok(None);
    };
    let attempts = sql
        .query(
            "SELECT a.outbox_id, o.target, a.attempt, a.started_at_ms, a.latency_ms, a.status,
                a.result, a.instance, a.detail
             FROM delivery_attempts a JOIN outbox o ON o.id = a.outbox_id
             WHERE o.journal_id = $1 ORDER BY a.id",
            &[SqlValue::Int(journal_id)],
        )?
        .into_iter()
        .map(|row| {
            decode(row, "delivery attempt", |row| {
                Some(AttemptRecord {
                    outbox_id: row.next()?.as_i64()?,
                    target: row.next()?.into_string()?,
                    attempt: row.next()?.as_i64()?,
                    at: instant_from_ms(row.next()?.as_i64()?),
                    latency_ms: row.next()?.as_i64()?,
                    status: row.next()?.as_i64(),
                    result: row.next()?.into_string()?,
                    instance: row.next()?.into_string()?,
                    detail: row.next()?.into_string(),
                })
            })
        })
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

/// See [`crate::Store::replay`].
pub fn replay(sql: &mut dyn Sql, journal_ids: &[i64]) -> Result<u64, StorageError> {
    let mut count = 0;
    for id in journal_ids {
        count += sql.execute(
            "UPDATE journal SET state = 'received', mapping_error = NULL,
                lease_owner = NULL, lease_until_ms = NULL
             WHERE id = $1 AND state <> 'mapping'",
            &[SqlValue::Int(*id)],
        )?;
    }
    if count > 0 {
        sql.notify(JOURNAL_CHANNEL, "")?;
    }
    Ok(count)
}

/// See [`crate::Store::retry_dead`].
pub fn retry_dead(
    sql: &mut dyn Sql,
    target: Option<&str>,
    outbox_ids: &[i64],
    now_ms: i64,
) -> Result<u64, StorageError> {
    // The target's condition is written only when there is one: a NULL
    // parameter has no type PostgreSQL could infer. Its parameter is the
    // last one.
    let of_target = |n: usize| match target {
        Some(_) => format!(" AND target = ${n}"),
        None => String::new(),
    };
    let with_target = |mut params: Vec<SqlValue>| {
        params.extend(target.map(SqlValue::from));
        params
    };
    if outbox_ids.is_empty() {
        return sql.execute(
            &format!(
                "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at_ms = $1
                 WHERE state = 'dead'{}",
                of_target(2)
            ),
            &with_target(vec![SqlValue::Int(now_ms)]),
        );
    }
    let statement = format!(
        "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at_ms = $1
         WHERE id = $2 AND state = 'dead'{}",
        of_target(3)
    );
    let mut count = 0;
    for id in outbox_ids {
        count += sql.execute(
            &statement,
            &with_target(vec![SqlValue::Int(now_ms), SqlValue::Int(*id)]),
        )?;
    }
    Ok(count)
}

/// See [`crate::Store::purge`].
pub fn purge(sql: &mut dyn Sql, before: &str, include_dead: bool) -> Result<u64, StorageError> {
    let over = if include_dead {
        "('delivered', 'dead')"
    } else {
        "('delivered')"
    };
    // The local target's Bundles are delivered data, not message history:
    // a purge leaves them.
    sql.execute(
        &format!(
            "DELETE FROM journal WHERE received_at < $1
               AND state IN ('routed', 'unrouted')
               AND NOT EXISTS (SELECT 1 FROM outbox o
                   WHERE o.journal_id = journal.id AND o.state NOT IN {over})"
        ),
        &[before.into()],
    )
}

/// A row read with `read`; a row it cannot read (a column of another type
/// than the schema's) is an inconsistency, not a silent gap.
fn decode<T>(
    row: SqlRow,
    what: &str,
    read: impl FnOnce(&mut std::vec::IntoIter<SqlValue>) -> Option<T>,
) -> Result<T, StorageError> {
    read(&mut row.into_iter())
        .ok_or_else(|| StorageError::Inconsistent(format!("unexpected columns in a {what}")))
}
