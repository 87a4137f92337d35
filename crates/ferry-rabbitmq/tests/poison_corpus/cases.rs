//! The corpus: messages a plain AMQP client can put on the wire, each with what a ferry
//! consumer must make of it (`docs/wire-format.md`): dead-lettered with a fault kind, or handled.
//!
//! Header values use only the AMQP field types RabbitMQ carries unchanged (long strings,
//! signed integers, doubles, booleans, timestamps, tables, arrays, byte arrays, void).

use std::collections::BTreeMap;

use ferry_core::FaultKind;
use lapin::{
    BasicProperties,
    types::{AMQPValue, ByteArray, FieldArray, FieldTable, LongString, ShortString},
};

/// The consumer's body limit in the test.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The consumer's header-count limit in the test.
pub const MAX_HEADERS: usize = 32;
/// The event type the consumer handles.
pub const TYPE: &str = "orders.order.created";
/// The header naming the case (a plain header: it becomes an extension, harmless).
pub const CASE_HEADER: &str = "test-case";

/// What must become of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// Dead-lettered at once with this kind.
    Fault(FaultKind),
    /// Handled: the handler sees this order id.
    Handled(String),
}

/// One entry of the corpus.
pub struct Case {
    pub name: &'static str,
    pub message: Raw,
    pub expect: Expect,
}

/// A message as a plain AMQP client builds it.
#[derive(Clone, Default)]
pub struct Raw {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub message_id: Option<String>,
    pub kind: Option<String>,
    pub timestamp: Option<u64>,
    pub headers: BTreeMap<String, AMQPValue>,
    pub body: Vec<u8>,
}

pub fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes()))
}

