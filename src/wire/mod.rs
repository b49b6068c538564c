//! Typed, zero-copy views over packet bytes.
//!
//! Each header has its own module with two levels, in the manner of smoltcp's `wire`:
//!
//! - A *packet view* (`EthernetFrame`, `Ipv4Packet`, `TcpPacket`, ...) is a struct over a
//!   buffer `T: AsRef<[u8]>`; getters need `AsRef`, setters `AsMut<[u8]>`. `new_checked`
//!   validates the lengths (and the fields lengths depend on) once; after it succeeds no
//!   accessor can read outside the buffer. `new_unchecked` is for a buffer the caller sized
//!   itself (for example to `buffer_len()` before `emit`).
//! - A *Repr* (`Ipv4Repr`, `TcpRepr`, ...) is the parsed, owned (or payload-borrowing)
//!   form with `parse`, `buffer_len` and `emit`.
//!
//! Accessors never panic, not even on a short unchecked buffer: a read past the end yields
//! zero (or an empty slice) and a write past the end is dropped (and trips a
//! `debug_assert!`, because it is a bug in the caller's sizing). `new_checked` is what makes
//! the values meaningful; the hot path calls it once per header and then reads fields
//! with one bounds check each, which the compiler folds away when it can.
//!
//! [`checksum`] holds the RFC 1071 sum, the pseudo-header sums and the RFC 1624
//! incremental updates used when rewriting addresses and ports.

pub mod checksum;

mod arp;
mod ethernet;
mod icmpv4;
mod icmpv6;
mod ipv4;
mod ipv6;
mod tcp;
mod udp;

use core::fmt;
use core::ops::Range;

pub use arp::{ArpOperation, ArpPacket, ArpRepr, HARDWARE_ETHERNET as ARP_HARDWARE_ETHERNET};
pub use checksum::PseudoHeader;
pub use ethernet::{
    EthernetAddress, EthernetFrame, EthernetRepr, NetworkLayer, ParseEthernetAddressError, VlanTag,
    MAX_VLAN_TAGS,
};
pub use icmpv4::{
    message as icmpv4_message, Icmpv4Packet, Icmpv4Repr,
    CODE_FRAG_NEEDED as ICMPV4_CODE_FRAG_NEEDED, QUOTED_PAYLOAD_LEN as ICMPV4_QUOTED_PAYLOAD_LEN,
};
pub use icmpv6::{
    message as icmpv6_message, Icmpv6Packet, Icmpv6Repr, NdOption,
    QUOTED_PAYLOAD_LEN as ICMPV6_QUOTED_PAYLOAD_LEN,
};
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use ipv6::{Ipv6Extensions, Ipv6FragmentInfo, Ipv6Packet, Ipv6Repr, MAX_EXTENSION_HEADERS};
pub use tcp::{TcpFlags, TcpPacket, TcpRepr};
pub use udp::{UdpPacket, UdpRepr};

/// Why bytes could not be read as the header asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WireError {
    /// The buffer ends before the header, or before the length a header field claims.
    Truncated,
    /// A field holds a value the format forbids (IHL below 5, a length below the header, ...).
    Malformed,
    /// The IP version field does not match the header being read.
    BadVersion,
    /// The checksum does not verify.
    BadChecksum,
    /// Well-formed, but a kind this module does not represent (an ICMP type, an ARP hardware type, ...).
    Unsupported,
    /// More IPv6 extension headers than [`MAX_EXTENSION_HEADERS`], or more VLAN tags than two.
    TooManyHeaders,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "packet truncated",
            WireError::Malformed => "malformed header field",
            WireError::BadVersion => "wrong IP version",
            WireError::BadChecksum => "bad checksum",
            WireError::Unsupported => "unsupported packet kind",
            WireError::TooManyHeaders => "too many stacked headers",
        })
    }
}

impl std::error::Error for WireError {}

/// The result of reading a header.
pub type Result<T> = core::result::Result<T, WireError>;

/// An EtherType, the Ethernet payload's protocol (host byte order).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EtherType(pub u16);

impl EtherType {
    /// Internet Protocol version 4.
    pub const IPV4: EtherType = EtherType(0x0800);
    /// Address Resolution Protocol.
    pub const ARP: EtherType = EtherType(0x0806);
    /// Internet Protocol version 6.
    pub const IPV6: EtherType = EtherType(0x86dd);
    /// IEEE 802.1Q VLAN tag (C-tag).
    pub const VLAN: EtherType = EtherType(0x8100);
    /// IEEE 802.1ad service tag (S-tag, "QinQ").
    pub const QINQ: EtherType = EtherType(0x88a8);
}

