//! The harness's transport: the in-memory bus or RabbitMQ, with every consumer it starts
//! observed and every message published through it recorded. Your wiring code gets it where
//! production passes its `RabbitMq`, and builds consumers on it with
//! `ConsumerBuilder::new(&transport, queue)` (or [`TestTransport::consumer`]).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ferry_core::{
    ConsumerBuilder, ConsumerHandle, ConsumerHost, ConsumerSpec, DeadLetterConsumerBuilder,
    DeadLetterSpec, PublishBatch, PublishError, PublishTransport, RetryPolicy,
    memory::{MemoryBus, MemoryError},
    telemetry::{Health, HealthSource},
};

use crate::ledger::Ledger;

/// Why the harness's transport could not start a consumer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The in-memory bus refused it.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// RabbitMQ refused it.
    #[cfg(feature = "rabbitmq")]
    #[error(transparent)]
    RabbitMq(#[from] ferry_rabbitmq::RabbitMqError),
}

#[derive(Clone)]
pub(crate) enum Backend {
    Memory(MemoryBus),
    #[cfg(feature = "rabbitmq")]
    RabbitMq(ferry_rabbitmq::RabbitMq),
}

/// What a RabbitMQ harness declared, to delete at the end.
#[derive(Debug, Default)]
pub(crate) struct Declared {
    /// Consumer queues (broker names) and their retry policies.
    pub(crate) consumer_queues: Vec<(String, RetryPolicy)>,
    /// Dead-letter queues (broker names).
    pub(crate) dead_letter_queues: Vec<String>,
    /// Exchanges (broker names), besides the events exchange.
    pub(crate) exchanges: Vec<String>,
}

pub(crate) struct Inner {
    pub(crate) backend: Backend,
    pub(crate) ledger: Arc<Ledger>,
    /// Appended to every queue and exchange name on a shared broker; empty on memory.
    pub(crate) suffix: String,
    pub(crate) declared: Mutex<Declared>,
}

/// The transport a [`TestHarness`](crate::TestHarness) hosts your consumers on: a
/// [`ConsumerHost`] and a [`PublishTransport`] (so a `Publisher`) like `MemoryBus` and
/// `RabbitMq`. Cheap to clone.
///
/// Each consumer started on it is observed (see [`ferry_core::pipeline::Observer`]); each
/// message published through it (directly, or by an outbox relay given it as publisher) is
/// recorded. On RabbitMQ it appends the harness's random suffix to the queue and exchange
/// names your code uses, so tests sharing a broker never meet; your handlers, the inbox and
/// the records keep your names.
#[derive(Clone)]
pub struct TestTransport {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for TestTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match &self.inner.backend {
            Backend::Memory(_) => "memory",
            #[cfg(feature = "rabbitmq")]
            Backend::RabbitMq(_) => "rabbitmq",
        };
        f.debug_struct("TestTransport")
            .field("backend", &backend)
            .field("suffix", &self.inner.suffix)
            .finish_non_exhaustive()
    }
}

