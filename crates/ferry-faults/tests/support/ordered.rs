//! Per-key order on a cluster across a node's death (issue 17): a partitioned consumer (quorum
//! partition queues, each with a single active consumer) in two application instances, fed
//! keyed events by a publisher, while the node the first instance is connected to (where the
//! partition queues' leaders were placed) is killed with SIGKILL and started again later.
//!
//! Runs in this process (no worker processes: the order is seen by the handlers themselves).
//! The check is the one the inbox gives an application: the first time each event is handled,
//! it comes right after the key's previous event; a message handled but not acked when its node
//! died comes again (a redelivery the inbox would skip), never a later event before an earlier.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ferry::{
    HandlerError, MessageContext, PublishOptions, QueueType,
    rabbitmq::{RabbitMq, RabbitMqOptions},
};
use ferry_faults::ItemAdded;
use ferry_testkit::cluster::Cluster;

/// What the handlers saw, in the order handled: (instance, key, sequence number in the key).
type Seen = Arc<Mutex<Vec<(u8, u64, u64)>>>;

/// Keys, events per key and partitions.
const KEYS: u64 = 50;
const PER_KEY: u64 = 100;
const PARTITIONS: u16 = 4;

/// How an event's number carries its key and its place in the key.
fn encode(key: u64, seq: u64) -> u64 {
    key * 1_000_000 + seq
}

fn decode(n: u64) -> (u64, u64) {
    (n / 1_000_000, n % 1_000_000)
}

/// What the order check found.
#[derive(Debug)]
pub struct OrderResult {
    pub events: u64,
    pub keys: u64,
    pub partitions: u16,
    pub handled: usize,
    pub redelivered: usize,
    pub killed_node: usize,
    pub took: Duration,
}

fn options(cluster: &Cluster, exchange: &str, name: &str) -> RabbitMqOptions {
    RabbitMqOptions::new(cluster.urls())
        .with_exchange(exchange)
        // The handler never fails; a consumer still needs somewhere to put what would.
        .with_dead_letter_exchange(format!("{exchange}.dlx"))
        .with_queue_type(QueueType::Quorum)
        .with_connection_name(name)
        .with_confirm_timeout(Duration::from_secs(10))
        .with_reconnect_backoff(Duration::from_millis(100), Duration::from_secs(1))
}

fn recorder(
    instance: u8,
    seen: Seen,
) -> impl Fn(
    ItemAdded,
    MessageContext,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), HandlerError>> + Send>>
+ Send
+ Sync
+ 'static {
    move |event, _ctx| {
        let seen = Arc::clone(&seen);
        Box::pin(async move {
            // A handler that takes a moment, so that messages are in flight at the kill.
            tokio::time::sleep(Duration::from_millis(1)).await;
            let (key, seq) = decode(event.n);
            seen.lock()
                .map_err(|_| HandlerError::transient("record poisoned"))?
                .push((instance, key, seq));
            Ok(())
        })
    }
}

/// Distinct events handled so far.
fn distinct(seen: &Seen) -> usize {
    let seen = seen.lock().unwrap();
    let mut firsts = std::collections::BTreeSet::new();
    for (_, key, seq) in seen.iter() {
        firsts.insert((*key, *seq));
    }
    firsts.len()
}

