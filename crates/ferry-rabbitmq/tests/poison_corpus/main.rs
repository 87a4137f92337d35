//! A poison corpus sent by a plain AMQP client (raw lapin `basic_publish`, not ferry's
//! publisher) to a ferry consumer on the real broker: every poison message lands in the
//! dead-letter queue at once with the right `ferry-fault-kind` and everything it carried,
//! the odd-but-valid forms of `docs/wire-format.md` are handled, and the valid traffic interleaved
//! with the poison is all handled, once.
//!
//! The corpus is the table in `cases.rs`.

mod cases;
#[path = "../common/mod.rs"]
mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use cases::{CASE_HEADER, Expect, MAX_BODY_BYTES, MAX_HEADERS, Raw, TYPE};
use common::{Env, OrderCreated, assert_quiet, forwarding, recv_n};
use ferry_core::{DeadLetter, FaultKind, Limits, RetryPolicy, fault::headers};
use lapin::{
    BasicProperties, Confirmation, Connection, ConnectionProperties,
    options::{BasicPublishOptions, ConfirmSelectOptions},
};
use tokio::sync::mpsc;

/// A plain AMQP client: its own connection and a confirm channel.
struct RawClient {
    connection: Connection,
    channel: lapin::Channel,
}

impl RawClient {
    async fn connect() -> RawClient {
        let connection =
            Connection::connect(&ferry_testkit::amqp::url(), ConnectionProperties::default())
                .await
                .expect("a plain AMQP connection to the test broker");
        let channel = connection.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        RawClient {
            connection,
            channel,
        }
    }

