//! Randomised probe timing, so that checks of many backends do not march in step.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Spread of the period between two probes: ±10% of `interval`.
pub const JITTER_PERCENT: u64 = 10;

/// A small PRNG (splitmix64) that draws probe delays. Not for cryptography.
#[derive(Clone, Debug)]
pub struct Jitter {
    state: u64,
}

impl Jitter {
    /// A generator with a fixed seed (tests).
    pub fn with_seed(seed: u64) -> Jitter {
        Jitter { state: seed }
    }

    /// A generator seeded from the process's hash randomness and `salt` (e.g. a
    /// backend id), different on every call.
    pub fn from_entropy(salt: u64) -> Jitter {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(salt);
        Jitter { state: h.finish() }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform draw in `[0, bound)` (0 when `bound` is 0).
    fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        // Multiply-shift: bias below 2^-64 * bound, irrelevant here.
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// Delay before the first probe: uniform in `[0, interval)`.
    pub fn first_offset(&mut self, interval: Duration) -> Duration {
        Duration::from_nanos(self.below(nanos(interval)))
    }

    /// Delay between two probes: `interval` ±[`JITTER_PERCENT`]%.
    pub fn next_period(&mut self, interval: Duration) -> Duration {
        let base = nanos(interval);
        let spread = base / 100 * JITTER_PERCENT;
        // base - spread + [0, 2 * spread]
        Duration::from_nanos(base - spread + self.below(2 * spread + 1))
    }
}

/// `d` in nanoseconds, saturated at about 584 years.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX / 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_offsets_cover_the_interval() {
        let mut j = Jitter::with_seed(7);
        let interval = Duration::from_millis(1000);
        let mut buckets = [0u32; 10];
        for _ in 0..10_000 {
            let d = j.first_offset(interval);
            assert!(d < interval);
            buckets[(d.as_millis() / 100) as usize] += 1;
        }
        // Uniform: each tenth gets about 1000 draws.
        for (i, b) in buckets.iter().enumerate() {
            assert!((800..1200).contains(b), "bucket {i} has {b}");
        }
    }

    #[test]
    fn periods_stay_within_ten_percent_and_vary() {
        let mut j = Jitter::with_seed(1);
        let interval = Duration::from_secs(2);
        let draws: Vec<Duration> = (0..1000).map(|_| j.next_period(interval)).collect();
        let lo = Duration::from_millis(1800);
        let hi = Duration::from_millis(2200);
        assert!(draws.iter().all(|d| *d >= lo && *d <= hi));
        let min = draws.iter().min().copied().unwrap_or_default();
        let max = draws.iter().max().copied().unwrap_or_default();
        assert!(min < Duration::from_millis(1820), "min {min:?}");
        assert!(max > Duration::from_millis(2180), "max {max:?}");
    }

    #[test]
    fn entropy_seeds_differ() {
        let a = Jitter::from_entropy(1).next_u64();
        let b = Jitter::from_entropy(1).next_u64();
        assert_ne!(a, b);
    }

    #[test]
    fn zero_interval_is_harmless() {
        let mut j = Jitter::with_seed(3);
        assert_eq!(j.first_offset(Duration::ZERO), Duration::ZERO);
        assert_eq!(j.next_period(Duration::ZERO), Duration::ZERO);
    }
}
