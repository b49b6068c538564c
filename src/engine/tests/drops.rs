//! Every drop reason a packet can reach, each counted; TTL; fragments.

use std::collections::HashSet;

use super::*;
use crate::control::IdRegistry;
use crate::engine::fuzzing::{snapshot_from_yaml, FIXTURE_YAML};
use crate::engine::DropReason;

/// Reasons no packet alone can reach: the worker counts them ([`Engine::count_drop`]),
/// or the engine never returns them (a non-SYN packet without a flow is picked up
/// midstream, a flow to an unhealthy backend is moved rather than dropped).
const NOT_FROM_A_PACKET: &[DropReason] = &[
    DropReason::NoFlow,
    DropReason::BackendUnhealthy,
    DropReason::NoKernelInterface,
    DropReason::HandOffFull,
    DropReason::TxFull,
];

fn tcp4() -> Vec<u8> {
    Spec::tcp("192.0.2.7", 40000, "10.1.0.1", 80).build()
}

/// A TCP/UDP packet to `dst` cut to `l4_len` bytes of upper layer, IP header fixed.
fn truncated(spec: Spec, l4_len: usize) -> Vec<u8> {
    let mut f = spec.build();
    f.truncate(14 + 20 + l4_len);
    let total = (20 + l4_len) as u16;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    fix_ipv4_header(&mut f, 14);
    f
}

/// The frames of the drop table, each with the reason it must be dropped for and the
/// port it arrives on.
fn drop_cases() -> Vec<(DropReason, u16, Vec<u8>, &'static str)> {
    let mut cases = Vec::new();
    let mut add = |r, port, f: Vec<u8>, what| cases.push((r, port, f, what));

    add(DropReason::Runt, 0, vec![0u8; 10], "shorter than Ethernet");
    let mut f = tcp4();
    f[14] = 0x44;
    fix_ipv4_header(&mut f, 14);
    add(DropReason::BadIpv4, 0, f, "IHL 4");
    let mut f = tcp4();
    f[16..18].copy_from_slice(&2000u16.to_be_bytes());
    fix_ipv4_header(&mut f, 14);
    add(DropReason::BadIpv4, 0, f, "total length beyond the frame");
    let mut f = tcp4();
    f[24] ^= 0x55;
    add(DropReason::BadIpChecksum, 0, f, "bad header checksum");
    let mut f = tcp4();
    f[12..14].copy_from_slice(&[0x88, 0xcc]);
    add(DropReason::UnknownEthertype, 0, f, "LLDP");
    let mut f = tcp4();
    for id in [1, 2, 3] {
        add_vlan(&mut f, id);
    }
    add(DropReason::BadVlan, 0, f, "3 VLAN tags");
    let mut f = tcp4();
    f.truncate(15);
    // a frame that ends inside the header its EtherType announces is a runt
    add(DropReason::Runt, 0, f, "IPv4 header cut");
    let mut f = Spec::tcp("2001:db8::7", 1, "fd01::1", 80).build();
    f[18..20].copy_from_slice(&1000u16.to_be_bytes());
    add(
        DropReason::BadIpv6,
        1,
        f,
        "IPv6 payload length beyond the frame",
    );
    add(
        DropReason::BadTcp,
        0,
        truncated(Spec::tcp("192.0.2.7", 40000, "10.1.0.1", 80), 10),
        "TCP cut at 10 bytes",
    );
    add(
        DropReason::BadUdp,
        0,
        truncated(Spec::udp("192.0.2.7", 40000, "10.1.0.1", 53), 4),
        "UDP cut at 4 bytes",
    );
    let mut arp = tcp4();
    arp.truncate(14 + 28);
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    arp[14..22].copy_from_slice(&[0, 6, 0x08, 0, 6, 4, 0, 1]); // hardware type 6
    add(DropReason::BadArp, 0, arp, "ARP on IEEE 802");
    add(
        DropReason::NotForUs,
        0,
        Spec::tcp("192.0.2.7", 40000, "10.9.9.9", 80).build(),
        "to a stranger",
    );
    add(
        DropReason::NoService,
        0,
        Spec::tcp("192.0.2.7", 40000, "10.1.0.1", 81).build(),
        "a VIP, another port",
    );
    let mut f = Spec::tcp("192.0.2.7", 40000, "10.1.0.1", 80);
    f.ttl = 1;
    add(DropReason::TtlExceeded, 0, f.build(), "TTL 1");
    let mut f = Spec::tcp("2001:db8::7", 40000, "fd01::1", 80);
    f.ttl = 0;
    add(DropReason::TtlExceeded, 1, f.build(), "hop limit 0");
    add(
        DropReason::Oversize,
        0,
        Spec::udp("192.0.2.7", 40000, "10.1.0.1", 53)
            .payload(1500 - 28 + 1)
            .build(),
        "IP packet 1501 bytes on an MTU of 1500",
    );
    add(
        DropReason::NoNeighbor,
        0,
        Spec::tcp("192.0.2.7", 40000, "10.1.0.6", 80).build(),
        "backend MAC unresolved",
    );
    let mut icmp = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, [0; 6])
        .ipv4([192, 0, 2, 7], [10, 1, 0, 1], 60)
        .icmpv4_raw(13, 0, [0; 4])
        .write(&mut icmp, &[0; 12])
        .unwrap();
    add(DropReason::BadIcmp, 0, icmp, "ICMP timestamp to a VIP");
    let mut frag = Spec::tcp("192.0.2.7", 40000, "10.1.0.5", 80)
        .payload(100)
        .build();
    frag[20] |= 0x20; // more fragments
    fix_ipv4_header(&mut frag, 14);
    add(DropReason::FragmentNat, 0, frag, "a fragment for full NAT");
    let mut big = Spec::tcp("192.0.2.7", 40000, "10.1.0.2", 80)
        .ack()
        .payload(1441);
    big.df = false;
    add(DropReason::TooBig, 0, big.build(), "ipip, too big, no DF");
    cases
}

