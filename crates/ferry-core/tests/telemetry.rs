//! Telemetry without an OpenTelemetry layer: the spans and their fields as `tracing` sees
//! them, a traceparent travelling unchanged, the traceparent format, destinations and health.

use std::time::Duration;

use ferry_core::{
    CancellationToken, ConsumerHandle, HandlerError, MessageContext, OutboxRelay, OutboxStats,
    OutgoingMessage, PublishOptions, WireMessage,
    memory::{MemoryBus, MemoryOutbox},
    telemetry::{self, Health, TraceParent},
};
use ferry_testkit::watch::Capture;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Debug, Clone, Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[serde(rename_all = "camelCase")]
#[event(name = "orders.order.created")]
struct OrderCreated {
    order_id: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[serde(rename_all = "camelCase")]
#[event(name = "inventory.stock.reserved")]
struct StockReserved {
    order_id: u32,
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("timed out")
        .expect("channel closed")
}

/// A traceparent given by hand reaches the consumer unchanged through the outbox and relay,
/// and `PublishOptions::caused_by` carries it to the next event (with or without the
/// `opentelemetry` feature: no OpenTelemetry layer is installed here).
#[tokio::test]
async fn a_traceparent_travels_unchanged_and_spans_carry_the_messaging_fields() {
    let capture = Capture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let bus = MemoryBus::new("myapp.events");
    let outbox = MemoryOutbox::new();
    let (tx, mut rx) = mpsc::unbounded_channel::<MessageContext>();
    let inventory_outbox = outbox.clone();
    let inventory_tx = tx.clone();
    let inventory = bus
        .consumer("inventory.order-created")
        .bind("orders.order.created")
        .dead_letter("myapp.dlx")
        .handle::<OrderCreated>(move |event: OrderCreated, ctx: MessageContext| {
            let outbox = inventory_outbox.clone();
            let tx = inventory_tx.clone();
            async move {
                outbox.add_with(
                    &StockReserved {
                        order_id: event.order_id,
                    },
                    PublishOptions::caused_by(&ctx),
                )?;
                tx.send(ctx)
                    .map_err(|_| HandlerError::permanent("closed"))?;
                Ok(())
            }
        })
        .start()
        .await
        .unwrap();
    let orders = bus
        .consumer("orders.stock-reserved")
        .bind("inventory.stock.reserved")
        .dead_letter("myapp.dlx")
        .handle::<StockReserved>(move |_: StockReserved, ctx: MessageContext| {
            let tx = tx.clone();
            async move {
                tx.send(ctx)
                    .map_err(|_| HandlerError::permanent("closed"))?;
                Ok(())
            }
        })
        .start()
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let relay = tokio::spawn(OutboxRelay::new(outbox.clone(), bus.clone()).run(shutdown.clone()));

    let order_id = outbox
        .add_with(
            &OrderCreated { order_id: 1 },
            PublishOptions {
                traceparent: Some(TRACEPARENT.to_owned()),
                correlation_id: Some("c-1".to_owned()),
                ..PublishOptions::default()
            },
        )
        .unwrap();
    let first = recv(&mut rx).await;
    let second = recv(&mut rx).await;
    assert_eq!(first.envelope().traceparent.as_deref(), Some(TRACEPARENT));
    assert_eq!(second.envelope().traceparent.as_deref(), Some(TRACEPARENT));
    assert_eq!(second.correlation_id(), Some("c-1"));

    inventory.shutdown().await;
    orders.shutdown().await;
    shutdown.cancel();
    relay.await.unwrap().unwrap();

    let consumes = capture.named("ferry.consume");
    assert_eq!(consumes.len(), 2, "{consumes:?}");
    let consume = consumes
        .iter()
        .find(|s| s.fields.get("messaging.message.id") == Some(&order_id))
        .expect("the order's consume span");
    let field = |name: &str| consume.fields.get(name).map(String::as_str);
    assert_eq!(
        field("otel.name"),
        Some("process myapp.events:orders.order.created:inventory.order-created")
    );
    assert_eq!(field("otel.kind"), Some("consumer"));
    assert_eq!(field("messaging.system"), Some("rabbitmq"));
    assert_eq!(field("messaging.operation.type"), Some("process"));
    assert_eq!(
        field("messaging.destination.name"),
        Some("myapp.events:orders.order.created:inventory.order-created")
    );
    assert_eq!(
        field("messaging.rabbitmq.destination.routing_key"),
        Some("orders.order.created")
    );
    assert_eq!(field("messaging.message.conversation_id"), Some("c-1"));
    assert_eq!(field("ferry.event_type"), Some("orders.order.created"));
    assert_eq!(field("ferry.outcome"), Some("ack"));

    let handles = capture.named("ferry.handle");
    assert_eq!(handles.len(), 2);
    for handle in &handles {
        assert_eq!(handle.parent.as_deref(), Some("ferry.consume"));
        assert_eq!(handle.field("otel.kind"), Some("internal"));
    }
    let batches = capture.named("ferry.relay.batch");
    assert!(!batches.is_empty());
    assert!(batches.iter().all(|b| {
        b.field("otel.kind") == Some("internal")
            && b.fields.contains_key("ferry.claimed")
            && b.field("ferry.published") == Some("1")
    }));
    // Each relay batch published through the one publish path: a `ferry.publish` span
    // (client, send) under the batch, one per batch.
    let publishes = capture.named("ferry.publish");
    assert_eq!(publishes.len(), batches.len(), "{publishes:?}");
    assert!(publishes.iter().all(|p| {
        p.parent.as_deref() == Some("ferry.relay.batch")
            && p.field("otel.kind") == Some("client")
            && p.field("messaging.operation.type") == Some("send")
    }));
    let order_publish = publishes
        .iter()
        .find(|p| p.fields.get("messaging.message.id") == Some(&order_id))
        .expect("the order's publish span");
    assert_eq!(
        order_publish.field("otel.name"),
        Some("publish myapp.events:orders.order.created")
    );
    // No OpenTelemetry layer: no creation span was made.
    assert!(capture.named("ferry.create").is_empty());
}

#[test]
fn publish_spans_describe_the_message() {
    let capture = Capture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let mut wire = WireMessage::default();
    wire.properties.message_id = Some("m-1".into());
    wire.properties.correlation_id = Some("c-9".into());
    wire.set_header("ce-traceparent", TRACEPARENT);
    wire.body = "{\"orderId\":1}".into();
    let message = OutgoingMessage::new("orders.order.created", wire);
    let span = telemetry::publish_span_for("myapp.events", &message);
    telemetry::record_error(&span, "nacked", "the broker nacked message `m-1`");
    drop(span);
    let _plain = telemetry::publish_span("", "q.retry.1000", "m-2", None);

    let spans = capture.named("ferry.publish");
    assert_eq!(spans.len(), 2);
    let f = |i: usize, name: &str| spans[i].fields.get(name).cloned();
    let first = spans
        .iter()
        .position(|s| s.field("messaging.message.id") == Some("m-1"))
        .unwrap();
    let second = 1 - first;
    assert_eq!(
        f(first, "otel.name").as_deref(),
        Some("publish myapp.events:orders.order.created")
    );
    assert_eq!(f(first, "otel.kind").as_deref(), Some("client"));
    assert_eq!(
        f(first, "messaging.operation.type").as_deref(),
        Some("send")
    );
    assert_eq!(
        f(first, "messaging.operation.name").as_deref(),
        Some("publish")
    );
    assert_eq!(
        f(first, "messaging.message.conversation_id").as_deref(),
        Some("c-9")
    );
    assert_eq!(
        f(first, "messaging.message.body.size").as_deref(),
        Some("13")
    );
    assert_eq!(f(first, "error.type").as_deref(), Some("nacked"));
    assert_eq!(f(first, "otel.status_code").as_deref(), Some("error"));
    assert_eq!(
        f(second, "messaging.destination.name").as_deref(),
        Some("q.retry.1000")
    );
    assert_eq!(f(second, "messaging.message.conversation_id"), None);
}

#[test]
fn traceparents_parse_as_the_w3c_format_says() {
    let tp = TraceParent::parse(TRACEPARENT).unwrap();
    assert_eq!(tp.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
    assert_eq!(tp.span_id, 0x00f067aa0ba902b7);
    assert!(tp.is_sampled());
    assert_eq!(tp.to_string(), TRACEPARENT);
    let unsampled =
        TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
    assert!(!unsampled.is_sampled());
    // A later version may add fields; its first four are read.
    assert!(
        TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra")
            .is_some()
    );
    for bad in [
        "",
        "garbage",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ] {
        assert_eq!(TraceParent::parse(bad), None, "{bad}");
    }
    let mut wire = WireMessage::default();
    assert_eq!(telemetry::traceparent_of(&wire), None);
    wire.set_header("cloudEvents_traceparent", TRACEPARENT);
    assert_eq!(telemetry::traceparent_of(&wire), Some(TRACEPARENT));
}

#[test]
fn destinations_follow_the_rabbitmq_conventions() {
    use telemetry::{consume_destination, publish_destination};
    assert_eq!(publish_destination("ex", "rk"), "ex:rk");
    assert_eq!(publish_destination("ex", ""), "ex");
    assert_eq!(publish_destination("", "rk"), "rk");
    assert_eq!(publish_destination("", ""), "amq.default");
    assert_eq!(consume_destination("ex", "rk", "q"), "ex:rk:q");
    assert_eq!(consume_destination("", "q", "q"), "q");
    assert_eq!(consume_destination("ex", "q", "q"), "ex:q");
    assert_eq!(consume_destination("", "rk", "q"), "rk:q");
}

#[tokio::test]
async fn health_reports_connection_consumers_and_relay_lag() {
    let bus = MemoryBus::new("myapp.events");
    let handle = |finished: bool| {
        let cancel = CancellationToken::new();
        let token = cancel.clone();
        let task = tokio::spawn(async move {
            if !finished {
                token.cancelled().await;
            }
        });
        ConsumerHandle::new(cancel, task)
    };
    let running = handle(false);
    let stopped = handle(true);
    tokio::time::timeout(Duration::from_secs(5), async {
        while !stopped.is_finished() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();

    assert!(
        !Health::new().is_healthy(),
        "not connected until a transport says so"
    );
    let consumers = vec![running, stopped];
    let health = Health::new().report(&bus).report(&consumers);
    assert_eq!((health.consumers_running, health.consumers_total), (1, 2));
    assert!(!health.is_healthy());
    assert_eq!(
        health.problems(),
        vec!["1 of 2 consumers stopped".to_owned()]
    );

    let lagging = OutboxStats {
        pending: 5,
        oldest_pending_age_s: Some(90.0),
        ..OutboxStats::default()
    };
    let health = Health::new().report(&bus).report(&lagging);
    assert_eq!(health.relay_lag_seconds, Some(90.0));
    assert!(!health.is_healthy());
    let health = health.with_max_relay_lag(Duration::from_secs(120));
    assert!(health.is_healthy());

    let json = serde_json::to_value(&health).unwrap();
    assert_eq!(json["healthy"], true);
    assert_eq!(json["connected"], true);
    assert_eq!(json["consumers_running"], 0);
    assert_eq!(json["consumers_total"], 0);
    assert_eq!(json["relay_lag_seconds"], 90.0);
    assert_eq!(json["outbox_pending"], 5);
    assert_eq!(json["max_relay_lag_seconds"], 120.0);
    assert_eq!(json["problems"], serde_json::json!([]));

    for consumer in consumers {
        consumer.shutdown().await;
    }
}
