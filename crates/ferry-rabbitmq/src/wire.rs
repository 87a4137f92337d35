//! [`WireMessage`] ↔ AMQP: lapin's `BasicProperties` and `FieldTable`, both ways.
//!
//! Every AMQP field type maps onto a [`HeaderValue`]: integers of every width become
//! [`HeaderValue::Int`] (a `u64` that does not fit an `i64` cannot arrive: AMQP 0-9-1 as
//! RabbitMQ speaks it has no unsigned 64-bit field), `f32`/`f64` and decimals become
//! [`HeaderValue::Float`], long strings that are not UTF-8 become [`HeaderValue::Bytes`],
//! short strings become strings. Going out, strings are long strings, bytes are byte arrays,
//! integers are signed 64-bit.

use std::collections::BTreeMap;

use bytes::Bytes;
use ferry_core::{HeaderValue, Headers, Properties, WireMessage};
use lapin::{
    BasicProperties,
    types::{AMQPValue, ByteArray, FieldArray, FieldTable, LongString, ShortString},
};

/// Why a message cannot be put on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A header name longer than AMQP's 255 bytes.
    #[error("header name `{0}…` is longer than 255 bytes")]
    HeaderName(String),
    /// A property value longer than AMQP's 255 bytes.
    #[error("property `{name}` is longer than 255 bytes")]
    Property {
        /// The property.
        name: &'static str,
    },
}

/// The lapin properties (headers included) for a message.
pub fn to_amqp_properties(message: &WireMessage) -> Result<BasicProperties, WireError> {
    let p = &message.properties;
    let mut props = BasicProperties::default();
    let short = |name: &'static str, value: &str| {
        ShortString::try_new(value).map_err(|_| WireError::Property { name })
    };
    if let Some(v) = &p.content_type {
        props = props.with_content_type(short("content_type", v)?);
    }
    if let Some(v) = &p.content_encoding {
        props = props.with_content_encoding(short("content_encoding", v)?);
    }
    if let Some(v) = p.delivery_mode {
        props = props.with_delivery_mode(v);
    }
    if let Some(v) = &p.message_id {
        props = props.with_message_id(short("message_id", v)?);
    }
    if let Some(v) = &p.kind {
        props = props.with_type(short("type", v)?);
    }
    if let Some(v) = p.timestamp {
        props = props.with_timestamp(v);
    }
    if let Some(v) = &p.app_id {
        props = props.with_app_id(short("app_id", v)?);
    }
    if let Some(v) = &p.correlation_id {
        props = props.with_correlation_id(short("correlation_id", v)?);
    }
    if !message.headers.is_empty() {
        props = props.with_headers(to_field_table(&message.headers)?);
    }
    Ok(props)
}

/// A header table as an AMQP field table.
pub fn to_field_table(headers: &Headers) -> Result<FieldTable, WireError> {
    let mut table = BTreeMap::new();
    for (name, value) in headers {
        let key = ShortString::try_new(name.as_str())
            .map_err(|_| WireError::HeaderName(name.chars().take(40).collect()))?;
        table.insert(key, to_amqp_value(value)?);
    }
    Ok(FieldTable::from(table))
}

/// One header value as an AMQP value.
pub fn to_amqp_value(value: &HeaderValue) -> Result<AMQPValue, WireError> {
    Ok(match value {
        HeaderValue::String(s) => AMQPValue::LongString(LongString::from(s.as_bytes())),
        HeaderValue::Bytes(b) => AMQPValue::ByteArray(ByteArray::from(b.as_slice())),
        HeaderValue::Bool(b) => AMQPValue::Boolean(*b),
        HeaderValue::Int(i) => AMQPValue::LongLongInt(*i),
        HeaderValue::Float(f) => AMQPValue::Double(*f),
        HeaderValue::Timestamp(t) => AMQPValue::Timestamp(*t),
        HeaderValue::Array(values) => AMQPValue::FieldArray(FieldArray::from(
            values
                .iter()
                .map(to_amqp_value)
                .collect::<Result<Vec<_>, _>>()?,
        )),
        HeaderValue::Table(t) => AMQPValue::FieldTable(to_field_table(t)?),
        HeaderValue::Void => AMQPValue::Void,
    })
}

/// A received message (properties, headers and body) as a [`WireMessage`].
pub fn from_amqp(properties: &BasicProperties, body: &[u8]) -> WireMessage {
    let s = |v: &Option<ShortString>| v.as_ref().map(|v| v.as_str().to_owned());
    WireMessage {
        properties: Properties {
            content_type: s(properties.content_type()),
            content_encoding: s(properties.content_encoding()),
            delivery_mode: *properties.delivery_mode(),
            message_id: s(properties.message_id()),
            kind: s(properties.kind()),
            timestamp: *properties.timestamp(),
            app_id: s(properties.app_id()),
            correlation_id: s(properties.correlation_id()),
        },
        headers: properties
            .headers()
            .as_ref()
            .map(from_field_table)
            .unwrap_or_default(),
        body: Bytes::copy_from_slice(body),
    }
}

/// An AMQP field table as a header table.
pub fn from_field_table(table: &FieldTable) -> Headers {
    table
        .inner()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), from_amqp_value(v)))
        .collect()
}

