//! ICMP for IPv4 (RFC 792, RFC 1191 for "fragmentation needed").
//!
//! The view covers one whole message: the buffer is the IP payload. [`Icmpv4Packet::new_checked`]
//! ensures the 8-byte header is present; the checksum covers the whole buffer. For the
//! error messages, [`Icmpv4Packet::quoted`] validates and returns the quoted IPv4 header and
//! the first 8 bytes of its payload (the ports, for a TCP or UDP packet).

use super::checksum;
use super::{bytes, Ipv4Packet, Result, WireError};

mod field {
    use crate::wire::Field;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    /// Echo: identifier.
    pub const ECHO_IDENT: Field = 4..6;
    /// Echo: sequence number.
    pub const ECHO_SEQNO: Field = 6..8;
    /// Destination unreachable, code 4: next-hop MTU (RFC 1191).
    pub const NEXT_HOP_MTU: Field = 6..8;
    /// The rest-of-header word as a whole.
    pub const REST: Field = 4..8;
    pub const PAYLOAD: usize = REST.end;
}

/// ICMPv4 message type numbers.
pub mod message {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable.
    pub const DST_UNREACHABLE: u8 = 3;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 11;
}

/// Destination-unreachable code: fragmentation needed and DF set (carries the next-hop MTU).
pub const CODE_FRAG_NEEDED: u8 = 4;

/// Bytes of the original payload an error message quotes after the IP header (RFC 792).
pub const QUOTED_PAYLOAD_LEN: usize = 8;

/// A view of an ICMPv4 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Length of the header (type, code, checksum, rest of header), bytes.
    pub const HEADER_LEN: usize = field::PAYLOAD;

    /// Wraps `buffer` without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv4Packet { buffer }
    }

    /// Wraps `buffer` after checking that it holds the 8-byte header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < field::PAYLOAD {
            return Err(WireError::Truncated);
        }
        Ok(Self::new_unchecked(buffer))
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type (see [`message`]).
    #[inline]
    pub fn msg_type(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::TYPE)
    }

    /// Message code.
    #[inline]
    pub fn msg_code(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::CODE)
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Echo identifier.
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Echo sequence number.
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::ECHO_SEQNO)
    }

    /// Next-hop MTU of a "fragmentation needed" message (0 from routers predating RFC 1191).
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::NEXT_HOP_MTU)
    }

    /// The rest-of-header word, raw.
    #[inline]
    pub fn rest_of_header(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), field::REST)
    }

    /// Whether this is an error message that quotes the packet that caused it.
    #[inline]
    pub fn is_error(&self) -> bool {
        matches!(
            self.msg_type(),
            message::DST_UNREACHABLE | message::TIME_EXCEEDED
        )
    }

    /// The bytes after the 8-byte header (echo data, or the quoted packet of an error).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        bytes::range(data, field::PAYLOAD, data.len())
    }

    /// The quoted IPv4 header (validated: version, IHL, within the message) and the first
    /// [`QUOTED_PAYLOAD_LEN`] bytes of its payload. The header's total length and checksum
    /// are those of the original packet and are not checked.
    ///
    /// `Truncated` if the quoted header or the 8 bytes after it are cut short.
    #[inline]
    pub fn quoted(&self) -> Result<(Ipv4Packet<&[u8]>, &[u8])> {
        let quoted = self.payload();
        let header = Ipv4Packet::new_checked_header(quoted)?;
        let header_len = header.header_len();
        let after = bytes::range(quoted, header_len, header_len + QUOTED_PAYLOAD_LEN);
        if after.len() != QUOTED_PAYLOAD_LEN {
            return Err(WireError::Truncated);
        }
        Ok((
            Ipv4Packet::new_unchecked(bytes::range(quoted, 0, header_len)),
            after,
        ))
    }

    /// Whether the checksum over the message verifies.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.buffer.as_ref()) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    /// Sets the message type.
    #[inline]
    pub fn set_msg_type(&mut self, value: u8) {
        bytes::set_u8(self.buffer.as_mut(), field::TYPE, value)
    }

    /// Sets the message code.
    #[inline]
    pub fn set_msg_code(&mut self, value: u8) {
        bytes::set_u8(self.buffer.as_mut(), field::CODE, value)
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::CHECKSUM, value)
    }

    /// Sets the echo identifier.
    #[inline]
    pub fn set_echo_ident(&mut self, value: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::ECHO_IDENT, value)
    }

    /// Sets the echo sequence number.
    #[inline]
    pub fn set_echo_seq_no(&mut self, value: u16) {
        bytes::set_u16(self.buffer.as_mut(), field::ECHO_SEQNO, value)
    }

    /// Sets the next-hop MTU (and zeroes the unused half of the rest-of-header word).
    #[inline]
    pub fn set_next_hop_mtu(&mut self, value: u16) {
        bytes::set_u32(self.buffer.as_mut(), field::REST, u32::from(value))
    }

    /// Sets the rest-of-header word, raw.
    #[inline]
    pub fn set_rest_of_header(&mut self, value: u32) {
        bytes::set_u32(self.buffer.as_mut(), field::REST, value)
    }

    /// Computes and writes the checksum over the message.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::data(self.buffer.as_ref());
        self.set_checksum(checksum::finish(sum))
    }

    /// The bytes after the header, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let data = self.buffer.as_mut();
        let len = data.len();
        bytes::range_mut(data, field::PAYLOAD, len)
    }
}

