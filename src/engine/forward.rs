//! Step 3 of the data path: rewrite the packet for its backend.
//!
//! - [`dsr`]: Layer-2 direct server return, only the MACs change.
//! - [`encapsulate`]: `ipip` (4in4, 6in6, 4in6) and `gue` (direct-IP GUE over UDP) in
//!   front of the untouched client packet; the backend answers the client directly.
//! - [`nat_rewrite`]: full NAT's address and port rewrite, checksums updated
//!   incrementally (RFC 1624).

use std::net::{IpAddr, Ipv4Addr};

use crate::buffer::{BufError, PacketBuf};
use crate::flow::IpAddr16;
use crate::wire::checksum;
use crate::wire::{EthernetAddress, EthernetFrame, IpProtocol, Ipv6Packet, UdpPacket};

use super::parse::{Meta, IPV4_HEADER_LEN, IPV6_HEADER_LEN, L3, UDP_HEADER_LEN};
use super::reply::{set_inner_ethertype, too_big, DEFAULT_TTL};
use super::snapshot::{Mac, PortInfo};
use super::DropReason;

/// An untagged Ethernet header.
const ETHERNET_HEADER_LEN: usize = 14;

/// First UDP source port of GUE packets; the rest of the range comes from the flow hash
/// so ECMP paths towards the backends spread flows.
pub const GUE_SPORT_BASE: u16 = 0x8000;
/// Mask of the flow-hash bits in the GUE source port.
pub const GUE_SPORT_MASK: u16 = 0x7fff;

/// How a packet is wrapped for its backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encap {
    /// IP in IP.
    Ipip,
    /// GUE (direct IP) to this UDP port.
    Gue(u16),
}

/// What to do after [`encapsulate`] refused the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncapOutcome {
    /// Encapsulated: forward it.
    Done,
    /// Too big with DF: the packet is now the ICMP error for the client.
    ReplyTooBig,
    /// Dropped for this reason.
    Drop(DropReason),
}

#[inline]
fn set_macs(data: &mut [u8], dst: Mac, src: Mac) {
    let mut eth = EthernetFrame::new_unchecked(data);
    eth.set_dst_addr(EthernetAddress(dst));
    eth.set_src_addr(EthernetAddress(src));
}

/// L2 DSR: the frame goes to the backend's MAC unchanged otherwise.
#[inline]
pub fn dsr<B: PacketBuf>(pkt: &mut B, backend_mac: Mac, port_mac: Mac) {
    set_macs(pkt.data_mut(), backend_mac, port_mac);
}

