//! The seed's flow on RabbitMQ and PostgreSQL: the same test as `tests/flow_memory.rs`, the
//! switch flipped. Random queue, exchange and database names; all deleted at the end.
#![cfg(feature = "rabbitmq")]

mod common;

use ferry_testing::TestHarness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_flow_on_rabbitmq_and_postgres() -> Result<(), common::flow::BoxError> {
    let harness =
        TestHarness::rabbitmq(&ferry_testkit::amqp::url(), &ferry_testkit::pg::admin_url()).await?;
    let flow = common::flow::seed_flow(&harness).await;
    let queue = harness.transport().broker_name("inventory.order-created");
    harness.shutdown().await?;
    flow?;
    // Cleaned up: the inventory queue is gone from the broker.
    let reconnected = ferry_rabbitmq::RabbitMq::connect(ferry_rabbitmq::RabbitMqOptions::new(
        ferry_testkit::amqp::url(),
    ))
    .await?;
    assert!(
        reconnected.queue_counts(&queue).await.is_err(),
        "queue `{queue}` left behind"
    );
    reconnected.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_keep_their_real_delays_on_rabbitmq() -> Result<(), common::flow::BoxError> {
    use common::events::{Flaky, OrderPlaced};
    use ferry_core::{PublisherExt, RetryPolicy, host::Host};
    use std::time::Duration;

    let harness =
        TestHarness::rabbitmq(&ferry_testkit::amqp::url(), &ferry_testkit::pg::admin_url()).await?;
    let outcome = async {
        let flaky = Flaky::new(1);
        let consumer = harness
            .transport()
            .consumer("payments.order-placed")
            .bind("orders.order.placed")
            .retry(RetryPolicy::fixed(2, Duration::from_millis(300)))
            .dead_letter("app.dlx")
            .handle::<OrderPlaced>(flaky.clone())
            .start()
            .await?;
        harness.run(Host::new().consumer("payments", consumer));
        harness
            .transport()
            .publish(&OrderPlaced {
                order_id: "o-1".into(),
            })
            .await?;
        harness.wait_idle().await?;

        let retried = harness.retried::<OrderPlaced>().single()?;
        assert_eq!(
            retried.record.retry_delay(),
            Some(Duration::from_millis(300))
        );
        let handled = harness.consumed::<OrderPlaced>().single()?;
        assert_eq!((handled.record.attempt, flaky.calls()), (2, 2));
        // The broker's retry queue held the copy for its whole delay.
        assert!(handled.record.at.duration_since(retried.record.at) >= Duration::from_millis(300));
        Ok::<_, common::flow::BoxError>(())
    }
    .await;
    harness.shutdown().await?;
    outcome
}
