//! How long the console's API takes with many dead letters (default 100,000;
//! `FERRY_BENCH_DEAD_LETTERS=N`), on PostgreSQL and SQLite, against the raw SQL each page runs,
//! timed in the same process: the ratio is the console's overhead (HTTP, JSON, the store's
//! reading) over the query itself.
//!
//! `cargo bench -p ferry-console --bench pages` (PostgreSQL on 127.0.0.1, user postgres; it
//! creates a database `ferry_test_<random>` and a SQLite file in the temp dir, and removes them).

use std::time::{Duration, Instant};

use ferry_core::{
    DeadLetter, Fault, FaultKind,
    wire::{Properties, WireMessage},
};
use ferry_sql::{DeadLetterStore, dead_letters::DeadLetterDialect};
use tokio_util::sync::CancellationToken;

const ROUNDS: usize = 15;

fn dead_letter(n: usize) -> DeadLetter {
    let mut message = WireMessage {
        properties: Properties {
            message_id: Some(format!("0193a5b2-7c1e-7f00-8000-{n:012}")),
            kind: Some(format!("orders.event{}.created", n % 5)),
            content_type: Some("application/json".into()),
            ..Properties::default()
        },
        body: format!(r#"{{"orderId":"o-{n}","items":[{{"sku":"s-{n}","quantity":2}}]}}"#)
            .into_bytes()
            .into(),
        ..WireMessage::default()
    };
    // 5 event types × 4 queues × 5 messages: 100 groups.
    let fault = Fault {
        original_queue: Some(format!("queue-{}", n % 4)),
        original_routing_key: Some("orders.order.created".into()),
        attempts: 3,
        ..Fault::new(
            FaultKind::Handler,
            format!("order o-{n} failed: reason {} after {} ms", n % 5, n % 997),
        )
    };
    fault.apply_to(&mut message);
    DeadLetter::from_message(message, "orders.order.created")
}

async fn seed<D: DeadLetterDialect>(pool: &ferry_sql::Pool<D>, n: usize) -> String {
    let started = Instant::now();
    let mut last = String::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(2000) {
        let mut tx = pool.begin().await.expect("begin");
        for i in chunk {
            last = DeadLetterStore::<D>::record_in(&mut *tx, &dead_letter(*i))
                .await
                .expect("record");
        }
        tx.commit().await.expect("commit");
    }
    eprintln!(
        "  seeded {n} dead letters in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    last
}

fn median(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1000.0
}

async fn time_http(client: &reqwest::Client, url: &str) -> f64 {
    let mut samples = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let response = client.get(url).send().await.expect("request");
        assert!(
            response.status().is_success(),
            "{url}: {}",
            response.status()
        );
        let _ = response.bytes().await.expect("body");
        samples.push(started.elapsed());
    }
    median(samples)
}

async fn time_sql<F, Fut>(f: F) -> f64
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        f().await;
        samples.push(started.elapsed());
    }
    median(samples)
}

const GROUPS_SQL: &str = "SELECT group_key, min(fault_kind), min(queue), min(event_type), \
     min(fault_group), count(*) AS n, min(failed_at), max(failed_at) FROM ferry_dead_letters \
     WHERE status = 'dead' GROUP BY group_key ORDER BY n DESC";
const COUNTS_SQL: &str = "SELECT count(*) FILTER (WHERE status = 'dead'), \
     count(*) FILTER (WHERE status = 'replayed'), count(*) FILTER (WHERE status = 'deleted'), \
     count(DISTINCT group_key) FILTER (WHERE status = 'dead') FROM ferry_dead_letters";

macro_rules! raw {
    ($pool:expr, $group:expr, $id:expr, $ph:literal) => {{
        let pool = $pool.clone();
        let group = $group.clone();
        let id = $id.clone();
        let list_sql = format!(
            "SELECT id, message_id, event_type, queue, routing_key, fault_kind, fault_message, \
             attempts, failed_at, status FROM ferry_dead_letters WHERE status = 'dead' \
             AND group_key = {} ORDER BY failed_at DESC, id DESC LIMIT 100",
            $ph
        );
        let one_sql = format!("SELECT * FROM ferry_dead_letters WHERE id = {}", $ph);
        let groups = time_sql(|| async {
            sqlx::query(GROUPS_SQL)
                .fetch_all(&pool)
                .await
                .expect("groups");
        })
        .await;
        let overview = time_sql(|| async {
            sqlx::query(COUNTS_SQL)
                .fetch_all(&pool)
                .await
                .expect("counts");
        })
        .await;
        let list = time_sql(|| async {
            sqlx::query(&list_sql)
                .bind(&group)
                .fetch_all(&pool)
                .await
                .expect("list");
        })
        .await;
        let one = time_sql(|| async {
            sqlx::query(&one_sql)
                .bind(&id)
                .fetch_all(&pool)
                .await
                .expect("one");
        })
        .await;
        [overview, groups, list, one]
    }};
}

