//! Publishing: the one publish path every entry point goes through, the
//! [`PublishTransport`] trait transports implement under it, the [`Publisher`] entry points,
//! and [`PublisherExt`] for typed events.
//!
//! Every publish (a direct one through [`Publisher`] or [`PublisherExt`], an outbox relay
//! batch, a follow-up event) ends in one function of this module, which opens the
//! `ferry.publish` span, hands the messages to the transport and counts the confirmed ones in
//! `ferry_published_total`. A transport only implements [`PublishTransport::send`], and only
//! that function can build the [`PublishBatch`] that method takes, so no entry point can skip
//! the span or the count. ([`Publisher`] is sealed: every type that implements
//! [`PublishTransport`] is a [`Publisher`], and nothing else is.)

mod content_mode;

pub use content_mode::InContentMode;

use std::{collections::BTreeMap, fmt, sync::Arc};

use async_trait::async_trait;
use tracing::Instrument;

use crate::{Envelope, IntegrationEvent, MessageContext, OutgoingMessage, codec, telemetry};

/// Why a publish failed.
///
/// [`Unavailable`](PublishError::Unavailable) and [`Other`](PublishError::Other) carry a
/// [`Reason`]: the words, and the error underneath them (the broker client's) as the
/// [`source`](std::error::Error::source), which the message does not repeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishError {
    /// No queue is bound for the routing key (a mandatory message came back).
    Unroutable {
        /// The exchange.
        exchange: String,
        /// The routing key.
        routing_key: String,
    },
    /// The broker refused the message (a negative confirm).
    Nacked {
        /// The message id.
        id: String,
    },
    /// No confirm came in time; the message may or may not have been stored. The broker
    /// stopped answering (a network partition, a memory or disk alarm blocking the
    /// connection): like [`PublishError::Unavailable`], not the message's fault, so the outbox
    /// relay keeps such rows pending without counting an attempt.
    ConfirmTimeout {
        /// The message id.
        id: String,
        /// The timeout.
        timeout_ms: u64,
    },
    /// The broker cannot be reached, the channel is down, or the broker blocks publishing (a
    /// memory or disk alarm). Not the message's fault: the outbox relay keeps such rows
    /// pending without counting an attempt.
    Unavailable(Reason),
    /// The event could not be encoded.
    Encode(String),
    /// Something else the transport reports.
    Other(Reason),
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::Unroutable {
                exchange,
                routing_key,
            } => write!(
                f,
                "unroutable: no queue is bound to exchange `{exchange}` for routing key `{routing_key}`"
            ),
            PublishError::Nacked { id } => write!(f, "the broker nacked message `{id}`"),
            PublishError::ConfirmTimeout { id, timeout_ms } => write!(
                f,
                "no publisher confirm for message `{id}` within {timeout_ms} ms"
            ),
            PublishError::Unavailable(reason) => write!(f, "broker unavailable: {reason}"),
            PublishError::Encode(what) => write!(f, "cannot encode: {what}"),
            PublishError::Other(reason) => write!(f, "{reason}"),
        }
    }
}

impl std::error::Error for PublishError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PublishError::Unavailable(reason) | PublishError::Other(reason) => reason.source(),
            _ => None,
        }
    }
}

/// What went wrong, in words, and the error underneath when there is one: the source of the
/// [`PublishError`] that carries it. Two reasons are equal when their words are.
///
/// ```
/// use std::error::Error as _;
/// use ferry_core::publisher::{PublishError, Reason};
///
/// let io = std::io::Error::other("connection reset");
/// let e = PublishError::Unavailable(Reason::caused_by("the channel closed", io));
/// assert_eq!(e.to_string(), "broker unavailable: the channel closed");
/// assert_eq!(e.source().unwrap().to_string(), "connection reset");
/// assert_eq!(PublishError::Other("no route".into()).to_string(), "no route");
/// ```
#[derive(Debug, Clone)]
pub struct Reason {
    text: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl Reason {
    /// Words alone.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            source: None,
        }
    }

    /// Words and the error underneath them.
    pub fn caused_by(
        text: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            text: text.into(),
            source: Some(Arc::new(source)),
        }
    }

    /// The error underneath, if any.
    pub fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl PartialEq for Reason {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Reason {}

impl From<String> for Reason {
    fn from(text: String) -> Self {
        Self::new(text)
    }
}

impl From<&str> for Reason {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

/// An error and its sources, each after a colon (`publish failed: broker unavailable: …`), for
/// where one line must say everything: a log field, an outbox row's `last_error`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

impl PublishError {
    /// Whether the broker is the problem rather than the message: it cannot be reached, blocks
    /// publishing, or stopped answering ([`PublishError::Unavailable`],
    /// [`PublishError::ConfirmTimeout`]). Publishing the same message later may well succeed;
    /// the outbox relay counts no attempt for such a failure.
    ///
    /// ```
    /// use ferry_core::PublishError;
    /// assert!(PublishError::ConfirmTimeout { id: "m-1".into(), timeout_ms: 30_000 }.is_unavailable());
    /// assert!(PublishError::Unavailable("connection lost".into()).is_unavailable());
    /// assert!(!PublishError::Nacked { id: "m-1".into() }.is_unavailable());
    /// ```
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            PublishError::Unavailable(_) | PublishError::ConfirmTimeout { .. }
        )
    }

    /// A short name of the failure, for the `error.type` of the publish span:
    /// `unroutable`, `nacked`, `confirm_timeout`, `unavailable`, `encode` or `other`.
    pub fn kind(&self) -> &'static str {
        match self {
            PublishError::Unroutable { .. } => "unroutable",
            PublishError::Nacked { .. } => "nacked",
            PublishError::ConfirmTimeout { .. } => "confirm_timeout",
            PublishError::Unavailable(_) => "unavailable",
            PublishError::Encode(_) => "encode",
            PublishError::Other(_) => "other",
        }
    }
}