/// Wraps the IP packet at `meta.l3` in an outer IP (and UDP for GUE) header from the
/// port's address to `backend`. `hash` is the inner flow's hash (GUE source port, IPv6
/// flow label); `ident` the outer IPv4 identification; `reply_mac` the MAC of the port
/// the packet came in on, the source of a "too big" answer.
#[allow(clippy::too_many_arguments)]
pub fn encapsulate<B: PacketBuf>(
    pkt: &mut B,
    meta: &Meta,
    port: &PortInfo,
    backend: IpAddr,
    backend_mac: Mac,
    encap: Encap,
    hash: u64,
    ident: u16,
    reply_mac: Mac,
) -> EncapOutcome {
    let outer_v6 = backend.is_ipv6();
    let ip_hdr = if outer_v6 {
        IPV6_HEADER_LEN
    } else {
        IPV4_HEADER_LEN
    };
    let overhead = ip_hdr
        + if matches!(encap, Encap::Gue(_)) {
            UDP_HEADER_LEN
        } else {
            0
        };
    if meta.ip_len + overhead > port.mtu as usize {
        if !meta.dont_frag {
            return EncapOutcome::Drop(DropReason::TooBig);
        }
        let fits = (port.mtu as usize).saturating_sub(overhead) as u16;
        return match too_big(pkt, meta, fits, reply_mac) {
            Ok(()) => EncapOutcome::ReplyTooBig,
            Err(r) => EncapOutcome::Drop(r),
        };
    }
    let l3 = meta.l3;
    // drop Ethernet padding, then make room between the L2 header and the packet
    if pkt.set_len(l3 + meta.ip_len).is_err() {
        return EncapOutcome::Drop(DropReason::Runt);
    }
    if pkt.prepend(overhead).is_err() {
        return EncapOutcome::Drop(DropReason::NoHeadroom);
    }
    let data = pkt.data_mut();
    // The new L2 header: MACs and the last ethertype are written below; only VLAN tags
    // (between the MACs and the ethertype) move with the frame start.
    if l3 > ETHERNET_HEADER_LEN {
        data.copy_within(overhead + 12..overhead + l3, 12);
    }
    let inner_proto = if meta.kind == L3::V6 {
        IpProtocol::IPV6
    } else {
        IpProtocol::IPIP
    };
    let outer_len = overhead + meta.ip_len;
    let proto = match encap {
        Encap::Ipip => inner_proto,
        Encap::Gue(_) => IpProtocol::UDP,
    };
    let Some(out) = data.get_mut(l3..l3 + outer_len) else {
        return EncapOutcome::Drop(DropReason::Runt);
    };
    let (iph, rest) = out.split_at_mut(ip_hdr);
    match (backend, port.ipv4, port.ipv6) {
        (IpAddr::V4(dst), Some((src, _)), _) => {
            let Some(h) = iph.first_chunk_mut::<IPV4_HEADER_LEN>() else {
                return EncapOutcome::Drop(DropReason::Runt);
            };
            *h = outer_ipv4_header(
                src,
                dst,
                proto,
                meta.tos,
                outer_len as u16,
                meta.dont_frag,
                ident,
            );
        }
        (IpAddr::V6(dst), _, Some((src, _))) => {
            let mut ip = Ipv6Packet::new_unchecked(iph);
            ip.set_version_tc_flow(meta.tos, (hash as u32) & 0x000f_ffff);
            ip.set_payload_len((outer_len - IPV6_HEADER_LEN) as u16);
            ip.set_next_header(proto);
            ip.set_hop_limit(DEFAULT_TTL);
            ip.set_src_addr(src);
            ip.set_dst_addr(dst);
        }
        _ => return EncapOutcome::Drop(DropReason::NoNeighbor),
    }
    if let Encap::Gue(dport) = encap {
        let sport = GUE_SPORT_BASE | (hash as u16 & GUE_SPORT_MASK);
        let udp_len = (outer_len - ip_hdr) as u16;
        rest[0..2].copy_from_slice(&sport.to_be_bytes());
        rest[2..4].copy_from_slice(&dport.to_be_bytes());
        rest[4..6].copy_from_slice(&udp_len.to_be_bytes());
        rest[6..8].fill(0);
        if let (IpAddr::V6(dst), Some((src, _))) = (backend, port.ipv6) {
            // IPv6 UDP needs a checksum (RFC 8200); over IPv4 zero means none
            let pseudo = checksum::PseudoHeader::V6 { src, dst };
            UdpPacket::new_unchecked(&mut rest[..]).fill_checksum(&pseudo);
        }
    }
    let ethertype = if outer_v6 { 0x86dd } else { 0x0800 };
    set_inner_ethertype(data, l3, ethertype);
    set_macs(data, backend_mac, port.mac);
    EncapOutcome::Done
}

/// The new Ethernet header and outer IPv4 header of a 4in4 (or 6in4) `ipip` frame.
const IPIP4_HEADERS: usize = ETHERNET_HEADER_LEN + IPV4_HEADER_LEN;

/// The outer headers of `ipip` frames to one IPv4 backend through one port, built with
/// the snapshot (see [`Backend::ipip4`](super::snapshot::Backend::ipip4)) so the
/// per-packet fast path ([`encapsulate_ipip4`]) copies 34 bytes and fills in five
/// fields instead of deriving MACs, addresses and their checksum share every time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipip4Template {
    /// Backend MAC, port MAC, EtherType IPv4; IPv4 version/IHL, TTL and both addresses.
    /// TOS, total length, identification, flags, protocol and checksum are zero.
    headers: [u8; IPIP4_HEADERS],
    /// The ones'-complement sum (folded) of the header's fixed 16-bit words.
    fixed_sum: u32,
    /// The port's MTU: packets that do not fit with the outer header take the general path.
    mtu: u16,
}

