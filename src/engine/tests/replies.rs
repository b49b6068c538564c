//! What fulcrum answers itself: ARP, neighbour advertisements, echo, "too big"; and
//! ICMP errors about a flow, which go to the flow's backend.

use std::collections::HashSet;

use super::*;
use crate::engine::fuzzing::PORT_MACS;
use crate::engine::DropReason;

const CLIENT4: [u8; 4] = [10, 0, 0, 99];

pub(super) fn arp_request(target: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&CLIENT4);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target);
    f.resize(60, 0);
    f
}

#[test]
fn arp_for_vips_and_the_port_address_is_answered() {
    let mut e = engine(0);
    for target in [[10, 1, 0, 1], [10, 1, 0, 5], [10, 0, 0, 2]] {
        let (v, out) = process(&mut e, 0, &arp_request(target));
        assert_eq!(v, Verdict::Reply, "{target:?}");
        assert_eq!(out[0..6], CLIENT_MAC);
        assert_eq!(out[6..12], PORT_MACS[0]);
        let a = &out[14..];
        assert_eq!(be16(a, 6), 2, "a reply");
        assert_eq!(a[8..14], PORT_MACS[0], "sender: the port's MAC");
        assert_eq!(a[14..18], target, "sender: the address asked for");
        assert_eq!(a[18..24], CLIENT_MAC);
        assert_eq!(a[24..28], CLIENT4);
        let p = etherparse::SlicedPacket::from_ethernet(&out).unwrap();
        assert!(matches!(p.net, Some(etherparse::NetSlice::Arp(_))));
    }
    assert_eq!(e.counters().arp_replies, 3);
    for other in [[10, 0, 0, 11], [10, 1, 0, 99]] {
        let (v, _) = process(&mut e, 0, &arp_request(other));
        assert_eq!(v, Verdict::Drop(DropReason::NotForUs), "{other:?}");
    }
}

pub(super) fn neighbor_solicitation(target: &str, hop_limit: u8) -> Vec<u8> {
    let t: std::net::Ipv6Addr = target.parse().unwrap();
    let o = t.octets();
    let dst: std::net::Ipv6Addr = format!("ff02::1:ff{:02x}:{:02x}{:02x}", o[13], o[14], o[15])
        .parse()
        .unwrap();
    let mut payload = o.to_vec();
    payload.extend_from_slice(&[1, 1]);
    payload.extend_from_slice(&CLIENT_MAC);
    let mut out = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, [0x33, 0x33, 0xff, o[13], o[14], o[15]])
        .ipv6(
            ip("fd00::99")
                .to_string()
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
            dst.octets(),
            hop_limit,
        )
        .icmpv6_raw(135, 0, [0; 4])
        .write(&mut out, &payload)
        .unwrap();
    out
}

#[test]
fn neighbor_solicitations_get_advertisements() {
    let mut e = engine(0);
    for target in ["fd01::1", "fd01::5", "fd00::2"] {
        let (v, out) = process(&mut e, 1, &neighbor_solicitation(target, 255));
        assert_eq!(v, Verdict::Reply, "{target}");
        assert_eq!(out[0..6], CLIENT_MAC);
        assert_eq!(out[6..12], PORT_MACS[1]);
        let l = check_frame(&out);
        assert!(l.icmp);
        assert_eq!(v6(&out, 22), target.parse::<std::net::Ipv6Addr>().unwrap());
        assert_eq!(
            v6(&out, 38),
            "fd00::99".parse::<std::net::Ipv6Addr>().unwrap()
        );
        assert_eq!(out[21], 255, "hop limit");
        let icmp = &out[54..];
        assert_eq!(icmp[0], 136, "neighbour advertisement");
        assert_eq!(icmp[4], 0x60, "solicited, override");
        assert_eq!(v6(icmp, 8), target.parse::<std::net::Ipv6Addr>().unwrap());
        assert_eq!(icmp[24..26], [2, 1], "target link-layer address option");
        assert_eq!(icmp[26..32], PORT_MACS[1]);
    }
    assert_eq!(e.counters().nd_replies, 3);
    let (v, _) = process(&mut e, 1, &neighbor_solicitation("fd00::77", 255));
    assert_eq!(v, Verdict::Drop(DropReason::NotForUs));
    let (v, _) = process(&mut e, 1, &neighbor_solicitation("fd01::1", 64));
    assert_eq!(v, Verdict::Drop(DropReason::BadIcmp), "ND from off-link");
}

