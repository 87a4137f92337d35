//! The confirmed publisher against the real broker: envelope round trip, topic routing,
//! unroutable messages, confirm timeouts, an unavailable broker.

mod common;

use std::{collections::BTreeMap, time::Duration};

use bytes::Bytes;
use common::{Env, OrderCreated, order};
use ferry_core::{
    BindingPattern, HeaderValue, Headers, OutgoingMessage, Properties, PublishError,
    PublishOptions, Publisher, PublisherExt, WireMessage,
    codec::{self, ContentMode},
    publisher::InContentMode,
};
use ferry_rabbitmq::{RabbitMq, Subscription};
use ferry_testkit::{ProxyMode, TcpProxy};

async fn next(sub: &mut Subscription) -> ferry_rabbitmq::Received {
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("a message within 10 s")
        .expect("subscription open")
        .expect("a message")
}

#[tokio::test]
async fn every_envelope_field_survives_the_round_trip() {
    let env = Env::with_options("pub-rt", |o| o.with_source("orders-service")).await;
    let mut sub = env.bus.subscribe(&["orders.#"]).await.unwrap();

    let mut headers = BTreeMap::new();
    headers.insert("tenant".to_owned(), "acme".to_owned());
    let options = PublishOptions {
        routing_key: Some("orders.order.created.eu".into()),
        id: Some("0190a0f0-0000-7000-8000-000000000001".into()),
        source: None,
        correlation_id: Some("corr-1".into()),
        causation_id: Some("cause-1".into()),
        subject: Some("order/o-7".into()),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        headers,
        partition_key: None,
    };
    let event = order(7);
    let id = env.bus.publish_with(&event, options.clone()).await.unwrap();
    assert_eq!(id, "0190a0f0-0000-7000-8000-000000000001");

    let got = next(&mut sub).await;
    assert_eq!(got.routing_key, "orders.order.created.eu");
    assert_eq!(got.exchange, env.exchange);
    let m = &got.message;
    // The properties of `docs/wire-format.md`.
    assert_eq!(
        m.properties.content_type.as_deref(),
        Some("application/json")
    );
    assert_eq!(m.properties.delivery_mode, Some(2));
    assert_eq!(m.properties.message_id.as_deref(), Some(id.as_str()));
    assert_eq!(m.properties.kind.as_deref(), Some("orders.order.created"));
    assert_eq!(m.properties.app_id.as_deref(), Some("orders-service"));
    assert_eq!(m.properties.correlation_id.as_deref(), Some("corr-1"));
    assert!(m.properties.timestamp.is_some());
    assert_eq!(m.header_str("ce-specversion"), Some("1.0"));
    assert_eq!(m.header_str("ce-id"), Some(id.as_str()));

    // Everything decodes back to what was sent.
    let decoded = codec::decode(m).expect("ferry reads what it wrote");
    let sent = options.envelope_for::<OrderCreated>(Some("orders-service"));
    let e = &decoded.envelope;
    assert_eq!(e.id, sent.id);
    assert_eq!(e.event_type, "orders.order.created");
    assert_eq!(e.source, "orders-service");
    assert_eq!(e.event_version, 1);
    assert_eq!(e.correlation_id.as_deref(), Some("corr-1"));
    assert_eq!(e.causation_id.as_deref(), Some("cause-1"));
    assert_eq!(e.subject.as_deref(), Some("order/o-7"));
    assert_eq!(e.traceparent, sent.traceparent);
    assert_eq!(e.extensions.get("tenant").map(String::as_str), Some("acme"));
    assert!((e.time - chrono::Utc::now()).num_seconds().abs() < 60);
    let back: OrderCreated = codec::decode_event(&decoded).unwrap();
    assert_eq!(back, event);
    sub.close().await;
}

