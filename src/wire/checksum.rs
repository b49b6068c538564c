//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Sums here are one's-complement sums folded to 16 bits and *not* complemented; the
//! checksum field holds the complement (`!combine(...)`). [`data`] sums a slice 4 bytes at a
//! time into a 64-bit accumulator, so there is one carry fold per slice, not per word.
//!
//! The incremental updates compute RFC 1624 equation 3, `HC' = ~(~HC + ~m + m')`, which
//! equals a full recomputation whenever the covered data is not all zero after the change
//! (true of every IP, TCP, UDP and ICMP header: the IP version nibble alone is non-zero).

use core::net::{Ipv4Addr, Ipv6Addr};

use super::IpProtocol;

/// Folds a wide one's-complement accumulator to 16 bits (end-around carry).
#[inline]
pub fn fold(sum: u64) -> u16 {
    // Branch-free: 64 -> at most 33 bits -> at most 0x2_fffe -> at most 0x1_0001 -> 16 bits.
    let sum = (sum & 0xffff_ffff) + (sum >> 32);
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The one's-complement sum of `data` as big-endian 16-bit words, folded, not complemented.
///
/// An odd trailing byte is padded with a zero byte on the right (RFC 1071).
#[inline]
pub fn data(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        // chunks_exact yields exactly 4 bytes; first_chunk cannot fail here.
        if let Some(w) = w.first_chunk::<4>() {
            acc += u64::from(u32::from_be_bytes(*w));
        }
    }
    let rest = words.remainder();
    let mut tail = [0u8; 4];
    // rest.len() < 4, so this copy is in bounds.
    if let Some(t) = tail.get_mut(..rest.len()) {
        t.copy_from_slice(rest);
    }
    acc += u64::from(u32::from_be_bytes(tail));
    // A u32 word contributes its two 16-bit halves; folding a 64-bit sum of u32s to 16
    // bits is the same one's-complement sum (2^16 ≡ 1 mod 0xffff).
    fold(acc)
}

/// Whether a 20-byte IPv4 header (no options) with a non-zero word checks: its
/// one's-complement sum is `0xffff`, i.e. [`data`]`(h) == 0xffff`, for a few instructions
/// instead of byte swaps and four folds. The sum of its five 32-bit words, read in native
/// order, is taken modulo `0xffff`:
///
/// - a big-endian u32 `hi·2^16 + lo` is `hi + lo` mod `0xffff` (2^16 ≡ 1), so the integer
///   sum of the words is congruent to the one's-complement sum of the 16-bit words, which
///   for data not all zero lies in `1..=0xffff` and is `0xffff` exactly when the integer
///   sum is 0 mod `0xffff`;
/// - a byte-swapped 16-bit word `b·256 + a` is `256·(a·256 + b)` mod `0xffff`
///   (2^16 ≡ 1 again), so a little-endian read multiplies the sum by 256, a unit mod
///   `0xffff`: zero stays zero, whatever the byte order.
#[inline(always)]
pub fn ipv4_header_verifies(h: &[u8; 20]) -> bool {
    let word = |i: usize| u64::from(u32::from_ne_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
    let sum = word(0) + word(4) + word(8) + word(12) + word(16);
    sum != 0 && sum % 0xffff == 0
}

/// One's-complement sum of already folded partial sums.
#[inline]
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// The checksum field value for a folded sum: its complement.
#[inline]
pub fn finish(sum: u16) -> u16 {
    !sum
}

/// The IPv4 pseudo-header sum (RFC 793/768): addresses, protocol and upper-layer length.
#[inline]
pub fn pseudo_header_v4(src: &Ipv4Addr, dst: &Ipv4Addr, protocol: IpProtocol, length: u16) -> u16 {
    let acc = u64::from(src.to_bits())
        + u64::from(dst.to_bits())
        + u64::from(protocol.0)
        + u64::from(length);
    fold(acc)
}

/// The IPv6 pseudo-header sum (RFC 8200 §8.1): addresses, upper-layer length, next header.
#[inline]
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, protocol: IpProtocol, length: u32) -> u16 {
    let s = src.to_bits();
    let d = dst.to_bits();
    let acc = u64::from(s as u32)
        + u64::from((s >> 32) as u32)
        + u64::from((s >> 64) as u32)
        + u64::from((s >> 96) as u32)
        + u64::from(d as u32)
        + u64::from((d >> 32) as u32)
        + u64::from((d >> 64) as u32)
        + u64::from((d >> 96) as u32)
        + u64::from(protocol.0)
        + u64::from(length);
    fold(acc)
}

