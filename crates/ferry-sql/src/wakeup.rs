//! Waking relays: a generation counter bumped by whatever says rows may be there (the
//! database's notifications on PostgreSQL, each add in this process on SQLite), which a relay
//! waits on between claims.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::Notify;

/// The shortest and first pause after an add whose commit the relay has not seen yet.
const FIRST_LOOK: Duration = Duration::from_millis(1);

/// Shared by an outbox's clones (and on SQLite by every outbox on one database file).
#[derive(Debug, Default)]
pub struct Wakeup {
    /// Bumped by every signal.
    generation: AtomicU64,
    /// The generation the last claim started at.
    seen: AtomicU64,
    /// When the last add happened (its transaction may not have committed yet); only set by
    /// dialects that wake on add.
    last_add: Mutex<Option<Instant>>,
    notify: Notify,
    /// Whether a listener was started.
    started: AtomicBool,
}

impl Wakeup {
    /// Called when a claim starts: later signals are news.
    pub(crate) fn claim_started(&self) {
        self.seen
            .store(self.generation.load(Ordering::Acquire), Ordering::Release);
    }

    /// Something may have changed: wake the waiters.
    pub fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
    }

    /// A row was added (not committed yet).
    pub(crate) fn added(&self) {
        if let Ok(mut last) = self.last_add.lock() {
            *last = Some(Instant::now());
        }
        self.bump();
    }

    /// `true` the first time only: whoever gets it starts the listener.
    pub fn start_once(&self) -> bool {
        !self.started.swap(true, Ordering::AcqRel)
    }

    /// Waits for a signal newer than the last claim, or `timeout`. After a recent add the wait
    /// is about as long as the add is old (1 ms, 2 ms, 4 ms …): its commit is then seen soon.
    pub(crate) async fn wait(&self, timeout: Duration) {
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
