//! IPv4 headers (RFC 791).
//!
//! [`Ipv4Packet::new_checked`] validates, once: the buffer holds 20 bytes, the version is 4,
//! IHL is at least 5, the header (options included) fits the buffer, and the total length
//! is at least the header and at most the buffer (Ethernet padding after it is allowed).
//! [`Ipv4Packet::payload`] is bounded by the total length, not the buffer.
//!
//! `set_version_and_header_len` and `set_total_len` change what the check covered; re-check after them
//! if the buffer came from the wire.

use core::net::Ipv4Addr;

use super::{bytes, checksum, IpProtocol, Result, WireError};

mod field {
    use crate::wire::Field;

    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
    pub const OPTIONS: usize = DST_ADDR.end;
}

/// Don't-fragment flag in the flags/offset field.
const FLAG_DF: u16 = 0x4000;
/// More-fragments flag in the flags/offset field.
const FLAG_MF: u16 = 0x2000;
/// Fragment offset mask (8-byte units) in the flags/offset field.
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Length of a header without options, bytes.
    pub const MIN_HEADER_LEN: usize = field::OPTIONS;
    /// Length of a header with the most options (IHL 15), bytes.
    pub const MAX_HEADER_LEN: usize = 60;

    /// Wraps `buffer` without checking it; see the module doc.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps `buffer` after validating the header and lengths; see the module doc.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_header()?;
        let total = usize::from(packet.total_len());
        if total < packet.header_len() {
            return Err(WireError::Malformed);
        }
        if total > packet.buffer.as_ref().len() {
            return Err(WireError::Truncated);
        }
        Ok(packet)
    }

    /// Validates the header alone (version, IHL, header within the buffer), not the total
    /// length: enough for the header quoted in an ICMP error, whose payload is cut short.
    #[inline]
    pub fn new_checked_header(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_header()?;
        Ok(packet)
    }

    #[inline]
    fn check_header(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < field::OPTIONS {
            return Err(WireError::Truncated);
        }
        if self.version() != 4 {
            return Err(WireError::BadVersion);
        }
        let header_len = self.header_len();
        if header_len < field::OPTIONS {
            return Err(WireError::Malformed);
        }
        if header_len > len {
            return Err(WireError::Truncated);
        }
        Ok(())
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

    /// Version field (4).
    #[inline]
    pub fn version(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::VER_IHL) >> 4
    }

    /// Header length in bytes (IHL × 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(bytes::u8_at(self.buffer.as_ref(), field::VER_IHL) & 0x0f) * 4
    }

    /// Differentiated services code point (6 bits).
    #[inline]
    pub fn dscp(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::DSCP_ECN) >> 2
    }

    /// Explicit congestion notification (2 bits).
    #[inline]
    pub fn ecn(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::DSCP_ECN) & 0x03
    }

    /// Total length (header + payload), bytes.
    #[inline]
    pub fn total_len(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::LENGTH)
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::IDENT)
    }

    /// Don't-fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        bytes::u16_at(self.buffer.as_ref(), field::FLG_OFF) & FLAG_DF != 0
    }

    /// More-fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        bytes::u16_at(self.buffer.as_ref(), field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field × 8).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (bytes::u16_at(self.buffer.as_ref(), field::FLG_OFF) & FRAG_OFFSET_MASK) << 3
    }

    /// Whether this is a fragment (more fragments follow, or the offset is not zero).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        bytes::u16_at(self.buffer.as_ref(), field::FLG_OFF) & (FLAG_MF | FRAG_OFFSET_MASK) != 0
    }

    /// Time to live (hop limit).
    #[inline]
    pub fn ttl(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::TTL)
    }

    /// Protocol of the payload.
    #[inline]
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol(bytes::u8_at(self.buffer.as_ref(), field::PROTOCOL))
    }

    /// Header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(bytes::array::<4>(self.buffer.as_ref(), field::SRC_ADDR))
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(bytes::array::<4>(self.buffer.as_ref(), field::DST_ADDR))
    }

    /// The header bytes, options included.
    #[inline]
    pub fn header(&self) -> &[u8] {
        bytes::range(self.buffer.as_ref(), 0, self.header_len())
    }

    /// The options bytes (empty when IHL is 5).
    #[inline]
    pub fn options(&self) -> &[u8] {
        bytes::range(self.buffer.as_ref(), field::OPTIONS, self.header_len())
    }

    /// Whether the header checksum verifies.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.header()) == 0xffff
    }

    /// The payload: from the end of the header to the total length.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        bytes::range(
            self.buffer.as_ref(),
            self.header_len(),
            usize::from(self.total_len()),
        )
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets version 4 and the header length in bytes (a multiple of 4, 20..=60).
    #[inline]
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        let ihl = ((header_len / 4) & 0x0f) as u8;
        bytes::set_u8(self.buffer.as_mut(), field::VER_IHL, 0x40 | ihl)
    }

    /// Sets DSCP (6 bits) and ECN (2 bits).
    #[inline]
    pub fn set_dscp_ecn(&mut self, dscp: u8, ecn: u8) {
        bytes::set_u8(
            self.buffer.as_mut(),
            field::DSCP_ECN,
            (dscp << 2) | (ecn & 0x03),
        )
    }

    /// Sets the total length, bytes.
    #[inline]
    pub fn set_total_len(&mut self, len: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::LENGTH, len)
    }

    /// Sets the identification.
    #[inline]
    pub fn set_ident(&mut self, ident: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::IDENT, ident)
    }

    /// Sets DF, MF and the fragment offset in bytes (rounded down to a multiple of 8).
    #[inline]
    pub fn set_flags_and_frag_offset(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let value = if dont_frag { FLAG_DF } else { 0 }
            | if more_frags { FLAG_MF } else { 0 }
            | ((offset >> 3) & FRAG_OFFSET_MASK);
        bytes::set_u16(self.buffer.as_mut(), field::FLG_OFF, value)
    }

    /// Sets the time to live.
    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        bytes::set_u8(self.buffer.as_mut(), field::TTL, ttl)
    }

    /// Sets the protocol.
    #[inline]
    pub fn set_protocol(&mut self, protocol: IpProtocol) {
        bytes::set_u8(self.buffer.as_mut(), field::PROTOCOL, protocol.0)
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::CHECKSUM, value)
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        bytes::set_bytes(self.buffer.as_mut(), field::SRC_ADDR, &addr.octets())
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        bytes::set_bytes(self.buffer.as_mut(), field::DST_ADDR, &addr.octets())
    }

    /// Computes and writes the header checksum.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::data(self.header());
        self.set_checksum(checksum::finish(sum))
    }

    /// Decrements the TTL and patches the checksum incrementally (RFC 1624).
    ///
    /// Returns the new TTL; a TTL already at zero is left alone.
    #[inline]
    pub fn decrement_ttl(&mut self) -> u8 {
        let ttl = self.ttl();
        if ttl == 0 {
            return 0;
        }
        let proto = u16::from(self.protocol().0);
        let old_word = (u16::from(ttl) << 8) | proto;
        let new_word = (u16::from(ttl - 1) << 8) | proto;
        let csum = checksum::update16(self.checksum(), old_word, new_word);
        self.set_ttl(ttl - 1);
        self.set_checksum(csum);
        ttl - 1
    }

    /// The options bytes, writable.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len();
        bytes::range_mut(self.buffer.as_mut(), field::OPTIONS, header_len)
    }

    /// The payload, writable (bounded by the total length).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (from, to) = (self.header_len(), usize::from(self.total_len()));
        bytes::range_mut(self.buffer.as_mut(), from, to)
    }
}

