//! Acting on a verdict: ack, republish a retry or dead-letter copy then ack, or requeue after
//! a pause; `docs/guarantees.md` (consumer, acknowledgement) is the contract.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{Destination, Incoming, REQUEUE_PAUSE, Republish, Settle, step::Verdict};
use crate::{Decision, Delivery, Fault, PublishError};

/// Settles deliveries for one consumer.
pub(crate) struct Settler {
    pub queue: String,
    pub auto_ack: bool,
    pub dead_letter_exchange: Option<String>,
    pub republish: Arc<dyn Republish>,
    /// Cancelled at shutdown: cuts the requeue pause short.
    pub cancel: CancellationToken,
}

impl Settler {
    pub(crate) async fn settle(&self, incoming: Incoming, verdict: Verdict) {
        let Incoming { delivery, settle } = incoming;
        if self.auto_ack {
            self.settle_auto_ack(&delivery, verdict).await;
            return;
        }
        let queue = self.queue.as_str();
        let decision = match verdict {
            Verdict::Decided(decision) => decision,
            Verdict::Requeue => return self.requeue_after_pause(settle).await,
        };
        match decision {
            Decision::Ack | Decision::Duplicate => settle.ack().await,
            Decision::Retry {
                delay,
                next_attempt,
                error,
            } => {
                tracing::debug!(queue, delay_ms = delay.as_millis() as u64, next_attempt, error = %error, "scheduling a retry");
                let to = Destination::Retry { queue, delay };
                match self
                    .republish
                    .republish(to, delivery.retry_copy(next_attempt))
                    .await
                {
                    Ok(()) => settle.ack().await,
                    Err(e) => {
                        tracing::error!(queue, error = %e, "could not publish the retry copy; requeueing the message");
                        self.requeue_after_pause(settle).await;
                    }
                }
            }
            Decision::DeadLetter(fault) => match self.dead_letter(&delivery, &fault).await {
                Ok(()) => settle.ack().await,
                Err(e) => {
                    let hint = match &e {
                        PublishError::Unroutable { exchange, .. } => format!(
                            " (no queue is bound to dead-letter exchange `{exchange}`: start a dead-letter consumer or bind a queue with `#`)"
                        ),
                        _ => String::new(),
                    };
                    tracing::error!(queue, error = %e, "could not publish the dead letter{hint}; requeueing the message");
                    self.requeue_after_pause(settle).await;
                }
            },
        }
    }

    /// The dead-letter copy, to the dead-letter exchange with the original routing key.
    async fn dead_letter(&self, delivery: &Delivery, fault: &Fault) -> Result<(), PublishError> {
        let Some(exchange) = &self.dead_letter_exchange else {
            return Err(PublishError::Other("no dead-letter exchange".into()));
        };
        let routing_key = fault
            .original_routing_key
            .as_deref()
            .unwrap_or(&delivery.routing_key);
        let to = Destination::Exchange {
            exchange,
            routing_key,
        };
        self.republish
            .republish(to, delivery.dead_letter_copy(fault))
            .await
    }

    /// Under auto-ack the broker has forgotten the message: a dead letter is published best
    /// effort, anything else that did not succeed is dropped with an error log.
    async fn settle_auto_ack(&self, delivery: &Delivery, verdict: Verdict) {
        let queue = self.queue.as_str();
        match verdict {
            Verdict::Decided(Decision::Ack | Decision::Duplicate) => {}
            Verdict::Decided(Decision::DeadLetter(fault)) => {
                if self.dead_letter_exchange.is_none() {
                    tracing::error!(queue, fault = %fault, "auto-ack consumer without a dead-letter exchange: the message is dropped");
                } else if let Err(e) = self.dead_letter(delivery, &fault).await {
                    tracing::error!(queue, error = %e, fault = %fault, "auto-ack consumer could not dead-letter the message: it is dropped");
                }
            }
            Verdict::Decided(Decision::Retry { error, .. }) => {
                tracing::error!(queue, error = %error, "auto-ack consumer cannot retry: the message is dropped");
            }
            Verdict::Requeue => {
                tracing::error!(
                    queue,
                    "auto-ack consumer cannot requeue: the message is dropped"
                );
            }
        }
    }

    /// Waits a moment (less at shutdown), then requeues: nothing is lost, and a failing broker
    /// or callback is not hammered.
    async fn requeue_after_pause(&self, settle: Box<dyn Settle>) {
        tokio::select! {
            _ = tokio::time::sleep(REQUEUE_PAUSE) => {}
            _ = self.cancel.cancelled() => {}
        }
        settle.reject(true).await;
    }

    /// A delivery that arrived but did not start before shutdown: back to the queue.
    pub(crate) async fn requeue_unstarted(&self, incoming: Incoming) {
        incoming.settle.reject(true).await;
    }
}
