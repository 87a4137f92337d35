//! A health check on the bus: broker connection, consumers running, relay lag.

use std::time::Duration;

use serde::{Serialize, ser::SerializeStruct};

use crate::{ConsumerHandle, OutboxStats, memory::MemoryBus};

/// The default relay lag above which [`Health::is_healthy`] says no: 60 s.
pub const DEFAULT_MAX_RELAY_LAG: Duration = Duration::from_secs(60);

/// The state of a ferry application, for a readiness probe or a `/health` endpoint.
///
/// Start from [`Health::new`] and let each part report into it ([`Health::report`]): the
/// transport (connected), each [`ConsumerHandle`] (running or not), an [`OutboxStats`] sample
/// (relay lag). It serializes to JSON with `healthy` and `problems` added:
///
/// ```
/// use ferry_core::{OutboxStats, memory::MemoryBus, telemetry::Health};
/// let bus = MemoryBus::new("ferry.events");
/// let stats = OutboxStats { pending: 3, oldest_pending_age_s: Some(0.2), ..OutboxStats::default() };
/// let health = Health::new().report(&bus).report(&stats);
/// assert!(health.is_healthy());
/// let json = serde_json::to_value(&health).unwrap();
/// assert_eq!(json["healthy"], true);
/// assert_eq!(json["outbox_pending"], 3);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    /// Whether the transport holds a live connection to the broker.
    pub connected: bool,
    /// Consumers whose task is still running.
    pub consumers_running: usize,
    /// Consumers started.
    pub consumers_total: usize,
    /// Age of the oldest pending outbox row, in seconds (`None`: no sample, or none pending).
    pub relay_lag_seconds: Option<f64>,
    /// Pending outbox rows (`None`: no sample).
    pub outbox_pending: Option<u64>,
    /// The relay lag above which the application is unhealthy, in seconds.
    pub max_relay_lag_seconds: f64,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    /// Nothing reported yet: not connected, no consumers, no outbox sample, the default
    /// maximum relay lag.
    pub fn new() -> Self {
        Self {
            connected: false,
            consumers_running: 0,
            consumers_total: 0,
            relay_lag_seconds: None,
            outbox_pending: None,
            max_relay_lag_seconds: DEFAULT_MAX_RELAY_LAG.as_secs_f64(),
        }
    }

    /// Sets the relay lag above which the application is unhealthy.
    pub fn with_max_relay_lag(mut self, max: Duration) -> Self {
        self.max_relay_lag_seconds = max.as_secs_f64();
        self
    }

    /// Lets `source` report into this health.
    pub fn report(mut self, source: &(impl HealthSource + ?Sized)) -> Self {
        source.report_health(&mut self);
        self
    }

    /// Healthy: connected, every consumer running, and the relay lag within the maximum.
    pub fn is_healthy(&self) -> bool {
        self.problems().is_empty()
    }

    /// What is wrong, in words (empty when healthy).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.connected {
            problems.push("not connected to the broker".to_owned());
        }
        if self.consumers_running < self.consumers_total {
            problems.push(format!(
                "{} of {} consumers stopped",
                self.consumers_total - self.consumers_running,
                self.consumers_total
            ));
        }
        if let Some(lag) = self.relay_lag_seconds {
            if lag > self.max_relay_lag_seconds {
                problems.push(format!(
                    "the outbox relay is {lag:.1} s behind (more than {:.1} s)",
                    self.max_relay_lag_seconds
                ));
            }
        }
        problems
    }
}

impl Serialize for Health {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Health", 8)?;
        s.serialize_field("healthy", &self.is_healthy())?;
        s.serialize_field("connected", &self.connected)?;
        s.serialize_field("consumers_running", &self.consumers_running)?;
        s.serialize_field("consumers_total", &self.consumers_total)?;
        s.serialize_field("relay_lag_seconds", &self.relay_lag_seconds)?;
        s.serialize_field("outbox_pending", &self.outbox_pending)?;
        s.serialize_field("max_relay_lag_seconds", &self.max_relay_lag_seconds)?;
        s.serialize_field("problems", &self.problems())?;
        s.end()
    }
}

/// Something that knows part of the application's health and reports it into a [`Health`].
///
/// Transports implement it to set [`Health::connected`]; it is implemented here for
/// [`ConsumerHandle`] (one consumer, running or not), for slices and vectors of sources, for
/// [`OutboxStats`] (relay lag and pending rows) and for the [`MemoryBus`] (always connected).
///
/// ```
/// use ferry_core::telemetry::{Health, HealthSource};
/// struct Broker { up: bool }
/// impl HealthSource for Broker {
///     fn report_health(&self, health: &mut Health) {
///         health.connected = self.up;
///     }
/// }
/// assert!(!Health::new().report(&Broker { up: false }).is_healthy());
/// assert!(Health::new().report(&Broker { up: true }).is_healthy());
/// ```
pub trait HealthSource {
    /// Adds what this source knows to `health`.
    fn report_health(&self, health: &mut Health);
}

impl<T: HealthSource + ?Sized> HealthSource for &T {
    fn report_health(&self, health: &mut Health) {
        (**self).report_health(health);
    }
}

impl<T: HealthSource> HealthSource for [T] {
    fn report_health(&self, health: &mut Health) {
        for source in self {
            source.report_health(health);
        }
    }
}

impl<T: HealthSource> HealthSource for Vec<T> {
    fn report_health(&self, health: &mut Health) {
        self.as_slice().report_health(health);
    }
}

impl HealthSource for ConsumerHandle {
    fn report_health(&self, health: &mut Health) {
        health.consumers_total += 1;
        if !self.is_finished() {
            health.consumers_running += 1;
        }
    }
}

impl HealthSource for OutboxStats {
    fn report_health(&self, health: &mut Health) {
        health.outbox_pending = Some(health.outbox_pending.unwrap_or(0) + self.pending);
        if let Some(age) = self.oldest_pending_age_s {
            health.relay_lag_seconds = Some(health.relay_lag_seconds.map_or(age, |l| l.max(age)));
        }
    }
}

impl HealthSource for MemoryBus {
    fn report_health(&self, health: &mut Health) {
        health.connected = true;
    }
}