/// The addresses an upper-layer (TCP, UDP, ICMPv6) checksum covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PseudoHeader {
    /// Carried over IPv4.
    V4 {
        /// Source address.
        src: Ipv4Addr,
        /// Destination address.
        dst: Ipv4Addr,
    },
    /// Carried over IPv6.
    V6 {
        /// Source address.
        src: Ipv6Addr,
        /// Destination address.
        dst: Ipv6Addr,
    },
}

impl PseudoHeader {
    /// The folded pseudo-header sum for `protocol` and an upper-layer `length` in bytes.
    ///
    /// Over IPv4 the length field is 16 bits; a longer length is truncated, which only a
    /// caller summing a buffer longer than any IPv4 packet could meet.
    #[inline]
    pub fn sum(&self, protocol: IpProtocol, length: usize) -> u16 {
        match self {
            PseudoHeader::V4 { src, dst } => pseudo_header_v4(src, dst, protocol, length as u16),
            PseudoHeader::V6 { src, dst } => pseudo_header_v6(src, dst, protocol, length as u32),
        }
    }

    /// Whether this is the IPv6 form.
    #[inline]
    pub fn is_ipv6(&self) -> bool {
        matches!(self, PseudoHeader::V6 { .. })
    }
}

/// RFC 1624 update of checksum field `csum` after one 16-bit word changed from `old` to `new`.
#[inline]
pub fn update16(csum: u16, old: u16, new: u16) -> u16 {
    !fold(u64::from(!csum) + u64::from(!old) + u64::from(new))
}

/// RFC 1624 update of checksum field `csum` after a 32-bit word (an IPv4 address, a TCP
/// sequence number, two adjacent ports) changed from `old` to `new`.
#[inline]
pub fn update32(csum: u16, old: u32, new: u32) -> u16 {
    let acc = u64::from(!csum)
        + u64::from(!(old >> 16) & 0xffff)
        + u64::from(!old & 0xffff)
        + u64::from(new >> 16)
        + u64::from(new & 0xffff);
    !fold(acc)
}

/// RFC 1624 update of checksum field `csum` after a 16-byte value (an IPv6 address)
/// changed from `old` to `new`.
#[inline]
pub fn update128(csum: u16, old: &[u8; 16], new: &[u8; 16]) -> u16 {
    let o = u128::from_be_bytes(*old);
    let n = u128::from_be_bytes(*new);
    // Sum ~old and new as four 32-bit words each; each u32 carries two 16-bit words.
    let mut acc = u64::from(!csum);
    for shift in [0u32, 32, 64, 96] {
        acc += u64::from(!((o >> shift) as u32));
        acc += u64::from((n >> shift) as u32);
    }
    !fold(acc)
}

/// RFC 1624 update of checksum field `csum` after the bytes `old` were replaced by `new`
/// at an even offset of the covered data. The slices must have the same length; an odd
/// length is padded with a zero byte on the right, like [`data`].
#[inline]
pub fn update_bytes(csum: u16, old: &[u8], new: &[u8]) -> u16 {
    debug_assert_eq!(old.len(), new.len());
    // ~HC + ~m + m' = ~HC + m' - m (one's complement); ~(sum of old) is -(sum of old).
    !combine(&[!csum, !data(old), data(new)])
}

/// An RFC 1624 update of one checksum field after several words changed, summed and
/// folded once (a rewrite of addresses and ports changes six to eight words; chained
/// [`update16`] calls fold after each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Update(u64);

