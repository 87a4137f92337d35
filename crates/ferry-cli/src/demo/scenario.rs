//! The seed's scenario, generic over the transport and the database.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use ferry::{
    CancellationToken, ConsumerHandle, MessageContext, OutboxRelay, Publisher, RelayOptions,
    RetryPolicy,
    host::{Host, HostError, Stopped, shutdown_signal},
    plumbing::{ConsumerBuilder, ConsumerHost, DeadLetterConsumerBuilder},
};
use tokio::{sync::Semaphore, task::JoinSet};

use super::{
    db::{DEAD_LETTER_QUEUE, DemoDb, INVENTORY_QUEUE, ORDERS_QUEUE, Progress},
    events::StockReserved,
    faults::FailurePlan,
    orders,
    progress::ProgressView,
    report::{Latency, Summary, round3},
};

/// The dead-letter exchange.
pub const DEAD_LETTER_EXCHANGE: &str = "myapp.dlx";

/// What a transport must do for the demo beyond publishing and consuming.
#[async_trait]
pub trait DemoTransport: Publisher + ConsumerHost + Clone + Send + Sync + 'static {
    /// Empties `queues`, in order, or deletes them (their consumers declare them again); a
    /// queue that does not exist has nothing to empty.
    async fn reset_queues(&self, queues: &[String]) -> anyhow::Result<()>;
}

#[async_trait]
impl DemoTransport for ferry::memory::MemoryBus {
    async fn reset_queues(&self, _queues: &[String]) -> anyhow::Result<()> {
        Ok(())
    }
}

/// How the run goes.
#[derive(Debug, Clone)]
pub struct Config {
    /// Orders to create.
    pub events: u64,
    /// Failure injection.
    pub plan: FailurePlan,
    /// The first retry delay.
    pub retry_delay: Duration,
    /// When to give up.
    pub timeout: Duration,
    /// Orders created at once.
    pub concurrency: usize,
    /// Orders a second, each due at its time on a steady schedule (`None`: all due at the
    /// start, a burst).
    pub rate_per_s: Option<f64>,
    /// Show a progress bar (a terminal) or plain lines.
    pub progress: ProgressView,
}

/// How the run ended.
#[derive(Debug)]
pub enum Outcome {
    /// Every order settled and the relay finished.
    Finished(Summary),
    /// The timeout passed first; the summary so far.
    TimedOut(Summary),
    /// Ctrl-C or SIGTERM came first; the summary so far.
    Interrupted(Summary),
}

impl Config {
    /// The retry policy of the demo's consumers.
    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::exponential(self.plan.max_retries, self.retry_delay)
    }
}

/// The queues a run empties at its start: the retry queues of the demo's consumers, as their
/// retry policy declares them, then the demo's own queues. Retry queues go first: a copy that
/// expires meanwhile comes back to a main queue that is emptied after it.
pub fn queues_to_reset(retry: &RetryPolicy) -> Vec<String> {
    let mut delays: Vec<Duration> = (2..=retry.max_retry_attempts.saturating_add(1))
        .filter_map(|attempt| retry.delay_for(attempt))
        .collect();
    delays.dedup();
    let mut queues: Vec<String> = [INVENTORY_QUEUE, ORDERS_QUEUE]
        .iter()
        .flat_map(|queue| {
            delays
                .iter()
                .map(|delay| ferry::rabbitmq::topology::retry_queue_name(queue, *delay))
        })
        .collect();
    queues.extend(super::DEMO_QUEUES.iter().map(|q| (*q).to_owned()));
    queues
}

