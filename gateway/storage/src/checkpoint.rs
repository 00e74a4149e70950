//! Moving the SQLite WAL's frames back into the database file, mostly off
//! the write path.
//!
//! SQLite checkpoints inside the commit that grows the WAL past 1,000
//! pages, on the writer's connection and under the store's one write lock:
//! the journal commit carrying the next ACKs waited while thousands of
//! pages were copied. Here a thread of its own, with its own connection,
//! runs a `PASSIVE` checkpoint every [`INTERVAL`], beside the writer
//! (`PASSIVE` takes no write lock: commits go on while it copies).
//!
//! The writers keep SQLite's own checkpoint (at [`WRITER_CHECKPOINT_PAGES`],
//! the main database's at [`MAIN_WRITER_CHECKPOINT_PAGES`]):
//! by then this thread has copied most frames, so it copies the few left,
//! and only a checkpoint that ends with nothing left to copy lets the next
//! write start the WAL over; one beside a busy writer never does. Without
//! it the WAL grew to 70 MB in a 20,000-message run, and every page read
//! searched its index (window 8 slower; docs/performance.md). When nothing
//! was committed, the thread's look at the WAL reads its index in shared
//! memory, no database page.

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
        // Busy (another checkpoint running, e.g. a command line's beside
        // the gateway) or failed: the next look, or the writer's fallback,
        // does it.
        for connection in connections {
            let _ = connection
                .prepare_cached("PRAGMA wal_checkpoint(PASSIVE)")
                .and_then(|mut checkpoint| checkpoint.query_row([], |_| Ok(())));
        }
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
    fn the_writer_copies_what_is_left_at_its_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(
            store.wal_autocheckpoint().unwrap(),
            MAIN_WRITER_CHECKPOINT_PAGES
        );
    }
}
