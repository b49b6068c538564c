//! The seed corpus of the `engine` fuzz target (`fuzz/corpus/engine/`), written by
//! `cargo test --lib --no-default-features engine::tests::corpus -- --ignored`.

use super::*;
use crate::engine::fuzzing::{encode_record, run};

/// Named fuzz inputs: valid frames of every kind the engine handles.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let targets = [
        ("dsr4", "10.1.0.1", 80, false, 0u16),
        ("dsr4-udp", "10.1.0.1", 53, true, 0),
        ("dsr6", "fd01::1", 80, false, 1),
        ("ipip4", "10.1.0.2", 80, false, 0),
        ("ipip4-udp", "10.1.0.2", 5353, true, 0),
        ("ipip6", "fd01::2", 80, false, 1),
        ("ipip46", "10.1.0.3", 80, false, 0),
        ("gue4", "10.1.0.4", 443, false, 0),
        ("gue4-udp", "10.1.0.4", 53, true, 0),
        ("gue6", "fd01::4", 443, false, 1),
        ("nat4", "10.1.0.5", 80, false, 0),
        ("nat4-udp", "10.1.0.5", 53, true, 0),
        ("nat6", "fd01::5", 80, false, 1),
        ("unresolved", "10.1.0.6", 80, false, 0),
    ];
    for (name, vip, port, udp, in_port) in targets {
        let client = if vip.contains(':') {
            "2001:db8::7"
        } else {
            "192.0.2.7"
        };
        for (variant, vlan, payload) in [
            ("plain", None, 20),
            ("vlan", Some(5), 200),
            ("big", None, 1440),
        ] {
            let mut s = if udp {
                Spec::udp(client, 40000, vip, port)
            } else {
                Spec::tcp(client, 40000, vip, port)
            }
            .payload(payload);
            s.vlan = vlan;
            let ctrl = (in_port as u8) << 1;
            // worker 1 opens the flow, so replies at worker 0 are handed off
            let mut input = Vec::new();
            let mut e1 = engine(1);
            let first = s.build();
            encode_record(ctrl | 1, &first, &mut input);
            let (_, out) = process(&mut e1, in_port, &first);
            let next = s.clone().ack().build();
            encode_record(ctrl | 1 | 8, &next, &mut input);
            if name.starts_with("nat") {
                let l3 = if vlan.is_some() { 18 } else { 14 };
                let l4 = l3 + if vip.contains(':') { 40 } else { 20 };
                let mut r = s.clone().ack();
                if vip.contains(':') {
                    r.src = IpAddr::V6(v6(&out, l3 + 24));
                    r.dst = IpAddr::V6(v6(&out, l3 + 8));
                } else {
                    r.src = IpAddr::V4(v4(&out, l3 + 16));
                    r.dst = IpAddr::V4(v4(&out, l3 + 12));
                }
                r.sport = be16(&out, l4 + 2);
                r.dport = be16(&out, l4);
                encode_record(ctrl, &r.build(), &mut input);
            }
            seeds.push((format!("{name}-{variant}"), input));
        }
    }
    let mut rest = Vec::new();
    for (name, frame, port) in replies_and_odd_frames() {
        let mut input = Vec::new();
        encode_record(port << 1, &frame, &mut input);
        rest.push((name, input));
    }
    seeds.extend(rest);
    seeds
}

fn replies_and_odd_frames() -> Vec<(String, Vec<u8>, u8)> {
    let mut v = Vec::new();
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&[10, 0, 0, 99, 0, 0, 0, 0, 0, 0, 10, 1, 0, 1]);
    v.push(("arp-vip".to_string(), arp, 0));
    let mut echo = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, PORT_MACS[0])
        .ipv4([192, 0, 2, 7], [10, 1, 0, 2], 60)
        .icmpv4_echo_request(1, 2)
        .write(&mut echo, b"ping")
        .unwrap();
    v.push(("echo4".to_string(), echo, 0));
    let mut echo6 = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, PORT_MACS[1])
        .ipv6(ip6("2001:db8::7"), ip6("fd01::1"), 60)
        .icmpv6_echo_request(1, 2)
        .write(&mut echo6, b"ping")
        .unwrap();
    v.push(("echo6".to_string(), echo6, 1));
    let mut ns = Vec::new();
    let mut body = ip6("fd01::1").to_vec();
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&CLIENT_MAC);
    PacketBuilder::ethernet2(CLIENT_MAC, [0x33, 0x33, 0xff, 0, 0, 1])
        .ipv6(ip6("fd00::99"), ip6("ff02::1:ff00:1"), 255)
        .icmpv6_raw(135, 0, [0; 4])
        .write(&mut ns, &body)
        .unwrap();
    v.push(("nd-ns".to_string(), ns, 1));
    let mut quoted = Vec::new();
    PacketBuilder::ipv4([10, 1, 0, 2], [192, 0, 2, 7], 60)
        .tcp(80, 40000, 5, 1000)
        .write(&mut quoted, &[])
        .unwrap();
    quoted.truncate(28);
    let mut err = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, PORT_MACS[0])
        .ipv4([198, 51, 100, 1], [10, 1, 0, 2], 60)
        .icmpv4_raw(3, 4, [0, 0, 5, 0xdc])
        .write(&mut err, &quoted)
        .unwrap();
    v.push(("icmp-error".to_string(), err, 0));
    let mut frag = Spec::udp("192.0.2.7", 7000, "10.1.0.2", 5353)
        .payload(200)
        .build();
    frag[20] = 0x20;
    fix_ipv4_header(&mut frag, 14);
    v.push(("fragment-first".to_string(), frag.clone(), 0));
    frag[20..22].copy_from_slice(&[0, 8]);
    fix_ipv4_header(&mut frag, 14);
    v.push(("fragment-later".to_string(), frag, 0));
    let mut own = Spec::tcp("192.0.2.7", 40000, "10.0.0.2", 22).build();
    add_vlan(&mut own, 9);
    v.push(("to-lb".to_string(), own, 0));
    v
}

