//! Answers the engine gives itself, built in the packet's own buffer: ARP replies,
//! neighbour advertisements, ICMP echo replies, and the ICMP errors fulcrum generates
//! ("fragmentation needed", "packet too big").

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::buffer::PacketBuf;
use crate::wire::checksum;
use crate::wire::{
    ArpOperation, ArpPacket, EthernetAddress, EthernetFrame, Icmpv4Packet, Icmpv6Packet,
    IpProtocol, Ipv4Packet, Ipv6Packet,
};

use super::parse::{Meta, IPV4_HEADER_LEN, IPV6_HEADER_LEN};
use super::snapshot::Mac;
use super::DropReason;

/// TTL / hop limit of packets fulcrum originates.
pub const DEFAULT_TTL: u8 = 64;
/// ICMP type: echo reply / echo request; destination unreachable.
const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_CODE_FRAG_NEEDED: u8 = 4;
/// ICMPv6 types.
const ICMPV6_PACKET_TOO_BIG: u8 = 2;
const ICMPV6_ECHO_REQUEST: u8 = 128;
const ICMPV6_ECHO_REPLY: u8 = 129;
/// ICMPv6 neighbour solicitation / advertisement.
pub const ICMPV6_NS: u8 = 135;
/// ICMPv6 neighbour advertisement.
pub const ICMPV6_NA: u8 = 136;
/// The minimum IPv6 MTU: an ICMPv6 error never exceeds it.
const IPV6_MIN_MTU: usize = 1280;
/// NA: ICMPv6 header (4) + flags (4) + target (16) + target link-layer option (8).
const NA_LEN: usize = 32;

/// Turns the Ethernet header around: destination = old source, source = `port_mac`.
fn swap_eth<B: PacketBuf>(pkt: &mut B, port_mac: Mac) {
    let mut eth = EthernetFrame::new_unchecked(pkt.data_mut());
    let src = eth.src_addr();
    eth.set_dst_addr(src);
    eth.set_src_addr(EthernetAddress(port_mac));
}

/// An ARP request for an address fulcrum answers for: rewritten into the reply.
pub fn arp_reply<B: PacketBuf>(pkt: &mut B, l3: usize, port_mac: Mac) {
    let data = pkt.data_mut();
    let Some(body) = data.get_mut(l3..) else {
        return;
    };
    let mut arp = ArpPacket::new_unchecked(body);
    let asked = arp.target_protocol_addr();
    let sender_hw = arp.sender_hardware_addr();
    let sender_ip = arp.sender_protocol_addr();
    arp.set_operation(ArpOperation::Reply.code());
    arp.set_target_hardware_addr(sender_hw);
    arp.set_target_protocol_addr(sender_ip);
    arp.set_sender_hardware_addr(EthernetAddress(port_mac));
    arp.set_sender_protocol_addr(asked);
    swap_eth(pkt, port_mac);
}

/// An ICMP or ICMPv6 echo request to a VIP: turned into the echo reply in place. The
/// two messages share their first four bytes (type, code, checksum), so only the IP
/// header differs: IPv4 has a header checksum to refill, while for IPv6 swapping the
/// addresses leaves the pseudo-header sum, and so the ICMPv6 checksum, unchanged.
pub fn echo_reply<B: PacketBuf>(pkt: &mut B, meta: &Meta, port_mac: Mac) -> bool {
    let (l3, l4, end) = (meta.l3, meta.l4, meta.l3 + meta.ip_len);
    let (request, reply) = if meta.is_v6() {
        (ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY)
    } else {
        (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY)
    };
    if pkt.set_len(end).is_err() {
        return false;
    }
    let data = pkt.data_mut();
    {
        let Some(icmp) = data.get_mut(l4..end).and_then(|m| m.first_chunk_mut::<4>()) else {
            return false;
        };
        if icmp[0] != request {
            return false;
        }
        let code = icmp[1];
        let old = u16::from_be_bytes([request, code]);
        let new = u16::from_be_bytes([reply, code]);
        // the reply's words may all be zero (id 0, sequence 0, a zero payload), where
        // only 0xffff verifies (ICMPv6's pseudo-header is never all zero)
        let c = checksum::never_zero(checksum::update16(
            u16::from_be_bytes([icmp[2], icmp[3]]),
            old,
            new,
        ));
        icmp[0] = reply;
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
    }
    let Some(ip) = data.get_mut(l3..end) else {
        return false;
    };
    if meta.is_v6() {
        let mut ip = Ipv6Packet::new_unchecked(ip);
        let (s, d) = (ip.src_addr(), ip.dst_addr());
        ip.set_src_addr(d);
        ip.set_dst_addr(s);
        ip.set_hop_limit(DEFAULT_TTL);
    } else {
        let mut ip = Ipv4Packet::new_unchecked(ip);
        let (s, d) = (ip.src_addr(), ip.dst_addr());
        ip.set_src_addr(d);
        ip.set_dst_addr(s);
        ip.set_ttl(DEFAULT_TTL);
        ip.fill_checksum();
    }
    swap_eth(pkt, port_mac);
    true
}

