//! What the harness saw: every message published, every delivery consumed and what became of
//! it (handled, skipped as a duplicate, retried, dead-lettered), every Mediator request.

use std::{sync::Arc, time::Duration};

use ferry_core::{
    Envelope, Fault, IntegrationEvent,
    codec::{self, DecodeError, Decoded},
};

/// A message published through the harness's transport: directly, or by an outbox relay.
#[derive(Debug, Clone)]
pub struct Published {
    /// The routing key it was published with.
    pub routing_key: String,
    /// The exchange it went to (the events exchange unless the message named another).
    pub exchange: String,
    /// Its envelope.
    pub envelope: Envelope,
    decoded: Arc<Decoded>,
}

impl Published {
    pub(crate) fn new(routing_key: String, exchange: String, decoded: Decoded) -> Self {
        Self {
            routing_key,
            exchange,
            envelope: decoded.envelope.clone(),
            decoded: Arc::new(decoded),
        }
    }

    /// The event, decoded as `E` (its type checked, its version upcast).
    pub fn event<E: IntegrationEvent>(&self) -> Result<E, DecodeError> {
        decode_as::<E>(&self.decoded)
    }
}

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The handler ran and succeeded; the message was acked.
    Handled,
    /// The inbox knew the message: acked without running the handler.
    Duplicate,
    /// It failed and will come back after `delay` as attempt `next_attempt`.
    Retried {
        /// The delay before the retry copy comes back.
        delay: Duration,
        /// The attempt the copy will be.
        next_attempt: u32,
        /// Why it failed.
        error: String,
    },
    /// It failed for good and went to the dead-letter exchange with this fault.
    DeadLettered(Fault),
}

/// One delivery a consumer processed, and what became of it.
#[derive(Debug, Clone)]
pub struct Consumption {
    /// The consumer (its queue, as the application named it).
    pub queue: String,
    /// The routing key it arrived with.
    pub routing_key: String,
    /// The delivery attempt, 1 for the first.
    pub attempt: u32,
    /// Its envelope, when it could be decoded.
    pub envelope: Option<Envelope>,
    /// What became of it.
    pub outcome: Outcome,
    /// When it was decided, on tokio's clock (virtual under a paused clock).
    pub at: tokio::time::Instant,
    decoded: Option<Arc<Decoded>>,
}

impl Consumption {
    pub(crate) fn new(
        queue: String,
        routing_key: String,
        attempt: u32,
        decoded: Option<Decoded>,
        outcome: Outcome,
    ) -> Self {
        Self {
            queue,
            routing_key,
            attempt,
            envelope: decoded.as_ref().map(|d| d.envelope.clone()),
            outcome,
            at: tokio::time::Instant::now(),
            decoded: decoded.map(Arc::new),
        }
    }

    /// The event, decoded as `E`; an error when the message could not be decoded at all, or
    /// is not an `E`.
    pub fn event<E: IntegrationEvent>(&self) -> Result<E, DecodeError> {
        match &self.decoded {
            Some(decoded) => decode_as::<E>(decoded),
            None => Err(DecodeError::new(
                ferry_core::FaultKind::Decode,
                "the message could not be decoded",
            )),
        }
    }

    /// The event type, when the message could be decoded.
    pub fn event_type(&self) -> Option<&str> {
        self.envelope.as_ref().map(|e| e.event_type.as_str())
    }

    /// The fault it was dead-lettered with, if it was.
    pub fn fault(&self) -> Option<&Fault> {
        match &self.outcome {
            Outcome::DeadLettered(fault) => Some(fault),
            _ => None,
        }
    }

    /// The retry delay, if it was retried.
    pub fn retry_delay(&self) -> Option<Duration> {
        match &self.outcome {
            Outcome::Retried { delay, .. } => Some(*delay),
            _ => None,
        }
    }
}

/// A Mediator request or notification the harness saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// Its type name (`std::any::type_name`).
    pub type_name: &'static str,
    /// Its correlation id.
    pub correlation_id: String,
    /// `None` when the handler (and the behaviors inside the recording one) or the
    /// notification's handlers succeeded, the error's text otherwise.
    pub error: Option<String>,
}

impl RequestRecord {
    /// Whether it succeeded.
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }
}

/// `decoded` as an `E`: its event type must be `E`'s.
fn decode_as<E: IntegrationEvent>(decoded: &Decoded) -> Result<E, DecodeError> {
    if decoded.envelope.event_type != E::NAME {
        return Err(DecodeError::new(
            ferry_core::FaultKind::UnknownType,
            format!(
                "the event is a `{}`, not a `{}`",
                decoded.envelope.event_type,
                E::NAME
            ),
        ));
    }
    codec::decode_event::<E>(decoded)
}
