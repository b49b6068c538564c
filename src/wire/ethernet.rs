//! Ethernet II frames and IEEE 802.1Q / 802.1ad VLAN tags.
//!
//! [`EthernetFrame::new_checked`] ensures the 14-byte header is present. The VLAN walk
//! ([`EthernetFrame::network_layer`]) checks each tag it steps over, so the offset it returns
//! is always inside the buffer. No setter changes a length, so none invalidates the check.

use core::fmt;
use core::str::FromStr;

use super::{bytes, EtherType, Result, WireError};

/// A 48-bit Ethernet (MAC) address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    /// The broadcast address ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);

    /// The address in `bytes`, which must be exactly 6 bytes long.
    #[inline]
    pub fn from_bytes(bytes: &[u8]) -> Option<EthernetAddress> {
        bytes.try_into().ok().map(EthernetAddress)
    }

    /// The address bytes.
    #[inline]
    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// Whether this is the broadcast address.
    #[inline]
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Whether the group bit is set (multicast, broadcast included).
    #[inline]
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Whether this is a unicast address.
    #[inline]
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a string is not a MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseEthernetAddressError;

impl fmt::Display for ParseEthernetAddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected a MAC address like 02:00:00:00:00:01")
    }
}

impl std::error::Error for ParseEthernetAddressError {}

impl FromStr for EthernetAddress {
    type Err = ParseEthernetAddressError;

    /// Parses six hexadecimal octets separated by `:` (or all by `-`).
    fn from_str(s: &str) -> core::result::Result<Self, Self::Err> {
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut parts = s.split(sep);
        for b in &mut out {
            let part = parts.next().ok_or(ParseEthernetAddressError)?;
            if part.is_empty() || part.len() > 2 {
                return Err(ParseEthernetAddressError);
            }
            *b = u8::from_str_radix(part, 16).map_err(|_| ParseEthernetAddressError)?;
        }
        if parts.next().is_some() {
            return Err(ParseEthernetAddressError);
        }
        Ok(EthernetAddress(out))
    }
}

mod field {
    use crate::wire::Field;

    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const PAYLOAD: usize = ETHERTYPE.end;

    /// Tag control information (PCP, DEI, VID), from the start of a VLAN tag.
    pub const VLAN_TCI: Field = 0..2;
    /// The EtherType after the tag, from the start of a VLAN tag.
    pub const VLAN_ETHERTYPE: Field = 2..4;
    pub const VLAN_LEN: usize = VLAN_ETHERTYPE.end;
}

/// Most VLAN tags [`EthernetFrame::network_layer`] steps over (an S-tag and a C-tag).
pub const MAX_VLAN_TAGS: usize = 2;

/// A view of an Ethernet II frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

/// Where the network-layer header starts, past any VLAN tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkLayer {
    /// EtherType of the network-layer header.
    pub ethertype: EtherType,
    /// Byte offset of the network-layer header from the start of the frame.
    pub offset: usize,
    /// VLAN ID (12 bits) of the outer tag, if any.
    pub outer_vlan: Option<u16>,
    /// VLAN ID (12 bits) of the inner tag of a double-tagged frame.
    pub inner_vlan: Option<u16>,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// The Ethernet header length (no tags), bytes.
    pub const HEADER_LEN: usize = field::PAYLOAD;

    /// Wraps `buffer` without checking it; see the module doc.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps `buffer` after checking that it holds an Ethernet header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks that the buffer holds the header.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < Self::HEADER_LEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> EthernetAddress {
        EthernetAddress(bytes::array(self.buffer.as_ref(), field::DESTINATION))
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> EthernetAddress {
        EthernetAddress(bytes::array(self.buffer.as_ref(), field::SOURCE))
    }

    /// The EtherType field (of the first tag, if the frame is tagged).
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        EtherType(bytes::u16_at(self.buffer.as_ref(), field::ETHERTYPE))
    }

    /// The bytes after the 14-byte header (VLAN tags included, if any).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        bytes::range(data, field::PAYLOAD, data.len())
    }

    /// Steps over up to [`MAX_VLAN_TAGS`] VLAN tags (0x88a8 or 0x8100) to the network layer.
    ///
    /// Fails with `Truncated` if a tag runs past the buffer and `TooManyHeaders` on a third tag.
    #[inline]
    pub fn network_layer(&self) -> Result<NetworkLayer> {
        let data = self.buffer.as_ref();
        if data.len() < Self::HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let mut layer = NetworkLayer {
            ethertype: self.ethertype(),
            offset: field::PAYLOAD,
            outer_vlan: None,
            inner_vlan: None,
        };
        let mut tags = 0;
        while matches!(layer.ethertype, EtherType::VLAN | EtherType::QINQ) {
            if tags == MAX_VLAN_TAGS {
                return Err(WireError::TooManyHeaders);
            }
            let tag = VlanTag::new_checked(bytes::range(data, layer.offset, data.len()))?;
            if tags == 0 {
                layer.outer_vlan = Some(tag.vlan_id());
            } else {
                layer.inner_vlan = Some(tag.vlan_id());
            }
            layer.ethertype = tag.ethertype();
            layer.offset += VlanTag::<&[u8]>::LEN;
            tags += 1;
        }
        Ok(layer)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: EthernetAddress) {
        bytes::set_bytes(self.buffer.as_mut(), field::DESTINATION, &addr.0)
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, addr: EthernetAddress) {
        bytes::set_bytes(self.buffer.as_mut(), field::SOURCE, &addr.0)
    }

    /// Sets the EtherType.
    #[inline]
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        bytes::set_u16(self.buffer.as_mut(), field::ETHERTYPE, ethertype.0)
    }

    /// The bytes after the 14-byte header, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let data = self.buffer.as_mut();
        let len = data.len();
        bytes::range_mut(data, field::PAYLOAD, len)
    }
}

