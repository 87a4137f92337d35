//! What every scenario runs on: the names of this run (a random suffix), ferry's transport,
//! a raw lapin connection for the baselines, and a PostgreSQL database created for the run.
//! [`Harness::cleanup`] removes every queue, exchange and database the run made.

use std::{
    str::FromStr,
    sync::Mutex,
    time::{Duration, Instant},
};

use ferry::{
    CancellationToken, ConsumerHandle, QueueType, RetryPolicy,
    consumer::ConsumerBuilder,
    rabbitmq::{RabbitMq, RabbitMqOptions, redact_url},
};
use lapin::{
    Channel, Connection, ConnectionProperties,
    options::{
        ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
        QueuePurgeOptions,
    },
    types::{AMQPValue, FieldTable, LongString, ShortString},
};
use sqlx::{
    Connection as _, PgConnection, PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::{baseline::PREFETCH, error::BenchError};

/// The server `ferry bench` creates its database on when `--database-url` names none.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432";

/// Connections of the bench database's main pool (and of the inbox consumer's).
pub const POOL_SIZE: u32 = 24;

/// How long one broker or database operation may take before the bench gives up.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The names of one run: everything the bench creates carries its random suffix.
#[derive(Debug, Clone)]
pub struct Names {
    /// The random suffix.
    pub suffix: String,
    /// The events exchange (topic) ferry publishes to.
    pub exchange: String,
    /// The dead-letter exchange of ferry's consumers (nothing should reach it).
    pub dead_letter_exchange: String,
    /// The database (PostgreSQL identifier).
    pub database: String,
}

impl Names {
    /// New names with a fresh random suffix.
    pub fn random() -> Self {
        let suffix: String = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        Self {
            exchange: format!("ferry-bench-{suffix}.events"),
            dead_letter_exchange: format!("ferry-bench-{suffix}.dlx"),
            database: format!("ferry_bench_{suffix}"),
            suffix,
        }
    }

    /// A queue of this run.
    pub fn queue(&self, what: &str) -> String {
        format!("ferry-bench-{}.{what}", self.suffix)
    }
}

/// An AMQP short string, or a runtime error naming it.
pub fn short(value: &str) -> Result<ShortString, BenchError> {
    ShortString::try_new(value)
        .map_err(|_| BenchError::Runtime(format!("`{value}` is longer than 255 bytes")))
}

/// A runtime error for a failed broker operation.
pub fn amqp_error(what: &str, e: &lapin::Error) -> BenchError {
    BenchError::Runtime(format!("{what}: {e}"))
}

/// Runs `future` within [`OPERATION_TIMEOUT`]; a timeout is exit 3.
pub async fn timed<T>(
    what: &str,
    future: impl std::future::Future<Output = Result<T, BenchError>>,
) -> Result<T, BenchError> {
    tokio::time::timeout(OPERATION_TIMEOUT, future)
        .await
        .map_err(|_| {
            BenchError::Timeout(format!(
                "{what} took more than {} s",
                OPERATION_TIMEOUT.as_secs()
            ))
        })?
}

/// The database created for the run.
pub struct Database {
    /// A pool on it for the application side (adding to the outbox, the inbox).
    pub pool: PgPool,
    /// A pool of its own for the outbox relay, as a service runs it: the relay never waits
    /// behind the application's transactions for a connection.
    pub relay_pool: PgPool,
    /// The server's version.
    pub server_version: String,
    admin: PgConnectOptions,
    name: String,
}

impl Database {
    /// Checks `--database-url` (a PostgreSQL server URL) without connecting.
    pub fn options(url: Option<&str>) -> Result<PgConnectOptions, BenchError> {
        let url = url.unwrap_or(DEFAULT_DATABASE_URL);
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            let scheme = url.split(':').next().unwrap_or_default();
            return Err(BenchError::Usage(format!(
                "--database-url: ferry bench needs a PostgreSQL server (postgres://…), not `{scheme}:`"
            )));
        }
        PgConnectOptions::from_str(url).map_err(|e| {
            BenchError::Usage(format!(
                "--database-url: cannot read {}: {e}",
                redact_url(url)
            ))
        })
    }

    /// Creates the database `names.database` on the server and migrates it.
    async fn create(admin: PgConnectOptions, names: &Names) -> Result<Self, BenchError> {
        let unreachable = |e: sqlx::Error| {
            BenchError::Runtime(format!(
                "cannot reach PostgreSQL at {}:{}: {e}; start PostgreSQL or pass --database-url",
                admin.get_host(),
                admin.get_port()
            ))
        };
        let mut conn = PgConnection::connect_with(&admin)
            .await
            .map_err(unreachable)?;
        let created = sqlx::query(&format!("CREATE DATABASE {}", names.database))
            .execute(&mut conn)
            .await;
        let _ = conn.close().await;
        created.map_err(|e| {
            BenchError::Runtime(format!(
                "cannot create database {}: {e}; the user needs CREATEDB",
                names.database
            ))
        })?;
        let database = Self {
            pool: PgPoolOptions::new()
                .max_connections(POOL_SIZE)
                .acquire_timeout(OPERATION_TIMEOUT)
                .connect_lazy_with(admin.clone().database(&names.database)),
            relay_pool: PgPoolOptions::new()
                .max_connections(4)
                .acquire_timeout(OPERATION_TIMEOUT)
                .connect_lazy_with(admin.clone().database(&names.database)),
            server_version: String::new(),
            admin,
            name: names.database.clone(),
        };
        match database.prepare().await {
            Ok(version) => Ok(Self {
                server_version: version,
                ..database
            }),
            Err(e) => {
                database.drop_database().await;
                Err(e)
            }
        }
    }

    /// A new pool on the bench database, as large as the main one, that opens connections as
    /// they are needed (so its size tells how many its user needed at once).
    pub fn new_pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(OPERATION_TIMEOUT)
            .connect_lazy_with(self.admin.clone().database(&self.name))
    }

    async fn prepare(&self) -> Result<String, BenchError> {
        ferry::postgres::migrate(&self.pool)
            .await
            .map_err(|e| BenchError::Runtime(format!("cannot migrate the bench database: {e}")))?;
        sqlx::query_scalar("SHOW server_version")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| BenchError::Runtime(format!("cannot read the PostgreSQL version: {e}")))
    }

    /// Closes the pool and drops the database (sessions still open are ended).
    pub async fn drop_database(self) {
        self.relay_pool.close().await;
        self.pool.close().await;
        let dropped = async {
            let mut conn = PgConnection::connect_with(&self.admin).await?;
            let result = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn)
            .await;
            let _ = conn.close().await;
            result
        };
        match tokio::time::timeout(OPERATION_TIMEOUT, dropped).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => eprintln!(
                "bench: could not drop database {}: {e}; drop it by hand",
                self.name
            ),
            Err(_) => eprintln!(
                "bench: dropping database {} timed out; drop it by hand",
                self.name
            ),
        }
    }
}

