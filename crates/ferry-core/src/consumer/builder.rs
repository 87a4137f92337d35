//! [`ConsumerBuilder`]: what `bus.consumer(queue)` returns; it fills a [`ConsumerSpec`] and
//! hands it to the transport on `start`.

use std::{future::Future, sync::Arc};

use super::{ConsumerHandle, ConsumerHost, ConsumerSpec, QueueType};
use crate::{
    HandlerError, Inbox, IntegrationEvent, IntegrationEventHandler, Limits, MessageContext,
    RetryPolicy,
    transactional::{TransactionalHandler, TransactionalStore},
};

/// Builds a consumer: `bus.consumer("inventory.order-created").bind("orders.order.created")
/// .prefetch(10).handle::<OrderCreated>(h).start().await?`.
#[must_use = "a consumer does nothing until `start` is awaited"]
pub struct ConsumerBuilder<'a, H: ?Sized> {
    host: &'a H,
    spec: ConsumerSpec,
}

impl<'a, H: ConsumerHost + ?Sized> ConsumerBuilder<'a, H> {
    /// A builder for a consumer of `queue` on `host`.
    pub fn new(host: &'a H, queue: impl Into<String>) -> Self {
        Self {
            host,
            spec: ConsumerSpec::new(queue),
        }
    }

    /// Binds the queue to the events exchange with a pattern (`*` one word, `#` any words).
    pub fn bind(mut self, pattern: impl Into<String>) -> Self {
        self.spec.bindings.push(pattern.into());
        self
    }

