//! The engine per packet, in ns: established flow + `ipip`, new flow + Maglev (each
//! packet a new tuple, table full so every insert evicts), `nat` both directions, and
//! `dsr`, at 10 thousand and 1 million flows.
//!
//! Each iteration copies a template frame into a preallocated `HeapBuf` (restoring its
//! headroom), writes the flow's addresses and ports, then runs `Engine::process`. The
//! `copy_baseline` bench is that copy alone: subtract it for the engine's own cost.
//!
//! `cargo bench --no-default-features --bench engine`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use fulcrum::buffer::{HeapBuf, PacketBuf, DEFAULT_HEADROOM};
use fulcrum::control::IdRegistry;
use fulcrum::engine::fuzzing::snapshot_from_yaml;
use fulcrum::engine::{Engine, EngineConfig, Snapshot, Verdict};
use fulcrum::flow::FlowTimeouts;

/// NAT backends: 64, so that a million translations fit in one worker's 31,744 ports
/// per backend.
const NAT_BACKENDS: u32 = 64;

fn yaml() -> String {
    let mut neigh = String::new();
    let mut nat = String::new();
    for i in 1..=NAT_BACKENDS {
        neigh.push_str(&format!(
            "      - {{ address: 10.0.1.{i}, mac: \"02:00:00:00:01:{i:02x}\" }}\n"
        ));
        nat.push_str(&format!("      - {{ address: 10.0.1.{i}, port: 8080 }}\n"));
    }
    for i in 11..=20 {
        neigh.push_str(&format!(
            "      - {{ address: 10.0.0.{i}, mac: \"02:00:00:00:00:{i:02x}\" }}\n"
        ));
    }
    format!(
        r#"
dpdk:
  eal_args: ["--no-pci", "--vdev=net_null0"]
ports:
  - name: lan
    device: net_null0
    address: 10.0.0.2/16
    neighbors:
{neigh}
workers:
  cores: [0]
services:
  - name: dsr
    vip: 10.1.0.1
    port: 80
    forwarding: dsr
    backends: [{{ address: 10.0.0.11 }}, {{ address: 10.0.0.12 }}, {{ address: 10.0.0.13 }}]
  - name: ipip
    vip: 10.1.0.2
    port: 80
    forwarding: ipip
    backends: [{{ address: 10.0.0.14 }}, {{ address: 10.0.0.15 }}, {{ address: 10.0.0.16 }}, {{ address: 10.0.0.17 }}]
  - name: nat
    vip: 10.1.0.5
    port: 80
    forwarding: nat
    backends:
{nat}
"#
    )
}

fn snapshot() -> Snapshot {
    snapshot_from_yaml(&yaml(), &mut IdRegistry::default(), 1, 1).unwrap()
}

fn engine(capacity: usize) -> Engine {
    Engine::new(EngineConfig {
        worker: 0,
        flow_capacity: capacity,
        timeouts: FlowTimeouts::DEFAULT_MS,
    })
    .unwrap()
}

