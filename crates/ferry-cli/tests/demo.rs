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
    // ferry's dead-letter store has each of them too, byte for byte.
    let [stored, same_body] = rt.block_on(async {
        let mut conn = pg(db.url()).await;
        [
            pg_count(
                &mut conn,
                "SELECT COUNT(*) FROM ferry_dead_letters WHERE status = 'dead' \
                 AND queue = 'inventory.order-created' AND fault_kind = 'handler'",
            )
            .await,
            pg_count(
                &mut conn,
                "SELECT COUNT(*) FROM dead_letters d JOIN ferry_dead_letters f \
                 ON f.message_id = d.message_id AND f.body = d.body",
            )
            .await,
        ]
    });
    assert_eq!((stored, same_body), (dead, dead));
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
    assert!(
        std::fs::read_dir(&dir).unwrap().next().is_none(),
        "no database file without a broker"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bad_input_exits_2_with_one_line() {
    for args in [
        &["demo", "--fail-rate", "2"][..],
        &["demo", "--events", "0"][..],
        &["demo", "--transport", "carrier-pigeon"][..],
        &["demo", "--queue-type", "mirrored"][..],
        &["demo", "--database-url", "mysql://x/y"][..],
        &["demo", "--rate", "0"][..],
        &["demo", "--rate", "-5"][..],
        &["demo", "--rate", "fast"][..],
        &["demo", "--rate", "inf"][..],
    ] {
        let out = ferry(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    }
}

/// `--rate` paces the orders: 10 orders at 4 a second take at least (10 - 1) / 4 s (a burst of
/// 10 on the in-memory bus takes a fraction of that), and the summary says the pace and the
/// queueing apart from the latency.
#[test]
fn rate_paces_the_orders() {
    let (url, dir) = sqlite_url("ferry-demo-rate");
    let started = Instant::now();
    let out = ferry(&[
        "demo",
        "--transport",
        "memory",
        "--events",
        "10",
        "--rate",
        "4",
        "--json",
        "--database-url",
        &url,
    ]);
    let wall = started.elapsed();
    let s = summary(&out);
    assert_eq!(n(&s, "orders_confirmed"), 10, "{s}");
    assert_eq!(s["rate_per_s"].as_f64(), Some(4.0), "{s}");
    let elapsed = s["elapsed_s"].as_f64().unwrap();
    assert!(
        elapsed >= 9.0 / 4.0,
        "10 orders at 4/s took {elapsed} s: {s}"
    );
    assert!(wall >= Duration::from_secs_f64(9.0 / 4.0), "{wall:?}");
    for key in ["p50", "p95", "p99", "max"] {
        assert!(s["queueing_ms"][key].as_f64().unwrap() > 0.0, "{s}");
        assert!(s["latency_ms"][key].as_f64().unwrap() > 0.0, "{s}");
    }
    std::fs::remove_dir_all(dir).ok();
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

/// A PostgreSQL connection to `url`.
async fn pg(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url).await.unwrap()
}

async fn pg_count(conn: &mut sqlx::PgConnection, query: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(query)
        .fetch_one(conn)
        .await
        .unwrap()
}

/// The summary a run printed on stdout, whatever its exit code.
fn printed_summary(out: &std::process::Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Retries and skipped duplicates are read from the database: each reservation and each
/// confirmation records the delivery attempt that made it, each dead letter its attempts, and
/// each delivery the inbox skipped leaves a row in `skipped_duplicates`.
#[test]
fn retries_and_duplicates_skipped_are_what_the_database_records() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt
        .block_on(ferry_testkit::pg::TempDatabase::create())
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["demo", "--events", "1500", "--fail-rate", "0.1"])
        .args(["--permanent-fail-rate", "0.01", "--json"])
        .args(["--database-url", db.url()])
        .env_remove("DATABASE_URL")
        .env_remove("FERRY_AMQP_URL")
        .env_remove("FERRY_EXCHANGE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // While the demo runs, deliver a second copy of an order event it already published: the
    // inventory context's inbox must skip it.
    let duplicate_of: String = rt.block_on(async {
        let mut conn = pg(db.url()).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        let (id, body): (String, Vec<u8>) = loop {
            // An order the inventory context has reserved: processed, so the copy is a
            // duplicate whatever failures are injected.
            let row = sqlx::query_as(
                "SELECT f.id, f.body FROM ferry_outbox f JOIN inventory_reservations r \
                 ON r.order_id = convert_from(f.body, 'UTF8')::jsonb ->> 'orderId' \
                 WHERE f.routing_key = 'orders.order.created' LIMIT 1",
            )
            .fetch_optional(&mut conn)
            .await
            .ok()
            .flatten();
            if let Some(row) = row {
                break row;
            }
            assert!(Instant::now() < deadline, "the demo reserved nothing");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let bus = common::bus("myapp.events").await;
        let envelope = ferry::Envelope::new("orders.order.created").with_id(id.as_str());
        let message = ferry::codec::encode_data(&envelope, body.into());
        ferry::Publisher::publish_message(
            &bus,
            ferry::plumbing::OutgoingMessage::new("orders.order.created", message),
        )
        .await
        .unwrap();
        bus.close().await;
        id
    });
    let out = child.wait_with_output().unwrap();
    let s = summary(&out);
    assert_eq!(n(&s, "lost"), 0, "{s}");
    assert_eq!(n(&s, "orders_created"), 1500, "{s}");

    rt.block_on(async {
        let mut conn = pg(db.url()).await;
        let retries = pg_count(
            &mut conn,
            "SELECT (SELECT COALESCE(SUM(attempt - 1), 0) FROM inventory_reservations) \
                  + (SELECT COALESCE(SUM(confirm_attempt - 1), 0) FROM orders) \
                  + (SELECT COALESCE(SUM(attempts - 1), 0) FROM dead_letters)",
        )
        .await;
        assert!(retries > 0, "--fail-rate 0.1 retried some deliveries");
        assert_eq!(n(&s, "retries"), retries, "{s}");
        let skipped: Vec<(String, String)> =
            sqlx::query_as("SELECT consumer, message_id FROM skipped_duplicates")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        assert_eq!(
            skipped,
            [("inventory.order-created".to_owned(), duplicate_of)],
            "the copy, and nothing else, was skipped"
        );
        assert_eq!(n(&s, "duplicates_skipped"), 1, "{s}");
    });
    let [orders, confirmed, reservations, notifications, dead, _] = rt.block_on(counts(db.url()));
    assert_eq!(reservations, confirmed, "the copy reserved nothing");
    assert_eq!(notifications, confirmed);
    assert_eq!(confirmed + dead, orders);
    rt.block_on(db.drop_db()).unwrap();
}

/// A retry copy left in a demo retry queue by an interrupted run must not come back into the
/// next run: the demo empties its retry queues at start.
#[test]
fn leftover_retry_copies_do_not_inflate_the_next_run() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (url, dir) = sqlite_url("ferry-demo-leftovers");
    // The retry queues for a 5 s first delay: long enough that the copies put there below are
    // still waiting when the next run starts, short enough that they come back during it.
    let base = ["--retry-delay-ms", "5000", "--json", "--database-url", &url];
    let mut first = vec!["demo", "--events", "1"];
    first.extend(base);
    summary(&ferry(&first));

    let rt = tokio::runtime::Runtime::new().unwrap();
    let leftover = |id: &str, event_type: &str, body: String, queue: &str| {
        let envelope = ferry::Envelope::new(event_type).with_id(id);
        let mut message = ferry::codec::encode_data(&envelope, body.into_bytes().into());
        message.set_header("ferry-attempt", ferry::plumbing::HeaderValue::Int(2));
        ferry::plumbing::OutgoingMessage {
            exchange: Some(String::new()),
            routing_key: format!("{queue}.retry.5000"),
            message,
        }
    };
    rt.block_on(async {
        let bus = common::bus("myapp.events").await;
        for message in [
            leftover(
                "leftover-order-created",
                "orders.order.created",
                r#"{"orderId":"leftover-order","orderNumber":999999,"customerEmail":"left@example.com","totalAmount":9.95,"items":[{"productId":"sku-1","quantity":1}]}"#.to_owned(),
                "inventory.order-created",
            ),
            leftover(
                "leftover-stock-reserved",
                "inventory.stock.reserved",
                r#"{"orderId":"leftover-order","items":[{"productId":"sku-1","quantity":1}]}"#.to_owned(),
                "orders.stock-reserved",
            ),
        ] {
            ferry::Publisher::publish_message(&bus, message).await.unwrap();
        }
        bus.close().await;
    });

    let mut second = vec!["demo", "--events", "300", "--fail-rate", "0.1"];
    second.extend(base);
    let s = summary(&ferry(&second));
    assert!(n(&s, "retries") > 0, "the run outlasted the 5 s delay: {s}");
    assert_eq!(n(&s, "orders_created"), 300, "{s}");
    assert_eq!(n(&s, "reservations"), 300, "{s}");
    assert_eq!(n(&s, "events_published"), 600, "{s}");
    assert_eq!(n(&s, "lost"), 0, "{s}");
    let [_, confirmed, reservations, notifications, dead, _] = rt.block_on(counts(&url));
    assert_eq!(
        (confirmed, reservations, notifications, dead),
        (300, 300, 300, 0)
    );
    let stock_reserved_seen: i64 = rt.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM ferry_inbox WHERE message_id = 'leftover-stock-reserved'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap()
    });
    assert_eq!(
        stock_reserved_seen, 0,
        "the orders context's leftover came back"
    );
    std::fs::remove_dir_all(dir).ok();
}

