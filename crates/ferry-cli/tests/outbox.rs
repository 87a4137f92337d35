//! `ferry outbox status|list|retry` on a real PostgreSQL database and on SQLite files.

use std::process::{Command, Output};

use ferry::plumbing::{OutboxFailure, OutboxStore};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Serialize, Deserialize, ferry::IntegrationEvent)]
#[event(name = "orders.order.created")]
struct OrderCreated {
    order_id: u32,
}

fn ferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap()
}

/// `ferry` run in `dir`, without `--database-url` or `DATABASE_URL` unless `args` has one.
fn ferry_in(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap()
}

/// An SQLite outbox in `file` with one dead row and one pending row; returns the dead row's id.
async fn sqlite_outbox_with_a_dead_row(file: &std::path::Path) -> String {
    use std::str::FromStr;
    let options =
        sqlx::sqlite::SqliteConnectOptions::from_str(&format!("sqlite://{}", file.display()))
            .unwrap()
            .create_if_missing(true);
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap();
    ferry::sqlite::migrate(&pool).await.unwrap();
    let outbox = ferry::sqlite::SqliteOutbox::new(pool.clone()).with_max_attempts(1);
    let mut tx = outbox.begin().await.unwrap();
    let dead_id = tx.add(&OrderCreated { order_id: 1 }).await.unwrap();
    tx.add(&OrderCreated { order_id: 2 }).await.unwrap();
    tx.commit().await.unwrap();
    let claimed = outbox
        .claim(1, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(claimed[0].id, dead_id);
    outbox
        .mark_failed(&[OutboxFailure {
            id: dead_id.clone(),
            error: "unroutable".into(),
        }])
        .await
        .unwrap();
    pool.close().await;
    dead_id
}

/// status, list and retry on an SQLite outbox, with `args` naming the database (or not).
fn check_status_list_retry(dir: &std::path::Path, db: &[&str], dead_id: &str) {
    let with = |args: &[&str]| -> Output {
        let mut all = args.to_vec();
        all.extend_from_slice(db);
        ferry_in(dir, &all)
    };
    let status = stdout_json(&with(&["outbox", "status", "--json"]));
    assert_eq!(
        (
            status["pending"].as_u64(),
            status["published"].as_u64(),
            status["dead"].as_u64()
        ),
        (Some(1), Some(0), Some(1)),
        "{status}"
    );
    assert!(status["oldest_pending_age_s"].as_f64().is_some());
    assert_eq!(status["dead_rows"][0]["id"], Value::from(dead_id));

    let dead = stdout_json(&with(&["outbox", "list", "--status", "dead", "--json"]));
    let rows = dead.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], Value::from(dead_id));
    assert_eq!(rows[0]["last_error"], Value::from("unroutable"));
    let all = stdout_json(&with(&["outbox", "list", "--limit", "1", "--json"]));
    assert_eq!(all.as_array().unwrap().len(), 1, "--limit 1: {all}");

    let retried = with(&["outbox", "retry", "--id", dead_id]);
    assert!(
        retried.status.success(),
        "{}",
        String::from_utf8_lossy(&retried.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&retried.stdout).trim(), dead_id);
    let status = stdout_json(&with(&["outbox", "status", "--json"]));
    assert_eq!(
        (status["pending"].as_u64(), status["dead"].as_u64()),
        (Some(2), Some(0)),
        "{status}"
    );
    let missing = with(&["outbox", "retry", "--id", "no-such-row"]);
    assert_eq!(missing.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn status_list_and_retry_on_sqlite() {
    let dir = std::env::temp_dir().join(ferry_testkit::unique_name("ferry-outbox-sqlite"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("app.sqlite");
    let dead_id = sqlite_outbox_with_a_dead_row(&file).await;
    let url = format!("sqlite://{}", file.display());
    check_status_list_retry(&dir, &["--database-url", &url], &dead_id);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_database_url_it_opens_the_demo_database_in_the_current_directory() {
    let dir = std::env::temp_dir().join(ferry_testkit::unique_name("ferry-outbox-default"));
    std::fs::create_dir_all(&dir).unwrap();
    let dead_id = sqlite_outbox_with_a_dead_row(&dir.join("ferry-demo.sqlite")).await;
    check_status_list_retry(&dir, &[], &dead_id);

    // No demo database here: one line saying so, and no empty database file left behind.
    let empty = std::env::temp_dir().join(ferry_testkit::unique_name("ferry-outbox-none"));
    std::fs::create_dir_all(&empty).unwrap();
    let out = ferry_in(&empty, &["outbox", "status"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("ferry-demo.sqlite"), "{stderr}");
    assert!(stderr.contains("--database-url"), "{stderr}");
    assert!(!empty.join("ferry-demo.sqlite").exists());
    std::fs::remove_dir_all(dir).ok();
    std::fs::remove_dir_all(empty).ok();
}

fn stdout_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn status_list_and_retry_a_dead_row() {
    let db = ferry_testkit::pg::TempDatabase::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    ferry::postgres::migrate(&pool).await.unwrap();
    let outbox = ferry::postgres::PgOutbox::new(pool.clone()).with_max_attempts(1);
    let mut tx = pool.begin().await.unwrap();
    let dead_id = outbox
        .add(&mut tx, &OrderCreated { order_id: 1 })
        .await
        .unwrap();
    outbox
        .add(&mut tx, &OrderCreated { order_id: 2 })
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let claimed = outbox
        .claim(1, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(claimed[0].id, dead_id);
    outbox
        .mark_failed(&[OutboxFailure {
            id: dead_id.clone(),
            error: "unroutable".into(),
        }])
        .await
        .unwrap();
    let url = db.url().to_owned();

    let status = stdout_json(&ferry(&[
        "outbox",
        "status",
        "--json",
        "--database-url",
        &url,
    ]));
    assert_eq!(
        (status["pending"].as_u64(), status["dead"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(status["oldest_pending_age_s"].as_f64().is_some());

    let dead = stdout_json(&ferry(&[
        "outbox",
        "list",
        "--status",
        "dead",
        "--json",
        "--database-url",
        &url,
    ]));
    let rows = dead.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], Value::from(dead_id.clone()));
    assert_eq!(rows[0]["last_error"], Value::from("unroutable"));

    let retried = ferry(&["outbox", "retry", "--id", &dead_id, "--database-url", &url]);
    assert!(retried.status.success());
    assert_eq!(String::from_utf8_lossy(&retried.stdout).trim(), dead_id);
    let status = stdout_json(&ferry(&[
        "outbox",
        "status",
        "--json",
        "--database-url",
        &url,
    ]));
    assert_eq!(
        (status["pending"].as_u64(), status["dead"].as_u64()),
        (Some(2), Some(0))
    );

    let missing = ferry(&[
        "outbox",
        "retry",
        "--id",
        "no-such-row",
        "--database-url",
        &url,
    ]);
    assert_eq!(missing.status.code(), Some(1));
    let usage = ferry(&["outbox", "retry", "--database-url", &url]);
    assert_eq!(usage.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&usage.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--id"), "{stderr}");

    pool.close().await;
    db.drop_db().await.unwrap();
}
