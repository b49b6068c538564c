//! Maglev table build and lookup.
//!
//! `cargo bench --no-default-features --bench maglev`
//! The paper reports 1.8 ms to build a 65537-slot table for 1000 backends.

use criterion::{criterion_group, criterion_main, Criterion};
use fulcrum::maglev::{MaglevBackend, MaglevTable, DEFAULT_TABLE_SIZE};
use std::hint::black_box;

fn names(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("10.1.{}.{}:80", i / 256, i % 256).into_bytes())
        .collect()
}

fn build(c: &mut Criterion) {
    for n in [10usize, 100, 1000] {
        let names = names(n);
        let backends: Vec<_> = names
            .iter()
            .map(|name| MaglevBackend { name, weight: 1 })
            .collect();
        c.bench_function(&format!("maglev_build_{n}_backends_65537"), |b| {
            b.iter(|| MaglevTable::build(black_box(&backends), DEFAULT_TABLE_SIZE))
        });
    }
    let names = names(1000);
    let backends: Vec<_> = names
        .iter()
        .zip(0u32..)
        .map(|(name, i)| MaglevBackend {
            name,
            weight: 1 + i % 4,
        })
        .collect();
    c.bench_function("maglev_build_1000_backends_weights_1to4_65537", |b| {
        b.iter(|| MaglevTable::build(black_box(&backends), DEFAULT_TABLE_SIZE))
    });
}

fn lookup(c: &mut Criterion) {
    let names = names(100);
    let backends: Vec<_> = names
        .iter()
        .map(|name| MaglevBackend { name, weight: 1 })
        .collect();
    let table = MaglevTable::build(&backends, DEFAULT_TABLE_SIZE).unwrap();
    let mut h = 0x9e37_79b9_7f4a_7c15u64;
    c.bench_function("maglev_lookup_65537", |b| {
        b.iter(|| {
            h = h.wrapping_mul(0x5851_f42d_4c95_7f2d).wrapping_add(1);
            table.lookup(black_box(h))
        })
    });
}

criterion_group!(benches, build, lookup);
criterion_main!(benches);
