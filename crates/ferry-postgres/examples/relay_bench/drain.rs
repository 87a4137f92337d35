//! Draining N pending rows with the relay, and raw lapin publishing the same messages.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ferry_core::{OutboxRelay, PublishOptions, Publisher, RelayOptions};
use ferry_postgres::{
    PgOutbox,
    sqlx::{self, PgPool, Row},
};
use futures::{StreamExt, stream::FuturesUnordered};
use lapin::{BasicProperties, Confirmation, options::BasicPublishOptions, types::ShortString};

use super::support::*;

/// Adds `rows` pending rows, 1,000 a transaction, four writers at once.
pub async fn fill(pool: &PgPool, rows: u64) -> Result<(), BoxError> {
    sqlx::query("TRUNCATE ferry_outbox").execute(pool).await?;
    let outbox = PgOutbox::new(pool.clone());
    let chunks: Vec<u64> = (0..rows).step_by(1000).collect();
    let results: Vec<Result<(), BoxError>> = futures::stream::iter(chunks)
        .map(|from| {
            let (pool, outbox) = (pool.clone(), outbox.clone());
            async move {
                let mut tx = pool.begin().await?;
                for n in from..(from + 1000).min(rows) {
                    outbox
                        .add_with(&mut *tx, &event(n), PublishOptions::default())
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    for r in results {
        r?;
    }
    sqlx::query("VACUUM ANALYZE ferry_outbox")
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn drain<P: Publisher + Clone + 'static>(
    pool: &PgPool,
    bus: &P,
    rows: u64,
    relays: usize,
    batch_size: usize,
) -> Result<f64, BoxError> {
    fill(pool, rows).await?;
    let options = RelayOptions {
        batch_size,
        ..RelayOptions::default()
    };
    let stores: Vec<TimedStore> = (0..relays)
        .map(|_| TimedStore::new(PgOutbox::new(pool.clone())))
        .collect();
    let started = Instant::now();
    let tasks: Vec<_> = stores
        .iter()
        .map(|store| {
            let relay = OutboxRelay::new(store.clone(), bus.clone()).with_options(options);
            tokio::spawn(async move { relay.drain().await })
        })
        .collect();
    let mut published = 0;
    for task in tasks {
        published += task.await??;
    }
    let elapsed = started.elapsed();
    let per_relay = |pick: fn(&TimedStore) -> &Arc<Mutex<Duration>>| -> f64 {
        stores
            .iter()
            .map(|s| pick(s).lock().map(|d| d.as_secs_f64()).unwrap_or(0.0))
            .sum::<f64>()
            / relays as f64
    };
    println!(
        "         ({relays} relay(s), batch {batch_size}: {:.1} s, of which claim {:.1} s, mark {:.1} s per relay)",
        elapsed.as_secs_f64(),
        per_relay(|s| &s.claim),
        per_relay(|s| &s.mark)
    );
    if published as u64 != rows {
        return Err(format!("the relays published {published} of {rows} rows").into());
    }
    Ok(rows as f64 / elapsed.as_secs_f64())
}

/// The rows' messages as raw lapin publishes them.
pub async fn raw_messages(
    pool: &PgPool,
) -> Result<Vec<(ShortString, BasicProperties, Vec<u8>)>, BoxError> {
    let rows =
        sqlx::query("SELECT routing_key, properties, headers, body FROM ferry_outbox ORDER BY seq")
            .fetch_all(pool)
            .await?;
    let mut messages = Vec::with_capacity(rows.len());
    for row in rows {
        let message = ferry_core::WireMessage {
            properties: serde_json::from_value(row.try_get("properties")?)?,
            headers: serde_json::from_value(row.try_get("headers")?)?,
            body: Vec::<u8>::new().into(),
        };
        let properties = ferry_rabbitmq::wire::to_amqp_properties(&message)?;
        let routing_key: String = row.try_get("routing_key")?;
        messages.push((
            ShortString::from(routing_key),
            properties,
            row.try_get::<Vec<u8>, _>("body")?,
        ));
    }
    Ok(messages)
}

/// Publishes with at most `window` unconfirmed; confirms awaited in batches of `window`
/// when `batched`, else as a sliding window.
pub async fn raw_lapin(
    channel: &lapin::Channel,
    exchange: &str,
    messages: &[(ShortString, BasicProperties, Vec<u8>)],
    window: usize,
    batched: bool,
) -> Result<f64, BoxError> {
    let exchange = ShortString::from(exchange.to_owned());
    let options = BasicPublishOptions {
        mandatory: true,
        immediate: false,
    };
    let settle = |c: Result<Confirmation, lapin::Error>| -> Result<(), BoxError> {
        match c? {
            Confirmation::Ack(None) => Ok(()),
            other => Err(format!("raw publish not confirmed: {other:?}").into()),
        }
    };
    let started = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    for (routing_key, properties, body) in messages {
        if in_flight.len() >= window {
            if batched {
                while let Some(c) = in_flight.next().await {
                    settle(c)?;
                }
            } else if let Some(c) = in_flight.next().await {
                settle(c)?;
            }
        }
        let confirm = channel
            .basic_publish(
                exchange.clone(),
                routing_key.clone(),
                options,
                body,
                properties.clone(),
            )
            .await?;
        in_flight.push(confirm);
    }
    while let Some(c) = in_flight.next().await {
        settle(c)?;
    }
    Ok(messages.len() as f64 / started.elapsed().as_secs_f64())
}
