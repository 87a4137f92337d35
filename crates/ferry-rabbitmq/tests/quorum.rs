//! Quorum queues on the local broker: retries through quorum retry queues that dead-letter at
//! least once, a quorum dead-letter queue, the broker's delivery limit reported as fault kind
//! `delivery-limit`, and queue types checked in passive mode.

mod common;

use std::time::Duration;

use common::{Env, OrderCreated, forwarding, order, recv_n};
use ferry_core::{FaultKind, HandlerError, MessageContext, QueueType, RetryPolicy};
use ferry_rabbitmq::{RabbitMq, TopologyError, TopologyMode};
use lapin::{
    Connection, ConnectionProperties,
    options::{BasicGetOptions, BasicNackOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
};
use tokio::sync::mpsc;

async fn raw_connection() -> Connection {
    Connection::connect(&ferry_testkit::amqp::url(), ConnectionProperties::default())
        .await
        .expect("connect to the test broker")
}

fn table(args: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in args {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

/// Declares `queue` with `args` on a channel of its own: `Ok` when the queue exists with
/// exactly these arguments (or did not exist), the broker's reply text when it differs.
async fn declare_raw(conn: &Connection, queue: &str, args: FieldTable) -> Result<(), String> {
    let channel = conn.create_channel().await.unwrap();
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let result = channel
        .queue_declare(queue.into(), options, args)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    if channel.status().connected() {
        let _ = channel.close(200, "done".into()).await;
    }
    result
}

#[tokio::test]
async fn a_retry_goes_through_a_quorum_retry_queue_that_dead_letters_at_least_once() {
    let env = Env::with_options("qq-retry", |o| o.with_queue_type(QueueType::Quorum)).await;
    let (dlx, dl_handle, _dead) = env.dead_letters().await;
    let queue = env.queue("qq-retry");
    env.cleanup.retry_queues(&queue, &[300]);
    let (tx, mut handled) = mpsc::unbounded_channel();
    let consumer = env
        .bus
        .consumer(queue.clone())
        .bind("orders.#")
        .dead_letter(dlx)
        .retry(RetryPolicy::fixed(1, Duration::from_millis(300)))
        .handle::<OrderCreated>(move |e: OrderCreated, ctx: MessageContext| {
            let tx = tx.clone();
            async move {
                if ctx.attempt() == 1 {
                    return Err(HandlerError::transient(std::io::Error::other("not yet")));
                }
                let _ = tx.send((e, ctx.attempt()));
                Ok(())
            }
        })
        .start()
        .await
        .unwrap();
    env.bus.publish(&order(1)).await.unwrap();
    let got = recv_n(&mut handled, 1, Duration::from_secs(20)).await;
    assert_eq!(got[0].0, order(1));
    assert_eq!(got[0].1, 2, "handled on the retry");

    // The retry queue is a quorum queue that dead-letters back at least once: declaring it
    // with exactly these arguments is accepted, and as a classic queue it is refused.
    let conn = raw_connection().await;
    let retry_queue = format!("{queue}.retry.300");
    declare_raw(
        &conn,
        &retry_queue,
        table(&[
            ("x-queue-type", text("quorum")),
            ("x-message-ttl", AMQPValue::LongLongInt(300)),
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text(&queue)),
            ("x-dead-letter-strategy", text("at-least-once")),
            ("x-overflow", text("reject-publish")),
        ]),
    )
    .await
    .expect("the retry queue has the quorum retry arguments");
    let refused = declare_raw(
        &conn,
        &retry_queue,
        table(&[
            ("x-queue-type", text("classic")),
            ("x-message-ttl", AMQPValue::LongLongInt(300)),
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text(&queue)),
        ]),
    )
    .await
    .unwrap_err();
    assert!(refused.contains("inequivalent arg"), "{refused}");
    // The consumer's queue is a quorum queue too.
    let refused = declare_raw(&conn, &queue, table(&[("x-queue-type", text("classic"))]))
        .await
        .unwrap_err();
    assert!(refused.contains("current is 'quorum'"), "{refused}");
    conn.close(200, "done".into()).await.ok();
    consumer.shutdown().await;
    dl_handle.shutdown().await;
}

#[tokio::test]
async fn the_dead_letter_queue_follows_the_default_queue_type() {
    let env = Env::with_options("qq-dlq", |o| o.with_queue_type(QueueType::Quorum)).await;
    let dlx = env.cleanup.exchange(ferry_testkit::unique_name("qq.dlx"));
    let dlq = env.queue("qq.dlq");
    env.bus.declare_dead_letter_queue(&dlx, &dlq).await.unwrap();
    let conn = raw_connection().await;
    let refused = declare_raw(&conn, &dlq, table(&[("x-queue-type", text("classic"))]))
        .await
        .unwrap_err();
    assert!(refused.contains("current is 'quorum'"), "{refused}");
    conn.close(200, "done".into()).await.ok();
}

#[tokio::test]
async fn a_message_requeued_past_the_delivery_limit_is_reported_as_delivery_limit() {
    let env = Env::new("qq-limit").await;
    let (dlx, dl_handle, mut dead) = env.dead_letters().await;
    let queue = env.queue("qq-limit");
    let (tx, _handled) = mpsc::unbounded_channel();
    // Declares the quorum queue with its delivery limit, then goes: the message below is
    // taken by a raw consumer that requeues it again and again, as a crashing handler would.
    let consumer = env
        .bus
        .consumer(queue.clone())
        .bind("orders.#")
        .quorum()
        .delivery_limit(2)
        .dead_letter(dlx.clone())
        .handle::<OrderCreated>(forwarding(tx))
        .start()
        .await
        .unwrap();
    consumer.shutdown().await;
    let id = env.bus.publish(&order(7)).await.unwrap();

    let conn = raw_connection().await;
    let channel = conn.create_channel().await.unwrap();
    let mut requeued = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        match channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
            .await
            .unwrap()
        {
            Some(message) => {
                requeued += 1;
                message
                    .delivery
                    .nack(BasicNackOptions {
                        multiple: false,
                        requeue: true,
                    })
                    .await
                    .unwrap();
            }
            None if requeued > 0 => break,
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert_eq!(
        requeued, 3,
        "delivered once, then twice more up to the limit of 2"
    );
    let got = recv_n(&mut dead, 1, Duration::from_secs(20)).await;
    let letter = &got[0];
    assert_eq!(letter.fault.kind, FaultKind::DeliveryLimit);
    assert_eq!(letter.fault.original_queue.as_deref(), Some(queue.as_str()));
    assert_eq!(
        letter.fault.original_routing_key.as_deref(),
        Some("orders.order.created")
    );
    assert_eq!(
        letter.fault.original_exchange.as_deref(),
        Some(env.exchange.as_str())
    );
    assert_eq!(letter.routing_key, "orders.order.created");
    assert_eq!(letter.message_id(), Some(id.as_str()));
    assert!(
        letter.message.headers.contains_key("x-death"),
        "{:?}",
        letter.message.headers
    );
    conn.close(200, "done".into()).await.ok();
    dl_handle.shutdown().await;
}

#[tokio::test]
async fn a_delivery_limit_on_a_classic_queue_is_refused() {
    let env = Env::new("qq-limit-classic").await;
    let queue = env.queue("qq-limit-classic");
    let (tx, _handled) = mpsc::unbounded_channel();
    let err = env
        .bus
        .consumer(queue)
        .dead_letter("unused.dlx")
        .delivery_limit(3)
        .handle::<OrderCreated>(forwarding(tx))
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("only quorum queues"), "{err}");
}

#[tokio::test]
async fn a_classic_retry_queue_in_the_way_of_a_quorum_consumer_is_named() {
    let env = Env::new("qq-retry-ineq").await;
    let (dlx, dl_handle, _dead) = env.dead_letters().await;
    let queue = env.queue("qq-retry-ineq");
    let (tx, _handled) = mpsc::unbounded_channel();
    let classic = env
        .bus
        .consumer(queue.clone())
        .bind("orders.#")
        .dead_letter(dlx.clone())
        .handle::<OrderCreated>(forwarding(tx.clone()))
        .start()
        .await
        .unwrap();
    classic.shutdown().await;
    env.bus.delete_queue(&queue).await.unwrap();
    // The consumer's queue is gone, its classic retry queues are still there.
    let err = env
        .bus
        .consumer(queue.clone())
        .bind("orders.#")
        .quorum()
        .dead_letter(dlx)
        .handle::<OrderCreated>(forwarding(tx))
        .start()
        .await
        .unwrap_err();
    match err.topology() {
        Some(TopologyError::Inequivalent {
            name,
            argument,
            requested,
            current,
            ..
        }) => {
            assert_eq!(name, &format!("{queue}.retry.1000"));
            assert_eq!(argument, "x-queue-type");
            assert_eq!(requested, "`quorum`");
            assert_eq!(current, "`classic`");
        }
        other => panic!("expected an inequivalent retry queue, got {other:?}"),
    }
    dl_handle.shutdown().await;
}

/// A passive start (which may not declare) against `existing`, asking for `asked`.
async fn passive_start(existing: QueueType, asked: QueueType) {
    let env = Env::new("qq-passive").await;
    let (dlx, dl_handle, _dead) = env.dead_letters().await;
    let queue = env.queue("qq-passive");
    let (tx, _handled) = mpsc::unbounded_channel();
    let declared = env
        .bus
        .consumer(queue.clone())
        .queue_type(existing)
        .bind("orders.#")
        .dead_letter(dlx.clone())
        .handle::<OrderCreated>(forwarding(tx.clone()))
        .start()
        .await
        .unwrap();
    declared.shutdown().await;

    let passive =
        RabbitMq::connect(common::options(&env.exchange).with_topology(TopologyMode::Passive))
            .await
            .unwrap();
    let same = passive
        .consumer(queue.clone())
        .queue_type(existing)
        .dead_letter(dlx.clone())
        .handle::<OrderCreated>(forwarding(tx.clone()))
        .start()
        .await
        .expect("the same type passes the passive check");
    same.shutdown().await;
    let err = passive
        .consumer(queue.clone())
        .queue_type(asked)
        .dead_letter(dlx)
        .handle::<OrderCreated>(forwarding(tx))
        .start()
        .await
        .unwrap_err();
    match err.topology() {
        Some(TopologyError::Inequivalent {
            name,
            argument,
            requested,
            current,
            ..
        }) => {
            assert_eq!(name, &queue);
            assert_eq!(argument, "x-queue-type");
            assert_eq!(requested, &format!("`{asked}`"));
            assert_eq!(current, &format!("`{existing}`"));
        }
        other => panic!("expected a type mismatch, got {other:?}"),
    }
    // The passive bus keeps working after the check's channel was closed by the broker.
    assert!(passive.queue_counts(&queue).await.is_ok());
    passive.close().await;
    dl_handle.shutdown().await;
}

#[tokio::test]
async fn a_passive_start_reports_a_quorum_queue_where_classic_is_asked() {
    passive_start(QueueType::Quorum, QueueType::Classic).await;
}

#[tokio::test]
async fn a_passive_start_reports_a_classic_queue_where_quorum_is_asked() {
    passive_start(QueueType::Classic, QueueType::Quorum).await;
}
