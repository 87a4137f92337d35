//! Noticing a consumer the broker has stopped feeding: registered, nothing of its own left
//! unsettled, yet nothing delivered while its queue holds ready messages.
//!
//! RabbitMQ 3.10's quorum queues can do that to a consumer that subscribes while the queue is
//! still electing a new leader after its node died: `basic.consume` succeeds, but the channel's
//! queue client keeps addressing the dead node, so no delivery comes until that node returns
//! (the cluster suite's case c caught it once in seven runs: 100 unacked at the broker, 1,461
//! ready, nothing delivered for 60 s). The remedy is the consumer's own: subscribe again on a
//! new channel, whose queue client starts afresh.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use crate::RabbitMq;

/// Checks in a row that must find the queue holding ready messages before the consumer counts
/// as stalled: a single check could catch messages the broker is about to deliver.
const CHECKS: u32 = 2;

/// The deliveries of one session handed to the consumer and not settled yet.
#[derive(Clone, Default)]
pub(crate) struct Unsettled(Arc<AtomicUsize>);

impl Unsettled {
    /// Counts a delivery; the guard uncounts it when dropped (after its ack or nack).
    pub fn track(&self) -> UnsettledGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        UnsettledGuard(Arc::clone(&self.0))
    }

    fn none(&self) -> bool {
        self.0.load(Ordering::Acquire) == 0
    }
}

/// One delivery counted in [`Unsettled`] until dropped.
pub(crate) struct UnsettledGuard(Arc<AtomicUsize>);

impl Drop for UnsettledGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Resolves, with the number of ready messages, once the consumer of `queue` has had nothing
/// delivered and nothing unsettled for [`CHECKS`] checks `every` apart while the queue held
/// ready messages at each; never with `every` `None`. Await it only while waiting for a
/// delivery: a delivery starts the count again.
pub(crate) async fn stalled(
    bus: &RabbitMq,
    queue: &str,
    every: Option<Duration>,
    unsettled: &Unsettled,
) -> u32 {
    let Some(every) = every.filter(|every| !every.is_zero()) else {
        return std::future::pending().await;
    };
    let mut seen = 0;
    loop {
        tokio::time::sleep(every).await;
        // Deliveries of its own still being handled: with the prefetch used up, the broker
        // rightly sends nothing more.
        if !unsettled.none() {
            seen = 0;
            continue;
        }
        match bus.queue_counts(queue).await {
            Ok((ready, _)) if ready > 0 => {
                seen += 1;
                if seen >= CHECKS {
                    return ready;
                }
            }
            Ok(_) => seen = 0,
            Err(e) => {
                tracing::debug!(queue, error = %e, "could not check the queue for a stalled consumer");
                seen = 0;
            }
        }
    }
}
