//! A consumer's session with the broker: a channel of one connection generation, its prefetch,
//! its topology declared (or checked), and `basic.consume`; and settling deliveries on it.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use lapin::{
    Acker, Channel, Consumer,
    options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions},
    types::{FieldTable, ShortString},
};

use ferry_core::consume::{Settle, Subscribe, Topology};

use crate::{
    ExchangeKind, RabbitMq, RabbitMqError,
    connection::{Link, with_timeout},
    dead_letter,
    error::is_connection_error,
    stall::{Unsettled, UnsettledGuard},
    topology::{self, ObjectKind, QueueDecl, short},
};

/// The longest an ack or nack may take before the consumer moves on.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// One channel's consumption of the queue.
pub(crate) struct Session {
    pub channel: Channel,
    pub generation: u64,
    pub tag: String,
    /// Its deliveries not settled yet.
    pub unsettled: Unsettled,
}

/// The retry queues known to exist, shared by a consumer's sessions (which declare them) and
/// its republisher (which declares one again when it has disappeared).
#[derive(Clone, Default)]
pub(crate) struct RetryQueues(Arc<Mutex<HashSet<String>>>);

impl RetryQueues {
    pub fn contains(&self, name: &str) -> bool {
        self.0.lock().map(|d| d.contains(name)).unwrap_or(false)
    }

    pub fn mark(&self, name: &str, declared: bool) {
        if let Ok(mut d) = self.0.lock() {
            if declared {
                d.insert(name.to_owned());
            } else {
                d.remove(name);
            }
        }
    }
}

/// Opens a channel on `link`, declares the topology and starts consuming.
pub(crate) async fn open_session(
    bus: &RabbitMq,
    spec: &Subscribe,
    retry_queues: &RetryQueues,
    link: &Link,
) -> Result<(Session, Consumer), RabbitMqError> {
    let timeout = bus.options().operation_timeout();
    let queue = short(ObjectKind::Queue, &spec.queue)?;
    let channel = with_timeout(
        "open a consumer channel",
        timeout,
        link.conn.create_channel(),
    )
    .await?
    .map_err(|e| RabbitMqError::operation("open a consumer channel", &e))?;
    let prefix: String = spec.queue.chars().take(180).collect();
    let tag = format!("ferry.{prefix}.{}", uuid::Uuid::new_v4().simple());
    let result = async {
        if !spec.auto_ack {
            with_timeout(
                "set the prefetch",
                timeout,
                channel.basic_qos(spec.prefetch, BasicQosOptions { global: false }),
            )
            .await?
            .map_err(|e| RabbitMqError::operation("set the prefetch", &e))?;
        }
        declare(bus, spec, &channel, &link.conn, retry_queues).await?;
        let consumer_tag = ShortString::try_new(tag.as_str()).map_err(|_| {
            RabbitMqError::InvalidConsumer(format!("consumer tag `{tag}` is too long"))
        })?;
        let options = BasicConsumeOptions {
            no_ack: spec.auto_ack,
            ..BasicConsumeOptions::default()
        };
        let op = format!("consume queue `{}`", spec.queue);
        with_timeout(
            op.clone(),
            timeout,
            channel.basic_consume(queue, consumer_tag, options, FieldTable::default()),
        )
        .await?
        .map_err(|e| RabbitMqError::operation(op, &e))
    }
    .await;
    match result {
        Ok(consumer) => Ok((
            Session {
                channel,
                generation: link.generation,
                tag,
                unsettled: Unsettled::default(),
            },
            consumer,
        )),
        Err(e) => {
            close_channel(&channel).await;
            Err(e)
        }
    }
}

