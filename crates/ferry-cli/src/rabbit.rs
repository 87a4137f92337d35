//! Connecting to RabbitMQ for the commands, with one clear line when it cannot be reached.

use std::time::Duration;

use async_trait::async_trait;
use ferry::rabbitmq::{RabbitMq, RabbitMqOptions, redact_url};

use crate::{Global, demo::DemoTransport, error::CliError};

/// Connects to the broker named by `--amqp-url`, with the events exchange of `--exchange`.
pub async fn connect(global: &Global, connect_timeout: Duration) -> Result<RabbitMq, CliError> {
    let options = RabbitMqOptions::new(global.amqp_url.clone())
        .with_exchange(global.exchange.clone())
        .with_connection_name("ferry-cli")
        .with_connect_timeout(connect_timeout);
    RabbitMq::connect(options).await.map_err(|e| {
        CliError::Runtime(format!(
            "cannot reach RabbitMQ at {}: {}",
            redact_url(&global.amqp_url),
            one_line(&e.report())
        ))
    })
}

/// Connects for `ferry demo`: on failure, one line that also says how to start a broker and
/// how to run without one.
pub async fn connect_for_demo(global: &Global) -> Result<RabbitMq, CliError> {
    connect(global, Duration::from_secs(5)).await.map_err(|e| {
        CliError::Runtime(format!(
            "{e}; start a broker (`rabbitmq-server -detached`, or `apt-get install rabbitmq-server`) \
             or run `ferry demo --transport memory`"
        ))
    })
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[async_trait]
impl DemoTransport for RabbitMq {
    async fn reset_queues(&self, queues: &[String]) -> anyhow::Result<()> {
        for queue in queues {
            self.purge_queue(queue).await?;
        }
        Ok(())
    }
}
