//! # ferry-rabbitmq
//!
//! The RabbitMQ transport of ferry, on lapin: one connection per process that reconnects by
//! itself, a confirmed publisher, consumers with plugin-free delayed retries and dead letters,
//! a dead-letter consumer, and the tools behind `ferry dlq` and `ferry tail`.
//!
//! ```no_run
//! use std::time::Duration;
//! use ferry_core::{HandlerError, MessageContext, RetryPolicy};
//! use ferry_rabbitmq::{RabbitMq, RabbitMqOptions};
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Serialize, Deserialize, ferry_macros::IntegrationEvent)]
//! # #[serde(rename_all = "camelCase")]
//! # #[event(name = "orders.order.created")]
//! # struct OrderCreated { order_id: String }
//!
//! async fn reserve(event: OrderCreated, ctx: MessageContext) -> Result<(), HandlerError> {
//!     tracing::info!(order_id = %event.order_id, attempt = ctx.attempt(), "reserving stock");
//!     Ok(())
//! }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let bus = RabbitMq::connect(RabbitMqOptions::from_env().with_connection_name("inventory")).await?;
//!
//! let consumer = bus
//!     .consumer("inventory.order-created")
//!     .bind("orders.order.created")
//!     .prefetch(10)
//!     .concurrency(4)
//!     .retry(RetryPolicy::exponential(3, Duration::from_secs(1)))
//!     .dead_letter("ferry.dlx")
//!     .handle::<OrderCreated>(reserve)
//!     .start()
//!     .await?;
//!
//! let dead_letters = bus
//!     .dead_letter_consumer("ferry.dlq")
//!     .exchange("ferry.dlx")
//!     .on_dead_letter(|dead| async move {
//!         tracing::error!(fault = %dead.fault, id = ?dead.message_id(), "dead letter");
//!         Ok(())
//!     })
//!     .start()
//!     .await?;
//!
//! let id = bus.publish(&OrderCreated { order_id: "o-1".into() }).await?;
//! # let _ = id;
//! consumer.shutdown().await;
//! dead_letters.shutdown().await;
//! bus.close().await;
//! # Ok(()) }
//! ```
//!
//! ## Guarantees (`docs/guarantees.md`)
//!
//! - A publish returns `Ok` only once the broker confirmed it; a message no queue is bound for
//!   comes back (`mandatory`) and is [`PublishError::Unroutable`]. A publish that was in
//!   flight when the connection dropped fails with [`PublishError::Unavailable`], never a
//!   silent success.
//! - A delivery is acked only after its handler succeeded, or after its retry or dead-letter
//!   copy was confirmed. Handler panics are failures, not crashes.
//! - When the connection drops, ferry reconnects with capped exponential backoff, declares
//!   its topology again and resumes every consumer (one consumer per queue, never two).
//!   Unacked deliveries come back from the broker, so a handler may see a message twice: use
//!   the inbox to make that harmless.
//!
//! ## Monitoring
//!
//! Every publish (the inherent [`RabbitMq::publish`] and [`RabbitMq::publish_with`], the
//! [`Publisher`](ferry_core::Publisher) and [`PublisherExt`] methods, an outbox relay) opens
//! one `ferry.publish` span and counts the confirmed messages in `ferry_published_total`.
//! While a consumer runs, its queue is sampled every
//! [`RabbitMqOptions::with_queue_sample_interval`] (5 s by default) into
//! `ferry_queue_messages_ready{queue}` and `ferry_queue_consumers{queue}`.
#![warn(missing_docs)]

mod connection;
mod consumer;
pub mod dead_letter;
pub mod dlq;
mod error;
mod options;
mod publisher;
mod redact;
mod sampling;
mod session;
mod stall;
mod stream;
pub mod subscription;
pub mod topology;
pub mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use ferry_core::{
    ConsumerBuilder, ConsumerHandle, ConsumerHost, ConsumerSpec, DeadLetterConsumerBuilder,
    DeadLetterSpec, IntegrationEvent, OutgoingMessage, PublishBatch, PublishError, PublishOptions,
    PublishTransport, PublisherExt,
};

