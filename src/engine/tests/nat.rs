//! Full NAT both ways, and the hand-off of a reply to the worker owning its port.

use super::*;
use crate::engine::fuzzing::PORT_MACS;

/// What the client's packet became: (backend address, backend port, LB port).
fn check_to_backend(out: &[u8], service: &str, input: &Spec, worker: u16) -> (IpAddr, u16, u16) {
    let b = backend_by_mac(service, &out[0..6]);
    let is6 = input.dst.is_ipv6();
    let port = usize::from(is6);
    assert_eq!(out[6..12], PORT_MACS[port]);
    let (src, dst, l4, ttl) = if is6 {
        (
            IpAddr::V6(v6(out, 22)),
            IpAddr::V6(v6(out, 38)),
            14 + 40,
            out[21],
        )
    } else {
        (
            IpAddr::V4(v4(out, 26)),
            IpAddr::V4(v4(out, 30)),
            14 + 20,
            out[22],
        )
    };
    assert_eq!(
        src,
        ip(if is6 { "fd00::2" } else { "10.0.0.2" }),
        "from the LB"
    );
    assert_eq!(dst, b.addr, "to the backend");
    assert_eq!(ttl, input.ttl - 1, "TTL decremented");
    let (sport, dport) = (be16(out, l4), be16(out, l4 + 2));
    assert_eq!(dport, b.port.unwrap_or(input.dport), "the backend's port");
    let range = snap().nat_ports.range(worker);
    assert!(
        range.contains(&u32::from(sport)),
        "LB port {sport} in worker {worker}'s range {range:?}"
    );
    assert_eq!(out[l4 + 4..].len(), input.build()[l4 + 4..].len());
    check_frame(out);
    (b.addr, dport, sport)
}

/// The backend's answer to the LB.
fn reply_spec(client: &Spec, backend: IpAddr, bport: u16, lb_port: u16) -> Spec {
    let lb = if client.dst.is_ipv6() {
        "fd00::2"
    } else {
        "10.0.0.2"
    };
    let mut r = client.clone();
    r.src = backend;
    r.dst = ip(lb);
    r.sport = bport;
    r.dport = lb_port;
    r.payload = b"answer from the backend".to_vec();
    r
}

fn check_to_client(out: &[u8], client: &Spec) {
    assert_eq!(out[0..6], CLIENT_MAC, "back to the client's MAC");
    let is6 = client.dst.is_ipv6();
    let (src, dst, l4) = if is6 {
        (IpAddr::V6(v6(out, 22)), IpAddr::V6(v6(out, 38)), 54)
    } else {
        (IpAddr::V4(v4(out, 26)), IpAddr::V4(v4(out, 30)), 34)
    };
    assert_eq!(src, client.dst, "from the VIP");
    assert_eq!(dst, client.src, "to the client");
    assert_eq!(be16(out, l4), client.dport);
    assert_eq!(be16(out, l4 + 2), client.sport);
    check_frame(out);
}

#[test]
fn nat_both_directions() {
    for (client, service, port) in [
        (
            Spec::tcp("192.0.2.7", 40000, "10.1.0.5", 80).payload(10),
            "nat4",
            0,
        ),
        (Spec::udp("192.0.2.7", 40000, "10.1.0.5", 53), "nat4-udp", 0),
        (
            Spec::tcp("2001:db8::7", 40000, "fd01::5", 80).payload(10),
            "nat6",
            1,
        ),
    ] {
        let mut e = engine(0);
        let (v, out) = process(&mut e, port, &client.build());
        assert_eq!(v, Verdict::Forward { port }, "{service}");
        let (b, bport, lb_port) = check_to_backend(&out, service, &client, 0);
        // later packets of the flow keep the translation
        let (_, again) = process(&mut e, port, &client.clone().ack().build());
        assert_eq!(
            check_to_backend(&again, service, &client, 0),
            (b, bport, lb_port)
        );
        let reply = reply_spec(&client, b, bport, lb_port).build();
        let (v, out) = process(&mut e, port, &reply);
        assert_eq!(v, Verdict::Forward { port }, "{service} reply");
        check_to_client(&out, &client);
        assert_eq!(e.counters().nat_replies, 1);
    }
}

#[test]
fn nat_spreads_over_backends_with_their_ports() {
    let mut e = engine(0);
    let mut seen = std::collections::HashSet::new();
    for sport in 0..100 {
        let client = Spec::tcp("192.0.2.7", 30000 + sport, "10.1.0.5", 80);
        let (_, out) = process(&mut e, 0, &client.build());
        let (b, bport, _) = check_to_backend(&out, "nat4", &client, 0);
        seen.insert((b, bport));
    }
    let want: std::collections::HashSet<_> = [
        (ip("10.0.0.51"), 8080),
        (ip("10.0.0.52"), 8080),
        (ip("10.0.0.53"), 80),
    ]
    .into_iter()
    .collect();
    assert_eq!(seen, want);
}

