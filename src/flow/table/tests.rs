use super::*;
use crate::flow::{tcp_flags, FlowKey, IpAddr16, IPPROTO_TCP, IPPROTO_UDP};
use proptest::prelude::*;
use std::collections::HashMap;

const T: FlowTimeouts = FlowTimeouts {
    tcp_established: 100,
    tcp_transitory: 10,
    udp: 30,
};

fn fk(port: u16, proto: u8) -> FlowKey {
    FlowKey {
        src: IpAddr16::from_v4([192, 0, 2, 1]),
        dst: IpAddr16::from_v4([198, 51, 100, 10]),
        src_port: port,
        dst_port: 443,
        proto,
        service: 0,
    }
}

/// A test key whose hash the test controls (to force bucket collisions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct TestKey {
    id: u8,
    hash: u64,
}

impl FlowKeyT for TestKey {
    fn flow_hash(&self, _secret: &HashSecret) -> u64 {
        self.hash
    }
    fn is_tcp(&self) -> bool {
        self.id.is_multiple_of(2)
    }
}

#[test]
fn forward_entry_is_64_bytes() {
    let size = core::mem::size_of::<FlowEntry<FlowKey, u32>>();
    println!("FlowEntry<FlowKey, u32>: {size} bytes");
    assert_eq!(size, 64);
    let size = core::mem::size_of::<crate::flow::ForwardEntry>();
    println!("ForwardEntry: {size} bytes");
    assert_eq!(size, 64);
}

#[test]
fn capacity_errors() {
    assert_eq!(
        FlowTable::<FlowKey, u32>::new(0, T, 0).err(),
        Some(FlowTableError::CapacityZero)
    );
    assert_eq!(
        FlowTable::<FlowKey, u32>::new(MAX_CAPACITY + 1, T, 0).err(),
        Some(FlowTableError::CapacityTooLarge {
            capacity: MAX_CAPACITY + 1,
            max: MAX_CAPACITY
        })
    );
}

#[test]
fn insert_lookup_remove() {
    let mut t = FlowTable::new(8, T, 1).unwrap();
    assert_eq!(
        t.insert(fk(1, IPPROTO_TCP), 7u32, 0),
        InsertOutcome::Inserted
    );
    assert_eq!(t.insert(fk(2, IPPROTO_UDP), 8, 0), InsertOutcome::Inserted);
    assert_eq!(t.len(), 2);
    assert_eq!(t.lookup(&fk(1, IPPROTO_TCP), 1).copied(), Some(7));
    *t.lookup(&fk(2, IPPROTO_UDP), 1).unwrap() = 9;
    assert_eq!(t.lookup(&fk(2, IPPROTO_UDP), 2).copied(), Some(9));
    assert_eq!(t.lookup(&fk(3, IPPROTO_UDP), 2), None);
    assert_eq!(
        t.insert(fk(1, IPPROTO_TCP), 70, 3),
        InsertOutcome::Replaced { old: 7 }
    );
    assert_eq!(t.remove(&fk(1, IPPROTO_TCP)), Some(70));
    assert_eq!(t.remove(&fk(1, IPPROTO_TCP)), None);
    assert_eq!(t.len(), 1);
    let s = t.stats();
    assert_eq!((s.inserts, s.replaced, s.removed), (2, 1, 1));
}

#[test]
fn full_table_evicts_least_recently_used() {
    let mut t = FlowTable::new(3, T, 2).unwrap();
    for p in 1..=3 {
        assert_eq!(
            t.insert(fk(p, IPPROTO_UDP), u32::from(p), 0),
            InsertOutcome::Inserted
        );
    }
    assert!(t.lookup(&fk(1, IPPROTO_UDP), 1).is_some()); // 2 is now LRU
    assert_eq!(
        t.insert(fk(4, IPPROTO_UDP), 4, 2),
        InsertOutcome::Evicted {
            key: fk(2, IPPROTO_UDP),
            value: 2
        }
    );
    assert_eq!(t.len(), 3);
    assert_eq!(t.stats().evictions, 1);
    assert!(t.lookup(&fk(2, IPPROTO_UDP), 2).is_none());
    for p in [1, 3, 4] {
        assert!(t.lookup(&fk(p, IPPROTO_UDP), 2).is_some());
    }
}