/// A view of one 4-byte 802.1Q tag (the part after its TPID): TCI and the next EtherType.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanTag<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanTag<T> {
    /// Length of the tag (TCI + EtherType), bytes.
    pub const LEN: usize = field::VLAN_LEN;

    /// Wraps `buffer` without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        VlanTag { buffer }
    }

    /// Wraps `buffer` after checking that it holds a tag.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < Self::LEN {
            return Err(WireError::Truncated);
        }
        Ok(Self::new_unchecked(buffer))
    }

    /// Priority code point (3 bits).
    #[inline]
    pub fn priority(&self) -> u8 {
        (bytes::u16_at(self.buffer.as_ref(), field::VLAN_TCI) >> 13) as u8
    }

    /// Drop eligible indicator.
    #[inline]
    pub fn drop_eligible(&self) -> bool {
        bytes::u16_at(self.buffer.as_ref(), field::VLAN_TCI) & 0x1000 != 0
    }

    /// VLAN identifier (12 bits).
    #[inline]
    pub fn vlan_id(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::VLAN_TCI) & 0x0fff
    }

    /// The EtherType of what follows the tag.
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        EtherType(bytes::u16_at(self.buffer.as_ref(), field::VLAN_ETHERTYPE))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanTag<T> {
    /// Sets priority, drop eligibility and VLAN ID (PCP is masked to 3 bits, VID to 12).
    #[inline]
    pub fn set_tci(&mut self, priority: u8, drop_eligible: bool, vlan_id: u16) {
        let tci = (u16::from(priority & 0x7) << 13)
            | if drop_eligible { 0x1000 } else { 0 }
            | (vlan_id & 0x0fff);
        bytes::set_u16(self.buffer.as_mut(), field::VLAN_TCI, tci)
    }

    /// Sets the EtherType of what follows the tag.
    #[inline]
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        bytes::set_u16(self.buffer.as_mut(), field::VLAN_ETHERTYPE, ethertype.0)
    }
}

