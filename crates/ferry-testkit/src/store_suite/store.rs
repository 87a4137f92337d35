//! The outbox store itself: migrations, what a row holds, claims, leases, backoff,
//! partitions, retry, retention, statistics.

// `&mut *tx` is sqlx's idiom for the transaction's connection, as the docs show it.
#![allow(clippy::explicit_auto_deref)]

use std::time::Duration;

use super::{common::*, *};
use ferry_core::outbox::OutboxOptions;
use ferry_core::{OutboxStatus, OutboxStore, PublishOptions};

pub async fn migrations_run_once_even_when_started_concurrently<B: Backend>() {
    let db = TestDb::<B>::new().await;
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let pool = db.pool.clone();
            tokio::spawn(async move { ferry_sql::migrate::<B>(&pool).await })
        })
        .collect();
    for run in runs {
        run.await.unwrap().unwrap();
    }
    let versions: Vec<i64> = B::int_column(
        &db.pool,
        "SELECT version FROM ferry_migrations ORDER BY version",
    )
    .await
    .unwrap();
    assert_eq!(versions, vec![1, 2]);
    assert!(
        !B::has_sqlx_migrations_table(&db.pool).await,
        "ferry must not touch _sqlx_migrations"
    );
    db.close().await;
}

pub async fn the_row_holds_exactly_what_is_sent<B: Backend>() {
    let db = TestDb::<B>::new().await;
    let outbox = Outbox::<B>::new(db.pool.clone()).with_source("tests-source");
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

    let mut tx = begin::<B>(&db.pool).await.unwrap();
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
    assert_eq!(
        B::leased_pending(&db.pool).await,
        1,
        "the claim holds the row"
    );
    // A claim not settled holds a connection on PostgreSQL: let it go before the pool closes.
    drop(outbox);
    db.close().await;
}

pub async fn adding_the_same_id_twice_is_an_error_that_says_so<B: Backend>() {
    let db = TestDb::<B>::new().await;
    let outbox = Outbox::<B>::new(db.pool.clone());
    let options = || PublishOptions {
        id: Some("dup-1".into()),
        ..PublishOptions::default()
    };
    let mut tx = begin::<B>(&db.pool).await.unwrap();
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

pub async fn retry_all_dead_brings_back_every_dead_row<B: Backend>() {
    let db = TestDb::<B>::new().await;
    let outbox = Outbox::<B>::new(db.pool.clone()).with_max_attempts(1);
    let ids = add_many::<B>(&db.pool, &outbox, 5, 5, |_| None).await;
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
    drop(outbox);
    db.close().await;
}

pub async fn a_failed_row_backs_off_and_release_counts_no_attempt<B: Backend>() {
    let db = TestDb::<B>::new().await;
    let outbox = Outbox::<B>::new(db.pool.clone())
        .with_backoff(Duration::from_secs(60), Duration::from_secs(600));
    add_many::<B>(&db.pool, &outbox, 2, 2, |_| None).await;
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
    let backoff_s = B::seconds_to_next_attempt(&db.pool, &claimed[0].id).await;
    assert!((50.0..=61.0).contains(&backoff_s), "backoff {backoff_s}");
    assert_eq!(
        status_of::<B>(&db.pool, &claimed[0].id).await,
        ("pending".into(), 1)
    );
    drop(outbox);
    db.close().await;
}

pub async fn a_partition_waits_for_its_failed_head<B: Backend>() {
    let db = TestDb::<B>::new().await;
    let outbox = Outbox::<B>::new(db.pool.clone())
        .with_backoff(Duration::from_secs(60), Duration::from_secs(60));
    add_many::<B>(&db.pool, &outbox, 4, 4, |n| {
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
    B::exec_pool(
        &db.pool,
        "UPDATE ferry_outbox SET status = 'dead' WHERE id = $1",
        vec![first[0].id.as_str().into()],
    )
    .await
    .unwrap();
    let next = outbox.claim(10, Duration::from_secs(30)).await.unwrap();
    let ns: Vec<u64> = next.iter().map(|m| n_of(&m.message)).collect();
    assert_eq!(
        ns,
        vec![1, 2],
        "the rest of partition a, in order, in one batch"
    );
    drop(outbox);
    db.close().await;
}

pub async fn retention_deletes_only_old_published_rows_in_batches<B: Backend>() {
    let db = TestDb::<B>::new().await;
    let outbox = Outbox::<B>::new(db.pool.clone()).with_options(OutboxOptions {
        cleanup_batch: 7,
        ..Default::default()
    });
    let ids = add_many::<B>(&db.pool, &outbox, 40, 40, |_| None).await;
    outbox.mark_published(&ids[..30]).await.unwrap();
    // 25 of the published rows are eight days old.
    B::age_published(&db.pool, &ids[..25], Duration::from_secs(8 * 24 * 3600)).await;
    assert_eq!(outbox.cleanup().await.unwrap(), 25);
    let stats = outbox.stats().await.unwrap();
    assert_eq!((stats.pending, stats.published), (10, 5));
    assert_eq!(outbox.cleanup().await.unwrap(), 0);
    db.close().await;
}

pub async fn an_outbox_keeping_no_history_deletes_rows_as_it_publishes_them<B: Backend>() {
    let db = TestDb::<B>::new().await;
    let outbox = Outbox::<B>::new(db.pool.clone())
        .with_retention(Duration::ZERO)
        .with_backoff(Duration::from_secs(60), Duration::from_secs(60));
    let ids = add_many::<B>(&db.pool, &outbox, 3, 3, |_| None).await;
    assert_eq!(
        outbox
            .claim(10, Duration::from_secs(30))
            .await
            .unwrap()
            .len(),
        3
    );
    outbox.mark_published(&ids[..2]).await.unwrap();
    outbox
        .mark_failed(&[ferry_core::OutboxFailure {
            id: ids[2].clone(),
            error: "nacked".into(),
        }])
        .await
        .unwrap();
    let stats = outbox.stats().await.unwrap();
    assert_eq!((stats.pending, stats.published, stats.dead), (1, 0, 0));
    let left = outbox.list(None, 10).await.unwrap();
    assert_eq!(
        left.iter().map(|row| row.id.as_str()).collect::<Vec<_>>(),
        [ids[2].as_str()],
        "the published rows are gone; the failed one waits for its next attempt"
    );
    assert_eq!(left[0].attempts, 1);
    db.close().await;
}

pub async fn stats_and_list_report_the_table<B: Backend>() {
    let db = TestDb::<B>::new().await;
    let outbox = Outbox::<B>::new(db.pool.clone());
    let empty = outbox.stats().await.unwrap();
    assert_eq!(empty.oldest_pending_age_s, None);
    let ids = add_many::<B>(&db.pool, &outbox, 6, 6, |_| None).await;
    outbox.mark_published(&ids[..2]).await.unwrap();
    B::exec_pool(
        &db.pool,
        "UPDATE ferry_outbox SET status = 'dead' WHERE id = $1",
        vec![(&ids[2]).into()],
    )
    .await
    .unwrap();
    B::age_created(&db.pool, &ids[2], Duration::from_secs(3600)).await;
    B::age_created(&db.pool, &ids[3], Duration::from_secs(600)).await;
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
