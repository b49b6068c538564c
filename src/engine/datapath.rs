//! The engine: one worker's per-packet decision, in four steps.
//!
//! 1. [`parse`](super::parse::parse) the headers once, dropping what is malformed;
//! 2. classify: ARP / ND for the port or a VIP, traffic to a VIP, traffic to the
//!    port's own address (full-NAT replies, the kernel), or not ours;
//! 3. for VIP traffic: find the flow, or pin a new one with Maglev;
//! 4. rewrite for the backend ([`forward`](super::forward)) and return the verdict.
//!
//! Nothing here allocates, locks or calls the system: the flow tables are sized at
//! start, counters are plain integers owned by the worker.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;

use crate::buffer::PacketBuf;
use crate::flow::{
    tcp_flags, FlowKey, FlowKeyT, FlowState, FlowTable, FlowTableError, FlowTarget, FlowTimeouts,
    HashSecret, InsertOutcome, IpAddr16, BUCKETS_PER_FLOW,
};
use crate::wire::{ArpOperation, ArpPacket, Icmpv4Packet, Icmpv6Packet, IpProtocol};

use super::counters::{BackendCounters, Counters, BACKEND_COUNTER_SLOTS};
use super::forward::{
    dsr, encapsulate, encapsulate_ipip4, encapsulate_ipip6, nat_rewrite, Encap, EncapOutcome,
    Ipip6Template,
};
use super::outcome::{ConnectOutcome, HandshakeWatch, HANDSHAKE_WATCH_CAPACITY};
use super::parse::{parse_into, Meta, L3};
use super::reply::{arp_reply, echo_reply, neighbor_advert, ICMPV6_NA, ICMPV6_NS};
use super::snapshot::{
    Backend, Forwarding, Mac, PortInfo, Service, ServiceId, ServiceMode, Snapshot,
};
use super::vip_index::VipMemo;
use super::{DropReason, Verdict};

/// Attempts at finding a free full-NAT port before giving up on a new flow.
pub const NAT_PORT_TRIES: usize = 64;
/// After a failed search for a free NAT port towards a backend, new flows to it are
/// refused at once for this long (ms) rather than searched again per packet.
pub const NAT_EXHAUSTED_BACKOFF_MS: u32 = 100;
/// Backends tracked for NAT port exhaustion (by id modulo this).
const NAT_EXHAUSTED_SLOTS: usize = 1024;
/// Packets [`Engine::process_burst`] classifies (and prefetches the flows of) before it
/// finishes them; longer bursts are taken in chunks of this many.
pub const MAX_BURST: usize = 64;

/// The flow tables keep LRU order per 2^10 ms (about a second): a flow's entry moves
/// to the front at most once a second however many packets it carries, which saves
/// writing three random cache lines per packet. Eviction only needs "old", and the
/// granule is held under 1/16 of the shortest idle timeout (see [`lru_granule_shift`]),
/// so expiry is late by at most that much.
const LRU_GRANULE_SHIFT: u32 = 10;

/// [`LRU_GRANULE_SHIFT`], smaller when a timeout is short: 2^shift <= timeout / 16.
fn lru_granule_shift(t: &FlowTimeouts) -> u32 {
    let shortest = t.shortest() / 16;
    if shortest == 0 {
        return 0;
    }
    LRU_GRANULE_SHIFT.min(31 - shortest.leading_zeros())
}

const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMPV6_DEST_UNREACH: u8 = 1;
const ICMPV6_PACKET_TOO_BIG: u8 = 2;
const ICMPV6_TIME_EXCEEDED: u8 = 3;
const ICMPV6_ECHO_REQUEST: u8 = 128;

/// How an engine is sized.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// The worker's index (owner of NAT port range `worker`).
    pub worker: u16,
    /// Flow-table entries (the NAT reverse table gets as many).
    pub flow_capacity: usize,
    /// Idle timeouts, milliseconds.
    pub timeouts: FlowTimeouts,
}

/// The key of the full-NAT reverse table: a reply from a backend to the LB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatKey {
    /// The backend's address (the reply's source).
    pub backend: IpAddr16,
    /// The LB's source address for the flow (the reply's destination): the port's
    /// address or one of its `snat_addresses`.
    pub lb: IpAddr16,
    /// The backend's port.
    pub backend_port: u16,
    /// The LB's source port for the flow (the reply's destination port).
    pub lb_port: u16,
    /// IP protocol.
    pub proto: u8,
}

impl FlowKeyT for NatKey {
    #[inline]
    fn flow_hash(&self, secret: &HashSecret) -> u64 {
        FlowKey {
            src: self.backend,
            dst: self.lb,
            src_port: self.backend_port,
            dst_port: self.lb_port,
            proto: self.proto,
            service: u16::MAX,
        }
        .flow_hash(secret)
    }
    #[inline]
    fn is_tcp(&self) -> bool {
        self.proto == IpProtocol::TCP.0
    }
}

/// Where a full-NAT reply goes back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatValue {
    /// The client.
    pub client: IpAddr16,
    /// The client's port.
    pub client_port: u16,
    /// The VIP port the client connected to.
    pub vip_port: u16,
    /// The service (for its VIP).
    pub service: u16,
    /// The port the client's packets came in on.
    pub in_port: u16,
    /// The MAC the client's packets came from (the client or its router).
    pub client_mac: Mac,
    /// The backend's id.
    pub backend: u16,
    /// The flow began with a SYN whose answer is still awaited (passive health).
    pub awaiting_answer: bool,
}

/// A full-NAT source: the LB's address and port a flow leaves for its backend with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NatSource {
    /// Index into the egress port's [`PortInfo::nat_sources`].
    addr_index: u8,
    /// That address.
    addr: IpAddr16,
    /// The source port.
    port: u16,
}

/// What the first pass over a burst learned of one packet. A struct rather than an enum
/// carrying the `Meta`, so [`classify`] parses straight into a slot of the burst's
/// scratch array: the ~100 bytes are written once, not moved through a `Result`, an
/// enum and a `Vec::push` (that was ~10% of an established packet's instructions).
#[derive(Debug, Clone, Copy)]
struct Classified {
    /// The headers (meaningful unless `class` is `Dropped`).
    meta: Meta,
    class: Class,
}