/// The parsed form of an untagged Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    /// Source address.
    pub src: EthernetAddress,
    /// Destination address.
    pub dst: EthernetAddress,
    /// EtherType.
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Reads the header of a checked frame.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<EthernetRepr> {
        frame.check_len()?;
        Ok(EthernetRepr {
            src: frame.src_addr(),
            dst: frame.dst_addr(),
            ethertype: frame.ethertype(),
        })
    }

    /// Bytes the header needs.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        field::PAYLOAD
    }

    /// Writes the header into `frame`, which must be at least [`Self::buffer_len`] long.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) {
        frame.set_src_addr(self.src);
        frame.set_dst_addr(self.dst);
        frame.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    static FRAME: [u8; 18] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // dst
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // src
        0x08, 0x00, // IPv4
        0xaa, 0xbb, 0xcc, 0xdd,
    ];

    static DOUBLE_TAGGED: [u8; 26] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // src
        0x88, 0xa8, 0x20, 0x64, // S-tag: PCP 1, VID 100
        0x81, 0x00, 0xf0, 0xc8, // C-tag: PCP 7, DEI, VID 200
        0x86, 0xdd, // IPv6
        0x60, 0x00, 0x00, 0x00,
    ];

    #[test]
    fn deconstruct() {
        let f = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(f.dst_addr(), EthernetAddress([2, 0, 0, 0, 0, 1]));
        assert_eq!(f.src_addr(), EthernetAddress([2, 0, 0, 0, 0, 2]));
        assert_eq!(f.ethertype(), EtherType::IPV4);
        assert_eq!(f.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
        let l3 = f.network_layer().unwrap();
        assert_eq!(
            l3,
            NetworkLayer {
                ethertype: EtherType::IPV4,
                offset: 14,
                outer_vlan: None,
                inner_vlan: None
            }
        );
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 18];
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        f.set_dst_addr(EthernetAddress([2, 0, 0, 0, 0, 1]));
        f.set_src_addr(EthernetAddress([2, 0, 0, 0, 0, 2]));
        f.set_ethertype(EtherType::IPV4);
        f.payload_mut().copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(buf, FRAME);
    }

    #[test]
    fn vlan_walk() {
        let f = EthernetFrame::new_checked(&DOUBLE_TAGGED[..]).unwrap();
        let l3 = f.network_layer().unwrap();
        assert_eq!(l3.ethertype, EtherType::IPV6);
        assert_eq!(l3.offset, 22);
        assert_eq!(l3.outer_vlan, Some(100));
        assert_eq!(l3.inner_vlan, Some(200));
        let tag = VlanTag::new_checked(&DOUBLE_TAGGED[18..]).unwrap();
        assert_eq!(
            (tag.priority(), tag.drop_eligible(), tag.vlan_id()),
            (7, true, 200)
        );
        let mut rebuilt = [0u8; 4];
        let mut t = VlanTag::new_unchecked(&mut rebuilt[..]);
        t.set_tci(7, true, 200);
        t.set_ethertype(EtherType::IPV6);
        assert_eq!(rebuilt, DOUBLE_TAGGED[18..22]);
    }

    #[test]
    fn vlan_walk_rejects_truncated_and_triple_tags() {
        let f = EthernetFrame::new_checked(&DOUBLE_TAGGED[..20]).unwrap();
        assert_eq!(f.network_layer(), Err(WireError::Truncated));
        let mut triple = DOUBLE_TAGGED.to_vec();
        triple[20..22].copy_from_slice(&[0x81, 0x00]);
        let f = EthernetFrame::new_checked(&triple[..]).unwrap();
        assert_eq!(f.network_layer(), Err(WireError::TooManyHeaders));
    }

    #[test]
    fn mac_text_round_trip() {
        let mac: EthernetAddress = "02:70:63:61:70:0a".parse().unwrap();
        assert_eq!(mac, EthernetAddress([0x02, 0x70, 0x63, 0x61, 0x70, 0x0a]));
        assert_eq!(mac.to_string(), "02:70:63:61:70:0a");
        assert_eq!("02-70-63-61-70-0A".parse::<EthernetAddress>(), Ok(mac));
        for bad in [
            "",
            "02:70:63:61:70",
            "02:70:63:61:70:0a:00",
            "02:70:63:61:70:g0",
            "02:70:63:61:70:100",
            "0:::::",
        ] {
            assert!(bad.parse::<EthernetAddress>().is_err(), "{bad}");
        }
        assert!(EthernetAddress::BROADCAST.is_broadcast());
        assert!(EthernetAddress([0x01, 0, 0x5e, 0, 0, 1]).is_multicast());
        assert!(mac.is_unicast());
    }

    fn touch_all<T: AsRef<[u8]>>(f: &EthernetFrame<T>) {
        let _ = (
            f.dst_addr(),
            f.src_addr(),
            f.ethertype(),
            f.payload().len(),
            f.network_layer(),
        );
    }

    #[test]
    fn truncations_are_errors_never_panics() {
        for len in 0..DOUBLE_TAGGED.len() {
            let r = EthernetFrame::new_checked(&DOUBLE_TAGGED[..len]);
            assert_eq!(r.is_err(), len < 14);
            if let Ok(f) = r {
                touch_all(&f);
            }
            // Unchecked views of short buffers must not panic either.
            touch_all(&EthernetFrame::new_unchecked(&DOUBLE_TAGGED[..len]));
        }
    }

    fn arb_mac() -> impl Strategy<Value = EthernetAddress> {
        any::<[u8; 6]>().prop_map(EthernetAddress)
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(f) = EthernetFrame::new_checked(&bytes[..]) {
                touch_all(&f);
            }
        }

        #[test]
        fn repr_round_trip(src in arb_mac(), dst in arb_mac(), et: u16) {
            let repr = EthernetRepr { src, dst, ethertype: EtherType(et) };
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
            prop_assert_eq!(EthernetRepr::parse(&EthernetFrame::new_checked(&buf[..]).unwrap()), Ok(repr));
            let eth = etherparse::Ethernet2HeaderSlice::from_slice(&buf).unwrap();
            prop_assert_eq!(eth.source(), src.0);
            prop_assert_eq!(eth.destination(), dst.0);
            prop_assert_eq!(eth.ether_type().0, et);
        }

        #[test]
        fn mac_display_parses_back(mac in arb_mac()) {
            prop_assert_eq!(mac.to_string().parse::<EthernetAddress>(), Ok(mac));
        }
    }
}
