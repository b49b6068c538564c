//! ICMPv6 (RFC 4443) and the neighbour-discovery messages fulcrum answers (RFC 4861).
//!
//! The view covers one whole message: the buffer is the upper-layer payload after any
//! extension headers. [`Icmpv6Packet::new_checked`] ensures the 8-byte header is present;
//! neighbour solicitations and advertisements additionally need the 16-byte target, which
//! [`Icmpv6Repr::parse`] checks (the view's ND accessors read zero on a short message).
//! The checksum covers the whole buffer plus the IPv6 pseudo-header.

use core::net::Ipv6Addr;

use super::checksum::{self, pseudo_header_v6};
use super::{bytes, EthernetAddress, IpProtocol, Ipv6Packet, Result, WireError};

mod field {
    use crate::wire::Field;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    /// Echo: identifier.
    pub const ECHO_IDENT: Field = 4..6;
    /// Echo: sequence number.
    pub const ECHO_SEQNO: Field = 6..8;
    /// Packet too big: MTU.
    pub const MTU: Field = 4..8;
    /// The rest-of-header word as a whole (also the NA flags and reserved bits).
    pub const REST: Field = 4..8;
    /// Neighbour advertisement flags (R, S, O in the top bits).
    pub const NA_FLAGS: usize = 4;
    pub const PAYLOAD: usize = REST.end;
    /// Neighbour solicitation / advertisement: target address.
    pub const ND_TARGET: Field = 8..24;
    pub const ND_OPTIONS: usize = ND_TARGET.end;

    /// ND option: type, from the start of the option.
    pub const OPT_TYPE: usize = 0;
    /// ND option: length in units of 8 bytes, type and length included.
    pub const OPT_LEN: usize = 1;
    /// Link-layer address option: the Ethernet address.
    pub const OPT_LLADDR: Field = 2..8;
}

/// ICMPv6 message type numbers.
pub mod message {
    /// Destination unreachable.
    pub const DST_UNREACHABLE: u8 = 1;
    /// Packet too big.
    pub const PACKET_TOO_BIG: u8 = 2;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 3;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 128;
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 129;
    /// Neighbour solicitation.
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    /// Neighbour advertisement.
    pub const NEIGHBOR_ADVERT: u8 = 136;
}

/// Neighbour advertisement: sender is a router.
const NA_FLAG_ROUTER: u8 = 0x80;
/// Neighbour advertisement: sent in response to a solicitation.
const NA_FLAG_SOLICITED: u8 = 0x40;
/// Neighbour advertisement: override an existing cache entry.
const NA_FLAG_OVERRIDE: u8 = 0x20;

/// Bytes of the original payload an error message quotes after the IPv6 header, at least.
pub const QUOTED_PAYLOAD_LEN: usize = 8;

/// The neighbour-discovery options fulcrum reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdOption {
    /// Source link-layer address (type 1).
    SourceLinkLayerAddr,
    /// Target link-layer address (type 2).
    TargetLinkLayerAddr,
}

impl NdOption {
    /// The option type on the wire.
    #[inline]
    pub const fn code(self) -> u8 {
        match self {
            NdOption::SourceLinkLayerAddr => 1,
            NdOption::TargetLinkLayerAddr => 2,
        }
    }
}

/// Length of an Ethernet link-layer address option, bytes.
const LLADDR_OPTION_LEN: usize = field::OPT_LLADDR.end;

