//! Content modes: binary (the wire contract's default, `docs/wire-format.md`) and structured
//! (the whole event as one JSON object, `application/cloudevents+json`), which every ferry
//! consumer reads.
//!
//! Structured mode exists for speed: RabbitMQ parses a message's header table on every
//! publish and every delivery, and a binary-mode event carries six or more `ce-` headers. In
//! structured mode the same attributes travel inside the body and the header table is empty
//! (ferry's own `ferry-…` headers and plain extension headers stay headers).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::Value;

use super::{
    STRUCTURED,
    attributes::{self, DATACONTENTTYPE, SPECVERSION, TIME},
    decode::{self, Media},
    encode::JSON,
    structured::{DATA, DATA_BASE64},
};
use crate::wire::{Headers, WireMessage};

/// How an event travels on the wire.
///
/// ```
/// use ferry_core::{Envelope, codec::{self, ContentMode}};
///
/// let envelope = Envelope::new("orders.order.created").with_source("orders");
/// let binary = codec::encode_data(&envelope, r#"{"orderId":"o-1"}"#.into());
/// let structured = ContentMode::Structured.apply(binary.clone());
/// assert_eq!(structured.properties.content_type.as_deref(), Some(codec::STRUCTURED));
/// assert!(structured.headers.is_empty());
/// // Both forms decode to the same event.
/// assert_eq!(codec::decode(&structured).unwrap(), codec::decode(&binary).unwrap());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContentMode {
    /// Attributes as `ce-` headers, the data as the body (`docs/wire-format.md`).
    #[default]
    Binary,
    /// The whole event as one JSON object in the body (`application/cloudevents+json`).
    Structured,
}

impl ContentMode {
    /// `message` in this mode. ferry writes binary mode, so [`ContentMode::Binary`] returns it
    /// unchanged; [`ContentMode::Structured`] converts it with [`to_structured`].
    pub fn apply(self, message: WireMessage) -> WireMessage {
        match self {
            ContentMode::Binary => message,
            ContentMode::Structured => to_structured(message),
        }
    }
}

/// A binary-mode message as the same event in structured mode: the CloudEvents attributes
/// move from the `ce-` headers into a JSON object whose `data` is the body, the
/// `content_type` property becomes `application/cloudevents+json`, and every other property
/// and header stays.
///
/// A message structured mode cannot carry as it is (already structured, data that is not
/// JSON, an attribute value that is not a string, an integer or a time) is returned
/// unchanged: it then travels in binary mode, and a consumer reads it as well.
pub fn to_structured(message: WireMessage) -> WireMessage {
    match structured_body(&message) {
        Some((body, headers)) => {
            let mut properties = message.properties;
            properties.content_type = Some(STRUCTURED.to_owned());
            WireMessage {
                properties,
                headers,
                body,
            }
        }
        None => message,
    }
}

