//! UDP datagrams (RFC 768).
//!
//! [`UdpPacket::new_checked`] validates, once: 8 bytes present, the length field at least 8
//! and at most the buffer. The payload and the checksum are bounded by the length field,
//! not the buffer. Over IPv4 a zero checksum means "none"; over IPv6 it is mandatory
//! (RFC 8200 §8.1), and a computed zero is sent as 0xffff on both.
//!
//! `set_len` changes what the check covered; re-check after it if the buffer came from
//! the wire.

use super::checksum::{self, PseudoHeader};
use super::{bytes, IpProtocol, Result, WireError};

mod field {
    use crate::wire::Field;

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
    pub const PAYLOAD: usize = CHECKSUM.end;
}

/// A view of a UDP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Length of the header, bytes.
    pub const HEADER_LEN: usize = field::PAYLOAD;

    /// Wraps `buffer` without checking it; see the module doc.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wraps `buffer` after validating the length field; see the module doc.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        let len = packet.buffer.as_ref().len();
        if len < field::PAYLOAD {
            return Err(WireError::Truncated);
        }
        let claimed = usize::from(packet.len());
        if claimed < field::PAYLOAD {
            return Err(WireError::Malformed);
        }
        if claimed > len {
            return Err(WireError::Truncated);
        }
        Ok(packet)
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Length field (header + payload), bytes.
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::LENGTH)
    }

    /// Checksum field (0: none, IPv4 only).
    #[inline]
    pub fn checksum(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The datagram as the length field bounds it (header + payload).
    #[inline]
    pub fn datagram(&self) -> &[u8] {
        bytes::range(self.buffer.as_ref(), 0, usize::from(self.len()))
    }

    /// The payload, bounded by the length field.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        bytes::range(
            self.buffer.as_ref(),
            field::PAYLOAD,
            usize::from(self.len()),
        )
    }

    /// Whether the checksum verifies against `pseudo`: a zero checksum passes over IPv4
    /// (no checksum) and fails over IPv6 (mandatory there).
    #[inline]
    pub fn verify_checksum(&self, pseudo: &PseudoHeader) -> bool {
        if self.checksum() == 0 {
            return !pseudo.is_ipv6();
        }
        let datagram = self.datagram();
        checksum::combine(&[
            pseudo.sum(IpProtocol::UDP, datagram.len()),
            checksum::data(datagram),
        ]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port.
    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::SRC_PORT, port)
    }

    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::DST_PORT, port)
    }

    /// Sets the length field, bytes.
    #[inline]
    pub fn set_len(&mut self, len: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::LENGTH, len)
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::CHECKSUM, value)
    }

    /// Computes and writes the checksum over the datagram and `pseudo` (0 becomes 0xffff).
    #[inline]
    pub fn fill_checksum(&mut self, pseudo: &PseudoHeader) {
        self.set_checksum(0);
        let datagram = self.datagram();
        let sum = checksum::combine(&[
            pseudo.sum(IpProtocol::UDP, datagram.len()),
            checksum::data(datagram),
        ]);
        let csum = match checksum::finish(sum) {
            0 => 0xffff,
            c => c,
        };
        self.set_checksum(csum)
    }

    /// The payload, writable (bounded by the length field).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = usize::from(self.len());
        bytes::range_mut(self.buffer.as_mut(), field::PAYLOAD, len)
    }
}

/// The parsed form of a UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Datagram payload.
    pub payload: &'a [u8],
}

