//! The PostgreSQL patterns, end to end against RabbitMQ and PostgreSQL: events added to the
//! outbox in the application's own transaction (`OutboxTransaction`), a transactional consumer
//! whose follow-up events are caused by the message it handles, the inbox in a transaction of
//! your own, and a versioned event with an upcaster. All of it under one `Host`.
//!
//! ```sh
//! cargo run --example postgres --features postgres
//! ```
//!
//! It creates its own database (`ferry_example_<random>`) on `FERRY_DATABASE_URL`'s server
//! (default `postgres://postgres@127.0.0.1:5432/postgres`) and drops it at the end, and uses
//! queues of its own on `FERRY_AMQP_URL` (default `amqp://guest:guest@127.0.0.1:5672/%2f`),
//! deleted at the end too.

use std::time::Duration;

use ferry::{
    CancellationToken, ConsumerHandle, HandlerError, IntegrationEvent, MessageContext, RetryPolicy,
    host::Host,
    postgres::{
        OutboxTransaction, PgInbox, PgOutbox,
        sqlx::{self, Connection, PgConnection, PgPool, Row},
    },
    rabbitmq::{RabbitMq, RabbitMqError, RabbitMqOptions},
    transactional::{TransactionalHandler, TxContext},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

// ## Versioned events and upcasters

/// Version 2 of `catalog.price.changed`: version 1 sent the price as `priceCents`, in euros
/// only; version 2 has an amount and a currency.
#[derive(Debug, Clone, Serialize, Deserialize, IntegrationEvent)]
#[serde(rename_all = "camelCase")]
#[event(name = "catalog.price.changed", version = 2, upcast(from = 1, with = price_changed_v1_to_v2))]
pub struct PriceChanged {
    pub sku: String,
    pub amount_cents: i64,
    pub currency: String,
}

/// Runs on the `data` of a version 1 event before it is deserialized: it receives the JSON as
/// the producer sent it (field names as serde wrote them there, `priceCents`, not Rust's
/// `price_cents`) and returns version 2's JSON. An `Err` dead-letters the message as `decode`.
pub fn price_changed_v1_to_v2(mut data: Value) -> Result<Value, String> {
    let fields = data
        .as_object_mut()
        .ok_or("version 1 data is not an object")?;
    let cents = fields
        .remove("priceCents")
        .ok_or("version 1 data has no priceCents")?;
    fields.insert("amountCents".into(), cents);
    fields.insert("currency".into(), "EUR".into());
    Ok(data)
}

/// Version 1, as a producer that has not moved on still sends it.
#[derive(Debug, Clone, Serialize, Deserialize, IntegrationEvent)]
#[serde(rename_all = "camelCase")]
#[event(name = "catalog.price.changed", version = 1)]
pub struct PriceChangedV1 {
    pub sku: String,
    pub price_cents: i64,
}

/// What the pricing context publishes after it applied a price.
#[derive(Debug, Clone, Serialize, Deserialize, IntegrationEvent)]
#[serde(rename_all = "camelCase")]
#[event(name = "pricing.price.applied")]
pub struct PriceApplied {
    pub sku: String,
    pub amount_cents: i64,
}

// ## Outbox in your transaction

/// The catalog writes the price and its event in one transaction: both commit, or neither.
/// Begun from the outbox, the transaction hands its events to the relay running on the same
/// outbox in this process when it commits (no notification round trip, no claim); if the
/// process dies first, any relay publishes them from the table.
pub async fn change_price(
    outbox: &PgOutbox,
    sku: &str,
    amount_cents: i64,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let mut tx: OutboxTransaction = outbox.begin().await?;
    sqlx::query("INSERT INTO catalog_prices (sku, cents) VALUES ($1, $2) ON CONFLICT (sku) DO UPDATE SET cents = $2")
        .bind(sku)
        .bind(amount_cents)
        .execute(tx.db()) // the transaction's connection
        .await?;
    let event_id = tx
        .add(&PriceChanged {
            sku: sku.into(),
            amount_cents,
            currency: "EUR".into(),
        })
        .await?;
    tx.commit().await?;
    Ok(event_id)
}

// ## Transactional consumer

/// The pricing context applies each price exactly once in effect: ferry begins the transaction,
/// inserts the message's inbox row (a duplicate ends there), runs this, and commits. The event
/// it publishes goes to the outbox in that transaction, caused by the message it handles
/// (causation id = the message's id, the same correlation id).
pub struct ApplyPrice;

impl TransactionalHandler<PriceChanged, OutboxTransaction> for ApplyPrice {
    async fn handle(
        &self,
        event: PriceChanged,
        cx: &mut TxContext<OutboxTransaction>,
    ) -> Result<(), HandlerError> {
        sqlx::query("INSERT INTO pricing_applied (sku, cents, currency) VALUES ($1, $2, $3)")
            .bind(&event.sku)
            .bind(event.amount_cents)
            .bind(&event.currency)
            .execute(cx.db())
            .await?;
        cx.publish(&PriceApplied {
            sku: event.sku,
            amount_cents: event.amount_cents,
        })
        .await?;
        Ok(())
    }
}

// ## Inbox in a transaction of your own

/// The same guarantee by hand, for a handler that owns its transaction: the inbox row commits
/// with the handler's writes, so a redelivered or duplicated message changes nothing twice.
pub async fn record_applied(
    pool: &PgPool,
    inbox: &PgInbox,
    event: PriceApplied,
    ctx: &MessageContext,
) -> Result<(), HandlerError> {
    let mut tx = pool.begin().await?;
    if !inbox.try_insert_message(&mut tx, ctx).await? {
        return Ok(()); // handled before: its writes are already committed
    }
    sqlx::query("INSERT INTO audit_prices (sku, cents, causation_id) VALUES ($1, $2, $3)")
        .bind(&event.sku)
        .bind(event.amount_cents)
        .bind(ctx.envelope().causation_id.as_deref())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

// ## Running it

async fn consumers(
    bus: &RabbitMq,
    queues: &Queues,
    pool: PgPool,
    outbox: PgOutbox,
    audited: mpsc::UnboundedSender<String>,
) -> Result<Vec<(&'static str, ConsumerHandle)>, RabbitMqError> {
    let retry = RetryPolicy::exponential(2, Duration::from_millis(200));
    let pricing = bus
        .consumer(&queues.pricing)
        .bind("catalog.price.changed")
        .retry(retry)
        .dead_letter(&queues.dead_letters)
        .handle_transactional(outbox, ApplyPrice)
        .start()
        .await?;
    let inbox = PgInbox::new(pool.clone());
    let audit = bus
        .consumer(&queues.audit)
        .bind("pricing.price.applied")
        .retry(retry)
        .dead_letter(&queues.dead_letters)
        .handle_fn::<PriceApplied, _>(move |event, ctx| {
            let (pool, inbox, audited) = (pool.clone(), inbox.clone(), audited.clone());
            async move {
                let sku = event.sku.clone();
                record_applied(&pool, &inbox, event, &ctx).await?;
                let _ = audited.send(sku);
                Ok(())
            }
        })
        .start()
        .await?;
    Ok(vec![("pricing", pricing), ("audit", audit)])
}

struct Queues {
    pricing: String,
    audit: String,
    dead_letters: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter("info,lapin=warn,sqlx=warn")
        .init();
    let suffix = uuid_suffix();
    let server = std::env::var("FERRY_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let database = format!("ferry_example_{suffix}");
    let mut admin = PgConnection::connect(&server).await?;
    sqlx::query(&format!("CREATE DATABASE {database}"))
        .execute(&mut admin)
        .await?;
    let url = match server.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{database}"),
        None => return Err("FERRY_DATABASE_URL has no database name".into()),
    };
    let result = run(&url, &suffix).await;
    sqlx::query(&format!("DROP DATABASE {database} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    result
}

async fn run(url: &str, suffix: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let pool = PgPool::connect(url).await?;
    ferry::postgres::migrate(&pool).await?;
    for table in [
        "CREATE TABLE catalog_prices (sku TEXT PRIMARY KEY, cents BIGINT NOT NULL)",
        "CREATE TABLE pricing_applied (sku TEXT, cents BIGINT, currency TEXT)",
        "CREATE TABLE audit_prices (sku TEXT, cents BIGINT, causation_id TEXT)",
    ] {
        sqlx::query(table).execute(&pool).await?;
    }
    let amqp = std::env::var("FERRY_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let bus = RabbitMq::connect(
        RabbitMqOptions::new(amqp).with_exchange(format!("example.events.{suffix}")),
    )
    .await?;
    let queues = Queues {
        pricing: format!("example.pricing.{suffix}"),
        audit: format!("example.audit.{suffix}"),
        dead_letters: format!("example.dlx.{suffix}"),
    };
    // A queue on the dead-letter exchange, so dead letters have somewhere to go.
    bus.declare_dead_letter_queue(&queues.dead_letters, &format!("{}.q", queues.dead_letters))
        .await?;
    let outbox = PgOutbox::new(pool.clone());
    let (audited_tx, mut audited) = mpsc::unbounded_channel();
    let mut host = Host::new()
        .drain_deadline(Duration::from_secs(10))
        .relay(
            "outbox",
            ferry::OutboxRelay::new(outbox.clone(), bus.clone()),
        )
        .health_source(bus.clone());
    for (name, consumer) in
        consumers(&bus, &queues, pool.clone(), outbox.clone(), audited_tx).await?
    {
        host = host.consumer(name, consumer);
    }
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(host.run(shutdown.clone().cancelled_owned()));

    // A producer still on version 1: its event is upcast before the handler sees it.
    bus.publish(&PriceChangedV1 {
        sku: "book-42".into(),
        price_cents: 1999,
    })
    .await?;
    let id = change_price(&outbox, "pen-7", 250).await?;
    tracing::info!(event_id = %id, "price changed");

    let mut pending = vec!["book-42".to_owned(), "pen-7".to_owned()];
    while !pending.is_empty() {
        match tokio::time::timeout(Duration::from_secs(10), audited.recv()).await {
            Ok(Some(sku)) => pending.retain(|s| *s != sku),
            _ => return Err("the prices were not applied within 10 s".into()),
        }
    }
    let rows = sqlx::query("SELECT sku, cents, currency FROM pricing_applied ORDER BY sku")
        .fetch_all(&pool)
        .await?;
    for row in &rows {
        println!(
            "applied {} at {} {}",
            row.get::<String, _>(0),
            row.get::<i64, _>(1),
            row.get::<String, _>(2)
        );
    }
    shutdown.cancel();
    running.await??;
    // What this run declared goes with it.
    let retry = RetryPolicy::exponential(2, Duration::from_millis(200));
    bus.delete_consumer_queues(&queues.pricing, &retry).await?;
    bus.delete_consumer_queues(&queues.audit, &retry).await?;
    bus.delete_queue(&format!("{}.q", queues.dead_letters))
        .await?;
    bus.delete_exchange(&queues.dead_letters).await?;
    bus.delete_exchange(bus.options().exchange()).await?;
    bus.close().await;
    pool.close().await;
    Ok(())
}

fn uuid_suffix() -> String {
    format!(
        "{:x}",
        std::process::id()
            ^ (std::time::UNIX_EPOCH
                .elapsed()
                .map_or(0, |d| d.subsec_nanos()))
    )
}