/// A view of an ICMPv6 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Length of the header (type, code, checksum, rest of header), bytes.
    pub const HEADER_LEN: usize = field::PAYLOAD;
    /// Length of a neighbour solicitation or advertisement without options, bytes.
    pub const ND_LEN: usize = field::ND_OPTIONS;

    /// Wraps `buffer` without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv6Packet { buffer }
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

    /// MTU of a packet-too-big message.
    #[inline]
    pub fn mtu(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), field::MTU)
    }

    /// Whether this is an error message (type below 128) that quotes a packet.
    #[inline]
    pub fn is_error(&self) -> bool {
        matches!(
            self.msg_type(),
            message::DST_UNREACHABLE | message::PACKET_TOO_BIG | message::TIME_EXCEEDED
        )
    }

    /// The bytes after the 8-byte header (echo data, quoted packet, or ND target + options).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        bytes::range(data, field::PAYLOAD, data.len())
    }

    /// The quoted IPv6 header (validated: version, within the message) and the 8 bytes
    /// after it. Its payload length is the original packet's and is not checked.
    #[inline]
    pub fn quoted(&self) -> Result<(Ipv6Packet<&[u8]>, &[u8])> {
        let quoted = self.payload();
        let header = bytes::range(quoted, 0, Ipv6Packet::<&[u8]>::HEADER_LEN);
        let header = Ipv6Packet::new_checked_header(header).map_err(|e| match e {
            WireError::BadVersion => WireError::BadVersion,
            _ => WireError::Truncated,
        })?;
        let from = Ipv6Packet::<&[u8]>::HEADER_LEN;
        let after = bytes::range(quoted, from, from + QUOTED_PAYLOAD_LEN);
        if after.len() != QUOTED_PAYLOAD_LEN {
            return Err(WireError::Truncated);
        }
        Ok((header, after))
    }

    /// Neighbour solicitation/advertisement target address.
    #[inline]
    pub fn nd_target(&self) -> Ipv6Addr {
        Ipv6Addr::from(bytes::array::<16>(self.buffer.as_ref(), field::ND_TARGET))
    }

    /// Neighbour advertisement router flag.
    #[inline]
    pub fn na_router(&self) -> bool {
        bytes::u8_at(self.buffer.as_ref(), field::NA_FLAGS) & NA_FLAG_ROUTER != 0
    }

    /// Neighbour advertisement solicited flag.
    #[inline]
    pub fn na_solicited(&self) -> bool {
        bytes::u8_at(self.buffer.as_ref(), field::NA_FLAGS) & NA_FLAG_SOLICITED != 0
    }

    /// Neighbour advertisement override flag.
    #[inline]
    pub fn na_override(&self) -> bool {
        bytes::u8_at(self.buffer.as_ref(), field::NA_FLAGS) & NA_FLAG_OVERRIDE != 0
    }

    /// The ND options after the target address.
    #[inline]
    pub fn nd_options(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        bytes::range(data, field::ND_OPTIONS, data.len())
    }

    /// The Ethernet address in the first `which` option, if any.
    ///
    /// `Malformed` for an option of length zero (RFC 4861 §4.6: discard the packet) or one
    /// running past the message.
    pub fn nd_link_layer_addr(&self, which: NdOption) -> Result<Option<EthernetAddress>> {
        let mut rest = self.nd_options();
        // Each step consumes at least 8 bytes, so this ends within len/8 steps.
        while !rest.is_empty() {
            let units = usize::from(bytes::u8_at(rest, field::OPT_LEN));
            let len = units * 8;
            if len == 0 || len > rest.len() {
                return Err(WireError::Malformed);
            }
            let (option, tail) = rest.split_at(len);
            if bytes::u8_at(option, field::OPT_TYPE) == which.code() {
                return Ok(Some(EthernetAddress(bytes::array(
                    option,
                    field::OPT_LLADDR,
                ))));
            }
            rest = tail;
        }
        Ok(None)
    }

    /// Whether the checksum over the message and the pseudo-header for `src` → `dst` verifies.
    #[inline]
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let data = self.buffer.as_ref();
        let pseudo = pseudo_header_v6(src, dst, IpProtocol::ICMPV6, data.len() as u32);
        checksum::combine(&[pseudo, checksum::data(data)]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
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

    /// Sets the rest-of-header word (MTU of packet-too-big, zero for other errors).
    #[inline]
    pub fn set_rest_of_header(&mut self, value: u32) {
        bytes::set_u32(self.buffer.as_mut(), field::REST, value)
    }

    /// Sets the neighbour advertisement flags (and zeroes the reserved bits).
    #[inline]
    pub fn set_na_flags(&mut self, router: bool, solicited: bool, override_: bool) {
        let flags = if router { NA_FLAG_ROUTER } else { 0 }
            | if solicited { NA_FLAG_SOLICITED } else { 0 }
            | if override_ { NA_FLAG_OVERRIDE } else { 0 };
        bytes::set_u32(self.buffer.as_mut(), field::REST, u32::from(flags) << 24)
    }

    /// Sets the neighbour solicitation/advertisement target address.
    #[inline]
    pub fn set_nd_target(&mut self, addr: Ipv6Addr) {
        bytes::set_bytes(self.buffer.as_mut(), field::ND_TARGET, &addr.octets())
    }

    /// The bytes after the header, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let data = self.buffer.as_mut();
        let len = data.len();
        bytes::range_mut(data, field::PAYLOAD, len)
    }

    /// Computes and writes the checksum over the message and the pseudo-header.
    #[inline]
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let pseudo = pseudo_header_v6(src, dst, IpProtocol::ICMPV6, data.len() as u32);
        let sum = checksum::combine(&[pseudo, checksum::data(data)]);
        self.set_checksum(checksum::finish(sum))
    }
}