fn order_json(order_id: &str) -> String {
    format!(r#"{{"orderId":"{order_id}","totalAmount":1.5}}"#)
}

/// A JSON order body of exactly `len` bytes (padded with an ignored field).
fn order_json_of_len(order_id: &str, len: usize) -> Vec<u8> {
    let head = format!(r#"{{"orderId":"{order_id}","totalAmount":1.5,"pad":""#);
    let tail = "\"}";
    let pad = len - head.len() - tail.len();
    format!("{head}{}{tail}", "p".repeat(pad)).into_bytes()
}

impl Raw {
    /// A valid binary-mode event (RabbitMQ binding, `ce-` string headers) for `order_id`.
    pub fn binary(order_id: &str) -> Raw {
        let mut headers = BTreeMap::new();
        for (name, value) in [
            ("ce-specversion", "1.0"),
            ("ce-id", order_id),
            ("ce-type", TYPE),
            ("ce-source", "/raw-amqp-client"),
            ("ce-time", "2024-05-01T12:00:00Z"),
        ] {
            headers.insert(name.to_owned(), text(value));
        }
        Raw {
            content_type: Some("application/json".into()),
            headers,
            body: order_json(order_id).into_bytes(),
            ..Raw::default()
        }
    }

    /// A structured-mode event (`application/cloudevents+json`) with this JSON body.
    pub fn structured(body: &str) -> Raw {
        Raw {
            content_type: Some("application/cloudevents+json".into()),
            body: body.as_bytes().to_vec(),
            ..Raw::default()
        }
    }

    /// A plain message: no CloudEvents headers, `message_id` and `type` properties.
    pub fn plain(order_id: &str) -> Raw {
        Raw {
            content_type: Some("application/json".into()),
            message_id: Some(order_id.to_owned()),
            kind: Some(TYPE.to_owned()),
            body: order_json(order_id).into_bytes(),
            ..Raw::default()
        }
    }

    fn header(mut self, name: &str, value: AMQPValue) -> Raw {
        self.headers.insert(name.to_owned(), value);
        self
    }

    fn without(mut self, name: &str) -> Raw {
        self.headers.remove(name);
        self
    }

    fn body(mut self, body: impl Into<Vec<u8>>) -> Raw {
        self.body = body.into();
        self
    }

    fn content_type(mut self, content_type: Option<&str>) -> Raw {
        self.content_type = content_type.map(str::to_owned);
        self
    }

    /// `n` filler headers on top of what the message has.
    fn fillers(mut self, n: usize) -> Raw {
        for i in 0..n {
            self.headers.insert(format!("filler-{i:03}"), text("f"));
        }
        self
    }

    /// The AMQP properties, with the case's name in [`CASE_HEADER`].
    pub fn properties(&self, case: &str) -> BasicProperties {
        let short = |s: &String| ShortString::from(s.as_str());
        let mut p = BasicProperties::default().with_delivery_mode(2);
        if let Some(v) = &self.content_type {
            p = p.with_content_type(short(v));
        }
        if let Some(v) = &self.content_encoding {
            p = p.with_content_encoding(short(v));
        }
        if let Some(v) = &self.message_id {
            p = p.with_message_id(short(v));
        }
        if let Some(v) = &self.kind {
            p = p.with_type(short(v));
        }
        if let Some(v) = self.timestamp {
            p = p.with_timestamp(v);
        }
        let mut table: BTreeMap<ShortString, AMQPValue> = self
            .headers
            .iter()
            .map(|(k, v)| (ShortString::from(k.as_str()), v.clone()))
            .collect();
        table.insert(CASE_HEADER.into(), text(case));
        p.with_headers(FieldTable::from(table))
    }
}

fn fault(name: &'static str, message: Raw, kind: FaultKind) -> Case {
    Case {
        name,
        message,
        expect: Expect::Fault(kind),
    }
}

fn handled(name: &'static str, message: Raw, order_id: &str) -> Case {
    Case {
        name,
        message,
        expect: Expect::Handled(order_id.to_owned()),
    }
}

fn table(entries: &[(&str, AMQPValue)]) -> AMQPValue {
    let map: BTreeMap<ShortString, AMQPValue> = entries
        .iter()
        .map(|(k, v)| (ShortString::from(*k), v.clone()))
        .collect();
    AMQPValue::FieldTable(FieldTable::from(map))
}

fn structured_event(id: Option<&str>, extra: &str) -> String {
    let id = id.map(|id| format!(r#""id":"{id}","#)).unwrap_or_default();
    format!(
        r#"{{"specversion":"1.0",{id}"type":"{TYPE}","source":"/raw","time":"2024-05-01T12:00:00Z"{extra}}}"#
    )
}

/// The whole corpus.
pub fn corpus() -> Vec<Case> {
    use FaultKind::{Decode, MissingId, TooLarge, UnknownType, UnsupportedVersion};
    let b = Raw::binary;
    let valid_body = order_json("p-body");
    let mut cases = vec![
        // ---- bodies ------------------------------------------------------------------
        fault(
            "malformed-json",
            b("p-1").body(r#"{"orderId": "p-1", oops"#),
            Decode,
        ),
        fault(
            "truncated-body",
            b("p-2").body(&valid_body.as_bytes()[..valid_body.len() / 2]),
            Decode,
        ),
        fault(
            "truncated-in-a-utf8-character",
            b("p-3").body(&b"{\"orderId\":\"caf\xC3"[..]),
            Decode,
        ),
        fault(
            "invalid-utf8",
            b("p-4").body(&b"{\"orderId\":\"\xff\xfe\",\"totalAmount\":1}"[..]),
            Decode,
        ),
        fault(
            "latin1-body",
            b("p-5").body(&b"{\"orderId\":\"caf\xe9\"}"[..]),
            Decode,
        ),
        fault("empty-body", b("p-6").body(Vec::new()), Decode),
        fault("whitespace-body", b("p-7").body("  \n "), Decode),
        fault("json-null", b("p-8").body("null"), Decode),
        fault("json-array", b("p-9").body("[1,2,3]"), Decode),
        fault(
            "two-json-values",
            b("p-10").body(format!("{valid_body}{valid_body}")),
            Decode,
        ),
        fault(
            "wrong-field-type",
            b("p-11").body(r#"{"orderId":17,"totalAmount":"lots"}"#),
            Decode,
        ),
        fault(
            "missing-field",
            b("p-12").body(r#"{"totalAmount":1}"#),
            Decode,
        ),
        fault("deeply-nested", b("p-13").body("[".repeat(50_000)), Decode),
        fault("nul-bytes", b("p-14").body(vec![0u8; 64]), Decode),
        fault(
            "huge-body",
            b("p-15").body(order_json_of_len("p-15", 1024 * 1024)),
            TooLarge,
        ),
        fault(
            "body-one-byte-over-the-limit",
            b("p-16").body(order_json_of_len("p-16", MAX_BODY_BYTES + 1)),
            TooLarge,
        ),
        fault(
            "huge-and-malformed-body",
            b("p-17").body(vec![0xffu8; 2 * MAX_BODY_BYTES]),
            TooLarge,
        ),
        fault(
            "gzip-content-encoding",
            Raw {
                content_encoding: Some("gzip".into()),
                ..b("p-18")
            },
            Decode,
        ),
        fault(
            "text-plain-content-type",
            b("p-19").content_type(Some("text/plain")),
            Decode,
        ),
        fault(
            "batch-content-type",
            b("p-20").content_type(Some("application/cloudevents-batch+json")),
            Decode,
        ),
        // ---- header types --------------------------------------------------------------
        fault(
            "ce-time-as-a-table",
            b("p-21").header("ce-time", table(&[("seconds", AMQPValue::LongLongInt(1))])),
            Decode,
        ),
        fault(
            "ce-time-as-a-boolean",
            b("p-22").header("ce-time", AMQPValue::Boolean(true)),
            Decode,
        ),
        fault(
            "ce-time-as-a-double",
            b("p-23").header("ce-time", AMQPValue::Double(1.5)),
            Decode,
        ),
        fault(
            "ce-time-not-rfc3339",
            b("p-24").header("ce-time", text("yesterday")),
            Decode,
        ),
        fault(
            "ce-time-out-of-range",
            b("p-25").header("ce-time", AMQPValue::LongLongInt(i64::MAX)),
            Decode,
        ),
        fault(
            "ce-time-year-10000",
            b("p-26").header("ce-time", text("+10000-01-01T00:00:00Z")),
            Decode,
        ),
        fault(
            "ce-id-as-a-table",
            b("p-27").header("ce-id", table(&[("id", text("p-27"))])),
            Decode,
        ),
        fault(
            "ce-id-as-a-double",
            b("p-28").header("ce-id", AMQPValue::Double(28.5)),
            Decode,
        ),
        fault(
            "ce-id-as-an-array",
            b("p-29").header(
                "ce-id",
                AMQPValue::FieldArray(FieldArray::from(vec![text("p-29")])),
            ),
            Decode,
        ),
        fault(
            "ce-id-bytes-not-utf8",
            b("p-30").header(
                "ce-id",
                AMQPValue::ByteArray(ByteArray::from(vec![0xffu8, 0x00])),
            ),
            Decode,
        ),
        fault(
            "ce-type-as-a-boolean",
            b("p-31").header("ce-type", AMQPValue::Boolean(false)),
            Decode,
        ),
        fault(
            "ce-source-as-a-table",
            b("p-32").header("ce-source", table(&[])),
            Decode,
        ),
        fault(
            "ce-eventversion-as-a-double",
            b("p-33").header("ce-eventversion", AMQPValue::Double(1.0)),
            Decode,
        ),
        // ---- versions ------------------------------------------------------------------
        fault(
            "ce-specversion-0.3",
            b("p-34").header("ce-specversion", text("0.3")),
            Decode,
        ),
        fault(
            "ce-specversion-2.0",
            b("p-35").header("ce-specversion", text("2.0")),
            Decode,
        ),
        fault(
            "ce-specversion-as-an-integer",
            b("p-36").header("ce-specversion", AMQPValue::LongLongInt(1)),
            Decode,
        ),
        fault(
            "ce-specversion-missing",
            b("p-37").without("ce-specversion"),
            Decode,
        ),
        fault(
            "ce-specversion-void",
            b("p-38").header("ce-specversion", AMQPValue::Void),
            Decode,
        ),
        fault(
            "future-eventversion",
            b("p-39").header("ce-eventversion", text("2")),
            UnsupportedVersion,
        ),
        fault(
            "far-future-eventversion-as-an-integer",
            b("p-40").header("ce-eventversion", AMQPValue::LongLongInt(4_000_000_000)),
            UnsupportedVersion,
        ),
        fault(
            "eventversion-zero",
            b("p-41").header("ce-eventversion", text("0")),
            Decode,
        ),
        fault(
            "eventversion-negative",
            b("p-42").header("ce-eventversion", AMQPValue::LongLongInt(-1)),
            Decode,
        ),
        fault(
            "eventversion-not-a-number",
            b("p-43").header("ce-eventversion", text("v2")),
            Decode,
        ),
        fault(
            "eventversion-too-big-for-u32",
            b("p-44").header("ce-eventversion", text("4294967296")),
            Decode,
        ),
        // ---- types and ids -------------------------------------------------------------
        fault(
            "unknown-type",
            b("p-45").header("ce-type", text("orders.order.shipped")),
            UnknownType,
        ),
        fault(
            "type-of-another-context",
            b("p-46").header("ce-type", text("billing.invoice.paid")),
            UnknownType,
        ),
        fault("type-missing", b("p-47").without("ce-type"), Decode),
        fault("type-empty", b("p-48").header("ce-type", text("")), Decode),
        fault("id-missing", b("p-49").without("ce-id"), MissingId),
        fault("id-empty", b("p-50").header("ce-id", text("")), MissingId),
        fault(
            "id-void",
            b("p-51").header("ce-id", AMQPValue::Void),
            MissingId,
        ),
        fault(
            "plain-message-without-message-id",
            Raw {
                message_id: None,
                ..Raw::plain("p-52")
            },
            MissingId,
        ),
        fault(
            "plain-message-without-type",
            Raw {
                kind: None,
                ..Raw::plain("p-53")
            },
            Decode,
        ),
        fault(
            "plain-message-of-unknown-type",
            Raw {
                kind: Some("billing.invoice.paid".into()),
                ..Raw::plain("p-54")
            },
            UnknownType,
        ),
        fault(
            "plain-message-with-a-bad-timestamp",
            Raw {
                timestamp: Some(u64::MAX),
                ..Raw::plain("p-55")
            },
            Decode,
        ),
        // ---- limits --------------------------------------------------------------------
        fault(
            "one-header-over-the-limit",
            b("p-56").fillers(MAX_HEADERS - 5), // 5 ce- headers + the case header + fillers
            TooLarge,
        ),
        fault("thousand-headers", b("p-57").fillers(1000), TooLarge),
        // ---- structured mode -----------------------------------------------------------
        fault(
            "structured-specversion-0.3",
            Raw::structured(
                &structured_event(
                    Some("p-58"),
                    r#","data":{"orderId":"p-58","totalAmount":1}"#,
                )
                .replace(r#""specversion":"1.0""#, r#""specversion":"0.3""#),
            ),
            Decode,
        ),
        fault(
            "structured-specversion-2.0",
            Raw::structured(
                &structured_event(
                    Some("p-59"),
                    r#","data":{"orderId":"p-59","totalAmount":1}"#,
                )
                .replace(r#""specversion":"1.0""#, r#""specversion":"2.0""#),
            ),
            Decode,
        ),
        fault(
            "structured-specversion-missing",
            Raw::structured(
                &structured_event(
                    Some("p-60"),
                    r#","data":{"orderId":"p-60","totalAmount":1}"#,
                )
                .replace(r#""specversion":"1.0","#, ""),
            ),
            Decode,
        ),
        fault(
            "structured-specversion-as-an-object",
            Raw::structured(
                &structured_event(Some("p-61"), "")
                    .replace(r#""specversion":"1.0""#, r#""specversion":{"v":1}"#),
            ),
            Decode,
        ),
        fault(
            "structured-malformed",
            Raw::structured(r#"{"specversion":"1.0","id":"p-62","type":"#),
            Decode,
        ),
        fault(
            "structured-not-an-object",
            Raw::structured(r#"["1.0","p-63"]"#),
            Decode,
        ),
        fault("structured-empty-body", Raw::structured(""), Decode),
        fault(
            "structured-id-missing",
            Raw::structured(&structured_event(
                None,
                r#","data":{"orderId":"p-64","totalAmount":1}"#,
            )),
            MissingId,
        ),
        fault(
            "structured-id-as-an-object",
            Raw::structured(&structured_event(None, r#","id":{"n":65}"#)),
            Decode,
        ),
        fault(
            "structured-unknown-type",
            Raw::structured(
                &structured_event(Some("p-66"), r#","data":{}"#)
                    .replace(TYPE, "orders.order.shipped"),
            ),
            UnknownType,
        ),
        fault(
            "structured-future-eventversion",
            Raw::structured(&structured_event(
                Some("p-67"),
                r#","eventversion":"3","data":{"orderId":"p-67","totalAmount":1}"#,
            )),
            UnsupportedVersion,
        ),
        fault(
            "structured-data-of-the-wrong-shape",
            Raw::structured(&structured_event(Some("p-68"), r#","data":"an order""#)),
            Decode,
        ),
        fault(
            "structured-without-data",
            Raw::structured(&structured_event(Some("p-69"), "")),
            Decode,
        ),
        fault(
            "structured-bad-base64",
            Raw::structured(&structured_event(
                Some("p-70"),
                r#","data_base64":"!!not base64!!""#,
            )),
            Decode,
        ),
        fault(
            "structured-data-and-data-base64",
            Raw::structured(&structured_event(
                Some("p-71"),
                r#","data":{"orderId":"p-71","totalAmount":1},"data_base64":"e30=""#,
            )),
            Decode,
        ),
        fault(
            "structured-time-as-an-array",
            Raw::structured(
                &structured_event(Some("p-72"), r#","data":{}"#)
                    .replace(r#""time":"2024-05-01T12:00:00Z""#, r#""time":[2024]"#),
            ),
            Decode,
        ),
        fault(
            "structured-invalid-utf8",
            Raw::structured("").body(&b"{\"specversion\":\"1.0\",\"id\":\"\xff\"}"[..]),
            Decode,
        ),
        // ---- accepted: odd but valid forms (`docs/wire-format.md`) -------------------------------
        handled(
            "ce-id-as-an-integer",
            b("a-1").header("ce-id", AMQPValue::LongLongInt(1_000_001)),
            "a-1",
        ),
        handled(
            "ce-time-as-an-amqp-timestamp",
            b("a-2").header("ce-time", AMQPValue::Timestamp(1_714_564_800)),
            "a-2",
        ),
        handled(
            "ce-time-as-integer-milliseconds",
            b("a-3").header("ce-time", AMQPValue::LongLongInt(1_714_564_800_123)),
            "a-3",
        ),
        handled(
            "ce-eventversion-as-an-integer",
            b("a-4").header("ce-eventversion", AMQPValue::LongLongInt(1)),
            "a-4",
        ),
        handled(
            "utf8-byte-order-mark",
            b("a-5").body([&b"\xEF\xBB\xBF"[..], order_json("a-5").as_bytes()].concat()),
            "a-5",
        ),
        handled("no-content-type", b("a-6").content_type(None), "a-6"),
        handled("plain-message", Raw::plain("a-7"), "a-7"),
        handled(
            "amqp-binding-prefix",
            {
                let mut raw = b("a-8");
                raw.headers = raw
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.replace("ce-", "cloudEvents_"), v))
                    .collect();
                raw
            },
            "a-8",
        ),
        handled(
            "structured-mode",
            Raw::structured(&structured_event(
                Some("a-9"),
                r#","data":{"orderId":"a-9","totalAmount":1}"#,
            )),
            "a-9",
        ),
        handled(
            "body-exactly-at-the-limit",
            b("a-10").body(order_json_of_len("a-10", MAX_BODY_BYTES)),
            "a-10",
        ),
        handled(
            "headers-exactly-at-the-limit",
            b("a-11").fillers(MAX_HEADERS - 6),
            "a-11",
        ),
        handled(
            "unknown-fields-and-odd-extensions",
            b("a-12")
                .body(r#"{"orderId":"a-12","totalAmount":1,"unknown":[{"x":null}]}"#)
                .header("ce-tenant", table(&[]))
                .header("x-trace", AMQPValue::Boolean(true))
                .header("weird", AMQPValue::ByteArray(ByteArray::from(vec![0xffu8]))),
            "a-12",
        ),
    ];
    cases.sort_by_key(|c| c.name);
    cases
}
