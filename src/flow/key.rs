//! Flow keys and the stable flow hash.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;

/// What a [`FlowTable`](super::FlowTable) needs from its key type.
pub trait FlowKeyT: Copy + Eq {
    /// A well-mixed 64-bit hash of the key keyed by the table's `secret`, whose low bits
    /// are the bucket. It must be a pure function of the key and the secret (the table
    /// recomputes it to unlink entries).
    fn flow_hash(&self, secret: &HashSecret) -> u64;
    /// Whether the flow is TCP (and so follows the TCP timeouts) rather than
    /// a connectionless protocol (the UDP timeout).
    fn is_tcp(&self) -> bool;
}

/// An IPv4 or IPv6 address in 16 bytes: IPv6 as is, IPv4 as the v4-mapped
/// IPv6 address `::ffff:a.b.c.d` (RFC 4291 section 2.5.5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct IpAddr16(pub [u8; 16]);

impl IpAddr16 {
    /// The v4-mapped form of an IPv4 address given as its four octets.
    ///
    /// Built as one 128-bit value rather than byte by byte: the parser writes it into a
    /// `Meta` that the next lines read back as 64-bit words (VIP memo, flow hash, key
    /// compare), and a byte-wise build was stored as 8 + 4 + 4 bytes, which a CPU cannot
    /// forward to an 8-byte load spanning the two 4-byte stores (a store-forwarding
    /// stall per address and per reader; 9% of the worker's samples sat on one).
    #[inline(always)]
    pub const fn from_v4(octets: [u8; 4]) -> IpAddr16 {
        const V4_MAPPED: u128 = 0xffff << 32;
        IpAddr16((V4_MAPPED | u32::from_be_bytes(octets) as u128).to_be_bytes())
    }

    /// The IPv4 address, if this is a v4-mapped address.
    pub const fn to_v4(&self) -> Option<[u8; 4]> {
        match self.0 {
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d] => Some([a, b, c, d]),
            _ => None,
        }
    }
}

impl From<Ipv4Addr> for IpAddr16 {
    fn from(a: Ipv4Addr) -> IpAddr16 {
        IpAddr16::from_v4(a.octets())
    }
}

impl From<Ipv6Addr> for IpAddr16 {
    fn from(a: Ipv6Addr) -> IpAddr16 {
        IpAddr16(a.octets())
    }
}

impl From<IpAddr> for IpAddr16 {
    fn from(a: IpAddr) -> IpAddr16 {
        match a {
            IpAddr::V4(a) => a.into(),
            IpAddr::V6(a) => a.into(),
        }
    }
}

impl From<IpAddr16> for IpAddr {
    fn from(a: IpAddr16) -> IpAddr {
        match a.to_v4() {
            Some(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
            None => IpAddr::V6(Ipv6Addr::from(a.0)),
        }
    }
}

/// The forward-direction key: one client connection to one service.
///
/// 40 bytes. Ports are host-order numbers. `service` is the configured
/// service's index, so two services on one VIP and port (e.g. different
/// protocols) never share flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct FlowKey {
    /// Client address.
    pub src: IpAddr16,
    /// Service (VIP) address.
    pub dst: IpAddr16,
    /// Client port (0 for protocols without ports).
    pub src_port: u16,
    /// Service port (0 for protocols without ports).
    pub dst_port: u16,
    /// IP protocol number ([`IPPROTO_TCP`], [`IPPROTO_UDP`], ...).
    pub proto: u8,
    /// Index of the configured service the flow belongs to.
    pub service: u16,
}

/// Multipliers of the flow hash (odd 64-bit constants from the golden ratio
/// and PCG/SplitMix).
const FLOW_HASH_SEED: u64 = 0x9e37_79b9_7f4a_7c15;
const FLOW_HASH_MUL: u64 = 0xbf58_476d_1ce4_e5b9;

