//! Moving the SQLite WAL's frames back into the database file, mostly off
//! the write path.
//!
//! SQLite checkpoints inside the commit that grows the WAL past 1,000
//! pages, on the writer's connection and under the store's one write lock:
//! the journal commit carrying the next ACKs waited while thousands of
//! pages were copied. Here a thread of its own, with its own connection,
//! looks at each WAL every [`INTERVAL`] and runs a `PASSIVE` checkpoint
//! beside the writer when the WAL changed since its last complete one
//! (`PASSIVE` takes no write lock: commits go on while it copies).
//!
//! The writers keep SQLite's own checkpoint (at [`WRITER_CHECKPOINT_PAGES`],
//! the main database's at [`MAIN_WRITER_CHECKPOINT_PAGES`]):
//! by then this thread has copied most frames, so it copies the few left,
//! and only a checkpoint that ends with nothing left to copy lets the next
//! write start the WAL over; one beside a busy writer never does. Without
//! it the WAL grew to 70 MB in a 20,000-message run, and every page read
//! searched its index (window 8 slower; docs/performance.md). When nothing
//! was committed, the look is one `stat` of the WAL file (`WalWatch`): a
//! checkpoint ten times a second, even with nothing to copy, was most of an
//! idle gateway's CPU.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use crate::StorageError;

/// How often the WAL is looked at.
pub const INTERVAL: Duration = Duration::from_millis(100);

/// WAL pages (4 KiB each) past which a writer checkpoints by itself
/// (SQLite's default): what this thread has not yet copied, then the WAL
/// starts over. The journal's inbox keeps it.
pub const WRITER_CHECKPOINT_PAGES: i64 = 1_000;

/// The same threshold for the main database's writer. One batch of local
/// deliveries commits a few thousand pages, so at 1,000 that writer
/// checkpointed after nearly every batch, copying and syncing under its
/// write lock what this thread would have copied beside it (a seventh of
/// the local target's time, docs/performance.md).
pub const MAIN_WRITER_CHECKPOINT_PAGES: i64 = 8_000;

/// The checkpoint thread of one store; stopped and joined when dropped.
pub struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread on `connections`, connections of its own on the
    /// store's database files (the main database and the journal's inbox),
    /// each checkpointed in turn.
    pub fn start(connections: Vec<Connection>) -> Result<Checkpointer, StorageError> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".to_string())
            .spawn(move || run(&connections, &signal))
            .map_err(StorageError::Thread)?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }
}

fn run(connections: &[Connection], stop: &(Mutex<bool>, Condvar)) {
    let mut wals: Vec<WalWatch> = connections
        .iter()
        .map(|connection| WalWatch::new(connection.path()))
        .collect();
    let (stopped, wake) = stop;
    let Ok(mut stopped) = stopped.lock() else {
        return;
    };
    loop {
        stopped = match wake.wait_timeout(stopped, INTERVAL) {
            Ok((stopped, _)) => stopped,
            Err(_) => return,
        };
        if *stopped {
            return;
        }
        for (connection, wal) in connections.iter().zip(wals.iter_mut()) {
            if !wal.needs_checkpoint() {
                continue;
            }
            // Busy (another checkpoint running, e.g. a command line's
            // beside the gateway) or failed: the next look, or the
            // writer's fallback, does it.
            let copied_all = connection
                .prepare_cached("PRAGMA wal_checkpoint(PASSIVE)")
                .and_then(|mut checkpoint| {
                    checkpoint.query_row([], |row| {
                        let busy: i64 = row.get(0)?;
                        let frames: i64 = row.get(1)?;
                        let copied: i64 = row.get(2)?;
                        Ok(busy == 0 && frames == copied)
                    })
                })
                .unwrap_or(false);
            wal.checkpointed(copied_all);
        }
    }
}

