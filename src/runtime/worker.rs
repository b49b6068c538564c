//! The poll-mode worker: burst in, process, burst out.
//!
//! One worker per configured core, pinned to it, owning queue `id` of every port, its
//! own [`Engine`] (flow table, NAT ports, counters) and nothing else. A packet's path:
//! `rx_burst` -> prefetch the burst -> [`Engine::process`] -> by verdict into a
//! per-port TX batch, another worker's hand-off queue or the control queue ->
//! `tx_burst`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fulcrum_dpdk::{Mbuf, MbufBatch, Mempool, RxQueue, TxQueue, BURST};
use hdrhistogram::Histogram;

use crate::config::IdlePolicy;
use crate::engine::{DropReason, Engine, Snapshot, Verdict};

use super::loop_stats::LoopRecorder;
use super::shared::{Frame, Published, Shared};

/// Time between two publications of the counters (for `/metrics` and `fulcrum top`). A
/// publication copies every counter and the backend slots; it was every 256 loops, which
/// on a busy worker was every ~1 ms and 1.3% of its time.
const PUBLISH_INTERVAL_MS: u64 = 10;
/// Publications between two copies of the burst and loop histograms (every 100 ms):
/// the copy is most of a publication's cost, time in which the worker does not poll
/// and frames wait (the tail latency over memif).
const HISTOGRAMS_EVERY: u64 = 10;
/// Empty polls after which an adaptive worker starts yielding the core.
const IDLE_SPIN_POLLS: u32 = 256;
/// Sleep of an idle adaptive worker.
const IDLE_SLEEP: Duration = Duration::from_micros(50);
/// Flow-table entries checked for expiry per housekeeping pass.
const EXPIRE_BUDGET: usize = 32;
/// Loops between two housekeeping passes. A pass reads up to [`EXPIRE_BUDGET`] entries
/// of each table (the LRU tail, then a clock hand sweeping the entries); once every loop
/// that was about one entry's cache line per forwarded packet, 3% of a busy worker's time.
/// Every 8th loop still examines millions of entries a second, and the handshake watch's
/// timeouts (milliseconds) do not notice the microseconds.
const HOUSEKEEPING_EVERY: u64 = 8;
/// A busy worker reads the TSC at the start of one loop in this many, and of the loop
/// after it: that loop's time is recorded (a systematic sample of the busy loops that
/// follow busy loops, each counted this many times), and the engine clock and the
/// publication test use the latest reading, at most this many loops old (tens of
/// microseconds; the engine counts milliseconds). After an idle loop the TSC is read
/// every loop, and a busy loop that follows an idle one is always timed (counted once),
/// so light traffic is timed exactly. A read costs ~25 ns on the bench VM, ~0.8 ns a
/// packet at 32-packet loops when it was taken every loop.
const TSC_EVERY: u64 = 8;

/// Counters of the worker loop itself (the engine counts the rest).
#[derive(Debug, Default, Clone, Copy)]
struct LoopCounters {
    rx_packets: u64,
    tx_packets: u64,
    tx_dropped: u64,
    handoff_out: u64,
    handoff_in: u64,
    handoff_full: u64,
    to_control: u64,
    to_kernel: u64,
    from_kernel: u64,
    injected: u64,
    idle_polls: u64,
    busy_polls: u64,
}

/// A worker, ready to run on its core.
pub struct Worker {
    /// Worker index (queue index on every port).
    pub id: u16,
    /// The core it is pinned to.
    pub core: u32,
    /// Its RX queue on every port, by port index.
    pub rx: Vec<RxQueue>,
    /// Its TX queue on every port, by port index.
    pub tx: Vec<TxQueue>,
    /// The pool it allocates injected frames from.
    pub pool: Mempool,
    /// Its engine.
    pub engine: Engine,
    /// What it does when idle.
    pub idle: IdlePolicy,
    /// Packets it takes from one port per loop (`workers.burst`), read in `rx_burst`s of
    /// at most [`BURST`] (the batch size).
    pub burst: u16,
    /// Shared state.
    pub shared: Arc<Shared>,
    /// For each port index, the index (in `rx` / `tx`) of its kernel interface, if any.
    /// Queues past the ports' are kernel interfaces: what the kernel sends there leaves
    /// through the port they belong to.
    pub kernel_of: Vec<Option<usize>>,
}

