//! Endpoint selection: smooth weighted round robin, power of two choices, weighted
//! random, ketama ring hash and Maglev, both hashing policies with bounded load.
//!
//! Tables are built once per config snapshot; a pick takes no lock (atomics only).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::config::LbPolicy;

/// Maglev lookup table size (prime).
pub const MAGLEV_TABLE_SIZE: usize = 65537;
/// Ring-hash virtual nodes per unit of weight.
pub const RING_VNODES_PER_WEIGHT: u32 = 100;

/// One endpoint and its live counters.
#[derive(Debug)]
pub struct Endpoint {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Relative weight.
    pub weight: u32,
    /// Stable id (hash of the address), used by sticky cookies.
    pub id: u64,
    /// Requests in flight.
    pub active: AtomicUsize,
    /// Consecutive 5xx (outlier detection).
    pub consecutive_5xx: AtomicU32,
    /// Ejected until this instant (ms since the pool's epoch); 0: not ejected.
    pub ejected_until_ms: AtomicU64,
    /// How many times it has been ejected (ejection time multiplies).
    pub ejections: AtomicU32,
    /// Whether it passes the cluster's active health checks (always, without them).
    pub checks_pass: AtomicBool,
}

impl Endpoint {
    /// A fresh endpoint.
    pub fn new(addr: SocketAddr, weight: u32) -> Endpoint {
        Endpoint {
            addr,
            weight: weight.max(1),
            id: hash_bytes(addr.to_string().as_bytes()),
            active: AtomicUsize::new(0),
            consecutive_5xx: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            checks_pass: AtomicBool::new(true),
        }
    }

    /// Whether outlier detection has it ejected at `now_ms`.
    pub fn is_ejected(&self, now_ms: u64) -> bool {
        self.ejected_until_ms.load(Ordering::Relaxed) > now_ms
    }

    /// Whether it may take requests at `now_ms` outside panic: it passes the active
    /// health checks and outlier detection has not ejected it.
    pub fn is_healthy(&self, now_ms: u64) -> bool {
        self.checks_pass.load(Ordering::Relaxed) && !self.is_ejected(now_ms)
    }
}

