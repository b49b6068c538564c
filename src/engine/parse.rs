//! Step 1 of the data path: read the headers once into [`Meta`].
//!
//! Every check that can fail on hostile input happens here, each with its own
//! [`DropReason`]; the later steps only read fields `Meta` proved present.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::flow::{FlowKey, IpAddr16};
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
/// An untagged Ethernet header's length: where a common frame's IP header starts.
const ETHERNET_LEN: usize = 14;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Offset of the network header (past the Ethernet header and VLAN tags).
    pub l3: usize,
    /// The network layer.
    pub kind: L3,
    /// The addresses (v4-mapped for IPv4), the upper-layer protocol and the ports (0
    /// without ports), laid out as the flow table's key: the route pass fills in the
    /// `service` of a packet to an L4 service (0 until then), and the lookup compares
    /// this key where it lies, with no copy. (A fragment's flow leaves the ports out:
    /// see `flow_key` in the data path.)
    pub key: FlowKey,
    /// Offset of the upper-layer header from the frame start (valid when `has_l4`).
    pub l4: usize,
    /// Whether the upper-layer header is in this packet (not a non-first fragment).
    pub has_l4: bool,
    /// Length of the IP packet (header + payload), bytes, as its header says.
    pub ip_len: usize,
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
    /// A `Meta` of nothing (ARP kind, zero offsets), to be overwritten by [`parse_into`].
    pub const EMPTY: Meta = Meta {
        l3: 0,
        kind: L3::Arp,
        key: FlowKey {
            src: IpAddr16([0; 16]),
            dst: IpAddr16([0; 16]),
            src_port: 0,
            dst_port: 0,
            proto: 0,
            service: 0,
        },
        l4: 0,
        has_l4: false,
        ip_len: 0,
        tcp_flags: 0,
        fragment: false,
        dont_frag: true,
        ttl: 0,
        tos: 0,
    };

    /// The source address.
    pub fn src_ip(&self) -> IpAddr {
        self.addr(self.key.src)
    }
    /// The destination address.
    pub fn dst_ip(&self) -> IpAddr {
        self.addr(self.key.dst)
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
    match IpProtocol(meta.key.proto) {
        IpProtocol::TCP => {
            let t = TcpPacket::new_checked(l4).map_err(|_| DropReason::BadTcp)?;
            meta.key.src_port = t.src_port();
            meta.key.dst_port = t.dst_port();
            meta.tcp_flags = t.flags().bits() as u8;
        }
        IpProtocol::UDP if meta.fragment => {
            // The first fragment of a datagram: its UDP length is the whole datagram's,
            // longer than this fragment, so only the header itself can be checked.
            if l4.len() < UDP_HEADER_LEN {
                return Err(DropReason::BadUdp);
            }
            let u = UdpPacket::new_unchecked(l4);
            if usize::from(u.len()) < UDP_HEADER_LEN {
                return Err(DropReason::BadUdp);
            }
            meta.key.src_port = u.src_port();
            meta.key.dst_port = u.dst_port();
        }
        IpProtocol::UDP => {
            let u = UdpPacket::new_checked(l4).map_err(|_| DropReason::BadUdp)?;
            meta.key.src_port = u.src_port();
            meta.key.dst_port = u.dst_port();
        }
        _ => {}
    }
    Ok(())
}

/// Reads the frame's headers. `mtu` is the port's IP MTU.
#[inline]
pub fn parse(data: &[u8], mtu: u16) -> Result<Meta, DropReason> {
    let mut meta = Meta::EMPTY;
    parse_into(data, mtu, &mut meta).map(|()| meta)
}

/// [`parse`] into `meta` in place (the data path parses into its burst's scratch slots,
/// so the headers are written once and never moved). On an error `meta` holds garbage.
/// Inlined into the data path's first pass (the common frame's checks are a few dozen
/// instructions; a call cost a third as many again in saved registers), while the
/// general parser stays out of line.
#[inline(always)]
pub fn parse_into(data: &[u8], mtu: u16, meta: &mut Meta) -> Result<(), DropReason> {
    if parse_common(data, mtu, meta).is_some() {
        return Ok(());
    }
    // the IPv6 reader is out of line: only untagged IPv6 frames pay its call
    if data.get(12..14) == Some(&[0x86, 0xdd]) && parse_common6(data, mtu, meta).is_some() {
        return Ok(());
    }
    parse_general_into(data, mtu, meta)
}

