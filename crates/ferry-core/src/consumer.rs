//! Consumer configuration shared by every transport: `bus.consumer(queue)` returns a
//! [`ConsumerBuilder`]; the transport starts it from the [`ConsumerSpec`] it builds.

use std::{future::Future, sync::Arc};

use async_trait::async_trait;
use futures::future::BoxFuture;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{
    DeadLetter, HandlerError, Inbox, IntegrationEvent, IntegrationEventHandler, Limits,
    MessageContext, Pipeline, RetryPolicy,
    transactional::{TransactionalHandler, TransactionalStore},
};

/// The kind of queue a consumer declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    /// A classic queue (the default).
    #[default]
    Classic,
    /// A quorum queue (replicated; RabbitMQ 3.8+).
    Quorum,
}

impl QueueType {
    /// The name RabbitMQ uses (`x-queue-type`): `classic` or `quorum`.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        }
    }
}

impl std::fmt::Display for QueueType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for QueueType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "classic" => Ok(QueueType::Classic),
            "quorum" => Ok(QueueType::Quorum),
            other => Err(format!(
                "unknown queue type `{other}`: expected `classic` or `quorum`"
            )),
        }
    }
}

/// Everything a transport needs to start a consumer.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// The queue to consume (declared durable unless the transport is passive).
    pub queue: String,
    /// Binding patterns on the events exchange.
    pub bindings: Vec<String>,
    /// Unacked deliveries the broker may send at once.
    pub prefetch: u16,
    /// Handlers running at once (at most `prefetch`).
    pub concurrency: usize,
    /// The dead-letter exchange failed messages go to.
    pub dead_letter_exchange: Option<String>,
    /// Classic or quorum; `None` takes the transport's default.
    pub queue_type: Option<QueueType>,
    /// How many times the broker may deliver a message before it dead-letters it itself
    /// (`x-delivery-limit`, quorum queues only); `None` takes the transport's default.
    pub delivery_limit: Option<u32>,
    /// Whether the queue has a single active consumer (`x-single-active-consumer`): of many
    /// consumers of the queue (instances of the application), one at a time receives.
    pub single_active_consumer: bool,
    /// Consume the queue as this many partitions, each taking a share of the partition keys
    /// (see [`ConsumerBuilder::partitions`]); `None`: one queue.
    pub partitions: Option<u16>,
    /// Ack on delivery (at-most-once; retries off). Off by default.
    pub auto_ack: bool,
    /// The pipeline: handlers, retry policy, inbox and limits.
    pub pipeline: Pipeline,
    /// Event types registered twice (a configuration error the transport reports on start).
    pub duplicate_handlers: Vec<String>,
    /// Whether a retry policy was set with `.retry(..)` (with auto-ack, a configuration
    /// error: an auto-acked message cannot be retried).
    pub retry_set: bool,
}

impl ConsumerSpec {
    /// A spec for `queue` with the defaults: prefetch 10, concurrency 1, retries 3 × exponential
    /// from 1 s, no dead-letter exchange, the transport's queue type, manual ack.
    pub fn new(queue: impl Into<String>) -> Self {
        let queue = queue.into();
        Self {
            pipeline: Pipeline::new(queue.as_str()),
            queue,
            bindings: Vec::new(),
            prefetch: 10,
            concurrency: 1,
            dead_letter_exchange: None,
            queue_type: None,
            delivery_limit: None,
            single_active_consumer: false,
            partitions: None,
            auto_ack: false,
            duplicate_handlers: Vec::new(),
            retry_set: false,
        }
    }

