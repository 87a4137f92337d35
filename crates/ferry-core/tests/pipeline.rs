//! The consumer pipeline's decisions, transport-free.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use ferry_core::{
    Decision, Delivery, Envelope, FaultKind, HandlerError, IntegrationEvent, Limits,
    MessageContext, Pipeline, RetryPolicy, WireMessage, codec, fault::headers, memory::MemoryInbox,
    wire::HeaderValue,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[serde(rename_all = "camelCase")]
#[event(name = "orders.order.created", version = 2)]
struct OrderCreated {
    order_id: String,
}

fn delivery_of(message: WireMessage) -> Delivery {
    Delivery {
        message,
        exchange: "myapp.events".into(),
        routing_key: "orders.order.created".into(),
        redelivered: false,
    }
}

fn order_delivery() -> Delivery {
    let envelope = Envelope::for_event::<OrderCreated>();
    let message = codec::encode(
        &OrderCreated {
            order_id: "o-1".into(),
        },
        &envelope,
    )
    .unwrap();
    delivery_of(message)
}

fn pipeline_with<F, Fut>(retry: RetryPolicy, f: F) -> Pipeline
where
    F: Fn(OrderCreated, MessageContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    let mut p = Pipeline::new("inventory.order-created");
    p.set_retry(retry);
    assert!(p.add_handler::<OrderCreated>(f));
    p
}

#[tokio::test]
async fn success_acks() {
    let p = pipeline_with(
        RetryPolicy::default(),
        |e: OrderCreated, ctx: MessageContext| async move {
            assert_eq!(e.order_id, "o-1");
            assert_eq!(ctx.attempt(), 1);
            assert_eq!(ctx.consumer(), "inventory.order-created");
            Ok(())
        },
    );
    assert_eq!(p.process(&order_delivery()).await, Decision::Ack);
}

