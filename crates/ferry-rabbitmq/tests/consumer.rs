//! Consumers against the real broker: handling, typed dispatch, retries through the retry
//! queues, dead letters with every fault header, permanent failures, panics, graceful
//! shutdown.

mod common;

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::{Env, OrderCreated, StockReserved, assert_quiet, forwarding, order, recv_n};
use ferry_core::{
    FaultKind, HandlerError, HeaderValue, MessageContext, RetryPolicy, fault::headers,
};
use ferry_rabbitmq::TopologyError;
use tokio::sync::mpsc;

#[tokio::test]
async fn events_are_handled_acked_and_dispatched_by_type() {
    let env = Env::new("cons-basic").await;
    let (dlx, dl_handle, mut dead) = env.dead_letters().await;
    let queue = env.queue("cons-basic");
    let (orders_tx, mut orders) = mpsc::unbounded_channel();
    let (stock_tx, mut stock) = mpsc::unbounded_channel();
    let consumer = env
        .bus
        .consumer(queue.clone())
        .bind("orders.#")
        .bind("inventory.#")
        .bind("billing.#")
        .prefetch(20)
        .concurrency(4)
        .dead_letter(dlx)
        .handle::<OrderCreated>(forwarding(orders_tx))
        .handle::<StockReserved>(forwarding(stock_tx))
        .start()
        .await
        .unwrap();

    for i in 0..20 {
        env.bus.publish(&order(i)).await.unwrap();
    }
    let id = env
        .bus
        .publish(&StockReserved {
            order_id: "o-1".into(),
        })
        .await
        .unwrap();

    let got = recv_n(&mut orders, 20, Duration::from_secs(20)).await;
    let ids: HashSet<String> = got.iter().map(|(e, _)| e.order_id.clone()).collect();
    assert_eq!(ids.len(), 20);
    for (_, ctx) in &got {
        assert_eq!(ctx.consumer(), queue);
        assert_eq!(ctx.attempt(), 1);
        assert_eq!(ctx.routing_key(), "orders.order.created");
    }
    let (event, ctx) = recv_n(&mut stock, 1, Duration::from_secs(10))
        .await
        .remove(0);
    assert_eq!(event.order_id, "o-1");
    assert_eq!(ctx.message_id(), id);

    // A type the queue carries but has no handler for is dead-lettered as `unknown-type`.
    #[derive(serde::Serialize, serde::Deserialize, ferry_macros::IntegrationEvent)]
    #[event(name = "billing.invoice.created")]
    struct InvoiceCreated {
        n: u32,
    }
    let unknown = env.bus.publish(&InvoiceCreated { n: 1 }).await.unwrap();
    let dl = recv_n(&mut dead, 1, Duration::from_secs(10))
        .await
        .remove(0);
    assert_eq!(dl.fault.kind, FaultKind::UnknownType);
    assert_eq!(dl.message_id(), Some(unknown.as_str()));
    assert_eq!(dl.routing_key, "billing.invoice.created");

    consumer.shutdown().await;
    assert_eq!(env.bus.queue_counts(&queue).await.unwrap(), (0, 0));
    dl_handle.shutdown().await;
}

