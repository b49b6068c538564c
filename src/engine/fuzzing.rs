//! Support for the `engine` fuzz target, the engine tests and the engine benchmarks:
//! a fixed configuration with a service in every forwarding mode, and [`run`], the body
//! of the fuzz target.
//!
//! Not part of fulcrum's interface: hidden from the docs, used by `fuzz/`, `benches/`
//! and the engine's tests.
//!
//! # Fuzz input
//!
//! A run of records, each `ctrl: u8, len: u16 (little endian), frame: len bytes` (the
//! last frame may be cut short by the end of the input). `ctrl` bit 0 picks the engine
//! (worker 0 or 1), bit 1 the receiving port (0 or 1), bit 2 asks for the frame's IPv4
//! header and upper-layer checksums to be recomputed before it is processed (so the
//! fuzzer gets past checksum checks), and bits 3-7 advance the engine clock by that
//! many seconds.

use std::net::IpAddr;
use std::sync::OnceLock;

use crate::buffer::{HeapBuf, PacketBuf, DEFAULT_BUF_SIZE};
use crate::config::{self, Host};
use crate::control::{build_snapshot, IdRegistry, NeighborTable, Overrides};
use crate::flow::FlowTimeouts;
use crate::wire::checksum::PseudoHeader;
use crate::wire::{
    EtherType, EthernetFrame, Icmpv4Packet, Icmpv6Packet, IpProtocol, Ipv4Packet, Ipv6Packet,
    TcpPacket, UdpPacket,
};

use super::parse::{parse, L3};
use super::{Engine, EngineConfig, Mac, Snapshot, Verdict};

/// The MACs of the fixture's two ports.
pub const PORT_MACS: [Mac; 2] = [[0x02, 0xfc, 0, 0, 0, 0xa0], [0x02, 0xfc, 0, 0, 0, 0xa1]];

/// The GUE port of the fixture's `gue` services.
pub const GUE_PORT: u16 = 6080;

/// Flow timeouts of the fixture's engines (short, so the fuzzer reaches expiry).
pub const TIMEOUTS: FlowTimeouts = FlowTimeouts {
    tcp_established: 60_000,
    tcp_transitory: 10_000,
    udp: 20_000,
};

/// The fixture: port 0 is IPv4 10.0.0.2/24, port 1 IPv6 fd00::2/64, both MTU 1500, every
/// backend a static neighbour (MAC `02:00:00:00:04:NN` for 10.0.0.NN, `02:00:00:00:06:NN`
/// for fd00::NN) except 10.0.0.61 (service `unresolved`). VIPs: 10.1.0.1 / fd01::1 dsr,
/// 10.1.0.2 / fd01::2 ipip (4in4, 6in6), 10.1.0.3 ipip 4in6, 10.1.0.4 / fd01::4 gue,
/// 10.1.0.5 / fd01::5 nat, 10.1.0.6 dsr with an unresolved backend.
pub const FIXTURE_YAML: &str = r#"
dpdk:
  eal_args: ["--no-pci", "--vdev=net_null0", "--vdev=net_null1"]
ports:
  - name: v4
    device: net_null0
    address: 10.0.0.2/24
    mtu: 1500
    neighbors:
      - { address: 10.0.0.11, mac: "02:00:00:00:04:11" }
      - { address: 10.0.0.12, mac: "02:00:00:00:04:12" }
      - { address: 10.0.0.13, mac: "02:00:00:00:04:13" }
      - { address: 10.0.0.21, mac: "02:00:00:00:04:21" }
      - { address: 10.0.0.22, mac: "02:00:00:00:04:22" }
      - { address: 10.0.0.23, mac: "02:00:00:00:04:23" }
      - { address: 10.0.0.24, mac: "02:00:00:00:04:24" }
      - { address: 10.0.0.41, mac: "02:00:00:00:04:41" }
      - { address: 10.0.0.42, mac: "02:00:00:00:04:42" }
      - { address: 10.0.0.43, mac: "02:00:00:00:04:43" }
      - { address: 10.0.0.51, mac: "02:00:00:00:04:51" }
      - { address: 10.0.0.52, mac: "02:00:00:00:04:52" }
      - { address: 10.0.0.53, mac: "02:00:00:00:04:53" }
      - { address: 10.0.0.54, mac: "02:00:00:00:04:54" }
  - name: v6
    device: net_null1
    address: fd00::2/64
    mtu: 1500
    neighbors:
      - { address: "fd00::11", mac: "02:00:00:00:06:11" }
      - { address: "fd00::12", mac: "02:00:00:00:06:12" }
      - { address: "fd00::21", mac: "02:00:00:00:06:21" }
      - { address: "fd00::22", mac: "02:00:00:00:06:22" }
      - { address: "fd00::31", mac: "02:00:00:00:06:31" }
      - { address: "fd00::32", mac: "02:00:00:00:06:32" }
      - { address: "fd00::41", mac: "02:00:00:00:06:41" }
      - { address: "fd00::51", mac: "02:00:00:00:06:51" }
      - { address: "fd00::52", mac: "02:00:00:00:06:52" }
