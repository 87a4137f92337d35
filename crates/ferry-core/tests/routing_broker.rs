//! The matcher against the real RabbitMQ: a temporary topic exchange, one exclusive queue per
//! binding pattern, every routing key published once; for every (pattern, key) pair the broker's
//! routing must equal `BindingPattern::matches`.
//!
//! Needs RabbitMQ at `FERRY_AMQP_URL` (default `amqp://guest:guest@127.0.0.1:5672/%2f`).

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use ferry_core::BindingPattern;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

mod routing_cases;

const SENTINEL: &[u8] = b"end";

/// Every word list of up to `max_words` words drawn from `alphabet`, joined with dots.
fn joined(alphabet: &[&str], max_words: usize) -> Vec<String> {
    let mut all = vec![Vec::<&str>::new()];
    let mut layer = vec![Vec::<&str>::new()];
    for _ in 0..max_words {
        layer = layer
            .iter()
            .flat_map(|words| {
                alphabet.iter().map(move |w| {
                    let mut longer = words.clone();
                    longer.push(w);
                    longer
                })
            })
            .collect();
        all.extend(layer.iter().cloned());
    }
    all.into_iter().map(|words| words.join(".")).collect()
}

/// Unique strings, in first-seen order.
fn unique(items: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut seen = HashSet::new();
    items
        .into_iter()
        .filter(|s| seen.insert(s.clone()))
        .collect()
}

fn patterns() -> Vec<String> {
    let table = routing_cases::CASES.iter().map(|(p, _, _)| (*p).to_owned());
    let exhaustive = joined(&["a", "b", "", "*", "#"], 3);
    let extra = [
        "#.#.#",
        "a.#.#.b",
        "#.a.#.a.#",
        "*.#.*",
        "#.*.*.#",
        "a.*.#.b",
        "#.b.*",
        "..#..",
    ]
    .map(str::to_owned);
    unique(table.chain(exhaustive).chain(extra))
}

fn keys() -> Vec<String> {
    let table = routing_cases::CASES.iter().map(|(_, k, _)| (*k).to_owned());
    let exhaustive = joined(&["a", "b", ""], 4);
    let extra = [
        "a.x.y.z.b",
        "x.a.y.z.a.w",
        "a.b.a.b.a",
        "orders.order.created",
        "a*",
        "*",
        "#",
        "a.#",
        "a.*",
        "*.#",
    ]
    .map(str::to_owned);
    unique(table.chain(exhaustive).chain(extra))
}

fn amqp_url() -> String {
    std::env::var("FERRY_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// Reads a queue until the sentinel, returning the bodies before it.
async fn drain(channel: &Channel, queue: &str) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    let mut idle = 0u32;
    loop {
        let got = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap();
        match got {
            Some(message) => {
                idle = 0;
                let body = message.delivery.data.clone();
                if body == SENTINEL {
                    return bodies;
                }
                bodies.push(body);
            }
            None => {
                // The sentinel was published (confirmed) after everything else; it only has
                // to become visible. Give up after a minute of silence rather than hang.
                idle += 1;
                assert!(idle < 1200, "queue {queue} never received its sentinel");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test]
async fn the_broker_routes_exactly_as_the_matcher_matches() {
    let patterns = patterns();
    let keys = keys();
    let compiled: Vec<BindingPattern> = patterns
        .iter()
        .map(|p| BindingPattern::new(p.as_str()).unwrap())
        .collect();

    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("RabbitMQ must be running at FERRY_AMQP_URL (default 127.0.0.1:5672)");
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();

    let exchange = format!("ferry-test.routing.{}", uuid::Uuid::new_v4().simple());
    channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                auto_delete: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();

    let mut queues = Vec::with_capacity(patterns.len());
    for pattern in &patterns {
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let name = queue.name().to_string();
        channel
            .queue_bind(
                name.as_str().into(),
                exchange.as_str().into(),
                pattern.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        queues.push(name);
    }

    // Each key once, its index as the body; then a sentinel straight to each queue.
    let mut confirms = Vec::new();
    for (index, key) in keys.iter().enumerate() {
        let confirm = channel
            .basic_publish(
                exchange.as_str().into(),
                key.as_str().into(),
                BasicPublishOptions::default(),
                index.to_string().as_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap();
        confirms.push(confirm);
    }
    for queue in &queues {
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                SENTINEL,
                BasicProperties::default(),
            )
            .await
            .unwrap();
        confirms.push(confirm);
    }
    for confirm in confirms {
        assert!(confirm.await.unwrap().is_ack());
    }

    let mut disagreements = Vec::new();
    let mut routed = 0usize;
    for ((pattern, matcher), queue) in patterns.iter().zip(&compiled).zip(&queues) {
        let received: BTreeSet<usize> = drain(&channel, queue)
            .await
            .into_iter()
            .map(|body| String::from_utf8(body).unwrap().parse().unwrap())
            .collect();
        routed += received.len();
        for (index, key) in keys.iter().enumerate() {
            let broker = received.contains(&index);
            let ours = matcher.matches(key);
            if broker != ours {
                disagreements.push(format!(
                    "pattern {pattern:?} key {key:?}: broker routed = {broker}, matches = {ours}"
                ));
            }
        }
    }

    for queue in &queues {
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap();
    }
    channel
        .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
    connection.close(200, "done".into()).await.unwrap();

    assert!(
        disagreements.is_empty(),
        "{} of {} (pattern, key) pairs disagree:\n{}",
        disagreements.len(),
        patterns.len() * keys.len(),
        disagreements.join("\n")
    );
    // The test means something only if the broker routed a fair share of the pairs.
    assert!(routed > 1000, "only {routed} messages routed");
}
