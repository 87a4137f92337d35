//! `skip_processed`: the inbox look-up before the handler and the record after it (see
//! [`ConsumerBuilder::skip_processed`](crate::ConsumerBuilder::skip_processed) for what it
//! guarantees and what it does not).

use std::sync::Arc;

use super::{
    layer::{Incoming, Layer, Next},
    outcome::{Failure, Handled, Outcome},
};
use crate::{FaultKind, Inbox};

/// Skips a message the inbox has recorded; records one its handler handled.
pub(crate) struct SkipProcessed {
    pub(crate) queue: Arc<str>,
    pub(crate) inbox: Arc<dyn Inbox>,
}

impl Layer for SkipProcessed {
    async fn handle(&self, message: Incoming, next: Next) -> Outcome {
        let Some(id) = message.envelope().map(|e| e.id.clone()) else {
            return next.run(message).await;
        };
        match self.inbox.is_processed(&self.queue, &id).await {
            Ok(true) => {
                tracing::debug!("duplicate skipped");
                return Ok(Handled::Duplicate);
            }
            Ok(false) => {}
            // The look-up failed, not the handler: a delayed retry, no immediate ones.
            Err(e) => return Err(Failure::transient(FaultKind::Handler, e.to_string())),
        }
        let outcome = next.run(message).await;
        if outcome.as_ref().is_ok_and(|h| *h == Handled::Done) {
            if let Err(e) = self.inbox.mark_processed(&self.queue, &id).await {
                // The handler's work is done; failing now would redo it. Log and ack.
                tracing::error!(error = %e, "could not record the message in the inbox");
            }
        }
        outcome
    }
}
