//! Claims held by row locks (PostgreSQL): a claim is a transaction that locks its rows
//! (`FOR UPDATE SKIP LOCKED`) and stays open while the relay publishes them; the marks run in
//! it and its commit ends the claim. The rows are written once, by the mark, instead of once
//! for the lease and once more for the mark.
//!
//! What the lease gave is kept: another relay skips locked rows (and a locked row holds its
//! partition back, as a leased one does); a relay that dies closes its connection and the
//! database rolls its claims back at once; a relay that hangs with its connection open is cut
//! off by `idle_in_transaction_session_timeout`, set to the lease for the claim's transaction,
//! and a claim still here after its lease is rolled back at the next claim.
//!
//! The relay settles a batch with `mark_published`, `mark_failed` and `release` calls that
//! together name every row of it; the transaction commits once the last row is settled. A
//! statement that fails in it drops the transaction (its locks go) and the caller's rows fall
//! back to the statements that run on their own (`store.rs`).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::dialect::{Dialect, Tx};

/// One held claim.
struct Claim<D: Dialect> {
    /// `None` while a call runs a statement in it.
    tx: Option<Tx<D>>,
    /// Rows not settled yet.
    open: usize,
    claimed_at: Instant,
    lease: Duration,
}

struct State<D: Dialect> {
    next: u64,
    claims: HashMap<u64, Claim<D>>,
    /// Which claim holds each row.
    rows: HashMap<String, u64>,
}

/// The claims this outbox's relay holds open.
pub(crate) struct Held<D: Dialect> {
    state: Mutex<State<D>>,
}

impl<D: Dialect> Default for Held<D> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                next: 0,
                claims: HashMap::new(),
                rows: HashMap::new(),
            }),
        }
    }
}

impl<D: Dialect> std::fmt::Debug for Held<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let claims = self.state.lock().map(|s| s.claims.len()).unwrap_or(0);
        f.debug_struct("Held").field("claims", &claims).finish()
    }
}

/// Rows of one held claim, taken out to run a statement in its transaction.
pub(crate) struct Part<D: Dialect> {
    claim: u64,
    /// The claim's transaction.
    pub tx: Tx<D>,
    /// The rows of the call that this claim holds.
    pub ids: Vec<String>,
    /// Whether these are the claim's last rows: commit after the statement.
    pub last: bool,
}

impl<D: Dialect> Held<D> {
    /// Keeps a claim's transaction until its rows are settled.
    pub fn hold(&self, tx: Tx<D>, ids: &[String], lease: Duration) {
        let Ok(mut state) = self.state.lock() else {
            // Dropping the transaction rolls it back: the rows go back to the table.
            return;
        };
        let claim = state.next;
        state.next += 1;
        for id in ids {
            state.rows.insert(id.clone(), claim);
        }
        state.claims.insert(
            claim,
            Claim {
                tx: Some(tx),
                open: ids.len(),
                claimed_at: Instant::now(),
                lease,
            },
        );
    }

    /// Splits `ids` into the parts held by open claims (their transactions taken out; give a
    /// part back with [`Held::put_back`] unless it is the last) and the rows held by none.
    pub fn take(&self, ids: &[String]) -> (Vec<Part<D>>, Vec<String>) {
        let mut loose = Vec::new();
        let Ok(mut state) = self.state.lock() else {
            return (Vec::new(), ids.to_vec());
        };
        let mut grouped: HashMap<u64, Vec<String>> = HashMap::new();
        for id in ids {
            let holder = state.rows.get(id).copied();
            match holder.filter(|c| state.claims.get(c).is_some_and(|c| c.tx.is_some())) {
                Some(claim) => {
                    state.rows.remove(id);
                    grouped.entry(claim).or_default().push(id.clone());
                }
                None => loose.push(id.clone()),
            }
        }
        let mut parts = Vec::with_capacity(grouped.len());
        for (claim, ids) in grouped {
            let Some(held) = state.claims.get_mut(&claim) else {
                loose.extend(ids);
                continue;
            };
            held.open = held.open.saturating_sub(ids.len());
            let last = held.open == 0;
            let Some(tx) = held.tx.take() else {
                loose.extend(ids);
                continue;
            };
            if last {
                state.claims.remove(&claim);
            }
            parts.push(Part {
                claim,
                tx,
                ids,
                last,
            });
        }
        (parts, loose)
    }

    /// Gives a part's transaction back to its claim, whose other rows are still to be
    /// settled.
    pub fn put_back(&self, part: Part<D>) {
        if let Ok(mut state) = self.state.lock() {
            if let Some(claim) = state.claims.get_mut(&part.claim) {
                claim.tx = Some(part.tx);
            }
        }
    }

    /// Forgets a claim whose transaction failed: its other rows are held by none.
    pub fn forget(&self, part: Part<D>) {
        if let Ok(mut state) = self.state.lock() {
            state.claims.remove(&part.claim);
            state.rows.retain(|_, claim| *claim != part.claim);
        }
    }

    /// Rolls back the claims older than their lease (a batch the relay dropped without
    /// settling it, say): their rows go back to the table. Returns how many.
    pub fn expire(&self) -> usize {
        self.drain(|claim| claim.claimed_at.elapsed() >= claim.lease)
    }

    /// Rolls back every claim not being settled right now.
    pub fn clear(&self) -> usize {
        self.drain(|_| true)
    }

    fn drain(&self, mut expired: impl FnMut(&Claim<D>) -> bool) -> usize {
        let Ok(mut state) = self.state.lock() else {
            return 0;
        };
        let gone: Vec<u64> = state
            .claims
            .iter()
            .filter(|(_, claim)| claim.tx.is_some() && expired(claim))
            .map(|(id, _)| *id)
            .collect();
        for claim in &gone {
            // Dropping the transaction rolls it back when its connection returns to the pool.
            state.claims.remove(claim);
        }
        state.rows.retain(|_, claim| !gone.contains(claim));
        gone.len()
    }
}
