//! Decoding binary-mode and plain messages: every form `docs/wire-format.md` accepts, and every way
//! a message fails. Structured mode is in `codec_structured.rs`.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use ferry_core::{
    FaultKind, HeaderValue, Properties, WireMessage,
    codec::{self, DecodeError, Decoded},
};

const BODY: &[u8] = br#"{"orderId":"o-1"}"#;

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .with_timezone(&Utc)
}

/// A binary-mode message with `prefix`ed string headers and a JSON body.
fn binary(prefix: &str, attributes: &[(&str, &str)]) -> WireMessage {
    let mut message = WireMessage {
        body: Bytes::from_static(BODY),
        ..WireMessage::default()
    };
    for (name, value) in attributes {
        message.set_header(format!("{prefix}{name}"), *value);
    }
    message
}

fn minimal(prefix: &str) -> WireMessage {
    binary(
        prefix,
        &[
            ("specversion", "1.0"),
            ("id", "id-1"),
            ("type", "orders.order.created"),
            ("source", "orders"),
            ("time", "2024-05-01T12:00:00Z"),
        ],
    )
}

fn ok(message: &WireMessage) -> Decoded {
    match codec::decode(message) {
        Ok(decoded) => decoded,
        Err(e) => panic!("expected the message to decode, got {e}"),
    }
}

fn fault(message: &WireMessage) -> DecodeError {
    match codec::decode(message) {
        Ok(decoded) => panic!("expected a fault, got {decoded:?}"),
        Err(e) => e,
    }
}

fn assert_fault(message: &WireMessage, kind: FaultKind, mentions: &str) {
    let e = fault(message);
    assert_eq!(e.kind, kind, "{e}");
    assert!(
        e.message.contains(mentions),
        "`{}` should mention `{mentions}`",
        e.message
    );
}

// ---- binary mode -------------------------------------------------------------------------

#[test]
fn binary_mode_reads_all_three_prefixes() {
    for prefix in ["ce-", "cloudEvents_", "cloudEvents:", "CE-", "cloudevents_"] {
        let decoded = ok(&minimal(prefix));
        let e = &decoded.envelope;
        assert_eq!(e.id, "id-1", "{prefix}");
        assert_eq!(e.event_type, "orders.order.created");
        assert_eq!(e.source, "orders");
        assert_eq!(e.time, at("2024-05-01T12:00:00Z"));
        assert_eq!(e.event_version, 1);
        assert!(e.extensions.is_empty(), "{:?}", e.extensions);
        assert_eq!(&decoded.data[..], BODY);
    }
}

#[test]
fn binary_mode_reads_every_attribute() {
    let message = binary(
        "ce-",
        &[
            ("specversion", "1.0"),
            ("id", "id-1"),
            ("type", "orders.order.created"),
            ("source", "orders"),
            ("time", "2024-05-01T12:00:00.25+02:00"),
            ("eventversion", "3"),
            ("correlationid", "c-1"),
            ("causationid", "k-1"),
            ("traceparent", "00-abc-def-01"),
            ("subject", "order/1"),
            ("tenant", "acme"),
        ],
    );
    let e = ok(&message).envelope;
    assert_eq!(e.time, at("2024-05-01T10:00:00.25Z"));
    assert_eq!(e.event_version, 3);
    assert_eq!(e.correlation_id.as_deref(), Some("c-1"));
    assert_eq!(e.causation_id.as_deref(), Some("k-1"));
    assert_eq!(e.traceparent.as_deref(), Some("00-abc-def-01"));
    assert_eq!(e.subject.as_deref(), Some("order/1"));
    assert_eq!(e.extensions.get("tenant").map(String::as_str), Some("acme"));
    assert_eq!(e.extensions.len(), 1);
}

#[test]
fn ce_prefix_wins_over_the_amqp_binding_prefixes() {
    let mut message = minimal("cloudEvents:");
    message.set_header("cloudEvents_id", "from-underscore");
    assert_eq!(ok(&message).envelope.id, "from-underscore");
    message.set_header("ce-id", "from-ce");
    assert_eq!(ok(&message).envelope.id, "from-ce");
}

#[test]
fn time_is_read_as_an_amqp_timestamp_or_integer_milliseconds() {
    let expected = at("2024-05-01T12:00:00.123Z");
    let mut message = minimal("cloudEvents_");
    message.set_header(
        "cloudEvents_time",
        HeaderValue::Int(expected.timestamp_millis()),
    );
    assert_eq!(ok(&message).envelope.time, expected);

    message.set_header(
        "cloudEvents_time",
        HeaderValue::Timestamp(expected.timestamp() as u64),
    );
    assert_eq!(ok(&message).envelope.time, at("2024-05-01T12:00:00Z"));
}

#[test]
fn integers_and_utf8_byte_arrays_stand_for_strings() {
    let mut message = minimal("ce-");
    message.set_header("ce-id", HeaderValue::Int(42));
    message.set_header("ce-eventversion", HeaderValue::Int(2));
    message.set_header("ce-source", HeaderValue::Bytes(b"orders".to_vec()));
    message.set_header("ce-subject", HeaderValue::Void);
    let e = ok(&message).envelope;
    assert_eq!(e.id, "42");
    assert_eq!(e.event_version, 2);
    assert_eq!(e.source, "orders");
    assert_eq!(e.subject, None);
}

