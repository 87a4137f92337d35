//! One lifecycle for an application's ferry parts: its consumers, its outbox relays (which also
//! run the outbox's retention) and any background work of its own, started, watched and stopped
//! together.
//!
//! [`Host::run`] runs until its shutdown future completes (use [`shutdown_signal`] for Ctrl-C
//! and SIGTERM) or until a part stops on its own. Then it stops every part within one **drain
//! deadline**: consumers first (they stop taking deliveries, requeue what did not start and let
//! handlers in flight finish, so the follow-up events those handlers commit are in the outbox),
//! then relays and background work. A part still busy at the deadline is abandoned: its
//! deliveries stay unacked, and the broker delivers them again once the connection closes (at
//! process exit, or `close` on the transport); its claimed outbox rows are claimed again when
//! their lease runs out. Nothing is lost; the inbox absorbs the second delivery.
//!
//! [`HostHealth`] reports each part (running, stopped, failed, abandoned) and what the health
//! sources say (the transport's connection, outbox lag), for a readiness probe.
//!
//! ```
//! use std::time::Duration;
//! use ferry_core::{HandlerError, MessageContext, host::Host, memory::MemoryBus};
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Serialize, Deserialize, ferry_macros::IntegrationEvent)]
//! # #[event(name = "orders.order.created")]
//! # struct OrderCreated { order_id: String }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let bus = MemoryBus::new("app.events");
//! let consumer = bus
//!     .consumer("inventory.order-created")
//!     .bind("orders.order.created")
//!     .dead_letter("app.dlx")
//!     .handle::<OrderCreated>(|_: OrderCreated, _: MessageContext| async { Ok::<_, HandlerError>(()) })
//!     .start()
//!     .await?;
//! let host = Host::new()
//!     .drain_deadline(Duration::from_secs(10))
//!     .consumer("inventory.order-created", consumer)
//!     .health_source(bus.clone());
//! let health = host.health();
//! // In a service: `host.run(ferry_core::host::shutdown_signal()).await?`.
//! let stopped = host.run(async {}).await?;
//! assert!(stopped.abandoned().is_empty());
//! assert!(!health.report().health.is_healthy()); // everything has stopped
//! # Ok(()) }
//! ```

use std::{
    fmt,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::future::BoxFuture;
use serde::Serialize;
use tokio::{task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    ConsumerHandle, OutboxRelay, OutboxStore, Publisher,
    telemetry::{Health, HealthSource},
};

/// The drain deadline when none is set: 30 s.
pub const DEFAULT_DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// How often the host checks that its consumers still run.
const WATCH_INTERVAL: Duration = Duration::from_millis(250);

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ServiceFn =
    Box<dyn FnOnce(CancellationToken) -> BoxFuture<'static, Result<(), BoxError>> + Send>;

/// What kind of part a host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PartKind {
    /// A consumer (event or dead-letter).
    Consumer,
    /// An outbox relay (publishing, retention, outbox gauges).
    Relay,
    /// Background work of the application's own.
    Service,
}

/// Where a part is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "error", rename_all = "snake_case")]
pub enum PartState {
    /// Added, the host not running yet.
    Ready,
    /// Running.
    Running,
    /// Stopping: asked to stop, still finishing work in flight.
    Stopping,
    /// Stopped cleanly.
    Stopped,
    /// Ended with an error, or on its own while the host ran.
    Failed(String),
    /// Still busy at the drain deadline, and left: its work goes back to the broker or the
    /// outbox, to be done again.
    Abandoned,
}

/// One part as the host last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartReport {
    /// The name it was added with.
    pub name: String,
    /// What it is.
    pub kind: PartKind,
    /// Where it is.
    #[serde(flatten)]
    pub state: PartState,
}

/// Why [`Host::run`] failed.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A part stopped on its own while the host ran (the host then stopped the others).
    #[error("{kind:?} `{name}` stopped while the host was running")]
    PartStopped {
        /// The part's name.
        name: String,
        /// Its kind.
        kind: PartKind,
        /// Its error, when it returned one.
        #[source]
        source: Option<BoxError>,
    },
}

/// How [`Host::run`] ended: every part's last state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// The parts, in the order they were added.
    pub parts: Vec<PartReport>,
}

impl Stopped {
    /// The parts abandoned at the drain deadline.
    pub fn abandoned(&self) -> Vec<&PartReport> {
        self.parts
            .iter()
            .filter(|p| p.state == PartState::Abandoned)
            .collect()
    }
}

/// The health of a host's parts and of its health sources.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostReport {
    /// Each part.
    pub parts: Vec<PartReport>,
    /// What the sources and the consumers say ([`Health::consumers_running`] counts the
    /// consumers the host sees running).
    pub health: Health,
}

impl HostReport {
    /// Healthy: every part running and the sources healthy.
    pub fn is_healthy(&self) -> bool {
        self.health.is_healthy() && self.parts.iter().all(|p| p.state == PartState::Running)
    }
}

