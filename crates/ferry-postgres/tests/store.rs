//! The shared store suite on PostgreSQL: the outbox store itself: migrations, rows, claims, leases, backoff, partitions, retry, retention, statistics
//! (`crates/ferry-testkit/store-suite/store.rs`, run here with this crate's [`backend`]),
//! and what only PostgreSQL does.

// `&mut *tx` is sqlx's idiom for the transaction's connection, as the docs show it.
#![allow(clippy::explicit_auto_deref)]

mod backend;
#[path = "../../ferry-testkit/store-suite/common.rs"]
mod common;
#[path = "../../ferry-testkit/store-suite/store.rs"]
mod suite;

use std::time::Duration;

use backend::*;
use common::*;
use ferry_core::OutboxStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relays_async_commit_does_not_leak_into_the_applications_connections() {
    let db = TestDb::new().await;
    // One connection: whatever the store ran on it, the application gets it next.
    let pool = db.other_pool(1).await;
    let outbox = Outbox::new(pool.clone());
    let ids = add_many(&pool, &outbox, 3, 3, |_| None).await;
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
    pool.close().await;
    db.close().await;
}
