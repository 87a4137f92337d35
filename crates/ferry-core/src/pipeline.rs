//! The consumer pipeline every transport runs: limits → decode → handler lookup → inbox →
//! handler (panics caught, immediate retries) → a [`Decision`]. Transports only carry out the
//! decision (ack, republish to a retry queue, republish to the dead-letter exchange).

use std::{
    collections::HashMap,
    panic::AssertUnwindSafe,
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::Utc;
use futures::{FutureExt, future::BoxFuture};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    Fault, FaultKind, HandlerError, Inbox, IntegrationEvent, IntegrationEventHandler,
    MessageContext, RetryPolicy, WireMessage,
    codec::{self, DecodeError, Decoded},
    fault::headers,
    telemetry::{self, metric},
    transactional::{StoreTransaction, TransactionalHandler, TransactionalStore, TxContext},
    wire::HeaderValue,
};

/// Size and count limits on incoming messages; a message over one is dead-lettered at once as
/// `too-large`, before anything else is read from it.
///
/// Set them per consumer with `.limits(..)` on the consumer builder (the RabbitMQ transport
/// also takes defaults for every consumer in its options). The work a consumer has in flight
/// is bounded too, by its prefetch (unacked deliveries) and concurrency (handlers at once).
///
/// ```
/// use ferry_core::Limits;
///
/// let limits = Limits::default().with_max_body_bytes(64 * 1024).with_max_headers(32);
/// assert_eq!(limits.max_body_bytes, 65_536);
/// assert_eq!(Limits::default().max_body_bytes, 4 * 1024 * 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest body accepted, in bytes (default 4 MiB).
    pub max_body_bytes: usize,
    /// The most headers accepted (default 256).
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            max_headers: 256,
        }
    }
}

impl Limits {
    /// Sets the largest body accepted, in bytes.
    pub const fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Sets the most headers accepted.
    pub const fn with_max_headers(mut self, headers: usize) -> Self {
        self.max_headers = headers;
        self
    }
}

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

enum Failure {
    Decode(DecodeError),
    Handler(HandlerError),
    Panic(String),
}

/// How a handler call ended when it did not fail.
enum Handled {
    /// The handler ran and its work is done (committed, for a transactional handler).
    Done,
    /// A transactional handler's inbox row was already there: not run.
    Duplicate,
}

type ErasedHandler = Arc<
    dyn Fn(Decoded, MessageContext) -> BoxFuture<'static, Result<Handled, Failure>> + Send + Sync,
>;

/// The pipeline of one consumer: its handlers by event type, retry policy, inbox and limits.
#[derive(Clone)]
pub struct Pipeline {
    queue: Arc<str>,
    handlers: HashMap<String, ErasedHandler>,
    retry: RetryPolicy,
    inbox: Option<Arc<dyn Inbox>>,
    limits: Limits,
    limits_set: bool,
    cancellation: CancellationToken,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("queue", &self.queue)
            .field("event_types", &self.event_types())
            .field("retry", &self.retry)
            .field("inbox", &self.inbox.is_some())
            .field("limits", &self.limits)
            .finish()
    }
}