    /// Sets the prefetch: the most deliveries the broker sends before they are acked (at
    /// least 1; default 10). With the concurrency, it bounds the work in flight.
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.spec.prefetch = prefetch.max(1);
        self
    }

    /// Sets how many handlers run at once (default 1; capped by the prefetch).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.spec.concurrency = concurrency;
        self
    }

    /// Sets the retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.spec.pipeline.set_retry(policy);
        self.spec.retry_set = true;
        self
    }

    /// Sets the dead-letter exchange.
    pub fn dead_letter(mut self, exchange: impl Into<String>) -> Self {
        self.spec.dead_letter_exchange = Some(exchange.into());
        self
    }

    /// Declares a quorum queue (and quorum retry queues), whatever the transport's default.
    pub fn quorum(self) -> Self {
        self.queue_type(QueueType::Quorum)
    }

    /// Declares a queue of this type (and retry queues of it), whatever the transport's
    /// default.
    pub fn queue_type(mut self, queue_type: QueueType) -> Self {
        self.spec.queue_type = Some(queue_type);
        self
    }

    /// Lets the broker deliver a message at most `limit` times (`x-delivery-limit`, quorum
    /// queues only): a message whose handler crashes the process, or is requeued again and
    /// again, is then dead-lettered by the broker to the consumer's dead-letter exchange with
    /// its routing key, and a dead-letter consumer reports it as fault kind `delivery-limit`.
    /// Retries through the retry queues do not count: each is a new message.
    pub fn delivery_limit(mut self, limit: u32) -> Self {
        self.spec.delivery_limit = Some(limit);
        self
    }

    /// Gives the queue a single active consumer (`x-single-active-consumer`): of the consumers
    /// of the queue (many instances of the application), the broker delivers to one at a time
    /// and hands over to another when it goes. With the default concurrency of 1, messages are
    /// then handled in the order they were queued; with a concurrency above 1, handlers run at
    /// once and finish in any order, and a retry is handled after the messages queued
    /// meanwhile.
    pub fn single_active_consumer(mut self) -> Self {
        self.spec.single_active_consumer = true;
        self
    }

    /// Consumes in `n` partitions, in order per partition key: the messages are spread over
    /// `n` queues `<queue>.p<i>` by their partition key (the outbox's
    /// [`PublishOptions::partition_key`](crate::PublishOptions::partition_key), carried as the
    /// `ce-partitionkey` header), each queue consumed one message at a time with a single
    /// active consumer, the partitions in parallel. Messages sharing a key are handled in the
    /// order they were published, across instances of the application (another instance takes
    /// a partition over when its consumer goes). A retried message comes back after the
    /// messages of its partition queued meanwhile: retries break the order of that key.
    ///
    /// On RabbitMQ it needs the `rabbitmq_consistent_hash_exchange` plugin (it ships with the
    /// broker: `rabbitmq-plugins enable rabbitmq_consistent_hash_exchange`). The in-memory bus
    /// consumes one queue, one message at a time.
    ///
    /// ```
    /// use ferry_core::{HandlerError, memory::MemoryBus};
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize, ferry_macros::IntegrationEvent)]
    /// # #[event(name = "orders.order.created")]
    /// # struct OrderCreated { order_id: String }
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let bus = MemoryBus::new("app.events");
    /// let consumer = bus
    ///     .consumer("billing.order-created")
    ///     .bind("orders.order.created")
    ///     .dead_letter("app.dlx")
    ///     .partitions(4)
    ///     .handle_fn::<OrderCreated, _>(|event, _ctx| async move {
    ///         tracing::info!(order_id = %event.order_id, "in order for this order's key");
    ///         Ok::<_, HandlerError>(())
    ///     })
    ///     .start()
    ///     .await?;
    /// # consumer.shutdown().await;
    /// # Ok(())
    /// # }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
    /// ```
    pub fn partitions(mut self, n: u16) -> Self {
        self.spec.partitions = Some(n);
        self
    }

    /// Acks on delivery: at-most-once, retries off (`.retry(..)` with it fails at `start`).
    /// Only for messages you can afford to lose.
    pub fn auto_ack(mut self) -> Self {
        self.spec.auto_ack = true;
        self.spec.pipeline.set_retry(RetryPolicy::none());
        self
    }

    /// Skips messages the inbox has recorded, and records each one after its handler
    /// succeeded.
    ///
    /// **At least once, not exactly once**: the look-up, the handler and the record are three
    /// separate steps, so a process that dies between the handler's own commit and the record,
    /// or two copies of one message handled at the same moment, run the handler twice. It
    /// suppresses the common duplicate (a redelivery after a lost ack) for handlers whose
    /// writes are not in the inbox's database. For exactly-once effects on PostgreSQL or
    /// SQLite use [`ConsumerBuilder::handle_transactional`], where the inbox row commits with
    /// the handler's writes.
    pub fn skip_processed(mut self, inbox: Arc<dyn Inbox>) -> Self {
        self.spec.pipeline.set_inbox(inbox);
        self
    }

    /// Sets the body size and header count limits (default: 4 MiB, 256 headers, or the
    /// transport's defaults); a message over one is dead-lettered as `too-large`.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.spec.pipeline.set_limits(limits);
        self
    }

    /// Adds a layer around the handler (a [`Layer`](crate::pipeline::Layer), or an async fn
    /// through [`layer_fn`](crate::pipeline::layer_fn)): it sees each decoded message and its
    /// outcome, inside panic recovery, the spans and the immediate retries; the first added is
    /// outermost. See [`crate::pipeline`] for the order and two examples.
    pub fn layer(mut self, layer: impl crate::pipeline::Layer) -> Self {
        self.spec.pipeline.add_layer(layer);
        self
    }

    /// Registers the handler for event type `E`.
    pub fn handle<E: IntegrationEvent>(mut self, handler: impl IntegrationEventHandler<E>) -> Self {
        if !self.spec.pipeline.add_handler::<E>(handler) {
            self.spec.duplicate_handlers.push(E::NAME.to_owned());
        }
        self
    }

    /// Registers a closure as the handler for event type `E`, its arguments' types inferred:
    /// `.handle_fn::<E, _>(|event, ctx| async move { … })`. ([`ConsumerBuilder::handle`]
    /// takes any [`IntegrationEventHandler`], so a closure given to it must name its
    /// arguments' types.)
    ///
    /// ```
    /// use ferry_core::{HandlerError, memory::MemoryBus};
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize, ferry_macros::IntegrationEvent)]
    /// # #[event(name = "orders.order.created")]
    /// # struct OrderCreated { order_id: String }
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let bus = MemoryBus::new("app.events");
    /// let consumer = bus
    ///     .consumer("inventory.order-created")
    ///     .bind("orders.order.created")
    ///     .dead_letter("app.dlx")
    ///     .handle_fn::<OrderCreated, _>(|event, ctx| async move {
    ///         tracing::info!(order_id = %event.order_id, id = ctx.message_id(), "reserving");
    ///         Ok::<_, HandlerError>(())
    ///     })
    ///     .start()
    ///     .await?;
    /// # consumer.shutdown().await;
    /// # Ok(())
    /// # }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
    /// ```
    pub fn handle_fn<E, Fut>(
        self,
        handler: impl Fn(E, MessageContext) -> Fut + Send + Sync + 'static,
    ) -> Self
    where
        E: IntegrationEvent,
        Fut: Future<Output = Result<(), HandlerError>> + Send,
    {
        self.handle::<E>(handler)
    }

    /// Registers a transactional handler for event type `E`: ferry begins a transaction of
    /// `store`, inserts the message's inbox row (a duplicate is acked without running the
    /// handler), runs the handler in it, and commits when the handler returns `Ok`; events the
    /// handler publishes through its [`TxContext`](crate::transactional::TxContext) go to
    /// the outbox in the same transaction. Exactly once in effect: see
    /// [`crate::transactional`].
    pub fn handle_transactional<E, S>(
        mut self,
        store: S,
        handler: impl TransactionalHandler<E, S::Transaction>,
    ) -> Self
    where
        E: IntegrationEvent,
        S: TransactionalStore,
    {
        if !self
            .spec
            .pipeline
            .add_transactional_handler::<E, S, _>(store, handler)
        {
            self.spec.duplicate_handlers.push(E::NAME.to_owned());
        }
        self
    }

    /// The spec built so far.
    pub fn spec(&self) -> &ConsumerSpec {
        &self.spec
    }

    /// Declares the queue and its bindings and starts consuming.
    pub async fn start(self) -> Result<ConsumerHandle, H::Error> {
        self.host.start_consumer(self.spec).await
    }
}
