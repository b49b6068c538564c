//! Engine tests on the fuzz fixture ([`super::fuzzing::FIXTURE_YAML`]): exact outputs of
//! every forwarding mode, the replies fulcrum generates, every drop reason a packet can
//! reach, flows across snapshot changes, and properties checked with an independent
//! parser (etherparse) and an independent checksum.
//!
//! Packets are built with etherparse's `PacketBuilder`; header fields it does not expose
//! (DSCP, DF, fragments, VLAN tags) are patched in here and the checksums redone with
//! this module's own one's-complement sum, not fulcrum's.

mod corpus;
mod drops;
mod modes;
mod nat;
mod outcomes;
mod props;
mod replies;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

use crate::buffer::{HeapBuf, PacketBuf};
use crate::engine::fuzzing::{self, GUE_PORT, PORT_MACS};
use crate::engine::{Backend, Engine, Mac, Snapshot, Verdict};

/// The client's MAC (or its router's).
pub const CLIENT_MAC: Mac = [0x02, 0xcc, 0, 0, 0, 0x01];

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn snap() -> &'static Snapshot {
    fuzzing::fixture()
}

pub fn engine(worker: u16) -> Engine {
    fuzzing::engine(worker, 4096)
}

/// A TCP or UDP packet to build.
#[derive(Debug, Clone)]
pub struct Spec {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub udp: bool,
    pub syn: bool,
    pub ttl: u8,
    pub payload: Vec<u8>,
    pub vlan: Option<u16>,
    /// IPv4 DSCP+ECN byte / IPv6 traffic class.
    pub tos: u8,
    /// IPv4 DF.
    pub df: bool,
}

impl Spec {
    pub fn tcp(src: &str, sport: u16, dst: &str, dport: u16) -> Spec {
        Spec {
            src: ip(src),
            dst: ip(dst),
            sport,
            dport,
            udp: false,
            syn: true,
            ttl: 64,
            payload: Vec::new(),
            vlan: None,
            tos: 0,
            df: true,
        }
    }
    pub fn udp(src: &str, sport: u16, dst: &str, dport: u16) -> Spec {
        Spec {
            udp: true,
            syn: false,
            payload: b"query".to_vec(),
            ..Spec::tcp(src, sport, dst, dport)
        }
    }
    pub fn payload(mut self, n: usize) -> Spec {
        self.payload = (0..n).map(|i| (i * 7 + 3) as u8).collect();
        self
    }
    pub fn ack(mut self) -> Spec {
        self.syn = false;
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let eth = PacketBuilder::ethernet2(CLIENT_MAC, PORT_MACS[0]);
        let ipb = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), self.ttl),
            (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), self.ttl),
            _ => panic!("mixed families"),
        };
        let mut out = Vec::new();
        if self.udp {
            ipb.udp(self.sport, self.dport)
                .write(&mut out, &self.payload)
                .unwrap();
        } else {
            let t = ipb.tcp(self.sport, self.dport, 1000, 65535);
            let t = if self.syn { t.syn() } else { t.ack(1) };
            t.write(&mut out, &self.payload).unwrap();
        }
        // fields the builder does not take
        if self.src.is_ipv4() {
            out[15] = self.tos;
            out[20] = if self.df { 0x40 } else { 0 };
            out[21] = 0;
            fix_ipv4_header(&mut out, 14);
        } else {
            let w = u32::from_be_bytes([out[14], out[15], out[16], out[17]]);
            let w = (w & 0xf00f_ffff) | (self.tos as u32) << 20;
            out[14..18].copy_from_slice(&w.to_be_bytes());
        }
        if let Some(id) = self.vlan {
            add_vlan(&mut out, id);
        }
        out
    }
}

/// Inserts an 802.1Q tag after the MAC addresses.
pub fn add_vlan(frame: &mut Vec<u8>, id: u16) {
    let tag = [0x81, 0x00, (id >> 8) as u8 & 0x0f, id as u8];
    frame.splice(12..12, tag);
}

