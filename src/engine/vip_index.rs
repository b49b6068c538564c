//! The VIP index the data path reads once per packet: (VIP, protocol, port) to service,
//! and "is this address a VIP at all", over the parsed 16-byte addresses.
//!
//! An open-addressing table built with the snapshot: power-of-two slots at most half
//! full, linear probing, no deletion. A probe hashes 20 bytes with two multiplies and
//! compares one slot, so the packet's established fast path pays one probe; a miss stops
//! at the first empty slot, and the clusters it can walk are made by the operator's keys
//! alone (packets only choose where to start), so they stay short.

use std::net::IpAddr;

use crate::flow::IpAddr16;

use super::snapshot::{ServiceId, VipKey};

/// The tag bit of IPv6 VIPs (an IPv4 VIP and the v4-mapped IPv6 address differ).
const TAG_V6: u32 = 1 << 24;
/// The tag bit of the "address is a VIP" entries.
const TAG_ADDR: u32 = 1 << 25;

#[derive(Debug, Clone, Copy)]
struct Slot {
    addr: [u8; 16],
    /// family | kind | proto << 16 | port
    tag: u32,
    service: ServiceId,
    used: bool,
}

const EMPTY: Slot = Slot {
    addr: [0; 16],
    tag: 0,
    service: 0,
    used: false,
};

/// The last exact lookup of a burst and its answer, for
/// [`service_exact_memo`](VipIndex::service_exact_memo): a burst's packets mostly go to
/// one VIP port, and comparing 20 bytes costs less than hashing them and probing. Good
/// for one index only; start each burst (each snapshot) with [`VipMemo::EMPTY`].
#[derive(Debug, Clone, Copy)]
pub struct VipMemo {
    addr: [u8; 16],
    tag: u32,
    service: Option<ServiceId>,
}

impl VipMemo {
    /// Remembers nothing (no lookup has the tag `u32::MAX`).
    pub const EMPTY: VipMemo = VipMemo {
        addr: [0; 16],
        tag: u32::MAX,
        service: None,
    };
}

/// (VIP, protocol, port) to service, and the set of VIP addresses.
#[derive(Debug, Clone)]
pub struct VipIndex {
    slots: Box<[Slot]>,
    /// `64 - log2(slots.len())`: the hash's top bits pick the first slot.
    shift: u32,
}

impl Default for VipIndex {
    fn default() -> Self {
        VipIndex::build(std::iter::empty())
    }
}

#[inline]
fn tag(v6: bool, proto: u8, port: u16) -> u32 {
    (if v6 { TAG_V6 } else { 0 }) | (proto as u32) << 16 | port as u32
}

#[inline]
fn hash(addr: &[u8; 16], tag: u32) -> u64 {
    let (hi, lo) = addr.split_at(8);
    let a = u64::from_le_bytes(hi.try_into().unwrap_or([0; 8]));
    let b = u64::from_le_bytes(lo.try_into().unwrap_or([0; 8]));
    let h = (a ^ (tag as u64) << 32).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b;
    h.wrapping_mul(0xbf58_476d_1ce4_e5b9)
}

