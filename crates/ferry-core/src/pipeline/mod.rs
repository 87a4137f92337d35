//! The consumer pipeline every transport runs: a stack of layers around the handler, then a
//! [`Decision`] the transport carries out (ack, republish to a retry queue, republish to the
//! dead-letter exchange).
//!
//! # Layers
//!
//! Each step is a [`Layer`], the same shape as the Mediator's
//! [behaviors](crate::mediator::Behavior): it gets the message being consumed ([`Incoming`]:
//! the delivery, and once decoded its envelope and [`MessageContext`](crate::MessageContext)) and [`Next`], the rest of
//! the stack, and returns an [`Outcome`]. [`Pipeline::process`] runs the stack, outermost first:
//!
//! | # | layer | what it does |
//! |---|---|---|
//! | 1 | limits | a body or header table over the [`Limits`] is a permanent `too-large` failure |
//! | 2 | decode | decodes the envelope and finds the handler of its event type; a failure is permanent (`decode`, `missing-id`, `unsupported-version`, `unknown-type`) |
//! | 3 | consume span | the `ferry.consume` span takes the message's trace context as parent; the rest runs inside it |
//! | 4 | inbox | with `skip_processed`: a message the inbox knows is a duplicate, one handled is recorded |
//! | 5 | consume lag | the `ferry_consume_lag_seconds` metric |
//! | 6 | immediate retries | a transient failure is tried again at once, `RetryPolicy::immediate` times |
//! | 7 | handle span | each try's `ferry.handle` span and `ferry_handler_duration_seconds` |
//! | 8 | recover | a panic inside is a transient `panic` failure |
//! | 9 | **yours** | the layers added with [`ConsumerBuilder::layer`](crate::ConsumerBuilder::layer), the first added outermost |
//! | | handler | decodes the typed event (a failure is permanent), runs the handler — in its transaction with the inbox row, for a transactional one |
//!
//! Your layers see decoded messages and wrap the handler: inside panic recovery, the spans and
//! the immediate retries (each try runs them again), outside the handler's transaction. What
//! they return is then classified into the [`Decision`]: `Ok` acks (or acks a duplicate); a
//! permanent [`Failure`] is dead-lettered at once; a transient one is retried after the retry
//! policy's delay while it has attempts left, and dead-lettered after. The `ferry.consume` span
//! and the `ferry_consumed_total` metric record the decision.
//!
//! A layer that makes a handler's error permanent (no retries for a validation error):
//!
//! ```
//! use ferry_core::pipeline::{Incoming, Next, Outcome, layer_fn};
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("invalid order: {0}")]
//! struct ValidationError(String);
//!
//! async fn validation_is_permanent(message: Incoming, next: Next) -> Outcome {
//!     next.run(message).await.map_err(|failure| {
//!         if failure.find_source::<ValidationError>().is_some() {
//!             failure.into_permanent()
//!         } else {
//!             failure
//!         }
//!     })
//! }
//!
//! # fn consumer(bus: &ferry_core::memory::MemoryBus) {
//! let consumer = bus
//!     .consumer("billing.order-created")
//!     .layer(layer_fn(validation_is_permanent));
//! # }
//! ```
//!
//! A circuit breaker: after `threshold` failures in a row, fail fast (transient, so the message
//! comes back after the retry delay) until `cool_down` has passed:
//!
//! ```
//! use std::{sync::Mutex, time::{Duration, Instant}};
//!
//! use ferry_core::{FaultKind, pipeline::{Failure, Incoming, Layer, Next, Outcome}};
//!
//! struct CircuitBreaker {
//!     threshold: u32,
//!     cool_down: Duration,
//!     state: Mutex<(u32, Option<Instant>)>, // failures in a row, open until
//! }
//!
//! impl Layer for CircuitBreaker {
//!     async fn handle(&self, message: Incoming, next: Next) -> Outcome {
//!         let open_until = self.state.lock().unwrap_or_else(|e| e.into_inner()).1;
//!         if open_until.is_some_and(|until| Instant::now() < until) {
//!             return Err(Failure::transient(FaultKind::Handler, "circuit open"));
//!         }
//!         let outcome = next.run(message).await;
//!         let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
//!         match &outcome {
//!             Ok(_) => *state = (0, None),
//!             Err(_) => {
//!                 state.0 += 1;
//!                 if state.0 >= self.threshold {
//!                     *state = (0, Some(Instant::now() + self.cool_down));
//!                 }
//!             }
//!         }
//!         outcome
//!     }
//! }
//!
//! # fn consumer(bus: &ferry_core::memory::MemoryBus) {
//! let breaker = CircuitBreaker {
//!     threshold: 5,
//!     cool_down: Duration::from_secs(30),
//!     state: Mutex::new((0, None)),
//! };
//! let consumer = bus.consumer("billing.order-created").layer(breaker);
//! # }
//! ```

