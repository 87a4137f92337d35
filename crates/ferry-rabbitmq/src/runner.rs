//! The consume loop shared by event consumers and dead-letter consumers: a session (channel,
//! topology, `basic.consume`) per connection generation, at most `concurrency` handlers at
//! once, a new session after a connection loss, and graceful shutdown. The queue is sampled
//! while the consumer runs (see [`crate::sampling`]).

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use futures::StreamExt;
use lapin::{
    Acker, Channel, Consumer,
    message::Delivery,
    options::{BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions},
    types::{FieldTable, ShortString},
};
use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;

use ferry_core::ConsumerHandle;

use crate::{
    RabbitMq, RabbitMqError,
    connection::{Link, WaitError, with_timeout},
    error::is_connection_error,
    sampling::Sampling,
    topology::{ObjectKind, short},
};

/// The longest an ack or nack may take before the consumer moves on.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a message whose settlement failed waits before it is requeued.
pub(crate) const REQUEUE_PAUSE: Duration = Duration::from_secs(1);

/// One channel's consumption of the queue.
pub(crate) struct Session {
    pub channel: Channel,
    pub generation: u64,
    pub tag: String,
    /// Retry queues known to exist on this connection.
    pub declared: Mutex<HashSet<String>>,
}

impl Session {
    pub fn is_declared(&self, name: &str) -> bool {
        self.declared
            .lock()
            .map(|d| d.contains(name))
            .unwrap_or(false)
    }

    pub fn mark_declared(&self, name: &str, declared: bool) {
        if let Ok(mut d) = self.declared.lock() {
            if declared {
                d.insert(name.to_owned());
            } else {
                d.remove(name);
            }
        }
    }
}

/// What a consumer does: declare its topology, handle a delivery.
#[async_trait]
pub(crate) trait Worker: Send + Sync + 'static {
    fn bus(&self) -> &RabbitMq;
    fn queue(&self) -> &str;
    fn prefetch(&self) -> u16;
    fn concurrency(&self) -> usize;
    fn no_ack(&self) -> bool;
    /// Declares (or checks) what the session needs; runs at the start of every session.
    async fn declare(&self, session: &Session) -> Result<(), RabbitMqError>;
    /// Handles and settles one delivery.
    async fn handle(&self, delivery: Delivery, session: Arc<Session>, cancel: CancellationToken);
}

/// Opens the first session (errors go to the caller) and runs the consumer in a task.
pub(crate) async fn start<W: Worker>(
    worker: Arc<W>,
    cancel: CancellationToken,
) -> Result<ConsumerHandle, RabbitMqError> {
    let bus = worker.bus();
    let link = bus
        .connection()
        .wait_up(bus.options().connect_timeout(), None)
        .await
        .map_err(|e| bus.connection().wait_error(e))?;
    let (session, consumer) = open_session(&*worker, &link).await?;
    tracing::info!(queue = worker.queue(), "consumer started");
    let sampling = Sampling::start(bus, worker.queue());
    let task = tokio::spawn({
        let cancel = cancel.clone();
        async move {
            run(worker, cancel, session, consumer).await;
            sampling.stop().await;
        }
    });
    Ok(ConsumerHandle::new(cancel, task))
}

async fn open_session<W: Worker>(
    worker: &W,
    link: &Link,
) -> Result<(Arc<Session>, Consumer), RabbitMqError> {
    let timeout = worker.bus().options().operation_timeout();
    let queue = short(ObjectKind::Queue, worker.queue())?;
    let channel = with_timeout(
        "open a consumer channel",
        timeout,
        link.conn.create_channel(),
    )
    .await?
    .map_err(|e| RabbitMqError::operation("open a consumer channel", &e))?;
    let prefix: String = worker.queue().chars().take(180).collect();
    let tag = format!("ferry.{prefix}.{}", uuid::Uuid::new_v4().simple());
    let session = Arc::new(Session {
        channel: channel.clone(),
        generation: link.generation,
        tag: tag.clone(),
        declared: Mutex::new(HashSet::new()),
    });
    let result = async {
        if !worker.no_ack() {
            with_timeout(
                "set the prefetch",
                timeout,
                channel.basic_qos(worker.prefetch(), BasicQosOptions { global: false }),
            )
            .await?
            .map_err(|e| RabbitMqError::operation("set the prefetch", &e))?;
        }
        worker.declare(&session).await?;
        let tag = ShortString::try_new(tag.as_str()).map_err(|_| {
            RabbitMqError::InvalidConsumer(format!("consumer tag `{tag}` is too long"))
        })?;
        let options = BasicConsumeOptions {
            no_ack: worker.no_ack(),
            ..BasicConsumeOptions::default()
        };
        let op = format!("consume queue `{}`", worker.queue());
        with_timeout(
            op.clone(),
            timeout,
            channel.basic_consume(queue, tag, options, FieldTable::default()),
        )
        .await?
        .map_err(|e| RabbitMqError::operation(op, &e))
    }
    .await;
    match result {
        Ok(consumer) => Ok((session, consumer)),
        Err(e) => {
            close_channel(&channel).await;
            Err(e)
        }
    }
}

