//! The raw lapin baselines: a confirmed publisher with a sliding window of unconfirmed
//! publishes, and a consume loop that acks each delivery. Same settings as ferry: persistent,
//! `mandatory`, confirms, [`WINDOW`] in flight, prefetch [`PREFETCH`].

use std::time::{Duration, Instant};

use ferry::{plumbing::OutgoingMessage, rabbitmq::wire::to_amqp_properties};
use futures::{StreamExt, stream::FuturesUnordered};
use lapin::{
    BasicProperties, Channel, Confirmation, PublisherConfirm,
    message::Delivery,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions,
        BasicQosOptions, ConfirmSelectOptions,
    },
    types::{FieldTable, ShortString},
};

use super::{
    harness::{Harness, amqp_error, close_channel, short, timed},
    stats::{Span, nanos},
};
use crate::error::BenchError;

/// Publishes in flight at once (unconfirmed), ferry's and the baseline's.
pub const WINDOW: usize = 1000;

/// Unacked deliveries the broker may send at once, ferry's and the baseline's.
pub const PREFETCH: u16 = 200;

/// How long a run may go without progress before the bench gives up (exit 3).
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The properties of a baseline message: persistent JSON with an id.
pub fn properties(message_id: &str) -> Result<BasicProperties, BenchError> {
    Ok(BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(short("application/json")?)
        .with_message_id(short(message_id)?))
}

/// One message for [`RawPublisher::publish_all`].
pub struct RawMessage<'a> {
    /// The routing key.
    pub routing_key: &'a ShortString,
    /// The properties (headers included).
    pub properties: BasicProperties,
    /// The body.
    pub body: &'a [u8],
}

impl<'a> RawMessage<'a> {
    /// A baseline message: `body` as persistent JSON with id `seq`.
    pub fn plain(
        routing_key: &'a ShortString,
        seq: u64,
        body: &'a [u8],
    ) -> Result<Self, BenchError> {
        Ok(Self {
            routing_key,
            properties: properties(&seq.to_string())?,
            body,
        })
    }

    /// ferry's exact wire message (CloudEvents headers and properties) as a raw one.
    pub fn wire(
        routing_key: &'a ShortString,
        message: &'a OutgoingMessage,
    ) -> Result<Self, BenchError> {
        Ok(Self {
            routing_key,
            properties: to_amqp_properties(&message.message)
                .map_err(|e| BenchError::Runtime(format!("cannot map a ferry message: {e}")))?,
            body: &message.message.body,
        })
    }
}

/// A raw lapin publisher on a confirm channel of its own.
pub struct RawPublisher {
    channel: Channel,
}

impl RawPublisher {
    /// Opens the channel and turns confirms on.
    pub async fn open(harness: &Harness) -> Result<Self, BenchError> {
        let channel = harness.raw_channel().await?;
        let selected = timed("enabling confirms", async {
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|e| amqp_error("cannot enable publisher confirms", &e))
        })
        .await;
        if let Err(e) = selected {
            close_channel(&channel).await;
            return Err(e);
        }
        Ok(Self { channel })
    }

    /// Publishes every message to `exchange` with at most `window` unconfirmed; returns once
    /// every one is confirmed. A nack or a returned (unroutable) message is an error.
    pub async fn publish_all<'a>(
        &self,
        exchange: &ShortString,
        messages: impl IntoIterator<Item = RawMessage<'a>>,
        window: usize,
    ) -> Result<u64, BenchError> {
        let options = BasicPublishOptions {
            mandatory: true,
            immediate: false,
        };
        let mut in_flight: FuturesUnordered<PublisherConfirm> = FuturesUnordered::new();
        let mut published = 0u64;
        for message in messages {
            while in_flight.len() >= window.max(1) {
                settle_next(&mut in_flight).await?;
            }
            let confirm = self
                .channel
                .basic_publish(
                    exchange.clone(),
                    message.routing_key.clone(),
                    options,
                    message.body,
                    message.properties,
                )
                .await
                .map_err(|e| amqp_error("raw publish failed", &e))?;
            in_flight.push(confirm);
            published += 1;
        }
        while !in_flight.is_empty() {
            settle_next(&mut in_flight).await?;
        }
        Ok(published)
    }

    /// Publishes one message without waiting for its confirm; the confirm is returned.
    pub async fn publish_one(
        &self,
        exchange: &ShortString,
        message: RawMessage<'_>,
    ) -> Result<PublisherConfirm, BenchError> {
        self.channel
            .basic_publish(
                exchange.clone(),
                message.routing_key.clone(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                message.body,
                message.properties,
            )
            .await
            .map_err(|e| amqp_error("raw publish failed", &e))
    }

    /// Closes the channel.
    pub async fn close(self) {
        close_channel(&self.channel).await;
    }
}