impl Pipeline {
    /// An empty pipeline for `queue`: no handlers, the default retry policy, no inbox.
    pub fn new(queue: impl Into<Arc<str>>) -> Self {
        Self {
            queue: queue.into(),
            handlers: HashMap::new(),
            retry: RetryPolicy::default(),
            inbox: None,
            limits: Limits::default(),
            limits_set: false,
            cancellation: CancellationToken::new(),
        }
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
        let handler = Arc::new(handler);
        let erased: ErasedHandler = Arc::new(move |decoded: Decoded, ctx: MessageContext| {
            let handler = Arc::clone(&handler);
            Box::pin(async move {
                let event = codec::decode_event::<E>(&decoded).map_err(Failure::Decode)?;
                match AssertUnwindSafe(handler.handle(event, ctx))
                    .catch_unwind()
                    .await
                {
                    Ok(Ok(())) => Ok(Handled::Done),
                    Ok(Err(e)) => Err(Failure::Handler(e)),
                    Err(panic) => Err(Failure::Panic(panic_message(&panic))),
                }
            })
        });
        self.insert_handler(E::NAME, erased)
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
        let handler = Arc::new(handler);
        let erased: ErasedHandler = Arc::new(move |decoded: Decoded, ctx: MessageContext| {
            let handler = Arc::clone(&handler);
            let store = store.clone();
            Box::pin(async move {
                let event = codec::decode_event::<E>(&decoded).map_err(Failure::Decode)?;
                let transient = |e: &dyn std::fmt::Display| {
                    Failure::Handler(HandlerError::transient(e.to_string()))
                };
                let mut tx = store.begin().await.map_err(|e| transient(&e))?;
                match tx.insert_inbox(ctx.consumer(), ctx.message_id()).await {
                    Ok(true) => {}
                    Ok(false) => {
                        let mut cx = TxContext::new(tx, ctx);
                        let result = AssertUnwindSafe(handler.on_duplicate(&mut cx))
                            .catch_unwind()
                            .await;
                        let (tx, _) = cx.into_parts();
                        match result {
                            Ok(Ok(())) => {
                                if let Err(e) = tx.commit().await {
                                    tracing::warn!(error = %e, "could not commit on_duplicate's writes");
                                }
                            }
                            Ok(Err(e)) => {
                                tracing::warn!(error = %e, "on_duplicate failed; the duplicate is acked");
                                rollback(tx).await;
                            }
                            Err(_) => {
                                tracing::warn!("on_duplicate panicked; the duplicate is acked");
                                rollback(tx).await;
                            }
                        }
                        return Ok(Handled::Duplicate);
                    }
                    Err(e) => {
                        rollback(tx).await;
                        return Err(transient(&e));
                    }
                }
                let mut cx = TxContext::new(tx, ctx);
                let result = AssertUnwindSafe(handler.handle(event, &mut cx))
                    .catch_unwind()
                    .await;
                let (tx, _) = cx.into_parts();
                match result {
                    Ok(Ok(())) => match tx.commit().await {
                        Ok(()) => Ok(Handled::Done),
                        Err(e) => Err(transient(&format_args!(
                            "could not commit the handler's transaction: {e}"
                        ))),
                    },
                    Ok(Err(e)) => {
                        rollback(tx).await;
                        Err(Failure::Handler(e))
                    }
                    Err(panic) => {
                        rollback(tx).await;
                        Err(Failure::Panic(panic_message(&panic)))
                    }
                }
            })
        });
        self.insert_handler(E::NAME, erased)
    }

    fn insert_handler(&mut self, event_type: &str, handler: ErasedHandler) -> bool {
        if self.handlers.contains_key(event_type) {
            return false;
        }
        self.handlers.insert(event_type.to_owned(), handler);
        true
    }

    /// Sets the retry policy.
    pub fn set_retry(&mut self, retry: RetryPolicy) {
        self.retry = retry;
    }

    /// Sets the inbox.
    pub fn set_inbox(&mut self, inbox: Arc<dyn Inbox>) {
        self.inbox = Some(inbox);
    }