#[test]
fn every_drop_reason_is_reached_and_counted() {
    let mut reached: HashSet<DropReason> = HashSet::new();
    for (reason, port, frame, what) in drop_cases() {
        let mut e = engine(0);
        let (v, _) = process(&mut e, port, &frame);
        assert_eq!(v, Verdict::Drop(reason), "{what}");
        assert_eq!(e.counters().drops[reason as usize], 1, "{what}");
        assert_eq!(e.counters().drops.iter().sum::<u64>(), 1, "{what}");
        reached.insert(reason);
    }
    // the reasons that need a buffer or a snapshot of their own
    let mut e = engine(0);
    let mut tight = HeapBuf::with_room(&Spec::tcp("192.0.2.7", 1, "10.1.0.2", 80).build(), 10, 0);
    assert_eq!(
        e.process(snap(), 0, &mut tight, 1),
        Verdict::Drop(DropReason::NoHeadroom)
    );
    reached.insert(DropReason::NoHeadroom);
    reached.extend(no_backend());
    reached.extend(no_nat_entry());
    reached.extend(nat_ports_exhausted());

    for r in DropReason::ALL {
        assert!(
            reached.contains(r) || NOT_FROM_A_PACKET.contains(r),
            "no test reaches {r:?}"
        );
    }
}

fn no_backend() -> Option<DropReason> {
    let yaml = FIXTURE_YAML.replacen(
        "backends: [{ address: 10.0.0.43 }]",
        "backends: [{ address: 10.0.0.43, weight: 0 }]",
        1,
    );
    assert_ne!(yaml, FIXTURE_YAML);
    let s = snapshot_from_yaml(&yaml, &mut IdRegistry::default(), 2, 1).unwrap();
    let mut e = engine(0);
    let mut b = HeapBuf::from_slice(&Spec::udp("192.0.2.7", 1, "10.1.0.4", 53).build());
    assert_eq!(
        e.process(&s, 0, &mut b, 1),
        Verdict::Drop(DropReason::NoBackend)
    );
    assert_eq!(e.counters().drops[DropReason::NoBackend as usize], 1);
    Some(DropReason::NoBackend)
}

