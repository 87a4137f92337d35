//! The in-memory bus as a transport of the core consume loop ([`crate::consume`]): a queue's
//! channel as the subscription, settling on the queue, a timer as the retry queue.

use std::time::Duration;

use async_trait::async_trait;

use super::bus::{MemoryBus, MemoryError, QueueReceiver};
use crate::{
    ConsumerHandle, Delivery, PublishError, WireMessage,
    consume::{
        ConsumerPlan, Destination, Incoming, Republish, Settle, Subscribe, Subscription, Topology,
    },
};

impl MemoryBus {
    /// Declares what the plan asks for and runs it.
    pub(super) fn start(&self, plan: ConsumerPlan) -> Result<ConsumerHandle, MemoryError> {
        let subscription = self.subscription(plan.subscribe())?;
        Ok(plan.start(Box::new(subscription), std::sync::Arc::new(self.clone())))
    }

    fn subscription(&self, subscribe: &Subscribe) -> Result<QueueSubscription, MemoryError> {
        let queue = subscribe.queue.as_str();
        self.declare_queue(queue)?;
        match &subscribe.topology {
            Topology::Events { bindings, .. } => {
                for pattern in bindings {
                    self.bind(self.exchange(), pattern, queue)?;
                }
            }
            Topology::DeadLetters { exchange } => self.bind(exchange, "#", queue)?,
        }
        Ok(QueueSubscription {
            bus: self.clone(),
            queue: queue.to_owned(),
            receiver: self.receiver(queue)?,
            auto_ack: subscribe.auto_ack,
        })
    }
}

/// A consumer's view of its queue. Deliveries wait on the queue until the loop takes them, so
/// nothing is on its way when the loop stops.
struct QueueSubscription {
    bus: MemoryBus,
    queue: String,
    receiver: QueueReceiver,
    auto_ack: bool,
}

#[async_trait]
impl Subscription for QueueSubscription {
    async fn next(&mut self) -> Option<Incoming> {
        let delivery = self.receiver.lock().await.recv().await?;
        let unacked = (!self.auto_ack).then(|| (self.bus.clone(), self.queue.clone()));
        let settle = Box::new(Unacked {
            delivery: unacked.as_ref().map(|_| delivery.clone()),
            queue: unacked,
        });
        Some(Incoming { delivery, settle })
    }

    async fn stop(&mut self) -> Vec<Incoming> {
        Vec::new()
    }

    async fn close(self: Box<Self>) {}
}

/// A delivery not yet settled: rejected with requeue, or dropped unsettled (its task aborted),
/// it goes back on its queue, as the broker redelivers an unacked message.
struct Unacked {
    queue: Option<(MemoryBus, String)>,
    delivery: Option<Delivery>,
}

impl Unacked {
    fn requeue(&mut self) {
        if let (Some((bus, queue)), Some(delivery)) = (self.queue.take(), self.delivery.take()) {
            if !bus.requeue(&queue, delivery) {
                tracing::error!(queue = %queue, "requeued message lost: the queue is gone");
            }
        }
    }
}

impl Drop for Unacked {
    fn drop(&mut self) {
        self.requeue();
    }
}

#[async_trait]
impl Settle for Unacked {
    async fn ack(mut self: Box<Self>) {
        self.delivery = None;
    }

    async fn reject(mut self: Box<Self>, requeue: bool) {
        if requeue {
            self.requeue();
        } else {
            self.delivery = None;
        }
    }
}

#[async_trait]
impl Republish for MemoryBus {
    async fn republish(&self, to: Destination<'_>, copy: WireMessage) -> Result<(), PublishError> {
        match to {
            Destination::Exchange {
                exchange,
                routing_key,
            } => {
                if self.route(exchange, routing_key, &copy) == 0 {
                    return Err(PublishError::Unroutable {
                        exchange: exchange.to_owned(),
                        routing_key: routing_key.to_owned(),
                    });
                }
                Ok(())
            }
            Destination::Retry { queue, delay } => {
                if !self.has_queue(queue) {
                    return Err(PublishError::Unroutable {
                        exchange: String::new(),
                        routing_key: queue.to_owned(),
                    });
                }
                let bus = self.clone();
                let queue = queue.to_owned();
                tokio::spawn(retry_after(bus, queue, delay, copy));
                Ok(())
            }
        }
    }
}

/// The retry queue of the in-memory bus: the copy waits in a task, then goes back to its
/// queue through the default exchange. It does not survive the process.
async fn retry_after(bus: MemoryBus, queue: String, delay: Duration, message: WireMessage) {
    tokio::time::sleep(delay).await;
    if bus.route("", &queue, &message) == 0 {
        tracing::error!(queue = %queue, "retry copy lost: the queue is gone");
    }
}
