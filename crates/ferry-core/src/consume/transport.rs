//! What a transport implements for the consume loop: a subscription, settling, republishing.

use std::time::Duration;

use async_trait::async_trait;

use crate::{Delivery, PublishError, WireMessage};

/// One delivery as a transport hands it to the loop: the message and how to settle it.
pub struct Incoming {
    /// The delivery.
    pub delivery: Delivery,
    /// Settles it with the broker (or bus).
    pub settle: Box<dyn Settle>,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("delivery", &self.delivery)
            .finish_non_exhaustive()
    }
}

/// Settles one delivery. A delivery dropped without being settled stays unacked: the broker
/// (or bus) delivers it again, so abandoned work is never lost. Under auto-ack the loop
/// settles nothing.
///
/// Failures are the transport's to log: an ack that fails leaves the message with the broker,
/// which redelivers it.
#[async_trait]
pub trait Settle: Send + Sync + 'static {
    /// Acks: the message is done.
    async fn ack(self: Box<Self>);
    /// Rejects: the message goes back on its queue with `requeue`, else it is dropped.
    async fn reject(self: Box<Self>, requeue: bool);
}

/// A stream of deliveries for one consumer. A transport that reconnects resumes inside it.
#[async_trait]
pub trait Subscription: Send + 'static {
    /// The next delivery; `None` once the subscription has ended for good (the transport was
    /// closed). Must be cancel-safe: the loop drops it when shutdown begins.
    async fn next(&mut self) -> Option<Incoming>;

    /// Asks the broker to send no more, and returns the deliveries already on their way (the
    /// loop requeues them, or handles them under auto-ack).
    async fn stop(&mut self) -> Vec<Incoming>;

    /// Releases the subscription once in-flight work has settled or been abandoned; what is
    /// still unacked then goes back to the queue.
    async fn close(self: Box<Self>);
}

/// Where a copy of a delivery is republished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination<'a> {
    /// An exchange (the dead-letter exchange), with a routing key.
    Exchange {
        /// The exchange.
        exchange: &'a str,
        /// The routing key.
        routing_key: &'a str,
    },
    /// The retry queue of consumer `queue` for `delay`: the copy comes back to `queue` once
    /// the delay has passed.
    Retry {
        /// The consumer's queue.
        queue: &'a str,
        /// How long the copy waits.
        delay: Duration,
    },
}

/// A confirmed republish: `Ok` only once the broker (or bus) has the copy.
#[async_trait]
pub trait Republish: Send + Sync + 'static {
    /// Publishes `copy` to `to`.
    async fn republish(&self, to: Destination<'_>, copy: WireMessage) -> Result<(), PublishError>;
}
