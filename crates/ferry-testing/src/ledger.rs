//! The ledger: what the harness saw, and the work still moving — deliveries a consumer is
//! processing, retries waiting to come back, and messages published to a consumer's bindings
//! that it has not settled yet. The harness's transport feeds it (publishes, consumers
//! started) and it observes every consumer ([`Observer`]).

use std::{
    collections::HashMap,
    fmt,
    sync::{Mutex, MutexGuard},
};

use ferry_core::{
    BindingPattern, Decision, Delivery, WireMessage,
    codec::{self, Decoded},
    pipeline::Observer,
};
use tokio::{sync::Notify, time::Instant};

use crate::record::{Consumption, Outcome, Published, RequestRecord};

/// A message on its way to one consumer.
type Key = (String, String); // (consumer queue, message id)

#[derive(Default)]
pub(crate) struct State {
    /// The consumers started through the harness and their bindings on the events exchange.
    consumers: Vec<(String, Vec<BindingPattern>)>,
    pub(crate) published: Vec<Published>,
    pub(crate) consumed: Vec<Consumption>,
    pub(crate) requests: Vec<RequestRecord>,
    pub(crate) notifications: Vec<RequestRecord>,
    /// Deliveries expected minus deliveries settled (ack, duplicate, dead letter); signed, as
    /// a delivery may settle before its publish returns.
    unsettled: HashMap<Key, (i64, String)>,
    /// Deliveries in process: (count, what).
    in_flight: HashMap<Key, (usize, String)>,
    /// Retries waiting: the attempt they come back as, when, and what.
    retries: HashMap<Key, (u32, Instant, String)>,
}

/// What the harness saw, and what is still moving.
pub(crate) struct Ledger {
    exchange: Mutex<String>,
    state: Mutex<State>,
    changed: Notify,
}

impl Ledger {
    pub(crate) fn new(exchange: &str) -> Self {
        Self {
            exchange: Mutex::new(exchange.to_owned()),
            state: Mutex::new(State::default()),
            changed: Notify::new(),
        }
    }

    /// The state; a test that panicked while holding it has failed already, so a poisoned
    /// lock is taken as it is.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn exchange(&self) -> String {
        self.exchange
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Resolves at the next change of the ledger.
    pub(crate) fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    fn touch(&self) {
        self.changed.notify_waiters();
    }

    /// A consumer was started with these bindings. Competing consumers of one queue (two
    /// instances of a service) share its messages: one queue, one settlement per message.
    pub(crate) fn consumer_started(&self, queue: &str, bindings: &[String]) {
        let patterns: Vec<BindingPattern> = bindings
            .iter()
            .filter_map(|b| BindingPattern::new(b.as_str()).ok())
            .collect();
        let mut state = self.lock();
        match state.consumers.iter_mut().find(|(q, _)| q == queue) {
            Some((_, known)) => {
                for pattern in patterns {
                    if !known.contains(&pattern) {
                        known.push(pattern);
                    }
                }
            }
            None => state.consumers.push((queue.to_owned(), patterns)),
        }
    }

    /// A message was published (and confirmed) to `exchange` (`None`: the events exchange).
    pub(crate) fn published(
        &self,
        exchange: Option<&str>,
        routing_key: &str,
        message: &WireMessage,
    ) {
        let events = self.exchange();
        let exchange = exchange.unwrap_or(&events).to_owned();
        // A message that does not decode is still expected by the consumers bound to it (they
        // dead-letter it); it is known by its `message_id` property, as they will know it.
        let decoded = codec::decode(message).ok();
        let id = decoded
            .as_ref()
            .map(|d| d.envelope.id.clone())
            .or_else(|| message.properties.message_id.clone())
            .unwrap_or_default();
        let what = match &decoded {
            Some(d) => format!("`{}` {id}", d.envelope.event_type),
            None => format!("an undecodable message on `{routing_key}`"),
        };
        let mut state = self.lock();
        if exchange == events {
            let queues: Vec<String> = state
                .consumers
                .iter()
                .filter(|(_, patterns)| patterns.iter().any(|p| p.matches(routing_key)))
                .map(|(queue, _)| queue.clone())
                .collect();
            for queue in queues {
                let entry = state
                    .unsettled
                    .entry((queue, id.clone()))
                    .or_insert((0, what.clone()));
                entry.0 += 1;
            }
            state.unsettled.retain(|_, (n, _)| *n != 0);
        }
        match decoded {
            Some(decoded) => {
                state
                    .published
                    .push(Published::new(routing_key.to_owned(), exchange, decoded))
            }
            None => tracing::warn!(routing_key, "published a message that does not decode"),
        }
        drop(state);
        self.touch();
    }

    /// A Mediator request, or a notification, was handled.
    pub(crate) fn request(&self, notification: bool, record: RequestRecord) {
        let mut state = self.lock();
        if notification {
            state.notifications.push(record);
        } else {
            state.requests.push(record);
        }
        drop(state);
        self.touch();
    }

