//! TCP segments (RFC 9293).
//!
//! The view covers one whole segment: the buffer is the IP payload. [`TcpPacket::new_checked`]
//! validates, once: 20 bytes present, data offset at least 5, the header (options included)
//! within the buffer. The checksum covers the whole buffer plus the pseudo-header.
//!
//! `set_header_len_and_flags` changes what the check covered; re-check after it if the buffer came
//! from the wire.

use core::fmt;
use core::ops::{BitAnd, BitOr, BitOrAssign};

use super::checksum::{self, PseudoHeader};
use super::{bytes, IpProtocol, Result, WireError};

mod field {
    use crate::wire::Field;

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NUM: Field = 4..8;
    pub const ACK_NUM: Field = 8..12;
    /// Data offset (4 bits), reserved (3), AE flag (1), then the 8 classic flags.
    pub const OFF_FLAGS: Field = 12..14;
    pub const WINDOW: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
    pub const OPTIONS: usize = URGENT.end;
}

/// The TCP control bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(u16);

impl TcpFlags {
    /// No more data from sender.
    pub const FIN: TcpFlags = TcpFlags(0x001);
    /// Synchronize sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x002);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x004);
    /// Push.
    pub const PSH: TcpFlags = TcpFlags(0x008);
    /// The acknowledgment field is significant.
    pub const ACK: TcpFlags = TcpFlags(0x010);
    /// The urgent pointer is significant.
    pub const URG: TcpFlags = TcpFlags(0x020);
    /// ECN echo.
    pub const ECE: TcpFlags = TcpFlags(0x040);
    /// Congestion window reduced.
    pub const CWR: TcpFlags = TcpFlags(0x080);
    /// Accurate ECN (formerly NS).
    pub const AE: TcpFlags = TcpFlags(0x100);

    const ALL: u16 = 0x1ff;
    const NAMES: [(TcpFlags, &'static str); 9] = [
        (Self::FIN, "FIN"),
        (Self::SYN, "SYN"),
        (Self::RST, "RST"),
        (Self::PSH, "PSH"),
        (Self::ACK, "ACK"),
        (Self::URG, "URG"),
        (Self::ECE, "ECE"),
        (Self::CWR, "CWR"),
        (Self::AE, "AE"),
    ];

    /// No flags.
    #[inline]
    pub const fn empty() -> TcpFlags {
        TcpFlags(0)
    }

    /// The flags in the low 9 bits of `bits`; other bits are dropped.
    #[inline]
    pub const fn from_bits_truncate(bits: u16) -> TcpFlags {
        TcpFlags(bits & Self::ALL)
    }

    /// The flag bits.
    #[inline]
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Whether every flag in `other` is set.
    #[inline]
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any flag in `other` is set.
    #[inline]
    pub const fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether no flag is set.
    #[inline]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;
    #[inline]
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl BitOrAssign for TcpFlags {
    #[inline]
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        self.0 |= rhs.0
    }
}

impl BitAnd for TcpFlags {
    type Output = TcpFlags;
    #[inline]
    fn bitand(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & rhs.0)
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("(none)");
        }
        let mut first = true;
        for (flag, name) in Self::NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// A view of a TCP segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Length of a header without options, bytes.
    pub const MIN_HEADER_LEN: usize = field::OPTIONS;

    /// Wraps `buffer` without checking it; see the module doc.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Wraps `buffer` after validating the header length; see the module doc.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        let len = packet.buffer.as_ref().len();
        if len < field::OPTIONS {
            return Err(WireError::Truncated);
        }
        let header_len = packet.header_len();
        if header_len < field::OPTIONS {
            return Err(WireError::Malformed);
        }
        if header_len > len {
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

    /// Sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), field::SEQ_NUM)
    }

