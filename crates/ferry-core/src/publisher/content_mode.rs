//! A publisher in another content mode: [`InContentMode`] wraps any [`PublishTransport`] and
//! converts what it sends ([`ContentMode::apply`]), so one choice covers direct publishes and
//! an outbox relay alike.

use async_trait::async_trait;

use super::{PublishBatch, PublishError, PublishTransport};
use crate::codec::ContentMode;

/// A [`PublishTransport`] that sends every message in `mode`.
///
/// Binary mode is the wire contract's default (`docs/wire-format.md`); structured mode
/// (`application/cloudevents+json`) spares the broker a header table per message, and every
/// ferry consumer reads it. A relay publishes structured when given such a publisher:
///
/// ```
/// use ferry_core::{
///     OutboxRelay, codec::ContentMode, memory::{MemoryBus, MemoryOutbox},
///     publisher::InContentMode,
/// };
///
/// let bus = MemoryBus::new("app.events");
/// let structured = InContentMode::new(bus.clone(), ContentMode::Structured);
/// let relay = OutboxRelay::new(MemoryOutbox::new(), structured);
/// # drop(relay);
/// ```
#[derive(Debug, Clone)]
pub struct InContentMode<T> {
    inner: T,
    mode: ContentMode,
}

impl<T> InContentMode<T> {
    /// `inner`, sending in `mode`.
    pub fn new(inner: T, mode: ContentMode) -> Self {
        Self { inner, mode }
    }

    /// The content mode messages are sent in.
    pub fn mode(&self) -> ContentMode {
        self.mode
    }

    /// The wrapped transport.
    pub fn inner(&self) -> &T {
        &self.inner
    }
}

#[async_trait]
impl<T: PublishTransport> PublishTransport for InContentMode<T> {
    fn source(&self) -> Option<&str> {
        self.inner.source()
    }

    fn exchange(&self) -> Option<&str> {
        self.inner.exchange()
    }

    async fn send(&self, batch: PublishBatch) -> Vec<Result<(), PublishError>> {
        let batch = match self.mode {
            ContentMode::Binary => batch,
            mode => PublishBatch {
                messages: batch
                    .into_messages()
                    .into_iter()
                    .map(|mut m| {
                        m.message = mode.apply(m.message);
                        m
                    })
                    .collect(),
            },
        };
        self.inner.send(batch).await
    }
}
