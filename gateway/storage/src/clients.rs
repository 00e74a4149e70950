//! The API clients added from the command line (`passerelle clients
//! add`): name, key verifier (never the key), networks and scopes, written
//! once for both backends through [`Sql`]. A revoked client keeps its row,
//! with the time of revocation, so who held a key stays answerable.

use crate::audit::AuditRecord;
use crate::sql::{Sql, SqlValue};
use crate::{instant_from_ms, StorageError, Store};

/// A client as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredClient {
    pub name: String,
    pub key_id: String,
    /// `<key id>$pbkdf2-sha256$...`
    pub verifier: String,
    pub networks: Vec<String>,
    pub scopes: Vec<String>,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientStoreError {
    #[error("a client named `{0}` already exists (revoke it first, or choose another name)")]
    Duplicate(String),
    #[error("no client named `{0}`")]
    Unknown(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

fn words(value: &SqlValue) -> Vec<String> {
    value
        .as_str()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn from_row(row: &[SqlValue]) -> Option<StoredClient> {
    Some(StoredClient {
        name: row.first()?.as_str()?.to_string(),
        key_id: row.get(1)?.as_str()?.to_string(),
        verifier: row.get(2)?.as_str()?.to_string(),
        networks: words(row.get(3)?),
        scopes: words(row.get(4)?),
        created_at: row.get(5)?.as_str()?.to_string(),
        revoked_at: row.get(6).and_then(SqlValue::as_str).map(str::to_string),
    })
}

/// The table, the same DDL on both backends (each lists it in its own
/// migration history).
pub(crate) const SCHEMA: &str = "CREATE TABLE api_clients (
    name TEXT PRIMARY KEY,
    key_id TEXT NOT NULL UNIQUE,
    verifier TEXT NOT NULL,
    networks TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);";

const COLUMNS: &str = "name, key_id, verifier, networks, scopes, created_at, revoked_at";

/// Adds a client; a live client of the same name is refused. A revoked
/// one of that name is replaced (its key no longer works either way).
pub fn add(store: &dyn Store, client: &StoredClient) -> Result<(), ClientStoreError> {
    add_recorded(store, client, None)
}

/// [`add`], with the audit `record` of the addition appended in the same
/// transaction (nothing is appended when the client is refused).
pub fn add_recorded(
    store: &dyn Store,
    client: &StoredClient,
    record: Option<&AuditRecord>,
) -> Result<(), ClientStoreError> {
    let mut duplicate = false;
    store.sql_write(&mut |sql: &mut dyn Sql| {
        let existing = sql.query(
            "SELECT revoked_at FROM api_clients WHERE name = $1",
            &[client.name.as_str().into()],
        )?;
        if let Some(row) = existing.first() {
            if row.first().and_then(SqlValue::as_str).is_none() {
                duplicate = true;
                return Ok(false);
            }
            sql.execute(
                "DELETE FROM api_clients WHERE name = $1",
                &[client.name.as_str().into()],
            )?;
        }
        sql.execute(
            "INSERT INTO api_clients (name, key_id, verifier, networks, scopes, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                client.name.as_str().into(),
                client.key_id.as_str().into(),
                client.verifier.as_str().into(),
                client.networks.join(" ").into(),
                client.scopes.join(" ").into(),
                client.created_at.as_str().into(),
            ],
        )?;
        if let Some(record) = record {
            crate::audit::append_in(sql, std::slice::from_ref(record))?;
        }
        Ok(true)
    })?;
    if duplicate {
        return Err(ClientStoreError::Duplicate(client.name.clone()));
    }
    Ok(())
}

/// Every client, revoked ones included, by name.
pub fn list(store: &dyn Store) -> Result<Vec<StoredClient>, StorageError> {
    crate::read(store, |sql| {
        let rows = sql.query(
            &format!("SELECT {COLUMNS} FROM api_clients ORDER BY name"),
            &[],
        )?;
        Ok(rows.iter().filter_map(|row| from_row(row)).collect())
    })
}

/// Revokes a client's key from now on.
pub fn revoke(store: &dyn Store, name: &str, now_ms: i64) -> Result<(), ClientStoreError> {
    revoke_recorded(store, name, now_ms, None)
}

/// [`revoke`], with the audit `record` of the revocation appended in the
/// same transaction (nothing is appended when there is no such client).
pub fn revoke_recorded(
    store: &dyn Store,
    name: &str,
    now_ms: i64,
    record: Option<&AuditRecord>,
) -> Result<(), ClientStoreError> {
    let mut changed = 0;
    store.sql_write(&mut |sql: &mut dyn Sql| {
        changed = sql.execute(
            "UPDATE api_clients SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL",
            &[instant_from_ms(now_ms).into(), name.into()],
        )?;
        if changed == 0 {
            return Ok(false);
        }
        if let Some(record) = record {
            crate::audit::append_in(sql, std::slice::from_ref(record))?;
        }
        Ok(true)
    })?;
    if changed == 0 {
        return Err(ClientStoreError::Unknown(name.to_string()));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) fn suite(store: &dyn Store) {
    let client = |name: &str, key_id: &str| StoredClient {
        name: name.into(),
        key_id: key_id.into(),
        verifier: format!("{key_id}$pbkdf2-sha256$600000$salt$hash"),
        networks: vec!["cabinet".into(), "labo".into()],
        scopes: vec!["system/Patient.rs".into(), "passerelle/hl7v2".into()],
        created_at: "2026-12-03T10:00:00Z".into(),
        revoked_at: None,
    };
    add(store, &client("lab", "0123456789ab")).unwrap();
    add(store, &client("gp", "ba9876543210")).unwrap();
    assert!(matches!(
        add(store, &client("lab", "aaaaaaaaaaaa")),
        Err(ClientStoreError::Duplicate(_))
    ));
    let listed = list(store).unwrap();
    assert_eq!(
        listed,
        vec![client("gp", "ba9876543210"), client("lab", "0123456789ab")]
    );
    revoke(store, "lab", 0).unwrap();
    assert!(matches!(
        revoke(store, "lab", 0),
        Err(ClientStoreError::Unknown(_))
    ));
    assert!(matches!(
        revoke(store, "nobody", 0),
        Err(ClientStoreError::Unknown(_))
    ));
    let listed = list(store).unwrap();
    assert_eq!(
        listed[1].revoked_at.as_deref(),
        Some("1970-01-01T00:00:00.000Z")
    );
    // A revoked name can be given again, with a new key.
    add(store, &client("lab", "cccccccccccc")).unwrap();
    assert_eq!(list(store).unwrap()[1].key_id, "cccccccccccc");
}
