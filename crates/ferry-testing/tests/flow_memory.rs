//! The seed's flow on the in-memory transport and stores (`tests/rabbitmq.rs` runs the same
//! test on RabbitMQ and PostgreSQL).

mod common;

use ferry_testing::TestHarness;

#[tokio::test]
async fn seed_flow_on_memory() -> Result<(), common::flow::BoxError> {
    let harness = TestHarness::memory();
    common::flow::seed_flow(&harness).await?;
    harness.shutdown().await?;
    Ok(())
}