impl Worker {
    /// Runs until the stop flag is set; returns the engine (for final counters).
    /// `std_thread`: the worker runs on a std thread, not an EAL lcore: it pins itself to
    /// its core and registers with DPDK for mempool caches (which disables secondary
    /// processes such as dpdk-dumpcap).
    pub fn run(mut self, std_thread: bool) -> Engine {
        if std_thread {
            // Pinned to the configured core itself: the thread inherits the EAL main
            // lcore's one-CPU affinity, so the CPUs it may run on now are not the ones
            // it may be pinned to (validation checked that the core is online).
            if !core_affinity::set_for_current(core_affinity::CoreId {
                id: self.core as usize,
            }) {
                eprintln!("fulcrum: worker could not be pinned to core {}", self.core);
            }
            let _ = fulcrum_dpdk::register_thread();
        }
        let queues = self.rx.len();
        let ports = self.kernel_of.len();
        // kernel interface queue -> the port its frames leave through
        let mut port_of_kernel = vec![0usize; queues];
        for (p, k) in self.kernel_of.iter().enumerate() {
            if let Some(k) = k {
                port_of_kernel[*k] = p;
            }
        }
        let mut rx_batch = MbufBatch::new();
        let mut verdicts = [Verdict::Drop(DropReason::NotForUs); BURST];
        let mut tx_batches: Vec<MbufBatch> = (0..queues).map(|_| MbufBatch::new()).collect();
        let mut c = LoopCounters::default();
        // preallocated: recording never allocates
        let mut burst_hist = super::shared::burst_histogram();
        let mut loop_hist = super::shared::loop_histogram();
        let mut loop_rec = LoopRecorder::new();
        // a busy loop's packets and, if it is timed, its start and weight, recorded when the
        // next loop starts
        let mut busy: Option<(usize, Option<(u64, u64)>)> = None;
        let ns_per_cycle = 1e9 / fulcrum_dpdk::tsc_hz().max(1) as f64;
        let mut empty_polls = 0u32;
        let mut loops = 0u64;
        let mut last_publish = fulcrum_dpdk::tsc_cycles();
        let mut loop_start = last_publish;
        let mut publications = 0u64;
        let shared = Arc::clone(&self.shared);
        let me = &shared.workers[self.id as usize];
        // The snapshot through arc-swap's cache: one atomic load a loop while it is
        // unchanged, instead of a thread-local lookup and a debt slot written and cleared.
        let mut snapshots = arc_swap::Cache::new(&shared.snapshot);
        let mut clock = EngineClock::new(&shared);
        let publish_cycles = clock.cycles_per_ms * PUBLISH_INTERVAL_MS;

        while !shared.stop.load(Ordering::Relaxed) {
            let phase = loops % TSC_EVERY;
            // the last loop found nothing (`empty_polls` counts the idle loops in a row)
            let last_idle = empty_polls > 0;
            let timed = matches!(busy, Some((_, Some(_))));
            if phase == 0 || last_idle || timed {
                loop_start = fulcrum_dpdk::tsc_cycles();
            }
            // a timed busy loop lasted until this one began (its end would be a second
            // TSC read)
            if let Some((packets, timing)) = busy.take() {
                loop_rec.record(packets, &mut burst_hist);
                if let Some((start, weight)) = timing {
                    loop_rec.record_cycles(loop_start.wrapping_sub(start), weight);
                }
            }
            let snap = snapshots.load();
            let now = clock.now(loop_start);
            let mut got = 0usize;
            for (q, &out) in port_of_kernel.iter().enumerate().skip(ports) {
                // frames the kernel sends (health checks, the L7 pool, ARP) go out unchanged
                let n = self.rx[q].rx_burst(&mut rx_batch);
                c.from_kernel += n as u64;
                got += n;
                for m in rx_batch.drain() {
                    push_tx(&mut self.tx, &mut tx_batches, out, m, &mut c);
                }
            }
            for port in 0..ports {
                let mut budget = usize::from(self.burst.max(1));
                while budget > 0 {
                    let n = self.rx[port].rx_burst_up_to(&mut rx_batch, budget);
                    if n == 0 {
                        break;
                    }
                    budget -= n;
                    got += n;
                    c.rx_packets += n as u64;
                    for m in rx_batch.as_slice() {
                        m.prefetch_data();
                    }
                    let verdicts = &mut verdicts[..n];
                    self.engine.process_burst(
                        snap,
                        port as u16,
                        rx_batch.as_mut_slice(),
                        verdicts,
                        now,
                    );
                    match one_egress(verdicts) {
                        // the common burst, every packet forwarded out of one port with
                        // nothing queued before it there: it leaves as it came, the
                        // received batch handed to the device whole (testpmd io's shape)
                        Some(out) if tx_batches.get(out).is_some_and(|b| b.is_empty()) => {
                            flush(&mut self.tx[out], &mut rx_batch, &mut c);
                        }
                        _ => {
                            for (m, v) in rx_batch.drain().zip(verdicts.iter()) {
                                self.carry_out(port as u16, m, *v, &mut tx_batches, &mut c);
                            }
                        }
                    }
                    if n < BURST {
                        break; // the queue is drained
                    }
                }
            }
            // full-NAT replies other workers received for our ports (`is_empty` first:
            // two loads inlined, where `pop` is a call, and both queues are empty in
            // nearly every loop)
            while !me.handoff.is_empty() {
                let Some(m) = me.handoff.pop() else { break };
                got += 1;
                c.handoff_in += 1;
                let port = m.port();
                self.dispatch(snap, port, m, now, &mut tx_batches, &mut c);
            }
            // frames from the control side (ARP requests, neighbour solicitations)
            while !me.inject.is_empty() {
                let Some(f) = me.inject.pop() else { break };
                if let Some(mut m) = self.pool.alloc() {
                    if m.copy_from_slice(&f.bytes).is_ok()
                        && (f.port as usize) < self.kernel_of.len()
                    {
                        c.injected += 1;
                        push_tx(&mut self.tx, &mut tx_batches, f.port as usize, m, &mut c);
                    }
                }
            }
            for (port, batch) in tx_batches.iter_mut().enumerate() {
                flush(&mut self.tx[port], batch, &mut c);
            }
            if loops.is_multiple_of(HOUSEKEEPING_EVERY) {
                self.engine.housekeeping(snap, now, EXPIRE_BUDGET);
            }

            if got > 0 {
                let timing = if last_idle {
                    Some((loop_start, 1))
                } else if phase == 0 {
                    Some((loop_start, TSC_EVERY))
                } else {
                    None
                };
                busy = Some((got, timing));
            }
            loops += 1;
            if loop_start.wrapping_sub(last_publish) >= publish_cycles {
                last_publish = loop_start;
                clock.anchor(&shared);
                me.loops.store(loops, Ordering::Relaxed);
                publications += 1;
                let hists = publications.is_multiple_of(HISTOGRAMS_EVERY).then(|| {
                    loop_rec.fold_into(&mut burst_hist, &mut loop_hist, ns_per_cycle);
                    (&burst_hist, &loop_hist)
                });
                self.publish(me, &c, hists);
            }
            if got == 0 {
                c.idle_polls += 1;
                empty_polls = empty_polls.saturating_add(1);
                if self.idle == IdlePolicy::Adaptive && empty_polls > IDLE_SPIN_POLLS {
                    std::thread::sleep(IDLE_SLEEP);
                } else {
                    std::hint::spin_loop();
                }
            } else {
                c.busy_polls += 1;
                empty_polls = 0;
            }
        }
        if let Some((packets, timing)) = busy.take() {
            loop_rec.record(packets, &mut burst_hist);
            if let Some((start, weight)) = timing {
                let end = fulcrum_dpdk::tsc_cycles();
                loop_rec.record_cycles(end.wrapping_sub(start), weight);
            }
        }
        // flush what is still held and publish the last counters
        for (port, batch) in tx_batches.iter_mut().enumerate() {
            flush(&mut self.tx[port], batch, &mut c);
        }
        while let Some(m) = me.handoff.pop() {
            drop(m);
        }
        loop_rec.fold_into(&mut burst_hist, &mut loop_hist, ns_per_cycle);
        self.publish(me, &c, Some((&burst_hist, &loop_hist)));
        if std_thread {
            fulcrum_dpdk::unregister_thread();
        }
        self.engine
    }

