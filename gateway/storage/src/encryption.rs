//! Encryption at rest of the embedded store: the SQLCipher key every
//! connection to an encrypted database is opened with, how an opening that
//! fails is explained (wrong key, a plain database where an encrypted one
//! is expected, or the reverse), and `rekey`, which rewrites the database
//! under a new key (or encrypts a plain one) while no gateway runs on it.
//!
//! SQLCipher 4's defaults are kept: AES-256 in CBC mode per 4 KiB page,
//! HMAC-SHA512 of every page, PBKDF2-HMAC-SHA512 (256,000 rounds) from a
//! passphrase; the WAL's frames are encrypted like the pages.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::{StorageError, DATABASE_FILE};

/// The first bytes of every unencrypted SQLite database.
const PLAIN_HEADER: &[u8] = b"SQLite format 3\0";

/// The secret of an encrypted store, as `PRAGMA key` takes it: 64
/// hexadecimal digits are a raw 256-bit key (no key derivation: opening
/// is instant), anything else a passphrase.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreKey {
    pragma_text: String,
}

impl StoreKey {
    pub fn new(secret: &str) -> StoreKey {
        let raw = secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit());
        StoreKey {
            pragma_text: if raw {
                format!("x'{secret}'")
            } else {
                secret.to_string()
            },
        }
    }

    /// Keys `connection` (before anything else reads it).
    pub(crate) fn apply(&self, connection: &Connection) -> rusqlite::Result<()> {
        connection.pragma_update(None, "key", &self.pragma_text)
    }

    /// The key as an SQL string literal, for `ATTACH ... KEY`.
    pub(crate) fn literal(&self) -> String {
        format!("'{}'", self.pragma_text.replace('\'', "''"))
    }
}

/// Never printed: a key in a log or an error message is a key given away.
impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreKey(..)")
    }
}

/// Keys a freshly opened connection and proves the key opens the file,
/// turning SQLite's "file is not a database" into what is actually wrong.
pub(crate) fn unlock(
    connection: &Connection,
    path: &Path,
    key: Option<&StoreKey>,
) -> Result<(), StorageError> {
    // SQLCipher's own log writes raw lines to standard error (an HMAC
    // check failing, say), which would break the gateway's JSON log
    // lines; what went wrong reaches the log as the typed error below.
    connection.pragma_update(None, "cipher_log_level", "NONE")?;
    if let Some(key) = key {
        key.apply(connection)?;
    }
    match connection.query_row("SELECT count(*) FROM sqlite_master", [], |row| {
        row.get::<_, i64>(0)
    }) {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(error, _))
            if error.code == rusqlite::ErrorCode::NotADatabase =>
        {
            let plain = is_plain(path);
            Err(match (key, plain) {
                (Some(_), true) => StorageError::NotEncrypted {
                    path: path.to_path_buf(),
                },
                (Some(_), false) => StorageError::WrongKey {
                    path: path.to_path_buf(),
                },
                (None, _) => StorageError::Encrypted {
                    path: path.to_path_buf(),
                },
            })
        }
        Err(error) => Err(error.into()),
    }
}

/// Whether the database file at `path` is stored in clear.
pub fn is_plain(path: &Path) -> bool {
    use std::io::Read;
    let mut header = [0u8; 16];
    std::fs::File::open(path)
        .and_then(|mut file| file.read_exact(&mut header))
        .is_ok_and(|()| header == PLAIN_HEADER)
}

