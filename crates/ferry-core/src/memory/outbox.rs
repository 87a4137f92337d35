use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::{MemoryInbox, MemoryOutboxTransaction};
use crate::{
    ClaimedOutboxRow, IntegrationEvent, OutboxError, OutboxFailure, OutboxStats, OutboxStatus,
    OutboxStore, OutgoingMessage, PublishOptions,
};

#[derive(Debug, Clone)]
struct Row {
    id: String,
    message: OutgoingMessage,
    partition_key: Option<String>,
    status: OutboxStatus,
    attempts: u32,
    last_error: Option<String>,
    next_attempt_at: Instant,
    leased_until: Option<Instant>,
    created_at: DateTime<Utc>,
    created: Instant,
}

#[derive(Debug, Default)]
struct State {
    next_seq: u64,
    rows: BTreeMap<u64, Row>,
}

/// An in-memory outbox: the seed's `InMemoryIntegrationEventOutbox`, with transactions.
///
/// Its transactions have the SQL outboxes' API ([`MemoryOutbox::begin`], then `add`,
/// `insert_inbox`, `commit`), and it is a
/// [`TransactionalStore`](crate::transactional::TransactionalStore): a transactional consumer
/// and handler code written against [`TxContext`](crate::transactional::TxContext) run on it
/// unchanged. Events added through a [`MemoryOutboxTransaction`] become visible to the relay
/// only when it commits; a transaction dropped without commit adds nothing. Claims, leases,
/// partition order, backoff and dead rows behave as in the database stores.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize, ferry_macros::IntegrationEvent)]
/// # #[event(name = "orders.order.created")]
/// # struct OrderCreated { order_id: String }
/// use ferry_core::memory::MemoryOutbox;
/// # async fn demo() -> Result<(), ferry_core::OutboxError> {
/// let outbox = MemoryOutbox::new();
/// let mut tx = outbox.begin().await?;
/// tx.add(&OrderCreated { order_id: "o-1".into() }).await?;
/// tx.commit().await?;
/// assert_eq!(outbox.pending_count(), 1);
///
/// // Tests and tools may add at once, in a transaction of its own.
/// outbox.add(&OrderCreated { order_id: "o-2".into() })?;
/// assert_eq!(outbox.pending_count(), 2);
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct MemoryOutbox {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
    inbox: MemoryInbox,
    max_attempts: u32,
    base_backoff: Duration,
    max_backoff: Duration,
}

impl Default for MemoryOutbox {
    fn default() -> Self {
        Self {
            state: Arc::default(),
            notify: Arc::default(),
            inbox: MemoryInbox::default(),
            max_attempts: 10,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(60),
        }
    }
}