workers:
  cores: [0, 1]
services:
  - name: dsr4
    vip: 10.1.0.1
    port: 80
    forwarding: dsr
    maglev_table_size: 1009
    backends: [{ address: 10.0.0.11 }, { address: 10.0.0.12 }, { address: 10.0.0.13 }]
  - name: dsr4-udp
    vip: 10.1.0.1
    port: 53
    protocol: udp
    forwarding: dsr
    maglev_table_size: 1009
    backends: [{ address: 10.0.0.11 }, { address: 10.0.0.12 }]
  - name: dsr6
    vip: "fd01::1"
    port: 80
    forwarding: dsr
    maglev_table_size: 1009
    backends: [{ address: "fd00::11" }, { address: "fd00::12" }]
  - name: ipip4
    vip: 10.1.0.2
    port: 80
    forwarding: ipip
    maglev_table_size: 1009
    backends: [{ address: 10.0.0.21 }, { address: 10.0.0.22 }]
  - name: ipip4-udp-all
    vip: 10.1.0.2
    protocol: udp
    forwarding: ipip
    maglev_table_size: 1009
    backends: [{ address: 10.0.0.23 }, { address: 10.0.0.24 }]
  - name: ipip6
    vip: "fd01::2"
    port: 80
    forwarding: ipip
    maglev_table_size: 1009
    backends: [{ address: "fd00::21" }, { address: "fd00::22" }]
  - name: ipip46
    vip: 10.1.0.3
    port: 80
    forwarding: ipip
    maglev_table_size: 1009
    backends: [{ address: "fd00::31" }, { address: "fd00::32" }]
  - name: gue4
    vip: 10.1.0.4
    port: 443
    forwarding: gue
    gue_port: 6080
    maglev_table_size: 1009
    backends: [{ address: 10.0.0.41 }, { address: 10.0.0.42 }]
  - name: gue4-udp
    vip: 10.1.0.4
    port: 53
    protocol: udp
    forwarding: gue
    gue_port: 6080
    maglev_table_size: 1009
    backends: [{ address: 10.0.0.43 }]
  - name: gue6
    vip: "fd01::4"
    port: 443
    forwarding: gue
    gue_port: 6080
    maglev_table_size: 1009
    backends: [{ address: "fd00::41" }]
  - name: nat4
    vip: 10.1.0.5
    port: 80
    forwarding: nat
    maglev_table_size: 1009
    backends:
      - { address: 10.0.0.51, port: 8080 }
      - { address: 10.0.0.52, port: 8080 }
      - { address: 10.0.0.53 }
  - name: nat4-udp
    vip: 10.1.0.5
    port: 53
    protocol: udp
    forwarding: nat
    maglev_table_size: 1009
    backends: [{ address: 10.0.0.54 }]
  - name: nat6
    vip: "fd01::5"
    port: 80
    forwarding: nat
    maglev_table_size: 1009
    backends: [{ address: "fd00::51", port: 8080 }, { address: "fd00::52" }]
  - name: unresolved
    vip: 10.1.0.6
    port: 80
    forwarding: dsr
    maglev_table_size: 1009
    backends: [{ address: 10.0.0.61 }]