impl FlowKey {
    /// "fulcrum flow hash v1": stable across processes, platforms and
    /// releases, so the engine may also use it to pick a Maglev slot.
    ///
    /// ```text
    /// words = [src[0..8], src[8..16], dst[0..8], dst[8..16]] as u64 little-endian,
    ///         then src_port | dst_port << 16 | proto << 32 | service << 40
    /// h = 0x9e37_79b9_7f4a_7c15
    /// for w in words: h = (h ^ w) * 0xbf58_476d_1ce4_e5b9; h ^= h >> 29   (wrapping)
    /// hash = fmix64(h)   (MurmurHash3 finaliser)
    /// ```
    ///
    /// Every step is a bijection, so no input can zero out the others. The
    /// hash is not keyed: an attacker who knows it can search for collisions,
    /// which is why [`FlowTable`](super::FlowTable) remixes it with a
    /// per-table secret seed before picking a bucket and caps chain lengths.
    pub fn hash(&self) -> u64 {
        let mut h = FLOW_HASH_SEED;
        for w in self.words() {
            h = (h ^ w).wrapping_mul(FLOW_HASH_MUL);
            h ^= h >> 29;
        }
        fmix64(h)
    }

    /// The flow table's hash of the key ([`FlowKeyT::flow_hash`]), keyed by the
    /// table's `secret`: three folded 64x64->128-bit multiplies (wyhash's mixing step,
    /// two of them side by side) instead of [`hash`](Self::hash)'s five rounds and
    /// finaliser, since it runs for every packet. The table takes its bucket from
    /// [`FlowKeyT::flow_hash`], this folded once more (the chain from a packet's header to
    /// its bucket's prefetch is three multiplies long). Every operand of every multiply is xored with a
    /// secret word, so no chosen input word (an IPv6 interface identifier, say) can zero
    /// a product without knowing the secret. It is not frozen: nothing outside one
    /// process sees it. Without the secret an attacker who knows the function could pick
    /// tuples that share a bucket; the table also caps chain lengths.
    #[inline(always)]
    pub fn table_hash(&self, secret: &HashSecret) -> u64 {
        let [a, b, c, d, e] = self.words();
        let k = &secret.0;
        let h1 = fold_mul(a ^ k[0], b ^ k[1]);
        let h2 = fold_mul(c ^ k[2], d ^ k[3]);
        fold_mul(h1 ^ e ^ k[4], h2 ^ k[5])
    }

    /// The entropy of the flow's outer headers when fulcrum encapsulates it (the GUE
    /// source port's low 15 bits, the IPv6 flow label's 20): unkeyed and without the
    /// service, so every worker and every fulcrum gives a flow the same value and a
    /// downstream ECMP keeps it on one path. It is [`table_hash`](Self::table_hash) under
    /// the public words, folded once more as the flow table's bucket hash is: under those
    /// fixed words `table_hash`'s last multiply has an operand set by the destination
    /// alone, and for about 1 VIP in 1,600 it let one client's flows, differing only in
    /// their source ports, share a few GUE ports (16 of 30 seen).
    #[inline(always)]
    pub fn entropy(&self) -> u64 {
        let unkeyed = FlowKey {
            service: 0,
            ..*self
        };
        fold_mul(unkeyed.table_hash(&HashSecret::PUBLIC), BUCKET_SPREAD)
    }

    /// The key as the five little-endian words both hashes read.
    #[inline]
    fn words(&self) -> [u64; 5] {
        let s = &self.src.0;
        let d = &self.dst.0;
        [
            u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]),
            u64::from_le_bytes([s[8], s[9], s[10], s[11], s[12], s[13], s[14], s[15]]),
            u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]),
            u64::from_le_bytes([d[8], d[9], d[10], d[11], d[12], d[13], d[14], d[15]]),
            u64::from(self.src_port)
                | u64::from(self.dst_port) << 16
                | u64::from(self.proto) << 32
                | u64::from(self.service) << 40,
        ]
    }
}

/// The six secret words of [`FlowKey::table_hash`], one per multiply operand. A table
/// keeps its own (stored, so the hot path reads them as memory operands instead of
/// building constants and mixing a seed in for every packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashSecret(pub [u64; 6]);

impl HashSecret {
    /// The public words (wyhash's constants and the golden ratio's): for hashes that
    /// must be the same in every process, such as the outer headers' entropy.
    pub const PUBLIC: HashSecret = HashSecret(TABLE_HASH_K);

    /// The secret a table derives from its random `seed`: the public words xored with
    /// six outputs of SplitMix64 seeded with it.
    pub const fn from_seed(seed: u64) -> HashSecret {
        let mut k = TABLE_HASH_K;
        let mut state = seed;
        let mut i = 0;
        while i < k.len() {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            k[i] ^= fmix64(state);
            i += 1;
        }
        HashSecret(k)
    }
}

