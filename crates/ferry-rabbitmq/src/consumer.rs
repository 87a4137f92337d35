//! Event and dead-letter consumers on RabbitMQ: each runs the core consume loop
//! ([`ferry_core::consume`]) on an [`AmqpSubscription`](crate::stream) with this transport's
//! republish:
//!
//! - a retry copy is published, confirmed, to the default exchange with routing key
//!   `<queue>.retry.<delay_ms>`; that retry queue (durable, `x-message-ttl`, dead-lettering
//!   back to the queue) is declared when the consumer starts and again if it disappears;
//! - a dead-letter copy is published, confirmed and `mandatory`, to the dead-letter exchange.
//!
//! A consumer without a dead-letter exchange of its own takes
//! [`RabbitMqOptions::with_dead_letter_exchange`](crate::RabbitMqOptions::with_dead_letter_exchange)'s,
//! and consumer limits not set on the consumer come from the options.

use std::sync::Arc;

use async_trait::async_trait;

use ferry_core::{
    ConsumerHandle, ConsumerSpec, DeadLetterSpec, OutgoingMessage, PublishError, QueueType,
    WireMessage,
    consume::{ConsumerPlan, Destination, InvalidConsumer, Republish, Topology},
};

use crate::{
    RabbitMq, RabbitMqError,
    session::{RetryQueues, close_channel},
    stream::AmqpSubscription,
    topology::{self, QueueDecl},
};

fn invalid(e: InvalidConsumer) -> RabbitMqError {
    RabbitMqError::InvalidConsumer(e.to_string())
}

/// Starts an event consumer.
pub(crate) async fn start(
    bus: &RabbitMq,
    mut spec: ConsumerSpec,
) -> Result<ConsumerHandle, RabbitMqError> {
    if !spec.pipeline.has_limits_set() {
        if let Some(limits) = bus.options().consumer_limits() {
            spec.pipeline.set_limits(limits);
        }
    }
    resolve_queue(bus, &mut spec)?;
    let plans =
        ConsumerPlan::partitioned(spec, bus.options().dead_letter_exchange()).map_err(invalid)?;
    let mut handles = Vec::with_capacity(plans.len());
    for plan in plans {
        match launch(bus, plan).await {
            Ok(handle) => handles.push(handle),
            Err(e) => {
                for started in handles {
                    started.shutdown().await;
                }
                return Err(e);
            }
        }
    }
    match handles.len() {
        1 => Ok(handles.remove(0)),
        _ => Ok(ConsumerHandle::join(handles)),
    }
}

/// The queue type and delivery limit a consumer declares: its own, else the options'. A
/// delivery limit is a quorum queue's: asked of a classic queue, it is a configuration error;
/// the options' default applies to quorum queues only.
fn resolve_queue(bus: &RabbitMq, spec: &mut ConsumerSpec) -> Result<(), RabbitMqError> {
    let options = bus.options();
    let queue_type = spec.queue_type.unwrap_or(options.queue_type());
    spec.queue_type = Some(queue_type);
    match (queue_type, spec.delivery_limit) {
        (QueueType::Classic, Some(limit)) => Err(RabbitMqError::InvalidConsumer(format!(
            "consumer `{}` has delivery limit {limit}, which only quorum queues have; add \
             `.quorum()` or drop `.delivery_limit(..)`",
            spec.queue
        ))),
        (QueueType::Quorum, None) => {
            spec.delivery_limit = options.delivery_limit();
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Starts a dead-letter consumer.
pub(crate) async fn start_dead_letters(
    bus: &RabbitMq,
    spec: DeadLetterSpec,
) -> Result<ConsumerHandle, RabbitMqError> {
    launch(bus, ConsumerPlan::dead_letters(spec).map_err(invalid)?).await
}

async fn launch(bus: &RabbitMq, plan: ConsumerPlan) -> Result<ConsumerHandle, RabbitMqError> {
    let retry_queues = RetryQueues::default();
    let subscription =
        AmqpSubscription::open(bus, plan.subscribe().clone(), retry_queues.clone()).await?;
    let queue_type = match &plan.subscribe().topology {
        Topology::Events { queue_type, .. } => queue_type.unwrap_or(bus.options().queue_type()),
        Topology::DeadLetters { .. } => bus.options().queue_type(),
    };
    let republisher = Republisher {
        bus: bus.clone(),
        retry_queues,
        queue_type,
    };
    Ok(plan.start(Box::new(subscription), Arc::new(republisher)))
}

/// Publishes a consumer's retry and dead-letter copies.
struct Republisher {
    bus: RabbitMq,
    retry_queues: RetryQueues,
    /// The type of the consumer's queue, which its retry queues share.
    queue_type: QueueType,
}

#[async_trait]
impl Republish for Republisher {
    async fn republish(&self, to: Destination<'_>, copy: WireMessage) -> Result<(), PublishError> {
        let (exchange, routing_key) = match to {
            Destination::Exchange {
                exchange,
                routing_key,
            } => (exchange.to_owned(), routing_key.to_owned()),
            Destination::Retry { queue, delay } => {
                let decl = QueueDecl::retry(queue, delay, self.queue_type);
                if !self.retry_queues.contains(&decl.name) {
                    self.declare_retry_queue(&decl).await?;
                    self.retry_queues.mark(&decl.name, true);
                }
                (String::new(), decl.name)
            }
        };
        let retry_queue = exchange.is_empty().then(|| routing_key.clone());
        let result = self
            .bus
            .publish_one(OutgoingMessage {
                exchange: Some(exchange),
                routing_key,
                message: copy,
            })
            .await;
        if let (Some(name), Err(PublishError::Unroutable { .. })) = (retry_queue, &result) {
            // Someone deleted the retry queue: declare it again next time.
            self.retry_queues.mark(&name, false);
        }
        result
    }
}

impl Republisher {
    async fn declare_retry_queue(&self, decl: &QueueDecl) -> Result<(), PublishError> {
        let options = self.bus.options();
        let Some(link) = self.bus.connection().current() else {
            return Err(PublishError::Unavailable("the connection is down".into()));
        };
        let timeout = options.operation_timeout();
        let channel = match tokio::time::timeout(timeout, link.conn.create_channel()).await {
            Ok(Ok(channel)) => channel,
            Ok(Err(e)) => {
                return Err(PublishError::Unavailable(
                    ferry_core::publisher::Reason::caused_by("cannot open a channel", e),
                ));
            }
            Err(_) => {
                return Err(PublishError::Unavailable(
                    "opening a channel timed out".into(),
                ));
            }
        };
        let result = topology::declare_queue_checked(
            &link.conn,
            &channel,
            decl,
            options.topology(),
            timeout,
        )
        .await;
        close_channel(&channel).await;
        result.map(|_| ()).map_err(|e| match e {
            e if e.is_unavailable() => PublishError::Unavailable(
                ferry_core::publisher::Reason::caused_by("cannot declare a retry queue", e),
            ),
            e => PublishError::Other(ferry_core::publisher::Reason::caused_by(
                "cannot declare a retry queue",
                e,
            )),
        })
    }
}
