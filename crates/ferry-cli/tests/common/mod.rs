//! What the `ferry demo` tests share: running the command, reading its summary, counting the
//! demo's tables, and the fault tests' run of the demo and its check.
#![allow(dead_code)]

use std::{
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    time::Instant,
};

use serde_json::Value;
use sqlx::{Connection, Row};

pub fn ferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("FERRY_AMQP_URL")
        .env_remove("FERRY_EXCHANGE")
        .output()
        .expect("run ferry")
}

pub fn summary(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "ferry demo failed ({:?}):\nstdout: {stdout}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

pub fn n(v: &Value, key: &str) -> i64 {
    v[key]
        .as_i64()
        .unwrap_or_else(|| panic!("`{key}` missing in {v}"))
}

/// Counts the demo's tables through sqlx (any of the two drivers).
pub async fn counts(url: &str) -> [i64; 6] {
    let queries = [
        "SELECT COUNT(*) FROM orders",
        "SELECT COUNT(*) FROM orders WHERE status = 'confirmed'",
        "SELECT COUNT(*) FROM inventory_reservations",
        "SELECT COUNT(*) FROM notifications",
        "SELECT COUNT(*) FROM dead_letters",
        "SELECT COUNT(*) FROM orders WHERE status = 'pending'",
    ];
    let mut out = [0; 6];
    if url.starts_with("postgres") {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        for (i, q) in queries.iter().enumerate() {
            out[i] = sqlx::query(q)
                .fetch_one(&mut conn)
                .await
                .unwrap()
                .get::<i64, _>(0);
        }
    } else {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        for (i, q) in queries.iter().enumerate() {
            out[i] = sqlx::query(q)
                .fetch_one(&mut conn)
                .await
                .unwrap()
                .get::<i64, _>(0);
        }
    }
    out
}

pub fn sqlite_url(name: &str) -> (String, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(ferry_testkit::unique_name(name));
    std::fs::create_dir_all(&dir).unwrap();
    (
        format!("sqlite://{}", dir.join("demo.sqlite").display()),
        dir,
    )
}

/// The test broker's URL (`FERRY_TEST_AMQP_URL` or the local one).
pub fn amqp_url() -> String {
    ferry_testkit::amqp::url()
}

/// A connection to the test broker whose events exchange is `exchange`.
pub async fn bus(exchange: &str) -> ferry::rabbitmq::RabbitMq {
    ferry::rabbitmq::RabbitMq::connect(
        ferry::rabbitmq::RabbitMqOptions::new(amqp_url())
            .with_exchange(exchange)
            .with_connection_name("ferry-cli-test"),
    )
    .await
    .expect("connect to the test broker")
}

/// `ferry` with `args`, on the test broker and `exchange`.
pub fn ferry_on(exchange: &str, args: &[&str]) -> Output {
    let url = amqp_url();
    let mut all = args.to_vec();
    all.extend(["--amqp-url", url.as_str(), "--exchange", exchange]);
    ferry(&all)
}

/// Standard output as text, after checking the command succeeded.
pub fn stdout_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "ferry failed ({:?}):\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Orders per run: the demo needs well over ten seconds for them here, so the faults land
/// while orders flow.
pub const ORDERS: i64 = 3000;

/// Starts `ferry demo` on a fresh SQLite file, on the local broker or `amqp_url`.
pub fn start_demo(name: &str, amqp_url: Option<&str>) -> (Child, String, PathBuf) {
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
pub fn check_ridden_out(
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