impl TestTransport {
    /// Builds a consumer of `queue` on this transport.
    pub fn consumer(&self, queue: impl Into<String>) -> ConsumerBuilder<'_, TestTransport> {
        ConsumerBuilder::new(self, queue)
    }

    /// Builds a dead-letter consumer of `queue` on this transport.
    pub fn dead_letter_consumer(
        &self,
        queue: impl Into<String>,
    ) -> DeadLetterConsumerBuilder<'_, TestTransport> {
        DeadLetterConsumerBuilder::new(self, queue)
    }

    /// The in-memory bus, when the harness runs on memory.
    pub fn memory_bus(&self) -> Option<&MemoryBus> {
        match &self.inner.backend {
            Backend::Memory(bus) => Some(bus),
            #[cfg(feature = "rabbitmq")]
            Backend::RabbitMq(_) => None,
        }
    }

    /// The RabbitMQ transport, when the harness runs on RabbitMQ.
    #[cfg(feature = "rabbitmq")]
    pub fn rabbitmq(&self) -> Option<&ferry_rabbitmq::RabbitMq> {
        match &self.inner.backend {
            Backend::RabbitMq(bus) => Some(bus),
            Backend::Memory(_) => None,
        }
    }

    /// The name a queue or exchange of yours has on the broker (yours plus the harness's
    /// suffix on RabbitMQ; yours on memory).
    pub fn broker_name(&self, name: &str) -> String {
        if self.inner.suffix.is_empty() {
            name.to_owned()
        } else {
            format!("{name}.{}", self.inner.suffix)
        }
    }

    fn declared(&self) -> std::sync::MutexGuard<'_, Declared> {
        self.inner
            .declared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl ConsumerHost for TestTransport {
    type Error = TransportError;

    async fn start_consumer(
        &self,
        mut spec: ConsumerSpec,
    ) -> Result<ConsumerHandle, TransportError> {
        self.inner
            .ledger
            .consumer_started(&spec.queue, &spec.bindings);
        spec.pipeline
            .add_observer(Arc::clone(&self.inner.ledger) as Arc<_>);
        spec.queue = self.broker_name(&spec.queue);
        spec.dead_letter_exchange = spec
            .dead_letter_exchange
            .map(|exchange| self.broker_name(&exchange));
        {
            let mut declared = self.declared();
            declared
                .consumer_queues
                .push((spec.queue.clone(), *spec.pipeline.retry_policy()));
            if let Some(exchange) = &spec.dead_letter_exchange {
                declared.exchanges.push(exchange.clone());
            }
        }
        match &self.inner.backend {
            Backend::Memory(bus) => Ok(bus.start_consumer(spec).await?),
            #[cfg(feature = "rabbitmq")]
            Backend::RabbitMq(bus) => Ok(bus.start_consumer(spec).await?),
        }
    }

    async fn start_dead_letter_consumer(
        &self,
        mut spec: DeadLetterSpec,
    ) -> Result<ConsumerHandle, TransportError> {
        spec.queue = self.broker_name(&spec.queue);
        spec.exchange = self.broker_name(&spec.exchange);
        {
            let mut declared = self.declared();
            declared.dead_letter_queues.push(spec.queue.clone());
            declared.exchanges.push(spec.exchange.clone());
        }
        match &self.inner.backend {
            Backend::Memory(bus) => Ok(bus.start_dead_letter_consumer(spec).await?),
            #[cfg(feature = "rabbitmq")]
            Backend::RabbitMq(bus) => Ok(bus.start_dead_letter_consumer(spec).await?),
        }
    }
}

#[async_trait]
impl PublishTransport for TestTransport {
    fn source(&self) -> Option<&str> {
        match &self.inner.backend {
            Backend::Memory(bus) => PublishTransport::source(bus),
            #[cfg(feature = "rabbitmq")]
            Backend::RabbitMq(bus) => PublishTransport::source(bus),
        }
    }

    fn exchange(&self) -> Option<&str> {
        match &self.inner.backend {
            Backend::Memory(bus) => PublishTransport::exchange(bus),
            #[cfg(feature = "rabbitmq")]
            Backend::RabbitMq(bus) => PublishTransport::exchange(bus),
        }
    }

    async fn send(&self, batch: PublishBatch) -> Vec<Result<(), PublishError>> {
        let sent: Vec<_> = batch
            .messages()
            .iter()
            .map(|m| (m.exchange.clone(), m.routing_key.clone(), m.message.clone()))
            .collect();
        let results = match &self.inner.backend {
            Backend::Memory(bus) => bus.send(batch).await,
            #[cfg(feature = "rabbitmq")]
            Backend::RabbitMq(bus) => bus.send(batch).await,
        };
        for ((exchange, routing_key, message), result) in sent.iter().zip(&results) {
            if result.is_ok() {
                self.inner
                    .ledger
                    .published(exchange.as_deref(), routing_key, message);
            }
        }
        results
    }
}

impl HealthSource for TestTransport {
    fn report_health(&self, health: &mut Health) {
        match &self.inner.backend {
            Backend::Memory(bus) => bus.report_health(health),
            #[cfg(feature = "rabbitmq")]
            Backend::RabbitMq(bus) => bus.report_health(health),
        }
    }
}