/// Rewrites the database of `data_dir` under `new` (`None`: in clear),
/// opening it with `current` (`None`: it is in clear). The caller holds
/// the data directory's lock: no gateway may run on it meanwhile.
///
/// The new database is written beside the old one and renamed over it
/// once complete and synced: cut short at any point, the directory holds
/// either the old database or the new one, never a mixture.
pub fn rekey(
    data_dir: &Path,
    current: Option<&StoreKey>,
    new: Option<&StoreKey>,
) -> Result<(), StorageError> {
    let path = data_dir.join(DATABASE_FILE);
    if !path.is_file() {
        return Err(io_error(
            &path,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    }
    let open_error = |source| StorageError::Open {
        path: path.clone(),
        source,
    };
    // The journal's inbox goes into the database, then goes: it is made
    // again, under the new key, at the next opening.
    crate::sqlite::absorb_inbox(data_dir, current)?;
    remove_files(data_dir, crate::inbox::INBOX_FILE, &["", "-wal", "-shm"])?;
    let connection = Connection::open(&path).map_err(open_error)?;
    unlock(&connection, &path, current)?;
    // Everything into the main file, so that the WAL left behind is empty.
    connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let partial = data_dir.join(format!("{DATABASE_FILE}.rekeying"));
    // A rewrite cut short before leaves its partial file: never reused.
    match std::fs::remove_file(&partial) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(io_error(&partial, source)),
    }
    create_private_file(&partial)?;
    let literal = new.map_or_else(|| "''".to_string(), StoreKey::literal);
    connection.execute(
        &format!("ATTACH DATABASE ?1 AS rekeyed KEY {literal}"),
        [partial.to_string_lossy().as_ref()],
    )?;
    let exported = connection
        .query_row("SELECT sqlcipher_export('rekeyed')", [], |_| Ok(()))
        .and_then(|()| connection.pragma_update(Some("rekeyed"), "user_version", version))
        .and_then(|()| {
            connection
                .execute("DETACH DATABASE rekeyed", [])
                .map(|_| ())
        });
    drop(connection);
    if let Err(error) = exported {
        let _ = std::fs::remove_file(&partial);
        return Err(error.into());
    }
    sync(&partial)?;
    std::fs::rename(&partial, &path).map_err(|source| io_error(&path, source))?;
    remove_files(data_dir, DATABASE_FILE, &["-wal", "-shm"])?;
    sync(data_dir)?;
    // Proof that the new key opens what was written.
    let check = Connection::open(&path).map_err(open_error)?;
    unlock(&check, &path, new)
}

/// Removes `name` followed by each of `suffixes` from `data_dir`, where
/// present.
fn remove_files(data_dir: &Path, name: &str, suffixes: &[&str]) -> Result<(), StorageError> {
    for suffix in suffixes {
        let file = data_dir.join(format!("{name}{suffix}"));
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(io_error(&file, source)),
        }
    }
    Ok(())
}

fn io_error(path: &Path, source: std::io::Error) -> StorageError {
    StorageError::File {
        path: PathBuf::from(path),
        source,
    }
}

fn create_private_file(path: &Path) -> Result<(), StorageError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|source| io_error(path, source))
}

