//! `flcstall`: how long a spinning thread is kept off its CPU.
//!
//! Spins for SECS seconds reading the monotonic clock and tallies every gap between two
//! reads longer than 1 us: time the thread did not run (host preemption on a VM, the
//! kernel's timer tick, interrupts, other tasks). A poll-mode forwarder on the same CPU
//! loses the same time, and frames wait meanwhile: this is the floor under any latency
//! percentile measured on the machine. Prints one JSON object.
//!
//! ```text
//! taskset -c 1 flcstall [SECS]
//! ```

#![deny(unsafe_code)]

use std::time::{Duration, Instant};

/// Gap thresholds (ns) of the tally: a gap counts under every threshold it exceeds.
const THRESHOLDS_NS: [(u64, &str); 5] = [
    (10_000, "over_10us"),
    (20_000, "over_20us"),
    (100_000, "over_100us"),
    (1_000_000, "over_1ms"),
    (5_000_000, "over_5ms"),
];

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .filter(|s: &f64| *s > 0.0 && *s <= 600.0)
        .unwrap_or(5.0);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let mut last = start;
    let mut over = [0u64; THRESHOLDS_NS.len()];
    let (mut lost_ns, mut lost_20_ns, mut max_ns, mut gaps) = (0u64, 0u64, 0u64, 0u64);
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let gap = now.duration_since(last).as_nanos() as u64;
        last = now;
        if gap > 1_000 {
            gaps += 1;
            lost_ns += gap;
            max_ns = max_ns.max(gap);
            if gap > 20_000 {
                lost_20_ns += gap;
            }
            for (k, (t, _)) in THRESHOLDS_NS.iter().enumerate() {
                if gap > *t {
                    over[k] += 1;
                }
            }
        }
    }
    let total = start.elapsed().as_nanos() as f64;
    let tally: Vec<String> = THRESHOLDS_NS
        .iter()
        .zip(over)
        .map(|((_, name), n)| format!("\"{name}\":{n}"))
        .collect();
    println!(
        "{{\"secs\":{secs},\"gaps_over_1us\":{gaps},{},\"lost_share\":{:.6},\"lost_share_over_20us\":{:.6},\"max_ns\":{max_ns}}}",
        tally.join(","),
        lost_ns as f64 / total,
        lost_20_ns as f64 / total,
    );
}
