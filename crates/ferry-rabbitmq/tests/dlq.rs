//! The dead-letter queue tools: list and show leave the queue as it was (same messages, same
//! order); replay sends a dead letter back to its original queue without the fault headers;
//! purge removes what it is told to.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use common::{Env, OrderCreated, order, recv_n};
use ferry_core::{FaultKind, HandlerError, MessageContext, RetryPolicy, fault::headers};
use ferry_rabbitmq::DlqSelection;
use tokio::sync::mpsc;

#[tokio::test]
async fn list_show_replay_and_purge() {
    let env = Env::new("dlq").await;
    let dlx = env.cleanup.exchange(ferry_testkit::unique_name("dlq.dlx"));
    let dlq = env.queue("dlq.dlq");
    env.bus.declare_dead_letter_queue(&dlx, &dlq).await.unwrap();
    let queue = env.queue("dlq.orders");

    let fail = Arc::new(AtomicBool::new(true));
    let fail2 = Arc::clone(&fail);
    let (tx, mut handled) = mpsc::unbounded_channel();
    let consumer = env
        .bus
        .consumer(queue.clone())
        .bind("orders.#")
        .concurrency(1)
        .prefetch(1)
        .dead_letter(dlx.clone())
        .retry(RetryPolicy::none())
        .handle::<OrderCreated>(move |e: OrderCreated, ctx: MessageContext| {
            let fail = fail2.load(Ordering::SeqCst);
            let tx = tx.clone();
            async move {
                if fail {
                    return Err(HandlerError::permanent(format!(
                        "cannot take {}",
                        e.order_id
                    )));
                }
                let _ = tx.send((e.order_id, ctx.attempt()));
                Ok(())
            }
        })
        .start()
        .await
        .unwrap();

    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(env.bus.publish(&order(i)).await.unwrap());
    }
    let tools = env.bus.dead_letter_queue(dlq.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tools.count().await.unwrap() < 6 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "dead letters did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // list: everything, in order, and it stays.
    let listed = tools.list(None).await.unwrap();
    let listed_ids: Vec<&str> = listed.iter().filter_map(|d| d.message_id()).collect();
    assert_eq!(
        listed_ids,
        ids.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(listed.iter().all(|d| d.fault.kind == FaultKind::Handler));
    assert_eq!(listed[2].fault.message, "cannot take o-2");
    assert_eq!(tools.count().await.unwrap(), 6);
    let again: Vec<String> = tools
        .list(Some(3))
        .await
        .unwrap()
        .iter()
        .filter_map(|d| d.message_id().map(str::to_owned))
        .collect();
    assert_eq!(again, ids[..3].to_vec());
    assert_eq!(tools.count().await.unwrap(), 6);

    // show: one, nothing removed.
    let shown = tools.show(&ids[4]).await.unwrap().expect("on the queue");
    assert_eq!(shown.fault.original_queue.as_deref(), Some(queue.as_str()));
    assert!(tools.show("no-such-id").await.unwrap().is_none());
    assert_eq!(tools.count().await.unwrap(), 6);

    // replay one: back on its queue as attempt 1, without the fault headers.
    fail.store(false, Ordering::SeqCst);
    let report = tools
        .replay(&DlqSelection::Ids(vec![ids[1].clone(), "missing".into()]))
        .await
        .unwrap();
    assert_eq!(report.done, vec![ids[1].clone()]);
    assert_eq!(report.not_found, vec!["missing".to_owned()]);
    assert!(report.failed.is_empty());
    let (order_id, attempt) = recv_n(&mut handled, 1, Duration::from_secs(10))
        .await
        .remove(0);
    assert_eq!((order_id.as_str(), attempt), ("o-1", 1));
    let rest: Vec<String> = tools
        .list(None)
        .await
        .unwrap()
        .iter()
        .filter_map(|d| d.message_id().map(str::to_owned))
        .collect();
    let expected: Vec<String> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(rest, expected, "the others stay, in order");

    // purge one, then replay all, then nothing is left.
    let report = tools
        .purge(&DlqSelection::Ids(vec![ids[0].clone()]))
        .await
        .unwrap();
    assert_eq!(report.done, vec![ids[0].clone()]);
    assert_eq!(tools.count().await.unwrap(), 4);
    let report = tools.replay(&DlqSelection::All).await.unwrap();
    assert_eq!(report.done.len(), 4);
    let replayed = recv_n(&mut handled, 4, Duration::from_secs(10)).await;
    let mut got: Vec<String> = replayed.into_iter().map(|(o, _)| o).collect();
    got.sort();
    assert_eq!(got, vec!["o-2", "o-3", "o-4", "o-5"]);
    assert_eq!(tools.count().await.unwrap(), 0);

    // purge all on a queue with something on it.
    fail.store(true, Ordering::SeqCst);
    env.bus.publish(&order(9)).await.unwrap();
    while tools.count().await.unwrap() < 1 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dead = tools.list(None).await.unwrap();
    assert!(dead[0].message.headers.contains_key(headers::FAULT_KIND));
    let report = tools.purge(&DlqSelection::All).await.unwrap();
    assert_eq!(report.done.len(), 1);
    assert_eq!(tools.count().await.unwrap(), 0);
    consumer.shutdown().await;
}

/// A replayed dead letter goes back through the default exchange to its queue; if it fails
/// again, the new dead letter must still name the exchange and routing key the event was first
/// published with (and travel with that routing key), not the queue it was replayed to.
#[tokio::test]
async fn a_replayed_dead_letter_that_fails_again_keeps_its_first_origin() {
    let env = Env::new("dlq-origin").await;
    let dlx = env
        .cleanup
        .exchange(ferry_testkit::unique_name("dlq-origin.dlx"));
    let dlq = env.queue("dlq-origin.dlq");
    env.bus.declare_dead_letter_queue(&dlx, &dlq).await.unwrap();
    let queue = env.queue("dlq-origin.orders");

    let (tx, mut attempts) = mpsc::unbounded_channel();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let calls2 = Arc::clone(&calls);
    let consumer = env
        .bus
        .consumer(queue.clone())
        .bind("orders.#")
        .concurrency(1)
        .prefetch(1)
        .dead_letter(dlx.clone())
        .retry(RetryPolicy::none())
        .handle::<OrderCreated>(move |_e: OrderCreated, ctx: MessageContext| {
            let call = calls2.fetch_add(1, Ordering::SeqCst) + 1;
            let tx = tx.clone();
            async move {
                let _ = tx.send(ctx.attempt());
                Err(HandlerError::permanent(format!("failure {call}")))
            }
        })
        .start()
        .await
        .unwrap();

    let id = env.bus.publish(&order(7)).await.unwrap();
    let tools = env.bus.dead_letter_queue(dlq.clone());
    let wait_for_dead_letter = || async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tools.count().await.unwrap() < 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the dead letter did not arrive"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut listed = tools.list(None).await.unwrap();
        assert_eq!(listed.len(), 1);
        listed.remove(0)
    };

    let first = wait_for_dead_letter().await;
    assert_eq!(first.message_id(), Some(id.as_str()));
    assert_eq!(first.fault.message, "failure 1");
    assert_eq!(first.routing_key, "orders.order.created");

    let report = tools
        .replay(&DlqSelection::Ids(vec![id.clone()]))
        .await
        .unwrap();
    assert_eq!(report.done, vec![id.clone()]);
    let seen = recv_n(&mut attempts, 2, Duration::from_secs(10)).await;
    assert_eq!(seen, vec![1, 1], "the replay starts again at attempt 1");

    let second = wait_for_dead_letter().await;
    assert_eq!(second.message_id(), Some(id.as_str()));
    assert_eq!(second.fault.kind, FaultKind::Handler);
    assert_eq!(second.fault.message, "failure 2");
    assert_eq!(second.fault.attempts, 1);
    assert_eq!(
        second.routing_key, "orders.order.created",
        "dead-lettered with the event's routing key, not the queue's name"
    );
    assert_eq!(
        second.fault.original_routing_key.as_deref(),
        Some("orders.order.created")
    );
    assert_eq!(
        second.fault.original_exchange.as_deref(),
        Some(env.exchange.as_str())
    );
    assert_eq!(second.fault.original_queue.as_deref(), Some(queue.as_str()));
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let report = tools.purge(&DlqSelection::All).await.unwrap();
    assert_eq!(report.done.len(), 1);
    consumer.shutdown().await;
}
