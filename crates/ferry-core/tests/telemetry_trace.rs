//! One trace from order to relay to inventory to orders, on the in-memory bus, outbox and
//! inbox, seen by an in-memory OpenTelemetry span exporter.
//!
//! Needs the `opentelemetry` feature:
//! `cargo test -p ferry-core --features opentelemetry --test telemetry_trace`.

use std::{sync::Arc, time::Duration};

use ferry_core::{
    CancellationToken, HandlerError, MessageContext, OutboxRelay, PublishOptions, RelayOptions,
    RetryPolicy,
    memory::{MemoryBus, MemoryInbox, MemoryOutbox},
    telemetry::TraceParent,
};
use opentelemetry::{
    Value,
    trace::{SpanId, SpanKind, Status, TraceContextExt, TraceId, TracerProvider as _},
};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::subscriber::DefaultGuard;
use tracing_opentelemetry::OpenTelemetrySpanExt;
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

const EXCHANGE: &str = "myapp.events";

/// A subscriber with an OpenTelemetry layer exporting to memory, set as this thread's default
/// (the tests run on a current-thread runtime, so every task sees it).
fn tracing_to_memory() -> (InMemorySpanExporter, SdkTracerProvider, DefaultGuard) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let tracer = provider.tracer("ferry-test");
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer));
    let guard = tracing::subscriber::set_default(subscriber);
    (exporter, provider, guard)
}

fn finished(exporter: &InMemorySpanExporter, provider: &SdkTracerProvider) -> Vec<SpanData> {
    provider.force_flush().unwrap();
    exporter.get_finished_spans().unwrap()
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn one<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    let found = named(spans, name);
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(found.len(), 1, "one span named `{name}` among {names:?}");
    found[0]
}

fn attr(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

fn attr_str(span: &SpanData, key: &str) -> String {
    match attr(span, key) {
        Some(value) => value.as_str().into_owned(),
        None => panic!("span `{}` has no attribute `{key}`", span.name),
    }
}

fn assert_child(child: &SpanData, parent: &SpanData) {
    assert_eq!(
        child.span_context.trace_id(),
        parent.span_context.trace_id(),
        "`{}` is not in the trace of `{}`",
        child.name,
        parent.name
    );
    assert_eq!(
        child.parent_span_id,
        parent.span_context.span_id(),
        "`{}` is not a child of `{}`",
        child.name,
        parent.name
    );
}

async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("timed out")
        .expect("channel closed")
}

