//! The store suite (`ferry_testkit::store_suite`, written once over the database) on PostgreSQL,
//! then what only PostgreSQL does.

// `&mut *tx` is sqlx's idiom for the transaction's connection, as the docs show it.
#![allow(clippy::explicit_auto_deref)]

use std::time::Duration;

use ferry_core::{OutboxStore, RelayOptions};
use ferry_sql::postgres::Postgres as B;
use ferry_testkit::store_suite::{Backend, common::*};

type TestDb = ferry_testkit::store_suite::TestDb<B>;
type Outbox = ferry_testkit::store_suite::Outbox<B>;

ferry_testkit::store_suite_tests!(B);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_wakes_the_relay_through_listen_notify() {
    let db = TestDb::new().await;
    let outbox = Outbox::new(db.pool.clone());
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

/// Who holds a row's lease (`locked_by`), read on `conn`.
async fn leased_to(conn: &mut sqlx::PgConnection, id: &str) -> Option<String> {
    sqlx::query_scalar("SELECT locked_by FROM ferry_outbox WHERE id = $1")
        .bind(id)
        .fetch_one(conn)
        .await
        .unwrap()
}

/// An `OutboxTransaction` hands its events to the relay running on the same outbox: the row is
/// leased to that relay from its insert (no other relay can take it), and the relay publishes
/// it at once, though it polls once a minute. A partitioned event takes the table's way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_transaction_hands_its_events_to_the_relay_on_the_same_outbox() {
    let db = TestDb::new().await;
    let outbox = Outbox::new(db.pool.clone());
    // No relay has claimed yet: nothing is handed over.
    let mut tx = outbox.begin().await.unwrap();
    let before = tx.add(&ItemAdded::new(0)).await.unwrap();
    assert_eq!(leased_to(&mut tx, &before).await, None);
    tx.rollback().await.unwrap();

    let publisher = RecordingPublisher::new();
    let relay = RunningRelay::spawn(
        outbox.clone(),
        publisher.clone(),
        RelayOptions {
            poll_interval: Duration::from_secs(60),
            ..fast_relay()
        },
    );
    // Until the relay's first claim, events take the table's way.
    wait_until(Duration::from_secs(30), "the relay claims", || async {
        let mut tx = outbox.begin().await.unwrap();
        let probe = tx.add(&ItemAdded::new(0)).await.unwrap();
        let leased = leased_to(&mut tx, &probe).await.is_some();
        tx.rollback().await.unwrap();
        leased
    })
    .await;
    let mut ids = Vec::new();
    for n in 1..=3 {
        let mut tx = outbox.begin().await.unwrap();
        let id = tx.add(&ItemAdded::new(n)).await.unwrap();
        assert_eq!(
            leased_to(&mut tx, &id).await.as_deref(),
            Some(outbox.relay_id())
        );
        let mut keyed = ItemAdded::new(n + 100);
        keyed.partition = Some("p".into());
        let keyed_id = tx
            .add_with(
                &keyed,
                ferry_core::PublishOptions {
                    partition_key: Some("p".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(leased_to(&mut tx, &keyed_id).await, None);
        tx.commit().await.unwrap();
        ids.push(id);
        wait_until(
            Duration::from_secs(30),
            "the handed event is published",
            || async { publisher.count() as u64 == 2 * n },
        )
        .await;
    }
    relay.stop().await;
    for id in &ids {
        assert_eq!(status_of::<B>(&db.pool, id).await, ("published".into(), 0));
    }
    // The relay told the outbox it stopped: nothing more is handed over.
    let mut tx = outbox.begin().await.unwrap();
    let after = tx.add(&ItemAdded::new(99)).await.unwrap();
    assert_eq!(leased_to(&mut tx, &after).await, None);
    tx.rollback().await.unwrap();
    // The rolled-back event never existed.
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM ferry_outbox WHERE id = $1")
        .bind(&before)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);
    db.close().await;
}

/// The process that committed a handed event dies before its relay publishes it: no other
/// relay takes the row while its lease lasts, and once it runs out another relay claims it
/// from the table. Nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handed_event_whose_process_died_is_claimed_from_the_table_when_its_lease_runs_out() {
    let db = TestDb::new().await;
    let other = Outbox::new(db.other_pool(2).await);
    let dying = Outbox::new(db.pool.clone());
    let lease = Duration::from_secs(3);
    // Its relay claims once (with a short lease), so events are handed to it.
    assert!(dying.claim(10, lease).await.unwrap().is_empty());
    let mut tx = dying.begin().await.unwrap();
    let id = tx.add(&ItemAdded::new(1)).await.unwrap();
    tx.commit().await.unwrap();
    drop(dying);

    assert!(
        other
            .claim(10, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty(),
        "leased to the dead process's relay"
    );
    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    let claimed = other.claim(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, id);
    db.close().await;
}

/// A handed event the relay takes only after a quarter of its lease (a backlog, a slow
/// commit) is given back to the table: the relay's lease checks count from its claim, so a
/// handed lease must be nearly whole. The claim that finds it stale gives its lease back and
/// takes it from the table, at once rather than when the lease runs out.
/// Meanwhile, with a handed row waiting that long, new rows are not handed over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handed_event_taken_late_is_given_back_to_the_table() {
    let db = TestDb::new().await;
    let outbox = Outbox::new(db.pool.clone());
    let lease = Duration::from_secs(4);
    assert!(outbox.claim(10, lease).await.unwrap().is_empty());
    let mut tx = outbox.begin().await.unwrap();
    let id = tx.add(&ItemAdded::new(1)).await.unwrap();
    tx.commit().await.unwrap();
    tokio::time::sleep(lease / 4 + Duration::from_millis(100)).await;
    // The relay is behind: a new row takes the table's way.
    let mut tx = outbox.begin().await.unwrap();
    let later = tx.add(&ItemAdded::new(2)).await.unwrap();
    assert_eq!(leased_to(&mut tx, &later).await, None);
    tx.rollback().await.unwrap();
    let claimed = outbox.claim(10, lease).await.unwrap();
    assert_eq!(
        claimed.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        [id.as_str()]
    );
    drop(outbox);
    db.close().await;
}

/// A relay that stops gives the rows handed to it back to the table (another relay claims
/// them at once, not when their lease runs out), and a transaction that commits after the
/// stop gives its rows back itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_relay_gives_its_handed_rows_back_to_the_table() {
    let db = TestDb::new().await;
    let outbox = Outbox::new(db.pool.clone());
    let other = Outbox::new(db.other_pool(2).await);
    let lease = Duration::from_secs(60);
    // A relay has claimed on `outbox`: rows are handed to it.
    assert!(outbox.claim(10, lease).await.unwrap().is_empty());
    let mut tx = outbox.begin().await.unwrap();
    let handed = tx.add(&ItemAdded::new(1)).await.unwrap();
    tx.commit().await.unwrap();
    // One more leased before the stop and committed after it.
    let mut late = outbox.begin().await.unwrap();
    let committed_late = late.add(&ItemAdded::new(2)).await.unwrap();
    assert_eq!(
        leased_to(&mut late, &committed_late).await.as_deref(),
        Some(outbox.relay_id())
    );
    assert!(other.claim(10, lease).await.unwrap().is_empty());

    outbox.relay_stopped().await;
    late.commit().await.unwrap();

    let mut claimed: Vec<String> = other
        .claim(10, lease)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    claimed.sort();
    let mut expected = vec![handed, committed_late];
    expected.sort();
    assert_eq!(claimed, expected);
    // Nothing more is handed over until a relay claims again.
    let mut tx = outbox.begin().await.unwrap();
    let after = tx.add(&ItemAdded::new(3)).await.unwrap();
    assert_eq!(leased_to(&mut tx, &after).await, None);
    tx.rollback().await.unwrap();
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relays_session_settings_do_not_leak_into_the_applications_connections() {
    let db = TestDb::new().await;
    // One connection: whatever the store ran on it, the application gets it next.
    let pool = db.other_pool(1).await;
    let outbox = Outbox::new(pool.clone());
    let ids = add_many::<B>(&pool, &outbox, 3, 3, |_| None).await;
    assert_eq!(
        outbox
            .claim(10, Duration::from_secs(5))
            .await
            .unwrap()
            .len(),
        3
    );
    outbox.mark_published(&ids).await.unwrap();
    let setting: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(setting, "on");
    let timeout: String = sqlx::query_scalar("SHOW idle_in_transaction_session_timeout")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(timeout, "0", "the claim's cut-off stays in its transaction");
    pool.close().await;
    db.close().await;
}

/// Each row's status, attempts, lease and row version (`xmin`), by id.
async fn rows_by_id(
    pool: &sqlx::PgPool,
) -> std::collections::HashMap<String, (String, i32, Option<String>, String)> {
    let rows: Vec<(String, String, i32, Option<String>, String)> = sqlx::query_as(
        "SELECT id, status, attempts, locked_by, xmin::text FROM ferry_outbox ORDER BY seq",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(id, status, attempts, locked_by, xmin)| (id, (status, attempts, locked_by, xmin)))
        .collect()
}

/// A claim holds its rows by the locks of a transaction left open, writing nothing to them:
/// another relay skips them; the batch's marks run in that transaction and commit together
/// once every row is settled (published, failed or given back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_holds_its_rows_by_locks_and_writes_them_once_when_settled() {
    let db = TestDb::new().await;
    let outbox =
        Outbox::new(db.pool.clone()).with_backoff(Duration::from_secs(60), Duration::from_secs(60));
    let other = Outbox::new(db.other_pool(2).await);
    let ids = add_many::<B>(&db.pool, &outbox, 5, 5, |_| None).await;
    let added = rows_by_id(&db.pool).await;

    let claimed = outbox.claim(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(claimed.len(), 5);
    assert_eq!(
        rows_by_id(&db.pool).await,
        added,
        "the claim wrote no new row version and no lease"
    );
    assert_eq!(B::leased_pending(&db.pool).await, 5);
    assert!(
        other
            .claim(10, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty(),
        "another relay skips the locked rows"
    );

    outbox.mark_published(&ids[..3]).await.unwrap();
    assert_eq!(
        rows_by_id(&db.pool).await,
        added,
        "nothing commits before the batch is settled"
    );
    outbox
        .mark_failed(&[ferry_core::OutboxFailure {
            id: ids[3].clone(),
            error: "nacked".into(),
        }])
        .await
        .unwrap();
    outbox.release(&ids[4..]).await.unwrap();

    let settled = rows_by_id(&db.pool).await;
    for id in &ids[..3] {
        assert_eq!(settled[id].0, "published");
    }
    assert_eq!(
        (settled[&ids[3]].0.as_str(), settled[&ids[3]].1),
        ("pending", 1)
    );
    assert_eq!(settled[&ids[4]], added[&ids[4]], "given back untouched");
    assert_eq!(B::leased_pending(&db.pool).await, 0);
    let again = other.claim(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        again.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        [ids[4].as_str()],
        "the failed row backs off; the one given back is claimed at once"
    );
    drop((outbox, other));
    db.close().await;
}

/// A claim left open past its lease (a relay that hangs with its connection open) is cut off
/// by the database: another relay claims the rows. The late relay's mark still marks them
/// published, as a lease's late mark does, and its failure and release change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_left_open_past_its_lease_is_cut_off_and_its_rows_claimed_again() {
    let db = TestDb::new().await;
    let hung = Outbox::new(db.pool.clone());
    let other = Outbox::new(db.other_pool(2).await);
    let ids = add_many::<B>(&db.pool, &hung, 3, 3, |_| None).await;
    let lease = Duration::from_millis(300);
    assert_eq!(hung.claim(10, lease).await.unwrap().len(), 3);
    assert!(other.claim(10, lease).await.unwrap().is_empty());

    let mut reclaimed = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(lease).await;
        reclaimed = other.claim(10, Duration::from_secs(30)).await.unwrap();
        if !reclaimed.is_empty() {
            break;
        }
    }
    assert_eq!(reclaimed.len(), 3, "the hung claim was cut off");
    other.mark_published(&ids[..2]).await.unwrap();
    other.release(&ids[2..]).await.unwrap();

    hung.mark_published(&ids[..1]).await.unwrap();
    hung.mark_failed(&[ferry_core::OutboxFailure {
        id: ids[1].clone(),
        error: "late".into(),
    }])
    .await
    .unwrap();
    hung.release(&ids[2..]).await.unwrap();
    let rows = rows_by_id(&db.pool).await;
    assert_eq!(rows[&ids[0]].0, "published");
    assert_eq!(
        (rows[&ids[1]].0.as_str(), rows[&ids[1]].1),
        ("published", 0)
    );
    assert_eq!((rows[&ids[2]].0.as_str(), rows[&ids[2]].1), ("pending", 0));
    drop((hung, other));
    db.close().await;
}