/// The path a classified packet takes.
#[derive(Debug, Clone, Copy)]
enum Class {
    /// Dropped before parsing finished.
    Dropped(DropReason),
    /// Parsed; takes the general path (ARP, ICMP, fragments, the LB's own address, ...).
    General,
    /// TCP or UDP to a VIP port served by the L4 engine: the flow's hash is known and its
    /// flow-table bucket is being prefetched.
    /// (The service is the one in the `Meta`'s flow key.)
    Flow {
        fwd: Forwarding,
        /// The flow's flow-table bucket.
        bucket: usize,
    },
}

/// A burst's scratch array.
fn new_scratch() -> Box<[Classified; MAX_BURST]> {
    Box::new([Classified::EMPTY; MAX_BURST])
}

impl Classified {
    const EMPTY: Classified = Classified {
        meta: Meta::EMPTY,
        class: Class::General,
    };
}

/// One worker's engine.
pub struct Engine {
    worker: u16,
    flows: FlowTable<FlowKey, FlowTarget>,
    nat: FlowTable<NatKey, NatValue>,
    nat_cursor: u32,
    nat_exhausted: Box<[Option<u32>]>,
    ident: u16,
    counters: Counters,
    backends: Box<[BackendCounters]>,
    watch: HandshakeWatch,
    /// The current burst's first-pass results.
    /// (`None` only while a burst runs.)
    scratch: Option<Box<[Classified; MAX_BURST]>>,
}

impl Engine {
    /// An engine with its tables allocated.
    pub fn new(cfg: EngineConfig) -> Result<Engine, FlowTableError> {
        let seed = RandomState::new().hash_one(cfg.worker);
        let granule = lru_granule_shift(&cfg.timeouts);
        Ok(Engine {
            worker: cfg.worker,
            // Deferred growth: a burst's buckets, computed in its first pass, must stay
            // valid while its last pass inserts; the table grows after each burst.
            flows: FlowTable::new(cfg.flow_capacity, cfg.timeouts, seed)?
                .with_lru_granule(granule)
                .with_deferred_growth(),
            nat: FlowTable::new(cfg.flow_capacity, cfg.timeouts, seed.rotate_left(17))?
                .with_lru_granule(granule),
            nat_cursor: 0,
            nat_exhausted: vec![None; NAT_EXHAUSTED_SLOTS].into_boxed_slice(),
            ident: 0,
            counters: Counters::default(),
            backends: vec![BackendCounters::default(); BACKEND_COUNTER_SLOTS].into_boxed_slice(),
            watch: HandshakeWatch::new(cfg.flow_capacity.min(HANDSHAKE_WATCH_CAPACITY)),
            scratch: Some(new_scratch()),
        })
    }