/// Whether a database's WAL has anything this thread has not copied, told
/// by the WAL file's modification time: an idle gateway's look costs one
/// `stat` instead of a checkpoint (file locks and the WAL index read ten
/// times a second: about 1 % of a core, docs/performance.md).
struct WalWatch {
    path: Option<std::path::PathBuf>,
    /// The WAL file's (modification time, length) when a checkpoint last
    /// copied every frame; `None` while frames may be left.
    settled: Option<(std::time::SystemTime, u64)>,
    seen: Option<(std::time::SystemTime, u64)>,
}

impl WalWatch {
    fn new(database: Option<&str>) -> WalWatch {
        WalWatch {
            path: database
                .filter(|path| !path.is_empty())
                .map(|path| std::path::PathBuf::from(format!("{path}-wal"))),
            settled: None,
            seen: None,
        }
    }

    /// Whether to checkpoint now: always when the WAL cannot be looked
    /// at, otherwise unless it is as the last complete checkpoint left it.
    fn needs_checkpoint(&mut self) -> bool {
        self.seen = self
            .path
            .as_ref()
            .and_then(|path| std::fs::metadata(path).ok())
            .and_then(|metadata| Some((metadata.modified().ok()?, metadata.len())));
        self.seen.is_none() || self.seen != self.settled
    }

    /// Notes the checkpoint just run: complete, or frames left to copy.
    ///
    /// A commit in the same tick of the file system's clock as the look,
    /// with the WAL's length unchanged, waits for the next commit (or the
    /// writer's own threshold): its frames are durable in the WAL
    /// meanwhile, only not yet copied.
    fn checkpointed(&mut self, copied_all: bool) {
        self.settled = if copied_all { self.seen } else { None };
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (stopped, wake) = &*self.stop;
        if let Ok(mut stopped) = stopped.lock() {
            *stopped = true;
            wake.notify_all();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::sql::SqlValue;
    use crate::sqlite::SqliteStore;
    use crate::Store;

    #[test]
    fn the_wal_is_checkpointed_beside_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let before = std::fs::metadata(store.path()).unwrap().len();
        // 2 MiB, about 520 pages: under the writer's own threshold, so
        // only the checkpoint thread moves them into the database file.
        const MIB: usize = 1 << 20;
        store
            .sql_write(&mut |sql| {
                sql.execute("CREATE TABLE filler (bytes BLOB NOT NULL)", &[])?;
                for _ in 0..2 {
                    sql.execute(
                        "INSERT INTO filler (bytes) VALUES ($1)",
                        &[SqlValue::Bytes(vec![7; MIB])],
                    )?;
                }
                Ok(true)
            })
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(store.path()).unwrap().len() < before + 2 * MIB as u64 {
            assert!(
                Instant::now() < deadline,
                "the WAL was not checkpointed into the database file"
            );
            std::thread::sleep(INTERVAL / 2);
        }
    }

    #[test]
    fn an_unchanged_wal_is_not_checkpointed_again() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("db");
        let wal = dir.path().join("db-wal");
        let mut watch = WalWatch::new(database.to_str());
        // No WAL to look at: checkpoint, as before.
        assert!(watch.needs_checkpoint());
        std::fs::write(&wal, [1; 32]).unwrap();
        assert!(watch.needs_checkpoint());
        // Frames left (a reader held them): look again next time.
        watch.checkpointed(false);
        assert!(watch.needs_checkpoint());
        watch.checkpointed(true);
        assert!(!watch.needs_checkpoint());
        assert!(!watch.needs_checkpoint());
        // A commit grows or rewrites the WAL.
        std::fs::write(&wal, [2; 64]).unwrap();
        assert!(watch.needs_checkpoint());
        // In memory, or a path it cannot tell: always.
        let mut memory = WalWatch::new(None);
        assert!(memory.needs_checkpoint());
        memory.checkpointed(true);
        assert!(memory.needs_checkpoint());
    }

    #[test]
    fn the_writer_copies_what_is_left_at_its_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(
            store.wal_autocheckpoint().unwrap(),
            MAIN_WRITER_CHECKPOINT_PAGES
        );
    }
}
