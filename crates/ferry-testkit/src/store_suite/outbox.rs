//! The outbox with the core relay and a recording publisher.

// `&mut *tx` is sqlx's idiom for the transaction's connection, as the docs show it.
#![allow(clippy::explicit_auto_deref)]

use std::{collections::HashMap, time::Duration};

use super::{common::*, *};
use ferry_core::outbox::RetryOutcome;
use ferry_core::{OutboxStore, PublishOptions, RelayOptions};

const LIMIT: Duration = Duration::from_secs(60);

pub async fn a_rolled_back_transaction_publishes_nothing_and_a_committed_one_exactly_once<
    B: Backend,
>() {
    let db = TestDb::<B>::new().await;
    let outbox = Outbox::<B>::new(db.pool.clone());
    let publisher = RecordingPublisher::new();

    let mut tx = begin::<B>(&db.pool).await.unwrap();
    let rolled_back = outbox.add(&mut *tx, &ItemAdded::new(1)).await.unwrap();
    tx.rollback().await.unwrap();

    let mut tx = begin::<B>(&db.pool).await.unwrap();
    let options = PublishOptions {
        routing_key: Some("tests.custom.key".into()),
        correlation_id: Some("corr-1".into()),
        ..PublishOptions::default()
    };
    let committed = outbox
        .add_with(&mut *tx, &ItemAdded::new(2), options)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let relay = RunningRelay::spawn(outbox.clone(), publisher.clone(), fast_relay());
    wait_until(LIMIT, "the committed event is published", || async {
        publisher.count() >= 1
    })
    .await;
    // Let the relay go round a few more times: nothing else may come.
    tokio::time::sleep(Duration::from_millis(500)).await;
    relay.stop().await;

    let published = publisher.published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].id(), committed);
    assert_ne!(published[0].id(), rolled_back);
    assert_eq!(published[0].routing_key, "tests.custom.key");
    assert_eq!(n_of(&published[0]), 2);
    assert_eq!(
        status_of::<B>(&db.pool, &committed).await,
        ("published".into(), 0)
    );
    let rows = count::<B>(&db.pool, "SELECT count(*) FROM ferry_outbox", vec![]).await;
    assert_eq!(rows, 1, "the rolled-back row must not exist");
    db.close().await;
}

