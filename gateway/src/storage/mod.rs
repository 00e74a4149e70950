//! Durable state on the embedded default backend: one SQLite database in the
//! data directory, in WAL mode with `synchronous=FULL` so that a committed
//! transaction survives power loss. Owns opening, schema migrations and the
//! readiness probe.

pub mod journal;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

/// File name of the database inside the data directory.
pub const DATABASE_FILE: &str = "passerelle.db";

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot create data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database connection lock poisoned")]
    Poisoned,
}

/// Schema versions, applied in order at open; `user_version` records how far
/// a database has come.
const MIGRATIONS: &[&str] = &[
    // 1: the HL7 v2 journal. One row per accepted message, raw bytes kept.
    "CREATE TABLE journal (
        id INTEGER PRIMARY KEY,
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
        raw BLOB NOT NULL
    );
    CREATE UNIQUE INDEX journal_retransmission
        ON journal (sending_application, sending_facility, control_id, sha256);
    CREATE INDEX journal_control_id ON journal (control_id);",
];

/// A handle on the database; cheap to clone.
#[derive(Clone)]
pub struct Storage {
    path: PathBuf,
    probe: Arc<Mutex<Connection>>,
}

impl Storage {
    pub fn open(data_dir: &Path) -> Result<Storage, StorageError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StorageError::CreateDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(DATABASE_FILE);
        let mut connection = open_connection(&path)?;
        migrate(&mut connection)?;
        Ok(Storage {
            path,
            probe: Arc::new(Mutex::new(connection)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new connection to the same database, for a task that owns its own
    /// (the journal writer).
    pub fn connect(&self) -> Result<Connection, StorageError> {
        open_connection(&self.path)
    }

    /// Succeeds when the database can take a write lock right now.
    pub fn check_writable(&self) -> Result<(), StorageError> {
        let connection = self.probe.lock().map_err(|_| StorageError::Poisoned)?;
        connection.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")?;
        Ok(())
    }
}

fn open_connection(path: &Path) -> Result<Connection, StorageError> {
    let connection = Connection::open(path).map_err(|source| StorageError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    Ok(connection)
}

fn migrate(connection: &mut Connection) -> Result<(), StorageError> {
    let current: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        let transaction = connection.transaction()?;
        transaction.execute_batch(migration)?;
        transaction.pragma_update(None, "user_version", (index + 1) as i64)?;
        transaction.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_migrates_and_is_writable() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        storage.check_writable().unwrap();
        // Opening again must not re-run migrations.
        let again = Storage::open(dir.path()).unwrap();
        again.check_writable().unwrap();
        let connection = again.connect().unwrap();
        let mode: String = connection
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }
}
