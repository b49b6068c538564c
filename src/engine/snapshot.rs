//! The configuration a worker reads: an immutable snapshot built off the hot path.
//!
//! The control side builds a [`Snapshot`] from the validated configuration, the health
//! of each backend and the resolved neighbours, and publishes it with `arc-swap`;
//! workers load it once per burst. Everything a packet needs is precomputed here:
//! Maglev tables, the VIP index, next-hop MACs, NAT port ranges.
//!
//! Backends and services carry ids that stay the same across snapshots (the control
//! side's registry hands them out by service name and backend address), so a flow
//! pinned to a backend in one snapshot still finds it in the next.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

use crate::maglev::MaglevTable;

use super::forward::{Ipip4Template, Ipip6Template};
use super::vip_index::VipIndex;

/// A backend's id, stable across snapshots. An index into [`Snapshot::backends`].
pub type BackendId = u32;
/// A service's id, stable across snapshots. An index into [`Snapshot::services`].
pub type ServiceId = u16;

/// An Ethernet MAC address.
pub type Mac = [u8; 6];

/// IANA protocol number for TCP.
pub const PROTO_TCP: u8 = 6;
/// IANA protocol number for UDP.
pub const PROTO_UDP: u8 = 17;

/// How a service's packets reach its backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarding {
    /// Layer-2 direct server return: only the MACs change.
    Dsr,
    /// IP-in-IP encapsulation (4in4, 6in6, 4in6); the backend answers the client directly.
    Ipip,
    /// GUE (direct-IP variant) over UDP to `port`; the backend answers the client directly.
    Gue {
        /// The backend's GUE UDP port.
        port: u16,
    },
    /// Full NAT: destination to the backend, source to the LB; replies come back through fulcrum.
    Nat,
}

/// What a service does with its traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceMode {
    /// Balanced by the L4 engine with the given forwarding.
    L4(Forwarding),
    /// Handed to the kernel interface, where the L7 pool terminates it.
    L7,
}

/// One fulcrum port (a DPDK ethdev) as the engine sees it.
#[derive(Debug, Clone)]
pub struct PortInfo {
    /// Name from the config, for logs and metrics.
    pub name: String,
    /// The port's MAC address.
    pub mac: Mac,
    /// The LB's own IPv4 address on this port and its prefix length.
    pub ipv4: Option<(std::net::Ipv4Addr, u8)>,
    /// The LB's own IPv6 address on this port and its prefix length.
    pub ipv6: Option<(std::net::Ipv6Addr, u8)>,
    /// Full-NAT source addresses: the port's own address first, then
    /// `ports[].snat_addresses` (at most 256, all of the port's family).
    pub nat_sources: Vec<crate::flow::IpAddr16>,
    /// The port MTU (bytes of IP packet).
    pub mtu: u16,
}

/// What a backend is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendState {
    /// Takes new flows (with its weight) and keeps its established ones.
    Active,
    /// Takes no new flows; established flows continue until `until` (engine clock, ms).
    Draining {
        /// Engine-clock millisecond after which its flows are moved or dropped.
        until: u32,
    },
}

/// A backend as the engine sees it.
#[derive(Debug, Clone)]
pub struct Backend {
    /// Its stable id.
    pub id: BackendId,
    /// The service it serves.
    pub service: ServiceId,
    /// Its address.
    pub addr: IpAddr,
    /// `nat` only: the backend's port (None: the client's destination port).
    pub port: Option<u16>,
    /// The port index it is reached through.
    pub egress_port: u16,
    /// The MAC of the next hop towards it (itself on-link, or the gateway); None while unresolved.
    pub next_hop_mac: Option<Mac>,
    /// Whether it takes new flows.
    pub state: BackendState,
    /// Whether health checks say it is up (informational for the engine; the Maglev table already reflects it).
    pub healthy: bool,
    /// The outer headers of `ipip` frames to it, when it and its egress port have IPv4
    /// addresses and its next hop is resolved (the per-packet fast path copies them).
    pub ipip4: Option<Ipip4Template>,
    /// The same for IPv6 backends behind a port with an IPv6 address (6in6 and 4in6).
    pub ipip6: Option<Ipip6Template>,
    /// Flows pinned to it stay while engine time is below this ([`keeps_flows`]):
    /// its state, its health and its service's `on_unhealthy` folded into one number
    /// when the snapshot is built ([`Backend::keep_until`]), so a pinned flow's packet
    /// reads neither the service nor the state.
    ///
    /// [`keeps_flows`]: Backend::keeps_flows
    pub keep_until: u64,
}

