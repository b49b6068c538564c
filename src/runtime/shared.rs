//! What workers and the control thread share: the snapshot, the stop flag, queues
//! between them, and each worker's published counters.
//!
//! Workers never block on any of it: the snapshot is an `arc-swap` load once per
//! burst, the queues are bounded lock-free `ArrayQueue`s, and counters are published
//! with `try_lock` (a busy lock skips one publication, it never waits).

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use crossbeam_queue::ArrayQueue;
use fulcrum_dpdk::Mbuf;
use hdrhistogram::Histogram;

use crate::engine::{BackendCounters, Snapshot};

/// Capacity of each worker's hand-off queue (full-NAT replies owned by it).
pub const HANDOFF_QUEUE: usize = 4096;
/// Capacity of each worker's injection queue (frames the control side sends).
pub const INJECT_QUEUE: usize = 1024;
/// Capacity of the queue of frames for the control side.
pub const CONTROL_QUEUE: usize = 1024;

/// A frame copied out of the data plane for the control side, or into it.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The port it came in on / goes out of.
    pub port: u16,
    /// The whole Ethernet frame.
    pub bytes: Vec<u8>,
}

/// A worker's counters as last published: (name, value) pairs.
#[derive(Debug, Clone)]
pub struct Published {
    /// Engine and worker counters.
    pub counters: Vec<(&'static str, u64)>,
    /// Per-backend counters, by backend id.
    pub backends: Vec<(u32, BackendCounters)>,
    /// Live flows in the worker's table.
    pub flows: u64,
    /// The flow table's capacity.
    pub flow_capacity: u64,
    /// Live flows evicted from the full table.
    pub flow_evictions: u64,
    /// Packets per non-empty poll.
    pub burst: Histogram<u64>,
    /// Nanoseconds per loop that processed packets (from its start to the next loop's).
    pub loop_ns: Histogram<u64>,
}

/// The burst-size histogram: 1 to 65536 packets, 2 significant digits.
pub fn burst_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 1 << 16, 2)
        .unwrap_or_else(|_| Histogram::new(2).unwrap_or_else(|_| unreachable!()))
}

/// The loop-time histogram: 1 ns to 10 s, 2 significant digits.
pub fn loop_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 10_000_000_000, 2).unwrap_or_else(|_| burst_histogram())
}

impl Default for Published {
    fn default() -> Self {
        Published {
            counters: Vec::new(),
            backends: Vec::new(),
            flows: 0,
            flow_capacity: 0,
            flow_evictions: 0,
            burst: burst_histogram(),
            loop_ns: loop_histogram(),
        }
    }
}

/// One worker's shared state.
pub struct WorkerShared {
    /// Full-NAT replies other workers received for this worker's ports.
    pub handoff: ArrayQueue<Mbuf>,
    /// Frames the control side wants sent.
    pub inject: ArrayQueue<Frame>,
    /// Counters, published every few milliseconds.
    pub published: Mutex<Published>,
    /// Loop iterations, for liveness.
    pub loops: AtomicU64,
}

impl WorkerShared {
    fn new() -> Self {
        WorkerShared {
            handoff: ArrayQueue::new(HANDOFF_QUEUE),
            inject: ArrayQueue::new(INJECT_QUEUE),
            published: Mutex::new(Published::default()),
            loops: AtomicU64::new(0),
        }
    }
}

/// Everything shared.
pub struct Shared {
    /// Set to stop the workers.
    pub stop: AtomicBool,
    /// The configuration the workers read.
    pub snapshot: ArcSwap<Snapshot>,
    /// The engine clock's origin: engine time is milliseconds since it.
    pub origin: Instant,
    /// One per worker.
    pub workers: Vec<WorkerShared>,
    /// Frames for the control side (ARP replies, neighbour advertisements).
    pub to_control: ArrayQueue<Frame>,
}

impl Shared {
    /// Shared state for `workers` workers starting from `snapshot`.
    pub fn new(workers: usize, snapshot: Snapshot, origin: Instant) -> Arc<Shared> {
        Arc::new(Shared {
            stop: AtomicBool::new(false),
            snapshot: ArcSwap::from_pointee(snapshot),
            origin,
            workers: (0..workers).map(|_| WorkerShared::new()).collect(),
            to_control: ArrayQueue::new(CONTROL_QUEUE),
        })
    }

    /// Engine time now, in milliseconds since the origin.
    #[inline]
    pub fn now_ms(&self) -> u32 {
        self.origin.elapsed().as_millis() as u32
    }
}
