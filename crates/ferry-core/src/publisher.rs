//! Publishing: the transport's [`Publisher`] trait, and [`PublisherExt`] for typed events.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::{Envelope, IntegrationEvent, MessageContext, OutgoingMessage, codec, telemetry};

/// Why a publish failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// No queue is bound for the routing key (a mandatory message came back).
    #[error(
        "unroutable: no queue is bound to exchange `{exchange}` for routing key `{routing_key}`"
    )]
    Unroutable {
        /// The exchange.
        exchange: String,
        /// The routing key.
        routing_key: String,
    },
    /// The broker refused the message (a negative confirm).
    #[error("the broker nacked message `{id}`")]
    Nacked {
        /// The message id.
        id: String,
    },
    /// No confirm came in time; the message may or may not have been stored.
    #[error("no publisher confirm for message `{id}` within {timeout_ms} ms")]
    ConfirmTimeout {
        /// The message id.
        id: String,
        /// The timeout.
        timeout_ms: u64,
    },
    /// The broker cannot be reached or the channel is down. Not the message's fault: the outbox
    /// relay keeps such rows pending without counting an attempt.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The event could not be encoded.
    #[error("cannot encode: {0}")]
    Encode(String),
    /// Something else the transport reports.
    #[error("{0}")]
    Other(String),
}

impl PublishError {
    /// Whether the broker is the problem rather than the message (see
    /// [`PublishError::Unavailable`]).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, PublishError::Unavailable(_))
    }
}

/// A transport that publishes wire messages and waits for the broker's confirm.
///
/// `Ok` means the broker has the message (confirmed, routed). The outbox relay and
/// [`PublisherExt`] build on this trait, so any transport runs them unchanged.
#[async_trait]
pub trait Publisher: Send + Sync {
    /// The source events published through [`PublisherExt`] carry when the options name none
    /// (`None`: ferry's default).
    fn default_source(&self) -> Option<&str> {
        None
    }

    /// Publishes one message and waits for its confirm.
    async fn publish_message(&self, message: OutgoingMessage) -> Result<(), PublishError>;

    /// Publishes many messages, all in flight at once, and reports each one's outcome in order.
    async fn publish_messages(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> Vec<Result<(), PublishError>> {
        let mut results = Vec::with_capacity(messages.len());
        for message in messages {
            results.push(self.publish_message(message).await);
        }
        results
    }
}

#[async_trait]
impl<P: Publisher + ?Sized> Publisher for std::sync::Arc<P> {
    fn default_source(&self) -> Option<&str> {
        (**self).default_source()
    }

    async fn publish_message(&self, message: OutgoingMessage) -> Result<(), PublishError> {
        (**self).publish_message(message).await
    }

    async fn publish_messages(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> Vec<Result<(), PublishError>> {
        (**self).publish_messages(messages).await
    }
}

/// Options for one publish (or one outbox add). Every field is optional.
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    /// The routing key; the event's name when `None`.
    pub routing_key: Option<String>,
    /// The event id; a new UUID v7 when `None`.
    pub id: Option<String>,
    /// The source; the publisher's when `None`.
    pub source: Option<String>,
    /// The correlation id.
    pub correlation_id: Option<String>,
    /// The causation id.
    pub causation_id: Option<String>,
    /// The subject.
    pub subject: Option<String>,
    /// The W3C traceparent.
    pub traceparent: Option<String>,
    /// Extra headers.
    pub headers: BTreeMap<String, String>,
    /// Messages that share a partition key are published in the order they were added (outbox).
    pub partition_key: Option<String>,
}

impl PublishOptions {
    /// Options for an event emitted while handling another message: correlation carried over,
    /// causation set to that message's id.
    pub fn caused_by(ctx: &MessageContext) -> Self {
        let parent = ctx.envelope();
        Self {
            correlation_id: Some(
                parent
                    .correlation_id
                    .clone()
                    .unwrap_or_else(|| parent.id.clone()),
            ),
            causation_id: Some(parent.id.clone()),
            traceparent: parent.traceparent.clone(),
            ..Self::default()
        }
    }

    /// Builds the envelope for `E` these options describe.
    ///
    /// With the `opentelemetry` feature and an active trace, the traceparent is the new
    /// message's creation context (see [`crate::telemetry`]), unless
    /// [`PublishOptions::traceparent`] names another trace; otherwise it is
    /// [`PublishOptions::traceparent`] unchanged.
    pub fn envelope_for<E: IntegrationEvent>(&self, default_source: Option<&str>) -> Envelope {
        let mut envelope = Envelope::for_event::<E>();
        if let Some(id) = &self.id {
            envelope.id = id.clone();
        }
        if let Some(source) = self.source.as_deref().or(default_source) {
            envelope.source = source.to_owned();
        }
        envelope.correlation_id = self.correlation_id.clone();
        envelope.causation_id = self.causation_id.clone();
        envelope.subject = self.subject.clone();
        envelope.traceparent = telemetry::creation_traceparent(
            self.routing_key.as_deref().unwrap_or(E::NAME),
            &envelope.id,
            envelope.correlation_id.as_deref(),
            self.traceparent.as_deref(),
        );
        envelope.extensions = self.headers.clone();
        envelope
    }

    /// Encodes `event` into the message these options describe.
    pub fn message_for<E: IntegrationEvent>(
        &self,
        event: &E,
        default_source: Option<&str>,
    ) -> Result<OutgoingMessage, PublishError> {
        let envelope = self.envelope_for::<E>(default_source);
        let message =
            codec::encode(event, &envelope).map_err(|e| PublishError::Encode(e.to_string()))?;
        let routing_key = self
            .routing_key
            .clone()
            .unwrap_or_else(|| E::NAME.to_owned());
        Ok(OutgoingMessage::new(routing_key, message))
    }
}

/// Typed publishing on any [`Publisher`].
///
/// ```
/// # use ferry_core::{memory::MemoryBus, PublisherExt};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize, ferry_macros::IntegrationEvent)]
/// # #[event(name = "orders.order.created")]
/// # struct OrderCreated { order_id: String }
/// # async fn demo(bus: MemoryBus) -> Result<(), ferry_core::PublishError> {
/// let id = bus.publish(&OrderCreated { order_id: "o-1".into() }).await?;
/// # Ok(()) }
/// ```
#[async_trait]
pub trait PublisherExt: Publisher {
    /// Publishes an event with its name as routing key; returns its id once confirmed.
    async fn publish<E: IntegrationEvent>(&self, event: &E) -> Result<String, PublishError> {
        self.publish_with(event, PublishOptions::default()).await
    }

    /// Publishes an event with options; returns its id once confirmed (and counts it in
    /// `ferry_published_total`).
    async fn publish_with<E: IntegrationEvent>(
        &self,
        event: &E,
        options: PublishOptions,
    ) -> Result<String, PublishError> {
        let message = options.message_for(event, self.default_source())?;
        let id = message.id().to_owned();
        self.publish_message(message).await?;
        telemetry::metric::record_published(1);
        Ok(id)
    }
}

impl<P: Publisher + ?Sized> PublisherExt for P {}
