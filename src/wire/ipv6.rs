//! IPv6 headers (RFC 8200) and the extension-header walk.
//!
//! [`Ipv6Packet::new_checked`] validates, once: the buffer holds the 40-byte fixed header,
//! the version is 6, and the payload length fits the buffer (padding after it is allowed).
//! [`Ipv6Packet::payload`] is bounded by the payload length, not the buffer. Jumbograms
//! (payload length 0 with a jumbo option) are read as an empty payload.
//!
//! [`Ipv6Packet::extensions`] walks hop-by-hop, routing, fragment and destination-options
//! headers to the upper-layer protocol, at most [`MAX_EXTENSION_HEADERS`] of them, inside
//! the payload length. It stops at anything else (AH, ESP, no-next-header, TCP, ...) and at
//! the fragment header of a non-first fragment, whose upper-layer header is elsewhere.
//!
//! `set_payload_len` changes what the check covered; re-check after it if the buffer came
//! from the wire.

use core::net::Ipv6Addr;

use super::{bytes, IpProtocol, Result, WireError};

mod field {
    use crate::wire::Field;

    pub const VER_TC_FLOW: Field = 0..4;
    pub const LENGTH: Field = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Field = 8..24;
    pub const DST_ADDR: Field = 24..40;
    pub const PAYLOAD: usize = DST_ADDR.end;

    /// Extension header: next header, from the start of the extension header.
    pub const EXT_NXT_HDR: usize = 0;
    /// Extension header: length in 8-byte units, not counting the first 8.
    pub const EXT_LEN: usize = 1;
    /// Fragment header: offset (13 bits, 8-byte units), reserved (2), M flag (1).
    pub const FRAG_OFF_M: Field = 2..4;
    /// Fragment header: identification.
    pub const FRAG_IDENT: Field = 4..8;
    pub const FRAG_LEN: usize = FRAG_IDENT.end;
}

/// Most extension headers [`Ipv6Packet::extensions`] steps over before giving up.
pub const MAX_EXTENSION_HEADERS: usize = 8;

/// What a fragment header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6FragmentInfo {
    /// Offset of this fragment's data in the original payload, bytes.
    pub offset: u16,
    /// More fragments follow.
    pub more_fragments: bool,
    /// Identification shared by the fragments of one packet.
    pub ident: u32,
}

impl Ipv6FragmentInfo {
    /// Whether this is the first fragment (the one holding the upper-layer header).
    #[inline]
    pub fn is_first(&self) -> bool {
        self.offset == 0
    }
}

/// The result of the extension-header walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Extensions {
    /// The protocol after the last extension header stepped over.
    pub upper_protocol: IpProtocol,
    /// Offset of the upper-layer header from the start of the IPv6 header, bytes.
    pub upper_offset: usize,
    /// The fragment header, if there was one.
    pub fragment: Option<Ipv6FragmentInfo>,
    /// How many extension headers were stepped over.
    pub count: u8,
}

impl Ipv6Extensions {
    /// Whether the upper-layer header is in this packet: not a non-first fragment and not
    /// "no next header".
    #[inline]
    pub fn has_upper_header(&self) -> bool {
        self.fragment.is_none_or(|f| f.is_first())
            && self.upper_protocol != IpProtocol::IPV6_NO_NEXT
    }
}

