//! The store suite, written once over the database (feature `store-suite`): every test is a
//! generic `async fn` over a [`Backend`] (a [`Dialect`] with a throw-away database and the few
//! statements whose SQL differs), and each database's test file runs them all with
//! [`store_suite_tests!`](crate::store_suite_tests).
//!
//! - [`store`]: the outbox store itself: migrations, rows, claims, leases, backoff,
//!   partitions, retry, retention, statistics.
//! - [`outbox`]: the outbox with the core relay and a recording publisher.
//! - [`inbox`]: idempotent handlers whose writes, inbox row and outbox events share one
//!   transaction.
//! - [`transactional`]: the transactional consumer on the real broker.
//! - [`rabbitmq`]: the relay publishing to the real broker.
//! - [`stalls`]: a broker that stops answering costs outbox rows no attempt.

// The tests are named for what they check; their names are their documentation.
#![allow(missing_docs, clippy::explicit_auto_deref)]

mod backends;
pub mod common;
pub mod inbox;
pub mod outbox;
pub mod rabbitmq;
pub mod stalls;
pub mod store;
pub mod transactional;

use std::{future::Future, time::Duration};

use async_trait::async_trait;
pub use ferry_sql::{Conn, Dialect, Pool, SqlInbox, SqlOutbox, Tx};

/// The outbox of backend `B`.
pub type Outbox<B> = SqlOutbox<B>;

/// A value bound to a statement of the suite's own.
#[derive(Debug, Clone)]
pub enum Arg {
    /// A text.
    Text(String),
    /// An integer.
    Int(i64),
}

impl From<&str> for Arg {
    fn from(value: &str) -> Self {
        Arg::Text(value.to_owned())
    }
}

impl From<String> for Arg {
    fn from(value: String) -> Self {
        Arg::Text(value)
    }
}

impl From<&String> for Arg {
    fn from(value: &String) -> Self {
        Arg::Text(value.clone())
    }
}

impl From<i64> for Arg {
    fn from(value: i64) -> Self {
        Arg::Int(value)
    }
}

/// What the suite needs from a database besides its [`Dialect`]: a throw-away database, and
/// the statements whose SQL differs between databases (times, above all).
#[async_trait]
pub trait Backend: Dialect {
    /// What keeps a database alive until [`Backend::drop`].
    type Guard: Send + Sync + 'static;

    /// Creates a database of its own; returns its URL.
    async fn create() -> (String, Self::Guard);

    /// A pool of at most `max` connections on the database at `url`.
    async fn pool(url: &str, max: u32) -> Pool<Self>;

    /// Drops the database at `url`.
    async fn drop(url: &str, guard: Self::Guard);

    /// Begins a transaction as an application should on this database.
    async fn begin_app(pool: &Pool<Self>) -> Result<Tx<Self>, sqlx::Error>;

    /// Runs a statement of the suite's own (`$1`, `$2` … bound to `args`); rows affected.
    async fn exec(conn: &mut Conn<Self>, sql: &str, args: Vec<Arg>) -> Result<u64, sqlx::Error>;

    /// Runs a statement on a connection of the pool.
    async fn exec_pool(pool: &Pool<Self>, sql: &str, args: Vec<Arg>) -> Result<u64, sqlx::Error>;

    /// The integers of the first row a query returns.
    async fn ints(pool: &Pool<Self>, sql: &str, args: Vec<Arg>) -> Result<Vec<i64>, sqlx::Error>;

    /// The first column of every row a query returns, as integers.
    async fn int_column(pool: &Pool<Self>, sql: &str) -> Result<Vec<i64>, sqlx::Error>;

    /// The status and attempts of an outbox row.
    async fn status_of(pool: &Pool<Self>, id: &str) -> (String, i64);

    /// Whether sqlx's own migrations table exists.
    async fn has_sqlx_migrations_table(pool: &Pool<Self>) -> bool;

    /// Seconds until a row's next attempt.
    async fn seconds_to_next_attempt(pool: &Pool<Self>, id: &str) -> f64;

    /// Moves the publication time of rows `age` into the past.
    async fn age_published(pool: &Pool<Self>, ids: &[String], age: Duration);

    /// Moves the creation time of a row `age` into the past.
    async fn age_created(pool: &Pool<Self>, id: &str, age: Duration);

    /// Pending rows whose lease has not run out.
    async fn leased_pending(pool: &Pool<Self>) -> i64;

    /// Moves a consumer's inbox records `age` into the past.
    async fn age_inbox(pool: &Pool<Self>, consumer: &str, age: Duration);
}