impl Backend {
    /// [`keep_until`](Backend::keep_until) of a backend in `state`, `healthy` or not, of a
    /// service that resets flows to unhealthy backends (`reset_on_unhealthy`) or not: an
    /// active backend keeps its flows unless it is unhealthy and the service resets them
    /// (`u64::MAX`: always, 0: never), a draining one until its deadline.
    pub fn keep_until(state: BackendState, healthy: bool, reset_on_unhealthy: bool) -> u64 {
        match state {
            BackendState::Active if healthy || !reset_on_unhealthy => u64::MAX,
            BackendState::Active => 0,
            BackendState::Draining { until } => u64::from(until),
        }
    }

    /// Whether flows pinned to it stay with it at engine time `now`.
    #[inline(always)]
    pub fn keeps_flows(&self, now: u32) -> bool {
        kept_at(self.keep_until, now)
    }
}

/// The test of [`Backend::keeps_flows`] on a [`Backend::keep_until`] value.
#[inline(always)]
fn kept_at(keep_until: u64, now: u32) -> bool {
    u64::from(now) < keep_until
}

/// A service (a VIP, optionally a port, and a protocol).
#[derive(Debug, Clone)]
pub struct Service {
    /// Its stable id.
    pub id: ServiceId,
    /// Name from the config.
    pub name: String,
    /// The virtual IP.
    pub vip: IpAddr,
    /// The port, or None for every port.
    pub port: Option<u16>,
    /// IANA protocol number ([`PROTO_TCP`] or [`PROTO_UDP`]).
    pub proto: u8,
    /// L4 with a forwarding mode, or L7.
    pub mode: ServiceMode,
    /// The Maglev table over `members`: entry = index into `members`.
    pub maglev: MaglevTable,
    /// The backends the Maglev table picks from, in the order it was built with.
    pub members: Vec<BackendId>,
    /// Whether the panic threshold is in force (too few healthy backends: all are used).
    pub panic: bool,
    /// Flows to a backend that turned unhealthy are reset rather than kept.
    pub reset_on_unhealthy: bool,
    /// Passive health (`nat` only): a SYN not answered within this many milliseconds is a
    /// connection failure of its backend. 0: connection outcomes are not watched.
    pub connect_timeout_ms: u32,
}

/// The key of the VIP index: (VIP, protocol, port); port 0 is "every port".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VipKey {
    /// The VIP.
    pub vip: IpAddr,
    /// IANA protocol number.
    pub proto: u8,
    /// The destination port, 0 for a service on every port.
    pub port: u16,
}

/// Full-NAT source ports: each worker owns `per_worker` ports starting at `base + worker * per_worker`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatPorts {
    /// First port of worker 0's range.
    pub base: u16,
    /// Ports per worker.
    pub per_worker: u16,
    /// Number of workers.
    pub workers: u16,
}

impl NatPorts {
    /// The worker owning `port`, or None if it is outside every range.
    #[inline]
    pub fn owner(&self, port: u16) -> Option<u16> {
        let off = port.checked_sub(self.base)?;
        let w = off / self.per_worker.max(1);
        (w < self.workers).then_some(w)
    }
    /// The port range of `worker`.
    pub fn range(&self, worker: u16) -> core::ops::Range<u32> {
        let start = self.base as u32 + worker as u32 * self.per_worker as u32;
        start..start + self.per_worker as u32
    }
}

