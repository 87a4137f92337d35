//! The harness on RabbitMQ and PostgreSQL (feature `rabbitmq`): a random suffix on every
//! queue and exchange, a database of its own, and both removed by
//! [`TestHarness::shutdown`].

use std::str::FromStr;

use ferry_rabbitmq::{ExchangeKind, RabbitMq, RabbitMqOptions};
use ferry_sql::postgres::{
    PgInbox, PgOutbox,
    sqlx::{
        self, Connection, PgConnection,
        postgres::{PgConnectOptions, PgPool, PgPoolOptions},
    },
};

use crate::{
    HarnessError, TestHarness,
    store::TestStore,
    transport::{Backend, TestTransport},
};

/// The harness's own database.
pub(crate) struct Database {
    admin_url: String,
    name: String,
    pool: PgPool,
}

fn database_error(context: &'static str) -> impl FnOnce(sqlx::Error) -> HarnessError {
    move |e| HarnessError::Database {
        context,
        source: Box::new(e),
    }
}

impl TestHarness {
    /// A harness on RabbitMQ at `amqp_url` and on a new PostgreSQL database created through
    /// `postgres_url` (a connection allowed to `CREATE DATABASE`, such as
    /// `postgres://postgres@127.0.0.1:5432/postgres`), with ferry's tables migrated.
    ///
    /// Every queue and exchange your code names gets the harness's random suffix on the
    /// broker (its events exchange is `ferry-test.events.<suffix>`), so tests sharing one
    /// broker never meet; [`TestHarness::shutdown`] deletes them and drops the database.
    /// Retry delays are real here: RabbitMQ's retry queues hold the copies.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), ferry_testing::HarnessError> {
    /// let harness = ferry_testing::TestHarness::rabbitmq(
    ///     "amqp://guest:guest@127.0.0.1:5672/%2f",
    ///     "postgres://postgres@127.0.0.1:5432/postgres",
    /// )
    /// .await?;
    /// // … wire, run, publish, `harness.wait_idle().await?`, assert …
    /// harness.shutdown().await?;
    /// # Ok(()) }
    /// ```
    pub async fn rabbitmq(amqp_url: &str, postgres_url: &str) -> Result<Self, HarnessError> {
        let suffix = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let database = Database::create(postgres_url, &suffix).await?;
        let options = RabbitMqOptions::new(amqp_url)
            .with_exchange(format!("ferry-test.events.{suffix}"))
            .with_exchange_kind(ExchangeKind::Topic)
            .with_dead_letter_exchange(format!("ferry.dlx.{suffix}"));
        let bus = match RabbitMq::connect(options).await {
            Ok(bus) => bus,
            Err(e) => {
                let _ = database.drop().await;
                return Err(e.into());
            }
        };
        let store = TestStore::Postgres {
            outbox: PgOutbox::new(database.pool.clone()),
            inbox: PgInbox::new(database.pool.clone()),
        };
        let mut harness = Self::assemble(Backend::RabbitMq(bus), suffix, store);
        harness.database = Some(database);
        Ok(harness)
    }

    /// The harness's PostgreSQL pool, when it runs on RabbitMQ and PostgreSQL (for your own
    /// tables).
    pub fn postgres_pool(&self) -> Option<&PgPool> {
        self.database.as_ref().map(|d| &d.pool)
    }
}

impl Database {
    async fn create(postgres_url: &str, suffix: &str) -> Result<Self, HarnessError> {
        let name = format!("ferry_test_{suffix}");
        let mut admin = PgConnection::connect(postgres_url)
            .await
            .map_err(database_error("connect"))?;
        let created = sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .map_err(database_error("create the database"));
        let _ = admin.close().await;
        created?;
        match Self::open(postgres_url, &name).await {
            Ok(pool) => Ok(Self {
                admin_url: postgres_url.to_owned(),
                name,
                pool,
            }),
            Err(e) => {
                if let Err(dropped) = drop_database(postgres_url, &name).await {
                    tracing::warn!(database = %name, error = %dropped, "could not drop a test database");
                }
                Err(e)
            }
        }
    }

    /// Connects to the new database and migrates it.
    async fn open(postgres_url: &str, name: &str) -> Result<PgPool, HarnessError> {
        let options = PgConnectOptions::from_str(postgres_url)
            .map_err(database_error("parse the URL"))?
            .database(name);
        let pool = PgPoolOptions::new()
            .max_connections(5)
            .connect_with(options)
            .await
            .map_err(database_error("connect to the database"))?;
        if let Err(e) = ferry_sql::postgres::migrate(&pool).await {
            pool.close().await;
            return Err(HarnessError::Database {
                context: "migrate",
                source: Box::new(e),
            });
        }
        Ok(pool)
    }

    async fn drop(self) -> Result<(), HarnessError> {
        self.pool.close().await;
        drop_database(&self.admin_url, &self.name).await
    }
}

async fn drop_database(admin_url: &str, name: &str) -> Result<(), HarnessError> {
    let mut admin = PgConnection::connect(admin_url)
        .await
        .map_err(database_error("connect"))?;
    let dropped = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .map_err(database_error("drop the database"));
    let _ = admin.close().await;
    dropped.map(|_| ())
}

/// Deletes what the harness declared on the broker, closes the connection, drops the database.
pub(crate) async fn clean_up(
    transport: &TestTransport,
    database: Option<Database>,
) -> Result<(), HarnessError> {
    let mut result = Ok(());
    if let Some(bus) = transport.rabbitmq() {
        let declared = std::mem::take(
            &mut *transport
                .inner
                .declared
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for (queue, policy) in &declared.consumer_queues {
            if let Err(e) = bus.delete_consumer_queues(queue, policy).await {
                result = result.and(Err(e.into()));
            }
        }
        for queue in &declared.dead_letter_queues {
            if let Err(e) = bus.delete_queue(queue).await {
                result = result.and(Err(e.into()));
            }
        }
        let mut exchanges = declared.exchanges;
        exchanges.push(bus.options().exchange().to_owned());
        exchanges.extend(bus.options().dead_letter_exchange().map(str::to_owned));
        exchanges.sort();
        exchanges.dedup();
        for exchange in &exchanges {
            if let Err(e) = bus.delete_exchange(exchange).await {
                tracing::debug!(%exchange, error = %e, "could not delete a test exchange");
            }
        }
        bus.close().await;
    }
    if let Some(database) = database {
        result = result.and(database.drop().await);
    }
    result
}
