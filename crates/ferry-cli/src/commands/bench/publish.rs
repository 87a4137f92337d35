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

use ferry::{OutgoingMessage, Publisher, rabbitmq::wire::to_amqp_properties};
use futures::{StreamExt, TryStreamExt, stream};
use lapin::types::ShortString;

use super::{
    Scenario,
    baseline::{self, RawMessage, RawPublisher, WINDOW},
    event::BenchEvent,
    harness::{Harness, short},
    report::{Measured, rate},
};
use crate::error::CliError;

/// The routing key of this scenario's messages.
const ROUTING_KEY: &str = "bench.publish";

/// Messages per `publish_messages` call; [`WINDOW`] / `BATCH` calls run at once, so at most
/// [`WINDOW`] publishes are unconfirmed, as with the baseline.
const BATCH: usize = 500;

/// The `publish` scenario.
pub struct Publish {
    queue: String,
    events: Vec<BenchEvent>,
    bodies: Vec<Vec<u8>>,
}

impl Publish {
    /// Declares the queue the messages land on and prepares `messages` events.
    pub async fn prepare(harness: &Harness, messages: u64) -> Result<Self, CliError> {
        let queue = harness.declare_queue("publish", Some(ROUTING_KEY)).await?;
        let events: Vec<BenchEvent> = (0..messages).map(BenchEvent::new).collect();
        let bodies = events
            .iter()
            .map(BenchEvent::body)
            .collect::<Result<_, _>>()?;
        Ok(Self {
            queue,
            events,
            bodies,
        })
    }
}

/// Checks that `expected` messages reached `queue`, then empties it.
pub async fn settle(
    harness: &Harness,
    scenario: &str,
    queue: &str,
    expected: u64,
) -> Result<(), CliError> {
    let ready = harness.ready(queue).await?;
    harness.purge(queue).await?;
    if ready != expected {
        return Err(CliError::Runtime(format!(
            "{scenario}: {ready} messages reached the queue, {expected} expected"
        )));
    }
    Ok(())
}

impl Scenario for Publish {
    fn name(&self) -> &'static str {
        "publish"
    }

    fn sides(&self) -> (&'static str, &'static str) {
        (
            "ferry publisher: encode + publish_messages in batches of 500, two at once (at most 1,000 unconfirmed, on ferry's two confirm channels)",
            "raw lapin: sliding window of 1,000 unconfirmed publishes on one channel",
        )
    }

    async fn ferry(&mut self, harness: &Harness) -> Result<Measured, CliError> {
        let started = Instant::now();
        stream::iter(self.events.chunks(BATCH))
            .map(|chunk| async move {
                let batch = chunk
                    .iter()
                    .map(|e| e.message(ROUTING_KEY))
                    .collect::<Result<Vec<OutgoingMessage>, _>>()?;
                let results = harness.bus.publish_messages(batch).await;
                match results.into_iter().find(Result::is_err) {
                    Some(Err(e)) => Err(CliError::Runtime(format!("ferry publish failed: {e}"))),
                    _ => Ok(()),
                }
            })
            .buffered(WINDOW / BATCH)
            .try_collect::<()>()
            .await?;
        let elapsed = started.elapsed();
        settle(harness, "publish", &self.queue, self.events.len() as u64).await?;
        Ok(Measured::rate(rate(self.events.len() as u64, elapsed)))
    }

    async fn baseline(&mut self, harness: &Harness) -> Result<Measured, CliError> {
        let published = publish_raw(harness, ROUTING_KEY, &self.bodies).await?;
        settle(harness, "publish", &self.queue, self.bodies.len() as u64).await?;
        Ok(published)
    }

    async fn same_wire(&mut self, harness: &Harness) -> Option<Result<Measured, CliError>> {
        Some(
            async {
                let published = publish_raw_wire(harness, ROUTING_KEY, &self.events).await?;
                settle(harness, "publish", &self.queue, self.events.len() as u64).await?;
                Ok(published)
            }
            .await,
        )
    }
}

/// Publishes `bodies` with raw lapin to the events exchange with `routing_key`, timed.
pub async fn publish_raw(
    harness: &Harness,
    routing_key: &str,
    bodies: &[Vec<u8>],
) -> Result<Measured, CliError> {
    let publisher = RawPublisher::open(harness).await?;
    let exchange = short(&harness.names.exchange)?;
    let key: ShortString = short(routing_key)?;
    let started = Instant::now();
    let messages = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            Ok(RawMessage {
                routing_key: &key,
                properties: baseline::properties(&i.to_string())?,
                body,
            })
        })
        .collect::<Result<Vec<_>, CliError>>();
    let result = match messages {
        Ok(messages) => publisher.publish_all(&exchange, messages, WINDOW).await,
        Err(e) => Err(e),
    };
    let elapsed = started.elapsed();
    publisher.close().await;
    let published = result?;
    Ok(Measured::rate(rate(published, elapsed)))
}

/// Publishes `events` with raw lapin exactly as ferry puts them on the wire (encoded before
/// the clock starts; the lapin properties and header tables are built inside the timed part,
/// as a raw publisher setting those headers would).
pub async fn publish_raw_wire(
    harness: &Harness,
    routing_key: &str,
    events: &[BenchEvent],
) -> Result<Measured, CliError> {
    let encoded = events
        .iter()
        .map(|e| e.message(routing_key))
        .collect::<Result<Vec<_>, _>>()?;
    let publisher = RawPublisher::open(harness).await?;
    let exchange = short(&harness.names.exchange)?;
    let key: ShortString = short(routing_key)?;
    let started = Instant::now();
    let messages = encoded
        .iter()
        .map(|m| {
            Ok(RawMessage {
                routing_key: &key,
                properties: to_amqp_properties(&m.message)
                    .map_err(|e| CliError::Runtime(format!("cannot map a ferry message: {e}")))?,
                body: &m.message.body,
            })
        })
        .collect::<Result<Vec<_>, CliError>>();
    let result = match messages {
        Ok(messages) => publisher.publish_all(&exchange, messages, WINDOW).await,
        Err(e) => Err(e),
    };
    let elapsed = started.elapsed();
    publisher.close().await;
    let published = result?;
    Ok(Measured::rate(rate(published, elapsed)))
}
