//! The batches a relay has in flight: how many, and whether another claim is safe.

use std::{sync::Arc, time::Instant};

use futures::{StreamExt, stream::FuturesUnordered};
use tokio::sync::Semaphore;

use super::{RelayBatch, RelayError, RelayOptions};

/// What a batch in flight resolves to: the instant its rows were claimed, and its outcome.
pub(super) type Finished = (Instant, Result<RelayBatch, RelayError>);

/// The relay's batches: up to [`RelayOptions::batches_in_flight`] being published (holding a
/// permit of `publishing`), and one more claimed and waiting for a permit; batches whose
/// publish is over are being marked.
pub(super) struct InFlight<F> {
    options: RelayOptions,
    batches: FuturesUnordered<F>,
    /// When each batch in flight was claimed.
    claimed: Vec<Instant>,
    /// A permit for each batch that may be unconfirmed at once.
    publishing: Arc<Semaphore>,
}

impl<F: Future<Output = Finished>> InFlight<F> {
    pub fn new(options: RelayOptions) -> Self {
        Self {
            options,
            batches: FuturesUnordered::new(),
            claimed: Vec::new(),
            publishing: Arc::new(Semaphore::new(options.batches_in_flight.max(1))),
        }
    }

    /// The permits a batch's publish takes one of.
    pub fn publishing(&self) -> Arc<Semaphore> {
        Arc::clone(&self.publishing)
    }

    /// Whether the relay may claim another batch now: there is room (a batch more than may
    /// publish at once, counting those being marked), and every batch in
    /// flight still has at least half its lease. A batch that has used more (a broker
    /// blocking publishes, say) holds the claims back until it finishes: a claim made while
    /// its lease runs out would take its rows a second time.
    pub fn may_claim(&self) -> bool {
        self.batches.len() < self.options.batches_in_flight.max(1) + 1
            && self
                .claimed
                .iter()
                .all(|at| at.elapsed() < self.options.lease / 2)
    }

    /// Whether no batch is in flight.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Starts a batch whose rows were claimed at `claimed_at`.
    pub fn start(&mut self, (claimed_at, batch): (Instant, F)) {
        self.claimed.push(claimed_at);
        self.batches.push(batch);
    }

    /// The next batch to finish; `None` when none is in flight.
    pub async fn next(&mut self) -> Option<Result<RelayBatch, RelayError>> {
        let (claimed_at, result) = self.batches.next().await?;
        if let Some(i) = self.claimed.iter().position(|at| *at == claimed_at) {
            self.claimed.swap_remove(i);
        }
        Some(result)
    }

    /// Finishes every batch in flight, handing each outcome to `each`.
    pub async fn finish(&mut self, mut each: impl FnMut(Result<RelayBatch, RelayError>) -> bool) {
        while let Some(result) = self.next().await {
            each(result);
        }
    }
}
