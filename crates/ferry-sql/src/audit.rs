//! The audit log of operators' actions (`ferry_audit`): who (a role) did what (`replay`,
//! `delete`, `retry`) to which rows, and how many it changed.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{
    dead_letters::{DeadLetterDialect, DeadLetterStoreError},
    dialect::Pool,
};

/// One audit row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// The role that acted (`operator`).
    pub role: String,
    /// `replay`, `delete` or `retry`.
    pub action: String,
    /// An id, a list of ids or a group.
    pub target: String,
    /// How many rows the action changed.
    pub count: i64,
}

/// The audit log on a SQL database; run the database's `migrate` first.
///
/// ```no_run
/// # async fn demo(pool: sqlx::SqlitePool) -> Result<(), Box<dyn std::error::Error>> {
/// let audit = ferry_sql::AuditLog::<ferry_sql::sqlite::Sqlite>::new(pool);
/// audit.record("operator", "replay", "group:0123456789abcdef", 12).await?;
/// assert_eq!(audit.list(1).await?[0].count, 12);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct AuditLog<D: DeadLetterDialect> {
    pool: Pool<D>,
}

impl<D: DeadLetterDialect> AuditLog<D> {
    /// An audit log on `pool`.
    pub fn new(pool: Pool<D>) -> Self {
        Self { pool }
    }

    /// Appends a row.
    pub async fn record(
        &self,
        role: &str,
        action: &str,
        target: &str,
        count: i64,
    ) -> Result<(), DeadLetterStoreError> {
        crate::dead_letters::statement::audit_insert::<D>(&self.pool, role, action, target, count)
            .await?;
        tracing::info!(role, action, target, count, "audited");
        Ok(())
    }

    /// The newest `limit` rows, newest first.
    pub async fn list(&self, limit: u32) -> Result<Vec<AuditEntry>, DeadLetterStoreError> {
        let rows =
            crate::dead_letters::statement::audit_list::<D>(&self.pool, i64::from(limit)).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(AuditEntry {
                at: D::time(row, "at")?.unwrap_or_default(),
                role: D::text(row, "role")?.unwrap_or_default(),
                action: D::text(row, "action")?.unwrap_or_default(),
                target: D::text(row, "target")?.unwrap_or_default(),
                count: D::int(row, "count")?.unwrap_or(0),
            });
        }
        Ok(out)
    }
}