impl fmt::Debug for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EtherType::IPV4 => f.write_str("IPv4"),
            EtherType::ARP => f.write_str("ARP"),
            EtherType::IPV6 => f.write_str("IPv6"),
            EtherType::VLAN => f.write_str("VLAN"),
            EtherType::QINQ => f.write_str("QinQ"),
            EtherType(other) => write!(f, "EtherType({other:#06x})"),
        }
    }
}

/// An IP protocol number (IPv4 protocol, IPv6 next header).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpProtocol(pub u8);

impl IpProtocol {
    /// IPv6 hop-by-hop options extension header.
    pub const HOP_BY_HOP: IpProtocol = IpProtocol(0);
    /// ICMP for IPv4.
    pub const ICMP: IpProtocol = IpProtocol(1);
    /// IPv4 encapsulated in IP (IPIP).
    pub const IPIP: IpProtocol = IpProtocol(4);
    /// Transmission Control Protocol.
    pub const TCP: IpProtocol = IpProtocol(6);
    /// User Datagram Protocol.
    pub const UDP: IpProtocol = IpProtocol(17);
    /// IPv6 encapsulated in IP.
    pub const IPV6: IpProtocol = IpProtocol(41);
    /// IPv6 routing extension header.
    pub const IPV6_ROUTING: IpProtocol = IpProtocol(43);
    /// IPv6 fragment extension header.
    pub const IPV6_FRAGMENT: IpProtocol = IpProtocol(44);
    /// Encapsulating Security Payload.
    pub const ESP: IpProtocol = IpProtocol(50);
    /// Authentication Header.
    pub const AH: IpProtocol = IpProtocol(51);
    /// ICMP for IPv6.
    pub const ICMPV6: IpProtocol = IpProtocol(58);
    /// IPv6 "no next header".
    pub const IPV6_NO_NEXT: IpProtocol = IpProtocol(59);
    /// IPv6 destination options extension header.
    pub const IPV6_DEST_OPTS: IpProtocol = IpProtocol(60);
}

impl fmt::Debug for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            IpProtocol::HOP_BY_HOP => "HopByHop",
            IpProtocol::ICMP => "ICMP",
            IpProtocol::IPIP => "IPIP",
            IpProtocol::TCP => "TCP",
            IpProtocol::UDP => "UDP",
            IpProtocol::IPV6 => "IPv6",
            IpProtocol::IPV6_ROUTING => "IPv6Routing",
            IpProtocol::IPV6_FRAGMENT => "IPv6Fragment",
            IpProtocol::ESP => "ESP",
            IpProtocol::AH => "AH",
            IpProtocol::ICMPV6 => "ICMPv6",
            IpProtocol::IPV6_NO_NEXT => "IPv6NoNext",
            IpProtocol::IPV6_DEST_OPTS => "IPv6DestOpts",
            IpProtocol(other) => return write!(f, "IpProtocol({other})"),
        };
        f.write_str(name)
    }
}

/// UDP destination port for GUE encapsulation (Katran's default), host byte order.
pub const GUE_PORT: u16 = 6080;

/// A header field: a byte range from the start of its header.
type Field = Range<usize>;

/// Bounds-checked big-endian field access shared by the views.
///
/// Reads past the end give zero, writes past the end are dropped; see the module doc.
mod bytes {
    use super::Field;

    #[inline]
    pub(super) fn u8_at(data: &[u8], at: usize) -> u8 {
        data.get(at).copied().unwrap_or(0)
    }

    #[inline]
    pub(super) fn array<const N: usize>(data: &[u8], field: Field) -> [u8; N] {
        data.get(field)
            .and_then(|b| b.first_chunk::<N>())
            .copied()
            .unwrap_or([0; N])
    }

    #[inline]
    pub(super) fn u16_at(data: &[u8], field: Field) -> u16 {
        u16::from_be_bytes(array(data, field))
    }

    #[inline]
    pub(super) fn u32_at(data: &[u8], field: Field) -> u32 {
        u32::from_be_bytes(array(data, field))
    }

    #[inline]
    pub(super) fn set_u8(data: &mut [u8], at: usize, value: u8) {
        match data.get_mut(at) {
            Some(b) => *b = value,
            None => debug_assert!(false, "write past the end of a packet view"),
        }
    }