fn ip6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

#[test]
fn seeds_run_clean() {
    for (name, input) in seeds() {
        assert!(input.len() < 8192, "{name}");
        run(&input);
    }
}

#[test]
#[ignore = "writes fuzz/corpus/engine; run by hand"]
fn write_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/engine");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, input) in seeds() {
        std::fs::write(dir.join(name), input).unwrap();
    }
}

/// `process_burst` decides and rewrites exactly as `process` packet by packet: every
/// seed, and corrupted copies of each, through two engine pairs, one packet at a time
/// and in bursts (consecutive records of one worker, port and clock, up to 80, so a
/// burst is also split at `MAX_BURST`).
#[test]
fn bursts_decide_as_single_packets() {
    use crate::buffer::{HeapBuf, PacketBuf, DEFAULT_BUF_SIZE, DEFAULT_HEADROOM};
    use crate::engine::fuzzing::{engine, fix_checksums, fixture, records};
    let snap = fixture();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut inputs: Vec<Vec<u8>> = seeds().into_iter().map(|(_, i)| i).collect();
    // all seeds in one run (flows shared across kinds), and corrupted copies
    inputs.push(inputs.concat());
    for i in 0..inputs.len() {
        let mut c = inputs[i].clone();
        for _ in 0..c.len() / 40 {
            let at = (rnd() % c.len() as u64) as usize;
            c[at] ^= 1 << (rnd() % 8);
        }
        inputs.push(c);
    }
    let mut compared = 0;
    for input in &inputs {
        // (worker, port, clock, frame)
        let mut pkts: Vec<(usize, u16, u32, Vec<u8>)> = Vec::new();
        let mut now = 1u32;
        for (ctrl, frame) in records(input) {
            now = now.wrapping_add((ctrl >> 3) as u32 * 1000);
            let n = frame.len().min(DEFAULT_BUF_SIZE - DEFAULT_HEADROOM);
            let mut f = frame[..n].to_vec();
            if ctrl & 4 != 0 {
                fix_checksums(&mut f);
            }
            pkts.push(((ctrl & 1) as usize, ((ctrl >> 1) & 1) as u16, now, f));
        }
        let mut single = [engine(0, 64), engine(1, 64)];
        let mut burst = [engine(0, 64), engine(1, 64)];
        let mut expected = Vec::new();
        for (w, port, now, f) in &pkts {
            let mut b = HeapBuf::from_slice(f);
            let v = single[*w].process(snap, *port, &mut b, *now);
            expected.push((v, b.data().to_vec()));
        }
        let mut i = 0;
        while i < pkts.len() {
            let (w, port, now, _) = pkts[i];
            let mut j = i + 1;
            while j < pkts.len()
                && j - i < 80
                && pkts[j].0 == w
                && pkts[j].1 == port
                && pkts[j].2 == now
            {
                j += 1;
            }
            let mut bufs: Vec<HeapBuf> = pkts[i..j]
                .iter()
                .map(|p| HeapBuf::from_slice(&p.3))
                .collect();
            let mut verdicts = vec![Verdict::Reply; j - i];
            burst[w].process_burst(snap, port, &mut bufs, &mut verdicts, now);
            for (k, (b, v)) in bufs.iter().zip(&verdicts).enumerate() {
                assert_eq!((*v, b.data().to_vec()), expected[i + k], "packet {}", i + k);
                compared += 1;
            }
            i = j;
        }
        // every counter, the received packets and bytes (counted once a burst) among them
        for w in 0..2 {
            assert_eq!(single[w].counters(), burst[w].counters(), "worker {w}");
        }
    }
    assert!(compared > 100, "{compared}");
}
