//! `ferry demo` given the three nodes of a cluster is the application users copy onto one: it
//! must ride out a kill -9 of the node it is connected to, confirming every order once and
//! losing none (issue 17).
//!
//! The node comes back 15 s after the kill, as a supervisor (systemd, Kubernetes) brings a
//! crashed node back. That matters on RabbitMQ 3.10: a retry queue whose new leader starts
//! its at-least-once dead-letter worker while the consumer's queue is still electing its own
//! keeps the copies that expired in that window ("pending dead-letter") until the dead node is
//! back, and delivers them within the worker's confirm timeout after that (scripts/cluster sets
//! it to 10 s; README "Scaling out").
//!
//! This binary starts scripts/cluster's three nodes (as root, beside the machine's broker) and
//! stops them when done; cargo runs test binaries one after another, so it never overlaps the
//! cluster fault suite. It prints a `DEMO RIDE-OUT` line on stderr.

mod common;

use std::time::{Duration, Instant};

use common::{check_ridden_out, start_demo};
use ferry_testkit::cluster::Cluster;

/// How long the killed node stays down.
const DOWN: Duration = Duration::from_secs(15);

#[test]
fn the_demo_on_a_cluster_rides_out_a_kill_of_the_node_it_is_connected_to() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cluster = runtime
        .block_on(Cluster::start())
        .expect("start the test cluster (scripts/cluster start)");
    let started = Instant::now();
    let (child, url, dir) = start_demo("ferry-demo-cluster", Some(cluster.urls()));

    // The node the demo is connected to: where most of its connections are (each connection
    // picks a node of the shuffled list; the demo declares its queues, and so places their
    // leaders, through its first). Kill it while orders flow.
    let node = runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let nodes = cluster.connection_nodes().await.unwrap_or_default();
            if !nodes.is_empty() && started.elapsed() > Duration::from_secs(3) {
                let mut counts = [0usize; 4];
                for n in nodes {
                    counts[n] += 1;
                }
                return (1..=3).max_by_key(|n| counts[*n]).unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "the demo did not connect to the cluster within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    runtime
        .block_on(cluster.kill(node))
        .expect("kill -9 the demo's node");
    eprintln!(
        "killed node {node} (the demo's) {:.1} s into the run",
        started.elapsed().as_secs_f64()
    );
    std::thread::sleep(DOWN);
    runtime
        .block_on(cluster.start_node(node))
        .expect("start the killed node again");

    let stderr = check_ridden_out(
        "kill -9 of its node on a 3-node cluster (back after 15 s)",
        child,
        &url,
        dir,
        started,
    );
    assert!(
        stderr.contains("reconnecting"),
        "the kill happened mid-run: {stderr}"
    );
    drop(cluster);
}