#[tokio::test]
async fn one_trace_spans_order_relay_inventory_and_orders() {
    let (exporter, provider, _guard) = tracing_to_memory();
    let bus = MemoryBus::new(EXCHANGE);
    let outbox = MemoryOutbox::new();
    let inbox = Arc::new(MemoryInbox::new());

    // Inventory: reserves stock and adds StockReserved, caused by the order.
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<(&'static str, MessageContext)>();
    let inventory_outbox = outbox.clone();
    let inventory_seen = seen_tx.clone();
    let inventory = bus
        .consumer("inventory.order-created")
        .bind("orders.order.created")
        .dead_letter("myapp.dlx")
        .skip_processed(inbox.clone())
        .handle::<OrderCreated>(move |event: OrderCreated, ctx: MessageContext| {
            let outbox = inventory_outbox.clone();
            let seen = inventory_seen.clone();
            async move {
                tracing::info!(order_id = event.order_id, "reserving stock");
                outbox.add_with(
                    &StockReserved {
                        order_id: event.order_id,
                    },
                    PublishOptions::caused_by(&ctx),
                )?;
                seen.send(("inventory", ctx))
                    .map_err(|_| HandlerError::permanent("test channel closed"))?;
                Ok(())
            }
        })
        .start()
        .await
        .unwrap();
    // Orders: confirms the order.
    let orders = bus
        .consumer("orders.stock-reserved")
        .bind("inventory.stock.reserved")
        .dead_letter("myapp.dlx")
        .skip_processed(inbox.clone())
        .handle::<StockReserved>(move |_event: StockReserved, ctx: MessageContext| {
            let seen = seen_tx.clone();
            async move {
                seen.send(("orders", ctx))
                    .map_err(|_| HandlerError::permanent("test channel closed"))?;
                Ok(())
            }
        })
        .start()
        .await
        .unwrap();

    let shutdown = CancellationToken::new();
    let relay = tokio::spawn(
        OutboxRelay::new(outbox.clone(), bus.clone())
            .with_options(RelayOptions {
                poll_interval: Duration::from_millis(20),
                ..RelayOptions::default()
            })
            .run(shutdown.clone()),
    );

    // The request: "create order" adds OrderCreated to the outbox.
    let root = tracing::info_span!("create order");
    let root_trace = root.context().span().span_context().trace_id();
    assert_ne!(root_trace, TraceId::INVALID);
    let order_event_id = root.in_scope(|| outbox.add(&OrderCreated { order_id: 7 }).unwrap());
    drop(root);

    let (who, inventory_ctx) = recv(&mut seen).await;
    assert_eq!(who, "inventory");
    let (who, orders_ctx) = recv(&mut seen).await;
    assert_eq!(who, "orders");

    // The traceparent travelled with both events, in the root's trace.
    for ctx in [&inventory_ctx, &orders_ctx] {
        let tp = ctx
            .envelope()
            .traceparent
            .as_deref()
            .and_then(TraceParent::parse)
            .expect("the event carries a traceparent");
        assert_eq!(TraceId::from_bytes(tp.trace_id.to_be_bytes()), root_trace);
        assert!(tp.is_sampled());
    }
    assert_eq!(inventory_ctx.message_id(), order_event_id);
    assert_eq!(orders_ctx.correlation_id(), Some(order_event_id.as_str()));

    inventory.shutdown().await;
    orders.shutdown().await;
    shutdown.cancel();
    relay.await.unwrap().unwrap();

    let spans = finished(&exporter, &provider);
    let root = one(&spans, "create order");
    let create_order = one(&spans, "create orders.order.created");
    let process_order = one(
        &spans,
        "process myapp.events:orders.order.created:inventory.order-created",
    );
    let handle_order = one(&spans, "handle orders.order.created");
    let create_reserved = one(&spans, "create inventory.stock.reserved");
    let process_reserved = one(
        &spans,
        "process myapp.events:inventory.stock.reserved:orders.stock-reserved",
    );
    let handle_reserved = one(&spans, "handle inventory.stock.reserved");

    // One trace: root → create → process → handle → create → process → handle.
    assert_eq!(root.parent_span_id, SpanId::INVALID);
    assert_eq!(root.span_context.trace_id(), root_trace);
    assert_child(create_order, root);
    assert_child(process_order, create_order);
    assert_child(handle_order, process_order);
    assert_child(create_reserved, handle_order);
    assert_child(process_reserved, create_reserved);
    assert_child(handle_reserved, process_reserved);
    assert!(process_order.parent_span_is_remote);
    assert!(process_reserved.parent_span_is_remote);

    // Span kinds of the messaging conventions.
    assert_eq!(create_order.span_kind, SpanKind::Producer);
    assert_eq!(create_reserved.span_kind, SpanKind::Producer);
    assert_eq!(process_order.span_kind, SpanKind::Consumer);
    assert_eq!(process_reserved.span_kind, SpanKind::Consumer);
    assert_eq!(handle_order.span_kind, SpanKind::Internal);

    // Attributes of the messaging conventions.
    assert_eq!(attr_str(process_order, "messaging.system"), "rabbitmq");
    assert_eq!(
        attr_str(process_order, "messaging.operation.type"),
        "process"
    );
    assert_eq!(
        attr_str(process_order, "messaging.operation.name"),
        "process"
    );
    assert_eq!(
        attr_str(process_order, "messaging.destination.name"),
        "myapp.events:orders.order.created:inventory.order-created"
    );
    assert_eq!(
        attr_str(process_order, "messaging.rabbitmq.destination.routing_key"),
        "orders.order.created"
    );
    assert_eq!(
        attr_str(process_order, "messaging.message.id"),
        order_event_id
    );
    assert_eq!(attr_str(process_order, "ferry.outcome"), "ack");
    assert_eq!(
        attr_str(process_reserved, "messaging.message.conversation_id"),
        order_event_id
    );
    assert_eq!(
        attr_str(process_reserved, "messaging.message.id"),
        orders_ctx.message_id()
    );
    assert_eq!(attr_str(create_order, "messaging.operation.type"), "create");
    assert_eq!(
        attr_str(create_order, "messaging.message.id"),
        order_event_id
    );
    assert!(!matches!(process_order.status, Status::Error { .. }));

    // The relay's publish spans link to each message's creation context.
    let publishes: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name.starts_with("publish "))
        .collect();
    assert!(!publishes.is_empty(), "relay publish spans");
    for publish in &publishes {
        assert_eq!(attr_str(publish, "messaging.operation.type"), "send");
        assert_eq!(publish.span_kind, SpanKind::Client);
    }
    let linked: Vec<SpanId> = publishes
        .iter()
        .flat_map(|b| b.links.iter().map(|l| l.span_context.span_id()))
        .collect();
    assert!(linked.contains(&create_order.span_context.span_id()));
    assert!(linked.contains(&create_reserved.span_context.span_id()));
}

