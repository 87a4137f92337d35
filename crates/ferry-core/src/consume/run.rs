//! The loop: at most `concurrency` deliveries in process at once, then shutdown and drain.

use std::sync::Arc;

use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;

use super::{Incoming, Subscription, settle::Settler, step::Step};

/// What each delivery goes through.
pub(crate) struct Worker {
    pub step: Step,
    pub settler: Settler,
}

impl Worker {
    fn queue(&self) -> &str {
        &self.settler.queue
    }

    async fn handle(&self, incoming: Incoming) {
        let verdict = self.step.process(self.queue(), &incoming.delivery).await;
        self.settler.settle(incoming, verdict).await;
    }
}

/// Runs until `cancel`; then stops the subscription, requeues what did not start, and waits
/// for the work in flight, or aborts it once `abandon` is cancelled (the drain deadline): the
/// aborted deliveries stay unacked, so they are delivered again.
pub(crate) async fn run(
    worker: Arc<Worker>,
    mut subscription: Box<dyn Subscription>,
    concurrency: usize,
    cancel: CancellationToken,
    abandon: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    tracing::info!(queue = worker.queue(), "consumer started");
    loop {
        reap(&worker, &mut tasks);
        // A permit first: a delivery is taken only when it can start at once.
        let permit = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            permit = Arc::clone(&permits).acquire_owned() => permit,
        };
        let Ok(permit) = permit else { break };
        let next = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            next = subscription.next() => next,
        };
        let Some(incoming) = next else {
            tracing::warn!(
                queue = worker.queue(),
                "the subscription ended; the consumer stops"
            );
            break;
        };
        tasks.spawn(handle(Arc::clone(&worker), incoming, permit));
    }
    tracing::info!(
        queue = worker.queue(),
        in_flight = tasks.len(),
        "consumer stopping"
    );
    for incoming in subscription.stop().await {
        if worker.settler.auto_ack {
            // The broker already forgot it: handle it rather than lose it.
            let permits = Arc::clone(&permits);
            let worker = Arc::clone(&worker);
            tasks.spawn(async move {
                if let Ok(permit) = permits.acquire_owned().await {
                    handle(worker, incoming, permit).await;
                }
            });
        } else {
            worker.settler.requeue_unstarted(incoming).await;
        }
    }
    drain(&worker, &mut tasks, &abandon).await;
    subscription.close().await;
    tracing::info!(queue = worker.queue(), "consumer stopped");
}

async fn handle(worker: Arc<Worker>, incoming: Incoming, permit: OwnedSemaphorePermit) {
    worker.handle(incoming).await;
    drop(permit);
}

/// Logs the tasks that ended abnormally, without waiting.
fn reap(worker: &Worker, tasks: &mut JoinSet<()>) {
    while let Some(joined) = tasks.try_join_next() {
        if let Err(e) = joined {
            tracing::error!(queue = worker.queue(), error = %e, "a delivery task failed");
        }
    }
}

async fn drain(worker: &Worker, tasks: &mut JoinSet<()>, abandon: &CancellationToken) {
    loop {
        tokio::select! {
            biased;
            _ = abandon.cancelled() => {
                tracing::warn!(
                    queue = worker.queue(),
                    abandoned = tasks.len(),
                    "drain deadline passed: in-flight deliveries are abandoned to redelivery"
                );
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                return;
            }
            joined = tasks.join_next() => match joined {
                None => return,
                Some(Err(e)) if !e.is_cancelled() => {
                    tracing::error!(queue = worker.queue(), error = %e, "a delivery task failed");
                }
                Some(_) => {}
            },
        }
    }
}
