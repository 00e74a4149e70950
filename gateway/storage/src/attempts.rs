//! Recording delivery attempts: an outbox row moved on and its attempt kept
//! in its history. Written
//! once on the [`Sql`] surface, for both backends, so that a caller can
//! record inside a transaction of its own: the local target records its
//! deliveries in the transaction that writes the Bundles to the repository
//! (a crash cannot keep the one without the other).

use crate::audit::AuditRecord;
use crate::sql::{Sql, SqlValue};
use crate::{bounded_detail, Attempt, Delivery, StorageError};

/// Records `attempt` on `delivery` and moves its outbox row on. Returns
/// false when the row was no longer leased to `owner` (the attempt is
/// recorded, the state is left to the new owner).
pub fn record(
    sql: &mut dyn Sql,
    delivery: &Delivery,
    owner: &str,
    attempt: &Attempt,
    now_ms: i64,
) -> Result<bool, StorageError> {
    let detail = match attempt.detail.as_deref() {
        Some(detail) => SqlValue::Text(bounded_detail(detail)),
        None => SqlValue::Null,
    };
    let status = attempt
        .status
        .map_or(SqlValue::Null, |status| SqlValue::Int(i64::from(status)));
    let (state, next) = attempt.result.outbox_transition(now_ms);
    let text = |value: &Option<String>| match value {
        Some(value) => SqlValue::Text(bounded_detail(value)),
        None => SqlValue::Null,
    };
    let updated = sql.execute(
        "UPDATE outbox SET state = $3, next_attempt_at_ms = $4, lease_owner = NULL,
            lease_until_ms = NULL, last_status = $5, last_error = $6, last_error_code = $7,
            last_error_location = $8
         WHERE id = $1 AND state = 'in_flight' AND lease_owner = $2",
        &[
            SqlValue::Int(delivery.outbox_id),
            SqlValue::from(owner),
            SqlValue::from(state),
            SqlValue::Int(next),
            status.clone(),
            detail.clone(),
            text(&attempt.reason.code),
            text(&attempt.reason.location),
        ],
    )?;
    let result = if updated == 1 {
        attempt.result.label()
    } else {
        "lease_lost"
    };
    sql.execute(
        "INSERT INTO delivery_attempts (outbox_id, attempt, started_at_ms, latency_ms, status,
            result, instance, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            SqlValue::Int(delivery.outbox_id),
            SqlValue::Int(i64::from(delivery.attempt)),
            SqlValue::Int(attempt.started_at_ms),
            SqlValue::Int(attempt.latency_ms),
            status,
            SqlValue::from(result),
            SqlValue::from(owner),
            detail,
        ],
    )?;
    Ok(updated == 1)
}

/// [`record`], with the attempt's audit `records` appended.
pub fn record_audited(
    sql: &mut dyn Sql,
    delivery: &Delivery,
    owner: &str,
    attempt: &Attempt,
    now_ms: i64,
    records: &[AuditRecord],
) -> Result<bool, StorageError> {
    let owned = record(sql, delivery, owner, attempt, now_ms)?;
    crate::audit::append_in(sql, records)?;
    Ok(owned)
}

/// Delivery to the `local` target: records each attempt as delivered, then
/// appends the deliveries' audit `records`. Returns how many rows were
/// still leased to `owner`. The Bundle is not copied: the outbox row keeps
/// it (until retention), and the repository holds what it wrote. (Earlier
/// versions kept a copy in `local_bundles`, about a tenth of the bytes
/// a delivered message wrote; retention and erasure still remove the
/// copies they left.)
pub fn record_local(
    sql: &mut dyn Sql,
    deliveries: &[&Delivery],
    owner: &str,
    now_ms: i64,
    records: &[AuditRecord],
) -> Result<usize, StorageError> {
    let attempt = Attempt::stored_locally(now_ms);
    let mut owned = 0;
    for delivery in deliveries {
        owned += usize::from(record(sql, delivery, owner, &attempt, now_ms)?);
    }
    crate::audit::append_in(sql, records)?;
    Ok(owned)
}