#[test]
fn nothing_is_allocated_after_new() {
    let mut t = FlowTable::new(100, T, 3).unwrap();
    let ptr = t.entries.as_ptr();
    for i in 0..1000u16 {
        let _ = t.insert(fk(i, IPPROTO_UDP), u32::from(i), u32::from(i));
        if i % 3 == 0 {
            t.remove(&fk(i / 2, IPPROTO_UDP));
        }
    }
    assert_eq!(t.entries.as_ptr(), ptr);
    assert_eq!(t.entries.capacity(), 100);
    assert_eq!(t.len(), 100);
}

#[test]
fn lookup_reports_expired_entry_absent_and_insert_reclaims_it() {
    let mut t = FlowTable::new(4, T, 4).unwrap();
    let _ = t.insert(fk(1, IPPROTO_UDP), 1u32, 0);
    assert!(t.lookup(&fk(1, IPPROTO_UDP), 30).is_some()); // age == timeout: live
    assert!(t.lookup(&fk(1, IPPROTO_UDP), 61).is_none()); // age 31 > 30
                                                          // still held, so its value is handed back exactly once, by the insert that follows
    assert_eq!(t.len(), 1);
    assert_eq!(
        t.insert(fk(1, IPPROTO_UDP), 2u32, 61),
        InsertOutcome::ExpiredReclaimed {
            key: fk(1, IPPROTO_UDP),
            value: 1
        }
    );
    assert_eq!(t.len(), 1);
    assert_eq!(t.stats().expired_reclaimed, 1);
}

#[test]
fn tcp_state_selects_timeout() {
    let mut t = FlowTable::new(4, T, 5).unwrap();
    let k = fk(1, IPPROTO_TCP);
    let h = t.hash_of(&k);
    let _ = t.insert(k, 1u32, 0);
    assert_eq!(
        t.lookup_entry_hashed(h, &k, 5).unwrap().state(),
        FlowState::SynSeen
    );
    let e = t.lookup_entry_hashed(h, &k, 10).unwrap();
    assert_eq!(e.observe_tcp(tcp_flags::ACK), FlowState::Established);
    // Established: 50 units idle is fine (transitory would have expired).
    assert!(t.lookup(&k, 60).is_some());
    let e = t.lookup_entry_hashed(h, &k, 60).unwrap();
    assert_eq!(
        e.observe_tcp(tcp_flags::FIN | tcp_flags::ACK),
        FlowState::Closing
    );
    assert!(t.lookup(&k, 71).is_none()); // closing: 11 > 10
                                         // UDP keys ignore TCP flags.
    let u = fk(2, IPPROTO_UDP);
    let _ = t.insert(u, 2, 100);
    let e = t.lookup_entry_hashed(t.hash_of(&u), &u, 100).unwrap();
    assert_eq!(e.observe_tcp(tcp_flags::RST), FlowState::Established);
}

#[test]
fn observe_tcp_is_after_tcp_flags_for_every_state_and_flags() {
    // (the lookup's shortcut for established flows must change nothing)
    let mut t = FlowTable::new(8, T, 5).unwrap();
    for state in [
        FlowState::SynSeen,
        FlowState::Established,
        FlowState::Closing,
    ] {
        for proto in [IPPROTO_TCP, IPPROTO_UDP] {
            for flags in 0..=u8::MAX {
                let k = fk(1, proto);
                let _ = t.insert_with_state(k, 1u32, state, 0);
                let e = t.lookup_entry_hashed(t.hash_of(&k), &k, 0).unwrap();
                let want = if proto == IPPROTO_TCP {
                    state.after_tcp_flags(flags)
                } else {
                    state
                };
                assert_eq!(e.observe_tcp(flags), want, "{state:?} {proto} {flags:#x}");
                assert_eq!(e.state(), want);
            }
        }
    }
}

#[test]
fn time_may_wrap() {
    let mut t = FlowTable::new(4, T, 6).unwrap();
    let _ = t.insert(fk(1, IPPROTO_UDP), 1u32, u32::MAX - 5);
    assert!(t.lookup(&fk(1, IPPROTO_UDP), 20).is_some()); // age 26
    assert!(t.lookup(&fk(1, IPPROTO_UDP), 51).is_none()); // age 31
}

