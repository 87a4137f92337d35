//! How an outbox row holds a message, for stores on any database: routing key and exchange as
//! columns, properties and headers as JSON, the body as bytes, encoded once when the event is
//! added; and the row as an operator sees it.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{OutboxError, OutboxStatus};
use crate::{
    Headers, IntegrationEvent, OutgoingMessage, Properties, PublishOptions, WireMessage, codec,
};

/// An event encoded for the outbox: the columns a store inserts.
///
/// ```
/// use ferry_core::{IntegrationEvent, PublishOptions, outbox::NewOutboxRow};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct OrderCreated {
///     order_id: u64,
/// }
///
/// impl IntegrationEvent for OrderCreated {
///     const NAME: &'static str = "orders.order.created";
/// }
///
/// let record = NewOutboxRow::from_event(&OrderCreated { order_id: 7 }, PublishOptions::default(), None)?;
/// assert_eq!(record.routing_key, "orders.order.created");
/// assert_eq!(record.event_type, "orders.order.created");
/// let message = record.message()?;
/// assert_eq!(message.id(), record.id);
/// # Ok::<(), ferry_core::OutboxError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutboxRow {
    /// The event id (the row's key).
    pub id: String,
    /// The event type.
    pub event_type: String,
    /// The exchange (`None`: the publisher's).
    pub exchange: Option<String>,
    /// The routing key.
    pub routing_key: String,
    /// The message properties, as JSON.
    pub properties: serde_json::Value,
    /// The message headers, as JSON.
    pub headers: serde_json::Value,
    /// The body, exactly as it will be sent.
    pub body: Vec<u8>,
    /// The partition key, if any.
    pub partition_key: Option<String>,
}

impl NewOutboxRow {
    /// Encodes `event` as `options` describe it; `default_source` is the store's source for
    /// events that name none.
    pub fn from_event<E: IntegrationEvent>(
        event: &E,
        options: PublishOptions,
        default_source: Option<&str>,
    ) -> Result<Self, OutboxError> {
        let (message, event_type, partition_key) = encode_event(event, options, default_source)?;
        Self::from_encoded(message, event_type, partition_key)
    }

    /// The record of a message [`encode_event`] made.
    pub fn from_encoded(
        message: OutgoingMessage,
        event_type: String,
        partition_key: Option<String>,
    ) -> Result<Self, OutboxError> {
        let mut record = Self::from_message(message, partition_key)?;
        record.event_type = event_type;
        Ok(record)
    }

    /// Stores a message as it is; it must carry a `message_id`.
    pub fn from_message(
        message: OutgoingMessage,
        partition_key: Option<String>,
    ) -> Result<Self, OutboxError> {
        let id = message.id().to_owned();
        if id.is_empty() {
            return Err(OutboxError::Encode(
                "the message has no message_id; set properties.message_id (the event id)".into(),
            ));
        }
        let WireMessage {
            properties,
            headers,
            body,
        } = message.message;
        let event_type = properties.kind.clone().unwrap_or_default();
        Ok(Self {
            id,
            event_type,
            exchange: message.exchange,
            routing_key: message.routing_key,
            properties: to_json(&properties)?,
            headers: to_json(&headers)?,
            body: body.to_vec(),
            partition_key,
        })
    }

    /// The message this record holds.
    pub fn message(&self) -> Result<OutgoingMessage, OutboxError> {
        decode_message(
            &self.id,
            self.exchange.clone(),
            self.routing_key.clone(),
            self.properties.clone(),
            self.headers.clone(),
            self.body.clone(),
        )
    }
}

/// Encodes `event` as `options` describe it (`default_source` for events that name no source):
/// the message as it will be sent (its `message_id` the envelope's id), the event type, and the
/// partition key. [`NewOutboxRow::from_encoded`] makes the row of it.
pub fn encode_event<E: IntegrationEvent>(
    event: &E,
    options: PublishOptions,
    default_source: Option<&str>,
) -> Result<(OutgoingMessage, String, Option<String>), OutboxError> {
    let envelope = options.envelope_for::<E>(default_source);
    let message = codec::encode(event, &envelope).map_err(|e| OutboxError::Encode(e.into()))?;
    let routing_key = options.routing_key.unwrap_or_else(|| E::NAME.to_owned());
    let mut outgoing = OutgoingMessage::new(routing_key, message);
    // The row's key is the envelope's id, whatever the codec wrote.
    outgoing.message.properties.message_id = Some(envelope.id.clone());
    Ok((outgoing, envelope.event_type, options.partition_key))
}

fn to_json<T: Serialize>(value: &T) -> Result<serde_json::Value, OutboxError> {
    serde_json::to_value(value).map_err(|e| OutboxError::Encode(e.into()))
}

/// Rebuilds the message a row holds from its columns (what a store's claim reads); `id` names
/// the row in errors.
pub fn decode_message(
    id: &str,
    exchange: Option<String>,
    routing_key: String,
    properties: serde_json::Value,
    headers: serde_json::Value,
    body: Vec<u8>,
) -> Result<OutgoingMessage, OutboxError> {
    let properties: Properties =
        serde_json::from_value(properties).map_err(|e| OutboxError::Unreadable {
            id: id.to_owned(),
            what: "properties",
            source: e.into(),
        })?;
    let headers: Headers =
        serde_json::from_value(headers).map_err(|e| OutboxError::Unreadable {
            id: id.to_owned(),
            what: "headers",
            source: e.into(),
        })?;
    Ok(OutgoingMessage {
        exchange,
        routing_key,
        message: WireMessage {
            properties,
            headers,
            body: body.into(),
        },
    })
}

impl FromStr for OutboxStatus {
    type Err = OutboxError;

    /// Parses a stored status (`pending`, `published`, `dead`).
    fn from_str(status: &str) -> Result<Self, OutboxError> {
        match status {
            "pending" => Ok(OutboxStatus::Pending),
            "published" => Ok(OutboxStatus::Published),
            "dead" => Ok(OutboxStatus::Dead),
            other => Err(OutboxError::database(format!(
                "unknown outbox status `{other}`"
            ))),
        }
    }
}

/// An outbox row as an operator sees it (`ferry outbox list`): everything but the body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxRow {
    /// The event id.
    pub id: String,
    /// The order rows were added.
    pub seq: i64,
    /// Pending, published or dead.
    pub status: OutboxStatus,
    /// Failed publish attempts.
    pub attempts: u32,
    /// The last publish error.
    pub last_error: Option<String>,
    /// The event type.
    pub event_type: String,
    /// The exchange (`None`: the publisher's).
    pub exchange: Option<String>,
    /// The routing key.
    pub routing_key: String,
    /// The partition key.
    pub partition_key: Option<String>,
    /// When the row was added.
    pub created_at: DateTime<Utc>,
    /// When the next attempt may run.
    pub next_attempt_at: DateTime<Utc>,
    /// When it was published.
    pub published_at: Option<DateTime<Utc>>,
    /// Until when a relay holds it.
    pub locked_until: Option<DateTime<Utc>>,
    /// The body's size in bytes.
    pub body_bytes: i64,
}
