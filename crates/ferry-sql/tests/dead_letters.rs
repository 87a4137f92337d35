//! The dead-letter store on PostgreSQL and SQLite with the real broker: a dead-letter consumer
//! records each dead letter byte for byte with its fault; groups take ids and numbers out of
//! fault messages; a replay republishes, confirmed, to the queue the message failed on and marks
//! the row (a failed replay changes nothing); delete is soft; actions are audited.

#[path = "../../ferry-rabbitmq/tests/common/mod.rs"]
mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use common::{Env, OrderCreated, order, recv_n};
use ferry_core::{
    DeadLetter, HandlerError, MessageContext, RetryPolicy,
    wire::{HeaderValue, Headers, Properties, WireMessage},
};
use ferry_sql::{
    AuditLog, DeadLetterStore, Pool,
    dead_letters::{DeadLetterDialect, DeadLetterStatus},
};
use tokio::sync::mpsc;

async fn wait_for_dead<D: DeadLetterDialect>(store: &DeadLetterStore<D>, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let counts = store.counts().await.unwrap();
        if counts.dead >= n {
            assert_eq!(counts.dead, n, "more dead letters than messages");
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} dead letters recorded",
            counts.dead
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn records_groups_replays_and_deletes<D: DeadLetterDialect>(pool: Pool<D>) {
    let store = DeadLetterStore::<D>::new(pool.clone());
    let env = Env::new("dlstore").await;
    let dlx = env
        .cleanup
        .exchange(ferry_testkit::unique_name("dlstore.dlx"));
    let dlq = env.queue("dlstore.dlq");
    let work = env.queue("dlstore.orders");

    let fail = Arc::new(AtomicBool::new(true));
    let failing = Arc::clone(&fail);
    let (tx, mut handled) = mpsc::unbounded_channel();
    let consumer = env
        .bus
        .consumer(work.clone())
        .bind("orders.#")
        .retry(RetryPolicy::none())
        .dead_letter(dlx.clone())
        .handle::<OrderCreated>(move |e: OrderCreated, ctx: MessageContext| {
            let fail = failing.load(Ordering::SeqCst);
            let tx = tx.clone();
            async move {
                if fail {
                    return Err(HandlerError::permanent(format!(
                        "order {} failed at step 7",
                        e.order_id
                    )));
                }
                let _ = tx.send((e.order_id, ctx.attempt()));
                Ok(())
            }
        })
        .start()
        .await
        .unwrap();
    let recorder = env
        .bus
        .dead_letter_consumer(dlq.clone())
        .exchange(dlx.clone())
        .on_dead_letter(store.recorder())
        .start()
        .await
        .unwrap();

    let mut published = Vec::new();
    for i in 0..5 {
        published.push(env.bus.publish(&order(i)).await.unwrap());
    }
    wait_for_dead(&store, 5).await;

    // One group: the order ids and the step number are taken out.
    let groups = store.groups().await.unwrap();
    assert_eq!(groups.len(), 1, "{groups:?}");
    let group = &groups[0];
    assert_eq!(group.count, 5);
    assert_eq!(group.fault_kind, "handler");
    assert_eq!(group.queue.as_deref(), Some(work.as_str()));
    assert_eq!(group.event_type.as_deref(), Some("orders.order.created"));
    assert_eq!(group.fault_message, "order o-<n> failed at step <n>");
    assert!(group.first_failed_at <= group.last_failed_at);

    let ids = store.ids_in_group(&group.group).await.unwrap();
    assert_eq!(ids.len(), 5);
    let listed = store
        .list(Some(DeadLetterStatus::Dead), None, 100)
        .await
        .unwrap();
    let mut message_ids: Vec<_> = listed
        .iter()
        .map(|r| r.message_id.clone().unwrap())
        .collect();
    message_ids.sort();
    published.sort();
    assert_eq!(message_ids, published);
    let one = store.get(&ids[0]).await.unwrap().unwrap();
    assert_eq!(
        one.message.headers.get("ferry-fault-kind"),
        Some(&HeaderValue::from("handler"))
    );
    let body: serde_json::Value = serde_json::from_slice(&one.message.body).unwrap();
    assert!(body["orderId"].as_str().unwrap().starts_with("o-"));

    // A replay that fails changes nothing.
    let outcome = store
        .replay(&ids[..2], |_dead| async {
            Err::<(), _>("the broker is away")
        })
        .await
        .unwrap();
    assert_eq!(outcome.failed.len(), 2);
    assert!(outcome.replayed.is_empty());
    assert_eq!(store.counts().await.unwrap().dead, 5);

    // Replaying the group sends each message back to the queue it failed on, confirmed.
    fail.store(false, Ordering::SeqCst);
    let bus = &env.bus;
    let outcome = store
        .replay(
            &ids,
            |dead| async move { bus.replay_dead_letter(&dead).await },
        )
        .await
        .unwrap();
    assert_eq!(outcome.replayed.len(), 5, "{outcome:?}");
    let mut got: Vec<_> = recv_n(&mut handled, 5, Duration::from_secs(30))
        .await
        .into_iter()
        .map(|(id, attempt)| {
            assert_eq!(attempt, 1, "ferry-attempt is reset");
            id
        })
        .collect();
    got.sort();
    assert_eq!(got, ["o-0", "o-1", "o-2", "o-3", "o-4"]);
    let counts = store.counts().await.unwrap();
    assert_eq!((counts.dead, counts.replayed, counts.groups), (0, 5, 0));
    assert!(store.groups().await.unwrap().is_empty());
    let replayed = store.get(&ids[0]).await.unwrap().unwrap();
    assert_eq!(replayed.record.status, DeadLetterStatus::Replayed);
    assert!(replayed.record.replayed_at.is_some());

    // A row already replayed is not replayed again.
    let again = store
        .replay(
            &ids,
            |dead| async move { bus.replay_dead_letter(&dead).await },
        )
        .await
        .unwrap();
    assert_eq!((again.replayed.len(), again.not_found.len()), (0, 5));
    common::assert_quiet(&mut handled, Duration::from_millis(500)).await;

    // Delete is soft: the rows stay, with status deleted; deleting twice changes nothing.
    assert_eq!(store.delete(&ids[..2]).await.unwrap(), 2);
    assert_eq!(store.delete(&ids[..2]).await.unwrap(), 0);
    let counts = store.counts().await.unwrap();
    assert_eq!((counts.replayed, counts.deleted), (3, 2));

    // The rates count the dead letters in the minute they failed.
    let since = chrono::Utc::now() - chrono::Duration::minutes(10);
    let rates = store.rates(since).await.unwrap();
    let dead: u64 = rates
        .iter()
        .filter(|r| r.source == "dead_lettered")
        .map(|r| r.count)
        .sum();
    assert_eq!(dead, 5);

    assert_eq!(store.queues().await.unwrap(), vec![work.clone()]);
    consumer.shutdown().await;
    recorder.shutdown().await;
    env.bus.close().await;
}

/// What a dead letter carried comes back exactly: binary body, every header type, properties.
async fn keeps_what_the_message_carried<D: DeadLetterDialect>(pool: Pool<D>) {
    let store = DeadLetterStore::<D>::new(pool.clone());
    let mut headers = Headers::new();
    headers.insert("bytes".into(), HeaderValue::Bytes(vec![0, 1, 254, 255]));
    headers.insert("int".into(), HeaderValue::Int(-7));
    headers.insert("float".into(), HeaderValue::Float(1.5));
    headers.insert(
        "nested".into(),
        HeaderValue::Table(Headers::from([("a".into(), HeaderValue::Bool(true))])),
    );
    let message = WireMessage {
        properties: Properties {
            content_type: Some("application/octet-stream".into()),
            message_id: Some("m-1".into()),
            ..Properties::default()
        },
        headers,
        body: Bytes::from_static(&[0, 159, 146, 150, 255, b'{']),
    };
    let dead = DeadLetter::from_message(message.clone(), "raw.key");
    let id = store.record(&dead).await.unwrap();
    let stored = store.get(&id).await.unwrap().unwrap();
    assert_eq!(stored.message, message);
    assert_eq!(stored.record.fault_kind, "decode");
    assert_eq!(stored.record.message_id.as_deref(), Some("m-1"));
    assert_eq!(stored.record.routing_key.as_deref(), Some("raw.key"));
    assert_eq!(stored.record.queue, None);

    // It has no queue to go back to: the replay fails and the row stays dead.
    let env = Env::new("dlstore-raw").await;
    let bus = &env.bus;
    let outcome = store
        .replay(std::slice::from_ref(&id), |dead| async move {
            bus.replay_dead_letter(&dead).await
        })
        .await
        .unwrap();
    assert_eq!(outcome.failed.len(), 1);
    assert!(outcome.failed[0].1.contains("ferry-original-queue"));
    let after = store.get(&id).await.unwrap().unwrap();
    assert_eq!(after.record.status, DeadLetterStatus::Dead);
    env.bus.close().await;

    let audit = AuditLog::<D>::new(pool);
    audit.record("operator", "delete", &id, 1).await.unwrap();
    audit
        .record("operator", "replay", "group:abc", 3)
        .await
        .unwrap();
    let entries = audit.list(10).await.unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(
        (entries[0].action.as_str(), entries[0].count),
        ("replay", 3)
    );
    assert_eq!(entries[1].target, id);
}

mod postgres {
    use ferry_testkit::pg::TempDatabase;

    async fn pool() -> (TempDatabase, sqlx::PgPool) {
        let db = TempDatabase::create().await.unwrap();
        let pool = db.pool().await.unwrap();
        ferry_sql::postgres::migrate(&pool).await.unwrap();
        (db, pool)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_groups_replays_and_deletes() {
        let (db, pool) = pool().await;
        super::records_groups_replays_and_deletes::<ferry_sql::postgres::Postgres>(pool.clone())
            .await;
        pool.close().await;
        db.drop_db().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keeps_what_the_message_carried() {
        let (db, pool) = pool().await;
        super::keeps_what_the_message_carried::<ferry_sql::postgres::Postgres>(pool.clone()).await;
        pool.close().await;
        db.drop_db().await.unwrap();
    }
}

mod sqlite {
    /// A database file of its own, removed at the end.
    struct TempFile(std::path::PathBuf);

    impl Drop for TempFile {
        fn drop(&mut self) {
            for suffix in ["", "-wal", "-shm"] {
                let mut path = self.0.clone().into_os_string();
                path.push(suffix);
                let _ = std::fs::remove_file(path);
            }
        }
    }

    async fn pool() -> (TempFile, sqlx::SqlitePool) {
        let path = std::env::temp_dir().join(format!(
            "{}.sqlite",
            ferry_testkit::unique_name("ferry-dlstore")
        ));
        let pool = ferry_sql::sqlite::connect(&format!("sqlite:{}", path.display()))
            .await
            .unwrap();
        ferry_sql::sqlite::migrate(&pool).await.unwrap();
        (TempFile(path), pool)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_groups_replays_and_deletes() {
        let (_file, pool) = pool().await;
        super::records_groups_replays_and_deletes::<ferry_sql::sqlite::Sqlite>(pool.clone()).await;
        pool.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keeps_what_the_message_carried() {
        let (_file, pool) = pool().await;
        super::keeps_what_the_message_carried::<ferry_sql::sqlite::Sqlite>(pool.clone()).await;
        pool.close().await;
    }
}