"#;

/// Validates `yaml` and builds a snapshot from it with [`PORT_MACS`], ids from `reg`,
/// `workers` NAT port ranges, at engine time 0.
pub fn snapshot_from_yaml(
    yaml: &str,
    reg: &mut IdRegistry,
    workers: u16,
    generation: u64,
) -> Result<Snapshot, String> {
    let loaded = config::from_str("fixture.yaml", yaml, &Host::with_cpus(64)).map_err(|d| {
        d.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let mut neigh = NeighborTable::default();
    build_snapshot(
        &loaded.config,
        &PORT_MACS,
        reg,
        &mut neigh,
        &Overrides::default(),
        workers,
        0,
        generation,
    )
    .map_err(|e| e.to_string())
}

/// The snapshot of [`FIXTURE_YAML`] for two workers, built once.
pub fn fixture() -> &'static Snapshot {
    static SNAP: OnceLock<Snapshot> = OnceLock::new();
    SNAP.get_or_init(|| {
        match snapshot_from_yaml(FIXTURE_YAML, &mut IdRegistry::default(), 2, 1) {
            Ok(s) => s,
            // a constant configuration; `fixture_builds` in the engine tests proves it valid
            Err(e) => panic!("the fuzz fixture does not build: {e}"),
        }
    })
}

/// An engine for `worker` with `capacity` flows and [`TIMEOUTS`].
pub fn engine(worker: u16, capacity: usize) -> Engine {
    match Engine::new(EngineConfig {
        worker,
        flow_capacity: capacity,
        timeouts: TIMEOUTS,
    }) {
        Ok(e) => e,
        Err(e) => panic!("flow table of {capacity} entries: {e:?}"),
    }
}

/// Appends one fuzz-input record (see the module doc) to `out`.
pub fn encode_record(ctrl: u8, frame: &[u8], out: &mut Vec<u8>) {
    let len = frame.len().min(u16::MAX as usize);
    out.push(ctrl);
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(&frame[..len]);
}

/// The records of a fuzz input: `(ctrl, frame)`.
pub fn records(mut data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (&ctrl, rest) = data.split_first()?;
        let (len, rest) = match rest {
            [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]) as usize, rest),
            _ => (0, rest),
        };
        let (frame, rest) = rest.split_at(len.min(rest.len()));
        data = rest;
        Some((ctrl, frame))
    })
}

/// Recomputes the IPv4 header checksum and the TCP / UDP / ICMP / ICMPv6 checksum of an
/// Ethernet frame, where the headers are whole. Never panics; leaves what it cannot
/// make sense of alone.
pub fn fix_checksums(frame: &mut [u8]) {
    let Ok(eth) = EthernetFrame::new_checked(&frame[..]) else {
        return;
    };
    let Ok(nl) = eth.network_layer() else {
        return;
    };
    let Some(ip) = frame.get_mut(nl.offset..) else {
        return;
    };
    match nl.ethertype {
        EtherType::IPV4 => fix_ipv4(ip),
        EtherType::IPV6 => fix_ipv6(ip),
        _ => {}
    }
}

fn fix_ipv4(ip: &mut [u8]) {
    let Ok(p) = Ipv4Packet::new_checked(&ip[..]) else {
        if let Ok(mut p) = Ipv4Packet::new_checked_header(ip) {
            p.fill_checksum();
        }
        return;
    };
    let (hl, total, proto) = (p.header_len(), p.total_len() as usize, p.protocol());
    let pseudo = PseudoHeader::V4 {
        src: p.src_addr(),
        dst: p.dst_addr(),
    };
    let first = p.frag_offset() == 0 && !p.more_frags();
    if first {
        if let Some(l4) = ip.get_mut(hl..total) {
            fix_l4(proto, l4, &pseudo);
        }
    }
    let mut p = Ipv4Packet::new_unchecked(ip);
    p.fill_checksum();
}