#[tokio::test]
async fn structured_mode_carries_the_same_event_without_header_tables() {
    let env = Env::with_options("pub-structured", |o| o.with_source("orders-service")).await;
    let mut sub = env.bus.subscribe(&["orders.#"]).await.unwrap();
    let structured = InContentMode::new(&env.bus, ContentMode::Structured);

    let mut headers = BTreeMap::new();
    headers.insert("tenant".to_owned(), "acme".to_owned());
    let options = PublishOptions {
        correlation_id: Some("corr-9".into()),
        headers,
        ..PublishOptions::default()
    };
    let event = order(9);
    let id = structured.publish_with(&event, options).await.unwrap();

    let got = next(&mut sub).await;
    let m = &got.message;
    assert_eq!(
        m.properties.content_type.as_deref(),
        Some("application/cloudevents+json")
    );
    assert_eq!(m.properties.message_id.as_deref(), Some(id.as_str()));
    assert!(
        m.headers.keys().all(|h| !h.starts_with("ce-")),
        "no CloudEvents headers in structured mode: {:?}",
        m.headers
    );
    let body: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["tenant"], "acme");
    let decoded = codec::decode(m).expect("ferry reads structured mode");
    assert_eq!(decoded.envelope.id, id);
    assert_eq!(decoded.envelope.source, "orders-service");
    assert_eq!(decoded.envelope.correlation_id.as_deref(), Some("corr-9"));
    let back: OrderCreated = codec::decode_event(&decoded).unwrap();
    assert_eq!(back, event);

    // Still mandatory: an event no queue takes is an error, not a silent drop.
    let unroutable = structured
        .publish_with(
            &order(10),
            PublishOptions {
                routing_key: Some("nobody.listens.here".into()),
                ..PublishOptions::default()
            },
        )
        .await;
    assert!(
        matches!(unroutable, Err(PublishError::Unroutable { .. })),
        "{unroutable:?}"
    );
}

#[tokio::test]
async fn raw_messages_keep_every_header_type() {
    let env = Env::new("pub-raw").await;
    let mut sub = env.bus.subscribe(&["raw.*"]).await.unwrap();
    let mut headers = Headers::new();
    headers.insert("s".into(), "text".into());
    headers.insert("b".into(), HeaderValue::Bytes(vec![0, 159, 146, 150]));
    headers.insert("t".into(), HeaderValue::Bool(false));
    headers.insert("i".into(), HeaderValue::Int(-1234567890123));
    headers.insert("f".into(), HeaderValue::Float(2.25));
    headers.insert("ts".into(), HeaderValue::Timestamp(1_717_171_717));
    headers.insert(
        "a".into(),
        HeaderValue::Array(vec![HeaderValue::Int(1), HeaderValue::Bool(true)]),
    );
    let mut inner = Headers::new();
    inner.insert("x".into(), HeaderValue::Void);
    headers.insert("tbl".into(), HeaderValue::Table(inner));
    let message = WireMessage {
        properties: Properties {
            content_type: Some("application/octet-stream".into()),
            content_encoding: Some("gzip".into()),
            delivery_mode: Some(2),
            message_id: Some("raw-1".into()),
            kind: Some("raw.kind.x".into()),
            timestamp: Some(1_717_171_717),
            app_id: Some("raw-app".into()),
            correlation_id: Some("c".into()),
        },
        headers,
        body: Bytes::from_static(&[0, 1, 2, 255]),
    };
    env.bus
        .publish_message(OutgoingMessage::new("raw.one", message.clone()))
        .await
        .unwrap();
    let got = next(&mut sub).await;
    assert_eq!(got.message, message);
    sub.close().await;
}