/// On `--timeout-s` the demo stops creating orders before it reads its totals: the summary's
/// orders are the orders in the database once it has exited.
#[test]
fn a_timed_out_run_stops_creating_orders_before_its_summary() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (url, dir) = sqlite_url("ferry-demo-timeout");
    let out = ferry(&[
        "demo",
        "--transport",
        "memory",
        "--events",
        "10000000",
        "--timeout-s",
        "2",
        "--json",
        "--database-url",
        &url,
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = printed_summary(&out);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let [orders, confirmed, ..] = rt.block_on(counts(&url));
    assert!(orders > 0, "some orders were created");
    assert_eq!(n(&s, "orders_created"), orders, "{s}");
    assert_eq!(n(&s, "orders_confirmed"), confirmed, "{s}");
    std::fs::remove_dir_all(dir).ok();
}

/// Latency runs from the order's commit: time spent before the commit (here a trigger that
/// holds every order insert for 3 s) is not part of it.
#[test]
fn latency_is_measured_from_the_orders_commit() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt
        .block_on(ferry_testkit::pg::TempDatabase::create())
        .unwrap();
    let base = [
        "demo",
        "--transport",
        "memory",
        "--json",
        "--database-url",
        db.url(),
    ];
    let mut first = base.to_vec();
    first.extend(["--events", "1"]);
    summary(&ferry(&first));
    rt.block_on(async {
        let mut conn = pg(db.url()).await;
        for statement in [
            "CREATE FUNCTION slow_order_insert() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN PERFORM pg_sleep(3); RETURN NEW; END $$",
            "CREATE TRIGGER slow_order_insert BEFORE INSERT ON orders \
             FOR EACH ROW EXECUTE FUNCTION slow_order_insert()",
        ] {
            sqlx::query(statement).execute(&mut conn).await.unwrap();
        }
    });
    let mut second = base.to_vec();
    second.extend(["--events", "2"]);
    let s = summary(&ferry(&second));
    assert_eq!(n(&s, "orders_confirmed"), 2, "{s}");
    assert!(
        s["elapsed_s"].as_f64().unwrap() >= 3.0,
        "the trigger ran: {s}"
    );
    let max = s["latency_ms"]["max"].as_f64().unwrap();
    assert!(
        max > 0.0 && max < 3000.0,
        "the 3 s before the commit are not latency: {s}"
    );
    rt.block_on(db.drop_db()).unwrap();
}

