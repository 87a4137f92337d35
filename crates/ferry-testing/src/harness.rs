//! [`TestHarness`]: hosts your application's consumers, relays and Mediator on the in-memory
//! transport or on RabbitMQ and PostgreSQL, records what happens, and waits until it settles.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use ferry_core::CancellationToken;
use ferry_core::{
    IntegrationEvent, OutboxStore,
    host::{Host, HostError, Stopped},
    mediator::{Mediator, MediatorBuilder},
    memory::MemoryBus,
};
use tokio::task::JoinHandle;

use crate::{
    ledger::{Ledger, OutboxPending, Pending},
    mediator::{RecordNotifications, RecordRequests},
    query::{Records, Seen},
    record::{Consumption, Outcome, Published, RequestRecord},
    store::TestStore,
    transport::{Backend, Inner, TestTransport},
};

/// How long [`TestHarness::wait_idle`] waits when no timeout was set: 10 s.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often [`TestHarness::wait_idle`] looks at the outbox between changes it is told of.
const OUTBOX_POLL: Duration = Duration::from_millis(10);

/// Why the harness failed.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The work did not settle in time; what was still moving.
    #[error("not idle after {after:?}; still pending: {pending}")]
    NotIdle {
        /// How long it waited.
        after: Duration,
        /// What was still moving.
        pending: Pending,
    },
    /// The backend asked for cannot be made (`FERRY_TEST_BACKEND` names an unknown one, or
    /// `rabbitmq` without the feature).
    #[error("{0}")]
    Config(String),
    /// A host the harness ran stopped with an error.
    #[error("a host stopped with an error")]
    Host(#[from] HostError),
    /// A host's task panicked.
    #[error("a host's task ended abnormally")]
    HostTask(#[source] tokio::task::JoinError),
    /// The broker failed (connecting, or deleting what the harness declared).
    #[cfg(feature = "rabbitmq")]
    #[error("RabbitMQ failed")]
    RabbitMq(#[from] ferry_rabbitmq::RabbitMqError),
    /// The database failed (creating, migrating or dropping the harness's database).
    #[cfg(feature = "rabbitmq")]
    #[error("PostgreSQL failed: {context}")]
    Database {
        /// What the harness was doing.
        context: &'static str,
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

#[cfg(feature = "rabbitmq")]
fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

type Running = (CancellationToken, JoinHandle<Result<Stopped, HostError>>);

/// A test harness for your handlers and flows; see the [crate docs](crate).
pub struct TestHarness {
    transport: TestTransport,
    store: TestStore,
    ledger: Arc<Ledger>,
    timeout: Duration,
    hosts: Mutex<Vec<Running>>,
    #[cfg(feature = "rabbitmq")]
    pub(crate) database: Option<crate::rabbitmq::Database>,
}

impl std::fmt::Debug for TestHarness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestHarness")
            .field("transport", &self.transport)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl TestHarness {
    /// A harness on a fresh in-memory bus (events exchange `ferry-test.events`) and fresh
    /// in-memory outbox and inbox. Retries wait on tokio's clock: under a paused clock
    /// (`#[tokio::test(start_paused = true)]`) their delays pass at once.
    pub fn memory() -> Self {
        let bus = MemoryBus::new("ferry-test.events");
        Self::assemble(Backend::Memory(bus), String::new(), TestStore::memory())
    }

    /// A harness on the backend `FERRY_TEST_BACKEND` names: `memory` (the default, also when
    /// unset or empty) or `rabbitmq` (feature `rabbitmq`), which connects to
    /// `FERRY_TEST_AMQP_URL` (default `amqp://guest:guest@127.0.0.1:5672/%2f`) and creates
    /// its database through `FERRY_TEST_PG_URL` (default
    /// `postgres://postgres@127.0.0.1:5432/postgres`). One test, both backends: flip the
    /// variable.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ferry_testing::HarnessError> {
    /// // SAFETY: no other thread reads the environment in this example.
    /// unsafe { std::env::remove_var("FERRY_TEST_BACKEND") };
    /// let harness = ferry_testing::TestHarness::from_env().await?; // memory
    /// assert!(harness.transport().memory_bus().is_some());
    /// harness.shutdown().await?;
    /// # Ok(()) }
    /// ```
    pub async fn from_env() -> Result<Self, HarnessError> {
        let backend = std::env::var("FERRY_TEST_BACKEND").unwrap_or_default();
        match backend.as_str() {
            "" | "memory" => Ok(Self::memory()),
            #[cfg(feature = "rabbitmq")]
            "rabbitmq" => {
                let amqp = env_or(
                    "FERRY_TEST_AMQP_URL",
                    "amqp://guest:guest@127.0.0.1:5672/%2f",
                );
                let pg = env_or(
                    "FERRY_TEST_PG_URL",
                    "postgres://postgres@127.0.0.1:5432/postgres",
                );
                Self::rabbitmq(&amqp, &pg).await
            }
            #[cfg(not(feature = "rabbitmq"))]
            "rabbitmq" => Err(HarnessError::Config(
                "FERRY_TEST_BACKEND is `rabbitmq`, but ferry-testing was built without its \
                 `rabbitmq` feature"
                    .to_owned(),
            )),
            other => Err(HarnessError::Config(format!(
                "FERRY_TEST_BACKEND is `{other}`: expected `memory` or `rabbitmq`"
            ))),
        }
    }

    pub(crate) fn assemble(backend: Backend, suffix: String, store: TestStore) -> Self {
        let exchange = match &backend {
            Backend::Memory(bus) => bus.exchange().to_owned(),
            #[cfg(feature = "rabbitmq")]
            Backend::RabbitMq(bus) => bus.options().exchange().to_owned(),
        };
        let ledger = Arc::new(Ledger::new(&exchange));
        let transport = TestTransport {
            inner: Arc::new(Inner {
                backend,
                ledger: Arc::clone(&ledger),
                suffix,
                declared: Mutex::default(),
            }),
        };
        Self {
            transport,
            store,
            ledger,
            timeout: DEFAULT_IDLE_TIMEOUT,
            hosts: Mutex::default(),
            #[cfg(feature = "rabbitmq")]
            database: None,
        }
    }

    /// Sets how long [`TestHarness::wait_idle`] waits (default 10 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The transport to give your wiring code: consumers started on it are observed, messages
    /// published through it recorded.
    pub fn transport(&self) -> &TestTransport {
        &self.transport
    }

    /// The outbox and inbox to give your wiring code; [`TestHarness::wait_idle`] waits until
    /// its pending rows are published.
    pub fn store(&self) -> &TestStore {
        &self.store
    }

    /// A Mediator builder that records every request ([`TestHarness::requests`]) and
    /// notification ([`TestHarness::notifications`]); have your wiring code take the builder
    /// it registers its handlers on (production passes `Mediator::builder()`), and pass this
    /// one.
    pub fn mediator_builder(&self) -> MediatorBuilder {
        Mediator::builder()
            .behavior(RecordRequests(Arc::clone(&self.ledger)))
            .observe_notifications(RecordNotifications(Arc::clone(&self.ledger)))
    }

    /// Runs `host` (your consumers and relays, as production runs them) until
    /// [`TestHarness::shutdown`].
    pub fn run(&self, host: Host) {
        let stop = CancellationToken::new();
        let task = tokio::spawn(host.run(stop.clone().cancelled_owned()));
        self.hosts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((stop, task));
    }

    /// What is still moving now.
    pub async fn pending(&self) -> Pending {
        let outbox = match self.store.stats().await {
            Ok(stats) => OutboxPending::Rows(stats.pending),
            Err(e) => OutboxPending::Unknown(ferry_core::publisher::error_chain(&e)),
        };
        self.ledger.pending(outbox)
    }

    /// Waits until the work the test started has settled — the harness's outbox drained,
    /// nothing in process in any consumer, no retry waiting, every message published to a
    /// consumer's bindings settled by it (handled, skipped, or dead-lettered) — or fails after
    /// the harness's timeout with what is still pending.
    pub async fn wait_idle(&self) -> Result<(), HarnessError> {
        self.wait_idle_for(self.timeout).await
    }

    /// [`TestHarness::wait_idle`] with its own timeout.
    pub async fn wait_idle_for(&self, timeout: Duration) -> Result<(), HarnessError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.ledger.changed();
            let pending = self.pending().await;
            if pending.is_idle() {
                return Ok(());
            }
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep(OUTBOX_POLL) => {}
                () = tokio::time::sleep_until(deadline) => {
                    let pending = self.pending().await;
                    if pending.is_idle() {
                        return Ok(());
                    }
                    return Err(HarnessError::NotIdle { after: timeout, pending });
                }
            }
        }
    }

    /// Every message published through the harness's transport, oldest first.
    pub fn published_all(&self) -> Records<Published> {
        Records::new("published message", self.ledger.lock().published.clone())
    }

    /// The events of type `E` published, decoded.
    pub fn published<E: IntegrationEvent>(&self) -> Records<Seen<E, Published>> {
        let items = self
            .ledger
            .lock()
            .published
            .iter()
            .filter(|p| p.envelope.event_type == E::NAME)
            .filter_map(|p| {
                let event = p.event::<E>().ok()?;
                Some(Seen {
                    event,
                    record: p.clone(),
                })
            })
            .collect();
        Records::new(format!("published `{}`", E::NAME), items)
    }

    /// Every delivery consumed, whatever became of it, oldest first.
    pub fn consumptions(&self) -> Records<Consumption> {
        Records::new("consumption", self.ledger.lock().consumed.clone())
    }

    fn consumed_where<E: IntegrationEvent>(
        &self,
        what: &str,
        keep: impl Fn(&Outcome) -> bool,
    ) -> Records<Seen<E, Consumption>> {
        let items = self
            .ledger
            .lock()
            .consumed
            .iter()
            .filter(|c| c.event_type() == Some(E::NAME) && keep(&c.outcome))
            .filter_map(|c| {
                let event = c.event::<E>().ok()?;
                Some(Seen {
                    event,
                    record: c.clone(),
                })
            })
            .collect();
        Records::new(format!("{what} `{}`", E::NAME), items)
    }

    /// The events of type `E` handled successfully (one record per consumer that handled one).
    pub fn consumed<E: IntegrationEvent>(&self) -> Records<Seen<E, Consumption>> {
        self.consumed_where("consumed", |o| *o == Outcome::Handled)
    }

    /// The deliveries of `E` the inbox skipped as duplicates.
    pub fn duplicates<E: IntegrationEvent>(&self) -> Records<Seen<E, Consumption>> {
        self.consumed_where("duplicate", |o| *o == Outcome::Duplicate)
    }

    /// The deliveries of `E` that failed and were scheduled for a retry (one per attempt).
    pub fn retried<E: IntegrationEvent>(&self) -> Records<Seen<E, Consumption>> {
        self.consumed_where("retried", |o| matches!(o, Outcome::Retried { .. }))
    }

    /// Every message dead-lettered, with its fault (including those that could not be
    /// decoded).
    pub fn dead_lettered(&self) -> Records<Consumption> {
        let items = self
            .ledger
            .lock()
            .consumed
            .iter()
            .filter(|c| c.fault().is_some())
            .cloned()
            .collect();
        Records::new("dead letter", items)
    }

    /// Every Mediator request sent through a [`TestHarness::mediator_builder`] Mediator.
    pub fn requests_all(&self) -> Records<RequestRecord> {
        Records::new("Mediator request", self.ledger.lock().requests.clone())
    }

    /// The Mediator requests of type `R`.
    pub fn requests<R: 'static>(&self) -> Records<RequestRecord> {
        let name = std::any::type_name::<R>();
        let items = self
            .ledger
            .lock()
            .requests
            .iter()
            .filter(|r| r.type_name == name)
            .cloned()
            .collect();
        Records::new(format!("request `{name}`"), items)
    }

    /// Every Mediator notification published through a [`TestHarness::mediator_builder`]
    /// Mediator.
    pub fn notifications_all(&self) -> Records<RequestRecord> {
        Records::new(
            "Mediator notification",
            self.ledger.lock().notifications.clone(),
        )
    }

    /// The Mediator notifications of type `N`.
    pub fn notifications<N: 'static>(&self) -> Records<RequestRecord> {
        let name = std::any::type_name::<N>();
        let items = self
            .ledger
            .lock()
            .notifications
            .iter()
            .filter(|r| r.type_name == name)
            .cloned()
            .collect();
        Records::new(format!("notification `{name}`"), items)
    }

    /// Stops the hosts it runs (consumers first, then relays, as in production) and, on
    /// RabbitMQ, deletes the queues and exchanges your code declared through it and drops its
    /// database.
    pub async fn shutdown(self) -> Result<(), HarnessError> {
        let hosts = std::mem::take(&mut *self.hosts.lock().unwrap_or_else(|e| e.into_inner()));
        let mut result = Ok(());
        for (stop, task) in hosts {
            stop.cancel();
            match task.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => result = result.and(Err(HarnessError::Host(e))),
                Err(e) => result = result.and(Err(HarnessError::HostTask(e))),
            }
        }
        #[cfg(feature = "rabbitmq")]
        {
            let cleaned = crate::rabbitmq::clean_up(&self.transport, self.database).await;
            result = result.and(cleaned);
        }
        result
    }
}