#[test]
fn expire_some_is_bounded_and_complete() {
    let mut t = FlowTable::new(1000, T, 7).unwrap();
    for i in 0..1000u16 {
        let _ = t.insert(fk(i, IPPROTO_UDP), 0u32, 0);
    }
    let mut seen = 0;
    let mut calls = 0;
    while !t.is_empty() {
        let n = t.expire_some(31, 8, |_, _| seen += 1);
        assert!(n <= 8);
        calls += 1;
        assert!(calls <= 125 + 1);
    }
    assert_eq!(seen, 1000);
    assert_eq!(t.stats().expired_reclaimed, 1000);
}

#[test]
fn clock_hand_finds_expired_entry_behind_live_tail() {
    let mut t = FlowTable::new(64, T, 8).unwrap();
    let k = fk(1, IPPROTO_TCP);
    let _ = t.insert_with_state(k, 0u32, FlowState::Established, 0); // LRU tail, lives 100
    for i in 2..34u16 {
        let _ = t.insert(fk(i, IPPROTO_UDP), 0, 1); // expire after 31
    }
    let mut reclaimed = 0;
    for _ in 0..(64 / 4 + 1) {
        reclaimed += t.expire_some(50, 4, |_, _| {});
    }
    assert_eq!(reclaimed, 32);
    assert_eq!(t.len(), 1);
    assert!(t.lookup(&k, 50).is_some());
}

#[test]
fn chains_are_capped() {
    let mut t = FlowTable::new(256, FlowTimeouts::DEFAULT_MS, 9).unwrap();
    for id in 0..(MAX_CHAIN as u8 + 4) {
        let outcome = t.insert(TestKey { id, hash: 42 }, u32::from(id), u32::from(id));
        if usize::from(id) < MAX_CHAIN {
            assert_eq!(outcome, InsertOutcome::Inserted);
        } else {
            // The oldest of the chain goes: ids 0, 1, 2, 3 in turn.
            let old = id - MAX_CHAIN as u8;
            assert_eq!(
                outcome,
                InsertOutcome::Evicted {
                    key: TestKey { id: old, hash: 42 },
                    value: u32::from(old)
                }
            );
        }
    }
    assert_eq!(t.len(), MAX_CHAIN);
    assert_eq!(t.stats().evictions, 4);
    let b = t.bucket_of(42);
    assert_eq!(t.find(b, &TestKey { id: 255, hash: 42 }).1, MAX_CHAIN);
}

#[test]
fn retain_and_iter() {
    let mut t = FlowTable::new(32, T, 10).unwrap();
    for i in 0..20u16 {
        let _ = t.insert(fk(i, IPPROTO_TCP), u32::from(i % 4), 0);
    }
    assert_eq!(t.iter().count(), 20);
    // Flush backend 2's flows.
    assert_eq!(t.retain(|_, v| *v != 2), 5);
    assert_eq!(t.len(), 15);
    assert!(t.iter().all(|e| *e.value() != 2));
    assert!(t.lookup(&fk(2, IPPROTO_TCP), 1).is_none());
    assert!(t.lookup(&fk(3, IPPROTO_TCP), 1).is_some());
}

#[test]
fn bucket_split_for_prefetch() {
    let mut t = FlowTable::new(16, T, 11).unwrap();
    let k = fk(1, IPPROTO_UDP);
    let b = t.bucket_of(t.hash_of(&k));
    assert!(b < 16);
    assert!(t.bucket_head(b).is_none());
    let _ = t.insert(k, 5u32, 0);
    assert_eq!(t.bucket_head(b).map(|e| *e.key()), Some(k));
    assert_eq!(t.lookup_hashed(t.hash_of(&k), &k, 1).copied(), Some(5));
    // A wrong hash (one of another bucket) only misses.
    let wrong = (1..64u64)
        .map(|d| t.hash_of(&k) ^ d)
        .find(|&h| t.bucket_of(h) != b)
        .unwrap();
    assert_eq!(t.lookup_hashed(wrong, &k, 1), None);
    assert!(t.bucket_head(usize::MAX).is_none());
}

