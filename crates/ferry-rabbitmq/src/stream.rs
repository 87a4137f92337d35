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
    stall::{self, Unsettled},
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

fn incoming(d: lapin::message::Delivery, unsettled: &Unsettled) -> Incoming {
    Incoming {
        delivery: Delivery {
            message: wire::from_amqp(&d.properties, &d.data),
            exchange: d.exchange.as_str().to_owned(),
            routing_key: d.routing_key.as_str().to_owned(),
            redelivered: d.redelivered,
        },
        settle: Box::new(AmqpSettle {
            acker: d.acker,
            _unsettled: unsettled.track(),
        }),
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
            // A single active consumer waiting its turn rightly gets nothing.
            let check = if self.spec.single_active_consumer() {
                None
            } else {
                self.bus.options().consumer_stall_check()
            };
            let reason = tokio::select! {
                biased;
                _ = self.bus.connection().lost(session.generation) => {
                    "the connection dropped".to_owned()
                }
                item = consumer.next() => match item {
                    Some(Ok(delivery)) => return Some(incoming(delivery, &session.unsettled)),
                    Some(Err(e)) => e.to_string(),
                    None => "the broker cancelled the consumer or closed its channel".to_owned(),
                },
                ready = stall::stalled(&self.bus, &self.spec.queue, check, &session.unsettled) => {
                    metrics::counter!("ferry_rabbitmq_consumer_stalled_total", "queue" => self.spec.queue.clone())
                        .increment(1);
                    format!("nothing delivered while the queue holds {ready} ready messages (a quorum queue whose leader moved, say)")
                }
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
                    unstarted.push(incoming(delivery, &session.unsettled));
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ferry_core::consume::{Subscribe, Subscription, Topology};
    use lapin::{BasicProperties, options::BasicPublishOptions};

    use super::AmqpSubscription;
    use crate::{RabbitMq, RabbitMqError, RabbitMqOptions, session::RetryQueues};

    /// A consumer the broker stops feeding while its queue holds messages (here: a delivery
    /// dropped without its ack, which fills the prefetch of one as a lost ack would) subscribes
    /// again on a new channel: the message comes back and the rest follow. Without the stall
    /// check the second `next` waits forever, as the cluster suite's consumer did after a quorum
    /// queue's leader died.
    #[tokio::test]
    async fn a_consumer_fed_nothing_while_its_queue_holds_messages_subscribes_again() {
        let options = RabbitMqOptions::default()
            .with_consumer_stall_check(Some(Duration::from_millis(200)))
            .with_queue_sample_interval(None);
        let bus = RabbitMq::connect(options)
            .await
            .expect("connect to RabbitMQ");
        let queue = format!("ferry.test.stall-{}", uuid::Uuid::new_v4().simple());
        let spec = Subscribe {
            queue: queue.clone(),
            topology: Topology::Events {
                queue_type: None,
                delivery_limit: None,
                single_active_consumer: false,
                partition: None,
                bindings: Vec::new(),
                dead_letter_exchange: None,
                retry_delays: Vec::new(),
            },
            prefetch: 1,
            auto_ack: false,
        };
        let mut subscription = AmqpSubscription::open(&bus, spec, RetryQueues::default())
            .await
            .expect("subscribe");
        let name = queue.clone();
        bus.with_channel("publish", |channel| async move {
            for n in 0..3 {
                channel
                    .basic_publish(
                        "".into(),
                        name.as_str().into(),
                        BasicPublishOptions::default(),
                        format!("message {n}").as_bytes(),
                        BasicProperties::default(),
                    )
                    .await
                    .map_err(|e| RabbitMqError::operation("publish", &e))?;
            }
            Ok(())
        })
        .await
        .expect("publish three messages");

        let wait = Duration::from_secs(10);
        let first = tokio::time::timeout(wait, subscription.next()).await;
        let first = first
            .expect("a first delivery")
            .expect("the stream goes on");
        drop(first);
        let mut bodies = Vec::new();
        for _ in 0..3 {
            let next = tokio::time::timeout(wait, subscription.next())
                .await
                .expect("deliveries again after the stall")
                .expect("the stream goes on");
            bodies.push(String::from_utf8_lossy(&next.delivery.message.body).into_owned());
            next.settle.ack().await;
        }
        bodies.sort();
        assert_eq!(bodies, ["message 0", "message 1", "message 2"]);

        Box::new(subscription).close().await;
        bus.delete_queue(&queue).await.expect("delete the queue");
        bus.close().await;
    }
}