    /// Checks the spec: a handler at least, no event type twice, concurrency above 0. (Whether a
    /// dead-letter exchange is needed is the transport's call: it may have a default.)
    pub fn validate(&self) -> Result<(), String> {
        if self.pipeline.event_types().is_empty() {
            return Err(format!("consumer `{}` has no handler", self.queue));
        }
        if let Some(t) = self.duplicate_handlers.first() {
            return Err(format!(
                "consumer `{}` has two handlers for event type `{t}`",
                self.queue
            ));
        }
        if self.concurrency == 0 {
            return Err(format!("consumer `{}` has concurrency 0", self.queue));
        }
        if self.partitions == Some(0) {
            return Err(format!("consumer `{}` has 0 partitions", self.queue));
        }
        if self.partitions.is_some() && self.concurrency > 1 {
            return Err(format!(
                "consumer `{}` is partitioned and has concurrency {}: each partition is consumed \
                 one message at a time to keep the order of each key; drop `.concurrency(..)` \
                 (the partitions run in parallel)",
                self.queue, self.concurrency
            ));
        }
        if self.auto_ack && self.retry_set {
            return Err(format!(
                "consumer `{}` has both `.auto_ack()` and `.retry(..)`: an auto-acked message is \
                 gone from the broker before its handler runs, so it cannot be retried; drop one",
                self.queue
            ));
        }
        Ok(())
    }
}

/// How long a consumer past its drain deadline has to hand its abandoned deliveries back
/// before its task is aborted.
const ABANDON_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// A running consumer: stop it with [`ConsumerHandle::shutdown`] or
/// [`ConsumerHandle::shutdown_within`].
#[derive(Debug)]
pub struct ConsumerHandle {
    cancel: CancellationToken,
    abandon: CancellationToken,
    task: JoinHandle<()>,
}

impl ConsumerHandle {
    /// Wraps a consumer task and the token that stops it.
    pub fn new(cancel: CancellationToken, task: JoinHandle<()>) -> Self {
        Self::with_abandon(cancel, CancellationToken::new(), task)
    }

    /// Wraps a consumer task, the token that stops it, and the token that tells it the drain
    /// deadline has passed (it then abandons its in-flight work to redelivery).
    pub fn with_abandon(
        cancel: CancellationToken,
        abandon: CancellationToken,
        task: JoinHandle<()>,
    ) -> Self {
        Self {
            cancel,
            abandon,
            task,
        }
    }

    /// One handle for many consumers (the partitions of a partitioned consumer): stopping it
    /// stops them all, its drain deadline is theirs, and it has finished when they all have.
    pub fn join(handles: Vec<ConsumerHandle>) -> ConsumerHandle {
        let cancel = CancellationToken::new();
        let abandon = CancellationToken::new();
        let (parent_cancel, parent_abandon) = (cancel.clone(), abandon.clone());
        let task = tokio::spawn(async move {
            let mut children = Vec::with_capacity(handles.len());
            let mut tasks = Vec::with_capacity(handles.len());
            for handle in handles {
                children.push((handle.cancel, handle.abandon));
                tasks.push(handle.task);
            }
            let forward = async {
                parent_cancel.cancelled().await;
                children.iter().for_each(|(cancel, _)| cancel.cancel());
                parent_abandon.cancelled().await;
                children.iter().for_each(|(_, abandon)| abandon.cancel());
                std::future::pending::<()>().await;
            };
            tokio::select! {
                results = futures::future::join_all(tasks) => {
                    for result in results {
                        if let Err(e) = result {
                            tracing::error!(error = %e, "consumer task ended abnormally");
                        }
                    }
                }
                _ = forward => {}
            }
        });
        ConsumerHandle::with_abandon(cancel, abandon, task)
    }

