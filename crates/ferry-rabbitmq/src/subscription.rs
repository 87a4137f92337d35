//! A temporary subscription to the events exchange (what `ferry tail` reads).
//!
//! The queue is server-named, exclusive and auto-deleted: it disappears with the subscription.
//! Deliveries are acked on arrival (watching must not hold messages back). A subscription does
//! not survive a connection loss: [`Subscription::next`] then returns an error.

use futures::StreamExt;
use lapin::{
    Channel, Consumer,
    options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions},
    types::{FieldTable, ShortString},
};

use ferry_core::WireMessage;

use crate::{
    RabbitMq, RabbitMqError,
    connection::with_timeout,
    session::close_channel,
    topology::{ObjectKind, TopologyError, short},
    wire,
};

/// A message received on a subscription.
#[derive(Debug, Clone)]
pub struct Received {
    /// The exchange it was published to.
    pub exchange: String,
    /// The routing key it was published with.
    pub routing_key: String,
    /// The message.
    pub message: WireMessage,
}

/// A temporary queue bound to the events exchange; see [`RabbitMq::subscribe`].
pub struct Subscription {
    channel: Channel,
    consumer: Consumer,
    queue: String,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("queue", &self.queue)
            .finish()
    }
}

impl Subscription {
    pub(crate) async fn open(bus: &RabbitMq, patterns: &[&str]) -> Result<Self, RabbitMqError> {
        let options = bus.options();
        let timeout = options.operation_timeout();
        let link = bus
            .connection()
            .wait_up(options.connect_timeout(), None)
            .await
            .map_err(|e| bus.connection().wait_error(e))?;
        let channel = with_timeout("open a channel", timeout, link.conn.create_channel())
            .await?
            .map_err(|e| RabbitMqError::operation("open a channel", &e))?;
        match Self::setup(bus, &channel, patterns).await {
            Ok((queue, consumer)) => Ok(Self {
                channel,
                consumer,
                queue,
            }),
            Err(e) => {
                close_channel(&channel).await;
                Err(e)
            }
        }
    }

    async fn setup(
        bus: &RabbitMq,
        channel: &Channel,
        patterns: &[&str],
    ) -> Result<(String, Consumer), RabbitMqError> {
        let options = bus.options();
        let timeout = options.operation_timeout();
        let exchange = short(ObjectKind::Exchange, options.exchange())?;
        let declare = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..QueueDeclareOptions::default()
        };
        let queue = with_timeout(
            "declare a temporary queue",
            timeout,
            channel.queue_declare("".into(), declare, FieldTable::default()),
        )
        .await?
        .map_err(|e| RabbitMqError::operation("declare a temporary queue", &e))?;
        let name = queue.name().clone();
        for pattern in patterns {
            let key = ShortString::try_new(*pattern).map_err(|_| TopologyError::Failed {
                action: "bind",
                kind: ObjectKind::Queue,
                name: name.to_string(),
                reason: format!("binding pattern `{pattern}` is longer than 255 bytes"),
            })?;
            let op = format!("bind `{pattern}` on exchange `{}`", options.exchange());
            with_timeout(
                op.clone(),
                timeout,
                channel.queue_bind(
                    name.clone(),
                    exchange.clone(),
                    key,
                    QueueBindOptions::default(),
                    FieldTable::default(),
                ),
            )
            .await?
            .map_err(|e| RabbitMqError::operation(op, &e))?;
        }
        let consume = BasicConsumeOptions {
            no_ack: true,
            exclusive: true,
            ..BasicConsumeOptions::default()
        };
        let consumer = with_timeout(
            "consume the temporary queue",
            timeout,
            channel.basic_consume(name.clone(), "".into(), consume, FieldTable::default()),
        )
        .await?
        .map_err(|e| RabbitMqError::operation("consume the temporary queue", &e))?;
        Ok((name.to_string(), consumer))
    }

    /// The temporary queue's name.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The next message; `None` once the subscription has ended.
    pub async fn next(&mut self) -> Option<Result<Received, RabbitMqError>> {
        match self.consumer.next().await? {
            Ok(delivery) => Some(Ok(Received {
                exchange: delivery.exchange.to_string(),
                routing_key: delivery.routing_key.to_string(),
                message: wire::from_amqp(&delivery.properties, &delivery.data),
            })),
            Err(e) => Some(Err(RabbitMqError::operation("receive", &e))),
        }
    }

    /// Ends the subscription (the queue is deleted with its channel).
    pub async fn close(self) {
        close_channel(&self.channel).await;
    }
}
