//! The behaviour suite on RabbitMQ (the local broker), every queue and exchange a test
//! declares deleted when it ends, pass or fail.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use ferry_core::RetryPolicy;
use ferry_rabbitmq::{RabbitMq, RabbitMqOptions, TopologyMode};

use crate::suite::Fixture;

type Declared = Arc<Mutex<(Vec<(String, RetryPolicy)>, Vec<String>)>>;

/// A connection on an events exchange of its own.
pub struct Rabbit {
    bus: RabbitMq,
    declared: Declared,
}

#[async_trait]
impl Fixture for Rabbit {
    type Bus = RabbitMq;

    async fn new() -> Self {
        ferry_testkit::init_tracing();
        let exchange = ferry_testkit::unique_name("behaviour.events");
        let options = RabbitMqOptions::new(ferry_testkit::amqp::url())
            .with_exchange(exchange.clone())
            .with_connection_name("ferry-behaviour-tests")
            .with_reconnect_backoff(Duration::from_millis(50), Duration::from_secs(1));
        let bus = RabbitMq::connect(options)
            .await
            .expect("connect to the test broker (RabbitMQ on 127.0.0.1:5672, guest/guest)");
        let declared: Declared = Arc::default();
        declared.lock().unwrap().1.push(exchange);
        Self { bus, declared }
    }

    fn bus(&self) -> &RabbitMq {
        &self.bus
    }

    fn queue(&self, prefix: &str, retry: &RetryPolicy) -> String {
        let name = ferry_testkit::unique_name(prefix);
        self.declared.lock().unwrap().0.push((name.clone(), *retry));
        name
    }

    fn exchange(&self, prefix: &str) -> String {
        let name = ferry_testkit::unique_name(prefix);
        self.declared.lock().unwrap().1.push(name.clone());
        name
    }
}

impl Drop for Rabbit {
    /// Deletes what the test declared, on a thread of its own so it also runs when the test
    /// panics.
    fn drop(&mut self) {
        let (queues, exchanges) = std::mem::take(&mut *self.declared.lock().unwrap());
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
                    .with_topology(TopologyMode::Passive);
                let Ok(admin) = RabbitMq::connect(options).await else {
                    return;
                };
                for (queue, retry) in &queues {
                    let _ = admin.delete_consumer_queues(queue, retry).await;
                }
                for exchange in &exchanges {
                    let _ = admin.delete_exchange(exchange).await;
                }
                admin.close().await;
            });
        });
        let _ = done.join();
    }
}

behaviour_suite!(crate::rabbitmq::Rabbit);
