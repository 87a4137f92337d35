//! The consumer's inbox calls, grouped: lookups and records that handlers make at the same
//! moment go to the database together, one statement (one round trip, one commit) for the
//! group, as a database's group commit does for transactions.
//!
//! A lone call is sent at once; while [`GROUPS_IN_FLIGHT`] statements of a kind are running,
//! new calls wait and the next statement takes all of them (up to [`MAX_GROUP`]). So an idle
//! consumer pays no delay, and a busy one pays one statement for many messages.

use std::collections::HashSet;

use ferry_core::InboxError;
use futures::{StreamExt, stream::FuturesUnordered};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use super::inbox_error;

/// The most calls one statement takes.
const MAX_GROUP: usize = 256;

/// Statements of one kind (lookups, records) running at once: few, so that calls made
/// meanwhile queue and go together (one at a time groups the most, two keeps one slow
/// statement from holding up every call).
const GROUPS_IN_FLIGHT: usize = 2;

/// Which messages of the group are already recorded: one primary-key probe per message (the
/// lateral subquery keeps the planner from hashing a scan of the whole inbox, which it does
/// for a plain join or `IN`, not knowing how few messages the arrays hold).
const LOOKUP: &str = "
SELECT c.consumer, c.message_id
FROM unnest($1::text[], $2::text[]) AS c(consumer, message_id)
CROSS JOIN LATERAL (
    SELECT 1 FROM ferry_inbox i
    WHERE i.consumer = c.consumer AND i.message_id = c.message_id
    LIMIT 1
) AS found";

/// Records the group; returns the ones it inserted (the others were recorded already). The
/// group is sorted, so two groups holding the same keys (copies handled at the same moment)
/// take their locks in the same order and cannot deadlock.
const RECORD: &str = "
INSERT INTO ferry_inbox (consumer, message_id)
SELECT * FROM unnest($1::text[], $2::text[])
ON CONFLICT (consumer, message_id) DO NOTHING
RETURNING consumer, message_id";

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
    pub fn start(pool: &PgPool) -> Self {
        let (lookups, lookup_calls) = mpsc::unbounded_channel();
        let (records, record_calls) = mpsc::unbounded_channel();
        tokio::spawn(serve(pool.clone(), Kind::Lookup, lookup_calls));
        tokio::spawn(serve(pool.clone(), Kind::Record, record_calls));
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
async fn serve(pool: PgPool, kind: Kind, mut calls: mpsc::UnboundedReceiver<Call>) {
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
                    running.push(run(&pool, kind, group));
                }
                None => open = false,
            },
            Some(()) = running.next() => {}
        }
    }
}

/// Runs one group's statement and answers every call in it.
async fn run(pool: &PgPool, kind: Kind, mut group: Vec<Call>) {
    group.sort_by(|a, b| (&a.consumer, &a.message_id).cmp(&(&b.consumer, &b.message_id)));
    let consumers: Vec<&str> = group.iter().map(|c| c.consumer.as_str()).collect();
    let ids: Vec<&str> = group.iter().map(|c| c.message_id.as_str()).collect();
    let sql = match kind {
        Kind::Lookup => LOOKUP,
        Kind::Record => RECORD,
    };
    let rows: Result<Vec<(String, String)>, _> = sqlx::query_as(sql)
        .bind(&consumers)
        .bind(&ids)
        .fetch_all(pool)
        .await;
    let mut hits: HashSet<(String, String)> = match rows {
        Ok(rows) => rows.into_iter().collect(),
        Err(e) => {
            let error = inbox_error(e);
            for call in group {
                let _ = call.reply.send(Err(InboxError(error.0.clone())));
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
