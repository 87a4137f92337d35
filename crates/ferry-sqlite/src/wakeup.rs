//! Waking relays without `LISTEN/NOTIFY`: an in-process signal shared by every outbox on one
//! database file, raised by each add (before its commit) and by [`crate::SqliteOutbox::notify`].

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        Arc, Mutex, OnceLock, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use sqlx::SqlitePool;
use tokio::sync::Notify;

/// The shortest and first pause after an add whose commit the relay has not seen yet.
const FIRST_LOOK: Duration = Duration::from_millis(1);

#[derive(Debug, Default)]
pub(crate) struct Wakeup {
    /// Bumped by every add or notify.
    generation: AtomicU64,
    /// The generation the last claim started at.
    seen: AtomicU64,
    /// When the last add happened (its transaction may not have committed yet).
    last_add: Mutex<Option<Instant>>,
    notify: Notify,
}

impl Wakeup {
    /// The signal of the database `pool` opens (one per file in this process).
    pub fn for_pool(pool: &SqlitePool) -> Arc<Wakeup> {
        static REGISTRY: OnceLock<Mutex<HashMap<PathBuf, Weak<Wakeup>>>> = OnceLock::new();
        let options = pool.connect_options();
        let path = options.get_filename();
        let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let Ok(mut registry) = REGISTRY.get_or_init(Mutex::default).lock() else {
            return Arc::new(Wakeup::default());
        };
        registry.retain(|_, w| w.strong_count() > 0);
        if let Some(existing) = registry.get(&key).and_then(Weak::upgrade) {
            return existing;
        }
        let wakeup = Arc::new(Wakeup::default());
        registry.insert(key, Arc::downgrade(&wakeup));
        wakeup
    }

    /// A row was added (not committed yet).
    pub fn added(&self) {
        if let Ok(mut last) = self.last_add.lock() {
            *last = Some(Instant::now());
        }
        self.bump();
    }

    /// Wake every relay now.
    pub fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
    }

    /// Called when a claim starts: later signals are news.
    pub fn claim_started(&self) {
        self.seen
            .store(self.generation.load(Ordering::Acquire), Ordering::Release);
    }

    /// Waits for a signal newer than the last claim, or `timeout`. After a recent add the wait
    /// is about as long as the add is old (1 ms, 2 ms, 4 ms …): its commit is then seen soon.
    pub async fn wait(&self, timeout: Duration) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.generation.load(Ordering::Acquire) != self.seen.load(Ordering::Acquire) {
            return;
        }
        let since_add = self
            .last_add
            .lock()
            .ok()
            .and_then(|last| last.map(|t| t.elapsed()));
        let pause = match since_add {
            Some(age) if age < timeout => age.max(FIRST_LOOK),
            _ => timeout,
        };
        let _ = tokio::time::timeout(pause, notified).await;
    }
}
