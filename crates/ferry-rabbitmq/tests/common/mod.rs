//! Shared test support: options for the local broker, test events, and a cleanup guard that
//! deletes what a test declared even when the test fails.
#![allow(dead_code)]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use ferry_core::{DeadLetter, HandlerError, MessageContext};
use ferry_rabbitmq::{RabbitMq, RabbitMqOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// A test event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[serde(rename_all = "camelCase")]
#[event(name = "orders.order.created", version = 1)]
pub struct OrderCreated {
    pub order_id: String,
    pub total_amount: f64,
}

/// Another test event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ferry_macros::IntegrationEvent)]
#[serde(rename_all = "camelCase")]
#[event(name = "inventory.stock.reserved", version = 2)]
pub struct StockReserved {
    pub order_id: String,
}

pub fn order(n: usize) -> OrderCreated {
    OrderCreated {
        order_id: format!("o-{n}"),
        total_amount: n as f64 + 0.5,
    }
}

/// Options for the test broker with a fresh exchange name.
pub fn options(exchange: &str) -> RabbitMqOptions {
    RabbitMqOptions::new(ferry_testkit::amqp::url())
        .with_exchange(exchange)
        .with_connection_name("ferry-rabbitmq-tests")
        .with_confirm_timeout(Duration::from_secs(10))
        .with_reconnect_backoff(Duration::from_millis(50), Duration::from_secs(1))
}

/// Deletes the queues and exchanges it was told about when dropped (on a thread of its own, so
/// it also runs when the test panics).
#[derive(Clone, Default)]
pub struct Cleanup {
    queues: Arc<Mutex<Vec<String>>>,
    exchanges: Arc<Mutex<Vec<String>>>,
}

impl Cleanup {
    /// Deletes `name` at the end, and the retry queues a consumer of it declares with the
    /// default retry policy (deleting a queue that does not exist is harmless).
    pub fn queue(&self, name: impl Into<String>) -> String {
        let name = name.into();
        let mut queues = self.queues.lock().unwrap();
        for ms in [1000, 2000, 4000] {
            queues.push(format!("{name}.retry.{ms}"));
        }
        queues.push(name.clone());
        name
    }

    pub fn exchange(&self, name: impl Into<String>) -> String {
        let name = name.into();
        self.exchanges.lock().unwrap().push(name.clone());
        name
    }

    /// Also deletes the retry queues a consumer of `queue` declares for these delays.
    pub fn retry_queues(&self, queue: &str, delays_ms: &[u64]) {
        let mut queues = self.queues.lock().unwrap();
        for ms in delays_ms {
            queues.push(format!("{queue}.retry.{ms}"));
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if Arc::strong_count(&self.queues) > 1 {
            return;
        }
        let queues = std::mem::take(&mut *self.queues.lock().unwrap());
        let exchanges = std::mem::take(&mut *self.exchanges.lock().unwrap());
        if queues.is_empty() && exchanges.is_empty() {
            return;
        }
        let done = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let options = RabbitMqOptions::new(ferry_testkit::amqp::url())
                    .with_exchange("amq.topic")
                    .with_topology(ferry_rabbitmq::TopologyMode::Passive);
                let Ok(bus) = RabbitMq::connect(options).await else {
                    return;
                };
                for q in &queues {
                    let _ = bus.delete_queue(q).await;
                }
                for x in &exchanges {
                    let _ = bus.delete_exchange(x).await;
                }
                bus.close().await;
            });
        });
        let _ = done.join();
    }
}

/// A test environment: a connected bus on a fresh exchange, and its cleanup.
pub struct Env {
    pub bus: RabbitMq,
    pub exchange: String,
    pub cleanup: Cleanup,
}

impl Env {
    pub async fn new(prefix: &str) -> Env {
        Self::with_options(prefix, |o| o).await
    }

    pub async fn with_options(
        prefix: &str,
        f: impl FnOnce(RabbitMqOptions) -> RabbitMqOptions,
    ) -> Env {
        ferry_testkit::init_tracing();
        let cleanup = Cleanup::default();
        let exchange = cleanup.exchange(ferry_testkit::unique_name(&format!("{prefix}.events")));
        let bus = RabbitMq::connect(f(options(&exchange)))
            .await
            .expect("connect to the test broker (RabbitMQ on 127.0.0.1:5672, guest/guest)");
        Env {
            bus,
            exchange,
            cleanup,
        }
    }

    /// A fresh queue name (deleted at the end).
    pub fn queue(&self, prefix: &str) -> String {
        self.cleanup.queue(ferry_testkit::unique_name(prefix))
    }

    /// A fresh dead-letter exchange and queue (deleted at the end), with a dead-letter consumer
    /// sending what it gets to the returned receiver.
    pub async fn dead_letters(
        &self,
    ) -> (
        String,
        ferry_core::ConsumerHandle,
        mpsc::UnboundedReceiver<DeadLetter>,
    ) {
        let dlx = self
            .cleanup
            .exchange(ferry_testkit::unique_name("test.dlx"));
        let dlq = self.queue("test.dlq");
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = self
            .bus
            .dead_letter_consumer(dlq)
            .exchange(dlx.clone())
            .on_dead_letter(move |d| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(d);
                    Ok(())
                }
            })
            .start()
            .await
            .expect("start the dead-letter consumer");
        (dlx, handle, rx)
    }
}

/// Receives `n` items or fails after `timeout`.
pub async fn recv_n<T>(rx: &mut mpsc::UnboundedReceiver<T>, n: usize, timeout: Duration) -> Vec<T> {
    let mut out = Vec::with_capacity(n);
    let deadline = tokio::time::Instant::now() + timeout;
    while out.len() < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(item)) => out.push(item),
            Ok(None) => panic!("channel closed after {} of {n} items", out.len()),
            Err(_) => panic!("timed out after {} of {n} items", out.len()),
        }
    }
    out
}

/// Asserts nothing more arrives within `wait`.
pub async fn assert_quiet<T: std::fmt::Debug>(rx: &mut mpsc::UnboundedReceiver<T>, wait: Duration) {
    if let Ok(Some(item)) = tokio::time::timeout(wait, rx.recv()).await {
        panic!("unexpected item: {item:?}");
    }
}

/// A handler that forwards every event and its context to a channel.
pub fn forwarding<E: ferry_core::IntegrationEvent + Clone>(
    tx: mpsc::UnboundedSender<(E, MessageContext)>,
) -> impl Fn(
    E,
    MessageContext,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), HandlerError>> + Send>>
+ Send
+ Sync
+ 'static {
    move |event, ctx| {
        let tx = tx.clone();
        Box::pin(async move {
            let _ = tx.send((event, ctx));
            Ok(())
        })
    }
}