/// A 64-byte IPv4 TCP frame (no payload, padded like on the wire) from a client to
/// `dst`:`dport`, flags `flags`.
fn template(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[0..6].copy_from_slice(&[0x02, 0xfc, 0, 0, 0, 0xa0]);
    f[6..12].copy_from_slice(&[0x02, 0xcc, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&40u16.to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&dport.to_be_bytes());
    f[46] = 0x50;
    f[47] = flags;
    f[48..50].copy_from_slice(&65535u16.to_be_bytes());
    f
}

/// The template's IPv4 header sum without source address and checksum.
fn base_sum(t: &[u8]) -> u32 {
    let mut s = 0u32;
    for i in (14..34).step_by(2) {
        if !(24..30).contains(&i) {
            s += u32::from(u16::from_be_bytes([t[i], t[i + 1]]));
        }
    }
    s
}

/// A frame being reloaded into one buffer for every packet.
struct Loader {
    buf: HeapBuf,
    t: Vec<u8>,
    sum: u32,
}

impl Loader {
    fn new(t: Vec<u8>) -> Loader {
        Loader {
            buf: HeapBuf::from_slice(&t),
            sum: base_sum(&t),
            t,
        }
    }

    /// Restores the buffer and writes the template with source `src`:`sport` and
    /// destination port `dport`, the IPv4 checksum fixed.
    #[inline]
    fn load(&mut self, src: u32, sport: u16, dport: u16) -> &mut HeapBuf {
        let b = &mut self.buf;
        let h = b.headroom();
        if h < DEFAULT_HEADROOM {
            b.adjust(DEFAULT_HEADROOM - h).unwrap();
        } else if h > DEFAULT_HEADROOM {
            b.prepend(h - DEFAULT_HEADROOM).unwrap();
        }
        b.set_len(self.t.len()).unwrap();
        let d = b.data_mut();
        d.copy_from_slice(&self.t);
        d[26..30].copy_from_slice(&src.to_be_bytes());
        d[34..36].copy_from_slice(&sport.to_be_bytes());
        d[36..38].copy_from_slice(&dport.to_be_bytes());
        let mut s = self.sum + (src >> 16) + (src & 0xffff);
        s = (s & 0xffff) + (s >> 16);
        s = (s & 0xffff) + (s >> 16);
        d[24..26].copy_from_slice(&(!(s as u16)).to_be_bytes());
        b
    }
}

/// Flow `i`'s client: (address, port), distinct for every `i` below 2^36.
#[inline]
fn client(i: u64) -> (u32, u16) {
    (
        0x0b00_0000u32.wrapping_add((i >> 12) as u32),
        20000 + (i & 0xfff) as u16,
    )
}

fn engine_benches(c: &mut Criterion) {
    let snap = snapshot();
    let now = 1000;

    let mut l = Loader::new(template([0; 4], [10, 1, 0, 2], 0, 80, 0x10));
    let mut i = 0u64;
    c.bench_function("copy_baseline", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let (src, sport) = client(i % 1_000_000);
            black_box(l.load(src, sport, 80).data()[30]);
        })
    });

    for (n, label) in [(10_000u64, "10k"), (1_000_000, "1M")] {
        // established flows: SYN for each, then ACKs cycling over them
        for (vip, name) in [([10, 1, 0, 2], "ipip"), ([10, 1, 0, 1], "dsr")] {
            let mut e = engine(n as usize);
            let mut syn = Loader::new(template([0; 4], vip, 0, 80, 0x02));
            for f in 0..n {
                let (src, sport) = client(f);
                let v = e.process(&snap, 0, syn.load(src, sport, 80), now);
                assert_eq!(v, Verdict::Forward { port: 0 });
            }
            assert_eq!(e.flow_count(), n as usize);
            let mut ack = Loader::new(template([0; 4], vip, 0, 80, 0x10));
            let mut f = 0u64;
            c.bench_function(&format!("{name}_established_{label}"), |b| {
                b.iter(|| {
                    f = if f + 1 == n { 0 } else { f + 1 };
                    let (src, sport) = client(f);
                    black_box(e.process(&snap, 0, ack.load(src, sport, 80), now))
                })
            });
            assert_eq!(e.flow_count(), n as usize, "every packet hit its flow");
        }

        // new flows: the table holds n flows; every SYN is a new tuple picked by
        // Maglev and inserted, evicting the least recently used flow
        {
            let mut e = engine(n as usize);
            let mut syn = Loader::new(template([0; 4], [10, 1, 0, 2], 0, 80, 0x02));
            let mut f = 0u64;
            while f < n {
                let (src, sport) = client(f);
                e.process(&snap, 0, syn.load(src, sport, 80), now);
                f += 1;
            }
            c.bench_function(&format!("maglev_new_flow_{label}"), |b| {
                b.iter(|| {
                    f += 1;
                    let (src, sport) = client(f);
                    black_box(e.process(&snap, 0, syn.load(src, sport, 80), now))
                })
            });
            assert_eq!(e.flow_count(), n as usize);
            println!("{label}: evictions {}", e.flow_stats().evictions);
        }

        // full NAT: n translations, then client->backend and backend->client
        {
            let mut e = engine(n as usize);
            let mut syn = Loader::new(template([0; 4], [10, 1, 0, 5], 0, 80, 0x02));
            let mut back: Vec<(u32, u16)> = Vec::with_capacity(n as usize);
            for f in 0..n {
                let (src, sport) = client(f);
                let b = syn.load(src, sport, 80);
                let v = e.process(&snap, 0, b, now);
                assert_eq!(v, Verdict::Forward { port: 0 }, "flow {f}");
                let d = b.data();
                let backend = u32::from_be_bytes([d[30], d[31], d[32], d[33]]);
                back.push((backend, u16::from_be_bytes([d[34], d[35]])));
            }
            assert_eq!(e.nat_count(), n as usize);
            let mut ack = Loader::new(template([0; 4], [10, 1, 0, 5], 0, 80, 0x10));
            let mut f = 0u64;
            c.bench_function(&format!("nat_to_backend_{label}"), |b| {
                b.iter(|| {
                    f = if f + 1 == n { 0 } else { f + 1 };
                    let (src, sport) = client(f);
                    black_box(e.process(&snap, 0, ack.load(src, sport, 80), now))
                })
            });
            let mut reply = Loader::new(template([0; 4], [10, 0, 0, 2], 8080, 0, 0x10));
            let replies_before = e.counters().nat_replies;
            c.bench_function(&format!("nat_to_client_{label}"), |b| {
                b.iter(|| {
                    f = if f + 1 == n { 0 } else { f + 1 };
                    let (backend, lb_port) = back[f as usize];
                    let p = reply.load(backend, 8080, lb_port);
                    black_box(e.process(&snap, 0, p, now))
                })
            });
            // one reply outside the bench too, so a filtered run (`--bench NAME`) that
            // skipped it still checks the reverse path
            let (backend, lb_port) = back[0];
            let v = e.process(&snap, 0, reply.load(backend, 8080, lb_port), now);
            assert_eq!(v, Verdict::Forward { port: 0 });
            assert!(e.counters().nat_replies > replies_before);
            assert_eq!(e.counters().drops.iter().sum::<u64>(), 0, "nothing dropped");
        }
    }
}

criterion_group!(benches, engine_benches);
criterion_main!(benches);
