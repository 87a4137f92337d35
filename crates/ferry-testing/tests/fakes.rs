//! The fakes drive the error paths: a handler failing N times, an outbox failing to commit, a
//! publisher refusing.

mod common;

use std::time::Duration;

use common::{
    events::OrderPlaced,
    flow::{CreateOrderCommand, OrderCreatedIntegrationEvent, StockReserved, items, wire},
};
use ferry_core::{
    HandlerError, MessageContext, OutboxRelay, PublisherExt, RetryPolicy, host::Host,
};
use ferry_testing::{
    TestHarness,
    fakes::{FailTimes, FailingCommits, InjectedFailure, RefusingPublisher},
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn ok(_: OrderPlaced, _: MessageContext) -> Result<(), HandlerError> {
    Ok(())
}

async fn run_consumer<H>(harness: &TestHarness, handler: H) -> Result<(), BoxError>
where
    H: ferry_core::IntegrationEventHandler<OrderPlaced>,
{
    let consumer = harness
        .transport()
        .consumer("shipping.order-placed")
        .bind("orders.order.placed")
        .retry(RetryPolicy::exponential(3, Duration::from_secs(1)))
        .dead_letter("app.dlx")
        .handle::<OrderPlaced>(handler)
        .start()
        .await?;
    harness.run(Host::new().consumer("shipping", consumer));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_handler_failing_twice_is_handled_on_the_third_attempt() -> Result<(), BoxError> {
    let harness = TestHarness::memory().with_timeout(Duration::from_secs(60));
    let handler = FailTimes::new(2, ok);
    run_consumer(&harness, handler.clone()).await?;

    harness
        .transport()
        .publish(&OrderPlaced {
            order_id: "o-1".into(),
        })
        .await?;
    harness.wait_idle().await?;

    assert_eq!(handler.calls(), 3);
    let retried = harness.retried::<OrderPlaced>();
    assert_eq!(retried.count(), 2);
    let error = match &retried.first().ok_or("no retry")?.record.outcome {
        ferry_testing::Outcome::Retried { error, .. } => error.clone(),
        other => return Err(format!("not a retry: {other:?}").into()),
    };
    assert!(
        error.contains("injected failure: handler (call 1)"),
        "{error}"
    );
    assert_eq!(
        harness.consumed::<OrderPlaced>().single()?.record.attempt,
        3
    );
    harness.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_permanent_failure_is_dead_lettered_at_once() -> Result<(), BoxError> {
    let harness = TestHarness::memory();
    run_consumer(&harness, FailTimes::new(1, ok).permanently()).await?;

    harness
        .transport()
        .publish(&OrderPlaced {
            order_id: "o-2".into(),
        })
        .await?;
    harness.wait_idle().await?;

    assert!(harness.retried::<OrderPlaced>().is_empty());
    let dead = harness.dead_lettered().single()?;
    assert_eq!(dead.attempt, 1);
    let fault = dead.fault().ok_or("no fault")?;
    assert!(
        fault.message.contains("injected failure: handler (call 1)"),
        "{}",
        fault.message
    );
    harness.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn an_outbox_that_fails_to_commit_loses_the_command_and_publishes_nothing()
-> Result<(), BoxError> {
    let harness = TestHarness::memory();
    let store = FailingCommits::new(1, harness.store().clone());
    let app = wire(
        harness.transport(),
        store.clone(),
        harness.mediator_builder(),
    )
    .await?;
    harness.run(app.host);

    let command = || CreateOrderCommand {
        customer_email: "ada@example.com".into(),
        items: items(1),
    };
    let failed = app
        .mediator
        .send(command())
        .await
        .err()
        .ok_or("the first commit fails")?;
    let injected = failed
        .handler_error::<ferry_core::OutboxError>()
        .and_then(|e| std::error::Error::source(e)?.downcast_ref::<InjectedFailure>());
    assert_eq!(
        injected,
        Some(&InjectedFailure {
            what: "commit",
            call: 1
        })
    );
    let order_id = app.mediator.send(command()).await?;
    harness.wait_idle().await?;

    // Only the second order went out, and its stock was reserved.
    assert_eq!(
        harness
            .published::<OrderCreatedIntegrationEvent>()
            .single()?
            .event
            .order_id,
        order_id
    );
    assert_eq!(
        harness.consumed::<StockReserved>().single()?.event.order_id,
        order_id
    );
    assert_eq!(
        harness
            .requests::<CreateOrderCommand>()
            .matching(|r| !r.succeeded())
            .count(),
        1
    );
    harness.shutdown().await?;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_refusing_publisher_keeps_outbox_rows_pending_until_it_lets_them_through()
-> Result<(), BoxError> {
    let harness = TestHarness::memory().with_timeout(Duration::from_secs(120));
    let consumer = harness
        .transport()
        .consumer("shipping.order-placed")
        .bind("orders.order.placed")
        .dead_letter("app.dlx")
        .handle::<OrderPlaced>(ok)
        .start()
        .await?;
    let publisher = RefusingPublisher::new(2, harness.transport().clone());
    let relay = OutboxRelay::new(harness.store().clone(), publisher.clone());
    harness.run(
        Host::new()
            .consumer("shipping", consumer)
            .relay("outbox", relay),
    );
    let outbox = harness.store().memory_outbox().ok_or("memory")?;
    outbox.add(&OrderPlaced {
        order_id: "o-3".into(),
    })?;

    harness.wait_idle().await?;

    assert_eq!(publisher.attempts(), 3);
    assert_eq!(harness.published::<OrderPlaced>().count(), 1);
    assert_eq!(
        harness.consumed::<OrderPlaced>().single()?.event.order_id,
        "o-3"
    );
    assert_eq!(outbox.pending_count(), 0);
    harness.shutdown().await?;
    Ok(())
}
