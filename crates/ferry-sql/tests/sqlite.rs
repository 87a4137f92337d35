//! The store suite (`ferry_testkit::store_suite`, written once over the database) on SQLite,
//! then what only SQLite does.

// `&mut *tx` is sqlx's idiom for the transaction's connection, as the docs show it.
#![allow(clippy::explicit_auto_deref)]

use std::time::Duration;

use ferry_core::RelayOptions;
use ferry_sql::sqlite::Sqlite as B;
use ferry_testkit::store_suite::common::*;

type TestDb = ferry_testkit::store_suite::TestDb<B>;
type Outbox = ferry_testkit::store_suite::Outbox<B>;

ferry_testkit::store_suite_tests!(B);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_add_wakes_the_relays_of_the_process_once_it_commits() {
    let db = TestDb::new().await;
    // The writer's outbox and the relay's are different values on different pools: the
    // database file is what they share.
    let writer = Outbox::new(db.pool.clone());
    let publisher = RecordingPublisher::new();
    // Polling once a minute: only the in-process signal can make the publish come sooner.
    let relay = RunningRelay::spawn(
        Outbox::new(db.other_pool(2).await),
        publisher.clone(),
        RelayOptions {
            poll_interval: Duration::from_secs(60),
            ..fast_relay()
        },
    );
    // Let the relay find the table empty and go to sleep.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for n in 0..3 {
        let mut tx = db.pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
        writer.add(&mut *tx, &ItemAdded::new(n)).await.unwrap();
        // The signal comes at the add; the commit comes later.
        tokio::time::sleep(Duration::from_millis(300)).await;
        tx.commit().await.unwrap();
        wait_until(
            Duration::from_secs(30),
            "the add wakes the relay",
            || async { publisher.count() as u64 == n + 1 },
        )
        .await;
    }
    // A rolled-back add wakes the relay for nothing, and it goes back to sleep.
    let mut tx = db.pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
    writer.add(&mut *tx, &ItemAdded::new(99)).await.unwrap();
    tx.rollback().await.unwrap();
    // An explicit notify after a commit.
    let mut tx = db.pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
    writer.add(&mut *tx, &ItemAdded::new(3)).await.unwrap();
    tx.commit().await.unwrap();
    writer.notify();
    wait_until(
        Duration::from_secs(30),
        "notify wakes the relay",
        || async { publisher.count() == 4 },
    )
    .await;
    relay.stop().await;
    let ns: Vec<u64> = publisher.published().iter().map(n_of).collect();
    assert_eq!(ns, vec![0, 1, 2, 3]);
    db.close().await;
}

/// Two outbox transactions that read before they write: DEFERRED ones both take a read lock,
/// and the second to upgrade fails at once with "database is locked" (SQLite cannot wait
/// there: the first would wait on it in turn); IMMEDIATE ones take turns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_outbox_transactions_that_read_then_write_take_turns_instead_of_failing() {
    let db = TestDb::new().await;
    let outbox = Outbox::new(db.pool.clone());
    let mut tasks = Vec::new();
    for n in 0..2u64 {
        let outbox = outbox.clone();
        tasks.push(tokio::spawn(async move {
            let mut tx = outbox.begin().await?;
            let _: i64 = sqlx::query_scalar("SELECT count(*) FROM ferry_outbox")
                .fetch_one(&mut *tx)
                .await
                .map_err(ferry_core::OutboxError::database)?;
            // Both hold their transaction open before either writes.
            tokio::time::sleep(Duration::from_millis(300)).await;
            tx.add(&ItemAdded::new(n)).await?;
            tx.commit().await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM ferry_outbox")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 2);
    db.close().await;
}
