//! What a case found, read from the database: lost events, events applied twice, duplicates the
//! inbox absorbed, dead letters, and how long the traffic took to recover.

use std::io::Write;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

/// One case's figures (a line on stderr, a JSON line in `fault-results.jsonl`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CaseResult {
    pub case: String,
    pub fault: String,
    /// Events added to the outbox (committed).
    pub events: i64,
    /// Events in the outbox with no `applied` row.
    pub lost: i64,
    /// Events with more than one `applied` row.
    pub applied_twice: i64,
    /// `applied` rows of no event in the outbox (must be 0).
    pub strangers: i64,
    /// Deliveries the inbox recognised as already applied.
    pub duplicates_absorbed: i64,
    /// Messages dead-lettered by the consumer.
    pub dead_lettered: i64,
    /// Outbox rows not `published` at the end (pending or dead).
    pub unpublished: i64,
    /// Failed publish attempts the outbox counted (confirm timeouts, nacks).
    pub publish_attempts_failed: i64,
    /// Deliveries that were consumer retries (attempt > 1).
    pub retried: i64,
    /// Deliveries the broker flagged as redelivered.
    pub redelivered: i64,
    /// The longest time without any event applied, from the fault on (ms).
    pub stall_ms: Option<i64>,
    /// From the fault being healed until the relay published and the consumer applied events
    /// again (ms).
    pub recovery_ms: Option<i64>,
    /// From the fault being healed until the last event was applied (ms).
    pub all_applied_ms: Option<i64>,
    /// The longest an event took from its outbox commit to being applied (ms).
    pub max_event_delay_ms: i64,
    /// From the first event added to the last applied (ms).
    pub duration_ms: i64,
    /// Events applied per second over the run.
    pub throughput_per_s: f64,
    /// Transactional mode: applied events whose follow-up never arrived.
    pub follow_ups_lost: Option<i64>,
    /// Transactional mode: events whose follow-up was emitted more than once.
    pub follow_ups_twice: Option<i64>,
    /// The `applied` rows (attempt, redelivered) of the event the case watched.
    pub watched_applied: Vec<(i32, bool)>,
    /// Anything else worth knowing about the run.
    pub notes: Vec<String>,
    pub passed: bool,
    pub at: String,
}

impl CaseResult {
    /// The line for the log: fault, events, lost, applied twice, recovery.
    pub fn line(&self) -> String {
        let ms =
            |v: Option<i64>| v.map_or("n/a".to_owned(), |v| format!("{:.1} s", v as f64 / 1000.0));
        format!(
            "FAULT RESULT {:<20} events {:>6}  lost {}  applied twice {}  duplicates absorbed {:>4}  \
             dead-lettered {}  retried {:>4}  stall {}  recovery {}  all applied {}  max delay {:.1} s  \
             {:.0}/s{}",
            self.case,
            self.events,
            self.lost,
            self.applied_twice,
            self.duplicates_absorbed,
            self.dead_lettered,
            self.retried,
            ms(self.stall_ms),
            ms(self.recovery_ms),
            ms(self.all_applied_ms),
            self.max_event_delay_ms as f64 / 1000.0,
            self.throughput_per_s,
            if self.notes.is_empty() {
                String::new()
            } else {
                format!("  ({})", self.notes.join("; "))
            }
        )
    }

    /// Prints the line and appends the JSON line to `$CARGO_TARGET_TMPDIR/fault-results.jsonl`.
    pub fn publish(&self) {
        eprintln!("{}", self.line());
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fault-results.jsonl");
        let json = serde_json::to_string(self).unwrap_or_default();
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        {
            Ok(mut file) => {
                let _ = writeln!(file, "{json}");
            }
            Err(e) => eprintln!("cannot append to {}: {e}", path.display()),
        }
    }
}

const COUNTS: &str = "
SELECT
  (SELECT count(*) FROM items),
  (SELECT count(*) FROM items o WHERE NOT EXISTS (SELECT 1 FROM applied a WHERE a.event_id = o.id)),
  (SELECT count(*) FROM (SELECT event_id FROM applied GROUP BY event_id HAVING count(*) > 1) t),
  (SELECT count(*) FROM applied a WHERE NOT EXISTS (SELECT 1 FROM items o WHERE o.id = a.event_id)),
  (SELECT count(*) FROM absorbed),
  (SELECT count(*) FROM dead_letters),
  (SELECT count(*) FROM ferry_outbox WHERE status <> 'published'),
  (SELECT coalesce(sum(attempts), 0)::bigint FROM ferry_outbox),
  (SELECT count(*) FROM applied WHERE attempt > 1) + (SELECT count(*) FROM absorbed WHERE attempt > 1),
  (SELECT count(*) FROM applied WHERE redelivered) + (SELECT count(*) FROM absorbed WHERE redelivered),
  (SELECT coalesce(max(EXTRACT(EPOCH FROM a.applied_at - o.created_at) * 1000), 0)::bigint
     FROM applied a JOIN items o ON o.id = a.event_id)";