impl Ipip4Template {
    /// The template towards `backend` (reached at `backend_mac`) through `port`; `None`
    /// unless both the backend and the port have IPv4 addresses.
    pub fn new(port: &PortInfo, backend: IpAddr, backend_mac: Mac) -> Option<Ipip4Template> {
        let (IpAddr::V4(dst), Some((src, _))) = (backend, port.ipv4) else {
            return None;
        };
        let mut headers = [0u8; IPIP4_HEADERS];
        headers[0..6].copy_from_slice(&backend_mac);
        headers[6..12].copy_from_slice(&port.mac);
        headers[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        // the general writer's header with every per-packet field zero, checksum too
        let mut ip = outer_ipv4_header(src, dst, IpProtocol(0), 0, 0, false, 0);
        ip[10..12].fill(0);
        headers[ETHERNET_HEADER_LEN..].copy_from_slice(&ip);
        Some(Ipip4Template {
            headers,
            fixed_sum: u32::from(checksum::data(&ip)),
            mtu: port.mtu,
        })
    }
}

/// The common case of [`encapsulate`], written without its generality: `ipip` to an
/// IPv4 backend from a port with an IPv4 address (what `t` was built for), of a frame
/// without VLAN tags whose packet fits the port's MTU with the outer header. Copies the
/// template and fills in the per-packet fields. Returns `None` when the packet is not
/// that case (nothing was changed): [`encapsulate`] takes it. The bytes are those
/// [`encapsulate`] would write (a test holds the two to it).
#[inline(always)]
pub fn encapsulate_ipip4<B: PacketBuf>(
    pkt: &mut B,
    meta: &Meta,
    t: &Ipip4Template,
    ident: u16,
) -> Option<EncapOutcome> {
    if meta.l3 != ETHERNET_HEADER_LEN || meta.ip_len + IPV4_HEADER_LEN > t.mtu as usize {
        return None;
    }
    let inner = if meta.kind == L3::V6 {
        IpProtocol::IPV6
    } else {
        IpProtocol::IPIP
    };
    // drop Ethernet padding, then room for the outer header
    match pkt.set_len_and_prepend(ETHERNET_HEADER_LEN + meta.ip_len, IPV4_HEADER_LEN) {
        Ok(()) => {}
        Err(BufError::NoHeadroom) => return Some(EncapOutcome::Drop(DropReason::NoHeadroom)),
        Err(_) => return Some(EncapOutcome::Drop(DropReason::Runt)),
    }
    let Some(d) = pkt.data_mut().first_chunk_mut::<IPIP4_HEADERS>() else {
        return Some(EncapOutcome::Drop(DropReason::Runt));
    };
    // 32 + 2 bytes: two vector stores and one more, where 34 at once is a memcpy call
    let (head, tail) = d.split_at_mut(32);
    head.copy_from_slice(&t.headers[..32]);
    tail.copy_from_slice(&t.headers[32..]);
    let total_len = (meta.ip_len + IPV4_HEADER_LEN) as u16;
    let flags: u16 = if meta.dont_frag { 0x4000 } else { 0 };
    // six 16-bit words: no carry out of 32 bits, two folds suffice
    let sum = t.fixed_sum
        + u32::from(meta.tos)
        + u32::from(total_len)
        + u32::from(ident)
        + u32::from(flags)
        + u32::from(inner.0);
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    let csum = checksum::finish(sum as u16);
    let ip = &mut d[ETHERNET_HEADER_LEN..];
    ip[1] = meta.tos;
    ip[2..4].copy_from_slice(&total_len.to_be_bytes());
    ip[4..6].copy_from_slice(&ident.to_be_bytes());
    ip[6..8].copy_from_slice(&flags.to_be_bytes());
    ip[9] = inner.0;
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    Some(EncapOutcome::Done)
}

/// The new Ethernet header and outer IPv6 header of a 6in6 (or 4in6) `ipip` frame.
const IPIP6_HEADERS: usize = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN;

/// [`Ipip4Template`]'s IPv6 twin: the outer headers of `ipip` frames to one IPv6 backend
/// through one port, for [`encapsulate_ipip6`] (54 bytes copied, three fields filled in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipip6Template {
    /// Backend MAC, port MAC, EtherType IPv6; IPv6 version, hop limit and both
    /// addresses. Traffic class, flow label, payload length and next header are zero.
    headers: [u8; IPIP6_HEADERS],
    /// The port's MTU: packets that do not fit with the outer header take the general path.
    mtu: u16,
}

