//! A consumer's deliveries as one stream across reconnections: when the connection (or the
//! channel) is lost, a new session is opened on the next connection generation, with capped
//! exponential backoff, and the stream goes on. The queue is sampled while it runs (see
//! [`crate::sampling`]).

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use futures::{StreamExt, future::BoxFuture};
use lapin::{Channel, Consumer, options::BasicCancelOptions, types::ShortString};
use tokio_util::sync::CancellationToken;

use ferry_core::{
    Delivery,
    consume::{Incoming, Subscribe, Subscription},
};

use crate::{
    RabbitMq, RabbitMqError,
    connection::WaitError,
    sampling::Sampling,
    session::{AmqpSettle, RetryQueues, Session, close_channel, open_session},
    wire,
};

type Resuming = BoxFuture<'static, Option<(Session, Consumer)>>;

/// The subscription of one consumer.
pub(crate) struct AmqpSubscription {
    bus: RabbitMq,
    spec: Arc<Subscribe>,
    retry_queues: RetryQueues,
    current: Option<(Session, Consumer)>,
    /// A new session being opened; kept across calls so `next` stays cancel-safe.
    resuming: Option<Resuming>,
    /// Ends a resumption in progress when the consumer stops.
    stop: CancellationToken,
    sampling: Option<Sampling>,
}

impl AmqpSubscription {
    /// Opens the first session (its errors go to the caller).
    pub async fn open(
        bus: &RabbitMq,
        spec: Subscribe,
        retry_queues: RetryQueues,
    ) -> Result<Self, RabbitMqError> {
        let link = bus
            .connection()
            .wait_up(bus.options().connect_timeout(), None)
            .await
            .map_err(|e| bus.connection().wait_error(e))?;
        let current = open_session(bus, &spec, &retry_queues, &link).await?;
        let sampling = Sampling::start(bus, &spec.queue);
        Ok(Self {
            bus: bus.clone(),
            spec: Arc::new(spec),
            retry_queues,
            current: Some(current),
            resuming: None,
            stop: CancellationToken::new(),
            sampling: Some(sampling),
        })
    }
}

fn incoming(d: lapin::message::Delivery) -> Incoming {
    Incoming {
        delivery: Delivery {
            message: wire::from_amqp(&d.properties, &d.data),
            exchange: d.exchange.as_str().to_owned(),
            routing_key: d.routing_key.as_str().to_owned(),
            redelivered: d.redelivered,
        },
        settle: Box::new(AmqpSettle(d.acker)),
    }
}

#[async_trait]
impl Subscription for AmqpSubscription {
    async fn next(&mut self) -> Option<Incoming> {
        loop {
            if let Some(resuming) = self.resuming.as_mut() {
                let resumed = resuming.await;
                self.resuming = None;
                self.current = Some(resumed?);
            }
            let (session, consumer) = self.current.as_mut()?;
            let reason = tokio::select! {
                biased;
                _ = self.bus.connection().lost(session.generation) => {
                    "the connection dropped".to_owned()
                }
                item = consumer.next() => match item {
                    Some(Ok(delivery)) => return Some(incoming(delivery)),
                    Some(Err(e)) => e.to_string(),
                    None => "the broker cancelled the consumer or closed its channel".to_owned(),
                },
            };
            tracing::warn!(queue = %self.spec.queue, reason = %reason, "consumer lost its channel; resuming");
            let (lost, _) = self.current.take()?;
            self.resuming = Some(Box::pin(resume(
                self.bus.clone(),
                Arc::clone(&self.spec),
                self.retry_queues.clone(),
                self.stop.clone(),
                lost.channel,
            )));
        }
    }

    async fn stop(&mut self) -> Vec<Incoming> {
        self.stop.cancel();
        if let Some(resuming) = self.resuming.take() {
            self.current = resuming.await;
        }
        let mut unstarted = Vec::new();
        if self.spec.single_active_consumer() {
            // No `basic.cancel`: the broker would make the next consumer active at once and
            // hand it the messages after those this one holds, which come back only with
            // their requeue. This consumer keeps what it holds, unstarted, until its channel
            // closes (`close`, after the work in flight has settled): the broker then puts
            // them back in their places and only then activates the next consumer.
            return unstarted;
        }
        let Some((session, consumer)) = self.current.as_mut() else {
            return unstarted;
        };
        let Ok(tag) = ShortString::try_new(session.tag.as_str()) else {
            return unstarted;
        };
        let cancel = session
            .channel
            .basic_cancel(tag, BasicCancelOptions::default());
        match tokio::time::timeout(self.bus.options().operation_timeout(), cancel).await {
            Ok(Ok(())) => {
                // Deliveries already on their way, until the stream ends after the cancel-ok.
                while let Ok(Some(Ok(delivery))) =
                    tokio::time::timeout(Duration::from_secs(2), consumer.next()).await
                {
                    unstarted.push(incoming(delivery));
                }
            }
            Ok(Err(e)) => {
                tracing::debug!(queue = %self.spec.queue, error = %e, "basic.cancel failed")
            }
            Err(_) => tracing::warn!(queue = %self.spec.queue, "basic.cancel timed out"),
        }
        unstarted
    }

    async fn close(mut self: Box<Self>) {
        if let Some((session, _)) = self.current.take() {
            close_channel(&session.channel).await;
        }
        if let Some(sampling) = self.sampling.take() {
            sampling.stop().await;
        }
    }
}

/// Closes the lost channel and opens a new session once the connection is back; `None` when
/// the transport was closed or the consumer stopped.
async fn resume(
    bus: RabbitMq,
    spec: Arc<Subscribe>,
    retry_queues: RetryQueues,
    stop: CancellationToken,
    lost: Channel,
) -> Option<(Session, Consumer)> {
    close_channel(&lost).await;
    let options = bus.options();
    let mut backoff = options.reconnect_min_backoff();
    loop {
        if stop.is_cancelled() {
            return None;
        }
        let link = match bus
            .connection()
            .wait_up(Duration::from_secs(3600), Some(&stop))
            .await
        {
            Ok(link) => link,
            Err(WaitError::Unavailable(_)) => continue,
            Err(WaitError::Cancelled | WaitError::Closed) => return None,
        };
        match open_session(&bus, &spec, &retry_queues, &link).await {
            Ok(opened) => {
                tracing::info!(
                    queue = %spec.queue,
                    generation = link.generation,
                    "consumer resumed"
                );
                metrics::counter!("ferry_rabbitmq_consumer_resumed_total", "queue" => spec.queue.clone())
                    .increment(1);
                return Some(opened);
            }
            Err(e) => {
                tracing::warn!(queue = %spec.queue, error = %e, "could not resume the consumer; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return None,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(options.reconnect_max_backoff());
            }
        }
    }
}
