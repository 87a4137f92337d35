//! ferry's fault suite (test only, not published).
//!
//! `tests/faults.rs` pushes events through the PostgreSQL outbox, the relay, RabbitMQ and an
//! idempotent consumer while it breaks things (broker restart, connections closed, database
//! restart, relay and consumer processes killed, a network partition, a memory alarm, a slow
//! handler), then checks in the database that every event was applied exactly once.
//!
//! This library holds what the test and its worker process (`fault-worker`, which runs the
//! relay or the consumer as a process of its own so it can be killed) share: the event, the
//! tables the handler writes, the handler itself, and the worker's settings, passed through
//! the environment.
#![warn(missing_docs)]

pub mod transactional;

use std::{io::Write, time::Duration};

use ferry::{
    HandlerError, IntegrationEvent, MessageContext, QueueType, RetryPolicy, postgres::PgInbox,
    rabbitmq::RabbitMqOptions,
};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

/// The event every case carries: its number in the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, IntegrationEvent)]
#[event(name = "faults.item.added", version = 1)]
pub struct ItemAdded {
    /// The event's number in the run (events added again after an ambiguous commit repeat it;
    /// the id is what counts).
    pub n: u64,
}

/// What the transactional consumer emits, through the outbox in its transaction, for each
/// event it applies (the fault-worker's transactional mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, IntegrationEvent)]
#[event(name = "faults.item.followed", version = 1)]
pub struct ItemFollowed {
    /// The applied event's number.
    pub n: u64,
}

/// The tables the handler writes, next to ferry's own.
///
/// `applied` deliberately has no unique key on the event id: the inbox alone must keep an event
/// from being applied twice, and the check counts what it let through.
pub const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS applied (
        seq BIGSERIAL PRIMARY KEY,
        event_id TEXT NOT NULL,
        n BIGINT NOT NULL,
        attempt INT NOT NULL,
        redelivered BOOLEAN NOT NULL,
        applied_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())",
    "CREATE INDEX IF NOT EXISTS applied_event_id ON applied (event_id)",
    "CREATE TABLE IF NOT EXISTS absorbed (
        seq BIGSERIAL PRIMARY KEY,
        event_id TEXT NOT NULL,
        attempt INT NOT NULL,
        redelivered BOOLEAN NOT NULL,
        absorbed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())",
    "CREATE TABLE IF NOT EXISTS followed (
        seq BIGSERIAL PRIMARY KEY,
        event_id TEXT NOT NULL,
        causation_id TEXT NOT NULL,
        followed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())",
    // The events the producer added (the outbox also holds the follow-ups).
    "CREATE OR REPLACE VIEW items AS
        SELECT * FROM ferry_outbox WHERE event_type = 'faults.item.added'",
    "CREATE TABLE IF NOT EXISTS dead_letters (
        seq BIGSERIAL PRIMARY KEY,
        event_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        message TEXT NOT NULL,
        dead_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())",
];

/// Creates the handler's tables (ferry's own come from `ferry::postgres::migrate`).
pub async fn create_schema(pool: &PgPool) -> Result<(), sqlx::Error> {
    for statement in SCHEMA {
        sqlx::query(statement).execute(pool).await?;
    }
    Ok(())
}