/// The one's-complement sum of `parts` (each an even length but the last), folded.
pub fn ones_sum(parts: &[&[u8]]) -> u16 {
    let mut acc: u64 = 0;
    let mut odd: Option<u8> = None;
    for p in parts {
        for &b in *p {
            match odd.take() {
                None => odd = Some(b),
                Some(hi) => acc += u64::from(u16::from_be_bytes([hi, b])),
            }
        }
    }
    if let Some(hi) = odd {
        acc += u64::from(hi) << 8;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Recomputes the IPv4 header checksum of the header at `l3`.
pub fn fix_ipv4_header(frame: &mut [u8], l3: usize) {
    let hl = (frame[l3] & 0x0f) as usize * 4;
    frame[l3 + 10..l3 + 12].fill(0);
    let c = !ones_sum(&[&frame[l3..l3 + hl]]);
    frame[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
}

fn pseudo(src: &[u8], dst: &[u8], proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(src);
    p.extend_from_slice(dst);
    if src.len() == 4 {
        p.extend_from_slice(&[0, proto]);
        p.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        p.extend_from_slice(&(len as u32).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, proto]);
    }
    p
}

/// What [`check_frame`] found, outermost first.
#[derive(Debug, Default, Clone)]
pub struct Layers {
    /// IP protocol numbers of each IP layer's payload.
    pub protos: Vec<u8>,
    /// Whether an ICMP / ICMPv6 message was checked.
    pub icmp: bool,
}

/// Parses `frame` with etherparse and verifies every checksum (IPv4 header, TCP, UDP,
/// ICMP, ICMPv6), recursing into IP-in-IP and GUE. Panics with the reason otherwise.
pub fn check_frame(frame: &[u8]) -> Layers {
    let p = SlicedPacket::from_ethernet(frame)
        .unwrap_or_else(|e| panic!("etherparse refuses {frame:02x?}: {e:?}"));
    let mut layers = Layers::default();
    check_sliced(&p, &mut layers, 0);
    layers
}

fn check_sliced(p: &SlicedPacket<'_>, layers: &mut Layers, depth: u8) {
    let (src, dst, payload, proto, fragmented) = match &p.net {
        Some(NetSlice::Ipv4(v4)) => {
            let h = v4.header();
            assert_eq!(ones_sum(&[h.slice()]), 0xffff, "IPv4 header checksum");
            (
                h.source().to_vec(),
                h.destination().to_vec(),
                v4.payload().payload,
                h.protocol().0,
                v4.is_payload_fragmented(),
            )
        }
        Some(NetSlice::Ipv6(v6)) => {
            let h = v6.header();
            (
                h.source().to_vec(),
                h.destination().to_vec(),
                v6.payload().payload,
                v6.payload().ip_number.0,
                v6.is_payload_fragmented(),
            )
        }
        Some(NetSlice::Arp(_)) => return,
        None => panic!("no network layer"),
    };
    layers.protos.push(proto);
    if fragmented {
        return;
    }
    let v4 = src.len() == 4;
    let sum = |data: &[u8]| ones_sum(&[&pseudo(&src, &dst, proto, data.len()), data]);
    match &p.transport {
        Some(TransportSlice::Tcp(t)) => assert_eq!(sum(t.slice()), 0xffff, "TCP checksum"),
        Some(TransportSlice::Udp(u)) => {
            let zero_ok = v4 && u.checksum() == 0;
            assert!(zero_ok || sum(u.slice()) == 0xffff, "UDP checksum");
            if u.destination_port() == GUE_PORT && depth == 0 {
                let inner = SlicedPacket::from_ip(u.payload())
                    .unwrap_or_else(|e| panic!("GUE payload: {e:?}"));
                check_sliced(&inner, layers, depth + 1);
            }
        }
        Some(TransportSlice::Icmpv4(i)) => {
            assert_eq!(ones_sum(&[i.slice()]), 0xffff, "ICMP checksum");
            layers.icmp = true;
        }
        Some(TransportSlice::Icmpv6(i)) => {
            assert_eq!(sum(i.slice()), 0xffff, "ICMPv6 checksum");
            layers.icmp = true;
        }
        Some(TransportSlice::Igmp(_)) => {}
        None => {
            if (proto == 4 || proto == 41) && depth == 0 {
                let inner = SlicedPacket::from_ip(payload)
                    .unwrap_or_else(|e| panic!("IP-in-IP payload: {e:?}"));
                check_sliced(&inner, layers, depth + 1);
            }
        }
    }
}

/// Runs `frame` through `engine` on port `in_port`: the verdict and the frame after.
pub fn process(engine: &mut Engine, in_port: u16, frame: &[u8]) -> (Verdict, Vec<u8>) {
    let mut b = HeapBuf::from_slice(frame);
    let v = engine.process(snap(), in_port, &mut b, 1000);
    (v, b.data().to_vec())
}

/// The backend of the fixture at `addr`.
pub fn backend_at(addr: IpAddr) -> &'static Backend {
    snap()
        .backends
        .iter()
        .flatten()
        .find(|b| b.addr == addr)
        .unwrap_or_else(|| panic!("no backend {addr}"))
}

/// The backends of the fixture's service `name`.
pub fn members(name: &str) -> Vec<&'static Backend> {
    let s = snap()
        .services
        .iter()
        .flatten()
        .find(|s| s.name == name)
        .unwrap();
    s.members
        .iter()
        .map(|id| snap().backend(*id).unwrap())
        .collect()
}

/// The backend whose MAC `mac` is, among the backends of `service`.
pub fn backend_by_mac(service: &str, mac: &[u8]) -> &'static Backend {
    members(service)
        .into_iter()
        .find(|b| b.next_hop_mac.as_ref().map(|m| &m[..]) == Some(mac))
        .unwrap_or_else(|| panic!("{mac:02x?} is no backend of {service}"))
}

pub fn v4(frame: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(frame[at], frame[at + 1], frame[at + 2], frame[at + 3])
}

pub fn v6(frame: &[u8], at: usize) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&frame[at..at + 16]);
    Ipv6Addr::from(o)
}

pub fn be16(frame: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([frame[at], frame[at + 1]])
}

#[test]
fn fixture_builds_with_every_mode() {
    let s = snap();
    assert_eq!(s.ports.len(), 2);
    assert_eq!(s.services.iter().flatten().count(), 14);
    assert!(fuzzing::fixture_mac(ip("10.0.0.11")).is_some());
    assert!(backend_at(ip("10.0.0.61")).next_hop_mac.is_none());
}
