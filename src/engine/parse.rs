//! Step 1 of the data path: read the headers once into [`Meta`].
//!
//! Every check that can fail on hostile input happens here, each with its own
//! [`DropReason`]; the later steps only read fields `Meta` proved present.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::flow::IpAddr16;
use crate::wire::{
    EtherType, EthernetFrame, IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket, WireError,
};

use super::DropReason;

/// The fixed IPv6 header length.
pub const IPV6_HEADER_LEN: usize = 40;
/// The IPv4 header length fulcrum emits (no options).
pub const IPV4_HEADER_LEN: usize = 20;
/// UDP header length.
pub const UDP_HEADER_LEN: usize = 8;

/// The network layer of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L3 {
    /// ARP at `Meta::l3`.
    Arp,
    /// IPv4 at `Meta::l3`.
    V4,
    /// IPv6 at `Meta::l3`.
    V6,
}

/// What the data path needs to know of a packet, read once.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    /// Offset of the network header (past the Ethernet header and VLAN tags).
    pub l3: usize,
    /// The network layer.
    pub kind: L3,
    /// IP source (v4-mapped for IPv4).
    pub src: IpAddr16,
    /// IP destination.
    pub dst: IpAddr16,
    /// Upper-layer protocol.
    pub proto: u8,
    /// Offset of the upper-layer header from the frame start (valid when `has_l4`).
    pub l4: usize,
    /// Whether the upper-layer header is in this packet (not a non-first fragment).
    pub has_l4: bool,
    /// Length of the IP packet (header + payload), bytes, as its header says.
    pub ip_len: usize,
    /// Source port (0 without ports).
    pub sport: u16,
    /// Destination port (0 without ports).
    pub dport: u16,
    /// TCP flags (low 8 bits), 0 for other protocols.
    pub tcp_flags: u8,
    /// A fragment (first or not).
    pub fragment: bool,
    /// IPv4 DF set (always true for IPv6, which routers never fragment).
    pub dont_frag: bool,
    /// TTL / hop limit.
    pub ttl: u8,
    /// IPv4 DSCP+ECN byte, IPv6 traffic class.
    pub tos: u8,
}

impl Meta {
    /// The source address.
    pub fn src_ip(&self) -> IpAddr {
        self.addr(self.src)
    }
    /// The destination address.
    pub fn dst_ip(&self) -> IpAddr {
        self.addr(self.dst)
    }
    fn addr(&self, a: IpAddr16) -> IpAddr {
        if self.is_v6() {
            IpAddr::V6(v6(a))
        } else {
            IpAddr::V4(v4(a))
        }
    }
    /// Whether the packet is IPv6.
    pub fn is_v6(&self) -> bool {
        self.kind == L3::V6
    }
}

fn l4_ports(meta: &mut Meta, data: &[u8]) -> Result<(), DropReason> {
    let l4 = data
        .get(meta.l4..meta.l3 + meta.ip_len)
        .ok_or(DropReason::Runt)?;
    match IpProtocol(meta.proto) {
        IpProtocol::TCP => {
            let t = TcpPacket::new_checked(l4).map_err(|_| DropReason::BadTcp)?;
            meta.sport = t.src_port();
            meta.dport = t.dst_port();
            meta.tcp_flags = t.flags().bits() as u8;
        }
        IpProtocol::UDP if meta.fragment => {
            // a first fragment: the UDP length covers the whole datagram, longer than
            // this fragment, so only the header itself must be here
            let h = l4.get(..UDP_HEADER_LEN).ok_or(DropReason::BadUdp)?;
            meta.sport = u16::from_be_bytes([h[0], h[1]]);
            meta.dport = u16::from_be_bytes([h[2], h[3]]);
        }
        IpProtocol::UDP => {
            let u = UdpPacket::new_checked(l4).map_err(|_| DropReason::BadUdp)?;
            meta.sport = u.src_port();
            meta.dport = u.dst_port();
        }
        _ => {}
    }
    Ok(())
}

/// Reads the frame's headers. `mtu` is the port's IP MTU.
pub fn parse(data: &[u8], mtu: u16) -> Result<Meta, DropReason> {
    let eth = EthernetFrame::new_checked(data).map_err(|_| DropReason::Runt)?;
    let nl = eth.network_layer().map_err(|e| match e {
        WireError::TooManyHeaders => DropReason::BadVlan,
        _ => DropReason::Runt,
    })?;
    let l3 = nl.offset;
    if data.len() > l3 + mtu as usize {
        return Err(DropReason::Oversize);
    }
    let mut meta = Meta {
        l3,
        kind: L3::Arp,
        src: IpAddr16::default(),
        dst: IpAddr16::default(),
        proto: 0,
        l4: 0,
        has_l4: false,
        ip_len: 0,
        sport: 0,
        dport: 0,
        tcp_flags: 0,
        fragment: false,
        dont_frag: true,
        ttl: 0,
        tos: 0,
    };
    let payload = data.get(l3..).ok_or(DropReason::Runt)?;
    match nl.ethertype {
        EtherType::ARP => Ok(meta),
        EtherType::IPV4 => {
            let ip = Ipv4Packet::new_checked(payload).map_err(|_| DropReason::BadIpv4)?;
            if !ip.verify_checksum() {
                return Err(DropReason::BadIpChecksum);
            }
            meta.kind = L3::V4;
            meta.src = ip.src_addr().into();
            meta.dst = ip.dst_addr().into();
            meta.proto = ip.protocol().0;
            meta.ip_len = ip.total_len() as usize;
            meta.l4 = l3 + ip.header_len();
            meta.fragment = ip.is_fragment();
            meta.has_l4 = ip.frag_offset() == 0;
            meta.dont_frag = ip.dont_frag();
            meta.ttl = ip.ttl();
            meta.tos = (ip.dscp() << 2) | ip.ecn();
            if meta.has_l4 {
                l4_ports(&mut meta, data)?;
            }
            Ok(meta)
        }
        EtherType::IPV6 => {
            let ip = Ipv6Packet::new_checked(payload).map_err(|_| DropReason::BadIpv6)?;
            let ext = ip.extensions().map_err(|_| DropReason::BadIpv6)?;
            meta.kind = L3::V6;
            meta.src = ip.src_addr().into();
            meta.dst = ip.dst_addr().into();
            meta.proto = ext.upper_protocol.0;
            meta.ip_len = ip.total_len();
            meta.l4 = l3 + ext.upper_offset;
            meta.ttl = ip.hop_limit();
            meta.tos = ip.traffic_class();
            meta.fragment = ext.fragment.is_some();
            meta.has_l4 = ext.fragment.is_none_or(|f| f.is_first());
            if meta.has_l4 {
                l4_ports(&mut meta, data)?;
            }
            Ok(meta)
        }
        _ => Err(DropReason::UnknownEthertype),
    }
}

/// IPv4 address from a v4-mapped [`IpAddr16`] (zeros for IPv6).
#[inline]
pub fn v4(a: IpAddr16) -> Ipv4Addr {
    Ipv4Addr::from(a.to_v4().unwrap_or([0; 4]))
}

/// IPv6 address from an [`IpAddr16`].
#[inline]
pub fn v6(a: IpAddr16) -> Ipv6Addr {
    Ipv6Addr::from(a.0)
}
