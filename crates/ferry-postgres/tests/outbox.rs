//! The PostgreSQL outbox with the core relay and a recording publisher.

// `&mut *tx` is sqlx's idiom for the transaction's connection, as the docs show it.
#![allow(clippy::explicit_auto_deref)]

mod common;

use std::{collections::HashMap, time::Duration};

use common::*;
use ferry_core::{OutboxStatus, OutboxStore, PublishOptions, RelayOptions};
use ferry_postgres::{PgOutbox, RetryOutcome, sqlx};

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_once_even_when_started_concurrently() {
    let db = TestDb::new().await;
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let pool = db.pool.clone();
            tokio::spawn(async move { ferry_postgres::migrate(&pool).await })
        })
        .collect();
    for run in runs {
        run.await.unwrap().unwrap();
    }
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM ferry_migrations")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(versions, vec![1]);
    let sqlx_table: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(sqlx_table, None, "ferry must not touch _sqlx_migrations");
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_transaction_publishes_nothing_and_a_committed_one_exactly_once() {
    let db = TestDb::new().await;
    let outbox = PgOutbox::new(db.pool.clone());
    let publisher = RecordingPublisher::new();

    let mut tx = db.pool.begin().await.unwrap();
    let rolled_back = outbox.add(&mut *tx, &ItemAdded::new(1)).await.unwrap();
    tx.rollback().await.unwrap();

    let mut tx = db.pool.begin().await.unwrap();
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
        status_of(&db.pool, &committed).await,
        ("published".into(), 0)
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM ferry_outbox")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1, "the rolled-back row must not exist");
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_row_holds_exactly_what_is_sent() {
    let db = TestDb::new().await;
    let outbox = PgOutbox::new(db.pool.clone()).with_source("tests-source");
    let event = ItemAdded::new(7);
    let mut headers = std::collections::BTreeMap::new();
    headers.insert("x-tenant".to_owned(), "acme".to_owned());
    let options = PublishOptions {
        id: Some("evt-fixed-1".into()),
        correlation_id: Some("corr-9".into()),
        causation_id: Some("cause-3".into()),
        subject: Some("order-7".into()),
        headers,
        partition_key: Some("order-7".into()),
        ..PublishOptions::default()
    };
    // What a direct publish with the same options would send.
    let mut expected = options.message_for(&event, Some("tests-source")).unwrap();
    expected.message.properties.message_id = Some("evt-fixed-1".into());

    let mut tx = db.pool.begin().await.unwrap();
    let id = outbox.add_with(&mut *tx, &event, options).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(id, "evt-fixed-1");

    let claimed = outbox.claim(10, Duration::from_secs(5)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let row = &claimed[0];
    assert_eq!(row.id, "evt-fixed-1");
    assert_eq!(row.partition_key.as_deref(), Some("order-7"));
    assert_eq!(row.attempts, 0);
    assert_eq!(row.message.routing_key, expected.routing_key);
    assert_eq!(row.message.exchange, None);
    assert_eq!(row.message.message.body, expected.message.body);
    // The envelope's time is taken when the message is built: compare all but the time.
    let mut got_headers = row.message.message.headers.clone();
    let mut want_headers = expected.message.headers.clone();
    assert!(got_headers.remove("ce-time").is_some());
    want_headers.remove("ce-time");
    assert_eq!(got_headers, want_headers);
    assert_eq!(
        row.message.message.header_str("ce-correlationid"),
        Some("corr-9")
    );
    assert_eq!(
        row.message
            .message
            .header_str("x-tenant")
            .or(row.message.message.header_str("ce-x-tenant")),
        Some("acme")
    );
    let mut got = row.message.message.properties.clone();
    let mut want = expected.message.properties.clone();
    got.timestamp = None;
    want.timestamp = None;
    assert_eq!(got, want);

    let listed = outbox.list(Some(OutboxStatus::Pending), 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].event_type, "tests.item.added");
    assert!(listed[0].locked_until.is_some(), "the claim holds a lease");
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_the_same_id_twice_is_an_error_that_says_so() {
    let db = TestDb::new().await;
    let outbox = PgOutbox::new(db.pool.clone());
    let options = || PublishOptions {
        id: Some("dup-1".into()),
        ..PublishOptions::default()
    };
    let mut tx = db.pool.begin().await.unwrap();
    outbox
        .add_with(&mut *tx, &ItemAdded::new(1), options())
        .await
        .unwrap();
    let err = outbox
        .add_with(&mut *tx, &ItemAdded::new(2), options())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    // The transaction holds a connection: give it back before closing the pool.
    drop(tx);
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_relays_drain_ten_thousand_rows_each_published_once() {
    let db = TestDb::new().await;
    let writer = PgOutbox::new(db.pool.clone());
    let ids = add_many(&db.pool, &writer, 10_000, 500, |_| None).await;
    let publisher = RecordingPublisher::new();
    let mut relays = Vec::new();
    for _ in 0..3 {
        let pool = db.other_pool(3).await;
        relays.push(RunningRelay::spawn(
            PgOutbox::new(pool),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_while_holding_a_lease_does_not_strand_its_rows() {
    let db = TestDb::new().await;
    let outbox = PgOutbox::new(db.pool.clone());
    let ids = add_many(&db.pool, &outbox, 50, 50, |_| None).await;
    let lease = Duration::from_millis(800);

    // A relay that claims and dies before marking: its task is dropped mid-batch.
    let stuck = RecordingPublisher::new();
    stuck.set_delay(Duration::from_secs(3600));
    let doomed = RunningRelay::spawn(
        PgOutbox::new(db.pool.clone()),
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
    let claimed_elsewhere = PgOutbox::new(db.pool.clone())
        .claim(100, lease)
        .await
        .unwrap();
    let leased: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ferry_outbox WHERE locked_until > now() AND status = 'pending'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(leased, 50, "all rows are leased by dead claimants");
    assert_eq!(claimed_elsewhere.len(), 0);

    let publisher = RecordingPublisher::new();
    let relay = RunningRelay::spawn(
        PgOutbox::new(db.pool.clone()),
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
    let attempts: i64 = sqlx::query_scalar("SELECT coalesce(sum(attempts), 0) FROM ferry_outbox")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(attempts, 0);
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_broker_keeps_rows_pending_without_attempts_and_without_spinning() {
    let db = TestDb::new().await;
    let outbox = PgOutbox::new(db.pool.clone());
    let ids = add_many(&db.pool, &outbox, 20, 20, |_| None).await;
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
        assert_eq!(status_of(&db.pool, id).await, ("pending".into(), 0));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpublishable_row_goes_dead_after_its_attempts_and_retry_brings_it_back() {
    let db = TestDb::new().await;
    let outbox = PgOutbox::new(db.pool.clone())
        .with_max_attempts(3)
        .with_backoff(Duration::from_millis(20), Duration::from_millis(50));
    let mut tx = db.pool.begin().await.unwrap();
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
        status_of(&db.pool, &bad).await.0 == "dead"
    })
    .await;
    assert_eq!(status_of(&db.pool, &bad).await, ("dead".into(), 3));
    assert_eq!(status_of(&db.pool, &good).await.0, "published");
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
        status_of(&db.pool, &bad).await.0 == "published"
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_all_dead_brings_back_every_dead_row() {
    let db = TestDb::new().await;
    let outbox = PgOutbox::new(db.pool.clone()).with_max_attempts(1);
    let ids = add_many(&db.pool, &outbox, 5, 5, |_| None).await;
    let claimed = outbox.claim(10, Duration::from_secs(5)).await.unwrap();
    let failures: Vec<_> = claimed
        .iter()
        .map(|m| ferry_core::OutboxFailure {
            id: m.id.clone(),
            error: "nacked".into(),
        })
        .collect();
    outbox.mark_failed(&failures).await.unwrap();
    assert_eq!(outbox.stats().await.unwrap().dead, 5);
    let mut retried = outbox.retry_all_dead().await.unwrap();
    retried.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(retried, want);
    let stats = outbox.stats().await.unwrap();
    assert_eq!((stats.pending, stats.dead), (5, 0));
    assert_eq!(
        outbox
            .claim(10, Duration::from_secs(5))
            .await
            .unwrap()
            .len(),
        5
    );
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_row_backs_off_and_release_counts_no_attempt() {
    let db = TestDb::new().await;
    let outbox = PgOutbox::new(db.pool.clone())
        .with_backoff(Duration::from_secs(60), Duration::from_secs(600));
    add_many(&db.pool, &outbox, 2, 2, |_| None).await;
    let claimed = outbox.claim(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(
        outbox
            .claim(10, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty(),
        "leased"
    );
    outbox
        .mark_failed(&[ferry_core::OutboxFailure {
            id: claimed[0].id.clone(),
            error: "nacked".into(),
        }])
        .await
        .unwrap();
    outbox.release(&[claimed[1].id.clone()]).await.unwrap();
    let again = outbox.claim(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(again.len(), 1, "the failed row waits for its backoff");
    assert_eq!(again[0].id, claimed[1].id);
    assert_eq!(again[0].attempts, 0);
    let backoff_s: f64 = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM next_attempt_at - now())::float8 FROM ferry_outbox WHERE id = $1",
    )
    .bind(&claimed[0].id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!((50.0..=61.0).contains(&backoff_s), "backoff {backoff_s}");
    assert_eq!(
        status_of(&db.pool, &claimed[0].id).await,
        ("pending".into(), 1)
    );
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_within_a_partition_holds_under_concurrent_relays() {
    let db = TestDb::new().await;
    let writer = PgOutbox::new(db.pool.clone());
    let partitions = 8;
    add_many(&db.pool, &writer, 1_600, 40, |n| {
        Some(format!("p{}", n % partitions))
    })
    .await;
    let publisher = RecordingPublisher::new();
    publisher.set_delay(Duration::from_micros(200));
    let mut relays = Vec::new();
    for _ in 0..3 {
        let pool = db.other_pool(3).await;
        relays.push(RunningRelay::spawn(
            PgOutbox::new(pool),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_waits_for_its_failed_head() {
    let db = TestDb::new().await;
    let outbox = PgOutbox::new(db.pool.clone())
        .with_backoff(Duration::from_secs(60), Duration::from_secs(60));
    add_many(&db.pool, &outbox, 4, 4, |n| {
        Some(if n < 3 { "a".into() } else { "b".into() })
    })
    .await;
    // Another relay holds only the head of partition a.
    let first = outbox.claim(1, Duration::from_secs(30)).await.unwrap();
    assert_eq!(first.len(), 1);
    let rest = outbox.claim(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(rest.len(), 1, "only partition b may go: {rest:?}");
    assert_eq!(rest[0].partition_key.as_deref(), Some("b"));
    // The head fails and backs off: the rest of its partition waits.
    outbox
        .mark_failed(&[ferry_core::OutboxFailure {
            id: first[0].id.clone(),
            error: "nacked".into(),
        }])
        .await
        .unwrap();
    assert!(
        outbox
            .claim(10, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty()
    );
    // Dead heads no longer hold it back.
    sqlx::query("UPDATE ferry_outbox SET status = 'dead' WHERE id = $1")
        .bind(&first[0].id)
        .execute(&db.pool)
        .await
        .unwrap();
    let next = outbox.claim(10, Duration::from_secs(30)).await.unwrap();
    let ns: Vec<u64> = next.iter().map(|m| n_of(&m.message)).collect();
    assert_eq!(
        ns,
        vec![1, 2],
        "the rest of partition a, in order, in one batch"
    );
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_wakes_the_relay_through_listen_notify() {
    let db = TestDb::new().await;
    let outbox = PgOutbox::new(db.pool.clone());
    let publisher = RecordingPublisher::new();
    // Polling once a minute: only a notification can make the publish come sooner.
    let relay = RunningRelay::spawn(
        outbox.clone(),
        publisher.clone(),
        RelayOptions {
            poll_interval: Duration::from_secs(60),
            ..fast_relay()
        },
    );
    // Let the relay find the table empty, start listening and go to sleep.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for n in 0..3 {
        let mut tx = db.pool.begin().await.unwrap();
        outbox.add(&mut *tx, &ItemAdded::new(n)).await.unwrap();
        tx.commit().await.unwrap();
        wait_until(
            Duration::from_secs(30),
            "a notification wakes the relay",
            || async { publisher.count() as u64 == n + 1 },
        )
        .await;
    }
    relay.stop().await;
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_only_old_published_rows_in_batches() {
    let db = TestDb::new().await;
    let outbox = PgOutbox::new(db.pool.clone()).with_options(ferry_postgres::PgOutboxOptions {
        cleanup_batch: 7,
        ..Default::default()
    });
    let ids = add_many(&db.pool, &outbox, 40, 40, |_| None).await;
    outbox.mark_published(&ids[..30]).await.unwrap();
    // 25 of the published rows are eight days old.
    sqlx::query(
        "UPDATE ferry_outbox SET published_at = now() - interval '8 days' WHERE id = ANY($1)",
    )
    .bind(&ids[..25])
    .execute(&db.pool)
    .await
    .unwrap();
    assert_eq!(outbox.cleanup().await.unwrap(), 25);
    let stats = outbox.stats().await.unwrap();
    assert_eq!((stats.pending, stats.published), (10, 5));
    assert_eq!(outbox.cleanup().await.unwrap(), 0);
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_list_report_the_table() {
    let db = TestDb::new().await;
    let outbox = PgOutbox::new(db.pool.clone());
    let empty = outbox.stats().await.unwrap();
    assert_eq!(empty.oldest_pending_age_s, None);
    let ids = add_many(&db.pool, &outbox, 6, 6, |_| None).await;
    outbox.mark_published(&ids[..2]).await.unwrap();
    sqlx::query("UPDATE ferry_outbox SET status = 'dead', created_at = now() - interval '1 hour' WHERE id = $1")
        .bind(&ids[2])
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE ferry_outbox SET created_at = now() - interval '10 minutes' WHERE id = $1")
        .bind(&ids[3])
        .execute(&db.pool)
        .await
        .unwrap();
    let stats = outbox.stats().await.unwrap();
    assert_eq!((stats.pending, stats.published, stats.dead), (3, 2, 1));
    let age = stats.oldest_pending_age_s.unwrap();
    assert!((590.0..700.0).contains(&age), "{age}");
    let all = outbox.list(None, 100).await.unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(all[0].id, ids[5], "newest first");
    let dead = outbox.list(Some(OutboxStatus::Dead), 100).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, ids[2]);
    assert_eq!(outbox.list(None, 2).await.unwrap().len(), 2);
    db.close().await;
}