type Sources = Vec<Box<dyn HealthSource + Send + Sync>>;

/// A handle on a host's health, cheap to clone, readable while the host runs (from a
/// `/health` endpoint, say).
#[derive(Clone)]
pub struct HostHealth {
    parts: Arc<Mutex<Vec<PartReport>>>,
    sources: Arc<Mutex<Sources>>,
}

impl fmt::Debug for HostHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostHealth")
            .field("parts", &self.parts_now())
            .finish_non_exhaustive()
    }
}

impl HostHealth {
    fn parts_now(&self) -> Vec<PartReport> {
        self.parts.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Each part's state, and the health of the sources.
    pub fn report(&self) -> HostReport {
        let parts = self.parts_now();
        let mut health = Health::new();
        if let Ok(sources) = self.sources.lock() {
            for source in sources.iter() {
                source.report_health(&mut health);
            }
        }
        for part in parts.iter().filter(|p| p.kind == PartKind::Consumer) {
            health.consumers_total += 1;
            if part.state == PartState::Running {
                health.consumers_running += 1;
            }
        }
        HostReport { parts, health }
    }

    fn set(&self, index: usize, state: PartState) {
        if let Ok(mut parts) = self.parts.lock() {
            if let Some(part) = parts.get_mut(index) {
                part.state = state;
            }
        }
    }
}

enum Runner {
    Consumer(ConsumerHandle),
    Service(ServiceFn),
}

/// An application's consumers, relays and background work under one lifecycle; see the
/// [module docs](self).
#[must_use = "a host does nothing until `run` is awaited; dropping it leaves its consumers running with no one to stop them"]
pub struct Host {
    runners: Vec<Runner>,
    drain_deadline: Duration,
    health: HostHealth,
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("drain_deadline", &self.drain_deadline)
            .field("parts", &self.health.parts_now())
            .finish_non_exhaustive()
    }
}

impl Default for Host {
    fn default() -> Self {
        Self::new()
    }
}

impl Host {
    /// A host with no parts and the default drain deadline (30 s).
    pub fn new() -> Self {
        Self {
            runners: Vec::new(),
            drain_deadline: DEFAULT_DRAIN_DEADLINE,
            health: HostHealth {
                parts: Arc::new(Mutex::new(Vec::new())),
                sources: Arc::new(Mutex::new(Vec::new())),
            },
        }
    }

    /// Sets how long stopping may take; past it, work in flight is abandoned to redelivery.
    pub fn drain_deadline(mut self, deadline: Duration) -> Self {
        self.drain_deadline = deadline;
        self
    }

    fn add(mut self, name: impl Into<String>, kind: PartKind, runner: Runner) -> Self {
        if let Ok(mut parts) = self.health.parts.lock() {
            parts.push(PartReport {
                name: name.into(),
                kind,
                state: PartState::Ready,
            });
        }
        self.runners.push(runner);
        self
    }

    /// Adds a started consumer (from `.start()` on a consumer builder).
    pub fn consumer(self, name: impl Into<String>, consumer: ConsumerHandle) -> Self {
        self.add(name, PartKind::Consumer, Runner::Consumer(consumer))
    }

    /// Adds an outbox relay, started by [`Host::run`]; it also removes published rows past the
    /// store's retention and samples the outbox's gauges.
    pub fn relay<S, P>(self, name: impl Into<String>, relay: OutboxRelay<S, P>) -> Self
    where
        S: OutboxStore + 'static,
        P: Publisher + 'static,
    {
        self.service_of(name, PartKind::Relay, move |stop| async move {
            relay.run(stop).await.map_err(BoxError::from)
        })
    }