impl MemoryOutbox {
    /// An empty outbox: 10 attempts before a row is dead, backoff from 100 ms to 60 s.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the attempts after which a row becomes dead.
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the backoff after a failed publish: `base` doubling up to `max`.
    pub fn with_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.base_backoff = base;
        self.max_backoff = max;
        self
    }

    /// Uses `inbox` for the inbox rows of its transactions (by default an inbox of its own):
    /// give the consumer's [`MemoryInbox`] to see them there.
    pub fn with_inbox(mut self, inbox: MemoryInbox) -> Self {
        self.inbox = inbox;
        self
    }

    /// The inbox its transactions insert into.
    pub fn inbox(&self) -> &MemoryInbox {
        &self.inbox
    }

    /// Begins a transaction: its events and inbox rows become visible when it commits (see
    /// [`MemoryOutboxTransaction`]). The same call as on the SQL outboxes, which is why it is
    /// `async` and returns a `Result`.
    pub async fn begin(&self) -> Result<MemoryOutboxTransaction, OutboxError> {
        Ok(MemoryOutboxTransaction::new(self.clone()))
    }

    /// Adds an event at once (a transaction of its own); returns its id.
    pub fn add<E: IntegrationEvent>(&self, event: &E) -> Result<String, OutboxError> {
        self.add_with(event, PublishOptions::default())
    }

    /// Adds an event with options at once; returns its id.
    pub fn add_with<E: IntegrationEvent>(
        &self,
        event: &E,
        options: PublishOptions,
    ) -> Result<String, OutboxError> {
        let message = options
            .message_for(event, None)
            .map_err(|e| OutboxError::Encode(e.into()))?;
        let id = message.id().to_owned();
        self.insert(vec![(message, options.partition_key)])?;
        Ok(id)
    }

    /// Rows waiting to be published.
    pub fn pending_count(&self) -> usize {
        self.count(OutboxStatus::Pending)
    }

    /// Rows with `status`.
    pub fn count(&self, status: OutboxStatus) -> usize {
        self.lock()
            .map(|s| s.rows.values().filter(|r| r.status == status).count())
            .unwrap_or(0)
    }

    /// Brings a dead row back to pending with its attempts reset.
    pub fn retry(&self, id: &str) -> Result<(), OutboxError> {
        let mut state = self.lock()?;
        let row = state
            .rows
            .values_mut()
            .find(|r| r.id == id)
            .ok_or_else(|| OutboxError::NotFound(id.to_owned()))?;
        row.status = OutboxStatus::Pending;
        row.attempts = 0;
        row.next_attempt_at = Instant::now();
        row.leased_until = None;
        drop(state);
        self.notify.notify_one();
        Ok(())
    }

    /// The last error recorded for a row.
    pub fn last_error(&self, id: &str) -> Option<String> {
        self.lock()
            .ok()?
            .rows
            .values()
            .find(|r| r.id == id)
            .and_then(|r| r.last_error.clone())
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, OutboxError> {
        self.state
            .lock()
            .map_err(|_| OutboxError::database("the in-memory outbox lock was poisoned"))
    }

    /// Makes committed rows visible to the relay, in order, and wakes it.
    pub(super) fn insert(
        &self,
        rows: Vec<(OutgoingMessage, Option<String>)>,
    ) -> Result<(), OutboxError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut state = self.lock()?;
        let now = Instant::now();
        for (message, partition_key) in rows {
            let seq = state.next_seq;
            state.next_seq += 1;
            state.rows.insert(
                seq,
                Row {
                    id: message.id().to_owned(),
                    message,
                    partition_key,
                    status: OutboxStatus::Pending,
                    attempts: 0,
                    last_error: None,
                    next_attempt_at: now,
                    leased_until: None,
                    created_at: Utc::now(),
                    created: now,
                },
            );
        }
        drop(state);
        self.notify.notify_one();
        Ok(())
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempts.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

#[async_trait]
impl OutboxStore for MemoryOutbox {
    async fn claim(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedOutboxRow>, OutboxError> {
        let mut state = self.lock()?;
        let now = Instant::now();
        let mut blocked: HashSet<String> = HashSet::new();
        let mut claimed = Vec::new();
        for row in state.rows.values_mut() {
            if claimed.len() >= limit {
                break;
            }
            if row.status != OutboxStatus::Pending {
                continue;
            }
            let claimable =
                row.next_attempt_at <= now && row.leased_until.is_none_or(|until| until <= now);
            if let Some(key) = &row.partition_key {
                if blocked.contains(key) {
                    continue;
                }
                if !claimable {
                    blocked.insert(key.clone());
                    continue;
                }
            }
            if !claimable {
                continue;
            }
            row.leased_until = Some(now + lease);
            claimed.push(ClaimedOutboxRow {
                id: row.id.clone(),
                message: row.message.clone(),
                attempts: row.attempts,
                partition_key: row.partition_key.clone(),
                created_at: row.created_at,
            });
        }
        Ok(claimed)
    }

    async fn mark_published(&self, ids: &[String]) -> Result<(), OutboxError> {
        let ids: HashSet<&str> = ids.iter().map(String::as_str).collect();
        let mut state = self.lock()?;
        for row in state
            .rows
            .values_mut()
            .filter(|r| ids.contains(r.id.as_str()))
        {
            row.status = OutboxStatus::Published;
            row.leased_until = None;
        }
        Ok(())
    }

    async fn mark_failed(&self, failures: &[OutboxFailure]) -> Result<(), OutboxError> {
        let mut state = self.lock()?;
        let now = Instant::now();
        for failure in failures {
            if let Some(row) = state.rows.values_mut().find(|r| r.id == failure.id) {
                row.attempts += 1;
                row.last_error = Some(failure.error.clone());
                row.leased_until = None;
                if row.attempts >= self.max_attempts {
                    row.status = OutboxStatus::Dead;
                } else {
                    row.next_attempt_at = now + self.backoff(row.attempts);
                }
            }
        }
        Ok(())
    }

    async fn release(&self, ids: &[String]) -> Result<(), OutboxError> {
        let ids: HashSet<&str> = ids.iter().map(String::as_str).collect();
        let mut state = self.lock()?;
        for row in state
            .rows
            .values_mut()
            .filter(|r| ids.contains(r.id.as_str()))
        {
            row.leased_until = None;
        }
        Ok(())
    }

    async fn wait_for_rows(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.notify.notified()).await;
    }

    async fn stats(&self) -> Result<OutboxStats, OutboxError> {
        let state = self.lock()?;
        let mut stats = OutboxStats::default();
        let mut oldest: Option<Instant> = None;
        for row in state.rows.values() {
            match row.status {
                OutboxStatus::Pending => {
                    stats.pending += 1;
                    oldest = Some(oldest.map_or(row.created, |o| o.min(row.created)));
                }
                OutboxStatus::Published => stats.published += 1,
                OutboxStatus::Dead => stats.dead += 1,
            }
        }
        stats.oldest_pending_age_s = oldest.map(|o| o.elapsed().as_secs_f64());
        Ok(stats)
    }
}
