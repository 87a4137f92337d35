//! Ordered consumption on the local broker: a single active consumer, and a partitioned
//! consumer keeping the order of each partition key while its partitions run in parallel,
//! across an instance that goes away mid-stream.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{Env, OrderCreated};
use ferry_core::{MessageContext, PublishOptions};
use ferry_rabbitmq::{RabbitMq, topology::partition_exchange_name};
use tokio::sync::mpsc;

/// What a handler saw: (instance, order id), in the order handled.
type Seen = Arc<Mutex<Vec<(u8, String)>>>;

fn recording(
    instance: u8,
    seen: Seen,
    tx: mpsc::UnboundedSender<()>,
    pause: Duration,
) -> impl Fn(
    OrderCreated,
    MessageContext,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(), ferry_core::HandlerError>> + Send>,
> + Send
+ Sync
+ 'static {
    move |event, _ctx| {
        let (seen, tx) = (Arc::clone(&seen), tx.clone());
        Box::pin(async move {
            tokio::time::sleep(pause).await;
            seen.lock().unwrap().push((instance, event.order_id));
            let _ = tx.send(());
            Ok(())
        })
    }
}

fn event(key: usize, seq: usize) -> OrderCreated {
    OrderCreated {
        order_id: format!("k{key}:{seq}"),
        total_amount: seq as f64,
    }
}

fn parse(id: &str) -> (usize, usize) {
    let (key, seq) = id.trim_start_matches('k').split_once(':').unwrap();
    (key.parse().unwrap(), seq.parse().unwrap())
}

async fn wait_for(rx: &mut mpsc::UnboundedReceiver<()>, seen: &Seen, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap().len() < n {
        if tokio::time::timeout_at(deadline, rx.recv()).await.is_err() {
            panic!("handled {} of {n}", seen.lock().unwrap().len());
        }
    }
}

/// Every key's events were handled in order: each sequence number at or after the one before
/// (a redelivery of the message in flight when an instance went may repeat it), all of them.
fn assert_order_per_key(seen: &[(u8, String)], keys: usize, per_key: usize) {
    let mut by_key: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (_, id) in seen {
        let (key, seq) = parse(id);
        by_key.entry(key).or_default().push(seq);
    }
    assert_eq!(by_key.len(), keys);
    for (key, seqs) in by_key {
        for pair in seqs.windows(2) {
            assert!(
                pair[1] == pair[0] || pair[1] == pair[0] + 1,
                "key {key} out of order: {seqs:?}"
            );
        }
        let distinct: BTreeSet<usize> = seqs.iter().copied().collect();
        assert_eq!(distinct.len(), per_key, "key {key}: {seqs:?}");
    }
}

#[tokio::test]
async fn a_single_active_consumer_keeps_the_order_across_a_handover() {
    let env = Env::new("sac").await;
    let (dlx, dl_handle, _dead) = env.dead_letters().await;
    let queue = env.queue("sac");
    let seen: Seen = Arc::default();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let pause = Duration::from_millis(2);
    let first = env
        .bus
        .consumer(queue.clone())
        .bind("orders.#")
        .dead_letter(dlx.clone())
        .single_active_consumer()
        .handle::<OrderCreated>(recording(1, Arc::clone(&seen), tx.clone(), pause))
        .start()
        .await
        .unwrap();
    let other_bus = RabbitMq::connect(common::options(&env.exchange))
        .await
        .unwrap();
    let second = other_bus
        .consumer(queue.clone())
        .bind("orders.#")
        .dead_letter(dlx)
        .single_active_consumer()
        .handle::<OrderCreated>(recording(2, Arc::clone(&seen), tx, pause))
        .start()
        .await
        .unwrap();
    let total = 200;
    for seq in 0..total {
        env.bus.publish(&event(0, seq)).await.unwrap();
    }
    wait_for(&mut rx, &seen, 50).await;
    first.shutdown().await;
    wait_for(&mut rx, &seen, total).await;
    let seen = seen.lock().unwrap().clone();
    // One consumer at a time: the first handled a prefix, the second the rest.
    let switch = seen.iter().position(|(i, _)| *i == 2).expect("a handover");
    assert!(seen[..switch].iter().all(|(i, _)| *i == 1), "{seen:?}");
    assert!(seen[switch..].iter().all(|(i, _)| *i == 2), "{seen:?}");
    assert_order_per_key(&seen, 1, total);
    second.shutdown().await;
    other_bus.close().await;
    dl_handle.shutdown().await;
}

