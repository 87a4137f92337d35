//! Encoding: an envelope and its data as a binary-content-mode message.

use bytes::Bytes;

use super::attributes::{
    self, CAUSATIONID, CORRELATIONID, EVENTVERSION, ID, PREFIX, SOURCE, SPEC_VERSION_1_0,
    SPECVERSION, SUBJECT, TIME, TRACEPARENT, TYPE,
};
use crate::{
    Envelope,
    wire::{HeaderValue, Headers, Properties, WireMessage},
};

/// The content type ferry writes.
pub const JSON: &str = "application/json";

/// `delivery_mode` for persistent messages.
pub const PERSISTENT: u8 = 2;

pub(super) fn encode_data(envelope: &Envelope, data: Bytes) -> WireMessage {
    let mut headers = Headers::new();
    // Extensions first: the envelope's own attributes below replace any header they share a
    // name with (extension_header never yields an owned `ce-` name, this is belt and braces).
    for (name, value) in &envelope.extensions {
        headers.insert(
            attributes::extension_header(name),
            HeaderValue::String(value.clone()),
        );
    }
    let mut put = |attribute: &str, value: &str| {
        headers.insert(
            format!("{PREFIX}{attribute}"),
            HeaderValue::String(value.to_owned()),
        );
    };
    put(SPECVERSION, SPEC_VERSION_1_0);
    put(ID, &envelope.id);
    put(TYPE, &envelope.event_type);
    put(SOURCE, &envelope.source);
    put(TIME, &attributes::format_time(&envelope.time));
    put(EVENTVERSION, &envelope.event_version.to_string());
    for (attribute, value) in [
        (CORRELATIONID, &envelope.correlation_id),
        (CAUSATIONID, &envelope.causation_id),
        (TRACEPARENT, &envelope.traceparent),
        (SUBJECT, &envelope.subject),
    ] {
        if let Some(value) = value {
            put(attribute, value);
        }
    }
    WireMessage {
        properties: Properties {
            content_type: Some(JSON.to_owned()),
            content_encoding: None,
            delivery_mode: Some(PERSISTENT),
            message_id: Some(envelope.id.clone()),
            kind: Some(envelope.event_type.clone()),
            // Times before 1970 have no AMQP timestamp; `ce-time` still carries them.
            timestamp: u64::try_from(envelope.time.timestamp()).ok(),
            app_id: Some(envelope.source.clone()),
            correlation_id: envelope.correlation_id.clone(),
        },
        headers,
        body: data,
    }
}