fn sync(path: &Path) -> Result<(), StorageError> {
    std::fs::File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(|source| io_error(path, source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::SqliteStore;
    use crate::Store;

    const KEY: &str = "5f1c0e6a9b2d4c7e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9012a3b4c5d6e7f";
    const NAME: &[u8] = b"CHIFFREMENT^JEANNE";
    const INS: &[u8] = b"279035121518989";

    fn journal_patient(store: &SqliteStore) {
        let mut entry = crate::suite::entry("E1", "E1");
        entry.raw = b"MSH|^~\\&|LAB|SITE\rPID|||279035121518989^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS||CHIFFREMENT^JEANNE".to_vec();
        store.journal_commit(&[entry]).unwrap();
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    /// Every file of the data directory, read raw (the database, its WAL
    /// while a connection is open, the shared-memory index).
    fn raw_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn an_encrypted_store_holds_no_patient_data_in_clear() {
        let dir = tempfile::tempdir().unwrap();
        let key = StoreKey::new(KEY);
        let store = SqliteStore::open_with_key(dir.path(), Some(&key)).unwrap();
        journal_patient(&store);
        // While open: the message sits in the WAL.
        let files = raw_files(dir.path());
        assert!(files.iter().any(|(name, _)| name.ends_with("-wal")));
        for (name, bytes) in &files {
            assert!(!contains(bytes, NAME), "{name} holds the name in clear");
            assert!(!contains(bytes, INS), "{name} holds the INS in clear");
        }
        assert!(!is_plain(&dir.path().join(DATABASE_FILE)));
        // The journal's inbox, where a message is first written, too.
        assert!(!is_plain(&dir.path().join(crate::inbox::INBOX_FILE)));
        drop(store);
        for (name, bytes) in raw_files(dir.path()) {
            assert!(!contains(&bytes, NAME), "{name} holds the name in clear");
        }
        // The same store, reopened with its key, reads back.
        let store = SqliteStore::open_with_key(dir.path(), Some(&key)).unwrap();
        assert!(store.message(1).unwrap().is_some());
        drop(store);

        // A plain store, for comparison: the check above can fail.
        let plain = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(plain.path()).unwrap();
        journal_patient(&store);
        assert!(raw_files(plain.path())
            .iter()
            .any(|(_, bytes)| contains(bytes, NAME)));
    }

    #[test]
    fn a_store_opened_with_the_wrong_key_or_none_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let key = StoreKey::new(KEY);
        drop(SqliteStore::open_with_key(dir.path(), Some(&key)).unwrap());

        let error = SqliteStore::open(dir.path()).err().unwrap();
        assert!(matches!(error, StorageError::Encrypted { .. }), "{error}");
        assert!(error.to_string().contains("is encrypted"), "{error}");

        let wrong = StoreKey::new("another passphrase");
        let error = SqliteStore::open_with_key(dir.path(), Some(&wrong))
            .err()
            .unwrap();
        assert!(matches!(error, StorageError::WrongKey { .. }), "{error}");
        assert!(!format!("{error} {error:?}").contains("another passphrase"));

        // A plain store where the configuration asks for encryption.
        let plain = tempfile::tempdir().unwrap();
        drop(SqliteStore::open(plain.path()).unwrap());
        let error = SqliteStore::open_with_key(plain.path(), Some(&key))
            .err()
            .unwrap();
        assert!(
            matches!(error, StorageError::NotEncrypted { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("storage rekey"), "{error}");
    }

    #[test]
    fn rekey_rotates_the_key_and_encrypts_a_plain_store() {
        let dir = tempfile::tempdir().unwrap();
        // Plain first, then encrypted by `rekey`.
        let store = SqliteStore::open(dir.path()).unwrap();
        journal_patient(&store);
        drop(store);
        let first = StoreKey::new("first passphrase of the practice");
        rekey(dir.path(), None, Some(&first)).unwrap();
        assert!(!is_plain(&dir.path().join(DATABASE_FILE)));
        for (name, bytes) in raw_files(dir.path()) {
            assert!(!contains(&bytes, NAME), "{name} holds the name in clear");
        }
        assert!(SqliteStore::open(dir.path()).is_err());

        // Rotated: the old key no longer opens it, the new one does, and
        // nothing was lost on the way.
        let second = StoreKey::new(KEY);
        rekey(dir.path(), Some(&first), Some(&second)).unwrap();
        assert!(matches!(
            SqliteStore::open_with_key(dir.path(), Some(&first)).err(),
            Some(StorageError::WrongKey { .. })
        ));
        let store = SqliteStore::open_with_key(dir.path(), Some(&second)).unwrap();
        let message = store.message(1).unwrap().expect("the message survives");
        assert_eq!(message.sha256, "E1");
        drop(store);
        assert!(!dir
            .path()
            .join(format!("{DATABASE_FILE}.rekeying"))
            .exists());

        // A wrong current key changes nothing.
        assert!(matches!(
            rekey(dir.path(), Some(&first), None),
            Err(StorageError::WrongKey { .. })
        ));
        assert!(SqliteStore::open_with_key(dir.path(), Some(&second)).is_ok());
    }
}
