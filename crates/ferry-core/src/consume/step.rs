//! The processing step of a delivery: the consumer pipeline, or a dead-letter callback. A
//! panic in either is caught here, the same for every transport.

use std::{panic::AssertUnwindSafe, sync::Arc};

use futures::FutureExt;

use crate::{DeadLetter, Decision, Delivery, Pipeline, consumer::DeadLetterFn};

/// What the loop processes each delivery with.
pub(crate) enum Step {
    /// An event consumer's pipeline.
    Pipeline(Arc<Pipeline>),
    /// A dead-letter consumer's callback.
    DeadLetters(DeadLetterFn),
}

/// What became of a delivery.
pub(crate) enum Verdict {
    /// The pipeline decided (a dead-letter callback that succeeded is an `Ack`).
    Decided(Decision),
    /// Nothing decided (a panic, a failed callback): requeue after a pause.
    Requeue,
}

impl Step {
    pub(crate) async fn process(&self, queue: &str, delivery: &Delivery) -> Verdict {
        match self {
            Step::Pipeline(pipeline) => {
                match AssertUnwindSafe(pipeline.process(delivery))
                    .catch_unwind()
                    .await
                {
                    Ok(decision) => Verdict::Decided(decision),
                    Err(_) => {
                        tracing::error!(
                            queue,
                            "the consumer pipeline panicked; requeueing the message"
                        );
                        Verdict::Requeue
                    }
                }
            }
            Step::DeadLetters(callback) => {
                let dead_letter = DeadLetter::from_message(
                    delivery.message.clone(),
                    delivery.routing_key.as_str(),
                );
                let id = dead_letter.message_id().unwrap_or("").to_owned();
                match AssertUnwindSafe(callback(dead_letter)).catch_unwind().await {
                    Ok(Ok(())) => Verdict::Decided(Decision::Ack),
                    Ok(Err(e)) => {
                        tracing::warn!(queue, id = %id, error = %e, "dead-letter callback failed; the dead letter stays on the queue");
                        Verdict::Requeue
                    }
                    Err(_) => {
                        tracing::error!(queue, id = %id, "dead-letter callback panicked; the dead letter stays on the queue");
                        Verdict::Requeue
                    }
                }
            }
        }
    }
}
