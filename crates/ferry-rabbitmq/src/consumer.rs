//! Event consumers: every delivery goes through the core [`Pipeline`](ferry_core::Pipeline);
//! the consumer only carries out its [`Decision`].
//!
//! - `Ack` / `Duplicate`: ack.
//! - `Retry`: the copy (`ferry-attempt` raised) is published, confirmed, to the default
//!   exchange with routing key `<queue>.retry.<delay_ms>`; that retry queue (durable,
//!   `x-message-ttl`, dead-lettering back to the queue) is declared when the consumer starts
//!   and again if it disappears. Then the original is acked.
//! - `DeadLetter`: the copy with the fault headers is published, confirmed and `mandatory`,
//!   to the dead-letter exchange with the original routing key. Then the original is acked.
//! - If the retry or dead-letter copy cannot be published (broker down, no queue bound to
//!   the dead-letter exchange), the original is not acked: it is requeued after a short pause,
//!   so nothing is lost.
//!
//! A consumer needs a dead-letter exchange (its own `.dead_letter(..)`, or
//! [`RabbitMqOptions::with_dead_letter_exchange`](crate::RabbitMqOptions::with_dead_letter_exchange)):
//! without one a failed message would have to be dropped, so starting such a consumer is an
//! error. Auto-ack consumers are the exception: they are at-most-once by choice, and a dead
//! letter is dropped with an error log when no dead-letter exchange is set.

use std::{panic::AssertUnwindSafe, sync::Arc, time::Duration};

use async_trait::async_trait;
use futures::FutureExt;
use lapin::message::Delivery as AmqpDelivery;
use tokio_util::sync::CancellationToken;

use ferry_core::{
    ConsumerHandle, ConsumerSpec, Decision, Delivery, OutgoingMessage, PublishError, RetryPolicy,
};

use crate::{
    ExchangeKind, RabbitMq, RabbitMqError,
    runner::{self, Session, Worker},
    topology::{self, QueueDecl},
    wire,
};

pub(crate) struct EventWorker {
    bus: RabbitMq,
    spec: ConsumerSpec,
    dead_letter_exchange: Option<String>,
    retry_delays: Vec<Duration>,
    concurrency: usize,
}

/// Starts an event consumer.
pub(crate) async fn start(
    bus: &RabbitMq,
    mut spec: ConsumerSpec,
) -> Result<ConsumerHandle, RabbitMqError> {
    spec.validate().map_err(RabbitMqError::InvalidConsumer)?;
    let dead_letter_exchange = spec
        .dead_letter_exchange
        .clone()
        .or_else(|| bus.options().dead_letter_exchange().map(str::to_owned));
    if dead_letter_exchange.is_none() && !spec.auto_ack {
        return Err(RabbitMqError::InvalidConsumer(format!(
            "consumer `{}` has no dead-letter exchange, so a message that fails for good would be \
             lost; add `.dead_letter(\"myapp.dlx\")` to the consumer, or set \
             RabbitMqOptions::with_dead_letter_exchange",
            spec.queue
        )));
    }
    if !spec.pipeline.has_limits_set() {
        if let Some(limits) = bus.options().consumer_limits() {
            spec.pipeline.set_limits(limits);
        }
    }
    let cancel = CancellationToken::new();
    spec.pipeline.set_cancellation(cancel.clone());
    let retry_delays = distinct_delays(spec.pipeline.retry_policy());
    let concurrency = spec.concurrency.min(usize::from(spec.prefetch)).max(1);
    let worker = Arc::new(EventWorker {
        bus: bus.clone(),
        spec,
        dead_letter_exchange,
        retry_delays,
        concurrency,
    });
    runner::start(worker, cancel).await
}

