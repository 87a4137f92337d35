//! The wire format of `docs/wire-format.md`: CloudEvents 1.0 in binary content mode over AMQP.
//!
//! [`encode`] writes an event and its envelope as a [`WireMessage`]; [`decode`] reads every form
//! `docs/wire-format.md` accepts back into an [`Envelope`] and the data's JSON; [`decode_event`] checks the version,
//! runs the upcasters and deserializes the typed event.
//!
//! # What ferry writes
//!
//! - body: the event's JSON;
//! - properties: `content_type = application/json`, `delivery_mode = 2`, `message_id` = id,
//!   `type` = event type, `timestamp` = time in unix seconds (left out before 1970), `app_id` =
//!   source, `correlation_id` when set;
//! - headers, all strings: `ce-specversion = 1.0`, `ce-id`, `ce-type`, `ce-source`, `ce-time`
//!   (RFC 3339 in UTC with the fractional digits the time needs, so it reads back exactly),
//!   `ce-eventversion` (always), and `ce-correlationid`, `ce-causationid`, `ce-traceparent`,
//!   `ce-subject` when set.
//!
//! # Extensions
//!
//! [`Envelope::extensions`] travel as string headers, by this rule
//! ([`attributes::extension_header`]):
//!
//! - a CloudEvents attribute name (`[a-z0-9]`, 1 to 20 characters) that the envelope does not
//!   own (see [`attributes::OWNED`]) travels as `ce-<name>`: `tenant` → `ce-tenant`;
//! - a name a plain header would not bring back, because it starts with `ce-`, `cloudEvents_`,
//!   `cloudEvents:`, `ferry-` or `x-` (any case), also travels as `ce-<name>`:
//!   `x-tenant` → `ce-x-tenant`;
//! - any other name travels as a plain header of that name: `Tenant-Id` → `Tenant-Id`, and an
//!   owned name such as `id` → `id` (it never replaces the envelope's own attribute).
//!
//! Decoding mirrors it: every CloudEvents header (any prefix) whose attribute is not an owned
//! one becomes an extension named as after the prefix (`ce-x-tenant` → `x-tenant`); every plain
//! header except ferry's (`ferry-…`) and the broker's (`x-…`, such as `x-death`) becomes an
//! extension of its own name, a CloudEvents header winning over a plain one of the same name.
//! Extension values that are integers, booleans, floats or timestamps are read as their string
//! forms; arrays, tables, void and non-UTF-8 bytes are skipped. So every extension, whatever its
//! name or value, comes back unchanged from an encode and decode.
//!
//! # What ferry reads
//!
//! - binary mode with the prefixes `ce-`, `cloudEvents_` and `cloudEvents:` (matched in any
//!   ASCII case; when one attribute comes under several, `ce-` wins, then `cloudEvents_`);
//!   values as strings, UTF-8 byte arrays or integers; `time` also as an AMQP timestamp
//!   (seconds) or an integer of milliseconds; `eventversion` also as an integer; a message
//!   with any CloudEvents header must carry `specversion` (`1.0`);
//! - structured mode (`content_type = application/cloudevents+json`): the whole event as a JSON
//!   object, with `data` (JSON) or `data_base64`, and `specversion` required (CloudEvents
//!   headers are then ignored; plain headers still become extensions, the body's win);
//! - plain messages: the `message_id`, `type`, `app_id`, `timestamp` and `correlation_id`
//!   properties. The properties are also the fallback for a CloudEvents message's missing
//!   attributes; headers win. With no time anywhere the time is now, with no source it is `""`.
//!
//! The data's content type (the `content_type` property, else `ce-datacontenttype`) must be
//! JSON (`application/json`, `text/json` or `…+json`; missing means JSON), the body one valid
//! JSON value in UTF-8 (a byte-order mark is dropped), and `content_encoding`, when set,
//! `identity` or `utf-8`. Failures are [`DecodeError`]s with the fault kind they dead-letter
//! with: [`FaultKind::MissingId`] for a missing or empty id, [`FaultKind::Decode`] for the rest
//! (no type, `specversion` missing or other than `1.0`, `eventversion` not a positive integer, a bad time,
//! a non-JSON content type or body …).
//!
//! ```
//! use ferry_core::{Envelope, codec};
//!
//! let envelope = Envelope::new("orders.order.created")
//!     .with_source("orders")
//!     .with_correlation_id("c-1");
//! let message = codec::encode_data(&envelope, r#"{"orderId":"o-1"}"#.into());
//! assert_eq!(message.header_str("ce-type"), Some("orders.order.created"));
//! assert_eq!(message.properties.message_id.as_deref(), Some(envelope.id.as_str()));
//!
//! let decoded = codec::decode(&message).unwrap();
//! assert_eq!(decoded.envelope, envelope);
//! assert_eq!(&decoded.data[..], br#"{"orderId":"o-1"}"#);
//! ```

use bytes::Bytes;

use crate::{Envelope, FaultKind, IntegrationEvent, WireMessage};

pub mod attributes;
mod content_mode;
mod decode;
mod encode;
mod structured;
mod version;

pub use content_mode::{ContentMode, to_structured};
pub use decode::STRUCTURED;
pub use encode::{JSON, PERSISTENT};

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
///
/// ```
/// use ferry_core::{Envelope, IntegrationEvent, codec};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, ferry_macros::IntegrationEvent)]
/// #[serde(rename_all = "camelCase")]
/// #[event(name = "orders.order.created", version = 1)]
/// struct OrderCreated {
///     order_id: String,
/// }
///
/// let event = OrderCreated { order_id: "o-1".into() };
/// let message = codec::encode(&event, &Envelope::for_event::<OrderCreated>()).unwrap();
/// assert_eq!(&message.body[..], br#"{"orderId":"o-1"}"#);
/// ```
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

/// Encodes an envelope and data that is already JSON in binary content mode (the data is
/// not checked).
pub fn encode_data(envelope: &Envelope, data: Bytes) -> WireMessage {
    encode::encode_data(envelope, data)
}

/// Decodes a message in any form `docs/wire-format.md` accepts. It never panics, whatever the message.
pub fn decode(message: &WireMessage) -> Result<Decoded, DecodeError> {
    decode::decode(message)
}

/// Decodes the typed event: checks the version, runs the upcasters, deserializes.
///
/// - a version newer than `E::VERSION` is [`FaultKind::UnsupportedVersion`];
/// - an older one runs `E::UPCASTERS` one version at a time (v1 → v2 → v3); a missing step is
///   [`FaultKind::UnsupportedVersion`], an upcaster's `Err` is [`FaultKind::Decode`];
/// - then serde reads the JSON (unknown fields are ignored unless the type denies them); its
///   errors are [`FaultKind::Decode`].
pub fn decode_event<E: IntegrationEvent>(decoded: &Decoded) -> Result<E, DecodeError> {
    version::decode_event(decoded)
}