/// The idempotent handler: the inbox record and the `applied` row commit in one transaction,
/// so a redelivered or duplicated event changes the database at most once. A duplicate is
/// recorded in `absorbed` (after the fact, on its own: it is bookkeeping for the report).
///
/// Returns whether the event was applied (`false`: a duplicate the inbox absorbed).
pub async fn apply(
    pool: &PgPool,
    inbox: &PgInbox,
    event: &ItemAdded,
    ctx: &MessageContext,
) -> Result<bool, HandlerError> {
    let mut tx = pool.begin().await?;
    if !inbox.try_insert_message(&mut tx, ctx).await? {
        tx.rollback().await?;
        sqlx::query("INSERT INTO absorbed (event_id, attempt, redelivered) VALUES ($1, $2, $3)")
            .bind(ctx.message_id())
            .bind(i32::try_from(ctx.attempt()).unwrap_or(i32::MAX))
            .bind(ctx.redelivered())
            .execute(pool)
            .await?;
        return Ok(false);
    }
    sqlx::query("INSERT INTO applied (event_id, n, attempt, redelivered) VALUES ($1, $2, $3, $4)")
        .bind(ctx.message_id())
        .bind(i64::try_from(event.n).unwrap_or(i64::MAX))
        .bind(i32::try_from(ctx.attempt()).unwrap_or(i32::MAX))
        .bind(ctx.redelivered())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// The consumer's retry policy: patient enough to outlast a database restart (eight retries,
/// 250 ms doubling to 4 s: about 20 s in all) before a message is dead-lettered.
pub fn retry_policy() -> RetryPolicy {
    RetryPolicy::exponential(8, Duration::from_millis(250)).max_delay(Duration::from_secs(4))
}

/// The delays of [`retry_policy`] in milliseconds: one retry queue each (`<queue>.retry.<ms>`).
pub const RETRY_DELAYS_MS: &[u64] = &[250, 500, 1000, 2000, 4000];

/// The environment variable that makes a relay worker stop, for good, right after its Nth
/// confirmed batch and before marking it published (case 4's failpoint). Read only by
/// `fault-worker`.
pub const STOP_AFTER_CONFIRMED_BATCHES: &str = "FERRY_FAULT_STOP_AFTER_CONFIRMED_BATCHES";

/// The line a relay worker prints when it reaches the failpoint.
pub const CONFIRMED_NOT_MARKED: &str = "confirmed-not-marked";

/// The line a worker prints once it is running.
pub const READY: &str = "ready";

/// The line a worker prints (`node <url>`, password hidden) whenever its broker connection is
/// on another node than before: the cluster suite kills the node a worker is on.
pub const NODE: &str = "node";

/// The environment variable that makes a relay worker also commit this many events itself,
/// one transaction each at about 1,000 a second, through `PgOutbox::begin` on the relay's own
/// outbox, so they are handed to its relay (case 9). Read only by `fault-worker`.
pub const HANDED_EVENTS: &str = "FERRY_FAULT_HANDED_EVENTS";

/// The environment variable that makes a relay worker's publishes hang for good, before
/// anything is sent, from its Nth batch on (case 9's failpoint). Read only by `fault-worker`.
pub const HANG_AFTER_BATCHES: &str = "FERRY_FAULT_HANG_AFTER_BATCHES";

/// The line a relay worker prints when its publishes start hanging.
pub const PUBLISHING_HUNG: &str = "publishing-hung";

/// The environment variable that runs the consumer worker as a transactional consumer
/// (`handle_transactional`): its handler writes `applied` and emits [`ItemFollowed`] through
/// the outbox in the transaction ferry began; a second transactional consumer on
/// [`WorkerSettings::follow_up_queue`] records each follow-up in `followed`. Any value turns
/// it on. Read only by `fault-worker`.
pub const TRANSACTIONAL: &str = "FERRY_FAULT_TRANSACTIONAL";

/// The environment variable that makes the transactional consumer worker hang for good at its
/// Nth commit, after the handler's writes and before the commit (case 10's failpoint). Read
/// only by `fault-worker`.
pub const HANG_BEFORE_COMMIT: &str = "FERRY_FAULT_HANG_BEFORE_COMMIT";

/// The environment variable that makes the transactional consumer worker hang for good right
/// after its Nth commit, before the ack (case 11's failpoint). Read only by `fault-worker`.
pub const HANG_AFTER_COMMIT: &str = "FERRY_FAULT_HANG_AFTER_COMMIT";

/// The line a consumer worker prints when it reaches a commit failpoint.
pub const COMMIT_HUNG: &str = "commit-hung";

/// The line a relay worker prints (`handed <n>`) each time another 100 of its own events were
/// inserted leased to its relay, that is, handed over at commit.
pub const HANDED: &str = "handed";

/// How a worker runs: where the services are, what to consume, and how patient to be. Passed
/// to `fault-worker` through `FAULT_*` environment variables.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSettings {
    /// The database (`postgres://…`).
    pub database_url: String,
    /// The broker (possibly through a proxy), or the nodes of a cluster, comma-separated.
    pub amqp_url: String,
    /// The events exchange.
    pub exchange: String,
    /// The consumer's queue.
    pub queue: String,
    /// The dead-letter exchange.
    pub dead_letter_exchange: String,
    /// The dead-letter queue.
    pub dead_letter_queue: String,
    /// The heartbeat: a dead connection is noticed after about twice this.
    pub heartbeat: Duration,
    /// How long a publish waits for its confirm.
    pub confirm_timeout: Duration,
    /// Rows the relay claims per batch.
    pub batch_size: usize,
    /// How long a relay's claim holds its rows.
    pub lease: Duration,
    /// The consumer's prefetch.
    pub prefetch: u16,
    /// The consumer's concurrent handlers.
    pub concurrency: usize,
    /// The handler sleeps between these two (milliseconds) before it applies the event.
    pub handler_delay_ms: (u64, u64),
    /// The consumers' queues (with their retry queues and the dead-letter queue) are quorum
    /// queues, replicated over a cluster's nodes.
    pub quorum: bool,
}

