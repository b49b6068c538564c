//! Addresses written in the file: MAC `02:00:00:00:00:11`, CIDR `10.0.0.5/24` or
//! `fd00::5/64`, IP addresses, and PCI addresses `0000:3b:00.0`.

use std::net::IpAddr;

/// Why an address string was refused.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Not six `:`-separated pairs of hex digits.
    #[error("expected a MAC address such as 02:00:00:00:00:11, found `{0}`")]
    MacSyntax(String),
    /// A group or broadcast MAC where a unicast station address is needed.
    #[error("MAC address {0} is a multicast or broadcast address")]
    MacMulticast(String),
    /// All zeroes.
    #[error("MAC address {0} is all zeroes")]
    MacZero(String),
    /// Not an IPv4 or IPv6 address.
    #[error("expected an IPv4 or IPv6 address, found `{0}`")]
    IpSyntax(String),
    /// Not `<address>/<prefix length>`.
    #[error(
        "expected an address with a prefix length such as 10.0.0.5/24 or fd00::5/64, found `{0}`"
    )]
    CidrSyntax(String),
    /// The prefix length is longer than the address.
    #[error("prefix length /{prefix_len} is longer than {max} bits for `{text}`")]
    PrefixTooLong {
        /// The text as written.
        text: String,
        /// The prefix length found.
        prefix_len: u32,
        /// 32 or 128.
        max: u8,
    },
}

/// Parses a MAC address written as six `:`-separated pairs of hex digits.
///
/// Only unicast, non-zero station addresses are accepted: the address is used as a
/// neighbour's Ethernet destination.
pub fn parse_mac(text: &str) -> Result<[u8; 6], AddressError> {
    let syntax = || AddressError::MacSyntax(text.to_owned());
    let mut mac = [0u8; 6];
    let mut groups = text.split(':');
    for byte in mac.iter_mut() {
        let group = groups.next().ok_or_else(syntax)?;
        if group.len() != 2 || !group.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(syntax());
        }
        *byte = u8::from_str_radix(group, 16).map_err(|_| syntax())?;
    }
    if groups.next().is_some() {
        return Err(syntax());
    }
    if mac == [0; 6] {
        return Err(AddressError::MacZero(text.to_owned()));
    }
    if mac[0] & 0x01 != 0 {
        return Err(AddressError::MacMulticast(text.to_owned()));
    }
    Ok(mac)
}

/// Parses an IPv4 or IPv6 address.
pub fn parse_ip(text: &str) -> Result<IpAddr, AddressError> {
    text.parse()
        .map_err(|_| AddressError::IpSyntax(text.to_owned()))
}

/// An interface address with its prefix length, as in `10.0.0.5/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// The address itself (not the network address).
    pub address: IpAddr,
    /// The prefix length: at most 32 for IPv4, 128 for IPv6.
    pub prefix_len: u8,
}

