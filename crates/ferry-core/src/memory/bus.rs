use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use async_trait::async_trait;
use tokio::sync::{Mutex as AsyncMutex, mpsc};

use crate::{
    BindingPattern, ConsumerBuilder, ConsumerHandle, ConsumerHost, ConsumerSpec,
    DeadLetterConsumerBuilder, DeadLetterSpec, Delivery, PublishBatch, PublishError,
    PublishTransport, WireMessage,
    consume::{ConsumerPlan, InvalidConsumer},
};

/// An in-memory transport error.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The consumer's configuration is invalid.
    #[error("invalid consumer: {0}")]
    Config(String),
    /// A binding pattern is invalid.
    #[error(transparent)]
    Routing(#[from] crate::RoutingError),
    /// The bus's lock was poisoned by a panic.
    #[error("the in-memory bus lock was poisoned by a panic")]
    Poisoned,
}

impl From<InvalidConsumer> for MemoryError {
    fn from(e: InvalidConsumer) -> Self {
        MemoryError::Config(e.to_string())
    }
}

pub(super) type QueueReceiver = Arc<AsyncMutex<mpsc::UnboundedReceiver<Delivery>>>;

struct Queue {
    sender: mpsc::UnboundedSender<Delivery>,
    receiver: QueueReceiver,
}

#[derive(Default)]
struct State {
    queues: HashMap<String, Queue>,
    /// (exchange, pattern, queue)
    bindings: Vec<(String, BindingPattern, String)>,
}

struct Inner {
    exchange: String,
    state: Mutex<State>,
}

/// An in-memory message bus with topic routing, consumers, delayed retries and dead letters.
///
/// Cheap to clone; clones share the bus. Publishing to a routing key no queue is bound to is an
/// error ([`PublishError::Unroutable`]), as with the RabbitMQ transport.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize, ferry_macros::IntegrationEvent)]
/// # #[event(name = "orders.order.created")]
/// # struct OrderCreated { order_id: String }
/// use ferry_core::{HandlerError, MessageContext, PublisherExt, memory::MemoryBus};
///
/// async fn on_created(event: OrderCreated, _ctx: MessageContext) -> Result<(), HandlerError> {
///     println!("order {}", event.order_id);
///     Ok(())
/// }
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let bus = MemoryBus::new("app.events");
/// let consumer = bus
///     .consumer("inventory.order-created")
///     .bind("orders.order.created")
///     .dead_letter("app.dlx")
///     .handle::<OrderCreated>(on_created)
///     .start()
///     .await?;
/// bus.publish(&OrderCreated { order_id: "o-1".into() }).await?;
/// consumer.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBus")
            .field("exchange", &self.inner.exchange)
            .finish_non_exhaustive()
    }
}

impl MemoryBus {
    /// A bus whose events exchange is `exchange`.
    pub fn new(exchange: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                exchange: exchange.into(),
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// The events exchange.
    pub fn exchange(&self) -> &str {
        &self.inner.exchange
    }

    /// Builds a consumer of `queue`.
    pub fn consumer(&self, queue: impl Into<String>) -> ConsumerBuilder<'_, MemoryBus> {
        ConsumerBuilder::new(self, queue)
    }

    /// Builds a dead-letter consumer of `queue`.
    pub fn dead_letter_consumer(
        &self,
        queue: impl Into<String>,
    ) -> DeadLetterConsumerBuilder<'_, MemoryBus> {
        DeadLetterConsumerBuilder::new(self, queue)
    }

    /// Declares a queue (no-op when it exists).
    pub fn declare_queue(&self, queue: &str) -> Result<(), MemoryError> {
        let mut state = self.lock()?;
        state.queues.entry(queue.to_owned()).or_insert_with(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            Queue {
                sender,
                receiver: Arc::new(AsyncMutex::new(receiver)),
            }
        });
        Ok(())
    }

    /// Binds `queue` to `exchange` with `pattern`.
    pub fn bind(&self, exchange: &str, pattern: &str, queue: &str) -> Result<(), MemoryError> {
        let pattern = BindingPattern::new(pattern)?;
        self.declare_queue(queue)?;
        let mut state = self.lock()?;
        let exists = state
            .bindings
            .iter()
            .any(|(e, p, q)| e == exchange && *p == pattern && q == queue);
        if !exists {
            state
                .bindings
                .push((exchange.to_owned(), pattern, queue.to_owned()));
        }
        Ok(())
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, MemoryError> {
        self.inner.state.lock().map_err(|_| MemoryError::Poisoned)
    }

    /// Routes a message; the number of queues it reached.
    pub(super) fn route(&self, exchange: &str, routing_key: &str, message: &WireMessage) -> usize {
        let Ok(state) = self.lock() else { return 0 };
        let delivery = |exchange: &str| Delivery {
            message: message.clone(),
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
            redelivered: false,
        };
        if exchange.is_empty() {
            return match state.queues.get(routing_key) {
                Some(q) => usize::from(q.sender.send(delivery("")).is_ok()),
                None => 0,
            };
        }
        let mut reached = 0;
        for (e, pattern, queue) in &state.bindings {
            if e == exchange && pattern.matches(routing_key) {
                if let Some(q) = state.queues.get(queue) {
                    if q.sender.send(delivery(exchange)).is_ok() {
                        reached += 1;
                    }
                }
            }
        }
        reached
    }

    /// Puts a delivery back on `queue` as it is, marked redelivered; whether the queue exists.
    pub(super) fn requeue(&self, queue: &str, mut delivery: Delivery) -> bool {
        delivery.redelivered = true;
        let Ok(state) = self.lock() else { return false };
        state
            .queues
            .get(queue)
            .is_some_and(|q| q.sender.send(delivery).is_ok())
    }

    /// Whether `queue` exists.
    pub(super) fn has_queue(&self, queue: &str) -> bool {
        self.lock().is_ok_and(|s| s.queues.contains_key(queue))
    }

    pub(super) fn receiver(&self, queue: &str) -> Result<QueueReceiver, MemoryError> {
        self.declare_queue(queue)?;
        let state = self.lock()?;
        state
            .queues
            .get(queue)
            .map(|q| Arc::clone(&q.receiver))
            .ok_or(MemoryError::Poisoned)
    }
}

#[async_trait]
impl PublishTransport for MemoryBus {
    fn exchange(&self) -> Option<&str> {
        Some(&self.inner.exchange)
    }

    async fn send(&self, batch: PublishBatch) -> Vec<Result<(), PublishError>> {
        batch
            .into_messages()
            .into_iter()
            .map(|message| {
                let exchange = message.exchange.as_deref().unwrap_or(&self.inner.exchange);
                if self.route(exchange, &message.routing_key, &message.message) == 0 {
                    return Err(PublishError::Unroutable {
                        exchange: exchange.to_owned(),
                        routing_key: message.routing_key.clone(),
                    });
                }
                Ok(())
            })
            .collect()
    }
}

#[async_trait]
impl ConsumerHost for MemoryBus {
    type Error = MemoryError;

    async fn start_consumer(&self, spec: ConsumerSpec) -> Result<ConsumerHandle, MemoryError> {
        self.start(ConsumerPlan::events(spec, None)?)
    }

    async fn start_dead_letter_consumer(
        &self,
        spec: DeadLetterSpec,
    ) -> Result<ConsumerHandle, MemoryError> {
        self.start(ConsumerPlan::dead_letters(spec)?)
    }
}
