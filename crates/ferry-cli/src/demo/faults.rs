//! Deterministic failure injection: each decision is a hash of (seed, order, attempt), so a run
//! with the same `--seed` fails the same deliveries.

/// Decides which deliveries of the inventory handler fail.
#[derive(Debug, Clone, Copy)]
pub struct FailurePlan {
    /// The seed.
    pub seed: u64,
    /// Share of attempts that fail transiently.
    pub fail_rate: f64,
    /// Share of orders that fail permanently.
    pub permanent_fail_rate: f64,
    /// The consumer's retries: transient failures of one message never outnumber them.
    pub max_retries: u32,
}

impl FailurePlan {
    /// Whether the order fails permanently (on every attempt).
    pub fn fails_permanently(&self, order: u64) -> bool {
        unit(hash(self.seed, order, u64::MAX)) < self.permanent_fail_rate
    }

    /// Whether delivery `attempt` (1 for the first) of the order fails transiently. Never for the
    /// attempt after the last retry, so `--fail-rate` alone never dead-letters.
    pub fn fails_transiently(&self, order: u64, attempt: u32) -> bool {
        attempt <= self.max_retries
            && unit(hash(self.seed, order, u64::from(attempt))) < self.fail_rate
    }
}

/// FNV-1a over the seed, the order id and the attempt, finished with a splitmix64 mix.
fn hash(seed: u64, order: u64, attempt: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in seed
        .to_le_bytes()
        .iter()
        .chain(order.to_le_bytes().iter())
        .chain(attempt.to_le_bytes().iter())
    {
        h ^= u64::from(*byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Maps a hash to [0, 1).
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_close_to_the_rate() {
        let plan = FailurePlan {
            seed: 7,
            fail_rate: 0.1,
            permanent_fail_rate: 0.02,
            max_retries: 3,
        };
        let ids: Vec<u64> = (0..20_000).collect();
        let transient = ids
            .iter()
            .filter(|&&id| plan.fails_transiently(id, 1))
            .count();
        let permanent = ids.iter().filter(|&&id| plan.fails_permanently(id)).count();
        assert!((1_700..2_300).contains(&transient), "{transient}");
        assert!((300..500).contains(&permanent), "{permanent}");
        assert_eq!(
            ids.iter()
                .filter(|&&id| plan.fails_transiently(id, 1))
                .count(),
            transient,
            "same seed, same decisions"
        );
        let other = FailurePlan { seed: 8, ..plan };
        assert_ne!(
            ids.iter()
                .map(|&id| plan.fails_transiently(id, 1))
                .collect::<Vec<_>>(),
            ids.iter()
                .map(|&id| other.fails_transiently(id, 1))
                .collect::<Vec<_>>()
        );
        assert!(
            ids.iter().all(|&id| !plan.fails_transiently(id, 4)),
            "never past the retries"
        );
    }
}