impl Update {
    /// Starts from checksum field value `csum`.
    #[inline(always)]
    pub fn new(csum: u16) -> Update {
        Update(u64::from(!csum))
    }

    /// A 16-bit word changed from `old` to `new`.
    #[inline(always)]
    pub fn word16(self, old: u16, new: u16) -> Update {
        Update(self.0 + u64::from(!old) + u64::from(new))
    }

    /// A 32-bit word at an even offset changed from `old` to `new` (its two 16-bit halves
    /// count as one 32-bit value: 2^16 is 1 modulo 0xffff).
    #[inline(always)]
    pub fn word32(self, old: u32, new: u32) -> Update {
        Update(self.0 + u64::from(!old) + u64::from(new))
    }

    /// A 16-byte value (an IPv6 address) at an even offset changed from `old` to `new`.
    #[inline(always)]
    pub fn word128(self, old: &[u8; 16], new: &[u8; 16]) -> Update {
        let (o, n) = (u128::from_be_bytes(*old), u128::from_be_bytes(*new));
        let mut acc = self.0;
        for shift in [0u32, 32, 64, 96] {
            acc += u64::from(!((o >> shift) as u32)) + u64::from((n >> shift) as u32);
        }
        Update(acc)
    }

    /// The new checksum field value.
    #[inline(always)]
    pub fn finish(self) -> u16 {
        !fold(self.0)
    }
}

/// A computed checksum as it may be sent: 0x0000 becomes 0xffff. Both are zero in one's
/// complement and 0xffff verifies wherever 0x0000 does, but only 0xffff verifies for
/// data whose words are all zero (RFC 1624's update gives 0x0000 there: an ICMP echo
/// reply with id 0, sequence 0 and a zero payload), and UDP reads 0x0000 as "none".
#[inline]
pub fn never_zero(csum: u16) -> u16 {
    if csum == 0 {
        0xffff
    } else {
        csum
    }
}

