//! The bounded binary search for the highest lossless rate (RFC 2544 throughput,
//! with a loss tolerance for a shared VM).

/// What one trial at a rate gave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrialOutcome {
    /// Packets the generator meant to send in the trial.
    pub offered: u64,
    /// Packets that came back.
    pub received: u64,
    /// Packets per second actually put on the port (accepted by TX).
    pub sent_pps: f64,
    /// Of `offered`, those sent in the trial's steady windows ([`crate::window`]);
    /// 0 when the trial kept no windows.
    pub steady_offered: u64,
    /// Of `received`, those sent in the steady windows.
    pub steady_received: u64,
}

impl TrialOutcome {
    /// Lost share of the offered packets (0 when nothing was offered).
    pub fn loss(&self) -> f64 {
        crate::window::loss_share(self.offered, self.received)
    }

    /// Lost share of the frames sent in the steady windows (the raw loss when the
    /// trial kept no windows).
    pub fn steady_loss(&self) -> f64 {
        if self.steady_offered == 0 {
            return self.loss();
        }
        crate::window::loss_share(self.steady_offered, self.steady_received)
    }

    /// Whether the trial counts as lossless with tolerance `max_loss`: judged on its
    /// steady windows, so that a host stall in one window does not decide the search.
    pub fn lossless(&self, max_loss: f64) -> bool {
        self.offered > 0 && self.steady_loss() <= max_loss
    }
}

/// The search's bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchLimits {
    /// Trials after the first (unpaced) one.
    pub max_steps: u32,
    /// Stop when `(hi - lo) / hi` is below this.
    pub resolution: f64,
    /// Largest loss share still called lossless.
    pub max_loss: f64,
    /// Paced trials that fail are run again this many times, and the rate is lossless
    /// if any run is: a host stall that spoils most of one trial's windows then does not
    /// lower the bound for the rest of the search.
    pub retries: u32,
}

/// Finds the highest rate (pps) at which `trial` is lossless: first `trial(None)`
/// (unpaced, as fast as the generator goes) sets the upper bound from its sent rate;
/// if that is lossless it is the answer; otherwise bisect `(0, hi)` for at most
/// `max_steps` rates, each tried up to `1 + retries` times. Returns the best lossless
/// rate found (0.0 if none) and every `(rate, outcome)` tried.
pub fn highest_lossless<F>(limits: SearchLimits, mut trial: F) -> (f64, Vec<(f64, TrialOutcome)>)
where
    F: FnMut(Option<f64>) -> TrialOutcome,
{
    let mut log = Vec::new();
    let first = trial(None);
    let mut hi = first.sent_pps;
    log.push((hi, first));
    if first.lossless(limits.max_loss) || hi <= 0.0 {
        return (if hi > 0.0 { hi } else { 0.0 }, log);
    }
    let mut lo = 0.0f64;
    for _ in 0..limits.max_steps {
        if hi > 0.0 && (hi - lo) / hi < limits.resolution {
            break;
        }
        let mid = if lo == 0.0 { hi / 2.0 } else { (lo + hi) / 2.0 };
        let mut passed = false;
        for _ in 0..=limits.retries {
            let out = trial(Some(mid));
            log.push((mid, out));
            // a paced trial that could not even send 90% of `mid` is a failure too
            if out.lossless(limits.max_loss) && out.sent_pps >= mid * 0.9 {
                passed = true;
                break;
            }
        }
        if passed {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo, log)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: SearchLimits = SearchLimits {
        max_steps: 12,
        resolution: 0.01,
        max_loss: 0.0,
        retries: 0,
    };

    /// A device that drops everything above `cap` pps; the generator manages `max`.
    fn device(cap: f64, max: f64) -> impl FnMut(Option<f64>) -> TrialOutcome {
        move |rate| {
            let r = rate.unwrap_or(max).min(max);
            let offered = (r * 1.0) as u64;
            let received = offered.min(cap as u64);
            TrialOutcome {
                offered,
                received,
                sent_pps: r,
                steady_offered: 0,
                steady_received: 0,
            }
        }
    }

    #[test]
    fn converges_on_the_capacity_from_below() {
        let (best, log) = highest_lossless(LIMITS, device(3_000_000.0, 10_000_000.0));
        assert!(best <= 3_000_000.0 && best > 2_950_000.0, "best {best}");
        assert!(log.len() <= 13);
        assert!(log
            .iter()
            .all(|(r, o)| o.lossless(0.0) == (*r <= 3_000_000.0) || r.is_nan()));
    }

    #[test]
    fn unpaced_lossless_is_the_answer() {
        let (best, log) = highest_lossless(LIMITS, device(20e6, 5e6));
        assert_eq!(best, 5e6);
        assert_eq!(log.len(), 1);
    }

    #[test]
    fn nothing_lossless_gives_zero_and_stops() {
        let (best, log) = highest_lossless(LIMITS, device(0.0, 1e6));
        assert_eq!(best, 0.0);
        assert_eq!(log.len(), 13);
    }

    #[test]
    fn a_retry_forgives_one_disturbed_trial() {
        // capacity 3 Mpps, but every other trial is hit by a stall and loses
        let mut n = 0u32;
        let mut dev = device(3_000_000.0, 10_000_000.0);
        let flaky = |rate: Option<f64>| {
            n += 1;
            let mut o = dev(rate);
            if rate.is_some() && n.is_multiple_of(2) {
                o.received = o.offered / 2;
            }
            o
        };
        let limits = SearchLimits {
            retries: 1,
            ..LIMITS
        };
        let (best, _) = highest_lossless(limits, flaky);
        assert!(best > 2_950_000.0 && best <= 3_000_000.0, "best {best}");
        // without the retry the stalls pull the answer down
        let mut m = 0u32;
        let mut dev = device(3_000_000.0, 10_000_000.0);
        let (worse, _) = highest_lossless(LIMITS, |rate| {
            m += 1;
            let mut o = dev(rate);
            if rate.is_some() && m.is_multiple_of(2) {
                o.received = o.offered / 2;
            }
            o
        });
        assert!(worse < best, "{worse} vs {best}");
        // a retry cannot make a rate above the capacity lossless
        let (capped, _) = highest_lossless(limits, device(3_000_000.0, 10_000_000.0));
        assert!(capped <= 3_000_000.0);
    }

    #[test]
    fn loss_tolerance_is_applied() {
        let o = TrialOutcome {
            offered: 100_000,
            received: 99_995,
            sent_pps: 1.0,
            steady_offered: 0,
            steady_received: 0,
        };
        assert!(!o.lossless(0.0));
        assert!(o.lossless(1e-4));
        assert!(!TrialOutcome {
            offered: 0,
            received: 0,
            sent_pps: 0.0,
            steady_offered: 0,
            steady_received: 0,
        }
        .lossless(1.0));
    }

    #[test]
    fn steady_windows_decide_losslessness() {
        // 2% lost in a stall, none in the steady 80%
        let stalled = TrialOutcome {
            offered: 100_000,
            received: 98_000,
            sent_pps: 1.0,
            steady_offered: 80_000,
            steady_received: 80_000,
        };
        assert!((stalled.loss() - 0.02).abs() < 1e-12);
        assert_eq!(stalled.steady_loss(), 0.0);
        assert!(stalled.lossless(0.001));
        // an overloaded forwarder loses in its steady windows too
        let overloaded = TrialOutcome {
            steady_received: 79_000,
            ..stalled
        };
        assert!(!overloaded.lossless(0.001));
    }
}
