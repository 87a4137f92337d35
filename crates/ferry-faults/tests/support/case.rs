//! One fault case end to end: a database of its own, a consumer and a relay process, a producer
//! adding events to the outbox at a steady pace, then the wait, the checks and the report.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ferry::{
    postgres::PgOutbox,
    rabbitmq::{RabbitMq, RabbitMqOptions, TopologyMode},
};
use ferry_faults::{ItemAdded, WorkerSettings};
use ferry_testkit::{TcpProxy, pg::TempDatabase, unique_name};
use sqlx::{PgPool, postgres::PgPoolOptions};
use tokio::task::JoinHandle;

use super::{
    report::{CaseResult, FaultWindow, measure},
    services::ServicesGuard,
    worker::Worker,
};

/// Events per case.
pub const EVENTS: u64 = 10_000;

/// Events applied before the fault is injected (mid-stream).
pub const TRIGGER: i64 = 2_500;

/// How a case runs.
pub struct CaseSpec {
    pub name: &'static str,
    pub fault: &'static str,
    pub events: u64,
    /// Events the producer adds per second.
    pub rate_per_s: u64,
    /// Route the workers' broker connections through a [`TcpProxy`].
    pub via_proxy: bool,
    /// Adjusts the workers' settings.
    pub tune: fn(&mut WorkerSettings),
    /// Extra environment for the first relay process only.
    pub first_relay_env: Vec<(&'static str, String)>,
    /// Run the consumer as a transactional consumer emitting follow-ups
    /// ([`ferry_faults::TRANSACTIONAL`]).
    pub transactional: bool,
    /// Extra environment for the first consumer process only.
    pub first_consumer_env: Vec<(&'static str, String)>,
    /// The fault only makes the broker stop answering (a partition, a memory alarm): not the
    /// rows' fault, so no outbox row may have an attempt counted.
    pub costs_no_attempts: bool,
    /// The nodes of a cluster (comma-separated AMQP URLs) instead of the local broker; the
    /// consumer's queue is then a quorum queue.
    pub nodes: Option<String>,
}

impl CaseSpec {
    /// The environment every consumer process of the case gets.
    pub fn consumer_env(&self) -> Vec<(&'static str, String)> {
        if self.transactional {
            vec![(ferry_faults::TRANSACTIONAL, "1".to_owned())]
        } else {
            Vec::new()
        }
    }

    pub fn new(name: &'static str, fault: &'static str) -> Self {
        Self {
            name,
            fault,
            events: EVENTS,
            rate_per_s: 1_000,
            via_proxy: false,
            tune: |_| {},
            first_relay_env: Vec::new(),
            transactional: false,
            first_consumer_env: Vec::new(),
            costs_no_attempts: false,
            nodes: None,
        }
    }
}

/// A running case. Field order is drop order: the services are mended first, then the workers
/// are killed, the proxy stopped, the broker objects deleted and the database dropped.
pub struct Case {
    pub services: ServicesGuard,
    pub relay: Option<Worker>,
    pub consumer: Option<Worker>,
    pub proxy: Option<TcpProxy>,
    broker_cleanup: BrokerCleanup,
    producer: Option<JoinHandle<(u64, Duration)>>,
    pub pool: PgPool,
    db: Option<TempDatabase>,
    pub settings: WorkerSettings,
    pub spec: CaseSpec,
    started: DateTime<Utc>,
    window: Option<FaultWindow>,
    fault_began: Option<DateTime<Utc>>,
    pub notes: Vec<String>,
    /// An event whose `applied` rows [`Case::finish`] reports (as `watched_applied`).
    pub watched: Option<String>,
}

impl Case {
    /// Creates the database, starts the consumer and the relay, and starts adding events.
    pub async fn start(spec: CaseSpec) -> Case {
        ferry_testkit::init_tracing();
        let services = ServicesGuard::default();
        let db = TempDatabase::create()
            .await
            .expect("create a test database");
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect(db.url())
            .await
            .expect("connect to the test database");
        ferry::postgres::migrate(&pool).await.expect("migrate");
        ferry_faults::create_schema(&pool).await.expect("schema");

        let proxy = if spec.via_proxy {
            Some(
                TcpProxy::start(ferry_testkit::amqp::broker_addr())
                    .await
                    .expect("start the proxy"),
            )
        } else {
            None
        };
        let amqp_url = match (&proxy, &spec.nodes) {
            (Some(p), _) => ferry_testkit::amqp::amqp_url_via(p.addr()),
            (None, Some(nodes)) => nodes.clone(),
            (None, None) => ferry_testkit::amqp::url(),
        };
        let mut settings = WorkerSettings::new(
            db.url(),
            amqp_url,
            unique_name(&format!("faults.{}", spec.name)),
            unique_name(&format!("faults.{}", spec.name)),
        );
        settings.quorum = spec.nodes.is_some();
        (spec.tune)(&mut settings);
        let broker_cleanup = BrokerCleanup {
            url: spec.nodes.clone().unwrap_or_else(ferry_testkit::amqp::url),
            queues: settings.queues(),
            exchanges: settings.exchanges(),
        };
        let mut consumer_env = spec.consumer_env();
        consumer_env.extend(spec.first_consumer_env.iter().cloned());
        let consumer = Worker::start("consume", spec.name, &settings, &consumer_env).await;
        let relay = Worker::start("relay", spec.name, &settings, &spec.first_relay_env).await;
        let started = Utc::now();
        let producer = tokio::spawn(produce(db.url().to_owned(), spec.events, spec.rate_per_s));
        Case {
            services,
            relay: Some(relay),
            consumer: Some(consumer),
            proxy,
            broker_cleanup,
            producer: Some(producer),
            pool,
            db: Some(db),
            settings,
            spec,
            started,
            window: None,
            fault_began: None,
            notes: Vec::new(),
            watched: None,
        }
    }

    /// Waits until at least `n` events are applied.
    pub async fn wait_applied(&self, n: i64) {
        let started = Instant::now();
        loop {
            if self.applied().await.is_some_and(|a| a >= n) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "{}: fewer than {n} events applied after 120 s",
                self.spec.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `n` more events are applied than now (or every event, when fewer are left);
    /// returns how long that took, or `None` after `limit`. Panics when every event was applied
    /// already: the fault came too late to show anything.
    pub async fn wait_progress(&self, n: i64, limit: Duration) -> Option<Duration> {
        let started = Instant::now();
        let from = loop {
            if let Some(applied) = self.applied().await {
                break applied;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let all = i64::try_from(self.spec.events).unwrap_or(i64::MAX);
        assert!(
            from < all,
            "{}: all {all} events were applied before the fault took effect",
            self.spec.name
        );
        let goal = (from + n).min(all);
        while started.elapsed() < limit {
            if self.applied().await.is_some_and(|a| a >= goal) {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Distinct events applied so far (`None` while the database is unreachable).
    pub async fn applied(&self) -> Option<i64> {
        sqlx::query_scalar("SELECT count(DISTINCT event_id) FROM applied")
            .fetch_one(&self.pool)
            .await
            .ok()
    }

    /// Marks the start of the fault.
    pub fn fault_begins(&mut self) {
        self.fault_began = Some(Utc::now());
    }

    /// Marks the fault healed (its start, if not marked, is now too).
    pub fn healed(&mut self) {
        let healed = Utc::now();
        self.window = Some(FaultWindow {
            began: self.fault_began.unwrap_or(healed),
            healed,
        });
    }

    /// Waits until every row of `ids` is published (a killed relay's rows, taken by the new
    /// relay once its claims are gone or their lease runs out); returns how long that took.
    /// Fails after 120 s.
    pub async fn wait_published(&self, ids: &[String], what: &str) -> Duration {
        let started = Instant::now();
        loop {
            let left: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM ferry_outbox WHERE id = ANY($1) AND status <> 'published'",
            )
            .bind(ids)
            .fetch_one(&self.pool)
            .await
            .expect("read the outbox rows");
            if left == 0 {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "{left} {what} were never published"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every event is added and applied and the outbox is drained, stops the
    /// workers, measures, reports, cleans up, and asserts: nothing lost, nothing applied twice,
    /// nothing dead-lettered (and, for a broker that only stopped answering, no outbox row with
    /// an attempt counted).
    pub async fn finish(mut self) -> CaseResult {
        let producer = self.producer.take().expect("the producer");
        let (produced, producing) = tokio::time::timeout(Duration::from_secs(240), producer)
            .await
            .expect("the producer added every event within 240 s")
            .expect("the producer task");
        self.wait_drained().await;
        // Late duplicates (redeliveries of events already applied) show up now or never.
        tokio::time::sleep(Duration::from_secs(2)).await;
        for worker in [self.relay.take(), self.consumer.take()]
            .into_iter()
            .flatten()
        {
            worker.stop(Duration::from_secs(30)).await;
        }
        let mut result = measure(&self.pool, self.started, self.window)
            .await
            .expect("read the results");
        result.case = self.spec.name.to_owned();
        result.fault = self.spec.fault.to_owned();
        result.notes = std::mem::take(&mut self.notes);
        result.notes.push(format!(
            "{produced} events added in {:.1} s",
            producing.as_secs_f64()
        ));
        if let Some(id) = &self.watched {
            result.watched_applied = sqlx::query_as(
                "SELECT attempt, redelivered FROM applied WHERE event_id = $1 ORDER BY seq",
            )
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .expect("read the watched event's rows");
        }
        if self.spec.transactional {
            let (lost, twice): (i64, i64) = sqlx::query_as(super::report::FOLLOW_UPS)
                .fetch_one(&self.pool)
                .await
                .expect("read the follow-ups");
            result.follow_ups_lost = Some(lost);
            result.follow_ups_twice = Some(twice);
            result
                .notes
                .push(format!("follow-ups lost {lost}, emitted twice {twice}"));
        }
        result.passed = result.lost == 0
            && result.follow_ups_lost.unwrap_or(0) == 0
            && result.follow_ups_twice.unwrap_or(0) == 0
            && result.applied_twice == 0
            && result.strangers == 0
            && result.dead_lettered == 0
            && result.unpublished == 0
            && (!self.spec.costs_no_attempts || result.publish_attempts_failed == 0)
            && result.events >= self.spec.events as i64;
        result.publish();
        self.pool.close().await;
        if let Some(db) = self.db.take() {
            if let Err(e) = db.drop_db().await {
                eprintln!("{e}");
            }
        }
        self.broker_cleanup.run().await;
        assert!(result.events >= self.spec.events as i64, "{result:#?}");
        assert_eq!(result.lost, 0, "events lost: {result:#?}");
        assert_eq!(result.applied_twice, 0, "events applied twice: {result:#?}");
        assert_eq!(result.strangers, 0, "{result:#?}");
        assert_eq!(result.dead_lettered, 0, "events dead-lettered: {result:#?}");
        assert_eq!(result.unpublished, 0, "outbox rows left: {result:#?}");
        assert_eq!(
            result.follow_ups_lost.unwrap_or(0),
            0,
            "follow-ups lost: {result:#?}"
        );
        assert_eq!(
            result.follow_ups_twice.unwrap_or(0),
            0,
            "follow-ups emitted twice: {result:#?}"
        );
        if self.spec.costs_no_attempts {
            assert_eq!(
                result.publish_attempts_failed, 0,
                "a broker that stops answering raised outbox rows' attempts: {result:#?}"
            );
        }
        result
    }

    /// Waits until every outbox event is applied and no row is pending; fails when nothing
    /// moves for 90 s.
    async fn wait_drained(&self) {
        let mut last = (-1, -1);
        let mut last_change = Instant::now();
        loop {
            let counts: Result<(i64, i64), _> = sqlx::query_as(
                "SELECT
                   (SELECT count(*) FROM items o
                     WHERE NOT EXISTS (SELECT 1 FROM applied a WHERE a.event_id = o.id))
                   + CASE WHEN $1 THEN (SELECT count(*) FROM applied a
                       WHERE NOT EXISTS (SELECT 1 FROM followed f WHERE f.causation_id = a.event_id))
                     ELSE 0 END,
                   (SELECT count(*) FROM ferry_outbox WHERE status <> 'published')",
            )
            .bind(self.spec.transactional)
            .fetch_one(&self.pool)
            .await;
            if let Ok(counts) = counts {
                if counts == (0, 0) {
                    return;
                }
                if counts != last {
                    last = counts;
                    last_change = Instant::now();
                }
            }
            if last_change.elapsed() > Duration::from_secs(90) {
                let logs: Vec<String> = [&self.relay, &self.consumer]
                    .into_iter()
                    .flatten()
                    .map(|w| w.log_tail())
                    .collect();
                panic!(
                    "{}: stuck with {} events not applied and {} outbox rows not published\n{}",
                    self.spec.name,
                    last.0,
                    last.1,
                    logs.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Adds `total` events to the outbox, 100 per transaction, from four connections at once, at
/// about `rate` per second in all. A failed transaction (the database restarting) is tried again
/// after a pause: the events it may have committed anyway are simply more events. Returns the
/// events committed and how long adding them took.
async fn produce(url: String, total: u64, rate: u64) -> (u64, Duration) {
    let began = Instant::now();
    const PER_TX: u64 = 100;
    const STREAMS: u64 = 4;
    let pool = loop {
        match PgPoolOptions::new()
            .max_connections(STREAMS as u32)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&url)
            .await
        {
            Ok(pool) => break pool,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let outbox = PgOutbox::new(pool.clone());
    let period =
        Duration::from_millis(PER_TX * STREAMS * 1000 / rate.max(1)).max(Duration::from_millis(1));
    let mut streams = Vec::new();
    for stream in 0..STREAMS {
        let (pool, outbox) = (pool.clone(), outbox.clone());
        streams.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut committed = 0;
            let mut from = stream * PER_TX;
            while from < total {
                ticker.tick().await;
                let count = PER_TX.min(total - from);
                loop {
                    match add_batch(&pool, &outbox, from, count).await {
                        Ok(()) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "producer: adding events failed; trying again");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
                committed += count;
                from += PER_TX * STREAMS;
            }
            committed
        }));
    }
    let mut committed = 0;
    for stream in streams {
        committed += stream.await.unwrap_or(0);
    }
    let took = began.elapsed();
    pool.close().await;
    (committed, took)
}

async fn add_batch(pool: &PgPool, outbox: &PgOutbox, from: u64, count: u64) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    for n in from..from + count {
        outbox.add(&mut tx, &ItemAdded { n }).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Deletes the case's queues and exchanges (also when the case panicked).
struct BrokerCleanup {
    url: String,
    queues: Vec<String>,
    exchanges: Vec<String>,
}

impl BrokerCleanup {
    async fn run(&mut self) {
        let queues = std::mem::take(&mut self.queues);
        let exchanges = std::mem::take(&mut self.exchanges);
        if queues.is_empty() && exchanges.is_empty() {
            return;
        }
        let options = RabbitMqOptions::new(self.url.clone())
            .with_exchange("amq.topic")
            .with_connection_name("ferry-fault-cleanup")
            .with_topology(TopologyMode::Passive);
        let Ok(bus) = RabbitMq::connect(options).await else {
            eprintln!("fault suite: cannot connect to clean up {queues:?} {exchanges:?}");
            return;
        };
        for queue in &queues {
            let _ = bus.delete_queue(queue).await;
        }
        for exchange in &exchanges {
            let _ = bus.delete_exchange(exchange).await;
        }
        bus.close().await;
    }
}

impl Drop for BrokerCleanup {
    fn drop(&mut self) {
        if self.queues.is_empty() && self.exchanges.is_empty() {
            return;
        }
        let mut this = BrokerCleanup {
            url: self.url.clone(),
            queues: std::mem::take(&mut self.queues),
            exchanges: std::mem::take(&mut self.exchanges),
        };
        let done = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(this.run());
            }
        });
        let _ = done.join();
    }
}