/// 64-bit FNV-1a followed by a splitmix finalizer (good avalanche, stable across builds).
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h)
}

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Smooth weighted round robin (nginx's): the order of picks over one cycle of
/// `sum(weights)`, spreading heavy endpoints instead of bunching them.
pub fn smooth_wrr_sequence(weights: &[u32]) -> Vec<u16> {
    let total: i64 = weights.iter().map(|w| i64::from(*w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut seq = Vec::with_capacity(total.max(0) as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            current[i] += i64::from(*w);
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        seq.push(best as u16);
    }
    seq
}

/// Requests a cluster balances apart: zone-aware routing picks among the local zone's
/// endpoints for some requests and among the other zones' for the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Every endpoint (no zone choice).
    All = 0,
    /// The endpoints in the pool's zone.
    Local = 1,
    /// The endpoints outside it.
    Remote = 2,
}

const LANES: usize = 3;

/// The per-cluster selection structure.
#[derive(Debug)]
pub enum Balancer {
    /// Smooth weighted round robin over a precomputed cycle.
    RoundRobin {
        /// One cycle of picks.
        seq: Vec<u16>,
        /// Position in the cycle, one per [`Lane`].
        next: [AtomicUsize; LANES],
    },
    /// Power of two choices, fewer active requests per weight wins.
    LeastRequest,
    /// Weighted random.
    Random {
        /// Cumulative weights.
        cumulative: Vec<u64>,
    },
    /// Ketama ring: sorted (point, endpoint).
    RingHash {
        /// Points on the ring.
        ring: Vec<(u64, u16)>,
    },
    /// Maglev lookup table.
    Maglev {
        /// Endpoint index per slot.
        table: Vec<u16>,
    },
}

impl Balancer {
    /// Builds the structure for `policy` over `endpoints`.
    pub fn build(policy: LbPolicy, endpoints: &[Endpoint]) -> Balancer {
        let weights: Vec<u32> = endpoints.iter().map(|e| e.weight).collect();
        match policy {
            LbPolicy::RoundRobin => Balancer::RoundRobin {
                seq: smooth_wrr_sequence(&weights),
                next: Default::default(),
            },
            LbPolicy::LeastRequest => Balancer::LeastRequest,
            LbPolicy::Random => {
                let mut acc = 0u64;
                let cumulative = weights
                    .iter()
                    .map(|w| {
                        acc += u64::from(*w);
                        acc
                    })
                    .collect();
                Balancer::Random { cumulative }
            }
            LbPolicy::RingHash => {
                let mut ring = Vec::new();
                for (i, e) in endpoints.iter().enumerate() {
                    for v in 0..e.weight * RING_VNODES_PER_WEIGHT {
                        let point = hash_bytes(format!("{}#{v}", e.addr).as_bytes());
                        ring.push((point, i as u16));
                    }
                }
                ring.sort_unstable();
                Balancer::RingHash { ring }
            }
            LbPolicy::Maglev => Balancer::Maglev {
                table: maglev_table(endpoints, MAGLEV_TABLE_SIZE),
            },
        }
    }

    /// Whether `pick` reads its hash key (ring hash, Maglev).
    pub fn hashes(&self) -> bool {
        matches!(self, Balancer::RingHash { .. } | Balancer::Maglev { .. })
    }

    /// Picks an endpoint index. `usable(i)` says whether endpoint i may be chosen (not
    /// ejected, not the one that just failed); `key` is the hash key for hashing
    /// policies; `bound` the bounded-load factor c.
    pub fn pick(
        &self,
        endpoints: &[Endpoint],
        key: u64,
        bound: f64,
        usable: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        self.pick_in(Lane::All, endpoints, key, bound, usable)
    }

    /// [`pick`](Self::pick) for one [`Lane`] of requests: a round robin keeps a cycle
    /// position per lane, so the picks of each lane spread evenly over the endpoints its
    /// `usable` admits.
    pub fn pick_in(
        &self,
        lane: Lane,
        endpoints: &[Endpoint],
        key: u64,
        bound: f64,
        usable: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = endpoints.len();
        if n == 0 {
            return None;
        }
        match self {
            Balancer::RoundRobin { seq, next } => {
                // An unusable slot is passed over by taking the next position, not by
                // looking past it: the usable endpoints then share the cycle as their
                // weights say (looking past gave the one after a failed endpoint its
                // share too).
                let next = &next[lane as usize];
                (0..seq.len())
                    .map(|_| usize::from(seq[next.fetch_add(1, Ordering::Relaxed) % seq.len()]))
                    .find(|&i| usable(i))
            }
            Balancer::LeastRequest => {
                let load = |i: usize| {
                    endpoints[i].active.load(Ordering::Relaxed) as f64
                        / f64::from(endpoints[i].weight)
                };
                let first = (0..2 * n)
                    .map(|_| rand::random_range(0..n))
                    .find(|&i| usable(i))
                    .or_else(|| (0..n).find(|&i| usable(i)))?;
                if n == 1 {
                    return Some(first);
                }
                // The second choice is drawn among the others, so two are always compared.
                let second = (0..2 * n)
                    .map(|_| {
                        let j = rand::random_range(0..n - 1);
                        if j >= first {
                            j + 1
                        } else {
                            j
                        }
                    })
                    .find(|&j| usable(j));
                Some(match second {
                    Some(s) if load(s) < load(first) => s,
                    _ => first,
                })
            }
            Balancer::Random { cumulative } => {
                let total = *cumulative.last()?;
                for _ in 0..2 * n {
                    let r = rand::random_range(0..total);
                    let i = cumulative.partition_point(|&c| c <= r);
                    if i < n && usable(i) {
                        return Some(i);
                    }
                }
                (0..n).find(|&i| usable(i))
            }
            Balancer::RingHash { ring } => {
                let start = ring.partition_point(|(p, _)| *p < key);
                let order = (0..ring.len()).map(|k| usize::from(ring[(start + k) % ring.len()].1));
                bounded_pick(endpoints, order, bound, usable)
            }
            Balancer::Maglev { table } => {
                let start = (key % table.len() as u64) as usize;
                let order = (0..table.len()).map(|k| usize::from(table[(start + k) % table.len()]));
                bounded_pick(endpoints, order, bound, usable)
            }
        }
    }
}

/// Walks candidates in hash order; takes the first usable one whose load stays within
/// c times the average (Mirrokni et al., "consistent hashing with bounded loads"), or the
/// first usable one if all are over.
fn bounded_pick(
    endpoints: &[Endpoint],
    order: impl Iterator<Item = usize>,
    bound: f64,
    usable: &dyn Fn(usize) -> bool,
) -> Option<usize> {
    let usable_count = (0..endpoints.len()).filter(|&i| usable(i)).count();
    if usable_count == 0 {
        return None;
    }
    let total: usize = endpoints
        .iter()
        .map(|e| e.active.load(Ordering::Relaxed))
        .sum();
    let capacity = (bound * (total + 1) as f64 / usable_count as f64).ceil() as usize;
    let mut first_usable = None;
    let mut seen = vec![false; endpoints.len()];
    let mut distinct = 0;
    for i in order {
        if seen[i] {
            continue;
        }
        seen[i] = true;
        distinct += 1;
        if usable(i) {
            if endpoints[i].active.load(Ordering::Relaxed) < capacity {
                return Some(i);
            }
            first_usable.get_or_insert(i);
        }
        if distinct == endpoints.len() {
            break;
        }
    }
    first_usable
}

/// Maglev's table population, each endpoint taking `weight` turns per round.
pub fn maglev_table(endpoints: &[Endpoint], size: usize) -> Vec<u16> {
    const EMPTY: u16 = u16::MAX;
    let mut table = vec![EMPTY; size];
    if endpoints.is_empty() {
        return Vec::new();
    }
    let m = size as u64;
    let perms: Vec<(u64, u64)> = endpoints
        .iter()
        .map(|e| {
            let name = e.addr.to_string();
            let offset = hash_bytes(name.as_bytes()) % m;
            let skip = mix64(hash_bytes(name.as_bytes()) ^ 0x9e37_79b9_7f4a_7c15) % (m - 1) + 1;
            (offset, skip)
        })
        .collect();
    let mut next = vec![0u64; endpoints.len()];
    let mut filled = 0;
    'outer: loop {
        for (i, e) in endpoints.iter().enumerate() {
            for _ in 0..e.weight {
                let (offset, skip) = perms[i];
                let mut slot = ((offset + next[i] * skip) % m) as usize;
                while table[slot] != EMPTY {
                    next[i] += 1;
                    slot = ((offset + next[i] * skip) % m) as usize;
                }
                table[slot] = i as u16;
                next[i] += 1;
                filled += 1;
                if filled == size {
                    break 'outer;
                }
            }
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(weights: &[u32]) -> Vec<Endpoint> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| Endpoint::new(format!("127.0.0.1:{}", 9000 + i).parse().unwrap(), *w))
            .collect()
    }

    #[test]
    fn smooth_wrr_is_smooth_and_exact() {
        let seq = smooth_wrr_sequence(&[5, 1, 1]);
        assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0]);
        let seq = smooth_wrr_sequence(&[90, 10]);
        assert_eq!(seq.iter().filter(|&&i| i == 1).count(), 10);
    }

    #[test]
    fn round_robin_skips_unusable() {
        let e = eps(&[1, 1, 1]);
        let b = Balancer::build(LbPolicy::RoundRobin, &e);
        let picks: Vec<_> = (0..6)
            .map(|_| b.pick(&e, 0, 1.25, &|i| i != 1).unwrap())
            .collect();
        assert!(!picks.contains(&1));
        // evenly over the others (looking past the unusable slot gave 2 twice 0's share)
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 3, "{picks:?}");
        assert_eq!(picks.iter().filter(|&&i| i == 2).count(), 3, "{picks:?}");
        // lanes keep their own positions: picks among {0, 1} interleaved with picks
        // among {2} stay even
        let b = Balancer::build(LbPolicy::RoundRobin, &e);
        let mut local = Vec::new();
        for _ in 0..6 {
            local.push(b.pick_in(Lane::Local, &e, 0, 1.25, &|i| i < 2).unwrap());
            assert_eq!(b.pick_in(Lane::Remote, &e, 0, 1.25, &|i| i == 2), Some(2));
        }
        assert_eq!(local.iter().filter(|&&i| i == 0).count(), 3, "{local:?}");
        assert_eq!(b.pick(&e, 0, 1.25, &|_| false), None);
    }

    #[test]
    fn least_request_avoids_loaded() {
        let e = eps(&[1, 1]);
        e[0].active.store(50, Ordering::Relaxed);
        let b = Balancer::build(LbPolicy::LeastRequest, &e);
        let to_loaded = (0..1000)
            .filter(|_| b.pick(&e, 0, 1.25, &|_| true) == Some(0))
            .count();
        assert_eq!(to_loaded, 0, "with two endpoints both are always compared");
    }

    #[test]
    fn random_respects_weights() {
        let e = eps(&[3, 1]);
        let b = Balancer::build(LbPolicy::Random, &e);
        let zeros = (0..8000)
            .filter(|_| b.pick(&e, 0, 1.25, &|_| true) == Some(0))
            .count();
        assert!((5600..6400).contains(&zeros), "{zeros}");
    }

    #[test]
    fn hashing_is_consistent_and_bounded() {
        for policy in [LbPolicy::RingHash, LbPolicy::Maglev] {
            let e = eps(&[1, 1, 1, 1]);
            let b = Balancer::build(policy, &e);
            let keys: Vec<u64> = (0..200u64).map(|k| hash_bytes(&k.to_le_bytes())).collect();
            let first: Vec<_> = keys
                .iter()
                .map(|k| b.pick(&e, *k, 1.25, &|_| true))
                .collect();
            let again: Vec<_> = keys
                .iter()
                .map(|k| b.pick(&e, *k, 1.25, &|_| true))
                .collect();
            assert_eq!(first, again);
            let mut counts = [0; 4];
            for p in &first {
                counts[p.unwrap()] += 1;
            }
            assert!(counts.iter().all(|&c| c > 20), "{policy:?} {counts:?}");
            // Removing endpoint 2 only moves the keys that were on it.
            let moved = keys
                .iter()
                .zip(&first)
                .filter(|(k, p)| p.unwrap() != 2 && b.pick(&e, **k, 1.25, &|i| i != 2) != **p)
                .count();
            assert_eq!(moved, 0, "{policy:?}");
            // Bounded load: an overloaded endpoint spills to the next one.
            let k = keys[0];
            let home = first[0].unwrap();
            e[home].active.store(100, Ordering::Relaxed);
            assert_ne!(b.pick(&e, k, 1.25, &|_| true), Some(home));
        }
    }
}