    /// Publishes (mandatory) and waits for the broker's confirm.
    async fn publish(&self, exchange: &str, body: &[u8], properties: BasicProperties) {
        let confirm = self
            .channel
            .basic_publish(
                exchange.into(),
                TYPE.into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                body,
                properties,
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(
            matches!(confirm, Confirmation::Ack(None)),
            "the broker did not take the message: {confirm:?}"
        );
    }

    async fn close(self) {
        let _ = self.channel.close(200, "done".into()).await;
        let _ = self.connection.close(200, "done".into()).await;
    }
}

fn check_dead_letter(
    name: &str,
    sent: &Raw,
    d: &DeadLetter,
    kind: FaultKind,
    queue: &str,
    exchange: &str,
) {
    let h = |n: &str| d.message.header_str(n).map(str::to_owned);
    assert_eq!(d.fault.kind, kind, "case `{name}`: {}", d.fault);
    assert_eq!(
        h(headers::FAULT_KIND).as_deref(),
        Some(kind.as_str()),
        "case `{name}`"
    );
    let message = h(headers::FAULT_MESSAGE).unwrap_or_default();
    assert!(
        !message.is_empty() && message.len() <= 4096,
        "case `{name}`: `{message}`"
    );
    let at = h(headers::FAULT_AT).unwrap_or_default();
    assert!(
        chrono::DateTime::parse_from_rfc3339(&at).is_ok(),
        "case `{name}`: at `{at}`"
    );
    // Poison is never retried.
    assert_eq!(d.fault.attempts, 1, "case `{name}`");
    assert_eq!(
        h(headers::ORIGINAL_QUEUE).as_deref(),
        Some(queue),
        "case `{name}`"
    );
    assert_eq!(
        h(headers::ORIGINAL_EXCHANGE).as_deref(),
        Some(exchange),
        "case `{name}`"
    );
    assert_eq!(
        h(headers::ORIGINAL_ROUTING_KEY).as_deref(),
        Some(TYPE),
        "case `{name}`"
    );
    assert_eq!(d.routing_key, TYPE, "case `{name}`");
    // Everything it carried is kept: the body byte for byte, every header and property.
    assert!(
        d.message.body[..] == sent.body[..],
        "case `{name}`: the body changed"
    );
    for header in sent.headers.keys() {
        assert!(
            d.message.headers.contains_key(header),
            "case `{name}`: lost header `{header}`"
        );
    }
    let p = &d.message.properties;
    assert_eq!(p.content_type, sent.content_type, "case `{name}`");
    assert_eq!(p.content_encoding, sent.content_encoding, "case `{name}`");
    assert_eq!(p.message_id, sent.message_id, "case `{name}`");
    assert_eq!(p.kind, sent.kind, "case `{name}`");
    assert_eq!(p.timestamp, sent.timestamp, "case `{name}`");
}

#[tokio::test]
async fn poison_from_a_plain_amqp_client_is_dead_lettered_with_its_kind_and_valid_traffic_goes_on()
{
    let corpus = cases::corpus();
    let names: BTreeSet<&str> = corpus.iter().map(|c| c.name).collect();
    assert_eq!(names.len(), corpus.len(), "case names are unique");

    let env = Env::new("corpus").await;
    let (dlx, dl_handle, mut dead) = env.dead_letters().await;
    let queue = env.queue("corpus");
    let (tx, mut handled) = mpsc::unbounded_channel();
    let consumer = env
        .bus
        .consumer(queue.clone())
        .bind("orders.#")
        .prefetch(20)
        .concurrency(4)
        .dead_letter(dlx)
        .retry(RetryPolicy::exponential(3, Duration::from_millis(100)))
        .limits(Limits {
            max_body_bytes: MAX_BODY_BYTES,
            max_headers: MAX_HEADERS,
        })
        .handle::<OrderCreated>(forwarding(tx))
        .start()
        .await
        .unwrap();
    env.cleanup.retry_queues(&queue, &[100, 200, 400]);

    // Each case is followed by a valid message from the same plain client.
    let client = RawClient::connect().await;
    for (i, case) in corpus.iter().enumerate() {
        let m = &case.message;
        client
            .publish(&env.exchange, &m.body, m.properties(case.name))
            .await;
        let valid = Raw::binary(&format!("valid-{i}"));
        client
            .publish(&env.exchange, &valid.body, valid.properties("valid"))
            .await;
    }
    client.close().await;

    let poison: BTreeMap<&str, (&Raw, FaultKind)> = corpus
        .iter()
        .filter_map(|c| match c.expect {
            Expect::Fault(kind) => Some((c.name, (&c.message, kind))),
            Expect::Handled(_) => None,
        })
        .collect();
    let mut expected_handled: Vec<String> = corpus
        .iter()
        .filter_map(|c| match &c.expect {
            Expect::Handled(order_id) => Some(order_id.clone()),
            Expect::Fault(_) => None,
        })
        .chain((0..corpus.len()).map(|i| format!("valid-{i}")))
        .collect();
    expected_handled.sort();

    let got = recv_n(
        &mut handled,
        expected_handled.len(),
        Duration::from_secs(60),
    )
    .await;
    let mut handled_ids: Vec<String> = got.into_iter().map(|(e, _)| e.order_id).collect();
    handled_ids.sort();
    assert_eq!(
        handled_ids, expected_handled,
        "valid traffic and odd-but-valid forms are handled, once"
    );

    let dead_letters = recv_n(&mut dead, poison.len(), Duration::from_secs(60)).await;
    let mut by_case: BTreeMap<String, DeadLetter> = BTreeMap::new();
    for d in dead_letters {
        let name = d.message.header_str(CASE_HEADER).unwrap_or("?").to_owned();
        assert!(
            !by_case.contains_key(&name),
            "case `{name}` was dead-lettered twice"
        );
        by_case.insert(name, d);
    }
    let mut report = String::new();
    for (name, (sent, kind)) in &poison {
        let Some(d) = by_case.get(*name) else {
            panic!(
                "case `{name}` was not dead-lettered; got {:?}",
                by_case.keys()
            );
        };
        check_dead_letter(name, sent, d, *kind, &queue, &env.exchange);
        let message: String = d.fault.message.chars().take(110).collect();
        report.push_str(&format!("{name:<40} {:<20} {message}\n", kind.as_str()));
    }
    println!("{report}");
    assert_quiet(&mut dead, Duration::from_millis(300)).await;
    assert_quiet(&mut handled, Duration::from_millis(10)).await;
    consumer.shutdown().await;
    assert_eq!(env.bus.queue_counts(&queue).await.unwrap(), (0, 0));
    dl_handle.shutdown().await;
}
