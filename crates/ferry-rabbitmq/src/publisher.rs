//! The confirmed publisher: persistent, `mandatory` publishes on confirm channels; a batch
//! goes out all at once, then every confirm is awaited.
//!
//! Each publish call takes one of a few confirm channels for itself, so the messages the broker
//! returns as unroutable are matched to the right publish (by message id) even though lapin
//! hands a returned message to whichever confirm completes next.

use std::time::Duration;

use ferry_core::{OutgoingMessage, PublishError, publisher::Reason};
use lapin::{
    BasicProperties, Channel, Confirmation, PublisherConfirm,
    message::BasicReturnMessage,
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::ShortString,
};
use tokio::sync::Mutex;

use crate::{
    connection::{ConnectionManager, Link, WaitError},
    error::is_connection_error,
    wire,
};

struct ConfirmChannel {
    channel: Channel,
    generation: u64,
}

/// The confirm channels publishes are spread over.
pub(crate) struct PublisherPool {
    slots: Vec<Mutex<Option<ConfirmChannel>>>,
    next: std::sync::atomic::AtomicUsize,
}

impl PublisherPool {
    pub fn new(channels: usize) -> Self {
        Self {
            slots: (0..channels.max(1)).map(|_| Mutex::new(None)).collect(),
            next: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Closes every channel (at shutdown).
    pub async fn close(&self) {
        for slot in &self.slots {
            if let Some(c) = slot.lock().await.take() {
                close_channel(c.channel);
            }
        }
    }
}

/// Everything a publish needs.
pub(crate) struct PublishContext<'a> {
    pub pool: &'a PublisherPool,
    pub connection: &'a ConnectionManager,
    pub default_exchange: &'a str,
    pub confirm_timeout: Duration,
    pub operation_timeout: Duration,
    pub reconnect_wait: Duration,
}

fn unavailable(reason: impl std::fmt::Display) -> PublishError {
    PublishError::Unavailable(reason.to_string().into())
}

/// A lapin error as a publish error that keeps it as its source.
pub(crate) fn map_lapin(error: &lapin::Error) -> PublishError {
    if is_connection_error(error) {
        PublishError::Unavailable(Reason::caused_by(
            "the connection or channel is down",
            error.clone(),
        ))
    } else {
        PublishError::Other(Reason::caused_by(
            "the broker refused the publish",
            error.clone(),
        ))
    }
}

/// Publishes `messages` on one confirm channel: all in flight, then every confirm awaited.
/// Returns each message's outcome, in order.
pub(crate) async fn publish_batch(
    ctx: &PublishContext<'_>,
    messages: Vec<OutgoingMessage>,
) -> Vec<Result<(), PublishError>> {
    if messages.is_empty() {
        return Vec::new();
    }
    let n = messages.len();
    let link = match ctx.connection.wait_up(ctx.reconnect_wait, None).await {
        Ok(link) => link,
        Err(WaitError::Unavailable(reason)) => {
            return vec![Err(unavailable(reason)); n];
        }
        Err(_) => return vec![Err(unavailable("the transport is closed")); n],
    };
    if let Err(e) = wait_unblocked(&link, ctx.reconnect_wait).await {
        return vec![Err(e); n];
    }
    // A free channel if there is one (a lone publisher keeps reusing the same channel), else
    // wait for one in turn.
    let slots = &ctx.pool.slots;
    let start = ctx
        .pool
        .next
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        % slots.len();
    let free = (0..slots.len()).find_map(|i| slots[i].try_lock().ok());
    let mut slot = match free {
        Some(slot) => slot,
        None => slots[start].lock().await,
    };
    let open_timeout = ctx.operation_timeout.min(ctx.confirm_timeout);
    let channel = match ensure_channel(&mut slot, &link, open_timeout).await {
        Ok(channel) => channel,
        Err(e) => return vec![Err(e); n],
    };

    let (results, discard) = publish_on(&channel, ctx, messages).await;
    if discard {
        if let Some(c) = slot.take() {
            close_channel(c.channel);
        }
    }
    results
}

/// Waits (up to `wait`) while the broker blocks the connection (`connection.blocked`, sent
/// during a memory or disk alarm): the client then writes nothing at all, so a publish would
/// hang until the alarm clears. Not the message's fault: `Unavailable`.
async fn wait_unblocked(link: &Link, wait: Duration) -> Result<(), PublishError> {
    let deadline = tokio::time::Instant::now() + wait;
    while link.conn.status().blocked() {
        if tokio::time::Instant::now() >= deadline {
            return Err(unavailable(
                "the broker blocks publishing on this connection (a memory or disk alarm); \
                 publishes resume when it clears",
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn ensure_channel(
    slot: &mut Option<ConfirmChannel>,
    link: &Link,
    timeout: Duration,
) -> Result<Channel, PublishError> {
    if let Some(c) = slot.as_ref() {
        if c.generation == link.generation && c.channel.status().connected() {
            return Ok(c.channel.clone());
        }
    }
    if let Some(old) = slot.take() {
        close_channel(old.channel);
    }
    let channel = match tokio::time::timeout(timeout, link.conn.create_channel()).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(e)) => return Err(map_lapin(&e)),
        Err(_) => return Err(unavailable("opening a publisher channel timed out")),
    };
    match tokio::time::timeout(
        timeout,
        channel.confirm_select(ConfirmSelectOptions::default()),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(map_lapin(&e)),
        Err(_) => return Err(unavailable("enabling publisher confirms timed out")),
    }
    *slot = Some(ConfirmChannel {
        channel: channel.clone(),
        generation: link.generation,
    });
    Ok(channel)
}

fn close_channel(channel: Channel) {
    if channel.status().connected() {
        tokio::spawn(async move {
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                channel.close(200, "publisher channel replaced".into()),
            )
            .await;
        });
    }
}

struct InFlight {
    index: usize,
    confirm: PublisherConfirm,
}

/// Returns the outcomes and whether the channel should be discarded.
async fn publish_on(
    channel: &Channel,
    ctx: &PublishContext<'_>,
    messages: Vec<OutgoingMessage>,
) -> (Vec<Result<(), PublishError>>, bool) {
    let n = messages.len();
    let mut results: Vec<Result<(), PublishError>> = vec![Ok(()); n];
    let mut in_flight = Vec::with_capacity(n);
    let mut discard = false;
    let mut broken: Option<PublishError> = None;
    // One deadline for the batch, sending included: a broker that stops reading (a blocked
    // connection) holds up the writes themselves.
    let deadline = tokio::time::Instant::now() + ctx.confirm_timeout;
    let timeout_ms = u64::try_from(ctx.confirm_timeout.as_millis()).unwrap_or(u64::MAX);

    for (index, m) in messages.iter().enumerate() {
        if let Some(e) = &broken {
            results[index] = Err(e.clone());
            continue;
        }
        let exchange = m.exchange.as_deref().unwrap_or(ctx.default_exchange);
        let (exchange_s, key, props) = match prepare(exchange, m) {
            Ok(p) => p,
            Err(e) => {
                results[index] = Err(e);
                continue;
            }
        };
        let options = BasicPublishOptions {
            mandatory: true,
            immediate: false,
        };
        let publish = channel.basic_publish(exchange_s, key, options, &m.message.body, props);
        match tokio::time::timeout_at(deadline, publish).await {
            Ok(Ok(confirm)) => in_flight.push(InFlight { index, confirm }),
            Ok(Err(e)) => {
                let err = map_lapin(&e);
                discard = true;
                results[index] = Err(err.clone());
                broken = Some(err);
            }
            Err(_) => {
                // Handed to the client but not yet written: it may still go out later, so its
                // fate is unknown. The messages after it were never handed over.
                discard = true;
                results[index] = Err(PublishError::ConfirmTimeout {
                    id: m.id().to_owned(),
                    timeout_ms,
                });
                broken = Some(unavailable(format!(
                    "the broker did not take the batch's messages within {timeout_ms} ms{}",
                    if channel.status().connected() {
                        " (it stopped reading: a blocked connection?)"
                    } else {
                        ""
                    }
                )));
            }
        }
    }

    // Every confirm, within the batch's deadline.
    let mut returned: Vec<(usize, BasicReturnMessage)> = Vec::new();
    for InFlight { index, confirm } in in_flight {
        let id = messages[index].id().to_owned();
        match tokio::time::timeout_at(deadline, confirm).await {
            Err(_) => {
                discard = true;
                results[index] = Err(PublishError::ConfirmTimeout { id, timeout_ms });
            }
            Ok(Ok(Confirmation::Ack(ret))) => {
                if let Some(ret) = ret {
                    returned.push((index, ret));
                }
            }
            Ok(Ok(Confirmation::Nack(ret))) => {
                if let Some(ret) = ret {
                    returned.push((index, ret));
                }
                // A quorum queue that rejected a publish (`x-overflow: reject-publish`) leaves
                // the channel's client of that queue rejecting until the queue says otherwise,
                // which after a leader change on a node's loss may never come: the next
                // publishes take a fresh channel.
                discard = true;
                results[index] = Err(PublishError::Nacked { id });
            }
            Ok(Ok(Confirmation::NotRequested)) => {
                discard = true;
                results[index] = Err(PublishError::Other(
                    "publisher confirms are off on this channel".into(),
                ));
            }
            Ok(Err(e)) => {
                discard = true;
                results[index] = Err(map_lapin(&e));
            }
        }
    }

    // Unroutable messages: match each returned message to its publish by message id (lapin
    // attaches it to whichever confirm completed next), falling back to the carrier.
    let mut taken = vec![false; n];
    for (carrier, ret) in returned {
        let target =
            matching_publish(&messages, &taken, &ret, ctx.default_exchange).unwrap_or(carrier);
        taken[target] = true;
        let m = &messages[target];
        let exchange = m.exchange.as_deref().unwrap_or(ctx.default_exchange);
        if results[target].is_ok() {
            results[target] = Err(PublishError::Unroutable {
                exchange: exchange.to_owned(),
                routing_key: m.routing_key.clone(),
            });
        }
    }
    (results, discard)
}

fn matching_publish(
    messages: &[OutgoingMessage],
    taken: &[bool],
    ret: &BasicReturnMessage,
    default_exchange: &str,
) -> Option<usize> {
    let id = ret
        .delivery
        .properties
        .message_id()
        .as_ref()?
        .as_str()
        .to_owned();
    messages.iter().enumerate().position(|(i, m)| {
        !taken[i]
            && m.id() == id
            && m.routing_key == ret.delivery.routing_key.as_str()
            && m.exchange.as_deref().unwrap_or(default_exchange) == ret.delivery.exchange.as_str()
    })
}

fn prepare(
    exchange: &str,
    m: &OutgoingMessage,
) -> Result<(ShortString, ShortString, BasicProperties), PublishError> {
    let exchange_s = ShortString::try_new(exchange).map_err(|_| {
        PublishError::Other(format!("exchange `{exchange}` is longer than 255 bytes").into())
    })?;
    let key = ShortString::try_new(m.routing_key.as_str()).map_err(|_| {
        PublishError::Other(
            format!(
                "routing key `{}…` is longer than 255 bytes",
                m.routing_key.chars().take(40).collect::<String>()
            )
            .into(),
        )
    })?;
    let mut props =
        wire::to_amqp_properties(&m.message).map_err(|e| PublishError::Encode(e.to_string()))?;
    if m.message.properties.delivery_mode.is_none() {
        props = props.with_delivery_mode(2);
    }
    Ok((exchange_s, key, props))
}