#[tokio::test]
async fn a_partitioned_consumer_keeps_each_keys_order_when_an_instance_goes() {
    let env = Env::new("parts").await;
    let (dlx, dl_handle, _dead) = env.dead_letters().await;
    let queue = ferry_testkit::unique_name("parts");
    let partitions = 4u16;
    for i in 0..partitions {
        env.cleanup.queue(format!("{queue}.p{i}"));
    }
    env.cleanup.exchange(partition_exchange_name(&queue));
    let seen: Seen = Arc::default();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let pause = Duration::from_millis(1);

    // Two instances of one application, each with its own connection.
    let first_bus = RabbitMq::connect(common::options(&env.exchange))
        .await
        .unwrap();
    let first = first_bus
        .consumer(queue.clone())
        .bind("orders.#")
        .dead_letter(dlx.clone())
        .partitions(partitions)
        .handle::<OrderCreated>(recording(1, Arc::clone(&seen), tx.clone(), pause))
        .start()
        .await
        .unwrap();
    let second_bus = RabbitMq::connect(common::options(&env.exchange))
        .await
        .unwrap();
    let second = second_bus
        .consumer(queue.clone())
        .bind("orders.#")
        .dead_letter(dlx)
        .partitions(partitions)
        .handle::<OrderCreated>(recording(2, Arc::clone(&seen), tx, pause))
        .start()
        .await
        .unwrap();

    let (keys, per_key) = (40, 25);
    let total = keys * per_key;
    let publisher = env.bus.clone();
    let publishing = tokio::spawn(async move {
        for seq in 0..per_key {
            for key in 0..keys {
                let options = PublishOptions {
                    partition_key: Some(format!("customer-{key}")),
                    ..PublishOptions::default()
                };
                publisher
                    .publish_with(&event(key, seq), options)
                    .await
                    .unwrap();
            }
        }
    });
    wait_for(&mut rx, &seen, total / 3).await;
    // The first instance goes mid-stream, its connection cut: what it had not acked is
    // redelivered, and the second instance takes its partitions over.
    first_bus.close().await;
    first.shutdown().await;
    publishing.await.unwrap();
    wait_for(&mut rx, &seen, total).await;
    // Give a redelivery still on its way the time to show up in the record.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = seen.lock().unwrap().clone();
    assert_order_per_key(&seen, keys, per_key);
    assert!(
        seen.iter().any(|(i, _)| *i == 1),
        "the first instance took part"
    );
    assert!(
        seen.iter().any(|(i, _)| *i == 2),
        "the second instance took over"
    );
    second.shutdown().await;
    second_bus.close().await;

    // With no consumer running, the keys are seen spread over every partition queue, and an
    // event without a key is routed too.
    for key in 0..keys {
        let options = PublishOptions {
            partition_key: Some(format!("customer-{key}")),
            ..PublishOptions::default()
        };
        env.bus.publish_with(&event(key, 0), options).await.unwrap();
    }
    env.bus.publish(&event(0, 0)).await.unwrap();
    let mut ready = Vec::new();
    for i in 0..partitions {
        let (messages, _) = env
            .bus
            .queue_counts(&format!("{queue}.p{i}"))
            .await
            .unwrap();
        ready.push(messages);
    }
    assert!(ready.iter().all(|n| *n > 0), "{ready:?}");
    assert_eq!(ready.iter().sum::<u32>(), keys as u32 + 1, "{ready:?}");
    dl_handle.shutdown().await;
}
