//! dsr, ipip (4in4, 6in6, 4in6) and gue: exact output headers.

use std::collections::HashSet;

use super::*;
use crate::engine::fuzzing::PORT_MACS;

#[test]
fn dsr_rewrites_the_macs_only() {
    let mut e = engine(0);
    for (spec, port, service) in [
        (Spec::tcp("192.0.2.7", 40000, "10.1.0.1", 80), 0, "dsr4"),
        (Spec::udp("192.0.2.7", 40000, "10.1.0.1", 53), 0, "dsr4-udp"),
        (Spec::tcp("2001:db8::7", 40000, "fd01::1", 80), 1, "dsr6"),
    ] {
        let mut spec = spec.payload(100);
        spec.vlan = Some(42);
        let input = spec.build();
        let (v, out) = process(&mut e, 0, &input);
        assert_eq!(v, Verdict::Forward { port }, "{service}");
        let b = backend_by_mac(service, &out[0..6]);
        assert_eq!(out[6..12], PORT_MACS[port as usize]);
        assert_eq!(out[12..], input[12..], "only the MACs change");
        // the same flow stays on that backend
        let (_, again) = process(&mut e, 0, &spec.clone().ack().build());
        assert_eq!(again[0..6], b.next_hop_mac.unwrap());
        check_frame(&out);
    }
}

#[test]
fn dsr_spreads_flows_over_every_backend() {
    let mut e = engine(0);
    let mut seen = HashSet::new();
    for sport in 0..300u16 {
        let (_, out) = process(
            &mut e,
            0,
            &Spec::tcp("192.0.2.7", 10000 + sport, "10.1.0.1", 80).build(),
        );
        seen.insert(backend_by_mac("dsr4", &out[0..6]).addr);
    }
    assert_eq!(seen.len(), 3);
}

/// The outer header of an encapsulated frame.
fn check_outer_v4(out: &[u8], input_ip: &[u8], tos: u8, df: bool, proto: u8, extra: usize) {
    assert_eq!(be16(out, 12), 0x0800);
    let o = &out[14..];
    assert_eq!(o[0], 0x45);
    assert_eq!(o[1], tos, "DSCP/ECN copied");
    assert_eq!(be16(o, 2) as usize, 20 + extra + input_ip.len());
    assert_eq!(o[6] & 0x40 != 0, df, "DF copied");
    assert_eq!(be16(o, 6) & 0x3fff, 0, "not a fragment");
    assert_eq!(o[8], 64, "TTL");
    assert_eq!(o[9], proto);
    assert_eq!(v4(o, 12), ip("10.0.0.2"), "outer source: the port address");
    assert_eq!(&o[20 + extra..], input_ip, "the inner packet is untouched");
}

fn check_outer_v6(out: &[u8], input_ip: &[u8], tc: u8, next: u8, extra: usize) {
    assert_eq!(be16(out, 12), 0x86dd);
    let o = &out[14..];
    let w = u32::from_be_bytes([o[0], o[1], o[2], o[3]]);
    assert_eq!(w >> 28, 6);
    assert_eq!((w >> 20) as u8, tc, "traffic class copied");
    assert_eq!(be16(o, 4) as usize, extra + input_ip.len());
    assert_eq!(o[6], next);
    assert_eq!(o[7], 64, "hop limit");
    assert_eq!(v6(o, 8), ip("fd00::2"), "outer source: the port address");
    assert_eq!(&o[40 + extra..], input_ip, "the inner packet is untouched");
}

