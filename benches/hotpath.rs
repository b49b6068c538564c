//! A fixed amount of per-core work for instruction counts and profiles (criterion's
//! adaptive iteration counts make `valgrind --tool=callgrind` totals incomparable):
//! `SCENARIO` packets of a set of flows through `Engine::process_burst` in bursts of 32,
//! then the wall time per packet.
//!
//! ```sh
//! cargo bench --no-default-features --bench hotpath --no-run
//! valgrind --tool=callgrind --toggle-collect='hotpath::run' target/release/deps/hotpath-* ipip-10k 320000
//! target/release/deps/hotpath-* ipip-1m 3200000      # ns/packet, natively
//! ```
//!
//! Scenarios: `ipip-10k`, `nat-10k` (the same flows to a full-NAT service), `options-10k`
//! (ipip-10k's frames with 4 bytes of IPv4 options: the general parser's path), `ipip6-10k`
//! (10k IPv6 flows to an IPv6 `ipip` service: IPv6-in-IPv6), `ipip-1m` (established flows, ACKs cycling over them, the
//! flow table sized like the bench harness's: 2097152), `syn-1m` (every packet a SYN of
//! a new flow into a full table of 1M), `single-10k` (ipip-10k through
//! `Engine::process` one packet at a time, for comparison).

use std::hint::black_box;
use std::time::Instant;

use fulcrum::buffer::{HeapBuf, PacketBuf, DEFAULT_HEADROOM};
use fulcrum::control::IdRegistry;
use fulcrum::engine::fuzzing::snapshot_from_yaml;
use fulcrum::engine::{Engine, EngineConfig, Snapshot, Verdict};
use fulcrum::flow::FlowTimeouts;
use fulcrum::wire::Ipv4Packet;

const YAML: &str = r#"
dpdk:
  eal_args: ["--no-pci", "--vdev=net_null0", "--vdev=net_null1"]
ports:
  - name: lan
    device: net_null0
    address: 10.0.0.2/16
    neighbors:
      - { address: 10.0.0.14, mac: "02:00:00:00:00:0e" }
      - { address: 10.0.0.15, mac: "02:00:00:00:00:0f" }
      - { address: 10.0.0.16, mac: "02:00:00:00:00:10" }
  - name: lan6
    device: net_null1
    address: fd00::2/64
    neighbors:
      - { address: "fd00::14", mac: "02:00:00:00:00:0e" }
      - { address: "fd00::15", mac: "02:00:00:00:00:0f" }
      - { address: "fd00::16", mac: "02:00:00:00:00:10" }
workers:
  cores: [0]
services:
  - name: ipip
    vip: 10.1.0.2
    port: 80
    forwarding: ipip
    backends: [{ address: 10.0.0.14 }, { address: 10.0.0.15 }, { address: 10.0.0.16 }]
  - name: nat
    vip: 10.1.0.3
    port: 80
    forwarding: nat
    backends: [{ address: 10.0.0.14 }, { address: 10.0.0.15 }, { address: 10.0.0.16 }]
  - name: ipip6
    vip: "fd01::2"
    port: 80
    forwarding: ipip
    backends: [{ address: "fd00::14" }, { address: "fd00::15" }, { address: "fd00::16" }]
"#;

const BURST: usize = 32;
const TABLE: usize = 2_097_152;

/// A 64-byte IPv4 TCP frame to `vip`:80 from `src`:`sport`, flags `flags`, IPv4
/// checksum filled.
fn frame(vip: [u8; 4], src: u32, sport: u16, flags: u8) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&[0x02, 0xfc, 0, 0, 0, 0xa0]);
    f[6..12].copy_from_slice(&[0x02, 0xcc, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    {
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&40u16.to_be_bytes());
        ip[6] = 0x40;
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&src.to_be_bytes());
        ip[16..20].copy_from_slice(&vip);
        Ipv4Packet::new_unchecked(ip).fill_checksum();
    }
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&80u16.to_be_bytes());
    f[46] = 0x50;
    f[47] = flags;
    f[48..50].copy_from_slice(&65535u16.to_be_bytes());
    f
}