/// The frame most traffic is: untagged Ethernet, IPv4 without options, not a fragment,
/// TCP or UDP, every check passed. Reads fixed offsets with the length checked once.
/// `None` means "not that frame" (or not valid), for [`parse_general_into`] to read and, if
/// it is bad, to name why (`meta` is then untouched); whenever this fills `meta`,
/// `parse_general` returns the same one (a test holds the two to it).
/// `meta` is written field by field only once every check passed (no 72-byte value
/// built on the stack and copied).
#[inline(always)]
fn parse_common(data: &[u8], mtu: u16, meta: &mut Meta) -> Option<()> {
    const L3: usize = ETHERNET_LEN;
    const L4: usize = L3 + IPV4_HEADER_LEN;
    let h: &[u8; L4] = data.first_chunk()?;
    let be16 = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
    // IPv4, IHL 5, within the MTU
    if be16(12) != 0x0800 || h[L3] != 0x45 || data.len() > L3 + mtu as usize {
        return None;
    }
    let ip_len = usize::from(be16(L3 + 2));
    if ip_len < IPV4_HEADER_LEN || L3 + ip_len > data.len() {
        return None;
    }
    // the header checksum (the version byte makes the header non-zero)
    if !crate::wire::checksum::ipv4_header_verifies(h[L3..].first_chunk()?) {
        return None;
    }
    let flags_frag = be16(L3 + 6);
    // MF or an offset: a fragment
    if flags_frag & 0x3fff != 0 {
        return None;
    }
    let proto = h[L3 + 9];
    let ports = common_ports(proto, data.get(L4..L3 + ip_len)?)?;
    let header = CommonHeader {
        kind: L3::V4,
        src: IpAddr16::from_v4([h[26], h[27], h[28], h[29]]),
        dst: IpAddr16::from_v4([h[30], h[31], h[32], h[33]]),
        proto,
        l4: L4,
        ip_len,
        dont_frag: flags_frag & 0x4000 != 0,
        ttl: h[L3 + 8],
        tos: h[L3 + 1],
    };
    header.write(meta, ports);
    Some(())
}

/// What the common-frame readers take from the IP header, written into a `Meta` by
/// [`CommonHeader::write`] only once every check passed.
struct CommonHeader {
    kind: L3,
    src: IpAddr16,
    dst: IpAddr16,
    proto: u8,
    l4: usize,
    ip_len: usize,
    dont_frag: bool,
    ttl: u8,
    tos: u8,
}

impl CommonHeader {
    /// Writes `meta` field by field (no `Meta` value built and copied: the data path reads
    /// the addresses back as 64-bit words), with the ports and TCP flags of
    /// [`common_ports`]. An untagged frame, not a fragment, its upper-layer header present.
    #[inline(always)]
    fn write(self, meta: &mut Meta, (sport, dport, tcp_flags): (u16, u16, u8)) {
        meta.l3 = ETHERNET_LEN;
        meta.kind = self.kind;
        meta.key.src = self.src;
        meta.key.dst = self.dst;
        meta.key.proto = self.proto;
        meta.l4 = self.l4;
        meta.has_l4 = true;
        meta.ip_len = self.ip_len;
        meta.key.src_port = sport;
        meta.key.dst_port = dport;
        // (the route pass sets a flow's service; a slot's earlier packet may have)
        meta.key.service = 0;
        meta.tcp_flags = tcp_flags;
        meta.fragment = false;
        meta.dont_frag = self.dont_frag;
        meta.ttl = self.ttl;
        meta.tos = self.tos;
    }
}

