//! `ferry demo` given the three nodes of a cluster (`--amqp-url` with three URLs, so quorum
//! queues by default) rides out a kill -9 of the node it is connected to: every order confirmed
//! once, none lost, while the killed node stays down.
//!
//! Starts its own three-node cluster (`scripts/cluster`, AMQP on 127.0.0.1:5681-5683) and stops
//! it whatever happens; the machine's broker is not touched. Prints a `DEMO RIDE-OUT` line.

mod common;

use std::time::{Duration, Instant};

use common::{check_ridden_out, start_demo};
use ferry_testkit::cluster::Cluster;
use sqlx::Connection;

/// Kills the demo if it has not finished by then (a stalled demo would hang the test).
const DEMO_LIMIT: Duration = Duration::from_secs(300);

#[test]
fn the_demo_rides_out_a_kill_of_the_node_it_is_connected_to() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cluster = runtime
        .block_on(Cluster::start())
        .expect("start the cluster");
    let started = Instant::now();
    let (child, url, dir) = start_demo("ferry-demo-cluster", Some(cluster.urls()));
    let pid = child.id();
    std::thread::spawn(move || {
        std::thread::sleep(DEMO_LIMIT);
        // Still running: ends the demo, so that the check below fails instead of hanging.
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    });
    // Kill while orders flow: once some are confirmed.
    let waiting = Instant::now();
    loop {
        let confirmed = runtime.block_on(confirmed_so_far(&url));
        if confirmed >= 300 {
            break;
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(120),
            "the demo confirmed {confirmed} orders in 120 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let nodes = runtime
        .block_on(cluster.connection_nodes())
        .expect("list the demo's connections");
    let node = *nodes
        .iter()
        .max_by_key(|n| nodes.iter().filter(|m| m == n).count())
        .expect("the demo is connected");
    runtime
        .block_on(cluster.kill(node))
        .expect("kill the demo's node");
    let stderr = check_ridden_out(
        "kill -9 of the node it is connected to (three-node cluster, quorum queues)",
        child,
        &url,
        dir,
        started,
    );
    assert!(
        stderr.contains("reconnecting"),
        "the demo lost its node mid-run: {stderr}"
    );
    eprintln!("(node {node} killed; connections were on nodes {nodes:?})");
    drop(cluster);
}

/// Orders the demo has confirmed so far (0 while its database is not there yet or busy).
async fn confirmed_so_far(url: &str) -> i64 {
    let Ok(mut conn) = sqlx::SqliteConnection::connect(url).await else {
        return 0;
    };
    let confirmed = sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE status = 'confirmed'")
        .fetch_one(&mut conn)
        .await
        .unwrap_or(0);
    conn.close().await.ok();
    confirmed
}