#[test]
fn echo_to_a_vip_is_answered() {
    let mut e = engine(0);
    let data = b"ping payload 0123456789";
    let mut req = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, PORT_MACS[0])
        .ipv4([192, 0, 2, 7], [10, 1, 0, 2], 60)
        .icmpv4_echo_request(0x1234, 7)
        .write(&mut req, data)
        .unwrap();
    let (v, out) = process(&mut e, 0, &req);
    assert_eq!(v, Verdict::Reply);
    assert_eq!(out[0..6], CLIENT_MAC);
    assert!(check_frame(&out).icmp);
    assert_eq!(v4(&out, 26), ip("10.1.0.2"));
    assert_eq!(v4(&out, 30), ip("192.0.2.7"));
    assert_eq!(out[34], 0, "echo reply");
    assert_eq!(be16(&out, 38), 0x1234);
    assert_eq!(&out[42..], data);

    let mut req = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, PORT_MACS[1])
        .ipv6(ip6("2001:db8::7"), ip6("fd01::4"), 60)
        .icmpv6_echo_request(0x4321, 9)
        .write(&mut req, data)
        .unwrap();
    let (v, out) = process(&mut e, 1, &req);
    assert_eq!(v, Verdict::Reply);
    assert!(check_frame(&out).icmp);
    assert_eq!(out[54], 129, "echo reply");
    assert_eq!(
        v6(&out, 22),
        "fd01::4".parse::<std::net::Ipv6Addr>().unwrap()
    );
    assert_eq!(&out[62..], data);
    assert_eq!(e.counters().echo_replies, 2);
}

/// The engine fuzzer's find: an echo request whose reply is all zero words (id 0,
/// sequence 0, a zero payload) got the checksum 0x0000 from RFC 1624's update, which no
/// receiver accepts; it must be 0xffff.
#[test]
fn an_all_zero_echo_reply_carries_a_checksum_that_verifies() {
    let mut e = engine(0);
    for payload in [&[][..], &[0u8; 4][..], &[0u8; 56][..]] {
        let mut req = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC, PORT_MACS[0])
            .ipv4([192, 0, 2, 7], [10, 1, 0, 2], 60)
            .icmpv4_echo_request(0, 0)
            .write(&mut req, payload)
            .unwrap();
        assert_eq!(be16(&req, 36), 0xf7ff, "the request's checksum");
        let (v, out) = process(&mut e, 0, &req);
        assert_eq!(v, Verdict::Reply);
        assert_eq!(out[34], 0, "echo reply");
        assert_eq!(be16(&out, 36), 0xffff);
        assert!(check_frame(&out).icmp, "the reply's checksum verifies");
    }
}

fn ip6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

#[test]
fn too_big_for_ipip_with_df_gets_frag_needed() {
    // (VIP, port, IP length that fits, overhead of the encapsulation)
    for (vip, dport, in_port, mtu_advertised, service) in [
        ("10.1.0.2", 80, 0u16, 1480u16, "ipip 4in4"),
        ("10.1.0.4", 443, 0, 1472, "gue"),
        ("10.1.0.3", 80, 0, 1460, "ipip 4in6"),
    ] {
        let mut e = engine(0);
        let fits = Spec::tcp("192.0.2.7", 40000, vip, dport)
            .ack()
            .payload(usize::from(mtu_advertised) - 40);
        let (v, _) = process(&mut e, in_port, &fits.build());
        assert!(matches!(v, Verdict::Forward { .. }), "{service}: {v:?}");
        let big = fits.clone().payload(usize::from(mtu_advertised) - 40 + 1);
        let input = big.build();
        let (v, out) = process(&mut e, in_port, &input);
        assert_eq!(v, Verdict::Reply, "{service}");
        assert_eq!(out[0..6], CLIENT_MAC, "{service}");
        assert_eq!(
            out[6..12],
            PORT_MACS[in_port as usize],
            "{service}: from the port it came in on"
        );
        assert!(check_frame(&out).icmp);
        assert_eq!(v4(&out, 26), ip(vip), "from the VIP");
        assert_eq!(v4(&out, 30), ip("192.0.2.7"));
        let icmp = &out[34..];
        assert_eq!((icmp[0], icmp[1]), (3, 4), "fragmentation needed");
        assert_eq!(be16(icmp, 6), mtu_advertised, "{service}");
        assert_eq!(
            &icmp[8..],
            &input[14..14 + 28],
            "quotes the header and 8 bytes"
        );
        assert_eq!(e.counters().too_big_sent, 1);

        let mut no_df = big.clone();
        no_df.df = false;
        let (v, _) = process(&mut e, in_port, &no_df.build());
        assert_eq!(v, Verdict::Drop(DropReason::TooBig), "{service}");
    }
}

