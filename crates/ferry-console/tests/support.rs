//! What the console's tests share: a database of their own (PostgreSQL or SQLite), dead letters
//! recorded in it, a console on a free port, and a target queue on the real broker.
#![allow(dead_code)]

use std::time::Duration;

use ferry_core::{
    DeadLetter, Fault, FaultKind,
    wire::{HeaderValue, Properties, WireMessage},
};
use ferry_sql::{DeadLetterStore, Pool, dead_letters::DeadLetterDialect};
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "operator-secret-4711";
pub const READ_TOKEN: &str = "reader-secret-0815";

fn body(s: &[u8]) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(s)
}

/// A dead letter that failed on `queue` with `message`, carrying a JSON body.
pub fn json_dead_letter(queue: &str, n: usize, message: &str) -> DeadLetter {
    let mut wire = WireMessage {
        properties: Properties {
            content_type: Some("application/json".into()),
            message_id: Some(format!("msg-{n}")),
            kind: Some("orders.order.created".into()),
            ..Properties::default()
        },
        body: body(format!(r#"{{"orderId":"o-{n}","note":"<b>not html</b>"}}"#).as_bytes()),
        ..WireMessage::default()
    };
    wire.headers
        .insert("ce-type".into(), HeaderValue::from("orders.order.created"));
    let fault = Fault {
        attempts: 3,
        original_exchange: Some("test.events".into()),
        original_routing_key: Some("orders.order.created".into()),
        original_queue: Some(queue.to_owned()),
        ..Fault::new(FaultKind::Handler, message)
    };
    fault.apply_to(&mut wire);
    DeadLetter::from_message(wire, "orders.order.created")
}

/// A dead letter whose body is not UTF-8 and that names no queue.
pub fn binary_dead_letter() -> DeadLetter {
    let wire = WireMessage {
        body: body(&[0, 159, 146, 150, 255]),
        ..WireMessage::default()
    };
    DeadLetter::from_message(wire, "raw.key")
}

/// Records dead letters; returns their ids in order.
pub async fn record<D: DeadLetterDialect>(pool: &Pool<D>, dead: &[DeadLetter]) -> Vec<String> {
    let store = DeadLetterStore::<D>::new(pool.clone());
    let mut ids = Vec::new();
    for d in dead {
        ids.push(store.record(d).await.unwrap());
    }
    ids
}

/// A console running on a free loopback port until dropped.
pub struct Running {
    pub base: String,
    stop: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub async fn start<D: DeadLetterDialect>(
    pool: Pool<D>,
    bus: Option<ferry_rabbitmq::RabbitMq>,
    token: Option<&str>,
    read_token: Option<&str>,
    queues: Vec<String>,
) -> Running {
    let options = ferry_console::ConsoleOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        token: token.map(str::to_owned),
        read_token: read_token.map(str::to_owned),
        queues,
    };
    let listening = ferry_console::Console::<D>::new(pool, bus, options)
        .unwrap()
        .bind()
        .await
        .unwrap();
    let base = listening.url().trim_end_matches('/').to_owned();
    let stop = CancellationToken::new();
    tokio::spawn(listening.serve(stop.clone()));
    Running { base, stop }
}

/// A client that does not follow redirects (the tests look at them).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The sorted keys of a JSON object.
pub fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

pub fn sorted(keys: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
    out.sort();
    out
}

/// A SQLite database file of its own, removed at the end.
pub struct TempFile(pub std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

pub async fn sqlite() -> (TempFile, sqlx::SqlitePool) {
    let path = std::env::temp_dir().join(format!(
        "{}.sqlite",
        ferry_testkit::unique_name("ferry-console")
    ));
    let pool = ferry_sql::sqlite::connect(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    ferry_sql::sqlite::migrate(&pool).await.unwrap();
    (TempFile(path), pool)
}

pub async fn postgres() -> (ferry_testkit::pg::TempDatabase, sqlx::PgPool) {
    let db = ferry_testkit::pg::TempDatabase::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    ferry_sql::postgres::migrate(&pool).await.unwrap();
    (db, pool)
}
