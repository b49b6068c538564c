//! ARP (RFC 826) for Ethernet hardware and IPv4 protocol addresses.
//!
//! [`ArpPacket::new_checked`] ensures the 28 bytes of an Ethernet/IPv4 ARP packet are
//! present; [`ArpRepr::parse`] additionally rejects other hardware or protocol types.

use core::net::Ipv4Addr;

use super::{bytes, EtherType, EthernetAddress, Result, WireError};

mod field {
    use crate::wire::Field;

    pub const HTYPE: Field = 0..2;
    pub const PTYPE: Field = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Field = 6..8;
    pub const SHA: Field = 8..14;
    pub const SPA: Field = 14..18;
    pub const THA: Field = 18..24;
    pub const TPA: Field = 24..28;
    pub const LEN: usize = TPA.end;
}

/// ARP hardware type for Ethernet.
pub const HARDWARE_ETHERNET: u16 = 1;

/// The ARP operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpOperation {
    /// Who has the target protocol address?
    Request,
    /// The sender hardware address has the sender protocol address.
    Reply,
}

impl ArpOperation {
    /// The operation code on the wire.
    #[inline]
    pub const fn code(self) -> u16 {
        match self {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
        }
    }

    /// The operation for a wire code, if it is one of the two.
    #[inline]
    pub const fn from_code(code: u16) -> Option<ArpOperation> {
        match code {
            1 => Some(ArpOperation::Request),
            2 => Some(ArpOperation::Reply),
            _ => None,
        }
    }
}

/// A view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Length of an Ethernet/IPv4 ARP packet, bytes.
    pub const LEN: usize = field::LEN;

    /// Wraps `buffer` without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Wraps `buffer` after checking that it holds 28 bytes.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < Self::LEN {
            return Err(WireError::Truncated);
        }
        Ok(Self::new_unchecked(buffer))
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Hardware type (1 for Ethernet).
    #[inline]
    pub fn hardware_type(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::HTYPE)
    }

    /// Protocol type (an EtherType, IPv4 here).
    #[inline]
    pub fn protocol_type(&self) -> EtherType {
        EtherType(bytes::u16_at(self.buffer.as_ref(), field::PTYPE))
    }

    /// Hardware address length, bytes.
    #[inline]
    pub fn hardware_len(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::HLEN)
    }

    /// Protocol address length, bytes.
    #[inline]
    pub fn protocol_len(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::PLEN)
    }

    /// Operation code (1 request, 2 reply).
    #[inline]
    pub fn operation(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::OPER)
    }

    /// Sender hardware address.
    #[inline]
    pub fn sender_hardware_addr(&self) -> EthernetAddress {
        EthernetAddress(bytes::array(self.buffer.as_ref(), field::SHA))
    }

    /// Sender protocol address.
    #[inline]
    pub fn sender_protocol_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(bytes::array::<4>(self.buffer.as_ref(), field::SPA))
    }

    /// Target hardware address.
    #[inline]
    pub fn target_hardware_addr(&self) -> EthernetAddress {
        EthernetAddress(bytes::array(self.buffer.as_ref(), field::THA))
    }

    /// Target protocol address.
    #[inline]
    pub fn target_protocol_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(bytes::array::<4>(self.buffer.as_ref(), field::TPA))
    }

    /// Whether the fixed fields say Ethernet hardware and IPv4 protocol addresses.
    #[inline]
    pub fn is_ethernet_ipv4(&self) -> bool {
        self.hardware_type() == HARDWARE_ETHERNET
            && self.protocol_type() == EtherType::IPV4
            && self.hardware_len() == 6
            && self.protocol_len() == 4
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Writes the fixed fields for Ethernet/IPv4 (hardware and protocol type and lengths).
    #[inline]
    pub fn set_ethernet_ipv4(&mut self) {
        let data = self.buffer.as_mut();
        bytes::set_u16(data, field::HTYPE, HARDWARE_ETHERNET);
        bytes::set_u16(data, field::PTYPE, EtherType::IPV4.0);
        bytes::set_u8(data, field::HLEN, 6);
        bytes::set_u8(data, field::PLEN, 4);
    }

    /// Sets the operation code.
    #[inline]
    pub fn set_operation(&mut self, code: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::OPER, code)
    }

    /// Sets the sender hardware address.
    #[inline]
    pub fn set_sender_hardware_addr(&mut self, addr: EthernetAddress) {
        bytes::set_bytes(self.buffer.as_mut(), field::SHA, &addr.0)
    }

    /// Sets the sender protocol address.
    #[inline]
    pub fn set_sender_protocol_addr(&mut self, addr: Ipv4Addr) {
        bytes::set_bytes(self.buffer.as_mut(), field::SPA, &addr.octets())
    }

    /// Sets the target hardware address.
    #[inline]
    pub fn set_target_hardware_addr(&mut self, addr: EthernetAddress) {
        bytes::set_bytes(self.buffer.as_mut(), field::THA, &addr.0)
    }

    /// Sets the target protocol address.
    #[inline]
    pub fn set_target_protocol_addr(&mut self, addr: Ipv4Addr) {
        bytes::set_bytes(self.buffer.as_mut(), field::TPA, &addr.octets())
    }
}

