//! The watched HPRIM directory (`[hprim] watch_dir`): labs and practice
//! software drop files into it; each is taken once it is complete, and
//! moved out of the way once the journal has it.
//!
//! The order of steps is what makes a kill at any moment harmless:
//! 1. a file is taken only after its size and modification time stayed
//!    the same for `settle_ms` (one being copied in is still growing; one
//!    renamed in is complete and waits one settle time);
//! 2. it is journaled (with its audit record) and the commit is on disk;
//! 3. only then it is renamed into `processed/`, and the directory synced.
//!
//! Killed before 2, the file is still there and taken at the next start;
//! between 2 and 3, it is taken again and the journal, keyed by sender and
//! SHA-256, finds it stored ([`FileTaken::Duplicate`]): it is moved, not
//! mapped twice. A file that cannot be read goes to `failed/`, its
//! `NAME.reason` written (and synced) first, so a reason is never missing
//! for a failed file. Names starting with `.` and ending in `.tmp` or
//! `.part` are left alone (files being written by their sender).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::files::{FileFormat, FileOrigin, FileRefused};
use super::{Intake, Transport};

/// Where taken files go, under the watched directory.
pub const PROCESSED_DIR: &str = "processed";
/// Where refused files go, each with a `NAME.reason` beside it.
pub const FAILED_DIR: &str = "failed";

/// The watched directory's settings.
#[derive(Debug, Clone)]
pub struct WatchSettings {
    pub dir: PathBuf,
    pub poll_interval: Duration,
    pub settle: Duration,
    /// The networks the files' patients join.
    pub networks: Vec<String>,
    /// A file larger than this is refused unread.
    pub max_bytes: u64,
}

/// What the directory looked like for one file at its last listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    len: u64,
    modified: Option<SystemTime>,
    since: Instant,
}

