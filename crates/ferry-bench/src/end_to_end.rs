//! `end_to_end`: latency from an outbox commit to the start of the handler, at a steady
//! [`RATE_PER_S`] events a second, against raw lapin publish → delivery at the same pace.
//!
//! ferry: one transaction per event (`PgOutbox::add_with`, commit), the [`OutboxRelay`]
//! running and woken by LISTEN/NOTIFY, a ferry consumer (prefetch 200) whose handler notes
//! when it starts. Latency is handler start minus commit return. The baseline publishes each
//! body with raw lapin on a confirm channel (confirms collected on the side) and notes when
//! the raw consumer gets it. `per_s` on both sides is the pace reached (events over the time
//! from the first commit or publish to the last delivery): about [`RATE_PER_S`] when all goes
//! well, and a ratio near 1.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use ferry::{
    CancellationToken, HandlerError, MessageContext, OutboxRelay, RelayOptions, postgres::PgOutbox,
};

use super::{
    About, Scenario,
    baseline::{self, publish_paced},
    consume::Counter,
    event::BenchEvent,
    harness::Harness,
    probes::{RelayProbe, TimedPublisher, TimedStore, confirm_times},
    relay::{commit_paced, empty_outbox},
    report::Measured,
    stats::{Latency, rate},
};
use crate::error::BenchError;

/// Events a second.
pub const RATE_PER_S: u64 = 1000;

/// The most events of one round (at [`RATE_PER_S`], 5 s).
pub const MAX_EVENTS: u64 = 5000;

/// Time for the consumer and the listener to settle before the first event.
const WARM_UP: Duration = Duration::from_millis(300);

const FERRY_KEY: &str = "bench.end-to-end";
const RAW_KEY: &str = "bench.end-to-end-raw";

/// Moments by event number, in nanoseconds since a common origin (0: not yet).
struct Moments {
    origin: Instant,
    at: Vec<AtomicU64>,
}