/// Everything the scenarios share.
pub struct Harness {
    /// This run's names.
    pub names: Names,
    /// ferry's transport (its events exchange is [`Names::exchange`]).
    pub bus: RabbitMq,
    /// The raw lapin connection of the baselines.
    pub raw: Connection,
    /// The run's database, when a scenario needs one.
    pub db: Option<Database>,
    /// The type of every queue of the run.
    pub queue_type: QueueType,
    queues: Mutex<Vec<String>>,
    stoppers: Mutex<Vec<CancellationToken>>,
    files: Mutex<Vec<std::path::PathBuf>>,
    started: Instant,
}

/// The URL, of the comma-separated `nodes`, of the node ferry connected to (`node`, redacted):
/// on a cluster raw lapin must run on the same node as ferry (where each declares its queues,
/// and so places their leaders) for the ratio to compare like with like. The first when
/// ferry's node is unknown.
fn same_node<'a>(nodes: &'a str, node: Option<&str>) -> &'a str {
    let mut all = nodes.split(',').map(str::trim).filter(|u| !u.is_empty());
    let first = all.clone().next().unwrap_or(nodes);
    node.and_then(|node| all.find(|u| redact_url(u) == node))
        .unwrap_or(first)
}

impl Harness {
    /// Connects ferry and lapin to the broker and, when `database` is given, creates the
    /// run's database on that server. ferry's publisher gets at least `publisher_channels`
    /// confirm channels (one for each relay batch in flight).
    pub async fn open(
        amqp_url: &str,
        database: Option<PgConnectOptions>,
        publisher_channels: usize,
        queue_type: QueueType,
    ) -> Result<Self, BenchError> {
        let names = Names::random();
        let url = redact_url(amqp_url);
        let options = RabbitMqOptions::new(amqp_url.to_owned())
            .with_exchange(names.exchange.clone())
            .with_connection_name("ferry-bench")
            .with_source(super::event::SOURCE)
            .with_dead_letter_exchange(names.dead_letter_exchange.clone())
            .with_queue_type(queue_type)
            .with_connect_timeout(Duration::from_secs(10));
        let options = if publisher_channels > options.publisher_channels() {
            options.with_publisher_channels(publisher_channels)
        } else {
            options
        };
        let bus = RabbitMq::connect(options)
            .await
            .map_err(|e| BenchError::Runtime(format!("cannot reach RabbitMQ at {url}: {e}")))?;
        let properties =
            ConnectionProperties::default().with_connection_name("ferry-bench-lapin".into());
        let raw_url = same_node(amqp_url, bus.node().as_deref());
        let raw = match tokio::time::timeout(
            Duration::from_secs(10),
            Connection::connect(raw_url, properties),
        )
        .await
        {
            Ok(Ok(raw)) => raw,
            Ok(Err(e)) => {
                let e = BenchError::Runtime(format!("cannot reach RabbitMQ at {url}: {e}"));
                let _ = delete_exchange_with(&bus, &names.exchange).await;
                bus.close().await;
                return Err(e);
            }
            Err(_) => {
                let _ = delete_exchange_with(&bus, &names.exchange).await;
                bus.close().await;
                return Err(BenchError::Timeout(format!(
                    "connecting to RabbitMQ at {url} took more than 10 s"
                )));
            }
        };
        let mut harness = Self {
            names,
            bus,
            raw,
            db: None,
            queue_type,
            queues: Mutex::new(Vec::new()),
            stoppers: Mutex::new(Vec::new()),
            files: Mutex::new(Vec::new()),
            started: Instant::now(),
        };
        if let Some(admin) = database {
            match Database::create(admin, &harness.names).await {
                Ok(db) => harness.db = Some(db),
                Err(e) => {
                    harness.cleanup().await;
                    return Err(e);
                }
            }
        }
        Ok(harness)
    }

