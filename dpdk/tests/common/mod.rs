//! Shared helpers for the DPDK integration tests (each test binary is one
//! process with one EAL).

#![allow(dead_code)]

/// EAL arguments for a test process: no PCI, a file prefix unique to this
/// process, and the given virtual devices. Without hugepages (`--no-huge -m
/// 256`) unless `FULCRUM_DPDK_HUGE=1`, which uses the mounted hugepages.
pub fn eal_args(name: &str, extra: &[String]) -> Vec<String> {
    let mut args = vec!["-l".to_owned(), "0-1".to_owned(), "--no-pci".to_owned()];
    if std::env::var("FULCRUM_DPDK_HUGE").as_deref() == Ok("1") {
        // --huge-unlink: no hugepage files stay behind after the process.
        args.extend(["-m", "256", "--huge-unlink"].map(str::to_owned));
    } else {
        args.extend(["--no-huge", "-m", "256"].map(str::to_owned));
    }
    args.push(format!(
        "--file-prefix=fulcrum-{name}-{}",
        std::process::id()
    ));
    args.extend(extra.iter().cloned());
    args
}

/// Removes the EAL runtime folder of this process (`/var/run/dpdk/<prefix>`),
/// which `rte_eal_cleanup` leaves behind. Call after dropping the EAL.
pub fn remove_runtime_dir(name: &str) {
    let dir = format!("/var/run/dpdk/fulcrum-{name}-{}", std::process::id());
    let _ = std::fs::remove_dir_all(dir);
}

/// A small deterministic generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
}

/// Packet `i` of a test stream: a length in 60..=1514 and pseudo-random bytes,
/// both determined by `i` alone.
pub fn test_packet(seed: u64, i: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let len = rng.range(60, 1514);
    let mut p: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
    // A sequence number in the first bytes, to report misordering clearly.
    p[..8].copy_from_slice(&i.to_be_bytes());
    p
}