async fn run<D: DeadLetterDialect>(
    name: &str,
    pool: ferry_sql::Pool<D>,
    n: usize,
    raw: [f64; 4],
    id: &str,
    group: &str,
) {
    let options = ferry_console::ConsoleOptions {
        listen: "127.0.0.1:0".parse().expect("address"),
        ..ferry_console::ConsoleOptions::default()
    };
    let listening = ferry_console::Console::<D>::new(pool, None, options)
        .expect("console")
        .bind()
        .await
        .expect("bind");
    let base = listening.url();
    let stop = CancellationToken::new();
    tokio::spawn(listening.serve(stop.clone()));
    let client = reqwest::Client::new();
    let pages = [
        ("GET /api/overview", format!("{base}api/overview")),
        (
            "GET /api/dead-letters/groups",
            format!("{base}api/dead-letters/groups"),
        ),
        (
            "GET /api/dead-letters?group=G&limit=100",
            format!("{base}api/dead-letters?group={group}&status=dead&limit=100"),
        ),
        (
            "GET /api/dead-letters/{id}",
            format!("{base}api/dead-letters/{id}"),
        ),
    ];
    println!("\n{name}, {n} dead letters (median of {ROUNDS}):");
    println!(
        "{:<42} {:>12} {:>12} {:>8}",
        "page", "console ms", "raw SQL ms", "ratio"
    );
    for ((page, url), raw) in pages.iter().zip(raw) {
        let console = time_http(&client, url).await;
        println!(
            "{page:<42} {console:>12.2} {raw:>12.2} {:>8.2}",
            console / raw.max(0.001)
        );
    }
    stop.cancel();
}

fn main() {
    let n: usize = std::env::var("FERRY_BENCH_DEAD_LETTERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        // PostgreSQL.
        let db = ferry_testkit::pg::TempDatabase::create()
            .await
            .expect("database");
        let pool = db.pool().await.expect("pool");
        ferry_sql::postgres::migrate(&pool).await.expect("migrate");
        let id = seed::<ferry_sql::postgres::Postgres>(&pool, n).await;
        sqlx::query("ANALYZE ferry_dead_letters")
            .execute(&pool)
            .await
            .expect("analyze");
        let group = DeadLetterStore::<ferry_sql::postgres::Postgres>::new(pool.clone())
            .groups()
            .await
            .expect("groups")[0]
            .group
            .clone();
        let raw = raw!(pool, group, id, "$1");
        run::<ferry_sql::postgres::Postgres>("PostgreSQL", pool.clone(), n, raw, &id, &group).await;
        pool.close().await;
        db.drop_db().await.expect("drop");

        // SQLite.
        let path = std::env::temp_dir().join(format!(
            "{}.sqlite",
            ferry_testkit::unique_name("ferry-bench-console")
        ));
        let pool = ferry_sql::sqlite::connect(&format!("sqlite:{}", path.display()))
            .await
            .expect("sqlite");
        ferry_sql::sqlite::migrate(&pool).await.expect("migrate");
        let id = seed::<ferry_sql::sqlite::Sqlite>(&pool, n).await;
        sqlx::query("ANALYZE")
            .execute(&pool)
            .await
            .expect("analyze");
        let group = DeadLetterStore::<ferry_sql::sqlite::Sqlite>::new(pool.clone())
            .groups()
            .await
            .expect("groups")[0]
            .group
            .clone();
        let raw = raw!(pool, group, id, "?1");
        run::<ferry_sql::sqlite::Sqlite>("SQLite", pool.clone(), n, raw, &id, &group).await;
        pool.close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    });
}