/// A view of an IPv6 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Length of the fixed header, bytes.
    pub const HEADER_LEN: usize = field::PAYLOAD;

    /// Wraps `buffer` without checking it; see the module doc.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Wraps `buffer` after validating the fixed header and payload length.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_checked_header(buffer)?;
        if packet.total_len() > packet.buffer.as_ref().len() {
            return Err(WireError::Truncated);
        }
        Ok(packet)
    }

    /// Validates the fixed header alone, not the payload length: enough for the header
    /// quoted in an ICMPv6 error, whose payload is cut short.
    #[inline]
    pub fn new_checked_header(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        if packet.buffer.as_ref().len() < field::PAYLOAD {
            return Err(WireError::Truncated);
        }
        if packet.version() != 6 {
            return Err(WireError::BadVersion);
        }
        Ok(packet)
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The bytes of the whole buffer.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    #[inline]
    fn ver_tc_flow(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), field::VER_TC_FLOW)
    }

    /// Version field (6).
    #[inline]
    pub fn version(&self) -> u8 {
        (self.ver_tc_flow() >> 28) as u8
    }

    /// Traffic class (DSCP << 2 | ECN).
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (self.ver_tc_flow() >> 20) as u8
    }

    /// Differentiated services code point (6 bits).
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.traffic_class() >> 2
    }

    /// Explicit congestion notification (2 bits).
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.traffic_class() & 0x03
    }

    /// Flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        self.ver_tc_flow() & 0x000f_ffff
    }

    /// Payload length (extension headers included), bytes.
    #[inline]
    pub fn payload_len(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::LENGTH)
    }

    /// Fixed header plus payload length, bytes.
    #[inline]
    pub fn total_len(&self) -> usize {
        field::PAYLOAD + usize::from(self.payload_len())
    }

    /// Next header (the first extension header or the upper-layer protocol).
    #[inline]
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(bytes::u8_at(self.buffer.as_ref(), field::NXT_HDR))
    }

    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::HOP_LIMIT)
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(bytes::array::<16>(self.buffer.as_ref(), field::SRC_ADDR))
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(bytes::array::<16>(self.buffer.as_ref(), field::DST_ADDR))
    }

    /// The payload (extension headers included), bounded by the payload length.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        bytes::range(self.buffer.as_ref(), field::PAYLOAD, self.total_len())
    }

    /// Walks the extension headers to the upper-layer protocol; see the module doc.
    ///
    /// Errors: `Truncated` if a header runs past the payload, `Malformed` for hop-by-hop
    /// anywhere but first or a second fragment header, `TooManyHeaders` past the limit.
    pub fn extensions(&self) -> Result<Ipv6Extensions> {
        let data = self.buffer.as_ref();
        // Never look past the payload length nor the buffer.
        let end = self.total_len().min(data.len());
        let mut ext = Ipv6Extensions {
            upper_protocol: self.next_header(),
            upper_offset: field::PAYLOAD,
            fragment: None,
            count: 0,
        };
        for _ in 0..=MAX_EXTENSION_HEADERS {
            let header_len = match ext.upper_protocol {
                IpProtocol::HOP_BY_HOP if ext.count != 0 => return Err(WireError::Malformed),
                IpProtocol::HOP_BY_HOP | IpProtocol::IPV6_ROUTING | IpProtocol::IPV6_DEST_OPTS => {
                    let len_byte = bytes::range(data, ext.upper_offset, end).get(field::EXT_LEN);
                    let len_byte = len_byte.copied().ok_or(WireError::Truncated)?;
                    (usize::from(len_byte) + 1) * 8
                }
                IpProtocol::IPV6_FRAGMENT => {
                    if ext.fragment.is_some() {
                        return Err(WireError::Malformed);
                    }
                    field::FRAG_LEN
                }
                _ => return Ok(ext),
            };
            if usize::from(ext.count) == MAX_EXTENSION_HEADERS {
                return Err(WireError::TooManyHeaders);
            }
            let header = bytes::range(data, ext.upper_offset, ext.upper_offset + header_len);
            if header.len() != header_len || ext.upper_offset + header_len > end {
                return Err(WireError::Truncated);
            }
            let is_fragment = ext.upper_protocol == IpProtocol::IPV6_FRAGMENT;
            ext.upper_protocol = IpProtocol(bytes::u8_at(header, field::EXT_NXT_HDR));
            ext.upper_offset += header_len;
            ext.count += 1;
            if is_fragment {
                let off_m = bytes::u16_at(header, field::FRAG_OFF_M);
                let info = Ipv6FragmentInfo {
                    offset: off_m & !0x7,
                    more_fragments: off_m & 0x1 != 0,
                    ident: bytes::u32_at(header, field::FRAG_IDENT),
                };
                ext.fragment = Some(info);
                if !info.is_first() {
                    return Ok(ext);
                }
            }
        }
        // The loop returns at the latest when count reaches the limit.
        Err(WireError::TooManyHeaders)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Sets version 6, traffic class and flow label (masked to 20 bits).
    #[inline]
    pub fn set_version_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let word = (6u32 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
        bytes::set_u32(self.buffer.as_mut(), field::VER_TC_FLOW, word)
    }

    /// Sets the payload length, bytes.
    #[inline]
    pub fn set_payload_len(&mut self, len: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::LENGTH, len)
    }

    /// Sets the next header.
    #[inline]
    pub fn set_next_header(&mut self, protocol: IpProtocol) {
        bytes::set_u8(self.buffer.as_mut(), field::NXT_HDR, protocol.0)
    }

    /// Sets the hop limit.
    #[inline]
    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        bytes::set_u8(self.buffer.as_mut(), field::HOP_LIMIT, hop_limit)
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv6Addr) {
        bytes::set_bytes(self.buffer.as_mut(), field::SRC_ADDR, &addr.octets())
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv6Addr) {
        bytes::set_bytes(self.buffer.as_mut(), field::DST_ADDR, &addr.octets())
    }

    /// The payload, writable (bounded by the payload length).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let to = self.total_len();
        bytes::range_mut(self.buffer.as_mut(), field::PAYLOAD, to)
    }
}