fn fix_ipv6(ip: &mut [u8]) {
    let Ok(p) = Ipv6Packet::new_checked(&ip[..]) else {
        return;
    };
    let Ok(ext) = p.extensions() else {
        return;
    };
    if ext.fragment.is_some() {
        return;
    }
    let pseudo = PseudoHeader::V6 {
        src: p.src_addr(),
        dst: p.dst_addr(),
    };
    let total = p.total_len();
    if let Some(l4) = ip.get_mut(ext.upper_offset..total) {
        fix_l4(ext.upper_protocol, l4, &pseudo);
    }
}

fn fix_l4(proto: IpProtocol, l4: &mut [u8], pseudo: &PseudoHeader) {
    match proto {
        IpProtocol::TCP => {
            if let Ok(mut t) = TcpPacket::new_checked(l4) {
                t.fill_checksum(pseudo);
            }
        }
        IpProtocol::UDP => {
            if let Ok(mut u) = UdpPacket::new_checked(l4) {
                u.fill_checksum(pseudo);
            }
        }
        IpProtocol::ICMP => {
            if let Ok(mut i) = Icmpv4Packet::new_checked(l4) {
                i.fill_checksum();
            }
        }
        IpProtocol::ICMPV6 => {
            if let (Ok(mut i), PseudoHeader::V6 { src, dst }) =
                (Icmpv6Packet::new_checked(l4), pseudo)
            {
                i.fill_checksum(src, dst);
            }
        }
        _ => {}
    }
}

/// Whether every checksum of an Ethernet frame verifies: the IPv4 header checksum, the
/// TCP / UDP / ICMP / ICMPv6 checksum of unfragmented packets, and the same for packets
/// carried inside (IP in IP, GUE to [`GUE_PORT`]). Non-IP frames pass; a frame fulcrum
/// cannot parse fails.
pub fn frame_checksums_ok(frame: &[u8]) -> bool {
    let Ok(meta) = parse(frame, u16::MAX) else {
        return false;
    };
    match meta.kind {
        L3::Arp => true,
        L3::V4 | L3::V6 => frame
            .get(meta.l3..meta.l3 + meta.ip_len)
            .is_some_and(|ip| ip_checksums_ok(ip, 0)),
    }
}

fn ip_checksums_ok(ip: &[u8], depth: u8) -> bool {
    match ip.first().map(|b| b >> 4) {
        Some(4) => {
            let Ok(p) = Ipv4Packet::new_checked(ip) else {
                return false;
            };
            if !p.verify_checksum() {
                return false;
            }
            if p.is_fragment() {
                return true;
            }
            let pseudo = PseudoHeader::V4 {
                src: p.src_addr(),
                dst: p.dst_addr(),
            };
            ip.get(p.header_len()..p.total_len() as usize)
                .is_some_and(|l4| l4_checksums_ok(p.protocol(), l4, &pseudo, depth))
        }
        Some(6) => {
            let Ok(p) = Ipv6Packet::new_checked(ip) else {
                return false;
            };
            let Ok(ext) = p.extensions() else {
                return false;
            };
            if ext.fragment.is_some() {
                return true;
            }
            let pseudo = PseudoHeader::V6 {
                src: p.src_addr(),
                dst: p.dst_addr(),
            };
            ip.get(ext.upper_offset..p.total_len())
                .is_some_and(|l4| l4_checksums_ok(ext.upper_protocol, l4, &pseudo, depth))
        }
        _ => false,
    }
}

fn l4_checksums_ok(proto: IpProtocol, l4: &[u8], pseudo: &PseudoHeader, depth: u8) -> bool {
    match proto {
        IpProtocol::TCP => TcpPacket::new_checked(l4).is_ok_and(|t| t.verify_checksum(pseudo)),
        IpProtocol::UDP => {
            let Ok(u) = UdpPacket::new_checked(l4) else {
                return false;
            };
            if !u.verify_checksum(pseudo) {
                return false;
            }
            if u.dst_port() == GUE_PORT && depth == 0 {
                return ip_checksums_ok(u.payload(), depth + 1);
            }
            true
        }
        IpProtocol::ICMP => Icmpv4Packet::new_checked(l4).is_ok_and(|i| i.verify_checksum()),
        IpProtocol::ICMPV6 => match pseudo {
            PseudoHeader::V6 { src, dst } => {
                Icmpv6Packet::new_checked(l4).is_ok_and(|i| i.verify_checksum(src, dst))
            }
            PseudoHeader::V4 { .. } => true,
        },
        IpProtocol::IPIP | IpProtocol::IPV6 if depth == 0 => ip_checksums_ok(l4, depth + 1),
        _ => true,
    }
}