#[test]
fn properties_fill_in_missing_attributes_and_headers_win() {
    let mut message = binary("ce-", &[("specversion", "1.0"), ("type", "a.b.c")]);
    message.properties = Properties {
        message_id: Some("prop-id".into()),
        kind: Some("prop.type.x".into()),
        app_id: Some("prop-source".into()),
        timestamp: Some(1_714_564_800),
        correlation_id: Some("prop-corr".into()),
        ..Properties::default()
    };
    let e = ok(&message).envelope;
    assert_eq!(e.id, "prop-id");
    assert_eq!(e.event_type, "a.b.c");
    assert_eq!(e.source, "prop-source");
    assert_eq!(e.time, at("2024-05-01T12:00:00Z"));
    assert_eq!(e.correlation_id.as_deref(), Some("prop-corr"));

    message.set_header("ce-id", "header-id");
    message.set_header("ce-correlationid", "header-corr");
    let e = ok(&message).envelope;
    assert_eq!(e.id, "header-id");
    assert_eq!(e.correlation_id.as_deref(), Some("header-corr"));
}

#[test]
fn an_empty_id_header_falls_back_to_message_id() {
    let mut message = minimal("ce-");
    message.set_header("ce-id", "");
    message.properties.message_id = Some("prop-id".into());
    assert_eq!(ok(&message).envelope.id, "prop-id");
}

#[test]
fn plain_headers_become_extensions_except_ferrys_and_the_brokers() {
    let mut message = minimal("ce-");
    message.set_header("Tenant-Id", "t-1");
    message.set_header("priority", HeaderValue::Int(5));
    message.set_header("urgent", HeaderValue::Bool(true));
    message.set_header("ferry-attempt", HeaderValue::Int(2));
    message.set_header("x-death", HeaderValue::Array(vec![]));
    message.set_header("x-first-death-queue", "q");
    message.set_header("nested", HeaderValue::Table(Default::default()));
    message.set_header("blob", HeaderValue::Bytes(vec![0xff, 0xfe]));
    message.set_header("region", "plain");
    message.set_header("ce-region", "cloudevents");
    let extensions = ok(&message).envelope.extensions;
    let pairs: Vec<(&str, &str)> = extensions
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("Tenant-Id", "t-1"),
            ("priority", "5"),
            ("region", "cloudevents"),
            ("urgent", "true"),
        ]
    );
}

// ---- plain messages ----------------------------------------------------------------------

fn plain() -> WireMessage {
    WireMessage {
        properties: Properties {
            message_id: Some("m-1".into()),
            kind: Some("orders.order.created".into()),
            ..Properties::default()
        },
        body: Bytes::from_static(BODY),
        ..WireMessage::default()
    }
}

#[test]
fn a_plain_message_needs_only_type_and_message_id() {
    let before = Utc::now() - chrono::Duration::seconds(1);
    let decoded = ok(&plain());
    let e = &decoded.envelope;
    assert_eq!(e.id, "m-1");
    assert_eq!(e.event_type, "orders.order.created");
    assert_eq!(e.source, "");
    assert_eq!(e.event_version, 1);
    assert_eq!(e.correlation_id, None);
    assert!(e.time >= before && e.time <= Utc::now(), "{}", e.time);
    assert_eq!(&decoded.data[..], BODY);
}

#[test]
fn a_plain_message_reads_timestamp_app_id_and_correlation_id() {
    let mut message = plain();
    message.properties.timestamp = Some(1_714_564_800);
    message.properties.app_id = Some("legacy-app".into());
    message.properties.correlation_id = Some("c-9".into());
    message.properties.content_type = Some("application/json; charset=utf-8".into());
    let e = ok(&message).envelope;
    assert_eq!(e.time, at("2024-05-01T12:00:00Z"));
    assert_eq!(e.source, "legacy-app");
    assert_eq!(e.correlation_id.as_deref(), Some("c-9"));
}

#[test]
fn a_plain_message_without_message_id_is_missing_id() {
    let mut message = plain();
    message.properties.message_id = None;
    assert_fault(&message, FaultKind::MissingId, "message_id");
    message.properties.message_id = Some(String::new());
    assert_fault(&message, FaultKind::MissingId, "message_id");
}

#[test]
fn a_plain_message_without_type_is_a_decode_fault() {
    let mut message = plain();
    message.properties.kind = None;
    assert_fault(&message, FaultKind::Decode, "type");
}

// ---- content type and body ---------------------------------------------------------------

#[test]
fn a_missing_content_type_means_json_and_json_variants_are_accepted() {
    for content_type in [
        None,
        Some("application/json"),
        Some("text/json"),
        Some("application/vnd.acme.order+json; charset=utf-8"),
    ] {
        let mut message = minimal("ce-");
        message.properties.content_type = content_type.map(str::to_owned);
        assert_eq!(&ok(&message).data[..], BODY, "{content_type:?}");
    }
}