/// The structured body and the headers that stay, or `None` when the message must stay binary.
fn structured_body(message: &WireMessage) -> Option<(Bytes, Headers)> {
    let content_type = message.properties.content_type.as_deref();
    if decode::classify(content_type) != Media::Json
        || decode::check_content_encoding(&message.properties).is_err()
        || serde_json::from_slice::<serde::de::IgnoredAny>(&message.body).is_err()
    {
        return None;
    }
    // Attribute name -> (prefix precedence, value): `ce-` wins over the AMQP binding's prefixes.
    let mut event: BTreeMap<String, (usize, Value)> = BTreeMap::new();
    let mut headers = Headers::new();
    for (name, value) in &message.headers {
        let Some((rank, attribute)) = attributes::split_prefix(name) else {
            headers.insert(name.clone(), value.clone());
            continue;
        };
        let value = if attributes::is_owned(attribute) {
            let attribute = attribute.to_ascii_lowercase();
            let value = if attribute == TIME {
                Value::String(attributes::format_time(&attributes::time(value).ok()??))
            } else {
                Value::String(attributes::text(&attribute, value).ok()??)
            };
            (attribute, value)
        } else if attribute.eq_ignore_ascii_case(DATA)
            || attribute.eq_ignore_ascii_case(DATA_BASE64)
        {
            // An extension of that name has no place beside the event's data.
            return None;
        } else {
            match attributes::extension_text(value) {
                // The binary decoder skips such an extension too.
                None => continue,
                Some(text) => (attribute.to_owned(), Value::String(text)),
            }
        };
        let (attribute, value) = value;
        match event.get(&attribute) {
            Some((kept, _)) if *kept <= rank => {}
            _ => {
                event.insert(attribute, (rank, value));
            }
        }
    }
    if !event.contains_key(SPECVERSION) {
        return None;
    }
    // The property wins over a `ce-datacontenttype` header, as when decoding binary mode.
    match content_type {
        Some(content_type) => {
            event.insert(
                DATACONTENTTYPE.to_owned(),
                (0, Value::String(content_type.to_owned())),
            );
        }
        None => {
            event
                .entry(DATACONTENTTYPE.to_owned())
                .or_insert_with(|| (0, Value::String(JSON.to_owned())));
        }
    }
    let attributes: serde_json::Map<String, Value> =
        event.into_iter().map(|(k, (_, v))| (k, v)).collect();
    let mut body = serde_json::to_vec(&attributes).ok()?;
    // The data goes in as it is (already checked to be JSON): no parse and re-encode.
    body.pop(); // the object's closing brace
    body.extend_from_slice(b",\"data\":");
    body.extend_from_slice(&message.body);
    body.push(b'}');
    Some((Bytes::from(body), headers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Envelope, codec, wire::HeaderValue};

    fn binary() -> WireMessage {
        let mut envelope = Envelope::new("orders.order.created")
            .with_source("orders")
            .with_correlation_id("c-1");
        envelope.extensions.insert("tenant".into(), "t-1".into());
        envelope.extensions.insert("Tenant-Id".into(), "t-2".into());
        codec::encode_data(&envelope, r#"{"orderId":"o-1","total":12.5}"#.into())
    }

    #[test]
    fn the_structured_form_decodes_to_the_same_event() {
        let binary = binary();
        let structured = to_structured(binary.clone());
        assert_eq!(
            structured.properties.content_type.as_deref(),
            Some(STRUCTURED)
        );
        // Only the plain extension header stays a header.
        assert_eq!(structured.headers.len(), 1);
        assert!(structured.headers.contains_key("Tenant-Id"));
        assert_eq!(codec::decode(&structured), codec::decode(&binary));
        let body: Value = serde_json::from_slice(&structured.body).unwrap();
        assert_eq!(body["data"]["orderId"], "o-1");
        assert_eq!(body["tenant"], "t-1");
        assert_eq!(body["specversion"], "1.0");
        assert_eq!(body["datacontenttype"], JSON);
    }

    #[test]
    fn ferry_headers_stay_headers() {
        let mut message = binary();
        message.set_header("ferry-attempt", HeaderValue::Int(2));
        let structured = to_structured(message);
        assert_eq!(structured.attempt(), 2);
    }

    #[test]
    fn what_structured_mode_cannot_carry_stays_binary() {
        let mut not_json = binary();
        not_json.body = Bytes::from_static(b"not json");
        assert_eq!(to_structured(not_json.clone()), not_json);

        let mut other_type = binary();
        other_type.properties.content_type = Some("text/plain".into());
        assert_eq!(to_structured(other_type.clone()), other_type);

        let structured = to_structured(binary());
        assert_eq!(to_structured(structured.clone()), structured);

        let mut table = binary();
        table.set_header("ce-subject", HeaderValue::Array(Vec::new()));
        assert_eq!(to_structured(table.clone()), table);
    }

    #[test]
    fn binary_mode_leaves_the_message_alone() {
        let message = binary();
        assert_eq!(ContentMode::Binary.apply(message.clone()), message);
    }
}
