//! The demo under `ferry::testing`: its own wiring (`scenario::run`) on the harness's
//! transport, and what its summary reports checked against what the harness saw each
//! consumer do.

use std::time::Duration;

use async_trait::async_trait;
use ferry::testing::{TestHarness, TestTransport};
use sqlx::sqlite::SqlitePoolOptions;

use super::{
    events::{OrderCreated, StockReserved},
    faults::FailurePlan,
    progress::ProgressView,
    scenario::{self, Config, DemoTransport, Outcome},
    stores::SqliteDemoDb,
};

#[async_trait]
impl DemoTransport for TestTransport {
    async fn reset_queues(&self, _queues: &[String]) -> anyhow::Result<()> {
        Ok(()) // every harness has a fresh bus
    }
}

#[tokio::test]
async fn the_summary_agrees_with_what_the_harness_saw() -> anyhow::Result<()> {
    let harness = TestHarness::memory();
    // One connection: an in-memory SQLite database lives as long as its connection.
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await?;
    let outbox = ferry::sqlite::SqliteOutbox::new(pool.clone());
    let inbox = ferry::sqlite::SqliteInbox::new(pool.clone());
    let db = SqliteDemoDb::open(pool, outbox, inbox).await?;
    let config = Config {
        events: 40,
        plan: FailurePlan {
            seed: 7,
            fail_rate: 0.3,
            permanent_fail_rate: 0.1,
            max_retries: 3,
        },
        retry_delay: Duration::from_millis(5),
        timeout: Duration::from_secs(60),
        concurrency: 4,
        rate_per_s: None,
        progress: ProgressView::Lines,
    };

    let outcome = scenario::run(db, harness.transport().clone(), config).await?;
    let Outcome::Finished(summary) = outcome else {
        anyhow::bail!("the demo did not finish: {outcome:?}");
    };
    harness.wait_idle().await?;

    assert_eq!(summary.lost, 0);
    assert!(
        summary.retries > 0 && summary.dead_lettered > 0,
        "{summary:?}"
    );
    let published = harness.published_all().count() as u64;
    assert_eq!(summary.events_published, published);
    let reserved = harness.consumed::<OrderCreated>().count() as u64;
    assert_eq!(summary.reservations, reserved);
    let confirmed = harness.consumed::<StockReserved>().count() as u64;
    assert_eq!(summary.orders_confirmed, confirmed);
    assert_eq!(
        summary.dead_lettered,
        harness.dead_lettered().count() as u64
    );
    let retried =
        harness.retried::<OrderCreated>().count() + harness.retried::<StockReserved>().count();
    assert_eq!(summary.retries, retried as u64);
    harness.shutdown().await?;
    Ok(())
}