impl WorkerSettings {
    /// Settings for these services and names, with the suite's defaults: heartbeat 2 s,
    /// confirms within 5 s, batches of 200 leased for 10 s, prefetch 100, 8 handlers, no delay.
    pub fn new(
        database_url: impl Into<String>,
        amqp_url: impl Into<String>,
        exchange: impl Into<String>,
        queue: impl Into<String>,
    ) -> Self {
        let queue = queue.into();
        Self {
            database_url: database_url.into(),
            amqp_url: amqp_url.into(),
            exchange: exchange.into(),
            dead_letter_exchange: format!("{queue}.dlx"),
            dead_letter_queue: format!("{queue}.dlq"),
            queue,
            heartbeat: Duration::from_secs(2),
            confirm_timeout: Duration::from_secs(5),
            batch_size: 200,
            lease: Duration::from_secs(10),
            prefetch: 100,
            concurrency: 8,
            handler_delay_ms: (0, 0),
            quorum: false,
        }
    }

    /// The settings as `FAULT_*` environment variables.
    pub fn to_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("FAULT_DATABASE_URL", self.database_url.clone()),
            ("FAULT_AMQP_URL", self.amqp_url.clone()),
            ("FAULT_EXCHANGE", self.exchange.clone()),
            ("FAULT_QUEUE", self.queue.clone()),
            ("FAULT_DLX", self.dead_letter_exchange.clone()),
            ("FAULT_DLQ", self.dead_letter_queue.clone()),
            ("FAULT_HEARTBEAT_MS", millis(self.heartbeat)),
            ("FAULT_CONFIRM_TIMEOUT_MS", millis(self.confirm_timeout)),
            ("FAULT_BATCH_SIZE", self.batch_size.to_string()),
            ("FAULT_LEASE_MS", millis(self.lease)),
            ("FAULT_PREFETCH", self.prefetch.to_string()),
            ("FAULT_CONCURRENCY", self.concurrency.to_string()),
            (
                "FAULT_HANDLER_DELAY_MS",
                format!("{}-{}", self.handler_delay_ms.0, self.handler_delay_ms.1),
            ),
            ("FAULT_QUORUM", u8::from(self.quorum).to_string()),
        ]
    }

    /// Reads the settings [`WorkerSettings::to_env`] wrote.
    pub fn from_env() -> anyhow::Result<Self> {
        fn var(name: &str) -> anyhow::Result<String> {
            std::env::var(name).map_err(|_| anyhow::anyhow!("{name} is not set"))
        }
        fn number<T: std::str::FromStr>(name: &str) -> anyhow::Result<T> {
            var(name)?
                .parse()
                .map_err(|_| anyhow::anyhow!("{name} is not a number"))
        }
        let delay = var("FAULT_HANDLER_DELAY_MS")?;
        let (low, high) = delay
            .split_once('-')
            .ok_or_else(|| anyhow::anyhow!("FAULT_HANDLER_DELAY_MS is not `min-max`"))?;
        Ok(Self {
            database_url: var("FAULT_DATABASE_URL")?,
            amqp_url: var("FAULT_AMQP_URL")?,
            exchange: var("FAULT_EXCHANGE")?,
            queue: var("FAULT_QUEUE")?,
            dead_letter_exchange: var("FAULT_DLX")?,
            dead_letter_queue: var("FAULT_DLQ")?,
            heartbeat: Duration::from_millis(number("FAULT_HEARTBEAT_MS")?),
            confirm_timeout: Duration::from_millis(number("FAULT_CONFIRM_TIMEOUT_MS")?),
            batch_size: number("FAULT_BATCH_SIZE")?,
            lease: Duration::from_millis(number("FAULT_LEASE_MS")?),
            prefetch: number("FAULT_PREFETCH")?,
            concurrency: number("FAULT_CONCURRENCY")?,
            handler_delay_ms: (low.trim().parse()?, high.trim().parse()?),
            quorum: number::<u8>("FAULT_QUORUM")? != 0,
        })
    }

    /// The broker options for a worker (`name` is the connection name the broker shows).
    pub fn rabbitmq_options(&self, name: &str) -> RabbitMqOptions {
        RabbitMqOptions::new(self.amqp_url.clone())
            .with_exchange(self.exchange.clone())
            .with_connection_name(name)
            .with_heartbeat(self.heartbeat)
            .with_connect_timeout(Duration::from_secs(5))
            .with_confirm_timeout(self.confirm_timeout)
            .with_operation_timeout(Duration::from_secs(10))
            .with_publish_reconnect_wait(Duration::from_secs(2))
            .with_reconnect_backoff(Duration::from_millis(100), Duration::from_secs(2))
            .with_queue_type(if self.quorum {
                QueueType::Quorum
            } else {
                QueueType::Classic
            })
    }

    /// The queue the transactional mode's follow-up events are consumed from.
    pub fn follow_up_queue(&self) -> String {
        format!("{}.followups", self.queue)
    }

    /// Every queue the consumer declares (its queue, retry queues and dead-letter queue, the
    /// follow-up queue and its retry queues), for cleaning up.
    pub fn queues(&self) -> Vec<String> {
        let mut queues = vec![
            self.queue.clone(),
            self.dead_letter_queue.clone(),
            self.follow_up_queue(),
        ];
        queues.extend(
            RETRY_DELAYS_MS
                .iter()
                .map(|ms| format!("{}.retry.{ms}", self.follow_up_queue())),
        );
        queues.extend(
            RETRY_DELAYS_MS
                .iter()
                .map(|ms| format!("{}.retry.{ms}", self.queue)),
        );
        queues
    }

    /// Every exchange the workers declare, for cleaning up.
    pub fn exchanges(&self) -> Vec<String> {
        vec![self.exchange.clone(), self.dead_letter_exchange.clone()]
    }
}

fn millis(d: Duration) -> String {
    d.as_millis().to_string()
}

/// Prints a line for the test on standard output at once (the workers' failpoints).
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_queues_match_the_policy() {
        let policy = retry_policy();
        let mut delays: Vec<u64> = (2..=policy.max_retry_attempts + 1)
            .filter_map(|attempt| policy.delay_for(attempt))
            .map(|d| d.as_millis() as u64)
            .collect();
        delays.dedup();
        assert_eq!(delays, RETRY_DELAYS_MS);
    }
}
