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