#[tokio::test]
async fn retries_come_back_after_their_delays_then_dead_letter_with_every_fault_header() {
    let env = Env::new("cons-retry").await;
    let (dlx, dl_handle, mut dead) = env.dead_letters().await;
    let queue = env.queue("cons-retry");
    env.cleanup.retry_queues(&queue, &[200, 400, 800]);
    let seen: Arc<Mutex<Vec<(u32, Instant)>>> = Arc::default();
    let seen2 = Arc::clone(&seen);
    let consumer = env
        .bus
        .consumer(queue.clone())
        .bind("orders.order.created")
        .dead_letter(dlx.clone())
        .retry(RetryPolicy::exponential(3, Duration::from_millis(200)))
        .handle::<OrderCreated>(move |_e: OrderCreated, ctx: MessageContext| {
            let seen = Arc::clone(&seen2);
            async move {
                seen.lock().unwrap().push((ctx.attempt(), Instant::now()));
                Err(HandlerError::transient("the warehouse is closed"))
            }
        })
        .start()
        .await
        .unwrap();

    let id = env.bus.publish(&order(1)).await.unwrap();
    let dl = recv_n(&mut dead, 1, Duration::from_secs(30))
        .await
        .remove(0);

    let seen = seen.lock().unwrap().clone();
    let attempts: Vec<u32> = seen.iter().map(|(a, _)| *a).collect();
    assert_eq!(attempts, vec![1, 2, 3, 4]);
    for (i, min_ms) in [200u64, 400, 800].iter().enumerate() {
        let gap = seen[i + 1].1 - seen[i].1;
        assert!(
            gap >= Duration::from_millis(*min_ms),
            "retry {} came back after {gap:?}, before its {min_ms} ms delay",
            i + 1
        );
    }

    assert_eq!(dl.message_id(), Some(id.as_str()));
    assert_eq!(dl.routing_key, "orders.order.created");
    assert_eq!(dl.fault.kind, FaultKind::Handler);
    assert_eq!(dl.fault.attempts, 4);
    assert!(dl.fault.message.contains("the warehouse is closed"));
    assert_eq!(dl.fault.original_queue.as_deref(), Some(queue.as_str()));
    assert_eq!(
        dl.fault.original_exchange.as_deref(),
        Some(env.exchange.as_str())
    );
    assert_eq!(
        dl.fault.original_routing_key.as_deref(),
        Some("orders.order.created")
    );
    let h = &dl.message.headers;
    assert_eq!(h[headers::FAULT_KIND], HeaderValue::from("handler"));
    assert_eq!(h[headers::FAULT_ATTEMPTS], HeaderValue::Int(4));
    assert!(
        h[headers::FAULT_MESSAGE]
            .as_str()
            .unwrap()
            .contains("warehouse")
    );
    let at = h[headers::FAULT_AT].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
    assert_eq!(
        h[headers::ORIGINAL_QUEUE],
        HeaderValue::from(queue.as_str())
    );
    assert_eq!(
        h[headers::ORIGINAL_EXCHANGE],
        HeaderValue::from(env.exchange.as_str())
    );
    assert_eq!(
        h[headers::ORIGINAL_ROUTING_KEY],
        HeaderValue::from("orders.order.created")
    );
    assert_eq!(h[headers::ATTEMPT], HeaderValue::Int(4));
    // Everything the message carried is kept.
    assert_eq!(
        dl.envelope.as_ref().map(|e| e.id.as_str()),
        Some(id.as_str())
    );
    assert_eq!(
        dl.message.header_str("ce-type"),
        Some("orders.order.created")
    );

    // The retry queues follow §3: TTL and dead-lettering back to the queue.
    for ms in [200, 400, 800] {
        let (messages, _) = env
            .bus
            .queue_counts(&format!("{queue}.retry.{ms}"))
            .await
            .unwrap();
        assert_eq!(messages, 0);
    }
    consumer.shutdown().await;
    assert_eq!(env.bus.queue_counts(&queue).await.unwrap().0, 0);
    dl_handle.shutdown().await;
}

#[tokio::test]
async fn a_permanent_failure_skips_the_retries() {
    let env = Env::new("cons-perm").await;
    let (dlx, dl_handle, mut dead) = env.dead_letters().await;
    let queue = env.queue("cons-perm");
    env.cleanup.retry_queues(&queue, &[100, 200, 400]);
    let calls = Arc::new(AtomicUsize::new(0));
    let calls2 = Arc::clone(&calls);
    let consumer = env
        .bus
        .consumer(queue.clone())
        .bind("orders.#")
        .dead_letter(dlx)
        .retry(RetryPolicy::exponential(3, Duration::from_millis(100)))
        .handle::<OrderCreated>(move |_e: OrderCreated, _ctx: MessageContext| {
            calls2.fetch_add(1, Ordering::SeqCst);
            async { Err(HandlerError::permanent("order total is negative")) }
        })
        .start()
        .await
        .unwrap();
    env.bus.publish(&order(1)).await.unwrap();
    let dl = recv_n(&mut dead, 1, Duration::from_secs(10))
        .await
        .remove(0);
    assert_eq!(dl.fault.kind, FaultKind::Handler);
    assert_eq!(dl.fault.attempts, 1);
    assert!(dl.fault.message.contains("negative"));
    assert!(!dl.message.headers.contains_key(headers::ATTEMPT));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    consumer.shutdown().await;
    dl_handle.shutdown().await;
}

