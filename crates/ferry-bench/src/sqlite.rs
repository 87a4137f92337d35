//! `relay_sqlite` and `consume_inbox_sqlite`: ferry's outbox relay and inbox consumer on a
//! SQLite file, each against raw sqlx (and raw lapin) on the same file, with the same
//! connection settings (`ferry::sqlite::connect_options`: WAL, `synchronous = NORMAL`; a pool
//! of [`POOL_SIZE`]). The file is in the temporary directory and removed when the run ends.
//!
//! - `relay_sqlite`: `OutboxRelay::drain` of N pending rows (added, not timed, in transactions
//!   of 500), against a raw loop over a table of N bodies: select the next batch (the relay's
//!   batch size) of unpublished rows, publish them with raw lapin (at most 1,000 unconfirmed),
//!   mark them published with one `UPDATE`.
//! - `consume_inbox_sqlite`: a ferry consumer with the SQLite inbox (a lookup before the no-op
//!   handler, a record after it), against raw lapin inserting each delivery's id with raw sqlx
//!   (`INSERT … ON CONFLICT DO NOTHING`, one transaction) before acking it.

use std::{sync::Arc, time::Instant};

use ferry::{
    HandlerError, MessageContext, OutboxRelay, PublishOptions, RelayOptions,
    sqlite::{SqliteInbox, SqliteOutbox, connect_options, migrate},
};
use sqlx::{SqlitePool, sqlite::SqlitePoolOptions};

use super::{
    About, Scenario,
    baseline::{self, RawMessage, RawPublisher, WINDOW},
    consume::{Counter, fill_queue},
    event::BenchEvent,
    harness::{Harness, short},
    probes::{RelayProbe, TimedInbox, TimedPublisher, TimedStore},
    publish::Payload,
    report::Measured,
    stats::rate,
};
use crate::error::BenchError;

/// Connections of each side's pool (as `ferry::sqlite::connect`).
const POOL_SIZE: u32 = 8;

/// Rows per transaction when filling a table.
const FILL_TRANSACTION: usize = 500;

const RELAY_KEY: &str = "bench.relay-sqlite";

fn db_error(what: &str) -> impl Fn(sqlx::Error) -> BenchError + '_ {
    move |e| BenchError::Runtime(format!("{what}: {e}"))
}

/// A new SQLite file of this run, migrated, with `raw_schema` created beside ferry's tables.
async fn open(harness: &Harness, what: &str, raw_schema: &str) -> Result<SqlitePool, BenchError> {
    let path = harness.temp_file(what);
    let url = format!("sqlite://{}", path.display());
    let options = connect_options(&url)
        .map_err(|e| BenchError::Runtime(format!("cannot open {}: {e}", path.display())))?;
    let pool = SqlitePoolOptions::new()
        .max_connections(POOL_SIZE)
        .connect_with(options)
        .await
        .map_err(|e| BenchError::Runtime(format!("cannot open {}: {e}", path.display())))?;
    migrate(&pool)
        .await
        .map_err(|e| BenchError::Runtime(format!("cannot migrate {}: {e}", path.display())))?;
    sqlx::query(raw_schema)
        .execute(&pool)
        .await
        .map_err(db_error("cannot create the raw table"))?;
    Ok(pool)
}

/// The `relay_sqlite` scenario.
pub struct RelaySqlite {
    pool: SqlitePool,
    payload: Payload,
    options: RelayOptions,
}

impl RelaySqlite {
    /// Opens the file and declares the queue the messages land on.
    pub async fn prepare(
        harness: &Harness,
        messages: u64,
        options: RelayOptions,
    ) -> Result<Self, BenchError> {
        let pool = open(
            harness,
            "relay",
            "CREATE TABLE raw_outbox (id INTEGER PRIMARY KEY, body BLOB NOT NULL, published INTEGER NOT NULL DEFAULT 0)",
        )
        .await?;
        Ok(Self {
            pool,
            payload: Payload::prepare(harness, "relay-sqlite", RELAY_KEY, messages).await?,
            options,
        })
    }