async fn settle_next(in_flight: &mut FuturesUnordered<PublisherConfirm>) -> Result<(), BenchError> {
    match tokio::time::timeout(STALL_TIMEOUT, in_flight.next()).await {
        Err(_) => Err(BenchError::Timeout(format!(
            "no publisher confirm for {} s",
            STALL_TIMEOUT.as_secs()
        ))),
        Ok(None) => Ok(()),
        Ok(Some(confirmation)) => check_confirmation(confirmation),
    }
}

/// A confirm's outcome: an ack of a routed message is the only success.
pub fn check_confirmation(confirmation: lapin::Result<Confirmation>) -> Result<(), BenchError> {
    match confirmation {
        Ok(Confirmation::Ack(None)) => Ok(()),
        Ok(Confirmation::Ack(Some(_))) => Err(BenchError::Runtime(
            "a raw publish came back unroutable".into(),
        )),
        Ok(Confirmation::Nack(_)) => Err(BenchError::Runtime(
            "the broker nacked a raw publish".into(),
        )),
        Ok(Confirmation::NotRequested) => Err(BenchError::Runtime(
            "publisher confirms are off on the raw channel".into(),
        )),
        Err(e) => Err(amqp_error("raw publish failed", &e)),
    }
}

fn settle_ack(ack: Option<lapin::Result<bool>>) -> Result<(), BenchError> {
    match ack {
        Some(Err(e)) => Err(amqp_error("raw ack failed", &e)),
        Some(Ok(false)) => Err(BenchError::Runtime(
            "a raw ack was refused: the channel is gone".into(),
        )),
        Some(Ok(true)) | None => Ok(()),
    }
}

/// Consumes `count` deliveries from `queue` with prefetch [`PREFETCH`], acking each one
/// (individually, not `multiple`) after `on_delivery` saw it, without waiting for one ack to
/// be written before taking the next delivery (at most [`PREFETCH`] acks pending); returns
/// when the last is acked. (A loop that awaits each ack before the next delivery is slower on
/// this machine than ferry's consumer: it pays a round trip to lapin's I/O thread per
/// message.)
pub async fn consume_ack(
    harness: &Harness,
    queue: &str,
    count: u64,
    mut on_delivery: impl FnMut(&Delivery, Instant),
) -> Result<Span, BenchError> {
    consume_ack_after(harness, queue, count, |delivery, at| {
        on_delivery(delivery, at);
        std::future::ready(Ok(()))
    })
    .await
}