#[tokio::test]
async fn topic_patterns_route_as_rabbitmq_does() {
    let env = Env::new("pub-topic").await;
    let patterns = [
        "orders.*.created",
        "orders.#",
        "#.created",
        "*.order.*",
        "#",
        "inventory.stock.reserved",
        "*",
        "orders.#.eu",
        "a.*.#.z",
    ];
    let keys = [
        "orders.order.created",
        "orders.order.created.eu",
        "orders",
        "orders.eu",
        "inventory.stock.reserved",
        "billing.invoice.created",
        "x",
        "a.b.z",
        "a.b.c.d.z",
        "a.z",
        "",
    ];
    let mut subs = Vec::new();
    for p in patterns {
        subs.push((p, env.bus.subscribe(&[p]).await.unwrap()));
    }
    for (i, key) in keys.iter().enumerate() {
        let mut m = WireMessage::default();
        m.properties.message_id = Some(format!("k{i}"));
        env.bus
            .publish_message(OutgoingMessage::new(*key, m))
            .await
            .expect("routable: `#` matches every key");
    }
    for (p, sub) in &mut subs {
        let pattern = BindingPattern::new(*p).unwrap();
        let expected: Vec<&str> = keys
            .iter()
            .copied()
            .filter(|k| pattern.matches(k))
            .collect();
        let mut got = Vec::new();
        for _ in 0..expected.len() {
            got.push(next(sub).await.routing_key);
        }
        assert_eq!(got, expected, "pattern `{p}`");
        let extra = tokio::time::timeout(Duration::from_millis(300), sub.next()).await;
        assert!(
            extra.is_err(),
            "pattern `{p}` got more than ferry's matcher says"
        );
    }
    for (_, sub) in subs {
        sub.close().await;
    }
}

#[tokio::test]
async fn unroutable_publish_is_an_error() {
    let env = Env::new("pub-unroutable").await;
    let err = env.bus.publish(&order(1)).await.unwrap_err();
    assert_eq!(
        err,
        PublishError::Unroutable {
            exchange: env.exchange.clone(),
            routing_key: "orders.order.created".into(),
        }
    );
    assert!(!err.is_unavailable());
}

#[tokio::test]
async fn a_batch_reports_each_message_and_matches_returns_to_their_publish() {
    let env = Env::new("pub-batch").await;
    let mut sub = env.bus.subscribe(&["routed.#"]).await.unwrap();
    let messages: Vec<OutgoingMessage> = (0..200)
        .map(|i| {
            let key = if i % 7 == 3 { "lost.key" } else { "routed.key" };
            let mut m = WireMessage::default();
            m.properties.message_id = Some(format!("m-{i}"));
            OutgoingMessage::new(key, m)
        })
        .collect();
    let results = env.bus.publish_messages(messages).await;
    assert_eq!(results.len(), 200);
    for (i, r) in results.iter().enumerate() {
        if i % 7 == 3 {
            assert!(
                matches!(r, Err(PublishError::Unroutable { routing_key, .. }) if routing_key == "lost.key"),
                "message {i}: {r:?}"
            );
        } else {
            assert_eq!(r, &Ok(()), "message {i}");
        }
    }
    let routed = (0..200).filter(|i| i % 7 != 3).count();
    for _ in 0..routed {
        next(&mut sub).await;
    }
    sub.close().await;
}

