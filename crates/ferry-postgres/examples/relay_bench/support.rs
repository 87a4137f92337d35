//! The event, timing wrappers and helpers the benchmark shares.

use std::{
    collections::HashMap,
    error::Error,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use ferry_core::{
    IntegrationEvent, OutboxError, OutboxFailure, OutboxMessage, OutboxStats, OutboxStore,
    OutgoingMessage, PublishError, Publisher,
};
use ferry_postgres::PgOutbox;
use ferry_rabbitmq::RabbitMq;
use serde::{Deserialize, Serialize};

pub type BoxError = Box<dyn Error + Send + Sync>;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCreated {
    pub order_id: u64,
    pub customer_email: String,
    pub total_amount: f64,
}

impl IntegrationEvent for OrderCreated {
    const NAME: &'static str = "orders.order.created";
}

pub fn event(n: u64) -> OrderCreated {
    OrderCreated {
        order_id: n,
        customer_email: format!("customer-{n}@example.com"),
        total_amount: 10.0 + (n % 1000) as f64,
    }
}

/// Records when each message's publish was confirmed.
#[derive(Clone)]
pub struct Timed {
    pub inner: RabbitMq,
    pub confirmed: Arc<Mutex<HashMap<String, Instant>>>,
}

#[async_trait]
impl Publisher for Timed {
    async fn publish_message(&self, message: OutgoingMessage) -> Result<(), PublishError> {
        let mut results = self.publish_messages(vec![message]).await;
        results.pop().unwrap_or(Ok(()))
    }

    async fn publish_messages(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> Vec<Result<(), PublishError>> {
        let ids: Vec<String> = messages.iter().map(|m| m.id().to_owned()).collect();
        let results = self.inner.publish_messages(messages).await;
        let now = Instant::now();
        if let Ok(mut confirmed) = self.confirmed.lock() {
            for (id, result) in ids.into_iter().zip(&results) {
                if result.is_ok() {
                    confirmed.insert(id, now);
                }
            }
        }
        results
    }
}

/// Adds up the time the relay spends in the store's claim and mark.
#[derive(Clone)]
pub struct TimedStore {
    pub inner: PgOutbox,
    pub claim: Arc<Mutex<Duration>>,
    pub mark: Arc<Mutex<Duration>>,
    pub claims: Arc<std::sync::atomic::AtomicU64>,
}

impl TimedStore {
    pub fn new(inner: PgOutbox) -> Self {
        Self {
            inner,
            claim: Arc::default(),
            mark: Arc::default(),
            claims: Arc::default(),
        }
    }
}

pub fn add_time(total: &Mutex<Duration>, started: Instant) {
    if let Ok(mut total) = total.lock() {
        *total += started.elapsed();
    }
}

#[async_trait]
impl OutboxStore for TimedStore {
    async fn claim(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxMessage>, OutboxError> {
        let started = Instant::now();
        self.claims
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let rows = self.inner.claim(limit, lease).await;
        add_time(&self.claim, started);
        rows
    }
    async fn mark_published(&self, ids: &[String]) -> Result<(), OutboxError> {
        let started = Instant::now();
        let done = self.inner.mark_published(ids).await;
        add_time(&self.mark, started);
        done
    }
    async fn mark_failed(&self, failures: &[OutboxFailure]) -> Result<(), OutboxError> {
        self.inner.mark_failed(failures).await
    }
    async fn release(&self, ids: &[String]) -> Result<(), OutboxError> {
        self.inner.release(ids).await
    }
    async fn wait_for_rows(&self, timeout: Duration) {
        self.inner.wait_for_rows(timeout).await
    }
    async fn stats(&self) -> Result<OutboxStats, OutboxError> {
        self.inner.stats().await
    }
}

/// Confirms everything at once: what the relay costs without a broker.
#[derive(Clone)]
pub struct NoBroker;

#[async_trait]
impl Publisher for NoBroker {
    async fn publish_message(&self, _message: OutgoingMessage) -> Result<(), PublishError> {
        Ok(())
    }
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