/// Runs the scenario end to end.
pub async fn run<D: DemoDb, T: DemoTransport>(
    db: D,
    bus: T,
    config: Config,
) -> anyhow::Result<Outcome> {
    db.reset().await?;
    bus.reset_queues(&queues_to_reset(&config.retry_policy()))
        .await?;
    let shutdown = CancellationToken::new();

    let relay_options = RelayOptions {
        batch_size: 200,
        poll_interval: Duration::from_millis(500),
        ..RelayOptions::default()
    };
    // One lifecycle for the consumers and the relay: stopped together, within a drain deadline.
    let mut host = Host::new().drain_deadline(DRAIN_DEADLINE);
    for (name, consumer) in start_consumers(&db, &bus, &config).await? {
        host = host.consumer(name, consumer);
    }
    let host = host.relay(
        "outbox relay",
        OutboxRelay::new(db.outbox(), bus.clone()).with_options(relay_options),
    );
    let mut running = tokio::spawn(host.run(shutdown.clone().cancelled_owned()));

    let started = Instant::now();
    let deadline = started + config.timeout;
    let view = config.progress.start(config.events);

    // The orders context creates the orders through the Mediator, each when due: on a steady
    // schedule at `--rate`, else all at the start (a burst); at most `concurrency` at once.
    // Each order's wait from when it was due to its commit is noted: its queueing at the
    // producer.
    let mediator = orders::mediator(db.clone())?;
    let queueing = Arc::new(Mutex::new(Vec::new()));
    let creator = {
        let (events, rate) = (config.events, config.rate_per_s);
        let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
        let queueing = Arc::clone(&queueing);
        tokio::spawn(async move {
            let mut creating = JoinSet::new();
            let mut failure = None;
            for n in 1..=events {
                let due = schedule(started, n, rate);
                tokio::time::sleep_until(due.into()).await;
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                    break;
                };
                let (mediator, queueing) = (mediator.clone(), Arc::clone(&queueing));
                creating.spawn(async move {
                    let created = orders::create(&mediator, n).await;
                    let waited = due.elapsed().as_secs_f64() * 1000.0;
                    drop(slot);
                    if let Ok(mut q) = queueing.lock() {
                        q.push(waited);
                    }
                    created
                });
                while let Some(done) = creating.try_join_next() {
                    failure = failure.or(creation_failure(done));
                }
                if failure.is_some() {
                    break;
                }
            }
            while let Some(done) = creating.join_next().await {
                failure = failure.or(creation_failure(done));
            }
            failure
        })
    };

    let mut timed_out = false;
    let mut interrupted = false;
    let mut signal = std::pin::pin!(shutdown_signal());
    let mut last = Progress::default();
    let mut creation_done = false;
    let mut creator = Some(creator);
    loop {
        if creator.as_ref().is_some_and(|h| h.is_finished()) {
            let failure = match creator.take() {
                Some(handle) => match handle.await {
                    Ok(None) => None,
                    Ok(Some(e)) => Some(e),
                    Err(e) => Some(anyhow::Error::from(e)),
                },
                None => None,
            };
            if let Some(e) = failure {
                shutdown.cancel();
                stop(running).await;
                return Err(e.context("creating orders"));
            }
            creation_done = true;
        }
        match db.progress().await {
            Ok(p) => last = p,
            Err(e) => tracing::warn!(error = %e, "could not read progress"),
        }
        view.update(&last);
        if creation_done
            && last.created >= config.events
            && last.settled() >= config.events
            && last.outbox_pending == 0
        {
            break;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            break;
        }
        if running.is_finished() {
            // A part stopped on its own (the host stopped the others): nothing will settle.
            shutdown.cancel();
            return match (&mut running).await {
                Ok(Err(e)) => Err(anyhow::Error::from(e).context("the demo's consumers and relay")),
                Ok(Ok(_)) => Err(anyhow::anyhow!("the demo's consumers and relay stopped")),
                Err(e) => Err(anyhow::Error::from(e).context("the demo's host")),
            };
        }
        tokio::select! {
            () = &mut signal => {
                interrupted = true;
                break;
            }
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    let elapsed = started.elapsed();
    // On a timeout orders may still be being created: stop that first, so the totals below
    // are the orders the database keeps.
    if let Some(handle) = creator.take() {
        handle.abort();
        let _ = handle.await;
    }
    view.finish(&last);
    shutdown.cancel();
    stop(running).await;

    let totals = db.totals().await?;
    let elapsed_s = elapsed.as_secs_f64();
    let summary = Summary {
        orders_created: totals.orders,
        events_published: totals.events_published,
        reservations: totals.reservations,
        orders_confirmed: totals.confirmed,
        retries: totals.retries,
        dead_lettered: totals.dead_letters,
        duplicates_skipped: totals.duplicates_skipped,
        lost: totals.lost,
        elapsed_s: round3(elapsed_s),
        throughput_per_s: round3(
            (totals.confirmed + totals.dead_letters.min(totals.orders)) as f64
                / elapsed_s.max(1e-9),
        ),
        latency_ms: Latency::from_millis(totals.latencies_ms),
        rate_per_s: config.rate_per_s,
        queueing_ms: Latency::from_millis(queueing.lock().map(|q| q.clone()).unwrap_or_default()),
    };
    Ok(if interrupted {
        Outcome::Interrupted(summary)
    } else if timed_out {
        Outcome::TimedOut(summary)
    } else {
        Outcome::Finished(summary)
    })
}

/// When order `n` (from 1) is due: at `started` plus `(n - 1) / rate`, or at `started` for a
/// burst.
fn schedule(started: Instant, n: u64, rate_per_s: Option<f64>) -> Instant {
    match rate_per_s {
        Some(rate) if rate > 0.0 => {
            started + Duration::from_secs_f64(n.saturating_sub(1) as f64 / rate)
        }
        _ => started,
    }
}

/// The error of a finished order creation, if it failed.
fn creation_failure(
    done: Result<anyhow::Result<String>, tokio::task::JoinError>,
) -> Option<anyhow::Error> {
    match done {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e),
        Err(e) => Some(anyhow::Error::from(e)),
    }
}

