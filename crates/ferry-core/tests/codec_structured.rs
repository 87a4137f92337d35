//! Decoding structured-mode messages (`content_type = application/cloudevents+json`).

use bytes::Bytes;
use chrono::{DateTime, Utc};
use ferry_core::{
    FaultKind, Properties, WireMessage,
    codec::{self, Decoded},
};

const BODY: &[u8] = br#"{"orderId":"o-1"}"#;

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .with_timezone(&Utc)
}

fn ok(message: &WireMessage) -> Decoded {
    match codec::decode(message) {
        Ok(decoded) => decoded,
        Err(e) => panic!("expected the message to decode, got {e}"),
    }
}

fn structured(json: &str) -> WireMessage {
    WireMessage {
        properties: Properties {
            content_type: Some("application/cloudevents+json; charset=utf-8".into()),
            ..Properties::default()
        },
        body: Bytes::from(json.to_owned()),
        ..WireMessage::default()
    }
}

#[test]
fn structured_mode_reads_the_event_and_its_json_data() {
    let message = structured(
        r#"{"specversion":"1.0","id":"s-1","type":"orders.order.created","source":"/orders",
            "time":"2024-05-01T12:00:00Z","datacontenttype":"application/json",
            "eventversion":"2","correlationid":"c-1","causationid":"k-1","subject":"o/1",
            "traceparent":"00-t-s-01","tenant":"acme","priority":5,"flag":false,
            "data":{"orderId":"o-1"}}"#,
    );
    let decoded = ok(&message);
    let e = &decoded.envelope;
    assert_eq!(e.id, "s-1");
    assert_eq!(e.event_type, "orders.order.created");
    assert_eq!(e.source, "/orders");
    assert_eq!(e.time, at("2024-05-01T12:00:00Z"));
    assert_eq!(e.event_version, 2);
    assert_eq!(e.correlation_id.as_deref(), Some("c-1"));
    assert_eq!(e.causation_id.as_deref(), Some("k-1"));
    assert_eq!(e.subject.as_deref(), Some("o/1"));
    assert_eq!(e.traceparent.as_deref(), Some("00-t-s-01"));
    assert_eq!(e.extensions.get("tenant").map(String::as_str), Some("acme"));
    assert_eq!(e.extensions.get("priority").map(String::as_str), Some("5"));
    assert_eq!(e.extensions.get("flag").map(String::as_str), Some("false"));
    assert_eq!(e.extensions.len(), 3);
    assert_eq!(&decoded.data[..], BODY);
}

#[test]
fn structured_mode_reads_data_base64_numbers_and_no_data() {
    // {"orderId":"o-1"} in base64; time as milliseconds; eventversion as a number.
    let message = structured(
        r#"{"specversion":"1.0","id":"s-1","type":"a.b.c","time":1714564800123,
            "eventversion":3,"data_base64":"eyJvcmRlcklkIjoiby0xIn0="}"#,
    );
    let decoded = ok(&message);
    assert_eq!(&decoded.data[..], BODY);
    assert_eq!(decoded.envelope.time, at("2024-05-01T12:00:00.123Z"));
    assert_eq!(decoded.envelope.event_version, 3);
    assert_eq!(decoded.envelope.source, "");

    let decoded = ok(&structured(
        r#"{"specversion":"1.0","id":"s-1","type":"a.b.c"}"#,
    ));
    assert_eq!(&decoded.data[..], b"null");
}

#[test]
fn structured_mode_ignores_ce_headers_but_reads_plain_ones() {
    let mut message =
        structured(r#"{"specversion":"1.0","id":"s-1","type":"a.b.c","tenant":"body"}"#);
    message.set_header("ce-id", "header-id");
    message.set_header("Region", "eu");
    message.set_header("tenant", "header");
    let e = ok(&message).envelope;
    assert_eq!(e.id, "s-1");
    assert_eq!(e.extensions.get("Region").map(String::as_str), Some("eu"));
    assert_eq!(e.extensions.get("tenant").map(String::as_str), Some("body"));
}

#[test]
fn structured_mode_falls_back_to_the_properties() {
    let mut message = structured(r#"{"specversion":"1.0","type":"a.b.c","data":1}"#);
    message.properties.message_id = Some("prop-id".into());
    message.properties.app_id = Some("app".into());
    let e = ok(&message).envelope;
    assert_eq!((e.id.as_str(), e.source.as_str()), ("prop-id", "app"));
}

#[test]
fn structured_mode_faults() {
    for (json, kind, mentions) in [
        (
            r#"{"id":"1","type":"a.b.c"}"#,
            FaultKind::Decode,
            "specversion",
        ),
        (
            r#"{"specversion":"0.3","id":"1","type":"a.b.c"}"#,
            FaultKind::Decode,
            "0.3",
        ),
        (
            r#"{"specversion":"1.0","type":"a.b.c"}"#,
            FaultKind::MissingId,
            "id",
        ),
        (
            r#"{"specversion":"1.0","id":"1"}"#,
            FaultKind::Decode,
            "type",
        ),
        (r#"[1,2]"#, FaultKind::Decode, "JSON object"),
        (r#"{"specversion":"1.0""#, FaultKind::Decode, "JSON"),
        (
            r#"{"specversion":"1.0","id":"1","type":"a.b.c","data":1,"data_base64":"MQ=="}"#,
            FaultKind::Decode,
            "both",
        ),
        (
            r#"{"specversion":"1.0","id":"1","type":"a.b.c","data_base64":"!!"}"#,
            FaultKind::Decode,
            "base64",
        ),
        (
            r#"{"specversion":"1.0","id":"1","type":"a.b.c","data_base64":"aGVsbG8="}"#,
            FaultKind::Decode,
            "JSON",
        ),
        (
            r#"{"specversion":"1.0","id":"1","type":"a.b.c","datacontenttype":"text/plain","data":"hi"}"#,
            FaultKind::Decode,
            "text/plain",
        ),
        (
            r#"{"specversion":"1.0","id":{"a":1},"type":"a.b.c"}"#,
            FaultKind::Decode,
            "id",
        ),
        (
            r#"{"specversion":"1.0","id":"1","type":"a.b.c","eventversion":0}"#,
            FaultKind::Decode,
            "eventversion",
        ),
        (
            r#"{"specversion":"1.0","id":"1","type":"a.b.c","time":"noon"}"#,
            FaultKind::Decode,
            "RFC 3339",
        ),
    ] {
        let e = codec::decode(&structured(json)).unwrap_err();
        assert_eq!(e.kind, kind, "{json}: {e}");
        assert!(e.message.contains(mentions), "{json}: {e}");
    }
}
