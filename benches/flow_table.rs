//! Flow table lookup (hit) and insert at 10 thousand and 1 million live flows,
//! in random access order.
//!
//! `cargo bench --no-default-features --bench flow_table`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use fulcrum::flow::{FlowKey, FlowTable, FlowTimeouts, ForwardEntry, IpAddr16, IPPROTO_TCP};
use std::hint::black_box;

/// Flow number `i` as a distinct IPv4 TCP key.
fn key(i: u32) -> FlowKey {
    let [a, b, c, d] = (0x0a00_0000u32 | (i >> 16)).to_be_bytes();
    FlowKey {
        src: IpAddr16::from_v4([a, b, c, d]),
        dst: IpAddr16::from_v4([198, 51, 100, 10]),
        src_port: i as u16,
        dst_port: 443,
        proto: IPPROTO_TCP,
        service: 1,
    }
}

/// A fixed pseudo-random permutation of `0..n` (Fisher-Yates over an LCG).
fn shuffled(n: u32) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n).collect();
    let mut s = 0x2545_f491_4f6c_dd1du64;
    for i in (1..v.len()).rev() {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let j = ((s >> 33) % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

fn full_table(n: u32) -> FlowTable<FlowKey, u32> {
    let mut t = FlowTable::new(n as usize, FlowTimeouts::DEFAULT_MS, 0x1234_5678).unwrap();
    for i in 0..n {
        let _ = t.insert(key(i), i, 0);
    }
    t
}

fn flow_table(c: &mut Criterion) {
    println!(
        "FlowEntry<FlowKey, u32>: {} bytes; + 4-byte bucket head per power-of-two bucket",
        core::mem::size_of::<ForwardEntry>()
    );
    for (n, label) in [(10_000u32, "10k"), (1_000_000, "1M")] {
        let mut table = full_table(n);
        let keys: Vec<FlowKey> = shuffled(n).into_iter().map(key).collect();
        // Every hit is the flow's first in its tick (`now` advances once per
        // pass over the keys), so every hit relinks the LRU list.
        let mut i = 0usize;
        let mut now = 1u32;
        c.bench_function(&format!("flow_lookup_hit_{label}"), |b| {
            b.iter(|| {
                i += 1;
                if i == keys.len() {
                    i = 0;
                    now += 1;
                }
                black_box(table.lookup(black_box(&keys[i]), now).copied())
            })
        });
        // Hits within one tick after the first pass: no LRU relink.
        c.bench_function(&format!("flow_lookup_hit_same_tick_{label}"), |b| {
            b.iter(|| {
                i = if i + 1 == keys.len() { 0 } else { i + 1 };
                black_box(table.lookup(black_box(&keys[i]), now).copied())
            })
        });

        // Insert of a new flow into a full table (evicts the LRU flow): the
        // steady state of a table at `n` live flows.
        let mut table = full_table(n);
        let fresh: Vec<FlowKey> = shuffled(n).into_iter().map(|i| key(i + n)).collect();
        let mut j = 0usize;
        c.bench_function(&format!("flow_insert_evict_{label}"), |b| {
            b.iter(|| {
                j = if j + 1 == fresh.len() { 0 } else { j + 1 };
                let _ = black_box(table.insert(fresh[j], j as u32, 1));
            })
        });

        // Insert into free room: a table of capacity 2n holding n flows; each
        // iteration inserts 1024 new flows then removes them (2048 ops), so
        // the table stays at n live flows.
        c.bench_function(&format!("flow_insert_free_{label}"), |b| {
            let mut table = FlowTable::new(2 * n as usize, FlowTimeouts::DEFAULT_MS, 1).unwrap();
            for i in 0..n {
                let _ = table.insert(key(i), i, 0);
            }
            let batch: Vec<FlowKey> = fresh.iter().take(1024).copied().collect();
            b.iter_batched_ref(
                || (),
                |_| {
                    for k in &batch {
                        let _ = black_box(table.insert(*k, 0, 1));
                    }
                    for k in &batch {
                        black_box(table.remove(k));
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
}

criterion_group!(benches, flow_table);
criterion_main!(benches);