/// The parsed form of an IPv6 fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// Next header.
    pub next_header: IpProtocol,
    /// Payload length, bytes.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
}

impl Ipv6Repr {
    /// Reads the fixed header of a packet (re-validated, so an unchecked view is fine).
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Result<Ipv6Repr> {
        let packet = Ipv6Packet::new_checked(packet.as_bytes())?;
        Ok(Ipv6Repr {
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
        })
    }

    /// Bytes the fixed header needs.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        field::PAYLOAD
    }

    /// Writes the fixed header into `packet` (at least [`Self::buffer_len`]).
    ///
    /// The payload length saturates at 65535 if `payload_len` is too large.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv6Packet<T>) {
        packet.set_version_tc_flow(self.traffic_class, self.flow_label);
        packet.set_payload_len(u16::try_from(self.payload_len).unwrap_or(u16::MAX));
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src);
        packet.set_dst_addr(self.dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(next: u8, payload_len: u16) -> Vec<u8> {
        let repr = Ipv6Repr {
            src: "2001:db8::1".parse().unwrap(),
            dst: "2001:db8::2".parse().unwrap(),
            next_header: IpProtocol(next),
            payload_len: usize::from(payload_len),
            hop_limit: 64,
            traffic_class: 0xb8,
            flow_label: 0x12345,
        };
        let mut buf = vec![0u8; 40];
        repr.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]));
        buf
    }

    /// IPv6 + hop-by-hop (8) + routing (16) + fragment (8) + dest-opts (8) + 8 bytes of UDP.
    fn chained(frag_offset: u16, more: bool) -> Vec<u8> {
        let mut p = header(0, 8 + 16 + 8 + 8 + 8);
        p.extend_from_slice(&[43, 0, 1, 4, 0, 0, 0, 0]); // hop-by-hop -> routing, PadN
        p.extend_from_slice(&[44, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // routing -> fragment
        let off_m = frag_offset | u16::from(more);
        let [hi, lo] = off_m.to_be_bytes();
        p.extend_from_slice(&[60, 0, hi, lo, 0xde, 0xad, 0xbe, 0xef]); // fragment -> dest-opts
        p.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]); // dest-opts -> UDP
        p.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00]); // UDP
        p
    }

    #[test]
    fn deconstruct() {
        let mut bytes = header(6, 4);
        bytes.extend_from_slice(&[1, 2, 3, 4, 0xee, 0xee]); // payload + padding
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!((p.dscp(), p.ecn()), (46, 0));
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload_len(), 4);
        assert_eq!(p.next_header(), IpProtocol::TCP);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dst_addr(), "2001:db8::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
        assert_eq!(bytes[..4], [0x6b, 0x81, 0x23, 0x45]);
        let ext = p.extensions().unwrap();
        assert_eq!(
            ext,
            Ipv6Extensions {
                upper_protocol: IpProtocol::TCP,
                upper_offset: 40,
                fragment: None,
                count: 0
            }
        );
    }

    #[test]
    fn bad_version_and_truncated_payload() {
        let mut bytes = header(6, 4);
        bytes.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            Ipv6Packet::new_checked(&bytes[..]),
            Err(WireError::Truncated)
        );
        assert!(Ipv6Packet::new_checked_header(&bytes[..]).is_ok());
        bytes[0] = 0x45;
        assert_eq!(
            Ipv6Packet::new_checked_header(&bytes[..]),
            Err(WireError::BadVersion)
        );
    }

    #[test]
    fn extension_walk_reaches_udp() {
        let bytes = chained(0, true);
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        let ext = p.extensions().unwrap();
        assert_eq!(ext.upper_protocol, IpProtocol::UDP);
        assert_eq!(ext.upper_offset, 40 + 8 + 16 + 8 + 8);
        assert_eq!(ext.count, 4);
        assert_eq!(
            ext.fragment,
            Some(Ipv6FragmentInfo {
                offset: 0,
                more_fragments: true,
                ident: 0xdeadbeef
            })
        );
        assert!(ext.has_upper_header());
        assert_eq!(
            &bytes[ext.upper_offset..ext.upper_offset + 2],
            &[0x30, 0x39]
        );

        // etherparse finds the same upper layer.
        let sliced = etherparse::SlicedPacket::from_ip(&bytes).unwrap();
        let Some(etherparse::NetSlice::Ipv6(v6)) = sliced.net else {
            panic!("not ipv6")
        };
        assert_eq!(v6.payload().ip_number.0, 17);
        assert_eq!(v6.payload().payload.len(), 8);
    }

    #[test]
    fn non_first_fragment_stops_at_fragment_header() {
        let bytes = chained(1448, false);
        let ext = Ipv6Packet::new_checked(&bytes[..])
            .unwrap()
            .extensions()
            .unwrap();
        assert_eq!(ext.upper_protocol, IpProtocol::IPV6_DEST_OPTS);
        assert_eq!(ext.upper_offset, 40 + 8 + 16 + 8);
        assert_eq!(
            ext.fragment.map(|f| (f.offset, f.more_fragments)),
            Some((1448, false))
        );
        assert!(!ext.has_upper_header());
    }

    #[test]
    fn walk_stops_at_esp_ah_and_no_next() {
        for stop in [IpProtocol::ESP, IpProtocol::AH, IpProtocol::IPV6_NO_NEXT] {
            let mut bytes = header(60, 16);
            bytes.extend_from_slice(&[stop.0, 0, 1, 4, 0, 0, 0, 0]);
            bytes.extend_from_slice(&[0xff; 8]);
            let ext = Ipv6Packet::new_checked(&bytes[..])
                .unwrap()
                .extensions()
                .unwrap();
            assert_eq!(
                (ext.upper_protocol, ext.upper_offset, ext.count),
                (stop, 48, 1)
            );
            assert_eq!(ext.has_upper_header(), stop != IpProtocol::IPV6_NO_NEXT);
        }
    }

    #[test]
    fn walk_rejects_bad_chains() {
        // Hop-by-hop after another header.
        let mut bytes = header(60, 16);
        bytes.extend_from_slice(&[0, 0, 1, 4, 0, 0, 0, 0]);
        bytes.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
        assert_eq!(
            Ipv6Packet::new_checked(&bytes[..]).unwrap().extensions(),
            Err(WireError::Malformed)
        );
        // Two fragment headers.
        let mut bytes = header(44, 16);
        bytes.extend_from_slice(&[44, 0, 0, 1, 0, 0, 0, 1]);
        bytes.extend_from_slice(&[6, 0, 0, 1, 0, 0, 0, 1]);
        assert_eq!(
            Ipv6Packet::new_checked(&bytes[..]).unwrap().extensions(),
            Err(WireError::Malformed)
        );
        // An extension header claiming more than the payload length (though the buffer has it).
        let mut bytes = header(60, 8);
        bytes.extend_from_slice(&[6, 1, 0, 0, 0, 0, 0, 0]);
        bytes.extend_from_slice(&[0; 8]);
        assert_eq!(
            Ipv6Packet::new_checked(&bytes[..]).unwrap().extensions(),
            Err(WireError::Truncated)
        );
        // Payload too short to hold even the length byte.
        let mut bytes = header(60, 1);
        bytes.push(6);
        assert_eq!(
            Ipv6Packet::new_checked(&bytes[..]).unwrap().extensions(),
            Err(WireError::Truncated)
        );
        // Too many destination-options headers.
        let n = MAX_EXTENSION_HEADERS + 1;
        let mut bytes = header(60, (n * 8) as u16);
        for _ in 0..n {
            bytes.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
        }
        assert_eq!(
            Ipv6Packet::new_checked(&bytes[..]).unwrap().extensions(),
            Err(WireError::TooManyHeaders)
        );
        // Exactly the limit is fine.
        let mut bytes = header(60, (MAX_EXTENSION_HEADERS * 8) as u16);
        for i in 0..MAX_EXTENSION_HEADERS {
            let next = if i + 1 == MAX_EXTENSION_HEADERS {
                59
            } else {
                60
            };
            bytes.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
        }
        let ext = Ipv6Packet::new_checked(&bytes[..])
            .unwrap()
            .extensions()
            .unwrap();
        assert_eq!(usize::from(ext.count), MAX_EXTENSION_HEADERS);
    }

    fn touch_all<T: AsRef<[u8]>>(p: &Ipv6Packet<T>) {
        let _ = (
            p.version(),
            p.traffic_class(),
            p.dscp(),
            p.ecn(),
            p.flow_label(),
            p.payload_len(),
            p.next_header(),
            p.hop_limit(),
            p.src_addr(),
            p.dst_addr(),
            p.payload().len(),
            p.extensions(),
            Ipv6Repr::parse(p),
        );
    }

    #[test]
    fn truncations_are_errors_never_panics() {
        let bytes = chained(0, false);
        for len in 0..bytes.len() {
            assert_eq!(
                Ipv6Packet::new_checked(&bytes[..len]),
                Err(WireError::Truncated)
            );
            touch_all(&Ipv6Packet::new_unchecked(&bytes[..len]));
            // A header whose payload length agrees with the cut must walk to an error or stop.
            if len >= 40 {
                let mut cut = bytes[..len].to_vec();
                cut[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
                let p = Ipv6Packet::new_checked(&cut[..]).unwrap();
                if let Ok(ext) = p.extensions() {
                    assert!(ext.upper_offset <= len);
                }
            }
        }
    }

    fn arb_repr() -> impl Strategy<Value = Ipv6Repr> {
        (
            any::<u128>(),
            any::<u128>(),
            any::<u8>(),
            0usize..1400,
            any::<u8>(),
            any::<u8>(),
            0u32..(1 << 20),
        )
            .prop_map(|(s, d, nh, len, hl, tc, fl)| Ipv6Repr {
                src: Ipv6Addr::from_bits(s),
                dst: Ipv6Addr::from_bits(d),
                next_header: IpProtocol(nh),
                payload_len: len,
                hop_limit: hl,
                traffic_class: tc,
                flow_label: fl,
            })
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..160), fix: bool) {
            if fix && bytes.len() >= 40 {
                bytes[0] = 0x60 | (bytes[0] & 0x0f);
                let len = (bytes.len() - 40) as u16;
                bytes[4..6].copy_from_slice(&len.to_be_bytes());
                // Bias towards extension headers.
                bytes[6] = [0u8, 43, 44, 60][usize::from(bytes[7] & 3)];
            }
            if let Ok(p) = Ipv6Packet::new_checked(&bytes[..]) {
                touch_all(&p);
                if let Ok(ext) = p.extensions() {
                    prop_assert!(ext.upper_offset <= p.total_len());
                    prop_assert!(usize::from(ext.count) <= MAX_EXTENSION_HEADERS);
                }
            }
        }

        #[test]
        fn repr_round_trip_and_etherparse_agrees(repr in arb_repr()) {
            let mut buf = vec![0u8; repr.buffer_len() + repr.payload_len];
            repr.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]));
            prop_assert_eq!(Ipv6Repr::parse(&Ipv6Packet::new_checked(&buf[..]).unwrap()), Ok(repr));
            let (hdr, _) = etherparse::Ipv6Header::from_slice(&buf).unwrap();
            prop_assert_eq!(hdr.source, repr.src.octets());
            prop_assert_eq!(hdr.destination, repr.dst.octets());
            prop_assert_eq!(hdr.next_header.0, repr.next_header.0);
            prop_assert_eq!(usize::from(hdr.payload_length), repr.payload_len);
            prop_assert_eq!(hdr.hop_limit, repr.hop_limit);
            prop_assert_eq!(hdr.traffic_class, repr.traffic_class);
            prop_assert_eq!(hdr.flow_label.value(), repr.flow_label);
        }
    }
}
