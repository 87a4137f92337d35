//! The dead-letter consumer: [`DeadLetterSpec`] and [`DeadLetterConsumerBuilder`], what
//! `bus.dead_letter_consumer(queue)` returns.

use std::{future::Future, sync::Arc};

use futures::future::BoxFuture;

use super::{ConsumerHandle, ConsumerHost};
use crate::{DeadLetter, HandlerError};

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
