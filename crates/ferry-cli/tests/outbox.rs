//! `ferry outbox status|list|retry` on a real PostgreSQL database.

use std::process::{Command, Output};

use ferry::{OutboxFailure, OutboxStore};
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
    let no_url = ferry(&["outbox", "status"]);
    assert_eq!(no_url.status.code(), Some(2));

    pool.close().await;
    db.drop_db().await.unwrap();
}
