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
    ConsumerHandle, ConsumerSpec, DeadLetterSpec, OutgoingMessage, PublishError, WireMessage,
    consume::{ConsumerPlan, Destination, InvalidConsumer, Republish},
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
    let plan = ConsumerPlan::events(spec, bus.options().dead_letter_exchange()).map_err(invalid)?;
    launch(bus, plan).await
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
    let republisher = Republisher {
        bus: bus.clone(),
        retry_queues,
    };
    Ok(plan.start(Box::new(subscription), Arc::new(republisher)))
}

/// Publishes a consumer's retry and dead-letter copies.
struct Republisher {
    bus: RabbitMq,
    retry_queues: RetryQueues,
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
                let decl = QueueDecl::retry(queue, delay);
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
        let result = topology::declare_queue(&channel, decl, options.topology(), timeout).await;
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