#[tokio::test]
async fn transient_failure_retries_with_growing_delay_then_dead_letters() {
    let p = pipeline_with(
        RetryPolicy::exponential(3, Duration::from_secs(1)),
        |_, _| async { Err(HandlerError::transient("db down")) },
    );
    let mut delivery = order_delivery();
    let mut delays = Vec::new();
    loop {
        match p.process(&delivery).await {
            Decision::Retry {
                delay,
                next_attempt,
                error,
            } => {
                assert_eq!(error, "db down");
                delays.push(delay);
                delivery = Delivery {
                    message: delivery.retry_copy(next_attempt),
                    exchange: String::new(),
                    routing_key: "inventory.order-created".into(),
                    redelivered: false,
                };
                assert_eq!(delivery.message.attempt(), next_attempt);
            }
            Decision::DeadLetter(fault) => {
                assert_eq!(fault.kind, FaultKind::Handler);
                assert_eq!(fault.attempts, 4);
                // The retry copies kept where the message first came from.
                assert_eq!(fault.original_exchange.as_deref(), Some("myapp.events"));
                assert_eq!(
                    fault.original_routing_key.as_deref(),
                    Some("orders.order.created")
                );
                assert_eq!(
                    fault.original_queue.as_deref(),
                    Some("inventory.order-created")
                );
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        delays,
        [1, 2, 4].map(Duration::from_secs).to_vec(),
        "exponential backoff"
    );
}

#[tokio::test]
async fn permanent_failure_skips_retries() {
    let p = pipeline_with(RetryPolicy::default(), |_, _| async {
        Err(HandlerError::permanent("card declined"))
    });
    match p.process(&order_delivery()).await {
        Decision::DeadLetter(fault) => {
            assert_eq!(fault.kind, FaultKind::Handler);
            assert_eq!(fault.attempts, 1);
            assert!(fault.message.contains("card declined"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn panic_is_a_failure_not_a_crash() {
    let p = pipeline_with(RetryPolicy::none(), |_, _| async { panic!("boom") });
    match p.process(&order_delivery()).await {
        Decision::DeadLetter(fault) => {
            assert_eq!(fault.kind, FaultKind::Panic);
            assert!(fault.message.contains("boom"), "{}", fault.message);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn immediate_retries_happen_in_process() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    let p = pipeline_with(RetryPolicy::none().immediate(2), move |_, _| {
        let c = Arc::clone(&c);
        async move {
            if c.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(HandlerError::transient("flaky"))
            } else {
                Ok(())
            }
        }
    });
    assert_eq!(p.process(&order_delivery()).await, Decision::Ack);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn unknown_type_dead_letters() {
    let p = pipeline_with(RetryPolicy::default(), |_, _| async { Ok(()) });
    let envelope = Envelope::new("billing.invoice.sent");
    let message = codec::encode_data(&envelope, Bytes::from_static(b"{}"));
    match p.process(&delivery_of(message)).await {
        Decision::DeadLetter(fault) => assert_eq!(fault.kind, FaultKind::UnknownType),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn newer_version_is_unsupported() {
    let p = pipeline_with(RetryPolicy::default(), |_, _| async { Ok(()) });
    let envelope = Envelope::for_event::<OrderCreated>().with_event_version(3);
    let message = codec::encode_data(&envelope, Bytes::from_static(b"{\"orderId\":\"o\"}"));
    match p.process(&delivery_of(message)).await {
        Decision::DeadLetter(fault) => assert_eq!(fault.kind, FaultKind::UnsupportedVersion),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn bad_json_is_a_decode_fault_and_limits_are_enforced() {
    let p = pipeline_with(RetryPolicy::default(), |_, _| async { Ok(()) });
    let envelope = Envelope::for_event::<OrderCreated>();
    let message = codec::encode_data(&envelope, Bytes::from_static(b"{not json"));
    match p.process(&delivery_of(message)).await {
        Decision::DeadLetter(fault) => assert_eq!(fault.kind, FaultKind::Decode),
        other => panic!("unexpected {other:?}"),
    }

    let mut small = pipeline_with(RetryPolicy::default(), |_, _| async { Ok(()) });
    small.set_limits(Limits {
        max_body_bytes: 8,
        max_headers: 256,
    });
    match small.process(&order_delivery()).await {
        Decision::DeadLetter(fault) => assert_eq!(fault.kind, FaultKind::TooLarge),
        other => panic!("unexpected {other:?}"),
    }
    let mut few = pipeline_with(RetryPolicy::default(), |_, _| async { Ok(()) });
    few.set_limits(Limits {
        max_body_bytes: 1 << 20,
        max_headers: 2,
    });
    match few.process(&order_delivery()).await {
        Decision::DeadLetter(fault) => assert_eq!(fault.kind, FaultKind::TooLarge),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn missing_id_dead_letters() {
    let p = pipeline_with(RetryPolicy::default(), |_, _| async { Ok(()) });
    let mut delivery = order_delivery();
    delivery.message.headers.remove("ce-id");
    delivery.message.properties.message_id = None;
    match p.process(&delivery).await {
        Decision::DeadLetter(fault) => assert_eq!(fault.kind, FaultKind::MissingId),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn inbox_skips_duplicates() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    let mut p = pipeline_with(RetryPolicy::default(), move |_, _| {
        let c = Arc::clone(&c);
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    p.set_inbox(Arc::new(MemoryInbox::new()));
    let delivery = order_delivery();
    assert_eq!(p.process(&delivery).await, Decision::Ack);
    assert_eq!(p.process(&delivery).await, Decision::Duplicate);
    assert_eq!(p.process(&delivery).await, Decision::Duplicate);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn dead_letter_copy_carries_every_fault_header() {
    let p = pipeline_with(RetryPolicy::none(), |_, _| async {
        Err(HandlerError::transient("x".repeat(10_000)))
    });
    let delivery = order_delivery();
    let Decision::DeadLetter(fault) = p.process(&delivery).await else {
        panic!("expected a dead letter")
    };
    let copy = delivery.dead_letter_copy(&fault);
    for name in headers::FAULT_HEADERS {
        assert!(copy.headers.contains_key(name), "missing {name}");
    }
    assert_eq!(copy.header_str(headers::FAULT_KIND), Some("handler"));
    assert_eq!(
        copy.header_str(headers::FAULT_MESSAGE).map(str::len),
        Some(4096)
    );
    assert_eq!(
        copy.header(headers::FAULT_ATTEMPTS),
        Some(&HeaderValue::Int(1))
    );
    // Everything the message carried is kept.
    assert_eq!(copy.body, delivery.message.body);
    assert_eq!(copy.properties, delivery.message.properties);
    assert_eq!(
        copy.header_str("ce-id"),
        delivery.message.header_str("ce-id")
    );
    let back = ferry_core::Fault::from_headers(&copy.headers).unwrap();
    assert_eq!(back.kind, FaultKind::Handler);
    assert_eq!(
        back.original_queue.as_deref(),
        Some("inventory.order-created")
    );
    // A replay strips them again.
    let mut replay = copy.clone();
    ferry_core::Fault::strip_from(&mut replay);
    for name in headers::FAULT_HEADERS {
        assert!(!replay.headers.contains_key(name));
    }
    assert_eq!(OrderCreated::VERSION, 2);
}
