//! The cluster fault suite (issue 17): each case pushes 5,000 events through the PostgreSQL
//! outbox, the relay (a `fault-worker relay` process), a three-node RabbitMQ cluster and an
//! idempotent consumer of a quorum queue (a `fault-worker consume` process writing `applied` and
//! the inbox record in one transaction), while a node is killed, stopped or restarted; then it
//! checks in the database that every event was applied exactly once, as the single-node suite
//! (`tests/faults.rs`) does. Both workers are given the three nodes and connect to one of them,
//! reconnecting to another when theirs goes.
//!
//! The suite starts its own cluster with `scripts/cluster` (nodes ferry-c1..3@localhost, AMQP on
//! 127.0.0.1:5681-5683) and stops it — every process killed, its directories removed — whatever
//! happens; the machine's broker on 5672 is never touched. Case `f` checks per-key order of a
//! partitioned consumer across a node's death, in this process (`support/ordered.rs`). The cases run one after another in
//! the one test below (they share the cluster and break it); a case that fails does not stop the
//! others, and each leaves the three nodes running for the next. `FERRY_CLUSTER_CASES=a,b`
//! runs only the cases named. Each case prints one `FAULT RESULT` line on stderr and appends it
//! as JSON to `$CARGO_TARGET_TMPDIR/fault-results.jsonl`; the workers' logs are in
//! `$CARGO_TARGET_TMPDIR/fault-logs/`.

mod support;

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use ferry_testkit::cluster::{Cluster, NODES};
use support::case::{Case, CaseSpec};

/// Events per case.
const EVENTS: u64 = 5_000;

/// Events applied before the fault is injected.
const TRIGGER: i64 = 1_500;

/// How long traffic may take to resume on the nodes left after one is lost.
const FAILOVER_LIMIT: Duration = Duration::from_secs(60);

fn spec(cluster: &Cluster, name: &'static str, fault: &'static str, rate_per_s: u64) -> CaseSpec {
    let mut spec = CaseSpec::new(name, fault);
    spec.events = EVENTS;
    spec.rate_per_s = rate_per_s;
    spec.nodes = Some(cluster.urls().to_owned());
    spec
}

/// The node a worker is connected to.
fn node_of(worker: Option<&support::worker::Worker>) -> usize {
    let url = worker
        .and_then(|w| w.node())
        .expect("the worker said which node it is on");
    Cluster::node_of(&url).unwrap_or_else(|| panic!("{url} is not a node of the cluster"))
}

/// Kills node `node` mid-stream; once traffic runs again on the other two nodes (or after
/// [`FAILOVER_LIMIT`]), starts it again; then finishes the case.
async fn kill_mid_stream(cluster: &Cluster, mut case: Case, node: usize, what: &str) {
    case.fault_begins();
    cluster.kill(node).await.expect("kill the node");
    case.healed();
    let failover = case.wait_progress(500, FAILOVER_LIMIT).await;
    case.notes.push(match failover {
        Some(took) => format!(
            "{what} (node {node}) SIGKILLed; 500 more events (or the rest) applied on the other \
             two nodes {:.1} s later; node started again then",
            took.as_secs_f64()
        ),
        None => format!(
            "{what} (node {node}) SIGKILLed; traffic did not resume on the other two nodes \
             within {} s; node started again then",
            FAILOVER_LIMIT.as_secs()
        ),
    });
    cluster.start_node(node).await.expect("start the node");
    let result = case.finish().await;
    assert!(
        failover.is_some(),
        "traffic resumed without the killed node: {result:#?}"
    );
}

async fn relay_node_killed(cluster: Arc<Cluster>) {
    let spec = spec(
        &cluster,
        "cluster-relay-node",
        "kill -9 of the node the relay publishes to",
        400,
    );
    let case = Case::start(spec).await;
    case.wait_applied(TRIGGER).await;
    let node = node_of(case.relay.as_ref());
    kill_mid_stream(&cluster, case, node, "the relay's node").await;
}

async fn consumer_node_killed(cluster: Arc<Cluster>) {
    let spec = spec(
        &cluster,
        "cluster-consumer-node",
        "kill -9 of the node the consumer is attached to",
        400,
    );
    let case = Case::start(spec).await;
    case.wait_applied(TRIGGER).await;
    let node = node_of(case.consumer.as_ref());
    kill_mid_stream(&cluster, case, node, "the consumer's node").await;
}

