//! The outbox with the core relay on the real RabbitMQ publisher.
#![allow(clippy::explicit_auto_deref)]

use std::{collections::HashMap, time::Duration};

use super::{common::*, *};
use crate::{ProxyMode, TcpProxy, unique_name};
use ferry_core::{OutboxRelay, OutboxStore, PublishOptions, RelayOptions};

const LIMIT: Duration = Duration::from_secs(90);
const QUIET: Duration = Duration::from_secs(10);

pub async fn a_rolled_back_transaction_publishes_nothing_and_a_committed_one_reaches_the_queue_once<
    B: Backend,
>() {
    let db = TestDb::<B>::new().await;
    let exchange = unique_name("ferry-test-outbox");
    let bus = broker(&exchange).await;
    let mut queue = bus.subscribe(&["#"]).await.unwrap();
    let outbox = Outbox::<B>::new(db.pool.clone());

    let mut tx = begin::<B>(&db.pool).await.unwrap();
    outbox.add(&mut *tx, &ItemAdded::new(1)).await.unwrap();
    tx.rollback().await.unwrap();
    let mut tx = begin::<B>(&db.pool).await.unwrap();
    let committed = outbox.add(&mut *tx, &ItemAdded::new(2)).await.unwrap();
    tx.commit().await.unwrap();

    let relay = RunningRelay::spawn(outbox.clone(), bus.clone(), fast_relay());
    let got = receive(&mut queue, 1, QUIET).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].properties.message_id.as_deref(),
        Some(committed.as_str())
    );
    assert_eq!(got[0].header_str("ce-id"), Some(committed.as_str()));
    // Nothing else comes.
    assert!(
        receive(&mut queue, 1, Duration::from_secs(1))
            .await
            .is_empty()
    );
    relay.stop().await;
    assert_eq!(
        status_of::<B>(&db.pool, &committed).await,
        ("published".into(), 0)
    );

    queue.close().await;
    bus.delete_exchange(&exchange).await.unwrap();
    bus.close().await;
    db.close().await;
}

