//! The seed's scenario, generic over the transport and the database.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use ferry::{
    CancellationToken, ConsumerHandle, MessageContext, OutboxRelay, Publisher, RelayOptions,
    RetryPolicy,
    host::{Host, HostError, Stopped, shutdown_signal},
    plumbing::{ConsumerBuilder, ConsumerHost, DeadLetterConsumerBuilder},
};
use futures::StreamExt;

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

    // The orders context creates the orders through the Mediator.
    let mediator = orders::mediator(db.clone())?;
    let creator = {
        let events = config.events;
        let concurrency = config.concurrency.max(1);
        tokio::spawn(async move {
            let mut results = futures::stream::iter(1..=events)
                .map(|n| {
                    let mediator = mediator.clone();
                    async move { orders::create(&mediator, n).await }
                })
                .buffer_unordered(concurrency);
            while let Some(result) = results.next().await {
                if let Err(e) = result {
                    return Some(e);
                }
            }
            None
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
    };
    Ok(if interrupted {
        Outcome::Interrupted(summary)
    } else if timed_out {
        Outcome::TimedOut(summary)
    } else {
        Outcome::Finished(summary)
    })
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