/// How long the consumers and the relay may take to stop; work still in flight then is left
/// to the broker and the outbox, to be done by the next run.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

async fn stop(running: tokio::task::JoinHandle<Result<Stopped, HostError>>) {
    match running.await {
        Ok(Ok(stopped)) => {
            for part in stopped.abandoned() {
                tracing::warn!(part = %part.name, "still busy at the drain deadline; left to redelivery");
            }
        }
        Ok(Err(e)) => tracing::error!(error = %e, "a part of the demo failed"),
        Err(e) => tracing::error!(error = %e, "the demo's host task failed"),
    }
}

async fn start_consumers<D: DemoDb, T: DemoTransport>(
    db: &D,
    bus: &T,
    config: &Config,
) -> anyhow::Result<Vec<(&'static str, ConsumerHandle)>> {
    let retry = config.retry_policy();
    let mut handles = Vec::new();

    let dlq_db = db.clone();
    handles.push((
        "dead letters",
        DeadLetterConsumerBuilder::new(bus, DEAD_LETTER_QUEUE)
            .exchange(DEAD_LETTER_EXCHANGE)
            .on_dead_letter(move |dead| {
                let db = dlq_db.clone();
                async move { db.record_dead_letter(&dead).await.map(|_| ()) }
            })
            .start()
            .await?,
    ));

    handles.push((
        "inventory",
        inventory_consumer(bus, retry)
            // Exactly once in effect: ferry's transaction holds the inbox row, the reservation
            // and the follow-up event.
            .handle_transactional(db.outbox(), db.reserve_handler(config.plan))
            .start()
            .await?,
    ));

    let orders_db = db.clone();
    handles.push((
        "orders",
        orders_consumer(bus, retry)
            .handle::<StockReserved>(move |event: StockReserved, ctx: MessageContext| {
                let db = orders_db.clone();
                async move {
                    db.confirm(&event, &ctx).await?;
                    Ok(())
                }
            })
            .start()
            .await?,
    ));
    Ok(handles)
}

/// The inventory context's consumer as configured before its handler is registered (shared
/// by the run and by the demo's AsyncAPI document).
pub fn inventory_consumer<H: ConsumerHost>(bus: &H, retry: RetryPolicy) -> ConsumerBuilder<'_, H> {
    ConsumerBuilder::new(bus, INVENTORY_QUEUE)
        .bind("orders.order.created")
        .prefetch(10)
        .concurrency(10)
        .retry(retry)
        .dead_letter(DEAD_LETTER_EXCHANGE)
}

/// The orders context's consumer of `inventory.stock.reserved`, before its handler.
pub fn orders_consumer<H: ConsumerHost>(bus: &H, retry: RetryPolicy) -> ConsumerBuilder<'_, H> {
    ConsumerBuilder::new(bus, ORDERS_QUEUE)
        .bind("inventory.stock.reserved")
        .prefetch(10)
        .concurrency(10)
        .retry(retry)
        .dead_letter(DEAD_LETTER_EXCHANGE)
}