/// The distinct delays a policy can ask for (the retry queues to declare).
pub(crate) fn distinct_delays(policy: &RetryPolicy) -> Vec<Duration> {
    let mut delays: Vec<Duration> = Vec::new();
    for attempt in 2..=policy.max_retry_attempts.saturating_add(1) {
        let Some(delay) = policy.delay_for(attempt) else {
            break;
        };
        if !delays.contains(&delay) {
            delays.push(delay);
        }
        if delay >= policy.max_delay || delays.len() >= 64 {
            break;
        }
    }
    delays
}

#[async_trait]
impl Worker for EventWorker {
    fn bus(&self) -> &RabbitMq {
        &self.bus
    }

    fn queue(&self) -> &str {
        &self.spec.queue
    }

    fn prefetch(&self) -> u16 {
        self.spec.prefetch
    }

    fn concurrency(&self) -> usize {
        self.concurrency
    }

    fn no_ack(&self) -> bool {
        self.spec.auto_ack
    }

    async fn declare(&self, session: &Session) -> Result<(), RabbitMqError> {
        let options = self.bus.options();
        let mode = options.topology();
        let timeout = options.operation_timeout();
        let channel = &session.channel;
        let queue = self.spec.queue.as_str();
        topology::declare_exchange(
            channel,
            options.exchange(),
            options.exchange_kind(),
            mode,
            timeout,
        )
        .await?;
        if let Some(dlx) = &self.dead_letter_exchange {
            topology::declare_exchange(channel, dlx, ExchangeKind::Topic, mode, timeout).await?;
        }
        topology::declare_queue(
            channel,
            &QueueDecl::consumer(queue, self.spec.queue_type),
            mode,
            timeout,
        )
        .await?;
        for pattern in &self.spec.bindings {
            topology::bind_queue(channel, queue, options.exchange(), pattern, mode, timeout)
                .await?;
        }
        if !self.spec.auto_ack {
            for delay in &self.retry_delays {
                let decl = QueueDecl::retry(queue, *delay);
                topology::declare_queue(channel, &decl, mode, timeout).await?;
                session.mark_declared(&decl.name, true);
            }
        }
        Ok(())
    }

    async fn handle(&self, amqp: AmqpDelivery, session: Arc<Session>, cancel: CancellationToken) {
        let delivery = Delivery {
            message: wire::from_amqp(&amqp.properties, &amqp.data),
            exchange: amqp.exchange.as_str().to_owned(),
            routing_key: amqp.routing_key.as_str().to_owned(),
            redelivered: amqp.redelivered,
        };
        let decision = match AssertUnwindSafe(self.spec.pipeline.process(&delivery))
            .catch_unwind()
            .await
        {
            Ok(decision) => decision,
            Err(_) => {
                tracing::error!(queue = %self.spec.queue, "the consumer pipeline panicked; requeueing the message");
                if !self.spec.auto_ack {
                    runner::requeue_after_pause(&amqp.acker, &cancel).await;
                }
                return;
            }
        };
        if self.spec.auto_ack {
            self.settle_auto_ack(&delivery, decision).await;
            return;
        }
        match decision {
            Decision::Ack | Decision::Duplicate => runner::ack(&amqp.acker).await,
            Decision::Retry {
                delay,
                next_attempt,
                error,
            } => {
                tracing::debug!(queue = %self.spec.queue, delay_ms = delay.as_millis() as u64, next_attempt, error = %error, "scheduling a retry");
                match self
                    .publish_retry(&delivery, delay, next_attempt, &session)
                    .await
                {
                    Ok(()) => runner::ack(&amqp.acker).await,
                    Err(e) => {
                        tracing::error!(queue = %self.spec.queue, error = %e, "could not publish the retry copy; requeueing the message");
                        runner::requeue_after_pause(&amqp.acker, &cancel).await;
                    }
                }
            }
            Decision::DeadLetter(fault) => {
                match self.publish_dead_letter(&delivery, &fault).await {
                    Ok(()) => runner::ack(&amqp.acker).await,
                    Err(e) => {
                        let hint = match &e {
                            PublishError::Unroutable { exchange, .. } => format!(
                                " (no queue is bound to dead-letter exchange `{exchange}`: start a dead-letter consumer or bind a queue with `#`)"
                            ),
                            _ => String::new(),
                        };
                        tracing::error!(queue = %self.spec.queue, error = %e, "could not publish the dead letter{hint}; requeueing the message");
                        runner::requeue_after_pause(&amqp.acker, &cancel).await;
                    }
                }
            }
        }
    }
}