impl PortInfo {
    /// Whether `addr` is one of the port's full-NAT source addresses (its own among them).
    #[inline]
    pub fn is_nat_source(&self, addr: &crate::flow::IpAddr16) -> bool {
        self.nat_sources.contains(addr)
    }
}

/// Everything the workers read, immutable once published.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Increases with every published snapshot.
    pub generation: u64,
    /// Ports, by port index.
    pub ports: Vec<PortInfo>,
    /// Services, by [`ServiceId`] (None: an id no longer in use).
    pub services: Vec<Option<Service>>,
    /// Backends, by [`BackendId`] (None: removed and drained).
    pub backends: Vec<Option<Backend>>,
    /// (VIP, proto, port) to service; port 0 for all-port services.
    pub vips: HashMap<VipKey, ServiceId, BuildHasherDefault<FastHasher>>,
    /// Every VIP address, for ARP / ND answers and ICMP echo.
    pub vip_addrs: Vec<IpAddr>,
    /// `vips` and `vip_addrs` as the data path reads them (built from `vips`).
    pub vip_index: VipIndex,
    /// Full-NAT source port ranges.
    pub nat_ports: NatPorts,
}

impl Snapshot {
    /// The service for a packet to `dst`:`dport` over `proto`, exact port first, then all-port.
    #[inline]
    pub fn service_for(&self, dst: IpAddr, proto: u8, dport: u16) -> Option<&Service> {
        let id = self
            .vip_index
            .service(&dst.into(), dst.is_ipv6(), proto, dport)?;
        self.service(id)
    }

    /// The service with `id`, if it exists.
    #[inline]
    pub fn service(&self, id: ServiceId) -> Option<&Service> {
        self.services.get(id as usize)?.as_ref()
    }

    /// The backend with `id`, if it still exists.
    #[inline]
    pub fn backend(&self, id: BackendId) -> Option<&Backend> {
        self.backends.get(id as usize)?.as_ref()
    }

    /// Whether `addr` is a VIP of some service.
    pub fn is_vip(&self, addr: IpAddr) -> bool {
        self.vip_index.is_vip_ip(addr)
    }
}

/// A small multiplicative hasher for the VIP index: its keys are a few bytes chosen by
/// the operator, not by packets' senders, so SipHash's flooding resistance buys nothing
/// and costs a tenth of the per-packet budget.
#[derive(Debug, Default, Clone, Copy)]
pub struct FastHasher(u64);

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.write_u64(i as u64);
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.write_u64(i as u64);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(i as u64);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keeps(state: BackendState, healthy: bool, reset: bool, now: u32) -> bool {
        kept_at(Backend::keep_until(state, healthy, reset), now)
    }

    #[test]
    fn keeping_folds_state_health_and_on_unhealthy() {
        for now in [0, 1, 5_000, u32::MAX - 1, u32::MAX] {
            // active: kept unless unhealthy under on_unhealthy: reset, at any time
            assert!(keeps(BackendState::Active, true, true, now));
            assert!(keeps(BackendState::Active, true, false, now));
            assert!(keeps(BackendState::Active, false, false, now));
            assert!(!keeps(BackendState::Active, false, true, now));
        }
        // draining: kept before its deadline only, whatever the health
        let draining = BackendState::Draining { until: 5_000 };
        for healthy in [true, false] {
            for reset in [true, false] {
                assert!(keeps(draining, healthy, reset, 4_999));
                assert!(!keeps(draining, healthy, reset, 5_000));
                assert!(!keeps(draining, healthy, reset, 5_001));
            }
        }
        let forever = BackendState::Draining { until: u32::MAX };
        assert!(keeps(forever, true, false, u32::MAX - 1));
        assert!(!keeps(BackendState::Draining { until: 0 }, true, false, 0));
    }
}