enum SessionEnd {
    Cancelled,
    Lost(String),
}

async fn run<W: Worker>(
    worker: Arc<W>,
    cancel: CancellationToken,
    mut session: Arc<Session>,
    mut consumer: Consumer,
) {
    let semaphore = Arc::new(Semaphore::new(worker.concurrency().max(1)));
    let mut tasks = JoinSet::new();
    let options = worker.bus().options().clone();
    'sessions: loop {
        match consume(
            &worker,
            &cancel,
            &session,
            &mut consumer,
            &semaphore,
            &mut tasks,
        )
        .await
        {
            SessionEnd::Cancelled => {
                graceful_stop(&worker, &session, &mut consumer, &mut tasks, &cancel).await;
                break 'sessions;
            }
            SessionEnd::Lost(reason) => {
                tracing::warn!(queue = worker.queue(), reason = %reason, "consumer lost its channel; resuming");
                close_channel(&session.channel).await;
            }
        }
        let mut backoff = options.reconnect_min_backoff();
        loop {
            if cancel.is_cancelled() {
                break 'sessions;
            }
            let link = match worker
                .bus()
                .connection()
                .wait_up(Duration::from_secs(3600), Some(&cancel))
                .await
            {
                Ok(link) => link,
                Err(WaitError::Unavailable(_)) => continue,
                Err(WaitError::Cancelled | WaitError::Closed) => break 'sessions,
            };
            match open_session(&*worker, &link).await {
                Ok((s, c)) => {
                    session = s;
                    consumer = c;
                    tracing::info!(
                        queue = worker.queue(),
                        generation = link.generation,
                        "consumer resumed"
                    );
                    metrics::counter!("ferry_rabbitmq_consumer_resumed_total", "queue" => worker.queue().to_owned())
                        .increment(1);
                    break;
                }
                Err(e) => {
                    tracing::warn!(queue = worker.queue(), error = %e, "could not resume the consumer; retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => break 'sessions,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(options.reconnect_max_backoff());
                }
            }
        }
    }
    // Whatever path ended the loop, in-flight handlers finish and settle before we return.
    while tasks.join_next().await.is_some() {}
    close_channel(&session.channel).await;
    tracing::info!(queue = worker.queue(), "consumer stopped");
}

async fn consume<W: Worker>(
    worker: &Arc<W>,
    cancel: &CancellationToken,
    session: &Arc<Session>,
    consumer: &mut Consumer,
    semaphore: &Arc<Semaphore>,
    tasks: &mut JoinSet<()>,
) -> SessionEnd {
    let connection = worker.bus().connection();
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return SessionEnd::Cancelled,
            _ = connection.lost(session.generation) => {
                return SessionEnd::Lost("the connection dropped".into());
            }
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = joined {
                    tracing::error!(queue = worker.queue(), error = %e, "a handler task failed");
                }
            }
            item = consumer.next() => match item {
                Some(Ok(delivery)) => {
                    let permit = tokio::select! {
                        permit = Arc::clone(semaphore).acquire_owned() => permit,
                        _ = cancel.cancelled() => {
                            settle_unstarted(&**worker, delivery, session, cancel, tasks).await;
                            return SessionEnd::Cancelled;
                        }
                    };
                    let Ok(permit) = permit else {
                        return SessionEnd::Cancelled;
                    };
                    let worker = Arc::clone(worker);
                    let session = Arc::clone(session);
                    let cancel = cancel.clone();
                    tasks.spawn(async move {
                        worker.handle(delivery, session, cancel).await;
                        drop(permit);
                    });
                }
                Some(Err(e)) => return SessionEnd::Lost(e.to_string()),
                None => {
                    return SessionEnd::Lost(
                        "the broker cancelled the consumer or closed its channel".into(),
                    );
                }
            }
        }
    }
}