impl EventWorker {
    async fn publish_retry(
        &self,
        delivery: &Delivery,
        delay: Duration,
        next_attempt: u32,
        session: &Session,
    ) -> Result<(), PublishError> {
        let queue = self.spec.queue.as_str();
        let decl = QueueDecl::retry(queue, delay);
        if !session.is_declared(&decl.name) {
            self.declare_retry_queue(&decl).await?;
            session.mark_declared(&decl.name, true);
        }
        let message = OutgoingMessage {
            exchange: Some(String::new()),
            routing_key: decl.name.clone(),
            message: delivery.retry_copy(next_attempt),
        };
        let result = self.bus.publish_one(message).await;
        if matches!(result, Err(PublishError::Unroutable { .. })) {
            // Someone deleted the retry queue: declare it again next time.
            session.mark_declared(&decl.name, false);
        }
        result
    }

    async fn declare_retry_queue(&self, decl: &QueueDecl) -> Result<(), PublishError> {
        let options = self.bus.options();
        let Some(link) = self.bus.connection().current() else {
            return Err(PublishError::Unavailable("the connection is down".into()));
        };
        let timeout = options.operation_timeout();
        let channel = match tokio::time::timeout(timeout, link.conn.create_channel()).await {
            Ok(Ok(channel)) => channel,
            Ok(Err(e)) => {
                return Err(PublishError::Unavailable(
                    ferry_core::publisher::Reason::caused_by("cannot open a channel", e),
                ));
            }
            Err(_) => {
                return Err(PublishError::Unavailable(
                    "opening a channel timed out".into(),
                ));
            }
        };
        let result = topology::declare_queue(&channel, decl, options.topology(), timeout).await;
        runner::close_channel(&channel).await;
        result.map(|_| ()).map_err(|e| match e {
            e if e.is_unavailable() => PublishError::Unavailable(
                ferry_core::publisher::Reason::caused_by("cannot declare a retry queue", e),
            ),
            e => PublishError::Other(ferry_core::publisher::Reason::caused_by(
                "cannot declare a retry queue",
                e,
            )),
        })
    }

    async fn publish_dead_letter(
        &self,
        delivery: &Delivery,
        fault: &ferry_core::Fault,
    ) -> Result<(), PublishError> {
        let Some(dlx) = &self.dead_letter_exchange else {
            return Err(PublishError::Other("no dead-letter exchange".into()));
        };
        let routing_key = fault
            .original_routing_key
            .clone()
            .unwrap_or_else(|| delivery.routing_key.clone());
        let message = OutgoingMessage {
            exchange: Some(dlx.clone()),
            routing_key,
            message: delivery.dead_letter_copy(fault),
        };
        self.bus.publish_one(message).await
    }

    async fn settle_auto_ack(&self, delivery: &Delivery, decision: Decision) {
        match decision {
            Decision::DeadLetter(fault) => {
                if self.dead_letter_exchange.is_none() {
                    tracing::error!(queue = %self.spec.queue, fault = %fault, "auto-ack consumer without a dead-letter exchange: the message is dropped");
                } else if let Err(e) = self.publish_dead_letter(delivery, &fault).await {
                    tracing::error!(queue = %self.spec.queue, error = %e, fault = %fault, "auto-ack consumer could not dead-letter the message: it is dropped");
                }
            }
            Decision::Retry { error, .. } => {
                tracing::error!(queue = %self.spec.queue, error = %error, "auto-ack consumer cannot retry: the message is dropped");
            }
            Decision::Ack | Decision::Duplicate => {}
        }
    }
}