#[tokio::test]
async fn a_panicking_handler_dead_letters_as_panic_and_the_consumer_goes_on() {
    let env = Env::new("cons-panic").await;
    let (dlx, dl_handle, mut dead) = env.dead_letters().await;
    let queue = env.queue("cons-panic");
    let (tx, mut handled) = mpsc::unbounded_channel();
    let consumer = env
        .bus
        .consumer(queue.clone())
        .bind("orders.#")
        .dead_letter(dlx)
        .retry(RetryPolicy::none())
        .handle::<OrderCreated>(move |e: OrderCreated, _ctx: MessageContext| {
            let tx = tx.clone();
            async move {
                if e.order_id == "o-3" {
                    panic!("boom on {}", e.order_id);
                }
                let _ = tx.send(e.order_id);
                Ok(())
            }
        })
        .start()
        .await
        .unwrap();
    for i in 0..6 {
        env.bus.publish(&order(i)).await.unwrap();
    }
    let dl = recv_n(&mut dead, 1, Duration::from_secs(10))
        .await
        .remove(0);
    assert_eq!(dl.fault.kind, FaultKind::Panic);
    assert!(
        dl.fault.message.contains("boom on o-3"),
        "{}",
        dl.fault.message
    );
    let got: HashSet<String> = recv_n(&mut handled, 5, Duration::from_secs(10))
        .await
        .into_iter()
        .collect();
    assert_eq!(got.len(), 5);
    assert!(!got.contains("o-3"));
    assert!(!consumer.is_finished());
    consumer.shutdown().await;
    dl_handle.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_mid_stream_loses_nothing_and_leaves_nothing_unacked() {
    let env = Env::new("cons-shutdown").await;
    let (dlx, dl_handle, mut dead) = env.dead_letters().await;
    let queue = env.queue("cons-shutdown");
    let total = 400;
    let started = Arc::new(AtomicUsize::new(0));
    let finished: Arc<Mutex<Vec<String>>> = Arc::default();
    let start_consumer = |started: Arc<AtomicUsize>, finished: Arc<Mutex<Vec<String>>>| {
        env.bus
            .consumer(queue.clone())
            .bind("orders.#")
            .prefetch(16)
            .concurrency(8)
            .dead_letter(dlx.clone())
            .handle::<OrderCreated>(move |e: OrderCreated, _ctx: MessageContext| {
                let started = Arc::clone(&started);
                let finished = Arc::clone(&finished);
                async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    finished.lock().unwrap().push(e.order_id);
                    Ok(())
                }
            })
            .start()
    };
    let consumer = start_consumer(Arc::clone(&started), Arc::clone(&finished))
        .await
        .unwrap();
    let messages: Vec<_> = (0..total)
        .map(|i| {
            ferry_core::PublishOptions::default()
                .message_for(&order(i), None)
                .unwrap()
        })
        .collect();
    for r in ferry_core::Publisher::publish_messages(&env.bus, messages).await {
        r.unwrap();
    }
    // Stop in the middle of the stream.
    while finished.lock().unwrap().len() < 60 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    consumer.shutdown().await;
    let first: Vec<String> = finished.lock().unwrap().clone();
    // Every handler that started also finished before shutdown returned.
    assert_eq!(started.load(Ordering::SeqCst), first.len());
    assert!(first.len() < total, "shutdown came after the stream ended");
    // Nothing unacked: what was handled is gone from the queue, the rest is ready.
    let (ready, consumers) = env.bus.queue_counts(&queue).await.unwrap();
    assert_eq!(consumers, 0);
    assert_eq!(ready as usize, total - first.len());

    // A second consumer gets exactly the rest: nothing lost, nothing handled twice.
    let finished2: Arc<Mutex<Vec<String>>> = Arc::default();
    let consumer = start_consumer(Arc::new(AtomicUsize::new(0)), Arc::clone(&finished2))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while finished2.lock().unwrap().len() < total - first.len() {
        assert!(Instant::now() < deadline, "the rest was not handled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    consumer.shutdown().await;
    let second = finished2.lock().unwrap().clone();
    let a: HashSet<_> = first.iter().cloned().collect();
    let b: HashSet<_> = second.iter().cloned().collect();
    assert!(
        a.is_disjoint(&b),
        "a message handled before shutdown came back"
    );
    assert_eq!(a.len() + b.len(), total);
    assert_quiet(&mut dead, Duration::from_millis(200)).await;
    dl_handle.shutdown().await;
}

/// Auto-ack is at-most-once by choice: the broker forgets a message when it delivers it (it
/// waits for no ack, so a prefetch of 1 holds nothing back), and a handler that fails is
/// neither retried (no retry queue, no second delivery) nor dead-lettered (it has no
/// dead-letter exchange): the message is dropped.
#[tokio::test]
async fn an_auto_ack_consumer_drops_failures_without_retries_dead_letters_or_acks() {
    let env = Env::new("cons-autoack").await;
    let queue = env.queue("cons-autoack");
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let handler_gate = Arc::clone(&gate);
    let consumer = env
        .bus
        .consumer(queue.clone())
        .bind("orders.#")
        .prefetch(1)
        .concurrency(1)
        .auto_ack()
        .handle::<OrderCreated>(move |e: OrderCreated, ctx: MessageContext| {
            let started_tx = started_tx.clone();
            let gate = Arc::clone(&handler_gate);
            async move {
                let _ = started_tx.send((e.order_id.clone(), ctx.attempt()));
                let _permit = gate.acquire().await.map_err(HandlerError::transient)?;
                let n: usize = e.order_id.trim_start_matches("o-").parse().unwrap_or(0);
                if n % 2 == 0 {
                    Err(HandlerError::transient(format!("{} failed", e.order_id)))
                } else {
                    Err(HandlerError::permanent(format!("{} refused", e.order_id)))
                }
            }
        })
        .start()
        .await
        .unwrap();
    for i in 0..5 {
        env.bus.publish(&order(i)).await.unwrap();
    }

    // The first handler is held: with acks, a prefetch of 1 would keep the other four ready
    // on the queue; without, the broker has handed them all out already.
    recv_n(&mut started, 1, Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ready, consumers) = env.bus.queue_counts(&queue).await.unwrap();
        assert_eq!(consumers, 1);
        if ready == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{ready} messages still wait for an ack that an auto-ack consumer never sends"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Every handler fails; each message was delivered once, and nothing comes back.
    gate.add_permits(5);
    let rest = recv_n(&mut started, 4, Duration::from_secs(10)).await;
    let mut orders: Vec<String> = rest.iter().map(|(o, _)| o.clone()).collect();
    orders.sort();
    assert_eq!(orders, vec!["o-1", "o-2", "o-3", "o-4"]);
    assert!(rest.iter().all(|(_, attempt)| *attempt == 1));
    // Longer than the shortest retry delay a policy could have given.
    assert_quiet(&mut started, Duration::from_millis(1500)).await;

    // No retry queue was declared, so no retry copy can exist.
    for ms in [1000, 2000, 4000] {
        let err = env
            .bus
            .queue_counts(&format!("{queue}.retry.{ms}"))
            .await
            .expect_err("an auto-ack consumer declares no retry queue");
        assert!(
            matches!(err.topology(), Some(TopologyError::NotFound { .. })),
            "{err}"
        );
    }
    // Nothing was left unacked to be requeued when the consumer's channel closed.
    consumer.shutdown().await;
    assert_eq!(env.bus.queue_counts(&queue).await.unwrap(), (0, 0));
    assert_quiet(&mut started, Duration::from_millis(200)).await;
}
