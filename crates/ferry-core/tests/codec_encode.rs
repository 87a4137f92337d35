//! Encoding: the exact wire form of an event (`docs/wire-format.md`) and the extension rule.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use ferry_core::{
    Envelope, HeaderValue, IntegrationEvent, Properties,
    codec::{self, EncodeError},
};
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[serde(rename_all = "camelCase")]
#[event(name = "orders.order.created", version = 2)]
struct OrderCreated {
    order_id: String,
    total_amount: f64,
}

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .with_timezone(&Utc)
}

fn s(value: &str) -> HeaderValue {
    HeaderValue::String(value.to_owned())
}

#[test]
fn an_encoded_event_carries_exactly_the_contract_properties_and_headers() {
    let mut envelope = Envelope::for_event::<OrderCreated>()
        .with_id("0190b2f4-0000-7000-8000-000000000001")
        .with_source("orders-service")
        .with_correlation_id("corr-1")
        .with_causation_id("cause-1")
        .with_subject("order/o-1");
    envelope.time = at("2024-05-01T12:34:56.123456Z");
    envelope.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
    let event = OrderCreated {
        order_id: "o-1".into(),
        total_amount: 12.5,
    };

    let message = codec::encode(&event, &envelope).unwrap();

    assert_eq!(
        &message.body[..],
        br#"{"orderId":"o-1","totalAmount":12.5}"#
    );
    assert_eq!(
        message.properties,
        Properties {
            content_type: Some("application/json".into()),
            content_encoding: None,
            delivery_mode: Some(2),
            message_id: Some("0190b2f4-0000-7000-8000-000000000001".into()),
            kind: Some("orders.order.created".into()),
            timestamp: Some(1_714_566_896),
            app_id: Some("orders-service".into()),
            correlation_id: Some("corr-1".into()),
        }
    );
    let expected: BTreeMap<String, HeaderValue> = [
        ("ce-specversion", "1.0"),
        ("ce-id", "0190b2f4-0000-7000-8000-000000000001"),
        ("ce-type", "orders.order.created"),
        ("ce-source", "orders-service"),
        ("ce-time", "2024-05-01T12:34:56.123456Z"),
        ("ce-eventversion", "2"),
        ("ce-correlationid", "corr-1"),
        ("ce-causationid", "cause-1"),
        (
            "ce-traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("ce-subject", "order/o-1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), s(v)))
    .collect();
    assert_eq!(message.headers, expected);
}

#[test]
fn optional_attributes_are_left_out_and_the_version_defaults_to_1() {
    let mut envelope = Envelope::new("orders.order.created").with_id("id-1");
    envelope.time = at("2024-05-01T12:00:00Z");
    let message = codec::encode_data(&envelope, Bytes::from_static(b"{}"));
    let names: Vec<&str> = message.headers.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "ce-eventversion",
            "ce-id",
            "ce-source",
            "ce-specversion",
            "ce-time",
            "ce-type"
        ]
    );
    assert_eq!(message.header_str("ce-eventversion"), Some("1"));
    assert_eq!(message.header_str("ce-source"), Some("ferry"));
    assert_eq!(message.header_str("ce-time"), Some("2024-05-01T12:00:00Z"));
    assert_eq!(message.properties.correlation_id, None);
    assert_eq!(message.properties.app_id.as_deref(), Some("ferry"));
}

#[test]
fn time_keeps_its_fractional_digits() {
    let mut envelope = Envelope::new("a.b.c");
    for (time, written) in [
        ("2024-05-01T12:00:00.5Z", "2024-05-01T12:00:00.500Z"),
        ("2024-05-01T12:00:00.000001Z", "2024-05-01T12:00:00.000001Z"),
        (
            "2024-05-01T12:00:00.000000001Z",
            "2024-05-01T12:00:00.000000001Z",
        ),
        ("2024-05-01T14:00:00+02:00", "2024-05-01T12:00:00Z"),
    ] {
        envelope.time = at(time);
        let message = codec::encode_data(&envelope, Bytes::from_static(b"null"));
        assert_eq!(message.header_str("ce-time"), Some(written));
        assert_eq!(codec::decode(&message).unwrap().envelope.time, at(time));
    }
}

#[test]
fn a_time_before_1970_has_no_timestamp_property_but_round_trips() {
    let mut envelope = Envelope::new("a.b.c");
    envelope.time = at("1969-07-20T20:17:40Z");
    let message = codec::encode_data(&envelope, Bytes::from_static(b"1"));
    assert_eq!(message.properties.timestamp, None);
    assert_eq!(message.header_str("ce-time"), Some("1969-07-20T20:17:40Z"));
    assert_eq!(codec::decode(&message).unwrap().envelope, envelope);
}

#[test]
fn extensions_travel_by_the_documented_rule_and_come_back() {
    let mut envelope = Envelope::new("a.b.c");
    for (name, value) in [
        ("tenant", "acme"),        // a CloudEvents name → ce-tenant
        ("Tenant-Id", "t-1"),      // not a CloudEvents name → plain header
        ("id", "not-the-id"),      // an owned name → plain header, never the id
        ("x-region", "eu"),        // a broker-style name → ce-x-region
        ("ferry-note", "n"),       // a ferry-style name → ce-ferry-note
        ("ce-subject", "not-it"),  // a prefixed owned name → ce-ce-subject
        ("dataschema", "urn:s:1"), // a CloudEvents attribute ferry has no field for
    ] {
        envelope.extensions.insert(name.into(), value.into());
    }
    let message = codec::encode_data(&envelope, Bytes::from_static(b"{}"));
    assert_eq!(message.header("ce-tenant"), Some(&s("acme")));
    assert_eq!(message.header("Tenant-Id"), Some(&s("t-1")));
    assert_eq!(message.header("id"), Some(&s("not-the-id")));
    assert_eq!(message.header("ce-x-region"), Some(&s("eu")));
    assert_eq!(message.header("ce-ferry-note"), Some(&s("n")));
    assert_eq!(message.header("ce-ce-subject"), Some(&s("not-it")));
    assert_eq!(message.header("ce-dataschema"), Some(&s("urn:s:1")));
    assert_eq!(message.header("ce-subject"), None);
    assert_eq!(message.header_str("ce-id"), Some(envelope.id.as_str()));

    let decoded = codec::decode(&message).unwrap();
    assert_eq!(decoded.envelope, envelope);
}

#[test]
fn an_event_serde_refuses_is_an_encode_error_naming_the_type() {
    #[derive(Serialize, Deserialize)]
    struct Bad {
        map: HashMap<Vec<u8>, u8>,
    }
    impl IntegrationEvent for Bad {
        const NAME: &'static str = "test.bad.event";
    }
    let bad = Bad {
        map: HashMap::from([(vec![1], 1)]),
    };
    let err = codec::encode(&bad, &Envelope::for_event::<Bad>()).unwrap_err();
    let EncodeError::Json { event_type, .. } = &err;
    assert_eq!(event_type, "test.bad.event");
    assert!(err.to_string().contains("test.bad.event"), "{err}");
}