mod classify;
mod decode;
mod handler;
mod inbox;
mod layer;
mod limits;
mod observe;
mod outcome;
mod recover;
mod telemetry;

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

pub use layer::{Incoming, Layer, LayerFn, Next, layer_fn};
pub use limits::Limits;
pub use observe::Observer;
pub use outcome::{Failure, Handled, Outcome};

use crate::{
    Fault, Inbox, IntegrationEvent, IntegrationEventHandler, RetryPolicy, WireMessage,
    fault::headers,
    telemetry::{consume_span, metric, record_decision},
    transactional::{TransactionalHandler, TransactionalStore},
    wire::HeaderValue,
};

use self::{
    classify::{Classify, ImmediateRetries},
    decode::Decode,
    handler::ErasedHandler,
    inbox::SkipProcessed,
    layer::{DynLayer, Stack, erase},
    limits::CheckLimits,
    recover::Recover,
    telemetry::{ConsumeLag, ConsumeSpan, HandleSpan},
};

/// A message as a transport delivered it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The message.
    pub message: WireMessage,
    /// The exchange it was published to (`""` for the default exchange).
    pub exchange: String,
    /// The routing key it arrived with.
    pub routing_key: String,
    /// Whether the broker redelivered it.
    pub redelivered: bool,
}

impl Delivery {
    /// The exchange the message was first published to: the `ferry-original-exchange` header
    /// when a retry copy carries it, else the delivery's exchange.
    pub fn original_exchange(&self) -> &str {
        self.message
            .header_str(headers::ORIGINAL_EXCHANGE)
            .unwrap_or(&self.exchange)
    }

    /// The routing key the message was first published with.
    pub fn original_routing_key(&self) -> &str {
        self.message
            .header_str(headers::ORIGINAL_ROUTING_KEY)
            .unwrap_or(&self.routing_key)
    }

    /// The copy to send to a retry queue: `ferry-attempt` set to `next_attempt`, and the
    /// original exchange and routing key kept in headers so a later dead letter names them.
    pub fn retry_copy(&self, next_attempt: u32) -> WireMessage {
        let mut message = self.message.clone();
        message.headers.insert(
            headers::ATTEMPT.into(),
            HeaderValue::Int(i64::from(next_attempt)),
        );
        message.headers.insert(
            headers::ORIGINAL_EXCHANGE.into(),
            self.original_exchange().into(),
        );
        message.headers.insert(
            headers::ORIGINAL_ROUTING_KEY.into(),
            self.original_routing_key().into(),
        );
        message
    }

    /// The copy to send to the dead-letter exchange: everything kept, fault headers added.
    pub fn dead_letter_copy(&self, fault: &Fault) -> WireMessage {
        let mut message = self.message.clone();
        fault.apply_to(&mut message);
        message
    }
}

/// What to do with a delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Handled: ack it.
    Ack,
    /// Already processed (the inbox knew it): ack it without handling.
    Duplicate,
    /// Failed, to be tried again: republish to the retry queue for `delay`, as attempt
    /// `next_attempt`, then ack the original.
    Retry {
        /// How long until it comes back.
        delay: Duration,
        /// The attempt number the copy will be.
        next_attempt: u32,
        /// Why it failed.
        error: String,
    },
    /// Failed for good: republish to the dead-letter exchange, then ack the original.
    DeadLetter(Fault),
}

impl Decision {
    /// The outcome label for metrics: `ack`, `duplicate`, `retry` or `dead_letter`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Decision::Ack => "ack",
            Decision::Duplicate => "duplicate",
            Decision::Retry { .. } => "retry",
            Decision::DeadLetter(_) => "dead_letter",
        }
    }
}

/// The pipeline of one consumer: its handlers by event type, retry policy, inbox, limits and
/// layers (see the [module](self)).
#[derive(Clone)]
pub struct Pipeline {
    queue: Arc<str>,
    handlers: Arc<HashMap<String, ErasedHandler>>,
    retry: RetryPolicy,
    inbox: Option<Arc<dyn Inbox>>,
    limits: Limits,
    limits_set: bool,
    cancellation: CancellationToken,
    layers: Vec<Arc<dyn DynLayer>>,
    observers: Vec<Arc<dyn Observer>>,
    /// The built-in layers and `layers`, in order; rebuilt when the configuration changes.
    stack: Stack,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("queue", &self.queue)
            .field("event_types", &self.event_types())
            .field("retry", &self.retry)
            .field("inbox", &self.inbox.is_some())
            .field("limits", &self.limits)
            .field("layers", &self.layers.len())
            .field("observers", &self.observers.len())
            .finish()
    }
}

impl Pipeline {
    /// An empty pipeline for `queue`: no handlers, the default retry policy, no inbox, no
    /// layers of yours.
    pub fn new(queue: impl Into<Arc<str>>) -> Self {
        let mut pipeline = Self {
            queue: queue.into(),
            handlers: Arc::default(),
            retry: RetryPolicy::default(),
            inbox: None,
            limits: Limits::default(),
            limits_set: false,
            cancellation: CancellationToken::new(),
            layers: Vec::new(),
            observers: Vec::new(),
            stack: Arc::new([]),
        };
        pipeline.rebuild();
        pipeline
    }