#[test]
fn buckets_in_use_follow_the_flows() {
    // A table for two million flows holding ten thousand uses BUCKETS_PER_FLOW times
    // ten thousand buckets' heads, and every flow is still found across the splits.
    let mut t = FlowTable::new(1 << 21, T, 12).unwrap();
    assert_eq!(t.buckets_in_use(), INITIAL_BUCKETS);
    for i in 0..10_000u32 {
        let _ = t.insert(fk_n(i), i, 0);
        assert!(!t.needs_growth());
    }
    assert_eq!(t.buckets_in_use() as u64, 10_000 * BUCKETS_PER_FLOW);
    for i in 0..10_000u32 {
        assert_eq!(t.lookup(&fk_n(i), 1).copied(), Some(i), "flow {i}");
    }
    // Every bucket in use holds only flows whose bucket it is.
    for b in 0..t.buckets_in_use() {
        let mut i = t.heads[b];
        while let Some(e) = t.entries.get(i as usize) {
            assert_eq!(t.bucket_of(t.hash_of(&e.key)), b);
            i = e.chain_next;
        }
    }
    assert!(t.heads[t.buckets_in_use()..].iter().all(|&h| h == NIL));
    // Removing flows does not merge buckets again (the high-water mark stays).
    assert_eq!(t.retain(|_, v| *v < 100), 9_900);
    assert_eq!(t.buckets_in_use() as u64, 10_000 * BUCKETS_PER_FLOW);
    assert_eq!(t.lookup(&fk_n(42), 2).copied(), Some(42));
}

#[test]
fn growth_stops_at_the_head_array() {
    let mut t = FlowTable::new(100, T, 13).unwrap().with_initial_buckets(2);
    assert_eq!(t.buckets_in_use(), 2);
    for i in 0..300u32 {
        let _ = t.insert(fk_n(i), i, 0);
    }
    assert_eq!(t.len(), 100);
    assert_eq!(t.buckets_in_use(), 128); // 100.next_power_of_two()
    assert!(!t.needs_growth());
    for i in 200..300u32 {
        assert_eq!(t.lookup(&fk_n(i), 1).copied(), Some(i));
    }
}

#[test]
fn deferred_growth_keeps_buckets_valid_until_grow() {
    let mut t = FlowTable::new(4096, T, 14)
        .unwrap()
        .with_initial_buckets(8)
        .with_deferred_growth();
    // Buckets computed first, as a burst's first pass does.
    // (32 flows in 8 buckets: chains stay under MAX_CHAIN, nothing is evicted.)
    let buckets: Vec<usize> = (0..32u32)
        .map(|i| t.bucket_of(t.hash_of(&fk_n(i))))
        .collect();
    for i in 0..32u32 {
        assert_eq!(t.insert(fk_n(i), i, 0), InsertOutcome::Inserted);
    }
    assert_eq!(t.buckets_in_use(), 8, "no split before grow");
    assert!(t.needs_growth());
    for (i, &b) in buckets.iter().enumerate() {
        let got = t
            .lookup_entry_in_bucket(b, &fk_n(i as u32), 1)
            .map(|e| *e.value());
        assert_eq!(got, Some(i as u32));
    }
    // A bounded grow, then the rest.
    assert_eq!(t.grow(10), 10);
    assert_eq!(t.buckets_in_use(), 18);
    let want = 32 * BUCKETS_PER_FLOW as usize;
    assert_eq!(t.grow(usize::MAX), want - 18);
    assert_eq!(t.buckets_in_use(), want);
    assert!(!t.needs_growth());
    for i in 0..32u32 {
        let b = t.bucket_of(t.hash_of(&fk_n(i)));
        assert_eq!(
            t.lookup_entry_in_bucket(b, &fk_n(i), 2).map(|e| *e.value()),
            Some(i)
        );
    }
}

fn fk_n(n: u32) -> FlowKey {
    FlowKey {
        src: IpAddr16::from_v4(n.to_be_bytes()),
        ..fk(n as u16, IPPROTO_TCP)
    }
}

// ---- model-based property test ----