    #[inline]
    pub(super) fn set_bytes(data: &mut [u8], field: Field, value: &[u8]) {
        match data.get_mut(field) {
            Some(b) if b.len() == value.len() => b.copy_from_slice(value),
            _ => debug_assert!(false, "write past the end of a packet view"),
        }
    }

    #[inline]
    pub(super) fn set_u16(data: &mut [u8], field: Field, value: u16) {
        set_bytes(data, field, &value.to_be_bytes())
    }

    #[inline]
    pub(super) fn set_u32(data: &mut [u8], field: Field, value: u32) {
        set_bytes(data, field, &value.to_be_bytes())
    }

    /// `data[from..to]`, or empty when that range is not inside `data`.
    #[inline]
    pub(super) fn range(data: &[u8], from: usize, to: usize) -> &[u8] {
        data.get(from..to).unwrap_or(&[])
    }

    /// `data[from..to]` writable, or empty when that range is not inside `data`.
    #[inline]
    pub(super) fn range_mut(data: &mut [u8], from: usize, to: usize) -> &mut [u8] {
        data.get_mut(from..to).unwrap_or(&mut [])
    }
}

/// Helpers shared by the tests of the header modules.
#[cfg(test)]
mod test_support {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    pub const MAC_A: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x0a]);
    pub const MAC_B: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x0b]);

    /// An Ethernet + IPv4 frame around `l4` (already emitted, checksum filled).
    pub fn ipv4_frame(src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol, l4: &[u8]) -> Vec<u8> {
        let eth = EthernetRepr {
            src: MAC_A,
            dst: MAC_B,
            ethertype: EtherType::IPV4,
        };
        let ip = Ipv4Repr {
            src,
            dst,
            protocol,
            payload_len: l4.len(),
            ttl: 64,
            dscp: 0,
            ecn: 0,
            ident: 0x1234,
            dont_frag: true,
        };
        let mut buf = vec![0u8; eth.buffer_len() + ip.buffer_len() + l4.len()];
        eth.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
        let ip_start = eth.buffer_len();
        ip.emit(&mut Ipv4Packet::new_unchecked(&mut buf[ip_start..]));
        buf[ip_start + ip.buffer_len()..].copy_from_slice(l4);
        buf
    }

    /// An Ethernet + IPv6 frame around `l4` (already emitted, checksum filled).
    pub fn ipv6_frame(src: Ipv6Addr, dst: Ipv6Addr, next_header: IpProtocol, l4: &[u8]) -> Vec<u8> {
        let eth = EthernetRepr {
            src: MAC_A,
            dst: MAC_B,
            ethertype: EtherType::IPV6,
        };
        let ip = Ipv6Repr {
            src,
            dst,
            next_header,
            payload_len: l4.len(),
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
        };
        let mut buf = vec![0u8; eth.buffer_len() + ip.buffer_len() + l4.len()];
        eth.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
        let ip_start = eth.buffer_len();
        ip.emit(&mut Ipv6Packet::new_unchecked(&mut buf[ip_start..]));
        buf[ip_start + ip.buffer_len()..].copy_from_slice(l4);
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_helpers_never_panic_on_short_input() {
        let d = [1u8, 2, 3];
        assert_eq!(bytes::u16_at(&d, 0..2), 0x0102);
        assert_eq!(bytes::u16_at(&d, 2..4), 0);
        assert_eq!(bytes::u32_at(&d, 0..4), 0);
        assert_eq!(bytes::u8_at(&d, 3), 0);
        assert_eq!(bytes::range(&d, 2, 1), &[] as &[u8]);
        assert_eq!(bytes::range(&d, 1, 9), &[] as &[u8]);
    }

    #[test]
    fn constants_have_their_wire_values() {
        assert_eq!(EtherType::IPV4.0, 0x0800);
        assert_eq!(EtherType::VLAN.0, 0x8100);
        assert_eq!(EtherType::QINQ.0, 0x88a8);
        assert_eq!(IpProtocol::IPIP.0, 4);
        assert_eq!(IpProtocol::IPV6.0, 41);
        assert_eq!(IpProtocol::IPV6_NO_NEXT.0, 59);
        assert_eq!(GUE_PORT, 6080);
        assert_eq!(format!("{:?}", IpProtocol(200)), "IpProtocol(200)");
        assert_eq!(format!("{:?}", EtherType::ARP), "ARP");
    }
}