    /// Decides what happens to `pkt`, received on port `in_port`, rewriting it as needed.
    /// `now` is the engine clock in milliseconds.
    #[inline]
    pub fn process<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        in_port: u16,
        pkt: &mut B,
        now: u32,
    ) -> Verdict {
        let mut c = Classified::EMPTY;
        let mtu = snap.ports.get(in_port as usize).map(|p| p.mtu);
        let mut memo = RouteMemo::EMPTY;
        classify(snap, &self.flows, mtu, &mut memo, pkt.data(), &mut c);
        self.counters.rx_packets += 1;
        self.counters.rx_bytes += pkt.len() as u64;
        let v = self.finish(snap, in_port, pkt, &c, now);
        self.grow_flows();
        v
    }

    /// Splits flow-table buckets while the flows outnumber them (the table defers
    /// growth so a burst's buckets stay valid while it runs). A burst inserts at most
    /// [`MAX_BURST`] flows, so this budget catches up with a burst of new flows and
    /// with whatever an earlier burst left.
    #[inline]
    fn grow_flows(&mut self) {
        if self.flows.needs_growth() {
            self.flows.grow(2 * MAX_BURST * BUCKETS_PER_FLOW as usize);
        }
    }

    /// [`process`](Self::process) for a burst of packets received on `in_port`:
    /// `verdicts[i]` is the verdict for `pkts[i]` (up to the shorter of the two), the same
    /// as processing them one by one in order. It runs in passes over up to
    /// [`MAX_BURST`] packets: parse and classify all (computing flow hashes and
    /// prefetching their flow-table buckets), prefetch the buckets' first entries, then
    /// finish each packet, so the table's cache misses of a whole burst overlap instead of
    /// stalling one packet after the other. (The LRU neighbours a hit relinks are not
    /// prefetched: with the LRU granule a flow is relinked about once a second, and a
    /// pass that read every entry to find those few cost 2% of the instructions.)
    /// Nothing but prefetches happens before the last pass, so the
    /// verdicts are those of [`process`](Self::process) packet by packet.
    pub fn process_burst<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        in_port: u16,
        pkts: &mut [B],
        verdicts: &mut [Verdict],
        now: u32,
    ) {
        let n = pkts.len().min(verdicts.len());
        // taken out for the burst so `finish` may borrow the engine (a pointer move)
        let mut scratch = self.scratch.take().unwrap_or_else(new_scratch);
        let (pkts, verdicts) = (&mut pkts[..n], &mut verdicts[..n]);
        let mtu = snap.ports.get(in_port as usize).map(|p| p.mtu);
        let mut memo = RouteMemo::EMPTY;
        for (pkts, verdicts) in pkts
            .chunks_mut(MAX_BURST)
            .zip(verdicts.chunks_mut(MAX_BURST))
        {
            let scratch = &mut scratch[..pkts.len()];
            // Classification in two passes (parse all, then route all): each packet's
            // chain from its headers through the flow hash to its bucket's prefetch then
            // starts from headers parsed a pass earlier, and a short loop body lets the
            // chains of several packets overlap.
            let mut bytes = 0u64;
            for (p, c) in pkts.iter().zip(scratch.iter_mut()) {
                bytes += p.len() as u64;
                c.class = parse_class(mtu, p.data(), &mut c.meta);
            }
            self.counters.rx_packets += pkts.len() as u64;
            self.counters.rx_bytes += bytes;
            for c in scratch.iter_mut() {
                if let Class::General = c.class {
                    c.class = route(snap, &self.flows, &mut memo, &mut c.meta);
                    if let Class::Flow { bucket, .. } = c.class {
                        self.flows.prefetch_bucket(bucket);
                    }
                }
            }
            for c in scratch.iter() {
                if let Class::Flow { bucket, .. } = c.class {
                    self.flows.prefetch_entry(bucket);
                }
            }
            for ((p, v), c) in pkts.iter_mut().zip(verdicts.iter_mut()).zip(scratch.iter()) {
                *v = self.finish(snap, in_port, p, c, now);
            }
            self.grow_flows();
        }
        self.scratch = Some(scratch);
    }

    /// The second half of [`process`](Self::process): the verdict for a classified
    /// packet, counted (the packet's receipt is counted by the caller: once a burst).
    #[inline(always)]
    fn finish<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        in_port: u16,
        pkt: &mut B,
        c: &Classified,
        now: u32,
    ) -> Verdict {
        let meta = &c.meta;
        // counted in each arm, so the fast path's known verdict is counted where it is
        // made instead of through a dispatch on a merged one
        match c.class {
            Class::Dropped(r) => self.counted(Verdict::Drop(r)),
            Class::General => {
                let v = self.decide(snap, in_port, pkt, meta, now);
                self.counted(v)
            }
            Class::Flow { fwd, bucket } => {
                // the service itself is read only for a new flow: a pinned flow's
                // backend carries what its keeping depends on; the key is the `Meta`'s,
                // where it lies
                let v = self.handle_service(snap, in_port, pkt, meta, &meta.key, fwd, bucket, now);
                self.counted(v)
            }
        }
    }

    /// Counts a verdict of [`finish`](Self::finish) and returns it.
    #[inline(always)]
    fn counted(&mut self, v: Verdict) -> Verdict {
        match v {
            Verdict::Forward { .. } => self.counters.forwarded += 1,
            Verdict::Reply => self.counters.replies += 1,
            Verdict::ToKernel => self.counters.to_kernel += 1,
            Verdict::ToControl => self.counters.to_control += 1,
            Verdict::HandOff { .. } => self.counters.handoffs += 1,
            Verdict::Drop(r) => self.counters.drops[r as usize] += 1,
        }
        v
    }

    /// Reclaims up to `budget` expired flows of each table, and judges up to `budget`
    /// full-NAT handshakes whose `connect_timeout` has passed.
    pub fn housekeeping(&mut self, _snap: &Snapshot, now: u32, budget: usize) {
        self.grow_flows();
        let backends = &mut self.backends;
        self.flows.expire_some(now, budget, |_, v| {
            flow_ended(backends, v);
        });
        self.nat.expire_some(now, budget, |_, _| {});
        for _ in 0..budget {
            let Some(key) = self.watch.pop_due(now) else {
                break;
            };
            let Some(e) = self.nat.peek_mut(&key, now) else {
                continue; // the translation is gone: its flow ended or was replaced
            };
            let v = e.value_mut();
            if v.awaiting_answer {
                v.awaiting_answer = false;
                let backend = v.backend;
                self.connect_outcome(backend, ConnectOutcome::TimedOut);
            }
        }
        self.counters.handshake_watch_overflows = self.watch.overflows();
    }

    /// Counts how a connection attempt to `backend` ended.
    fn connect_outcome(&mut self, backend: u16, outcome: ConnectOutcome) {
        match outcome {
            ConnectOutcome::Answered => self.counters.connects_ok += 1,
            ConnectOutcome::Refused => self.counters.connects_refused += 1,
            ConnectOutcome::Unreachable => self.counters.connects_unreachable += 1,
            ConnectOutcome::TimedOut => self.counters.connects_timed_out += 1,
        }
        if let Some(c) = self.backends.get_mut(backend as usize) {
            if outcome.is_success() {
                c.connects_ok += 1;
            } else {
                c.connects_failed += 1;
            }
        }
    }

    /// Counts a drop the worker made after the verdict (a full queue, no kernel interface).
    pub fn count_drop(&mut self, reason: DropReason) {
        self.counters.drops[reason as usize] += 1;
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Calls `f(id, counters)` for every backend that saw traffic.
    pub fn visit_backends(&self, f: &mut dyn FnMut(u32, &BackendCounters)) {
        for (id, c) in self.backends.iter().enumerate() {
            if c.packets != 0 || c.new_flows != 0 {
                f(id as u32, c);
            }
        }
    }

    /// Live forward flows.
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// Capacity of the forward flow table.
    pub fn flow_capacity(&self) -> usize {
        self.flows.capacity()
    }

    /// Live full-NAT translations.
    pub fn nat_count(&self) -> usize {
        self.nat.len()
    }

    /// Flow-table statistics (evictions, expiries).
    pub fn flow_stats(&self) -> crate::flow::FlowStats {
        self.flows.stats()
    }

    /// The general path for a parsed packet.
    fn decide<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        in_port: u16,
        pkt: &mut B,
        meta: &Meta,
        now: u32,
    ) -> Verdict {
        let Some(port) = snap.ports.get(in_port as usize) else {
            return Verdict::Drop(DropReason::NotForUs);
        };
        match meta.kind {
            L3::Arp => self.arp(snap, port, pkt, meta),
            L3::V4 | L3::V6 => self.ip(snap, in_port, port, pkt, meta, now),
        }
    }

    fn arp<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        port: &PortInfo,
        pkt: &mut B,
        meta: &Meta,
    ) -> Verdict {
        let Some(body) = pkt.data().get(meta.l3..) else {
            return Verdict::Drop(DropReason::BadArp);
        };
        let Ok(arp) = ArpPacket::new_checked(body) else {
            return Verdict::Drop(DropReason::BadArp);
        };
        if !arp.is_ethernet_ipv4() {
            return Verdict::Drop(DropReason::BadArp);
        }
        let target = arp.target_protocol_addr();
        let ours = port.ipv4.map(|(a, _)| a) == Some(target);
        // the port's own address is the first of its NAT sources
        let answered = port.is_nat_source(&target.into()) || snap.is_vip(IpAddr::V4(target));
        match ArpOperation::from_code(arp.operation()) {
            Some(ArpOperation::Request) if answered => {
                arp_reply(pkt, meta.l3, port.mac);
                self.counters.arp_replies += 1;
                Verdict::Reply
            }
            Some(ArpOperation::Reply) if ours => Verdict::ToControl,
            Some(_) => Verdict::Drop(DropReason::NotForUs),
            None => Verdict::Drop(DropReason::BadArp),
        }
    }

    fn ip<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        in_port: u16,
        port: &PortInfo,
        pkt: &mut B,
        meta: &Meta,
        now: u32,
    ) -> Verdict {
        if meta.is_v6() && meta.key.proto == IpProtocol::ICMPV6.0 && meta.has_l4 {
            let kind = pkt.data().get(meta.l4).copied().unwrap_or(0);
            if kind == ICMPV6_NS || kind == ICMPV6_NA {
                return self.neighbor_discovery(snap, port, pkt, meta, kind);
            }
        }
        if snap.vip_index.is_vip(&meta.key.dst, meta.is_v6()) {
            return self.handle_vip(snap, in_port, pkt, meta, now);
        }
        // the port's address (the first of its full-NAT sources) and the others
        if port.is_nat_source(&meta.key.dst) {
            return self.handle_lb(snap, port, pkt, meta, now);
        }
        Verdict::Drop(DropReason::NotForUs)
    }

    fn neighbor_discovery<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        port: &PortInfo,
        pkt: &mut B,
        meta: &Meta,
        kind: u8,
    ) -> Verdict {
        let Some(body) = pkt.data().get(meta.l4..meta.l3 + meta.ip_len) else {
            return Verdict::Drop(DropReason::BadIcmp);
        };
        let Ok(icmp) = Icmpv6Packet::new_checked(body) else {
            return Verdict::Drop(DropReason::BadIcmp);
        };
        if meta.ttl != 255 {
            // RFC 4861: ND must come from an on-link node
            return Verdict::Drop(DropReason::BadIcmp);
        }
        let target = icmp.nd_target();
        let own = port.ipv6.map(|(a, _)| a);
        if kind == ICMPV6_NA {
            return if own.is_some() {
                Verdict::ToControl
            } else {
                Verdict::Drop(DropReason::NotForUs)
            };
        }
        if port.is_nat_source(&target.into()) || snap.is_vip(IpAddr::V6(target)) {
            if neighbor_advert(pkt, meta, target, port.mac) {
                self.counters.nd_replies += 1;
                return Verdict::Reply;
            }
            return Verdict::Drop(DropReason::NoHeadroom);
        }
        Verdict::Drop(DropReason::NotForUs)
    }

    fn handle_vip<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        in_port: u16,
        pkt: &mut B,
        meta: &Meta,
        now: u32,
    ) -> Verdict {
        if meta.ttl <= 1 {
            return Verdict::Drop(DropReason::TtlExceeded);
        }
        let proto = IpProtocol(meta.key.proto);
        match proto {
            IpProtocol::TCP | IpProtocol::UDP => {}
            IpProtocol::ICMP | IpProtocol::ICMPV6 => {
                return self.icmp_to_vip(snap, in_port, pkt, meta, now)
            }
            _ => return Verdict::Drop(DropReason::NoService),
        }
        let dst = meta.dst_ip();
        let service = if meta.fragment {
            self.counters.fragments += 1;
            service_for_fragment(snap, dst, meta.key.proto)
        } else {
            snap.service_for(dst, meta.key.proto, meta.key.dst_port)
        };
        let Some(service) = service else {
            return Verdict::Drop(DropReason::NoService);
        };
        let fwd = match service.mode {
            ServiceMode::L7 => return Verdict::ToKernel,
            ServiceMode::L4(f) => f,
        };
        if fwd == Forwarding::Nat && meta.fragment {
            return Verdict::Drop(DropReason::FragmentNat);
        }
        let key = flow_key(meta, service.id);
        let bucket = self.flows.bucket_of(self.flows.hash_of(&key));
        self.handle_service(snap, in_port, pkt, meta, &key, fwd, bucket, now)
    }

    /// A TCP or UDP packet (or fragment) for an L4 service: its flow's backend, then the
    /// rewrite. `key` is its [`flow_key`] (the service's id in it), `bucket` the key's
    /// flow-table bucket.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn handle_service<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        in_port: u16,
        pkt: &mut B,
        meta: &Meta,
        key: &FlowKey,
        fwd: Forwarding,
        bucket: usize,
        now: u32,
    ) -> Verdict {
        let (backend, target) = match self.pinned(snap, key, bucket, meta, now) {
            Some(found) => found,
            None => {
                let Some(service) = snap.service(key.service) else {
                    return Verdict::Drop(DropReason::NoService);
                };
                let client_mac = src_mac(pkt.data());
                match self.pin_new(snap, service, fwd, key, meta, in_port, client_mac, now) {
                    Ok(x) => x,
                    Err(r) => return Verdict::Drop(r),
                }
            }
        };
        self.send_to_backend(snap, in_port, pkt, meta, backend, fwd, key, target)
    }
}

