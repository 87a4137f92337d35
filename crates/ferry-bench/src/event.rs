//! The event every scenario carries: its JSON is exactly [`BODY_BYTES`] bytes, so ferry and
//! the raw baselines move bodies of the same size.

use ferry::{PublishOptions, plumbing::OutgoingMessage};
use serde::{Deserialize, Serialize};

use crate::error::BenchError;

/// The size of every message body, ferry's and the baselines'.
pub const BODY_BYTES: usize = 256;

/// The source the bench's events carry.
pub const SOURCE: &str = "ferry-bench";

/// The bench's event: a sequence number (fixed width, so every body has the same size) and
/// padding up to [`BODY_BYTES`].
#[derive(Debug, Clone, Serialize, Deserialize, ferry::IntegrationEvent)]
#[event(name = "bench.message.sent", version = 1)]
pub struct BenchEvent {
    /// The message's number in its run, zero-padded to 12 digits.
    pub seq: String,
    /// Filler up to [`BODY_BYTES`].
    pub payload: String,
}

impl BenchEvent {
    /// Event number `seq`, whose JSON is [`BODY_BYTES`] long.
    pub fn new(seq: u64) -> Self {
        // `{"seq":"000000000000","payload":""}` is 35 bytes.
        const FRAME: usize = 35;
        Self {
            seq: format!("{seq:012}"),
            payload: "x".repeat(BODY_BYTES - FRAME),
        }
    }

    /// The sequence number back.
    pub fn number(&self) -> Option<u64> {
        self.seq.parse().ok()
    }

    /// The JSON body (what ferry sends as the data, and the baselines as the whole body).
    pub fn body(&self) -> Result<Vec<u8>, BenchError> {
        serde_json::to_vec(self)
            .map_err(|e| BenchError::Runtime(format!("cannot encode the bench event: {e}")))
    }

    /// The message ferry publishes for this event, routed with `routing_key`.
    pub fn message(&self, routing_key: &str) -> Result<OutgoingMessage, BenchError> {
        let options = PublishOptions {
            routing_key: Some(routing_key.to_owned()),
            ..PublishOptions::default()
        };
        options
            .message_for(self, Some(SOURCE))
            .map_err(|e| BenchError::Runtime(format!("cannot encode the bench event: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_body_is_256_bytes() {
        for seq in [0, 7, 123_456, 999_999_999_999] {
            let event = BenchEvent::new(seq);
            assert_eq!(event.body().unwrap().len(), BODY_BYTES);
            assert_eq!(event.number(), Some(seq));
            let message = event.message("bench.publish").unwrap();
            assert_eq!(message.message.body.len(), BODY_BYTES);
            assert_eq!(message.routing_key, "bench.publish");
        }
    }
}