/// The transactional mode's follow-ups: applied events without a recorded follow-up, and
/// events whose follow-up was emitted (committed) more than once.
pub const FOLLOW_UPS: &str = "
SELECT
  (SELECT count(DISTINCT a.event_id) FROM applied a
    WHERE NOT EXISTS (SELECT 1 FROM followed f WHERE f.causation_id = a.event_id)),
  (SELECT count(*) FROM (SELECT causation_id FROM followed GROUP BY causation_id
    HAVING count(*) > 1) t)";

type Counts = (i64, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64);

/// When the fault began and when it was healed (the same moment for an instant fault).
#[derive(Debug, Clone, Copy)]
pub struct FaultWindow {
    pub began: DateTime<Utc>,
    pub healed: DateTime<Utc>,
}

/// Reads the figures of a finished case.
pub async fn measure(
    pool: &PgPool,
    started: DateTime<Utc>,
    window: Option<FaultWindow>,
) -> Result<CaseResult, sqlx::Error> {
    let counts: Counts = sqlx::query_as(COUNTS).fetch_one(pool).await?;
    let times: Vec<DateTime<Utc>> =
        sqlx::query_scalar("SELECT applied_at FROM applied ORDER BY applied_at")
            .fetch_all(pool)
            .await?;
    let (events, lost, applied_twice, strangers, absorbed, dead, unpublished, attempts) = (
        counts.0, counts.1, counts.2, counts.3, counts.4, counts.5, counts.6, counts.7,
    );
    let last = times.last().copied().unwrap_or(started);
    let duration_ms = (last - started).num_milliseconds().max(1);
    let mut result = CaseResult {
        events,
        lost,
        applied_twice,
        strangers,
        duplicates_absorbed: absorbed,
        dead_lettered: dead,
        unpublished,
        publish_attempts_failed: attempts,
        retried: counts.8,
        redelivered: counts.9,
        max_event_delay_ms: counts.10,
        duration_ms,
        throughput_per_s: times.len() as f64 * 1000.0 / duration_ms as f64,
        at: Utc::now().to_rfc3339(),
        ..CaseResult::default()
    };
    if let Some(window) = window {
        let (stall, _) = longest_gap(&times, window);
        result.stall_ms = Some(stall);
        // Both halves of the pipeline work again: the relay marks rows published and the
        // consumer applies events (a half the fault never stopped has nothing to recover).
        let published: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT min(published_at) FROM ferry_outbox WHERE published_at >= $1",
        )
        .bind(window.healed)
        .fetch_one(pool)
        .await?;
        let applied = times.iter().copied().find(|t| *t >= window.healed);
        let resumed = published
            .into_iter()
            .chain(applied)
            .max()
            .unwrap_or(window.healed);
        result.recovery_ms = Some((resumed - window.healed).num_milliseconds().max(0));
        result.all_applied_ms = Some((last - window.healed).num_milliseconds().max(0));
    }
    Ok(result)
}

/// The longest pause in applying events from the fault on (the time before the first event
/// after the fault counts from the fault): its length (ms) and when events were applied again.
fn longest_gap(times: &[DateTime<Utc>], window: FaultWindow) -> (i64, DateTime<Utc>) {
    let mut previous = window.began;
    let mut best = (0, window.began);
    for &t in times.iter().filter(|t| **t > window.began) {
        let gap = (t - previous).num_milliseconds();
        if gap > best.0 {
            best = (gap, t);
        }
        previous = t;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp_millis(1_700_000_000_000 + ms).unwrap()
    }

    #[test]
    fn the_longest_gap_after_the_heal_is_the_stall() {
        let times: Vec<_> = [0, 100, 200, 5_000, 5_100, 9_000, 9_050]
            .into_iter()
            .map(at)
            .collect();
        let window = FaultWindow {
            began: at(150),
            healed: at(4_000),
        };
        assert_eq!(longest_gap(&times, window), (4_800, at(5_000)));
    }
}
