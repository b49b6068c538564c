//! The threshold state machine shared by every active check.

/// Healthy/unhealthy with hysteresis: the state flips after `unhealthy_threshold`
/// consecutive failures (when healthy) or `healthy_threshold` consecutive successes
/// (when unhealthy). Starts healthy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hysteresis {
    healthy: bool,
    consecutive_ok: u32,
    consecutive_fail: u32,
    transitions: u64,
    healthy_threshold: u8,
    unhealthy_threshold: u8,
}

/// What one probe result did to the state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// The state is unchanged.
    Stay,
    /// The backend just turned healthy.
    BecameHealthy,
    /// The backend just turned unhealthy.
    BecameUnhealthy,
}

impl Hysteresis {
    /// A healthy state with the given thresholds (a threshold of 0 counts as 1).
    pub fn new(healthy_threshold: u8, unhealthy_threshold: u8) -> Hysteresis {
        Hysteresis {
            healthy: true,
            consecutive_ok: 0,
            consecutive_fail: 0,
            transitions: 0,
            healthy_threshold: healthy_threshold.max(1),
            unhealthy_threshold: unhealthy_threshold.max(1),
        }
    }

    /// Changes the thresholds, keeping the state and the streaks (a reload).
    pub fn set_thresholds(&mut self, healthy_threshold: u8, unhealthy_threshold: u8) {
        self.healthy_threshold = healthy_threshold.max(1);
        self.unhealthy_threshold = unhealthy_threshold.max(1);
    }

    /// Records one probe result.
    pub fn record(&mut self, ok: bool) -> Transition {
        if ok {
            self.consecutive_ok = self.consecutive_ok.saturating_add(1);
            self.consecutive_fail = 0;
            if !self.healthy && self.consecutive_ok >= u32::from(self.healthy_threshold) {
                self.healthy = true;
                self.transitions += 1;
                return Transition::BecameHealthy;
            }
        } else {
            self.consecutive_fail = self.consecutive_fail.saturating_add(1);
            self.consecutive_ok = 0;
            if self.healthy && self.consecutive_fail >= u32::from(self.unhealthy_threshold) {
                self.healthy = false;
                self.transitions += 1;
                return Transition::BecameUnhealthy;
            }
        }
        Transition::Stay
    }

    /// Whether the backend is healthy.
    pub fn healthy(&self) -> bool {
        self.healthy
    }

    /// Successful probes in a row (0 after a failure).
    pub fn consecutive_ok(&self) -> u32 {
        self.consecutive_ok
    }

    /// Failed probes in a row (0 after a success).
    pub fn consecutive_fail(&self) -> u32 {
        self.consecutive_fail
    }

    /// How many times the state flipped.
    pub fn transitions(&self) -> u64 {
        self.transitions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_healthy_and_flips_after_exactly_the_threshold() {
        let mut h = Hysteresis::new(2, 3);
        assert!(h.healthy());
        assert_eq!(h.record(false), Transition::Stay);
        assert_eq!(h.record(false), Transition::Stay);
        assert_eq!(h.record(false), Transition::BecameUnhealthy);
        assert!(!h.healthy());
        assert_eq!(h.consecutive_fail(), 3);
        assert_eq!(h.record(false), Transition::Stay);
        assert_eq!(h.record(true), Transition::Stay);
        assert_eq!(h.record(true), Transition::BecameHealthy);
        assert!(h.healthy());
        assert_eq!(h.transitions(), 2);
    }

    #[test]
    fn an_interrupted_streak_starts_over() {
        let mut h = Hysteresis::new(2, 3);
        h.record(false);
        h.record(false);
        h.record(true);
        assert_eq!(h.consecutive_fail(), 0);
        h.record(false);
        h.record(false);
        assert!(h.healthy(), "two failures after a success must not flip");
        assert_eq!(h.record(false), Transition::BecameUnhealthy);
        h.record(true);
        h.record(false);
        assert_eq!(h.record(true), Transition::Stay);
        assert!(!h.healthy());
    }

    #[test]
    fn zero_thresholds_count_as_one() {
        let mut h = Hysteresis::new(0, 0);
        assert_eq!(h.record(false), Transition::BecameUnhealthy);
        assert_eq!(h.record(true), Transition::BecameHealthy);
    }

    #[test]
    fn successes_while_healthy_never_transition() {
        let mut h = Hysteresis::new(1, 1);
        for _ in 0..10 {
            assert_eq!(h.record(true), Transition::Stay);
        }
        assert_eq!(h.transitions(), 0);
        assert_eq!(h.consecutive_ok(), 10);
    }
}
