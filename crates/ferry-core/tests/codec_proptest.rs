//! Property tests of the codec.
//!
//! - `encode_then_decode_is_the_identity`: any envelope (non-empty id and type, any source,
//!   times from year 1 to 9999 at microsecond precision, any version ≥ 1, optional correlation,
//!   causation, subject and traceparent, empty strings included, extensions of any name and
//!   value) with any JSON data comes back unchanged, and the typed event too.
//! - `decode_never_panics_*`: arbitrary bodies (bytes, JSON, structured-mode objects), header
//!   tables (nested `HeaderValue` trees under CloudEvents, ferry and broker names as well as
//!   random ones) and properties; and valid messages mutated at random. Whatever decodes obeys
//!   the envelope's invariants and survives a second encode and decode unchanged, and
//!   `decode_event` on it never panics either.
//!
//! Case counts: `PROPTEST_CASES` when set, else the defaults below. `.ci/run` also runs them
//! with `PROPTEST_CASES=20000` in release: the long run that must find no panic.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use ferry_core::{
    Envelope, HeaderValue, Headers, IntegrationEvent, Properties, Upcaster, WireMessage, codec,
};
use proptest::prelude::*;
use serde_json::{Map, Number, Value};

fn config(default_cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    // ProptestConfig::default() already reads PROPTEST_CASES; only replace its own default.
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default_cases;
    }
    config
}

// ---- strategies --------------------------------------------------------------------------

fn any_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..max).prop_map(String::from_iter)
}

fn non_empty_text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(any::<char>(), 1..40).prop_map(String::from_iter),
        "[a-z][a-z0-9-]{0,10}\\.[a-z][a-z0-9-]{0,10}\\.[a-z][a-z0-9-]{0,10}",
        Just(uuid_like()),
    ]
}

fn uuid_like() -> String {
    "0190b2f4-0000-7000-8000-000000000001".to_owned()
}

/// Times from 0001-01-01 to 9999-12-31, at microsecond precision.
fn any_time() -> impl Strategy<Value = DateTime<Utc>> {
    (-62_135_596_800_000_000_i64..253_402_300_799_999_999_i64)
        .prop_map(|micros| DateTime::from_timestamp_micros(micros).unwrap())
}

fn extension_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9]{1,20}",
        "[A-Za-z][A-Za-z0-9_.-]{0,15}",
        "(x-|X-|ferry-|ce-|CE-|cloudEvents_|cloudevents:)[a-z0-9-]{0,8}",
        prop::sample::select(vec![
            "id",
            "type",
            "source",
            "time",
            "specversion",
            "datacontenttype",
            "eventversion",
            "subject",
            "correlationid",
            "dataschema",
            "data",
            "",
        ])
        .prop_map(str::to_owned),
        any_text(12),
    ]
}

fn any_envelope() -> impl Strategy<Value = Envelope> {
    (
        (non_empty_text(), non_empty_text(), any_text(30), any_time()),
        (
            1..=u32::MAX,
            prop::option::of(any_text(30)),
            prop::option::of(any_text(30)),
            prop::option::of(any_text(30)),
            prop::option::of(any_text(60)),
        ),
        prop::collection::btree_map(extension_name(), any_text(20), 0..6),
    )
        .prop_map(
            |(
                (id, event_type, source, time),
                (event_version, correlation_id, causation_id, subject, traceparent),
                extensions,
            )| Envelope {
                id,
                event_type,
                source,
                time,
                event_version,
                correlation_id,
                causation_id,
                subject,
                traceparent,
                extensions,
            },
        )
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter_map("finite", Number::from_f64)
            .prop_map(Value::Number),
        any_text(20).prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any_text(8), inner, 0..6)
                .prop_map(|m| Value::Object(Map::from_iter(m))),
        ]
    })
}

fn attribute_name() -> impl Strategy<Value = String> {
    let attributes = vec![
        "specversion",
        "id",
        "type",
        "source",
        "time",
        "datacontenttype",
        "eventversion",
        "correlationid",
        "causationid",
        "traceparent",
        "subject",
        "tenant",
        "",
    ];
    let prefixes = vec![
        "ce-",
        "cloudEvents_",
        "cloudEvents:",
        "CE-",
        "ferry-",
        "x-",
        "",
    ];
    prop_oneof![
        3 => (prop::sample::select(prefixes), prop::sample::select(attributes))
            .prop_map(|(p, a)| format!("{p}{a}")),
        1 => any_text(16),
    ]
}