#[derive(serde::Serialize, serde::Deserialize, ferry::IntegrationEvent)]
#[event(name = "billing.invoice.sent")]
struct InvoiceSent {
    invoice: u32,
}

/// Another application's rows in `ferry_outbox` of the same database are neither counted nor
/// waited for, and the demo leaves them alone.
#[test]
fn the_demo_counts_only_its_own_outbox_rows() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt
        .block_on(ferry_testkit::pg::TempDatabase::create())
        .unwrap();
    rt.block_on(async {
        let pool = db.pool().await.unwrap();
        ferry::postgres::migrate(&pool).await.unwrap();
        let outbox = ferry::postgres::PgOutbox::new(pool.clone());
        let mut tx = pool.begin().await.unwrap();
        let published = outbox
            .add(&mut tx, &InvoiceSent { invoice: 1 })
            .await
            .unwrap();
        let waiting = outbox
            .add(&mut tx, &InvoiceSent { invoice: 2 })
            .await
            .unwrap();
        tx.commit().await.unwrap();
        sqlx::query(
            "UPDATE ferry_outbox SET status = 'published', published_at = now() WHERE id = $1",
        )
        .bind(&published)
        .execute(&pool)
        .await
        .unwrap();
        // Pending, but not due for a day: the other application's relay will send it.
        sqlx::query(
            "UPDATE ferry_outbox SET next_attempt_at = now() + interval '1 day' WHERE id = $1",
        )
        .bind(&waiting)
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    });
    let out = ferry(&[
        "demo",
        "--transport",
        "memory",
        "--events",
        "50",
        "--timeout-s",
        "30",
        "--json",
        "--database-url",
        db.url(),
    ]);
    let s = summary(&out);
    assert_eq!(n(&s, "events_published"), 100, "{s}");
    assert_eq!(n(&s, "orders_confirmed"), 50, "{s}");
    rt.block_on(async {
        let mut conn = pg(db.url()).await;
        let foreign = pg_count(
            &mut conn,
            "SELECT COUNT(*) FROM ferry_outbox WHERE routing_key = 'billing.invoice.sent' \
             AND ((status = 'published') OR (status = 'pending' AND attempts = 0))",
        )
        .await;
        assert_eq!(foreign, 2, "the other application's rows are as they were");
    });
    rt.block_on(db.drop_db()).unwrap();
}