    #[inline]
    fn dispatch(
        &mut self,
        snap: &Snapshot,
        port: u16,
        mut m: Mbuf,
        now: u32,
        tx_batches: &mut [MbufBatch],
        c: &mut LoopCounters,
    ) {
        let v = self.engine.process(snap, port, &mut m, now);
        self.carry_out(port, m, v, tx_batches, c);
    }

    /// Carries out the engine's verdict for `m`, received on `port`.
    #[inline(always)]
    fn carry_out(
        &mut self,
        port: u16,
        m: Mbuf,
        v: Verdict,
        tx_batches: &mut [MbufBatch],
        c: &mut LoopCounters,
    ) {
        match v {
            Verdict::Forward { port: out } => {
                if (out as usize) < tx_batches.len() {
                    push_tx(&mut self.tx, tx_batches, out as usize, m, c);
                } else {
                    self.engine.count_drop(DropReason::NoNeighbor);
                }
            }
            Verdict::Reply => push_tx(&mut self.tx, tx_batches, port as usize, m, c),
            Verdict::HandOff { worker } => match self.shared.workers.get(worker as usize) {
                Some(w) if worker != self.id => match w.handoff.push(m) {
                    Ok(()) => c.handoff_out += 1,
                    Err(_m) => {
                        c.handoff_full += 1;
                        self.engine.count_drop(DropReason::HandOffFull);
                    }
                },
                _ => self.engine.count_drop(DropReason::NoNatEntry),
            },
            Verdict::ToControl => {
                // neighbour answers: the control side resolves with them, and the kernel
                // interface (if any) learns them too
                c.to_control += 1;
                let _ = self.shared.to_control.push(Frame {
                    port,
                    bytes: m.data().to_vec(),
                });
                if let Some(k) = self.kernel_of.get(port as usize).copied().flatten() {
                    c.to_kernel += 1;
                    push_tx(&mut self.tx, tx_batches, k, m, c);
                }
            }
            Verdict::ToKernel => match self.kernel_of.get(port as usize).copied().flatten() {
                Some(k) => {
                    c.to_kernel += 1;
                    push_tx(&mut self.tx, tx_batches, k, m, c);
                }
                None => self.engine.count_drop(DropReason::NoKernelInterface),
            },
            Verdict::Drop(_) => {}
        }
    }