#[tokio::test]
async fn a_confirm_that_never_comes_times_out() {
    ferry_testkit::init_tracing();
    let proxy = TcpProxy::start(ferry_testkit::amqp::broker_addr())
        .await
        .unwrap();
    let cleanup = common::Cleanup::default();
    let exchange = cleanup.exchange(ferry_testkit::unique_name("pub-timeout.events"));
    let options = common::options(&exchange)
        .with_url(ferry_testkit::amqp::amqp_url_via(proxy.addr()))
        .with_confirm_timeout(Duration::from_millis(800));
    let bus = RabbitMq::connect(options).await.unwrap();
    let sub = bus.subscribe(&["#"]).await.unwrap();
    // Confirms work through the proxy...
    bus.publish(&order(1)).await.unwrap();
    // ...until the broker's replies stop reaching us.
    proxy.set_mode(ProxyMode::StallDownstream);
    let started = std::time::Instant::now();
    let err = bus.publish(&order(2)).await.unwrap_err();
    assert!(
        matches!(
            err,
            PublishError::ConfirmTimeout {
                timeout_ms: 800,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(800));
    proxy.set_mode(ProxyMode::Pass);
    // Once replies flow again, publishing works again.
    let mut ok = false;
    for _ in 0..50 {
        if bus.publish(&order(3)).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "publishing recovers after the stall");
    sub.close().await;
    bus.close().await;
}

#[tokio::test]
async fn publishing_while_the_broker_is_unreachable_is_unavailable() {
    ferry_testkit::init_tracing();
    let proxy = TcpProxy::start(ferry_testkit::amqp::broker_addr())
        .await
        .unwrap();
    let cleanup = common::Cleanup::default();
    let exchange = cleanup.exchange(ferry_testkit::unique_name("pub-down.events"));
    let options = common::options(&exchange)
        .with_url(ferry_testkit::amqp::amqp_url_via(proxy.addr()))
        .with_publish_reconnect_wait(Duration::from_millis(500));
    let bus = RabbitMq::connect(options).await.unwrap();
    let sub = bus.subscribe(&["#"]).await.unwrap();
    bus.publish(&order(1)).await.unwrap();

    proxy.set_mode(ProxyMode::Refuse);
    proxy.cut_all();
    let err = bus.publish(&order(2)).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");

    proxy.set_mode(ProxyMode::Pass);
    bus.wait_connected(Duration::from_secs(10)).await.unwrap();
    // The subscription died with the connection; a new one sees new messages.
    drop(sub);
    let mut sub = bus.subscribe(&["#"]).await.unwrap();
    let id = bus.publish(&order(3)).await.unwrap();
    let got = next(&mut sub).await;
    assert_eq!(
        got.message.properties.message_id.as_deref(),
        Some(id.as_str())
    );
    sub.close().await;
    bus.close().await;
}

/// A broker that stops reading the connection (as RabbitMQ does to publishers during a memory
/// alarm) must not hang a publish: the batch fails within its confirm timeout, sending
/// included, and publishing works again once the broker reads again.
#[tokio::test]
async fn a_broker_that_stops_reading_fails_a_batch_within_its_timeout() {
    ferry_testkit::init_tracing();
    let proxy = TcpProxy::start(ferry_testkit::amqp::broker_addr())
        .await
        .unwrap();
    let cleanup = common::Cleanup::default();
    let exchange = cleanup.exchange(ferry_testkit::unique_name("pub-stall.events"));
    let options = common::options(&exchange)
        .with_url(ferry_testkit::amqp::amqp_url_via(proxy.addr()))
        .with_confirm_timeout(Duration::from_secs(2));
    let bus = RabbitMq::connect(options).await.unwrap();
    let sub = bus.subscribe(&["#"]).await.unwrap();
    bus.publish(&order(1)).await.unwrap();

    proxy.set_mode(ProxyMode::StallUpstream);
    // 40 messages of 256 KiB: more than the socket buffers hold, so the writes block.
    let big = OrderCreated {
        order_id: "x".repeat(256 * 1024),
        total_amount: 1.0,
    };
    let messages: Vec<OutgoingMessage> = (0..40)
        .map(|i| {
            PublishOptions {
                id: Some(format!("big-{i}")),
                ..PublishOptions::default()
            }
            .message_for(&big, None)
            .unwrap()
        })
        .collect();
    let started = std::time::Instant::now();
    let results = tokio::time::timeout(Duration::from_secs(30), bus.publish_messages(messages))
        .await
        .expect("the batch returned instead of hanging on its writes");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2 + 5), "took {took:?}");
    assert_eq!(results.len(), 40);
    for result in &results {
        assert!(
            matches!(
                result,
                Err(PublishError::ConfirmTimeout { .. } | PublishError::Unavailable(_))
            ),
            "{result:?}"
        );
    }

    proxy.set_mode(ProxyMode::Pass);
    let mut ok = false;
    for _ in 0..100 {
        if bus.publish(&order(3)).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "publishing recovers once the broker reads again");
    sub.close().await;
    bus.close().await;
}
