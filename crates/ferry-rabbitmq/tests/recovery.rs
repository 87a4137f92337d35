//! Connection loss: a TCP proxy between ferry and the broker cuts every connection in the
//! middle of a stream of 5,000 events (once plainly, once with the broker unreachable for a
//! second). The publisher and the consumer recover by themselves and every event is handled
//! at least once. The recovery times are printed (run with `--nocapture` to see them).

mod common;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{Cleanup, OrderCreated, order};
use ferry_core::{MessageContext, OutgoingMessage, PublishOptions, Publisher};
use ferry_rabbitmq::RabbitMq;
use ferry_testkit::{ProxyMode, TcpProxy};

const TOTAL: usize = 5_000;

#[derive(Default)]
struct Seen {
    ids: HashSet<String>,
    deliveries: usize,
    times: Vec<Instant>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_and_consumer_recover_from_cut_connections_and_every_event_is_handled() {
    ferry_testkit::init_tracing();
    let proxy = TcpProxy::start(ferry_testkit::amqp::broker_addr())
        .await
        .unwrap();
    let cleanup = Cleanup::default();
    let exchange = cleanup.exchange(ferry_testkit::unique_name("recovery.events"));
    let dlx = cleanup.exchange(ferry_testkit::unique_name("recovery.dlx"));
    let dlq = cleanup.queue(ferry_testkit::unique_name("recovery.dlq"));
    let queue = cleanup.queue(ferry_testkit::unique_name("recovery"));
    cleanup.retry_queues(&queue, &[1000, 2000, 4000]);
    let options = common::options(&exchange)
        .with_url(ferry_testkit::amqp::amqp_url_via(proxy.addr()))
        .with_heartbeat(Duration::from_secs(5))
        .with_confirm_timeout(Duration::from_secs(5))
        .with_publish_reconnect_wait(Duration::from_secs(2))
        .with_reconnect_backoff(Duration::from_millis(100), Duration::from_secs(2));
    let bus = RabbitMq::connect(options).await.unwrap();

    let dead = Arc::new(Mutex::new(Vec::new()));
    let dead2 = Arc::clone(&dead);
    let dl_handle = bus
        .dead_letter_consumer(dlq.clone())
        .exchange(dlx.clone())
        .on_dead_letter(move |d| {
            let dead = Arc::clone(&dead2);
            async move {
                dead.lock().unwrap().push(d);
                Ok(())
            }
        })
        .start()
        .await
        .unwrap();

    let seen: Arc<Mutex<Seen>> = Arc::default();
    let seen2 = Arc::clone(&seen);
    let consumer = bus
        .consumer(queue.clone())
        .bind("orders.order.created")
        .prefetch(50)
        .concurrency(8)
        .dead_letter(dlx.clone())
        .handle::<OrderCreated>(move |e: OrderCreated, _ctx: MessageContext| {
            let seen = Arc::clone(&seen2);
            async move {
                let mut s = seen.lock().unwrap();
                s.ids.insert(e.order_id);
                s.deliveries += 1;
                s.times.push(Instant::now());
                Ok(())
            }
        })
        .start()
        .await
        .unwrap();

    // The publisher: batches of 50; whatever fails is published again after a pause, as the
    // outbox relay does.
    let confirmed_at: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let publisher = {
        let bus = bus.clone();
        let confirmed_at = Arc::clone(&confirmed_at);
        tokio::spawn(async move {
            let mut pending: Vec<usize> = (0..TOTAL).collect();
            let mut errors: HashMap<String, usize> = HashMap::new();
            while !pending.is_empty() {
                let batch: Vec<usize> = pending.drain(..pending.len().min(50)).collect();
                let messages: Vec<OutgoingMessage> = batch
                    .iter()
                    .map(|i| {
                        PublishOptions {
                            id: Some(format!("evt-{i}")),
                            ..PublishOptions::default()
                        }
                        .message_for(&order(*i), None)
                        .unwrap()
                    })
                    .collect();
                let results = bus.publish_messages(messages).await;
                let mut failed = false;
                for (i, r) in batch.into_iter().zip(results) {
                    match r {
                        Ok(()) => confirmed_at.lock().unwrap().push(Instant::now()),
                        Err(e) => {
                            let kind = format!("{e:?}")
                                .split(['(', ' ', '{'])
                                .next()
                                .unwrap_or("")
                                .to_owned();
                            *errors.entry(kind).or_default() += 1;
                            pending.push(i);
                            failed = true;
                        }
                    }
                }
                if failed {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                // Keep the stream going for a while rather than all at once.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            errors
        })
    };

    let wait_for = |n: usize| {
        let seen = Arc::clone(&seen);
        async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            while seen.lock().unwrap().ids.len() < n {
                assert!(Instant::now() < deadline, "stuck below {n} handled events");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };

    // Cut 1: every connection reset, the broker reachable again at once.
    wait_for(1_000).await;
    let before = bus.reconnections();
    let cut1 = Instant::now();
    proxy.cut_all();
    let (reconnect1, handled1, confirmed1) =
        recovery(&bus, before, &seen, &confirmed_at, cut1).await;

    // Cut 2: every connection reset and new ones refused for a second.
    wait_for(3_000).await;
    let before = bus.reconnections();
    proxy.set_mode(ProxyMode::Refuse);
    proxy.cut_all();
    let cut2 = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.set_mode(ProxyMode::Pass);
    let healed2 = Instant::now();
    let (reconnect2, handled2, confirmed2) =
        recovery(&bus, before, &seen, &confirmed_at, healed2).await;

    let errors = tokio::time::timeout(Duration::from_secs(120), publisher)
        .await
        .expect("the publisher finished")
        .unwrap();
    wait_for(TOTAL).await;

    let (deliveries, ids) = {
        let s = seen.lock().unwrap();
        (s.deliveries, s.ids.len())
    };
    eprintln!(
        "recovery after cut 1 (reset, broker reachable): reconnected in {reconnect1:?}, \
         first publish confirmed {confirmed1:?} and first event handled {handled1:?} after the cut"
    );
    eprintln!(
        "recovery after cut 2 (reset, 1 s outage {:?}): reconnected in {reconnect2:?}, first \
         publish confirmed {confirmed2:?} and first event handled {handled2:?} after the broker \
         was reachable again",
        healed2 - cut2
    );
    eprintln!(
        "{TOTAL} events: {ids} distinct handled, {deliveries} deliveries ({} duplicates); \
         publish errors retried: {errors:?}",
        deliveries - ids
    );
    assert_eq!(ids, TOTAL, "every event handled at least once");
    assert!(dead.lock().unwrap().is_empty(), "nothing dead-lettered");

    // Bounded, so a shutdown that hangs fails the test instead of the whole run.
    tokio::time::timeout(Duration::from_secs(60), consumer.shutdown())
        .await
        .expect("the consumer shut down within 60 s");
    tokio::time::timeout(Duration::from_secs(60), dl_handle.shutdown())
        .await
        .expect("the dead-letter consumer shut down within 60 s");
    let (ready, consumers) = bus.queue_counts(&queue).await.unwrap();
    assert_eq!((ready, consumers), (0, 0));
    bus.close().await;
}

/// How long after `from` the connection was back, the first publish was confirmed and the
/// first event was handled.
async fn recovery(
    bus: &RabbitMq,
    before: u64,
    seen: &Arc<Mutex<Seen>>,
    confirmed_at: &Arc<Mutex<Vec<Instant>>>,
    from: Instant,
) -> (Duration, Duration, Duration) {
    let deadline = from + Duration::from_secs(60);
    let mut reconnected = None;
    let mut handled = None;
    let mut confirmed = None;
    while reconnected.is_none() || handled.is_none() || confirmed.is_none() {
        assert!(Instant::now() < deadline, "no recovery within 60 s");
        if reconnected.is_none() && bus.reconnections() > before && bus.is_connected() {
            reconnected = Some(Instant::now());
        }
        if handled.is_none() {
            handled = seen
                .lock()
                .unwrap()
                .times
                .iter()
                .copied()
                .find(|t| *t > from + Duration::from_millis(50));
        }
        if confirmed.is_none() {
            confirmed = confirmed_at
                .lock()
                .unwrap()
                .iter()
                .copied()
                .find(|t| *t > from + Duration::from_millis(50));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let d = |t: Option<Instant>| t.map(|t| t - from).unwrap_or_default();
    (d(reconnected), d(handled), d(confirmed))
}
