//! `ferry dlq list|show|replay|purge` against the real broker, on a dead-letter queue and an
//! origin queue of the test's own, with assertions on what each verb did to the queues.

mod common;

use std::time::Duration;

use common::{bus, ferry_on, stdout_ok};
use ferry::{
    Fault, FaultKind, Publisher,
    plumbing::{OutgoingMessage, WireMessage},
    rabbitmq::RabbitMq,
};
use serde_json::Value;

struct Queues {
    exchange: String,
    dlx: String,
    dlq: String,
    origin_exchange: String,
    origin: String,
}

impl Queues {
    fn new() -> Self {
        Self {
            exchange: ferry_testkit::unique_name("cli.dlq.events"),
            dlx: ferry_testkit::unique_name("cli.dlq.dlx"),
            dlq: ferry_testkit::unique_name("cli.dlq.dlq"),
            origin_exchange: ferry_testkit::unique_name("cli.dlq.origin-x"),
            origin: ferry_testkit::unique_name("cli.dlq.origin"),
        }
    }

    async fn remove(&self, bus: &RabbitMq) {
        bus.delete_queue(&self.dlq).await.unwrap();
        bus.delete_queue(&self.origin).await.unwrap();
        for exchange in [&self.dlx, &self.origin_exchange, &self.exchange] {
            bus.delete_exchange(exchange).await.unwrap();
        }
    }
}