/// The verdict of a fast `ipip` writer's outcome for backend `b`.
#[inline(always)]
fn fast_verdict(b: &Backend, outcome: EncapOutcome) -> Verdict {
    match outcome {
        EncapOutcome::Done => Verdict::Forward {
            port: b.egress_port,
        },
        EncapOutcome::ReplyTooBig => Verdict::Reply, // not produced by the fast paths
        EncapOutcome::Drop(r) => Verdict::Drop(r),
    }
}

/// The flow key of a TCP or UDP packet (or fragment) for `service`.
#[inline]
fn flow_key(meta: &Meta, service: ServiceId) -> FlowKey {
    // Fragments are balanced on (source, destination, protocol), as the Maglev paper
    // does: every fragment of a datagram reaches the same backend.
    let (sport, dport) = if meta.fragment {
        (0, 0)
    } else {
        (meta.key.src_port, meta.key.dst_port)
    };
    FlowKey {
        src: meta.key.src,
        dst: meta.key.dst,
        src_port: sport,
        dst_port: dport,
        proto: meta.key.proto,
        service,
    }
}

/// The first pass over a packet: parse it and, for the common case (TCP or UDP to a VIP
/// port of an L4 service, not a fragment, TTL left), find its service and flow hash.
/// `mtu` is the receiving port's (`None`: a port the snapshot does not know), `memo` the
/// burst's last VIP lookup. Reads only the packet and the snapshot; writes only `out`
/// and `memo`. ([`Engine::process_burst`] runs its two halves, [`parse_class`] and
/// [`route`], as two passes over the burst.)
#[inline(always)]
fn classify(
    snap: &Snapshot,
    flows: &FlowTable<FlowKey, FlowTarget>,
    mtu: Option<u16>,
    memo: &mut RouteMemo,
    data: &[u8],
    out: &mut Classified,
) {
    out.class = parse_class(mtu, data, &mut out.meta);
    if let Class::General = out.class {
        out.class = route(snap, flows, memo, &mut out.meta);
    }
}

/// [`classify`]'s first half: parses into `meta`; `Dropped` or (parsed) `General`.
#[inline(always)]
fn parse_class(mtu: Option<u16>, data: &[u8], meta: &mut Meta) -> Class {
    let Some(mtu) = mtu else {
        return Class::Dropped(DropReason::NotForUs);
    };
    match parse_into(data, mtu, meta) {
        Ok(()) => Class::General,
        Err(r) => Class::Dropped(r),
    }
}

