//! Backups of the embedded store and their restoration: `passerelle
//! backup` copies the SQLite database while a gateway runs on it, in one
//! read transaction (a consistent snapshot that never blocks the
//! gateway's writer in WAL mode, and a compact file: `VACUUM INTO` for a
//! plain store, SQLCipher's `sqlcipher_export` into a file encrypted with
//! the store's key for an encrypted one), and `passerelle restore` checks
//! a copy before it becomes a data directory.
//! Files are made 0600 and a directory made here 0700: they hold health
//! data. PostgreSQL deployments back up with PostgreSQL's own tools.

use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use crate::encryption::{unlock, StoreKey};
use crate::{StorageError, DATABASE_FILE};

/// Why a backup or a restoration did not happen.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: no Passerelle database here ({DATABASE_FILE} is missing)")]
    NoDatabase { path: PathBuf },
    #[error("{path} exists already: a backup or restoration never overwrites a file")]
    Exists { path: PathBuf },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What a backup or a restored directory holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contents {
    /// Journaled messages.
    pub messages: i64,
    /// Resources of the FHIR repository (current versions, deletions
    /// included).
    pub resources: i64,
    /// The migration the database is at.
    pub schema_version: i64,
}

/// Copies the database of `data_dir` into the new file `to` (0600), while
/// a gateway may be writing to it; returns what the copy holds. With
/// `key` (an encrypted store) the copy is encrypted with the same key.
pub fn backup(data_dir: &Path, to: &Path, key: Option<&StoreKey>) -> Result<Contents, BackupError> {
    let source = data_dir.join(DATABASE_FILE);
    if !source.is_file() {
        return Err(BackupError::NoDatabase {
            path: data_dir.to_path_buf(),
        });
    }
    // What the journal acknowledged and its inbox still holds goes into
    // the database first, so that the copy has it.
    crate::sqlite::absorb_inbox(data_dir, key)?;
    // Made empty and private first: SQLite writes into it without
    // changing its mode, so the copy is never readable by others, even
    // while it is written.
    reserve_private_file(to)?;
    let connection = Connection::open(&source).map_err(|source_error| StorageError::Open {
        path: source.clone(),
        source: source_error,
    })?;
    let copied = unlock(&connection, &source, key).and_then(|()| {
        connection.busy_timeout(std::time::Duration::from_secs(30))?;
        let target = to.to_string_lossy().into_owned();
        match key {
            // VACUUM INTO refuses a target that holds anything; the
            // reserved file is empty, which it accepts.
            None => connection.execute("VACUUM INTO ?1", [&target]).map(drop)?,
            // SQLCipher's VACUUM INTO would write the copy in clear (or
            // not at all): the copy is attached under the key and filled
            // in one read transaction of the source, its snapshot.
            Some(key) => {
                connection.execute(
                    &format!("ATTACH DATABASE ?1 AS copy KEY {}", key.literal()),
                    [&target],
                )?;
                connection.execute_batch("BEGIN")?;
                let version: i64 =
                    connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
                connection.query_row("SELECT sqlcipher_export('copy')", [], |_| Ok(()))?;
                connection.pragma_update(Some("copy"), "user_version", version)?;
                connection.execute_batch("COMMIT")?;
                connection.execute("DETACH DATABASE copy", [])?;
            }
        }
        Ok(())
    });
    drop(connection);
    if let Err(error) = copied {
        let _ = std::fs::remove_file(to);
        return Err(BackupError::Storage(error));
    }
    check(to, key)
}

/// Makes `data_dir` (0700, created when missing; it must hold no
/// database) from the backup `from`, after checking the backup whole;
/// returns what it holds. The gateway migrates it on its next start.
/// A backup of an encrypted store is read with `key`, the store's.
pub fn restore(
    from: &Path,
    data_dir: &Path,
    key: Option<&StoreKey>,
) -> Result<Contents, BackupError> {
    let contents = check(from, key)?;
    let target = data_dir.join(DATABASE_FILE);
    // A journal inbox left there would be absorbed into the restored
    // database: messages of another store.
    for existing in [target.clone(), data_dir.join(crate::inbox::INBOX_FILE)] {
        if existing.exists() {
            return Err(BackupError::Exists { path: existing });
        }
    }
    if !data_dir.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(|source| BackupError::Io {
                path: data_dir.to_path_buf(),
                source,
            })?;
    }
    // Copied beside, then renamed: a restoration cut short leaves no
    // half database where a gateway would open it.
    let partial = data_dir.join(format!("{DATABASE_FILE}.restoring"));
    reserve_private_file(&partial)?;
    let copied = std::fs::copy(from, &partial)
        .and_then(|_| std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o600)))
        .and_then(|()| std::fs::rename(&partial, &target));
    if let Err(source) = copied {
        let _ = std::fs::remove_file(&partial);
        return Err(BackupError::Io {
            path: target,
            source,
        });
    }
    Ok(contents)
}

