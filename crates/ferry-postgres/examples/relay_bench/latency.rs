//! Commit-to-confirmed-publish latency, and the broker's own, at a steady rate.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use ferry_core::{CancellationToken, IntegrationEvent, OutboxRelay, PublishOptions, RelayOptions};
use ferry_postgres::{PgOutbox, sqlx::PgPool};
use ferry_rabbitmq::RabbitMq;
use futures::{StreamExt, stream::FuturesUnordered};
use lapin::{BasicProperties, Confirmation, options::BasicPublishOptions, types::ShortString};

use super::support::*;

pub async fn latency(
    pool: &PgPool,
    bus: &RabbitMq,
    rate: u64,
    seconds: u64,
) -> Result<(), BoxError> {
    let outbox = PgOutbox::new(pool.clone());
    outbox.listen();
    let publisher = Timed {
        inner: bus.clone(),
        confirmed: Arc::default(),
    };
    let stop = CancellationToken::new();
    let store = TimedStore::new(outbox.clone());
    let relay = tokio::spawn(
        OutboxRelay::new(store.clone(), publisher.clone())
            .with_options(RelayOptions::default())
            .run(stop.clone()),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let warmup = rate; // one second
    let total = warmup + rate * seconds;
    let mut committed: Vec<(String, Instant)> = Vec::with_capacity(total as usize);
    let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    for n in 0..total {
        ticker.tick().await;
        let mut tx = pool.begin().await?;
        let id = outbox
            .add_with(&mut *tx, &event(n), PublishOptions::default())
            .await?;
        tx.commit().await?;
        committed.push((id, Instant::now()));
    }
    let produced_in = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = publisher.confirmed.lock().map(|c| c.len()).unwrap_or(0) as u64;
        if done >= total || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    relay.await??;

    let confirmed = publisher.confirmed.lock().map_err(|_| "poisoned")?.clone();
    let mut ms: Vec<f64> = committed
        .iter()
        .skip(warmup as usize)
        .filter_map(|(id, at)| {
            confirmed
                .get(id)
                .map(|c| c.saturating_duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    let missing = (total - warmup) as usize - ms.len();
    println!(
        "         ({} claims; claim {:.2} s, mark {:.2} s in all)",
        store.claims.load(std::sync::atomic::Ordering::Relaxed),
        store.claim.lock().map(|d| d.as_secs_f64()).unwrap_or(0.0),
        store.mark.lock().map(|d| d.as_secs_f64()).unwrap_or(0.0),
    );
    ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "latency  commit -> confirmed publish, {} events at {rate}/s (achieved {:.0}/s), LISTEN/NOTIFY, default RelayOptions",
        ms.len(),
        total as f64 / produced_in.as_secs_f64()
    );
    println!(
        "         p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms  (unconfirmed: {missing})",
        percentile(&ms, 50.0),
        percentile(&ms, 90.0),
        percentile(&ms, 99.0),
        ms.last().copied().unwrap_or(f64::NAN)
    );
    Ok(())
}

/// The broker alone, at the same rate: one persistent, mandatory message at a time, timed
/// from publish to confirm (raw lapin).
pub async fn broker_latency(
    channel: &lapin::Channel,
    exchange: &str,
    rate: u64,
    seconds: u64,
) -> Result<(), BoxError> {
    let exchange = ShortString::from(exchange.to_owned());
    let total = rate * seconds;
    let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut in_flight = FuturesUnordered::new();
    let mut ms = Vec::with_capacity(total as usize);
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into());
    for n in 0..total {
        tokio::select! {
            _ = ticker.tick() => {}
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                let (started, confirm): (Instant, Result<Confirmation, lapin::Error>) = done;
                confirm?;
                ms.push(started.elapsed().as_secs_f64() * 1000.0);
                continue;
            }
        }
        let body = serde_json::to_vec(&event(n))?;
        let started = Instant::now();
        let confirm = channel
            .basic_publish(
                exchange.clone(),
                OrderCreated::NAME.into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                &body,
                properties.clone(),
            )
            .await?;
        in_flight.push(async move { (started, confirm.await) });
    }
    while let Some((started, confirm)) = in_flight.next().await {
        confirm?;
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "         broker alone (raw lapin, publish -> confirm, {rate}/s): p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        percentile(&ms, 50.0),
        percentile(&ms, 99.0),
        ms.last().copied().unwrap_or(f64::NAN)
    );
    Ok(())
}