/// The parsed form of an Ethernet/IPv4 ARP request or reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    /// Request or reply.
    pub operation: ArpOperation,
    /// Sender hardware address.
    pub sender_hardware_addr: EthernetAddress,
    /// Sender protocol address.
    pub sender_protocol_addr: Ipv4Addr,
    /// Target hardware address (zero in a request).
    pub target_hardware_addr: EthernetAddress,
    /// Target protocol address.
    pub target_protocol_addr: Ipv4Addr,
}

impl ArpRepr {
    /// Reads a packet; other hardware/protocol types and operations are `Unsupported`.
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> Result<ArpRepr> {
        if packet.buffer.as_ref().len() < field::LEN {
            return Err(WireError::Truncated);
        }
        if !packet.is_ethernet_ipv4() {
            return Err(WireError::Unsupported);
        }
        let operation =
            ArpOperation::from_code(packet.operation()).ok_or(WireError::Unsupported)?;
        Ok(ArpRepr {
            operation,
            sender_hardware_addr: packet.sender_hardware_addr(),
            sender_protocol_addr: packet.sender_protocol_addr(),
            target_hardware_addr: packet.target_hardware_addr(),
            target_protocol_addr: packet.target_protocol_addr(),
        })
    }

    /// Bytes the packet needs.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        field::LEN
    }

    /// Writes the packet into `packet`, which must be at least [`Self::buffer_len`] long.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ArpPacket<T>) {
        packet.set_ethernet_ipv4();
        packet.set_operation(self.operation.code());
        packet.set_sender_hardware_addr(self.sender_hardware_addr);
        packet.set_sender_protocol_addr(self.sender_protocol_addr);
        packet.set_target_hardware_addr(self.target_hardware_addr);
        packet.set_target_protocol_addr(self.target_protocol_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{EthernetFrame, EthernetRepr};
    use proptest::prelude::*;

    static REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // eth/ipv4, request
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 10, 0, 0, 1, // sender
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 10, 0, 0, 2, // target
    ];

    fn request_repr() -> ArpRepr {
        ArpRepr {
            operation: ArpOperation::Request,
            sender_hardware_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            sender_protocol_addr: Ipv4Addr::new(10, 0, 0, 1),
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: Ipv4Addr::new(10, 0, 0, 2),
        }
    }

    #[test]
    fn deconstruct() {
        let p = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        assert!(p.is_ethernet_ipv4());
        assert_eq!(p.operation(), 1);
        assert_eq!(p.sender_protocol_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.target_protocol_addr(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(ArpRepr::parse(&p), Ok(request_repr()));
    }

    #[test]
    fn construct() {
        let mut buf = [0xffu8; 28];
        request_repr().emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
        assert_eq!(buf, REQUEST);
    }

    #[test]
    fn overlong_input_is_fine_and_other_kinds_unsupported() {
        let mut long = REQUEST.to_vec();
        long.extend_from_slice(&[0; 18]); // Ethernet padding
        assert_eq!(
            ArpRepr::parse(&ArpPacket::new_checked(&long[..]).unwrap()),
            Ok(request_repr())
        );
        let mut other = REQUEST;
        other[7] = 3; // RARP request
        assert_eq!(
            ArpRepr::parse(&ArpPacket::new_unchecked(&other[..])),
            Err(WireError::Unsupported)
        );
        let mut other = REQUEST;
        other[1] = 6; // IEEE 802 hardware
        assert_eq!(
            ArpRepr::parse(&ArpPacket::new_unchecked(&other[..])),
            Err(WireError::Unsupported)
        );
    }

    fn touch_all<T: AsRef<[u8]>>(p: &ArpPacket<T>) {
        let _ = (
            p.hardware_type(),
            p.protocol_type(),
            p.hardware_len(),
            p.protocol_len(),
            p.operation(),
            p.sender_hardware_addr(),
            p.sender_protocol_addr(),
            p.target_hardware_addr(),
            p.target_protocol_addr(),
            ArpRepr::parse(p),
        );
    }

    #[test]
    fn truncations_are_errors_never_panics() {
        for len in 0..REQUEST.len() {
            assert_eq!(
                ArpPacket::new_checked(&REQUEST[..len]),
                Err(WireError::Truncated)
            );
            let p = ArpPacket::new_unchecked(&REQUEST[..len]);
            touch_all(&p);
            assert_eq!(ArpRepr::parse(&p), Err(WireError::Truncated));
        }
    }

    fn arb_repr() -> impl Strategy<Value = ArpRepr> {
        (
            any::<bool>(),
            any::<[u8; 6]>(),
            any::<u32>(),
            any::<[u8; 6]>(),
            any::<u32>(),
        )
            .prop_map(|(reply, sha, spa, tha, tpa)| ArpRepr {
                operation: if reply {
                    ArpOperation::Reply
                } else {
                    ArpOperation::Request
                },
                sender_hardware_addr: EthernetAddress(sha),
                sender_protocol_addr: Ipv4Addr::from_bits(spa),
                target_hardware_addr: EthernetAddress(tha),
                target_protocol_addr: Ipv4Addr::from_bits(tpa),
            })
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(p) = ArpPacket::new_checked(&bytes[..]) {
                touch_all(&p);
            }
        }

        #[test]
        fn repr_round_trip_and_etherparse_agrees(repr in arb_repr()) {
            let eth = EthernetRepr {
                src: repr.sender_hardware_addr,
                dst: EthernetAddress::BROADCAST,
                ethertype: EtherType::ARP,
            };
            let mut buf = vec![0u8; eth.buffer_len() + repr.buffer_len()];
            eth.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
            repr.emit(&mut ArpPacket::new_unchecked(&mut buf[14..]));
            let parsed = ArpRepr::parse(&ArpPacket::new_checked(&buf[14..]).unwrap());
            prop_assert_eq!(parsed, Ok(repr));

            let sliced = etherparse::SlicedPacket::from_ethernet(&buf).unwrap();
            let Some(etherparse::NetSlice::Arp(arp)) = sliced.net else {
                return Err(TestCaseError::fail("etherparse did not see ARP"));
            };
            let arp = arp.to_packet().try_eth_ipv4().unwrap();
            prop_assert_eq!(arp.operation.0, repr.operation.code());
            prop_assert_eq!(arp.sender_mac, repr.sender_hardware_addr.0);
            prop_assert_eq!(arp.sender_ipv4, repr.sender_protocol_addr.octets());
            prop_assert_eq!(arp.target_mac, repr.target_hardware_addr.0);
            prop_assert_eq!(arp.target_ipv4, repr.target_protocol_addr.octets());
        }
    }
}