impl Ipip6Template {
    /// The template towards `backend` (reached at `backend_mac`) through `port`; `None`
    /// unless both the backend and the port have IPv6 addresses.
    pub fn new(port: &PortInfo, backend: IpAddr, backend_mac: Mac) -> Option<Ipip6Template> {
        let (IpAddr::V6(dst), Some((src, _))) = (backend, port.ipv6) else {
            return None;
        };
        let mut headers = [0u8; IPIP6_HEADERS];
        headers[0..6].copy_from_slice(&backend_mac);
        headers[6..12].copy_from_slice(&port.mac);
        headers[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        let mut ip = Ipv6Packet::new_unchecked(&mut headers[ETHERNET_HEADER_LEN..]);
        ip.set_version_tc_flow(0, 0);
        ip.set_hop_limit(DEFAULT_TTL);
        ip.set_src_addr(src);
        ip.set_dst_addr(dst);
        Some(Ipip6Template {
            headers,
            mtu: port.mtu,
        })
    }
}

/// [`encapsulate_ipip4`]'s IPv6 twin: `ipip` to an IPv6 backend (6in6, or 4in6) of an
/// untagged frame whose packet fits the port's MTU with the outer header. `entropy` is
/// the inner flow's hash (the flow label's 20 bits). `None` when the packet is not that
/// case (nothing was changed): [`encapsulate`] takes it; the bytes are those
/// [`encapsulate`] would write (a test holds the two to it).
#[inline(always)]
pub fn encapsulate_ipip6<B: PacketBuf>(
    pkt: &mut B,
    meta: &Meta,
    t: &Ipip6Template,
    entropy: u64,
) -> Option<EncapOutcome> {
    if meta.l3 != ETHERNET_HEADER_LEN || meta.ip_len + IPV6_HEADER_LEN > t.mtu as usize {
        return None;
    }
    let inner = if meta.kind == L3::V6 {
        IpProtocol::IPV6
    } else {
        IpProtocol::IPIP
    };
    match pkt.set_len_and_prepend(ETHERNET_HEADER_LEN + meta.ip_len, IPV6_HEADER_LEN) {
        Ok(()) => {}
        Err(BufError::NoHeadroom) => return Some(EncapOutcome::Drop(DropReason::NoHeadroom)),
        Err(_) => return Some(EncapOutcome::Drop(DropReason::Runt)),
    }
    let Some(d) = pkt.data_mut().first_chunk_mut::<IPIP6_HEADERS>() else {
        return Some(EncapOutcome::Drop(DropReason::Runt));
    };
    // 32 + 22 bytes: vector stores, where 54 at once is a memcpy call
    let (head, tail) = d.split_at_mut(32);
    head.copy_from_slice(&t.headers[..32]);
    tail.copy_from_slice(&t.headers[32..]);
    let mut ip = Ipv6Packet::new_unchecked(&mut d[ETHERNET_HEADER_LEN..]);
    ip.set_version_tc_flow(meta.tos, (entropy as u32) & 0x000f_ffff);
    ip.set_payload_len(meta.ip_len as u16);
    ip.set_next_header(inner);
    Some(EncapOutcome::Done)
}

/// An outer IPv4 header without options, TTL [`DEFAULT_TTL`], checksum filled: what
/// [`emit_ipv4`](super::reply::emit_ipv4) writes plus the identification, summed from
/// the field values instead of re-read from the buffer.
#[inline]
fn outer_ipv4_header(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: IpProtocol,
    tos: u8,
    total_len: u16,
    dont_frag: bool,
    ident: u16,
) -> [u8; IPV4_HEADER_LEN] {
    let flags: u16 = if dont_frag { 0x4000 } else { 0 };
    let (s, d) = (src.to_bits(), dst.to_bits());
    let ver_tos = u16::from_be_bytes([0x45, tos]);
    let ttl_proto = u16::from_be_bytes([DEFAULT_TTL, proto.0]);
    let sum = u64::from(ver_tos)
        + u64::from(total_len)
        + u64::from(ident)
        + u64::from(flags)
        + u64::from(ttl_proto)
        + u64::from(s >> 16)
        + u64::from(s & 0xffff)
        + u64::from(d >> 16)
        + u64::from(d & 0xffff);
    let csum = checksum::finish(checksum::fold(sum));
    // three big-endian words: version..flags, TTL..source, destination
    let w0 = u64::from(ver_tos) << 48
        | u64::from(total_len) << 32
        | u64::from(ident) << 16
        | u64::from(flags);
    let w1 = u64::from(ttl_proto) << 48 | u64::from(csum) << 32 | u64::from(s);
    let mut h = [0u8; IPV4_HEADER_LEN];
    h[0..8].copy_from_slice(&w0.to_be_bytes());
    h[8..16].copy_from_slice(&w1.to_be_bytes());
    h[16..20].copy_from_slice(&d.to_be_bytes());
    h
}

/// The IPv4 address of a v4-mapped [`IpAddr16`] as a big-endian word.
#[inline(always)]
fn v4_word(a: &IpAddr16) -> u32 {
    let [.., b0, b1, b2, b3] = a.0;
    u32::from_be_bytes([b0, b1, b2, b3])
}

/// Full NAT rewrite of the packet's addresses and ports; TTL / hop limit decremented.
/// Checksums (IPv4 header, TCP, UDP) are updated incrementally.
#[allow(clippy::too_many_arguments)]
pub fn nat_rewrite(
    data: &mut [u8],
    meta: &Meta,
    src: IpAddr16,
    sport: u16,
    dst: IpAddr16,
    dport: u16,
    dst_mac: Mac,
    src_mac: Mac,
) {
    let (l3, l4) = (meta.l3, meta.l4);
    let v6 = meta.is_v6();
    // the upper-layer checksum: offset within the L4 header, and whether zero means "none"
    let l4_csum = match IpProtocol(meta.key.proto) {
        IpProtocol::TCP => Some((16usize, false)),
        IpProtocol::UDP => Some((6usize, !v6)),
        _ => None,
    };
    if let Some((off, zero_is_none)) = l4_csum {
        let at = l4 + off;
        if let Some(field) = data.get(at..at + 2) {
            let old = u16::from_be_bytes([field[0], field[1]]);
            if !(zero_is_none && old == 0) {
                // the pseudo-header's addresses and the ports, folded once
                let u = checksum::Update::new(old);
                let u = if v6 {
                    u.word128(&meta.key.src.0, &src.0)
                        .word128(&meta.key.dst.0, &dst.0)
                } else {
                    u.word32(v4_word(&meta.key.src), v4_word(&src))
                        .word32(v4_word(&meta.key.dst), v4_word(&dst))
                };
                let mut c = u
                    .word16(meta.key.src_port, sport)
                    .word16(meta.key.dst_port, dport)
                    .finish();
                if zero_is_none && c == 0 {
                    c = 0xffff;
                }
                data[at..at + 2].copy_from_slice(&c.to_be_bytes());
            }
        }
        if let Some(p) = data.get_mut(l4..l4 + 4) {
            p[0..2].copy_from_slice(&sport.to_be_bytes());
            p[2..4].copy_from_slice(&dport.to_be_bytes());
        }
    }
    if v6 {
        if let Some(ip) = data.get_mut(l3..l3 + IPV6_HEADER_LEN) {
            ip[7] = ip[7].saturating_sub(1);
            ip[8..24].copy_from_slice(&src.0);
            ip[24..40].copy_from_slice(&dst.0);
        }
    } else if let Some(ip) = data.get_mut(l3..l3 + IPV4_HEADER_LEN) {
        let old_ttl = u16::from_be_bytes([ip[8], ip[9]]);
        ip[8] = ip[8].saturating_sub(1);
        let c = checksum::Update::new(u16::from_be_bytes([ip[10], ip[11]]))
            .word32(v4_word(&meta.key.src), v4_word(&src))
            .word32(v4_word(&meta.key.dst), v4_word(&dst))
            .word16(old_ttl, u16::from_be_bytes([ip[8], ip[9]]))
            .finish();
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip[12..16].copy_from_slice(&src.0[12..]);
        ip[16..20].copy_from_slice(&dst.0[12..]);
    }
    set_macs(data, dst_mac, src_mac);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::HeapBuf;
    use crate::engine::parse::parse;
    use crate::engine::tests::{add_vlan, Spec};

    fn port(mtu: u16) -> PortInfo {
        PortInfo {
            name: "lan".into(),
            mac: [0x02, 0, 0, 0, 0, 0x01],
            ipv4: Some((Ipv4Addr::new(10, 0, 0, 2), 16)),
            ipv6: Some(("fd00::2".parse().unwrap(), 64)),
            nat_sources: vec![Ipv4Addr::new(10, 0, 0, 2).into()],
            mtu,
        }
    }

    /// Runs a fast `ipip` writer and [`encapsulate`] over TCP frames of both families,
    /// of several sizes, with and without DF, DSCP and a VLAN tag: wherever `fast` takes a
    /// frame, its outcome and bytes are the general writer's; a frame it declines is left
    /// untouched and is tagged or too big with `outer` more bytes. `fast` gets the frame,
    /// its `Meta`, the port, the outer IPv4 identification and the flow's entropy (the
    /// general writer gets the same two). Returns how many frames `fast` took.
    fn fast_writer_agrees(
        backend: IpAddr,
        outer: usize,
        fast: impl Fn(&mut HeapBuf, &Meta, &PortInfo, u16, u64) -> Option<EncapOutcome>,
    ) -> usize {
        let mac = [0x02, 0, 0, 0, 0, 0x0e];
        let mut fast_cases = 0;
        for (i, (src, dst)) in [("192.0.2.7", "10.1.0.2"), ("2001:db8::7", "fd01::2")]
            .iter()
            .enumerate()
        {
            for payload in [0usize, 1, 100, 1400, 1440, 1460, 1480] {
                for (tos, df, vlan) in [(0u8, true, None), (0xb8, false, None), (4, true, Some(7))]
                {
                    let mut spec = Spec::tcp(src, 40000 + payload as u16, dst, 80).payload(payload);
                    spec.tos = tos;
                    spec.df = df;
                    let mut frame = spec.build();
                    if let Some(id) = vlan {
                        add_vlan(&mut frame, id);
                    }
                    let p = port(1500);
                    let meta = parse(&frame, 9000).unwrap();
                    let ident = 0x1234 + i as u16;
                    let entropy = 0xabcd_ef12_3456_789a ^ payload as u64;
                    let mut general = HeapBuf::from_slice(&frame);
                    let want = encapsulate(
                        &mut general,
                        &meta,
                        &p,
                        backend,
                        mac,
                        Encap::Ipip,
                        entropy,
                        ident,
                        p.mac,
                    );
                    let mut fast_buf = HeapBuf::from_slice(&frame);
                    match fast(&mut fast_buf, &meta, &p, ident, entropy) {
                        Some(got) => {
                            fast_cases += 1;
                            assert_eq!(got, want, "{src} {payload} {tos}");
                            assert_eq!(fast_buf.data(), general.data(), "{src} {payload} {tos}");
                        }
                        None => {
                            assert_eq!(
                                fast_buf.data(),
                                &frame[..],
                                "declined frames are untouched"
                            );
                            assert!(
                                vlan.is_some() || meta.ip_len + outer > 1500,
                                "declined a plain frame: {src} {payload}"
                            );
                        }
                    }
                }
            }
        }
        fast_cases
    }

    /// The fast 4in4 (and 6in4) writer produces the general writer's bytes, and declines
    /// (changing nothing) every frame it is not made for.
    #[test]
    fn ipip4_fast_path_writes_what_encapsulate_writes() {
        let backend: IpAddr = "10.0.0.14".parse().unwrap();
        let mac = [0x02, 0, 0, 0, 0, 0x0e];
        let fast_cases = fast_writer_agrees(backend, 20, |buf, meta, p, ident, _| {
            let t = Ipip4Template::new(p, backend, mac).expect("a v4 backend and port");
            encapsulate_ipip4(buf, meta, &t, ident)
        });
        assert!(fast_cases >= 8, "the fast path ran {fast_cases} times");
        // an IPv6 backend or a port without IPv4 is not its case
        let v6: IpAddr = "fd00::14".parse().unwrap();
        assert_eq!(Ipip4Template::new(&port(1500), v6, mac), None);
        let mut no_v4 = port(1500);
        no_v4.ipv4 = None;
        assert_eq!(Ipip4Template::new(&no_v4, backend, mac), None);
    }

    /// The same for the fast 6in6 (and 4in6) writer.
    #[test]
    fn ipip6_fast_path_writes_what_encapsulate_writes() {
        let backend: IpAddr = "fd00::14".parse().unwrap();
        let mac = [0x02, 0, 0, 0, 0, 0x0e];
        let fast_cases = fast_writer_agrees(backend, 40, |buf, meta, p, _, entropy| {
            let t = Ipip6Template::new(p, backend, mac).expect("a v6 backend and port");
            encapsulate_ipip6(buf, meta, &t, entropy)
        });
        assert!(fast_cases >= 8, "the fast path ran {fast_cases} times");
        let v4: IpAddr = "10.0.0.14".parse().unwrap();
        assert_eq!(Ipip6Template::new(&port(1500), v4, mac), None);
        let mut no_v6 = port(1500);
        no_v6.ipv6 = None;
        assert_eq!(Ipip6Template::new(&no_v6, backend, mac), None);
    }
}