impl VipIndex {
    /// The index of `(key, service)` pairs (port 0: every port).
    pub fn build<'a>(keys: impl Iterator<Item = (&'a VipKey, &'a ServiceId)>) -> VipIndex {
        let mut entries: Vec<([u8; 16], u32, ServiceId)> = Vec::new();
        for (k, &sid) in keys {
            let v6 = k.vip.is_ipv6();
            let addr = IpAddr16::from(k.vip).0;
            entries.push((addr, tag(v6, k.proto, k.port), sid));
            let marker = tag(v6, 0, 0) | TAG_ADDR;
            if !entries.iter().any(|e| e.0 == addr && e.1 == marker) {
                entries.push((addr, marker, 0));
            }
        }
        let len = (entries.len() * 2).next_power_of_two().max(8);
        let mut slots = vec![EMPTY; len].into_boxed_slice();
        let shift = 64 - len.trailing_zeros();
        let mask = len - 1;
        for (addr, tag, service) in entries {
            let mut i = (hash(&addr, tag) >> shift) as usize;
            // at most half full: an empty slot is always found
            while slots[i].used && !(slots[i].addr == addr && slots[i].tag == tag) {
                i = (i + 1) & mask;
            }
            slots[i] = Slot {
                addr,
                tag,
                service,
                used: true,
            };
        }
        VipIndex { slots, shift }
    }

    #[inline]
    fn find(&self, addr: &IpAddr16, tag: u32) -> Option<ServiceId> {
        let mask = self.slots.len() - 1;
        let mut i = (hash(&addr.0, tag) >> self.shift) as usize;
        for _ in 0..self.slots.len() {
            let s = self.slots.get(i)?;
            if !s.used {
                return None;
            }
            if s.tag == tag && s.addr == addr.0 {
                return Some(s.service);
            }
            i = (i + 1) & mask;
        }
        None
    }

    /// The service id for a packet to `dst`:`dport` over `proto`: the exact port first,
    /// then the VIP's every-port service.
    #[inline]
    pub fn service(&self, dst: &IpAddr16, v6: bool, proto: u8, dport: u16) -> Option<ServiceId> {
        self.find(dst, tag(v6, proto, dport))
            .or_else(|| self.find(dst, tag(v6, proto, 0)))
    }

    /// The service id for exactly this port (no every-port fallback): the fast path's
    /// single probe.
    #[inline]
    pub fn service_exact(
        &self,
        dst: &IpAddr16,
        v6: bool,
        proto: u8,
        dport: u16,
    ) -> Option<ServiceId> {
        self.find(dst, tag(v6, proto, dport))
    }

    /// [`service_exact`](Self::service_exact), answered from `memo` when it is the same
    /// lookup as the last one, which it then remembers.
    #[inline]
    pub fn service_exact_memo(
        &self,
        memo: &mut VipMemo,
        dst: &IpAddr16,
        v6: bool,
        proto: u8,
        dport: u16,
    ) -> Option<ServiceId> {
        let tag = tag(v6, proto, dport);
        if memo.tag == tag && memo.addr == dst.0 {
            return memo.service;
        }
        let service = self.find(dst, tag);
        *memo = VipMemo {
            addr: dst.0,
            tag,
            service,
        };
        service
    }

    /// Whether `addr` is the VIP of some service.
    #[inline]
    pub fn is_vip(&self, addr: &IpAddr16, v6: bool) -> bool {
        self.find(addr, tag(v6, 0, 0) | TAG_ADDR).is_some()
    }

    /// [`is_vip`](Self::is_vip) for an [`IpAddr`].
    pub fn is_vip_ip(&self, addr: IpAddr) -> bool {
        self.is_vip(&addr.into(), addr.is_ipv6())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn key(vip: IpAddr, proto: u8, port: u16) -> VipKey {
        VipKey { vip, proto, port }
    }

    #[test]
    fn the_memo_answers_as_the_index_does() {
        let v4 = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1));
        let other = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 2));
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 1, 0, 1).to_ipv6_mapped());
        let keys = [
            (key(v4, 6, 80), 1u16),
            (key(v4, 17, 80), 2),
            (key(other, 6, 80), 3),
        ];
        let idx = VipIndex::build(keys.iter().map(|(k, s)| (k, s)));
        let mut memo = VipMemo::EMPTY;
        // repeats, then every field changed alone, then back: hits and misses alike
        let lookups = [
            (v4, 6, 80),
            (v4, 6, 80),
            (v4, 17, 80),
            (v4, 6, 81),
            (other, 6, 80),
            (other, 6, 80),
            (mapped, 6, 80),
            (v4, 6, 80),
            (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0, 0),
        ];
        for (addr, proto, port) in lookups {
            let a: IpAddr16 = addr.into();
            let v6 = addr.is_ipv6();
            assert_eq!(
                idx.service_exact_memo(&mut memo, &a, v6, proto, port),
                idx.service_exact(&a, v6, proto, port),
                "{addr} {proto} {port}"
            );
        }
    }

    #[test]
    fn finds_exact_then_every_port_and_keeps_families_apart() {
        let v4 = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1));
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 1, 0, 1).to_ipv6_mapped());
        let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        let keys = [
            (key(v4, 6, 80), 1u16),
            (key(v4, 6, 0), 2),
            (key(v4, 17, 53), 3),
            (key(v6, 6, 443), 4),
        ];
        let idx = VipIndex::build(keys.iter().map(|(k, s)| (k, s)));
        let a4: IpAddr16 = v4.into();
        let a6: IpAddr16 = v6.into();
        assert_eq!(idx.service(&a4, false, 6, 80), Some(1));
        assert_eq!(idx.service(&a4, false, 6, 81), Some(2));
        assert_eq!(idx.service_exact(&a4, false, 6, 81), None);
        assert_eq!(idx.service(&a4, false, 17, 53), Some(3));
        assert_eq!(idx.service(&a4, false, 17, 54), None);
        assert_eq!(idx.service(&a6, true, 6, 443), Some(4));
        assert_eq!(idx.service(&a6, true, 6, 80), None);
        assert!(idx.is_vip(&a4, false) && idx.is_vip(&a6, true));
        assert!(idx.is_vip_ip(v4) && idx.is_vip_ip(v6));
        // the v4-mapped IPv6 address is not the IPv4 VIP
        assert!(!idx.is_vip_ip(mapped));
        assert_eq!(idx.service(&a4, true, 6, 80), None);
        assert!(!idx.is_vip_ip(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 2))));
        // the marker entries are not services
        assert_eq!(idx.service(&a4, false, 0, 0), None);
    }

    #[test]
    fn many_vips_all_found_and_misses_end() {
        let keys: Vec<(VipKey, u16)> = (0..300u32)
            .map(|i| {
                let vip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i * 7));
                (key(vip, 6, (i % 5) as u16 * 1000), i as u16)
            })
            .collect();
        let idx = VipIndex::build(keys.iter().map(|(k, s)| (k, s)));
        for (k, s) in &keys {
            let a: IpAddr16 = k.vip.into();
            assert_eq!(idx.service(&a, false, 6, k.port), Some(*s));
            assert!(idx.is_vip(&a, false));
        }
        for i in 0..1000u32 {
            let a = IpAddr16::from(Ipv4Addr::from(0x0b00_0000 + i));
            assert_eq!(idx.service(&a, false, 6, 80), None);
            assert!(!idx.is_vip(&a, false));
        }
        assert!(VipIndex::default()
            .service(&IpAddr16::default(), false, 6, 80)
            .is_none());
    }
}