#[test]
fn nat_reply_to_another_workers_port_is_handed_off() {
    let snap = snap();
    assert_eq!(snap.nat_ports.workers, 2);
    let mut w0 = engine(0);
    let mut w1 = engine(1);
    let client = Spec::tcp("192.0.2.9", 41000, "10.1.0.5", 80);
    let (v, out) = process(&mut w1, 0, &client.build());
    assert_eq!(v, Verdict::Forward { port: 0 });
    let (b, bport, lb_port) = check_to_backend(&out, "nat4", &client, 1);
    assert_eq!(snap.nat_ports.owner(lb_port), Some(1));

    let reply = reply_spec(&client, b, bport, lb_port).build();
    let (v, handed) = process(&mut w0, 0, &reply);
    assert_eq!(v, Verdict::HandOff { worker: 1 });
    assert_eq!(handed, reply, "handed off unchanged");
    assert_eq!(w0.counters().handoffs, 1);

    let (v, out) = process(&mut w1, 0, &handed);
    assert_eq!(v, Verdict::Forward { port: 0 });
    check_to_client(&out, &client);

    // a reply for a port of worker 0 that worker 0 never gave out goes to the kernel
    let stray = reply_spec(&client, b, bport, snap.nat_ports.range(0).start as u16).build();
    assert_eq!(process(&mut w0, 0, &stray).0, Verdict::ToKernel);
}

#[test]
fn nat_udp_checksum_zero_stays_zero() {
    // over IPv4 a zero UDP checksum means none: NAT must not invent a wrong one
    let mut e = engine(0);
    let mut input = Spec::udp("192.0.2.7", 40000, "10.1.0.5", 53).build();
    input[14 + 20 + 6..14 + 20 + 8].fill(0);
    let (v, out) = process(&mut e, 0, &input);
    assert_eq!(v, Verdict::Forward { port: 0 });
    assert_eq!(be16(&out, 14 + 20 + 6), 0);
    check_frame(&out);
}

/// The fixture with more full-NAT source addresses: 10.0.0.3 and 10.0.0.4 on the IPv4
/// port, fd00::3 on the IPv6 one.
fn snat_pool_snapshot() -> &'static Snapshot {
    static SNAP: std::sync::OnceLock<Snapshot> = std::sync::OnceLock::new();
    SNAP.get_or_init(|| {
        let yaml = fuzzing::FIXTURE_YAML
            .replacen(
                "address: 10.0.0.2/24\n",
                "address: 10.0.0.2/24\n    snat_addresses: [10.0.0.3, 10.0.0.4]\n",
                1,
            )
            .replacen(
                "address: fd00::2/64\n",
                "address: fd00::2/64\n    snat_addresses: [\"fd00::3\"]\n",
                1,
            );
        assert_ne!(yaml, fuzzing::FIXTURE_YAML);
        fuzzing::snapshot_from_yaml(&yaml, &mut crate::control::IdRegistry::default(), 2, 1)
            .unwrap()
    })
}

fn process_in(snap: &Snapshot, e: &mut Engine, port: u16, frame: &[u8]) -> (Verdict, Vec<u8>) {
    let mut b = HeapBuf::from_slice(frame);
    let v = e.process(snap, port, &mut b, 1000);
    (v, b.data().to_vec())
}

/// New flows take the port's NAT sources in turn; each reply, to whichever source its
/// flow was given, goes back to its client, and a reply to another source of the pool
/// is not taken for it.
#[test]
fn nat_sources_are_used_in_turn_and_replies_find_their_flow() {
    let snap = snat_pool_snapshot();
    assert_eq!(snap.ports[0].nat_sources.len(), 3);
    for (vip, port, sources) in [
        ("10.1.0.5", 0u16, vec!["10.0.0.2", "10.0.0.3", "10.0.0.4"]),
        ("fd01::5", 1, vec!["fd00::2", "fd00::3"]),
    ] {
        let is6 = port == 1;
        let client_ip = if is6 { "2001:db8::7" } else { "192.0.2.7" };
        let mut e = engine(0);
        let mut used = std::collections::HashMap::new();
        for i in 0..30u16 {
            let client = Spec::tcp(client_ip, 20000 + i, vip, 80).payload(5);
            let (v, out) = process_in(snap, &mut e, port, &client.build());
            assert_eq!(v, Verdict::Forward { port });
            let (src, l4) = if is6 {
                (IpAddr::V6(v6(&out, 22)), 54)
            } else {
                (IpAddr::V4(v4(&out, 26)), 34)
            };
            let backend = if is6 {
                IpAddr::V6(v6(&out, 38))
            } else {
                IpAddr::V4(v4(&out, 30))
            };
            let (lb_port, bport) = (be16(&out, l4), be16(&out, l4 + 2));
            assert!(sources.contains(&src.to_string().as_str()), "{src}");
            *used.entry(src).or_insert(0) += 1;
            // the flow's next packet keeps its source
            let (_, again) = process_in(snap, &mut e, port, &client.clone().ack().build());
            assert_eq!(
                again[26 + 8 * usize::from(is6)..][..4],
                out[26 + 8 * usize::from(is6)..][..4]
            );

            let mut reply = reply_spec(&client, backend, bport, lb_port);
            reply.dst = src;
            let (v, back) = process_in(snap, &mut e, port, &reply.build());
            assert_eq!(v, Verdict::Forward { port }, "reply to {src}:{lb_port}");
            check_to_client(&back, &client);

            // the same ports towards another source of the pool: another flow's, or
            // nobody's (the kernel's), never this one's
            for other in sources.iter().map(|s| ip(s)).filter(|s| *s != src) {
                let mut stray = reply_spec(&client, backend, bport, lb_port);
                stray.dst = other;
                let (v, out) = process_in(snap, &mut e, port, &stray.build());
                let to_this_client =
                    v == (Verdict::Forward { port }) && be16(&out, l4 + 2) == client.sport;
                assert!(
                    !to_this_client && v != Verdict::Drop(crate::engine::DropReason::NoNatEntry),
                    "a reply to {other}, the flow left from {src}: {v:?}"
                );
            }
        }
        assert_eq!(used.len(), sources.len(), "every source used: {used:?}");
        assert!(used.values().all(|n| *n == 30 / sources.len()), "{used:?}");
    }
}

