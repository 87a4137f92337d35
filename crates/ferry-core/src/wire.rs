//! The transport-neutral message: body, AMQP-style properties and a header table.
//!
//! The codec ([`crate::codec`]) turns an [`Envelope`](crate::Envelope) and an event into a
//! [`WireMessage`]; transports map it onto their own types (the RabbitMQ adapter onto lapin's
//! `BasicProperties` and `FieldTable`) and back.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A header table: names to values, ordered by name.
pub type Headers = BTreeMap<String, HeaderValue>;

/// One header value, as AMQP 0-9-1 field tables can carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeaderValue {
    /// A UTF-8 string (AMQP long string). CloudEvents attributes travel as these.
    String(String),
    /// Raw bytes (AMQP byte array, or a long string that is not valid UTF-8).
    Bytes(Vec<u8>),
    /// A boolean.
    Bool(bool),
    /// Any signed or unsigned integer that fits in an `i64`.
    Int(i64),
    /// A floating point number.
    Float(f64),
    /// An AMQP timestamp: seconds since the Unix epoch.
    Timestamp(u64),
    /// An array of values.
    Array(Vec<HeaderValue>),
    /// A nested table.
    Table(Headers),
    /// No value (AMQP void).
    Void,
}

impl HeaderValue {
    /// The value as a string slice, if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            HeaderValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an integer, if it is one (a numeric string is also accepted).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            HeaderValue::Int(i) => Some(*i),
            HeaderValue::Timestamp(t) => i64::try_from(*t).ok(),
            HeaderValue::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

impl From<&str> for HeaderValue {
    fn from(value: &str) -> Self {
        HeaderValue::String(value.to_owned())
    }
}

impl From<String> for HeaderValue {
    fn from(value: String) -> Self {
        HeaderValue::String(value)
    }
}

impl From<i64> for HeaderValue {
    fn from(value: i64) -> Self {
        HeaderValue::Int(value)
    }
}

/// The message properties ferry reads and writes (the AMQP 0-9-1 basic properties it uses).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Properties {
    /// `content_type`: the CloudEvents `datacontenttype` in binary mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// `content_encoding`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    /// `delivery_mode`: 2 is persistent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_mode: Option<u8>,
    /// `message_id`: the event id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// `type`: the event type.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `timestamp`: seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    /// `app_id`: the event source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// `correlation_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

/// A message as a transport carries it: properties, headers and body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WireMessage {
    /// The basic properties.
    #[serde(default)]
    pub properties: Properties,
    /// The header table.
    #[serde(default)]
    pub headers: Headers,
    /// The body (the event's JSON in binary mode).
    #[serde(default)]
    pub body: Bytes,
}

impl WireMessage {
    /// A header's value, if present.
    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.headers.get(name)
    }

    /// A header's value as a string, if present and a string.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(HeaderValue::as_str)
    }

    /// Sets a header, replacing any value it had.
    pub fn set_header(&mut self, name: impl Into<String>, value: impl Into<HeaderValue>) {
        self.headers.insert(name.into(), value.into());
    }

    /// The delivery attempt this message is on: the `ferry-attempt` header, 1 when absent.
    pub fn attempt(&self) -> u32 {
        self.header(crate::fault::headers::ATTEMPT)
            .and_then(HeaderValue::as_i64)
            .and_then(|a| u32::try_from(a).ok())
            .filter(|a| *a >= 1)
            .unwrap_or(1)
    }
}

/// A message on its way out: where it goes and what it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutgoingMessage {
    /// The exchange; `None` means the publisher's configured exchange. `Some("")` is the
    /// default exchange (routing straight to the queue named by the routing key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<String>,
    /// The routing key.
    pub routing_key: String,
    /// The message.
    pub message: WireMessage,
}

impl OutgoingMessage {
    /// A message for the publisher's configured exchange.
    pub fn new(routing_key: impl Into<String>, message: WireMessage) -> Self {
        Self {
            exchange: None,
            routing_key: routing_key.into(),
            message,
        }
    }

    /// The message id (the `message_id` property), or an empty string.
    pub fn id(&self) -> &str {
        self.message.properties.message_id.as_deref().unwrap_or("")
    }
}