#[test]
fn too_big_for_ipip_v6_gets_packet_too_big() {
    for (vip, dport, mtu_advertised) in [("fd01::2", 80, 1460u32), ("fd01::4", 443, 1452)] {
        let mut e = engine(0);
        let big = Spec::tcp("2001:db8::7", 40000, vip, dport)
            .ack()
            .payload(mtu_advertised as usize - 60 + 1);
        let input = big.build();
        let (v, out) = process(&mut e, 1, &input);
        assert_eq!(v, Verdict::Reply, "{vip}");
        assert_eq!(out[0..6], CLIENT_MAC);
        assert!(check_frame(&out).icmp);
        assert_eq!(v6(&out, 22), vip.parse::<std::net::Ipv6Addr>().unwrap());
        let icmp = &out[54..];
        assert_eq!(icmp[0], 2, "packet too big");
        assert_eq!(
            u32::from_be_bytes([icmp[4], icmp[5], icmp[6], icmp[7]]),
            mtu_advertised
        );
        assert!(
            out.len() - 14 <= 1280,
            "an ICMPv6 error fits the minimum MTU"
        );
        assert_eq!(&icmp[8..], &input[14..14 + icmp.len() - 8]);
    }
}

/// An ICMP "unreachable" from a router on the path to the client, quoting the
/// server's packet VIP:vport -> client:cport.
fn icmp_error_v4(vip: [u8; 4], vport: u16, client: [u8; 4], cport: u16) -> Vec<u8> {
    let mut quoted = Vec::new();
    PacketBuilder::ipv4(vip, client, 60)
        .tcp(vport, cport, 5, 1000)
        .ack(1)
        .write(&mut quoted, &[])
        .unwrap();
    quoted.truncate(28);
    let mut out = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, PORT_MACS[0])
        .ipv4([198, 51, 100, 1], vip, 60)
        .icmpv4_raw(3, 1, [0; 4])
        .write(&mut out, &quoted)
        .unwrap();
    out
}

#[test]
fn icmp_errors_go_to_the_flows_backend() {
    let mut e = engine(0);
    let mut backends = HashSet::new();
    for cport in 40000..40020u16 {
        let syn = Spec::tcp("192.0.2.7", cport, "10.1.0.2", 80).build();
        let (_, out) = process(&mut e, 0, &syn);
        let flow_backend = v4(&out, 30);
        let err = icmp_error_v4([10, 1, 0, 2], 80, [192, 0, 2, 7], cport);
        let (v, out) = process(&mut e, 0, &err);
        assert_eq!(v, Verdict::Forward { port: 0 });
        assert_eq!(v4(&out, 30), flow_backend, "flow {cport}");
        assert_eq!(&out[34..], &err[14..], "the ICMP packet, encapsulated");
        check_frame(&out);
        backends.insert(flow_backend);
    }
    assert_eq!(backends.len(), 2, "both backends had flows");
    assert_eq!(e.counters().icmp_errors_forwarded, 20);
}

#[test]
fn icmpv6_errors_go_to_the_flows_backend() {
    let mut e = engine(0);
    let mut backends = HashSet::new();
    for cport in 40000..40020u16 {
        let syn = Spec::tcp("2001:db8::7", cport, "fd01::1", 80).build();
        let (_, out) = process(&mut e, 1, &syn);
        let mac = out[0..6].to_vec();
        let mut quoted = Vec::new();
        PacketBuilder::ipv6(ip6("fd01::1"), ip6("2001:db8::7"), 60)
            .tcp(80, cport, 5, 1000)
            .ack(1)
            .write(&mut quoted, &[0; 100])
            .unwrap();
        let mut err = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC, PORT_MACS[1])
            .ipv6(ip6("2001:db8::1"), ip6("fd01::1"), 60)
            .icmpv6_raw(2, 0, 1400u32.to_be_bytes())
            .write(&mut err, &quoted)
            .unwrap();
        let (v, out) = process(&mut e, 1, &err);
        assert_eq!(v, Verdict::Forward { port: 1 }, "dsr");
        assert_eq!(out[0..6], mac[..], "flow {cport}");
        assert_eq!(out[12..], err[12..]);
        backends.insert(mac);
    }
    assert_eq!(backends.len(), 2);
}