/// A delivery that arrived but was not started when shutdown began: requeued (or, with
/// auto-ack, where the broker already forgot it, handled).
async fn settle_unstarted<W: Worker>(
    worker: &W,
    delivery: Delivery,
    session: &Arc<Session>,
    cancel: &CancellationToken,
    tasks: &mut JoinSet<()>,
) {
    if worker.no_ack() {
        let _ = tasks;
        worker
            .handle(delivery, Arc::clone(session), cancel.clone())
            .await;
    } else {
        nack_requeue(&delivery.acker).await;
    }
}

async fn graceful_stop<W: Worker>(
    worker: &Arc<W>,
    session: &Arc<Session>,
    consumer: &mut Consumer,
    tasks: &mut JoinSet<()>,
    cancel: &CancellationToken,
) {
    let timeout = worker.bus().options().operation_timeout();
    tracing::info!(
        queue = worker.queue(),
        in_flight = tasks.len(),
        "consumer stopping"
    );
    if let Ok(tag) = ShortString::try_new(session.tag.as_str()) {
        match tokio::time::timeout(
            timeout,
            session
                .channel
                .basic_cancel(tag, BasicCancelOptions::default()),
        )
        .await
        {
            Ok(Ok(())) => {
                // Deliveries that were already on their way: requeue them (handle them under
                // auto-ack), until the stream ends after the cancel-ok.
                while let Ok(Some(Ok(delivery))) =
                    tokio::time::timeout(Duration::from_secs(2), consumer.next()).await
                {
                    settle_unstarted(&**worker, delivery, session, cancel, tasks).await;
                }
            }
            Ok(Err(e)) => {
                tracing::debug!(queue = worker.queue(), error = %e, "basic.cancel failed");
            }
            Err(_) => tracing::warn!(queue = worker.queue(), "basic.cancel timed out"),
        }
    }
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined {
            tracing::error!(queue = worker.queue(), error = %e, "a handler task failed");
        }
    }
}

pub(crate) async fn close_channel(channel: &Channel) {
    if channel.status().connected() {
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            channel.close(200, "consumer stopped".into()),
        )
        .await;
    }
}

/// Acks; a failure only means the broker will redeliver.
pub(crate) async fn ack(acker: &Acker) {
    // Bounded: an ack lost with its channel must not hold up the consumer (or its shutdown);
    // the broker redelivers what was not acked, and the inbox absorbs the duplicate.
    let Ok(result) = tokio::time::timeout(
        SETTLE_TIMEOUT,
        acker.ack(lapin::options::BasicAckOptions::default()),
    )
    .await
    else {
        tracing::warn!("ack timed out; the broker will redeliver");
        return;
    };
    match result {
        Ok(true) => {}
        Ok(false) => {
            tracing::debug!("ack skipped: the channel is gone, the broker will redeliver")
        }
        Err(e) if is_connection_error(&e) => {
            tracing::debug!(error = %e, "ack failed with the connection; the broker will redeliver")
        }
        Err(e) => tracing::warn!(error = %e, "ack failed; the broker will redeliver"),
    }
}

/// Puts the message back on its queue.
pub(crate) async fn nack_requeue(acker: &Acker) {
    let options = BasicNackOptions {
        multiple: false,
        requeue: true,
    };
    let Ok(result) = tokio::time::timeout(SETTLE_TIMEOUT, acker.nack(options)).await else {
        tracing::warn!("nack timed out; the broker will redeliver");
        return;
    };
    match result {
        Ok(_) => {}
        Err(e) if is_connection_error(&e) => {
            tracing::debug!(error = %e, "nack failed with the connection; the broker will redeliver")
        }
        Err(e) => tracing::warn!(error = %e, "nack failed; the broker will redeliver"),
    }
}

/// Waits a moment (less at shutdown), then requeues: for messages whose retry or dead-letter
/// copy could not be published, so nothing is lost and the broker is not hammered.
pub(crate) async fn requeue_after_pause(acker: &Acker, cancel: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(REQUEUE_PAUSE) => {}
        _ = cancel.cancelled() => {}
    }
    nack_requeue(acker).await;
}