pub async fn three_relays_drain_ten_thousand_rows_each_reaching_the_queue_once<B: Backend>() {
    let db = TestDb::<B>::new().await;
    let exchange = unique_name("ferry-test-outbox");
    let watcher = broker(&exchange).await;
    let mut queue = watcher.subscribe(&["#"]).await.unwrap();
    let writer = Outbox::<B>::new(db.pool.clone());
    let ids = add_many::<B>(&db.pool, &writer, 10_000, 500, |_| None).await;

    let mut relays = Vec::new();
    let mut buses = Vec::new();
    for _ in 0..3 {
        let bus = broker(&exchange).await;
        let store = Outbox::<B>::new(db.other_pool(3).await);
        relays.push(RunningRelay::spawn(store, bus.clone(), fast_relay()));
        buses.push(bus);
    }
    let received = receive_ids(&mut queue, 10_000, QUIET).await;
    wait_until(LIMIT, "no row left pending", || async {
        writer.stats().await.unwrap().pending == 0
    })
    .await;
    // Any duplicate would come after the 10,000th.
    let extra = receive_ids(&mut queue, 1, Duration::from_secs(1)).await;
    for relay in relays {
        relay.stop().await;
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for id in received.iter().chain(&extra) {
        *seen.entry(id.as_str()).or_default() += 1;
    }
    assert_eq!(received.len(), 10_000);
    assert!(extra.is_empty(), "a duplicate arrived: {extra:?}");
    assert!(seen.values().all(|&c| c == 1));
    assert!(ids.iter().all(|id| seen.contains_key(id.as_str())));
    assert_eq!(writer.stats().await.unwrap().published, 10_000);

    queue.close().await;
    for bus in buses {
        bus.close().await;
    }
    watcher.delete_exchange(&exchange).await.unwrap();
    watcher.close().await;
    db.close().await;
}

/// More batches in flight than the relay's pool has connections: the batches' marks, the
/// claims and the housekeeping share two connections without waiting on one another, whether
/// the relay drains or runs; every row reaches the queue once.
pub async fn a_relay_with_more_batches_in_flight_than_connections_publishes_every_row_once<
    B: Backend,
>() {
    let db = TestDb::<B>::new().await;
    let exchange = unique_name("ferry-test-outbox");
    let bus = broker(&exchange).await;
    let mut queue = bus.subscribe(&["#"]).await.unwrap();
    let writer = Outbox::<B>::new(db.pool.clone());
    let options = RelayOptions {
        batch_size: 50,
        batches_in_flight: 6,
        ..fast_relay()
    };

    let mut ids = add_many::<B>(&db.pool, &writer, 3_000, 500, |_| None).await;
    let relay = OutboxRelay::new(Outbox::<B>::new(db.other_pool(2).await), bus.clone())
        .with_options(options);
    assert_eq!(relay.drain().await.unwrap(), 3_000);

    ids.extend(add_many::<B>(&db.pool, &writer, 3_000, 500, |_| None).await);
    let running = RunningRelay::spawn(
        Outbox::<B>::new(db.other_pool(2).await),
        bus.clone(),
        options,
    );
    wait_until(LIMIT, "no row left pending", || async {
        writer.stats().await.unwrap().pending == 0
    })
    .await;
    running.stop().await;

    let received = receive_ids(&mut queue, 6_000, QUIET).await;
    let extra = receive_ids(&mut queue, 1, Duration::from_secs(1)).await;
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for id in received.iter().chain(&extra) {
        *seen.entry(id.as_str()).or_default() += 1;
    }
    assert_eq!(received.len(), 6_000);
    assert!(extra.is_empty(), "a duplicate arrived: {extra:?}");
    assert!(ids.iter().all(|id| seen.get(id.as_str()) == Some(&1)));
    assert_eq!(writer.stats().await.unwrap().published, 6_000);

    queue.close().await;
    bus.delete_exchange(&exchange).await.unwrap();
    bus.close().await;
    db.close().await;
}

pub async fn a_relay_killed_holding_a_lease_leaves_its_rows_to_another<B: Backend>() {
    let db = TestDb::<B>::new().await;
    let exchange = unique_name("ferry-test-outbox");
    let bus = broker(&exchange).await;
    let mut queue = bus.subscribe(&["#"]).await.unwrap();
    let outbox = Outbox::<B>::new(db.pool.clone());
    let ids = add_many::<B>(&db.pool, &outbox, 30, 30, |_| None).await;

    let stuck = RecordingPublisher::new();
    stuck.set_delay(Duration::from_secs(3600));
    let doomed = RunningRelay::spawn(
        Outbox::<B>::new(db.pool.clone()),
        stuck.clone(),
        RelayOptions {
            lease: Duration::from_millis(800),
            ..fast_relay()
        },
    );
    wait_until(LIMIT, "the doomed relay claimed", || async {
        stuck.calls() > 0
    })
    .await;
    doomed.task.abort();
    let _ = doomed.task.await;

    let relay = RunningRelay::spawn(Outbox::<B>::new(db.pool.clone()), bus.clone(), fast_relay());
    let mut received = receive_ids(&mut queue, ids.len(), QUIET).await;
    relay.stop().await;
    received.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(received, want);
    assert_eq!(outbox.stats().await.unwrap().pending, 0);

    queue.close().await;
    bus.delete_exchange(&exchange).await.unwrap();
    bus.close().await;
    db.close().await;
}

pub async fn an_unreachable_broker_keeps_rows_pending_and_the_relay_backs_off_until_it_is_back<
    B: Backend,
>() {
    let db = TestDb::<B>::new().await;
    let exchange = unique_name("ferry-test-outbox");
    let watcher = broker(&exchange).await;
    let mut queue = watcher.subscribe(&["#"]).await.unwrap();
    let proxy = TcpProxy::start(crate::amqp::broker_addr()).await.unwrap();
    let bus = broker_at(&crate::amqp::amqp_url_via(proxy.addr()), &exchange).await;
    // The broker goes away: connections are cut and new ones refused.
    proxy.set_mode(ProxyMode::Refuse);
    proxy.cut_all();

    let outbox = Outbox::<B>::new(db.pool.clone());
    let ids = add_many::<B>(&db.pool, &outbox, 20, 20, |_| None).await;
    let publisher = Counting::new(bus.clone());
    let relay = RunningRelay::spawn(
        outbox.clone(),
        publisher.clone(),
        RelayOptions {
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(400),
            ..fast_relay()
        },
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let batches = publisher.batches();
    assert!(batches >= 1, "the relay tried");
    assert!(batches <= 30, "the relay spun: {batches} batches in 3 s");
    for id in &ids {
        assert_eq!(status_of::<B>(&db.pool, id).await, ("pending".into(), 0));
    }

    proxy.set_mode(ProxyMode::Pass);
    let mut received = receive_ids(&mut queue, ids.len(), Duration::from_secs(30)).await;
    wait_until(LIMIT, "no row left pending", || async {
        outbox.stats().await.unwrap().pending == 0
    })
    .await;
    relay.stop().await;
    received.sort();
    received.dedup();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(received, want);
    let attempts = count::<B>(
        &db.pool,
        "SELECT coalesce(sum(attempts), 0) FROM ferry_outbox",
        vec![],
    )
    .await;
    assert_eq!(attempts, 0, "an unreachable broker is not the rows' fault");

    queue.close().await;
    bus.close().await;
    watcher.delete_exchange(&exchange).await.unwrap();
    watcher.close().await;
    db.close().await;
}

pub async fn an_unroutable_row_goes_dead_and_retry_brings_it_back<B: Backend>() {
    let db = TestDb::<B>::new().await;
    let exchange = unique_name("ferry-test-outbox");
    let bus = broker(&exchange).await;
    let outbox = Outbox::<B>::new(db.pool.clone())
        .with_max_attempts(3)
        .with_backoff(Duration::from_millis(20), Duration::from_millis(50));
    let mut tx = begin::<B>(&db.pool).await.unwrap();
    let options = PublishOptions {
        routing_key: Some("tests.nowhere".into()),
        ..PublishOptions::default()
    };
    let id = outbox
        .add_with(&mut *tx, &ItemAdded::new(1), options)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // No queue is bound on the exchange: the mandatory publish comes back.
    let relay = RunningRelay::spawn(outbox.clone(), bus.clone(), fast_relay());
    wait_until(LIMIT, "the unroutable row is dead", || async {
        status_of::<B>(&db.pool, &id).await.0 == "dead"
    })
    .await;
    assert_eq!(status_of::<B>(&db.pool, &id).await, ("dead".into(), 3));
    let row = outbox.row(&id).await.unwrap().unwrap();
    assert!(
        row.last_error
            .as_deref()
            .unwrap_or("")
            .contains("unroutable"),
        "{row:?}"
    );

    // A queue is bound now; the operator retries.
    let mut queue = bus.subscribe(&["tests.nowhere"]).await.unwrap();
    outbox.retry(&id).await.unwrap();
    let received = receive_ids(&mut queue, 1, QUIET).await;
    assert_eq!(received, vec![id.clone()]);
    wait_until(LIMIT, "the row is published", || async {
        status_of::<B>(&db.pool, &id).await.0 == "published"
    })
    .await;
    relay.stop().await;

    queue.close().await;
    bus.delete_exchange(&exchange).await.unwrap();
    bus.close().await;
    db.close().await;
}

pub async fn order_within_a_partition_holds_on_the_queue_under_concurrent_relays<B: Backend>() {
    let db = TestDb::<B>::new().await;
    let exchange = unique_name("ferry-test-outbox");
    let watcher = broker(&exchange).await;
    let mut queue = watcher.subscribe(&["#"]).await.unwrap();
    let writer = Outbox::<B>::new(db.pool.clone());
    let partitions = 10;
    add_many::<B>(&db.pool, &writer, 2_000, 50, |n| {
        Some(format!("order-{}", n % partitions))
    })
    .await;
    let mut relays = Vec::new();
    let mut buses = Vec::new();
    for _ in 0..3 {
        let bus = broker(&exchange).await;
        relays.push(RunningRelay::spawn(
            Outbox::<B>::new(db.other_pool(3).await),
            bus.clone(),
            RelayOptions {
                batch_size: 25,
                ..fast_relay()
            },
        ));
        buses.push(bus);
    }
    let received = receive(&mut queue, 2_000, QUIET).await;
    for relay in relays {
        relay.stop().await;
    }
    assert_eq!(received.len(), 2_000);
    let mut last: HashMap<u64, u64> = HashMap::new();
    for message in &received {
        let event: ItemAdded = serde_json::from_slice(&message.body).unwrap();
        let p = event.n % partitions;
        if let Some(prev) = last.insert(p, event.n) {
            assert!(
                prev < event.n,
                "partition {p}: {} arrived after {prev}",
                event.n
            );
        }
    }

    queue.close().await;
    for bus in buses {
        bus.close().await;
    }
    watcher.delete_exchange(&exchange).await.unwrap();
    watcher.close().await;
    db.close().await;
}
