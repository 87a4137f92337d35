//! `relay`: the [`OutboxRelay`] draining N pending PostgreSQL rows to the broker, confirmed,
//! against raw lapin publishing the same N bodies.
//!
//! The rows are added (not timed) with `PgOutbox::add_with` in transactions of 500; the timed
//! part is `OutboxRelay::drain` with the default [`RelayOptions`]: claim, publish, mark
//! published, batch after batch, until no row is pending.

use std::time::Instant;

use ferry::{
    OutboxRelay, PublishOptions, RelayOptions,
    postgres::{PgOutbox, sqlx::PgPool},
};
use futures::{StreamExt, TryStreamExt, stream};

use super::{
    Scenario,
    event::BenchEvent,
    harness::Harness,
    publish::publish_raw,
    report::{Measured, rate},
};
use crate::error::CliError;

/// The routing key of this scenario's messages.
const ROUTING_KEY: &str = "bench.relay";

/// Rows per transaction when filling the outbox.
const FILL_TRANSACTION: u64 = 500;

/// The `relay` scenario.
pub struct Relay {
    queue: String,
    messages: u64,
    bodies: Vec<Vec<u8>>,
}

impl Relay {
    /// Declares the queue the relay publishes to.
    pub async fn prepare(harness: &Harness, messages: u64) -> Result<Self, CliError> {
        harness.database()?;
        let queue = harness.declare_queue("relay", Some(ROUTING_KEY)).await?;
        let bodies = (0..messages)
            .map(|i| BenchEvent::new(i).body())
            .collect::<Result<_, _>>()?;
        Ok(Self {
            queue,
            messages,
            bodies,
        })
    }

    /// The batch size the relay runs with.
    pub fn batch_size() -> usize {
        RelayOptions::default().batch_size
    }

    async fn settle(&self, harness: &Harness) -> Result<(), CliError> {
        let ready = harness.ready(&self.queue).await?;
        harness.purge(&self.queue).await?;
        if ready != self.messages {
            return Err(CliError::Runtime(format!(
                "relay: {ready} messages reached the queue, {} expected",
                self.messages
            )));
        }
        Ok(())
    }
}

impl Scenario for Relay {
    const NAME: &'static str = "relay";
    const SIDES: (&'static str, &'static str) = (
        "OutboxRelay::drain of N pending PostgreSQL rows (default RelayOptions), confirmed",
        "raw lapin: the same N bodies, sliding window of 1,000",
    );

    async fn ferry(&mut self, harness: &Harness) -> Result<Measured, CliError> {
        let pool = harness.database()?.pool.clone();
        let outbox = PgOutbox::new(pool.clone());
        fill_outbox(&pool, &outbox, self.messages, ROUTING_KEY).await?;
        let relay = OutboxRelay::new(outbox, harness.bus.clone());
        let started = Instant::now();
        let published = relay
            .drain()
            .await
            .map_err(|e| CliError::Runtime(format!("the outbox relay failed: {e}")))?;
        let elapsed = started.elapsed();
        drop(relay);
        empty_outbox(&pool).await?;
        if published as u64 != self.messages {
            return Err(CliError::Runtime(format!(
                "relay: published {published} rows, {} expected",
                self.messages
            )));
        }
        self.settle(harness).await?;
        Ok(Measured::rate(rate(self.messages, elapsed)))
    }

    async fn baseline(&mut self, harness: &Harness) -> Result<Measured, CliError> {
        let published = publish_raw(harness, ROUTING_KEY, &self.bodies).await?;
        self.settle(harness).await?;
        Ok(published)
    }
}

/// Adds `messages` bench events to the outbox, routed with `routing_key` (four transactions
/// at a time).
pub async fn fill_outbox(
    pool: &PgPool,
    outbox: &PgOutbox,
    messages: u64,
    routing_key: &str,
) -> Result<(), CliError> {
    let failed = |e: &dyn std::fmt::Display| {
        CliError::Runtime(format!("cannot fill the outbox: {e}"))
    };
    let chunks = (0..messages).step_by(FILL_TRANSACTION as usize);
    stream::iter(chunks)
        .map(|from| async move {
            let to = (from + FILL_TRANSACTION).min(messages);
            let mut tx = pool.begin().await.map_err(|e| failed(&e))?;
            for seq in from..to {
                let options = PublishOptions {
                    routing_key: Some(routing_key.to_owned()),
                    ..PublishOptions::default()
                };
                outbox
                    .add_with(&mut *tx, &BenchEvent::new(seq), options)
                    .await
                    .map_err(|e| failed(&e))?;
            }
            tx.commit().await.map_err(|e| failed(&e))
        })
        .buffer_unordered(4)
        .try_collect::<()>()
        .await
}

/// Deletes every outbox row and vacuums the table, so each round starts alike.
pub async fn empty_outbox(pool: &PgPool) -> Result<(), CliError> {
    for statement in ["DELETE FROM ferry_outbox", "VACUUM ANALYZE ferry_outbox"] {
        sqlx::query(statement)
            .execute(pool)
            .await
            .map_err(|e| CliError::Runtime(format!("cannot empty the outbox: {e}")))?;
    }
    Ok(())
}