/// Checks what the engine did with one packet; `input` is the frame it was given,
/// `input_ok` whether its checksums verified. Panics on a broken invariant: the buffer
/// kept its size, a forwarded or answered frame parses (within the egress port's MTU)
/// and its checksums verify when the input's did, a hand-off left the packet unchanged.
pub fn check_verdict(
    snap: &Snapshot,
    in_port: u16,
    input: &[u8],
    input_ok: bool,
    out: &HeapBuf,
    verdict: Verdict,
) {
    assert_eq!(
        out.headroom() + out.len() + out.tailroom(),
        DEFAULT_BUF_SIZE.max(crate::buffer::DEFAULT_HEADROOM + input.len()),
        "the buffer changed size"
    );
    let egress = match verdict {
        Verdict::Forward { port } => port,
        Verdict::Reply => in_port,
        Verdict::HandOff { .. } => {
            assert_eq!(out.data(), input, "a hand-off changed the packet");
            return;
        }
        Verdict::ToKernel | Verdict::ToControl | Verdict::Drop(_) => return,
    };
    let Some(port) = snap.ports.get(egress as usize) else {
        panic!("{verdict:?} to a port that does not exist");
    };
    let data = out.data();
    if let Err(r) = parse(data, port.mtu) {
        panic!("{verdict:?}: the emitted frame does not parse ({r:?}): {data:02x?}");
    }
    if input_ok {
        assert!(
            frame_checksums_ok(data),
            "{verdict:?}: a bad checksum in the emitted frame {data:02x?} (input {input:02x?})"
        );
    }
}

/// The address `addr` in the fixture has a static neighbour entry.
pub fn fixture_mac(addr: IpAddr) -> Option<Mac> {
    fixture()
        .backends
        .iter()
        .flatten()
        .find(|b| b.addr == addr)
        .and_then(|b| b.next_hop_mac)
}

/// The body of the `engine` fuzz target: runs every record of `data` through two fresh
/// engines (64 flows each, so eviction happens) on the fixture, checking every verdict
/// with [`check_verdict`] and carrying hand-offs to the owning engine.
pub fn run(data: &[u8]) {
    let snap = fixture();
    let mut engines = [engine(0, 64), engine(1, 64)];
    let mut now: u32 = 1;
    for (ctrl, frame) in records(data) {
        let w = (ctrl & 1) as usize;
        let in_port = ((ctrl >> 1) & 1) as u16;
        now = now.wrapping_add((ctrl >> 3) as u32 * 1000);
        let mut input = [0u8; DEFAULT_BUF_SIZE];
        let n = frame
            .len()
            .min(DEFAULT_BUF_SIZE - crate::buffer::DEFAULT_HEADROOM);
        input[..n].copy_from_slice(&frame[..n]);
        let input = &mut input[..n];
        if ctrl & 4 != 0 {
            fix_checksums(input);
        }
        let input_ok = frame_checksums_ok(input);
        let mut pkt = HeapBuf::from_slice(input);
        let v = engines[w].process(snap, in_port, &mut pkt, now);
        check_verdict(snap, in_port, input, input_ok, &pkt, v);
        if let Verdict::HandOff { worker } = v {
            let Some(owner) = engines.get_mut(worker as usize) else {
                panic!("hand-off to worker {worker}, of 2");
            };
            let v2 = owner.process(snap, in_port, &mut pkt, now);
            assert!(
                !matches!(v2, Verdict::HandOff { .. }),
                "worker {worker} handed its own packet off: {v2:?}"
            );
            check_verdict(snap, in_port, input, input_ok, &pkt, v2);
        }
        engines[w].housekeeping(snap, now, 8);
    }
}