    /// Adds background work of the application's own, started by [`Host::run`]: `work` gets
    /// the token that is cancelled when the host stops, and should return soon after.
    pub fn service<F, Fut, E>(self, name: impl Into<String>, work: F) -> Self
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        self.service_of(name, PartKind::Service, move |stop| async move {
            work(stop).await.map_err(Into::into)
        })
    }

    fn service_of<F, Fut>(self, name: impl Into<String>, kind: PartKind, work: F) -> Self
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        let run: ServiceFn = Box::new(move |stop| Box::pin(work(stop)));
        self.add(name, kind, Runner::Service(run))
    }

    /// Adds a health source (the transport, for its connection) to [`HostHealth::report`].
    pub fn health_source(self, source: impl HealthSource + Send + Sync + 'static) -> Self {
        if let Ok(mut sources) = self.health.sources.lock() {
            sources.push(Box::new(source));
        }
        self
    }

    /// The handle on this host's health.
    pub fn health(&self) -> HostHealth {
        self.health.clone()
    }

    /// Runs every part until `shutdown` completes or a part stops on its own, then stops them
    /// all within the drain deadline. `Ok` when the shutdown was asked for; an error naming the
    /// part that stopped otherwise. Either way every part has been stopped or abandoned.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<Stopped, HostError> {
        let health = self.health.clone();
        let stop = CancellationToken::new();
        let mut consumers: Vec<(usize, ConsumerHandle)> = Vec::new();
        let mut services: Vec<(usize, JoinHandle<Result<(), BoxError>>)> = Vec::new();
        for (index, runner) in self.runners.into_iter().enumerate() {
            match runner {
                Runner::Consumer(handle) => consumers.push((index, handle)),
                Runner::Service(run) => {
                    services.push((index, tokio::spawn(run(stop.child_token()))))
                }
            }
            health.set(index, PartState::Running);
        }
        tracing::info!(
            consumers = consumers.len(),
            services = services.len(),
            "host running"
        );

        let failure = watch(&health, &consumers, &mut services, shutdown).await;
        let failed = failure_index(&failure);
        let deadline = Instant::now() + self.drain_deadline;
        tracing::info!(
            deadline_s = self.drain_deadline.as_secs_f64(),
            "host stopping"
        );

        // Consumers first, all at once: the follow-up events their handlers commit reach the
        // outbox before the relays stop.
        let stopping: Vec<_> = consumers
            .into_iter()
            .map(|(index, handle)| {
                health.set(index, PartState::Stopping);
                let health = health.clone();
                async move {
                    let state = if handle.is_finished() && failed == Some(index) {
                        None
                    } else if handle.shutdown_by(deadline).await {
                        Some(PartState::Stopped)
                    } else {
                        Some(PartState::Abandoned)
                    };
                    if let Some(state) = state {
                        health.set(index, state);
                    }
                }
            })
            .collect();
        futures::future::join_all(stopping).await;

        stop.cancel();
        for (index, mut task) in services {
            if failed == Some(index) {
                continue;
            }
            health.set(index, PartState::Stopping);
            let state = match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(Ok(Ok(()))) => PartState::Stopped,
                Ok(Ok(Err(e))) => PartState::Failed(e.to_string()),
                Ok(Err(e)) => PartState::Failed(e.to_string()),
                Err(_) => {
                    task.abort();
                    PartState::Abandoned
                }
            };
            health.set(index, state);
        }
        let parts = health.parts_now();
        for part in parts.iter().filter(|p| p.state == PartState::Abandoned) {
            tracing::warn!(part = %part.name, "abandoned at the drain deadline; its work will be done again");
        }
        tracing::info!("host stopped");
        match failure {
            None => Ok(Stopped { parts }),
            Some(f) => {
                let part = &parts[f.index];
                Err(HostError::PartStopped {
                    name: part.name.clone(),
                    kind: part.kind,
                    source: f.error,
                })
            }
        }
    }
}

struct Failure {
    index: usize,
    error: Option<BoxError>,
}

fn failure_index(failure: &Option<Failure>) -> Option<usize> {
    failure.as_ref().map(|f| f.index)
}

/// Waits for the shutdown, or for a part that stops on its own (recorded as failed).
async fn watch(
    health: &HostHealth,
    consumers: &[(usize, ConsumerHandle)],
    services: &mut [(usize, JoinHandle<Result<(), BoxError>>)],
    shutdown: impl Future<Output = ()>,
) -> Option<Failure> {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut ticker = tokio::time::interval(WATCH_INTERVAL);
    loop {
        let service_ended = async {
            if services.is_empty() {
                return futures::future::pending().await;
            }
            let (result, position, _) =
                futures::future::select_all(services.iter_mut().map(|(_, task)| task)).await;
            (position, result)
        };
        tokio::select! {
            biased;
            _ = &mut shutdown => return None,
            (position, result) = service_ended => {
                let index = services[position].0;
                let error: Option<BoxError> = match result {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e),
                    Err(e) => Some(Box::new(e)),
                };
                let text = error.as_ref().map_or_else(|| "returned".to_owned(), ToString::to_string);
                tracing::error!(part = index, error = %text, "a host part stopped on its own; stopping the others");
                health.set(index, PartState::Failed(text));
                return Some(Failure { index, error });
            }
            _ = ticker.tick() => {
                if let Some((index, _)) = consumers.iter().find(|(_, c)| c.is_finished()) {
                    tracing::error!(part = index, "a consumer stopped on its own; stopping the others");
                    health.set(*index, PartState::Failed("the consumer stopped".into()));
                    return Some(Failure { index: *index, error: None });
                }
            }
        }
    }
}

/// Completes on Ctrl-C, or on SIGTERM on Unix: the shutdown future for [`Host::run`] in a
/// service. If the signal handlers cannot be installed it logs why and never completes (stop
/// the host another way).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            futures::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                futures::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = futures::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("Ctrl-C: shutting down"),
        _ = terminate => tracing::info!("SIGTERM: shutting down"),
    }
}
