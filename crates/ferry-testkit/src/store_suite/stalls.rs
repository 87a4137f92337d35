//! A broker that stops answering (a network partition, a broker that stops reading as during
//! a memory alarm) costs outbox rows no attempt: publishes whose confirms time out leave the
//! rows pending with `attempts` unchanged, as an unreachable broker does, and every row is
//! published once the broker answers again.

use std::time::Duration;

use super::{common::*, *};
use crate::{ProxyMode, TcpProxy, unique_name};
use ferry_core::{OutboxStore, RelayOptions};
use ferry_rabbitmq::{RabbitMq, RabbitMqOptions};

const LIMIT: Duration = Duration::from_secs(90);
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(1);

/// A relay through a proxy whose mode the test changes; one event already went through, so
/// the publisher's channel is open when the broker stops answering.
struct Stall<B: Backend> {
    db: TestDb<B>,
    exchange: String,
    watcher: RabbitMq,
    queue: ferry_rabbitmq::Subscription,
    proxy: TcpProxy,
    bus: RabbitMq,
    outbox: Outbox<B>,
    relay: RunningRelay,
}

impl<B: Backend> Stall<B> {
    async fn start() -> Stall<B> {
        let db = TestDb::<B>::new().await;
        let exchange = unique_name("ferry-test-stall");
        let watcher = broker(&exchange).await;
        let mut queue = watcher.subscribe(&["#"]).await.unwrap();
        let proxy = TcpProxy::start(crate::amqp::broker_addr()).await.unwrap();
        // Confirms time out well before the heartbeat notices anything: the publishes are
        // made on a connection that still looks alive.
        let options = RabbitMqOptions::new(crate::amqp::amqp_url_via(proxy.addr()))
            .with_exchange(exchange.as_str())
            .with_connection_name("ferry-store-tests-stall")
            .with_confirm_timeout(CONFIRM_TIMEOUT)
            .with_heartbeat(Duration::from_secs(5))
            .with_publish_reconnect_wait(Duration::from_millis(200))
            .with_reconnect_backoff(Duration::from_millis(50), Duration::from_millis(300));
        let bus = RabbitMq::connect(options).await.unwrap();
        let outbox = Outbox::<B>::new(db.pool.clone());
        let relay = RunningRelay::spawn(
            outbox.clone(),
            bus.clone(),
            RelayOptions {
                min_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(400),
                ..fast_relay()
            },
        );
        let first = add_many::<B>(&db.pool, &outbox, 1, 1, |_| None).await;
        assert_eq!(
            receive_ids(&mut queue, 1, Duration::from_secs(10)).await,
            first
        );
        Stall {
            db,
            exchange,
            watcher,
            queue,
            proxy,
            bus,
            outbox,
            relay,
        }
    }

    /// With the broker not answering (`mode`), adds rows and lets the relay try them for a
    /// while: they are still pending and no attempt was counted. Then the broker answers
    /// again: every row reaches the queue, none with an attempt counted.
    async fn rows_cost_no_attempts_while(mut self, mode: ProxyMode) {
        self.proxy.set_mode(mode);
        let ids = add_many::<B>(&self.db.pool, &self.outbox, 20, 20, |_| None).await;
        // A few confirm timeouts' worth: the relay published the rows and gave up waiting.
        tokio::time::sleep(CONFIRM_TIMEOUT * 4).await;
        for id in &ids {
            assert_eq!(
                status_of::<B>(&self.db.pool, id).await,
                ("pending".into(), 0),
                "a broker that stops answering is not the row's fault"
            );
        }

        self.proxy.set_mode(ProxyMode::Pass);
        // At least once: publishes that timed out may have reached the broker as well.
        let mut received = Vec::new();
        while !ids.iter().all(|id| received.contains(id)) {
            let got = receive_ids(&mut self.queue, 1, LIMIT).await;
            if got.is_empty() {
                break;
            }
            received.extend(got);
        }
        let outbox = self.outbox.clone();
        wait_until(LIMIT, "no row left pending", || async {
            outbox.stats().await.unwrap().pending == 0
        })
        .await;
        self.relay.stop().await;
        for id in &ids {
            assert!(received.contains(id), "row {id} never reached the queue");
        }
        let attempts = count::<B>(
            &self.db.pool,
            "SELECT coalesce(sum(attempts), 0) FROM ferry_outbox",
            vec![],
        )
        .await;
        assert_eq!(attempts, 0, "no row's attempts rose");

        self.queue.close().await;
        self.bus.close().await;
        self.watcher.delete_exchange(&self.exchange).await.unwrap();
        self.watcher.close().await;
        self.db.close().await;
    }
}

pub async fn a_partition_that_times_out_confirms_costs_no_attempts<B: Backend>() {
    Stall::<B>::start()
        .await
        .rows_cost_no_attempts_while(ProxyMode::Blackhole)
        .await;
}

pub async fn a_broker_that_stops_reading_costs_no_attempts<B: Backend>() {
    Stall::<B>::start()
        .await
        .rows_cost_no_attempts_while(ProxyMode::StallUpstream)
        .await;
}
