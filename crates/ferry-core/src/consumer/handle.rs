//! [`ConsumerHandle`]: a running consumer, and how it is stopped (drained, or abandoned to
//! redelivery past a deadline).

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a consumer past its drain deadline has to hand its abandoned deliveries back
/// before its task is aborted.
const ABANDON_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// A running consumer: stop it with [`ConsumerHandle::shutdown`] or
/// [`ConsumerHandle::shutdown_within`].
#[derive(Debug)]
pub struct ConsumerHandle {
    cancel: CancellationToken,
    abandon: CancellationToken,
    task: JoinHandle<()>,
}

impl ConsumerHandle {
    /// Wraps a consumer task and the token that stops it.
    pub fn new(cancel: CancellationToken, task: JoinHandle<()>) -> Self {
        Self::with_abandon(cancel, CancellationToken::new(), task)
    }

    /// Wraps a consumer task, the token that stops it, and the token that tells it the drain
    /// deadline has passed (it then abandons its in-flight work to redelivery).
    pub fn with_abandon(
        cancel: CancellationToken,
        abandon: CancellationToken,
        task: JoinHandle<()>,
    ) -> Self {
        Self {
            cancel,
            abandon,
            task,
        }
    }

    /// One handle for many consumers (the partitions of a partitioned consumer): stopping it
    /// stops them all, its drain deadline is theirs, and it has finished when they all have.
    pub fn join(handles: Vec<ConsumerHandle>) -> ConsumerHandle {
        let cancel = CancellationToken::new();
        let abandon = CancellationToken::new();
        let (parent_cancel, parent_abandon) = (cancel.clone(), abandon.clone());
        let task = tokio::spawn(async move {
            let mut children = Vec::with_capacity(handles.len());
            let mut tasks = Vec::with_capacity(handles.len());
            for handle in handles {
                children.push((handle.cancel, handle.abandon));
                tasks.push(handle.task);
            }
            let forward = async {
                parent_cancel.cancelled().await;
                children.iter().for_each(|(cancel, _)| cancel.cancel());
                parent_abandon.cancelled().await;
                children.iter().for_each(|(_, abandon)| abandon.cancel());
                std::future::pending::<()>().await;
            };
            tokio::select! {
                results = futures::future::join_all(tasks) => {
                    for result in results {
                        if let Err(e) = result {
                            tracing::error!(error = %e, "consumer task ended abnormally");
                        }
                    }
                }
                _ = forward => {}
            }
        });
        ConsumerHandle::with_abandon(cancel, abandon, task)
    }

    /// The token that stops the consumer.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Whether the consumer task has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops taking deliveries, requeues those that arrived but did not start, lets in-flight
    /// handlers finish and settle, then returns. There is no deadline: a handler that never
    /// returns holds it (see [`ConsumerHandle::shutdown_within`]).
    pub async fn shutdown(self) {
        self.cancel.cancel();
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "consumer task ended abnormally");
        }
    }

    /// Stops like [`ConsumerHandle::shutdown`], but in-flight work still running after
    /// `deadline` is abandoned: its deliveries are left unacked (handed back on the in-memory
    /// bus), so they are delivered again, and its tasks end. Nothing is lost; an abandoned
    /// handler may have done part of its work, which the redelivery repeats
    /// (`docs/guarantees.md`). Returns whether the consumer stopped in time.
    pub async fn shutdown_within(self, deadline: std::time::Duration) -> bool {
        self.shutdown_by(tokio::time::Instant::now() + deadline)
            .await
    }

    /// [`ConsumerHandle::shutdown_within`] with an instant for the deadline (one deadline for
    /// many parts, as the [`Host`](crate::host::Host) has).
    pub async fn shutdown_by(mut self, deadline: tokio::time::Instant) -> bool {
        self.cancel.cancel();
        let (joined, in_time) = match tokio::time::timeout_at(deadline, &mut self.task).await {
            Ok(joined) => (joined, true),
            Err(_) => {
                tracing::warn!(
                    "consumer still busy at its drain deadline: abandoning its work in flight to redelivery"
                );
                self.abandon.cancel();
                // The loop hands the abandoned deliveries back; bounded, should the transport hang.
                match tokio::time::timeout(ABANDON_GRACE, &mut self.task).await {
                    Ok(joined) => (joined, false),
                    Err(_) => {
                        self.task.abort();
                        return false;
                    }
                }
            }
        };
        if let Err(e) = joined {
            tracing::error!(error = %e, "consumer task ended abnormally");
        }
        in_time
    }
}
