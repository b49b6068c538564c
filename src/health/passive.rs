//! Passive health: outlier detection from connection outcomes the data plane sees.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Tuning of [`PassiveHealth`] (Envoy's `consecutive_5xx`-style outlier detection,
/// applied to connection failures).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PassiveHealthConfig {
    /// Failures in a row that eject a backend (default 5).
    pub consecutive_failures: u32,
    /// Ejection time on the first ejection (default 30s); doubles on each repeated one.
    pub base_ejection: Duration,
    /// Longest ejection (default 300s). Also the quiet time after which one doubling is
    /// forgiven.
    pub max_ejection: Duration,
}

impl Default for PassiveHealthConfig {
    fn default() -> Self {
        PassiveHealthConfig {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Outlier {
    /// This backend's tuning, when it differs from the tracker's (set by `configure`).
    config: Option<PassiveHealthConfig>,
    consecutive_failures: u32,
    /// Ejections so far, less those forgiven; sets the next ejection's length.
    ejections: u32,
    /// End of the current or last ejection.
    ejected_until: Option<Instant>,
}

/// Ejects backends whose connections keep failing (pure: no I/O, no clock reads).
///
/// The data plane reports each outcome it sees: [`record_failure`](Self::record_failure)
/// for a RST answering a SYN, no SYN-ACK in time or an ICMP unreachable;
/// [`record_success`](Self::record_success) for an established connection. After
/// `consecutive_failures` failures in a row the backend is ejected for `base_ejection`,
/// doubled for each earlier ejection and capped at `max_ejection`. Each full
/// `max_ejection` spent without an ejection forgives one doubling. Outcomes reported
/// while a backend is ejected are ignored (they are stragglers of flows begun before).
#[derive(Clone, Debug, Default)]
pub struct PassiveHealth {
    config: PassiveHealthConfig,
    backends: BTreeMap<u32, Outlier>,
}

impl PassiveHealth {
    /// An empty tracker.
    pub fn new(config: PassiveHealthConfig) -> PassiveHealth {
        PassiveHealth {
            config,
            backends: BTreeMap::new(),
        }
    }

    /// The tuning in force.
    pub fn config(&self) -> PassiveHealthConfig {
        self.config
    }

    fn is_ejected(o: &Outlier, now: Instant) -> bool {
        o.ejected_until.is_some_and(|until| now < until)
    }

    /// Records a failed connection to backend `id` at `now`; returns the end of the
    /// ejection if this failure ejected it.
    pub fn record_failure(&mut self, id: u32, now: Instant) -> Option<Instant> {
        let o = self.backends.entry(id).or_default();
        let config = o.config.unwrap_or(self.config);
        if Self::is_ejected(o, now) {
            return None;
        }
        o.consecutive_failures = o.consecutive_failures.saturating_add(1);
        if o.consecutive_failures < config.consecutive_failures.max(1) {
            return None;
        }
        // Forgive one doubling per full max_ejection since the last ejection ended.
        if let Some(last_end) = o.ejected_until {
            let quiet = now.saturating_duration_since(last_end);
            let periods = quiet.as_nanos() / config.max_ejection.as_nanos().max(1);
            let forgiven = u32::try_from(periods).unwrap_or(u32::MAX);
            o.ejections = o.ejections.saturating_sub(forgiven);
        }
        let length = ejection_length(config, o.ejections);
        o.ejections = o.ejections.saturating_add(1);
        o.consecutive_failures = 0;
        let until = now + length;
        o.ejected_until = Some(until);
        Some(until)
    }

    /// Records a successful connection to backend `id`: its failure streak ends.
    pub fn record_success(&mut self, id: u32) {
        if let Some(o) = self.backends.get_mut(&id) {
            o.consecutive_failures = 0;
        }
    }

    /// Backends ejected at `now`, by id.
    pub fn ejected(&self, now: Instant) -> Vec<u32> {
        self.backends
            .iter()
            .filter(|(_, o)| Self::is_ejected(o, now))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Whether backend `id` is ejected at `now`.
    pub fn is_ejected_at(&self, id: u32, now: Instant) -> bool {
        self.backends
            .get(&id)
            .is_some_and(|o| Self::is_ejected(o, now))
    }

    /// Sets backend `id`'s own tuning (each service has its own); its streak and
    /// ejection history are kept.
    pub fn configure(&mut self, id: u32, config: PassiveHealthConfig) {
        self.backends.entry(id).or_default().config = Some(config);
    }

    /// Forgets backends not in `ids` (after a reload removed them).
    pub fn retain(&mut self, ids: &[u32]) {
        self.backends.retain(|id, _| ids.contains(id));
    }
}

/// `base * 2^previous`, capped at `max`.
fn ejection_length(config: PassiveHealthConfig, previous: u32) -> Duration {
    let factor = 1u32.checked_shl(previous.min(31)).unwrap_or(u32::MAX);
    config
        .base_ejection
        .checked_mul(factor)
        .unwrap_or(config.max_ejection)
        .min(config.max_ejection)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail_n(p: &mut PassiveHealth, id: u32, n: u32, now: Instant) -> Option<Instant> {
        let mut last = None;
        for _ in 0..n {
            last = p.record_failure(id, now);
        }
        last
    }

    #[test]
    fn ejects_after_exactly_the_threshold() {
        let mut p = PassiveHealth::new(PassiveHealthConfig::default());
        let t0 = Instant::now();
        assert_eq!(fail_n(&mut p, 7, 4, t0), None);
        assert!(p.ejected(t0).is_empty());
        let until = p.record_failure(7, t0);
        assert_eq!(until, Some(t0 + Duration::from_secs(30)));
        assert_eq!(p.ejected(t0), vec![7]);
        assert_eq!(p.ejected(t0 + Duration::from_secs(29)), vec![7]);
        assert!(p.ejected(t0 + Duration::from_secs(30)).is_empty());
    }

    #[test]
    fn a_success_resets_the_streak() {
        let mut p = PassiveHealth::new(PassiveHealthConfig::default());
        let t0 = Instant::now();
        fail_n(&mut p, 1, 4, t0);
        p.record_success(1);
        fail_n(&mut p, 1, 4, t0);
        assert!(!p.is_ejected_at(1, t0));
        p.record_failure(1, t0);
        assert!(p.is_ejected_at(1, t0));
    }

    #[test]
    fn repeated_ejections_double_up_to_the_cap() {
        let mut p = PassiveHealth::new(PassiveHealthConfig::default());
        let mut now = Instant::now();
        let mut lengths = Vec::new();
        for _ in 0..6 {
            let until = fail_n(&mut p, 3, 5, now).expect("fifth failure ejects");
            lengths.push((until - now).as_secs());
            now = until; // readmitted, fails again at once
        }
        assert_eq!(lengths, vec![30, 60, 120, 240, 300, 300]);
    }

    #[test]
    fn failures_while_ejected_are_ignored() {
        let mut p = PassiveHealth::new(PassiveHealthConfig::default());
        let t0 = Instant::now();
        fail_n(&mut p, 2, 5, t0);
        // Stragglers during the ejection neither extend it nor count toward the next.
        assert_eq!(fail_n(&mut p, 2, 20, t0 + Duration::from_secs(10)), None);
        let back = t0 + Duration::from_secs(30);
        assert!(!p.is_ejected_at(2, back));
        assert_eq!(fail_n(&mut p, 2, 4, back), None);
        assert_eq!(
            p.record_failure(2, back),
            Some(back + Duration::from_secs(60))
        );
    }

    #[test]
    fn a_quiet_period_forgives_doublings() {
        let mut p = PassiveHealth::new(PassiveHealthConfig::default());
        let mut now = Instant::now();
        for _ in 0..3 {
            now = fail_n(&mut p, 9, 5, now).expect("ejected"); // 30, 60, 120
        }
        // Two full max_ejection periods of quiet: 240 becomes 60.
        now += Duration::from_secs(600);
        let until = fail_n(&mut p, 9, 5, now).expect("ejected");
        assert_eq!(until - now, Duration::from_secs(60));
    }

    #[test]
    fn backends_are_independent_and_retain_forgets() {
        let mut p = PassiveHealth::new(PassiveHealthConfig {
            consecutive_failures: 2,
            ..PassiveHealthConfig::default()
        });
        let t0 = Instant::now();
        fail_n(&mut p, 1, 2, t0);
        fail_n(&mut p, 2, 1, t0);
        fail_n(&mut p, 3, 2, t0);
        assert_eq!(p.ejected(t0), vec![1, 3]);
        p.retain(&[2, 3]);
        assert_eq!(p.ejected(t0), vec![3]);
    }

    #[test]
    fn zero_threshold_ejects_on_first_failure_and_unknown_success_is_harmless() {
        let mut p = PassiveHealth::new(PassiveHealthConfig {
            consecutive_failures: 0,
            ..PassiveHealthConfig::default()
        });
        p.record_success(42);
        assert!(p.record_failure(42, Instant::now()).is_some());
    }
}
