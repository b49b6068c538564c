//! Connection outcomes of full-NAT flows (passive health) and per-backend active flows,
//! driven by packets: the backend's SYN-ACK, RST or ICMP unreachable, or silence.

use super::*;
use crate::engine::BackendCounters;

/// The fixture's `nat4` connect_timeout: the default (outlier detection on for nat).
const CONNECT_TIMEOUT_MS: u32 = 3000;
const NOW: u32 = 1000;

fn backend_counters(e: &Engine) -> std::collections::HashMap<u32, BackendCounters> {
    let mut m = std::collections::HashMap::new();
    e.visit_backends(&mut |id, c| {
        m.insert(id, *c);
    });
    m
}

/// Opens a flow with a SYN: (backend id, backend address, backend port, LB port).
fn open(e: &mut Engine, client: &Spec) -> (u32, IpAddr, u16, u16) {
    let (v, out) = process(e, 0, &client.build());
    assert_eq!(v, Verdict::Forward { port: 0 });
    let b = backend_by_mac("nat4", &out[0..6]);
    let dst = IpAddr::V4(v4(&out, 30));
    let b = if b.addr == dst { b } else { backend_at(dst) };
    (b.id, b.addr, be16(&out, 36), be16(&out, 34))
}

/// The backend's TCP answer to the LB with `flags` (etherparse builds SYN-ACK or RST).
fn answer(backend: IpAddr, bport: u16, lb_port: u16, rst: bool) -> Vec<u8> {
    let IpAddr::V4(b) = backend else { panic!("v4") };
    let t = PacketBuilder::ethernet2([0x02, 0xbb, 0, 0, 0, 1], PORT_MACS[0])
        .ipv4(b.octets(), [10, 0, 0, 2], 64)
        .tcp(bport, lb_port, 7000, 65535);
    let t = if rst {
        t.rst().ack(1001)
    } else {
        t.syn().ack(1001)
    };
    let mut out = Vec::new();
    t.write(&mut out, &[]).unwrap();
    out
}

/// An ICMP port unreachable from the backend quoting the LB's packet to it.
fn unreachable(backend: IpAddr, bport: u16, lb_port: u16, proto_udp: bool) -> Vec<u8> {
    let IpAddr::V4(b) = backend else { panic!("v4") };
    let mut quoted = Vec::new();
    let q = PacketBuilder::ipv4([10, 0, 0, 2], b.octets(), 63);
    if proto_udp {
        q.udp(lb_port, bport).write(&mut quoted, b"query").unwrap();
    } else {
        q.tcp(lb_port, bport, 1000, 65535)
            .syn()
            .write(&mut quoted, &[])
            .unwrap();
    }
    quoted.truncate(28);
    let mut out = Vec::new();
    PacketBuilder::ethernet2([0x02, 0xbb, 0, 0, 0, 1], PORT_MACS[0])
        .ipv4(b.octets(), [10, 0, 0, 2], 64)
        .icmpv4_raw(3, 3, [0; 4])
        .write(&mut out, &quoted)
        .unwrap();
    out
}

#[test]
fn syn_ack_is_a_success_and_counted_once() {
    let mut e = engine(0);
    let client = Spec::tcp("192.0.2.7", 40000, "10.1.0.5", 80);
    let (id, b, bport, lb_port) = open(&mut e, &client);
    let (v, _) = process(&mut e, 0, &answer(b, bport, lb_port, false));
    assert_eq!(v, Verdict::Forward { port: 0 });
    // a retransmitted SYN-ACK is not a second outcome
    process(&mut e, 0, &answer(b, bport, lb_port, false));
    let c = backend_counters(&e)[&id];
    assert_eq!((c.connects_ok, c.connects_failed), (1, 0));
    assert_eq!(e.counters().connects_ok, 1);
    // answered: the connect timeout passing later is no failure
    e.housekeeping(snap(), NOW + CONNECT_TIMEOUT_MS + 1, 64);
    assert_eq!(e.counters().connects_timed_out, 0);
}