async fn leader_node_killed(cluster: Arc<Cluster>) {
    let spec = spec(
        &cluster,
        "cluster-leader-node",
        "kill -9 of the node holding the consumer queue's leader",
        250,
    );
    let mut case = Case::start(spec).await;
    // Asking the cluster takes seconds (over ten on a loaded machine): while the first events
    // go through, and at a lower rate than the other kills, so that enough events are left to
    // show traffic resuming (the leader does not move meanwhile).
    let (node, ()) = tokio::join!(
        cluster.leader(&case.settings.queue),
        case.wait_applied(TRIGGER)
    );
    let node = node.expect("the queue's leader");
    let (relay, consumer) = (
        node_of(case.relay.as_ref()),
        node_of(case.consumer.as_ref()),
    );
    case.notes.push(format!(
        "leader on node {node}, relay on node {relay}, consumer on node {consumer}"
    ));
    kill_mid_stream(&cluster, case, node, "the leader's node").await;
}

async fn node_stopped_for_30_s(cluster: Arc<Cluster>) {
    let spec = spec(
        &cluster,
        "cluster-node-stopped",
        "one node stopped for 30 s, then started (the consumer queue's leader)",
        100,
    );
    let mut case = Case::start(spec).await;
    case.wait_applied(TRIGGER).await;
    let node = cluster
        .leader(&case.settings.queue)
        .await
        .expect("the queue's leader");
    case.fault_begins();
    cluster.stop_node(node).await.expect("stop the node");
    tokio::time::sleep(Duration::from_secs(30)).await;
    cluster.start_node(node).await.expect("start the node");
    case.healed();
    case.notes.push(format!(
        "node {node} (the leader's) stopped gracefully, started 30 s later"
    ));
    case.finish().await;
}

async fn rolling_restart(cluster: Arc<Cluster>) {
    let spec = spec(
        &cluster,
        "cluster-rolling-restart",
        "rolling restart of the three nodes (stop, start, next)",
        100,
    );
    let mut case = Case::start(spec).await;
    case.wait_applied(TRIGGER).await;
    case.fault_begins();
    let began = Instant::now();
    for node in NODES {
        // As an operator would: only stop a node whose quorum queue members the others can
        // do without.
        cluster
            .wait_not_quorum_critical(node, Duration::from_secs(60))
            .await
            .expect("the node's quorum queue replicas caught up");
        cluster.stop_node(node).await.expect("stop the node");
        cluster.start_node(node).await.expect("start the node");
    }
    case.healed();
    case.notes.push(format!(
        "nodes 1, 2, 3 stopped and started in turn in {:.1} s",
        began.elapsed().as_secs_f64()
    ));
    case.finish().await;
}

async fn per_key_order(cluster: Arc<Cluster>) {
    let result = support::ordered::per_key_order_across_a_node_kill(&cluster).await;
    eprintln!(
        "ORDER RESULT kill -9 of a partitioned consumer's node (node {}, back after 15 s): \
         {} events in {} keys over {} partitions, every key in order, {} handled ({} \
         redeliveries of a message handled but not acked), {:.1} s",
        result.killed_node,
        result.events,
        result.keys,
        result.partitions,
        result.handled,
        result.redelivered,
        result.took.as_secs_f64()
    );
}

/// Runs one case as a task of its own, so that its failure is recorded and the next case runs;
/// then makes sure all three nodes run again.
async fn run<F>(cluster: &Cluster, failed: &mut Vec<String>, name: &str, case: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let wanted = std::env::var("FERRY_CLUSTER_CASES").unwrap_or_default();
    if !wanted.trim().is_empty() && !wanted.split(',').any(|w| w.trim() == name) {
        return;
    }
    let began = Instant::now();
    if let Err(e) = tokio::spawn(case).await {
        eprintln!("cluster suite: case {name} failed: {e}");
        failed.push(name.to_owned());
    }
    eprintln!(
        "cluster suite: case {name} took {:.1} s",
        began.elapsed().as_secs_f64()
    );
    cluster.mend().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_fault_cases() {
    ferry_testkit::init_tracing();
    let began = Instant::now();
    let cluster = Arc::new(Cluster::start().await.expect("start the cluster"));
    eprintln!(
        "cluster suite: three nodes started in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    let mut failed = Vec::new();
    let c = &cluster;
    run(c, &mut failed, "a", relay_node_killed(c.clone())).await;
    run(c, &mut failed, "b", consumer_node_killed(c.clone())).await;
    run(c, &mut failed, "c", leader_node_killed(c.clone())).await;
    run(c, &mut failed, "d", node_stopped_for_30_s(c.clone())).await;
    run(c, &mut failed, "e", rolling_restart(c.clone())).await;
    run(c, &mut failed, "f", per_key_order(c.clone())).await;
    drop(cluster);
    eprintln!(
        "cluster suite: {:.1} s in all",
        began.elapsed().as_secs_f64()
    );
    assert!(failed.is_empty(), "cases failed: {failed:?}");
}