    async fn fill_outbox(&self, outbox: &SqliteOutbox) -> Result<(), BenchError> {
        let failed =
            |e: &dyn std::fmt::Display| BenchError::Runtime(format!("cannot fill the outbox: {e}"));
        for chunk in self.payload.events.chunks(FILL_TRANSACTION) {
            let mut tx = self.pool.begin().await.map_err(|e| failed(&e))?;
            for event in chunk {
                let options = PublishOptions {
                    routing_key: Some(RELAY_KEY.to_owned()),
                    ..PublishOptions::default()
                };
                outbox
                    .add_with(&mut tx, event, options)
                    .await
                    .map_err(|e| failed(&e))?;
            }
            tx.commit().await.map_err(|e| failed(&e))?;
        }
        Ok(())
    }

    async fn fill_raw(&self) -> Result<(), BenchError> {
        let failed = db_error("cannot fill the raw table");
        for chunk in self.payload.events.chunks(FILL_TRANSACTION) {
            let mut tx = self.pool.begin().await.map_err(&failed)?;
            for event in chunk {
                sqlx::query("INSERT INTO raw_outbox (body) VALUES (?)")
                    .bind(event.body()?)
                    .execute(&mut *tx)
                    .await
                    .map_err(&failed)?;
            }
            tx.commit().await.map_err(&failed)?;
        }
        Ok(())
    }

    /// The raw relay: select a batch, publish it, mark it, until none is left.
    async fn drain_raw(
        &self,
        harness: &Harness,
        publisher: &RawPublisher,
    ) -> Result<u64, BenchError> {
        let failed = db_error("the raw relay");
        let exchange = short(&harness.names.exchange)?;
        let key = short(RELAY_KEY)?;
        let batch = i64::try_from(self.options.batch_size.max(1)).unwrap_or(i64::MAX);
        let mut published = 0u64;
        loop {
            let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
                "SELECT id, body FROM raw_outbox WHERE published = 0 ORDER BY id LIMIT ?",
            )
            .bind(batch)
            .fetch_all(&self.pool)
            .await
            .map_err(&failed)?;
            let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
                return Ok(published);
            };
            let (first, last) = (first.0, last.0);
            let messages = rows
                .iter()
                .map(|(id, body)| RawMessage::plain(&key, *id as u64, body))
                .collect::<Result<Vec<_>, _>>()?;
            published += publisher.publish_all(&exchange, messages, WINDOW).await?;
            sqlx::query("UPDATE raw_outbox SET published = 1 WHERE id BETWEEN ? AND ?")
                .bind(first)
                .bind(last)
                .execute(&self.pool)
                .await
                .map_err(&failed)?;
        }
    }
}

const RELAY_ABOUT: About = About {
    name: "relay_sqlite",
    ferry: "OutboxRelay::drain of N pending rows in a SQLite file (WAL), confirmed",
    baseline: "raw sqlx + raw lapin on the same file: select a batch, publish it (1,000 unconfirmed at most), mark it with one UPDATE",
};

impl Scenario for RelaySqlite {
    fn about(&self) -> &'static About {
        &RELAY_ABOUT
    }

    async fn ferry(&mut self, harness: &Harness) -> Result<Measured, BenchError> {
        let outbox = SqliteOutbox::new(self.pool.clone());
        self.fill_outbox(&outbox).await?;
        let probe = RelayProbe::new();
        let relay = OutboxRelay::new(
            TimedStore::new(outbox, &probe),
            TimedPublisher::new(harness.bus.clone(), &probe),
        )
        .with_options(self.options);
        let started = Instant::now();
        let drained = relay.drain().await;
        let elapsed = started.elapsed();
        drop(relay);
        empty(&self.pool, "ferry_outbox").await?;
        let published =
            drained.map_err(|e| BenchError::Runtime(format!("the outbox relay failed: {e}")))?;
        let expected = self.payload.len();
        if published as u64 != expected {
            return Err(BenchError::Runtime(format!(
                "relay_sqlite: published {published} rows, {expected} expected"
            )));
        }
        self.payload.settle(harness).await?;
        Ok(Measured {
            breakdown: Some(probe.breakdown()),
            ..Measured::rate(rate(expected, elapsed))
        })
    }

    async fn baseline(&mut self, harness: &Harness) -> Result<Measured, BenchError> {
        self.fill_raw().await?;
        let publisher = RawPublisher::open(harness).await?;
        let started = Instant::now();
        let drained = self.drain_raw(harness, &publisher).await;
        let elapsed = started.elapsed();
        publisher.close().await;
        empty(&self.pool, "raw_outbox").await?;
        let published = drained?;
        self.payload.settle(harness).await?;
        Ok(Measured::rate(rate(published, elapsed)))
    }
}