/// The parsed form of an IPv4 header without options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Protocol of the payload.
    pub protocol: IpProtocol,
    /// Payload length, bytes.
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// DSCP (6 bits).
    pub dscp: u8,
    /// ECN (2 bits).
    pub ecn: u8,
    /// Identification.
    pub ident: u16,
    /// Don't-fragment flag.
    pub dont_frag: bool,
}

impl Ipv4Repr {
    /// Reads an unfragmented packet with a good checksum. Options are skipped; fragments
    /// are `Unsupported` (a fragment is not a whole upper-layer packet).
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Ipv4Repr> {
        // Re-validate so a view made with `new_unchecked` cannot yield nonsense.
        let packet = Ipv4Packet::new_checked(packet.as_bytes())?;
        if !packet.verify_checksum() {
            return Err(WireError::BadChecksum);
        }
        if packet.is_fragment() {
            return Err(WireError::Unsupported);
        }
        Ok(Ipv4Repr {
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: packet.payload().len(),
            ttl: packet.ttl(),
            dscp: packet.dscp(),
            ecn: packet.ecn(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
        })
    }

    /// Bytes the header needs (20: no options are emitted).
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        field::OPTIONS
    }

    /// Writes the header, checksum filled, into `packet` (at least [`Self::buffer_len`]).
    ///
    /// The total length saturates at 65535 if `payload_len` is too large.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv4Packet<T>) {
        packet.set_version_and_header_len(field::OPTIONS);
        packet.set_dscp_ecn(self.dscp, self.ecn);
        let total = self.payload_len.saturating_add(field::OPTIONS);
        packet.set_total_len(u16::try_from(total).unwrap_or(u16::MAX));
        packet.set_ident(self.ident);
        packet.set_flags_and_frag_offset(self.dont_frag, false, 0);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src);
        packet.set_dst_addr(self.dst);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_support;
    use proptest::prelude::*;

    // 24-byte header (one 4-byte option: NOP NOP NOP EOL), UDP, 4 bytes of payload,
    // then 2 bytes of link padding.
    static PACKET: [u8; 30] = [
        0x46, 0xb9, 0x00, 0x1c, // v4, IHL 6, DSCP 46 ECN 1, total 28
        0xab, 0xcd, 0x40, 0x00, // ident, DF
        0x40, 0x11, 0x00, 0x00, // TTL 64, UDP, checksum (filled below)
        10, 0, 0, 1, //
        10, 0, 0, 2, //
        0x01, 0x01, 0x01, 0x00, // options
        0xde, 0xad, 0xbe, 0xef, // payload
        0x00, 0x00, // padding
    ];

    fn fixture() -> [u8; 30] {
        let mut p = PACKET;
        Ipv4Packet::new_unchecked(&mut p[..]).fill_checksum();
        p
    }

    #[test]
    fn deconstruct() {
        let bytes = fixture();
        let p = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 24);
        assert_eq!((p.dscp(), p.ecn()), (46, 1));
        assert_eq!(p.total_len(), 28);
        assert_eq!(p.ident(), 0xabcd);
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), IpProtocol::UDP);
        assert_eq!(p.src_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        assert!(p.verify_checksum());
        // etherparse computes the same header checksum.
        let (hdr, _) = etherparse::Ipv4Header::from_slice(&bytes).unwrap();
        assert_eq!(hdr.calc_header_checksum(), p.checksum());
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 30];
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
        p.set_version_and_header_len(24);
        p.set_dscp_ecn(46, 1);
        p.set_total_len(28);
        p.set_ident(0xabcd);
        p.set_flags_and_frag_offset(true, false, 0);
        p.set_ttl(64);
        p.set_protocol(IpProtocol::UDP);
        p.set_src_addr(Ipv4Addr::new(10, 0, 0, 1));
        p.set_dst_addr(Ipv4Addr::new(10, 0, 0, 2));
        p.options_mut().copy_from_slice(&[1, 1, 1, 0]);
        p.payload_mut().copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        p.fill_checksum();
        assert_eq!(buf, fixture());
    }

    #[test]
    fn fragments() {
        let mut bytes = fixture();
        let mut p = Ipv4Packet::new_unchecked(&mut bytes[..]);
        p.set_flags_and_frag_offset(false, true, 1480);
        assert!(p.more_frags() && !p.dont_frag() && p.is_fragment());
        assert_eq!(p.frag_offset(), 1480);
        p.fill_checksum();
        assert_eq!(Ipv4Repr::parse(&p), Err(WireError::Unsupported));
    }

    #[test]
    fn invalid_headers_are_rejected() {
        let good = fixture();
        let mut b = good;
        b[0] = 0x66;
        assert_eq!(Ipv4Packet::new_checked(&b[..]), Err(WireError::BadVersion));
        let mut b = good;
        b[0] = 0x44;
        assert_eq!(Ipv4Packet::new_checked(&b[..]), Err(WireError::Malformed));
        let mut b = good;
        b[0] = 0x4f; // 60-byte header in a 30-byte buffer
        assert_eq!(Ipv4Packet::new_checked(&b[..]), Err(WireError::Truncated));
        let mut b = good;
        b[3] = 20; // total length below the header length
        assert_eq!(Ipv4Packet::new_checked(&b[..]), Err(WireError::Malformed));
        let mut b = good;
        b[3] = 31; // total length past the buffer
        assert_eq!(Ipv4Packet::new_checked(&b[..]), Err(WireError::Truncated));
        let mut b = good;
        b[15] ^= 1;
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(!p.verify_checksum());
        assert_eq!(Ipv4Repr::parse(&p), Err(WireError::BadChecksum));
    }

    #[test]
    fn decrement_ttl_keeps_checksum_valid() {
        let mut bytes = fixture();
        let mut p = Ipv4Packet::new_unchecked(&mut bytes[..]);
        for expect in (0..64).rev() {
            assert_eq!(p.decrement_ttl(), expect);
            assert!(p.verify_checksum());
        }
        assert_eq!(p.decrement_ttl(), 0);
    }

    #[test]
    fn incremental_address_rewrite_equals_full_recompute() {
        let mut bytes = fixture();
        let mut p = Ipv4Packet::new_unchecked(&mut bytes[..]);
        let old = p.dst_addr();
        let new = Ipv4Addr::new(192, 168, 77, 3);
        let csum = checksum::update32(p.checksum(), old.to_bits(), new.to_bits());
        p.set_dst_addr(new);
        p.set_checksum(csum);
        assert!(p.verify_checksum());
        let incremental = p.checksum();
        p.fill_checksum();
        assert_eq!(incremental, p.checksum());
    }

    fn touch_all<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) {
        let _ = (
            p.version(),
            p.header_len(),
            p.dscp(),
            p.ecn(),
            p.total_len(),
            p.ident(),
            p.dont_frag(),
            p.more_frags(),
            p.frag_offset(),
            p.is_fragment(),
            p.ttl(),
            p.protocol(),
            p.checksum(),
            p.src_addr(),
            p.dst_addr(),
            p.options().len(),
            p.payload().len(),
            p.verify_checksum(),
            Ipv4Repr::parse(p),
        );
    }

    #[test]
    fn truncations_are_errors_never_panics() {
        let bytes = fixture();
        for len in 0..bytes.len() {
            let r = Ipv4Packet::new_checked(&bytes[..len]);
            // Valid from the total length (28) on; shorter is truncated.
            assert_eq!(r.is_ok(), len >= 28, "len {len}");
            if len < 28 {
                assert_eq!(r, Err(WireError::Truncated));
            }
            touch_all(&Ipv4Packet::new_unchecked(&bytes[..len]));
        }
    }

    fn arb_repr() -> impl Strategy<Value = Ipv4Repr> {
        (
            any::<u32>(),
            any::<u32>(),
            any::<u8>(),
            0usize..1480,
            any::<u8>(),
            0u8..64,
            0u8..4,
            any::<u16>(),
            any::<bool>(),
        )
            .prop_map(|(s, d, proto, len, ttl, dscp, ecn, ident, df)| Ipv4Repr {
                src: Ipv4Addr::from_bits(s),
                dst: Ipv4Addr::from_bits(d),
                protocol: IpProtocol(proto),
                payload_len: len,
                ttl,
                dscp,
                ecn,
                ident,
                dont_frag: df,
            })
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..80), v4: bool) {
            if v4 && !bytes.is_empty() {
                bytes[0] = 0x40 | (bytes[0] & 0x0f);
            }
            if let Ok(p) = Ipv4Packet::new_checked(&bytes[..]) {
                prop_assert!(p.header_len() >= 20 && p.payload().len() + p.header_len() == usize::from(p.total_len()));
                touch_all(&p);
            }
            if let Ok(p) = Ipv4Packet::new_checked_header(&bytes[..]) {
                touch_all(&p);
            }
        }

        #[test]
        fn repr_round_trip_and_etherparse_agrees(repr in arb_repr()) {
            let payload = vec![0x5au8; repr.payload_len];
            let frame = test_support::ipv4_frame(repr.src, repr.dst, repr.protocol, &payload);
            // Rebuild with every repr field (ipv4_frame fixes ttl/dscp/ident).
            let mut frame = frame;
            repr.emit(&mut Ipv4Packet::new_unchecked(&mut frame[14..]));
            let p = Ipv4Packet::new_checked(&frame[14..]).unwrap();
            prop_assert_eq!(Ipv4Repr::parse(&p), Ok(repr));

            let (hdr, _) = etherparse::Ipv4Header::from_slice(&frame[14..]).unwrap();
            prop_assert_eq!(hdr.calc_header_checksum(), p.checksum());
            prop_assert_eq!(hdr.source, repr.src.octets());
            prop_assert_eq!(hdr.destination, repr.dst.octets());
            prop_assert_eq!(hdr.protocol.0, repr.protocol.0);
            prop_assert_eq!(hdr.time_to_live, repr.ttl);
            prop_assert_eq!(usize::from(hdr.total_len), 20 + repr.payload_len);
            prop_assert_eq!(hdr.dont_fragment, repr.dont_frag);
        }

        #[test]
        fn incremental_ttl_and_address_updates(repr in arb_repr(), new_src: u32, new_ttl: u8) {
            let mut buf = vec![0u8; 20 + repr.payload_len];
            repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
            let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
            let csum = checksum::update32(p.checksum(), p.src_addr().to_bits(), new_src);
            let proto = u16::from(p.protocol().0);
            let csum = checksum::update16(csum, (u16::from(p.ttl()) << 8) | proto, (u16::from(new_ttl) << 8) | proto);
            p.set_src_addr(Ipv4Addr::from_bits(new_src));
            p.set_ttl(new_ttl);
            p.set_checksum(csum);
            prop_assert!(p.verify_checksum());
            p.fill_checksum();
            prop_assert_eq!(p.checksum(), csum);
        }
    }
}