    /// Acknowledgment number.
    #[inline]
    pub fn ack_number(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), field::ACK_NUM)
    }

    /// Header length in bytes (data offset × 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(bytes::u8_at(self.buffer.as_ref(), field::OFF_FLAGS.start) >> 4) * 4
    }

    /// The control bits.
    #[inline]
    pub fn flags(&self) -> TcpFlags {
        TcpFlags::from_bits_truncate(bytes::u16_at(self.buffer.as_ref(), field::OFF_FLAGS))
    }

    /// Window size.
    #[inline]
    pub fn window(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::WINDOW)
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Urgent pointer.
    #[inline]
    pub fn urgent(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::URGENT)
    }

    /// The options bytes (empty when the data offset is 5).
    #[inline]
    pub fn options(&self) -> &[u8] {
        bytes::range(self.buffer.as_ref(), field::OPTIONS, self.header_len())
    }

    /// The segment data after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        bytes::range(data, self.header_len(), data.len())
    }

    /// Whether the checksum over the segment and `pseudo` verifies.
    #[inline]
    pub fn verify_checksum(&self, pseudo: &PseudoHeader) -> bool {
        let data = self.buffer.as_ref();
        checksum::combine(&[
            pseudo.sum(IpProtocol::TCP, data.len()),
            checksum::data(data),
        ]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
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

    /// Sets the sequence number.
    #[inline]
    pub fn set_seq_number(&mut self, seq: u32) {
        bytes::set_u32(self.buffer.as_mut(), field::SEQ_NUM, seq)
    }

    /// Sets the acknowledgment number.
    #[inline]
    pub fn set_ack_number(&mut self, ack: u32) {
        bytes::set_u32(self.buffer.as_mut(), field::ACK_NUM, ack)
    }

    /// Sets the header length in bytes (a multiple of 4, 20..=60) and the flags.
    #[inline]
    pub fn set_header_len_and_flags(&mut self, header_len: usize, flags: TcpFlags) {
        let offset = ((header_len / 4) & 0x0f) as u16;
        bytes::set_u16(
            self.buffer.as_mut(),
            field::OFF_FLAGS,
            (offset << 12) | flags.bits(),
        )
    }

    /// Sets the flags, keeping the header length.
    #[inline]
    pub fn set_flags(&mut self, flags: TcpFlags) {
        let header_len = self.header_len();
        self.set_header_len_and_flags(header_len, flags)
    }

    /// Sets the window size.
    #[inline]
    pub fn set_window(&mut self, window: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::WINDOW, window)
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::CHECKSUM, value)
    }

    /// Sets the urgent pointer.
    #[inline]
    pub fn set_urgent(&mut self, urgent: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::URGENT, urgent)
    }

    /// Computes and writes the checksum over the segment and `pseudo`.
    #[inline]
    pub fn fill_checksum(&mut self, pseudo: &PseudoHeader) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let sum = checksum::combine(&[
            pseudo.sum(IpProtocol::TCP, data.len()),
            checksum::data(data),
        ]);
        self.set_checksum(checksum::finish(sum))
    }

    /// The options bytes, writable.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len();
        bytes::range_mut(self.buffer.as_mut(), field::OPTIONS, header_len)
    }

    /// The segment data, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len();
        let data = self.buffer.as_mut();
        let len = data.len();
        bytes::range_mut(data, header_len, len)
    }
}

/// The parsed form of a TCP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRepr<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: u32,
    /// Acknowledgment number.
    pub ack_number: u32,
    /// Control bits.
    pub flags: TcpFlags,
    /// Window size.
    pub window: u16,
    /// Raw options, a multiple of 4 bytes and at most 40.
    pub options: &'a [u8],
    /// Segment data.
    pub payload: &'a [u8],
}

impl<'a> TcpRepr<'a> {
    /// Most option bytes a header can hold.
    pub const MAX_OPTIONS_LEN: usize = 40;