/// Watches `settings.dir` until `shutdown`: lists it every poll interval
/// and takes the files that have settled, oldest first.
pub async fn watch(intake: Intake, settings: WatchSettings, shutdown: CancellationToken) {
    for sub in [PROCESSED_DIR, FAILED_DIR] {
        if let Err(error) = std::fs::create_dir_all(settings.dir.join(sub)) {
            tracing::error!(sub, error = %error, "hprim watch directory: cannot create its subdirectory");
        }
    }
    let mut seen: HashMap<PathBuf, Seen> = HashMap::new();
    loop {
        let ready = settled(&settings, &mut seen);
        for path in ready {
            if shutdown.is_cancelled() {
                return;
            }
            seen.remove(&path);
            take(&intake, &settings, &path).await;
        }
        tokio::select! {
            () = tokio::time::sleep(settings.poll_interval) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Whether a name is one the watcher leaves alone.
fn ignored(name: &str) -> bool {
    name.starts_with('.') || name.ends_with(".tmp") || name.ends_with(".part")
}

/// The files whose size and modification time have not changed for the
/// settle time, oldest first; updates `seen` with this listing.
fn settled(settings: &WatchSettings, seen: &mut HashMap<PathBuf, Seen>) -> Vec<PathBuf> {
    let now = Instant::now();
    let entries = match std::fs::read_dir(&settings.dir) {
        Ok(entries) => entries,
        Err(error) => {
            tracing::error!(error = %error, "hprim watch directory unreadable; trying again");
            return Vec::new();
        }
    };
    let mut present = Vec::new();
    let mut ready: Vec<(Option<SystemTime>, PathBuf)> = Vec::new();
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let name = entry.file_name();
        if !kind.is_file() || ignored(&name.to_string_lossy()) {
            continue;
        }
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        let path = entry.path();
        let current = Seen {
            len: metadata.len(),
            modified: metadata.modified().ok(),
            since: now,
        };
        present.push(path.clone());
        match seen.get(&path) {
            Some(before) if before.len == current.len && before.modified == current.modified => {
                if now.duration_since(before.since) >= settings.settle {
                    ready.push((current.modified, path));
                }
            }
            _ => {
                seen.insert(path, current);
            }
        }
    }
    seen.retain(|path, _| present.contains(path));
    ready.sort();
    ready.into_iter().map(|(_, path)| path).collect()
}

/// Takes one settled file: journal, then move.
async fn take(intake: &Intake, settings: &WatchSettings, path: &Path) {
    let Some(name) = path.file_name().map(|n| n.to_os_string()) else {
        return;
    };
    let read = {
        let path = path.to_path_buf();
        let max = settings.max_bytes;
        tokio::task::spawn_blocking(move || read_bounded(&path, max)).await
    };
    let bytes = match read {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(ReadFailure::TooLarge(len))) => {
            let reason = format!(
                "the file is {len} bytes long, over the limit of {} bytes",
                settings.max_bytes
            );
            fail(settings, path, &name, &reason).await;
            return;
        }
        Ok(Err(ReadFailure::Io(error))) => {
            // Gone (its sender took it back) or unreadable for now.
            tracing::warn!(error = %error, "hprim watch directory: a file could not be read; trying again");
            return;
        }
        Err(_) => return,
    };
    let format = FileFormat::detect(&bytes);
    let origin = FileOrigin {
        transport: Transport::File,
        source: None,
        sender: None,
        networks: &settings.networks,
    };
    match intake.take_file(format, Bytes::from(bytes), origin).await {
        Ok(_) => {
            let target = settings.dir.join(PROCESSED_DIR);
            if let Err(error) = move_into(path, &target, &name).await {
                tracing::error!(error = %error, "hprim watch directory: a journaled file could not be moved to processed/; it will be found stored and moved at the next poll");
            }
        }
        Err(FileRefused::StorageUnavailable) => {
            // Left where it is: the next poll tries again.
        }
        Err(refusal) => fail(settings, path, &name, &refusal.to_string()).await,
    }
}

enum ReadFailure {
    TooLarge(u64),
    Io(std::io::Error),
}

/// Reads a whole file of at most `max` bytes (checked on the open file,
/// not trusted from the listing: it may have grown since).
fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, ReadFailure> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(ReadFailure::Io)?;
    let len = file.metadata().map_err(ReadFailure::Io)?.len();
    if len > max {
        return Err(ReadFailure::TooLarge(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadFailure::Io)?;
    if bytes.len() as u64 > max {
        return Err(ReadFailure::TooLarge(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Moves a refused file to `failed/`, its reason written first.
async fn fail(settings: &WatchSettings, path: &Path, name: &std::ffi::OsStr, reason: &str) {
    let failed = settings.dir.join(FAILED_DIR);
    let mut reason_name = name.to_os_string();
    reason_name.push(".reason");
    let reason_path = failed.join(&reason_name);
    let text = format!("{reason}\n");
    let written = {
        let failed = failed.clone();
        tokio::task::spawn_blocking(move || write_synced(&failed, &reason_path, text.as_bytes()))
            .await
    };
    if !matches!(written, Ok(Ok(()))) {
        tracing::error!("hprim watch directory: the reason of a refused file could not be written; trying again");
        return;
    }
    if let Err(error) = move_into(path, &failed, name).await {
        tracing::error!(error = %error, "hprim watch directory: a refused file could not be moved to failed/");
    }
}

/// Writes `bytes` to `path` through a temporary file, synced, then renamed
/// and the directory synced: a reader never sees half a reason.
fn write_synced(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let temporary = path.with_extension("reason.tmp");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Renames `path` into `dir` under its own name (or `NAME.1`, `NAME.2`…
/// when a file of that name is there already), then syncs both
/// directories so the move survives a crash.
async fn move_into(path: &Path, dir: &Path, name: &std::ffi::OsStr) -> std::io::Result<()> {
    let path = path.to_path_buf();
    let dir = dir.to_path_buf();
    let name = name.to_os_string();
    tokio::task::spawn_blocking(move || {
        let mut target = dir.join(&name);
        let mut n = 0u32;
        while target.exists() {
            n += 1;
            let mut numbered = name.clone();
            numbered.push(format!(".{n}"));
            target = dir.join(numbered);
        }
        std::fs::rename(&path, &target)?;
        std::fs::File::open(&dir)?.sync_all()?;
        if let Some(parent) = path.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
        Ok(())
    })
    .await
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_being_written_are_left_alone() {
        assert!(ignored(".hidden"));
        assert!(ignored("result.hpr.part"));
        assert!(ignored("result.tmp"));
        assert!(!ignored("result.hpr"));
    }

    #[test]
    fn a_file_is_ready_once_unchanged_for_the_settle_time() {
        let dir = tempfile::tempdir().unwrap();
        let settings = WatchSettings {
            dir: dir.path().to_path_buf(),
            poll_interval: Duration::from_millis(10),
            settle: Duration::from_millis(50),
            networks: Vec::new(),
            max_bytes: 1024,
        };
        let file = dir.path().join("a.hpr");
        std::fs::write(&file, b"H|").unwrap();
        let mut seen = HashMap::new();
        assert!(settled(&settings, &mut seen).is_empty(), "first sight");
        std::thread::sleep(Duration::from_millis(60));
        // It grew: the clock starts again.
        std::fs::write(&file, b"H|~^\\&|").unwrap();
        assert!(settled(&settings, &mut seen).is_empty(), "grown");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(settled(&settings, &mut seen), vec![file.clone()]);
        // Gone: forgotten.
        std::fs::remove_file(&file).unwrap();
        assert!(settled(&settings, &mut seen).is_empty());
        assert!(seen.is_empty());
    }

    #[test]
    fn reads_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("big");
        std::fs::write(&file, vec![b'x'; 11]).unwrap();
        assert!(matches!(
            read_bounded(&file, 10),
            Err(ReadFailure::TooLarge(11))
        ));
        assert_eq!(read_bounded(&file, 11).ok().map(|b| b.len()), Some(11));
    }

    #[test]
    fn moves_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("processed");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("a.hpr"), b"first").unwrap();
        let file = dir.path().join("a.hpr");
        std::fs::write(&file, b"second").unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime
            .block_on(move_into(&file, &target, std::ffi::OsStr::new("a.hpr")))
            .unwrap();
        assert_eq!(std::fs::read(target.join("a.hpr")).unwrap(), b"first");
        assert_eq!(std::fs::read(target.join("a.hpr.1")).unwrap(), b"second");
    }
}
