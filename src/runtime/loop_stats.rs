//! The worker loop's own histograms (packets per busy loop, time per busy loop), recorded
//! as plain counts and folded into [`Histogram`]s only when they are published.
//!
//! Two `hdrhistogram` records and a float conversion per loop cost the worker ~1.4 ns a
//! packet at 32-packet loops (3.5% of the 64-byte replay's rate): each record computes
//! its bucket, checks bounds and updates the count, the total, the minimum and the
//! maximum. Here a loop is two array increments: bursts by size, loop times by a
//! log-linear bucket of TSC cycles (16 buckets per power of two, so a bucket is at most
//! 1/16 of its value wide and its midpoint within 1/32 of anything in it). The worker
//! folds them into its histograms (in nanoseconds) every time it publishes those, which
//! keeps them cumulative as before.

use hdrhistogram::Histogram;

/// Bursts up to this size are counted in the array; larger ones (several ports, hand-offs
/// and a kernel queue in one loop) go to the histogram at once.
pub const BURST_SLOTS: usize = 1024;
/// Sub-buckets per power of two of the loop-time buckets.
const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
/// Loop-time buckets: values below [`SUB`] exactly, then 16 per power of two up to 2^64.
const CYCLE_SLOTS: usize = ((64 - SUB_BITS as usize) + 1) << SUB_BITS;

/// The loop-time bucket of `cycles`.
#[inline(always)]
fn cycle_slot(cycles: u64) -> usize {
    if cycles < SUB {
        return cycles as usize;
    }
    let e = 63 - cycles.leading_zeros(); // >= SUB_BITS
    let m = (cycles >> (e - SUB_BITS)) & (SUB - 1);
    (((e - SUB_BITS + 1) as u64) << SUB_BITS | m) as usize
}

/// The lowest and highest cycle counts of bucket `slot`.
fn slot_range(slot: usize) -> (u64, u64) {
    let slot = slot as u64;
    if slot < SUB {
        return (slot, slot);
    }
    let e = (slot >> SUB_BITS) as u32 + SUB_BITS - 1;
    let m = slot & (SUB - 1);
    let shift = e - SUB_BITS;
    let low = (SUB | m) << shift;
    (low, low + ((1u64 << shift) - 1))
}

/// Counts of one worker's busy loops since the last fold.
pub struct LoopRecorder {
    bursts: Box<[u64]>,
    cycles: Box<[u64]>,
}

impl Default for LoopRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl LoopRecorder {
    /// Empty counts (allocated here, never on the hot path).
    pub fn new() -> LoopRecorder {
        LoopRecorder {
            bursts: vec![0; BURST_SLOTS].into_boxed_slice(),
            cycles: vec![0; CYCLE_SLOTS].into_boxed_slice(),
        }
    }

    /// Counts a busy loop that took `packets` packets; a burst too large for the array is
    /// recorded in `burst_hist` directly.
    #[inline(always)]
    pub fn record(&mut self, packets: usize, burst_hist: &mut Histogram<u64>) {
        match self.bursts.get_mut(packets) {
            Some(n) => *n += 1,
            None => {
                let _ = burst_hist.record(packets as u64);
            }
        }
    }

    /// Counts a loop that lasted `cycles` TSC cycles, `weight` times (the worker times
    /// one loop in `weight`).
    #[inline(always)]
    pub fn record_cycles(&mut self, cycles: u64, weight: u64) {
        if let Some(n) = self.cycles.get_mut(cycle_slot(cycles)) {
            *n += weight;
        }
    }

    /// Adds the counts to `burst_hist` (packets) and `loop_ns` (each bucket at its
    /// midpoint, in nanoseconds at `ns_per_cycle`, at least 1) and zeroes them.
    pub fn fold_into(
        &mut self,
        burst_hist: &mut Histogram<u64>,
        loop_ns: &mut Histogram<u64>,
        ns_per_cycle: f64,
    ) {
        for (packets, n) in self.bursts.iter_mut().enumerate() {
            if *n != 0 {
                let _ = burst_hist.record_n(packets.max(1) as u64, *n);
                *n = 0;
            }
        }
        for (slot, n) in self.cycles.iter_mut().enumerate() {
            if *n != 0 {
                let (low, high) = slot_range(slot);
                let mid = low / 2 + high / 2 + (low & high & 1);
                let ns = (mid as f64 * ns_per_cycle) as u64;
                let _ = loop_ns.record_n(ns.max(1), *n);
                *n = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::shared::{burst_histogram, loop_histogram};
    use proptest::prelude::*;

    #[test]
    fn the_buckets_tile_every_u64_in_order() {
        let mut next = 0u64;
        for slot in 0..CYCLE_SLOTS {
            let (low, high) = slot_range(slot);
            assert_eq!(low, next, "slot {slot} starts where the last ended");
            assert!(high >= low);
            assert_eq!(cycle_slot(low), slot);
            assert_eq!(cycle_slot(high), slot);
            next = high.wrapping_add(1);
        }
        assert_eq!(next, 0, "the last slot ends at u64::MAX");
    }

    proptest! {
        #[test]
        fn a_value_lies_in_its_bucket_which_is_narrow(c in any::<u64>()) {
            let (low, high) = slot_range(cycle_slot(c));
            prop_assert!(low <= c && c <= high);
            prop_assert!(high - low <= low / SUB, "width {} at {}", high - low, low);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Loops of 1-64 packets and now and then of more than the array holds.
        #[test]
        fn folding_gives_the_histograms_what_recording_each_loop_would(
            loops_seen in proptest::collection::vec(
                (prop_oneof![20 => 1usize..=64, 1 => Just(5000usize)], 200u64..100_200),
                1..3000,
            ),
        ) {
            let mut rec = LoopRecorder::new();
            let (mut bursts, mut loops) = (burst_histogram(), loop_histogram());
            let (mut exact_bursts, mut exact_loops) = (burst_histogram(), loop_histogram());
            let ns_per_cycle = 0.4;
            for &(packets, cycles) in &loops_seen {
                rec.record(packets, &mut bursts);
                rec.record_cycles(cycles, 1);
                exact_bursts.record(packets as u64).unwrap();
                exact_loops
                    .record(((cycles as f64 * ns_per_cycle) as u64).max(1))
                    .unwrap();
            }
            rec.fold_into(&mut bursts, &mut loops, ns_per_cycle);
            prop_assert_eq!(bursts.len(), exact_bursts.len());
            prop_assert_eq!(loops.len(), exact_loops.len());
            for q in [0.5, 0.9, 0.99, 0.999] {
                prop_assert_eq!(
                    bursts.value_at_quantile(q),
                    exact_bursts.value_at_quantile(q),
                    "burst quantile {}",
                    q
                );
                let (got, want) = (
                    loops.value_at_quantile(q) as f64,
                    exact_loops.value_at_quantile(q) as f64,
                );
                prop_assert!(
                    (got - want).abs() <= want * 0.05,
                    "loop quantile {}: {} against {}",
                    q,
                    got,
                    want
                );
            }
            // a second fold adds nothing: the counts were zeroed
            rec.fold_into(&mut bursts, &mut loops, ns_per_cycle);
            prop_assert_eq!(bursts.len(), exact_bursts.len());
            prop_assert_eq!(loops.len(), exact_loops.len());
        }
    }
}
