//! Layers: the steps of consuming a message, tower style, the same shape as the Mediator's
//! [behaviors](crate::mediator::Behavior). Each receives the message being consumed
//! ([`Incoming`]) and [`Next`] — the rest of the stack, then the handler — and decides whether,
//! how often and with what to call it; it returns an [`Outcome`].

use std::{fmt, future::Future, sync::Arc};

use futures::future::BoxFuture;
use tracing::Span;

use super::{
    Delivery,
    handler::ErasedHandler,
    outcome::{Failure, Outcome},
};
use crate::{Envelope, FaultKind, MessageContext, codec::Decoded};

/// The message being consumed, as a layer sees it: the delivery, and once decoded its
/// envelope and [`MessageContext`]. Cheap to clone (reference counts).
///
/// The built-in layers before the decode step see it undecoded; every layer added with
/// [`ConsumerBuilder::layer`](crate::ConsumerBuilder::layer) sees it decoded.
#[derive(Clone)]
pub struct Incoming {
    delivery: Arc<Delivery>,
    attempt: u32,
    decoded: Option<Decoding>,
    span: Span,
}

/// What the decode step learnt: the decoded message, its context and its handler.
#[derive(Clone)]
pub(crate) struct Decoding {
    pub(crate) decoded: Arc<Decoded>,
    pub(crate) context: MessageContext,
    pub(crate) handler: ErasedHandler,
}

impl Incoming {
    pub(crate) fn new(delivery: Delivery, attempt: u32, span: Span) -> Self {
        Self {
            delivery: Arc::new(delivery),
            attempt,
            decoded: None,
            span,
        }
    }

    /// The delivery, as the transport handed it over.
    pub fn delivery(&self) -> &Delivery {
        &self.delivery
    }

    /// The delivery attempt, 1 for the first (the `ferry-attempt` header).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The envelope, once decoded.
    pub fn envelope(&self) -> Option<&Envelope> {
        self.decoded.as_ref().map(|d| &d.decoded.envelope)
    }

    /// The event type, once decoded.
    pub fn event_type(&self) -> Option<&str> {
        self.envelope().map(|e| e.event_type.as_str())
    }

    /// The context the handler gets, once decoded.
    pub fn context(&self) -> Option<&MessageContext> {
        self.decoded.as_ref().map(|d| &d.context)
    }

    /// The `ferry.consume` span of this delivery.
    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    pub(crate) fn with_decoding(mut self, decoding: Decoding) -> Self {
        self.decoded = Some(decoding);
        self
    }
}

impl fmt::Debug for Incoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("routing_key", &self.delivery.routing_key)
            .field("attempt", &self.attempt)
            .field("event_type", &self.event_type())
            .field("message_id", &self.envelope().map(|e| e.id.as_str()))
            .finish_non_exhaustive()
    }
}

/// A layer around the handling of every message of a consumer: classifying errors, circuit
/// breaking, metrics, authorization…
///
/// It may return early (the message is then not handled), call [`Next::run`] to go on, change
/// the outcome, or call it again (on a clone of `Next` and of the message). Add one with
/// [`ConsumerBuilder::layer`](crate::ConsumerBuilder::layer), or write it as a plain async fn
/// with [`layer_fn`]. Where it sits among the built-in layers: see [`crate::pipeline`].
///
/// ```
/// use ferry_core::pipeline::{Incoming, Layer, Next, Outcome};
///
/// /// Logs the messages that fail.
/// struct LogFailures;
///
/// impl Layer for LogFailures {
///     async fn handle(&self, message: Incoming, next: Next) -> Outcome {
///         let event_type = message.event_type().unwrap_or_default().to_owned();
///         let outcome = next.run(message).await;
///         if let Err(failure) = &outcome {
///             tracing::info!(%event_type, %failure, "failed");
///         }
///         outcome
///     }
/// }
/// ```
pub trait Layer: Send + Sync + 'static {
    /// Handles the message, usually by calling `next`.
    fn handle(&self, message: Incoming, next: Next) -> impl Future<Output = Outcome> + Send;
}

/// A layer from an async fn or closure `Fn(Incoming, Next) -> impl Future<Output = Outcome>`,
/// as axum's `middleware::from_fn` makes one from an async fn.
///
/// ```
/// use ferry_core::pipeline::{Incoming, Next, Outcome, layer_fn};
///
/// async fn log_redeliveries(message: Incoming, next: Next) -> Outcome {
///     if message.delivery().redelivered {
///         tracing::info!(attempt = message.attempt(), "redelivered by the broker");
///     }
///     next.run(message).await
/// }
///
/// let layer = layer_fn(log_redeliveries);
/// ```
pub fn layer_fn<F, Fut>(f: F) -> LayerFn<F>
where
    F: Fn(Incoming, Next) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    LayerFn(f)
}

/// A layer made by [`layer_fn`].
#[derive(Clone, Copy)]
pub struct LayerFn<F>(F);

impl<F> fmt::Debug for LayerFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LayerFn")
    }
}

impl<F, Fut> Layer for LayerFn<F>
where
    F: Fn(Incoming, Next) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    fn handle(&self, message: Incoming, next: Next) -> impl Future<Output = Outcome> + Send {
        (self.0)(message, next)
    }
}

/// The layers of a consumer, outermost first.
pub(crate) type Stack = Arc<[Arc<dyn DynLayer>]>;

/// The rest of the stack after a layer: the layers inside it, then the handler. Cheap to clone
/// (reference counts).
#[derive(Clone)]
pub struct Next {
    stack: Stack,
    position: usize,
}

impl Next {
    /// The whole stack, from its outermost layer.
    pub(crate) fn start(stack: Stack) -> Self {
        Self { stack, position: 0 }
    }

    /// Runs the rest of the stack on `message`.
    pub fn run(self, message: Incoming) -> impl Future<Output = Outcome> + Send + 'static {
        match self.stack.get(self.position).cloned() {
            Some(layer) => {
                let next = Next {
                    position: self.position + 1,
                    ..self
                };
                layer.handle_dyn(message, next)
            }
            None => call_handler(message),
        }
    }
}

impl fmt::Debug for Next {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Next")
            .field("layers_left", &(self.stack.len() - self.position))
            .finish()
    }
}

/// The end of the stack: the handler the decode step found.
fn call_handler(message: Incoming) -> BoxFuture<'static, Outcome> {
    match message.decoded {
        Some(Decoding {
            decoded,
            context,
            handler,
        }) => handler(decoded, context),
        // Only the decode step makes a decoded message, and it runs before any layer that
        // reaches the end of the stack; fail the message rather than the process if not.
        None => Box::pin(async {
            Err(Failure::permanent(
                FaultKind::UnknownType,
                "the message reached the handler undecoded",
            ))
        }),
    }
}

/// A layer as the stack stores it. Its future owns a reference to it, so that [`Next::run`]
/// hands the future on without wrapping it.
pub(crate) trait DynLayer: Send + Sync {
    fn handle_dyn(self: Arc<Self>, message: Incoming, next: Next) -> BoxFuture<'static, Outcome>;
}

/// A [`Layer`] in the stack.
pub(crate) struct Dyn<L>(pub(crate) L);

impl<L: Layer> DynLayer for Dyn<L> {
    fn handle_dyn(self: Arc<Self>, message: Incoming, next: Next) -> BoxFuture<'static, Outcome> {
        Box::pin(async move { self.0.handle(message, next).await })
    }
}

/// Puts a layer in a stack.
pub(crate) fn erase<L: Layer>(layer: L) -> Arc<dyn DynLayer> {
    Arc::new(Dyn(layer))
}
