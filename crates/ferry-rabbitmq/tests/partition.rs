//! A silent network partition: no reset, no FIN, the bytes just stop. The heartbeat notices
//! the dead connection, ferry reconnects once the network heals, and the consumer resumes.

mod common;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{Cleanup, OrderCreated, order};
use ferry_core::{MessageContext, PublishError};
use ferry_rabbitmq::RabbitMq;
use ferry_testkit::{ProxyMode, TcpProxy};

#[tokio::test]
async fn a_silent_partition_is_noticed_by_the_heartbeat_and_healed() {
    ferry_testkit::init_tracing();
    let proxy = TcpProxy::start(ferry_testkit::amqp::broker_addr())
        .await
        .unwrap();
    let cleanup = Cleanup::default();
    let exchange = cleanup.exchange(ferry_testkit::unique_name("partition.events"));
    let dlx = cleanup.exchange(ferry_testkit::unique_name("partition.dlx"));
    let queue = cleanup.queue(ferry_testkit::unique_name("partition"));
    let options = common::options(&exchange)
        .with_url(ferry_testkit::amqp::amqp_url_via(proxy.addr()))
        .with_heartbeat(Duration::from_secs(1))
        .with_confirm_timeout(Duration::from_secs(2))
        .with_publish_reconnect_wait(Duration::from_secs(1))
        .with_reconnect_backoff(Duration::from_millis(100), Duration::from_secs(1));
    let bus = RabbitMq::connect(options).await.unwrap();
    let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
    let seen2 = Arc::clone(&seen);
    let consumer = bus
        .consumer(queue.clone())
        .bind("orders.#")
        .dead_letter(dlx)
        .handle::<OrderCreated>(move |e: OrderCreated, _ctx: MessageContext| {
            let seen = Arc::clone(&seen2);
            async move {
                seen.lock().unwrap().insert(e.order_id);
                Ok(())
            }
        })
        .start()
        .await
        .unwrap();
    // The dead-letter exchange needs a queue for `mandatory` dead letters; none are expected.
    bus.publish(&order(0)).await.unwrap();

    proxy.set_mode(ProxyMode::Blackhole);
    let partitioned = Instant::now();
    // A publish into the partition is not confirmed: an error, never a silent success.
    let err = bus.publish(&order(1)).await.unwrap_err();
    assert!(
        matches!(
            err,
            PublishError::ConfirmTimeout { .. } | PublishError::Unavailable(_)
        ),
        "{err:?}"
    );
    // The heartbeat notices the dead connection.
    while bus.is_connected() {
        assert!(
            partitioned.elapsed() < Duration::from_secs(30),
            "the dead connection was not noticed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let noticed = partitioned.elapsed();
    proxy.set_mode(ProxyMode::Pass);
    let healed = Instant::now();
    bus.wait_connected(Duration::from_secs(30)).await.unwrap();
    let reconnected = healed.elapsed();

    // Publishing works again, and the consumer resumed: every event is handled (the one
    // whose confirm timed out may or may not have reached the broker, so it is sent again).
    let mut ids = vec!["o-0".to_owned()];
    for i in 1..20 {
        let mut tries = 0;
        loop {
            match bus.publish(&order(i)).await {
                Ok(_) => break,
                Err(e) => {
                    tries += 1;
                    assert!(tries < 50, "publishing did not recover: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        ids.push(format!("o-{i}"));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let missing: Vec<String> = {
            let seen = seen.lock().unwrap();
            ids.iter()
                .filter(|id| !seen.contains(*id))
                .cloned()
                .collect()
        };
        if missing.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "not handled: {missing:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "partition: the dead connection was noticed after {noticed:?} (heartbeat 1 s); \
         reconnected {reconnected:?} after the network healed"
    );
    consumer.shutdown().await;
    bus.close().await;
}
