//! The host: one lifecycle for consumers, relays and background work, with a drain deadline
//! and health for each part.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use ferry_core::{
    CancellationToken, HandlerError, MessageContext, OutboxRelay, PublisherExt,
    host::{Host, HostError, PartKind, PartState},
    memory::{MemoryBus, MemoryOutbox},
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

#[derive(Debug, Clone, Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[event(name = "orders.order.created")]
struct OrderCreated {
    order_id: u32,
}

async fn eventually(what: &str, check: impl Fn() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what} did not happen within 5 s");
}

#[tokio::test]
async fn a_host_runs_every_part_reports_each_and_stops_them_all_on_shutdown() {
    let bus = MemoryBus::new("host.events");
    let handled = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&handled);
    let consumer = bus
        .consumer("host.q")
        .bind("orders.order.created")
        .dead_letter("host.dlx")
        .handle::<OrderCreated>(move |_: OrderCreated, _: MessageContext| {
            let seen = Arc::clone(&seen);
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                Ok::<_, HandlerError>(())
            }
        })
        .start()
        .await
        .expect("consumer starts");
    let service_stopped = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&service_stopped);
    let host = Host::new()
        .consumer("inventory", consumer)
        .relay("relay", OutboxRelay::new(MemoryOutbox::new(), bus.clone()))
        .service("sweeper", move |stop: CancellationToken| async move {
            stop.cancelled().await;
            flag.store(true, Ordering::SeqCst);
            Ok::<_, std::io::Error>(())
        })
        .health_source(bus.clone());
    let health = host.health();
    let before = health.report();
    assert!(
        before.parts.iter().all(|p| p.state == PartState::Ready),
        "{before:?}"
    );

    let shutdown = CancellationToken::new();
    let running = tokio::spawn(host.run(shutdown.clone().cancelled_owned()));
    eventually("every part running", || health.report().is_healthy()).await;
    let report = health.report();
    let kinds: Vec<_> = report
        .parts
        .iter()
        .map(|p| (p.name.as_str(), p.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("inventory", PartKind::Consumer),
            ("relay", PartKind::Relay),
            ("sweeper", PartKind::Service)
        ]
    );
    assert_eq!(report.health.consumers_running, 1);
    let json = serde_json::to_value(&report).expect("serializes");
    assert_eq!(json["parts"][1]["state"], "running");

    bus.publish(&OrderCreated { order_id: 1 })
        .await
        .expect("routed");
    eventually("the event handled", || handled.load(Ordering::SeqCst) == 1).await;

    shutdown.cancel();
    let stopped = running.await.expect("joins").expect("stops cleanly");
    assert!(stopped.abandoned().is_empty());
    assert!(
        stopped.parts.iter().all(|p| p.state == PartState::Stopped),
        "{stopped:?}"
    );
    assert!(service_stopped.load(Ordering::SeqCst));
    assert!(!health.report().is_healthy());
}

#[tokio::test]
async fn work_still_running_at_the_drain_deadline_is_abandoned_and_run_returns() {
    let bus = MemoryBus::new("host.events.slow");
    let started = Arc::new(Notify::new());
    let finished = Arc::new(AtomicBool::new(false));
    let (s, f) = (Arc::clone(&started), Arc::clone(&finished));
    let consumer = bus
        .consumer("host.slow")
        .bind("orders.order.created")
        .dead_letter("host.dlx")
        .handle::<OrderCreated>(move |_: OrderCreated, _: MessageContext| {
            let (s, f) = (Arc::clone(&s), Arc::clone(&f));
            async move {
                s.notify_one();
                tokio::time::sleep(Duration::from_secs(30)).await;
                f.store(true, Ordering::SeqCst);
                Ok::<_, HandlerError>(())
            }
        })
        .start()
        .await
        .expect("consumer starts");
    let host = Host::new()
        .drain_deadline(Duration::from_millis(300))
        .consumer("slow", consumer)
        .service("stubborn", |_stop: CancellationToken| async move {
            // Ignores its token: only the deadline ends it.
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok::<_, std::io::Error>(())
        });
    let health = host.health();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(host.run(shutdown.clone().cancelled_owned()));
    bus.publish(&OrderCreated { order_id: 7 })
        .await
        .expect("routed");
    tokio::time::timeout(Duration::from_secs(5), started.notified())
        .await
        .expect("the handler starts");

    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("run returns after the deadline, not after the handler")
        .expect("joins")
        .expect("a shutdown asked for is Ok");
    let abandoned: Vec<_> = stopped.abandoned().iter().map(|p| p.name.clone()).collect();
    assert_eq!(abandoned, ["slow", "stubborn"]);
    assert!(
        !finished.load(Ordering::SeqCst),
        "the handler was not waited for"
    );
    assert_eq!(health.report().parts[0].state, PartState::Abandoned);
}

#[tokio::test]
async fn a_part_that_fails_stops_the_host_with_its_error() {
    let bus = MemoryBus::new("host.events.fail");
    let consumer = bus
        .consumer("host.fail")
        .bind("orders.order.created")
        .dead_letter("host.dlx")
        .handle::<OrderCreated>(|_: OrderCreated, _: MessageContext| async {
            Ok::<_, HandlerError>(())
        })
        .start()
        .await
        .expect("consumer starts");
    let host = Host::new().consumer("healthy", consumer).service(
        "broken",
        |_stop: CancellationToken| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err(std::io::Error::other("disk full"))
        },
    );
    let health = host.health();
    // The shutdown never comes: the failing part ends the run.
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        host.run(std::future::pending::<()>()),
    )
    .await
    .expect("run returns when a part fails");
    let Err(HostError::PartStopped { name, kind, source }) = result else {
        panic!("expected the broken part's error, got {result:?}");
    };
    assert_eq!((name.as_str(), kind), ("broken", PartKind::Service));
    assert_eq!(source.expect("its error").to_string(), "disk full");
    let parts = health.report().parts;
    assert_eq!(parts[0].state, PartState::Stopped, "the others are stopped");
    assert_eq!(parts[1].state, PartState::Failed("disk full".into()));
}
