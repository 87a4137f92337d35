//! Poison messages: each is dead-lettered with its fault kind, and valid messages after it are
//! still handled.

mod common;

use std::{collections::BTreeMap, time::Duration};

use bytes::Bytes;
use common::{Env, OrderCreated, forwarding, order, recv_n};
use ferry_core::{
    Envelope, FaultKind, HeaderValue, Headers, Limits, OutgoingMessage, Publisher, RetryPolicy,
    WireMessage, codec,
};
use tokio::sync::mpsc;

fn valid(n: usize) -> WireMessage {
    codec::encode(&order(n), &Envelope::for_event::<OrderCreated>()).unwrap()
}

fn case(name: &str, mut m: WireMessage) -> (String, WireMessage) {
    m.set_header("test-case", name);
    (name.to_owned(), m)
}

#[tokio::test]
async fn each_poison_message_is_dead_lettered_with_its_kind_and_the_stream_goes_on() {
    let env = Env::new("poison").await;
    let (dlx, dl_handle, mut dead) = env.dead_letters().await;
    let queue = env.queue("poison");
    let (tx, mut handled) = mpsc::unbounded_channel();
    let consumer = env
        .bus
        .consumer(queue.clone())
        .bind("orders.#")
        .prefetch(1)
        .concurrency(1)
        .dead_letter(dlx)
        .retry(RetryPolicy::exponential(3, Duration::from_millis(100)))
        .limits(Limits {
            max_body_bytes: 1024,
            max_headers: 64,
        })
        .handle::<OrderCreated>(forwarding(tx))
        .start()
        .await
        .unwrap();
    env.cleanup.retry_queues(&queue, &[100, 200, 400]);

    let mut cases: Vec<(String, WireMessage, FaultKind)> = Vec::new();
    let mut push = |(name, m): (String, WireMessage), kind| cases.push((name, m, kind));

    let mut m = valid(100);
    m.body = Bytes::from_static(b"{\"orderId\": \"o-100\", oops");
    push(case("invalid-json", m), FaultKind::Decode);

    let mut m = valid(101);
    m.body = Bytes::from_static(&[0xff, 0xfe, 0x00]);
    push(case("not-utf8", m), FaultKind::Decode);

    let mut m = valid(102);
    m.set_header("ce-type", "orders.order.shipped");
    m.properties.kind = Some("orders.order.shipped".into());
    push(case("unknown-type", m), FaultKind::UnknownType);

    let mut m = valid(103);
    m.set_header("ce-eventversion", "7");
    push(case("newer-version", m), FaultKind::UnsupportedVersion);

    let mut m = valid(104);
    m.headers.remove("ce-id");
    m.properties.message_id = None;
    push(case("no-id", m), FaultKind::MissingId);

    let mut m = valid(105);
    let big = format!("{{\"orderId\":\"{}\",\"totalAmount\":1}}", "x".repeat(2000));
    m.body = Bytes::from(big);
    push(case("too-large", m), FaultKind::TooLarge);

    let mut m = valid(106);
    for i in 0..100 {
        m.set_header(format!("x-filler-{i}"), "f");
    }
    push(case("too-many-headers", m), FaultKind::TooLarge);

    let mut m = valid(107);
    m.headers.insert("ce-time".into(), HeaderValue::Bool(true));
    push(case("time-as-bool", m), FaultKind::Decode);

    let mut m = valid(108);
    let mut t = Headers::new();
    t.insert("nested".into(), HeaderValue::Int(1));
    m.headers.insert("ce-id".into(), HeaderValue::Table(t));
    m.properties.message_id = None;
    push(case("id-as-table", m), FaultKind::Decode);

    let mut m = valid(109);
    m.headers
        .insert("ce-specversion".into(), HeaderValue::Array(vec![]));
    push(case("specversion-as-array", m), FaultKind::Decode);

    let mut m = valid(110);
    m.body = Bytes::from_static(b"{\"orderId\": 17}");
    push(case("wrong-field-type", m), FaultKind::Decode);

    // Each poison message is followed by a valid one.
    let mut outgoing = Vec::new();
    for (i, (_, m, _)) in cases.iter().enumerate() {
        outgoing.push(OutgoingMessage::new("orders.order.created", m.clone()));
        outgoing.push(OutgoingMessage::new("orders.order.created", valid(i)));
    }
    for r in env.bus.publish_messages(outgoing).await {
        r.unwrap();
    }

    let got = recv_n(&mut handled, cases.len(), Duration::from_secs(20)).await;
    let mut handled_ids: Vec<String> = got.into_iter().map(|(e, _)| e.order_id).collect();
    handled_ids.sort();
    let mut expected: Vec<String> = (0..cases.len()).map(|i| format!("o-{i}")).collect();
    expected.sort();
    assert_eq!(handled_ids, expected, "every valid message was handled");

    let dead_letters = recv_n(&mut dead, cases.len(), Duration::from_secs(20)).await;
    let by_case: BTreeMap<String, FaultKind> = dead_letters
        .iter()
        .map(|d| {
            (
                d.message.header_str("test-case").unwrap_or("?").to_owned(),
                d.fault.kind,
            )
        })
        .collect();
    for (name, _, kind) in &cases {
        assert_eq!(by_case.get(name), Some(kind), "case `{name}`: {by_case:?}");
    }
    for d in &dead_letters {
        // Poison is never retried.
        assert_eq!(d.fault.attempts, 1, "{:?}", d.fault);
        assert_eq!(d.fault.original_queue.as_deref(), Some(queue.as_str()));
        assert!(!d.fault.message.is_empty());
    }
    consumer.shutdown().await;
    assert_eq!(env.bus.queue_counts(&queue).await.unwrap(), (0, 0));
    dl_handle.shutdown().await;
}
