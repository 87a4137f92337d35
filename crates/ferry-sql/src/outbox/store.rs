//! The relay's side of the outbox: claims (rows handed over at commit first, then the table's,
//! held by row locks on PostgreSQL, `held.rs`, by a lease on SQLite), batch marks, backoff,
//! wake-ups. The statements are the dialect's.

use crate::statement;
use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use async_trait::async_trait;
use ferry_core::{ClaimedOutboxRow, OutboxError, OutboxFailure, OutboxStats, OutboxStore};

use super::{SqlOutbox, held::Part, rows};
use crate::{
    db_error,
    dialect::{Arg, Dialect, HeldClaim, Row, Tx},
};

#[async_trait]
impl<D: Dialect> OutboxStore for SqlOutbox<D> {
    async fn claim(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedOutboxRow>, OutboxError> {
        self.wakeup().claim_started();
        if D::HANDS_OFF {
            let handed = self.handoff().take(limit.max(1), lease);
            if !handed.stale.is_empty() {
                tracing::debug!(
                    rows = handed.stale.len(),
                    "rows handed over at commit waited too long; their lease goes back to the table"
                );
                self.release(&handed.stale).await?;
            }
            if !handed.rows.is_empty() {
                tracing::debug!(
                    rows = handed.rows.len(),
                    "took outbox rows handed over at commit"
                );
                return Ok(handed.rows);
            }
        }
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        let found = match D::HELD_CLAIM {
            Some(sql) => return self.claim_held(sql, limit, lease).await,
            None => statement::claim::<D>(self.pool(), limit, lease, self.relay_id())
                .await
                .map_err(db_error)?,
        };
        let claimed = claimed_in_order::<D>(&found)?;
        if !claimed.is_empty() {
            tracing::debug!(rows = claimed.len(), "claimed outbox rows");
        }
        Ok(claimed)
    }

    async fn mark_published(&self, ids: &[String]) -> Result<(), OutboxError> {
        if ids.is_empty() {
            return Ok(());
        }
        // No history kept: the row goes as it is marked, one write fewer than a later
        // deletion by the retention.
        let sql = if self.options().retention.is_zero() {
            D::SQL.delete_sent
        } else {
            D::SQL.mark_published
        };
        let (parts, mut loose) = self.held().take(ids);
        for mut part in parts {
            let marked = D::execute(&mut *part.tx, sql, &[Arg::Ids(&part.ids)])
                .await
                .map(drop);
            let ids = part.ids.clone();
            // The claim is gone (its session cut off after the lease, the database
            // restarted): the rows are marked on their own, as a lease's rows are.
            if self.settled(part, marked).await.is_err() {
                loose.extend(ids);
            }
        }
        if loose.is_empty() {
            return Ok(());
        }
        statement::mark_published::<D>(self.pool(), sql, &loose)
            .await
            .map_err(db_error)
    }

    async fn mark_failed(&self, failures: &[OutboxFailure]) -> Result<(), OutboxError> {
        if failures.is_empty() {
            return Ok(());
        }
        let options = self.options();
        let ids: Vec<String> = failures.iter().map(|f| f.id.clone()).collect();
        let (parts, mut loose) = self.held().take(&ids);
        let mut dead = Vec::new();
        for mut part in parts {
            let these = failures_of(failures, &part.ids);
            let marked = D::mark_failed_held(&mut *part.tx, &these, options).await;
            let now_dead = marked.as_ref().map(Vec::clone).unwrap_or_default();
            let ids = part.ids.clone();
            match self.settled(part, marked.map(drop)).await {
                Ok(()) => dead.extend(now_dead),
                // As for a lease that ran out: the statement below counts the attempt only
                // if this relay still leases the row, which it does not.
                Err(_) => loose.extend(ids),
            }
        }
        let mut failed = None;
        if !loose.is_empty() {
            let these = failures_of(failures, &loose);
            match D::mark_failed(self.pool(), &these, options, self.relay_id()).await {
                Ok(now_dead) => dead.extend(now_dead),
                Err(e) => failed = Some(e),
            }
        }
        ferry_core::outbox::report_dead(&dead, options.max_attempts.max(1));
        failed.map_or(Ok(()), |e| Err(db_error(e)))
    }

    async fn release(&self, ids: &[String]) -> Result<(), OutboxError> {
        if ids.is_empty() {
            return Ok(());
        }
        // A held row goes back when its claim's transaction ends, committed or not: nothing
        // to write, and nothing lost if the transaction failed.
        let (parts, loose) = self.held().take(ids);
        for part in parts {
            let _ = self.settled(part, Ok(())).await;
        }
        if loose.is_empty() {
            return Ok(());
        }
        statement::release::<D>(self.pool(), &loose, self.relay_id())
            .await
            .map_err(db_error)
    }

    async fn wait_for_rows(&self, timeout: Duration) {
        self.listen();
        self.wakeup().wait(timeout).await;
    }

    async fn remove_expired(&self) -> Result<u64, OutboxError> {
        self.cleanup().await
    }

    async fn relay_stopped(&self) {
        let waiting = self.handoff().stop();
        self.give_back(&waiting).await;
        let dropped = self.held().clear();
        if dropped > 0 {
            tracing::debug!(
                claims = dropped,
                "claims still held when the relay stopped are rolled back"
            );
        }
    }

    async fn stats(&self) -> Result<OutboxStats, OutboxError> {
        D::stats(self.pool()).await.map_err(db_error)
    }
}

impl<D: Dialect> SqlOutbox<D> {
    /// Claims rows in a transaction that holds them by row locks until they are settled.
    async fn claim_held(
        &self,
        sql: &HeldClaim,
        limit: i64,
        lease: Duration,
    ) -> Result<Vec<ClaimedOutboxRow>, OutboxError> {
        let expired = self.held().expire();
        if expired > 0 {
            tracing::warn!(
                claims = expired,
                "claims not settled within their lease are rolled back; their rows are claimed again"
            );
        }
        let mut tx = D::begin(self.pool()).await.map_err(db_error)?;
        let found = D::fetch_all(
            &mut *tx,
            sql.claim,
            &[Arg::Int(limit), Arg::Millis(Some(lease))],
        )
        .await
        .map_err(db_error)?;
        let mut claimed = claimed_in_order::<D>(&found)?;
        let locked = match found.first() {
            Some(row) => D::int(row, "candidates").map_err(db_error)?.unwrap_or(0),
            None => 0,
        };
        if claimed.is_empty() {
            tx.rollback().await.map_err(db_error)?;
            return Ok(claimed);
        }
        if usize::try_from(locked).unwrap_or(usize::MAX) > claimed.len() {
            // The claim also locked rows a partition holds back: held until this batch is
            // settled, they would wait a batch longer once their partition is free. Lock only
            // the claimable ones, in a transaction of their own.
            tx.rollback().await.map_err(db_error)?;
            (tx, claimed) = self.relock(sql, &claimed, lease).await?;
            if claimed.is_empty() {
                tx.rollback().await.map_err(db_error)?;
                return Ok(claimed);
            }
        }
        let ids: Vec<String> = claimed.iter().map(|row| row.id.clone()).collect();
        self.held().hold(tx, &ids, lease);
        tracing::debug!(rows = claimed.len(), "claimed outbox rows");
        Ok(claimed)
    }