/// The parsed form of the ICMPv6 messages fulcrum handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv6Repr<'a> {
    /// Echo request.
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
        /// Reason code.
        code: u8,
        /// The quoted packet: IPv6 header and at least 8 bytes after it.
        quoted: &'a [u8],
    },
    /// Packet too big (path-MTU discovery).
    PacketTooBig {
        /// MTU of the next-hop link, bytes.
        mtu: u32,
        /// The quoted packet: IPv6 header and at least 8 bytes after it.
        quoted: &'a [u8],
    },
    /// Time exceeded.
    TimeExceeded {
        /// 0: hop limit exceeded, 1: reassembly time exceeded.
        code: u8,
        /// The quoted packet: IPv6 header and at least 8 bytes after it.
        quoted: &'a [u8],
    },
    /// Neighbour solicitation.
    NeighborSolicit {
        /// The address being resolved.
        target: Ipv6Addr,
        /// The solicitor's link-layer address (absent for duplicate address detection).
        source_lladdr: Option<EthernetAddress>,
    },
    /// Neighbour advertisement.
    NeighborAdvert {
        /// Sender is a router.
        router: bool,
        /// Sent in response to a solicitation.
        solicited: bool,
        /// Override an existing cache entry.
        override_: bool,
        /// The address advertised.
        target: Ipv6Addr,
        /// The link-layer address of the target.
        target_lladdr: Option<EthernetAddress>,
    },
}