    /// Reads a checked segment whose checksum verifies against `pseudo`.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &TcpPacket<&'a T>,
        pseudo: &PseudoHeader,
    ) -> Result<TcpRepr<'a>> {
        let packet = TcpPacket::new_checked(T::as_ref(packet.buffer))?;
        if !packet.verify_checksum(pseudo) {
            return Err(WireError::BadChecksum);
        }
        let data = packet.buffer;
        let header_len = packet.header_len();
        Ok(TcpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window: packet.window(),
            options: bytes::range(data, field::OPTIONS, header_len),
            payload: bytes::range(data, header_len, data.len()),
        })
    }

    /// Header length: 20 plus the options.
    #[inline]
    pub const fn header_len(&self) -> usize {
        field::OPTIONS + self.options.len()
    }

    /// Bytes the segment needs.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// Writes the segment, checksum filled, into `packet`, which must be exactly
    /// [`Self::buffer_len`] long (the checksum covers the whole buffer). Options must be a
    /// multiple of 4 bytes and at most [`Self::MAX_OPTIONS_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut TcpPacket<T>,
        pseudo: &PseudoHeader,
    ) {
        debug_assert!(
            self.options.len().is_multiple_of(4) && self.options.len() <= Self::MAX_OPTIONS_LEN
        );
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq_number);
        packet.set_ack_number(self.ack_number);
        packet.set_header_len_and_flags(self.header_len(), self.flags);
        packet.set_window(self.window);
        packet.set_urgent(0);
        packet.options_mut().copy_from_slice(self.options);
        packet.payload_mut().copy_from_slice(self.payload);
        packet.fill_checksum(pseudo);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_support;
    use core::net::{Ipv4Addr, Ipv6Addr};
    use proptest::prelude::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);

    fn pseudo() -> PseudoHeader {
        PseudoHeader::V4 { src: SRC, dst: DST }
    }

    // SYN with an MSS option, 4 bytes of payload.
    static SEGMENT: [u8; 28] = [
        0xbf, 0x00, 0x00, 0x50, // ports 48896 -> 80
        0x01, 0x23, 0x45, 0x67, // seq
        0x89, 0xab, 0xcd, 0xef, // ack
        0x60, 0x12, 0x01, 0x23, // offset 6, SYN|ACK, window
        0x00, 0x00, 0x00, 0x00, // checksum (filled), urgent
        0x02, 0x04, 0x05, 0xb4, // MSS 1460
        0xaa, 0x00, 0x00, 0xff, // payload
    ];

    fn fixture() -> [u8; 28] {
        let mut s = SEGMENT;
        TcpPacket::new_unchecked(&mut s[..]).fill_checksum(&pseudo());
        s
    }

    #[test]
    fn deconstruct() {
        let bytes = fixture();
        let p = TcpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (48896, 80));
        assert_eq!(p.seq_number(), 0x0123_4567);
        assert_eq!(p.ack_number(), 0x89ab_cdef);
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.flags(), TcpFlags::SYN | TcpFlags::ACK);
        assert!(
            p.flags().contains(TcpFlags::SYN)
                && !p.flags().intersects(TcpFlags::RST | TcpFlags::FIN)
        );
        assert_eq!(format!("{:?}", p.flags()), "SYN|ACK");
        assert_eq!(p.window(), 0x0123);
        assert_eq!(p.urgent(), 0);
        assert_eq!(p.options(), &[2, 4, 5, 0xb4]);
        assert_eq!(p.payload(), &[0xaa, 0, 0, 0xff]);
        assert!(p.verify_checksum(&pseudo()));
        assert!(!p.verify_checksum(&PseudoHeader::V4 {
            src: DST,
            dst: SRC.to_bits().wrapping_add(1).into()
        }));
    }

    #[test]
    fn construct() {
        let repr = TcpRepr {
            src_port: 48896,
            dst_port: 80,
            seq_number: 0x0123_4567,
            ack_number: 0x89ab_cdef,
            flags: TcpFlags::SYN | TcpFlags::ACK,
            window: 0x0123,
            options: &[2, 4, 5, 0xb4],
            payload: &[0xaa, 0, 0, 0xff],
        };
        let mut buf = [0u8; 28];
        repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), &pseudo());
        assert_eq!(buf, fixture());
    }

    #[test]
    fn bad_data_offset() {
        let mut b = fixture();
        b[12] = 0x40;
        assert_eq!(TcpPacket::new_checked(&b[..]), Err(WireError::Malformed));
        b[12] = 0x80; // 32-byte header in 28 bytes
        assert_eq!(TcpPacket::new_checked(&b[..]), Err(WireError::Truncated));
    }

    #[test]
    fn port_rewrite_incremental_equals_full() {
        let mut bytes = fixture();
        let mut p = TcpPacket::new_unchecked(&mut bytes[..]);
        let csum = checksum::update16(p.checksum(), p.dst_port(), 8080);
        p.set_dst_port(8080);
        p.set_checksum(csum);
        assert!(p.verify_checksum(&pseudo()));
        p.fill_checksum(&pseudo());
        assert_eq!(p.checksum(), csum);
    }

    fn touch_all<T: AsRef<[u8]>>(p: &TcpPacket<T>) {
        let _ = (
            p.src_port(),
            p.dst_port(),
            p.seq_number(),
            p.ack_number(),
            p.header_len(),
            p.flags(),
            p.window(),
            p.checksum(),
            p.urgent(),
            p.options().len(),
            p.payload().len(),
            p.verify_checksum(&pseudo()),
        );
    }

    #[test]
    fn truncations_are_errors_never_panics() {
        let bytes = fixture();
        for len in 0..bytes.len() {
            let r = TcpPacket::new_checked(&bytes[..len]);
            assert_eq!(r.is_ok(), len >= 24);
            if let Ok(p) = &r {
                touch_all(p);
            }
            touch_all(&TcpPacket::new_unchecked(&bytes[..len]));
            let view = TcpPacket::new_unchecked(&bytes[..len]);
            assert!(TcpRepr::parse(&view, &pseudo()).is_err());
        }
    }

    fn arb_flags() -> impl Strategy<Value = TcpFlags> {
        (0u16..0x200).prop_map(TcpFlags::from_bits_truncate)
    }

    fn arb_segment() -> impl Strategy<Value = (u16, u16, u32, u32, TcpFlags, u16, Vec<u8>, Vec<u8>)>
    {
        (
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
            arb_flags(),
            any::<u16>(),
            (0usize..=10).prop_flat_map(|words| proptest::collection::vec(any::<u8>(), words * 4)),
            proptest::collection::vec(any::<u8>(), 0..200),
        )
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = TcpPacket::new_checked(&bytes[..]) {
                prop_assert!(p.header_len() >= 20 && p.header_len() <= bytes.len());
                touch_all(&p);
            }
        }

        #[test]
        fn repr_round_trip_v4_and_etherparse_agrees(
            (sp, dp, seq, ack, flags, window, options, payload) in arb_segment(),
            src: u32,
            dst: u32,
        ) {
            let (src, dst) = (Ipv4Addr::from_bits(src), Ipv4Addr::from_bits(dst));
            let pseudo = PseudoHeader::V4 { src, dst };
            let repr = TcpRepr { src_port: sp, dst_port: dp, seq_number: seq, ack_number: ack, flags, window, options: &options, payload: &payload };
            let mut seg = vec![0u8; repr.buffer_len()];
            repr.emit(&mut TcpPacket::new_unchecked(&mut seg[..]), &pseudo);
            let view = TcpPacket::new_checked(&seg[..]).unwrap();
            prop_assert_eq!(TcpRepr::parse(&view, &pseudo), Ok(repr));

            let frame = test_support::ipv4_frame(src, dst, IpProtocol::TCP, &seg);
            let sliced = etherparse::SlicedPacket::from_ethernet(&frame).unwrap();
            let Some(etherparse::TransportSlice::Tcp(tcp)) = sliced.transport else {
                return Err(TestCaseError::fail("etherparse saw no TCP"));
            };
            prop_assert_eq!(tcp.calc_checksum_ipv4(src.octets(), dst.octets()).unwrap(), view.checksum());
            prop_assert_eq!((tcp.source_port(), tcp.destination_port()), (sp, dp));
            prop_assert_eq!(tcp.sequence_number(), seq);
            prop_assert_eq!(tcp.syn(), flags.contains(TcpFlags::SYN));
            prop_assert_eq!(tcp.payload(), &payload[..]);
        }

        #[test]
        fn repr_round_trip_v6_and_etherparse_agrees(
            (sp, dp, seq, ack, flags, window, options, payload) in arb_segment(),
            src: u128,
            dst: u128,
        ) {
            let (src, dst) = (Ipv6Addr::from_bits(src), Ipv6Addr::from_bits(dst));
            let pseudo = PseudoHeader::V6 { src, dst };
            let repr = TcpRepr { src_port: sp, dst_port: dp, seq_number: seq, ack_number: ack, flags, window, options: &options, payload: &payload };
            let mut seg = vec![0u8; repr.buffer_len()];
            repr.emit(&mut TcpPacket::new_unchecked(&mut seg[..]), &pseudo);
            let view = TcpPacket::new_checked(&seg[..]).unwrap();
            prop_assert_eq!(TcpRepr::parse(&view, &pseudo), Ok(repr));

            let frame = test_support::ipv6_frame(src, dst, IpProtocol::TCP, &seg);
            let sliced = etherparse::SlicedPacket::from_ethernet(&frame).unwrap();
            let Some(etherparse::TransportSlice::Tcp(tcp)) = sliced.transport else {
                return Err(TestCaseError::fail("etherparse saw no TCP"));
            };
            prop_assert_eq!(tcp.calc_checksum_ipv6(src.octets(), dst.octets()).unwrap(), view.checksum());
        }

        #[test]
        fn nat_rewrite_incremental_equals_full(
            (sp, dp, seq, ack, flags, window, options, payload) in arb_segment(),
            src: u32, dst: u32, new_dst: u32, new_dport: u16,
        ) {
            let (src, dst) = (Ipv4Addr::from_bits(src), Ipv4Addr::from_bits(dst));
            let repr = TcpRepr { src_port: sp, dst_port: dp, seq_number: seq, ack_number: ack, flags, window, options: &options, payload: &payload };
            let mut seg = vec![0u8; repr.buffer_len()];
            repr.emit(&mut TcpPacket::new_unchecked(&mut seg[..]), &PseudoHeader::V4 { src, dst });
            let mut p = TcpPacket::new_unchecked(&mut seg[..]);
            // DNAT: destination address (in the pseudo-header) and port change.
            let csum = checksum::update32(p.checksum(), dst.to_bits(), new_dst);
            let csum = checksum::update16(csum, p.dst_port(), new_dport);
            p.set_dst_port(new_dport);
            p.set_checksum(csum);
            let pseudo = PseudoHeader::V4 { src, dst: Ipv4Addr::from_bits(new_dst) };
            prop_assert!(p.verify_checksum(&pseudo));
            p.fill_checksum(&pseudo);
            prop_assert_eq!(p.checksum(), csum);
        }
    }
}
