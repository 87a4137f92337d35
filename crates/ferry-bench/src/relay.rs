//! `relay`: the [`OutboxRelay`] draining N pending PostgreSQL rows to the broker, confirmed,
//! against raw lapin publishing the same N bodies.
//!
//! The rows are added (not timed) with `PgOutbox::add_with` in transactions of 500; the timed
//! part is `OutboxRelay::drain` (default [`RelayOptions`] unless `--relay-batch-size`): claim, publish, mark
//! published, batch after batch, until no row is pending. The relay runs on a pool of its
//! own, as a service runs it. Its store and publisher are probed ([`RelayProbe`]) so the
//! report says how long claims, publishes and marks take. A second baseline publishes
//! ferry's exact wire messages with raw lapin.

use std::time::{Duration, Instant};

use ferry::{
    ContentMode, InContentMode, OutboxRelay, PublishOptions, RelayOptions,
    postgres::{PgOutbox, sqlx::PgPool},
};
use futures::{StreamExt, TryStreamExt, stream};
use tokio::task::{JoinError, JoinSet};

use super::{
    About, Scenario,
    baseline::due,
    event::BenchEvent,
    harness::Harness,
    probes::{RelayProbe, TimedPublisher, TimedStore},
    publish::Payload,
    report::Measured,
    stats::rate,
};
use crate::error::BenchError;

/// The routing key of this scenario's messages.
const ROUTING_KEY: &str = "bench.relay";

/// Rows per transaction when filling the outbox.
const FILL_TRANSACTION: u64 = 500;

/// The `relay` scenario, publishing in binary content mode (`relay`) or structured
/// (`relay_structured`).
pub struct Relay {
    payload: Payload,
    options: RelayOptions,
    mode: ContentMode,
}

impl Relay {
    /// Declares the queue the relay publishes to (in `mode`).
    pub async fn prepare(
        harness: &Harness,
        messages: u64,
        options: RelayOptions,
        mode: ContentMode,
    ) -> Result<Self, BenchError> {
        harness.database()?;
        let scenario = match mode {
            ContentMode::Binary => "relay",
            ContentMode::Structured => "relay-structured",
        };
        Ok(Self {
            payload: Payload::prepare(harness, scenario, ROUTING_KEY, messages).await?,
            options,
            mode,
        })
    }

    fn messages(&self) -> u64 {
        self.payload.len()
    }
}

const ABOUT: About = About {
    name: "relay",
    ferry: "OutboxRelay::drain of N pending PostgreSQL rows, confirmed",
    baseline: "raw lapin: the same N bodies, sliding window of 1,000",
};

const ABOUT_STRUCTURED: About = About {
    name: "relay_structured",
    ferry: "OutboxRelay::drain of N pending PostgreSQL rows, confirmed, publishing in structured content mode",
    baseline: "raw lapin: the same N bodies, sliding window of 1,000",
};

impl Scenario for Relay {
    fn about(&self) -> &'static About {
        match self.mode {
            ContentMode::Binary => &ABOUT,
            ContentMode::Structured => &ABOUT_STRUCTURED,
        }
    }

    async fn ferry(&mut self, harness: &Harness) -> Result<Measured, BenchError> {
        let db = harness.database()?;
        let outbox = PgOutbox::new(db.relay_pool.clone());
        fill_outbox(&db.pool, &outbox, self.messages(), ROUTING_KEY).await?;
        let probe = RelayProbe::new();
        let relay = OutboxRelay::new(
            TimedStore::new(outbox, &probe),
            TimedPublisher::new(InContentMode::new(harness.bus.clone(), self.mode), &probe),
        )
        .with_options(self.options);
        let started = Instant::now();
        let drained = relay.drain().await;
        let elapsed = started.elapsed();
        drop(relay);
        empty_outbox(&db.pool).await?;
        let published =
            drained.map_err(|e| BenchError::Runtime(format!("the outbox relay failed: {e}")))?;
        if published as u64 != self.messages() {
            return Err(BenchError::Runtime(format!(
                "relay: published {published} rows, {} expected",
                self.messages()
            )));
        }
        self.payload.settle(harness).await?;
        Ok(Measured {
            breakdown: Some(probe.breakdown()),
            ..Measured::rate(rate(self.messages(), elapsed))
        })
    }

    async fn baseline(&mut self, harness: &Harness) -> Result<Measured, BenchError> {
        self.payload.raw(harness).await
    }

    async fn same_wire(&mut self, harness: &Harness) -> Option<Result<Measured, BenchError>> {
        Some(self.payload.raw_wire(harness, self.mode).await)
    }
}

