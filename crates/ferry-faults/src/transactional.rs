//! The consumer worker's transactional mode ([`crate::TRANSACTIONAL`]): the handlers, and an
//! outbox that can hang at a chosen commit so the test can kill the process right there.

use std::{
    ops::{Deref, DerefMut},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use async_trait::async_trait;
use ferry::{
    HandlerError,
    plumbing::{InboxError, OutboxError, OutgoingMessage},
    postgres::{OutboxTransaction, PgOutbox},
    transactional::{StoreTransaction, TransactionalHandler, TransactionalStore, TxContext},
};
use sqlx::PgConnection;

use crate::{COMMIT_HUNG, ItemAdded, ItemFollowed};

/// Where a commit hangs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Failpoints {
    /// The commit (1 for the first) that hangs after the handler, before committing.
    pub hang_before_commit: Option<u64>,
    /// The commit that hangs after committing, before the ack.
    pub hang_after_commit: Option<u64>,
}

/// [`PgOutbox`] as a transactional store whose commits count, and hang at the failpoints: the
/// process then holds its transaction (or its unacked delivery) until the test kills it.
#[derive(Debug, Clone)]
pub struct FailpointOutbox {
    outbox: PgOutbox,
    commits: Arc<AtomicU64>,
    failpoints: Failpoints,
}

impl FailpointOutbox {
    /// Wraps `outbox`.
    pub fn new(outbox: PgOutbox, failpoints: Failpoints) -> Self {
        Self {
            outbox,
            commits: Arc::new(AtomicU64::new(0)),
            failpoints,
        }
    }
}

/// A transaction of [`FailpointOutbox`].
#[derive(Debug)]
pub struct FailpointTransaction {
    tx: OutboxTransaction,
    /// The message whose inbox row this transaction inserted.
    message_id: String,
    commits: Arc<AtomicU64>,
    failpoints: Failpoints,
}

#[async_trait]
impl TransactionalStore for FailpointOutbox {
    type Transaction = FailpointTransaction;

    async fn begin(&self) -> Result<FailpointTransaction, OutboxError> {
        Ok(FailpointTransaction {
            tx: self.outbox.begin().await?,
            message_id: String::new(),
            commits: Arc::clone(&self.commits),
            failpoints: self.failpoints,
        })
    }
}

/// Says `commit-hung <before|after> <n> <message id>` and never returns.
async fn hang(which: &str, n: u64, message_id: &str) -> ! {
    crate::say(&format!("{COMMIT_HUNG} {which} {n} {message_id}"));
    std::future::pending::<()>().await;
    unreachable!("a pending future never completes")
}

#[async_trait]
impl StoreTransaction for FailpointTransaction {
    async fn insert_inbox(&mut self, consumer: &str, message_id: &str) -> Result<bool, InboxError> {
        self.message_id = message_id.to_owned();
        self.tx.insert_inbox(consumer, message_id).await
    }

    fn default_source(&self) -> Option<&str> {
        StoreTransaction::default_source(&self.tx)
    }

    async fn add_encoded(
        &mut self,
        message: OutgoingMessage,
        event_type: String,
        partition_key: Option<String>,
    ) -> Result<String, OutboxError> {
        self.tx
            .add_encoded(message, event_type, partition_key)
            .await
    }

    async fn commit(self) -> Result<(), OutboxError> {
        let n = self.commits.fetch_add(1, Ordering::SeqCst) + 1;
        if self.failpoints.hang_before_commit == Some(n) {
            hang("before", n, &self.message_id).await;
        }
        self.tx.commit().await?;
        if self.failpoints.hang_after_commit == Some(n) {
            hang("after", n, &self.message_id).await;
        }
        Ok(())
    }

    async fn rollback(self) -> Result<(), OutboxError> {
        self.tx.rollback().await
    }
}

impl Deref for FailpointTransaction {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.tx
    }
}

impl DerefMut for FailpointTransaction {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}

/// Applies an event (`applied` has no unique key: only the inbox row keeps a second copy out)
/// and emits its [`ItemFollowed`], all in the transaction ferry began.
#[derive(Debug, Clone, Copy)]
pub struct ApplyItem;

impl<T> TransactionalHandler<ItemAdded, T> for ApplyItem
where
    T: StoreTransaction + DerefMut<Target = PgConnection>,
{
    async fn handle(&self, event: ItemAdded, cx: &mut TxContext<T>) -> Result<(), HandlerError> {
        let (id, attempt, redelivered) = {
            let m = cx.message();
            (m.message_id().to_owned(), m.attempt(), m.redelivered())
        };
        sqlx::query(
            "INSERT INTO applied (event_id, n, attempt, redelivered) VALUES ($1, $2, $3, $4)",
        )
        .bind(&id)
        .bind(i64::try_from(event.n).unwrap_or(i64::MAX))
        .bind(i32::try_from(attempt).unwrap_or(i32::MAX))
        .bind(redelivered)
        .execute(cx.db())
        .await?;
        cx.publish(&ItemFollowed { n: event.n }).await?;
        Ok(())
    }
}

/// Records a follow-up with the event that caused it.
#[derive(Debug, Clone, Copy)]
pub struct RecordFollowUp;

impl TransactionalHandler<ItemFollowed, OutboxTransaction> for RecordFollowUp {
    async fn handle(
        &self,
        _event: ItemFollowed,
        cx: &mut TxContext<OutboxTransaction>,
    ) -> Result<(), HandlerError> {
        let envelope = cx.message().envelope().clone();
        let causation = envelope
            .causation_id
            .ok_or_else(|| HandlerError::permanent("a follow-up without a causation id"))?;
        sqlx::query("INSERT INTO followed (event_id, causation_id) VALUES ($1, $2)")
            .bind(&envelope.id)
            .bind(causation)
            .execute(cx.db())
            .await?;
        Ok(())
    }
}
