//! The health check on the bus: connected, consumers running, relay lag.

use std::time::Duration;

use ferry_core::{HandlerError, OutboxStats, RetryPolicy, telemetry::Health};
use ferry_rabbitmq::{RabbitMq, RabbitMqOptions};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[event(name = "health.probe.sent")]
struct Probe {
    n: u32,
}

#[tokio::test]
async fn health_reports_connection_consumers_and_relay_lag() {
    let exchange = ferry_testkit::unique_name("ferry-health-ex");
    let queue = ferry_testkit::unique_name("ferry-health-q");
    let bus = RabbitMq::connect(
        RabbitMqOptions::new(ferry_testkit::amqp::url()).with_exchange(exchange.clone()),
    )
    .await
    .unwrap();
    let consumer = bus
        .consumer(queue.clone())
        .bind("health.#")
        .dead_letter(format!("{exchange}.dlx"))
        .handle::<Probe>(|_: Probe, _| async { Ok::<(), HandlerError>(()) })
        .start()
        .await
        .unwrap();
    let lagging = OutboxStats {
        pending: 3,
        oldest_pending_age_s: Some(120.0),
        ..Default::default()
    };
    let healthy = Health::new().report(&bus).report(&[&consumer][..]);
    assert!(healthy.connected);
    assert_eq!((healthy.consumers_running, healthy.consumers_total), (1, 1));
    assert!(healthy.is_healthy(), "{:?}", healthy.problems());
    let behind = healthy.clone().report(&lagging);
    assert!(
        !behind.is_healthy(),
        "a relay two minutes behind is unhealthy"
    );

    consumer.shutdown().await;
    // With the default retry policy the consumer declared retry queues too.
    bus.delete_consumer_queues(&queue, &RetryPolicy::default())
        .await
        .unwrap();
    bus.delete_exchange(&format!("{exchange}.dlx")).await.ok();
    bus.delete_exchange(&exchange).await.unwrap();
    bus.close().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !Health::new().report(&bus).is_healthy(),
        "closed: not connected"
    );
}
