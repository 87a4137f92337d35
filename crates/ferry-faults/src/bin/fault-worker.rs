//! The fault suite's worker process: `fault-worker relay` runs the outbox relay,
//! `fault-worker consume` the idempotent consumer (and a dead-letter consumer recording what
//! it gets), so a test can kill either one with SIGKILL.
//!
//! Settings come from `FAULT_*` variables ([`ferry_faults::WorkerSettings`]). The worker prints
//! `ready` on standard output once it runs, and stops gracefully when its standard input closes
//! (or on Ctrl-C). With `FERRY_FAULT_STOP_AFTER_CONFIRMED_BATCHES=N`, the relay prints
//! `confirmed-not-marked <n>` after its Nth confirmed batch and then hangs before marking it
//! published: the exact moment case 4 kills it. With `FERRY_FAULT_HANDED_EVENTS=N` the relay
//! worker also commits N events itself through its relay's outbox (handed over at commit), and
//! with `FERRY_FAULT_HANG_AFTER_BATCHES=N` its publishes hang, before sending anything, from the
//! Nth batch on: case 9 kills it then, with handed events waiting in its memory.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use async_trait::async_trait;
use ferry::{
    CancellationToken, ConsumerHandle, MessageContext, OutboxRelay, PublishError, RelayOptions,
    plumbing::{PublishBatch, PublishTransport},
    postgres::{PgInbox, PgOutbox},
    rabbitmq::RabbitMq,
};
use ferry_faults::{
    CONFIRMED_NOT_MARKED, HANDED, HANDED_EVENTS, HANG_AFTER_BATCHES, HANG_AFTER_COMMIT,
    HANG_BEFORE_COMMIT, ItemAdded, ItemFollowed, NODE, PUBLISHING_HUNG, READY,
    STOP_AFTER_CONFIRMED_BATCHES, TRANSACTIONAL, WorkerSettings, say,
    transactional::{ApplyItem, FailpointOutbox, Failpoints, RecordFollowUp},
};
use sqlx::postgres::PgPoolOptions;
use tokio::io::AsyncReadExt;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,lapin=warn,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mode = std::env::args().nth(1).unwrap_or_default();
    let settings = WorkerSettings::from_env()?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_stdin_close_or_ctrl_c(shutdown.clone()));
    match mode.as_str() {
        "relay" => relay(settings, shutdown).await,
        "consume" => consume(settings, shutdown).await,
        other => anyhow::bail!("usage: fault-worker relay|consume (got `{other}`)"),
    }
}