/// A burst's last lookups: the VIP index's memo, and the forwarding of the service it
/// last answered (`None`: not an L4 service), so a burst to one service reads the
/// snapshot's service once.
struct RouteMemo {
    vip: VipMemo,
    last: Option<(ServiceId, Option<Forwarding>)>,
}

impl RouteMemo {
    const EMPTY: RouteMemo = RouteMemo {
        vip: VipMemo::EMPTY,
        last: None,
    };
}

/// [`classify`]'s second half, for a parsed packet: `Flow` (its forwarding and flow-table
/// bucket; the service is written into `meta`'s key) for the common case, else `General`.
#[inline(always)]
fn route(
    snap: &Snapshot,
    flows: &FlowTable<FlowKey, FlowTarget>,
    memo: &mut RouteMemo,
    meta: &mut Meta,
) -> Class {
    let l4 = meta.key.proto == IpProtocol::TCP.0 || meta.key.proto == IpProtocol::UDP.0;
    if meta.kind == L3::Arp || !l4 || meta.fragment || meta.ttl <= 1 {
        return Class::General;
    }
    let Some(id) = snap.vip_index.service_exact_memo(
        &mut memo.vip,
        &meta.key.dst,
        meta.is_v6(),
        meta.key.proto,
        meta.key.dst_port,
    ) else {
        return Class::General;
    };
    let fwd = match memo.last {
        Some((last, fwd)) if last == id => fwd,
        _ => {
            let fwd = snap.service(id).and_then(|s| match s.mode {
                ServiceMode::L4(fwd) => Some(fwd),
                ServiceMode::L7 => None,
            });
            memo.last = Some((id, fwd));
            fwd
        }
    };
    let Some(fwd) = fwd else {
        return Class::General;
    };
    // not a fragment: the parsed key with its service is the flow's key
    meta.key.service = id;
    Class::Flow {
        fwd,
        bucket: flows.bucket_of(flows.hash_of(&meta.key)),
    }
}

