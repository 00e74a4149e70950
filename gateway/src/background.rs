//! The runtime the gateway's background work runs on, at a lower CPU
//! priority than what a sender or a client waits for.
//!
//! Background work: the mapping stage, the delivery workers (the local
//! target's repository writes first among them), the application ACKs,
//! the audit export and retention. What stays on the main runtime at the
//! normal priority: the MLLP and HTTP listeners and their handlers, and
//! with them the journal's commits that each ACK waits for.
//!
//! Why: on two cores, a loaded gateway's mapping and repository writes
//! took the CPU the ACK path needed: eight senders without pipelining were
//! acknowledged at 5,500–6,200 msg/s, p99 9.2–10.1 ms. With the background
//! threads at nice +10 the same load was acknowledged at 8,800–9,600 msg/s,
//! p99 6.5–7.3 ms, and reached the repository no later (docs/performance.md,
//! "Background work at a lower priority"). Nothing is starved: the
//! scheduler still gives these threads whatever CPU the ACK path leaves,
//! about a tenth of a busy core at the least.

use std::io;

use tokio::runtime::{Handle, Runtime};

/// How much lower than the process's own priority the background threads
/// run (nice values; the scheduler gives a thread at +10 about a tenth of
/// the CPU share of one at +0 when both want the same core).
pub const NICENESS: i32 = 10;

/// The lowest priority there is (the highest nice value).
const LOWEST: i32 = 19;

/// The background runtime; shut down (without waiting for its tasks) when
/// dropped, which is allowed inside another runtime.
pub struct Background {
    /// Taken out only by `drop`.
    runtime: Option<Runtime>,
    handle: Handle,
}

impl Background {
    /// Starts the runtime: its worker and blocking threads, named
    /// `background`, each lower its own priority to [`NICENESS`] below the
    /// calling thread's when it starts.
    pub fn start() -> io::Result<Background> {
        let priority = lowered(current_priority());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("background")
            .on_thread_start(move || set_current_priority(priority))
            .build()?;
        Ok(Background {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    /// Where to spawn background tasks. A task spawned here also runs its
    /// `spawn_blocking` work on this runtime's (lower-priority) threads.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// `priority` lowered by [`NICENESS`], within the range there is.
fn lowered(priority: Option<i32>) -> Option<i32> {
    priority.map(|priority| (priority + NICENESS).min(LOWEST))
}

/// The calling thread's nice value; `None` where threads have none of
/// their own.
#[cfg(target_os = "linux")]
fn current_priority() -> Option<i32> {
    rustix::process::getpriority_process(Some(rustix::thread::gettid())).ok()
}

#[cfg(not(target_os = "linux"))]
fn current_priority() -> Option<i32> {
    None
}

/// Sets the calling thread's nice value (Linux's nice is per thread, and
/// a new thread inherits its creator's: the value is absolute so that
/// threads started by background threads do not go lower still). A
/// failure leaves the thread as it was: it is only slower to give way.
#[cfg(target_os = "linux")]
fn set_current_priority(priority: Option<i32>) {
    if let Some(priority) = priority {
        let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), priority);
    }
}

#[cfg(not(target_os = "linux"))]
fn set_current_priority(_priority: Option<i32>) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowering_stops_at_the_lowest_priority() {
        assert_eq!(lowered(Some(0)), Some(10));
        assert_eq!(lowered(Some(15)), Some(19));
        assert_eq!(lowered(None), None);
    }

    /// Tasks on the background runtime, their blocking work and threads
    /// started from it, run at the lowered priority, and no lower.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn background_work_runs_at_the_lowered_priority_and_no_lower() {
        let main = current_priority().unwrap();
        let expected = (main + NICENESS).min(LOWEST);
        let background = Background::start().unwrap();
        let (in_task, in_blocking) = background
            .handle()
            .spawn(async {
                let in_task = current_priority();
                let in_blocking = tokio::task::spawn_blocking(current_priority).await.unwrap();
                (in_task, in_blocking)
            })
            .await
            .unwrap();
        assert_eq!(in_task, Some(expected));
        assert_eq!(in_blocking, Some(expected));
        // The main runtime's threads keep theirs.
        assert_eq!(current_priority(), Some(main));
        assert_eq!(
            tokio::task::spawn_blocking(current_priority).await.unwrap(),
            Some(main)
        );
        // Dropped inside a runtime without panicking.
        drop(background);
    }
}
