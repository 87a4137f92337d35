//! `ferry demo` is the application users copy: while it runs it must ride out the broker faults
//! of the fault suite (issue 8) — the broker closing every connection, a broker restart, a
//! network partition — confirming every order once and losing none.
//!
//! These tests close every connection on the shared broker and stop it: run this binary alone,
//! under the exclusive services lock (`flock -x /tmp/ferry-services.lock cargo test -p
//! ferry-cli --test demo_faults`). The demo uses fixed queue names, so they take turns. Each
//! prints a `DEMO RIDE-OUT` line on stderr.

mod common;

use std::{
    process::Command,
    sync::Mutex,
    time::{Duration, Instant},
};

use common::{check_ridden_out, start_demo};
use ferry_testkit::{ProxyMode, TcpProxy};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl (installed with RabbitMQ; scripts/test installs it)");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts the broker's app again when dropped, also when the test fails.
struct BrokerRestarts;

impl Drop for BrokerRestarts {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").arg("start_app").output();
    }
}

#[test]
fn the_demo_rides_out_the_broker_closing_its_connections() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let (child, url, dir) = start_demo("ferry-demo-cut", None);
    // Cut while orders flow.
    std::thread::sleep(Duration::from_secs(2));
    rabbitmqctl(&["close_all_connections", "ferry demo test: connection cut"]);
    let stderr = check_ridden_out("connections closed", child, &url, dir, started);
    assert!(
        stderr.contains("reconnecting"),
        "the cut happened mid-run: {stderr}"
    );
}

#[test]
fn the_demo_rides_out_a_broker_restart() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let (child, url, dir) = start_demo("ferry-demo-restart", None);
    std::thread::sleep(Duration::from_secs(2));
    let _restarts = BrokerRestarts;
    rabbitmqctl(&["stop_app"]);
    std::thread::sleep(Duration::from_secs(5));
    rabbitmqctl(&["start_app"]);
    let stderr = check_ridden_out(
        "broker restart (stop_app, 5 s, start_app)",
        child,
        &url,
        dir,
        started,
    );
    assert!(
        stderr.contains("reconnecting"),
        "the restart happened mid-run: {stderr}"
    );
}

/// A 30 s partition, with the demo as users run it: its own heartbeat and timeouts, nothing
/// lowered for the test.
#[test]
fn the_demo_rides_out_a_30_s_network_partition_with_its_default_settings() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // The proxy runs on a runtime of its own while this thread waits for the demo.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let proxy = runtime
        .block_on(TcpProxy::start(ferry_testkit::amqp::broker_addr()))
        .unwrap();
    let amqp_url = ferry_testkit::amqp::amqp_url_via(proxy.addr());
    let started = Instant::now();
    let (child, url, dir) = start_demo("ferry-demo-partition", Some(&amqp_url));
    std::thread::sleep(Duration::from_secs(2));
    proxy.set_mode(ProxyMode::Blackhole);
    std::thread::sleep(Duration::from_secs(30));
    proxy.set_mode(ProxyMode::Pass);
    let stderr = check_ridden_out("network partition (30 s)", child, &url, dir, started);
    assert!(
        stderr.contains("reconnecting"),
        "the partition was noticed mid-run: {stderr}"
    );
    drop(proxy);
}