/// fulcrum answers ARP and neighbour solicitations for every NAT source of a port.
#[test]
fn nat_sources_answer_arp_and_nd() {
    let snap = snat_pool_snapshot();
    let mut e = engine(0);
    for (target, answered) in [
        ([10, 0, 0, 3], true),
        ([10, 0, 0, 4], true),
        ([10, 0, 0, 5], false),
    ] {
        let (v, _) = process_in(snap, &mut e, 0, &super::replies::arp_request(target));
        assert_eq!(v == Verdict::Reply, answered, "ARP for {target:?}");
    }
    let (v, _) = process_in(
        snap,
        &mut e,
        1,
        &super::replies::neighbor_solicitation("fd00::3", 255),
    );
    assert_eq!(v, Verdict::Reply);
    let (v, _) = process_in(
        snap,
        &mut e,
        1,
        &super::replies::neighbor_solicitation("fd00::4", 255),
    );
    assert_ne!(v, Verdict::Reply);
    // and without the pool, 10.0.0.3 is nobody's
    let (v, _) = process(
        &mut engine(0),
        0,
        &super::replies::arp_request([10, 0, 0, 3]),
    );
    assert_ne!(v, Verdict::Reply);
}

/// One backend, one worker: the port's address alone gives out every port of the range
/// and then refuses new flows; with two more sources three times as many flows pass.
#[test]
fn nat_sources_multiply_the_flows_a_backend_can_take() {
    const YAML: &str = r#"
dpdk:
  eal_args: ["--no-pci", "--vdev=net_null0"]
ports:
  - name: v4
    device: net_null0
    address: 10.0.0.2/24
    SNAT
    neighbors: [{ address: 10.0.0.11, mac: "02:00:00:00:04:11" }]
workers:
  cores: [0]
services:
  - name: nat
    vip: 10.1.0.5
    port: 80
    forwarding: nat
    maglev_table_size: 7
    backends: [{ address: 10.0.0.11 }]
"#;
    let count = |snat: &str, flows: u32| {
        let yaml = YAML.replace("SNAT", snat);
        let snap =
            fuzzing::snapshot_from_yaml(&yaml, &mut crate::control::IdRegistry::default(), 1, 1)
                .unwrap();
        let ports = snap.nat_ports.range(0).len() as u32;
        let mut e = fuzzing::engine(0, 1 << 17);
        let mut frame = Spec::tcp("192.0.2.7", 1, "10.1.0.5", 80).build();
        let mut forwarded = 0;
        for i in 0..flows {
            // a new client address and port per flow (checksums are not checked on the way in)
            frame[26..30].copy_from_slice(&(0xc000_0000u32 + i).to_be_bytes());
            fix_ipv4_header(&mut frame, 14);
            if process_in(&snap, &mut e, 0, &frame).0 == (Verdict::Forward { port: 0 }) {
                forwarded += 1;
            }
        }
        (
            ports,
            forwarded,
            e.counters().drops[crate::engine::DropReason::NatPortsExhausted as usize],
        )
    };
    let (ports, forwarded, exhausted) = count("mtu: 1500", 40_000);
    assert!(ports < 40_000);
    assert_eq!(forwarded, ports, "one source: every port once");
    assert_eq!(exhausted, u64::from(40_000 - ports));
    let (_, forwarded, exhausted) = count("snat_addresses: [10.0.0.3, 10.0.0.4]", 3 * ports);
    assert_eq!(
        (forwarded, exhausted),
        (3 * ports, 0),
        "three sources: three times the ports"
    );
}