fn leaf_header_value() -> impl Strategy<Value = HeaderValue> {
    prop_oneof![
        prop::sample::select(vec![
            "1.0",
            "0.3",
            "1",
            "2",
            "0",
            "-1",
            "",
            "2024-05-01T12:00:00Z",
            "2024-05-01T12:00:00.123456789+05:30",
            "9999-12-31T23:59:59.999999999Z",
            "orders.order.created",
            "application/json",
            "text/plain",
        ])
        .prop_map(HeaderValue::from),
        any_text(20).prop_map(HeaderValue::String),
        prop::collection::vec(any::<u8>(), 0..16).prop_map(HeaderValue::Bytes),
        any::<bool>().prop_map(HeaderValue::Bool),
        any::<i64>().prop_map(HeaderValue::Int),
        (-100_000_000_000_000_i64..400_000_000_000_000).prop_map(HeaderValue::Int),
        any::<f64>().prop_map(HeaderValue::Float),
        any::<u64>().prop_map(HeaderValue::Timestamp),
        (0_u64..300_000_000_000).prop_map(HeaderValue::Timestamp),
        Just(HeaderValue::Void),
    ]
}

fn any_header_value() -> impl Strategy<Value = HeaderValue> {
    let tree = leaf_header_value().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(HeaderValue::Array),
            prop::collection::btree_map(any_text(6), inner, 0..4).prop_map(HeaderValue::Table),
        ]
    });
    // Mostly scalars, so that many arbitrary messages get past the attributes.
    prop_oneof![4 => leaf_header_value(), 1 => tree]
}

fn any_headers() -> impl Strategy<Value = Headers> {
    prop::collection::btree_map(attribute_name(), any_header_value(), 0..12)
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        prop::sample::select(vec![
            "application/json",
            "application/cloudevents+json",
            "application/cloudevents+json; charset=utf-8",
            "application/cloudevents-batch+json",
            "text/plain",
            "application/vnd.x+json",
            "",
            ";",
        ])
        .prop_map(str::to_owned),
        any_text(20),
    ])
}

fn any_properties() -> impl Strategy<Value = Properties> {
    (
        (
            content_type(),
            prop::option::weighted(0.1, prop_oneof![Just("gzip".to_owned()), any_text(8)]),
            prop::option::of(any::<u8>()),
        ),
        (
            prop::option::of(any_text(20)),
            prop::option::of(any_text(20)),
            prop::option::of(any::<u64>()),
            prop::option::of(any_text(20)),
            prop::option::of(any_text(20)),
        ),
    )
        .prop_map(
            |(
                (content_type, content_encoding, delivery_mode),
                (message_id, kind, timestamp, app_id, correlation_id),
            )| Properties {
                content_type,
                content_encoding,
                delivery_mode,
                message_id,
                kind,
                timestamp,
                app_id,
                correlation_id,
            },
        )
}

/// A structured-mode body: an object with attribute names (often well-formed) and any values.
fn structured_body() -> impl Strategy<Value = Vec<u8>> {
    let names = prop_oneof![
        prop::sample::select(vec![
            "specversion",
            "id",
            "type",
            "source",
            "time",
            "datacontenttype",
            "eventversion",
            "subject",
            "data",
            "data_base64",
            "tenant",
        ])
        .prop_map(str::to_owned),
        any_text(8),
    ];
    let value = prop_oneof![
        prop::sample::select(vec![
            "1.0",
            "2024-05-01T12:00:00Z",
            "3",
            "eyJhIjoxfQ==",
            "!!",
            "application/json",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
        any_json(),
    ];
    (
        any::<bool>(),
        prop::collection::btree_map(names, value, 0..8),
    )
        .prop_map(|(valid_core, mut object)| {
            if valid_core {
                object.insert("specversion".into(), Value::from("1.0"));
                object.insert("id".into(), Value::from("s-1"));
                object.insert("type".into(), Value::from("a.b.c"));
            }
            serde_json::to_vec(&Map::from_iter(object)).unwrap()
        })
}

fn any_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        any_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        structured_body(),
        any_json().prop_map(|v| {
            let mut bytes = b"\xEF\xBB\xBF".to_vec();
            bytes.extend(serde_json::to_vec(&v).unwrap());
            bytes
        }),
    ]
}

// ---- a typed event for decode_event ------------------------------------------------------

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct AnyData(Value);

fn wrap(value: Value) -> Result<Value, String> {
    if value.is_null() {
        Err("null cannot be upcast".into())
    } else {
        Ok(Value::Array(vec![value]))
    }
}

impl IntegrationEvent for AnyData {
    const NAME: &'static str = "test.any.data";
    const VERSION: u32 = 3;
    const UPCASTERS: &'static [Upcaster] = &[Upcaster {
        from: 2,
        apply: wrap,
    }];
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Strict {
    a: u8,
}

impl IntegrationEvent for Strict {
    const NAME: &'static str = "test.strict.data";
}