impl Engine {
    /// The flow's backend: the pinned one while it may keep the flow, else a new Maglev pick.
    #[allow(clippy::too_many_arguments)]
    fn pin<'s>(
        &mut self,
        snap: &'s Snapshot,
        service: &Service,
        fwd: Forwarding,
        key: &FlowKey,
        hash: u64,
        meta: &Meta,
        in_port: u16,
        client_mac: Mac,
        now: u32,
    ) -> Result<(&'s Backend, FlowTarget), DropReason> {
        let bucket = self.flows.bucket_of(hash);
        match self.pinned(snap, key, bucket, meta, now) {
            Some(found) => Ok(found),
            None => self.pin_new(snap, service, fwd, key, meta, in_port, client_mac, now),
        }
    }

    /// The backend a flow in the table is pinned to (and its NAT source), while that
    /// backend may keep the flow; `None` when the packet must be balanced afresh. The
    /// lookup advances the flow's TCP state. `bucket` is the key's flow-table bucket.
    #[inline(always)]
    fn pinned<'s>(
        &mut self,
        snap: &'s Snapshot,
        key: &FlowKey,
        bucket: usize,
        meta: &Meta,
        now: u32,
    ) -> Option<(&'s Backend, FlowTarget)> {
        let e = self.flows.lookup_entry_in_bucket(bucket, key, now)?;
        // Nearly every packet: an established flow (TCP or not) that this packet does
        // not close, which neither the reuse test nor the state machine changes (one
        // test instead of both).
        if e.state() != FlowState::Established
            || meta.tcp_flags & (tcp_flags::FIN | tcp_flags::RST) != 0
        {
            // A bare SYN on a flow that already closed (FIN or RST seen) is a new
            // connection reusing the 5-tuple (as IPVS's conn_reuse_mode): it is balanced
            // afresh, so it never lands on a backend that has since failed, drained or
            // left.
            let fresh_syn = meta.key.proto == IpProtocol::TCP.0
                && meta.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN;
            if fresh_syn && e.state() == FlowState::Closing {
                self.counters.flows_reused += 1;
                return None;
            }
            e.observe_tcp(meta.tcp_flags);
        }
        let v = *e.value();
        if let Some(b) = snap.backend(u32::from(v.backend)) {
            if b.keeps_flows(now) {
                return Some((b, v));
            }
        }
        self.counters.flows_repicked += 1;
        None
    }

    /// A new flow (or one whose backend may no longer keep it): a Maglev pick, a NAT
    /// port for `nat`, and the flow-table entry.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn pin_new<'s>(
        &mut self,
        snap: &'s Snapshot,
        service: &Service,
        fwd: Forwarding,
        key: &FlowKey,
        meta: &Meta,
        in_port: u16,
        client_mac: Mac,
        now: u32,
    ) -> Result<(&'s Backend, FlowTarget), DropReason> {
        // A new flow. The Maglev hash leaves out the local service id, so every fulcrum
        // with the same configuration picks the same backend for the same 5-tuple.
        let selection = FlowKey { service: 0, ..*key }.hash();
        let member = service
            .maglev
            .lookup(selection)
            .ok_or(DropReason::NoBackend)?;
        let id = *service
            .members
            .get(member as usize)
            .ok_or(DropReason::NoBackend)?;
        let b = snap.backend(id).ok_or(DropReason::NoBackend)?;
        let nat = if fwd == Forwarding::Nat {
            let bport = b.port.unwrap_or(meta.key.dst_port);
            // A SYN opens a handshake whose outcome passive health wants (answered,
            // refused, unreachable or timed out); a UDP flow's first datagram is
            // answered or unreachable (silence is normal for UDP).
            let syn = meta.key.proto == IpProtocol::TCP.0
                && meta.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN;
            let watched = service.connect_timeout_ms > 0;
            let awaiting = watched && (syn || meta.key.proto == IpProtocol::UDP.0);
            let src = self.alloc_nat_source(
                snap, b, bport, meta, service.id, in_port, client_mac, awaiting, now,
            )?;
            if watched && syn {
                let nk = NatKey {
                    backend: b.addr.into(),
                    lb: src.addr,
                    backend_port: bport,
                    lb_port: src.port,
                    proto: meta.key.proto,
                };
                self.watch
                    .push(nk, now.wrapping_add(service.connect_timeout_ms));
            }
            Some(src)
        } else {
            None
        };
        let target = FlowTarget {
            backend: id as u16,
            nat_port: nat.map_or(0, |n| n.port),
            nat_addr: nat.map_or(0, |n| n.addr_index),
        };
        // one insert, already in the state this packet's flags put the flow in
        let state = if meta.key.proto == IpProtocol::TCP.0 {
            if meta.tcp_flags & tcp_flags::SYN == 0 {
                self.counters.midstream_flows += 1;
            }
            FlowState::SynSeen.after_tcp_flags(meta.tcp_flags)
        } else {
            FlowState::Established
        };
        match self.flows.insert_with_state(*key, target, state, now) {
            InsertOutcome::Inserted => {}
            InsertOutcome::Replaced { old } => flow_ended(&mut self.backends, &old),
            InsertOutcome::Evicted { value, .. }
            | InsertOutcome::ExpiredReclaimed { value, .. } => {
                flow_ended(&mut self.backends, &value)
            }
        }
        if let Some(c) = self.backends.get_mut(id as usize) {
            c.active_flows += 1;
        }
        self.counters.new_flows += 1;
        if let Some(c) = self.backends.get_mut(id as usize) {
            c.new_flows += 1;
        }
        Ok((b, target))
    }

    /// A free full-NAT source towards backend `b`:`bport`: the next (address, port) of
    /// this worker's port range over the egress port's NAT source addresses, taken
    /// address by address in turn so flows spread evenly over them; its reverse entry is
    /// inserted here.
    #[allow(clippy::too_many_arguments)]
    fn alloc_nat_source(
        &mut self,
        snap: &Snapshot,
        b: &Backend,
        bport: u16,
        meta: &Meta,
        service: u16,
        in_port: u16,
        client_mac: Mac,
        awaiting_answer: bool,
        now: u32,
    ) -> Result<NatSource, DropReason> {
        // after a failed search, fail fast for a while instead of probing the table
        // NAT_PORT_TRIES times for every packet of a flood
        let slot = b.id as usize % NAT_EXHAUSTED_SLOTS;
        if self.nat_exhausted[slot].is_some_and(|until| now < until) {
            return Err(DropReason::NatPortsExhausted);
        }
        let sources = match snap.ports.get(b.egress_port as usize) {
            Some(out)
                if out
                    .nat_sources
                    .first()
                    .is_some_and(|a| a.to_v4().is_some() == b.addr.is_ipv4()) =>
            {
                &out.nat_sources[..out.nat_sources.len().min(256)]
            }
            _ => return Err(DropReason::NoNeighbor),
        };
        let range = snap.nat_ports.range(self.worker);
        let ports = range.end.saturating_sub(range.start);
        let addrs = sources.len() as u32;
        let n = ports * addrs;
        if n == 0 {
            return Err(DropReason::NatPortsExhausted);
        }
        for _ in 0..NAT_PORT_TRIES {
            self.nat_cursor = (self.nat_cursor + 1) % n;
            let addr_index = self.nat_cursor % addrs;
            let addr = sources[addr_index as usize];
            let port = (range.start + self.nat_cursor / addrs) as u16;
            let nk = NatKey {
                backend: b.addr.into(),
                lb: addr,
                backend_port: bport,
                lb_port: port,
                proto: meta.key.proto,
            };
            if self.nat.lookup(&nk, now).is_none() {
                let v = NatValue {
                    client: meta.key.src,
                    client_port: meta.key.src_port,
                    vip_port: meta.key.dst_port,
                    service,
                    in_port,
                    client_mac,
                    backend: b.id as u16,
                    awaiting_answer,
                };
                let _ = self.nat.insert(nk, v, now);
                self.counters.nat_sessions += 1;
                self.nat_exhausted[slot] = None;
                return Ok(NatSource {
                    addr_index: addr_index as u8,
                    addr,
                    port,
                });
            }
        }
        self.nat_exhausted[slot] = Some(now.wrapping_add(NAT_EXHAUSTED_BACKOFF_MS));
        Err(DropReason::NatPortsExhausted)
    }

    /// Counts the packet for backend `b` and rewrites it for the backend: the common
    /// 4in4 `ipip` frame here, everything else in [`rewrite`](Self::rewrite).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn send_to_backend<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        in_port: u16,
        pkt: &mut B,
        meta: &Meta,
        b: &Backend,
        fwd: Forwarding,
        flow: &FlowKey,
        target: FlowTarget,
    ) -> Verdict {
        let len = pkt.len();
        // The templates exist only with the next hop resolved and the port known, so the
        // fast paths need neither check (doing them first cost 18 instructions a packet).
        if let (Forwarding::Ipip, Some(t)) = (fwd, b.ipip4.as_ref()) {
            let ident = self.ident.wrapping_add(1);
            if let Some(outcome) = encapsulate_ipip4(pkt, meta, t, ident) {
                self.ident = ident;
                self.count_to_backend(b, len);
                return fast_verdict(b, outcome);
            }
        } else if let (Forwarding::Ipip, Some(t)) = (fwd, b.ipip6.as_ref()) {
            if let Some(v) = self.send_ipip6(pkt, meta, b, t, flow, len) {
                return v;
            }
        }
        let Some(mac) = b.next_hop_mac else {
            return Verdict::Drop(DropReason::NoNeighbor);
        };
        let Some(out) = snap.ports.get(b.egress_port as usize) else {
            return Verdict::Drop(DropReason::NoNeighbor);
        };
        self.count_to_backend(b, len);
        self.rewrite(snap, in_port, pkt, meta, b, mac, out, fwd, flow, target)
    }

    /// `ipip` to an IPv6 backend through its template ([`encapsulate_ipip6`]), counted;
    /// `None` when the packet is not the fast writer's case. Out of line, so the IPv4 fast
    /// path above stays as compact as it was (inlined, it cost that path 2-3%).
    #[inline(never)]
    fn send_ipip6<B: PacketBuf>(
        &mut self,
        pkt: &mut B,
        meta: &Meta,
        b: &Backend,
        t: &Ipip6Template,
        flow: &FlowKey,
        len: usize,
    ) -> Option<Verdict> {
        let outcome = encapsulate_ipip6(pkt, meta, t, flow.entropy())?;
        self.count_to_backend(b, len);
        Some(fast_verdict(b, outcome))
    }

    /// Counts a packet of `len` bytes sent to backend `b`.
    #[inline(always)]
    fn count_to_backend(&mut self, b: &Backend, len: usize) {
        if let Some(c) = self.backends.get_mut(b.id as usize) {
            c.packets += 1;
            c.bytes += len as u64;
        }
    }

    /// The rewrite of [`send_to_backend`](Self::send_to_backend) for every mode and
    /// frame: `dsr`, `ipip` and `gue` of any family and tagging, `nat`.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn rewrite<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        in_port: u16,
        pkt: &mut B,
        meta: &Meta,
        b: &Backend,
        mac: Mac,
        out: &PortInfo,
        fwd: Forwarding,
        flow: &FlowKey,
        target: FlowTarget,
    ) -> Verdict {
        let egress = Verdict::Forward {
            port: b.egress_port,
        };
        match fwd {
            Forwarding::Dsr => {
                dsr(pkt, mac, out.mac);
                egress
            }
            Forwarding::Ipip | Forwarding::Gue { .. } => {
                let encap = match fwd {
                    Forwarding::Gue { port } => Encap::Gue(port),
                    _ => Encap::Ipip,
                };
                self.ident = self.ident.wrapping_add(1);
                let entropy = flow.entropy();
                // a "too big" answer leaves by the port the packet came in on
                let reply_mac = snap.ports.get(in_port as usize).map_or(out.mac, |p| p.mac);
                match encapsulate(
                    pkt, meta, out, b.addr, mac, encap, entropy, self.ident, reply_mac,
                ) {
                    EncapOutcome::Done => egress,
                    EncapOutcome::ReplyTooBig => {
                        self.counters.too_big_sent += 1;
                        Verdict::Reply
                    }
                    EncapOutcome::Drop(r) => Verdict::Drop(r),
                }
            }
            Forwarding::Nat => {
                // the source the flow was given (reloads may only append to the list;
                // a changed port address still leaves index 0 in place)
                let Some(&src) = out.nat_sources.get(usize::from(target.nat_addr)) else {
                    return Verdict::Drop(DropReason::NoNatEntry);
                };
                // (every source of a port is of the port's family)
                if out.ipv4.is_some() != b.addr.is_ipv4() {
                    return Verdict::Drop(DropReason::NoNeighbor);
                }
                let dport = b.port.unwrap_or(meta.key.dst_port);
                nat_rewrite(
                    pkt.data_mut(),
                    meta,
                    src,
                    target.nat_port,
                    b.addr.into(),
                    dport,
                    mac,
                    out.mac,
                );
                egress
            }
        }
    }

    /// Traffic to the LB's own address: full-NAT replies, else the kernel.
    fn handle_lb<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        port: &PortInfo,
        pkt: &mut B,
        meta: &Meta,
        now: u32,
    ) -> Verdict {
        let l4 = meta.key.proto == IpProtocol::TCP.0 || meta.key.proto == IpProtocol::UDP.0;
        let icmp = meta.key.proto == IpProtocol::ICMP.0 || meta.key.proto == IpProtocol::ICMPV6.0;
        if icmp && meta.has_l4 && !meta.fragment {
            return self.icmp_to_lb(snap, pkt, meta, now);
        }
        if !(l4 && meta.has_l4 && !meta.fragment) {
            return Verdict::ToKernel;
        }
        let Some(owner) = snap.nat_ports.owner(meta.key.dst_port) else {
            return Verdict::ToKernel;
        };
        if owner != self.worker {
            return Verdict::HandOff { worker: owner };
        }
        let nk = NatKey {
            backend: meta.key.src,
            lb: meta.key.dst,
            backend_port: meta.key.src_port,
            lb_port: meta.key.dst_port,
            proto: meta.key.proto,
        };
        let Some(e) = self
            .nat
            .lookup_entry_hashed(self.nat.hash_of(&nk), &nk, now)
        else {
            // not a translation of ours: a socket of the LB host
            return Verdict::ToKernel;
        };
        e.observe_tcp(meta.tcp_flags);
        let v = *e.value();
        if v.awaiting_answer {
            // the first packet back decides the handshake: SYN-ACK or RST
            let outcome = if meta.key.proto != IpProtocol::TCP.0 {
                Some(ConnectOutcome::Answered)
            } else if meta.tcp_flags & tcp_flags::RST != 0 {
                Some(ConnectOutcome::Refused)
            } else if meta.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK)
                == tcp_flags::SYN | tcp_flags::ACK
            {
                Some(ConnectOutcome::Answered)
            } else {
                None
            };
            if let Some(o) = outcome {
                e.value_mut().awaiting_answer = false;
                self.connect_outcome(v.backend, o);
            }
        }
        if meta.ttl <= 1 {
            return Verdict::Drop(DropReason::TtlExceeded);
        }
        let Some(service) = snap
            .services
            .get(v.service as usize)
            .and_then(Option::as_ref)
        else {
            return Verdict::Drop(DropReason::NoNatEntry);
        };
        let out = if snap.ports.get(v.in_port as usize).is_some() {
            v.in_port
        } else {
            0
        };
        let out_mac = snap
            .ports
            .get(out as usize)
            .map(|p| p.mac)
            .unwrap_or(port.mac);
        nat_rewrite(
            pkt.data_mut(),
            meta,
            service.vip.into(),
            v.vip_port,
            v.client,
            v.client_port,
            v.client_mac,
            out_mac,
        );
        self.counters.nat_replies += 1;
        Verdict::Forward { port: out }
    }

    /// ICMP to the LB's own address. A destination-unreachable quoting a full-NAT
    /// translation's SYN is a failed connection attempt of its backend (passive health);
    /// the message then goes, like every other ICMP to the LB, to the kernel.
    fn icmp_to_lb<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        pkt: &mut B,
        meta: &Meta,
        now: u32,
    ) -> Verdict {
        let Some(body) = pkt.data().get(meta.l4..meta.l3 + meta.ip_len) else {
            return Verdict::Drop(DropReason::BadIcmp);
        };
        // the quoted packet: LB -> backend
        let quoted = if meta.is_v6() {
            match Icmpv6Packet::new_checked(body) {
                Ok(icmp) if icmp.msg_type() == ICMPV6_DEST_UNREACH => Quoted::of_v6(&icmp),
                _ => None,
            }
        } else {
            match Icmpv4Packet::new_checked(body) {
                Ok(icmp) if icmp.msg_type() == ICMP_DEST_UNREACH => Quoted::of_v4(&icmp),
                _ => None,
            }
        };
        let Some(Quoted {
            src: lb,
            dst: backend,
            sport: lb_port,
            dport: backend_port,
            proto,
        }) = quoted
        else {
            return Verdict::ToKernel;
        };
        if lb != meta.key.dst {
            return Verdict::ToKernel;
        }
        match snap.nat_ports.owner(lb_port) {
            Some(owner) if owner != self.worker => return Verdict::HandOff { worker: owner },
            Some(_) => {}
            None => return Verdict::ToKernel,
        }
        let nk = NatKey {
            backend,
            lb,
            backend_port,
            lb_port,
            proto,
        };
        if let Some(e) = self.nat.peek_mut(&nk, now) {
            let v = e.value_mut();
            if v.awaiting_answer {
                v.awaiting_answer = false;
                let b = v.backend;
                self.connect_outcome(b, ConnectOutcome::Unreachable);
            }
        }
        Verdict::ToKernel
    }

    /// ICMP to a VIP: echo is answered; an error quoting a flow goes to its backend.
    fn icmp_to_vip<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        in_port: u16,
        pkt: &mut B,
        meta: &Meta,
        now: u32,
    ) -> Verdict {
        if !meta.has_l4 || meta.fragment {
            return Verdict::Drop(DropReason::BadIcmp);
        }
        let Some(body) = pkt.data().get(meta.l4..meta.l3 + meta.ip_len) else {
            return Verdict::Drop(DropReason::BadIcmp);
        };
        let port_mac = snap
            .ports
            .get(in_port as usize)
            .map(|p| p.mac)
            .unwrap_or([0; 6]);
        // the quoted packet, sent by the VIP: VIP -> client
        let quoted = if meta.is_v6() {
            let Ok(icmp) = Icmpv6Packet::new_checked(body) else {
                return Verdict::Drop(DropReason::BadIcmp);
            };
            match icmp.msg_type() {
                ICMPV6_ECHO_REQUEST => {
                    return if echo_reply(pkt, meta, port_mac) {
                        self.counters.echo_replies += 1;
                        Verdict::Reply
                    } else {
                        Verdict::Drop(DropReason::BadIcmp)
                    };
                }
                ICMPV6_DEST_UNREACH | ICMPV6_PACKET_TOO_BIG | ICMPV6_TIME_EXCEEDED => {
                    Quoted::of_v6(&icmp)
                }
                _ => None,
            }
        } else {
            let Ok(icmp) = Icmpv4Packet::new_checked(body) else {
                return Verdict::Drop(DropReason::BadIcmp);
            };
            match icmp.msg_type() {
                ICMP_ECHO_REQUEST => {
                    return if echo_reply(pkt, meta, port_mac) {
                        self.counters.echo_replies += 1;
                        Verdict::Reply
                    } else {
                        Verdict::Drop(DropReason::BadIcmp)
                    };
                }
                ICMP_DEST_UNREACH | ICMP_TIME_EXCEEDED => Quoted::of_v4(&icmp),
                _ => None,
            }
        };
        let Some(Quoted {
            src: vip,
            dst: client,
            sport: vport,
            dport: cport,
            proto,
        }) = quoted
        else {
            return Verdict::Drop(DropReason::BadIcmp);
        };
        if vip != meta.key.dst {
            return Verdict::Drop(DropReason::BadIcmp);
        }
        let Some(service) = snap.service_for(meta.dst_ip(), proto, vport) else {
            return Verdict::Drop(DropReason::NoService);
        };
        let fwd = match service.mode {
            ServiceMode::L4(f) if f != Forwarding::Nat => f,
            _ => return Verdict::Drop(DropReason::BadIcmp),
        };
        let key = FlowKey {
            src: client,
            dst: vip,
            src_port: cport,
            dst_port: vport,
            proto,
            service: service.id,
        };
        // the flow's packets carry its ports; this one is ICMP, so pin by the quote
        let flow_meta = Meta {
            key,
            tcp_flags: 0,
            ..*meta
        };
        let hash = self.flows.hash_of(&key);
        let (backend, target) = match self.pin(
            snap, service, fwd, &key, hash, &flow_meta, in_port, [0; 6], now,
        ) {
            Ok(x) => x,
            Err(r) => return Verdict::Drop(r),
        };
        self.counters.icmp_errors_forwarded += 1;
        self.send_to_backend(snap, in_port, pkt, meta, backend, fwd, &key, target)
    }
}