/// Applies an RFC 1624 update to a UDP checksum, where 0 means "no checksum" (IPv4 only) and
/// a computed 0 is sent as 0xffff: a zero field stays zero; a zero result becomes 0xffff.
#[inline]
pub fn udp_update(csum: u16, update: impl FnOnce(u16) -> u16) -> u16 {
    if csum == 0 {
        return 0;
    }
    never_zero(update(csum))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// `ipv4_header_verifies` agrees with the full sum on any 20 bytes, on headers
        /// whose checksum was filled in, and on those headers with one bit flipped.
        #[test]
        fn ipv4_header_verifies_is_the_full_sum(
            mut h in proptest::array::uniform20(any::<u8>()),
            bit in 0usize..160,
        ) {
            prop_assert_eq!(ipv4_header_verifies(&h), data(&h) == 0xffff);
            h[10] = 0;
            h[11] = 0;
            let c = finish(data(&h)).to_be_bytes();
            h[10..12].copy_from_slice(&c);
            prop_assert_eq!(ipv4_header_verifies(&h), data(&h) == 0xffff);
            if h != [0; 20] {
                prop_assert!(ipv4_header_verifies(&h));
            }
            h[bit / 8] ^= 1 << (bit % 8);
            prop_assert_eq!(ipv4_header_verifies(&h), data(&h) == 0xffff);
        }
    }

    #[test]
    fn ipv4_header_verifies_edge_sums() {
        // all zero: the sum is 0, which no header with a version has; refused
        assert!(!ipv4_header_verifies(&[0; 20]));
        // all ones: every word 0xffff, sum 0xffff: checks
        assert!(ipv4_header_verifies(&[0xff; 20]));
        assert_eq!(data(&[0xff; 20]), 0xffff);
        // RFC 1071's example-like header (Wikipedia's IPv4 checksum example)
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert!(ipv4_header_verifies(&h));
        let mut bad = h;
        bad[11] = 0x62;
        assert!(!ipv4_header_verifies(&bad));
    }

    /// The textbook word-at-a-time sum, as the reference for [`data`].
    fn reference_sum(bytes: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for pair in bytes.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            let lo = pair.get(1).map_or(0, |&b| u32::from(b));
            acc += hi | lo;
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
        assert_eq!(
            data(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
    }

    #[test]
    fn ipv4_header_checksum_known_value() {
        // A header whose checksum field (0xb861) is known to be right.
        let hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(data(&hdr), 0xffff);
        let mut zeroed = hdr;
        zeroed[10] = 0;
        zeroed[11] = 0;
        assert_eq!(finish(data(&zeroed)), 0xb861);
    }

    #[test]
    fn fold_extremes() {
        assert_eq!(fold(0), 0);
        assert_eq!(fold(0xffff), 0xffff);
        assert_eq!(fold(0x1_0000), 1);
        assert_eq!(fold(u64::MAX), 0xffff);
        assert_eq!(fold(0x1_ffff_fffe), 0xffff);
        // u64::MAX mod 0xffff is 0, which one's complement writes as 0xffff.
        assert_eq!(fold(0xffff_0000_0000), 0xffff);
    }

    #[test]
    fn odd_lengths_pad_right() {
        assert_eq!(data(&[0x12]), 0x1200);
        assert_eq!(data(&[0x12, 0x34, 0x56]), 0x6834);
        assert_eq!(data(&[]), 0);
    }

    #[test]
    fn udp_update_keeps_zero_and_maps_zero_result() {
        assert_eq!(udp_update(0, |c| update16(c, 1, 2)), 0);
        assert_eq!(udp_update(5, |_| 0), 0xffff);
        assert_eq!(udp_update(5, |c| c + 1), 6);
    }

    #[test]
    fn pseudo_header_v6_matches_byte_sum() {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "fe80::1234:5678".parse().unwrap();
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&src.octets());
        bytes.extend_from_slice(&dst.octets());
        bytes.extend_from_slice(&1000u32.to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 6]);
        assert_eq!(
            pseudo_header_v6(&src, &dst, IpProtocol::TCP, 1000),
            data(&bytes)
        );
    }

    /// Random data at least 8 bytes long whose first word is non-zero, so that no edit of
    /// bytes 2.. can make it all zero (see the module doc).
    fn packet() -> impl Strategy<Value = Vec<u8>> {
        (1u8..=255, proptest::collection::vec(any::<u8>(), 7..200)).prop_map(|(first, mut v)| {
            v.insert(0, first);
            v
        })
    }

    proptest! {
        #[test]
        fn data_matches_reference(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(data(&bytes), reference_sum(&bytes));
        }

        #[test]
        fn pseudo_header_v4_matches_byte_sum(src: u32, dst: u32, proto: u8, len: u16) {
            let (s, d) = (Ipv4Addr::from_bits(src), Ipv4Addr::from_bits(dst));
            let mut bytes = Vec::new();
            bytes.extend_from_slice(&s.octets());
            bytes.extend_from_slice(&d.octets());
            bytes.extend_from_slice(&[0, proto]);
            bytes.extend_from_slice(&len.to_be_bytes());
            prop_assert_eq!(pseudo_header_v4(&s, &d, IpProtocol(proto), len), data(&bytes));
        }

        #[test]
        fn combine_is_sum_of_parts(bytes in proptest::collection::vec(any::<u8>(), 0..300), cut in 0usize..150) {
            let cut = (cut * 2).min(bytes.len() & !1);
            prop_assert_eq!(combine(&[data(&bytes[..cut]), data(&bytes[cut..])]), data(&bytes));
        }

        #[test]
        fn update16_equals_recomputation(mut pkt in packet(), at in 1usize..100, new: u16) {
            // The checksum lives in word 1 (bytes 2..4); word 0 stays non-zero; change a later word.
            let words = pkt.len() / 2;
            let at = 4 + (at % (words - 2)) * 2;
            pkt[2] = 0;
            pkt[3] = 0;
            let csum = finish(data(&pkt));
            let old = u16::from_be_bytes([pkt[at], pkt[at + 1]]);
            pkt[at..at + 2].copy_from_slice(&new.to_be_bytes());
            prop_assert_eq!(update16(csum, old, new), finish(data(&pkt)));
        }

        #[test]
        fn update32_equals_recomputation(mut pkt in packet(), at in 1usize..100, new: u32) {
            let words = pkt.len() / 2;
            let at = 4 + (at % (words - 3)) * 2;
            pkt[2] = 0;
            pkt[3] = 0;
            let csum = finish(data(&pkt));
            let old = u32::from_be_bytes([pkt[at], pkt[at + 1], pkt[at + 2], pkt[at + 3]]);
            pkt[at..at + 4].copy_from_slice(&new.to_be_bytes());
            prop_assert_eq!(update32(csum, old, new), finish(data(&pkt)));
        }

        #[test]
        fn update128_equals_recomputation(
            first in 1u8..=255,
            rest in proptest::collection::vec(any::<u8>(), 40..120),
            at in 0usize..40,
            new: [u8; 16],
        ) {
            let mut pkt = vec![first, 0, 0, 0];
            pkt.extend_from_slice(&rest);
            let at = 4 + (at % ((pkt.len() - 4 - 16) / 2)) * 2;
            let csum = finish(data(&pkt));
            let mut old = [0u8; 16];
            old.copy_from_slice(&pkt[at..at + 16]);
            pkt[at..at + 16].copy_from_slice(&new);
            let expect = finish(data(&pkt));
            prop_assert_eq!(update128(csum, &old, &new), expect);
            prop_assert_eq!(Update::new(csum).word128(&old, &new).finish(), expect);
            prop_assert_eq!(update_bytes(csum, &old, &new), expect);
        }

        #[test]
        fn chained_updates_equal_recomputation(mut pkt in packet(), edits in proptest::collection::vec((any::<u16>(), any::<u16>()), 1..10)) {
            pkt[2] = 0;
            pkt[3] = 0;
            let mut csum = finish(data(&pkt));
            let words = pkt.len() / 2;
            for (at, new) in edits {
                let at = 4 + (usize::from(at) % (words - 2)) * 2;
                let old = u16::from_be_bytes([pkt[at], pkt[at + 1]]);
                pkt[at..at + 2].copy_from_slice(&new.to_be_bytes());
                csum = update16(csum, old, new);
            }
            prop_assert_eq!(csum, finish(data(&pkt)));
        }

        /// Several words, 16- and 32-bit, changed and summed into one [`Update`]: the
        /// field it gives is the one chained single updates give, and recomputation's.
        #[test]
        fn one_update_of_many_words_equals_recomputation(mut pkt in packet(), edits in proptest::collection::vec((any::<u16>(), any::<u32>(), any::<bool>()), 1..10)) {
            pkt[2] = 0;
            pkt[3] = 0;
            let start = finish(data(&pkt));
            let mut chained = start;
            let mut one = Update::new(start);
            let words = pkt.len() / 2;
            for (at, new, wide) in edits {
                if wide {
                    let at = 4 + (usize::from(at) % (words - 3)) * 2;
                    let old = u32::from_be_bytes([pkt[at], pkt[at + 1], pkt[at + 2], pkt[at + 3]]);
                    pkt[at..at + 4].copy_from_slice(&new.to_be_bytes());
                    chained = update32(chained, old, new);
                    one = one.word32(old, new);
                } else {
                    let at = 4 + (usize::from(at) % (words - 2)) * 2;
                    let old = u16::from_be_bytes([pkt[at], pkt[at + 1]]);
                    let new = new as u16;
                    pkt[at..at + 2].copy_from_slice(&new.to_be_bytes());
                    chained = update16(chained, old, new);
                    one = one.word16(old, new);
                }
            }
            prop_assert_eq!(one.finish(), chained);
            prop_assert_eq!(one.finish(), finish(data(&pkt)));
        }
    }
}
