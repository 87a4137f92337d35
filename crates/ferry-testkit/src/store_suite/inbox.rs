//! The inbox: idempotent handlers whose writes, inbox row and outbox events share
//! one transaction.

// `&mut *tx` is sqlx's idiom for the transaction's connection, as the docs show it.
#![allow(clippy::explicit_auto_deref)]

use std::time::Duration;

use super::{common::*, *};
use ferry_core::{
    Envelope, HandlerError, Inbox, MessageContext, OutboxStore, PublishOptions, codec,
};
use tokio::sync::oneshot;

const CONSUMER: &str = "inventory.order-created";

async fn create_reservations<B: Backend>(pool: &Pool<B>) {
    B::exec_pool(
        pool,
        "CREATE TABLE reservations (order_id TEXT NOT NULL)",
        vec![],
    )
    .await
    .unwrap();
}

async fn reservations<B: Backend>(pool: &Pool<B>) -> i64 {
    count::<B>(pool, "SELECT count(*) FROM reservations", vec![]).await
}

fn delivery(id: &str) -> MessageContext {
    let envelope = Envelope::new("orders.order.created")
        .with_id(id)
        .with_correlation_id("checkout-1");
    MessageContext::new(envelope, CONSUMER, "orders.order.created", 1)
}

/// The idempotent handler: reservation + inbox row + outbox event, one transaction.
/// `Ok(false)`: a duplicate, skipped.
async fn handle<B: Backend>(
    pool: &Pool<B>,
    inbox: &SqlInbox<B>,
    outbox: &Outbox<B>,
    ctx: &MessageContext,
    fail: bool,
) -> Result<bool, HandlerError> {
    let mut tx = begin::<B>(pool).await?;
    if !inbox.try_insert_message(&mut *tx, ctx).await? {
        return Ok(false);
    }
    B::exec(
        &mut tx,
        "INSERT INTO reservations (order_id) VALUES ($1)",
        vec![ctx.message_id().into()],
    )
    .await?;
    outbox
        .add_with(&mut *tx, &ItemAdded::new(1), PublishOptions::caused_by(ctx))
        .await?;
    if fail {
        return Err(HandlerError::transient(
            "the handler failed after its writes",
        ));
    }
    tx.commit().await?;
    Ok(true)
}

pub async fn the_same_message_three_times_changes_the_database_once<B: Backend>() {
    let db = TestDb::<B>::new().await;
    create_reservations::<B>(&db.pool).await;
    let (inbox, outbox) = (
        SqlInbox::<B>::new(db.pool.clone()),
        Outbox::<B>::new(db.pool.clone()),
    );
    let ctx = delivery("msg-1");
    let mut handled = Vec::new();
    for _ in 0..3 {
        handled.push(
            handle::<B>(&db.pool, &inbox, &outbox, &ctx, false)
                .await
                .unwrap(),
        );
    }
    assert_eq!(handled, vec![true, false, false]);
    assert_eq!(reservations::<B>(&db.pool).await, 1);
    assert_eq!(outbox.stats().await.unwrap().pending, 1);
    // Another consumer is another key.
    let other = MessageContext::new(ctx.envelope().clone(), "billing.order-created", "k", 1);
    assert!(
        handle::<B>(&db.pool, &inbox, &outbox, &other, false)
            .await
            .unwrap()
    );
    assert_eq!(reservations::<B>(&db.pool).await, 2);
    db.close().await;
}