    /// The work still moving, with `outbox` the pending outbox rows (if known).
    pub(crate) fn pending(&self, outbox: OutboxPending) -> Pending {
        let state = self.lock();
        let now = Instant::now();
        Pending {
            in_flight: describe(state.in_flight.iter().map(|((q, _), (n, what))| {
                format!(
                    "{what} in consumer `{q}` ({n} deliver{})",
                    plural(*n, "y", "ies")
                )
            })),
            retries: describe(state.retries.iter().map(|((q, _), (attempt, due, what))| {
                let due = due.saturating_duration_since(now);
                format!("{what} back to `{q}` as attempt {attempt} in {due:?}")
            })),
            unsettled: describe(
                state
                    .unsettled
                    .iter()
                    .filter(|(key, _)| {
                        !state.in_flight.contains_key(*key) && !state.retries.contains_key(*key)
                    })
                    .map(|((q, _), (n, what))| format!("{what} not yet settled by `{q}` ({n})")),
            ),
            outbox: match outbox {
                OutboxPending::Rows(0) => OutboxPending::None,
                other => other,
            },
        }
    }
}

fn plural(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

fn describe(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut items: Vec<String> = items.collect();
    items.sort();
    items
}

/// The id a delivery is known by: its event id, else its `message_id` property.
fn message_id(delivery: &Delivery, decoded: Option<&Decoded>) -> String {
    decoded
        .map(|d| d.envelope.id.clone())
        .or_else(|| delivery.message.properties.message_id.clone())
        .unwrap_or_default()
}

fn what(delivery: &Delivery, decoded: Option<&Decoded>) -> String {
    match decoded {
        Some(d) => format!("`{}` {}", d.envelope.event_type, d.envelope.id),
        None => format!("an undecodable message on `{}`", delivery.routing_key),
    }
}

impl Observer for Ledger {
    fn started(&self, queue: &str, delivery: &Delivery) {
        let decoded = codec::decode(&delivery.message).ok();
        let key = (queue.to_owned(), message_id(delivery, decoded.as_ref()));
        let attempt = delivery.message.attempt();
        let what = what(delivery, decoded.as_ref());
        let mut state = self.lock();
        if state
            .retries
            .get(&key)
            .is_some_and(|(next, _, _)| *next <= attempt)
        {
            state.retries.remove(&key);
        }
        state.in_flight.entry(key).or_insert((0, what)).0 += 1;
        drop(state);
        self.touch();
    }

    fn decided(&self, queue: &str, delivery: &Delivery, decision: &Decision) {
        let decoded = codec::decode(&delivery.message).ok();
        let key = (queue.to_owned(), message_id(delivery, decoded.as_ref()));
        let attempt = delivery.message.attempt();
        let what = what(delivery, decoded.as_ref());
        let outcome = match decision {
            Decision::Ack => Outcome::Handled,
            Decision::Duplicate => Outcome::Duplicate,
            Decision::Retry {
                delay,
                next_attempt,
                error,
            } => Outcome::Retried {
                delay: *delay,
                next_attempt: *next_attempt,
                error: error.clone(),
            },
            Decision::DeadLetter(fault) => Outcome::DeadLettered(fault.clone()),
        };
        let mut state = self.lock();
        if let Some(entry) = state.in_flight.get_mut(&key) {
            entry.0 = entry.0.saturating_sub(1);
            if entry.0 == 0 {
                state.in_flight.remove(&key);
            }
        }
        match &outcome {
            Outcome::Retried {
                delay,
                next_attempt,
                ..
            } => {
                let due = Instant::now() + *delay;
                state
                    .retries
                    .insert(key.clone(), (*next_attempt, due, what.clone()));
            }
            _ => {
                let entry = state.unsettled.entry(key.clone()).or_insert((0, what));
                entry.0 -= 1;
                if entry.0 == 0 {
                    state.unsettled.remove(&key);
                }
            }
        }
        state.consumed.push(Consumption::new(
            queue.to_owned(),
            delivery.routing_key.clone(),
            attempt,
            decoded,
            outcome,
        ));
        drop(state);
        self.touch();
    }
}

/// The outbox's part of [`Pending`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxPending {
    /// Nothing pending (or no outbox to watch).
    None,
    /// Rows not yet published.
    Rows(u64),
    /// The outbox's statistics could not be read.
    Unknown(String),
}

/// The work still moving when [`TestHarness::wait_idle`](crate::TestHarness::wait_idle) gave
/// up: each list describes one message per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Deliveries a consumer is processing.
    pub in_flight: Vec<String>,
    /// Retries waiting to come back.
    pub retries: Vec<String>,
    /// Messages published to a consumer's bindings that it has not taken yet.
    pub unsettled: Vec<String>,
    /// The outbox's pending rows.
    pub outbox: OutboxPending,
}

impl Pending {
    /// Whether nothing is moving.
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_empty()
            && self.retries.is_empty()
            && self.unsettled.is_empty()
            && self.outbox == OutboxPending::None
    }
}

impl fmt::Display for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        let sections = [
            ("in flight", &self.in_flight),
            ("retries pending", &self.retries),
            ("published, not yet consumed", &self.unsettled),
        ];
        for (title, items) in sections {
            if !items.is_empty() {
                parts.push(format!("{title}: {}", items.join("; ")));
            }
        }
        match &self.outbox {
            OutboxPending::None => {}
            OutboxPending::Rows(n) => parts.push(format!(
                "outbox: {n} row{} not yet published (is a relay running?)",
                if *n == 1 { "" } else { "s" }
            )),
            OutboxPending::Unknown(e) => parts.push(format!("outbox: unreadable ({e})")),
        }
        if parts.is_empty() {
            f.write_str("nothing")
        } else {
            f.write_str(&parts.join("; "))
        }
    }
}
