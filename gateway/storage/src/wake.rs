//! Wake-ups between the stages that share the store: the mapping stage
//! wakes a target's delivery worker when it writes outbox rows, the admin
//! API wakes them after a retry. A worker also polls, so a lost wake-up
//! only delays work.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Notify;

/// Wakes the worker of a target when its outbox gains rows; cheap to clone.
#[derive(Clone, Default)]
pub struct Wakers {
    by_target: Arc<HashMap<String, Arc<Notify>>>,
}

impl Wakers {
    pub fn new(by_target: HashMap<String, Arc<Notify>>) -> Wakers {
        Wakers {
            by_target: Arc::new(by_target),
        }
    }

    pub fn wake(&self, target: &str) {
        if let Some(notify) = self.by_target.get(target) {
            notify.notify_one();
        }
    }

    /// The targets that have a worker, by name.
    pub fn targets(&self) -> Vec<String> {
        let mut names: Vec<String> = self.by_target.keys().cloned().collect();
        names.sort();
        names
    }

    pub fn wake_all(&self) {
        for notify in self.by_target.values() {
            notify.notify_one();
        }
    }
}