/// [`parse_common`]'s IPv6 twin: untagged Ethernet, IPv6 whose next header is TCP or UDP
/// (no extension header), every check passed. The same contract: `None` for
/// [`parse_general_into`] to read, and whatever this fills in, the general parser
/// fills in too (the same test holds it).
#[inline(never)]
fn parse_common6(data: &[u8], mtu: u16, meta: &mut Meta) -> Option<()> {
    const L3: usize = ETHERNET_LEN;
    const L4: usize = L3 + IPV6_HEADER_LEN;
    let h: &[u8; L4] = data.first_chunk()?;
    if u16::from_be_bytes([h[12], h[13]]) != 0x86dd
        || h[L3] >> 4 != 6
        || data.len() > L3 + mtu as usize
    {
        return None;
    }
    let ip_len = IPV6_HEADER_LEN + usize::from(u16::from_be_bytes([h[L3 + 4], h[L3 + 5]]));
    if L3 + ip_len > data.len() {
        return None;
    }
    let proto = h[L3 + 6];
    let ports = common_ports(proto, data.get(L4..L3 + ip_len)?)?;
    let addr =
        |at: usize| -> Option<IpAddr16> { Some(IpAddr16(*h.get(at..at + 16)?.first_chunk()?)) };
    let header = CommonHeader {
        kind: L3::V6,
        src: addr(L3 + 8)?,
        dst: addr(L3 + 24)?,
        proto,
        l4: L4,
        ip_len,
        // (IPv6 routers never fragment: as the general parser says)
        dont_frag: true,
        ttl: h[L3 + 7],
        tos: (h[L3] << 4) | (h[L3 + 1] >> 4),
    };
    header.write(meta, ports);
    Some(())
}

/// The common frames' TCP or UDP header checks and ports: (source port, destination
/// port, TCP flags), or `None` for another protocol or a header the general parser would
/// refuse.
#[inline(always)]
fn common_ports(proto: u8, l4: &[u8]) -> Option<(u16, u16, u8)> {
    match IpProtocol(proto) {
        IpProtocol::TCP => {
            let t: &[u8; 20] = l4.first_chunk()?;
            let header_len = usize::from(t[12] >> 4) * 4;
            if header_len < 20 || header_len > l4.len() {
                return None;
            }
            Some((
                u16::from_be_bytes([t[0], t[1]]),
                u16::from_be_bytes([t[2], t[3]]),
                t[13],
            ))
        }
        IpProtocol::UDP => {
            let u: &[u8; UDP_HEADER_LEN] = l4.first_chunk()?;
            let claimed = usize::from(u16::from_be_bytes([u[4], u[5]]));
            if claimed < UDP_HEADER_LEN || claimed > l4.len() {
                return None;
            }
            Some((
                u16::from_be_bytes([u[0], u[1]]),
                u16::from_be_bytes([u[2], u[3]]),
                0,
            ))
        }
        _ => None,
    }
}

/// The common-frame readers ([`parse_common`], then [`parse_common6`]) as a value, for
/// the tests.
#[cfg(test)]
fn common_meta(data: &[u8], mtu: u16) -> Option<Meta> {
    let mut m = Meta::EMPTY;
    if parse_common(data, mtu, &mut m).is_some() {
        return Some(m);
    }
    let mut m = Meta::EMPTY;
    parse_common6(data, mtu, &mut m).map(|()| m)
}

/// [`parse_general_into`] as a value, for the tests.
#[cfg(test)]
fn parse_general(data: &[u8], mtu: u16) -> Result<Meta, DropReason> {
    let mut meta = Meta::EMPTY;
    parse_general_into(data, mtu, &mut meta).map(|()| meta)
}