impl Moments {
    fn new(origin: Instant, events: u64) -> Arc<Self> {
        Arc::new(Self {
            origin,
            at: (0..events).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    fn mark(&self, seq: u64, at: Instant) {
        let nanos = u64::try_from(at.saturating_duration_since(self.origin).as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        if let Some(slot) = usize::try_from(seq).ok().and_then(|i| self.at.get(i)) {
            slot.store(nanos, Ordering::Release);
        }
    }

    fn get(&self, i: usize) -> u64 {
        self.at.get(i).map_or(0, |a| a.load(Ordering::Acquire))
    }

    /// `events` over the time from the first moment to the last, per second.
    fn pace(&self, events: u64) -> f64 {
        let marked = self
            .at
            .iter()
            .map(|a| a.load(Ordering::Acquire))
            .filter(|&n| n > 0);
        let (first, last) = marked.fold((u64::MAX, 0), |(lo, hi), n| (lo.min(n), hi.max(n)));
        if last > first {
            rate(events.saturating_sub(1), Duration::from_nanos(last - first)).round()
        } else {
            0.0
        }
    }
}

/// Latency of each event (`to - from`), and the pace: events over first `from` to last `to`.
fn measure(from: &Moments, to: &Moments, events: u64) -> Result<Measured, BenchError> {
    let mut samples = Vec::with_capacity(from.at.len());
    let (mut first, mut last) = (u64::MAX, 0u64);
    for i in 0..from.at.len() {
        let (start, end) = (from.get(i), to.get(i));
        if start == 0 || end == 0 {
            return Err(BenchError::Runtime(format!(
                "end_to_end: event {i} was not recorded on both ends"
            )));
        }
        samples.push(end.saturating_sub(start));
        first = first.min(start);
        last = last.max(end);
    }
    Ok(Measured {
        per_s: rate(events, Duration::from_nanos(last.saturating_sub(first))),
        latency: Some(Latency::from_nanos(samples)),
        ns_per_call: None,
        breakdown: None,
    })
}

/// The `end_to_end` scenario (and each step of the load curve, at its own pace).
#[derive(Clone)]
pub struct EndToEnd {
    ferry_queue: String,
    raw_queue: String,
    events: u64,
    rate_per_s: u64,
    concurrency: usize,
    relay: RelayOptions,
}

impl EndToEnd {
    /// Declares both queues.
    pub async fn prepare(
        harness: &Harness,
        events: u64,
        concurrency: usize,
        relay: RelayOptions,
    ) -> Result<Self, BenchError> {
        harness.database()?;
        Ok(Self {
            ferry_queue: harness.declare_queue("end-to-end", Some(FERRY_KEY)).await?,
            raw_queue: harness
                .declare_queue("end-to-end-raw", Some(RAW_KEY))
                .await?,
            events,
            rate_per_s: RATE_PER_S,
            concurrency,
            relay,
        })
    }

    /// The same scenario on the same queues, `events` events at `rate_per_s` a second.
    pub fn at_rate(&self, rate_per_s: u64, events: u64) -> Self {
        Self {
            rate_per_s: rate_per_s.max(1),
            events: events.max(1),
            ..self.clone()
        }
    }
}

const ABOUT: About = About {
    name: "end_to_end",
    ferry: "outbox commit -> LISTEN/NOTIFY -> OutboxRelay -> broker -> ferry consumer handler start, 1,000 events/s",
    baseline: "raw lapin publish -> raw consumer delivery, 1,000 events/s",
};

impl Scenario for EndToEnd {
    fn about(&self) -> &'static About {
        &ABOUT
    }

    async fn ferry(&mut self, harness: &Harness) -> Result<Measured, BenchError> {
        let pool = harness.database()?.pool.clone();
        let origin = Instant::now();
        let committed = Moments::new(origin, self.events);
        let handled = Moments::new(origin, self.events);
        let counter = Counter::new(self.events);
        let confirmed = Arc::new(Mutex::new(HashMap::new()));
        let handler = {
            let (handled, counter) = (Arc::clone(&handled), Arc::clone(&counter));
            move |event: BenchEvent, _ctx: MessageContext| {
                let now = Instant::now();
                if let Some(seq) = event.number() {
                    handled.mark(seq, now);
                }
                counter.hit();
                async { Ok::<(), HandlerError>(()) }
            }
        };
        let consumer = harness
            .start(
                harness
                    .consumer(&self.ferry_queue, self.concurrency)
                    .bind(FERRY_KEY)
                    .handle::<BenchEvent>(handler),
            )
            .await?;
        let outbox = PgOutbox::new(harness.database()?.relay_pool.clone());
        outbox.listen();
        let stop = CancellationToken::new();
        harness.track(stop.clone());
        let probe = RelayProbe::new();
        let relay = tokio::spawn(
            OutboxRelay::new(
                TimedStore::new(outbox.clone(), &probe),
                TimedPublisher::new(harness.bus.clone(), &probe).noting_confirms(&confirmed),
            )
            .with_options(self.relay)
            .run(stop.clone()),
        );

        let commits = commit_paced(
            &pool,
            &outbox,
            FERRY_KEY,
            true,
            self.events,
            (WARM_UP, self.rate_per_s),
        )
        .await
        .map_err(|e| BenchError::Runtime(format!("end_to_end: {e}")));
        let handled_when_committed = counter.count();
        let waited = match &commits {
            Err(_) => Ok(()),
            Ok(_) => counter.wait("end_to_end").await.map(|_| ()),
        };
        stop.cancel();
        let _ = relay.await;
        consumer.shutdown().await;
        drop(outbox);
        empty_outbox(&pool).await?;
        let commits = commits?;
        waited?;
        for (seq, _, at) in &commits {
            committed.mark(*seq, *at);
        }
        let mut measured = measure(&committed, &handled, self.events)?;
        let mut breakdown = probe.breakdown();
        breakdown.insert("commits_per_s", committed.pace(self.events));
        // Where the latency goes: commit to the relay handing the event to the publisher
        // (notification, claim, waiting for room in the pipeline), from there to the handler
        // (the broker's routing and delivery, the consumer); and commit to publisher confirm.
        let sent = confirm_times(&confirmed);
        let (mut pickup, mut delivery, mut confirm) = (Vec::new(), Vec::new(), Vec::new());
        let since_origin = |at: Instant| {
            u64::try_from(at.saturating_duration_since(origin).as_nanos()).unwrap_or(0)
        };
        for (seq, id, _) in commits {
            let (Some(sent), Ok(i)) = (sent.get(&id), usize::try_from(seq)) else {
                continue;
            };
            let (handed, confirmed) = (since_origin(sent.handed), since_origin(sent.confirmed));
            pickup.push(handed.saturating_sub(committed.get(i)));
            delivery.push(handled.get(i).saturating_sub(handed));
            confirm.push(confirmed.saturating_sub(committed.get(i)));
        }
        for (p50, p99, samples) in [
            (
                "commit_to_publish_p50_ms",
                "commit_to_publish_p99_ms",
                pickup,
            ),
            (
                "publish_to_handler_p50_ms",
                "publish_to_handler_p99_ms",
                delivery,
            ),
            (
                "commit_to_confirm_p50_ms",
                "commit_to_confirm_p99_ms",
                confirm,
            ),
        ] {
            let latency = Latency::from_nanos(samples);
            breakdown.insert(p50, latency.p50);
            breakdown.insert(p99, latency.p99);
        }
        breakdown.insert("handled_when_last_committed", handled_when_committed as f64);
        measured.breakdown = Some(breakdown);
        Ok(measured)
    }

    async fn baseline(&mut self, harness: &Harness) -> Result<Measured, BenchError> {
        let origin = Instant::now();
        let published = Moments::new(origin, self.events);
        let delivered = Moments::new(origin, self.events);
        let bodies = (0..self.events)
            .map(|i| BenchEvent::new(i).body())
            .collect::<Result<Vec<_>, _>>()?;
        let pace = (WARM_UP, self.rate_per_s);
        let produce = publish_paced(harness, RAW_KEY, &bodies, pace, |seq, at| {
            published.mark(seq, at);
        });
        let consume = baseline::consume_ack(harness, &self.raw_queue, self.events, |d, now| {
            let seq = d
                .properties
                .message_id()
                .as_ref()
                .and_then(|id| id.as_str().parse::<u64>().ok());
            if let Some(seq) = seq {
                delivered.mark(seq, now);
            }
        });
        let (produced, consumed) = tokio::join!(produce, consume);
        produced?;
        consumed?;
        measure(&published, &delivered, self.events)
    }

    fn result(
        &self,
        ferry: &[Measured],
        baseline: &[Measured],
        _same_wire: &[Measured],
    ) -> super::report::ScenarioResult {
        super::report::ScenarioResult::new(self.about(), ferry, baseline)
            .with_latency(ferry, baseline)
    }
}