/// One AMQP value as a header value.
pub fn from_amqp_value(value: &AMQPValue) -> HeaderValue {
    match value {
        AMQPValue::Boolean(b) => HeaderValue::Bool(*b),
        AMQPValue::ShortShortInt(i) => HeaderValue::Int(i64::from(*i)),
        AMQPValue::ShortShortUInt(i) => HeaderValue::Int(i64::from(*i)),
        AMQPValue::ShortInt(i) => HeaderValue::Int(i64::from(*i)),
        AMQPValue::ShortUInt(i) => HeaderValue::Int(i64::from(*i)),
        AMQPValue::LongInt(i) => HeaderValue::Int(i64::from(*i)),
        AMQPValue::LongUInt(i) => HeaderValue::Int(i64::from(*i)),
        AMQPValue::LongLongInt(i) => HeaderValue::Int(*i),
        AMQPValue::Float(f) => HeaderValue::Float(f64::from(*f)),
        AMQPValue::Double(f) => HeaderValue::Float(*f),
        AMQPValue::DecimalValue(d) => {
            HeaderValue::Float(f64::from(d.value) / 10f64.powi(i32::from(d.scale)))
        }
        AMQPValue::ShortString(s) => HeaderValue::String(s.as_str().to_owned()),
        AMQPValue::LongString(s) => match std::str::from_utf8(s.as_bytes()) {
            Ok(text) => HeaderValue::String(text.to_owned()),
            Err(_) => HeaderValue::Bytes(s.as_bytes().to_vec()),
        },
        AMQPValue::ByteArray(b) => HeaderValue::Bytes(b.as_slice().to_vec()),
        AMQPValue::FieldArray(a) => {
            HeaderValue::Array(a.as_slice().iter().map(from_amqp_value).collect())
        }
        AMQPValue::Timestamp(t) => HeaderValue::Timestamp(*t),
        AMQPValue::FieldTable(t) => HeaderValue::Table(from_field_table(t)),
        AMQPValue::Void => HeaderValue::Void,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::DecimalValue;

    fn sample() -> WireMessage {
        let mut headers = Headers::new();
        headers.insert("ce-id".into(), HeaderValue::String("id-1".into()));
        headers.insert("raw".into(), HeaderValue::Bytes(vec![0, 255, 1]));
        headers.insert("flag".into(), HeaderValue::Bool(true));
        headers.insert("n".into(), HeaderValue::Int(-42));
        headers.insert("big".into(), HeaderValue::Int(i64::MAX));
        headers.insert("f".into(), HeaderValue::Float(1.5));
        headers.insert("t".into(), HeaderValue::Timestamp(1_700_000_000));
        headers.insert(
            "arr".into(),
            HeaderValue::Array(vec![HeaderValue::Int(1), "two".into()]),
        );
        let mut nested = Headers::new();
        nested.insert("inner".into(), HeaderValue::Void);
        headers.insert("table".into(), HeaderValue::Table(nested));
        WireMessage {
            properties: Properties {
                content_type: Some("application/json".into()),
                content_encoding: Some("identity".into()),
                delivery_mode: Some(2),
                message_id: Some("id-1".into()),
                kind: Some("orders.order.created".into()),
                timestamp: Some(1_700_000_000),
                app_id: Some("orders".into()),
                correlation_id: Some("c-1".into()),
            },
            headers,
            body: Bytes::from_static(br#"{"orderId":"o-1"}"#),
        }
    }

    #[test]
    fn round_trips_every_property_and_header_type() {
        let message = sample();
        let props = to_amqp_properties(&message).unwrap();
        let back = from_amqp(&props, &message.body);
        assert_eq!(back, message);
    }

    #[test]
    fn reads_every_integer_width_and_odd_strings() {
        let mut table = BTreeMap::new();
        let cases = [
            ("a", AMQPValue::ShortShortInt(-8), HeaderValue::Int(-8)),
            ("b", AMQPValue::ShortShortUInt(200), HeaderValue::Int(200)),
            ("c", AMQPValue::ShortInt(-300), HeaderValue::Int(-300)),
            ("d", AMQPValue::ShortUInt(60000), HeaderValue::Int(60000)),
            ("e", AMQPValue::LongInt(-70000), HeaderValue::Int(-70000)),
            (
                "f",
                AMQPValue::LongUInt(4_000_000_000),
                HeaderValue::Int(4_000_000_000),
            ),
            ("g", AMQPValue::LongLongInt(-5), HeaderValue::Int(-5)),
            ("h", AMQPValue::Float(0.5), HeaderValue::Float(0.5)),
            (
                "i",
                AMQPValue::DecimalValue(DecimalValue {
                    scale: 2,
                    value: 150,
                }),
                HeaderValue::Float(1.5),
            ),
            ("j", AMQPValue::ShortString("short".into()), "short".into()),
            (
                "k",
                AMQPValue::LongString(LongString::from(vec![0xff, 0xfe])),
                HeaderValue::Bytes(vec![0xff, 0xfe]),
            ),
        ];
        for (k, v, _) in &cases {
            table.insert(ShortString::from(*k), v.clone());
        }
        let headers = from_field_table(&FieldTable::from(table));
        for (k, _, expected) in cases {
            assert_eq!(headers[k], expected, "header {k}");
        }
    }

    #[test]
    fn long_names_are_errors_not_panics() {
        let mut message = sample();
        message.set_header("x".repeat(300), "v");
        assert!(matches!(
            to_amqp_properties(&message),
            Err(WireError::HeaderName(_))
        ));
        let mut message = sample();
        message.properties.message_id = Some("y".repeat(256));
        assert_eq!(
            to_amqp_properties(&message),
            Err(WireError::Property { name: "message_id" })
        );
    }
}
