//! The demo's summary, computed from the database.

use serde::Serialize;

/// Latency percentiles, order committed to order confirmed, in milliseconds (the bench's
/// statistics).
pub use ferry_bench::stats::Latency;

/// The summary `--json` prints (`docs/command.md`, the summary).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Summary {
    /// Orders created.
    pub orders_created: u64,
    /// Outbox rows published.
    pub events_published: u64,
    /// Reservation rows.
    pub reservations: u64,
    /// Orders confirmed.
    pub orders_confirmed: u64,
    /// Retries: the delivery attempts after the first that the reservations, confirmations and
    /// dead letters record.
    pub retries: u64,
    /// Rows in `dead_letters`.
    pub dead_lettered: u64,
    /// Deliveries the inbox recognised as already processed (rows in `skipped_duplicates`).
    pub duplicates_skipped: u64,
    /// Orders neither confirmed nor recorded in `dead_letters`.
    pub lost: u64,
    /// Seconds from the first order to the end.
    pub elapsed_s: f64,
    /// Orders settled a second.
    pub throughput_per_s: f64,
    /// Order committed to order confirmed: the service time of the relay, the broker and the
    /// two consumers (plus their queues when orders come faster than they are served).
    pub latency_ms: Latency,
    /// The steady pace orders were created at (`--rate`); absent for a burst.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_per_s: Option<f64>,
    /// Order due (on the `--rate` schedule, or at the start for a burst) to order committed:
    /// its queueing at the producer, waiting for one of the creation slots, plus its own
    /// transaction.
    pub queueing_ms: Latency,
}

/// Rounds to three decimals.
pub fn round3(x: f64) -> f64 {
    ferry_bench::stats::round_to(x, 3)
}

impl Summary {
    /// The human-readable summary.
    pub fn render(&self) -> String {
        format!(
            "orders created      {}\n\
             events published    {}\n\
             reservations        {}\n\
             orders confirmed    {}\n\
             retries             {}\n\
             dead-lettered       {}\n\
             duplicates skipped  {}\n\
             lost                {}\n\
             elapsed             {:.2} s ({:.0} orders/s)\n\
             pace                {}\n\
             queueing (ms)       p50 {:.1}  p95 {:.1}  p99 {:.1}  max {:.1}  (order due -> committed)\n\
             latency (ms)        p50 {:.1}  p95 {:.1}  p99 {:.1}  max {:.1}  (committed -> confirmed)",
            self.orders_created,
            self.events_published,
            self.reservations,
            self.orders_confirmed,
            self.retries,
            self.dead_lettered,
            self.duplicates_skipped,
            self.lost,
            self.elapsed_s,
            self.throughput_per_s,
            self.rate_per_s
                .map_or("a burst (every order due at the start)".to_owned(), |r| {
                    format!("{r} orders/s, steady")
                }),
            self.queueing_ms.p50,
            self.queueing_ms.p95,
            self.queueing_ms.p99,
            self.queueing_ms.max,
            self.latency_ms.p50,
            self.latency_ms.p95,
            self.latency_ms.p99,
            self.latency_ms.max,
        )
    }
}
