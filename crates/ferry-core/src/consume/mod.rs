//! The consume loop every transport runs.
//!
//! A transport provides only what is transport-specific ([`transport`]): a [`Subscription`]
//! (its topology declared, a stream of deliveries, each settled by ack or reject), and a
//! confirmed [`Republish`] to an exchange or to a retry queue. The core owns the rest, the same
//! for the in-memory bus and RabbitMQ (`docs/guarantees.md`, consumer):
//!
//! - the checks of a consumer's configuration ([`ConsumerPlan`]);
//! - the concurrency cap, `min(concurrency, prefetch)` handlers at once;
//! - the processing step: the consumer [`Pipeline`](crate::Pipeline) or a dead-letter callback,
//!   a panic in either being caught (the delivery is requeued after a pause);
//! - acting on the [`Decision`](crate::Decision): ack, republish a retry copy or a dead-letter
//!   copy and then ack, or requeue after a pause when the copy could not be published;
//! - shutdown and drain: stop taking deliveries, requeue those that arrived but did not start,
//!   let in-flight work finish, and past a drain deadline abandon it to redelivery
//!   ([`ConsumerHandle::shutdown_within`](crate::ConsumerHandle::shutdown_within)).

mod plan;
mod run;
mod settle;
mod step;
pub mod transport;

use std::time::Duration;

pub use plan::{ConsumerPlan, InvalidConsumer};
pub use transport::{Destination, Incoming, Republish, Settle, Subscription};

use crate::QueueType;

/// How long a delivery whose processing or republish failed waits before it is requeued (cut
/// short at shutdown), so a failing broker or callback is not hammered.
pub const REQUEUE_PAUSE: Duration = Duration::from_secs(1);

/// What a transport declares and consumes for one consumer.
#[derive(Debug, Clone)]
pub struct Subscribe {
    /// The queue to consume.
    pub queue: String,
    /// What to declare around it.
    pub topology: Topology,
    /// Unacked deliveries the broker may send at once.
    pub prefetch: u16,
    /// Whether deliveries are acked on delivery (the loop then settles nothing).
    pub auto_ack: bool,
}

impl Subscribe {
    /// Whether the queue has a single active consumer (set for each partition of a
    /// partitioned consumer too): its order depends on how the consumer stops.
    pub fn single_active_consumer(&self) -> bool {
        matches!(
            self.topology,
            Topology::Events {
                single_active_consumer: true,
                ..
            }
        )
    }
}

/// The topology of a subscription.
#[derive(Debug, Clone)]
pub enum Topology {
    /// An event consumer: its queue bound to the events exchange, its dead-letter exchange
    /// (a topic exchange) and its retry queues (`<queue>.retry.<delay_ms>`, one per delay).
    Events {
        /// Classic or quorum; `None`: the transport's default.
        queue_type: Option<QueueType>,
        /// The broker's delivery limit; `None`: the transport's default.
        delivery_limit: Option<u32>,
        /// Whether the queue has a single active consumer.
        single_active_consumer: bool,
        /// Set when the queue is one partition of a partitioned consumer: the queue is then
        /// bound to the consumer's partitioning exchange rather than to the events exchange.
        partition: Option<Partition>,
        /// Binding patterns on the events exchange.
        bindings: Vec<String>,
        /// The dead-letter exchange to declare, if any.
        dead_letter_exchange: Option<String>,
        /// The delays of the retry queues to declare (none under auto-ack).
        retry_delays: Vec<Duration>,
    },
    /// A dead-letter queue, bound with `#` to its dead-letter exchange (a topic exchange).
    DeadLetters {
        /// The dead-letter exchange.
        exchange: String,
    },
}

/// One partition of a partitioned consumer ([`ConsumerBuilder::partitions`](crate::ConsumerBuilder::partitions)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// The consumer's own queue name (the partition queues are `<consumer>.p<index>`).
    pub consumer: String,
    /// This partition, from 0.
    pub index: u16,
    /// How many partitions there are.
    pub count: u16,
}

impl Partition {
    /// The queue of partition `index` of `consumer`: `<consumer>.p<index>`.
    pub fn queue_name(consumer: &str, index: u16) -> String {
        format!("{consumer}.p{index}")
    }
}