    /// Publishes the counters and, when given, the burst and loop histograms.
    fn publish(
        &self,
        me: &super::shared::WorkerShared,
        c: &LoopCounters,
        hists: Option<(&Histogram<u64>, &Histogram<u64>)>,
    ) {
        if let Ok(mut p) = me.published.try_lock() {
            fill_published(&mut p, &self.engine, c);
            if let Some((burst, loop_ns)) = hists {
                // same bounds: add() copies counts without allocating
                p.burst.reset();
                let _ = p.burst.add(burst);
                p.loop_ns.reset();
                let _ = p.loop_ns.add(loop_ns);
            }
        }
    }
}

fn fill_published(p: &mut Published, engine: &Engine, c: &LoopCounters) {
    p.counters.clear();
    p.counters.extend_from_slice(&[
        ("worker_rx_packets", c.rx_packets),
        ("worker_tx_packets", c.tx_packets),
        ("worker_tx_dropped", c.tx_dropped),
        ("worker_handoff_out", c.handoff_out),
        ("worker_handoff_in", c.handoff_in),
        ("worker_handoff_full", c.handoff_full),
        ("worker_to_control", c.to_control),
        ("worker_to_kernel", c.to_kernel),
        ("worker_from_kernel", c.from_kernel),
        ("worker_injected", c.injected),
        ("worker_idle_polls", c.idle_polls),
        ("worker_busy_polls", c.busy_polls),
    ]);
    engine
        .counters()
        .visit(&mut |name, v| p.counters.push((name, v)));
    p.backends.clear();
    engine.visit_backends(&mut |id, c| p.backends.push((id, *c)));
    p.flows = engine.flow_count() as u64;
    p.flow_capacity = engine.flow_capacity() as u64;
    p.flow_evictions = engine.flow_stats().evictions;
}

