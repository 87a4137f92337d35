//! `relay`: the [`OutboxRelay`] draining N pending PostgreSQL rows to the broker, confirmed,
//! against raw lapin publishing the same N bodies.
//!
//! The rows are added (not timed) with `PgOutbox::add_with` in transactions of 500; the timed
//! part is `OutboxRelay::drain` (default [`RelayOptions`] unless `--relay-batch-size`): claim, publish, mark
//! published, batch after batch, until no row is pending. The relay runs on a pool of its
//! own, as a service runs it. Its store and publisher are probed ([`RelayProbe`]) so the
//! report says how long claims, publishes and marks take. A second baseline publishes
//! ferry's exact wire messages with raw lapin.

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
    probes::{RelayProbe, TimedPublisher, TimedStore},
    publish::{publish_raw, publish_raw_wire, settle},
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
    options: RelayOptions,
    events: Vec<BenchEvent>,
    bodies: Vec<Vec<u8>>,
}

impl Relay {
    /// Declares the queue the relay publishes to.
    pub async fn prepare(
        harness: &Harness,
        messages: u64,
        options: RelayOptions,
    ) -> Result<Self, CliError> {
        harness.database()?;
        let queue = harness.declare_queue("relay", Some(ROUTING_KEY)).await?;
        let events: Vec<BenchEvent> = (0..messages).map(BenchEvent::new).collect();
        let bodies = events
            .iter()
            .map(BenchEvent::body)
            .collect::<Result<_, _>>()?;
        Ok(Self {
            queue,
            options,
            events,
            bodies,
        })
    }

    fn messages(&self) -> u64 {
        self.events.len() as u64
    }
}

impl Scenario for Relay {
    fn name(&self) -> &'static str {
        "relay"
    }

    fn sides(&self) -> (&'static str, &'static str) {
        (
            "OutboxRelay::drain of N pending PostgreSQL rows, confirmed",
            "raw lapin: the same N bodies, sliding window of 1,000",
        )
    }

    async fn ferry(&mut self, harness: &Harness) -> Result<Measured, CliError> {
        let db = harness.database()?;
        let outbox = PgOutbox::new(db.relay_pool.clone());
        fill_outbox(&db.pool, &outbox, self.messages(), ROUTING_KEY).await?;
        let probe = RelayProbe::new();
        let relay = OutboxRelay::new(
            TimedStore::new(outbox, &probe),
            TimedPublisher::new(harness.bus.clone(), &probe),
        )
        .with_options(self.options);
        let started = Instant::now();
        let drained = relay.drain().await;
        let elapsed = started.elapsed();
        drop(relay);
        empty_outbox(&db.pool).await?;
        let published =
            drained.map_err(|e| CliError::Runtime(format!("the outbox relay failed: {e}")))?;
        if published as u64 != self.messages() {
            return Err(CliError::Runtime(format!(
                "relay: published {published} rows, {} expected",
                self.messages()
            )));
        }
        settle(harness, "relay", &self.queue, self.messages()).await?;
        Ok(Measured {
            breakdown: Some(probe.breakdown()),
            ..Measured::rate(rate(self.messages(), elapsed))
        })
    }

    async fn baseline(&mut self, harness: &Harness) -> Result<Measured, CliError> {
        let published = publish_raw(harness, ROUTING_KEY, &self.bodies).await?;
        settle(harness, "relay", &self.queue, self.messages()).await?;
        Ok(published)
    }

    async fn same_wire(&mut self, harness: &Harness) -> Option<Result<Measured, CliError>> {
        Some(
            async {
                let published = publish_raw_wire(harness, ROUTING_KEY, &self.events).await?;
                settle(harness, "relay", &self.queue, self.messages()).await?;
                Ok(published)
            }
            .await,
        )
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
    let failed =
        |e: &dyn std::fmt::Display| CliError::Runtime(format!("cannot fill the outbox: {e}"));
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
                    .add_with(&mut tx, &BenchEvent::new(seq), options)
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