/// Adds `messages` bench events to the outbox, routed with `routing_key` (four transactions
/// at a time).
pub async fn fill_outbox(
    pool: &PgPool,
    outbox: &PgOutbox,
    messages: u64,
    routing_key: &str,
) -> Result<(), BenchError> {
    let failed =
        |e: &dyn std::fmt::Display| BenchError::Runtime(format!("cannot fill the outbox: {e}"));
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

/// One event a transaction at a steady pace: event `seq` (routed with `routing_key`) is added to
/// the outbox and committed when [`due`] at `rate_per_s` from `warm_up` from now; `handed`:
/// through an `OutboxTransaction` (handed to the relay at commit), else with `add_with` on a
/// transaction of the caller's own (the notification, then a claim). Returns each
/// event's number, id and when its commit returned; the first failure once the commits in
/// flight are done (no event is added after it).
pub async fn commit_paced(
    pool: &PgPool,
    outbox: &PgOutbox,
    routing_key: &'static str,
    handed: bool,
    events: u64,
    (warm_up, rate_per_s): (Duration, u64),
) -> Result<Vec<(u64, String, Instant)>, BenchError> {
    let start = Instant::now() + warm_up;
    let mut commits = JoinSet::new();
    let mut committed = Vec::with_capacity(usize::try_from(events).unwrap_or(0));
    let mut failure = None;
    for seq in 0..events {
        tokio::time::sleep_until(due(start, seq, rate_per_s)).await;
        let (pool, outbox) = (pool.clone(), outbox.clone());
        commits.spawn(async move {
            let failed = |e: &dyn std::fmt::Display| {
                BenchError::Runtime(format!("cannot add to the outbox: {e}"))
            };
            let tx = pool.begin().await.map_err(|e| failed(&e))?;
            let options = PublishOptions {
                routing_key: Some(routing_key.to_owned()),
                ..PublishOptions::default()
            };
            let event = BenchEvent::new(seq);
            let id = if handed {
                let mut tx = outbox.transaction(tx);
                let id = tx.add_with(&event, options).await.map_err(|e| failed(&e))?;
                tx.commit().await.map_err(|e| failed(&e))?;
                id
            } else {
                let mut tx = tx;
                let id = outbox
                    .add_with(&mut tx, &event, options)
                    .await
                    .map_err(|e| failed(&e))?;
                tx.commit().await.map_err(|e| failed(&e))?;
                id
            };
            Ok((seq, id, Instant::now()))
        });
        while let Some(joined) = commits.try_join_next() {
            take(joined, &mut committed, &mut failure);
        }
        if failure.is_some() {
            break;
        }
    }
    while let Some(joined) = commits.join_next().await {
        take(joined, &mut committed, &mut failure);
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(committed),
    }
}

/// A finished task's result: kept, or the first failure noted.
fn take<T>(
    joined: Result<Result<T, BenchError>, JoinError>,
    done: &mut Vec<T>,
    failure: &mut Option<BenchError>,
) {
    match joined {
        Ok(Ok(value)) => done.push(value),
        Ok(Err(e)) => {
            failure.get_or_insert(e);
        }
        Err(e) => {
            failure.get_or_insert(BenchError::Runtime(e.to_string()));
        }
    }
}

/// Deletes every outbox row and vacuums the table, so each round starts alike.
pub async fn empty_outbox(pool: &PgPool) -> Result<(), BenchError> {
    for statement in ["DELETE FROM ferry_outbox", "VACUUM ANALYZE ferry_outbox"] {
        sqlx::query(statement)
            .execute(pool)
            .await
            .map_err(|e| BenchError::Runtime(format!("cannot empty the outbox: {e}")))?;
    }
    Ok(())
}
