//! Decoding: the message's envelope and data (`docs/wire-format.md`), the handler of its event
//! type, and the [`MessageContext`] the layers after it and the handler see. A message that
//! does not decode, or has no handler here, is dead-lettered at once.

use std::{collections::HashMap, sync::Arc};

use tokio_util::sync::CancellationToken;

use super::{
    handler::ErasedHandler,
    layer::{Decoding, Incoming, Layer, Next},
    outcome::{Failure, Outcome},
};
use crate::{FaultKind, MessageContext, codec};

/// Decodes the message and finds its handler.
pub(crate) struct Decode {
    pub(crate) queue: Arc<str>,
    pub(crate) handlers: Arc<HashMap<String, ErasedHandler>>,
    pub(crate) cancellation: CancellationToken,
}

impl Layer for Decode {
    async fn handle(&self, message: Incoming, next: Next) -> Outcome {
        let delivery = message.delivery();
        let decoded = codec::decode(&delivery.message)?;
        let Some(handler) = self.handlers.get(&decoded.envelope.event_type) else {
            return Err(Failure::permanent(
                FaultKind::UnknownType,
                format!(
                    "no handler for event type `{}` on queue `{}`",
                    decoded.envelope.event_type, self.queue
                ),
            ));
        };
        let context = MessageContext::new(
            decoded.envelope.clone(),
            Arc::clone(&self.queue),
            delivery.routing_key.as_str(),
            message.attempt(),
        )
        .with_redelivered(delivery.redelivered)
        .with_cancellation(self.cancellation.clone());
        let decoding = Decoding {
            decoded: Arc::new(decoded),
            context,
            handler: Arc::clone(handler),
        };
        next.run(message.with_decoding(decoding)).await
    }
}