pub async fn two_copies_at_the_same_moment_change_the_database_once<B: Backend>() {
    let db = TestDb::<B>::new().await;
    create_reservations::<B>(&db.pool).await;
    let (inbox, outbox) = (
        SqlInbox::<B>::new(db.pool.clone()),
        Outbox::<B>::new(db.pool.clone()),
    );
    for commit_first in [true, false] {
        let id = format!("msg-concurrent-{commit_first}");
        let ctx = delivery(&id);
        let (inserted_tx, inserted_rx) = oneshot::channel();
        // Copy one takes the inbox row, then works slowly before it commits (or fails).
        let first = {
            let (pool, inbox, outbox, ctx) =
                (db.pool.clone(), inbox.clone(), outbox.clone(), ctx.clone());
            tokio::spawn(async move {
                let mut tx = begin::<B>(&pool).await?;
                let fresh = inbox.try_insert_message(&mut *tx, &ctx).await?;
                inserted_tx.send(()).unwrap();
                tokio::time::sleep(Duration::from_millis(300)).await;
                B::exec(
                    &mut tx,
                    "INSERT INTO reservations (order_id) VALUES ($1)",
                    vec![ctx.message_id().into()],
                )
                .await?;
                outbox
                    .add_with(
                        &mut *tx,
                        &ItemAdded::new(1),
                        PublishOptions::caused_by(&ctx),
                    )
                    .await?;
                if commit_first {
                    tx.commit().await?;
                } else {
                    tx.rollback().await?;
                }
                Ok::<bool, HandlerError>(fresh)
            })
        };
        // Copy two arrives while copy one is in its transaction: it waits on the key.
        inserted_rx.await.unwrap();
        let second = handle::<B>(&db.pool, &inbox, &outbox, &ctx, false)
            .await
            .unwrap();
        assert!(first.await.unwrap().unwrap());
        // Committed first: the second is a duplicate. Rolled back: the second does the work.
        assert_eq!(second, !commit_first);
        let rows = count::<B>(
            &db.pool,
            "SELECT count(*) FROM reservations WHERE order_id = $1",
            vec![(&id).into()],
        )
        .await;
        assert_eq!(rows, 1);
    }
    assert_eq!(outbox.stats().await.unwrap().pending, 2);
    db.close().await;
}

pub async fn a_handler_error_rolls_back_its_writes_its_events_and_the_inbox_row<B: Backend>() {
    let db = TestDb::<B>::new().await;
    create_reservations::<B>(&db.pool).await;
    let (inbox, outbox) = (
        SqlInbox::<B>::new(db.pool.clone()),
        Outbox::<B>::new(db.pool.clone()),
    );
    let ctx = delivery("msg-fails-once");
    assert!(
        handle::<B>(&db.pool, &inbox, &outbox, &ctx, true)
            .await
            .is_err()
    );
    assert_eq!(reservations::<B>(&db.pool).await, 0);
    assert!(
        !inbox
            .is_processed(CONSUMER, "msg-fails-once")
            .await
            .unwrap()
    );
    assert_eq!(outbox.stats().await.unwrap().pending, 0);
    // The redelivery does the work, once.
    assert!(
        handle::<B>(&db.pool, &inbox, &outbox, &ctx, false)
            .await
            .unwrap()
    );
    assert!(
        !handle::<B>(&db.pool, &inbox, &outbox, &ctx, false)
            .await
            .unwrap()
    );
    assert_eq!(reservations::<B>(&db.pool).await, 1);
    db.close().await;
}

