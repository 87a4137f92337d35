//! Interop with an independent client: a Python peer (pika and the CloudEvents SDK, see
//! `tests/interop/requirements.txt`) reads an event ferry published with
//! `cloudevents.core.bindings.rabbitmq.from_binary`, and publishes events made with
//! `rabbitmq.to_binary` and `amqp.to_binary` that a ferry consumer handles. Every attribute
//! must agree on both sides. It also sends a poison corpus encoded by pika (its own header
//! types), each message followed by a valid event: every poison message is dead-lettered with
//! its fault kind and every valid one handled.
//!
//! The peer runs in the virtual environment `.venv` at the workspace root, which `scripts/test`
//! (the README's test command) creates. Without it this test fails and says how to create it.

mod common;

use std::{path::PathBuf, process::Stdio, time::Duration};

use common::{Env, OrderCreated, forwarding, recv_n};
use ferry_core::{PublishOptions, codec::attributes::format_time};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
    sync::mpsc,
};

fn python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "the interop test needs the Python peer's virtual environment at {}; run the tests \
         with `scripts/test` (it creates it), or from the workspace root: `python3 -m venv .venv \
         && .venv/bin/pip install -r crates/ferry-rabbitmq/tests/interop/requirements.txt`",
        python.display()
    );
    python
}

fn peer() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/peer.py")
}

fn pika_url() -> String {
    ferry_testkit::amqp::url()
}

#[tokio::test]
async fn the_cloudevents_sdk_reads_what_ferry_publishes() {
    let python = python();
    let env = Env::with_options("interop-read", |o| o.with_source("/ferry/orders")).await;
    let mut child = Command::new(&python)
        .arg(peer())
        .args(["read", "--url", &pika_url(), "--exchange", &env.exchange])
        .args(["--bind", "orders.#", "--timeout", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start the Python peer");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the peer is ready within 30 s")
        .unwrap()
        .expect("a ready line");
    assert!(ready.contains("\"ready\": true"), "{ready}");

    let options = PublishOptions {
        correlation_id: Some("corr-rs-1".into()),
        causation_id: Some("cause-rs-1".into()),
        subject: Some("order/rs-1".into()),
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        ..PublishOptions::default()
    };
    let sent_envelope = options.envelope_for::<OrderCreated>(Some("/ferry/orders"));
    let event = OrderCreated {
        order_id: "rs-1".into(),
        total_amount: 99.25,
    };
    let message = ferry_core::codec::encode(&event, &sent_envelope).unwrap();
    ferry_core::Publisher::publish_message(
        &env.bus,
        ferry_core::OutgoingMessage::new("orders.order.created", message),
    )
    .await
    .unwrap();

    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the peer answers within 30 s")
        .unwrap()
        .expect("the peer's output");
    let status = child.wait().await.unwrap();
    assert!(status.success(), "the peer failed: {status}");
    let got: Value = serde_json::from_str(&line).unwrap();
    let a = &got["attributes"];
    let e = &sent_envelope;
    assert_eq!(a["specversion"], "1.0");
    assert_eq!(a["id"], e.id.as_str());
    assert_eq!(a["type"], "orders.order.created");
    assert_eq!(a["source"], "/ferry/orders");
    assert_eq!(a["datacontenttype"], "application/json");
    assert_eq!(a["subject"], "order/rs-1");
    assert_eq!(a["correlationid"], "corr-rs-1");
    assert_eq!(a["causationid"], "cause-rs-1");
    assert_eq!(a["traceparent"], e.traceparent.as_deref().unwrap());
    assert_eq!(a["eventversion"], "1");
    // The SDK parsed ce-time into a datetime; it prints microseconds, as ferry keeps them.
    let micros = e.time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    assert_eq!(
        a["time"],
        micros.as_str(),
        "ferry wrote {}",
        format_time(&e.time)
    );
    let attribute_names: Vec<&str> = a.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        attribute_names,
        [
            "causationid",
            "correlationid",
            "datacontenttype",
            "eventversion",
            "id",
            "source",
            "specversion",
            "subject",
            "time",
            "traceparent",
            "type"
        ],
        "no attribute more or less"
    );
    assert_eq!(
        got["data"],
        serde_json::json!({"orderId": "rs-1", "totalAmount": 99.25})
    );
    assert_eq!(got["routing_key"], "orders.order.created");
    let p = &got["properties"];
    assert_eq!(p["message_id"], e.id.as_str());
    assert_eq!(p["type"], "orders.order.created");
    assert_eq!(p["app_id"], "/ferry/orders");
    assert_eq!(p["delivery_mode"], 2);
    assert_eq!(p["correlation_id"], "corr-rs-1");
    assert_eq!(p["timestamp"], e.time.timestamp());
}