pub async fn three_relays_drain_ten_thousand_rows_each_published_once<B: Backend>() {
    let db = TestDb::<B>::new().await;
    let writer = Outbox::<B>::new(db.pool.clone());
    let ids = add_many::<B>(&db.pool, &writer, 10_000, 500, |_| None).await;
    let publisher = RecordingPublisher::new();
    let mut relays = Vec::new();
    for _ in 0..3 {
        let pool = db.other_pool(3).await;
        relays.push(RunningRelay::spawn(
            Outbox::<B>::new(pool),
            publisher.clone(),
            fast_relay(),
        ));
    }
    wait_until(LIMIT, "all 10,000 rows published", || async {
        writer.stats().await.unwrap().pending == 0
    })
    .await;
    for relay in relays {
        relay.stop().await;
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for id in publisher.ids() {
        *seen.entry(id).or_default() += 1;
    }
    assert_eq!(seen.len(), 10_000);
    assert!(
        seen.values().all(|&c| c == 1),
        "an event was published twice"
    );
    assert!(ids.iter().all(|id| seen.contains_key(id)));
    let stats = writer.stats().await.unwrap();
    assert_eq!((stats.pending, stats.published, stats.dead), (0, 10_000, 0));
    db.close().await;
}

pub async fn a_relay_hung_while_holding_its_claim_does_not_strand_its_rows<B: Backend>() {
    let db = TestDb::<B>::new().await;
    let outbox = Outbox::<B>::new(db.pool.clone());
    let ids = add_many::<B>(&db.pool, &outbox, 50, 50, |_| None).await;
    let lease = Duration::from_millis(800);

    // A relay that claims and hangs before marking: its task is dropped mid-batch, its
    // outbox kept (on PostgreSQL its claim's transaction stays open, as a hung process's
    // would; dropped, it would roll back at once).
    let stuck = RecordingPublisher::new();
    stuck.set_delay(Duration::from_secs(3600));
    let hung = Outbox::<B>::new(db.pool.clone());
    let doomed = RunningRelay::spawn(
        hung.clone(),
        stuck.clone(),
        RelayOptions {
            lease,
            ..fast_relay()
        },
    );
    wait_until(LIMIT, "the doomed relay claimed", || async {
        stuck.calls() > 0
    })
    .await;
    doomed.task.abort();
    let _ = doomed.task.await;
    // And a claim that is never marked.
    let elsewhere = Outbox::<B>::new(db.pool.clone());
    let claimed_elsewhere = elsewhere.claim(100, lease).await.unwrap();
    let leased = B::leased_pending(&db.pool).await;
    assert_eq!(leased, 50, "all rows are leased by dead claimants");
    assert_eq!(claimed_elsewhere.len(), 0);

    let publisher = RecordingPublisher::new();
    let relay = RunningRelay::spawn(
        Outbox::<B>::new(db.pool.clone()),
        publisher.clone(),
        fast_relay(),
    );
    wait_until(
        LIMIT,
        "the leased rows are published after the lease",
        || async { outbox.stats().await.unwrap().pending == 0 },
    )
    .await;
    relay.stop().await;
    let mut got = publisher.ids();
    got.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(got, want);
    // Expiry is not a failure: no attempt was counted.
    let attempts = count::<B>(
        &db.pool,
        "SELECT coalesce(sum(attempts), 0) FROM ferry_outbox",
        vec![],
    )
    .await;
    assert_eq!(attempts, 0);
    drop((hung, elsewhere));
    db.close().await;
}

pub async fn an_unavailable_broker_keeps_rows_pending_without_attempts_and_without_spinning<
    B: Backend,
>() {
    let db = TestDb::<B>::new().await;
    let outbox = Outbox::<B>::new(db.pool.clone());
    let ids = add_many::<B>(&db.pool, &outbox, 20, 20, |_| None).await;
    let publisher = RecordingPublisher::new();
    publisher.set_unavailable(true);
    let relay = RunningRelay::spawn(
        outbox.clone(),
        publisher.clone(),
        RelayOptions {
            batch_size: 1,
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(400),
            ..fast_relay()
        },
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Backing off from 50 ms up to 400 ms, two seconds hold at most a dozen attempts; a relay
    // that spun would have made thousands.
    let calls = publisher.calls();
    assert!(calls >= 1, "the relay tried");
    assert!(calls <= 30, "the relay spun: {calls} publish calls in 2 s");
    for id in &ids {
        assert_eq!(status_of::<B>(&db.pool, id).await, ("pending".into(), 0));
    }
    publisher.set_unavailable(false);
    wait_until(
        LIMIT,
        "everything published once the broker is back",
        || async { publisher.count() == ids.len() },
    )
    .await;
    relay.stop().await;
    assert_eq!(outbox.stats().await.unwrap().pending, 0);
    db.close().await;
}

pub async fn an_unpublishable_row_goes_dead_after_its_attempts_and_retry_brings_it_back<
    B: Backend,
>() {
    let db = TestDb::<B>::new().await;
    let outbox = Outbox::<B>::new(db.pool.clone())
        .with_max_attempts(3)
        .with_backoff(Duration::from_millis(20), Duration::from_millis(50));
    let mut tx = begin::<B>(&db.pool).await.unwrap();
    let bad = outbox
        .add_with(
            &mut *tx,
            &ItemAdded::new(1),
            PublishOptions {
                routing_key: Some("tests.nowhere".into()),
                ..PublishOptions::default()
            },
        )
        .await
        .unwrap();
    let good = outbox.add(&mut *tx, &ItemAdded::new(2)).await.unwrap();
    tx.commit().await.unwrap();

    let publisher = RecordingPublisher::new();
    publisher.set_unroutable("tests.nowhere", true);
    let relay = RunningRelay::spawn(outbox.clone(), publisher.clone(), fast_relay());
    wait_until(LIMIT, "the unroutable row is dead", || async {
        status_of::<B>(&db.pool, &bad).await.0 == "dead"
    })
    .await;
    assert_eq!(status_of::<B>(&db.pool, &bad).await, ("dead".into(), 3));
    assert_eq!(status_of::<B>(&db.pool, &good).await.0, "published");
    let row = outbox.row(&bad).await.unwrap().unwrap();
    assert!(
        row.last_error
            .as_deref()
            .unwrap_or("")
            .contains("unroutable"),
        "{row:?}"
    );
    let stats = outbox.stats().await.unwrap();
    assert_eq!((stats.pending, stats.dead), (0, 1));

    // Somebody binds a queue; the operator retries.
    publisher.set_unroutable("tests.nowhere", false);
    assert_eq!(outbox.retry(&bad).await.unwrap(), RetryOutcome::Retried);
    wait_until(LIMIT, "the retried row is published", || async {
        status_of::<B>(&db.pool, &bad).await.0 == "published"
    })
    .await;
    relay.stop().await;
    assert_eq!(publisher.ids().iter().filter(|id| **id == bad).count(), 1);
    assert_eq!(
        outbox.retry(&bad).await.unwrap(),
        RetryOutcome::AlreadyPublished
    );
    assert!(matches!(
        outbox.retry("no-such-row").await,
        Err(ferry_core::OutboxError::NotFound(_))
    ));
    db.close().await;
}

pub async fn order_within_a_partition_holds_under_concurrent_relays<B: Backend>() {
    let db = TestDb::<B>::new().await;
    let writer = Outbox::<B>::new(db.pool.clone());
    let partitions = 8;
    add_many::<B>(&db.pool, &writer, 1_600, 40, |n| {
        Some(format!("p{}", n % partitions))
    })
    .await;
    let publisher = RecordingPublisher::new();
    publisher.set_delay(Duration::from_micros(200));
    let mut relays = Vec::new();
    for _ in 0..3 {
        let pool = db.other_pool(3).await;
        relays.push(RunningRelay::spawn(
            Outbox::<B>::new(pool),
            publisher.clone(),
            RelayOptions {
                batch_size: 17,
                ..fast_relay()
            },
        ));
    }
    wait_until(LIMIT, "all partitioned rows published", || async {
        writer.stats().await.unwrap().pending == 0
    })
    .await;
    for relay in relays {
        relay.stop().await;
    }
    let published = publisher.published();
    assert_eq!(published.len(), 1_600);
    let mut last: HashMap<u64, u64> = HashMap::new();
    for message in &published {
        let n = n_of(message);
        let p = n % partitions;
        if let Some(prev) = last.insert(p, n) {
            assert!(prev < n, "partition p{p}: {n} was published after {prev}");
        }
    }
    db.close().await;
}

pub async fn the_relay_removes_published_rows_past_retention<B: Backend>() {
    let db = TestDb::<B>::new().await;
    let outbox = Outbox::<B>::new(db.pool.clone()).with_retention(Duration::from_secs(3600));
    let publisher = RecordingPublisher::new();
    add_many::<B>(&db.pool, &outbox, 10, 10, |_| None).await;
    let relay = RunningRelay::spawn(
        outbox.clone(),
        publisher.clone(),
        RelayOptions {
            cleanup_interval: Duration::from_millis(200),
            ..fast_relay()
        },
    );
    wait_until(LIMIT, "the relay publishes the rows", || async {
        publisher.count() == 10
    })
    .await;
    // Published a moment ago: within the retention, kept.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(outbox.stats().await.unwrap().published, 10);
    // Four of them were published two hours ago: past the retention, removed.
    let ids: Vec<String> = outbox
        .list(None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.id)
        .take(4)
        .collect();
    B::age_published(&db.pool, &ids, Duration::from_secs(2 * 3600)).await;
    wait_until(LIMIT, "the relay removes the expired rows", || async {
        outbox.stats().await.unwrap().published == 6
    })
    .await;
    for id in &ids {
        assert!(outbox.row(id).await.unwrap().is_none(), "{id} is removed");
    }
    relay.stop().await;
    db.close().await;
}
