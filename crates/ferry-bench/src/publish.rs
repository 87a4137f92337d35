//! `publish`: ferry's confirmed, persistent, pipelined publisher against raw lapin with the
//! same window.
//!
//! ferry encodes each event (envelope, CloudEvents headers, JSON) and hands [`BATCH`]
//! messages at a time to `Publisher::publish_messages`, which puts them all in flight and
//! awaits their confirms; two such calls run at once (on ferry's two confirm channels), so at
//! most [`WINDOW`] publishes are unconfirmed and the broker never waits for the next batch.
//! The baseline keeps up to [`WINDOW`] raw publishes of the same JSON
//! bodies unconfirmed on one channel, topping the window up as confirms come. A second
//! baseline publishes ferry's exact wire messages (headers included) the same raw way.

use std::time::Instant;

use ferry::{ContentMode, InContentMode, Publisher, plumbing::OutgoingMessage};
use futures::{StreamExt, TryStreamExt, stream};

use super::{
    About, Scenario,
    baseline::{RawMessage, RawPublisher, WINDOW},
    event::BenchEvent,
    harness::{Harness, short},
    report::Measured,
    stats::rate,
};
use crate::error::BenchError;

/// The routing key of this scenario's messages.
const ROUTING_KEY: &str = "bench.publish";

/// Messages per `publish_messages` call; [`WINDOW`] / `BATCH` calls run at once, so at most
/// [`WINDOW`] publishes are unconfirmed, as with the baseline.
const BATCH: usize = 500;

/// The `publish` scenario, in binary content mode (`publish`) or structured
/// (`publish_structured`).
pub struct Publish {
    payload: Payload,
    mode: ContentMode,
}

impl Publish {
    /// Declares the queue the messages land on and prepares `messages` events, to be published
    /// in `mode`.
    pub async fn prepare(
        harness: &Harness,
        messages: u64,
        mode: ContentMode,
    ) -> Result<Self, BenchError> {
        let scenario = match mode {
            ContentMode::Binary => "publish",
            ContentMode::Structured => "publish-structured",
        };
        Ok(Self {
            payload: Payload::prepare(harness, scenario, ROUTING_KEY, messages).await?,
            mode,
        })
    }
}

/// What `publish` and `relay` move: the events, their JSON bodies (the plain baseline's
/// messages), and the queue they land on (bound with the routing key).
pub struct Payload {
    scenario: &'static str,
    routing_key: &'static str,
    queue: String,
    /// The events.
    pub events: Vec<BenchEvent>,
    bodies: Vec<Vec<u8>>,
}

impl Payload {
    /// Declares the queue `scenario`'s messages land on and prepares `messages` events.
    pub async fn prepare(
        harness: &Harness,
        scenario: &'static str,
        routing_key: &'static str,
        messages: u64,
    ) -> Result<Self, BenchError> {
        let queue = harness.declare_queue(scenario, Some(routing_key)).await?;
        let events: Vec<BenchEvent> = (0..messages).map(BenchEvent::new).collect();
        let bodies = events
            .iter()
            .map(BenchEvent::body)
            .collect::<Result<_, _>>()?;
        Ok(Self {
            scenario,
            routing_key,
            queue,
            events,
            bodies,
        })
    }

    /// How many messages.
    pub fn len(&self) -> u64 {
        self.events.len() as u64
    }

    /// Checks that every message reached the queue, then empties it.
    pub async fn settle(&self, harness: &Harness) -> Result<(), BenchError> {
        settle(harness, self.scenario, &self.queue, self.len()).await
    }

    /// The baseline: the JSON bodies published with raw lapin, timed, then settled.
    pub async fn raw(&self, harness: &Harness) -> Result<Measured, BenchError> {
        let key = short(self.routing_key)?;
        let published = publish_raw(harness, || {
            (0u64..)
                .zip(&self.bodies)
                .map(|(seq, body)| RawMessage::plain(&key, seq, body))
                .collect()
        })
        .await?;
        self.settle(harness).await?;
        Ok(published)
    }