#[tokio::test]
async fn ferry_handles_what_the_cloudevents_sdk_publishes_with_both_bindings() {
    let python = python();
    let env = Env::new("interop-write").await;
    let (dlx, dl_handle, mut dead) = env.dead_letters().await;
    let queue = env.queue("interop-write");
    let (tx, mut handled) = mpsc::unbounded_channel();
    let consumer = env
        .bus
        .consumer(queue.clone())
        .bind("orders.#")
        .dead_letter(dlx)
        .handle::<OrderCreated>(forwarding(tx))
        .start()
        .await
        .unwrap();

    let output = Command::new(&python)
        .arg(peer())
        .args(["write", "--url", &pika_url(), "--exchange", &env.exchange])
        .args(["--type", "orders.order.created"])
        .stderr(Stdio::inherit())
        .output()
        .await
        .expect("run the Python peer");
    assert!(
        output.status.success(),
        "the peer failed: {}",
        output.status
    );
    let sent: Value = serde_json::from_slice(&output.stdout).unwrap();
    let sent = sent.as_array().unwrap();
    assert_eq!(sent.len(), 2);
    // The AMQP binding sends the time as an integer of milliseconds.
    assert!(
        sent[1]["headers"]["cloudEvents_time"].is_i64(),
        "{}",
        sent[1]
    );

    let mut got = recv_n(&mut handled, 2, Duration::from_secs(20)).await;
    got.sort_by(|a, b| a.1.envelope().source.cmp(&b.1.envelope().source));
    let mut sent: Vec<&Value> = sent.iter().collect();
    sent.sort_by(|a, b| {
        a["attributes"]["source"]
            .as_str()
            .cmp(&b["attributes"]["source"].as_str())
    });
    for ((event, ctx), s) in got.iter().zip(sent) {
        let a = &s["attributes"];
        let e = ctx.envelope();
        let binding = s["binding"].as_str().unwrap();
        assert_eq!(e.id, a["id"].as_str().unwrap(), "{binding}");
        assert_eq!(e.event_type, a["type"].as_str().unwrap(), "{binding}");
        assert_eq!(e.source, a["source"].as_str().unwrap(), "{binding}");
        assert_eq!(e.subject.as_deref(), a["subject"].as_str(), "{binding}");
        assert_eq!(
            e.correlation_id.as_deref(),
            a["correlationid"].as_str(),
            "{binding}"
        );
        assert_eq!(
            e.causation_id.as_deref(),
            a["causationid"].as_str(),
            "{binding}"
        );
        assert_eq!(e.event_version, 1, "{binding}");
        let time = e.time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        assert_eq!(time, a["time"].as_str().unwrap(), "{binding}");
        assert_eq!(
            event.order_id,
            s["data"]["orderId"].as_str().unwrap(),
            "{binding}"
        );
        assert_eq!(
            event.total_amount,
            s["data"]["totalAmount"].as_f64().unwrap(),
            "{binding}"
        );
        assert!(
            e.extensions.is_empty(),
            "{binding}: unexpected extensions {:?}",
            e.extensions
        );
    }
    if let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(300), dead.recv()).await {
        panic!("dead-lettered: {}", d.fault);
    }
    consumer.shutdown().await;
    dl_handle.shutdown().await;
}

#[tokio::test]
async fn poison_from_pika_is_dead_lettered_with_its_kind_and_valid_traffic_goes_on() {
    let python = python();
    let env = Env::new("interop-poison").await;
    let (dlx, dl_handle, mut dead) = env.dead_letters().await;
    let queue = env.queue("interop-poison");
    let (tx, mut handled) = mpsc::unbounded_channel();
    let consumer = env
        .bus
        .consumer(queue.clone())
        .bind("orders.#")
        .prefetch(20)
        .concurrency(4)
        .dead_letter(dlx)
        .limits(ferry_core::Limits::default().with_max_body_bytes(64 * 1024))
        .handle::<OrderCreated>(forwarding(tx))
        .start()
        .await
        .unwrap();

    let output = Command::new(&python)
        .arg(peer())
        .args(["poison", "--url", &pika_url(), "--exchange", &env.exchange])
        .args(["--type", "orders.order.created"])
        .stderr(Stdio::inherit())
        .output()
        .await
        .expect("run the Python peer");
    assert!(
        output.status.success(),
        "the peer failed: {}",
        output.status
    );
    let cases: Value = serde_json::from_slice(&output.stdout).unwrap();
    let cases = cases.as_array().unwrap();
    let mut expected_handled: Vec<String> =
        (0..cases.len()).map(|i| format!("py-valid-{i}")).collect();
    let mut expected_dead = std::collections::BTreeMap::new();
    for case in cases {
        let name = case["name"].as_str().unwrap().to_owned();
        let expect = case["expect"].as_str().unwrap();
        match expect.strip_prefix("handled:") {
            Some(order_id) => expected_handled.push(order_id.to_owned()),
            None => {
                expected_dead.insert(name, expect.to_owned());
            }
        }
    }
    expected_handled.sort();

    let got = recv_n(
        &mut handled,
        expected_handled.len(),
        Duration::from_secs(30),
    )
    .await;
    let mut got: Vec<String> = got.into_iter().map(|(e, _)| e.order_id).collect();
    got.sort();
    assert_eq!(got, expected_handled);
    let dead_letters = recv_n(&mut dead, expected_dead.len(), Duration::from_secs(30)).await;
    let got: std::collections::BTreeMap<String, String> = dead_letters
        .iter()
        .map(|d| {
            let name = d.message.header_str("test-case").unwrap_or("?").to_owned();
            assert_eq!(d.fault.attempts, 1, "{name}: poison is never retried");
            (name, d.fault.kind.as_str().to_owned())
        })
        .collect();
    assert_eq!(got, expected_dead);
    if let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(300), dead.recv()).await {
        panic!("dead-lettered twice: {}", d.fault);
    }
    consumer.shutdown().await;
    assert_eq!(env.bus.queue_counts(&queue).await.unwrap(), (0, 0));
    dl_handle.shutdown().await;
}