impl<'a> Icmpv6Repr<'a> {
    /// Reads a message whose checksum verifies for `src` → `dst`. Other types (and ND
    /// messages with a non-zero code) are `Unsupported`.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Icmpv6Packet<&'a T>,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
    ) -> Result<Icmpv6Repr<'a>> {
        let packet = Icmpv6Packet::new_checked(T::as_ref(packet.buffer))?;
        if !packet.verify_checksum(src, dst) {
            return Err(WireError::BadChecksum);
        }
        let data = packet.buffer;
        let payload = bytes::range(data, field::PAYLOAD, data.len());
        let nd_checked = || -> Result<()> {
            if data.len() < field::ND_OPTIONS {
                return Err(WireError::Truncated);
            }
            Ok(())
        };
        let repr = match (packet.msg_type(), packet.msg_code()) {
            (message::ECHO_REQUEST, 0) => Icmpv6Repr::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data: payload,
            },
            (message::ECHO_REPLY, 0) => Icmpv6Repr::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data: payload,
            },
            (message::DST_UNREACHABLE, code) => {
                packet.quoted()?;
                Icmpv6Repr::DstUnreachable {
                    code,
                    quoted: payload,
                }
            }
            (message::PACKET_TOO_BIG, 0) => {
                packet.quoted()?;
                Icmpv6Repr::PacketTooBig {
                    mtu: packet.mtu(),
                    quoted: payload,
                }
            }
            (message::TIME_EXCEEDED, code) => {
                packet.quoted()?;
                Icmpv6Repr::TimeExceeded {
                    code,
                    quoted: payload,
                }
            }
            (message::NEIGHBOR_SOLICIT, 0) => {
                nd_checked()?;
                Icmpv6Repr::NeighborSolicit {
                    target: packet.nd_target(),
                    source_lladdr: packet.nd_link_layer_addr(NdOption::SourceLinkLayerAddr)?,
                }
            }
            (message::NEIGHBOR_ADVERT, 0) => {
                nd_checked()?;
                Icmpv6Repr::NeighborAdvert {
                    router: packet.na_router(),
                    solicited: packet.na_solicited(),
                    override_: packet.na_override(),
                    target: packet.nd_target(),
                    target_lladdr: packet.nd_link_layer_addr(NdOption::TargetLinkLayerAddr)?,
                }
            }
            _ => return Err(WireError::Unsupported),
        };
        Ok(repr)
    }

    /// Bytes the message needs.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        match self {
            Icmpv6Repr::EchoRequest { data, .. } | Icmpv6Repr::EchoReply { data, .. } => {
                field::PAYLOAD + data.len()
            }
            Icmpv6Repr::DstUnreachable { quoted, .. }
            | Icmpv6Repr::PacketTooBig { quoted, .. }
            | Icmpv6Repr::TimeExceeded { quoted, .. } => field::PAYLOAD + quoted.len(),
            Icmpv6Repr::NeighborSolicit {
                source_lladdr: lladdr,
                ..
            }
            | Icmpv6Repr::NeighborAdvert {
                target_lladdr: lladdr,
                ..
            } => {
                field::ND_OPTIONS
                    + if lladdr.is_some() {
                        LLADDR_OPTION_LEN
                    } else {
                        0
                    }
            }
        }
    }

    /// Writes the message, checksum filled for `src` → `dst`, into `packet`, which must be
    /// exactly [`Self::buffer_len`] long (the checksum covers the whole buffer).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Icmpv6Packet<T>,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
    ) {
        let (msg_type, code) = match *self {
            Icmpv6Repr::EchoRequest { .. } => (message::ECHO_REQUEST, 0),
            Icmpv6Repr::EchoReply { .. } => (message::ECHO_REPLY, 0),
            Icmpv6Repr::DstUnreachable { code, .. } => (message::DST_UNREACHABLE, code),
            Icmpv6Repr::PacketTooBig { .. } => (message::PACKET_TOO_BIG, 0),
            Icmpv6Repr::TimeExceeded { code, .. } => (message::TIME_EXCEEDED, code),
            Icmpv6Repr::NeighborSolicit { .. } => (message::NEIGHBOR_SOLICIT, 0),
            Icmpv6Repr::NeighborAdvert { .. } => (message::NEIGHBOR_ADVERT, 0),
        };
        packet.set_msg_type(msg_type);
        packet.set_msg_code(code);
        let copy = |packet: &mut Icmpv6Packet<T>, from: &[u8]| match packet.payload_mut() {
            out if out.len() == from.len() => out.copy_from_slice(from),
            _ => debug_assert!(false, "ICMPv6 buffer not sized to buffer_len()"),
        };
        match *self {
            Icmpv6Repr::EchoRequest {
                ident,
                seq_no,
                data,
            }
            | Icmpv6Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => {
                packet.set_echo_ident(ident);
                packet.set_echo_seq_no(seq_no);
                copy(packet, data);
            }
            Icmpv6Repr::DstUnreachable { quoted, .. } | Icmpv6Repr::TimeExceeded { quoted, .. } => {
                packet.set_rest_of_header(0);
                copy(packet, quoted);
            }
            Icmpv6Repr::PacketTooBig { mtu, quoted } => {
                packet.set_rest_of_header(mtu);
                copy(packet, quoted);
            }
            Icmpv6Repr::NeighborSolicit {
                target,
                source_lladdr,
            } => {
                packet.set_rest_of_header(0);
                packet.set_nd_target(target);
                emit_lladdr(packet, NdOption::SourceLinkLayerAddr, source_lladdr);
            }
            Icmpv6Repr::NeighborAdvert {
                router,
                solicited,
                override_,
                target,
                target_lladdr,
            } => {
                packet.set_na_flags(router, solicited, override_);
                packet.set_nd_target(target);
                emit_lladdr(packet, NdOption::TargetLinkLayerAddr, target_lladdr);
            }
        }
        packet.fill_checksum(src, dst);
    }
}