/// The port every packet of a burst is forwarded out of, when they all go to one.
#[inline(always)]
fn one_egress(verdicts: &[Verdict]) -> Option<usize> {
    let Some(&Verdict::Forward { port }) = verdicts.first() else {
        return None;
    };
    let first = Verdict::Forward { port };
    // counted rather than short-circuited: a loop without early exits compiles to a
    // few compares a packet
    let same = verdicts.iter().filter(|&&v| v == first).count();
    (same == verdicts.len()).then_some(usize::from(port))
}

#[inline(always)]
fn push_tx(
    txq: &mut [TxQueue],
    batches: &mut [MbufBatch],
    port: usize,
    m: Mbuf,
    c: &mut LoopCounters,
) {
    let batch = &mut batches[port];
    if batch.is_full() {
        flush(&mut txq[port], batch, c);
    }
    if let Err(m) = batch.push(m) {
        drop(m);
        c.tx_dropped += 1;
    }
}

#[inline]
fn flush(txq: &mut TxQueue, batch: &mut MbufBatch, c: &mut LoopCounters) {
    if batch.is_empty() {
        return;
    }
    let n = batch.len();
    let sent = txq.tx_burst(batch);
    c.tx_packets += sent as u64;
    c.tx_dropped += (n - sent) as u64;
}

/// The engine clock (milliseconds since [`Shared::origin`]) read from the TSC: the worker
/// asks for it every loop, and the TSC costs a few cycles where the system clock costs a
/// vDSO call. It is re-anchored to the system clock at every publication (10 ms) and
/// never goes back, since a flow's age is `now - last_seen`.
struct EngineClock {
    tsc: u64,
    ms: u32,
    cycles_per_ms: u64,
    /// 2^64 / `cycles_per_ms`: cycles to milliseconds by a multiply, not a 64-bit
    /// division every loop (tens of cycles on many cores).
    ms_per_cycle_q64: u64,
    last: u32,
}

impl EngineClock {
    fn new(shared: &Shared) -> EngineClock {
        let cycles_per_ms = (fulcrum_dpdk::tsc_hz() / 1000).max(2);
        let mut c = EngineClock {
            tsc: 0,
            ms: 0,
            cycles_per_ms,
            ms_per_cycle_q64: ms_per_cycle_q64(cycles_per_ms),
            last: 0,
        };
        c.anchor(shared);
        c.last = c.ms;
        c
    }

    /// Takes the system clock's reading as the new reference.
    fn anchor(&mut self, shared: &Shared) {
        self.tsc = fulcrum_dpdk::tsc_cycles();
        self.ms = shared.now_ms();
    }

