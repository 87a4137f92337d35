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
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use common::{counts, n, sqlite_url, summary};
use ferry_testkit::{ProxyMode, TcpProxy};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Orders per run: the demo needs well over ten seconds for them here, so the faults land
/// while orders flow.
const ORDERS: i64 = 3000;

/// Starts `ferry demo` on a fresh SQLite file, on the local broker or `amqp_url`.
fn start_demo(name: &str, amqp_url: Option<&str>) -> (Child, String, PathBuf) {
    let (url, dir) = sqlite_url(name);
    let orders = ORDERS.to_string();
    let mut args = vec![
        "demo",
        "--events",
        orders.as_str(),
        "--fail-rate",
        "0.1",
        "--json",
        "--database-url",
        &url,
    ];
    if let Some(amqp_url) = amqp_url {
        args.extend(["--amqp-url", amqp_url]);
    }
    let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(&args)
        .env_remove("DATABASE_URL")
        .env_remove("FERRY_AMQP_URL")
        .env_remove("FERRY_EXCHANGE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ferry demo");
    (child, url, dir)
}

/// Waits for the demo and checks that every order was confirmed once and none lost, in its
/// summary and in its database; prints the result line; returns the demo's log (stderr).
fn check_ridden_out(
    fault: &str,
    child: Child,
    url: &str,
    dir: PathBuf,
    started: Instant,
) -> String {
    let out = child.wait_with_output().expect("wait for ferry demo");
    let s = summary(&out);
    assert_eq!(n(&s, "orders_created"), ORDERS, "{s}");
    assert_eq!(
        n(&s, "orders_confirmed"),
        ORDERS,
        "every order applied after the fault: {s}"
    );
    assert_eq!(n(&s, "lost"), 0, "{s}");
    assert_eq!(n(&s, "dead_lettered"), 0, "{s}");
    let [
        orders,
        confirmed,
        reservations,
        notifications,
        dead,
        pending,
    ] = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(counts(url));
    assert_eq!(
        (
            orders,
            confirmed,
            reservations,
            notifications,
            dead,
            pending
        ),
        (ORDERS, ORDERS, ORDERS, ORDERS, 0, 0),
        "each order reserved, notified and confirmed exactly once"
    );
    eprintln!(
        "DEMO RIDE-OUT {fault}: {ORDERS} orders, lost {}, confirmed {}, duplicates skipped {}, \
         retries {}, demo took {:.1} s (test {:.1} s)",
        n(&s, "lost"),
        n(&s, "orders_confirmed"),
        n(&s, "duplicates_skipped"),
        n(&s, "retries"),
        s["elapsed_s"].as_f64().unwrap_or_default(),
        started.elapsed().as_secs_f64()
    );
    std::fs::remove_dir_all(dir).ok();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

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
