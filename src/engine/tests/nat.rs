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
