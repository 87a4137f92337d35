//! Retry policies: how often and after how long a failed message is tried again.

use std::time::Duration;

/// How a consumer retries a failed message (`docs/wire-format.md`, retries).
///
/// ```
/// use std::time::Duration;
/// use ferry_core::RetryPolicy;
/// let policy = RetryPolicy::exponential(3, Duration::from_secs(1));
/// assert_eq!(policy.delay_for(2), Some(Duration::from_secs(1))); // the first retry
/// assert_eq!(policy.delay_for(3), Some(Duration::from_secs(2)));
/// assert_eq!(policy.delay_for(4), Some(Duration::from_secs(4)));
/// assert_eq!(policy.delay_for(5), None); // no fourth retry
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Redeliveries after the first attempt.
    pub max_retry_attempts: u32,
    /// The delay before the first redelivery.
    pub delay: Duration,
    /// Whether the delay doubles with each redelivery.
    pub exponential: bool,
    /// The longest delay.
    pub max_delay: Duration,
    /// Retries inside the consumer, with no delay, before a delayed redelivery (default 0).
    pub immediate: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retry_attempts: 3,
            delay: Duration::from_secs(1),
            exponential: true,
            max_delay: Duration::from_secs(300),
            immediate: 0,
        }
    }
}

impl RetryPolicy {
    /// No retries: a failure dead-letters at once.
    pub fn none() -> Self {
        Self {
            max_retry_attempts: 0,
            ..Self::default()
        }
    }

    /// `attempts` redeliveries, the same `delay` apart.
    pub fn fixed(attempts: u32, delay: Duration) -> Self {
        Self {
            max_retry_attempts: attempts,
            delay,
            exponential: false,
            ..Self::default()
        }
    }

    /// `attempts` redeliveries, `delay`, then twice that, and so on up to `max_delay`.
    pub fn exponential(attempts: u32, delay: Duration) -> Self {
        Self {
            max_retry_attempts: attempts,
            delay,
            exponential: true,
            ..Self::default()
        }
    }

    /// Sets the longest delay.
    pub fn max_delay(mut self, max: Duration) -> Self {
        self.max_delay = max;
        self
    }

    /// Sets the in-process retries tried before a delayed redelivery.
    pub fn immediate(mut self, retries: u32) -> Self {
        self.immediate = retries;
        self
    }

    /// The delay before delivery attempt `attempt` (2 is the first retry), or `None` when that
    /// attempt is past the last retry.
    pub fn delay_for(&self, attempt: u32) -> Option<Duration> {
        if attempt < 2 || attempt > self.max_retry_attempts.saturating_add(1) {
            return None;
        }
        let delay = if self.exponential {
            let factor = 1u32.checked_shl(attempt - 2).unwrap_or(u32::MAX);
            self.delay.saturating_mul(factor)
        } else {
            self.delay
        };
        Some(delay.min(self.max_delay))
    }

    /// The distinct delays the policy can ask for, in order (a transport declares one retry
    /// queue for each; at most 64).
    ///
    /// ```
    /// use std::time::Duration;
    /// use ferry_core::RetryPolicy;
    /// let policy = RetryPolicy::exponential(4, Duration::from_secs(1)).max_delay(Duration::from_secs(2));
    /// assert_eq!(policy.distinct_delays(), [Duration::from_secs(1), Duration::from_secs(2)]);
    /// ```
    pub fn distinct_delays(&self) -> Vec<Duration> {
        let mut delays: Vec<Duration> = Vec::new();
        for attempt in 2..=self.max_retry_attempts.saturating_add(1) {
            let Some(delay) = self.delay_for(attempt) else {
                break;
            };
            if !delays.contains(&delay) {
                delays.push(delay);
            }
            if delay >= self.max_delay || delays.len() >= 64 {
                break;
            }
        }
        delays
    }
}