/// Reads a backup whole: SQLite's integrity check, a schema this version
/// knows, and its counts.
fn check(path: &Path, key: Option<&StoreKey>) -> Result<Contents, BackupError> {
    let invalid = |message: String| BackupError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let connection = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|error| invalid(format!("not a database: {error}")))?;
    unlock(&connection, path, key).map_err(|error| match error {
        StorageError::Encrypted { .. } => {
            invalid("encrypted (or not a database): give the store's key".into())
        }
        StorageError::WrongKey { .. } => invalid("the configured key does not open it".into()),
        StorageError::NotEncrypted { .. } => invalid(
            "not encrypted, but [storage] asks for encryption: restore it without a key, then encrypt with `passerelle storage rekey`".into(),
        ),
        other => invalid(format!("not a database: {other}")),
    })?;
    let integrity: String = connection
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .map_err(|error| invalid(format!("not a database: {error}")))?;
    if integrity != "ok" {
        return Err(invalid(format!("damaged: {integrity}")));
    }
    let schema_version: i64 = connection
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|error| invalid(error.to_string()))?;
    let known = crate::sqlite::schema_version();
    if schema_version < 1 || schema_version > known {
        return Err(invalid(format!(
            "schema version {schema_version}: this Passerelle knows versions 1 to {known}"
        )));
    }
    let count = |table: &str| -> Result<i64, BackupError> {
        connection
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                row.get(0)
            })
            .map_err(|error| invalid(format!("no {table} table: {error}")))
    };
    Ok(Contents {
        messages: count("journal")?,
        resources: count("fhir_resources")?,
        schema_version,
    })
}

/// Creates `path` empty with mode 0600, refusing an existing file.
fn reserve_private_file(path: &Path) -> Result<(), BackupError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                BackupError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                BackupError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    /// A data directory the store makes is its owner's alone, and so are
    /// the database and the WAL and shared-memory files SQLite adds.
    #[test]
    fn a_new_data_directory_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let store = crate::sqlite::SqliteStore::open(&data).unwrap();
        store
            .journal_commit(&[crate::suite::entry("P1", "P1")])
            .unwrap();
        let mode = |name: &str| {
            std::fs::metadata(data.join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(""), 0o700);
        assert_eq!(mode(DATABASE_FILE), 0o600);
        assert_eq!(mode(&format!("{DATABASE_FILE}-wal")), 0o600);
        assert_eq!(mode(&format!("{DATABASE_FILE}-shm")), 0o600);
    }

    #[test]
    fn a_backup_restores_into_a_new_directory_and_nothing_is_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live");
        let store = crate::sqlite::SqliteStore::open(&live).unwrap();
        store
            .journal_commit(&[crate::suite::entry("B1", "B1")])
            .unwrap();
        let copy = dir.path().join("backup.db");
        let contents = backup(&live, &copy, None).unwrap();
        assert_eq!(contents.messages, 1);
        assert_eq!(
            std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(matches!(
            backup(&live, &copy, None),
            Err(BackupError::Exists { .. })
        ));

        let restored = dir.path().join("restored");
        assert_eq!(restore(&copy, &restored, None).unwrap().messages, 1);
        assert_eq!(
            std::fs::metadata(&restored).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert!(matches!(
            restore(&copy, &restored, None),
            Err(BackupError::Exists { .. })
        ));
        let reopened = crate::sqlite::SqliteStore::open(&restored).unwrap();
        assert!(reopened.message(1).unwrap().is_some());

        // Not a database, or a damaged one: refused with the file named.
        let garbage = dir.path().join("garbage.db");
        std::fs::write(&garbage, b"not sqlite at all, just bytes").unwrap();
        let error = restore(&garbage, &dir.path().join("other"), None).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with(&garbage.display().to_string()),
            "{error}"
        );
        assert!(!dir.path().join("other").join(DATABASE_FILE).exists());
        assert!(matches!(
            backup(&dir.path().join("nothing"), &dir.path().join("x.db"), None),
            Err(BackupError::NoDatabase { .. })
        ));
    }

    /// The backup of an encrypted store is encrypted with its key: no
    /// byte of the message in clear, unreadable without the key, restored
    /// with it.
    #[test]
    fn the_backup_of_an_encrypted_store_is_encrypted() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live");
        let key = StoreKey::new("passphrase of the backup test");
        let store = crate::sqlite::SqliteStore::open_with_key(&live, Some(&key)).unwrap();
        let mut entry = crate::suite::entry("K1", "K1");
        entry.raw = b"MSH|^~\\&|LAB|SITE\rPID|||1^^^X||SAUVEGARDE^ODILE".to_vec();
        store.journal_commit(&[entry]).unwrap();
        let copy = dir.path().join("backup.db");
        assert_eq!(backup(&live, &copy, Some(&key)).unwrap().messages, 1);
        let bytes = std::fs::read(&copy).unwrap();
        assert!(!bytes.windows(10).any(|w| w == b"SAUVEGARDE"));
        assert!(!crate::encryption::is_plain(&copy));

        let error = restore(&copy, &dir.path().join("nokey"), None).unwrap_err();
        assert!(error.to_string().contains("encrypted"), "{error}");
        let other = StoreKey::new("another one");
        let error = restore(&copy, &dir.path().join("other"), Some(&other)).unwrap_err();
        assert!(error.to_string().contains("does not open"), "{error}");

        let restored = dir.path().join("restored");
        assert_eq!(restore(&copy, &restored, Some(&key)).unwrap().messages, 1);
        let reopened = crate::sqlite::SqliteStore::open_with_key(&restored, Some(&key)).unwrap();
        assert_eq!(reopened.message(1).unwrap().unwrap().sha256, "K1");
    }
}
