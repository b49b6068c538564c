//! A trial cut into short windows by send time, and its *steady* part: the windows the
//! host left alone.
//!
//! On a shared VM the generator's or the forwarder's vCPU is now and then off its CPU
//! for tens of microseconds to milliseconds (a spinning thread measures it: see the
//! harness's stall probe). Frames sent meanwhile queue up or overflow the ring, whoever
//! the forwarder is. Such a stall spoils the windows it falls in and leaves the others
//! alone, while a forwarder that cannot keep up loses (or queues) in every window. So
//! a trial keeps tallies per window and reports, beside its raw figures, those of its
//! best `share` of windows, ranked by loss and then by the worst latency seen: a
//! trimmed estimate of what the forwarder does when it has its CPU.

/// Tallies of one window: frames sent in it, those of them that came back, and the
/// largest latency among them (ns).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    /// Frames offered (stamped) in the window.
    pub offered: u64,
    /// Of those, frames that came back.
    pub received: u64,
    /// The largest send-to-receive latency of those frames, in nanoseconds.
    pub worst_ns: u64,
}

/// The share of `offered` frames that did not come back (0 when none were offered).
pub fn loss_share(offered: u64, received: u64) -> f64 {
    if offered == 0 {
        return 0.0;
    }
    offered.saturating_sub(received) as f64 / offered as f64
}

impl Window {
    /// Lost share of the window's frames.
    pub fn loss(&self) -> f64 {
        loss_share(self.offered, self.received)
    }
}

/// The indices of the steady windows: the best `ceil(share * n)` of those that offered
/// frames (at least one), ranked by loss share and then by worst latency, in window
/// order. Windows that offered nothing are never steady.
pub fn steady(windows: &[Window], share: f64) -> Vec<usize> {
    let mut used: Vec<usize> = (0..windows.len())
        .filter(|&i| windows[i].offered > 0)
        .collect();
    if used.is_empty() {
        return used;
    }
    let keep = ((share.clamp(0.0, 1.0) * used.len() as f64).ceil() as usize).clamp(1, used.len());
    used.sort_by(|&a, &b| {
        let (wa, wb) = (&windows[a], &windows[b]);
        wa.loss()
            .total_cmp(&wb.loss())
            .then(wa.worst_ns.cmp(&wb.worst_ns))
            .then(a.cmp(&b))
    });
    used.truncate(keep);
    used.sort_unstable();
    used
}

/// The offered and received totals of the windows `which`.
pub fn totals(windows: &[Window], which: &[usize]) -> (u64, u64) {
    which.iter().fold((0, 0), |(o, r), &i| {
        (o + windows[i].offered, r + windows[i].received)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(offered: u64, received: u64, worst_ns: u64) -> Window {
        Window {
            offered,
            received,
            worst_ns,
        }
    }

    #[test]
    fn a_stall_spoils_its_window_only() {
        // ten windows, one of them hit by a 5 ms stall: lost frames and a long tail
        let mut ws = vec![w(1000, 1000, 20_000); 10];
        ws[3] = w(1000, 600, 5_000_000);
        let s = steady(&ws, 0.8);
        assert_eq!(s.len(), 8);
        assert!(!s.contains(&3), "{s:?}");
        assert_eq!(totals(&ws, &s), (8000, 8000));
        // the raw trial lost 4%
        let all: Vec<usize> = (0..10).collect();
        assert_eq!(totals(&ws, &all), (10_000, 9_600));
    }

    #[test]
    fn an_overloaded_forwarder_loses_in_every_steady_window() {
        let ws: Vec<Window> = (0..10).map(|i| w(1000, 900 - i, 50_000)).collect();
        let s = steady(&ws, 0.8);
        let (o, r) = totals(&ws, &s);
        assert!(r < o, "trimming cannot hide a loss every window has");
        // the two worst (most loss) are the ones left out
        assert_eq!(s, (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn latency_breaks_ties_and_empty_windows_are_never_steady() {
        let ws = vec![w(10, 10, 900), w(0, 0, 0), w(10, 10, 100), w(10, 10, 500)];
        assert_eq!(steady(&ws, 0.5), vec![2, 3]);
        assert_eq!(steady(&ws, 0.01), vec![2], "at least one window");
        assert_eq!(steady(&ws, 1.0), vec![0, 2, 3]);
        assert!(steady(&[w(0, 0, 0)], 0.8).is_empty());
        assert!(steady(&[], 0.8).is_empty());
    }
}