#[test]
fn rst_to_a_syn_is_a_refusal() {
    let mut e = engine(0);
    let client = Spec::tcp("192.0.2.7", 40001, "10.1.0.5", 80);
    let (id, b, bport, lb_port) = open(&mut e, &client);
    let (v, _) = process(&mut e, 0, &answer(b, bport, lb_port, true));
    assert_eq!(
        v,
        Verdict::Forward { port: 0 },
        "the RST still reaches the client"
    );
    let c = backend_counters(&e)[&id];
    assert_eq!((c.connects_ok, c.connects_failed), (0, 1));
    assert_eq!(e.counters().connects_refused, 1);
    e.housekeeping(snap(), NOW + CONNECT_TIMEOUT_MS + 1, 64);
    assert_eq!(e.counters().connects_timed_out, 0, "judged once");
}

#[test]
fn no_answer_within_the_connect_timeout_is_a_failure() {
    let mut e = engine(0);
    let mut ids = Vec::new();
    for sport in 41000..41010 {
        ids.push(open(&mut e, &Spec::tcp("192.0.2.7", sport, "10.1.0.5", 80)).0);
    }
    e.housekeeping(snap(), NOW + CONNECT_TIMEOUT_MS - 1, 64);
    assert_eq!(e.counters().connects_timed_out, 0, "not yet due");
    e.housekeeping(snap(), NOW + CONNECT_TIMEOUT_MS, 64);
    assert_eq!(e.counters().connects_timed_out, 10);
    let counts = backend_counters(&e);
    for id in &ids {
        assert!(counts[id].connects_failed >= 1);
    }
    let failed: u64 = counts.values().map(|c| c.connects_failed).sum();
    assert_eq!(failed, 10);
}

#[test]
fn icmp_unreachable_quoting_a_translation_is_a_failure() {
    let mut e = engine(0);
    // TCP: the quote names the LB port of the translation
    let client = Spec::tcp("192.0.2.7", 42000, "10.1.0.5", 80);
    let (id, b, bport, lb_port) = open(&mut e, &client);
    let (v, _) = process(&mut e, 0, &unreachable(b, bport, lb_port, false));
    assert_eq!(v, Verdict::ToKernel, "then handled like any ICMP to the LB");
    assert_eq!(backend_counters(&e)[&id].connects_failed, 1);
    assert_eq!(e.counters().connects_unreachable, 1);
    // UDP: the first datagram's answer is an ICMP port unreachable
    let udp = Spec::udp("192.0.2.7", 42001, "10.1.0.5", 53);
    let (v, out) = process(&mut e, 0, &udp.build());
    assert_eq!(v, Verdict::Forward { port: 0 });
    let ub = IpAddr::V4(v4(&out, 30));
    let (ubport, ulb) = (be16(&out, 36), be16(&out, 34));
    process(&mut e, 0, &unreachable(ub, ubport, ulb, true));
    assert_eq!(e.counters().connects_unreachable, 2);
    // a quote of no translation is only passed on
    let (v, _) = process(
        &mut e,
        0,
        &unreachable(b, bport, lb_port.wrapping_add(1), false),
    );
    assert_eq!(v, Verdict::ToKernel);
    assert_eq!(e.counters().connects_unreachable, 2);
    // a truncated ICMP error is still only passed on, never a crash
    let mut cut = unreachable(b, bport, lb_port, false);
    cut.truncate(14 + 20 + 8 + 10);
    let _ = process(&mut e, 0, &cut);
}

#[test]
fn active_flows_follow_inserts_and_expiry() {
    let mut e = engine(0);
    for sport in 43000..43030 {
        let (v, _) = process(
            &mut e,
            0,
            &Spec::tcp("192.0.2.8", sport, "10.1.0.2", 80).build(),
        );
        assert!(matches!(v, Verdict::Forward { .. }));
    }
    let active: u64 = backend_counters(&e).values().map(|c| c.active_flows).sum();
    assert_eq!(active, 30);
    assert_eq!(active as usize, e.flow_count());
    // a packet of a known flow adds none
    process(
        &mut e,
        0,
        &Spec::tcp("192.0.2.8", 43000, "10.1.0.2", 80).ack().build(),
    );
    let active: u64 = backend_counters(&e).values().map(|c| c.active_flows).sum();
    assert_eq!(active, 30);
    // every flow expires (SYN-only flows: the transitory timeout)
    e.housekeeping(snap(), NOW + 3_600_000, 1 << 16);
    assert_eq!(e.flow_count(), 0);
    let active: u64 = backend_counters(&e).values().map(|c| c.active_flows).sum();
    assert_eq!(active, 0);
}
