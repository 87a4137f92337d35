//! Operator tools for a dead-letter queue: list, show, replay, purge (`ferry dlq`).
//!
//! Reading is done with `basic.get` without acking: the messages stay on the queue, and are
//! put back with one `basic.nack(multiple, requeue)` at the end, which keeps their order. A
//! replay republishes a dead letter, confirmed, to its `ferry-original-queue` through the
//! default exchange, without the `ferry-fault-*` headers and with `ferry-attempt` reset, but
//! with its `ferry-original-*` headers, so a replay that fails again is dead-lettered with its
//! first origin; only then is the dead letter acked. Messages that a running dead-letter consumer holds
//! unacked are not visible to these tools.

use lapin::{
    Channel,
    message::BasicGetMessage,
    options::{BasicAckOptions, BasicGetOptions, BasicNackOptions, QueuePurgeOptions},
    types::DeliveryTag,
};

use ferry_core::{DeadLetter, Fault, OutgoingMessage, fault::headers};

use crate::{
    RabbitMq, RabbitMqError,
    connection::with_timeout,
    session::close_channel,
    topology::{ObjectKind, inspect_queue, short},
    wire,
};

/// Which dead letters an operation applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DlqSelection {
    /// Every message on the queue.
    All,
    /// The messages with these ids (`message_id`, or `ce-id` for messages that decode).
    Ids(Vec<String>),
}

/// Why a dead letter could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The dead letter does not say which queue it failed on.
    #[error("the dead letter has no `ferry-original-queue` header")]
    NoOriginalQueue,
    /// The broker did not confirm the republished message.
    #[error(transparent)]
    Publish(#[from] ferry_core::PublishError),
}

impl RabbitMq {
    /// Replays one dead letter: republishes it, confirmed, to its `ferry-original-queue`
    /// through the default exchange, without the `ferry-fault-*` headers and with
    /// `ferry-attempt` reset, keeping its `ferry-original-*` headers (`docs/wire-format.md`).
    /// What `ferry dlq replay` does for each message, and what a dead-letter store's replay
    /// calls.
    ///
    /// ```no_run
    /// # async fn demo(bus: ferry_rabbitmq::RabbitMq, dead: ferry_core::DeadLetter) -> Result<(), Box<dyn std::error::Error>> {
    /// bus.replay_dead_letter(&dead).await?;
    /// # Ok(()) }
    /// ```
    pub async fn replay_dead_letter(&self, dead_letter: &DeadLetter) -> Result<(), ReplayError> {
        let Some(queue) = dead_letter
            .fault
            .original_queue
            .clone()
            .filter(|q| !q.is_empty())
        else {
            return Err(ReplayError::NoOriginalQueue);
        };
        let mut message = dead_letter.message.clone();
        Fault::strip_from(&mut message);
        // The replay travels through the default exchange with the queue's name as routing key;
        // the origin headers are what lets a second failure be dead-lettered, and its consumer
        // span named, with the exchange and routing key the event was first published with.
        let fault = &dead_letter.fault;
        for (name, value) in [
            (headers::ORIGINAL_EXCHANGE, &fault.original_exchange),
            (headers::ORIGINAL_ROUTING_KEY, &fault.original_routing_key),
            (headers::ORIGINAL_QUEUE, &fault.original_queue),
        ] {
            if let Some(value) = value {
                message.headers.insert(name.into(), value.as_str().into());
            }
        }
        let outgoing = OutgoingMessage {
            exchange: Some(String::new()),
            routing_key: queue,
            message,
        };
        self.publish_one(outgoing).await?;
        Ok(())
    }
}

impl DlqSelection {
    fn selects(&self, dead_letter: &DeadLetter) -> bool {
        match self {
            DlqSelection::All => true,
            DlqSelection::Ids(ids) => {
                let id = dead_letter.message_id();
                id.is_some_and(|id| ids.iter().any(|wanted| wanted == id))
            }
        }
    }
}

/// What a replay or purge did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Ids (or `""`) of the messages replayed or purged.
    pub done: Vec<String>,
    /// Requested ids that were not on the queue.
    pub not_found: Vec<String>,
    /// Messages that could not be replayed, with why; they stay on the queue.
    pub failed: Vec<(String, String)>,
}

/// The tools for one dead-letter queue; see [`RabbitMq::dead_letter_queue`].
#[derive(Debug)]
pub struct DeadLetterQueue<'a> {
    bus: &'a RabbitMq,
    queue: String,
}

struct Got {
    tag: DeliveryTag,
    dead_letter: DeadLetter,
}

impl<'a> DeadLetterQueue<'a> {
    pub(crate) fn new(bus: &'a RabbitMq, queue: impl Into<String>) -> Self {
        Self {
            bus,
            queue: queue.into(),
        }
    }

    /// The queue's name.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The number of messages ready on the queue (an error if it does not exist).
    pub async fn count(&self) -> Result<u32, RabbitMqError> {
        self.bus.queue_counts(&self.queue).await.map(|(m, _)| m)
    }

    /// Reads up to `limit` dead letters (all when `None`) in queue order, leaving them on the
    /// queue in the same order.
    pub async fn list(&self, limit: Option<usize>) -> Result<Vec<DeadLetter>, RabbitMqError> {
        self.session(|channel, total| async move {
            let max = limit.map_or(total, |l| l.min(total));
            let mut out = Vec::with_capacity(max);
            let mut last = None;
            while out.len() < max {
                let Some(got) = self.get(&channel).await? else {
                    break;
                };
                last = Some(got.tag);
                out.push(got.dead_letter);
            }
            requeue_up_to(&channel, last).await?;
            Ok(out)
        })
        .await
    }

