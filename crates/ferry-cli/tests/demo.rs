//! `ferry demo` end to end, against the real RabbitMQ and PostgreSQL, and SQLite.
//!
//! The demo uses fixed queue names, so these tests take turns (one lock for the binary). How the
//! demo rides out broker faults is in `demo_faults.rs`.

mod common;

use std::{
    process::Command,
    sync::Mutex,
    time::{Duration, Instant},
};

use common::{counts, ferry, n, sqlite_url, summary};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn check_transient_run(url: &str, extra: &[&str]) {
    let mut args = vec![
        "demo",
        "--events",
        "2000",
        "--fail-rate",
        "0.1",
        "--json",
        "--database-url",
        url,
    ];
    args.extend_from_slice(extra);
    let out = ferry(&args);
    let s = summary(&out);
    assert_eq!(n(&s, "orders_created"), 2000, "{s}");
    assert_eq!(n(&s, "orders_confirmed"), 2000, "{s}");
    assert_eq!(n(&s, "reservations"), 2000, "{s}");
    assert_eq!(n(&s, "events_published"), 4000, "{s}");
    assert!(n(&s, "retries") > 0, "{s}");
    assert_eq!(n(&s, "lost"), 0, "{s}");
    assert_eq!(
        n(&s, "dead_lettered"),
        0,
        "--fail-rate alone never dead-letters: {s}"
    );
    for key in ["p50", "p95", "p99", "max"] {
        assert!(s["latency_ms"][key].as_f64().unwrap() > 0.0, "{s}");
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let [
        orders,
        confirmed,
        reservations,
        notifications,
        dead,
        pending,
    ] = rt.block_on(counts(url));
    assert_eq!(
        (
            orders,
            confirmed,
            reservations,
            notifications,
            dead,
            pending
        ),
        (2000, 2000, 2000, 2000, 0, 0)
    );
}

#[test]
fn transient_failures_on_sqlite_and_postgres_lose_nothing() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (url, dir) = sqlite_url("ferry-demo-sqlite");
    check_transient_run(&url, &[]);
    std::fs::remove_dir_all(dir).ok();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt
        .block_on(ferry_testkit::pg::TempDatabase::create())
        .unwrap();
    check_transient_run(db.url(), &[]);
    rt.block_on(db.drop_db()).unwrap();
}

#[test]
fn permanent_failures_are_dead_lettered_and_recorded() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt
        .block_on(ferry_testkit::pg::TempDatabase::create())
        .unwrap();
    let out = ferry(&[
        "demo",
        "--events",
        "1000",
        "--permanent-fail-rate",
        "0.02",
        "--seed",
        "7",
        "--json",
        "--database-url",
        db.url(),
    ]);
    let s = summary(&out);
    let [orders, confirmed, _, _, dead, pending] = rt.block_on(counts(db.url()));
    assert_eq!(orders, 1000);
    assert!(n(&s, "dead_lettered") > 0, "{s}");
    assert_eq!(n(&s, "dead_lettered"), dead, "{s}");
    assert_eq!(dead, pending, "every dead letter is an order left pending");
    assert_eq!(confirmed + pending, 1000);
    assert_eq!(n(&s, "lost"), 0, "{s}");
    assert_eq!(
        n(&s, "retries"),
        0,
        "permanent failures skip the retries: {s}"
    );
    rt.block_on(db.drop_db()).unwrap();
}

#[test]
fn memory_transport_needs_no_broker() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (url, dir) = sqlite_url("ferry-demo-memory");
    let out = ferry(&[
        "demo",
        "--transport",
        "memory",
        "--events",
        "300",
        "--fail-rate",
        "0.2",
        "--permanent-fail-rate",
        "0.05",
        "--json",
        "--database-url",
        &url,
        "--amqp-url",
        "amqp://nobody:secret@127.0.0.1:1/%2f",
    ]);
    let s = summary(&out);
    assert_eq!(n(&s, "orders_created"), 300);
    assert_eq!(
        n(&s, "orders_confirmed") + n(&s, "dead_lettered"),
        300,
        "{s}"
    );
    assert_eq!(n(&s, "lost"), 0);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn unreachable_broker_fails_fast_with_one_line() {
    let (url, dir) = sqlite_url("ferry-demo-nobroker");
    let started = Instant::now();
    let out = ferry(&[
        "demo",
        "--events",
        "10",
        "--database-url",
        &url,
        "--amqp-url",
        "amqp://guest:hunter2@127.0.0.1:1/%2f",
    ]);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].contains("127.0.0.1:1"), "{stderr}");
    assert!(lines[0].contains("--transport memory"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "the password leaked: {stderr}");
    assert!(out.stdout.is_empty());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bad_input_exits_2_with_one_line() {
    for args in [
        &["demo", "--fail-rate", "2"][..],
        &["demo", "--events", "0"][..],
        &["demo", "--transport", "carrier-pigeon"][..],
        &["demo", "--database-url", "mysql://x/y"][..],
    ] {
        let out = ferry(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    }
}

fn scrape(addr: std::net::SocketAddr) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(body)
}

#[test]
fn metrics_are_served_in_prometheus_format() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (url, dir) = sqlite_url("ferry-demo-metrics");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["demo", "--events", "3000", "--json", "--database-url", &url])
        .args(["--metrics-addr", &addr.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        if let Some(body) = scrape(addr) {
            if body.contains("ferry_consumed_total") && body.contains("ferry_queue_messages_ready")
            {
                seen = body;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    for name in [
        "ferry_consumed_total{",
        "ferry_published_total",
        "ferry_handler_duration_seconds",
        "ferry_consume_lag_seconds",
        "ferry_outbox_pending",
        "ferry_queue_messages_ready{queue=\"inventory.order-created\"}",
        "outcome=\"ack\"",
    ] {
        assert!(seen.contains(name), "`{name}` not served:\n{seen}");
    }
    std::fs::remove_dir_all(dir).ok();
}
