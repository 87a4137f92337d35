//! The console's JSON API with a real HTTP client against a real server, on PostgreSQL and
//! SQLite, with the real broker: each endpoint's shape, the actions and their audit rows, and
//! each refusal (401, 403, 400, 413).

mod support;

#[path = "../../ferry-rabbitmq/tests/common/mod.rs"]
mod common;

use std::time::Duration;

use base64::Engine;
use ferry_sql::{Pool, dead_letters::DeadLetterDialect};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::*;

async fn get(client: &reqwest::Client, url: String, token: Option<&str>) -> (StatusCode, Value) {
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}: {text}"
    );
    (status, serde_json::from_str(&text).unwrap())
}

async fn post(
    client: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    let mut request = client.post(url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn api_answers_as_the_contract_says<D: DeadLetterDialect>(pool: Pool<D>) {
    let env = common::Env::new("console").await;
    let exchange = env
        .cleanup
        .exchange(ferry_testkit::unique_name("console.dlx"));
    let queue = env.queue("console.orders");
    // The queue the dead letters failed on (bound to a throw-away exchange, so it exists).
    env.bus
        .declare_dead_letter_queue(&exchange, &queue)
        .await
        .unwrap();
    let mut dead: Vec<_> = (0..3)
        .map(|n| json_dead_letter(&queue, n, &format!("order o-{n} failed at step {}", n + 7)))
        .collect();
    dead.push(binary_dead_letter());
    let ids = record::<D>(&pool, &dead).await;
    let binary_id = ids[3].clone();

    let console = start::<D>(
        pool.clone(),
        Some(env.bus.clone()),
        Some(TOKEN),
        Some(READ_TOKEN),
        vec![],
    )
    .await;
    let c = client();
    let url = |path: &str| format!("{}{path}", console.base);

    // /healthz needs no credentials; everything else does.
    let (status, _) = get(&c, url("/healthz"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = get(&c, url("/api/overview"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = get(&c, url("/api/overview"), Some("wrong-token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The overview.
    let (status, overview) = get(&c, url("/api/overview"), Some(READ_TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        keys(&overview),
        sorted(&["outbox", "dead_letters", "queues"])
    );
    assert_eq!(
        keys(&overview["outbox"]),
        sorted(&["pending", "dead", "published", "oldest_pending_age_s"])
    );
    assert_eq!(
        overview["dead_letters"],
        json!({"dead": 4, "replayed": 0, "deleted": 0, "groups": 2})
    );
    assert_eq!(
        overview["queues"],
        json!([{"name": queue, "ready": 0, "consumers": 0}])
    );

    // Groups: the three handler failures are one group, the unreadable message another.
    let (_, groups) = get(&c, url("/api/dead-letters/groups"), Some(READ_TOKEN)).await;
    let groups = groups.as_array().unwrap().clone();
    assert_eq!(groups.len(), 2, "{groups:?}");
    assert_eq!(
        keys(&groups[0]),
        sorted(&[
            "group",
            "fault_kind",
            "queue",
            "event_type",
            "fault_message",
            "count",
            "first_failed_at",
            "last_failed_at"
        ])
    );
    assert_eq!(groups[0]["count"], 3);
    assert_eq!(groups[0]["fault_message"], "order o-<n> failed at step <n>");
    assert_eq!(groups[0]["queue"], json!(queue));
    assert_eq!(groups[1]["count"], 1);
    assert_eq!(groups[1]["fault_kind"], "decode");
    let group = groups[0]["group"].as_str().unwrap().to_owned();
    // RFC 3339 times.
    chrono::DateTime::parse_from_rfc3339(groups[0]["first_failed_at"].as_str().unwrap()).unwrap();

    // A group's messages.
    let (_, rows) = get(
        &c,
        url(&format!(
            "/api/dead-letters?group={group}&status=dead&limit=10"
        )),
        Some(READ_TOKEN),
    )
    .await;
    let rows = rows.as_array().unwrap().clone();
    assert_eq!(rows.len(), 3);
    assert_eq!(
        keys(&rows[0]),
        sorted(&[
            "id",
            "message_id",
            "event_type",
            "queue",
            "routing_key",
            "fault_kind",
            "fault_message",
            "attempts",
            "failed_at",
            "status"
        ])
    );
    assert_eq!(rows[0]["status"], "dead");
    assert_eq!(rows[0]["attempts"], 3);
    let (_, limited) = get(&c, url("/api/dead-letters?limit=2"), Some(READ_TOKEN)).await;
    assert_eq!(limited.as_array().unwrap().len(), 2);

    // One message: headers as plain JSON, a UTF-8 body as a string, another as base64.
    let (_, one) = get(
        &c,
        url(&format!("/api/dead-letters/{}", ids[0])),
        Some(READ_TOKEN),
    )
    .await;
    assert_eq!(one["headers"]["ferry-fault-kind"], "handler");
    assert_eq!(one["headers"]["ferry-fault-attempts"], 3);
    assert_eq!(one["body"], r#"{"orderId":"o-0","note":"<b>not html</b>"}"#);
    assert!(one.get("body_encoding").is_none());
    let (_, raw) = get(
        &c,
        url(&format!("/api/dead-letters/{binary_id}")),
        Some(READ_TOKEN),
    )
    .await;
    assert_eq!(raw["body_encoding"], "base64");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw["body"].as_str().unwrap())
        .unwrap();
    assert_eq!(bytes, [0, 159, 146, 150, 255]);
    let (status, _) = get(&c, url("/api/dead-letters/no-such-id"), Some(READ_TOKEN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The read token may not act; no credentials get 401; bad bodies get 400.
    let replay = url("/api/dead-letters/replay");
    let body = json!({ "group": group });
    let (status, _) = post(&c, replay.clone(), Some(READ_TOKEN), body.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = post(&c, replay.clone(), None, body.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = post(&c, replay.clone(), Some(TOKEN), json!({"all": true})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = get(&c, url("/api/dead-letters?status=bogus"), Some(TOKEN)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let huge = json!({ "ids": vec!["x".repeat(1000); 300] });
    let response = c
        .post(replay.clone())
        .bearer_auth(TOKEN)
        .json(&huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Replaying the group sends its three messages back to their queue, confirmed.
    let (status, replayed) = post(&c, replay.clone(), Some(TOKEN), body.clone()).await;
    assert_eq!((status, replayed), (StatusCode::OK, json!({"replayed": 3})));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while env.bus.queue_counts(&queue).await.unwrap().0 < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "replays not on the queue"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A message with no queue to go back to: nothing replayed, the row unchanged.
    let (_, replayed) = post(&c, replay, Some(TOKEN), json!({"ids": [binary_id]})).await;
    assert_eq!(replayed, json!({"replayed": 0}));
    let (_, raw) = get(
        &c,
        url(&format!("/api/dead-letters/{binary_id}")),
        Some(TOKEN),
    )
    .await;
    assert_eq!(raw["status"], "dead");
    let (_, deleted) = post(
        &c,
        url("/api/dead-letters/delete"),
        Some(TOKEN),
        json!({"ids": [binary_id]}),
    )
    .await;
    assert_eq!(deleted, json!({"deleted": 1}));
    let (_, overview) = get(&c, url("/api/overview"), Some(TOKEN)).await;
    assert_eq!(
        overview["dead_letters"],
        json!({"dead": 0, "replayed": 3, "deleted": 1, "groups": 0})
    );
    assert_eq!(overview["queues"][0]["ready"], 3);

    // The outbox: a dead row, listed and retried.
    sqlx_exec::<D>(&pool).await;
    let (_, outbox) = get(&c, url("/api/outbox?status=dead&limit=5"), Some(READ_TOKEN)).await;
    let outbox = outbox.as_array().unwrap().clone();
    assert_eq!(outbox.len(), 1);
    assert_eq!(
        keys(&outbox[0]),
        sorted(&[
            "id",
            "event_type",
            "routing_key",
            "status",
            "attempts",
            "last_error",
            "created_at",
            "published_at"
        ])
    );
    assert_eq!(outbox[0]["last_error"], "the broker said no");
    let (_, stuck) = get(&c, url("/api/outbox/stuck"), Some(READ_TOKEN)).await;
    assert_eq!(stuck, json!([]));
    let (status, _) = post(
        &c,
        url("/api/outbox/retry"),
        Some(READ_TOKEN),
        json!({"all_dead": true}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, retried) = post(
        &c,
        url("/api/outbox/retry"),
        Some(TOKEN),
        json!({"all_dead": true}),
    )
    .await;
    assert_eq!(retried, json!({"retried": 1}));
    let (_, pending) = get(&c, url("/api/outbox?status=pending"), Some(TOKEN)).await;
    assert_eq!(pending.as_array().unwrap().len(), 1);

    // Every action is audited, newest first; refused ones are not actions.
    let (_, audit) = get(&c, url("/api/audit?limit=10"), Some(READ_TOKEN)).await;
    let audit = audit.as_array().unwrap().clone();
    let actions: Vec<(String, String, i64)> = audit
        .iter()
        .map(|a| {
            assert_eq!(
                keys(a),
                sorted(&["at", "role", "action", "target", "count"])
            );
            assert_eq!(a["role"], "operator");
            (
                a["action"].as_str().unwrap().to_owned(),
                a["target"].as_str().unwrap().to_owned(),
                a["count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("retry".to_owned(), "all_dead".to_owned(), 1),
            ("delete".to_owned(), ids[3].clone(), 1),
            ("replay".to_owned(), ids[3].clone(), 0),
            ("replay".to_owned(), format!("group:{group}"), 3),
        ]
    );

    drop(console);
    env.bus.close().await;
}

/// A dead outbox row, left as the relay leaves one: added, claimed, its publish failed with
/// no attempt left.
async fn sqlx_exec<D: DeadLetterDialect>(pool: &Pool<D>) {
    use ferry_core::{OutboxFailure, OutboxStore};
    let outbox = ferry_sql::SqlOutbox::<D>::new(pool.clone()).with_max_attempts(1);
    let mut tx = outbox.begin().await.unwrap();
    tx.add(&common::order(1)).await.unwrap();
    tx.commit().await.unwrap();
    let claimed = outbox.claim(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    outbox
        .mark_failed(&[OutboxFailure {
            id: claimed[0].id.clone(),
            error: "the broker said no".into(),
        }])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_on_postgres() {
    let (db, pool) = postgres().await;
    api_answers_as_the_contract_says::<ferry_sql::postgres::Postgres>(pool.clone()).await;
    pool.close().await;
    db.drop_db().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_on_sqlite() {
    let (_file, pool) = sqlite().await;
    api_answers_as_the_contract_says::<ferry_sql::sqlite::Sqlite>(pool.clone()).await;
    pool.close().await;
}
