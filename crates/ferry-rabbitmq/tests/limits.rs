//! Limits: the work in flight is bounded by the concurrency (handlers at once) and the prefetch
//! (unacked deliveries at the broker); the body size and header count limits come from the
//! consumer, else from the options, else from the defaults, and a message over one is
//! dead-lettered as `too-large`.

mod common;

use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use common::{Env, OrderCreated, forwarding, order, recv_n};
use ferry_core::{
    Envelope, FaultKind, Limits, MessageContext, OutgoingMessage, Publisher, WireMessage, codec,
};
use tokio::sync::{Semaphore, mpsc};

/// The broker's count of unacked messages on `queue`, from `rabbitmqctl`.
fn unacked(queue: &str) -> usize {
    let out = Command::new("rabbitmqctl")
        .args(["list_queues", "-q", "--no-table-headers", "-p", "/"])
        .args(["name", "messages_unacknowledged"])
        .output()
        .expect("rabbitmqctl (the broker's management command)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next() == Some(queue)).then(|| fields.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("queue `{queue}` is not listed"))
}

/// Runs `total` events through a consumer whose handlers first wait at a gate, counting the
/// handlers running at once. While the gate is shut (every handler that could start waits at
/// it), the broker's unacked count is read. Returns the most handlers seen at once and that
/// count.
async fn in_flight(prefetch: u16, concurrency: usize, total: usize) -> (usize, usize) {
    let env = Env::new("limits-inflight").await;
    let (dlx, dl_handle, _dead) = env.dead_letters().await;
    let queue = env.queue("limits-inflight");
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let (tx, mut done) = mpsc::unbounded_channel();
    let consumer = {
        let (running, most, gate) = (Arc::clone(&running), Arc::clone(&most), Arc::clone(&gate));
        env.bus
            .consumer(queue.clone())
            .bind("orders.#")
            .prefetch(prefetch)
            .concurrency(concurrency)
            .dead_letter(dlx)
            .handle::<OrderCreated>(move |e: OrderCreated, _ctx: MessageContext| {
                let (running, most, gate, tx) = (
                    Arc::clone(&running),
                    Arc::clone(&most),
                    Arc::clone(&gate),
                    tx.clone(),
                );
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    drop(gate.acquire().await);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    let _ = tx.send(e.order_id);
                    Ok(())
                }
            })
            .start()
            .await
            .unwrap()
    };
    let messages: Vec<OutgoingMessage> = (0..total)
        .map(|i| {
            ferry_core::PublishOptions::default()
                .message_for(&order(i), None)
                .unwrap()
        })
        .collect();
    for r in env.bus.publish_messages(messages).await {
        r.unwrap();
    }
    // Wait until as many handlers as may run are at the gate, and a little longer for any
    // that should not be there.
    let expected = concurrency.min(usize::from(prefetch));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while running.load(Ordering::SeqCst) < expected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the handlers did not start"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let unacked = tokio::task::spawn_blocking({
        let queue = queue.clone();
        move || unacked(&queue)
    })
    .await
    .unwrap();
    gate.add_permits(Semaphore::MAX_PERMITS / 2);
    recv_n(&mut done, total, Duration::from_secs(120)).await;
    consumer.shutdown().await;
    assert_eq!(env.bus.queue_counts(&queue).await.unwrap(), (0, 0));
    dl_handle.shutdown().await;
    (most.load(Ordering::SeqCst), unacked)
}

#[tokio::test]
async fn handlers_in_flight_never_exceed_the_concurrency_nor_unacked_the_prefetch() {
    // The concurrency is the bound on handlers, and the prefetch on deliveries the broker
    // has handed out; both are reached.
    let (most, unacked) = in_flight(8, 3, 120).await;
    assert_eq!(most, 3, "handlers at once");
    assert_eq!(unacked, 8, "unacked deliveries with prefetch 8");
    // A concurrency above the prefetch is capped by it: no more handlers than deliveries.
    let (most, unacked) = in_flight(2, 16, 60).await;
    assert_eq!(most, 2, "handlers at once");
    assert_eq!(unacked, 2, "unacked deliveries with prefetch 2");
}

fn with_body(n: usize, body_len: usize) -> WireMessage {
    let mut m = codec::encode(&order(n), &Envelope::for_event::<OrderCreated>()).unwrap();
    let head = format!(r#"{{"orderId":"o-{n}","totalAmount":1,"pad":""#);
    let pad = body_len - head.len() - 2;
    m.body = Bytes::from(format!("{head}{}\"}}", "p".repeat(pad)));
    assert_eq!(m.body.len(), body_len);
    m
}

#[tokio::test]
async fn limits_come_from_the_consumer_else_the_options_else_the_defaults() {
    let env = Env::with_options("limits-defaults", |o| {
        o.with_consumer_limits(Limits::default().with_max_body_bytes(1024))
    })
    .await;
    let (dlx, dl_handle, mut dead) = env.dead_letters().await;
    let start = |queue: &str, pattern: &str, limits: Option<Limits>| {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut builder = env
            .bus
            .consumer(queue.to_owned())
            .bind(pattern)
            .dead_letter(dlx.clone())
            .handle::<OrderCreated>(forwarding(tx));
        if let Some(limits) = limits {
            builder = builder.limits(limits);
        }
        (builder.start(), rx)
    };
    // Three consumers, each on its own routing key.
    let from_options = env.queue("limits-options");
    let own = env.queue("limits-own");
    let (c1, mut got_options) = start(&from_options, "orders.options.*", None);
    let c1 = c1.await.unwrap();
    let (c2, mut got_own) = start(&own, "orders.own.*", Some(Limits::default()));
    let c2 = c2.await.unwrap();
    let publish = |key: &str, m: WireMessage| {
        let key = key.to_owned();
        let bus = env.bus.clone();
        async move {
            bus.publish_message(OutgoingMessage::new(key, m))
                .await
                .unwrap()
        }
    };

    // The options' 1 KiB: at the limit handled, one byte over dead-lettered.
    publish("orders.options.a", with_body(1, 1024)).await;
    publish("orders.options.b", with_body(2, 1025)).await;
    assert_eq!(
        recv_n(&mut got_options, 1, Duration::from_secs(20)).await[0]
            .0
            .order_id,
        "o-1"
    );
    let d = recv_n(&mut dead, 1, Duration::from_secs(20))
        .await
        .remove(0);
    assert_eq!(d.fault.kind, FaultKind::TooLarge);
    assert_eq!(
        d.fault.original_queue.as_deref(),
        Some(from_options.as_str())
    );
    assert!(d.fault.message.contains("1025"), "{}", d.fault.message);

    // A consumer's own limits win over the options': the default 4 MiB, then over it.
    publish("orders.own.a", with_body(3, 1025)).await;
    assert_eq!(
        recv_n(&mut got_own, 1, Duration::from_secs(20)).await[0]
            .0
            .order_id,
        "o-3"
    );
    publish("orders.own.b", with_body(4, 4 * 1024 * 1024 + 1)).await;
    let d = recv_n(&mut dead, 1, Duration::from_secs(30))
        .await
        .remove(0);
    assert_eq!(d.fault.kind, FaultKind::TooLarge);
    assert_eq!(d.fault.original_queue.as_deref(), Some(own.as_str()));
    assert_eq!(
        d.message.body.len(),
        4 * 1024 * 1024 + 1,
        "the dead letter keeps the body"
    );

    c1.shutdown().await;
    c2.shutdown().await;
    dl_handle.shutdown().await;
}