/// Checks what holds of anything `decode` accepts; never panics itself on `Err`.
fn check_decoded(message: &WireMessage) -> Result<(), TestCaseError> {
    let Ok(decoded) = codec::decode(message) else {
        return Ok(());
    };
    let envelope = &decoded.envelope;
    prop_assert!(!envelope.id.is_empty());
    prop_assert!(!envelope.event_type.is_empty());
    prop_assert!(envelope.event_version >= 1);
    prop_assert!(serde_json::from_slice::<Value>(&decoded.data).is_ok());
    // A second trip through the wire changes nothing.
    let again = codec::decode(&codec::encode_data(envelope, decoded.data.clone()));
    prop_assert_eq!(again.as_ref(), Ok(&decoded));
    let _ = codec::decode_event::<AnyData>(&decoded);
    let _ = codec::decode_event::<Strict>(&decoded);
    Ok(())
}

// ---- properties --------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn encode_then_decode_is_the_identity(envelope in any_envelope(), data in any_json()) {
        let body = Bytes::from(serde_json::to_vec(&data).unwrap());
        let message = codec::encode_data(&envelope, body.clone());
        prop_assert!(message.headers.values().all(|v| matches!(v, HeaderValue::String(_))));
        prop_assert_eq!(message.properties.message_id.as_deref(), Some(envelope.id.as_str()));
        let decoded = codec::decode(&message);
        prop_assert_eq!(decoded.as_ref().map(|d| &d.envelope), Ok(&envelope));
        prop_assert_eq!(decoded.as_ref().map(|d| &d.data), Ok(&body));

        // And the typed event, at the current version.
        let mut envelope = envelope;
        envelope.event_version = AnyData::VERSION;
        let message = codec::encode(&AnyData(data.clone()), &envelope).unwrap();
        let decoded = codec::decode(&message).unwrap();
        let event = codec::decode_event::<AnyData>(&decoded).unwrap();
        // serde_json's own float parsing is not always exact (no `float_roundtrip`): compare
        // with what serde reads from the bytes, which the codec carried unchanged.
        let expected: Value = serde_json::from_slice(&body).unwrap();
        prop_assert_eq!(event.0, expected);
    }

    #[test]
    fn decode_never_panics_on_arbitrary_messages(
        properties in any_properties(),
        headers in any_headers(),
        body in any_body(),
    ) {
        check_decoded(&WireMessage { properties, headers, body: Bytes::from(body) })?;
    }

    #[test]
    fn decode_never_panics_on_structured_mode_bodies(
        body in structured_body(),
        headers in any_headers(),
        message_id in prop::option::of(any_text(8)),
    ) {
        let message = WireMessage {
            properties: Properties {
                content_type: Some("application/cloudevents+json".into()),
                message_id,
                ..Properties::default()
            },
            headers,
            body: Bytes::from(body),
        };
        check_decoded(&message)?;
    }

    #[test]
    fn decode_never_panics_on_mutated_valid_messages(
        envelope in any_envelope(),
        data in any_json(),
        replaced in any_headers(),
        removed in prop::collection::vec(attribute_name(), 0..4),
        properties in prop::option::of(any_properties()),
    ) {
        let mut message = codec::encode_data(&envelope, Bytes::from(serde_json::to_vec(&data).unwrap()));
        for name in &removed {
            message.headers.remove(name);
        }
        message.headers.extend(replaced);
        if let Some(properties) = properties {
            message.properties = properties;
        }
        check_decoded(&message)?;
    }
}

/// Not a property, but the reason the idempotence check above can hold: a decoded message
/// with every extension kind re-encodes to the same envelope.
#[test]
fn extension_values_of_every_scalar_kind_survive_a_second_trip() {
    let mut message = codec::encode_data(&Envelope::new("a.b.c"), Bytes::from_static(b"{}"));
    for (name, value) in [
        ("ce-int", HeaderValue::Int(-7)),
        ("ce-bool", HeaderValue::Bool(false)),
        ("ce-float", HeaderValue::Float(f64::NAN)),
        ("ce-ts", HeaderValue::Timestamp(0)),
        ("ce-bytes", HeaderValue::Bytes(b"b".to_vec())),
    ] {
        message.set_header(name, value);
    }
    let decoded = codec::decode(&message).unwrap();
    let values: BTreeMap<&str, &str> = decoded
        .envelope
        .extensions
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        values,
        BTreeMap::from([
            ("bool", "false"),
            ("bytes", "b"),
            ("float", "NaN"),
            ("int", "-7"),
            ("ts", "1970-01-01T00:00:00Z"),
        ])
    );
    let again = codec::decode(&codec::encode_data(&decoded.envelope, decoded.data.clone()));
    assert_eq!(again, Ok(decoded));
}