/// The messages of one publish, on their way from ferry's publish path to a transport.
///
/// Only ferry's publish path makes one, so a transport's [`PublishTransport::send`] is
/// reached through that path alone. A transport that wraps another (to time or count its
/// publishes) passes the batch on to the inner transport's `send` as it is.
#[derive(Debug)]
pub struct PublishBatch {
    messages: Vec<OutgoingMessage>,
}

impl PublishBatch {
    /// The messages, in the order their outcomes are reported.
    pub fn messages(&self) -> &[OutgoingMessage] {
        &self.messages
    }

    /// How many messages.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// The messages, to send them.
    pub fn into_messages(self) -> Vec<OutgoingMessage> {
        self.messages
    }
}

/// What a transport implements to publish: send wire messages and wait for the broker's
/// confirms. Every such transport is a [`Publisher`].
///
/// `Ok` means the broker has the message (confirmed, routed). The span, the
/// `ferry_published_total` count and the entry points ([`Publisher`], [`PublisherExt`], the
/// outbox relay) are ferry's, around [`PublishTransport::send`], so any transport runs them
/// unchanged.
///
/// ```
/// use async_trait::async_trait;
/// use ferry_core::{PublishBatch, PublishError, PublishTransport};
///
/// /// Counts what it sends, then hands it to the transport it wraps.
/// struct Counting<T> { inner: T, sent: std::sync::atomic::AtomicUsize }
///
/// #[async_trait]
/// impl<T: PublishTransport> PublishTransport for Counting<T> {
///     fn source(&self) -> Option<&str> { self.inner.source() }
///     fn exchange(&self) -> Option<&str> { self.inner.exchange() }
///     async fn send(&self, batch: PublishBatch) -> Vec<Result<(), PublishError>> {
///         self.sent.fetch_add(batch.len(), std::sync::atomic::Ordering::Relaxed);
///         self.inner.send(batch).await
///     }
/// }
/// ```
#[async_trait]
pub trait PublishTransport: Send + Sync {
    /// The source events published through [`PublisherExt`] carry when the options name none
    /// (`None`: ferry's default).
    fn source(&self) -> Option<&str> {
        None
    }

    /// The exchange a message goes to when it names none (`None`: the default exchange, `""`).
    /// Publish spans name it in `messaging.destination.name`.
    fn exchange(&self) -> Option<&str> {
        None
    }

    /// Sends every message of `batch` (all in flight at once where the transport can) and
    /// waits for their confirms; returns each one's outcome, in order, one per message.
    async fn send(&self, batch: PublishBatch) -> Vec<Result<(), PublishError>>;
}

/// A shared or borrowed transport is one too: `Arc<T>` and `&T` forward to `T`.
macro_rules! forward_transport {
    ($($target:ty),+) => {$(
        #[async_trait]
        impl<T: PublishTransport + ?Sized> PublishTransport for $target {
            fn source(&self) -> Option<&str> {
                (**self).source()
            }

            fn exchange(&self) -> Option<&str> {
                (**self).exchange()
            }

            async fn send(&self, batch: PublishBatch) -> Vec<Result<(), PublishError>> {
                (**self).send(batch).await
            }
        }
    )+};
}

forward_transport!(Arc<T>, &T);

mod sealed {
    /// Only [`PublishTransport`](super::PublishTransport)s are publishers.
    pub trait Sealed {}