/// With no broker, the demo says so before it creates its database file.
#[test]
fn no_database_file_is_created_when_the_broker_is_down() {
    let dir = std::env::temp_dir().join(ferry_testkit::unique_name("ferry-demo-nofile"));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["demo", "--events", "10"])
        .args(["--amqp-url", "amqp://guest:guest@127.0.0.1:1/%2f"])
        .current_dir(&dir)
        .env_remove("DATABASE_URL")
        .env_remove("FERRY_AMQP_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !dir.join("ferry-demo.sqlite").exists(),
        "ferry-demo.sqlite was created although the demo could not run"
    );
    std::fs::remove_dir_all(dir).ok();
}

/// Ctrl-C stops the demo cleanly: it stops creating orders, stops its consumers and relay
/// within their drain deadline, prints the summary so far and exits 1 with one line.
#[test]
fn ctrl_c_stops_the_run_cleanly_with_its_summary_so_far() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (url, dir) = sqlite_url("ferry-demo-ctrl-c");
    let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "demo",
            "--transport",
            "memory",
            "--events",
            "10000000",
            "--timeout-s",
            "120",
            "--json",
            "--database-url",
            &url,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    // The demo creates the file and its tables first: until then there is nothing to count.
    let confirmed_so_far = || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.block_on(counts(&url))[1]
        }))
        .unwrap_or(0)
    };
    while !dir.join("demo.sqlite").exists() || confirmed_so_far() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no order confirmed within 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let interrupt = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupt.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted with"), "{stderr}");
    let s = printed_summary(&out);
    let [orders, confirmed, ..] = rt.block_on(counts(&url));
    assert!(orders > 0 && orders < 10_000_000, "{s}");
    assert_eq!(n(&s, "orders_created"), orders, "{s}");
    assert_eq!(n(&s, "orders_confirmed"), confirmed, "{s}");
    std::fs::remove_dir_all(dir).ok();
}

/// The type of an existing queue: the one a plain declare with that `x-queue-type` accepts.
async fn queue_type_of(queue: &str) -> &'static str {
    use lapin::{
        Connection, ConnectionProperties,
        options::QueueDeclareOptions,
        types::{AMQPValue, FieldTable, LongString},
    };
    let conn = Connection::connect(&common::amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let mut found = "neither";
    for kind in ["classic", "quorum"] {
        let channel = conn.create_channel().await.unwrap();
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(LongString::from(kind)),
        );
        let options = QueueDeclareOptions {
            passive: false,
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let result = channel.queue_declare(queue.into(), options, args).await;
        match result {
            // The queue exists (the demo made it): an accepted declare changes nothing.
            Ok(_) => found = kind,
            Err(e) => assert!(e.to_string().contains("inequivalent arg"), "{e}"),
        }
        if channel.status().connected() {
            let _ = channel.close(200, "checked".into()).await;
        }
    }
    let _ = conn.close(200, "done".into()).await;
    found
}

#[test]
fn a_run_may_change_the_type_of_the_demo_queues() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Quorum first, then back to classic: the queues stay as the demo's default has them.
    for queue_type in ["quorum", "classic"] {
        let (url, dir) = sqlite_url("ferry-demo-queue-type");
        let out = ferry(&[
            "demo",
            "--events",
            "100",
            "--fail-rate",
            "0.2",
            "--queue-type",
            queue_type,
            "--json",
            "--database-url",
            &url,
        ]);
        let s = summary(&out);
        assert_eq!(n(&s, "orders_confirmed"), 100, "{queue_type}: {s}");
        assert!(n(&s, "retries") > 0, "{queue_type}: {s}");
        assert_eq!(n(&s, "lost"), 0, "{queue_type}: {s}");
        for queue in [
            "inventory.order-created",
            "orders.stock-reserved",
            "myapp.dlq",
        ] {
            assert_eq!(rt.block_on(queue_type_of(queue)), queue_type, "{queue}");
        }
        std::fs::remove_dir_all(dir).ok();
    }
}