pub use dlq::{DeadLetterQueue, DlqSelection, ReplayError, ReplayReport};
pub use error::{RabbitMqError, TopologyError};
pub use options::{
    CA_FILE_ENV, DEFAULT_CONSUMER_STALL_CHECK, DEFAULT_EXCHANGE, DEFAULT_QUEUE_SAMPLE_INTERVAL,
    DEFAULT_URL, EXCHANGE_ENV, ExchangeKind, RabbitMqOptions, TopologyMode, URL_ENV,
};
pub use redact::redact_url;
pub use subscription::{Received, Subscription};

use connection::ConnectionManager;
use publisher::{PublishContext, PublisherPool};

/// The RabbitMQ transport: a [`Publisher`](ferry_core::Publisher) (through its
/// [`PublishTransport`]) and a [`ConsumerHost`] over one connection.
///
/// Cheap to clone (all clones share the connection). The connection closes when
/// [`RabbitMq::close`] is called or the last clone (and the last consumer) is dropped.
#[derive(Clone)]
pub struct RabbitMq {
    inner: Arc<Inner>,
}

struct Inner {
    options: Arc<RabbitMqOptions>,
    connection: ConnectionManager,
    publishers: PublisherPool,
}

impl std::fmt::Debug for RabbitMq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitMq")
            .field("options", &self.inner.options)
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl RabbitMq {
    /// Connects (within the connect timeout) and declares the events exchange (or checks it,
    /// with passive topology). After this, a lost connection is re-established in the
    /// background.
    pub async fn connect(options: RabbitMqOptions) -> Result<Self, RabbitMqError> {
        options.validate()?;
        let options = Arc::new(options);
        let connection = ConnectionManager::start(Arc::clone(&options)).await?;
        let publishers = PublisherPool::new(options.publisher_channels());
        Ok(Self {
            inner: Arc::new(Inner {
                options,
                connection,
                publishers,
            }),
        })
    }

    /// The options.
    pub fn options(&self) -> &RabbitMqOptions {
        &self.inner.options
    }

    /// Whether the connection is up right now.
    pub fn is_connected(&self) -> bool {
        self.inner.connection.current().is_some()
    }

    /// The node the connection is on now (its URL, password redacted), if it is up: one of
    /// [`RabbitMqOptions::nodes`].
    pub fn node(&self) -> Option<String> {
        self.inner
            .connection
            .current()
            .map(|link| link.node.to_string())
    }

    /// How many times the connection was lost and re-established since
    /// [`RabbitMq::connect`].
    pub fn reconnections(&self) -> u64 {
        self.inner.connection.reconnections()
    }

    /// Waits (up to `wait`) until the connection is up.
    pub async fn wait_connected(&self, wait: std::time::Duration) -> Result<(), RabbitMqError> {
        self.inner
            .connection
            .wait_up(wait, None)
            .await
            .map(|_| ())
            .map_err(|e| self.inner.connection.wait_error(e))
    }

    /// A consumer of `queue`: `.bind(..)`, `.prefetch(..)`, `.handle::<E>(h)`, then
    /// `.start().await`.
    pub fn consumer(&self, queue: impl Into<String>) -> ConsumerBuilder<'_, RabbitMq> {
        ConsumerBuilder::new(self, queue)
    }

    /// A dead-letter consumer of `queue` (bound with `#` to the builder's default dead-letter
    /// exchange unless `.exchange(..)` names one).
    pub fn dead_letter_consumer(
        &self,
        queue: impl Into<String>,
    ) -> DeadLetterConsumerBuilder<'_, RabbitMq> {
        DeadLetterConsumerBuilder::new(self, queue)
    }

    /// The operator tools for a dead-letter queue (list, show, replay, purge).
    pub fn dead_letter_queue(&self, queue: impl Into<String>) -> DeadLetterQueue<'_> {
        DeadLetterQueue::new(self, queue)
    }

    /// A temporary, exclusive queue bound to the events exchange with `patterns`, for
    /// watching traffic (`ferry tail`). Messages are acked on delivery.
    pub async fn subscribe(&self, patterns: &[&str]) -> Result<Subscription, RabbitMqError> {
        Subscription::open(self, patterns).await
    }

    /// Publishes an event with its name as routing key and the configured source; returns its
    /// id once confirmed. The same as [`PublisherExt::publish`] (the same span and count).
    pub async fn publish<E: IntegrationEvent>(&self, event: &E) -> Result<String, PublishError> {
        PublisherExt::publish(self, event).await
    }

    /// Publishes an event with options (the configured source unless they name one); returns
    /// its id once confirmed. The same as [`PublisherExt::publish_with`].
    pub async fn publish_with<E: IntegrationEvent>(
        &self,
        event: &E,
        options: PublishOptions,
    ) -> Result<String, PublishError> {
        PublisherExt::publish_with(self, event, options).await
    }

    /// Declares (or checks) a dead-letter exchange and queue, bound with `#`, without
    /// consuming: for setups where the dead-letter queue is read by another process or tool.
    pub async fn declare_dead_letter_queue(
        &self,
        exchange: &str,
        queue: &str,
    ) -> Result<(), RabbitMqError> {
        self.with_channel("declare the dead-letter queue", |channel| async move {
            dead_letter::declare_dead_letter_topology(self, &channel, exchange, queue).await
        })
        .await
    }

    /// The number of messages ready in a queue and its consumers (an error if it does not
    /// exist).
    pub async fn queue_counts(&self, queue: &str) -> Result<(u32, u32), RabbitMqError> {
        let timeout = self.options().operation_timeout();
        self.with_channel("inspect a queue", |channel| async move {
            topology::inspect_queue(&channel, queue, timeout).await
        })
        .await
    }

    /// Deletes a queue (and the messages on it); returns how many messages it held.
    pub async fn delete_queue(&self, queue: &str) -> Result<u32, RabbitMqError> {
        let name = topology::short(topology::ObjectKind::Queue, queue)?;
        self.with_channel("delete a queue", |channel| async move {
            channel
                .queue_delete(name, lapin::options::QueueDeleteOptions::default())
                .await
                .map_err(|e| RabbitMqError::operation(format!("delete queue `{queue}`"), &e))
        })
        .await
    }

    /// Deletes a consumer's queue and the retry queues its policy declares
    /// (`<queue>.retry.<delay_ms>`), for tests and teardown; returns how many messages they
    /// held. Queues that do not exist are skipped.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use ferry_rabbitmq::RabbitMq;
    /// # use ferry_core::RetryPolicy;
    /// # async fn demo(bus: RabbitMq) -> Result<(), ferry_rabbitmq::RabbitMqError> {
    /// let policy = RetryPolicy::exponential(3, Duration::from_secs(1));
    /// bus.delete_consumer_queues("inventory.order-created", &policy).await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete_consumer_queues(
        &self,
        queue: &str,
        retry: &ferry_core::RetryPolicy,
    ) -> Result<u32, RabbitMqError> {
        let mut names = vec![queue.to_owned()];
        names.extend(
            retry
                .distinct_delays()
                .into_iter()
                .map(|delay| topology::retry_queue_name(queue, delay)),
        );
        let mut messages = 0;
        for name in names {
            if self.queue_counts(&name).await.is_err() {
                continue; // not there (or not reachable: the delete would say the same)
            }
            messages += self.delete_queue(&name).await?;
        }
        Ok(messages)
    }

    /// Removes every ready message from a queue; returns how many. A queue that does not
    /// exist has nothing to purge: `Ok(0)`.
    pub async fn purge_queue(&self, queue: &str) -> Result<u32, RabbitMqError> {
        let name = topology::short(topology::ObjectKind::Queue, queue)?;
        let timeout = self.options().operation_timeout();
        let exists = self
            .with_channel("inspect a queue", |channel| async move {
                match topology::inspect_queue(&channel, queue, timeout).await {
                    Ok(_) => Ok(true),
                    Err(e) if matches!(e.topology(), Some(TopologyError::NotFound { .. })) => {
                        Ok(false)
                    }
                    Err(e) => Err(e),
                }
            })
            .await?;
        if !exists {
            return Ok(0);
        }
        self.with_channel("purge a queue", |channel| async move {
            channel
                .queue_purge(name, lapin::options::QueuePurgeOptions::default())
                .await
                .map_err(|e| RabbitMqError::operation(format!("purge queue `{queue}`"), &e))
        })
        .await
    }

    /// Deletes an exchange.
    pub async fn delete_exchange(&self, exchange: &str) -> Result<(), RabbitMqError> {
        let name = topology::short(topology::ObjectKind::Exchange, exchange)?;
        self.with_channel("delete an exchange", |channel| async move {
            channel
                .exchange_delete(name, lapin::options::ExchangeDeleteOptions::default())
                .await
                .map_err(|e| RabbitMqError::operation(format!("delete exchange `{exchange}`"), &e))
        })
        .await
    }

    /// Stops reconnecting, closes the publisher channels and the connection. Running consumers
    /// should be shut down first (their in-flight messages would come back to the queue).
    pub async fn close(&self) {
        self.inner.publishers.close().await;
        self.inner.connection.close().await;
    }

    pub(crate) fn connection(&self) -> &ConnectionManager {
        &self.inner.connection
    }

    /// Publishes a copy the transport makes itself (a retry, a dead letter, a replay): not an
    /// event publish, so outside the publish path's span and `ferry_published_total`.
    pub(crate) async fn publish_one(&self, message: OutgoingMessage) -> Result<(), PublishError> {
        let mut results = publisher::publish_batch(&self.publish_context(), vec![message]).await;
        results
            .pop()
            .unwrap_or_else(|| Err(PublishError::Other("no publish result".into())))
    }

    fn publish_context(&self) -> PublishContext<'_> {
        let options = self.options();
        PublishContext {
            pool: &self.inner.publishers,
            connection: &self.inner.connection,
            default_exchange: options.exchange(),
            confirm_timeout: options.confirm_timeout(),
            operation_timeout: options.operation_timeout(),
            reconnect_wait: options.publish_reconnect_wait(),
        }
    }

    /// Runs `f` on a fresh channel (closed afterwards).
    pub(crate) async fn with_channel<'a, T, F, Fut>(
        &'a self,
        what: &str,
        f: F,
    ) -> Result<T, RabbitMqError>
    where
        F: FnOnce(lapin::Channel) -> Fut,
        Fut: std::future::Future<Output = Result<T, RabbitMqError>> + 'a,
    {
        let timeout = self.options().operation_timeout();
        let link = self
            .inner
            .connection
            .wait_up(self.options().connect_timeout(), None)
            .await
            .map_err(|e| self.inner.connection.wait_error(e))?;
        let channel = connection::with_timeout(what, timeout, link.conn.create_channel())
            .await?
            .map_err(|e| RabbitMqError::operation(what, &e))?;
        let result = f(channel.clone()).await;
        session::close_channel(&channel).await;
        result
    }
}

#[async_trait]
impl PublishTransport for RabbitMq {
    fn source(&self) -> Option<&str> {
        Some(self.options().source())
    }

    fn exchange(&self) -> Option<&str> {
        Some(self.options().exchange())
    }

    async fn send(&self, batch: PublishBatch) -> Vec<Result<(), PublishError>> {
        publisher::publish_batch(&self.publish_context(), batch.into_messages()).await
    }
}

#[async_trait]
impl ConsumerHost for RabbitMq {
    type Error = RabbitMqError;

    async fn start_consumer(&self, spec: ConsumerSpec) -> Result<ConsumerHandle, RabbitMqError> {
        consumer::start(self, spec).await
    }

    async fn start_dead_letter_consumer(
        &self,
        spec: DeadLetterSpec,
    ) -> Result<ConsumerHandle, RabbitMqError> {
        consumer::start_dead_letters(self, spec).await
    }
}

impl ferry_core::telemetry::HealthSource for RabbitMq {
    /// Reports whether the connection to the broker is up right now.
    fn report_health(&self, health: &mut ferry_core::telemetry::Health) {
        health.connected = self.is_connected();
    }
}