/// [`parse_into`] for any frame: VLAN tags, ARP, IPv4 options and fragments, IPv6 and its
/// extension headers, every malformation named. It writes `meta` in place, field by
/// field: a `Meta` returned by value was copied into the scratch slot in 16-byte pieces at
/// an odd offset, and the data path's 64-bit reads of the addresses then straddled two of
/// those stores (a store-forwarding stall, as with the common frame's addresses). On an
/// error `meta` holds garbage.
#[inline(never)]
#[cold]
fn parse_general_into(data: &[u8], mtu: u16, meta: &mut Meta) -> Result<(), DropReason> {
    let eth = EthernetFrame::new_checked(data).map_err(|_| DropReason::Runt)?;
    let nl = eth.network_layer().map_err(|e| match e {
        WireError::TooManyHeaders => DropReason::BadVlan,
        _ => DropReason::Runt,
    })?;
    let l3 = nl.offset;
    if data.len() > l3 + mtu as usize {
        return Err(DropReason::Oversize);
    }
    *meta = Meta { l3, ..Meta::EMPTY };
    let payload = data.get(l3..).ok_or(DropReason::Runt)?;
    match nl.ethertype {
        EtherType::ARP => Ok(()),
        EtherType::IPV4 => {
            // a frame that ends inside the header its EtherType announces is a runt
            if payload.len() < IPV4_HEADER_LEN {
                return Err(DropReason::Runt);
            }
            let ip = Ipv4Packet::new_checked(payload).map_err(|_| DropReason::BadIpv4)?;
            if !ip.verify_checksum() {
                return Err(DropReason::BadIpChecksum);
            }
            meta.kind = L3::V4;
            meta.key.src = ip.src_addr().into();
            meta.key.dst = ip.dst_addr().into();
            meta.key.proto = ip.protocol().0;
            meta.ip_len = ip.total_len() as usize;
            meta.l4 = l3 + ip.header_len();
            meta.fragment = ip.is_fragment();
            meta.has_l4 = ip.frag_offset() == 0;
            meta.dont_frag = ip.dont_frag();
            meta.ttl = ip.ttl();
            meta.tos = (ip.dscp() << 2) | ip.ecn();
            if meta.has_l4 {
                l4_ports(meta, data)?;
            }
            Ok(())
        }
        EtherType::IPV6 => {
            if payload.len() < IPV6_HEADER_LEN {
                return Err(DropReason::Runt);
            }
            let ip = Ipv6Packet::new_checked(payload).map_err(|_| DropReason::BadIpv6)?;
            let ext = ip.extensions().map_err(|_| DropReason::BadIpv6)?;
            meta.kind = L3::V6;
            meta.key.src = ip.src_addr().into();
            meta.key.dst = ip.dst_addr().into();
            meta.key.proto = ext.upper_protocol.0;
            meta.ip_len = ip.total_len();
            meta.l4 = l3 + ext.upper_offset;
            meta.ttl = ip.hop_limit();
            meta.tos = ip.traffic_class();
            meta.fragment = ext.fragment.is_some();
            meta.has_l4 = ext.fragment.is_none_or(|f| f.is_first());
            if meta.has_l4 {
                l4_ports(meta, data)?;
            }
            Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Ethernet + IPv4 (no options, checksum filled) + `l4`, protocol `proto`.
    fn v4_frame(proto: u8, flags_frag: u16, l4: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let total = (IPV4_HEADER_LEN + l4.len()) as u16;
        let mut ip = [0u8; IPV4_HEADER_LEN];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[6..8].copy_from_slice(&flags_frag.to_be_bytes());
        ip[8] = 64;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&[192, 0, 2, 1]);
        ip[16..20].copy_from_slice(&[10, 0, 0, 1]);
        crate::wire::Ipv4Packet::new_unchecked(&mut ip[..]).fill_checksum();
        f.extend_from_slice(&ip);
        f.extend_from_slice(l4);
        f
    }

    /// An untagged IPv6 frame (traffic class 0xb8, flow label 0x12345, hop limit 61)
    /// whose next header is `next` and payload `l4`.
    fn v6_frame(next: u8, l4: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        let mut ip = [0u8; IPV6_HEADER_LEN];
        ip[0..4].copy_from_slice(&(6u32 << 28 | 0xb8 << 20 | 0x12345).to_be_bytes());
        ip[4..6].copy_from_slice(&(l4.len() as u16).to_be_bytes());
        ip[6] = next;
        ip[7] = 61;
        ip[8..24].copy_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        ip[24..40].copy_from_slice(&"fd01::2".parse::<Ipv6Addr>().unwrap().octets());
        f.extend_from_slice(&ip);
        f.extend_from_slice(l4);
        f
    }

    #[test]
    fn first_udp_fragment_keeps_its_ports() {
        // UDP length 108 (the whole datagram), 56 bytes in this fragment; MF set
        let mut udp = vec![0u8; 56];
        udp[0..2].copy_from_slice(&5353u16.to_be_bytes());
        udp[2..4].copy_from_slice(&53u16.to_be_bytes());
        udp[4..6].copy_from_slice(&108u16.to_be_bytes());
        let m = parse(&v4_frame(17, 0x2000, &udp), 1500).expect("a first fragment parses");
        assert!(m.fragment && m.has_l4);
        assert_eq!((m.key.src_port, m.key.dst_port), (5353, 53));
        // the same datagram unfragmented is truncated
        assert_eq!(
            parse(&v4_frame(17, 0, &udp), 1500).err(),
            Some(DropReason::BadUdp)
        );
        // a first fragment too short for the UDP header, or a length below it
        assert_eq!(
            parse(&v4_frame(17, 0x2000, &udp[..6]), 1500).err(),
            Some(DropReason::BadUdp)
        );
        udp[4..6].copy_from_slice(&4u16.to_be_bytes());
        assert_eq!(
            parse(&v4_frame(17, 0x2000, &udp), 1500).err(),
            Some(DropReason::BadUdp)
        );
    }

    /// Every `Meta` the common-frame reader returns, the general parser returns too:
    /// random corruptions of valid TCP and UDP frames (and of their lengths), each read
    /// both ways.
    #[test]
    fn common_frame_reader_agrees_with_the_general_parser() {
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
        tcp[12] = 0x50;
        tcp[13] = 0x18;
        tcp.extend_from_slice(&[7u8; 26]);
        let mut udp = vec![0u8; 8];
        udp[0..2].copy_from_slice(&5353u16.to_be_bytes());
        udp[2..4].copy_from_slice(&53u16.to_be_bytes());
        udp[4..6].copy_from_slice(&30u16.to_be_bytes());
        udp.extend_from_slice(&[9u8; 22]);
        let bases = [
            v4_frame(6, 0x4000, &tcp),
            v4_frame(17, 0, &udp),
            v4_frame(6, 0, &tcp[..20]),
            v6_frame(6, &tcp),
            v6_frame(17, &udp),
        ];
        for b in &bases {
            assert_eq!(common_meta(b, 1500), Some(parse_general(b, 1500).unwrap()));
        }
        let m = common_meta(&bases[3], 1500).unwrap();
        assert_eq!(
            (m.kind, m.tos, m.ttl, m.ip_len),
            (L3::V6, 0xb8, 61, 40 + 46)
        );
        // an extension header (hop-by-hop options) is the general parser's
        let mut hbh = vec![6u8, 0, 1, 4, 0, 0, 0, 0];
        hbh.extend_from_slice(&tcp);
        let f = v6_frame(0, &hbh);
        assert_eq!(common_meta(&f, 1500), None);
        assert_eq!(parse(&f, 1500).unwrap().key.dst_port, 80);
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (mut common, mut total) = (0, 0);
        for _ in 0..200_000 {
            let mut f = bases[(rnd() % bases.len() as u64) as usize].clone();
            // one to three byte changes, biased to the headers, sometimes a new length
            for _ in 0..1 + rnd() % 3 {
                let at = (rnd()
                    % if rnd() % 4 == 0 {
                        f.len()
                    } else {
                        80.min(f.len())
                    } as u64) as usize;
                let v = rnd() as u8;
                f[at] = if rnd() % 2 == 0 {
                    v
                } else {
                    f[at] ^ (1 << (v % 8))
                };
            }
            match rnd() % 6 {
                0 => f.truncate((rnd() % f.len() as u64) as usize),
                1 => f.extend_from_slice(&[0u8; 6]),
                _ => {}
            }
            let mtu = if rnd() % 8 == 0 { 40 } else { 1500 };
            total += 1;
            if let Some(m) = common_meta(&f, mtu) {
                common += 1;
                assert_eq!(parse_general(&f, mtu), Ok(m), "frame {f:02x?}");
            }
        }
        // the corruptions leave enough frames valid for the comparison to mean something
        assert!(common > total / 20, "{common} of {total}");
    }

    #[test]
    fn ip_header_cut_short_is_a_runt() {
        let f = v4_frame(17, 0, &[0u8; 40]);
        assert_eq!(parse(&f[..14 + 12], 1500).err(), Some(DropReason::Runt));
        let mut v6 = f[..14 + 30].to_vec();
        v6[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(parse(&v6, 1500).err(), Some(DropReason::Runt));
        // a whole header whose total length runs past the frame stays bad_ipv4
        assert_eq!(
            parse(&f[..f.len() - 1], 1500).err(),
            Some(DropReason::BadIpv4)
        );
    }
}
