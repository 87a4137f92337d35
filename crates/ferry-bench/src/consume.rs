//! `consume` and `consume_inbox`: a ferry consumer with a no-op handler (prefetch 200), with
//! and without the PostgreSQL inbox, against raw lapin consuming and acking each delivery.
//!
//! Before each side's round the queue is filled (not timed) with N messages in ferry's wire
//! format, the same for both sides. The rate counts from the first delivery to the last.
//!
//! `consume_inbox` also measures the database's own limit beside the inbox consumer: after each
//! of ferry's rounds, N one-row insert transactions (`BEGIN`, an `INSERT` into `ferry_inbox`,
//! `COMMIT`) on as many connections as the inbox consumer used at most (its pool's size: the
//! pool, as large as the bench's main pool, opens connections only when all are busy), on the
//! same pool, so the same connections, and the same database.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use ferry::{
    HandlerError, MessageContext,
    postgres::{PgInbox, sqlx::PgPool},
};
use tokio::sync::{Barrier, Notify};

use super::{
    About, Scenario,
    baseline::{self, RawMessage, RawPublisher, STALL_TIMEOUT, WINDOW},
    event::BenchEvent,
    harness::{Harness, short},
    probes::TimedInbox,
    report::{Measured, ScenarioResult},
    stats::{Span, median, rate},
};
use crate::error::BenchError;

/// Counts deliveries from handlers running at once, and wakes the waiter at the target.
pub struct Counter {
    target: u64,
    count: AtomicU64,
    first: OnceLock<Instant>,
    last: OnceLock<Instant>,
    done: Notify,
}

impl Counter {
    /// A counter that is done at `target`.
    pub fn new(target: u64) -> Arc<Self> {
        Arc::new(Self {
            target,
            count: AtomicU64::new(0),
            first: OnceLock::new(),
            last: OnceLock::new(),
            done: Notify::new(),
        })
    }

    /// Counts one; returns the count so far.
    pub fn hit(&self) -> u64 {
        let now = Instant::now();
        self.first.get_or_init(|| now);
        let count = self.count.fetch_add(1, Ordering::AcqRel) + 1;
        if count == self.target {
            let _ = self.last.set(now);
            self.done.notify_one();
        }
        count
    }

    /// How many so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// Waits for the target; fails (exit 3) when nothing was counted for [`STALL_TIMEOUT`].
    pub async fn wait(&self, what: &str) -> Result<Span, BenchError> {
        let mut seen = self.count();
        let mut last_progress = Instant::now();
        while self.count() < self.target {
            let _ = tokio::time::timeout(Duration::from_millis(500), self.done.notified()).await;
            let now = self.count();
            if now != seen {
                seen = now;
                last_progress = Instant::now();
            } else if last_progress.elapsed() > STALL_TIMEOUT {
                return Err(BenchError::Timeout(format!(
                    "{what}: {now} of {} messages after {} s without progress",
                    self.target,
                    STALL_TIMEOUT.as_secs()
                )));
            }
        }
        Ok(Span {
            count: self.count().min(self.target),
            first: self.first.get().copied(),
            last: self.last.get().copied(),
        })
    }
}

/// The `consume` scenario, or `consume_inbox` with the inbox on.
pub struct Consume {
    queue: String,
    messages: u64,
    concurrency: usize,
    inbox: bool,
    /// The inbox consumer's pool (kept across rounds, so its size is the most connections the
    /// inbox needed at once).
    inbox_pool: Option<PgPool>,
    /// PostgreSQL's own commit rate in each round, and the connections it ran on.
    pg_commit: Vec<(Measured, u32)>,
}

impl Consume {
    /// Declares the queue (filled through the default exchange).
    pub async fn prepare(
        harness: &Harness,
        messages: u64,
        concurrency: usize,
        inbox: bool,
    ) -> Result<Self, BenchError> {
        if inbox {
            harness.database()?;
        }
        let queue = harness
            .declare_queue(if inbox { "consume-inbox" } else { "consume" }, None)
            .await?;
        let inbox_pool = if inbox {
            Some(harness.database()?.new_pool())
        } else {
            None
        };
        Ok(Self {
            queue,
            messages,
            concurrency,
            inbox,
            inbox_pool,
            pg_commit: Vec::new(),
        })
    }

    /// PostgreSQL's own rate of one-row insert transactions on the inbox's pool, on as many
    /// connections as the inbox used.
    async fn pg_commit(&mut self, harness: &Harness) -> Result<(), BenchError> {
        let Some(pool) = self.inbox_pool.clone() else {
            return Ok(());
        };
        let connections = pool.size().max(1);
        let per_s = commit_rate(&pool, connections, self.messages).await?;
        eprintln!(
            "bench: [{:>6.1} s] {}: PostgreSQL one-row insert transactions on {connections} connections: {}/s",
            harness.elapsed_s(),
            self.name(),
            crate::stats::thousands(per_s)
        );
        self.pg_commit.push((Measured::rate(per_s), connections));
        Ok(())
    }

    async fn fill(&self, harness: &Harness) -> Result<(), BenchError> {
        fill_queue(harness, &self.queue, 0, self.messages).await
    }
}

/// Puts events `from..to` on `queue` in ferry's wire format (raw lapin, confirmed).
pub async fn fill_queue(
    harness: &Harness,
    queue: &str,
    from: u64,
    to: u64,
) -> Result<(), BenchError> {
    let publisher = RawPublisher::open(harness).await?;
    let result = async {
        let key = short(queue)?;
        let default_exchange = short("")?;
        let mut seq = from;
        while seq < to {
            let end = (seq + 10 * WINDOW as u64).min(to);
            let encoded = (seq..end)
                .map(|i| BenchEvent::new(i).message(queue))
                .collect::<Result<Vec<_>, _>>()?;
            let messages = encoded
                .iter()
                .map(|m| RawMessage::wire(&key, m))
                .collect::<Result<Vec<_>, BenchError>>()?;
            publisher
                .publish_all(&default_exchange, messages, WINDOW)
                .await?;
            seq = end;
        }
        Ok(())
    }
    .await;
    publisher.close().await;
    result
}