#[test]
fn ce_datacontenttype_stands_in_for_a_missing_content_type_property() {
    let mut message = minimal("ce-");
    message.set_header("ce-datacontenttype", "text/plain");
    assert_fault(&message, FaultKind::Decode, "text/plain");
    message.properties.content_type = Some("application/json".into());
    ok(&message);
}

#[test]
fn a_byte_order_mark_is_dropped() {
    let mut message = minimal("ce-");
    message.body = Bytes::from([b"\xEF\xBB\xBF".as_slice(), BODY].concat());
    assert_eq!(&ok(&message).data[..], BODY);
}

#[test]
fn body_and_content_faults() {
    type Change = Box<dyn Fn(&mut WireMessage)>;
    let cases: Vec<(Change, &str)> = vec![
        (
            Box::new(|m| m.properties.content_type = Some("text/plain".into())),
            "text/plain",
        ),
        (
            Box::new(|m| {
                m.properties.content_type = Some("application/cloudevents-batch+json".into())
            }),
            "batch",
        ),
        (
            Box::new(|m| m.properties.content_encoding = Some("gzip".into())),
            "gzip",
        ),
        (
            Box::new(|m| m.body = Bytes::from_static(b"{\"a\":")),
            "JSON",
        ),
        (Box::new(|m| m.body = Bytes::new()), "JSON"),
        (Box::new(|m| m.body = Bytes::from_static(b"hello")), "JSON"),
        (Box::new(|m| m.body = Bytes::from_static(b"{} {}")), "JSON"),
        (
            Box::new(|m| m.body = Bytes::from_static(b"\"caf\xe9\"")),
            "UTF-8",
        ),
    ];
    for (change, mentions) in cases {
        let mut message = minimal("ce-");
        change(&mut message);
        assert_fault(&message, FaultKind::Decode, mentions);
    }
}

// ---- attribute faults --------------------------------------------------------------------

#[test]
fn a_missing_or_empty_id_is_missing_id() {
    let mut message = minimal("ce-");
    message.headers.remove("ce-id");
    assert_fault(&message, FaultKind::MissingId, "id");
    message.set_header("ce-id", "");
    assert_fault(&message, FaultKind::MissingId, "id");
    message.set_header("ce-id", HeaderValue::Void);
    assert_fault(&message, FaultKind::MissingId, "id");
}

#[test]
fn a_cloudevents_message_without_specversion_is_a_decode_fault() {
    for prefix in ["ce-", "cloudEvents_", "cloudEvents:"] {
        let mut message = minimal(prefix);
        message.headers.remove(&format!("{prefix}specversion"));
        // The properties would make it a valid plain message, but its CloudEvents headers
        // say it is a binary-mode event, which must name its version.
        message.properties.message_id = Some("m-1".into());
        message.properties.kind = Some("orders.order.created".into());
        assert_fault(&message, FaultKind::Decode, "specversion");
        message.set_header(format!("{prefix}specversion"), HeaderValue::Void);
        assert_fault(&message, FaultKind::Decode, "specversion");
    }
    // An extension alone is enough to make it a CloudEvents message.
    let mut message = plain();
    message.set_header("ce-tenant", "acme");
    assert_fault(&message, FaultKind::Decode, "specversion");
}

#[test]
fn attribute_faults_are_decode_faults_that_say_what_is_wrong() {
    let cases: Vec<(&str, HeaderValue, &str)> = vec![
        ("ce-type", HeaderValue::Void, "type"),
        ("ce-type", "".into(), "type"),
        ("ce-specversion", "0.3".into(), "0.3"),
        ("ce-specversion", "1".into(), "specversion"),
        ("ce-eventversion", "0".into(), "eventversion"),
        ("ce-eventversion", "two".into(), "eventversion"),
        ("ce-eventversion", "1.5".into(), "eventversion"),
        ("ce-eventversion", HeaderValue::Int(-1), "eventversion"),
        ("ce-eventversion", HeaderValue::Bool(true), "eventversion"),
        ("ce-time", "yesterday".into(), "RFC 3339"),
        ("ce-time", HeaderValue::Float(1.5), "time"),
        ("ce-time", HeaderValue::Timestamp(u64::MAX), "out of range"),
        ("ce-time", HeaderValue::Int(i64::MAX), "out of range"),
        ("ce-time", "+10000-01-01T00:00:00Z".into(), "time"),
        ("ce-id", HeaderValue::Table(Default::default()), "id"),
        ("ce-source", HeaderValue::Bytes(vec![0xc3, 0x28]), "UTF-8"),
        ("ce-subject", HeaderValue::Array(vec![]), "subject"),
    ];
    for (header, value, mentions) in cases {
        let mut message = minimal("ce-");
        message.set_header(header, value.clone());
        let e = fault(&message);
        assert_eq!(e.kind, FaultKind::Decode, "{header}={value:?}: {e}");
        assert!(e.message.contains(mentions), "{header}={value:?}: {e}");
    }
}

#[test]
fn a_bad_timestamp_property_is_a_decode_fault() {
    let mut message = plain();
    message.properties.timestamp = Some(u64::MAX);
    assert_fault(&message, FaultKind::Decode, "out of range");
}