    /// Locks the rows of `claimable` (in order) still free; keeps a row of a partition only
    /// if every earlier row of its partition in `claimable` was locked too.
    async fn relock(
        &self,
        sql: &HeldClaim,
        claimable: &[ClaimedOutboxRow],
        lease: Duration,
    ) -> Result<(Tx<D>, Vec<ClaimedOutboxRow>), OutboxError> {
        let ids: Vec<String> = claimable.iter().map(|row| row.id.clone()).collect();
        let mut tx = D::begin(self.pool()).await.map_err(db_error)?;
        let found = D::fetch_all(
            &mut *tx,
            sql.relock,
            &[Arg::Ids(&ids), Arg::Millis(Some(lease))],
        )
        .await
        .map_err(db_error)?;
        let mut locked: HashMap<String, ClaimedOutboxRow> = claimed_in_order::<D>(&found)?
            .into_iter()
            .map(|row| (row.id.clone(), row))
            .collect();
        let mut broken: HashSet<&str> = HashSet::new();
        let mut kept = Vec::with_capacity(locked.len());
        for row in claimable {
            let partition = row.partition_key.as_deref();
            match (locked.remove(&row.id), partition) {
                (Some(_), Some(key)) if broken.contains(key) => {
                    // Locked, but an earlier row of its partition went to another relay
                    // meanwhile: left out (its lock goes with this batch's).
                }
                (Some(row), _) => kept.push(row),
                (None, Some(key)) => {
                    broken.insert(key);
                }
                (None, None) => {}
            }
        }
        Ok((tx, kept))
    }

    /// Ends a statement run in a held claim's transaction: on success, commits it if these
    /// were its last rows, else gives it back; on failure, drops it (its locks go, and its
    /// other rows are settled by the statements that run on their own).
    async fn settled(
        &self,
        part: Part<D>,
        ran: Result<(), sqlx::Error>,
    ) -> Result<(), sqlx::Error> {
        match ran {
            Ok(()) if part.last => part.tx.commit().await,
            Ok(()) => {
                self.held().put_back(part);
                Ok(())
            }
            Err(e) => {
                tracing::debug!(
                    error = &e as &dyn std::error::Error,
                    rows = part.ids.len(),
                    "a held claim failed; its transaction is rolled back"
                );
                self.held().forget(part);
                Err(e)
            }
        }
    }
}

/// The claimed rows in the order they were added (`RETURNING` has none).
fn claimed_in_order<D: Dialect>(found: &[Row<D>]) -> Result<Vec<ClaimedOutboxRow>, OutboxError> {
    let mut claimed = found
        .iter()
        .map(rows::claimed::<D>)
        .collect::<Result<Vec<_>, _>>()?;
    claimed.sort_unstable_by_key(|(seq, _)| *seq);
    Ok(claimed.into_iter().map(|(_, m)| m).collect())
}

/// The failures of rows `ids`.
fn failures_of(failures: &[OutboxFailure], ids: &[String]) -> Vec<OutboxFailure> {
    let ids: HashSet<&str> = ids.iter().map(String::as_str).collect();
    failures
        .iter()
        .filter(|f| ids.contains(f.id.as_str()))
        .cloned()
        .collect()
}
