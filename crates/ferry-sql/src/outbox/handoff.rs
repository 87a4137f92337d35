//! Events committed in this process, handed straight to the relay running on the same outbox:
//! no notification round trip and no claim query between a commit and its publish.
//!
//! [`crate::OutboxTransaction`] inserts such rows already leased to this outbox's relay (so no
//! other relay claims them), and hands them over once the commit succeeds; the relay's next
//! claim takes them from memory. Everything else stays as it was: the row is pending in the
//! table, the relay marks it published by id; if the relay stops first, it gives the rows back
//! to the table, and if this process dies first, the lease runs out and any relay claims them
//! from the table. Only rows without a partition
//! key are handed over (a partition's order is kept by the table's claim), only while a relay
//! is claiming on this outbox and keeping up, and at most [`MAX_HANDED`] at a time.

use std::{
    collections::VecDeque,
    sync::Mutex,
    time::{Duration, Instant},
};

use ferry_core::ClaimedOutboxRow;

/// The most rows waiting in memory; past it, rows are added the ordinary way.
const MAX_HANDED: usize = 10_000;

/// How recently a relay must have claimed on this outbox for rows to be handed to it.
const RELAY_ALIVE: Duration = Duration::from_secs(5);

/// A row handed over, with the moment its lease started.
#[derive(Debug)]
struct Handed {
    message: ClaimedOutboxRow,
    leased_at: Instant,
}

#[derive(Debug, Default)]
struct State {
    rows: VecDeque<Handed>,
    /// When the relay last claimed, and the lease it asked for.
    relay: Option<(Instant, Duration)>,
}

/// The rows committed in this process and not yet taken by the relay.
#[derive(Debug, Default)]
pub(crate) struct Handoff {
    state: Mutex<State>,
}

impl Handoff {
    /// The lease to give a row added now, if it can be handed over: a relay has claimed on
    /// this outbox lately, there is room, and the relay is keeping up (the oldest row waiting
    /// has used less than an eighth of its lease).
    pub fn lease_for_new_row(&self) -> Option<Duration> {
        let state = self.state.lock().ok()?;
        let (seen, lease) = state.relay?;
        let keeping_up = state
            .rows
            .front()
            .is_none_or(|oldest| oldest.leased_at.elapsed() < lease / 8);
        (seen.elapsed() < RELAY_ALIVE && state.rows.len() < MAX_HANDED && keeping_up)
            .then_some(lease)
    }

    /// Hands over rows whose transaction committed (leased at `leased_at`). Returns the ids
    /// of the rows it could not take (the relay stopped meanwhile): their lease is to be given
    /// back to the table.
    pub fn hand(&self, rows: Vec<ClaimedOutboxRow>, leased_at: Instant) -> Vec<String> {
        match self.state.lock() {
            Ok(mut state) if state.relay.is_some() => {
                state.rows.extend(
                    rows.into_iter()
                        .map(|message| Handed { message, leased_at }),
                );
                Vec::new()
            }
            _ => rows.into_iter().map(|row| row.id).collect(),
        }
    }

    /// The relay stopped: takes every row waiting (their lease is to be given back to the
    /// table), and hands nothing more over until a relay claims again.
    pub fn stop(&self) -> Vec<String> {
        let Ok(mut state) = self.state.lock() else {
            return Vec::new();
        };
        state.relay = None;
        state.rows.drain(..).map(|row| row.message.id).collect()
    }

    /// Called at each claim: notes that a relay is claiming with `lease`, and takes up to
    /// `limit` handed rows. A row whose lease has used more than a quarter is not taken (the
    /// relay's checks count a lease from its claim, so it must be nearly whole): its id is
    /// returned with the stale ones, for the caller to give its lease back so that the table's
    /// claim takes it at once.
    pub fn take(&self, limit: usize, lease: Duration) -> Taken {
        let mut taken = Taken::default();
        let Ok(mut state) = self.state.lock() else {
            return taken;
        };
        state.relay = Some((Instant::now(), lease));
        while taken.rows.len() < limit {
            let Some(row) = state.rows.pop_front() else {
                break;
            };
            if row.leased_at.elapsed() < lease / 4 {
                taken.rows.push(row.message);
            } else {
                taken.stale.push(row.message.id);
            }
        }
        taken
    }
}

/// What a claim takes from the hand-off.
#[derive(Debug, Default)]
pub(crate) struct Taken {
    /// Rows to publish.
    pub rows: Vec<ClaimedOutboxRow>,
    /// Rows that waited too long: their lease goes back to the table.
    pub stale: Vec<String>,
}