impl<'a> UdpRepr<'a> {
    /// Reads a datagram whose checksum verifies against `pseudo` (see
    /// [`UdpPacket::verify_checksum`]).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &UdpPacket<&'a T>,
        pseudo: &PseudoHeader,
    ) -> Result<UdpRepr<'a>> {
        let packet = UdpPacket::new_checked(T::as_ref(packet.buffer))?;
        if !packet.verify_checksum(pseudo) {
            return Err(WireError::BadChecksum);
        }
        let data = packet.buffer;
        Ok(UdpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload: bytes::range(data, field::PAYLOAD, usize::from(packet.len())),
        })
    }

    /// Bytes the datagram needs.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        field::PAYLOAD + self.payload.len()
    }

    /// Writes the datagram, checksum filled, into `packet` (at least [`Self::buffer_len`]).
    ///
    /// The length field saturates at 65535 for an oversized payload.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut UdpPacket<T>,
        pseudo: &PseudoHeader,
    ) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(u16::try_from(self.buffer_len()).unwrap_or(u16::MAX));
        packet.payload_mut().copy_from_slice(self.payload);
        packet.fill_checksum(pseudo);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{test_support, GUE_PORT};
    use core::net::{Ipv4Addr, Ipv6Addr};
    use proptest::prelude::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn pseudo4() -> PseudoHeader {
        PseudoHeader::V4 { src: SRC, dst: DST }
    }

    fn pseudo6() -> PseudoHeader {
        PseudoHeader::V6 {
            src: "2001:db8::1".parse().unwrap(),
            dst: "2001:db8::2".parse().unwrap(),
        }
    }

    // 12-byte datagram (DNS-ish), 2 bytes of trailing padding.
    static DATAGRAM: [u8; 14] = [
        0xbf, 0x00, 0x00, 0x35, // 48896 -> 53
        0x00, 0x0c, 0x00, 0x00, // len 12, checksum
        0xaa, 0x00, 0x00, 0xff, // payload
        0xee, 0xee, // padding
    ];

    #[test]
    fn deconstruct_and_construct() {
        let mut bytes = DATAGRAM;
        UdpPacket::new_unchecked(&mut bytes[..]).fill_checksum(&pseudo4());
        let p = UdpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.len()), (48896, 53, 12));
        assert_eq!(p.payload(), &[0xaa, 0, 0, 0xff]);
        assert!(p.verify_checksum(&pseudo4()));
        assert_ne!(p.checksum(), 0);
        let repr = UdpRepr {
            src_port: 48896,
            dst_port: 53,
            payload: &[0xaa, 0, 0, 0xff],
        };
        assert_eq!(UdpRepr::parse(&p, &pseudo4()), Ok(repr));
        let mut built = [0xeeu8; 14];
        repr.emit(&mut UdpPacket::new_unchecked(&mut built[..]), &pseudo4());
        assert_eq!(built, bytes);
    }

    #[test]
    fn zero_checksum_is_none_over_ipv4_only() {
        let mut bytes = DATAGRAM;
        let p = UdpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.checksum(), 0);
        assert!(p.verify_checksum(&pseudo4()));
        assert!(!p.verify_checksum(&pseudo6()));
        assert_eq!(UdpRepr::parse(&p, &pseudo6()), Err(WireError::BadChecksum));
        UdpPacket::new_unchecked(&mut bytes[..]).fill_checksum(&pseudo6());
        assert!(UdpPacket::new_unchecked(&bytes[..]).verify_checksum(&pseudo6()));
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Find a payload word making the checksum compute to zero, then check the field.
        let mut bytes = [0u8; 10];
        bytes[..8].copy_from_slice(&[0, 1, 0, 2, 0, 10, 0, 0]);
        let mut p = UdpPacket::new_unchecked(&mut bytes[..]);
        p.fill_checksum(&pseudo4());
        let c = p.checksum();
        // Adding the current checksum value to the payload makes the sum 0xffff.
        p.payload_mut().copy_from_slice(&c.to_be_bytes());
        p.fill_checksum(&pseudo4());
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum(&pseudo4()));
    }

    #[test]
    fn length_field_is_checked() {
        let mut b = DATAGRAM;
        b[5] = 7;
        assert_eq!(UdpPacket::new_checked(&b[..]), Err(WireError::Malformed));
        b[5] = 15;
        assert_eq!(UdpPacket::new_checked(&b[..]), Err(WireError::Truncated));
    }

    fn touch_all<T: AsRef<[u8]>>(p: &UdpPacket<T>) {
        let _ = (
            p.src_port(),
            p.dst_port(),
            p.len(),
            p.checksum(),
            p.payload().len(),
            p.datagram().len(),
            p.verify_checksum(&pseudo4()),
            p.verify_checksum(&pseudo6()),
        );
    }

    #[test]
    fn truncations_are_errors_never_panics() {
        let mut bytes = DATAGRAM;
        UdpPacket::new_unchecked(&mut bytes[..]).fill_checksum(&pseudo4());
        for len in 0..bytes.len() {
            let r = UdpPacket::new_checked(&bytes[..len]);
            assert_eq!(r.is_ok(), len >= 12);
            if len < 12 {
                assert_eq!(r, Err(WireError::Truncated));
            }
            let view = UdpPacket::new_unchecked(&bytes[..len]);
            touch_all(&view);
            assert_eq!(UdpRepr::parse(&view, &pseudo4()).is_ok(), len >= 12);
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(p) = UdpPacket::new_checked(&bytes[..]) {
                prop_assert_eq!(p.payload().len() + 8, usize::from(p.len()));
                touch_all(&p);
            }
        }

        #[test]
        fn repr_round_trip_v4_and_etherparse_agrees(sp: u16, dp: u16, payload in proptest::collection::vec(any::<u8>(), 0..300), src: u32, dst: u32) {
            let (src, dst) = (Ipv4Addr::from_bits(src), Ipv4Addr::from_bits(dst));
            let pseudo = PseudoHeader::V4 { src, dst };
            let repr = UdpRepr { src_port: sp, dst_port: dp, payload: &payload };
            let mut dgram = vec![0u8; repr.buffer_len()];
            repr.emit(&mut UdpPacket::new_unchecked(&mut dgram[..]), &pseudo);
            let view = UdpPacket::new_checked(&dgram[..]).unwrap();
            prop_assert_eq!(UdpRepr::parse(&view, &pseudo), Ok(repr));

            let frame = test_support::ipv4_frame(src, dst, IpProtocol::UDP, &dgram);
            let sliced = etherparse::SlicedPacket::from_ethernet(&frame).unwrap();
            let Some(etherparse::TransportSlice::Udp(udp)) = sliced.transport else {
                return Err(TestCaseError::fail("etherparse saw no UDP"));
            };
            let expect = udp.to_header().calc_checksum_ipv4_raw(src.octets(), dst.octets(), udp.payload()).unwrap();
            prop_assert_eq!(expect, view.checksum());
            prop_assert_eq!(udp.payload(), &payload[..]);
        }

        #[test]
        fn repr_round_trip_v6_and_etherparse_agrees(sp: u16, payload in proptest::collection::vec(any::<u8>(), 0..300), src: u128, dst: u128) {
            let (src, dst) = (Ipv6Addr::from_bits(src), Ipv6Addr::from_bits(dst));
            let pseudo = PseudoHeader::V6 { src, dst };
            let repr = UdpRepr { src_port: sp, dst_port: GUE_PORT, payload: &payload };
            let mut dgram = vec![0u8; repr.buffer_len()];
            repr.emit(&mut UdpPacket::new_unchecked(&mut dgram[..]), &pseudo);
            let view = UdpPacket::new_checked(&dgram[..]).unwrap();
            prop_assert_eq!(UdpRepr::parse(&view, &pseudo), Ok(repr));

            let frame = test_support::ipv6_frame(src, dst, IpProtocol::UDP, &dgram);
            let sliced = etherparse::SlicedPacket::from_ethernet(&frame).unwrap();
            let Some(etherparse::TransportSlice::Udp(udp)) = sliced.transport else {
                return Err(TestCaseError::fail("etherparse saw no UDP"));
            };
            let expect = udp.to_header().calc_checksum_ipv6_raw(src.octets(), dst.octets(), udp.payload()).unwrap();
            prop_assert_eq!(expect, view.checksum());
        }

        #[test]
        fn port_and_address_rewrite_incremental(sp: u16, payload in proptest::collection::vec(any::<u8>(), 0..64), src: u128, new_src: u128, new_sport: u16) {
            let (src, dst) = (Ipv6Addr::from_bits(src), Ipv6Addr::LOCALHOST);
            let repr = UdpRepr { src_port: sp, dst_port: 53, payload: &payload };
            let mut dgram = vec![0u8; repr.buffer_len()];
            repr.emit(&mut UdpPacket::new_unchecked(&mut dgram[..]), &PseudoHeader::V6 { src, dst });
            let mut p = UdpPacket::new_unchecked(&mut dgram[..]);
            let new_src = Ipv6Addr::from_bits(new_src);
            let csum = checksum::udp_update(p.checksum(), |c| {
                let c = checksum::update128(c, &src.octets(), &new_src.octets());
                checksum::update16(c, sp, new_sport)
            });
            p.set_src_port(new_sport);
            p.set_checksum(csum);
            let pseudo = PseudoHeader::V6 { src: new_src, dst };
            prop_assert!(p.verify_checksum(&pseudo));
            p.fill_checksum(&pseudo);
            prop_assert_eq!(p.checksum(), csum);
        }
    }
}
