//! Consumer configuration shared by every transport: `bus.consumer(queue)` returns a
//! [`ConsumerBuilder`]; the transport starts it from the [`ConsumerSpec`] it builds.
//!
//! This module holds the spec, the queue type and the [`ConsumerHost`] trait transports
//! implement; the builder, the running consumer's handle and the dead-letter consumer are in
//! its submodules, re-exported here.

use async_trait::async_trait;

use crate::Pipeline;

mod builder;
mod dead_letter;
mod handle;

pub use builder::ConsumerBuilder;
pub(crate) use dead_letter::DeadLetterFn;
pub use dead_letter::{DeadLetterConsumerBuilder, DeadLetterSpec};
pub use handle::ConsumerHandle;

/// The kind of queue a consumer declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    /// A classic queue (the default).
    #[default]
    Classic,
    /// A quorum queue (replicated; RabbitMQ 3.8+).
    Quorum,
}

impl QueueType {
    /// The name RabbitMQ uses (`x-queue-type`): `classic` or `quorum`.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        }
    }
}

impl std::fmt::Display for QueueType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for QueueType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "classic" => Ok(QueueType::Classic),
            "quorum" => Ok(QueueType::Quorum),
            other => Err(format!(
                "unknown queue type `{other}`: expected `classic` or `quorum`"
            )),
        }
    }
}

/// Everything a transport needs to start a consumer.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// The queue to consume (declared durable unless the transport is passive).
    pub queue: String,
    /// Binding patterns on the events exchange.
    pub bindings: Vec<String>,
    /// Unacked deliveries the broker may send at once.
    pub prefetch: u16,
    /// Handlers running at once (at most `prefetch`).
    pub concurrency: usize,
    /// The dead-letter exchange failed messages go to.
    pub dead_letter_exchange: Option<String>,
    /// Classic or quorum; `None` takes the transport's default.
    pub queue_type: Option<QueueType>,
    /// How many times the broker may deliver a message before it dead-letters it itself
    /// (`x-delivery-limit`, quorum queues only); `None` takes the transport's default.
    pub delivery_limit: Option<u32>,
    /// Whether the queue has a single active consumer (`x-single-active-consumer`): of many
    /// consumers of the queue (instances of the application), one at a time receives.
    pub single_active_consumer: bool,
    /// Consume the queue as this many partitions, each taking a share of the partition keys
    /// (see [`ConsumerBuilder::partitions`]); `None`: one queue.
    pub partitions: Option<u16>,
    /// Ack on delivery (at-most-once; retries off). Off by default.
    pub auto_ack: bool,
    /// The pipeline: handlers, retry policy, inbox and limits.
    pub pipeline: Pipeline,
    /// Event types registered twice (a configuration error the transport reports on start).
    pub duplicate_handlers: Vec<String>,
    /// Whether a retry policy was set with `.retry(..)` (with auto-ack, a configuration
    /// error: an auto-acked message cannot be retried).
    pub retry_set: bool,
}

impl ConsumerSpec {
    /// A spec for `queue` with the defaults: prefetch 10, concurrency 1, retries 3 × exponential
    /// from 1 s, no dead-letter exchange, the transport's queue type, manual ack.
    pub fn new(queue: impl Into<String>) -> Self {
        let queue = queue.into();
        Self {
            pipeline: Pipeline::new(queue.as_str()),
            queue,
            bindings: Vec::new(),
            prefetch: 10,
            concurrency: 1,
            dead_letter_exchange: None,
            queue_type: None,
            delivery_limit: None,
            single_active_consumer: false,
            partitions: None,
            auto_ack: false,
            duplicate_handlers: Vec::new(),
            retry_set: false,
        }
    }

    /// Checks the spec: a handler at least, no event type twice, concurrency above 0. (Whether a
    /// dead-letter exchange is needed is the transport's call: it may have a default.)
    pub fn validate(&self) -> Result<(), String> {
        if self.pipeline.event_types().is_empty() {
            return Err(format!("consumer `{}` has no handler", self.queue));
        }
        if let Some(t) = self.duplicate_handlers.first() {
            return Err(format!(
                "consumer `{}` has two handlers for event type `{t}`",
                self.queue
            ));
        }
        if self.concurrency == 0 {
            return Err(format!("consumer `{}` has concurrency 0", self.queue));
        }
        if self.partitions == Some(0) {
            return Err(format!("consumer `{}` has 0 partitions", self.queue));
        }
        if self.partitions.is_some() && self.concurrency > 1 {
            return Err(format!(
                "consumer `{}` is partitioned and has concurrency {}: each partition is consumed \
                 one message at a time to keep the order of each key; drop `.concurrency(..)` \
                 (the partitions run in parallel)",
                self.queue, self.concurrency
            ));
        }
        if self.auto_ack && self.retry_set {
            return Err(format!(
                "consumer `{}` has both `.auto_ack()` and `.retry(..)`: an auto-acked message is \
                 gone from the broker before its handler runs, so it cannot be retried; drop one",
                self.queue
            ));
        }
        Ok(())
    }
}

/// A transport that can run consumers.
#[async_trait]
pub trait ConsumerHost: Send + Sync {
    /// The transport's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Declares what the spec needs and starts consuming.
    async fn start_consumer(&self, spec: ConsumerSpec) -> Result<ConsumerHandle, Self::Error>;

    /// Starts a dead-letter consumer.
    async fn start_dead_letter_consumer(
        &self,
        spec: DeadLetterSpec,
    ) -> Result<ConsumerHandle, Self::Error>;
}
