//! When to try again: one pure backoff policy, for the retries of a send
//! (`--retry-for`) and for the outbox. Exponential, capped, with jitter so
//! that many messages do not retry in step. The caller supplies the
//! randomness, so every figure here is unit-tested.

use std::time::Duration;

/// Delays that start at `first`, double with every attempt and stop
/// growing at `max`; each is then scaled by 0.8 to 1.2.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

/// Retries within one run of mailsend (`--retry-for`): 1 s, 2 s, 4 s, ...
/// at most 5 min.
pub const SEND: Backoff = Backoff {
    first: Duration::from_secs(1),
    max: Duration::from_secs(300),
};

/// A queued message's next attempt: 1 min, 2 min, 4 min, ... at most 1 h.
pub const OUTBOX: Backoff = Backoff {
    first: Duration::from_secs(60),
    max: Duration::from_secs(3600),
};

impl Backoff {
    /// The delay after attempt number `attempt` (1 for the first), before
    /// jitter.
    pub fn base(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.first
            .checked_mul(1u32 << doublings)
            .map_or(self.max, |d| d.min(self.max))
    }

    /// The delay after attempt `attempt`, scaled by 0.8 to 1.2 as `unit`
    /// goes from 0 to 1 (a random number in `[0, 1)` in use).
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        self.base(attempt).mul_f64(0.8 + unit.clamp(0.0, 1.0) * 0.4)
    }

    /// A jittered delay after attempt `attempt`, with fresh randomness.
    pub fn next(&self, attempt: u32) -> Duration {
        self.delay(attempt, fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_first_and_stops_at_max() {
        let secs = |a| SEND.base(a).as_secs();
        assert_eq!([1, 2, 3, 4, 9, 10].map(secs), [1, 2, 4, 8, 256, 300]);
        let mins = |a| OUTBOX.base(a).as_secs() / 60;
        assert_eq!(
            [0, 1, 2, 6, 7, 100, u32::MAX].map(mins),
            [1, 1, 2, 32, 60, 60, 60]
        );
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        assert_eq!(OUTBOX.delay(1, 0.0), Duration::from_secs(48));
        assert_eq!(OUTBOX.delay(1, 0.5), Duration::from_secs(60));
        assert_eq!(OUTBOX.delay(1, 1.0), Duration::from_secs(72));
        assert_eq!(OUTBOX.delay(1, 7.0), Duration::from_secs(72), "clamped");
        for attempt in 1..40 {
            let d = SEND.next(attempt);
            let base = SEND.base(attempt);
            assert!(
                d >= base.mul_f64(0.8) && d <= base.mul_f64(1.2),
                "{attempt}: {d:?}"
            );
        }
    }
}
