//! Queue sampling: while a consumer runs, its queue's depth and consumer count are read every
//! [`RabbitMqOptions::queue_sample_interval`](crate::RabbitMqOptions::queue_sample_interval)
//! (a passive `queue.declare` on a short-lived channel) into the
//! `ferry_queue_messages_ready{queue}` and `ferry_queue_consumers{queue}` gauges. Sampling
//! stops with the consumer.

use std::time::Duration;

use tokio::{task::JoinHandle, time::MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::RabbitMq;

/// The sampling of one consumer's queue; stops when told or when dropped.
pub(crate) struct Sampling {
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Sampling {
    /// Starts sampling `queue` at the bus's interval (nothing when sampling is off).
    pub fn start(bus: &RabbitMq, queue: &str) -> Self {
        let stop = CancellationToken::new();
        let task = bus.options().queue_sample_interval().map(|interval| {
            tokio::spawn(sample(
                bus.clone(),
                queue.to_owned(),
                interval,
                stop.clone(),
            ))
        });
        Self { stop, task }
    }

    /// Stops sampling and waits until the last sample is over, so no gauge is set after the
    /// consumer stopped.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            if let Err(e) = task.await {
                tracing::debug!(error = %e, "the queue sampling task ended abnormally");
            }
        }
    }
}

impl Drop for Sampling {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn sample(bus: RabbitMq, queue: String, interval: Duration, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = sample_once(&bus, &queue) => {}
        }
    }
}

async fn sample_once(bus: &RabbitMq, queue: &str) {
    // While the connection is down there is nothing to read, and waiting for it here would
    // only delay the next sample.
    if !bus.is_connected() {
        return;
    }
    match bus.queue_counts(queue).await {
        Ok((ready, consumers)) => {
            ferry_core::telemetry::record_queue_depth(queue, u64::from(ready));
            ferry_core::telemetry::record_queue_consumers(queue, u64::from(consumers));
        }
        Err(e) => tracing::debug!(queue, error = %e, "could not sample the queue"),
    }
}
