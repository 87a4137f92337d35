//! Several broker addresses (the nodes of one cluster, a comma-separated `--amqp-url`):
//! connecting and every reconnection try them in turn from a node chosen at random; a node
//! that refuses is passed over; the connection says which node it is on; passwords stay
//! hidden. Each "node" here is a TCP proxy in front of the one local broker, so that a node
//! can be refused or cut.

use std::time::Duration;

use ferry_rabbitmq::{RabbitMq, RabbitMqError, RabbitMqOptions};
use ferry_testkit::{ProxyMode, TcpProxy, amqp};

/// Options naming `nodes`, with short timeouts and a fresh exchange (deleted by the caller).
fn options(nodes: &[String]) -> RabbitMqOptions {
    RabbitMqOptions::new(amqp::url())
        .with_nodes(nodes)
        .with_exchange(ferry_testkit::unique_name("ferry.test.nodes"))
        .with_connect_timeout(Duration::from_secs(3))
        .with_reconnect_backoff(Duration::from_millis(50), Duration::from_millis(200))
}

async fn node() -> (TcpProxy, String) {
    let proxy = TcpProxy::start(amqp::broker_addr()).await.unwrap();
    let url = amqp::amqp_url_via(proxy.addr());
    (proxy, url)
}

fn redacted(url: &str) -> String {
    ferry_rabbitmq::redact_url(url)
}

#[tokio::test]
async fn a_refusing_node_is_passed_over_and_the_first_node_is_chosen_at_random() {
    let (up, up_url) = node().await;
    let (down, down_url) = node().await;
    down.set_mode(ProxyMode::Refuse);
    let (other, other_url) = node().await;
    let mut chosen = std::collections::BTreeSet::new();
    for _ in 0..12 {
        let bus = RabbitMq::connect(options(&[
            down_url.clone(),
            up_url.clone(),
            other_url.clone(),
        ]))
        .await
        .expect("a node that refuses is passed over");
        let on = bus.node().expect("connected");
        assert_ne!(on, redacted(&down_url), "never on the refusing node");
        chosen.insert(on);
        bus.delete_exchange(bus.options().exchange()).await.ok();
        bus.close().await;
    }
    assert_eq!(
        chosen,
        [redacted(&up_url), redacted(&other_url)].into(),
        "twelve connections spread over both nodes that take them"
    );
    drop((up, other));
}

#[tokio::test]
async fn a_reconnection_goes_to_another_node_when_its_node_is_lost() {
    let (a, a_url) = node().await;
    let (b, b_url) = node().await;
    let bus = RabbitMq::connect(options(&[a_url.clone(), b_url.clone()]))
        .await
        .unwrap();
    let first = bus.node().unwrap();
    let (lost, other) = if first == redacted(&a_url) {
        (&a, redacted(&b_url))
    } else {
        (&b, redacted(&a_url))
    };
    // The node goes away for good: it refuses new connections, and the live one is cut.
    lost.set_mode(ProxyMode::Refuse);
    lost.cut_all();
    tokio::time::timeout(Duration::from_secs(20), async {
        while bus.reconnections() == 0 || bus.node().is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("reconnected within 20 s");
    assert_eq!(bus.node(), Some(other), "reconnected to the other node");
    bus.delete_exchange(bus.options().exchange()).await.ok();
    bus.close().await;
}

#[tokio::test]
async fn no_node_taking_the_connection_is_one_error_naming_each_node_without_passwords() {
    let (a, a_url) = node().await;
    let (b, b_url) = node().await;
    a.set_mode(ProxyMode::Refuse);
    b.set_mode(ProxyMode::Refuse);
    let secret_a = a_url.replace("guest:guest@", "guest:s3cret-a@");
    let secret_b = b_url.replace("guest:guest@", "guest:s3cret-b@");
    let error = match RabbitMq::connect(options(&[secret_a.clone(), secret_b.clone()])).await {
        Ok(_) => panic!("no node takes connections"),
        Err(e) => e,
    };
    assert!(matches!(error, RabbitMqError::Connect { .. }), "{error:?}");
    let text = format!("{error} {error:?}");
    assert!(!text.contains("s3cret"), "a password leaked: {text}");
    for url in [&secret_a, &secret_b] {
        assert!(
            text.contains(&redacted(url)),
            "{text} names {}",
            redacted(url)
        );
    }
}

#[test]
fn each_node_of_a_list_is_redacted_and_validated() {
    let options = RabbitMqOptions::new("amqp://u:one@a:5672/%2f, amqps://u:two@b:5671/%2f")
        .with_exchange("x");
    assert_eq!(
        options.nodes(),
        ["amqp://u:one@a:5672/%2f", "amqps://u:two@b:5671/%2f"]
    );
    assert_eq!(
        options.redacted_url(),
        "amqp://u:***@a:5672/%2f, amqps://u:***@b:5671/%2f"
    );
    assert!(!format!("{options:?}").contains("two"));
    options.validate().unwrap();
    let bad = RabbitMqOptions::new("amqp://u:p@a:5672/%2f,http://b").with_exchange("x");
    assert!(matches!(
        bad.validate(),
        Err(RabbitMqError::InvalidUrl { .. })
    ));
}