#[derive(Debug, Clone)]
enum Op {
    Insert(u8, u32),
    Lookup(u8),
    Observe(u8, u8),
    Remove(u8),
    ExpireAll,
    Advance(u8),
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0u8..10;
    prop_oneof![
        4 => (key.clone(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
        4 => key.clone().prop_map(Op::Lookup),
        2 => (key.clone(), prop_oneof![Just(tcp_flags::ACK), Just(tcp_flags::FIN), Just(tcp_flags::SYN), Just(tcp_flags::RST), any::<u8>()])
            .prop_map(|(k, f)| Op::Observe(k, f)),
        1 => key.prop_map(Op::Remove),
        1 => Just(Op::ExpireAll),
        2 => (0u8..40).prop_map(Op::Advance),
    ]
}

/// Keys 0..10 fall into 3 hashes, so chains form.
fn tk(id: u8) -> TestKey {
    TestKey {
        id,
        hash: u64::from(id % 3),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct ModelEntry {
    key: TestKey,
    value: u32,
    state: FlowState,
    last_seen: u32,
}

/// HashMap-free explicit LRU: `order[0]` is the most recently used.
struct Model {
    capacity: usize,
    order: Vec<ModelEntry>,
}

impl Model {
    fn expired(e: &ModelEntry, now: u32) -> bool {
        now.wrapping_sub(e.last_seen) > T.for_flow(e.key.is_tcp(), e.state)
    }
    fn pos(&self, k: TestKey) -> Option<usize> {
        self.order.iter().position(|e| e.key == k)
    }
    fn lookup(&mut self, k: TestKey, now: u32) -> Option<usize> {
        let p = self.pos(k)?;
        if Self::expired(&self.order[p], now) {
            // reported absent, left for the next insert or expiry to reclaim
            return None;
        }
        if self.order[p].last_seen == now {
            // Already touched this tick: stays in place.
            return Some(p);
        }
        let mut e = self.order.remove(p);
        e.last_seen = now;
        self.order.insert(0, e);
        Some(0)
    }
    fn insert(&mut self, k: TestKey, v: u32, now: u32) -> InsertOutcome<TestKey, u32> {
        let state = if k.is_tcp() {
            FlowState::SynSeen
        } else {
            FlowState::Established
        };
        let new = ModelEntry {
            key: k,
            value: v,
            state,
            last_seen: now,
        };
        let mut outcome = InsertOutcome::Inserted;
        if let Some(p) = self.pos(k) {
            let old = self.order.remove(p);
            if !Self::expired(&old, now) {
                self.order.insert(0, new);
                return InsertOutcome::Replaced { old: old.value };
            }
            outcome = InsertOutcome::ExpiredReclaimed {
                key: old.key,
                value: old.value,
            };
        }
        if self.order.len() == self.capacity {
            let victim = self.order.pop().unwrap();
            outcome = if Self::expired(&victim, now) {
                InsertOutcome::ExpiredReclaimed {
                    key: victim.key,
                    value: victim.value,
                }
            } else {
                InsertOutcome::Evicted {
                    key: victim.key,
                    value: victim.value,
                }
            };
        }
        self.order.insert(0, new);
        outcome
    }
}

/// Keys with distinct full hashes, so growth spreads them over buckets.
fn tk_spread(id: u8) -> TestKey {
    TestKey {
        id,
        hash: u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Growth from one bucket (splits after inserts, deferred or not) never loses or
    /// misplaces a flow: the table matches a map of the keys inserted and not removed.
    #[test]
    fn growth_keeps_every_flow(
        deferred in any::<bool>(),
        ops in proptest::collection::vec((0u8..48, any::<bool>(), 0usize..4), 1..300),
    ) {
        let mut table: FlowTable<TestKey, u32> = FlowTable::new(64, FlowTimeouts::DEFAULT_MS, 7)
            .unwrap()
            .with_initial_buckets(1);
        if deferred {
            table = table.with_deferred_growth();
        }
        let mut model: HashMap<u8, u32> = HashMap::new();
        for (step, (id, insert, grow)) in ops.into_iter().enumerate() {
            let k = tk_spread(id);
            if insert {
                let _ = table.insert(k, step as u32, 0);
                model.insert(id, step as u32);
            } else {
                prop_assert_eq!(table.remove(&k), model.remove(&id));
            }
            if deferred {
                table.grow(grow);
            } else {
                prop_assert!(!table.needs_growth());
            }
            prop_assert_eq!(table.len(), model.len());
            for (&id, &v) in &model {
                prop_assert_eq!(table.lookup(&tk_spread(id), 0).copied(), Some(v));
            }
        }
    }

    #[test]
    fn table_matches_lru_model(capacity in 1usize..6, ops in proptest::collection::vec(op(), 1..200)) {
        let mut table: FlowTable<TestKey, u32> = FlowTable::new(capacity, T, 0x5eed).unwrap();
        let mut model = Model { capacity, order: Vec::new() };
        let mut now = 0u32;
        for op in ops {
            match op {
                Op::Insert(id, v) => {
                    prop_assert_eq!(table.insert(tk(id), v, now), model.insert(tk(id), v, now));
                }
                Op::Lookup(id) => {
                    let got = table.lookup(&tk(id), now).copied();
                    let want = model.lookup(tk(id), now).map(|p| model.order[p].value);
                    prop_assert_eq!(got, want);
                }
                Op::Observe(id, flags) => {
                    let k = tk(id);
                    let got = table.lookup_entry_hashed(table.hash_of(&k), &k, now).map(|e| e.observe_tcp(flags));
                    let want = model.lookup(k, now).map(|p| {
                        let e = &mut model.order[p];
                        if k.is_tcp() { e.state = e.state.after_tcp_flags(flags); }
                        e.state
                    });
                    prop_assert_eq!(got, want);
                }
                Op::Remove(id) => {
                    let want = model.pos(tk(id)).map(|p| model.order.remove(p).value);
                    prop_assert_eq!(table.remove(&tk(id)), want);
                }
                Op::ExpireAll => {
                    let mut got: Vec<TestKey> = Vec::new();
                    let n = table.expire_some(now, 2 * capacity + 1, |k, _| got.push(*k));
                    let mut want: Vec<TestKey> = model.order.iter().filter(|e| Model::expired(e, now)).map(|e| e.key).collect();
                    model.order.retain(|e| !Model::expired(e, now));
                    got.sort();
                    want.sort();
                    prop_assert_eq!(n, want.len());
                    prop_assert_eq!(got, want);
                }
                Op::Advance(dt) => now = now.wrapping_add(u32::from(dt)),
            }
            // Same contents, same LRU order, sorted by last-seen.
            prop_assert_eq!(table.len(), model.order.len());
            let mut lru = Vec::new();
            let mut i = table.lru_head;
            while let Some(e) = table.entries.get(i as usize) {
                lru.push(ModelEntry { key: e.key, value: e.value, state: e.state, last_seen: e.last_seen });
                i = e.lru_next;
            }
            prop_assert_eq!(&lru, &model.order);
            prop_assert!(lru.windows(2).all(|w| w[0].last_seen >= w[1].last_seen));
            let live: HashMap<TestKey, u32> = table.iter().map(|e| (*e.key(), *e.value())).collect();
            prop_assert_eq!(live.len(), model.order.len());
        }
    }
}

/// A hit in its flow's LRU granule skips the expiry test only while the granule is
/// shorter than every timeout: with a 64 ms granule and a 30 ms UDP timeout, a flow
/// idle 40 ms inside one granule has still expired.
#[test]
fn a_granule_longer_than_a_timeout_still_expires_hits() {
    let mut t = FlowTable::<FlowKey, u32>::new(8, T, 1)
        .unwrap()
        .with_lru_granule(6);
    let k = fk(1000, IPPROTO_UDP);
    assert_eq!(t.insert(k, 7, 0), InsertOutcome::Inserted);
    assert_eq!(t.lookup(&k, 20).copied(), Some(7), "20 ms idle: live");
    assert_eq!(
        t.lookup(&k, 51),
        None,
        "31 ms idle in the same granule: expired"
    );
}

/// Hits in the granule refresh the last-seen time (expiry counts from the last packet,
/// not the granule's first), and a hit in a later granule moves the flow to the LRU
/// front (a full table then evicts the other one).
#[test]
fn granule_hits_refresh_the_flow_and_later_granules_relink_it() {
    let mut t = FlowTable::<FlowKey, u32>::new(2, T, 1)
        .unwrap()
        .with_lru_granule(2);
    let (a, b, c) = (fk(1, IPPROTO_UDP), fk(2, IPPROTO_UDP), fk(3, IPPROTO_UDP));
    assert_eq!(t.insert(a, 1, 0), InsertOutcome::Inserted);
    assert_eq!(t.insert(b, 2, 1), InsertOutcome::Inserted);
    // same granule (0..4): last seen moves to 3, so at 32 `a` is 29 ms idle, not 32
    assert_eq!(t.lookup(&a, 3).copied(), Some(1));
    assert_eq!(
        t.lookup(&a, 32).copied(),
        Some(1),
        "refreshed in its granule"
    );
    // that hit (granule 32..36) relinked `a`: `b` is the LRU tail
    assert!(matches!(
        t.insert(c, 3, 33),
        InsertOutcome::Evicted { key, .. } | InsertOutcome::ExpiredReclaimed { key, .. } if key == b
    ));
    assert_eq!(t.lookup(&a, 34).copied(), Some(1));
}