#[tokio::test]
async fn a_failing_handler_marks_its_spans_failed() {
    let (exporter, provider, _guard) = tracing_to_memory();
    let bus = MemoryBus::new(EXCHANGE);
    // Somewhere for the dead letters to go: one that cannot be delivered is requeued, and
    // would be processed (and counted) again.
    bus.bind("myapp.dlx", "#", "myapp.dlq").unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let consumer = bus
        .consumer("inventory.order-created")
        .bind("orders.order.created")
        .retry(RetryPolicy::none())
        .dead_letter("myapp.dlx")
        .handle::<OrderCreated>(move |_: OrderCreated, _: MessageContext| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(());
                Err::<(), _>(HandlerError::permanent("out of stock for good"))
            }
        })
        .start()
        .await
        .unwrap();
    let root = tracing::info_span!("create order");
    let outbox = MemoryOutbox::new();
    root.in_scope(|| outbox.add(&OrderCreated { order_id: 1 }).unwrap());
    drop(root);
    OutboxRelay::new(outbox, bus.clone()).drain().await.unwrap();
    recv(&mut rx).await;
    consumer.shutdown().await;

    let spans = finished(&exporter, &provider);
    let process = one(
        &spans,
        "process myapp.events:orders.order.created:inventory.order-created",
    );
    let handle = one(&spans, "handle orders.order.created");
    assert_child(handle, process);
    assert_child(process, one(&spans, "create orders.order.created"));
    for span in [process, handle] {
        assert_eq!(attr_str(span, "error.type"), "handler");
        match &span.status {
            Status::Error { description } => {
                assert!(
                    description.contains("out of stock for good"),
                    "{description}"
                )
            }
            other => panic!("`{}` has status {other:?}", span.name),
        }
    }
    assert_eq!(attr_str(process, "ferry.outcome"), "dead_letter");
}

#[tokio::test]
async fn a_traceparent_of_another_trace_is_kept() {
    let (_exporter, _provider, _guard) = tracing_to_memory();
    let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let root = tracing::info_span!("request");
    let envelope = root.in_scope(|| {
        PublishOptions {
            traceparent: Some(given.to_owned()),
            ..PublishOptions::default()
        }
        .envelope_for::<OrderCreated>(None)
    });
    assert_eq!(envelope.traceparent.as_deref(), Some(given));

    // Outside any span nothing is captured.
    let envelope = PublishOptions::default().envelope_for::<OrderCreated>(None);
    assert_eq!(envelope.traceparent, None);

    // Inside one, the creation context is in the span's trace.
    let root_trace = root.context().span().span_context().trace_id();
    let envelope = root.in_scope(|| PublishOptions::default().envelope_for::<OrderCreated>(None));
    let tp = envelope
        .traceparent
        .as_deref()
        .and_then(TraceParent::parse)
        .expect("captured");
    assert_eq!(TraceId::from_bytes(tp.trace_id.to_be_bytes()), root_trace);
    assert_eq!(ferry_core::telemetry::current_traceparent(), None);
}