    impl<T: super::PublishTransport + ?Sized> Sealed for T {}
}

/// Publishes wire messages and waits for the broker's confirms: implemented for every
/// [`PublishTransport`], through ferry's one publish path.
///
/// `Ok` means the broker has the message (confirmed, routed). Each call opens one
/// `ferry.publish` span and counts the confirmed messages in `ferry_published_total`.
#[async_trait]
pub trait Publisher: sealed::Sealed + Send + Sync {
    /// The source events published through [`PublisherExt`] carry when the options name none
    /// (`None`: ferry's default).
    fn default_source(&self) -> Option<&str>;

    /// Publishes one message and waits for its confirm.
    async fn publish_message(&self, message: OutgoingMessage) -> Result<(), PublishError>;

    /// Publishes many messages, all in flight at once, and reports each one's outcome in order.
    async fn publish_messages(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> Vec<Result<(), PublishError>>;
}

#[async_trait]
impl<T: PublishTransport + ?Sized> Publisher for T {
    fn default_source(&self) -> Option<&str> {
        self.source()
    }

    async fn publish_message(&self, message: OutgoingMessage) -> Result<(), PublishError> {
        publish_through(self, vec![message])
            .await
            .pop()
            .unwrap_or_else(|| Err(PublishError::Other("the transport reported nothing".into())))
    }

    async fn publish_messages(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> Vec<Result<(), PublishError>> {
        publish_through(self, messages).await
    }
}

/// The publish path: opens the `ferry.publish` span (one per call: a message's own, or a
/// batch's with a link to each message's creation context), sends the messages through
/// `transport`, marks the span failed if any failed, and counts the confirmed ones in
/// `ferry_published_total`. Returns each message's outcome, in order.
///
/// Every [`Publisher`] method ends here.
pub(crate) async fn publish_through<T: PublishTransport + ?Sized>(
    transport: &T,
    messages: Vec<OutgoingMessage>,
) -> Vec<Result<(), PublishError>> {
    let n = messages.len();
    if n == 0 {
        return Vec::new();
    }
    let exchange = transport.exchange().unwrap_or("");
    let span = match messages.as_slice() {
        [message] => {
            telemetry::publish_span_for(message.exchange.as_deref().unwrap_or(exchange), message)
        }
        messages => telemetry::publish_batch_span(exchange, messages),
    };
    let mut results = transport
        .send(PublishBatch { messages })
        .instrument(span.clone())
        .await;
    // One outcome per message, whatever the transport returned: a message it reported
    // nothing for is failed, never silently confirmed.
    results.resize_with(n, || {
        Err(PublishError::Other(
            "the transport reported no outcome for this message".into(),
        ))
    });
    let published = results.iter().filter(|r| r.is_ok()).count();
    telemetry::metric::record_published(published);
    if published < n {
        record_failure(&span, &results, n - published);
    }
    results
}

/// Marks the publish span failed: with the error's kind when one message failed, or when all
/// failures are of one kind; otherwise as `publish`.
fn record_failure(span: &tracing::Span, results: &[Result<(), PublishError>], failed: usize) {
    let mut errors = results.iter().filter_map(|r| r.as_ref().err());
    let Some(first) = errors.next() else { return };
    let same_kind = errors.all(|e| e.kind() == first.kind());
    let description = if results.len() == 1 {
        first.to_string()
    } else {
        format!(
            "{failed} of {} messages not published: {first}",
            results.len()
        )
    };
    let kind = if same_kind { first.kind() } else { "publish" };
    telemetry::record_error(span, kind, &description);
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
    /// Messages that share a partition key are published in the order they were added
    /// (outbox). It travels as the CloudEvents partitioning extension (`ce-partitionkey`),
    /// which a partitioned consumer hashes (see
    /// [`ConsumerBuilder::partitions`](crate::ConsumerBuilder::partitions)).
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
        if let Some(key) = &self.partition_key {
            envelope
                .extensions
                .insert(codec::attributes::PARTITIONKEY.to_owned(), key.clone());
        }
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

/// Typed publishing on any [`Publisher`] (through the same path, so with the same span and
/// count).
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

    /// Publishes an event with options; returns its id once confirmed.
    async fn publish_with<E: IntegrationEvent>(
        &self,
        event: &E,
        options: PublishOptions,
    ) -> Result<String, PublishError> {
        let message = options.message_for(event, self.default_source())?;
        let id = message.id().to_owned();
        self.publish_message(message).await?;
        Ok(id)
    }
}

impl<P: Publisher + ?Sized> PublisherExt for P {}
