//! Connecting to RabbitMQ for the commands, with one clear line when it cannot be reached.

use std::time::Duration;

use async_trait::async_trait;
use ferry::{
    QueueType,
    rabbitmq::{RabbitMq, RabbitMqOptions, redact_url},
};

use crate::{Global, demo::DemoTransport, error::CliError};

/// Connects to the broker named by `--amqp-url`, with the events exchange of `--exchange`.
pub async fn connect(global: &Global, connect_timeout: Duration) -> Result<RabbitMq, CliError> {
    connect_with(global, options(global, connect_timeout)).await
}

fn options(global: &Global, connect_timeout: Duration) -> RabbitMqOptions {
    RabbitMqOptions::new(global.amqp_url.clone())
        .with_exchange(global.exchange.clone())
        .with_connection_name("ferry-cli")
        .with_connect_timeout(connect_timeout)
}

async fn connect_with(global: &Global, options: RabbitMqOptions) -> Result<RabbitMq, CliError> {
    RabbitMq::connect(options).await.map_err(|e| {
        CliError::Runtime(format!(
            "cannot reach RabbitMQ at {}: {}",
            redact_url(&global.amqp_url),
            one_line(&e.report())
        ))
    })
}

/// The queue type of `ferry demo`: `--queue-type`, else quorum when `--amqp-url` names several
/// nodes (a cluster, where a classic queue lives on one node only), else classic.
pub fn demo_queue_type(amqp_url: &str, asked: Option<QueueType>) -> QueueType {
    asked.unwrap_or_else(|| {
        if RabbitMqOptions::new(amqp_url).nodes().len() > 1 {
            QueueType::Quorum
        } else {
            QueueType::Classic
        }
    })
}

/// Connects for `ferry demo`, its consumers declaring queues of `queue_type`: on failure, one
/// line that also says how to start a broker and how to run without one.
pub async fn connect_for_demo(
    global: &Global,
    queue_type: QueueType,
) -> Result<RabbitMq, CliError> {
    let options = options(global, Duration::from_secs(5)).with_queue_type(queue_type);
    connect_with(global, options).await.map_err(|e| {
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
    /// Deletes the demo's queues (their consumers declare them again, of this run's queue
    /// type, which may differ from the last run's).
    async fn reset_queues(&self, queues: &[String]) -> anyhow::Result<()> {
        for queue in queues {
            if self.queue_counts(queue).await.is_ok() {
                self.delete_queue(queue).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_is_quorum_by_default_on_several_nodes_only() {
        let one = "amqp://guest:guest@localhost:5672/%2f";
        let three = "amqp://a:5672/%2f, amqp://b:5672/%2f,amqp://c:5672/%2f";
        assert_eq!(demo_queue_type(one, None), QueueType::Classic);
        assert_eq!(demo_queue_type(three, None), QueueType::Quorum);
        assert_eq!(
            demo_queue_type(three, Some(QueueType::Classic)),
            QueueType::Classic
        );
        assert_eq!(
            demo_queue_type(one, Some(QueueType::Quorum)),
            QueueType::Quorum
        );
    }
}
