//! The defaults of consumers that do not set their own: dead-letter exchange, limits, queue
//! type and delivery limit; and how often a running consumer samples its queue.

use std::time::Duration;

use ferry_core::{Limits, QueueType};

use super::RabbitMqOptions;

/// How often a running consumer samples its queue's depth and consumers unless told
/// otherwise ([`RabbitMqOptions::with_queue_sample_interval`]).
pub const DEFAULT_QUEUE_SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// How often a consumer waiting for deliveries checks that it is not stalled unless told
/// otherwise ([`RabbitMqOptions::with_consumer_stall_check`]).
pub const DEFAULT_CONSUMER_STALL_CHECK: Duration = Duration::from_secs(5);

impl RabbitMqOptions {
    /// Sets the dead-letter exchange for consumers that do not name their own with
    /// `.dead_letter(..)`.
    pub fn with_dead_letter_exchange(mut self, exchange: impl Into<String>) -> Self {
        self.dead_letter_exchange = Some(exchange.into());
        self
    }

    /// Sets the body size and header count limits of consumers that do not set their own
    /// with `.limits(..)` (without this, [`Limits::default`]: 4 MiB, 256 headers).
    pub fn with_consumer_limits(mut self, limits: Limits) -> Self {
        self.consumer_limits = Some(limits);
        self
    }

    /// Sets the queue type of consumers that do not choose their own with `.queue_type(..)` or
    /// `.quorum()` (default classic). With quorum, a consumer's retry queues and a dead-letter
    /// consumer's queue are quorum queues too (`docs/wire-format.md`, retries).
    ///
    /// ```
    /// use ferry_core::QueueType;
    /// use ferry_rabbitmq::RabbitMqOptions;
    /// let options = RabbitMqOptions::default().with_queue_type(QueueType::Quorum);
    /// assert_eq!(options.queue_type(), QueueType::Quorum);
    /// ```
    pub fn with_queue_type(mut self, queue_type: QueueType) -> Self {
        self.queue_type = queue_type;
        self
    }

    /// Sets the delivery limit (`x-delivery-limit`) of quorum consumer queues that do not set
    /// their own with `.delivery_limit(..)` (default none); see
    /// [`ConsumerBuilder::delivery_limit`](ferry_core::ConsumerBuilder::delivery_limit).
    pub fn with_delivery_limit(mut self, limit: Option<u32>) -> Self {
        self.delivery_limit = limit;
        self
    }

    /// Sets how often each running consumer samples its queue into the
    /// `ferry_queue_messages_ready{queue}` and `ferry_queue_consumers{queue}` gauges (a passive
    /// queue declare on a short-lived channel); `None` turns sampling off. Default
    /// [`DEFAULT_QUEUE_SAMPLE_INTERVAL`] (5 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// use ferry_rabbitmq::RabbitMqOptions;
    /// let options = RabbitMqOptions::default().with_queue_sample_interval(Some(Duration::from_secs(1)));
    /// assert_eq!(options.queue_sample_interval(), Some(Duration::from_secs(1)));
    /// let off = RabbitMqOptions::default().with_queue_sample_interval(None);
    /// assert_eq!(off.queue_sample_interval(), None);
    /// ```
    pub fn with_queue_sample_interval(mut self, interval: Option<Duration>) -> Self {
        self.queue_sample_interval = interval;
        self
    }

    /// Sets how often a consumer that is waiting for deliveries, with none of its own left
    /// unsettled, checks its queue (a passive queue declare); `None` turns the check off.
    /// Default [`DEFAULT_CONSUMER_STALL_CHECK`] (5 s). Finding ready messages at two checks in
    /// a row, the consumer subscribes again on a new channel: RabbitMQ 3.10 can leave a
    /// consumer of a quorum queue registered but fed nothing after the queue's leader died
    /// (README, "Scaling out"). A single active consumer is never checked (waiting its turn,
    /// it rightly gets nothing).
    ///
    /// ```
    /// use std::time::Duration;
    /// use ferry_rabbitmq::RabbitMqOptions;
    /// let options = RabbitMqOptions::default().with_consumer_stall_check(Some(Duration::from_secs(2)));
    /// assert_eq!(options.consumer_stall_check(), Some(Duration::from_secs(2)));
    /// assert_eq!(RabbitMqOptions::default().with_consumer_stall_check(None).consumer_stall_check(), None);
    /// ```
    pub fn with_consumer_stall_check(mut self, every: Option<Duration>) -> Self {
        self.consumer_stall_check = every;
        self
    }

    /// The default dead-letter exchange, if any.
    pub fn dead_letter_exchange(&self) -> Option<&str> {
        self.dead_letter_exchange.as_deref()
    }

    /// The limits of consumers that do not set their own, if set.
    pub fn consumer_limits(&self) -> Option<Limits> {
        self.consumer_limits
    }

    /// The queue type of consumers that do not choose their own.
    pub fn queue_type(&self) -> QueueType {
        self.queue_type
    }

    /// The delivery limit of quorum consumer queues that do not set their own, if set.
    pub fn delivery_limit(&self) -> Option<u32> {
        self.delivery_limit
    }

    /// How often consumers sample their queue (`None`: never).
    pub fn queue_sample_interval(&self) -> Option<Duration> {
        self.queue_sample_interval
    }

    /// How often a waiting consumer checks that it is not stalled (`None`: never).
    pub fn consumer_stall_check(&self) -> Option<Duration> {
        self.consumer_stall_check
    }
}
