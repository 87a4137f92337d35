//! Topology against the real broker: inequivalent arguments, passive mode, connection errors.

mod common;

use std::time::Duration;

use common::{Env, OrderCreated, forwarding};
use ferry_rabbitmq::{
    ExchangeKind, RabbitMq, RabbitMqError, RabbitMqOptions, TopologyError, TopologyMode,
    topology::ObjectKind,
};
use tokio::sync::mpsc;

#[tokio::test]
async fn a_queue_with_other_arguments_names_the_argument_and_both_values() {
    let env = Env::new("topo-ineq").await;
    let (dlx, dl_handle, _rx) = env.dead_letters().await;
    let queue = env.queue("topo-ineq");
    let (tx, _events) = mpsc::unbounded_channel();
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

    let err = env
        .bus
        .consumer(queue.clone())
        .quorum()
        .dead_letter(dlx.clone())
        .handle::<OrderCreated>(forwarding(tx))
        .start()
        .await
        .unwrap_err();
    match err.topology() {
        Some(TopologyError::Inequivalent {
            kind,
            name,
            argument,
            requested,
            current,
            reply,
            ..
        }) => {
            assert_eq!(*kind, ObjectKind::Queue);
            assert_eq!(name, &queue);
            assert_eq!(argument, "x-queue-type");
            assert_eq!(requested, "`quorum`");
            assert_eq!(current, "`classic`");
            assert!(reply.contains("PRECONDITION_FAILED"), "{reply}");
        }
        other => panic!("expected an inequivalent-argument error, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains(&format!("queue `{queue}`")), "{text}");
    assert!(text.contains("x-queue-type"), "{text}");
    // The bus keeps working after the failed declaration.
    assert!(env.bus.queue_counts(&queue).await.is_ok());
    dl_handle.shutdown().await;
}

#[tokio::test]
async fn an_exchange_of_another_type_is_reported() {
    let env = Env::new("topo-xtype").await;
    let err =
        RabbitMq::connect(common::options(&env.exchange).with_exchange_kind(ExchangeKind::Fanout))
            .await
            .unwrap_err();
    match err.topology() {
        Some(TopologyError::Inequivalent {
            kind: ObjectKind::Exchange,
            argument,
            requested,
            current,
            ..
        }) => {
            assert_eq!(argument, "type");
            assert_eq!(requested, "`fanout`");
            assert_eq!(current, "`topic`");
        }
        other => panic!("expected an inequivalent exchange type, got {other:?}"),
    }
}

#[tokio::test]
async fn passive_mode_only_checks_and_names_what_is_missing() {
    ferry_testkit::init_tracing();
    let missing = ferry_testkit::unique_name("topo-passive.missing");
    let err = RabbitMq::connect(common::options(&missing).with_topology(TopologyMode::Passive))
        .await
        .unwrap_err();
    match err.topology() {
        Some(TopologyError::NotFound { kind, name, .. }) => {
            assert_eq!(*kind, ObjectKind::Exchange);
            assert_eq!(name, &missing);
        }
        other => panic!("expected not-found, got {other:?}"),
    }
    assert!(err.to_string().contains("passive"), "{err}");

    // With the exchange in place, a passive consumer of a missing queue is refused too.
    let env = Env::new("topo-passive").await;
    let passive = RabbitMq::connect(
        common::options(&env.exchange)
            .with_topology(TopologyMode::Passive)
            .with_dead_letter_exchange("amq.topic"),
    )
    .await
    .unwrap();
    let queue = env.queue("topo-passive");
    let (tx, _rx) = mpsc::unbounded_channel();
    let err = passive
        .consumer(queue.clone())
        .handle::<OrderCreated>(forwarding(tx))
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(err.topology(), Some(TopologyError::NotFound { kind: ObjectKind::Queue, name, .. }) if *name == queue),
        "{err:?}"
    );
    // Passive mode declared nothing.
    assert!(env.bus.queue_counts(&queue).await.is_err());
    passive.close().await;
}

#[tokio::test]
async fn a_consumer_without_a_dead_letter_exchange_is_refused() {
    let env = Env::new("topo-nodlx").await;
    let (tx, _rx) = mpsc::unbounded_channel();
    let err = env
        .bus
        .consumer(env.queue("topo-nodlx"))
        .handle::<OrderCreated>(forwarding(tx))
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, RabbitMqError::InvalidConsumer(_)), "{err:?}");
    assert!(err.to_string().contains(".dead_letter("), "{err}");
}

#[tokio::test]
async fn a_wrong_password_is_a_clear_error_without_the_password() {
    ferry_testkit::init_tracing();
    let options = RabbitMqOptions::new("amqp://guest:not-the-password-xyz@127.0.0.1:5672/%2f")
        .with_exchange(ferry_testkit::unique_name("topo-auth"));
    let err = RabbitMq::connect(options).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RabbitMqError::Connect { .. }), "{err:?}");
    assert!(!text.contains("not-the-password-xyz"), "{text}");
    assert!(!format!("{err:?}").contains("not-the-password-xyz"));
    assert!(
        text.contains("amqp://guest:***@127.0.0.1:5672/%2f"),
        "{text}"
    );
}

#[tokio::test]
async fn an_unreachable_broker_fails_within_the_connect_timeout() {
    ferry_testkit::init_tracing();
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let options = RabbitMqOptions::new(format!("amqp://u:pw-secret@127.0.0.1:{port}/%2f"))
        .with_connect_timeout(Duration::from_secs(3));
    let started = std::time::Instant::now();
    let err = RabbitMq::connect(options).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(err.is_unavailable(), "{err:?}");
    let text = err.to_string();
    assert!(!text.contains("pw-secret"), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
}

#[tokio::test]
async fn a_bad_url_is_rejected_without_showing_the_password() {
    let err = RabbitMq::connect(RabbitMqOptions::new("http://u:pw-secret@host/"))
        .await
        .unwrap_err();
    assert!(matches!(err, RabbitMqError::InvalidUrl { .. }), "{err:?}");
    assert!(!err.to_string().contains("pw-secret"), "{err}");
}
