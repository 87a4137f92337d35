//! `ferry publish` and `ferry tail` against the real broker, each test on an exchange of its own.

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use common::{amqp_url, bus, ferry_on, stdout_ok};
use ferry::{
    Publisher,
    plumbing::{OutgoingMessage, WireMessage},
};
use serde_json::Value;

/// The next message on a subscription, or a failure after a while.
async fn next(sub: &mut ferry::rabbitmq::Subscription) -> ferry::rabbitmq::Received {
    tokio::time::timeout(Duration::from_secs(30), sub.next())
        .await
        .expect("a message within 30 s")
        .expect("the subscription is open")
        .expect("a message")
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_sends_the_data_bytes_as_given_and_prints_the_id() {
    let exchange = ferry_testkit::unique_name("cli.publish");
    let bus = bus(&exchange).await;
    let mut sub = bus.subscribe(&["#"]).await.unwrap();

    // Keys out of order, a number no f64 holds, a trailing zero, spacing and non-ASCII text:
    // all of it must reach consumers untouched.
    let data = "{ \"zeta\": 1,\n  \"alpha\": 123456789012345678901234567890, \"price\": 1.10, \"name\": \"Zoë\" }";
    let exchange_arg = exchange.clone();
    let out = tokio::task::spawn_blocking(move || {
        ferry_on(
            &exchange_arg,
            &[
                "publish",
                "--type",
                "orders.order.created",
                "--data",
                data,
                "--correlation-id",
                "checkout-9",
            ],
        )
    })
    .await
    .unwrap();
    let stdout = stdout_ok(&out);
    let id = stdout.trim();
    assert_eq!(stdout.lines().count(), 1, "only the id on stdout: {stdout}");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "a UUID: {id}");

    let received = next(&mut sub).await;
    assert_eq!(
        std::str::from_utf8(&received.message.body).unwrap(),
        data,
        "the body is the --data bytes exactly"
    );
    assert_eq!(received.routing_key, "orders.order.created");
    assert_eq!(received.message.properties.message_id.as_deref(), Some(id));
    assert_eq!(received.message.header_str("ce-id"), Some(id));
    assert_eq!(
        received.message.header_str("ce-correlationid"),
        Some("checkout-9")
    );

    // A given id is the one printed and sent.
    let exchange_arg = exchange.clone();
    let out = tokio::task::spawn_blocking(move || {
        ferry_on(
            &exchange_arg,
            &[
                "publish",
                "--type",
                "orders.order.created",
                "--routing-key",
                "orders.order.special",
                "--id",
                "order-42",
                "--data",
                "[1,2 ,3]",
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(stdout_ok(&out).trim(), "order-42");
    let received = next(&mut sub).await;
    assert_eq!(&received.message.body[..], b"[1,2 ,3]");
    assert_eq!(received.routing_key, "orders.order.special");
    assert_eq!(
        received.message.properties.message_id.as_deref(),
        Some("order-42")
    );

    sub.close().await;
    bus.delete_exchange(&exchange).await.unwrap();
    bus.close().await;
}

/// The keys a `tail --json` line carries for a message that decodes (`docs/command.md`, `ferry tail`).
const TAIL_KEYS: [&str; 10] = [
    "id",
    "type",
    "source",
    "time",
    "specversion",
    "correlationid",
    "causationid",
    "eventversion",
    "routing_key",
    "data",
];

#[tokio::test(flavor = "multi_thread")]
async fn tail_json_prints_every_contract_key_and_goes_on_past_undecodable_messages() {
    let exchange = ferry_testkit::unique_name("cli.tail");
    let bus = bus(&exchange).await;
    let mut tail = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["tail", "--bind", "orders.#", "--count", "2"])
        .args(["--timeout-s", "60", "--json"])
        .args(["--amqp-url", &amqp_url(), "--exchange", &exchange])
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Tail says on stderr when its queue is bound; publish only then.
    let stderr = tail.stderr.take().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let drain = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("tailing exchange") {
                let _ = ready_tx.send(());
            }
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let ready =
        tokio::task::spawn_blocking(move || ready_rx.recv_timeout(Duration::from_secs(60)).is_ok())
            .await
            .unwrap();
    assert!(ready, "tail did not start");

    let exchange_arg = exchange.clone();
    let published = tokio::task::spawn_blocking(move || {
        stdout_ok(&ferry_on(
            &exchange_arg,
            &[
                "publish",
                "--type",
                "orders.order.created",
                "--data",
                r#"{"orderId":"o-7","total":12.5}"#,
                "--source",
                "/checkout",
                "--correlation-id",
                "checkout-7",
                "--event-version",
                "2",
            ],
        ))
    })
    .await
    .unwrap();
    let id = published.trim().to_owned();
    // A message that is not an event (no CloudEvents headers, no type): tail reports it.
    bus.publish_message(OutgoingMessage::new(
        "orders.garbage",
        WireMessage {
            body: b"\xffnot json".to_vec().into(),
            ..WireMessage::default()
        },
    ))
    .await
    .unwrap();

    let out = tokio::task::spawn_blocking(move || tail.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = drain.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");

    let event = lines[0].as_object().unwrap();
    let mut keys: Vec<&str> = event.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut expected = TAIL_KEYS.to_vec();
    expected.sort_unstable();
    assert_eq!(keys, expected, "{stdout}");
    assert_eq!(event["id"], id.as_str());
    assert_eq!(event["type"], "orders.order.created");
    assert_eq!(event["source"], "/checkout");
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["correlationid"], "checkout-7");
    assert_eq!(event["causationid"], Value::Null);
    assert_eq!(event["eventversion"], "2");
    assert_eq!(event["routing_key"], "orders.order.created");
    assert_eq!(
        event["data"],
        serde_json::json!({"orderId": "o-7", "total": 12.5})
    );
    let time = event["time"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(time).is_ok(),
        "time is RFC 3339: {time}"
    );

    let garbage = lines[1].as_object().unwrap();
    let mut keys: Vec<&str> = garbage.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["error", "raw", "routing_key"], "{stdout}");
    assert_eq!(garbage["routing_key"], "orders.garbage");
    assert!(garbage["raw"].as_str().unwrap().ends_with("not json"));
    assert!(!garbage["error"].as_str().unwrap().is_empty());

    bus.delete_exchange(&exchange).await.unwrap();
    bus.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tail_exits_3_when_the_messages_do_not_come_in_time() {
    let exchange = ferry_testkit::unique_name("cli.tail-timeout");
    let bus = bus(&exchange).await;
    let exchange_arg = exchange.clone();
    let out = tokio::task::spawn_blocking(move || {
        ferry_on(
            &exchange_arg,
            &[
                "tail",
                "--bind",
                "nothing.comes.here",
                "--count",
                "1",
                "--timeout-s",
                "1",
                "--json",
            ],
        )
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing arrived, nothing printed");
    let last = stderr.lines().rfind(|l| !l.trim().is_empty());
    assert!(
        last.is_some_and(|l| l.contains("timed out")),
        "says it timed out: {stderr}"
    );
    bus.delete_exchange(&exchange).await.unwrap();
    bus.close().await;
}
