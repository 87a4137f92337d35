//! Retries and classification: a handler's transient failure is tried again at once up to the
//! retry policy's `immediate` count; then every [`Outcome`] becomes a [`Decision`] — a permanent
//! failure a dead letter at once, a transient one a delayed retry while the policy has attempts
//! left, a dead letter after (`docs/guarantees.md`).

use std::sync::Arc;

use chrono::Utc;

use super::{
    Decision, Delivery,
    layer::{Incoming, Layer, Next},
    outcome::{Handled, Outcome},
};
use crate::{Fault, FaultKind, RetryPolicy};

/// Tries the handler again at once after a transient failure, `immediate` times at most.
pub(crate) struct ImmediateRetries {
    pub(crate) immediate: u32,
}

impl Layer for ImmediateRetries {
    async fn handle(&self, message: Incoming, next: Next) -> Outcome {
        let mut tries_left = self.immediate;
        loop {
            let failure = match next.clone().run(message.clone()).await {
                Ok(handled) => return Ok(handled),
                Err(failure) => failure,
            };
            if failure.is_permanent() {
                if failure.kind() == FaultKind::Handler {
                    tracing::warn!(error = %failure.message(), "handler failed permanently");
                }
                return Err(failure);
            }
            if tries_left > 0 {
                tries_left -= 1;
                tracing::debug!(error = %failure.message(), "handler failed, retrying at once");
                continue;
            }
            tracing::warn!(error = %failure.message(), kind = %failure.kind(), "handler failed");
            return Err(failure);
        }
    }
}

/// Turns outcomes into decisions with the consumer's retry policy.
pub(crate) struct Classify<'a> {
    pub(crate) queue: &'a Arc<str>,
    pub(crate) retry: &'a RetryPolicy,
}

impl Classify<'_> {
    /// What becomes of the delivery.
    pub(crate) fn decide(&self, delivery: &Delivery, attempt: u32, outcome: Outcome) -> Decision {
        match outcome {
            Ok(Handled::Done) => Decision::Ack,
            Ok(Handled::Duplicate) => Decision::Duplicate,
            Err(failure) if failure.is_permanent() => {
                let kind = failure.kind();
                self.dead_letter(delivery, attempt, kind, failure.message().to_owned())
            }
            Err(failure) => {
                let next_attempt = attempt.saturating_add(1);
                let kind = failure.kind();
                let error = failure.message().to_owned();
                match self.retry.delay_for(next_attempt) {
                    Some(delay) => Decision::Retry {
                        delay,
                        next_attempt,
                        error,
                    },
                    None => self.dead_letter(delivery, attempt, kind, error),
                }
            }
        }
    }

    fn dead_letter(
        &self,
        delivery: &Delivery,
        attempt: u32,
        kind: FaultKind,
        message: String,
    ) -> Decision {
        tracing::warn!(queue = %self.queue, kind = %kind, error = %message, "dead-lettering message");
        Decision::DeadLetter(Fault {
            kind,
            message,
            attempts: attempt,
            at: Utc::now(),
            original_exchange: Some(delivery.original_exchange().to_owned()),
            original_routing_key: Some(delivery.original_routing_key().to_owned()),
            original_queue: Some(self.queue.to_string()),
        })
    }
}
