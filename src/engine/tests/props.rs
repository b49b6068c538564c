//! Properties: every packet the engine emits for a valid TCP/UDP packet parses in
//! etherparse with valid checksums (outer and inner); arbitrary bytes never panic it.

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;
use crate::engine::fuzzing::check_verdict;
use crate::engine::DropReason;

/// (VIP, port, UDP, the port the traffic arrives on): one per service of the fixture.
const TARGETS: &[(&str, u16, bool, u16)] = &[
    ("10.1.0.1", 80, false, 0),
    ("10.1.0.1", 53, true, 0),
    ("fd01::1", 80, false, 1),
    ("10.1.0.2", 80, false, 0),
    ("10.1.0.2", 9999, true, 0),
    ("fd01::2", 80, false, 1),
    ("10.1.0.3", 80, false, 0),
    ("10.1.0.4", 443, false, 0),
    ("10.1.0.4", 53, true, 0),
    ("fd01::4", 443, false, 1),
    ("10.1.0.5", 80, false, 0),
    ("10.1.0.5", 53, true, 0),
    ("fd01::5", 80, false, 1),
];

#[derive(Debug, Clone)]
struct Case {
    target: usize,
    src4: u32,
    src6: u128,
    sport: u16,
    payload: usize,
    vlan: Option<u16>,
    tos: u8,
    df: bool,
    syn: bool,
    ttl: u8,
    worker: u16,
}

fn case() -> impl Strategy<Value = Case> {
    (
        0..TARGETS.len(),
        any::<u32>(),
        any::<u128>(),
        1u16..,
        prop_oneof![0usize..100, 0usize..1500],
        proptest::option::of(1u16..4095),
        any::<u8>(),
        any::<bool>(),
        any::<bool>(),
        2u8..,
        0u16..2,
    )
        .prop_map(
            |(target, src4, src6, sport, payload, vlan, tos, df, syn, ttl, worker)| Case {
                target,
                src4,
                src6,
                sport,
                payload,
                vlan,
                tos,
                df,
                syn,
                ttl,
                worker,
            },
        )
}

impl Case {
    fn spec(&self) -> (Spec, u16) {
        let (vip, dport, udp, in_port) = TARGETS[self.target];
        let dst = ip(vip);
        // clients live outside the fixture's own subnets
        let src = if dst.is_ipv4() {
            let a = Ipv4Addr::from(self.src4 & 0x00ff_ffff | 0xc000_0000);
            a.to_string()
        } else {
            let a = Ipv6Addr::from(self.src6 & (u128::MAX >> 16) | 0x2001u128 << 112);
            a.to_string()
        };
        let mut s = if udp {
            Spec::udp(&src, self.sport, vip, dport)
        } else {
            Spec::tcp(&src, self.sport, vip, dport)
        }
        .payload(self.payload);
        s.syn = self.syn && !udp;
        s.vlan = self.vlan;
        s.tos = self.tos;
        s.df = self.df;
        s.ttl = self.ttl;
        (s, in_port)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn emitted_packets_parse_with_valid_checksums(c in case()) {
        let (spec, in_port) = c.spec();
        let input = spec.build();
        let ip_len = input.len() - 14 - if spec.vlan.is_some() { 4 } else { 0 };
        let mut engines = [engine(0), engine(1)];
        let w = usize::from(c.worker);
        let mut b = HeapBuf::from_slice(&input);
        let v = engines[w].process(snap(), in_port, &mut b, 1000);
        check_verdict(snap(), in_port, &input, true, &b, v);
        if ip_len > 1500 {
            prop_assert_eq!(v, Verdict::Drop(DropReason::Oversize));
            return Ok(());
        }
        let emitted = matches!(v, Verdict::Forward { .. } | Verdict::Reply);
        prop_assert!(
            emitted || (v == Verdict::Drop(DropReason::TooBig) && !spec.df),
            "{:?}", v
        );
        if emitted {
            check_frame(b.data());
        }
        // full NAT: the backend's answer comes back through, translated
        let (vip, _, _, _) = TARGETS[c.target];
        if matches!(vip, "10.1.0.5" | "fd01::5") {
            let out = b.data();
            let (l3, l4) = (if spec.vlan.is_some() { 18 } else { 14 }, if spec.dst.is_ipv6() { 40 } else { 20 });
            let (backend, lb) = if spec.dst.is_ipv6() {
                (IpAddr::V6(v6(out, l3 + 24)), IpAddr::V6(v6(out, l3 + 8)))
            } else {
                (IpAddr::V4(v4(out, l3 + 16)), IpAddr::V4(v4(out, l3 + 12)))
            };
            let mut reply = spec.clone();
            reply.src = backend;
            reply.dst = lb;
            reply.sport = be16(out, l3 + l4 + 2);
            reply.dport = be16(out, l3 + l4);
            let reply = reply.build();
            // arriving at the other worker: handed to the owner
            let other = 1 - w;
            let mut b = HeapBuf::from_slice(&reply);
            let v = engines[other].process(snap(), in_port, &mut b, 1001);
            prop_assert_eq!(v, Verdict::HandOff { worker: c.worker });
            let v = engines[w].process(snap(), in_port, &mut b, 1001);
            prop_assert_eq!(v, Verdict::Forward { port: in_port });
            check_verdict(snap(), in_port, &reply, true, &b, v);
            check_frame(b.data());
            let to = if spec.dst.is_ipv6() {
                IpAddr::V6(v6(b.data(), l3 + 24))
            } else {
                IpAddr::V4(v4(b.data(), l3 + 16))
            };
            prop_assert_eq!(to, spec.src);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..1600),
        in_port in 0u16..3,
    ) {
        let mut e = engine(0);
        let mut b = HeapBuf::from_slice(&bytes);
        let v = e.process(snap(), in_port, &mut b, 1);
        if in_port < 2 {
            check_verdict(snap(), in_port, &bytes, false, &b, v);
        }
    }

    #[test]
    fn mangled_valid_packets_never_panic(
        c in case(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        fix in any::<bool>(),
    ) {
        let (spec, in_port) = c.spec();
        let mut f = spec.build();
        for (at, x) in flips {
            let i = at.index(f.len());
            f[i] ^= x;
        }
        f.truncate(cut.index(f.len() + 1));
        if fix {
            crate::engine::fuzzing::fix_checksums(&mut f);
        }
        let ok = crate::engine::fuzzing::frame_checksums_ok(&f);
        let mut e = engine(0);
        let mut b = HeapBuf::from_slice(&f);
        let v = e.process(snap(), in_port, &mut b, 1);
        check_verdict(snap(), in_port, &f, ok, &b, v);
    }
}
