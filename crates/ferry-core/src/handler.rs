//! Event handlers: a plain `async fn(E, MessageContext) -> Result<(), HandlerError>`, or a type
//! implementing [`IntegrationEventHandler`].

use std::{fmt, future::Future, sync::Arc};

use tokio_util::sync::CancellationToken;

use crate::{Envelope, IntegrationEvent};

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Whether a handler failure may succeed on a later attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Retry it (the default).
    Transient,
    /// Do not retry: dead-letter at once.
    Permanent,
}

/// A handler's error. Any error converts into a transient one with `?`; say
/// [`HandlerError::permanent`] for one that no retry can fix.
///
/// ```
/// use ferry_core::HandlerError;
/// fn parse(s: &str) -> Result<u32, HandlerError> {
///     let n: u32 = s.parse()?; // transient
///     if n == 0 {
///         return Err(HandlerError::permanent("zero is not a quantity"));
///     }
///     Ok(n)
/// }
/// assert!(parse("0").unwrap_err().is_permanent());
/// ```
pub struct HandlerError {
    kind: FailureKind,
    source: BoxError,
}

impl HandlerError {
    /// A failure a retry may fix.
    pub fn transient(error: impl Into<BoxError>) -> Self {
        Self {
            kind: FailureKind::Transient,
            source: error.into(),
        }
    }

    /// A failure no retry can fix: the message is dead-lettered at once.
    pub fn permanent(error: impl Into<BoxError>) -> Self {
        Self {
            kind: FailureKind::Permanent,
            source: error.into(),
        }
    }

    /// Transient or permanent.
    pub fn kind(&self) -> FailureKind {
        self.kind
    }

    /// Whether it is permanent.
    pub fn is_permanent(&self) -> bool {
        self.kind == FailureKind::Permanent
    }

    /// The underlying error.
    pub fn source(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.source
    }
}

impl<E: Into<BoxError>> From<E> for HandlerError {
    fn from(error: E) -> Self {
        HandlerError::transient(error)
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("kind", &self.kind)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)?;
        let mut next = self.source.source();
        while let Some(cause) = next {
            write!(f, ": {cause}")?;
            next = cause.source();
        }
        Ok(())
    }
}

/// What a handler knows about the message it handles.
#[derive(Debug, Clone)]
pub struct MessageContext {
    envelope: Arc<Envelope>,
    consumer: Arc<str>,
    routing_key: Arc<str>,
    attempt: u32,
    redelivered: bool,
    cancellation: CancellationToken,
}

impl MessageContext {
    /// A context for a message consumed from `consumer` (the queue name).
    pub fn new(
        envelope: Envelope,
        consumer: impl Into<Arc<str>>,
        routing_key: impl Into<Arc<str>>,
        attempt: u32,
    ) -> Self {
        Self {
            envelope: Arc::new(envelope),
            consumer: consumer.into(),
            routing_key: routing_key.into(),
            attempt,
            redelivered: false,
            cancellation: CancellationToken::new(),
        }
    }

    /// Marks the message as redelivered by the broker.
    pub fn with_redelivered(mut self, redelivered: bool) -> Self {
        self.redelivered = redelivered;
        self
    }

    /// Sets the token that is cancelled when the consumer shuts down.
    pub fn with_cancellation(mut self, token: CancellationToken) -> Self {
        self.cancellation = token;
        self
    }

    /// The message's envelope.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// The message id: the inbox key.
    pub fn message_id(&self) -> &str {
        &self.envelope.id
    }

    /// The correlation id, if the message has one.
    pub fn correlation_id(&self) -> Option<&str> {
        self.envelope.correlation_id.as_deref()
    }

    /// The consumer's name (its queue): the other half of the inbox key.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// The routing key the message arrived with.
    pub fn routing_key(&self) -> &str {
        &self.routing_key
    }

    /// The delivery attempt, 1 for the first.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Whether the broker redelivered the message (it may have been handled before).
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }

    /// Cancelled when the consumer is shutting down.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancellation
    }

    /// An envelope for an event this handler emits: correlation carried over, causation set to
    /// this message's id.
    pub fn child_envelope<E: IntegrationEvent>(&self) -> Envelope {
        Envelope::for_event::<E>().caused_by(&self.envelope)
    }
}

/// Handles one integration event type.
///
/// A plain async fn or closure `Fn(E, MessageContext) -> impl Future<Output = Result<(),
/// HandlerError>>` is a handler; so is any type that implements this trait.
///
/// ```
/// use ferry_core::{HandlerError, IntegrationEventHandler, MessageContext};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize, ferry_macros::IntegrationEvent)]
/// # #[event(name = "orders.order.created")]
/// # struct OrderCreated { order_id: String }
///
/// async fn on_order_created(event: OrderCreated, ctx: MessageContext) -> Result<(), HandlerError> {
///     tracing::info!(order_id = %event.order_id, message_id = ctx.message_id(), "reserving stock");
///     Ok(())
/// }
///
/// fn assert_handler<H: IntegrationEventHandler<OrderCreated>>(_: H) {}
/// assert_handler(on_order_created);
/// ```
pub trait IntegrationEventHandler<E>: Send + Sync + 'static {
    /// Handles the event.
    fn handle(
        &self,
        event: E,
        ctx: MessageContext,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

impl<E, F, Fut> IntegrationEventHandler<E> for F
where
    E: IntegrationEvent,
    F: Fn(E, MessageContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    fn handle(
        &self,
        event: E,
        ctx: MessageContext,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        (self)(event, ctx)
    }
}