/// The IPv6 twin of [`frame`]: a 74-byte IPv6 TCP frame (the smallest) to `fd01::2`:80
/// from `fd0b::<src>`:`sport` (what `ipip6-10k` sends through the `lan6` port).
fn frame6(src: u32, sport: u16, flags: u8) -> Vec<u8> {
    let mut f = vec![0u8; 74];
    f[0..6].copy_from_slice(&[0x02, 0xfc, 0, 0, 0, 0xa1]);
    f[6..12].copy_from_slice(&[0x02, 0xcc, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    f[14] = 0x60;
    f[18..20].copy_from_slice(&20u16.to_be_bytes());
    f[20] = 6;
    f[21] = 64;
    f[22..24].copy_from_slice(&[0xfd, 0x0b]);
    f[34..38].copy_from_slice(&src.to_be_bytes());
    f[38..40].copy_from_slice(&[0xfd, 0x01]);
    f[53] = 2;
    f[54..56].copy_from_slice(&sport.to_be_bytes());
    f[56..58].copy_from_slice(&80u16.to_be_bytes());
    f[66] = 0x50;
    f[67] = flags;
    f[68..70].copy_from_slice(&65535u16.to_be_bytes());
    f
}

/// `f` with four NOP bytes of IPv4 options (IHL 6): a frame the general parser reads.
fn with_ip_options(f: Vec<u8>) -> Vec<u8> {
    let mut g = f[..34].to_vec();
    g.extend_from_slice(&[1, 1, 1, 1]);
    g.extend_from_slice(&f[34..]);
    let ip = &mut g[14..38];
    ip[0] = 0x46;
    let len = u16::from_be_bytes([ip[2], ip[3]]) + 4;
    ip[2..4].copy_from_slice(&len.to_be_bytes());
    Ipv4Packet::new_unchecked(ip).fill_checksum();
    g
}

/// Flow `i`'s client (address, port).
fn client(i: u64) -> (u32, u16) {
    (
        0x0b00_0000u32.wrapping_add((i >> 12) as u32),
        20000 + (i & 0xfff) as u16,
    )
}

/// Restores `b` to a copy of `f` with the default headroom.
#[inline]
fn reload(b: &mut HeapBuf, f: &[u8]) {
    let h = b.headroom();
    if h < DEFAULT_HEADROOM {
        b.adjust(DEFAULT_HEADROOM - h).unwrap();
    } else if h > DEFAULT_HEADROOM {
        b.prepend(h - DEFAULT_HEADROOM).unwrap();
    }
    b.set_len(f.len()).unwrap();
    b.data_mut().copy_from_slice(f);
}

/// The measured loop: `packets` packets from the prebuilt `frames` (cycled), in bursts.
#[inline(never)]
fn run(
    e: &mut Engine,
    snap: &Snapshot,
    frames: &[Vec<u8>],
    packets: usize,
    single: bool,
    in_port: u16,
    bufs: &mut [HeapBuf],
) -> u64 {
    let mut verdicts = [Verdict::Reply; BURST];
    let mut forwarded = 0u64;
    let mut next = 0usize;
    // the engine clock advances 1 ms every 4,096 packets (a worker at ~4 Mpps), so
    // flows are revisited in later milliseconds as on a real port
    let mut now = 1000u32;
    for i in 0..packets / BURST {
        if i % (4096 / BURST) == 0 {
            now += 1;
        }
        for b in bufs.iter_mut() {
            reload(b, &frames[next]);
            next = if next + 1 == frames.len() {
                0
            } else {
                next + 1
            };
        }
        if single {
            for (b, v) in bufs.iter_mut().zip(verdicts.iter_mut()) {
                *v = e.process(snap, in_port, b, now);
            }
        } else {
            e.process_burst(snap, in_port, bufs, &mut verdicts, now);
        }
        forwarded += verdicts
            .iter()
            .filter(|v| matches!(v, Verdict::Forward { .. }))
            .count() as u64;
    }
    forwarded
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // cargo bench passes --bench; ignore flags
    let pos: Vec<&String> = args
        .iter()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let scenario = pos.first().map(|s| s.as_str()).unwrap_or("ipip-10k");
    let packets: usize = pos.get(1).and_then(|s| s.parse().ok()).unwrap_or(320_000);
    let snap = snapshot_from_yaml(YAML, &mut IdRegistry::default(), 1, 1).unwrap();
    let (flows, syn_flood, single) = match scenario {
        "ipip-10k" | "nat-10k" | "options-10k" | "ipip6-10k" => (10_000u64, false, false),
        "single-10k" => (10_000, false, true),
        "ipip-1m" => (1_000_000, false, false),
        "single-1m" => (1_000_000, false, true),
        "syn-1m" => (1_000_000, true, false),
        other => panic!("unknown scenario {other}"),
    };
    // the `ipip` service, or the full-NAT one
    let vip = if scenario.starts_with("nat") {
        [10, 1, 0, 3]
    } else {
        [10, 1, 0, 2]
    };
    let mut e = Engine::new(EngineConfig {
        worker: 0,
        flow_capacity: if syn_flood { flows as usize } else { TABLE },
        timeouts: FlowTimeouts::DEFAULT_MS,
    })
    .unwrap();
    // `options-10k`: ipip-10k's frames with IPv4 options, through the general parser;
    // `ipip6-10k`: IPv6 frames to the `ipip6` service, arriving on port 1 (`lan6`)
    let options = scenario.starts_with("options");
    let v6 = scenario.starts_with("ipip6");
    let in_port = u16::from(v6);
    let frame = |vip, src, sport, flags| {
        if v6 {
            return frame6(src, sport, flags);
        }
        let f = frame(vip, src, sport, flags);
        if options {
            with_ip_options(f)
        } else {
            f
        }
    };
    let mut b = HeapBuf::from_slice(&frame(vip, 0, 0, 0x02));
    for f in 0..flows {
        let (src, sport) = client(f);
        reload(&mut b, &frame(vip, src, sport, 0x02));
        assert_eq!(
            e.process(&snap, in_port, &mut b, 1000),
            Verdict::Forward { port: in_port }
        );
    }
    // established: ACKs over the flows in a shuffled order (a stride coprime with the
    // count), so consecutive packets do not hit neighbouring entries; SYN flood: tuples
    // never seen
    let frames: Vec<Vec<u8>> = if syn_flood {
        (0..1_000_000u64)
            .map(|i| {
                let (src, sport) = client(flows + 1 + i);
                frame(vip, src, sport, 0x02)
            })
            .collect()
    } else {
        (0..flows)
            .map(|i| {
                let (src, sport) = client(i * 7919 % flows);
                frame(vip, src, sport, 0x10)
            })
            .collect()
    };
    let mut bufs: Vec<HeapBuf> = (0..BURST)
        .map(|_| HeapBuf::from_slice(&frames[0]))
        .collect();
    let start = Instant::now();
    let fwd = run(&mut e, &snap, &frames, packets, single, in_port, &mut bufs);
    let ns = start.elapsed().as_nanos() as f64 / packets as f64;
    black_box(fwd);
    let drops: u64 = e.counters().drops.iter().sum();
    println!(
        "{scenario}: {packets} packets, {fwd} forwarded, {drops} dropped, {:.1} ns/packet, flows {}",
        ns,
        e.flow_count()
    );
    assert_eq!(
        fwd as usize,
        packets / BURST * BURST,
        "every packet forwarded"
    );
}