impl Cidr {
    /// Whether `other` is inside this prefix (same family, same leading bits).
    pub fn contains(&self, other: IpAddr) -> bool {
        match (self.address, other) {
            (IpAddr::V4(own), IpAddr::V4(other)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u32::from(own) & mask == u32::from(other) & mask
            }
            (IpAddr::V6(own), IpAddr::V6(other)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u128::from(own) & mask == u128::from(other) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

/// Parses `10.0.0.5/24` or `fd00::5/64`.
pub fn parse_cidr(text: &str) -> Result<Cidr, AddressError> {
    let syntax = || AddressError::CidrSyntax(text.to_owned());
    let (address, prefix) = text.split_once('/').ok_or_else(syntax)?;
    let address: IpAddr = address.parse().map_err(|_| syntax())?;
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) || prefix.len() > 3 {
        return Err(syntax());
    }
    let prefix_len: u32 = prefix.parse().map_err(|_| syntax())?;
    let max: u8 = if address.is_ipv4() { 32 } else { 128 };
    match u8::try_from(prefix_len) {
        Ok(prefix_len) if prefix_len <= max => Ok(Cidr {
            address,
            prefix_len,
        }),
        _ => Err(AddressError::PrefixTooLong {
            text: text.to_owned(),
            prefix_len,
            max,
        }),
    }
}

/// Whether `text` is a PCI address as DPDK writes it: `DDDD:BB:DD.F` or `BB:DD.F`
/// (hex digits; the function 0-7).
pub fn is_pci_address(text: &str) -> bool {
    fn hex(part: &str, len: usize) -> bool {
        part.len() == len && part.bytes().all(|b| b.is_ascii_hexdigit())
    }
    let Some((rest, function)) = text.rsplit_once('.') else {
        return false;
    };
    if function.len() != 1 || !matches!(function.as_bytes()[0], b'0'..=b'7') {
        return false;
    }
    let parts: Vec<&str> = rest.split(':').collect();
    match parts.as_slice() {
        [domain, bus, device] => hex(domain, 4) && hex(bus, 2) && hex(device, 2),
        [bus, device] => hex(bus, 2) && hex(device, 2),
        _ => false,
    }
}

/// The `ip`-style family name used in messages.
pub fn family_name(address: IpAddr) -> &'static str {
    if address.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn mac_parses() {
        assert_eq!(parse_mac("02:00:00:00:00:11"), Ok([0x02, 0, 0, 0, 0, 0x11]));
        assert_eq!(
            parse_mac("aa:BB:cc:dd:ee:Ff"),
            Ok([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff])
        );
    }

    #[test]
    fn mac_refuses_malformed() {
        for text in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:11:22",
            "02-00-00-00-00-11",
            "2:0:0:0:0:11",
            "02:00:00:00:00:1g",
            "020000000011",
            "02:00:00:00:00:11:",
            "+2:00:00:00:00:11",
        ] {
            assert_eq!(
                parse_mac(text),
                Err(AddressError::MacSyntax(text.to_owned())),
                "{text:?}"
            );
        }
    }

    #[test]
    fn mac_refuses_group_and_zero() {
        assert_eq!(
            parse_mac("ff:ff:ff:ff:ff:ff"),
            Err(AddressError::MacMulticast("ff:ff:ff:ff:ff:ff".into()))
        );
        assert_eq!(
            parse_mac("01:00:5e:00:00:01"),
            Err(AddressError::MacMulticast("01:00:5e:00:00:01".into()))
        );
        assert_eq!(
            parse_mac("00:00:00:00:00:00"),
            Err(AddressError::MacZero("00:00:00:00:00:00".into()))
        );
    }

    #[test]
    fn cidr_parses_both_families() {
        assert_eq!(
            parse_cidr("10.0.0.5/24"),
            Ok(Cidr {
                address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)),
                prefix_len: 24
            })
        );
        assert_eq!(
            parse_cidr("fd00::5/64"),
            Ok(Cidr {
                address: IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 5)),
                prefix_len: 64
            })
        );
        assert_eq!(parse_cidr("10.0.0.5/0").map(|c| c.prefix_len), Ok(0));
        assert_eq!(parse_cidr("10.0.0.5/32").map(|c| c.prefix_len), Ok(32));
        assert_eq!(parse_cidr("::1/128").map(|c| c.prefix_len), Ok(128));
    }

    #[test]
    fn cidr_refuses_malformed() {
        for text in [
            "10.0.0.5",
            "10.0.0.5/",
            "/24",
            "10.0.0/24",
            "10.0.0.5/+4",
            "10.0.0.5/24/1",
            "10.0.0.5 /24",
            "10.0.0.5/0024",
            "fd00::5/-1",
        ] {
            assert_eq!(
                parse_cidr(text),
                Err(AddressError::CidrSyntax(text.to_owned())),
                "{text:?}"
            );
        }
    }

    #[test]
    fn cidr_refuses_long_prefix() {
        assert_eq!(
            parse_cidr("10.0.0.5/33"),
            Err(AddressError::PrefixTooLong {
                text: "10.0.0.5/33".into(),
                prefix_len: 33,
                max: 32
            })
        );
        assert!(matches!(
            parse_cidr("fd00::5/129"),
            Err(AddressError::PrefixTooLong { max: 128, .. })
        ));
        assert!(matches!(
            parse_cidr("fd00::5/999"),
            Err(AddressError::PrefixTooLong {
                prefix_len: 999,
                ..
            })
        ));
    }

    #[test]
    fn cidr_contains() {
        let net = parse_cidr("10.0.0.5/24").unwrap_or_else(|e| panic!("{e}"));
        assert!(net.contains("10.0.0.1".parse().unwrap_or_else(|e| panic!("{e}"))));
        assert!(!net.contains("10.0.1.1".parse().unwrap_or_else(|e| panic!("{e}"))));
        assert!(!net.contains("fd00::1".parse().unwrap_or_else(|e| panic!("{e}"))));
        let all = parse_cidr("10.0.0.5/0").unwrap_or_else(|e| panic!("{e}"));
        assert!(all.contains("192.168.1.1".parse().unwrap_or_else(|e| panic!("{e}"))));
        let v6 = parse_cidr("fd00::5/64").unwrap_or_else(|e| panic!("{e}"));
        assert!(v6.contains("fd00::ffff".parse().unwrap_or_else(|e| panic!("{e}"))));
        assert!(!v6.contains("fd01::5".parse().unwrap_or_else(|e| panic!("{e}"))));
        let host = parse_cidr("fd00::5/128").unwrap_or_else(|e| panic!("{e}"));
        assert!(!host.contains("fd00::6".parse().unwrap_or_else(|e| panic!("{e}"))));
    }

    #[test]
    fn ip_parses() {
        assert_eq!(
            parse_ip("10.0.0.1"),
            Ok(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))
        );
        assert_eq!(parse_ip("fd99::100").map(|a| a.is_ipv6()), Ok(true));
        assert_eq!(
            parse_ip("10.0.0.256"),
            Err(AddressError::IpSyntax("10.0.0.256".into()))
        );
        assert_eq!(
            parse_ip("10.0.0.1/24"),
            Err(AddressError::IpSyntax("10.0.0.1/24".into()))
        );
    }

    #[test]
    fn pci_addresses() {
        assert!(is_pci_address("0000:3b:00.0"));
        assert!(is_pci_address("3b:00.1"));
        assert!(is_pci_address("0000:AF:1f.7"));
        assert!(!is_pci_address("0000:3b:00.8"));
        assert!(!is_pci_address("net_af_packet0"));
        assert!(!is_pci_address("0000:3b:00"));
        assert!(!is_pci_address("000:3b:00.0"));
        assert!(!is_pci_address("0000:3b:00.00"));
        assert!(!is_pci_address(""));
    }
}