    /// The run's database, or an error saying a scenario needed one.
    pub fn database(&self) -> Result<&Database, BenchError> {
        self.db
            .as_ref()
            .ok_or_else(|| BenchError::Runtime("this scenario needs the bench database".into()))
    }

    /// Seconds since the harness opened (for progress lines).
    pub fn elapsed_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Remembers a consumer or relay to stop before the queues go (so nothing declares them
    /// again).
    pub fn track(&self, token: CancellationToken) {
        if let Ok(mut stoppers) = self.stoppers.lock() {
            stoppers.push(token);
        }
    }

    /// A path for a SQLite database file of this run in the temporary directory, removed (with
    /// its `-wal` and `-shm` files) at cleanup.
    pub fn temp_file(&self, what: &str) -> std::path::PathBuf {
        let path =
            std::env::temp_dir().join(format!("ferry-bench-{}-{what}.sqlite", self.names.suffix));
        if let Ok(mut files) = self.files.lock() {
            for end in ["", "-wal", "-shm"] {
                let mut name = path.clone().into_os_string();
                name.push(end);
                files.push(name.into());
            }
        }
        path
    }

    /// A ferry consumer of `queue` as every scenario runs one: prefetch [`PREFETCH`],
    /// `concurrency` handlers at once, no retries, this run's dead-letter exchange.
    pub fn consumer(&self, queue: &str, concurrency: usize) -> ConsumerBuilder<'_, RabbitMq> {
        self.bus
            .consumer(queue)
            .prefetch(PREFETCH)
            .concurrency(concurrency)
            .retry(RetryPolicy::none())
            .dead_letter(self.names.dead_letter_exchange.clone())
    }

    /// Starts a consumer from [`Harness::consumer`], stopped at cleanup if still running.
    pub async fn start(
        &self,
        consumer: ConsumerBuilder<'_, RabbitMq>,
    ) -> Result<ConsumerHandle, BenchError> {
        let handle = consumer
            .start()
            .await
            .map_err(|e| BenchError::Runtime(format!("cannot start the ferry consumer: {e}")))?;
        self.track(handle.cancellation().clone());
        Ok(handle)
    }

    /// A fresh channel on the raw connection.
    pub async fn raw_channel(&self) -> Result<Channel, BenchError> {
        timed("opening a channel", async {
            self.raw
                .create_channel()
                .await
                .map_err(|e| amqp_error("cannot open a channel", &e))
        })
        .await
    }