    /// Engine time at TSC reading `tsc` (taken after the anchor), never before the last
    /// time returned (wrapping, as engine time does after 49 days).
    #[inline]
    fn now(&mut self, tsc: u64) -> u32 {
        let elapsed = cycles_to_ms(tsc.saturating_sub(self.tsc), self.ms_per_cycle_q64);
        self.last = never_back(self.last, self.ms.wrapping_add(elapsed as u32));
        self.last
    }
}

/// 2^64 / `cycles_per_ms` (at least 2, so the quotient fits), the multiplier of
/// [`cycles_to_ms`].
fn ms_per_cycle_q64(cycles_per_ms: u64) -> u64 {
    ((1u128 << 64) / u128::from(cycles_per_ms.max(2))) as u64
}

/// `cycles / cycles_per_ms` by the multiplier `q64` = [`ms_per_cycle_q64`]: the same
/// quotient, or one less when `cycles` is within a few cycles of a multiple (the
/// multiplier is rounded down, by less than one part in 2^40 for any real TSC rate).
#[inline]
fn cycles_to_ms(cycles: u64, q64: u64) -> u64 {
    ((u128::from(cycles) * u128::from(q64)) >> 64) as u64
}

/// `t`, unless it is before `last` (in wrapping millisecond time): then `last`.
#[inline]
fn never_back(last: u32, t: u32) -> u32 {
    if (t.wrapping_sub(last) as i32) > 0 {
        t
    } else {
        last
    }
}

#[cfg(test)]
mod tests {
    use super::{cycles_to_ms, ms_per_cycle_q64, never_back, one_egress};
    use crate::engine::{DropReason, Verdict};

    #[test]
    fn a_burst_leaves_whole_only_when_every_packet_goes_out_of_one_port() {
        let fwd = |port| Verdict::Forward { port };
        assert_eq!(one_egress(&[fwd(2); 32]), Some(2));
        assert_eq!(one_egress(&[fwd(0)]), Some(0));
        assert_eq!(one_egress(&[]), None, "an empty burst");
        assert_eq!(one_egress(&[fwd(0), fwd(1)]), None, "two ports");
        let mut burst = [fwd(1); 32];
        for other in [
            Verdict::Reply,
            Verdict::ToKernel,
            Verdict::ToControl,
            Verdict::HandOff { worker: 1 },
            Verdict::Drop(DropReason::NoService),
        ] {
            burst[31] = other;
            assert_eq!(one_egress(&burst), None, "{other:?} last");
            burst[31] = fwd(1);
            burst[0] = other;
            assert_eq!(one_egress(&burst), None, "{other:?} first");
            burst[0] = fwd(1);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]
        /// Up to about a day of cycles, and exact multiples of a millisecond.
        #[test]
        fn cycles_become_milliseconds_by_multiplying_as_by_dividing(
            cpm in proptest::sample::select(vec![2u64, 999, 1_000_000, 2_100_000, 2_995_123, 3_700_000]),
            x in proptest::prelude::any::<u64>(),
            multiple in proptest::prelude::any::<bool>(),
        ) {
            let c = if multiple { (x % 86_400_000) * cpm } else { x % (cpm * 86_400_000) };
            let (got, want) = (cycles_to_ms(c, ms_per_cycle_q64(cpm)), c / cpm);
            proptest::prop_assert!(
                got == want || got + 1 == want && c % cpm < 8,
                "{} cycles at {}: {} against {}", c, cpm, got, want
            );
        }
    }

    #[test]
    fn the_engine_clock_never_goes_back_even_across_the_wrap() {
        assert_eq!(never_back(100, 101), 101);
        assert_eq!(never_back(100, 99), 100, "a re-anchor a millisecond behind");
        assert_eq!(never_back(100, 100), 100);
        assert_eq!(never_back(u32::MAX, 2), 2, "49 days: time wraps forward");
        assert_eq!(never_back(2, u32::MAX), 2, "and not back");
    }
}
