//! The shared store suite on PostgreSQL: the outbox with the core relay and a recording publisher
//! (`crates/ferry-testkit/store-suite/outbox.rs`, run here with this crate's [`backend`]),
//! and what only PostgreSQL does.

// `&mut *tx` is sqlx's idiom for the transaction's connection, as the docs show it.
#![allow(clippy::explicit_auto_deref)]

mod backend;
#[path = "../../ferry-testkit/store-suite/common.rs"]
mod common;
#[path = "../../ferry-testkit/store-suite/outbox.rs"]
mod suite;

use std::time::Duration;

use backend::*;
use common::*;
use ferry_core::RelayOptions;

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