    /// The second baseline: ferry's exact wire messages in `mode` published with raw lapin
    /// (encoded before the clock starts; the lapin properties and header tables are built
    /// inside the timed part, as a raw publisher setting those headers would), then settled.
    pub async fn raw_wire(
        &self,
        harness: &Harness,
        mode: ContentMode,
    ) -> Result<Measured, BenchError> {
        let encoded = self
            .events
            .iter()
            .map(|e| {
                e.message(self.routing_key).map(|mut m| {
                    m.message = mode.apply(m.message);
                    m
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let key = short(self.routing_key)?;
        let published = publish_raw(harness, || {
            encoded.iter().map(|m| RawMessage::wire(&key, m)).collect()
        })
        .await?;
        self.settle(harness).await?;
        Ok(published)
    }
}

/// Checks that `expected` messages reached `queue`, then empties it.
pub async fn settle(
    harness: &Harness,
    scenario: &str,
    queue: &str,
    expected: u64,
) -> Result<(), BenchError> {
    let ready = harness.ready(queue).await?;
    harness.purge(queue).await?;
    if ready != expected {
        return Err(BenchError::Runtime(format!(
            "{scenario}: {ready} messages reached the queue, {expected} expected"
        )));
    }
    Ok(())
}

const ABOUT: About = About {
    name: "publish",
    ferry: "ferry publisher: encode + publish_messages in batches of 500, two at once (at most 1,000 unconfirmed, on ferry's two confirm channels)",
    baseline: "raw lapin: sliding window of 1,000 unconfirmed publishes on one channel",
};

const ABOUT_STRUCTURED: About = About {
    name: "publish_structured",
    ferry: "ferry publisher in structured content mode (application/cloudevents+json, no ce- headers): encode + publish_messages in batches of 500, two at once",
    baseline: "raw lapin: sliding window of 1,000 unconfirmed publishes on one channel",
};

impl Scenario for Publish {
    fn about(&self) -> &'static About {
        match self.mode {
            ContentMode::Binary => &ABOUT,
            ContentMode::Structured => &ABOUT_STRUCTURED,
        }
    }

    async fn ferry(&mut self, harness: &Harness) -> Result<Measured, BenchError> {
        let events = &self.payload.events;
        let publisher = &InContentMode::new(&harness.bus, self.mode);
        let started = Instant::now();
        stream::iter(events.chunks(BATCH))
            .map(|chunk| async move {
                let batch = chunk
                    .iter()
                    .map(|e| e.message(ROUTING_KEY))
                    .collect::<Result<Vec<OutgoingMessage>, _>>()?;
                let results = publisher.publish_messages(batch).await;
                match results.into_iter().find(Result::is_err) {
                    Some(Err(e)) => Err(BenchError::Runtime(format!("ferry publish failed: {e}"))),
                    _ => Ok(()),
                }
            })
            .buffered(WINDOW / BATCH)
            .try_collect::<()>()
            .await?;
        let elapsed = started.elapsed();
        self.payload.settle(harness).await?;
        Ok(Measured::rate(rate(self.payload.len(), elapsed)))
    }

    async fn baseline(&mut self, harness: &Harness) -> Result<Measured, BenchError> {
        self.payload.raw(harness).await
    }

    async fn same_wire(&mut self, harness: &Harness) -> Option<Result<Measured, BenchError>> {
        Some(self.payload.raw_wire(harness, self.mode).await)
    }
}

/// Publishes the messages `build` makes (inside the timed part) with raw lapin to the events
/// exchange, [`WINDOW`] unconfirmed at most; the rate.
async fn publish_raw<'a>(
    harness: &Harness,
    build: impl FnOnce() -> Result<Vec<RawMessage<'a>>, BenchError>,
) -> Result<Measured, BenchError> {
    let publisher = RawPublisher::open(harness).await?;
    let exchange = short(&harness.names.exchange)?;
    let started = Instant::now();
    let result = match build() {
        Ok(messages) => publisher.publish_all(&exchange, messages, WINDOW).await,
        Err(e) => Err(e),
    };
    let elapsed = started.elapsed();
    publisher.close().await;
    let published = result?;
    Ok(Measured::rate(rate(published, elapsed)))
}