    /// The queue (the consumer's name).
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The event types with a handler.
    pub fn event_types(&self) -> Vec<&str> {
        let mut types: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
        types.sort_unstable();
        types
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Registers the handler for `E`; returns `false` (and keeps the first) when `E` already
    /// has one.
    pub fn add_handler<E: IntegrationEvent>(
        &mut self,
        handler: impl IntegrationEventHandler<E>,
    ) -> bool {
        self.insert_handler(E::NAME, handler::erase::<E>(handler))
    }

    /// Registers a handler for `E` that runs in a transaction of `store` with the message's
    /// inbox row (see [`crate::transactional`]); returns `false` (and keeps the first) when
    /// `E` already has one.
    pub fn add_transactional_handler<E, S, H>(&mut self, store: S, handler: H) -> bool
    where
        E: IntegrationEvent,
        S: TransactionalStore,
        H: TransactionalHandler<E, S::Transaction>,
    {
        self.insert_handler(
            E::NAME,
            handler::erase_transactional::<E, S, H>(store, handler),
        )
    }

    fn insert_handler(&mut self, event_type: &str, handler: ErasedHandler) -> bool {
        if self.handlers.contains_key(event_type) {
            return false;
        }
        Arc::make_mut(&mut self.handlers).insert(event_type.to_owned(), handler);
        self.rebuild();
        true
    }

    /// Adds a layer around the handler, inside the layers added before it (see the
    /// [module](self) for where it sits among the built-in ones).
    pub fn add_layer(&mut self, layer: impl Layer) {
        self.layers.push(erase(layer));
        self.rebuild();
    }

    /// Adds an [`Observer`]: it sees each delivery as its processing starts and the decision
    /// taken on it.
    pub fn add_observer(&mut self, observer: Arc<dyn Observer>) {
        self.observers.push(observer);
    }

    /// Sets the retry policy.
    pub fn set_retry(&mut self, retry: RetryPolicy) {
        self.retry = retry;
        self.rebuild();
    }

    /// Sets the inbox.
    pub fn set_inbox(&mut self, inbox: Arc<dyn Inbox>) {
        self.inbox = Some(inbox);
        self.rebuild();
    }

    /// Sets the limits.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
        self.limits_set = true;
        self.rebuild();
    }

    /// Whether the limits were set with [`Pipeline::set_limits`] (a transport may apply its
    /// own defaults otherwise).
    pub fn has_limits_set(&self) -> bool {
        self.limits_set
    }

    /// Sets the token handlers see cancelled at shutdown.
    pub fn set_cancellation(&mut self, token: CancellationToken) {
        self.cancellation = token;
        self.rebuild();
    }

    /// Builds the stack: the built-in layers in their order, then the user's.
    fn rebuild(&mut self) {
        let mut stack: Vec<Arc<dyn DynLayer>> = vec![
            erase(CheckLimits(self.limits)),
            erase(Decode {
                queue: Arc::clone(&self.queue),
                handlers: Arc::clone(&self.handlers),
                cancellation: self.cancellation.clone(),
            }),
            erase(ConsumeSpan),
        ];
        if let Some(inbox) = &self.inbox {
            stack.push(erase(SkipProcessed {
                queue: Arc::clone(&self.queue),
                inbox: Arc::clone(inbox),
            }));
        }
        stack.extend([
            erase(ConsumeLag {
                queue: Arc::clone(&self.queue),
            }),
            erase(ImmediateRetries {
                immediate: self.retry.immediate,
            }),
            erase(HandleSpan {
                queue: Arc::clone(&self.queue),
            }),
            erase(Recover),
        ]);
        stack.extend(self.layers.iter().cloned());
        self.stack = stack.into();
    }

    /// Runs a delivery through the layers and decides what becomes of it.
    ///
    /// It runs in a `ferry.consume` span (see [`crate::telemetry`]) whose parent is
    /// the message's trace context, and records the consumer metrics.
    pub async fn process(&self, delivery: &Delivery) -> Decision {
        for observer in &self.observers {
            observer.started(&self.queue, delivery);
        }
        let attempt = delivery.message.attempt();
        let span = consume_span(&self.queue, delivery, attempt);
        let message = Incoming::new(delivery.clone(), attempt, span.clone());
        let outcome = Next::start(Arc::clone(&self.stack)).run(message).await;
        let classify = Classify {
            queue: &self.queue,
            retry: &self.retry,
        };
        let decision = span.in_scope(|| classify.decide(delivery, attempt, outcome));
        record_decision(&span, &decision);
        metric::record_decision(&self.queue, &decision);
        for observer in &self.observers {
            observer.decided(&self.queue, delivery, &decision);
        }
        decision
    }
}