fn no_nat_entry() -> Option<DropReason> {
    // the translation outlives its service (renamed away in a reload)
    let mut reg = IdRegistry::default();
    let before = snapshot_from_yaml(FIXTURE_YAML, &mut reg, 2, 1).unwrap();
    let yaml = FIXTURE_YAML.replacen("- name: nat4\n", "- name: nat4-renamed\n", 1);
    let after = snapshot_from_yaml(&yaml, &mut reg, 2, 2).unwrap();
    let mut e = engine(0);
    let client = Spec::tcp("192.0.2.7", 40000, "10.1.0.5", 80);
    let mut b = HeapBuf::from_slice(&client.build());
    assert_eq!(
        e.process(&before, 0, &mut b, 1),
        Verdict::Forward { port: 0 }
    );
    let out = b.data();
    let mut reply = client.clone();
    reply.src = std::net::IpAddr::V4(v4(out, 30));
    reply.dst = ip("10.0.0.2");
    reply.sport = be16(out, 36);
    reply.dport = be16(out, 34);
    let mut b = HeapBuf::from_slice(&reply.build());
    assert_eq!(
        e.process(&after, 0, &mut b, 2),
        Verdict::Drop(DropReason::NoNatEntry)
    );
    Some(DropReason::NoNatEntry)
}

fn nat_ports_exhausted() -> Option<DropReason> {
    // one backend (10.0.0.54:53): every flow takes one of worker 0's ports
    let s = snap();
    let ports = s.nat_ports.range(0).len();
    let mut e = fuzzing::engine(0, 2 * ports);
    for i in 0..ports {
        let src = format!("192.0.{}.{}", 2 + i / 250, 1 + i % 250);
        let (v, _) = process(&mut e, 0, &Spec::udp(&src, 5000, "10.1.0.5", 53).build());
        assert_eq!(v, Verdict::Forward { port: 0 }, "flow {i}");
    }
    let (v, _) = process(
        &mut e,
        0,
        &Spec::udp("192.0.200.1", 5000, "10.1.0.5", 53).build(),
    );
    assert_eq!(v, Verdict::Drop(DropReason::NatPortsExhausted));
    Some(DropReason::NatPortsExhausted)
}

#[test]
fn ttl_zero_and_one_are_dropped_two_passes() {
    let mut e = engine(0);
    for (ttl, want) in [
        (0, Verdict::Drop(DropReason::TtlExceeded)),
        (1, Verdict::Drop(DropReason::TtlExceeded)),
        (2, Verdict::Forward { port: 0 }),
    ] {
        let mut s = Spec::tcp("192.0.2.7", 40000, "10.1.0.2", 80);
        s.ttl = ttl;
        assert_eq!(process(&mut e, 0, &s.build()).0, want, "TTL {ttl}");
    }
    assert_eq!(e.counters().drops[DropReason::TtlExceeded as usize], 2);
}

/// An IPv4 datagram in two fragments: the first with the UDP header, the second without.
fn fragments(src: &str, sport: u16, ident: u16) -> (Vec<u8>, Vec<u8>) {
    let whole = Spec::udp(src, sport, "10.1.0.2", 5353).payload(200).build();
    let body = &whole[34..];
    let (a, b) = body.split_at(64);
    let mk = |part: &[u8], offset_units: u16, more: bool| {
        let mut f = whole[..34].to_vec();
        f.extend_from_slice(part);
        let total = (20 + part.len()) as u16;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f[18..20].copy_from_slice(&ident.to_be_bytes());
        let flags = if more { 0x2000 } else { 0 } | offset_units;
        f[20..22].copy_from_slice(&flags.to_be_bytes());
        fix_ipv4_header(&mut f, 14);
        f
    };
    (mk(a, 0, true), mk(b, 8, false))
}

#[test]
fn fragments_of_a_datagram_reach_one_backend() {
    let mut e = engine(0);
    let mut backends = HashSet::new();
    for i in 0..40u16 {
        let src = format!("192.0.2.{}", 10 + i);
        let (first, second) = fragments(&src, 7000 + i, 100 + i);
        let (v1, o1) = process(&mut e, 0, &first);
        let (v2, o2) = process(&mut e, 0, &second);
        assert_eq!(v1, Verdict::Forward { port: 0 });
        assert_eq!(v2, Verdict::Forward { port: 0 });
        assert_eq!(v4(&o1, 30), v4(&o2, 30), "datagram {i}");
        assert_eq!(&o2[34..], &second[14..]);
        check_frame(&o1);
        check_frame(&o2);
        backends.insert(v4(&o1, 30));
    }
    assert_eq!(
        backends.len(),
        2,
        "fragments still spread over the backends"
    );
    assert_eq!(e.counters().fragments, 80);
}