const PLAIN: About = About {
    name: "consume",
    ferry: "ferry consumer, no-op handler, prefetch 200 (decode, pipeline, ack)",
    baseline: RAW_CONSUMER,
};

const WITH_INBOX: About = About {
    name: "consume_inbox",
    ferry: "ferry consumer with the PostgreSQL inbox (a lookup and a record per message, grouped across concurrent handlers), no-op handler, prefetch 200",
    baseline: RAW_CONSUMER,
};

const RAW_CONSUMER: &str = "raw lapin: basic.consume, prefetch 200, ack each delivery";

impl Scenario for Consume {
    fn about(&self) -> &'static About {
        if self.inbox { &WITH_INBOX } else { &PLAIN }
    }

    async fn ferry(&mut self, harness: &Harness) -> Result<Measured, BenchError> {
        self.fill(harness).await?;
        let counter = Counter::new(self.messages);
        let handler = {
            let counter = Arc::clone(&counter);
            move |_event: BenchEvent, _ctx: MessageContext| {
                counter.hit();
                async { Ok::<(), HandlerError>(()) }
            }
        };
        let mut builder = harness
            .consumer(&self.queue, self.concurrency)
            .handle::<BenchEvent>(handler);
        let inbox = if let Some(pool) = &self.inbox_pool {
            let inbox = TimedInbox::new(PgInbox::new(pool.clone()));
            builder = builder.skip_processed(inbox.clone());
            Some(inbox)
        } else {
            None
        };
        let consumer = harness.start(builder).await?;
        let span = counter.wait(self.name()).await;
        consumer.shutdown().await;
        let span = span?;
        let left = harness.ready(&self.queue).await?;
        if left != 0 {
            harness.purge(&self.queue).await?;
            return Err(BenchError::Runtime(format!(
                "{}: {left} messages were not acked",
                self.name()
            )));
        }
        if self.inbox {
            let pool = &harness.database()?.pool;
            sqlx::query("DELETE FROM ferry_inbox")
                .execute(pool)
                .await
                .map_err(|e| BenchError::Runtime(format!("cannot empty the inbox: {e}")))?;
        }
        let measured = Measured {
            breakdown: inbox.map(|i| {
                let mut breakdown = i.breakdown();
                if let Some(pool) = &self.inbox_pool {
                    breakdown.insert("connections", f64::from(pool.size()));
                }
                breakdown
            }),
            ..Measured::rate(span.per_s())
        };
        self.pg_commit(harness).await?;
        Ok(measured)
    }

    async fn baseline(&mut self, harness: &Harness) -> Result<Measured, BenchError> {
        self.fill(harness).await?;
        let span = baseline::consume_ack(harness, &self.queue, self.messages, |_, _| {}).await?;
        Ok(Measured::rate(span.per_s()))
    }

    fn result(
        &self,
        ferry: &[Measured],
        baseline: &[Measured],
        same_wire: &[Measured],
    ) -> ScenarioResult {
        let result = ScenarioResult::new(self.about(), ferry, baseline).with_same_wire(same_wire);
        if self.pg_commit.is_empty() {
            return result;
        }
        let rounds: Vec<Measured> = self.pg_commit.iter().map(|(m, _)| m.clone()).collect();
        let connections = median(
            &self
                .pg_commit
                .iter()
                .map(|(_, c)| f64::from(*c))
                .collect::<Vec<_>>(),
        );
        result.with_pg_commit(&rounds, connections.round() as u32)
    }
}

/// The consumer name of PostgreSQL's own inserts in `ferry_inbox`.
const PG_COMMIT_CONSUMER: &str = "ferry-bench-pg-commit";

/// `messages` transactions of one row each (`BEGIN`, `INSERT INTO ferry_inbox`, `COMMIT`), on
/// `connections` connections of `pool` at once (each taken before the clock starts); returns
/// transactions a second. The rows are deleted afterwards.
pub async fn commit_rate(
    pool: &PgPool,
    connections: u32,
    messages: u64,
) -> Result<f64, BenchError> {
    let failed = |e: sqlx::Error| BenchError::Runtime(format!("PostgreSQL's commit rate: {e}"));
    let next = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(Barrier::new(connections as usize + 1));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (pool, next, ready) = (pool.clone(), Arc::clone(&next), Arc::clone(&ready));
        workers.spawn(async move {
            let conn = pool.acquire().await;
            ready.wait().await;
            let mut conn = conn?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= messages {
                    return Ok::<(), sqlx::Error>(());
                }
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                sqlx::query("INSERT INTO ferry_inbox (consumer, message_id) VALUES ($1, $2)")
                    .bind(PG_COMMIT_CONSUMER)
                    .bind(i.to_string())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
        });
    }
    ready.wait().await;
    let started = Instant::now();
    let mut outcome = Ok(());
    while let Some(joined) = workers.join_next().await {
        let done = joined
            .map_err(|e| BenchError::Runtime(format!("PostgreSQL's commit rate: {e}")))
            .and_then(|r| r.map_err(failed));
        if outcome.is_ok() {
            outcome = done;
        }
    }
    let elapsed = started.elapsed();
    sqlx::query("DELETE FROM ferry_inbox WHERE consumer = $1")
        .bind(PG_COMMIT_CONSUMER)
        .execute(pool)
        .await
        .map_err(failed)?;
    outcome.map(|()| rate(messages, elapsed))
}
