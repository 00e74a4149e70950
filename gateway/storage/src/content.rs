//! What one message held and became: its bytes as received (with the
//! charset they were read in) and the Bundle mapped for each of its
//! deliveries, for `passerelle messages show` and the admin API. Written
//! once on the [`Sql`](crate::sql::Sql) surface for both backends.

use serde::Serialize;

use crate::sql::{SqlRow, SqlValue};
use crate::{StorageError, Store};

/// A journaled message's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageContent {
    /// The bytes as they arrived (after the MLLP envelope or HTTP body).
    pub raw: Vec<u8>,
    /// The charset they were read in (an MSH-18 name).
    pub charset: String,
    /// The Bundle of each delivery, in delivery order.
    pub bundles: Vec<MappedBundle>,
}

/// The Bundle one delivery carries (or carried) to its target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MappedBundle {
    pub outbox_id: i64,
    pub route: String,
    pub target: String,
    /// The JSON text as stored, numbers with their digits.
    pub bundle: String,
}

/// The content of message `journal_id`, `None` when there is no such
/// message (or it was purged).
pub fn message_content(
    store: &dyn Store,
    journal_id: i64,
) -> Result<Option<MessageContent>, StorageError> {
    store.settle()?;
    crate::read(store, |sql| {
        let mut header = sql.query(
            "SELECT raw, charset FROM journal WHERE id = $1",
            &[SqlValue::Int(journal_id)],
        )?;
        let Some(row) = header.pop() else {
            return Ok(None);
        };
        let mut row = row.into_iter();
        let raw = row
            .next()
            .and_then(SqlValue::into_bytes)
            .unwrap_or_default();
        let charset = row
            .next()
            .and_then(SqlValue::into_string)
            .unwrap_or_default();
        let bundles = sql
            .query(
                "SELECT id, route, target, bundle FROM outbox WHERE journal_id = $1 ORDER BY id",
                &[SqlValue::Int(journal_id)],
            )?
            .into_iter()
            .filter_map(mapped_bundle)
            .collect();
        Ok(Some(MessageContent {
            raw,
            charset,
            bundles,
        }))
    })
}

fn mapped_bundle(row: SqlRow) -> Option<MappedBundle> {
    let mut row = row.into_iter();
    Some(MappedBundle {
        outbox_id: row.next()?.as_i64()?,
        route: row.next()?.into_string()?,
        target: row.next()?.into_string()?,
        bundle: row.next()?.into_string()?,
    })
}
