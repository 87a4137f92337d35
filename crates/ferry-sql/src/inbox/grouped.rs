//! The consumer's inbox calls, grouped: lookups and records that handlers make at the same
//! moment go to the database together, one statement (one round trip, one commit) for the
//! group, as a database's group commit does for transactions.
//!
//! A lone call is sent at once; while [`GROUPS_IN_FLIGHT`] statements of a kind are running,
//! new calls wait and the next statement takes all of them (up to [`MAX_GROUP`]). So an idle
//! consumer pays no delay, and a busy one pays one statement for many messages.

use std::{collections::HashSet, sync::Arc};

use ferry_core::InboxError;
use futures::{StreamExt, stream::FuturesUnordered};
use tokio::sync::{mpsc, oneshot};

use super::inbox_error;
use crate::dialect::{Dialect, Pool};

/// The most calls one statement takes.
const MAX_GROUP: usize = 256;

/// Statements of one kind (lookups, records) running at once: few, so that calls made
/// meanwhile queue and go together (one at a time groups the most, two keeps one slow
/// statement from holding up every call).
const GROUPS_IN_FLIGHT: usize = 2;

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Whether each message was processed.
    Lookup,
    /// Record each message; whether this call recorded it.
    Record,
}

/// One handler's call, answered when its group's statement returns.
struct Call {
    consumer: String,
    message_id: String,
    reply: oneshot::Sender<Result<bool, InboxError>>,
}

/// The two queues and their tasks; the tasks stop when this is dropped.
#[derive(Debug)]
pub(super) struct Grouped {
    lookups: mpsc::UnboundedSender<Call>,
    records: mpsc::UnboundedSender<Call>,
}

impl Grouped {
    /// Starts the tasks on the current Tokio runtime.
    pub fn start<D: Dialect>(pool: &Pool<D>) -> Self {
        let (lookups, lookup_calls) = mpsc::unbounded_channel();
        let (records, record_calls) = mpsc::unbounded_channel();
        tokio::spawn(serve::<D>(pool.clone(), Kind::Lookup, lookup_calls));
        tokio::spawn(serve::<D>(pool.clone(), Kind::Record, record_calls));
        Self { lookups, records }
    }

    /// Whether `message_id` was processed by `consumer`; `None` when the task is gone (its
    /// runtime stopped): the caller asks the database itself.
    pub async fn is_processed(
        &self,
        consumer: &str,
        message_id: &str,
    ) -> Option<Result<bool, InboxError>> {
        call(&self.lookups, consumer, message_id).await
    }

    /// Records `message_id` as processed by `consumer`; `false` when it already was. `None`
    /// as for [`Self::is_processed`].
    pub async fn mark_processed(
        &self,
        consumer: &str,
        message_id: &str,
    ) -> Option<Result<bool, InboxError>> {
        call(&self.records, consumer, message_id).await
    }
}

async fn call(
    queue: &mpsc::UnboundedSender<Call>,
    consumer: &str,
    message_id: &str,
) -> Option<Result<bool, InboxError>> {
    let (reply, answer) = oneshot::channel();
    queue
        .send(Call {
            consumer: consumer.to_owned(),
            message_id: message_id.to_owned(),
            reply,
        })
        .ok()?;
    answer.await.ok()
}

/// Takes calls as they come, up to [`GROUPS_IN_FLIGHT`] statements at once.
async fn serve<D: Dialect>(pool: Pool<D>, kind: Kind, mut calls: mpsc::UnboundedReceiver<Call>) {
    let mut running = FuturesUnordered::new();
    let mut open = true;
    while open || !running.is_empty() {
        tokio::select! {
            first = calls.recv(), if open && running.len() < GROUPS_IN_FLIGHT => match first {
                Some(first) => {
                    let mut group = vec![first];
                    while group.len() < MAX_GROUP {
                        match calls.try_recv() {
                            Ok(call) => group.push(call),
                            Err(_) => break,
                        }
                    }
                    running.push(run::<D>(&pool, kind, group));
                }
                None => open = false,
            },
            Some(()) = running.next() => {}
        }
    }
}

/// Runs one group's statement and answers every call in it.
async fn run<D: Dialect>(pool: &Pool<D>, kind: Kind, mut group: Vec<Call>) {
    group.sort_by(|a, b| (&a.consumer, &a.message_id).cmp(&(&b.consumer, &b.message_id)));
    let consumers: Vec<&str> = group.iter().map(|c| c.consumer.as_str()).collect();
    let ids: Vec<&str> = group.iter().map(|c| c.message_id.as_str()).collect();
    let rows = match kind {
        Kind::Lookup => D::inbox_lookup_group(pool, &consumers, &ids).await,
        Kind::Record => D::inbox_record_group(pool, &consumers, &ids).await,
    };
    let mut hits: HashSet<(String, String)> = match rows {
        Ok(rows) => rows.into_iter().collect(),
        Err(e) => {
            // One driver error for the group: each call keeps it as its source.
            let error = Arc::new(e);
            for call in group {
                let _ = call
                    .reply
                    .send(Err(inbox_error::<D>(SharedError(Arc::clone(&error)))));
            }
            return;
        }
    };
    for call in group {
        let key = (call.consumer, call.message_id);
        let answer = match kind {
            Kind::Lookup => hits.contains(&key),
            // The first copy in the group recorded it; any other copy is a duplicate.
            Kind::Record => hits.remove(&key),
        };
        let _ = call.reply.send(Ok(answer));
    }
}

/// A driver error shared by the calls of one group (each keeps it as its source).
#[derive(Debug)]
struct SharedError(Arc<sqlx::Error>);

impl std::fmt::Display for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}