/// The parsed form of the ICMPv4 messages fulcrum handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv4Repr<'a> {
    /// Echo request ("ping").
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Echo data.
        data: &'a [u8],
    },
    /// Echo reply.
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Echo data.
        data: &'a [u8],
    },
    /// Destination unreachable.
    DstUnreachable {
        /// Reason code ([`CODE_FRAG_NEEDED`] for path-MTU discovery).
        code: u8,
        /// Next-hop MTU (meaningful with [`CODE_FRAG_NEEDED`], else usually 0).
        next_hop_mtu: u16,
        /// The quoted packet: IPv4 header and at least 8 bytes of its payload.
        quoted: &'a [u8],
    },
    /// Time exceeded.
    TimeExceeded {
        /// 0: TTL exceeded in transit, 1: reassembly time exceeded.
        code: u8,
        /// The quoted packet: IPv4 header and at least 8 bytes of its payload.
        quoted: &'a [u8],
    },
}

impl<'a> Icmpv4Repr<'a> {
    /// Reads a message with a good checksum. Other types are `Unsupported`; an error
    /// message whose quoted packet is not a valid IPv4 header plus 8 bytes is rejected.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Icmpv4Packet<&'a T>) -> Result<Icmpv4Repr<'a>> {
        let packet = Icmpv4Packet::new_checked(T::as_ref(packet.buffer))?;
        if !packet.verify_checksum() {
            return Err(WireError::BadChecksum);
        }
        let data = packet.buffer;
        let payload = bytes::range(data, field::PAYLOAD, data.len());
        let repr = match (packet.msg_type(), packet.msg_code()) {
            (message::ECHO_REQUEST, 0) => Icmpv4Repr::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data: payload,
            },
            (message::ECHO_REPLY, 0) => Icmpv4Repr::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data: payload,
            },
            (message::DST_UNREACHABLE, code) => {
                packet.quoted()?;
                Icmpv4Repr::DstUnreachable {
                    code,
                    next_hop_mtu: packet.next_hop_mtu(),
                    quoted: payload,
                }
            }
            (message::TIME_EXCEEDED, code) => {
                packet.quoted()?;
                Icmpv4Repr::TimeExceeded {
                    code,
                    quoted: payload,
                }
            }
            _ => return Err(WireError::Unsupported),
        };
        Ok(repr)
    }

    /// Bytes the message needs.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        field::PAYLOAD
            + match self {
                Icmpv4Repr::EchoRequest { data, .. } | Icmpv4Repr::EchoReply { data, .. } => {
                    data.len()
                }
                Icmpv4Repr::DstUnreachable { quoted, .. }
                | Icmpv4Repr::TimeExceeded { quoted, .. } => quoted.len(),
            }
    }

    /// Writes the message, checksum filled, into `packet`, which must be exactly
    /// [`Self::buffer_len`] long (the checksum covers the whole buffer).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Icmpv4Packet<T>) {
        let payload = match *self {
            Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data,
            }
            | Icmpv4Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => {
                let msg_type = if matches!(self, Icmpv4Repr::EchoRequest { .. }) {
                    message::ECHO_REQUEST
                } else {
                    message::ECHO_REPLY
                };
                packet.set_msg_type(msg_type);
                packet.set_msg_code(0);
                packet.set_echo_ident(ident);
                packet.set_echo_seq_no(seq_no);
                data
            }
            Icmpv4Repr::DstUnreachable {
                code,
                next_hop_mtu,
                quoted,
            } => {
                packet.set_msg_type(message::DST_UNREACHABLE);
                packet.set_msg_code(code);
                packet.set_next_hop_mtu(next_hop_mtu);
                quoted
            }
            Icmpv4Repr::TimeExceeded { code, quoted } => {
                packet.set_msg_type(message::TIME_EXCEEDED);
                packet.set_msg_code(code);
                packet.set_rest_of_header(0);
                quoted
            }
        };
        match packet.payload_mut() {
            out if out.len() == payload.len() => out.copy_from_slice(payload),
            _ => debug_assert!(false, "ICMP buffer not sized to buffer_len()"),
        }
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{test_support, IpProtocol, Ipv4Repr};
    use core::net::Ipv4Addr;
    use proptest::prelude::*;

    static ECHO: [u8; 12] = [
        0x08, 0x00, 0x00, 0x00, // echo request, checksum (filled)
        0x12, 0x34, 0xab, 0xcd, // ident, seq
        0xaa, 0x00, 0x00, 0xff, // data
    ];

    fn echo() -> [u8; 12] {
        let mut e = ECHO;
        Icmpv4Packet::new_unchecked(&mut e[..]).fill_checksum();
        e
    }

    /// An IPv4 + TCP header prefix as a router would quote it (28 bytes).
    fn quoted_tcp() -> Vec<u8> {
        let ip = Ipv4Repr {
            src: Ipv4Addr::new(198, 51, 100, 7),
            dst: Ipv4Addr::new(203, 0, 113, 10),
            protocol: IpProtocol::TCP,
            payload_len: 1480,
            ttl: 1,
            dscp: 0,
            ecn: 0,
            ident: 7,
            dont_frag: true,
        };
        let mut q = vec![0u8; 28];
        ip.emit(&mut Ipv4Packet::new_unchecked(&mut q[..]));
        q[20..28].copy_from_slice(&[0xc0, 0x01, 0x00, 0x50, 0, 0, 0, 1]);
        q
    }

    #[test]
    fn deconstruct_echo() {
        let bytes = echo();
        let p = Icmpv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!((p.msg_type(), p.msg_code()), (message::ECHO_REQUEST, 0));
        assert_eq!((p.echo_ident(), p.echo_seq_no()), (0x1234, 0xabcd));
        assert_eq!(p.payload(), &[0xaa, 0, 0, 0xff]);
        assert!(p.verify_checksum() && !p.is_error());
        assert_eq!(
            Icmpv4Repr::parse(&p),
            Ok(Icmpv4Repr::EchoRequest {
                ident: 0x1234,
                seq_no: 0xabcd,
                data: &[0xaa, 0, 0, 0xff]
            })
        );
    }

    #[test]
    fn construct_echo() {
        let repr = Icmpv4Repr::EchoRequest {
            ident: 0x1234,
            seq_no: 0xabcd,
            data: &[0xaa, 0, 0, 0xff],
        };
        let mut buf = [0u8; 12];
        repr.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, echo());
    }

    #[test]
    fn frag_needed_quotes_inner_header_and_ports() {
        let quoted = quoted_tcp();
        let repr = Icmpv4Repr::DstUnreachable {
            code: CODE_FRAG_NEEDED,
            next_hop_mtu: 1400,
            quoted: &quoted,
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]));
        let p = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        assert!(p.is_error());
        assert_eq!(p.next_hop_mtu(), 1400);
        let (inner, first8) = p.quoted().unwrap();
        assert_eq!(inner.dst_addr(), Ipv4Addr::new(203, 0, 113, 10));
        assert_eq!(inner.protocol(), IpProtocol::TCP);
        assert_eq!(inner.total_len(), 1500);
        assert!(inner.payload().is_empty());
        assert_eq!(&first8[..4], &[0xc0, 0x01, 0x00, 0x50]);
        assert_eq!(Icmpv4Repr::parse(&p), Ok(repr));

        // A quote missing one of its 8 payload bytes is rejected.
        let short = Icmpv4Repr::TimeExceeded {
            code: 0,
            quoted: &quoted[..27],
        };
        let mut buf = vec![0u8; short.buffer_len()];
        short.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]));
        let p = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.quoted().map(|_| ()), Err(WireError::Truncated));
        assert_eq!(Icmpv4Repr::parse(&p), Err(WireError::Truncated));
    }

    #[test]
    fn bad_checksum_and_unknown_type() {
        let mut b = echo();
        b[9] ^= 0xff;
        assert_eq!(
            Icmpv4Repr::parse(&Icmpv4Packet::new_unchecked(&b[..])),
            Err(WireError::BadChecksum)
        );
        let mut b = echo();
        b[0] = 13; // timestamp
        Icmpv4Packet::new_unchecked(&mut b[..]).fill_checksum();
        assert_eq!(
            Icmpv4Repr::parse(&Icmpv4Packet::new_unchecked(&b[..])),
            Err(WireError::Unsupported)
        );
    }

    fn touch_all<T: AsRef<[u8]>>(p: &Icmpv4Packet<T>) {
        let _ = (
            p.msg_type(),
            p.msg_code(),
            p.checksum(),
            p.echo_ident(),
            p.echo_seq_no(),
            p.next_hop_mtu(),
            p.rest_of_header(),
            p.is_error(),
            p.payload().len(),
            p.verify_checksum(),
        );
        if let Ok((inner, first8)) = p.quoted() {
            let _ = (
                inner.src_addr(),
                inner.dst_addr(),
                inner.options().len(),
                inner.payload().len(),
                first8.len(),
            );
        }
    }

    #[test]
    fn truncations_are_errors_never_panics() {
        let quoted = quoted_tcp();
        let repr = Icmpv4Repr::DstUnreachable {
            code: CODE_FRAG_NEEDED,
            next_hop_mtu: 1400,
            quoted: &quoted,
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]));
        for len in 0..buf.len() {
            let r = Icmpv4Packet::new_checked(&buf[..len]);
            assert_eq!(r.is_ok(), len >= 8);
            if let Ok(p) = &r {
                touch_all(p);
                assert!(p.quoted().is_err());
            }
            let view = Icmpv4Packet::new_unchecked(&buf[..len]);
            touch_all(&view);
            assert!(Icmpv4Repr::parse(&view).is_err());
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..80), err: bool) {
            if err && bytes.len() > 8 {
                bytes[0] = message::DST_UNREACHABLE;
                bytes[8] = 0x40 | (bytes[8] & 0x0f);
            }
            if let Ok(p) = Icmpv4Packet::new_checked(&bytes[..]) {
                touch_all(&p);
                let _ = Icmpv4Repr::parse(&p);
            }
        }

        #[test]
        fn repr_round_trip_and_etherparse_agrees(
            kind in 0u8..4,
            a: u16,
            b: u16,
            code in 0u8..16,
            data in proptest::collection::vec(any::<u8>(), 0..64),
            tail in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut quoted = quoted_tcp();
            quoted.extend_from_slice(&tail);
            // etherparse's checksum assumes the unused rest-of-header bytes are zero.
            let repr = match kind {
                0 => Icmpv4Repr::EchoRequest { ident: a, seq_no: b, data: &data },
                1 => Icmpv4Repr::EchoReply { ident: a, seq_no: b, data: &data },
                2 => Icmpv4Repr::DstUnreachable {
                    code,
                    next_hop_mtu: if code == CODE_FRAG_NEEDED { a } else { 0 },
                    quoted: &quoted,
                },
                _ => Icmpv4Repr::TimeExceeded { code: code & 1, quoted: &quoted },
            };
            let mut msg = vec![0u8; repr.buffer_len()];
            repr.emit(&mut Icmpv4Packet::new_unchecked(&mut msg[..]));
            let view = Icmpv4Packet::new_checked(&msg[..]).unwrap();
            prop_assert_eq!(Icmpv4Repr::parse(&view), Ok(repr));

            let frame = test_support::ipv4_frame(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), IpProtocol::ICMP, &msg);
            let sliced = etherparse::SlicedPacket::from_ethernet(&frame).unwrap();
            let Some(etherparse::TransportSlice::Icmpv4(icmp)) = sliced.transport else {
                return Err(TestCaseError::fail("etherparse saw no ICMPv4"));
            };
            prop_assert_eq!(icmp.icmp_type().calc_checksum(icmp.payload()), view.checksum());
        }

        #[test]
        fn any_code_and_rest_round_trips(code: u8, mtu: u16, tail in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut quoted = quoted_tcp();
            quoted.extend_from_slice(&tail);
            let repr = Icmpv4Repr::DstUnreachable { code, next_hop_mtu: mtu, quoted: &quoted };
            let mut msg = vec![0u8; repr.buffer_len()];
            repr.emit(&mut Icmpv4Packet::new_unchecked(&mut msg[..]));
            prop_assert_eq!(Icmpv4Repr::parse(&Icmpv4Packet::new_checked(&msg[..]).unwrap()), Ok(repr));
        }
    }
}
