//! Frames the control side sends and reads: ARP requests and neighbour solicitations
//! for the next hops it resolves, and the answers to them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::engine::Mac;
use crate::wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, EthernetRepr,
    Icmpv6Packet, IpProtocol, Ipv6Packet, NdOption,
};

const ICMPV6_NS: u8 = 135;
const ICMPV6_NA: u8 = 136;

/// An ARP request (IPv4) or neighbour solicitation (IPv6) from `our_ip` / `our_mac`
/// asking for `target`; None when the families differ.
pub fn solicitation(our_mac: Mac, our_ip: IpAddr, target: IpAddr) -> Option<Vec<u8>> {
    match (our_ip, target) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => Some(arp_request(our_mac, src, dst)),
        (IpAddr::V6(src), IpAddr::V6(dst)) => Some(neighbor_solicitation(our_mac, src, dst)),
        _ => None,
    }
}

fn arp_request(our_mac: Mac, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut buf = vec![0u8; 14 + 28];
    EthernetRepr {
        dst: EthernetAddress::BROADCAST,
        src: EthernetAddress(our_mac),
        ethertype: EtherType::ARP,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
    ArpRepr {
        operation: ArpOperation::Request,
        sender_hardware_addr: EthernetAddress(our_mac),
        sender_protocol_addr: src,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: dst,
    }
    .emit(&mut ArpPacket::new_unchecked(&mut buf[14..]));
    buf
}

fn neighbor_solicitation(our_mac: Mac, src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    // to the target's solicited-node multicast group ff02::1:ffXX:XXXX
    let t = target.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | t[13] as u16,
        u16::from_be_bytes([t[14], t[15]]),
    );
    let g = group.octets();
    let dst_mac = [0x33, 0x33, g[12], g[13], g[14], g[15]];
    let icmp_len = 32; // type, code, checksum, reserved, target, source link-layer option
    let mut buf = vec![0u8; 14 + 40 + icmp_len];
    EthernetRepr {
        dst: EthernetAddress(dst_mac),
        src: EthernetAddress(our_mac),
        ethertype: EtherType::IPV6,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
    {
        let mut ip = Ipv6Packet::new_unchecked(&mut buf[14..54]);
        ip.set_version_tc_flow(0, 0);
        ip.set_payload_len(icmp_len as u16);
        ip.set_next_header(IpProtocol::ICMPV6);
        ip.set_hop_limit(255);
        ip.set_src_addr(src);
        ip.set_dst_addr(group);
    }
    let icmp = &mut buf[54..];
    icmp[0] = ICMPV6_NS;
    icmp[8..24].copy_from_slice(&t);
    icmp[24] = 1; // source link-layer address option
    icmp[25] = 1;
    icmp[26..32].copy_from_slice(&our_mac);
    Icmpv6Packet::new_unchecked(icmp).fill_checksum(&src, &group);
    buf
}

/// The (address, MAC) an ARP reply or neighbour advertisement announces.
pub fn parse_neighbor_answer(frame: &[u8]) -> Option<(IpAddr, Mac)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let nl = eth.network_layer().ok()?;
    let body = frame.get(nl.offset..)?;
    match nl.ethertype {
        EtherType::ARP => {
            let arp = ArpPacket::new_checked(body).ok()?;
            if !arp.is_ethernet_ipv4()
                || ArpOperation::from_code(arp.operation()) != Some(ArpOperation::Reply)
            {
                return None;
            }
            Some((
                IpAddr::V4(arp.sender_protocol_addr()),
                arp.sender_hardware_addr().0,
            ))
        }
        EtherType::IPV6 => {
            let ip = Ipv6Packet::new_checked(body).ok()?;
            if ip.next_header() != IpProtocol::ICMPV6 {
                return None;
            }
            let icmp = Icmpv6Packet::new_checked(ip.payload()).ok()?;
            if icmp.msg_type() != ICMPV6_NA || !icmp.verify_checksum(&ip.src_addr(), &ip.dst_addr())
            {
                return None;
            }
            let mac = icmp
                .nd_link_layer_addr(NdOption::TargetLinkLayerAddr)
                .ok()??
                .0;
            Some((IpAddr::V6(icmp.nd_target()), mac))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_request_parses_and_reply_is_read() {
        let mac = [2, 0, 0, 0, 0, 1];
        let f = solicitation(
            mac,
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
        )
        .unwrap();
        let p = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
        assert!(matches!(p.net, Some(etherparse::NetSlice::Arp(_))));
        // the same frame turned into a reply by hand
        let mut r = f.clone();
        {
            let mut arp = ArpPacket::new_unchecked(&mut r[14..]);
            arp.set_operation(ArpOperation::Reply.code());
            arp.set_sender_protocol_addr("10.0.0.2".parse().unwrap());
            arp.set_sender_hardware_addr(EthernetAddress([2, 0, 0, 0, 0, 2]));
        }
        assert_eq!(
            parse_neighbor_answer(&r),
            Some(("10.0.0.2".parse().unwrap(), [2, 0, 0, 0, 0, 2]))
        );
        assert_eq!(
            parse_neighbor_answer(&f),
            None,
            "a request is not an answer"
        );
    }

    #[test]
    fn neighbor_solicitation_is_valid_icmpv6() {
        let mac = [2, 0, 0, 0, 0, 1];
        let f = solicitation(mac, "fd00::1".parse().unwrap(), "fd00::2".parse().unwrap()).unwrap();
        let ip = Ipv6Packet::new_checked(&f[14..]).unwrap();
        assert_eq!(ip.dst_addr(), "ff02::1:ff00:2".parse::<Ipv6Addr>().unwrap());
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum(&ip.src_addr(), &ip.dst_addr()));
        assert_eq!(icmp.nd_target(), "fd00::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(&f[0..6], &[0x33, 0x33, 0xff, 0, 0, 2]);
    }
}