/// A neighbour solicitation for `target` (a VIP or the port address): rewritten into
/// the solicited advertisement.
pub fn neighbor_advert<B: PacketBuf>(
    pkt: &mut B,
    meta: &Meta,
    target: Ipv6Addr,
    port_mac: Mac,
) -> bool {
    let l3 = meta.l3;
    let l4 = l3 + IPV6_HEADER_LEN;
    if pkt.set_len(l4 + NA_LEN).is_err() {
        return false;
    }
    let data = pkt.data_mut();
    let (src, dst) = {
        let Some(ip) = data.get_mut(l3..l4 + NA_LEN) else {
            return false;
        };
        let mut ip = Ipv6Packet::new_unchecked(ip);
        let asker = ip.src_addr();
        // a solicitation from the unspecified address (DAD) is answered to all nodes
        let dst = if asker.is_unspecified() {
            Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1)
        } else {
            asker
        };
        ip.set_payload_len(NA_LEN as u16);
        ip.set_next_header(IpProtocol::ICMPV6);
        ip.set_hop_limit(255);
        ip.set_src_addr(target);
        ip.set_dst_addr(dst);
        (target, dst)
    };
    let Some(icmp) = data.get_mut(l4..l4 + NA_LEN) else {
        return false;
    };
    icmp.fill(0);
    icmp[0] = ICMPV6_NA;
    icmp[4] = 0x60; // solicited + override
    icmp[8..24].copy_from_slice(&target.octets());
    icmp[24] = 2; // target link-layer address option
    icmp[25] = 1; // length in units of 8 bytes
    icmp[26..32].copy_from_slice(&port_mac);
    let mut icmp = Icmpv6Packet::new_unchecked(icmp);
    icmp.fill_checksum(&src, &dst);
    swap_eth(pkt, port_mac);
    true
}

/// Answers a packet too big for the egress MTU: ICMP "fragmentation needed" (IPv4, DF
/// set) or ICMPv6 "packet too big", from the address the client sent to (`from`),
/// quoting the packet, advertising `mtu`. The packet becomes the reply.
pub fn too_big<B: PacketBuf>(
    pkt: &mut B,
    meta: &Meta,
    mtu: u16,
    port_mac: Mac,
) -> Result<(), DropReason> {
    let l3 = meta.l3;
    // keep the client's L2 header (with its VLAN tags), insert IP + ICMP headers before
    // the packet, which becomes the quote
    let (hdr, quote_max) = if meta.is_v6() {
        (IPV6_HEADER_LEN + 8, IPV6_MIN_MTU - IPV6_HEADER_LEN - 8)
    } else {
        // the IP header (with options) and the first 8 bytes of its payload
        (IPV4_HEADER_LEN + 8, meta.l4 - l3 + 8)
    };
    let quote_len = meta.ip_len.min(quote_max).min(pkt.len() - l3);
    pkt.set_len(l3 + quote_len)
        .map_err(|_| DropReason::TooBig)?;
    pkt.prepend(hdr).map_err(|_| DropReason::NoHeadroom)?;
    let data = pkt.data_mut();
    data.copy_within(hdr..hdr + l3, 0);
    let total = hdr + quote_len;
    let Some(out) = data.get_mut(l3..l3 + total) else {
        return Err(DropReason::TooBig);
    };
    if meta.is_v6() {
        let (client, vip) = (
            super::parse::v6(meta.key.src),
            super::parse::v6(meta.key.dst),
        );
        let (iph, icmp) = out.split_at_mut(IPV6_HEADER_LEN);
        let mut ip = Ipv6Packet::new_unchecked(iph);
        ip.set_version_tc_flow(0, 0);
        ip.set_payload_len((total - IPV6_HEADER_LEN) as u16);
        ip.set_next_header(IpProtocol::ICMPV6);
        ip.set_hop_limit(DEFAULT_TTL);
        ip.set_src_addr(vip);
        ip.set_dst_addr(client);
        icmp[0] = ICMPV6_PACKET_TOO_BIG;
        icmp[1] = 0;
        icmp[2..4].fill(0);
        icmp[4..8].copy_from_slice(&(mtu as u32).to_be_bytes());
        Icmpv6Packet::new_unchecked(icmp).fill_checksum(&vip, &client);
    } else {
        let (client, vip) = (
            super::parse::v4(meta.key.src),
            super::parse::v4(meta.key.dst),
        );
        let (iph, icmp) = out.split_at_mut(IPV4_HEADER_LEN);
        emit_ipv4(iph, vip, client, IpProtocol::ICMP, 0, total as u16, false);
        icmp[0] = ICMP_DEST_UNREACH;
        icmp[1] = ICMP_CODE_FRAG_NEEDED;
        icmp[2..6].fill(0);
        icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
        Icmpv4Packet::new_unchecked(icmp).fill_checksum();
    }
    swap_eth(pkt, port_mac);
    Ok(())
}

/// Writes a 20-byte IPv4 header (no options) with its checksum.
pub fn emit_ipv4(
    buf: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: IpProtocol,
    tos: u8,
    total_len: u16,
    dont_frag: bool,
) {
    let mut ip = Ipv4Packet::new_unchecked(buf);
    ip.set_version_and_header_len(IPV4_HEADER_LEN);
    ip.set_dscp_ecn(tos >> 2, tos & 3);
    ip.set_total_len(total_len);
    ip.set_ident(0);
    ip.set_flags_and_frag_offset(dont_frag, false, 0);
    ip.set_ttl(DEFAULT_TTL);
    ip.set_protocol(proto);
    ip.set_src_addr(src);
    ip.set_dst_addr(dst);
    ip.fill_checksum();
}

/// The ethertype field of the innermost L2 header (just before `l3`).
pub fn set_inner_ethertype(data: &mut [u8], l3: usize, ethertype: u16) {
    if let Some(f) = data.get_mut(l3.wrapping_sub(2)..l3) {
        f.copy_from_slice(&ethertype.to_be_bytes());
    }
}