    /// The token that stops the consumer.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Whether the consumer task has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops taking deliveries, requeues those that arrived but did not start, lets in-flight
    /// handlers finish and settle, then returns. There is no deadline: a handler that never
    /// returns holds it (see [`ConsumerHandle::shutdown_within`]).
    pub async fn shutdown(self) {
        self.cancel.cancel();
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "consumer task ended abnormally");
        }
    }

    /// Stops like [`ConsumerHandle::shutdown`], but in-flight work still running after
    /// `deadline` is abandoned: its deliveries are left unacked (handed back on the in-memory
    /// bus), so they are delivered again, and its tasks end. Nothing is lost; an abandoned
    /// handler may have done part of its work, which the redelivery repeats
    /// (`docs/guarantees.md`). Returns whether the consumer stopped in time.
    pub async fn shutdown_within(self, deadline: std::time::Duration) -> bool {
        self.shutdown_by(tokio::time::Instant::now() + deadline)
            .await
    }

    /// [`ConsumerHandle::shutdown_within`] with an instant for the deadline (one deadline for
    /// many parts, as the [`Host`](crate::host::Host) has).
    pub async fn shutdown_by(mut self, deadline: tokio::time::Instant) -> bool {
        self.cancel.cancel();
        let (joined, in_time) = match tokio::time::timeout_at(deadline, &mut self.task).await {
            Ok(joined) => (joined, true),
            Err(_) => {
                tracing::warn!(
                    "consumer still busy at its drain deadline: abandoning its work in flight to redelivery"
                );
                self.abandon.cancel();
                // The loop hands the abandoned deliveries back; bounded, should the transport hang.
                match tokio::time::timeout(ABANDON_GRACE, &mut self.task).await {
                    Ok(joined) => (joined, false),
                    Err(_) => {
                        self.task.abort();
                        return false;
                    }
                }
            }
        };
        if let Err(e) = joined {
            tracing::error!(error = %e, "consumer task ended abnormally");
        }
        in_time
    }
}

/// A transport that can run consumers.
#[async_trait]
pub trait ConsumerHost: Send + Sync {
    /// The transport's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Declares what the spec needs and starts consuming.
    async fn start_consumer(&self, spec: ConsumerSpec) -> Result<ConsumerHandle, Self::Error>;

    /// Starts a dead-letter consumer.
    async fn start_dead_letter_consumer(
        &self,
        spec: DeadLetterSpec,
    ) -> Result<ConsumerHandle, Self::Error>;
}

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

pub(crate) type DeadLetterFn =
    Arc<dyn Fn(DeadLetter) -> BoxFuture<'static, Result<(), HandlerError>> + Send + Sync>;

/// Everything a transport needs to start a dead-letter consumer.
#[derive(Clone)]
pub struct DeadLetterSpec {
    /// The dead-letter queue.
    pub queue: String,
    /// The dead-letter exchange it is bound to (with `#`).
    pub exchange: String,
    /// Unacked deliveries at once.
    pub prefetch: u16,
    /// The callback; an error leaves the message on the queue (requeued after a pause).
    pub on_dead_letter: Option<DeadLetterFn>,
}

impl std::fmt::Debug for DeadLetterSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterSpec")
            .field("queue", &self.queue)
            .field("exchange", &self.exchange)
            .field("prefetch", &self.prefetch)
            .finish()
    }
}

/// Builds a dead-letter consumer: `bus.dead_letter_consumer("app.dlq").exchange("app.dlx")
/// .on_dead_letter(f).start().await?`.
#[must_use = "a consumer does nothing until `start` is awaited"]
pub struct DeadLetterConsumerBuilder<'a, H: ?Sized> {
    host: &'a H,
    spec: DeadLetterSpec,
}

impl<'a, H: ConsumerHost + ?Sized> DeadLetterConsumerBuilder<'a, H> {
    /// A builder for the dead-letter queue `queue`, bound to exchange `ferry.dlx` by default.
    pub fn new(host: &'a H, queue: impl Into<String>) -> Self {
        Self {
            host,
            spec: DeadLetterSpec {
                queue: queue.into(),
                exchange: "ferry.dlx".to_owned(),
                prefetch: 10,
                on_dead_letter: None,
            },
        }
    }

    /// Sets the dead-letter exchange the queue is bound to.
    pub fn exchange(mut self, exchange: impl Into<String>) -> Self {
        self.spec.exchange = exchange.into();
        self
    }

    /// Sets the prefetch.
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.spec.prefetch = prefetch.max(1);
        self
    }

    /// Sets the callback for each dead letter.
    pub fn on_dead_letter<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(DeadLetter) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.spec.on_dead_letter = Some(Arc::new(move |d| Box::pin(f(d))));
        self
    }

    /// Declares the queue and binding and starts consuming.
    pub async fn start(self) -> Result<ConsumerHandle, H::Error> {
        self.host.start_dead_letter_consumer(self.spec).await
    }
}
