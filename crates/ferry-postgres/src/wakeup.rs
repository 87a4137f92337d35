//! Waking relays: a background `LISTEN ferry_outbox` on a connection of its own, which bumps a
//! generation counter on every notification (and after every reconnect, since notifications
//! sent meanwhile are lost).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use sqlx::{
    PgPool,
    postgres::{PgListener, PgPoolOptions},
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::NOTIFY_CHANNEL;

/// Shared by a store and its listener task.
#[derive(Debug, Default)]
pub(crate) struct Wakeup {
    /// Bumped on every notification.
    generation: AtomicU64,
    /// The generation the last claim started at.
    seen: AtomicU64,
    notify: Notify,
    started: AtomicBool,
}

impl Wakeup {
    /// Called when a claim starts: later notifications are news.
    pub fn claim_started(&self) {
        self.seen
            .store(self.generation.load(Ordering::Acquire), Ordering::Release);
    }

    /// Something may have changed: wake the waiters.
    pub fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
    }

    /// Waits for a notification newer than the last claim, or `timeout`.
    pub async fn wait(&self, timeout: Duration) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.generation.load(Ordering::Acquire) != self.seen.load(Ordering::Acquire) {
            return;
        }
        let _ = tokio::time::timeout(timeout, notified).await;
    }

    /// Starts the listener task once; it stops when `stop` is cancelled.
    pub fn start_listener(self: &Arc<Self>, pool: &PgPool, stop: CancellationToken) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        // A pool of its own, so the listener never holds one of the application's connections.
        let listener_pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with((*pool.connect_options()).clone());
        let wakeup = Arc::clone(self);
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = listen(&wakeup, &listener_pool) => {}
            }
            listener_pool.close().await;
        });
    }
}

async fn listen(wakeup: &Wakeup, pool: &PgPool) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match subscribe(pool).await {
            Ok(mut listener) => {
                tracing::debug!(
                    channel = NOTIFY_CHANNEL,
                    "listening for outbox notifications"
                );
                backoff = Duration::from_millis(100);
                // Rows may have come while no one listened.
                wakeup.bump();
                loop {
                    match listener.try_recv().await {
                        Ok(Some(_)) => wakeup.bump(),
                        Ok(None) => {
                            tracing::debug!("outbox listener reconnected");
                            wakeup.bump();
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "outbox listener lost its connection; relays poll meanwhile");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_ms = backoff.as_millis() as u64, "cannot listen for outbox notifications; relays poll meanwhile");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

async fn subscribe(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(NOTIFY_CHANNEL).await?;
    Ok(listener)
}
