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

use async_trait::async_trait;
use ferry::{
    CancellationToken, OutboxRelay, PublishBatch, PublishError, PublishOptions, PublishTransport,
    RelayOptions, postgres::PgOutbox,
};
use futures::{StreamExt, stream::FuturesUnordered};
use serde::Serialize;
use tokio::task::JoinSet;

use super::{
    baseline::{self, RawMessage, RawPublisher, check_confirmation},
    event::BenchEvent,
    harness::{Harness, short},
    publish::settle,
    relay::empty_outbox,
    report::Latency,
};
use crate::error::CliError;

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

/// When each message was handed to the publisher and when its confirm came back.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// `publish_messages` was called with it (the relay had claimed it).
    pub handed: Instant,
    /// Its confirm came back.
    pub confirmed: Instant,
}

/// [`Sent`] times by message id.
pub type ConfirmTimes = Arc<Mutex<HashMap<String, Sent>>>;

/// A publisher that notes when each message's confirm came back.
pub struct ConfirmClock<P> {
    inner: P,
    confirmed: ConfirmTimes,
}

impl<P> ConfirmClock<P> {
    /// Wraps `inner`, noting confirms in `confirmed`.
    pub fn new(inner: P, confirmed: ConfirmTimes) -> Self {
        Self { inner, confirmed }
    }

    /// A copy of the times noted so far.
    pub fn times(confirmed: &ConfirmTimes) -> HashMap<String, Sent> {
        confirmed.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl<P: PublishTransport> PublishTransport for ConfirmClock<P> {
    fn source(&self) -> Option<&str> {
        self.inner.source()
    }

    fn exchange(&self) -> Option<&str> {
        self.inner.exchange()
    }

    async fn send(&self, batch: PublishBatch) -> Vec<Result<(), PublishError>> {
        let ids: Vec<String> = batch.messages().iter().map(|m| m.id().to_owned()).collect();
        let handed = Instant::now();
        let results = self.inner.send(batch).await;
        let now = Instant::now();
        if let Ok(mut confirmed) = self.confirmed.lock() {
            for (id, result) in ids.into_iter().zip(&results) {
                if result.is_ok() {
                    confirmed.insert(
                        id,
                        Sent {
                            handed,
                            confirmed: now,
                        },
                    );
                }
            }
        }
        results
    }
}

/// The measurement: its queue, events per round and the relay's options.
pub struct RelayLatencyBench {
    queue: String,
    events: u64,
    relay: RelayOptions,
}

/// When event `seq` is due.
fn due(start: Instant, seq: u64) -> tokio::time::Instant {
    tokio::time::Instant::from_std(start + Duration::from_micros(seq * 1_000_000 / RATE_PER_S))
}

impl RelayLatencyBench {
    /// Declares the queue the messages land on.
    pub async fn prepare(
        harness: &Harness,
        messages: u64,
        relay: RelayOptions,
    ) -> Result<Self, CliError> {
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
    pub async fn ferry(&self, harness: &Harness) -> Result<Latency, CliError> {
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
                ConfirmClock::new(harness.bus.clone(), Arc::clone(&confirmed)),
            )
            .with_options(self.relay)
            .run(stop.clone()),
        );
        let start = Instant::now() + WARM_UP;
        let mut commits = JoinSet::new();
        let mut committed = Vec::with_capacity(self.events as usize);
        let mut failure = None;
        let failed = |e: &dyn std::fmt::Display| {
            CliError::Runtime(format!("relay latency: cannot add to the outbox: {e}"))
        };
        for seq in 0..self.events {
            tokio::time::sleep_until(due(start, seq)).await;
            let (pool, outbox) = (pool.clone(), outbox.clone());
            commits.spawn(async move {
                let mut tx = pool.begin().await.map_err(|e| failed(&e))?;
                let options = PublishOptions {
                    routing_key: Some(ROUTING_KEY.to_owned()),
                    ..PublishOptions::default()
                };
                let id = outbox
                    .add_with(&mut tx, &BenchEvent::new(seq), options)
                    .await
                    .map_err(|e| failed(&e))?;
                tx.commit().await.map_err(|e| failed(&e))?;
                Ok::<_, CliError>((id, Instant::now()))
            });
            while let Some(joined) = commits.try_join_next() {
                match joined {
                    Ok(Ok(done)) => committed.push(done),
                    Ok(Err(e)) => {
                        failure.get_or_insert(e);
                    }
                    Err(e) => {
                        failure.get_or_insert(CliError::Runtime(e.to_string()));
                    }
                }
            }
            if failure.is_some() {
                break;
            }
        }
        while let Some(joined) = commits.join_next().await {
            match joined {
                Ok(Ok(done)) => committed.push(done),
                Ok(Err(e)) => {
                    failure.get_or_insert(e);
                }
                Err(e) => {
                    failure.get_or_insert(CliError::Runtime(e.to_string()));
                }
            }
        }
        // Wait for every confirm (the relay has no stall of its own to report).
        let waited = async {
            if let Some(e) = failure {
                return Err(e);
            }
            let deadline = Instant::now() + baseline::STALL_TIMEOUT;
            loop {
                let done = confirmed.lock().map(|c| c.len()).unwrap_or(0) as u64;
                if done >= self.events {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err(CliError::Timeout(format!(
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
            .map_err(|_| CliError::Runtime("relay latency: a probe failed".into()))?;
        let samples = committed
            .iter()
            .map(|(id, at)| {
                confirmed
                    .get(id)
                    .map(|c| nanos(c.confirmed.saturating_duration_since(*at)))
                    .ok_or_else(|| {
                        CliError::Runtime(format!("relay latency: event {id} was not confirmed"))
                    })
            })
            .collect::<Result<Vec<u64>, _>>()?;
        Ok(Latency::from_nanos(samples))
    }

    /// One round of the broker alone: raw publish to confirm at the same pace.
    pub async fn broker(&self, harness: &Harness) -> Result<Latency, CliError> {
        let publisher = RawPublisher::open(harness).await?;
        let result = async {
            let exchange = short(&harness.names.exchange)?;
            let key = short(ROUTING_KEY)?;
            let bodies = (0..self.events)
                .map(|i| BenchEvent::new(i).body())
                .collect::<Result<Vec<_>, _>>()?;
            let start = Instant::now() + WARM_UP;
            let mut confirms = FuturesUnordered::new();
            let mut samples = Vec::with_capacity(bodies.len());
            for (seq, body) in (0u64..).zip(&bodies) {
                let due = due(start, seq);
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(due) => break,
                        Some((at, confirmation)) = confirms.next(), if !confirms.is_empty() => {
                            check_confirmation(confirmation)?;
                            samples.push(nanos(Instant::now().saturating_duration_since(at)));
                        }
                    }
                }
                let message = RawMessage {
                    routing_key: &key,
                    properties: baseline::properties(&seq.to_string())?,
                    body,
                };
                let at = Instant::now();
                let confirm = publisher.publish_one(&exchange, message).await?;
                confirms.push(async move { (at, confirm.await) });
            }
            while let Some((at, confirmation)) = confirms.next().await {
                check_confirmation(confirmation)?;
                samples.push(nanos(Instant::now().saturating_duration_since(at)));
            }
            Ok(Latency::from_nanos(samples))
        }
        .await;
        publisher.close().await;
        let latency = result?;
        settle(harness, "relay latency", &self.queue, self.events).await?;
        Ok(latency)
    }

    /// `rounds` rounds of each side, alternating which goes first.
    pub async fn measure(&self, harness: &Harness, rounds: u32) -> Result<RelayLatency, CliError> {
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

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