#[test]
fn ipip_4in4() {
    let mut e = engine(0);
    for df in [true, false] {
        let mut spec = Spec::tcp("192.0.2.7", 40001, "10.1.0.2", 80).payload(200);
        spec.tos = 0xb9; // DSCP 46, ECN 1
        spec.df = df;
        spec.ttl = 50;
        let input = spec.build();
        let (v, out) = process(&mut e, 0, &input);
        assert_eq!(v, Verdict::Forward { port: 0 });
        let b = backend_by_mac("ipip4", &out[0..6]);
        assert_eq!(out[6..12], PORT_MACS[0]);
        check_outer_v4(&out, &input[14..], 0xb9, df, 4, 0);
        assert_eq!(std::net::IpAddr::V4(v4(&out, 14 + 16)), b.addr);
        let l = check_frame(&out);
        assert_eq!(l.protos, vec![4, 6]);
    }
}

#[test]
fn ipip_4in4_keeps_vlan_tags() {
    let mut e = engine(0);
    let mut spec = Spec::tcp("192.0.2.7", 40001, "10.1.0.2", 80).payload(20);
    spec.vlan = Some(7);
    let input = spec.build();
    let (v, out) = process(&mut e, 0, &input);
    assert_eq!(v, Verdict::Forward { port: 0 });
    assert_eq!(out[12..16], input[12..16], "the tag is kept");
    assert_eq!(be16(&out, 16), 0x0800);
    assert_eq!(&out[18 + 20..], &input[18..]);
    assert_eq!(check_frame(&out).protos, vec![4, 6]);
}

#[test]
fn ipip_6in6() {
    let mut e = engine(0);
    let mut spec = Spec::tcp("2001:db8::7", 40002, "fd01::2", 80).payload(300);
    spec.tos = 0x2a;
    let input = spec.build();
    let (v, out) = process(&mut e, 1, &input);
    assert_eq!(v, Verdict::Forward { port: 1 });
    let b = backend_by_mac("ipip6", &out[0..6]);
    assert_eq!(out[6..12], PORT_MACS[1]);
    check_outer_v6(&out, &input[14..], 0x2a, 41, 0);
    assert_eq!(std::net::IpAddr::V6(v6(&out, 14 + 24)), b.addr);
    assert_eq!(check_frame(&out).protos, vec![41, 6]);
}

#[test]
fn ipip_4in6() {
    let mut e = engine(0);
    let mut spec = Spec::udp("192.0.2.7", 40003, "10.1.0.3", 80);
    spec.udp = false;
    spec.syn = true;
    spec.tos = 0x48;
    let input = spec.build();
    let (v, out) = process(&mut e, 0, &input);
    assert_eq!(v, Verdict::Forward { port: 1 }, "to the IPv6 port");
    let b = backend_by_mac("ipip46", &out[0..6]);
    assert_eq!(out[6..12], PORT_MACS[1]);
    check_outer_v6(&out, &input[14..], 0x48, 4, 0);
    assert_eq!(std::net::IpAddr::V6(v6(&out, 14 + 24)), b.addr);
    assert_eq!(check_frame(&out).protos, vec![4, 6]);
}

fn gue_sport(out: &[u8]) -> u16 {
    be16(out, 14 + 20)
}

#[test]
fn gue_outer_udp() {
    let mut e = engine(0);
    let mut spec = Spec::tcp("192.0.2.7", 40004, "10.1.0.4", 443).payload(64);
    spec.tos = 0x10;
    let input = spec.build();
    let (v, out) = process(&mut e, 0, &input);
    assert_eq!(v, Verdict::Forward { port: 0 });
    backend_by_mac("gue4", &out[0..6]);
    check_outer_v4(&out, &input[14..], 0x10, true, 17, 8);
    let udp = &out[14 + 20..];
    assert!(
        gue_sport(&out) >= 0x8000,
        "source port from the hash, 0x8000..=0xffff"
    );
    assert_eq!(be16(udp, 2), 6080);
    assert_eq!(be16(udp, 4) as usize, 8 + input.len() - 14);
    assert_eq!(check_frame(&out).protos, vec![17, 6]);
    // the same flow, the same port
    let (_, again) = process(&mut e, 0, &spec.clone().ack().build());
    assert_eq!(gue_sport(&again), gue_sport(&out));
}