/// The public words of [`HashSecret`] (wyhash's constants and the golden ratio's).
const TABLE_HASH_K: [u64; 6] = [
    0xa076_1d64_78bd_642f,
    0xe703_7ed1_a0b4_28db,
    0x8ebc_6af0_9c88_c6e3,
    0x5899_65cc_7537_4cc3,
    0x1d8e_4e27_c47d_124f,
    0x9e37_79b9_7f4a_7c15,
];

/// The odd multiplier of [`FlowKeyT::flow_hash`]'s last fold (2^64 over the golden ratio).
const BUCKET_SPREAD: u64 = 0x9e37_79b9_7f4a_7c15;

/// The 128-bit product of `a` and `b`, its halves xored (wyhash's mixing step).
#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ (r >> 64) as u64
}

/// MurmurHash3's 64-bit finaliser (the same function the Maglev name hashes
/// end with; repeated here so the two hash definitions stay independent).
pub(crate) const fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

impl FlowKeyT for FlowKey {
    /// [`table_hash`](FlowKey::table_hash) folded once more with a fixed odd multiplier.
    /// `table_hash`'s last multiply has one operand that is the same for every flow
    /// between two addresses; for a rare secret (about 1 in 40,000 per address pair) that
    /// operand has enough low zero bits that one client's flows, differing only in their
    /// source ports, differ only in the hash's high bits and crowd a few buckets (22 of 30
    /// in one seen in a test: chains past `MAX_CHAIN`, live flows evicted). The fold brings
    /// every bit of the product down to the bucket's bits.
    #[inline]
    fn flow_hash(&self, secret: &HashSecret) -> u64 {
        fold_mul(self.table_hash(secret), BUCKET_SPREAD)
    }

