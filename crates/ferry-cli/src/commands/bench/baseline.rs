//! The raw lapin baselines: a confirmed publisher with a sliding window of unconfirmed
//! publishes, and a consume loop that acks each delivery. Same settings as ferry: persistent,
//! `mandatory`, confirms, [`WINDOW`] in flight, prefetch [`PREFETCH`].

use std::time::{Duration, Instant};

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
    report::Span,
};
use crate::error::CliError;

/// Publishes in flight at once (unconfirmed), ferry's and the baseline's.
pub const WINDOW: usize = 1000;

/// Unacked deliveries the broker may send at once, ferry's and the baseline's.
pub const PREFETCH: u16 = 200;

/// How long a run may go without progress before the bench gives up (exit 3).
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The properties of a baseline message: persistent JSON with an id.
pub fn properties(message_id: &str) -> Result<BasicProperties, CliError> {
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

/// A raw lapin publisher on a confirm channel of its own.
pub struct RawPublisher {
    channel: Channel,
}

impl RawPublisher {
    /// Opens the channel and turns confirms on.
    pub async fn open(harness: &Harness) -> Result<Self, CliError> {
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
    ) -> Result<u64, CliError> {
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
    ) -> Result<PublisherConfirm, CliError> {
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

async fn settle_next(in_flight: &mut FuturesUnordered<PublisherConfirm>) -> Result<(), CliError> {
    match tokio::time::timeout(STALL_TIMEOUT, in_flight.next()).await {
        Err(_) => Err(CliError::Timeout(format!(
            "no publisher confirm for {} s",
            STALL_TIMEOUT.as_secs()
        ))),
        Ok(None) => Ok(()),
        Ok(Some(confirmation)) => check_confirmation(confirmation),
    }
}

/// A confirm's outcome: an ack of a routed message is the only success.
pub fn check_confirmation(confirmation: lapin::Result<Confirmation>) -> Result<(), CliError> {
    match confirmation {
        Ok(Confirmation::Ack(None)) => Ok(()),
        Ok(Confirmation::Ack(Some(_))) => Err(CliError::Runtime(
            "a raw publish came back unroutable".into(),
        )),
        Ok(Confirmation::Nack(_)) => {
            Err(CliError::Runtime("the broker nacked a raw publish".into()))
        }
        Ok(Confirmation::NotRequested) => Err(CliError::Runtime(
            "publisher confirms are off on the raw channel".into(),
        )),
        Err(e) => Err(amqp_error("raw publish failed", &e)),
    }
}

fn settle_ack(ack: Option<lapin::Result<bool>>) -> Result<(), CliError> {
    match ack {
        Some(Err(e)) => Err(amqp_error("raw ack failed", &e)),
        Some(Ok(false)) => Err(CliError::Runtime(
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
) -> Result<Span, CliError> {
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
                    return Err(CliError::Timeout(format!(
                        "no delivery from `{queue}` for {} s ({} of {count} consumed)",
                        STALL_TIMEOUT.as_secs(),
                        span.count
                    )));
                }
                Ok(None) => {
                    return Err(CliError::Runtime(format!(
                        "the broker ended the raw consumer of `{queue}`"
                    )));
                }
                Ok(Some(Err(e))) => return Err(amqp_error("raw consume failed", &e)),
                Ok(Some(Ok(delivery))) => delivery,
            };
            let now = Instant::now();
            on_delivery(&delivery, now);
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
