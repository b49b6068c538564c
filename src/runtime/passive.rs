//! Passive health on the control side: turns the workers' per-backend connection
//! outcomes (full NAT: SYN-ACK, RST, ICMP unreachable, no answer) into ejections.
//!
//! Workers only count ([`BackendCounters`]); every few milliseconds the control thread
//! sums them, takes what changed since its last look and feeds
//! [`PassiveHealth`]. Outcomes are seen in batches, not one by one: a batch with any
//! success ends a backend's failure streak (a backend that completes handshakes is not
//! failing as a whole); a batch of failures only lengthens it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use crate::config::{Config, Forwarding};
use crate::control::{backend_key, IdRegistry};
use crate::engine::BackendCounters;
use crate::health::{PassiveHealth, PassiveHealthConfig};

/// What changed in one look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassiveEvent {
    /// Ejected after a run of failed connections.
    Ejected {
        /// Backend id.
        id: u32,
        /// Failures seen in the run that ejected it (at least the threshold).
        failures: u64,
        /// For how long.
        for_ms: u64,
    },
    /// Its ejection ended: it takes new flows again.
    Readmitted {
        /// Backend id.
        id: u32,
    },
}

/// The control thread's view of connection outcomes.
#[derive(Debug, Default)]
pub struct PassiveTracker {
    health: PassiveHealth,
    /// Backends whose service watches outcomes (`nat` with outlier detection on).
    watched: HashSet<u32>,
    /// (connects_ok, connects_failed) summed over workers at the last look.
    seen: HashMap<u32, (u64, u64)>,
    /// Failures since the last success, for the log line.
    streak: HashMap<u32, u64>,
    /// Ejections so far, by backend.
    ejections: HashMap<u32, u64>,
    /// Ejected now.
    ejected: HashSet<u32>,
}

impl PassiveTracker {
    /// Takes the services' `outlier_detection` settings (at start and after a reload).
    pub fn configure(&mut self, cfg: &Config, reg: &mut IdRegistry) {
        self.watched.clear();
        for s in &cfg.services {
            let od = s.outlier_detection;
            if s.forwarding != Some(Forwarding::Nat) || !od.enabled() {
                continue;
            }
            let tuning = PassiveHealthConfig {
                consecutive_failures: u32::from(od.consecutive_failures),
                base_ejection: od.base_ejection_time,
                max_ejection: od.max_ejection_time,
            };
            for b in &s.backends {
                let id = reg.backend(&backend_key(s, b));
                self.health.configure(id, tuning);
                self.watched.insert(id);
            }
        }
        let ids: Vec<u32> = self.watched.iter().copied().collect();
        self.health.retain(&ids);
    }

    /// Looks at the summed counters; returns ejections and readmissions.
    pub fn observe(
        &mut self,
        totals: &BTreeMap<u32, BackendCounters>,
        now: Instant,
    ) -> Vec<PassiveEvent> {
        let mut events = Vec::new();
        for (id, c) in totals {
            let before = self
                .seen
                .insert(*id, (c.connects_ok, c.connects_failed))
                .unwrap_or((0, 0));
            if !self.watched.contains(id) {
                continue;
            }
            let ok = c.connects_ok.saturating_sub(before.0);
            let failed = c.connects_failed.saturating_sub(before.1);
            if ok > 0 {
                self.health.record_success(*id);
                self.streak.remove(id);
                continue;
            }
            for _ in 0..failed {
                *self.streak.entry(*id).or_default() += 1;
                if let Some(until) = self.health.record_failure(*id, now) {
                    self.ejected.insert(*id);
                    *self.ejections.entry(*id).or_default() += 1;
                    events.push(PassiveEvent::Ejected {
                        id: *id,
                        failures: self.streak.remove(id).unwrap_or(0),
                        for_ms: until.saturating_duration_since(now).as_millis() as u64,
                    });
                    break; // outcomes while ejected are stragglers
                }
            }
        }
        let over: Vec<u32> = self
            .ejected
            .iter()
            .copied()
            .filter(|id| !self.health.is_ejected_at(*id, now) || !self.watched.contains(id))
            .collect();
        for id in over {
            self.ejected.remove(&id);
            self.streak.remove(&id);
            events.push(PassiveEvent::Readmitted { id });
        }
        events
    }

    /// Whether backend `id` is ejected now.
    pub fn is_ejected(&self, id: u32) -> bool {
        self.ejected.contains(&id)
    }

    /// Ejections of backend `id` so far.
    pub fn ejections(&self, id: u32) -> u64 {
        self.ejections.get(&id).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn tracker(ids: &[u32], threshold: u32) -> PassiveTracker {
        let mut t = PassiveTracker::default();
        for id in ids {
            t.health.configure(
                *id,
                PassiveHealthConfig {
                    consecutive_failures: threshold,
                    base_ejection: Duration::from_secs(10),
                    max_ejection: Duration::from_secs(100),
                },
            );
            t.watched.insert(*id);
        }
        t
    }

    fn totals(v: &[(u32, u64, u64)]) -> BTreeMap<u32, BackendCounters> {
        v.iter()
            .map(|(id, ok, failed)| {
                (
                    *id,
                    BackendCounters {
                        connects_ok: *ok,
                        connects_failed: *failed,
                        ..BackendCounters::default()
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_run_of_failures_ejects_and_the_ejection_ends() {
        let mut t = tracker(&[1, 2], 3);
        let t0 = Instant::now();
        assert!(t.observe(&totals(&[(1, 5, 0), (2, 5, 0)]), t0).is_empty());
        assert!(t.observe(&totals(&[(1, 5, 2), (2, 6, 0)]), t0).is_empty());
        let ev = t.observe(&totals(&[(1, 5, 3), (2, 7, 0)]), t0);
        assert_eq!(
            ev,
            vec![PassiveEvent::Ejected {
                id: 1,
                failures: 3,
                for_ms: 10_000
            }]
        );
        assert!(t.is_ejected(1) && !t.is_ejected(2));
        assert_eq!(t.ejections(1), 1);
        let later = t0 + Duration::from_secs(10);
        assert_eq!(
            t.observe(&totals(&[(1, 5, 3)]), later),
            vec![PassiveEvent::Readmitted { id: 1 }]
        );
        assert!(!t.is_ejected(1));
    }

    #[test]
    fn a_success_between_failures_ends_the_streak() {
        let mut t = tracker(&[1], 3);
        let t0 = Instant::now();
        t.observe(&totals(&[(1, 0, 2)]), t0);
        t.observe(&totals(&[(1, 1, 2)]), t0);
        assert!(t.observe(&totals(&[(1, 1, 4)]), t0).is_empty());
        assert!(!t.is_ejected(1));
    }

    #[test]
    fn unwatched_backends_are_never_ejected() {
        let mut t = tracker(&[], 1);
        assert!(t.observe(&totals(&[(9, 0, 50)]), Instant::now()).is_empty());
        assert!(!t.is_ejected(9));
    }
}