/// Writes a link-layer address option right after the ND target, if there is one.
fn emit_lladdr<T: AsRef<[u8]> + AsMut<[u8]>>(
    packet: &mut Icmpv6Packet<T>,
    which: NdOption,
    addr: Option<EthernetAddress>,
) {
    let Some(addr) = addr else { return };
    let data = packet.buffer.as_mut();
    let option = bytes::range_mut(
        data,
        field::ND_OPTIONS,
        field::ND_OPTIONS + LLADDR_OPTION_LEN,
    );
    bytes::set_u8(option, field::OPT_TYPE, which.code());
    bytes::set_u8(option, field::OPT_LEN, (LLADDR_OPTION_LEN / 8) as u8);
    bytes::set_bytes(option, field::OPT_LLADDR, &addr.0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{test_support, Ipv6Repr};
    use proptest::prelude::*;

    fn src() -> Ipv6Addr {
        "fe80::1".parse().unwrap()
    }
    fn dst() -> Ipv6Addr {
        "ff02::1:ff00:2".parse().unwrap()
    }

    /// A neighbour solicitation for 2001:db8::2 with a source link-layer option, as bytes.
    fn solicitation() -> Vec<u8> {
        let mut b = vec![135, 0, 0, 0, 0, 0, 0, 0];
        b.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        b.extend_from_slice(&[1, 1, 0x02, 0, 0, 0, 0, 0x0a]);
        Icmpv6Packet::new_unchecked(&mut b[..]).fill_checksum(&src(), &dst());
        b
    }

    fn quoted_udp() -> Vec<u8> {
        let ip = Ipv6Repr {
            src: "2001:db8::7".parse().unwrap(),
            dst: "2001:db8::10".parse().unwrap(),
            next_header: IpProtocol::UDP,
            payload_len: 1460,
            hop_limit: 1,
            traffic_class: 0,
            flow_label: 0,
        };
        let mut q = vec![0u8; 48];
        ip.emit(&mut Ipv6Packet::new_unchecked(&mut q[..]));
        q[40..48].copy_from_slice(&[0x30, 0x39, 0x17, 0xc0, 0x05, 0xbc, 0, 0]);
        q
    }

    #[test]
    fn deconstruct_solicitation() {
        let b = solicitation();
        let p = Icmpv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.msg_type(), message::NEIGHBOR_SOLICIT);
        assert!(p.verify_checksum(&src(), &dst()));
        assert!(!p.verify_checksum(&dst(), &src().to_bits().wrapping_add(1).into()));
        assert_eq!(p.nd_target(), "2001:db8::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            p.nd_link_layer_addr(NdOption::SourceLinkLayerAddr),
            Ok(Some(test_support::MAC_A))
        );
        assert_eq!(
            p.nd_link_layer_addr(NdOption::TargetLinkLayerAddr),
            Ok(None)
        );
        let repr = Icmpv6Repr::parse(&p, &src(), &dst()).unwrap();
        assert_eq!(
            repr,
            Icmpv6Repr::NeighborSolicit {
                target: "2001:db8::2".parse().unwrap(),
                source_lladdr: Some(test_support::MAC_A)
            }
        );
        let mut built = vec![0u8; repr.buffer_len()];
        repr.emit(
            &mut Icmpv6Packet::new_unchecked(&mut built[..]),
            &src(),
            &dst(),
        );
        assert_eq!(built, b);
    }

    #[test]
    fn advertisement_flags_and_target_option() {
        let repr = Icmpv6Repr::NeighborAdvert {
            router: false,
            solicited: true,
            override_: true,
            target: "2001:db8::2".parse().unwrap(),
            target_lladdr: Some(test_support::MAC_B),
        };
        let mut b = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Icmpv6Packet::new_unchecked(&mut b[..]), &dst(), &src());
        assert_eq!(&b[..8], &[136, 0, b[2], b[3], 0x60, 0, 0, 0]);
        assert_eq!(&b[24..26], &[2, 1]);
        let p = Icmpv6Packet::new_checked(&b[..]).unwrap();
        assert!(!p.na_router() && p.na_solicited() && p.na_override());
        assert_eq!(Icmpv6Repr::parse(&p, &dst(), &src()), Ok(repr));
    }

    #[test]
    fn bad_nd_options_are_malformed() {
        let mut b = solicitation();
        b[25] = 0; // option length zero
        Icmpv6Packet::new_unchecked(&mut b[..]).fill_checksum(&src(), &dst());
        let p = Icmpv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            Icmpv6Repr::parse(&p, &src(), &dst()),
            Err(WireError::Malformed)
        );
        let mut b = solicitation();
        b[25] = 2; // option longer than the message
        Icmpv6Packet::new_unchecked(&mut b[..]).fill_checksum(&src(), &dst());
        let p = Icmpv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            Icmpv6Repr::parse(&p, &src(), &dst()),
            Err(WireError::Malformed)
        );
        // Too short to hold the target.
        let mut b = solicitation();
        b.truncate(20);
        Icmpv6Packet::new_unchecked(&mut b[..]).fill_checksum(&src(), &dst());
        let p = Icmpv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            Icmpv6Repr::parse(&p, &src(), &dst()),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn packet_too_big_quotes_inner_header() {
        let q = quoted_udp();
        let repr = Icmpv6Repr::PacketTooBig {
            mtu: 1280,
            quoted: &q,
        };
        let mut b = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Icmpv6Packet::new_unchecked(&mut b[..]), &src(), &dst());
        let p = Icmpv6Packet::new_checked(&b[..]).unwrap();
        assert!(p.is_error());
        assert_eq!(p.mtu(), 1280);
        let (inner, first8) = p.quoted().unwrap();
        assert_eq!(inner.next_header(), IpProtocol::UDP);
        assert_eq!(
            inner.dst_addr(),
            "2001:db8::10".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(&first8[..4], &[0x30, 0x39, 0x17, 0xc0]);
        assert_eq!(Icmpv6Repr::parse(&p, &src(), &dst()), Ok(repr));
        // A quote cut inside the 8 bytes after the header is rejected.
        let short = Icmpv6Repr::TimeExceeded {
            code: 0,
            quoted: &q[..44],
        };
        let mut b = vec![0u8; short.buffer_len()];
        short.emit(&mut Icmpv6Packet::new_unchecked(&mut b[..]), &src(), &dst());
        let p = Icmpv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            Icmpv6Repr::parse(&p, &src(), &dst()),
            Err(WireError::Truncated)
        );
    }

    fn touch_all<T: AsRef<[u8]>>(p: &Icmpv6Packet<T>) {
        let _ = (
            p.msg_type(),
            p.msg_code(),
            p.checksum(),
            p.echo_ident(),
            p.echo_seq_no(),
            p.mtu(),
            p.is_error(),
            p.payload().len(),
            p.nd_target(),
            p.na_router(),
            p.na_solicited(),
            p.na_override(),
            p.nd_options().len(),
            p.nd_link_layer_addr(NdOption::SourceLinkLayerAddr),
            p.nd_link_layer_addr(NdOption::TargetLinkLayerAddr),
            p.verify_checksum(&src(), &dst()),
        );
        if let Ok((inner, first8)) = p.quoted() {
            let _ = (
                inner.src_addr(),
                inner.payload().len(),
                inner.extensions(),
                first8.len(),
            );
        }
    }

    #[test]
    fn truncations_are_errors_never_panics() {
        for full in [solicitation(), {
            let q = quoted_udp();
            let r = Icmpv6Repr::DstUnreachable {
                code: 4,
                quoted: &q,
            };
            let mut b = vec![0u8; r.buffer_len()];
            r.emit(&mut Icmpv6Packet::new_unchecked(&mut b[..]), &src(), &dst());
            b
        }] {
            for len in 0..full.len() {
                let r = Icmpv6Packet::new_checked(&full[..len]);
                assert_eq!(r.is_ok(), len >= 8);
                if let Ok(p) = &r {
                    touch_all(p);
                }
                let view = Icmpv6Packet::new_unchecked(&full[..len]);
                touch_all(&view);
                assert!(Icmpv6Repr::parse(&view, &src(), &dst()).is_err());
            }
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..120), kind in 0usize..4) {
            if bytes.len() > 8 {
                bytes[0] = [1u8, 2, 135, 136][kind];
            }
            if let Ok(p) = Icmpv6Packet::new_checked(&bytes[..]) {
                touch_all(&p);
                let _ = Icmpv6Repr::parse(&p, &src(), &dst());
            }
        }

        #[test]
        fn repr_round_trip_and_etherparse_agrees(
            kind in 0u8..7,
            a: u16,
            b: u16,
            mtu: u32,
            code: u8,
            flags in 0u8..8,
            target: u128,
            lladdr in proptest::option::of(any::<[u8; 6]>()),
            data in proptest::collection::vec(any::<u8>(), 0..64),
            tail in proptest::collection::vec(any::<u8>(), 0..40),
            s: u128,
            d: u128,
        ) {
            let (s, d) = (Ipv6Addr::from_bits(s), Ipv6Addr::from_bits(d));
            let mut quoted = quoted_udp();
            quoted.extend_from_slice(&tail);
            let lladdr = lladdr.map(EthernetAddress);
            let target = Ipv6Addr::from_bits(target);
            let repr = match kind {
                0 => Icmpv6Repr::EchoRequest { ident: a, seq_no: b, data: &data },
                1 => Icmpv6Repr::EchoReply { ident: a, seq_no: b, data: &data },
                2 => Icmpv6Repr::DstUnreachable { code, quoted: &quoted },
                3 => Icmpv6Repr::PacketTooBig { mtu, quoted: &quoted },
                4 => Icmpv6Repr::TimeExceeded { code, quoted: &quoted },
                5 => Icmpv6Repr::NeighborSolicit { target, source_lladdr: lladdr },
                _ => Icmpv6Repr::NeighborAdvert {
                    router: flags & 4 != 0,
                    solicited: flags & 2 != 0,
                    override_: flags & 1 != 0,
                    target,
                    target_lladdr: lladdr,
                },
            };
            let mut msg = vec![0u8; repr.buffer_len()];
            repr.emit(&mut Icmpv6Packet::new_unchecked(&mut msg[..]), &s, &d);
            let view = Icmpv6Packet::new_checked(&msg[..]).unwrap();
            prop_assert_eq!(Icmpv6Repr::parse(&view, &s, &d), Ok(repr));

            let frame = test_support::ipv6_frame(s, d, IpProtocol::ICMPV6, &msg);
            let sliced = etherparse::SlicedPacket::from_ethernet(&frame).unwrap();
            let Some(etherparse::TransportSlice::Icmpv6(icmp)) = sliced.transport else {
                return Err(TestCaseError::fail("etherparse saw no ICMPv6"));
            };
            prop_assert!(icmp.is_checksum_valid(s.octets(), d.octets()));
            prop_assert_eq!(icmp.type_u8(), view.msg_type());
        }
    }
}
