//! The dead-letter consumer: `bus.dead_letter_consumer("myapp.dlq").on_dead_letter(f)`.
//!
//! Topology: the dead-letter exchange is a durable **topic** exchange, and the dead-letter
//! queue is bound to it with `#`. Dead letters keep their original routing key (`docs/wire-format.md`),
//! so a topic exchange lets an operator bind extra queues for some event types only
//! (`orders.#`), while `#` gives the dead-letter queue all of them. Consumers declare the
//! same exchange the same way, so either may start first.
//!
//! Each dead letter is passed to the callback as a [`DeadLetter`] (decoded where it can be,
//! raw where not, with its [`Fault`](ferry_core::Fault)); `Ok` acks it, an error or a panic
//! requeues it after a pause.

use std::{panic::AssertUnwindSafe, sync::Arc};

use async_trait::async_trait;
use futures::FutureExt;
use lapin::message::Delivery as AmqpDelivery;
use tokio_util::sync::CancellationToken;

use ferry_core::{ConsumerHandle, DeadLetter, DeadLetterSpec, QueueType};

use crate::{
    ExchangeKind, RabbitMq, RabbitMqError,
    runner::{self, Session, Worker},
    topology::{self, QueueDecl},
    wire,
};

/// The binding pattern of the dead-letter queue: every routing key.
pub const DEAD_LETTER_BINDING: &str = "#";

pub(crate) struct DeadLetterWorker {
    bus: RabbitMq,
    spec: DeadLetterSpec,
}

/// Starts a dead-letter consumer.
pub(crate) async fn start(
    bus: &RabbitMq,
    spec: DeadLetterSpec,
) -> Result<ConsumerHandle, RabbitMqError> {
    if spec.on_dead_letter.is_none() {
        return Err(RabbitMqError::InvalidConsumer(format!(
            "dead-letter consumer `{}` has no callback; add `.on_dead_letter(f)`",
            spec.queue
        )));
    }
    let worker = Arc::new(DeadLetterWorker {
        bus: bus.clone(),
        spec,
    });
    runner::start(worker, CancellationToken::new()).await
}

/// Declares (or checks) a dead-letter exchange and queue and the `#` binding between them.
pub(crate) async fn declare_dead_letter_topology(
    bus: &RabbitMq,
    channel: &lapin::Channel,
    exchange: &str,
    queue: &str,
) -> Result<(), RabbitMqError> {
    let options = bus.options();
    let mode = options.topology();
    let timeout = options.operation_timeout();
    topology::declare_exchange(channel, exchange, ExchangeKind::Topic, mode, timeout).await?;
    topology::declare_queue(
        channel,
        &QueueDecl::consumer(queue, QueueType::Classic),
        mode,
        timeout,
    )
    .await?;
    topology::bind_queue(channel, queue, exchange, DEAD_LETTER_BINDING, mode, timeout).await
}

#[async_trait]
impl Worker for DeadLetterWorker {
    fn bus(&self) -> &RabbitMq {
        &self.bus
    }

    fn queue(&self) -> &str {
        &self.spec.queue
    }

    fn prefetch(&self) -> u16 {
        self.spec.prefetch
    }

    fn concurrency(&self) -> usize {
        1
    }

    fn no_ack(&self) -> bool {
        false
    }

    async fn declare(&self, session: &Session) -> Result<(), RabbitMqError> {
        declare_dead_letter_topology(
            &self.bus,
            &session.channel,
            &self.spec.exchange,
            &self.spec.queue,
        )
        .await
    }

    async fn handle(&self, amqp: AmqpDelivery, _session: Arc<Session>, cancel: CancellationToken) {
        let Some(callback) = &self.spec.on_dead_letter else {
            runner::requeue_after_pause(&amqp.acker, &cancel).await;
            return;
        };
        let message = wire::from_amqp(&amqp.properties, &amqp.data);
        let dead_letter = DeadLetter::from_message(message, amqp.routing_key.as_str());
        let id = dead_letter.message_id().unwrap_or("").to_owned();
        match AssertUnwindSafe(callback(dead_letter)).catch_unwind().await {
            Ok(Ok(())) => runner::ack(&amqp.acker).await,
            Ok(Err(e)) => {
                tracing::warn!(queue = %self.spec.queue, id = %id, error = %e, "dead-letter callback failed; the dead letter stays on the queue");
                runner::requeue_after_pause(&amqp.acker, &cancel).await;
            }
            Err(_) => {
                tracing::error!(queue = %self.spec.queue, id = %id, "dead-letter callback panicked; the dead letter stays on the queue");
                runner::requeue_after_pause(&amqp.acker, &cancel).await;
            }
        }
    }
}