/// The `consume_inbox_sqlite` scenario.
pub struct ConsumeInboxSqlite {
    pool: SqlitePool,
    queue: String,
    messages: u64,
    concurrency: usize,
}

impl ConsumeInboxSqlite {
    /// Opens the file and declares the queue (filled through the default exchange).
    pub async fn prepare(
        harness: &Harness,
        messages: u64,
        concurrency: usize,
    ) -> Result<Self, BenchError> {
        let pool = open(
            harness,
            "inbox",
            "CREATE TABLE raw_inbox (consumer TEXT NOT NULL, message_id TEXT NOT NULL, PRIMARY KEY (consumer, message_id))",
        )
        .await?;
        Ok(Self {
            pool,
            queue: harness.declare_queue("consume-inbox-sqlite", None).await?,
            messages,
            concurrency,
        })
    }
}

const INBOX_ABOUT: About = About {
    name: "consume_inbox_sqlite",
    ferry: "ferry consumer with the SQLite inbox (a lookup and a record per message), no-op handler, prefetch 200",
    baseline: "raw lapin + raw sqlx on the same file: INSERT the message id (ON CONFLICT DO NOTHING), then ack, one delivery at a time",
};

impl Scenario for ConsumeInboxSqlite {
    fn about(&self) -> &'static About {
        &INBOX_ABOUT
    }

    async fn ferry(&mut self, harness: &Harness) -> Result<Measured, BenchError> {
        fill_queue(harness, &self.queue, 0, self.messages).await?;
        let counter = Counter::new(self.messages);
        let handler = {
            let counter = Arc::clone(&counter);
            move |_event: BenchEvent, _ctx: MessageContext| {
                counter.hit();
                async { Ok::<(), HandlerError>(()) }
            }
        };
        let inbox = TimedInbox::new(SqliteInbox::new(self.pool.clone()));
        let builder = harness
            .consumer(&self.queue, self.concurrency)
            .handle::<BenchEvent>(handler)
            .skip_processed(inbox.clone());
        let consumer = harness.start(builder).await?;
        let span = counter.wait(self.name()).await;
        consumer.shutdown().await;
        let span = span?;
        let left = harness.ready(&self.queue).await?;
        empty(&self.pool, "ferry_inbox").await?;
        if left != 0 {
            harness.purge(&self.queue).await?;
            return Err(BenchError::Runtime(format!(
                "{}: {left} messages were not acked",
                self.name()
            )));
        }
        Ok(Measured {
            breakdown: Some(inbox.breakdown()),
            ..Measured::rate(span.per_s())
        })
    }

    async fn baseline(&mut self, harness: &Harness) -> Result<Measured, BenchError> {
        fill_queue(harness, &self.queue, 0, self.messages).await?;
        let pool = &self.pool;
        let queue = self.queue.clone();
        let span = baseline::consume_ack_after(harness, &self.queue, self.messages, |d, _| {
            let id = d
                .properties
                .message_id()
                .as_ref()
                .map(|id| id.as_str().to_owned());
            let queue = queue.clone();
            async move {
                let id = id.ok_or_else(|| {
                    BenchError::Runtime("consume_inbox_sqlite: a message without an id".into())
                })?;
                sqlx::query(
                    "INSERT INTO raw_inbox (consumer, message_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                )
                .bind(queue)
                .bind(id)
                .execute(pool)
                .await
                .map_err(db_error("the raw inbox"))?;
                Ok(())
            }
        })
        .await;
        empty(&self.pool, "raw_inbox").await?;
        Ok(Measured::rate(span?.per_s()))
    }
}

/// Deletes every row of `table`, so each round starts alike.
async fn empty(pool: &SqlitePool, table: &str) -> Result<(), BenchError> {
    sqlx::query(&format!("DELETE FROM {table}"))
        .execute(pool)
        .await
        .map_err(db_error("cannot empty a table"))?;
    Ok(())
}