/// A migrated database of its own, dropped on [`TestDb::close`].
pub struct TestDb<B: Backend> {
    /// A pool on it.
    pub pool: Pool<B>,
    url: String,
    guard: B::Guard,
}

impl<B: Backend> TestDb<B> {
    /// A new database, migrated.
    pub async fn new() -> TestDb<B> {
        crate::init_tracing();
        let (url, guard) = B::create().await;
        let pool = B::pool(&url, 12).await;
        ferry_sql::migrate::<B>(&pool).await.unwrap();
        TestDb { pool, url, guard }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Another pool on the same database (a second "process").
    pub async fn other_pool(&self, max: u32) -> Pool<B> {
        B::pool(&self.url, max).await
    }

    /// Closes the pool and drops the database.
    pub async fn close(self) {
        self.pool.close().await;
        B::drop(&self.url, self.guard).await;
    }
}

/// Begins a transaction as an application would.
pub fn begin<B: Backend>(
    pool: &Pool<B>,
) -> impl Future<Output = Result<Tx<B>, sqlx::Error>> + Send + '_ {
    B::begin_app(pool)
}

/// Expands to one `#[tokio::test]` a suite test for the backend `$backend`, each calling the
/// suite's generic function of the same name: a database's test file is
/// `ferry_testkit::store_suite_tests!(Postgres);` and its own tests.
#[macro_export]
macro_rules! store_suite_tests {
    ($backend:ty) => {
        $crate::store_suite_tests!(@each $backend;
            store::migrations_run_once_even_when_started_concurrently,
            store::the_row_holds_exactly_what_is_sent,
            store::adding_the_same_id_twice_is_an_error_that_says_so,
            store::retry_all_dead_brings_back_every_dead_row,
            store::a_failed_row_backs_off_and_release_counts_no_attempt,
            store::a_partition_waits_for_its_failed_head,
            store::retention_deletes_only_old_published_rows_in_batches,
            store::an_outbox_keeping_no_history_deletes_rows_as_it_publishes_them,
            store::stats_and_list_report_the_table,
            outbox::a_rolled_back_transaction_publishes_nothing_and_a_committed_one_exactly_once,
            outbox::three_relays_drain_ten_thousand_rows_each_published_once,
            outbox::a_relay_hung_while_holding_its_claim_does_not_strand_its_rows,
            outbox::an_unavailable_broker_keeps_rows_pending_without_attempts_and_without_spinning,
            outbox::an_unpublishable_row_goes_dead_after_its_attempts_and_retry_brings_it_back,
            outbox::order_within_a_partition_holds_under_concurrent_relays,
            outbox::the_relay_removes_published_rows_past_retention,
            inbox::the_same_message_three_times_changes_the_database_once,
            inbox::two_copies_at_the_same_moment_change_the_database_once,
            inbox::a_handler_error_rolls_back_its_writes_its_events_and_the_inbox_row,
            inbox::events_added_by_a_handler_carry_correlation_and_causation,
            inbox::the_inbox_trait_records_once_and_cleanup_removes_old_records,
            inbox::run_retention_removes_records_past_the_retention,
            inbox::concurrent_inbox_calls_record_each_message_once_per_consumer,
            transactional::two_copies_of_a_message_handled_at_once_apply_once_and_emit_one_follow_up,
            transactional::a_failed_attempt_rolls_back_its_writes_and_follow_ups_and_the_retry_applies_once,
            transactional::a_panicking_attempt_rolls_back_its_writes_and_follow_ups_and_the_retry_applies_once,
            transactional::a_permanent_failure_is_dead_lettered_and_leaves_no_write_no_event_and_no_inbox_row,
            rabbitmq::a_rolled_back_transaction_publishes_nothing_and_a_committed_one_reaches_the_queue_once,
            rabbitmq::three_relays_drain_ten_thousand_rows_each_reaching_the_queue_once,
            rabbitmq::a_relay_with_more_batches_in_flight_than_connections_publishes_every_row_once,
            rabbitmq::a_relay_killed_holding_a_lease_leaves_its_rows_to_another,
            rabbitmq::an_unreachable_broker_keeps_rows_pending_and_the_relay_backs_off_until_it_is_back,
            rabbitmq::an_unroutable_row_goes_dead_and_retry_brings_it_back,
            rabbitmq::order_within_a_partition_holds_on_the_queue_under_concurrent_relays,
            stalls::a_partition_that_times_out_confirms_costs_no_attempts,
            stalls::a_broker_that_stops_reading_costs_no_attempts,
        );
    };
    (@each $backend:ty; $($module:ident :: $test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                $crate::store_suite::$module::$test::<$backend>().await;
            }
        )*
    };
}
