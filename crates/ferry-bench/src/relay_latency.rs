//! The relay's latency (issue 5's benchmark), measured with the `relay` scenario: events
//! committed to the PostgreSQL outbox one transaction each at a steady [`RATE_PER_S`], each
//! timed from its commit's return to its publisher confirm, with the [`OutboxRelay`] woken by
//! LISTEN/NOTIFY. The baseline is the broker alone at the same pace: raw lapin publish to
//! confirm, one persistent, `mandatory` message at a time. Rounds alternate, like every
//! scenario's; the report gives the median of each percentile.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ferry::{CancellationToken, OutboxRelay, RelayOptions, postgres::PgOutbox};
use serde::Serialize;

use super::{
    baseline::{self, publish_paced},
    event::BenchEvent,
    harness::Harness,
    probes::{RelayProbe, TimedPublisher},
    publish::settle,
    relay::{commit_paced, empty_outbox},
    stats::{Latency, nanos},
};
use crate::error::BenchError;

/// Events a second.
pub const RATE_PER_S: u64 = 500;

/// The most events of one round (at [`RATE_PER_S`], 5 s).
pub const MAX_EVENTS: u64 = 2500;

/// Time for the relay's listener to settle before the first event.
const WARM_UP: Duration = Duration::from_millis(300);

/// The routing key of this measurement's messages.
const ROUTING_KEY: &str = "bench.relay-latency";

/// What the report says about the relay's latency.
#[derive(Debug, Clone, Serialize)]
pub struct RelayLatency {
    /// The pace events were committed (or published) at.
    pub rate_per_s: u64,
    /// Events per round.
    pub events: u64,
    /// Rounds of each side.
    pub rounds: usize,
    /// Outbox commit to publisher confirm, through the relay (median of the rounds).
    pub p50: f64,
    /// The 95th percentile.
    pub p95: f64,
    /// The 99th percentile.
    pub p99: f64,
    /// The slowest.
    pub max: f64,
    /// The broker alone: raw lapin publish to confirm at the same pace.
    pub broker: Latency,
}

/// The measurement: its queue, events per round and the relay's options.
pub struct RelayLatencyBench {
    queue: String,
    events: u64,
    relay: RelayOptions,
}

impl RelayLatencyBench {
    /// Declares the queue the messages land on.
    pub async fn prepare(
        harness: &Harness,
        messages: u64,
        relay: RelayOptions,
    ) -> Result<Self, BenchError> {
        harness.database()?;
        Ok(Self {
            queue: harness
                .declare_queue("relay-latency", Some(ROUTING_KEY))
                .await?,
            events: messages.clamp(1, MAX_EVENTS),
            relay,
        })
    }

    /// One round of ferry: commit at the pace, the relay publishing on notifications.
    pub async fn ferry(&self, harness: &Harness) -> Result<Latency, BenchError> {
        let db = harness.database()?;
        let pool = db.pool.clone();
        let outbox = PgOutbox::new(db.relay_pool.clone());
        outbox.listen();
        let confirmed = Arc::new(Mutex::new(HashMap::new()));
        let stop = CancellationToken::new();
        harness.track(stop.clone());
        let relay = tokio::spawn(
            OutboxRelay::new(
                outbox.clone(),
                TimedPublisher::new(harness.bus.clone(), &RelayProbe::new())
                    .noting_confirms(&confirmed),
            )
            .with_options(self.relay)
            .run(stop.clone()),
        );
        let committed = commit_paced(
            &pool,
            &outbox,
            ROUTING_KEY,
            false,
            self.events,
            (WARM_UP, RATE_PER_S),
        )
        .await;
        // Wait for every confirm (the relay has no stall of its own to report).
        let waited = async {
            committed
                .as_ref()
                .map_err(|e| BenchError::Runtime(format!("relay latency: {e}")))?;
            let deadline = Instant::now() + baseline::STALL_TIMEOUT;
            loop {
                let done = confirmed.lock().map(|c| c.len()).unwrap_or(0) as u64;
                if done >= self.events {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err(BenchError::Timeout(format!(
                        "relay latency: {done} of {} events confirmed after {} s",
                        self.events,
                        baseline::STALL_TIMEOUT.as_secs()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        .await;
        stop.cancel();
        let _ = relay.await;
        drop(outbox);
        empty_outbox(&pool).await?;
        waited?;
        settle(harness, "relay latency", &self.queue, self.events).await?;
        let confirmed = confirmed
            .lock()
            .map(|c| c.clone())
            .map_err(|_| BenchError::Runtime("relay latency: a probe failed".into()))?;
        let samples = committed?
            .iter()
            .map(|(_, id, at)| {
                confirmed
                    .get(id)
                    .map(|c| nanos(c.confirmed.saturating_duration_since(*at)))
                    .ok_or_else(|| {
                        BenchError::Runtime(format!("relay latency: event {id} was not confirmed"))
                    })
            })
            .collect::<Result<Vec<u64>, _>>()?;
        Ok(Latency::from_nanos(samples))
    }

    /// One round of the broker alone: raw publish to confirm at the same pace.
    pub async fn broker(&self, harness: &Harness) -> Result<Latency, BenchError> {
        let bodies = (0..self.events)
            .map(|i| BenchEvent::new(i).body())
            .collect::<Result<Vec<_>, _>>()?;
        let pace = (WARM_UP, RATE_PER_S);
        let samples = publish_paced(harness, ROUTING_KEY, &bodies, pace, |_, _| {}).await?;
        settle(harness, "relay latency", &self.queue, self.events).await?;
        Ok(Latency::from_nanos(samples))
    }

    /// `rounds` rounds of each side, alternating which goes first.
    pub async fn measure(
        &self,
        harness: &Harness,
        rounds: u32,
    ) -> Result<RelayLatency, BenchError> {
        let (mut ferry, mut broker) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let (f, b) = if round % 2 == 0 {
                let f = self.ferry(harness).await?;
                (f, self.broker(harness).await?)
            } else {
                let b = self.broker(harness).await?;
                (self.ferry(harness).await?, b)
            };
            eprintln!(
                "bench: [{:>6.1} s] relay latency round {}/{rounds}: commit -> confirm p50 {:.2} ms p99 {:.2} ms, broker alone p50 {:.2} ms p99 {:.2} ms",
                harness.elapsed_s(),
                round + 1,
                f.p50,
                f.p99,
                b.p50,
                b.p99
            );
            ferry.push(f);
            broker.push(b);
        }
        let f = Latency::median_of(&ferry);
        Ok(RelayLatency {
            rate_per_s: RATE_PER_S,
            events: self.events,
            rounds: ferry.len(),
            p50: f.p50,
            p95: f.p95,
            p99: f.p99,
            max: f.max,
            broker: Latency::median_of(&broker),
        })
    }
}