    /// Sets the limits.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
        self.limits_set = true;
    }

    /// Whether the limits were set with [`Pipeline::set_limits`] (a transport may apply its
    /// own defaults otherwise).
    pub fn has_limits_set(&self) -> bool {
        self.limits_set
    }

    /// Sets the token handlers see cancelled at shutdown.
    pub fn set_cancellation(&mut self, token: CancellationToken) {
        self.cancellation = token;
    }

    /// Runs a delivery through the pipeline and decides what becomes of it.
    ///
    /// It runs in a `ferry.consume` span (see [`crate::telemetry`]) whose parent is
    /// the message's trace context, and records the consumer metrics.
    pub async fn process(&self, delivery: &Delivery) -> Decision {
        let attempt = delivery.message.attempt();
        let span = telemetry::consume_span(&self.queue, delivery, attempt);
        let decision = match self.prepare(delivery, attempt) {
            Err(decision) => decision,
            Ok((decoded, handler)) => {
                telemetry::record_envelope(&span, &decoded.envelope);
                telemetry::set_parent_from_traceparent(
                    &span,
                    decoded.envelope.traceparent.as_deref(),
                );
                self.run(delivery, attempt, decoded, handler)
                    .instrument(span.clone())
                    .await
            }
        };
        telemetry::record_decision(&span, &decision);
        metric::record_decision(&self.queue, &decision);
        decision
    }

    /// Limits, decoding and handler lookup: the handler to run, or the decision already made.
    fn prepare(
        &self,
        delivery: &Delivery,
        attempt: u32,
    ) -> Result<(Decoded, ErasedHandler), Decision> {
        let message = &delivery.message;
        if message.body.len() > self.limits.max_body_bytes {
            return Err(self.dead_letter(
                delivery,
                attempt,
                FaultKind::TooLarge,
                format!(
                    "body of {} bytes is over the limit of {} bytes",
                    message.body.len(),
                    self.limits.max_body_bytes
                ),
            ));
        }
        if message.headers.len() > self.limits.max_headers {
            return Err(self.dead_letter(
                delivery,
                attempt,
                FaultKind::TooLarge,
                format!(
                    "{} headers is over the limit of {}",
                    message.headers.len(),
                    self.limits.max_headers
                ),
            ));
        }
        let decoded = match codec::decode(message) {
            Ok(decoded) => decoded,
            Err(e) => return Err(self.dead_letter(delivery, attempt, e.kind, e.message)),
        };
        let Some(handler) = self.handlers.get(&decoded.envelope.event_type) else {
            let message = format!(
                "no handler for event type `{}` on queue `{}`",
                decoded.envelope.event_type, self.queue
            );
            return Err(self.dead_letter(delivery, attempt, FaultKind::UnknownType, message));
        };
        Ok((decoded, Arc::clone(handler)))
    }

    /// Inbox check, then the handler (each call in a `ferry.handle` span), with immediate
    /// retries; inside the `ferry.consume` span.
    async fn run(
        &self,
        delivery: &Delivery,
        attempt: u32,
        decoded: Decoded,
        handler: ErasedHandler,
    ) -> Decision {
        let envelope = decoded.envelope.clone();
        if let Some(inbox) = &self.inbox {
            match inbox.is_processed(&self.queue, &envelope.id).await {
                Ok(true) => {
                    tracing::debug!("duplicate skipped");
                    return Decision::Duplicate;
                }
                Ok(false) => {}
                Err(e) => {
                    return self.retry_or_dead_letter(
                        delivery,
                        attempt,
                        FaultKind::Handler,
                        e.to_string(),
                    );
                }
            }
        }
        metric::record_consume_lag(&self.queue, envelope.time);
        let event_type = envelope.event_type.clone();
        let ctx = MessageContext::new(
            envelope,
            Arc::clone(&self.queue),
            delivery.routing_key.as_str(),
            attempt,
        )
        .with_redelivered(delivery.redelivered)
        .with_cancellation(self.cancellation.clone());
        let mut tries_left = self.retry.immediate;
        loop {
            let handle_span = telemetry::handle_span(&event_type, attempt);
            let started = Instant::now();
            let result = handler(decoded.clone(), ctx.clone())
                .instrument(handle_span.clone())
                .await;
            metric::record_handler_duration(&self.queue, started.elapsed());
            let (kind, text) = match result {
                Ok(Handled::Done) => break,
                Ok(Handled::Duplicate) => {
                    tracing::debug!("duplicate skipped: the inbox row is there");
                    return Decision::Duplicate;
                }
                Err(Failure::Decode(e)) => {
                    telemetry::record_error(&handle_span, e.kind.as_str(), &e.message);
                    return self.dead_letter(delivery, attempt, e.kind, e.message);
                }
                Err(Failure::Handler(e)) => {
                    let text = e.to_string();
                    telemetry::record_error(&handle_span, FaultKind::Handler.as_str(), &text);
                    if e.is_permanent() {
                        tracing::warn!(error = %text, "handler failed permanently");
                        return self.dead_letter(delivery, attempt, FaultKind::Handler, text);
                    }
                    (FaultKind::Handler, text)
                }
                Err(Failure::Panic(p)) => {
                    let text = format!("handler panicked: {p}");
                    telemetry::record_error(&handle_span, FaultKind::Panic.as_str(), &text);
                    (FaultKind::Panic, text)
                }
            };
            if tries_left > 0 {
                tries_left -= 1;
                tracing::debug!(error = %text, "handler failed, retrying at once");
                continue;
            }
            tracing::warn!(error = %text, kind = %kind, "handler failed");
            return self.retry_or_dead_letter(delivery, attempt, kind, text);
        }
        if let Some(inbox) = &self.inbox {
            if let Err(e) = inbox.mark_processed(&self.queue, ctx.message_id()).await {
                // The handler's work is done; failing now would redo it. Log and ack.
                tracing::error!(error = %e, "could not record the message in the inbox");
            }
        }
        Decision::Ack
    }

    fn retry_or_dead_letter(
        &self,
        delivery: &Delivery,
        attempt: u32,
        kind: FaultKind,
        error: String,
    ) -> Decision {
        let next_attempt = attempt.saturating_add(1);
        match self.retry.delay_for(next_attempt) {
            Some(delay) => Decision::Retry {
                delay,
                next_attempt,
                error,
            },
            None => self.dead_letter(delivery, attempt, kind, error),
        }
    }

    fn dead_letter(
        &self,
        delivery: &Delivery,
        attempt: u32,
        kind: FaultKind,
        message: String,
    ) -> Decision {
        tracing::warn!(queue = %self.queue, kind = %kind, error = %message, "dead-lettering message");
        Decision::DeadLetter(Fault {
            kind,
            message,
            attempts: attempt,
            at: Utc::now(),
            original_exchange: Some(delivery.original_exchange().to_owned()),
            original_routing_key: Some(delivery.original_routing_key().to_owned()),
            original_queue: Some(self.queue.to_string()),
        })
    }
}

/// Rolls a transaction back; a failure only means the database ends it for us.
async fn rollback<T: StoreTransaction>(tx: T) {
    if let Err(e) = tx.rollback().await {
        tracing::debug!(error = %e, "rollback failed; the database ends the transaction");
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}