pub async fn events_added_by_a_handler_carry_correlation_and_causation<B: Backend>() {
    let db = TestDb::<B>::new().await;
    create_reservations::<B>(&db.pool).await;
    let (inbox, outbox) = (
        SqlInbox::<B>::new(db.pool.clone()),
        Outbox::<B>::new(db.pool.clone()),
    );
    let ctx = delivery("msg-parent");
    assert!(
        handle::<B>(&db.pool, &inbox, &outbox, &ctx, false)
            .await
            .unwrap()
    );
    let claimed = outbox.claim(10, Duration::from_secs(5)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let decoded = codec::decode(&claimed[0].message.message).unwrap();
    assert_eq!(decoded.envelope.id, claimed[0].id);
    assert_eq!(
        decoded.envelope.correlation_id.as_deref(),
        Some("checkout-1")
    );
    assert_eq!(decoded.envelope.causation_id.as_deref(), Some("msg-parent"));
    drop((inbox, outbox));
    db.close().await;
}

pub async fn the_inbox_trait_records_once_and_cleanup_removes_old_records<B: Backend>() {
    let db = TestDb::<B>::new().await;
    let inbox = SqlInbox::<B>::new(db.pool.clone());
    assert!(!inbox.is_processed("q", "m-1").await.unwrap());
    assert!(inbox.mark_processed("q", "m-1").await.unwrap());
    assert!(!inbox.mark_processed("q", "m-1").await.unwrap());
    assert!(inbox.is_processed("q", "m-1").await.unwrap());
    for i in 0..2500 {
        inbox
            .mark_processed("old", &format!("m-{i}"))
            .await
            .unwrap();
    }
    B::age_inbox(&db.pool, "old", Duration::from_secs(30 * 24 * 3600)).await;
    let deleted = inbox
        .cleanup_older_than(Duration::from_secs(7 * 24 * 3600))
        .await
        .unwrap();
    assert_eq!(deleted, 2500);
    assert!(inbox.is_processed("q", "m-1").await.unwrap());
    db.close().await;
}

pub async fn run_retention_removes_records_past_the_retention<B: Backend>() {
    let db = TestDb::<B>::new().await;
    let inbox = SqlInbox::<B>::new(db.pool.clone()).with_retention(Duration::from_secs(3600));
    for i in 0..5 {
        assert!(inbox.mark_processed("q", &format!("m-{i}")).await.unwrap());
    }
    B::age_inbox(&db.pool, "q", Duration::from_secs(2 * 3600)).await;
    for i in 5..7 {
        assert!(inbox.mark_processed("q", &format!("m-{i}")).await.unwrap());
    }
    let shutdown = ferry_core::CancellationToken::new();
    let task = tokio::spawn(ferry_core::inbox::run_retention(
        inbox.clone(),
        Duration::from_millis(100),
        shutdown.clone(),
    ));
    wait_until(Duration::from_secs(30), "old records removed", || async {
        !inbox.is_processed("q", "m-0").await.unwrap()
    })
    .await;
    for i in 0..7 {
        assert_eq!(
            inbox.is_processed("q", &format!("m-{i}")).await.unwrap(),
            i >= 5,
            "m-{i}"
        );
    }
    shutdown.cancel();
    task.await.unwrap();
    db.close().await;
}

/// Many handlers at once, as a busy consumer has them: four copies of each of 100 messages
/// for each of two consumers recorded concurrently (the PostgreSQL inbox groups such calls
/// into one statement): exactly one copy of each records it, and lookups see every one.
pub async fn concurrent_inbox_calls_record_each_message_once_per_consumer<B: Backend>() {
    let db = TestDb::<B>::new().await;
    let inbox = SqlInbox::<B>::new(db.pool.clone());
    let mut calls = tokio::task::JoinSet::new();
    for copy in 0..4 {
        for consumer in ["orders", "billing"] {
            for n in 0..100 {
                let inbox = inbox.clone();
                calls.spawn(async move {
                    let id = format!("m-{n}");
                    if copy == 0 {
                        assert!(!inbox.is_processed("nobody", &id).await.unwrap());
                    }
                    let recorded = inbox.mark_processed(consumer, &id).await.unwrap();
                    (consumer, id, recorded)
                });
            }
        }
    }
    let mut recorded = std::collections::HashMap::new();
    while let Some(call) = calls.join_next().await {
        let (consumer, id, fresh) = call.unwrap();
        *recorded.entry((consumer, id)).or_insert(0) += usize::from(fresh);
    }
    assert_eq!(recorded.len(), 200);
    assert!(
        recorded.values().all(|&n| n == 1),
        "each message recorded by exactly one copy: {recorded:?}"
    );
    for consumer in ["orders", "billing"] {
        for n in 0..100 {
            assert!(
                inbox
                    .is_processed(consumer, &format!("m-{n}"))
                    .await
                    .unwrap()
            );
        }
    }
    assert!(!inbox.is_processed("orders", "m-100").await.unwrap());
    db.close().await;
}