async fn stop_on_stdin_close_or_ctrl_c(shutdown: CancellationToken) {
    let stdin_closed = async {
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 64];
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    tokio::select! {
        _ = stdin_closed => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    shutdown.cancel();
}

/// Prints `node <url>` each time the connection is found on another node than before.
async fn report_node(bus: RabbitMq) {
    let mut last = None;
    loop {
        let node = bus.node();
        if node.is_some() && node != last {
            say(&format!("{NODE} {}", node.as_deref().unwrap_or_default()));
            last = node;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn pool(settings: &WorkerSettings, max: u32) -> anyhow::Result<sqlx::PgPool> {
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&settings.database_url)
        .await
        .context("connect to the database")
}

async fn relay(settings: WorkerSettings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool = pool(&settings, 4).await?;
    let bus = RabbitMq::connect(settings.rabbitmq_options("ferry-fault-relay"))
        .await
        .context("connect to the broker")?;
    tokio::spawn(report_node(bus.clone()));
    let number = |name: &str| -> anyhow::Result<Option<u64>> {
        match std::env::var(name) {
            Ok(n) => Ok(Some(n.parse::<u64>().context(name.to_owned())?)),
            Err(_) => Ok(None),
        }
    };
    let publisher = Failpoint {
        inner: bus.clone(),
        stop_after: number(STOP_AFTER_CONFIRMED_BATCHES)?,
        confirmed_batches: Arc::default(),
        hang_after: number(HANG_AFTER_BATCHES)?,
        batches: Arc::default(),
    };
    let handed_events = number(HANDED_EVENTS)?;
    let options = RelayOptions {
        batch_size: settings.batch_size,
        lease: settings.lease,
        poll_interval: Duration::from_millis(500),
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(2),
        ..RelayOptions::default()
    };
    let outbox = PgOutbox::new(pool.clone());
    let relay = OutboxRelay::new(outbox.clone(), publisher).with_options(options);
    if let Some(events) = handed_events {
        let producer_pool = self::pool(&settings, 4).await?;
        tokio::spawn(produce_handed(producer_pool, outbox, events));
    }
    say(READY);
    relay.run(shutdown).await?;
    bus.close().await;
    pool.close().await;
    Ok(())
}

/// Commits `events` events, one transaction each at about 1,000 a second, through the relay's
/// own outbox (so they are handed to the relay at commit); prints `handed <n>` every 100 events
/// that were inserted leased to the relay. A failed transaction is tried again.
async fn produce_handed(pool: sqlx::PgPool, outbox: PgOutbox, events: u64) {
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut handed = 0u64;
    for n in 0..events {
        ticker.tick().await;
        loop {
            match add_handed(&pool, &outbox, 1_000_000 + n).await {
                Ok(leased) => {
                    if leased {
                        handed += 1;
                        if handed % 100 == 0 {
                            say(&format!("{HANDED} {handed}"));
                        }
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "adding a handed event failed; trying again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

/// One event in its own transaction; whether it was inserted leased to the relay.
async fn add_handed(pool: &sqlx::PgPool, outbox: &PgOutbox, n: u64) -> anyhow::Result<bool> {
    let mut tx = outbox.transaction(pool.begin().await?);
    let id = tx.add(&ItemAdded { n }).await?;
    let leased: bool =
        sqlx::query_scalar("SELECT locked_by IS NOT NULL FROM ferry_outbox WHERE id = $1")
            .bind(&id)
            .fetch_one(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(leased)
}

/// Hands batches on to the real publisher; with a limit, hangs for good after the Nth batch
/// the broker confirmed, before the relay can mark its rows published; with `hang_after`,
/// hangs for good, before sending anything, from that batch on.
struct Failpoint<P> {
    inner: P,
    stop_after: Option<u64>,
    confirmed_batches: Arc<AtomicU64>,
    hang_after: Option<u64>,
    batches: Arc<AtomicU64>,
}

#[async_trait]
impl<P: PublishTransport> PublishTransport for Failpoint<P> {
    fn source(&self) -> Option<&str> {
        self.inner.source()
    }

    fn exchange(&self) -> Option<&str> {
        self.inner.exchange()
    }

    async fn send(&self, batch: PublishBatch) -> Vec<Result<(), PublishError>> {
        if let Some(limit) = self.hang_after {
            let batch = self.batches.fetch_add(1, Ordering::SeqCst) + 1;
            if batch >= limit {
                if batch == limit {
                    say(PUBLISHING_HUNG);
                }
                std::future::pending::<()>().await;
            }
        }
        let results = self.inner.send(batch).await;
        let confirmed = results.iter().filter(|r| r.is_ok()).count();
        if let Some(limit) = self.stop_after {
            if confirmed > 0 && self.confirmed_batches.fetch_add(1, Ordering::SeqCst) + 1 == limit {
                say(&format!("{CONFIRMED_NOT_MARKED} {confirmed}"));
                std::future::pending::<()>().await;
            }
        }
        results
    }
}

async fn consume(settings: WorkerSettings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool = pool(&settings, (settings.concurrency as u32).clamp(2, 16) + 2).await?;
    let inbox = PgInbox::new(pool.clone());
    let bus = RabbitMq::connect(settings.rabbitmq_options("ferry-fault-consumer"))
        .await
        .context("connect to the broker")?;
    tokio::spawn(report_node(bus.clone()));
    let dead_pool = pool.clone();
    let dead_letters = bus
        .dead_letter_consumer(settings.dead_letter_queue.clone())
        .exchange(settings.dead_letter_exchange.clone())
        .on_dead_letter(move |dead| {
            let pool = dead_pool.clone();
            async move {
                sqlx::query(
                    "INSERT INTO dead_letters (event_id, kind, message) VALUES ($1, $2, $3)",
                )
                .bind(dead.message_id())
                .bind(dead.fault.kind.as_str())
                .bind(&dead.fault.message)
                .execute(&pool)
                .await?;
                Ok(())
            }
        })
        .start()
        .await
        .context("start the dead-letter consumer")?;
    if std::env::var_os(TRANSACTIONAL).is_some() {
        return consume_transactional(settings, shutdown, pool, bus, dead_letters).await;
    }
    let (low, high) = settings.handler_delay_ms;
    let draws = Arc::new(AtomicU64::new(0));
    let handler_pool = pool.clone();
    let consumer: ConsumerHandle = bus
        .consumer(settings.queue.clone())
        .bind(<ItemAdded as ferry::IntegrationEvent>::NAME)
        .prefetch(settings.prefetch)
        .concurrency(settings.concurrency)
        .retry(ferry_faults::retry_policy())
        .dead_letter(settings.dead_letter_exchange.clone())
        .handle::<ItemAdded>(move |event: ItemAdded, ctx: MessageContext| {
            let (pool, inbox, draws) = (handler_pool.clone(), inbox.clone(), Arc::clone(&draws));
            async move {
                if high > 0 {
                    let draw = draws.fetch_add(1, Ordering::Relaxed);
                    let ms = low + spread(draw) % (high - low + 1);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                ferry_faults::apply(&pool, &inbox, &event, &ctx).await?;
                Ok(())
            }
        })
        .start()
        .await
        .context("start the consumer")?;
    say(READY);
    shutdown.cancelled().await;
    consumer.shutdown().await;
    dead_letters.shutdown().await;
    bus.close().await;
    pool.close().await;
    Ok(())
}

/// The transactional mode: ferry owns the handler's transaction; the handler's writes, its
/// inbox row and its follow-up event commit together. Follow-ups are consumed (transactionally
/// too) from their own queue and recorded in `followed`.
async fn consume_transactional(
    settings: WorkerSettings,
    shutdown: CancellationToken,
    pool: sqlx::PgPool,
    bus: RabbitMq,
    dead_letters: ConsumerHandle,
) -> anyhow::Result<()> {
    fn failpoint(name: &str) -> anyhow::Result<Option<u64>> {
        std::env::var(name)
            .ok()
            .map(|v| v.parse().with_context(|| format!("{name} is not a number")))
            .transpose()
    }
    let failpoints = Failpoints {
        hang_before_commit: failpoint(HANG_BEFORE_COMMIT)?,
        hang_after_commit: failpoint(HANG_AFTER_COMMIT)?,
    };
    let outbox = PgOutbox::new(pool.clone());
    let consumer = bus
        .consumer(settings.queue.clone())
        .bind(<ItemAdded as ferry::IntegrationEvent>::NAME)
        .prefetch(settings.prefetch)
        .concurrency(settings.concurrency)
        .retry(ferry_faults::retry_policy())
        .dead_letter(settings.dead_letter_exchange.clone())
        .handle_transactional(FailpointOutbox::new(outbox.clone(), failpoints), ApplyItem)
        .start()
        .await
        .context("start the consumer")?;
    let follow_ups = bus
        .consumer(settings.follow_up_queue())
        .bind(<ItemFollowed as ferry::IntegrationEvent>::NAME)
        .prefetch(settings.prefetch)
        .concurrency(settings.concurrency)
        .retry(ferry_faults::retry_policy())
        .dead_letter(settings.dead_letter_exchange.clone())
        .handle_transactional(outbox, RecordFollowUp)
        .start()
        .await
        .context("start the follow-up consumer")?;
    say(READY);
    shutdown.cancelled().await;
    consumer.shutdown().await;
    follow_ups.shutdown().await;
    dead_letters.shutdown().await;
    bus.close().await;
    pool.close().await;
    Ok(())
}

/// A cheap, well-spread number from a counter (splitmix64), for the handler's delays.
fn spread(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
