//! Retries without waiting: on the in-memory bus, retry copies wait on tokio's clock, so under
//! a paused clock a backoff of 1 s / 2 s / 4 s passes at once while the harness records the
//! virtual delays.

mod common;

use std::time::Duration;

use common::events::{Flaky, OrderPlaced};
use ferry_core::{FaultKind, PublisherExt, RetryPolicy, host::Host};
use ferry_testing::{Outcome, TestHarness};
use tokio::time::Instant;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn start(harness: &TestHarness, flaky: Flaky) -> Result<(), BoxError> {
    let consumer = harness
        .transport()
        .consumer("payments.order-placed")
        .bind("orders.order.placed")
        .retry(RetryPolicy::exponential(3, Duration::from_secs(1))) // 1 s, 2 s, 4 s
        .dead_letter("app.dlx")
        .handle::<OrderPlaced>(flaky)
        .start()
        .await?;
    harness.run(Host::new().consumer("payments", consumer));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn three_retries_with_exponential_backoff_run_on_virtual_time() -> Result<(), BoxError> {
    let harness = TestHarness::memory().with_timeout(Duration::from_secs(60));
    let flaky = Flaky::new(3); // fails three times, succeeds on the fourth attempt
    start(&harness, flaky.clone()).await?;
    let began = Instant::now();

    harness
        .transport()
        .publish(&OrderPlaced {
            order_id: "o-1".into(),
        })
        .await?;
    harness.wait_idle().await?;

    let retried = harness.retried::<OrderPlaced>();
    let delays: Vec<_> = retried
        .iter()
        .filter_map(|r| r.record.retry_delay())
        .collect();
    assert_eq!(
        delays,
        [
            Duration::from_secs(1),
            Duration::from_secs(2),
            Duration::from_secs(4)
        ]
    );
    let handled = harness.consumed::<OrderPlaced>().single()?;
    assert_eq!(handled.record.attempt, 4);
    assert_eq!(flaky.calls(), 4);
    // Each attempt came when its delay had passed on the virtual clock: 1 s, 3 s, 7 s in.
    let at: Vec<_> = harness
        .consumptions()
        .iter()
        .map(|c| c.at.duration_since(began).as_secs())
        .collect();
    assert_eq!(at, [0, 1, 3, 7]);
    harness.shutdown().await?;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn spent_retries_end_in_a_dead_letter_with_its_fault() -> Result<(), BoxError> {
    let harness = TestHarness::memory().with_timeout(Duration::from_secs(60));
    start(&harness, Flaky::new(u32::MAX)).await?;

    harness
        .transport()
        .publish(&OrderPlaced {
            order_id: "o-2".into(),
        })
        .await?;
    harness.wait_idle().await?;

    assert_eq!(harness.retried::<OrderPlaced>().count(), 3);
    assert!(harness.consumed::<OrderPlaced>().is_empty());
    let dead = harness.dead_lettered().single()?;
    assert_eq!(dead.event::<OrderPlaced>()?.order_id, "o-2");
    assert_eq!(dead.attempt, 4);
    let fault = dead.fault().ok_or("no fault")?;
    assert_eq!(fault.kind, FaultKind::Handler);
    assert_eq!(fault.attempts, 4);
    assert!(
        fault.message.contains("the payment service is down"),
        "{}",
        fault.message
    );
    assert!(matches!(dead.outcome, Outcome::DeadLettered(_)));
    harness.shutdown().await?;
    Ok(())
}