/// Declares (or checks) what a subscription needs; at the start of every session.
async fn declare(
    bus: &RabbitMq,
    spec: &Subscribe,
    channel: &Channel,
    connection: &lapin::Connection,
    retry_queues: &RetryQueues,
) -> Result<(), RabbitMqError> {
    let options = bus.options();
    let mode = options.topology();
    let timeout = options.operation_timeout();
    let queue = spec.queue.as_str();
    let Topology::Events {
        queue_type,
        delivery_limit,
        single_active_consumer,
        partition,
        bindings,
        dead_letter_exchange,
        retry_delays,
    } = &spec.topology
    else {
        if let Topology::DeadLetters { exchange } = &spec.topology {
            dead_letter::declare_dead_letter_topology(bus, channel, exchange, queue).await?;
        }
        return Ok(());
    };
    let queue_type = queue_type.unwrap_or(options.queue_type());
    let events = options.exchange();
    topology::declare_exchange(channel, events, options.exchange_kind(), mode, timeout).await?;
    if let Some(dlx) = dead_letter_exchange {
        topology::declare_exchange(channel, dlx, ExchangeKind::Topic, mode, timeout).await?;
    }
    let mut decl = QueueDecl::consumer(queue, queue_type);
    if let (Some(limit), Some(dlx)) = (delivery_limit, dead_letter_exchange) {
        decl = decl.delivery_limit(*limit, dlx);
    }
    if *single_active_consumer {
        decl = decl.single_active_consumer();
    }
    topology::declare_queue_checked(connection, channel, &decl, mode, timeout).await?;
    match partition {
        None => {
            for pattern in bindings {
                topology::bind_queue(channel, queue, events, pattern, mode, timeout).await?;
            }
        }
        Some(partition) => {
            // The queue is bound before the exchange is, so no message is routed to the
            // partitioning exchange while it has no queue of this partition.
            let hash = topology::partition_exchange_name(&partition.consumer);
            topology::declare_partition_exchange(channel, &hash, mode, timeout).await?;
            topology::bind_queue(
                channel,
                queue,
                &hash,
                topology::PARTITION_WEIGHT,
                mode,
                timeout,
            )
            .await?;
            for pattern in bindings {
                topology::bind_exchange(channel, &hash, events, pattern, mode, timeout).await?;
            }
        }
    }
    for delay in retry_delays {
        let decl = QueueDecl::retry(queue, *delay, queue_type);
        topology::declare_queue_checked(connection, channel, &decl, mode, timeout).await?;
        retry_queues.mark(&decl.name, true);
    }
    Ok(())
}

pub(crate) async fn close_channel(channel: &Channel) {
    if channel.status().connected() {
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            channel.close(200, "consumer stopped".into()),
        )
        .await;
    }
}

/// Settles a delivery on the channel it came on. Bounded: a settlement lost with its channel
/// must not hold up the consumer (or its shutdown); the broker redelivers what was not acked,
/// and the inbox absorbs the duplicate. Counted in its session's unsettled deliveries until
/// settled (or dropped).
pub(crate) struct AmqpSettle {
    pub acker: Acker,
    /// Uncounts the delivery once it is settled (when this is dropped, after the call).
    pub _unsettled: UnsettledGuard,
}

#[async_trait]
impl Settle for AmqpSettle {
    async fn ack(self: Box<Self>) {
        let result =
            tokio::time::timeout(SETTLE_TIMEOUT, self.acker.ack(BasicAckOptions::default())).await;
        match result {
            Err(_) => tracing::warn!("ack timed out; the broker will redeliver"),
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                tracing::debug!("ack skipped: the channel is gone, the broker will redeliver")
            }
            Ok(Err(e)) => settle_failed("ack", &e),
        }
    }

    async fn reject(self: Box<Self>, requeue: bool) {
        let options = BasicNackOptions {
            multiple: false,
            requeue,
        };
        match tokio::time::timeout(SETTLE_TIMEOUT, self.acker.nack(options)).await {
            Err(_) => tracing::warn!("nack timed out; the broker will redeliver"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => settle_failed("nack", &e),
        }
    }
}

fn settle_failed(what: &str, e: &lapin::Error) {
    if is_connection_error(e) {
        tracing::debug!(error = %e, "{what} failed with the connection; the broker will redeliver");
    } else {
        tracing::warn!(error = %e, "{what} failed; the broker will redeliver");
    }
}
