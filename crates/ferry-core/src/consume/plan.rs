//! A consumer's configuration, checked once for every transport.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{Republish, Subscribe, Subscription, Topology, run, settle::Settler, step::Step};
use crate::{ConsumerHandle, ConsumerSpec, DeadLetterSpec};

/// A consumer whose configuration is invalid; the transport refuses to start it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidConsumer(String);

/// A checked consumer, ready to run: the transport opens the subscription it asks for
/// ([`ConsumerPlan::subscribe`]) and starts it on that with [`ConsumerPlan::start`].
pub struct ConsumerPlan {
    subscribe: Subscribe,
    concurrency: usize,
    step: Step,
    dead_letter_exchange: Option<String>,
    cancel: CancellationToken,
}

impl std::fmt::Debug for ConsumerPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerPlan")
            .field("subscribe", &self.subscribe)
            .field("concurrency", &self.concurrency)
            .field("dead_letter_exchange", &self.dead_letter_exchange)
            .finish_non_exhaustive()
    }
}

impl ConsumerPlan {
    /// An event consumer: the spec must be valid ([`ConsumerSpec::validate`]) and have a
    /// dead-letter exchange (its own, else the transport's `default_dead_letter_exchange`)
    /// unless it acks on delivery, for a message that fails for good would be lost.
    pub fn events(
        mut spec: ConsumerSpec,
        default_dead_letter_exchange: Option<&str>,
    ) -> Result<Self, InvalidConsumer> {
        spec.validate().map_err(InvalidConsumer)?;
        let dead_letter_exchange = spec
            .dead_letter_exchange
            .clone()
            .or_else(|| default_dead_letter_exchange.map(str::to_owned));
        if dead_letter_exchange.is_none() && !spec.auto_ack {
            return Err(InvalidConsumer(format!(
                "consumer `{}` has no dead-letter exchange, so a message that fails for good \
                 would be lost; add `.dead_letter(\"app.dlx\")` to the consumer, or give the \
                 transport a default (RabbitMqOptions::with_dead_letter_exchange)",
                spec.queue
            )));
        }
        let cancel = CancellationToken::new();
        spec.pipeline.set_cancellation(cancel.clone());
        let retry_delays = if spec.auto_ack {
            Vec::new()
        } else {
            spec.pipeline.retry_policy().distinct_delays()
        };
        Ok(Self {
            subscribe: Subscribe {
                queue: spec.queue.clone(),
                topology: Topology::Events {
                    queue_type: spec.queue_type,
                    delivery_limit: spec.delivery_limit,
                    single_active_consumer: spec.single_active_consumer
                        || spec.partitions.is_some(),
                    partition: None,
                    bindings: spec.bindings.clone(),
                    dead_letter_exchange: dead_letter_exchange.clone(),
                    retry_delays,
                },
                prefetch: spec.prefetch,
                auto_ack: spec.auto_ack,
            },
            concurrency: spec.concurrency.min(usize::from(spec.prefetch)).max(1),
            step: Step::Pipeline(Arc::new(spec.pipeline)),
            dead_letter_exchange,
            cancel,
        })
    }

    /// The plans of a partitioned consumer, one a partition (queue `<queue>.p<i>`, a single
    /// active consumer, one message at a time); a consumer with no partitions gives one plan.
    /// Each partition shares the spec's pipeline, so its inbox and telemetry name the
    /// consumer's queue.
    pub fn partitioned(
        spec: ConsumerSpec,
        default_dead_letter_exchange: Option<&str>,
    ) -> Result<Vec<Self>, InvalidConsumer> {
        let Some(count) = spec.partitions else {
            return Ok(vec![Self::events(spec, default_dead_letter_exchange)?]);
        };
        let consumer = spec.queue.clone();
        (0..count)
            .map(|index| {
                let mut plan = Self::events(spec.clone(), default_dead_letter_exchange)?;
                plan.subscribe.queue = super::Partition::queue_name(&consumer, index);
                if let Topology::Events { partition, .. } = &mut plan.subscribe.topology {
                    *partition = Some(super::Partition {
                        consumer: consumer.clone(),
                        index,
                        count,
                    });
                }
                Ok(plan)
            })
            .collect()
    }

    /// A dead-letter consumer: its callback is the processing step, one dead letter at a
    /// time; `Ok` acks, an error or a panic requeues after a pause.
    pub fn dead_letters(spec: DeadLetterSpec) -> Result<Self, InvalidConsumer> {
        let Some(callback) = spec.on_dead_letter else {
            return Err(InvalidConsumer(format!(
                "dead-letter consumer `{}` has no callback; add `.on_dead_letter(f)`",
                spec.queue
            )));
        };
        Ok(Self {
            subscribe: Subscribe {
                queue: spec.queue,
                topology: Topology::DeadLetters {
                    exchange: spec.exchange,
                },
                prefetch: spec.prefetch,
                auto_ack: false,
            },
            concurrency: 1,
            step: Step::DeadLetters(callback),
            dead_letter_exchange: None,
            cancel: CancellationToken::new(),
        })
    }

    /// What the transport declares and consumes.
    pub fn subscribe(&self) -> &Subscribe {
        &self.subscribe
    }

    /// Handlers (or callbacks) at once: `min(concurrency, prefetch)`, at least 1.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// Runs the consume loop on `subscription` in a task; copies go out through `republish`.
    pub fn start(
        self,
        subscription: Box<dyn Subscription>,
        republish: Arc<dyn Republish>,
    ) -> ConsumerHandle {
        let abandon = CancellationToken::new();
        let settler = Settler {
            queue: self.subscribe.queue.clone(),
            auto_ack: self.subscribe.auto_ack,
            dead_letter_exchange: self.dead_letter_exchange,
            republish,
            cancel: self.cancel.clone(),
        };
        let worker = run::Worker {
            step: self.step,
            settler,
        };
        let task = tokio::spawn(run::run(
            Arc::new(worker),
            subscription,
            self.concurrency,
            self.cancel.clone(),
            abandon.clone(),
        ));
        ConsumerHandle::with_abandon(self.cancel, abandon, task)
    }
}