#[test]
fn gue_spreads_source_ports() {
    let mut e = engine(0);
    let mut ports = HashSet::new();
    for i in 0..500u16 {
        let input = Spec::udp("192.0.2.7", 1024 + i, "10.1.0.4", 53).build();
        let (v, out) = process(&mut e, 0, &input);
        assert_eq!(v, Verdict::Forward { port: 0 });
        let p = gue_sport(&out);
        assert!(p >= 0x8000);
        ports.insert(p);
    }
    // 500 flows over 32768 ports: a handful of collisions at most
    assert!(ports.len() >= 490, "{} distinct ports", ports.len());
}

#[test]
fn gue_over_ipv6_has_a_udp_checksum() {
    let mut e = engine(0);
    let input = Spec::tcp("2001:db8::7", 40005, "fd01::4", 443)
        .payload(33)
        .build();
    let (v, out) = process(&mut e, 1, &input);
    assert_eq!(v, Verdict::Forward { port: 1 });
    check_outer_v6(&out, &input[14..], 0, 17, 8);
    assert_ne!(be16(&out, 14 + 40 + 6), 0, "IPv6 UDP needs a checksum");
    assert_eq!(check_frame(&out).protos, vec![17, 6]);
}

#[test]
fn established_flow_keeps_its_backend_across_a_snapshot_change() {
    use crate::control::IdRegistry;
    use crate::engine::fuzzing::snapshot_from_yaml;
    let three = "      - { address: 10.0.0.13, mac: \"02:00:00:00:04:13\" }\n";
    let mut more_neigh = String::from(three);
    let mut more_backends = String::new();
    for i in 100..120 {
        more_neigh.push_str(&format!(
            "      - {{ address: 10.0.0.{i}, mac: \"02:00:00:00:05:{i:02x}\" }}\n"
        ));
        more_backends.push_str(&format!(", {{ address: 10.0.0.{i} }}"));
    }
    let before_yaml = crate::engine::fuzzing::FIXTURE_YAML;
    let old = "backends: [{ address: 10.0.0.11 }, { address: 10.0.0.12 }, { address: 10.0.0.13 }]";
    assert_eq!(before_yaml.matches(old).count(), 1);
    let after_yaml = before_yaml.replacen(three, &more_neigh, 1).replacen(
        old,
        &format!("backends: [{{ address: 10.0.0.11 }}, {{ address: 10.0.0.12 }}, {{ address: 10.0.0.13 }}{more_backends}]"),
        1,
    );
    let mut reg = IdRegistry::default();
    let before = snapshot_from_yaml(before_yaml, &mut reg, 1, 1).unwrap();
    let after = snapshot_from_yaml(&after_yaml, &mut reg, 1, 2).unwrap();
    let mut e = engine(0);
    let mut fresh = engine(0);
    let mut moved_for_new = 0;
    for sport in 0..200u16 {
        let spec = Spec::tcp("192.0.2.7", 20000 + sport, "10.1.0.1", 80);
        let mut b = HeapBuf::from_slice(&spec.build());
        e.process(&before, 0, &mut b, 1000);
        let first = b.data()[0..6].to_vec();
        let mut b = HeapBuf::from_slice(&spec.clone().ack().build());
        assert_eq!(
            e.process(&after, 0, &mut b, 2000),
            Verdict::Forward { port: 0 }
        );
        assert_eq!(b.data()[0..6], first[..], "flow {sport} moved");
        // a new engine (no flow) on the new snapshot
        let mut b = HeapBuf::from_slice(&spec.clone().ack().build());
        fresh.process(&after, 0, &mut b, 2000);
        moved_for_new += usize::from(b.data()[0..6] != first[..]);
    }
    // the test means something: without the flow table most of these flows would move
    assert!(
        moved_for_new > 100,
        "only {moved_for_new} of 200 would move"
    );
}