/// A forward flow holding `value` ended (expired, evicted or replaced).
#[inline]
fn flow_ended(backends: &mut [BackendCounters], value: &FlowTarget) {
    if let Some(c) = backends.get_mut(usize::from(value.backend)) {
        c.active_flows = c.active_flows.saturating_sub(1);
    }
}

/// The source and destination ports at the start of an upper-layer header.
/// The addresses, ports and protocol of the packet an ICMP error quotes (the packet
/// it answers), as that packet carried them.
#[derive(Debug, Clone, Copy)]
struct Quoted {
    src: IpAddr16,
    dst: IpAddr16,
    sport: u16,
    dport: u16,
    proto: u8,
}

impl Quoted {
    fn of_v4(icmp: &Icmpv4Packet<&[u8]>) -> Option<Quoted> {
        let (ip, l4) = icmp.quoted().ok()?;
        let (sport, dport) = ports(l4)?;
        Some(Quoted {
            src: ip.src_addr().into(),
            dst: ip.dst_addr().into(),
            sport,
            dport,
            proto: ip.protocol().0,
        })
    }

    fn of_v6(icmp: &Icmpv6Packet<&[u8]>) -> Option<Quoted> {
        let (ip, l4) = icmp.quoted().ok()?;
        let (sport, dport) = ports(l4)?;
        Some(Quoted {
            src: ip.src_addr().into(),
            dst: ip.dst_addr().into(),
            sport,
            dport,
            proto: ip.extensions().ok()?.upper_protocol.0,
        })
    }
}

fn ports(l4: &[u8]) -> Option<(u16, u16)> {
    let p = l4.get(0..4)?;
    Some((
        u16::from_be_bytes([p[0], p[1]]),
        u16::from_be_bytes([p[2], p[3]]),
    ))
}

/// The source MAC of a frame.
fn src_mac(data: &[u8]) -> Mac {
    let mut m = [0u8; 6];
    if let Some(s) = data.get(6..12) {
        m.copy_from_slice(s);
    }
    m
}

/// A fragment carries no port (past the first): the service is the VIP's all-port
/// service for the protocol, else its only service for the protocol.
fn service_for_fragment(snap: &Snapshot, dst: IpAddr, proto: u8) -> Option<&Service> {
    if let Some(s) = snap.service_for(dst, proto, 0) {
        return Some(s);
    }
    let mut found = None;
    for s in snap.services.iter().flatten() {
        if s.vip == dst && s.proto == proto {
            if found.is_some() {
                return None;
            }
            found = Some(s);
        }
    }
    found
}