/// A dead letter as ferry writes it: the event, with the fault headers of a handler failure
/// on `origin`.
fn dead_letter(id: &str, origin: &str) -> WireMessage {
    let envelope = ferry::Envelope::new("orders.order.created").with_id(id);
    let body = format!(r#"{{"orderId":"{id}"}}"#);
    let mut message = ferry::codec::encode_data(&envelope, body.into_bytes().into());
    message.set_header("ferry-attempt", ferry::plumbing::HeaderValue::Int(4));
    let mut fault = Fault::new(FaultKind::Handler, format!("stock service down for {id}"));
    fault.attempts = 4;
    fault.original_exchange = Some("myapp.events".into());
    fault.original_routing_key = Some("orders.order.created".into());
    fault.original_queue = Some(origin.to_owned());
    fault.apply_to(&mut message);
    message
}

async fn ready(bus: &RabbitMq, queue: &str) -> u32 {
    bus.queue_counts(queue).await.unwrap().0
}

/// The ids on a queue, in order, leaving the messages there.
async fn ids_on(bus: &RabbitMq, queue: &str) -> Vec<String> {
    bus.dead_letter_queue(queue)
        .list(None)
        .await
        .unwrap()
        .iter()
        .map(|d| d.message_id().unwrap_or("").to_owned())
        .collect()
}

async fn run(q: &Queues, args: &[&str]) -> std::process::Output {
    let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    args.extend(["--queue".to_owned(), q.dlq.clone()]);
    let exchange = q.exchange.clone();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ferry_on(&exchange, &args)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_dlq_verb_does_what_it_says_to_the_queues() {
    let q = Queues::new();
    let bus = bus(&q.exchange).await;
    bus.declare_dead_letter_queue(&q.dlx, &q.dlq).await.unwrap();
    // The queue the dead letters failed on (declared here as a plain durable queue).
    bus.declare_dead_letter_queue(&q.origin_exchange, &q.origin)
        .await
        .unwrap();
    let ids = ["d-1", "d-2", "d-3", "d-4", "d-5"];
    for id in ids {
        let mut out = OutgoingMessage::new("orders.order.created", dead_letter(id, &q.origin));
        out.exchange = Some(q.dlx.clone());
        bus.publish_message(out).await.unwrap();
    }
    let wait = tokio::time::Instant::now() + Duration::from_secs(10);
    while ready(&bus, &q.dlq).await < 5 && tokio::time::Instant::now() < wait {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready(&bus, &q.dlq).await, 5);

    // list: every dead letter, oldest first, left on the queue in order.
    let listed: Value =
        serde_json::from_str(&stdout_ok(&run(&q, &["dlq", "list", "--json"]).await)).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(
        listed.iter().map(|d| d["id"].clone()).collect::<Vec<_>>(),
        ids.map(Value::from)
    );
    assert_eq!(listed[0]["type"], "orders.order.created");
    assert_eq!(listed[0]["fault"]["kind"], "handler");
    assert_eq!(listed[0]["fault"]["attempts"], 4);
    assert_eq!(listed[0]["fault"]["original_queue"], q.origin.as_str());
    assert_eq!(ids_on(&bus, &q.dlq).await, ids);
    // list --limit: the oldest N.
    let limited: Value = serde_json::from_str(&stdout_ok(
        &run(&q, &["dlq", "list", "--limit", "2", "--json"]).await,
    ))
    .unwrap();
    assert_eq!(
        limited
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].clone())
            .collect::<Vec<_>>(),
        [Value::from("d-1"), Value::from("d-2")]
    );

    // show: one in full, nothing removed.
    let shown: Value = serde_json::from_str(&stdout_ok(
        &run(&q, &["dlq", "show", "--id", "d-3", "--json"]).await,
    ))
    .unwrap();
    assert_eq!(shown["id"], "d-3");
    assert_eq!(shown["data"], serde_json::json!({"orderId": "d-3"}));
    assert_eq!(shown["headers"]["ferry-fault-kind"], "handler");
    assert_eq!(shown["properties"]["message_id"], "d-3");
    assert_eq!(ids_on(&bus, &q.dlq).await, ids);
    let missing = run(&q, &["dlq", "show", "--id", "nope"]).await;
    assert_eq!(missing.status.code(), Some(1));

    // replay --id: back to its original queue without the fault headers, the rest in order.
    let out = run(&q, &["dlq", "replay", "--id", "d-2"]).await;
    assert_eq!(stdout_ok(&out).trim(), "d-2");
    assert_eq!(ids_on(&bus, &q.dlq).await, ["d-1", "d-3", "d-4", "d-5"]);
    let replayed = bus.dead_letter_queue(&q.origin).list(None).await.unwrap();
    assert_eq!(replayed.len(), 1);
    let message = &replayed[0].message;
    assert_eq!(message.properties.message_id.as_deref(), Some("d-2"));
    assert_eq!(&message.body[..], br#"{"orderId":"d-2"}"#);
    for header in ferry::fault::headers::FAULT_HEADERS
        .iter()
        .filter(|h| h.starts_with("ferry-fault-"))
        .chain(&["ferry-attempt"])
    {
        assert!(
            message.header(header).is_none(),
            "`{header}` left on the replayed message"
        );
    }

    // replay --all --limit 1: the oldest one only.
    let out = run(&q, &["dlq", "replay", "--all", "--limit", "1", "--json"]).await;
    let report: Value = serde_json::from_str(&stdout_ok(&out)).unwrap();
    assert_eq!(report["replayed"], 1, "{report}");
    assert_eq!(report["ids"], serde_json::json!(["d-1"]));
    assert_eq!(ids_on(&bus, &q.dlq).await, ["d-3", "d-4", "d-5"]);
    assert_eq!(ids_on(&bus, &q.origin).await, ["d-2", "d-1"]);

    // purge --id: gone, not replayed.
    let out = run(&q, &["dlq", "purge", "--id", "d-4"]).await;
    assert_eq!(stdout_ok(&out).trim(), "d-4");
    assert_eq!(ids_on(&bus, &q.dlq).await, ["d-3", "d-5"]);
    // purge --all --limit 1: the oldest one only.
    let out = run(&q, &["dlq", "purge", "--all", "--limit", "1"]).await;
    assert_eq!(stdout_ok(&out).trim(), "d-3");
    assert_eq!(ids_on(&bus, &q.dlq).await, ["d-5"]);
    // purge --all: empty.
    let out = run(&q, &["dlq", "purge", "--all"]).await;
    stdout_ok(&out);
    assert_eq!(ready(&bus, &q.dlq).await, 0);
    assert_eq!(ids_on(&bus, &q.origin).await, ["d-2", "d-1"]);

    // An id that is not there: exit 1, nothing else touched.
    let out = run(&q, &["dlq", "replay", "--id", "d-1"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(ids_on(&bus, &q.origin).await, ["d-2", "d-1"]);

    q.remove(&bus).await;
    bus.close().await;
}