    /// The dead letter with this id, if it is on the queue (nothing is removed).
    pub async fn show(&self, id: &str) -> Result<Option<DeadLetter>, RabbitMqError> {
        self.session(|channel, total| async move {
            let mut last = None;
            let mut found = None;
            for _ in 0..total {
                let Some(got) = self.get(&channel).await? else {
                    break;
                };
                last = Some(got.tag);
                if got.dead_letter.message_id() == Some(id) {
                    found = Some(got.dead_letter);
                    break;
                }
            }
            requeue_up_to(&channel, last).await?;
            Ok(found)
        })
        .await
    }

    /// Sends the selected dead letters back to their original queues; the others stay, in
    /// order.
    pub async fn replay(&self, selection: &DlqSelection) -> Result<ReplayReport, RabbitMqError> {
        self.walk(selection, true).await
    }

    /// Removes the selected dead letters (for [`DlqSelection::All`], the whole queue); the
    /// others stay, in order.
    pub async fn purge(&self, selection: &DlqSelection) -> Result<ReplayReport, RabbitMqError> {
        if *selection == DlqSelection::All {
            let name = short(ObjectKind::Queue, &self.queue)?;
            let timeout = self.bus.options().operation_timeout();
            let count = self
                .bus
                .with_channel("purge a queue", |channel| async move {
                    with_timeout(
                        "purge a queue",
                        timeout,
                        channel.queue_purge(name, QueuePurgeOptions::default()),
                    )
                    .await?
                    .map_err(|e| RabbitMqError::operation("purge a queue", &e))
                })
                .await?;
            return Ok(ReplayReport {
                done: vec![String::new(); count as usize],
                ..ReplayReport::default()
            });
        }
        self.walk(selection, false).await
    }

    async fn walk(
        &self,
        selection: &DlqSelection,
        replay: bool,
    ) -> Result<ReplayReport, RabbitMqError> {
        self.session(|channel, total| async move {
            let mut report = ReplayReport::default();
            let mut highest_unacked: Option<DeliveryTag> = None;
            let mut remaining: Vec<String> = match selection {
                DlqSelection::All => Vec::new(),
                DlqSelection::Ids(ids) => ids.clone(),
            };
            for _ in 0..total {
                if matches!(selection, DlqSelection::Ids(_)) && remaining.is_empty() {
                    break;
                }
                let Some(got) = self.get(&channel).await? else {
                    break;
                };
                let id = got.dead_letter.message_id().unwrap_or("").to_owned();
                if !selection.selects(&got.dead_letter) {
                    highest_unacked = Some(got.tag);
                    continue;
                }
                remaining.retain(|r| r != &id);
                let outcome = if replay {
                    self.replay_one(&got.dead_letter).await
                } else {
                    Ok(())
                };
                match outcome {
                    Ok(()) => {
                        ack(&channel, got.tag).await?;
                        report.done.push(id);
                    }
                    Err(reason) => {
                        highest_unacked = Some(got.tag);
                        report.failed.push((id, reason));
                    }
                }
            }
            requeue_up_to(&channel, highest_unacked).await?;
            report.not_found = remaining;
            Ok(report)
        })
        .await
    }

    async fn replay_one(&self, dead_letter: &DeadLetter) -> Result<(), String> {
        self.bus
            .replay_dead_letter(dead_letter)
            .await
            .map_err(|e| e.to_string())
    }

    async fn get(&self, channel: &Channel) -> Result<Option<Got>, RabbitMqError> {
        let name = short(ObjectKind::Queue, &self.queue)?;
        let timeout = self.bus.options().operation_timeout();
        let got: Option<BasicGetMessage> = with_timeout(
            "read a dead letter",
            timeout,
            channel.basic_get(name, BasicGetOptions { no_ack: false }),
        )
        .await?
        .map_err(|e| RabbitMqError::operation("read a dead letter", &e))?;
        Ok(got.map(|g| {
            let d = g.delivery;
            let message = wire::from_amqp(&d.properties, &d.data);
            Got {
                tag: d.delivery_tag,
                dead_letter: DeadLetter::from_message(message, d.routing_key.as_str()),
            }
        }))
    }

    /// Opens a channel, counts the queue, runs `f` and closes the channel (which requeues
    /// whatever `f` left unacked).
    async fn session<T, F, Fut>(&self, f: F) -> Result<T, RabbitMqError>
    where
        F: FnOnce(Channel, usize) -> Fut,
        Fut: std::future::Future<Output = Result<T, RabbitMqError>>,
    {
        let timeout = self.bus.options().operation_timeout();
        let queue = self.queue.clone();
        self.bus
            .with_channel("read the dead-letter queue", |channel| async move {
                let (count, _) = inspect_queue(&channel, &queue, timeout).await?;
                let result = f(channel.clone(), count as usize).await;
                close_channel(&channel).await;
                result
            })
            .await
    }
}

async fn ack(channel: &Channel, tag: DeliveryTag) -> Result<(), RabbitMqError> {
    channel
        .basic_ack(tag, BasicAckOptions { multiple: false })
        .await
        .map_err(|e| RabbitMqError::operation("ack a dead letter", &e))
}

async fn requeue_up_to(channel: &Channel, tag: Option<DeliveryTag>) -> Result<(), RabbitMqError> {
    let Some(tag) = tag else {
        return Ok(());
    };
    channel
        .basic_nack(
            tag,
            BasicNackOptions {
                multiple: true,
                requeue: true,
            },
        )
        .await
        .map_err(|e| RabbitMqError::operation("put dead letters back", &e))
}