    #[inline]
    fn is_tcp(&self) -> bool {
        self.proto == IPPROTO_TCP
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> FlowKey {
        FlowKey {
            src: IpAddr16::from_v4([192, 0, 2, 1]),
            dst: IpAddr16::from_v4([198, 51, 100, 10]),
            src_port: 40000,
            dst_port: 80,
            proto: IPPROTO_TCP,
            service: 3,
        }
    }

    #[test]
    fn key_is_40_bytes() {
        assert_eq!(core::mem::size_of::<FlowKey>(), 40);
    }

    #[test]
    fn v4_mapped_round_trip() {
        let a = IpAddr16::from(Ipv4Addr::new(10, 1, 2, 3));
        assert_eq!(a.to_v4(), Some([10, 1, 2, 3]));
        assert_eq!(IpAddr::from(a), IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)));
        // the byte layout is std's v4-mapped address, whatever the build's endianness
        for v in [0u32, 1, 0x0a01_0203, 0x8000_0001, 0xdead_beef, u32::MAX] {
            let v4 = Ipv4Addr::from(v);
            assert_eq!(
                IpAddr16::from_v4(v4.octets()).0,
                v4.to_ipv6_mapped().octets()
            );
        }
        let b = IpAddr16::from(Ipv6Addr::LOCALHOST);
        assert_eq!(b.to_v4(), None);
        assert_eq!(IpAddr::from(b), IpAddr::V6(Ipv6Addr::LOCALHOST));
    }

    #[test]
    fn hash_is_frozen() {
        // Frozen: the engine picks Maglev slots with this hash, so a change
        // re-balances every flow of a mixed-release cluster.
        // Value computed by an independent Python transcription of the doc comment.
        assert_eq!(key().hash(), 0xc58f_8ca5_8622_b73b);
    }

    /// `base` with one field changed, for each field.
    fn one_field_changed(base: FlowKey) -> [FlowKey; 6] {
        [
            FlowKey {
                src: IpAddr16::from_v4([192, 0, 2, 2]),
                ..base
            },
            FlowKey {
                dst: IpAddr16::from_v4([198, 51, 100, 11]),
                ..base
            },
            FlowKey {
                src_port: 40001,
                ..base
            },
            FlowKey {
                dst_port: 81,
                ..base
            },
            FlowKey {
                proto: IPPROTO_UDP,
                ..base
            },
            FlowKey { service: 4, ..base },
        ]
    }

    #[test]
    fn every_field_changes_the_table_hash_and_buckets_spread() {
        let base = key();
        let (s7, s8) = (HashSecret::from_seed(7), HashSecret::from_seed(8));
        for v in one_field_changed(base) {
            assert_ne!(v.table_hash(&s7), base.table_hash(&s7), "{v:?}");
        }
        // the seed changes every key's hash, and every word of the secret
        assert_ne!(base.table_hash(&s7), base.table_hash(&s8));
        for i in 0..6 {
            assert_ne!(s7.0[i], s8.0[i]);
            assert_ne!(s7.0[i], HashSecret::PUBLIC.0[i]);
        }
        // sequential clients and ports (what a load test sends) fill 1024 buckets (the
        // hash's low bits, as the table takes them) evenly: no bucket above 3x its
        // share, whatever the seed
        for seed in [0, 0x1234, u64::MAX] {
            let secret = HashSecret::from_seed(seed);
            let mut buckets = [0u32; 1024];
            for i in 0..65_536u32 {
                let k = FlowKey {
                    src: IpAddr16::from_v4((0x0a00_0000 + i / 16).to_be_bytes()),
                    src_port: 1024 + (i % 16) as u16,
                    ..base
                };
                buckets[(k.table_hash(&secret) & 1023) as usize] += 1;
            }
            let max = *buckets.iter().max().unwrap();
            assert!(
                max <= 3 * 64,
                "seed {seed:#x}: fullest bucket {max}, mean 64"
            );
            assert!(buckets.iter().all(|&b| b > 0));
        }
    }

    #[test]
    fn one_clients_flows_get_distinct_outer_ports_whatever_the_vip() {
        // 30 connections of one client to each of 20,000 VIPs, differing only in the
        // source port: their GUE source ports (the entropy's low 15 bits) should differ
        // but for a rare birthday collision. `table_hash` under the public words gave 27
        // or fewer distinct ports for 14 of these VIPs (16 for 10.0.25.215).
        let mut worst = (usize::MAX, 0);
        for i in 0..20_000u32 {
            let mut ports: Vec<u64> = (43_000..43_030u16)
                .map(|p| {
                    let k = FlowKey {
                        src: IpAddr16::from_v4([192, 0, 2, 7]),
                        dst: IpAddr16::from_v4((0x0a00_0000 + i).to_be_bytes()),
                        src_port: p,
                        dst_port: 443,
                        proto: IPPROTO_TCP,
                        service: 3,
                    };
                    k.entropy() & 0x7fff
                })
                .collect();
            ports.sort_unstable();
            ports.dedup();
            worst = worst.min((ports.len(), i));
        }
        assert!(
            worst.0 >= 28,
            "VIP 10.0.0.0 + {}: {} distinct ports of 30",
            worst.1,
            worst.0
        );
    }

    #[test]
    fn entropy_ignores_the_service() {
        let base = key();
        assert_eq!(FlowKey { service: 9, ..base }.entropy(), base.entropy());
        for v in one_field_changed(base)
            .into_iter()
            .filter(|v| v.service == base.service)
        {
            assert_ne!(v.entropy(), base.entropy(), "{v:?}");
        }
    }

    #[test]
    fn one_clients_flows_spread_over_the_buckets_whatever_the_secret() {
        // 30 connections of one client to one VIP port, differing only in the source
        // port, into 1,024 buckets (the table's smallest size), under 100,000 secrets.
        // `table_hash` alone put more than 8 in one bucket under 20 of these seeds (22
        // under seed 22,657, past the chain cap of 16); the bucket hash, folded once
        // more, puts at most 4.
        let base = key();
        let mut worst = (0, 0);
        for seed in 0..100_000u64 {
            let secret = HashSecret::from_seed(seed);
            let mut buckets = [0u8; 1024];
            for port in 43_000..43_030u16 {
                let k = FlowKey {
                    src_port: port,
                    ..base
                };
                let b = &mut buckets[(k.flow_hash(&secret) & 1023) as usize];
                *b += 1;
                worst = worst.max((*b, seed));
            }
        }
        assert!(
            worst.0 <= 8,
            "seed {}: {} flows in one bucket",
            worst.1,
            worst.0
        );
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = key();
        for v in one_field_changed(base) {
            assert_ne!(v.hash(), base.hash(), "{v:?}");
        }
    }

    #[test]
    fn low_bits_spread_over_sequential_ports() {
        // 4096 client ports into 256 buckets: no bucket above 3x the mean.
        let mut buckets = [0u32; 256];
        for port in 0..4096u16 {
            let k = FlowKey {
                src_port: port,
                ..key()
            };
            buckets[(k.hash() & 255) as usize] += 1;
        }
        assert!(buckets.iter().all(|&b| b <= 48), "{buckets:?}");
    }
}
