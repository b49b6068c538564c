//! Each pool thread's own CPU time, read from its thread CPU clock every 250 us while the
//! thread serves requests: a gauge for operators, and precise enforcement of a CPU quota.
//!
//! The second is why it runs so often. Under a CFS bandwidth limit (a container's or a
//! systemd unit's `CPUQuota`, Kubernetes' CPU limits) the kernel charges a running
//! thread's time to its group's quota only when it updates the thread's runtime: at the
//! scheduler tick (4 ms at `HZ=250`) and at scheduling events. A proxy that stays busy
//! through a whole window therefore overruns the quota by up to a tick, pays the overrun
//! back out of the next period, and serves in windows of very uneven length: measured
//! under a 40% quota over 10 ms periods (`bench/results/perf-notes.md`), the pool ran in
//! windows of 0.3 to 6.5 ms and was throttled for up to 13.7 ms at a time, where HAProxy,
//! which reads its thread CPU clock in every loop, ran 3.6 to 4.4 ms and was throttled
//! 6.0 to 6.4. Reading a running thread's CPU clock makes the kernel update its runtime
//! (`task_sched_runtime` calls `update_curr`), so the quota is enforced within
//! [`READ_EVERY`] of running out and every window is about the quota long.
//!
//! The reads ride on the requests: [`on_request`] reads the clock when
//! [`READ_EVERY`] has passed since its last read on this thread, so a busy thread reads
//! it a few thousand times a second (a system call of about 0.45 us
//! here, against 0.07 us for the vDSO's monotonic clock) and an idle one never; a ticker
//! ([`account`]) keeps the gauge fresh between requests.

use std::cell::{Cell, OnceCell};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::time::{clock_gettime, ClockId};

/// The least time between two reads of a thread's CPU clock in the request path: the
/// most a thread can run past its quota before the kernel sees it.
pub const READ_EVERY: Duration = Duration::from_micros(250);
/// The interval of the ticker's reads.
pub const TICK: Duration = Duration::from_millis(100);

/// The calling thread's CPU time (user and system), in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64)
}

/// A pool thread's meter: where its CPU time goes, and when it was last read.
struct Meter {
    last: Cell<Option<Instant>>,
    cell: OnceCell<Arc<AtomicU64>>,
}

thread_local! {
    static METER: Meter = const {
        Meter {
            last: Cell::new(None),
            cell: OnceCell::new(),
        }
    };
}

impl Meter {
    fn read(&self, now: Instant) {
        self.last.set(Some(now));
        let ns = thread_cpu_ns();
        if let Some(c) = self.cell.get() {
            c.store(ns, Ordering::Relaxed);
        }
    }
}

/// Makes `cell` the calling thread's CPU-time gauge (a pool thread, at its start; a
/// second call keeps the first gauge).
pub fn install(cell: Arc<AtomicU64>) {
    METER.with(|m| {
        // a thread is installed once, when it starts
        let _ = m.cell.set(cell);
        m.read(Instant::now());
    });
}

/// A request starts on this thread at `now`: reads the thread's CPU clock if
/// [`READ_EVERY`] has passed since the last read. Returns whether it read.
#[inline]
pub fn on_request(now: Instant) -> bool {
    METER.with(|m| {
        let due = m
            .last
            .get()
            .is_none_or(|last| now.saturating_duration_since(last) >= READ_EVERY);
        if due {
            m.read(now);
        }
        due
    })
}

/// Runs on a pool thread's runtime until dropped: reads the thread's CPU clock every
/// [`TICK`], so the gauge moves while no request comes.
pub async fn account() {
    loop {
        tokio::time::sleep(TICK).await;
        METER.with(|m| m.read(Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_cpu_clock_counts_this_threads_work_only() {
        let before = thread_cpu_ns();
        // another thread's work is not ours
        std::thread::spawn(|| {
            let t = std::time::Instant::now();
            while t.elapsed() < Duration::from_millis(30) {
                std::hint::spin_loop();
            }
        })
        .join()
        .unwrap();
        let idle = thread_cpu_ns() - before;
        assert!(
            idle < 15_000_000,
            "idle while another thread spun 30 ms: {idle} ns"
        );
        // our own work is: spin until the clock shows 20 ms of it (on a busy machine the
        // wall time is longer), bounded in time
        let t = Instant::now();
        let start = thread_cpu_ns();
        while thread_cpu_ns() - start < 20_000_000 && t.elapsed() < Duration::from_secs(10) {
            std::hint::spin_loop();
        }
        let busy = thread_cpu_ns() - start;
        assert!(busy >= 20_000_000, "spun {:?}: {busy} ns", t.elapsed());
        assert!(
            busy <= t.elapsed().as_nanos() as u64 + 4_000_000,
            "one thread's clock ran faster than the wall: {busy} ns in {:?}",
            t.elapsed()
        );
    }

    #[test]
    fn the_request_path_reads_the_clock_at_most_every_read_every_and_into_the_gauge() {
        std::thread::spawn(|| {
            let cell = Arc::new(AtomicU64::new(0));
            install(cell.clone());
            let t0 = Instant::now();
            assert!(cell.load(Ordering::Relaxed) > 0, "installing reads once");
            assert!(!on_request(t0), "just read");
            assert!(!on_request(t0 + READ_EVERY / 2));
            let before = cell.load(Ordering::Relaxed);
            // 5 ms of this thread's CPU (bounded in wall time)
            while thread_cpu_ns() < before + 5_000_000 && t0.elapsed() < Duration::from_secs(10) {
                std::hint::spin_loop();
            }
            assert!(on_request(t0 + READ_EVERY));
            let after = cell.load(Ordering::Relaxed);
            assert!(
                after >= before + 3_000_000,
                "5 ms of work: {before} -> {after}"
            );
            assert!(!on_request(t0 + READ_EVERY + READ_EVERY / 2));
            assert!(on_request(t0 + 2 * READ_EVERY));
        })
        .join()
        .unwrap();
    }
}