    /// Declares a durable queue of this run of its queue type (as ferry's consumers declare theirs),
    /// bound to the events exchange with `binding` when given; returns its name.
    pub async fn declare_queue(
        &self,
        what: &str,
        binding: Option<&str>,
    ) -> Result<String, BenchError> {
        let name = self.names.queue(what);
        if let Ok(mut queues) = self.queues.lock() {
            queues.push(name.clone());
        }
        let channel = self.raw_channel().await?;
        let result = timed("declaring a queue", async {
            // ferry declared the events exchange when it connected.
            let exchange = short(&self.names.exchange)?;
            let mut arguments = FieldTable::default();
            arguments.insert(
                "x-queue-type".into(),
                AMQPValue::LongString(LongString::from(self.queue_type.as_str())),
            );
            channel
                .queue_declare(
                    short(&name)?,
                    QueueDeclareOptions {
                        durable: true,
                        ..QueueDeclareOptions::default()
                    },
                    arguments,
                )
                .await
                .map_err(|e| amqp_error(&format!("cannot declare queue `{name}`"), &e))?;
            if let Some(key) = binding {
                channel
                    .queue_bind(
                        short(&name)?,
                        exchange,
                        short(key)?,
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .map_err(|e| amqp_error(&format!("cannot bind queue `{name}`"), &e))?;
            }
            Ok(())
        })
        .await;
        close_channel(&channel).await;
        result.map(|()| name)
    }

    /// Empties a queue of this run.
    pub async fn purge(&self, queue: &str) -> Result<(), BenchError> {
        let channel = self.raw_channel().await?;
        let result = timed("purging a queue", async {
            channel
                .queue_purge(short(queue)?, QueuePurgeOptions::default())
                .await
                .map_err(|e| amqp_error(&format!("cannot purge queue `{queue}`"), &e))
        })
        .await;
        close_channel(&channel).await;
        result.map(|_| ())
    }

    /// The messages ready on a queue of this run.
    pub async fn ready(&self, queue: &str) -> Result<u64, BenchError> {
        let (ready, _) = self.bus.queue_counts(queue).await.map_err(|e| {
            BenchError::Runtime(format!("cannot inspect queue `{queue}`: {}", e.report()))
        })?;
        Ok(u64::from(ready))
    }

    /// Stops what is still running, deletes the run's queues and exchanges, closes the
    /// connections and drops the database. Best effort: a failure is reported on stderr.
    pub async fn cleanup(mut self) {
        let stoppers = self
            .stoppers
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default();
        for token in stoppers {
            token.cancel();
        }
        // Let cancelled consumers finish their basic.cancel before their queue disappears.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let queues = self
            .queues
            .lock()
            .map(|mut q| std::mem::take(&mut *q))
            .unwrap_or_default();
        match self.raw_channel().await {
            Ok(channel) => {
                for queue in queues {
                    if let Ok(name) = short(&queue) {
                        let deleted = tokio::time::timeout(
                            OPERATION_TIMEOUT,
                            channel.queue_delete(name, QueueDeleteOptions::default()),
                        )
                        .await;
                        if !matches!(deleted, Ok(Ok(_))) {
                            eprintln!("bench: could not delete queue `{queue}`; delete it by hand");
                        }
                    }
                }
                for exchange in [&self.names.exchange, &self.names.dead_letter_exchange] {
                    if let Ok(name) = short(exchange) {
                        let deleted = tokio::time::timeout(
                            OPERATION_TIMEOUT,
                            channel.exchange_delete(name, ExchangeDeleteOptions::default()),
                        )
                        .await;
                        if !matches!(deleted, Ok(Ok(()))) {
                            eprintln!(
                                "bench: could not delete exchange `{exchange}`; delete it by hand"
                            );
                        }
                    }
                }
                close_channel(&channel).await;
            }
            Err(e) => eprintln!(
                "bench: {e}; delete the queues and exchanges named ferry-bench-{}.* by hand",
                self.names.suffix
            ),
        }
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            self.raw.close(200, "bench done".into()),
        )
        .await;
        self.bus.close().await;
        if let Some(db) = self.db.take() {
            db.drop_database().await;
        }
        let files = self
            .files
            .lock()
            .map(|mut f| std::mem::take(&mut *f))
            .unwrap_or_default();
        for file in files {
            match std::fs::remove_file(&file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    eprintln!("bench: could not remove {}: {e}", file.display());
                }
                _ => {}
            }
        }
    }
}

async fn delete_exchange_with(bus: &RabbitMq, exchange: &str) -> Result<(), BenchError> {
    bus.delete_exchange(exchange)
        .await
        .map_err(|e| BenchError::Runtime(e.to_string()))
}

/// Closes a channel, best effort.
pub async fn close_channel(channel: &Channel) {
    if channel.status().connected() {
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            channel.close(200, "bench done".into()),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::same_node;

    #[test]
    fn raw_lapin_goes_to_the_node_ferry_is_on() {
        let nodes = "amqp://u:secret@h1:5672/%2f, amqp://u:secret@h2:5672/%2f";
        assert_eq!(
            same_node(nodes, Some("amqp://u:***@h2:5672/%2f")),
            "amqp://u:secret@h2:5672/%2f"
        );
        assert_eq!(same_node(nodes, None), "amqp://u:secret@h1:5672/%2f");
        assert_eq!(
            same_node("amqp://localhost", Some("amqp://elsewhere")),
            "amqp://localhost"
        );
    }
}
