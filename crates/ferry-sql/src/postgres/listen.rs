//! Waking relays on PostgreSQL: a background `LISTEN ferry_outbox` on a connection of its own,
//! which bumps the outbox's wake-up signal on every notification (and after every reconnect,
//! since notifications sent meanwhile are lost).

use std::{sync::Arc, time::Duration};

use sqlx::{
    PgPool,
    postgres::{PgListener, PgPoolOptions},
};
use tokio_util::sync::CancellationToken;

use super::NOTIFY_CHANNEL;
use crate::wakeup::Wakeup;

/// Starts the listener task once; it stops when `stop` is cancelled.
pub(super) fn start(wakeup: &Arc<Wakeup>, pool: &PgPool, stop: CancellationToken) {
    if !wakeup.start_once() {
        return;
    }
    // A pool of its own, so the listener never holds one of the application's connections.
    let listener_pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_lazy_with((*pool.connect_options()).clone());
    let wakeup = Arc::clone(wakeup);
    tokio::spawn(async move {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = listen(&wakeup, &listener_pool) => {}
        }
        listener_pool.close().await;
    });
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
                            tracing::warn!(
                                error = &e as &dyn std::error::Error,
                                "outbox listener lost its connection; relays poll meanwhile"
                            );
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(
                    error = &e as &dyn std::error::Error,
                    retry_ms = backoff.as_millis() as u64,
                    "cannot listen for outbox notifications; relays poll meanwhile"
                );
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