async fn wait_distinct(seen: &Seen, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while distinct(seen) < n {
        assert!(
            Instant::now() < deadline,
            "handled {} distinct events of {n} within {limit:?}",
            distinct(seen)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes event `seq` of `key` until a node confirms it (a publish cut off by the kill is
/// sent again: at least once, in order within the key).
async fn publish(bus: &RabbitMq, key: u64, seq: u64) {
    let options = PublishOptions {
        partition_key: Some(format!("customer-{key}")),
        ..PublishOptions::default()
    };
    let event = ItemAdded {
        n: encode(key, seq),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match bus.publish_with(&event, options.clone()).await {
            Ok(_id) => return,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, key, seq, "publish failed; sending again");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("event {seq} of key {key} not published within 60 s: {e}"),
        }
    }
}

/// One application instance: its own connection and the partitioned consumer recording as
/// `instance`.
async fn start_instance(
    cluster: &Cluster,
    exchange: &str,
    queue: &str,
    instance: u8,
    seen: &Seen,
) -> (RabbitMq, ferry::ConsumerHandle) {
    let bus = RabbitMq::connect(options(
        cluster,
        exchange,
        &format!("order-instance-{instance}"),
    ))
    .await
    .unwrap_or_else(|e| panic!("instance {instance} connects: {e}"));
    let consumer = bus
        .consumer(queue.to_owned())
        .bind("faults.#")
        .partitions(PARTITIONS)
        .handle::<ItemAdded>(recorder(instance, Arc::clone(seen)))
        .start()
        .await
        .unwrap_or_else(|e| panic!("instance {instance} starts: {e}"));
    (bus, consumer)
}

/// The case; panics when the order or the count is wrong.
pub async fn per_key_order_across_a_node_kill(cluster: &Cluster) -> OrderResult {
    let began = Instant::now();
    let suffix = ferry_testkit::unique_name("order");
    let exchange = format!("{suffix}.events");
    let queue = format!("{suffix}.orders");
    let seen: Seen = Arc::default();

    let (first_bus, first) = start_instance(cluster, &exchange, &queue, 1, &seen).await;
    let (second_bus, second) = start_instance(cluster, &exchange, &queue, 2, &seen).await;
    let publisher = RabbitMq::connect(options(cluster, &exchange, "order-publisher"))
        .await
        .expect("the publisher connects");

    let publishing = tokio::spawn(async move {
        for seq in 0..PER_KEY {
            for key in 0..KEYS {
                publish(&publisher, key, seq).await;
            }
        }
        publisher.close().await;
    });

    let events = KEYS * PER_KEY;
    let total = usize::try_from(events).unwrap_or(usize::MAX);
    wait_distinct(&seen, total / 3, Duration::from_secs(120)).await;
    let node_url = first_bus.node().expect("instance 1 is connected");
    let node = Cluster::node_of(&node_url).expect("a node of the cluster");
    let leader = cluster.leader(&format!("{queue}.p0")).await.ok();
    eprintln!(
        "order case: killing node {node} (instance 1's; leader of {queue}.p0: {leader:?}) \
         after {} distinct events",
        distinct(&seen)
    );
    cluster.kill(node).await.expect("kill instance 1's node");
    tokio::time::sleep(Duration::from_secs(15)).await;
    cluster
        .start_node(node)
        .await
        .expect("start the node again");

    publishing.await.expect("publishing finished");
    wait_distinct(&seen, total, Duration::from_secs(120)).await;
    // A redelivery still on its way shows up in the record too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.shutdown().await;
    second.shutdown().await;
    first_bus.close().await;
    second_bus.close().await;

    let seen = seen.lock().unwrap().clone();
    let mut by_key: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (_, key, seq) in &seen {
        by_key.entry(*key).or_default().push(*seq);
    }
    assert_eq!(by_key.len() as u64, KEYS, "every key handled");
    let mut redelivered = 0;
    for (key, seqs) in &by_key {
        // Next sequence number not yet handled; a number below it is a redelivery.
        let mut next = 0;
        for seq in seqs {
            if *seq == next {
                next += 1;
            } else {
                assert!(
                    *seq < next,
                    "key {key}: event {seq} handled before event {next}: {seqs:?}"
                );
                redelivered += 1;
            }
        }
        assert_eq!(next, PER_KEY, "key {key}: every event handled: {seqs:?}");
    }
    assert!(
        seen.iter().any(|(i, _, _)| *i == 1) && seen.iter().any(|(i, _, _)| *i == 2),
        "both instances took part"
    );
    OrderResult {
        events,
        keys: KEYS,
        partitions: PARTITIONS,
        handled: seen.len(),
        redelivered,
        killed_node: node,
        took: began.elapsed(),
    }
}