/// [`consume_ack`], acking each delivery once the future `work` made for it is done (one
/// delivery at a time: the next is taken after it); the first failure ends the run.
pub async fn consume_ack_after<F>(
    harness: &Harness,
    queue: &str,
    count: u64,
    mut work: impl FnMut(&Delivery, Instant) -> F,
) -> Result<Span, BenchError>
where
    F: Future<Output = Result<(), BenchError>>,
{
    let channel = harness.raw_channel().await?;
    let result = async {
        channel
            .basic_qos(PREFETCH, BasicQosOptions { global: false })
            .await
            .map_err(|e| amqp_error("cannot set the prefetch", &e))?;
        let tag = short(&format!(
            "ferry-bench-lapin-{}",
            uuid::Uuid::new_v4().simple()
        ))?;
        let mut consumer = channel
            .basic_consume(
                short(queue)?,
                tag.clone(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| amqp_error(&format!("cannot consume queue `{queue}`"), &e))?;
        let mut span = Span::default();
        let mut acks = FuturesUnordered::new();
        while span.count < count {
            let delivery = match tokio::time::timeout(STALL_TIMEOUT, consumer.next()).await {
                Err(_) => {
                    return Err(BenchError::Timeout(format!(
                        "no delivery from `{queue}` for {} s ({} of {count} consumed)",
                        STALL_TIMEOUT.as_secs(),
                        span.count
                    )));
                }
                Ok(None) => {
                    return Err(BenchError::Runtime(format!(
                        "the broker ended the raw consumer of `{queue}`"
                    )));
                }
                Ok(Some(Err(e))) => return Err(amqp_error("raw consume failed", &e)),
                Ok(Some(Ok(delivery))) => delivery,
            };
            let now = Instant::now();
            work(&delivery, now).await?;
            let acker = delivery.acker;
            acks.push(async move { acker.ack(BasicAckOptions::default()).await });
            while acks.len() >= usize::from(PREFETCH) {
                settle_ack(acks.next().await)?;
            }
            span.record(now);
        }
        while !acks.is_empty() {
            settle_ack(acks.next().await)?;
        }
        let _ = channel
            .basic_cancel(tag, BasicCancelOptions::default())
            .await;
        Ok(span)
    }
    .await;
    close_channel(&channel).await;
    result
}

/// When event `seq` of a run paced at `rate_per_s` from `start` is due.
pub fn due(start: Instant, seq: u64, rate_per_s: u64) -> tokio::time::Instant {
    tokio::time::Instant::from_std(start + Duration::from_micros(seq * 1_000_000 / rate_per_s))
}

/// The paced baseline: publishes `bodies` with raw lapin one at a time on a confirm channel of
/// its own, body `seq` when [`due`] at `rate_per_s` from `warm_up` from now, routed with
/// `routing_key`; calls `on_published(seq, at)` as each goes out. Returns each message's
/// publish-to-confirm time in nanoseconds (in confirm order).
pub async fn publish_paced(
    harness: &Harness,
    routing_key: &str,
    bodies: &[Vec<u8>],
    (warm_up, rate_per_s): (Duration, u64),
    mut on_published: impl FnMut(u64, Instant),
) -> Result<Vec<u64>, BenchError> {
    let publisher = RawPublisher::open(harness).await?;
    let result = async {
        let exchange = short(&harness.names.exchange)?;
        let key = short(routing_key)?;
        let start = Instant::now() + warm_up;
        let mut confirms = FuturesUnordered::new();
        let mut samples = Vec::with_capacity(bodies.len());
        for (seq, body) in (0u64..).zip(bodies) {
            let due = due(start, seq, rate_per_s);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => break,
                    Some((at, confirmation)) = confirms.next(), if !confirms.is_empty() => {
                        check_confirmation(confirmation)?;
                        samples.push(nanos(Instant::now().saturating_duration_since(at)));
                    }
                }
            }
            let message = RawMessage::plain(&key, seq, body)?;
            let at = Instant::now();
            on_published(seq, at);
            let confirm = publisher.publish_one(&exchange, message).await?;
            confirms.push(async move { (at, confirm.await) });
        }
        while let Some((at, confirmation)) = confirms.next().await {
            check_confirmation(confirmation)?;
            samples.push(nanos(Instant::now().saturating_duration_since(at)));
        }
        Ok(samples)
    }
    .await;
    publisher.close().await;
    result
}
