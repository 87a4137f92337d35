use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use async_trait::async_trait;
use tokio::sync::{Mutex as AsyncMutex, Semaphore, mpsc};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    BindingPattern, ConsumerBuilder, ConsumerHandle, ConsumerHost, ConsumerSpec, DeadLetter,
    DeadLetterConsumerBuilder, DeadLetterSpec, Decision, Delivery, PublishBatch, PublishError,
    PublishTransport, WireMessage,
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

type QueueReceiver = Arc<AsyncMutex<mpsc::UnboundedReceiver<Delivery>>>;

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
/// let bus = MemoryBus::new("myapp.events");
/// let consumer = bus
///     .consumer("inventory.order-created")
///     .bind("orders.order.created")
///     .dead_letter("myapp.dlx")
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
    fn route(&self, exchange: &str, routing_key: &str, message: &WireMessage) -> usize {
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

    fn receiver(&self, queue: &str) -> Result<QueueReceiver, MemoryError> {
        self.declare_queue(queue)?;
        let state = self.lock()?;
        state
            .queues
            .get(queue)
            .map(|q| Arc::clone(&q.receiver))
            .ok_or(MemoryError::Poisoned)
    }

    fn carry_out(
        &self,
        queue: &str,
        dead_letter_exchange: Option<&str>,
        delivery: Delivery,
        decision: Decision,
    ) {
        match decision {
            Decision::Ack | Decision::Duplicate => {}
            Decision::Retry {
                delay,
                next_attempt,
                ..
            } => {
                let copy = delivery.retry_copy(next_attempt);
                let bus = self.clone();
                let queue = queue.to_owned();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if bus.route("", &queue, &copy) == 0 {
                        tracing::error!(queue = %queue, "retry copy lost: the queue is gone");
                    }
                });
            }
            Decision::DeadLetter(fault) => {
                let copy = delivery.dead_letter_copy(&fault);
                let routing_key = fault
                    .original_routing_key
                    .clone()
                    .unwrap_or_else(|| delivery.routing_key.clone());
                match dead_letter_exchange {
                    Some(dlx) if self.route(dlx, &routing_key, &copy) > 0 => {}
                    Some(dlx) => tracing::error!(
                        queue = %queue, dead_letter_exchange = %dlx, fault = %fault,
                        "dead letter dropped: no queue is bound to the dead-letter exchange"
                    ),
                    None => tracing::error!(
                        queue = %queue, fault = %fault,
                        "dead letter dropped: the consumer has no dead-letter exchange"
                    ),
                }
            }
        }
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
        spec.validate().map_err(MemoryError::Config)?;
        if spec.dead_letter_exchange.is_none() && !spec.auto_ack {
            return Err(MemoryError::Config(format!(
                "consumer `{}` has no dead-letter exchange: a message that fails for good would \
                 be lost; set one with `.dead_letter(\"myapp.dlx\")`",
                spec.queue
            )));
        }
        self.declare_queue(&spec.queue)?;
        for pattern in &spec.bindings {
            self.bind(&self.inner.exchange, pattern, &spec.queue)?;
        }
        let receiver = self.receiver(&spec.queue)?;
        let cancel = CancellationToken::new();
        let mut pipeline = spec.pipeline.clone();
        pipeline.set_cancellation(cancel.clone());
        let pipeline = Arc::new(pipeline);
        let permits = Arc::new(Semaphore::new(
            spec.concurrency.min(usize::from(spec.prefetch)).max(1),
        ));
        let bus = self.clone();
        let token = cancel.clone();
        let task = tokio::spawn(async move {
            let tracker = TaskTracker::new();
            loop {
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    break;
                };
                let next = tokio::select! {
                    _ = token.cancelled() => None,
                    d = async { receiver.lock().await.recv().await } => d,
                };
                let Some(delivery) = next else { break };
                let pipeline = Arc::clone(&pipeline);
                let bus = bus.clone();
                let dlx = spec.dead_letter_exchange.clone();
                tracker.spawn(async move {
                    let decision = pipeline.process(&delivery).await;
                    bus.carry_out(pipeline.queue(), dlx.as_deref(), delivery, decision);
                    drop(permit);
                });
            }
            tracker.close();
            tracker.wait().await;
        });
        Ok(ConsumerHandle::new(cancel, task))
    }

    async fn start_dead_letter_consumer(
        &self,
        spec: DeadLetterSpec,
    ) -> Result<ConsumerHandle, MemoryError> {
        let Some(callback) = spec.on_dead_letter.clone() else {
            return Err(MemoryError::Config(format!(
                "dead-letter consumer `{}` has no on_dead_letter callback",
                spec.queue
            )));
        };
        self.bind(&spec.exchange, "#", &spec.queue)?;
        let receiver = self.receiver(&spec.queue)?;
        let cancel = CancellationToken::new();
        let token = cancel.clone();
        let bus = self.clone();
        let task = tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = token.cancelled() => None,
                    d = async { receiver.lock().await.recv().await } => d,
                };
                let Some(delivery) = next else { break };
                let dead_letter = DeadLetter::from_message(
                    delivery.message.clone(),
                    delivery.routing_key.clone(),
                );
                if let Err(e) = callback(dead_letter).await {
                    tracing::warn!(error = %e, queue = %spec.queue, "dead-letter callback failed; requeued");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    bus.route("", &spec.queue, &delivery.message);
                }
            }
        });
        Ok(ConsumerHandle::new(cancel, task))
    }
}
