//! The outbox relay's benchmark, on a throw-away PostgreSQL database and the local RabbitMQ:
//!
//! 1. **Latency**: events committed at a steady rate (default 500/s), each timed from its
//!    commit to its publisher confirm; the relay wakes on `LISTEN/NOTIFY`.
//! 2. **Drain rate**: N pending rows (default 100,000) drained by the relay, against raw lapin
//!    publishing the same messages (same bodies, properties and headers, persistent,
//!    mandatory, confirmed) in the same run.
//!
//! ```text
//! cargo run --release -p ferry-postgres --example relay_bench -- [--rate 500] [--seconds 10] [--rows 100000]
//! ```
//!
//! `--seconds 0` skips the latency part, `--rows 0` the drain.
//!
//! PostgreSQL and RabbitMQ as in the tests (`FERRY_TEST_PG_URL`, `FERRY_TEST_AMQP_URL`, or the
//! local defaults). Figures go to standard output.
#![allow(clippy::print_stdout)]
// `&mut *tx` is sqlx's idiom for passing a transaction as a connection.
#![allow(clippy::explicit_auto_deref)]

mod drain;
mod latency;
mod support;

use ferry_postgres::sqlx::{self, PgPool, postgres::PgPoolOptions};
use ferry_rabbitmq::{RabbitMq, RabbitMqOptions};
use lapin::{
    Connection, ConnectionProperties,
    options::{
        ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
        QueuePurgeOptions,
    },
    types::FieldTable,
};

use support::*;

struct Args {
    rate: u64,
    seconds: u64,
    rows: u64,
}

fn args() -> Result<Args, BoxError> {
    let mut parsed = Args {
        rate: 500,
        seconds: 10,
        rows: 100_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value: u64 = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?
            .parse()?;
        match flag.as_str() {
            "--rate" => parsed.rate = value.max(1),
            "--seconds" => parsed.seconds = value,
            "--rows" => parsed.rows = value,
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    Ok(parsed)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = args()?;
    let db = ferry_testkit::pg::TempDatabase::create().await?;
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .connect(db.url())
        .await?;
    ferry_postgres::migrate(&pool).await?;

    let exchange = ferry_testkit::unique_name("ferry-bench");
    let queue = ferry_testkit::unique_name("ferry-bench");
    let bus = RabbitMq::connect(
        RabbitMqOptions::new(ferry_testkit::amqp::url())
            .with_exchange(&exchange)
            .with_connection_name("ferry-relay-bench"),
    )
    .await?;
    // A durable queue bound to everything, so every publish is routed and stored.
    let amqp =
        Connection::connect(&ferry_testkit::amqp::url(), ConnectionProperties::default()).await?;
    let channel = amqp.create_channel().await?;
    channel
        .queue_declare(
            queue.clone().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            queue.clone().into(),
            exchange.clone().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let purge = || async {
        channel
            .queue_purge(queue.clone().into(), QueuePurgeOptions::default())
            .await
            .map(|_| ())
    };

    println!(
        "ferry relay benchmark: PostgreSQL {}, RabbitMQ {}",
        sqlx::query_scalar::<_, String>("SHOW server_version")
            .fetch_one(&pool)
            .await?,
        ferry_rabbitmq::redact_url(&ferry_testkit::amqp::url())
    );
    if args.seconds > 0 {
        latency::latency(&pool, &bus, args.rate, args.seconds).await?;
        latency::broker_latency(&channel, &exchange, args.rate, args.seconds).await?;
        purge().await?;
    }

    let rows = args.rows;
    if rows == 0 {
        return cleanup(channel, &queue, bus, &exchange, amqp, pool, db).await;
    }
    let mut report = Vec::new();
    for (label, relays, batch) in [
        ("relay x1, batch 100 (default)", 1, 100),
        ("relay x1, batch 1000", 1, 1000),
        ("relay x3, batch 100", 3, 100),
    ] {
        let rate = drain::drain(&pool, &bus, rows, relays, batch).await?;
        purge().await?;
        report.push((label, rate));
    }
    let store_only = drain::drain(&pool, &NoBroker, rows, 1, 100).await?;
    report.push(("relay x1, batch 100, no broker", store_only));
    let messages = drain::raw_messages(&pool).await?;
    let raw_window = drain::raw_lapin(&channel, &exchange, &messages, 1000, false).await?;
    purge().await?;
    let raw_batch = drain::raw_lapin(&channel, &exchange, &messages, 100, true).await?;
    purge().await?;

    println!("drain    {rows} pending rows -> confirmed publishes (persistent, mandatory)");
    for (label, rate) in &report {
        println!(
            "         {label:<32} {rate:>8.0} msg/s  ({:.2} of raw lapin window 1000)",
            rate / raw_window
        );
    }
    println!(
        "         {:<32} {raw_window:>8.0} msg/s",
        "raw lapin, window 1000"
    );
    println!(
        "         {:<32} {raw_batch:>8.0} msg/s",
        "raw lapin, batches of 100"
    );

    cleanup(channel, &queue, bus, &exchange, amqp, pool, db).await
}

async fn cleanup(
    channel: lapin::Channel,
    queue: &str,
    bus: RabbitMq,
    exchange: &str,
    amqp: Connection,
    pool: PgPool,
    db: ferry_testkit::pg::TempDatabase,
) -> Result<(), BoxError> {
    channel
        .queue_delete(queue.to_owned().into(), QueueDeleteOptions::default())
        .await?;
    bus.delete_exchange(exchange).await?;
    bus.close().await;
    let _ = amqp.close(0, "done".into()).await;
    pool.close().await;
    db.drop_db().await?;
    Ok(())
}
