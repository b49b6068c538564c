//! The fixed-capacity flow table.
//!
//! # Layout
//!
//! Everything is allocated in [`FlowTable::new`]: an entry array of
//! `capacity` [`FlowEntry`] records (a `Vec` reserved up front and filled by
//! `push` up to that capacity, then recycled through a free list) and an
//! array of `u32` bucket heads, one per bucket, `capacity` rounded up to a
//! power of two (load factor at most 1). Entries link to each other by `u32`
//! index ([`NIL`] = none) inside the entry itself, so a hit touches the bucket
//! head and then (usually) one entry:
//!
//! - `chain_next`: the next entry in the same bucket (or in the free list);
//! - `lru_prev` / `lru_next`: a doubly linked list of live entries from most to
//!   least recently used, at the granularity of the time unit: a hit on an
//!   entry already seen at the same `now` does not relink it, so the list is
//!   always sorted by last-seen time (newest first).
//!
//! The bucket is the low bits of the key's hash keyed by a per-table `seed` the
//! caller supplies (e.g. random at start, [`FlowKeyT::flow_hash`]): without the
//! seed an attacker who knows the hash function could pick tuples that share a
//! bucket.
//!
//! # Buckets in use grow with the flows (linear hashing)
//!
//! The head array is allocated for the full capacity, but only a prefix of it is
//! in use: [`INITIAL_BUCKETS`] at first, then one more bucket each time the live
//! entries outnumber the buckets in use (Litwin's linear hashing: bucket `s` is
//! split into `s` and `s + 2^level`, moving the entries whose hash now says so;
//! a bucket index is `h & (2^(level+1) - 1)`, or `h & (2^level - 1)` when that
//! bucket is not yet in use). Growth keeps [`BUCKETS_PER_FLOW`] buckets per live
//! flow until the whole array is in use (a load of 1/8: new flows go to the head of
//! their chain, so a hit finds its flow past the head when a later flow shares its
//! bucket, a mispredicted branch each time: callgrind counted 3% of hits on the bench's
//! 10k flows, 12% at 1/4; 8 buckets a flow forwarded 3% more packets a core-second
//! than 4, 16 no more than 8),
//! and the heads a lookup can touch span what the table's high-water mark of flows
//! needs, not its capacity: ten thousand flows in a table for two million use
//! 320 KiB of heads, not 8 MiB, which keeps them in L2 next to the entries (on the
//! bench harness, +15% packets per core-second at 10k flows). Buckets are never
//! merged again (the prefix follows the high-water mark); nothing is allocated.
//!
//! A split moves entries between buckets, so a bucket from
//! [`bucket_of`](FlowTable::bucket_of) is valid until the next split. By default
//! an insert splits as needed before it returns; a table made
//! [`with_deferred_growth`](FlowTable::with_deferred_growth) splits only when its
//! owner calls [`grow`](FlowTable::grow), so a burst can compute every packet's
//! bucket first, insert while it finishes them, and grow after the burst.
//! Chains are also capped at [`MAX_CHAIN`] entries (an insert into a full
//! chain evicts that chain's least recently used entry), so even full 64-bit
//! hash collisions cost at most `MAX_CHAIN` key compares per lookup.
//!
//! # Time and expiry
//!
//! The table never reads a clock: each call takes `now`, a `u32` in the
//! caller's coarse unit (fulcrum: milliseconds since start), which must not go
//! backwards for one table. Ages are `now.wrapping_sub(last_seen)`, so `now`
//! may wrap as long as entries are reclaimed within 2^31 units (expiry keeps
//! them far younger). An entry idle longer than its timeout
//! ([`FlowTimeouts::for_flow`]) is expired: lookups treat it as absent and
//! reclaim it on the spot.
//!
//! The rest are reclaimed incrementally by [`FlowTable::expire_some`], called
//! once per burst with a small budget of entries to examine; there is no
//! stop-the-world sweep. It first pops expired entries off the LRU tail (the
//! oldest entries, so normally the first to expire), stopping at the first
//! live one; whatever budget remains advances a clock hand over the entry
//! array. Because timeouts differ per state, an expired short-timeout entry
//! can sit behind a live long-timeout entry in LRU order; the hand reaches
//! every slot within `capacity / budget` calls, which bounds how late such an
//! entry is reclaimed. A full table evicts its LRU tail on insert (counting an
//! eviction, or an expiry if the tail had expired).

use super::key::{FlowKeyT, HashSecret};
use super::state::{FlowState, FlowTimeouts};

/// The "no entry" index.
pub const NIL: u32 = u32::MAX;
/// The largest capacity accepted (2^28 entries).
pub const MAX_CAPACITY: usize = 1 << 28;
/// The longest bucket chain; inserting into a chain this long evicts the
/// chain's least recently used entry.
pub const MAX_CHAIN: usize = 16;
/// Buckets in use when a table is made (all of them for smaller tables).
pub const INITIAL_BUCKETS: usize = 1024;
/// Buckets in use per live flow that growth keeps (while the head array has room).
pub const BUCKETS_PER_FLOW: u64 = 8;

/// Why a table could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlowTableError {
    /// A table must hold at least one entry.
    #[error("flow table capacity must be at least 1")]
    CapacityZero,
    /// The capacity is above [`MAX_CAPACITY`].
    #[error("flow table capacity {capacity} is above the maximum {max}")]
    CapacityTooLarge {
        /// The capacity asked for.
        capacity: usize,
        /// [`MAX_CAPACITY`].
        max: usize,
    },
}

/// One flow: key, value, TCP state, last-seen time and the table's links.
///
/// With [`FlowKey`](super::FlowKey) and a `u32` value this is 64 bytes, aligned to a
/// cache line so that a lookup touches one line per entry (unaligned, most entries
/// straddle two). Larger entries (the NAT reverse table's) round up to 128 bytes.
#[derive(Debug, Clone, Copy)]
#[repr(align(64))]
pub struct FlowEntry<K, V> {
    key: K,
    value: V,
    last_seen: u32,
    /// Next entry in the bucket chain, or in the free list.
    chain_next: u32,
    /// Towards the most recently used end.
    lru_prev: u32,
    /// Towards the least recently used end.
    lru_next: u32,
    state: FlowState,
    live: bool,
}

impl<K: FlowKeyT, V: Copy> FlowEntry<K, V> {
    /// The flow's key.
    pub fn key(&self) -> &K {
        &self.key
    }
    /// The value stored with the flow.
    pub fn value(&self) -> &V {
        &self.value
    }
    /// The value stored with the flow, writable.
    pub fn value_mut(&mut self) -> &mut V {
        &mut self.value
    }
    /// The flow's TCP state.
    pub fn state(&self) -> FlowState {
        self.state
    }
    /// When the flow was last looked up or inserted (caller's unit).
    pub fn last_seen(&self) -> u32 {
        self.last_seen
    }
    /// Advances the TCP state with the flags of a packet of this flow
    /// ([`FlowState::after_tcp_flags`]); no-op for non-TCP keys. Returns the
    /// new state.
    pub fn observe_tcp(&mut self, flags: u8) -> FlowState {
        // most packets: an established flow that this packet does not close stays as it
        // is (whatever its protocol), with no store
        if self.state == FlowState::Established
            && flags & (crate::flow::tcp_flags::FIN | crate::flow::tcp_flags::RST) == 0
        {
            return self.state;
        }
        if self.key.is_tcp() {
            self.state = self.state.after_tcp_flags(flags);
        }
        self.state
    }
}

/// What [`FlowTable::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum InsertOutcome<K, V> {
    /// Inserted into a free slot.
    Inserted,
    /// The key was already live: its value was replaced (state and last-seen
    /// reset as for a new flow); `old` is the previous value.
    Replaced {
        /// The value the flow held before.
        old: V,
    },
    /// Inserted after evicting a live entry (the table, or the key's bucket
    /// chain, was full): the least recently used one.
    Evicted {
        /// The evicted flow's key.
        key: K,
        /// The evicted flow's value.
        value: V,
    },
    /// Inserted after reclaiming an expired entry (the same key, or the LRU
    /// tail of a full table).
    ExpiredReclaimed {
        /// The expired flow's key.
        key: K,
        /// The expired flow's value.
        value: V,
    },
}

/// Counters of a table's life (monotonic).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// New entries created by inserts (not counting replacements).
    pub inserts: u64,
    /// Inserts that replaced the value of a live entry.
    pub replaced: u64,
    /// Live entries evicted to make room.
    pub evictions: u64,
    /// Expired entries reclaimed (by lookup, insert or `expire_some`).
    pub expired_reclaimed: u64,
    /// Entries removed by `remove` or `retain`.
    pub removed: u64,
}

/// A fixed-capacity flow table with LRU eviction and idle timeouts; see the
/// module documentation for the layout and the expiry design.
#[derive(Debug, Clone)]
pub struct FlowTable<K, V> {
    /// Never grows past `capacity` (reserved in `new`).
    entries: Vec<FlowEntry<K, V>>,
    /// Bucket heads; `heads.len()` is a power of two, `heads[..active]` in use.
    heads: Box<[u32]>,
    /// Buckets in use: `low_mask + 1 <= active <= 2 * (low_mask + 1)`, and at most
    /// `heads.len()`.
    active: u64,
    /// `2^level - 1`.
    low_mask: u64,
    /// `2^(level+1) - 1`.
    high_mask: u64,
    /// Whether inserts leave splitting to [`grow`](Self::grow).
    deferred_growth: bool,
    capacity: usize,
    secret: HashSecret,
    timeouts: FlowTimeouts,
    len: usize,
    free_head: u32,
    /// Most recently used.
    lru_head: u32,
    /// Least recently used.
    lru_tail: u32,
    /// Next slot the expiry clock hand examines.
    hand: u32,
    /// log2 of the LRU granule in ms: a hit relinks its entry only when its last-seen
    /// time is in an earlier granule than `now` (see [`with_lru_granule`](Self::with_lru_granule)).
    lru_shift: u32,
    /// `2^lru_shift` when a granule is shorter than every timeout, else 0: a hit whose
    /// last-seen time is in `now`'s granule (`(now ^ last_seen) < fresh_window`) is
    /// younger than any timeout and needs no relink, so it skips both tests.
    fresh_window: u32,
    stats: FlowStats,
}

/// [`FlowTable::fresh_window`] for a granule of `2^shift` units: the granule when every
/// age inside it (at most `2^shift - 1`) is within every timeout, else 0 (no hit is
/// fresh; each takes the expiry test).
fn fresh_window(shift: u32, t: &FlowTimeouts) -> u32 {
    let granule = 1u32 << shift;
    if granule - 1 <= t.shortest() {
        granule
    } else {
        0
    }
}

impl<K: FlowKeyT, V: Copy> FlowTable<K, V> {
    /// Creates a table for `capacity` flows, allocating all its memory now.
    ///
    /// `seed` keys the hash the buckets come from (pick it at random per process;
    /// the table never reads randomness itself).
    pub fn new(
        capacity: usize,
        timeouts: FlowTimeouts,
        seed: u64,
    ) -> Result<FlowTable<K, V>, FlowTableError> {
        if capacity == 0 {
            return Err(FlowTableError::CapacityZero);
        }
        if capacity > MAX_CAPACITY {
            return Err(FlowTableError::CapacityTooLarge {
                capacity,
                max: MAX_CAPACITY,
            });
        }
        let buckets = capacity.next_power_of_two();
        // Huge pages before the first touch: lookups land on random buckets and entries,
        // and with 4 KiB pages nearly every one of them also misses the TLB.
        let mut entries = Vec::with_capacity(capacity);
        fulcrum_hint::advise_huge_pages(entries.spare_capacity_mut());
        let mut heads = Vec::with_capacity(buckets);
        fulcrum_hint::advise_huge_pages(heads.spare_capacity_mut());
        heads.resize(buckets, NIL);
        let initial = buckets.min(INITIAL_BUCKETS) as u64;
        Ok(FlowTable {
            entries,
            heads: heads.into_boxed_slice(),
            active: initial,
            low_mask: initial - 1,
            high_mask: 2 * initial - 1,
            deferred_growth: false,
            capacity,
            secret: HashSecret::from_seed(seed),
            timeouts,
            len: 0,
            free_head: NIL,
            lru_head: NIL,
            lru_tail: NIL,
            hand: 0,
            lru_shift: 0,
            fresh_window: fresh_window(0, &timeouts),
            stats: FlowStats::default(),
        })
    }

    /// Keeps the LRU order at a granule of `2^shift` ms instead of 1 ms: a hit relinks
    /// its entry to the front only the first time the flow is seen in a granule. The
    /// relink writes three entries (the flow's and its two LRU neighbours, random cache
    /// lines at a million flows); at a granule of about a second a busy flow pays it
    /// about once a second instead of once a packet. The list stays sorted by granule,
    /// so the LRU tail (eviction, expiry) is exact to within one granule; lookups still
    /// judge expiry on the exact last-seen time. `shift` is capped at 16 (65 s).
    pub fn with_lru_granule(mut self, shift: u32) -> Self {
        self.lru_shift = shift.min(16);
        self.fresh_window = fresh_window(self.lru_shift, &self.timeouts);
        self
    }

    /// Starts an empty table with `buckets` buckets in use (rounded up to a power of
    /// two, at most the capacity's) instead of [`INITIAL_BUCKETS`]; a table that
    /// already holds entries is returned unchanged. Tests use it to exercise growth
    /// in small tables.
    pub fn with_initial_buckets(mut self, buckets: usize) -> Self {
        if self.entries.is_empty() {
            let n = buckets.max(1).next_power_of_two().min(self.heads.len()) as u64;
            self.active = n;
            self.low_mask = n - 1;
            self.high_mask = 2 * n - 1;
        }
        self
    }

    /// Leaves splitting buckets to the owner's calls of [`grow`](Self::grow), so
    /// buckets computed by [`bucket_of`](Self::bucket_of) stay valid across
    /// inserts until then (see the module documentation). Between two calls the
    /// load may rise above one flow per bucket: chains grow longer, lookups stay
    /// correct.
    pub fn with_deferred_growth(mut self) -> Self {
        self.deferred_growth = true;
        self
    }

    /// The buckets in use (the prefix of the head array lookups touch).
    pub fn buckets_in_use(&self) -> usize {
        self.active as usize
    }

    /// Whether the buckets in use are fewer than [`BUCKETS_PER_FLOW`] per live entry
    /// and more can be used.
    #[inline]
    pub fn needs_growth(&self) -> bool {
        (self.len as u64) * BUCKETS_PER_FLOW > self.active && self.active < self.heads.len() as u64
    }

    /// Splits buckets until there are [`BUCKETS_PER_FLOW`] in use per live entry (or
    /// every bucket is), at most `budget` of them; returns how many were split. Each
    /// split walks one chain (about one entry) and rehashes its keys. Any bucket
    /// computed before the call may be stale after it.
    pub fn grow(&mut self, budget: usize) -> usize {
        let mut done = 0;
        while done < budget && self.needs_growth() {
            self.split_next();
            done += 1;
        }
        done
    }

    /// Whether a hit at `now` on an entry last seen at `last_seen` must relink it.
    #[inline]
    fn needs_relink(&self, last_seen: u32, now: u32) -> bool {
        last_seen >> self.lru_shift != now >> self.lru_shift
    }

    /// Live (and not yet reclaimed expired) entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The fixed number of entries the table holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The counters.
    pub fn stats(&self) -> FlowStats {
        self.stats
    }

    /// The timeouts the table was created with.
    pub fn timeouts(&self) -> FlowTimeouts {
        self.timeouts
    }

    /// The key's hash under this table's secret ([`FlowKeyT::flow_hash`]): what
    /// [`bucket_of`](Self::bucket_of) and the `_hashed` lookups take.
    #[inline(always)]
    pub fn hash_of(&self, key: &K) -> u64 {
        key.flow_hash(&self.secret)
    }

    /// The bucket a flow hash ([`hash_of`](Self::hash_of)) falls in, so a worker can
    /// compute all buckets of a burst (and prefetch them) before looking any flow up.
    #[inline(always)]
    pub fn bucket_of(&self, hash: u64) -> usize {
        let b = hash & self.high_mask;
        // The upper half's buckets not yet split off still live in the lower half. Which
        // half is the hash's coin toss while the table grows: a branch on it is
        // mispredicted for about every other packet, a select never is.
        std::hint::select_unpredictable(b < self.active, b, b & self.low_mask) as usize
    }

    /// The first entry of a bucket's chain (what to prefetch), if any.
    #[inline]
    pub fn bucket_head(&self, bucket: usize) -> Option<&FlowEntry<K, V>> {
        let head = *self.heads.get(bucket)?;
        self.entries.get(head as usize)
    }

    /// Starts loading the head of `bucket` ([`bucket_of`](Self::bucket_of)) into the
    /// cache (step 1 of a burst's prefetch; the lookup itself comes later).
    #[inline]
    pub fn prefetch_bucket(&self, bucket: usize) {
        if let Some(head) = self.heads.get(bucket) {
            fulcrum_hint::prefetch(head);
        }
    }

    /// Starts loading the first entry of `bucket` (step 2, once step 1 had time to bring
    /// the head in; it reads the head).
    #[inline]
    pub fn prefetch_entry(&self, bucket: usize) {
        let head = self.heads.get(bucket).copied().unwrap_or(NIL);
        if let Some(e) = self.entries.get(head as usize) {
            fulcrum_hint::prefetch(e);
        }
    }

    /// Looks a flow up: refreshes its last-seen time, makes it the most
    /// recently used (unless it was already seen in this LRU granule, 1 ms unless
    /// [`with_lru_granule`](Self::with_lru_granule) says otherwise) and returns its value. An expired flow is
    /// reported absent (and reclaimed by the next insert or `expire_some`).
    #[inline]
    pub fn lookup(&mut self, key: &K, now: u32) -> Option<&mut V> {
        self.lookup_hashed(self.hash_of(key), key, now)
    }

    /// [`lookup`](Self::lookup) with the key's precomputed
    /// [`hash_of`](Self::hash_of). A wrong hash only misses.
    #[inline]
    pub fn lookup_hashed(&mut self, hash: u64, key: &K, now: u32) -> Option<&mut V> {
        self.lookup_entry_hashed(hash, key, now)
            .map(FlowEntry::value_mut)
    }

    /// [`lookup_hashed`](Self::lookup_hashed) returning the whole entry, to
    /// read or advance the TCP state ([`FlowEntry::observe_tcp`]).
    #[inline]
    pub fn lookup_entry_hashed(
        &mut self,
        hash: u64,
        key: &K,
        now: u32,
    ) -> Option<&mut FlowEntry<K, V>> {
        self.lookup_entry_in_bucket(self.bucket_of(hash), key, now)
    }

    /// [`lookup_entry_hashed`](Self::lookup_entry_hashed) with the bucket already
    /// computed ([`bucket_of`](Self::bucket_of) of the key's hash), as a burst's
    /// prefetch pass has it.
    #[inline]
    pub fn lookup_entry_in_bucket(
        &mut self,
        bucket: usize,
        key: &K,
        now: u32,
    ) -> Option<&mut FlowEntry<K, V>> {
        let (index, _) = self.find(bucket, key);
        // Nearly every hit: the flow was seen earlier in `now`'s LRU granule, so it is
        // younger than any timeout and already in the granule's group at the LRU front
        // (a few instructions instead of the two tests' 17). (NIL, a miss, is past
        // every slot.)
        if (now ^ self.entries.get(index as usize)?.last_seen) >= self.fresh_window {
            return self.stale_hit(index, now);
        }
        let e = self.entries.get_mut(index as usize)?;
        e.last_seen = now;
        Some(e)
    }

    /// [`lookup_entry_in_bucket`](Self::lookup_entry_in_bucket)'s hit on entry `index`
    /// last seen in an earlier granule than `now`: `None` if it expired, else relinked
    /// to the LRU front (once a granule per flow, so out of line).
    #[inline(never)]
    fn stale_hit(&mut self, index: u32, now: u32) -> Option<&mut FlowEntry<K, V>> {
        let e = self.entries.get(index as usize)?;
        if self.entry_expired(e, now) {
            // Left in place: the insert that usually follows reclaims it and reports
            // its value (ExpiredReclaimed), as expire_some does, so whatever the flow
            // held (a backend's active-flow count) is released exactly once.
            return None;
        }
        // Within one tick of `now` the entry is already in the tick's group
        // at the front of the LRU list: skip the relink (it touches two other
        // entries, i.e. up to two cache misses). The list stays sorted by
        // last-seen time, which is what eviction and expiry rely on.
        if self.needs_relink(e.last_seen, now) {
            self.lru_move_to_front(index);
        }
        let entry = self.entries.get_mut(index as usize)?;
        entry.last_seen = now;
        Some(entry)
    }

    /// Inserts a flow (or replaces a live flow's value). New TCP flows start in
    /// [`FlowState::SynSeen`], others in [`FlowState::Established`]. A full
    /// table evicts its least recently used entry; nothing is refused.
    pub fn insert(&mut self, key: K, value: V, now: u32) -> InsertOutcome<K, V> {
        let state = if key.is_tcp() {
            FlowState::SynSeen
        } else {
            FlowState::Established
        };
        self.insert_with_state(key, value, state, now)
    }

    /// [`insert`](Self::insert) with an explicit initial state (e.g.
    /// `Established` for a TCP flow picked up mid-stream).
    pub fn insert_with_state(
        &mut self,
        key: K,
        value: V,
        state: FlowState,
        now: u32,
    ) -> InsertOutcome<K, V> {
        let bucket = self.bucket_of(self.hash_of(&key));
        let (index, chain_len) = self.find(bucket, &key);
        let mut outcome = InsertOutcome::Inserted;
        if index != NIL {
            if !self.is_expired(index, now) {
                let Some(entry) = self.entries.get_mut(index as usize) else {
                    return InsertOutcome::Inserted; // unreachable: find returns valid indices
                };
                let old = entry.value;
                entry.value = value;
                entry.state = state;
                entry.last_seen = now;
                self.lru_move_to_front(index);
                self.stats.replaced += 1;
                return InsertOutcome::Replaced { old };
            }
            outcome = self.reclaim(index, bucket, now);
        } else if chain_len >= MAX_CHAIN {
            let victim = self.chain_oldest(bucket, now);
            outcome = self.reclaim(victim, bucket, now);
        }
        if self.len == self.capacity {
            let victim = self.lru_tail;
            let victim_bucket = self.bucket_of_index(victim);
            outcome = self.reclaim(victim, victim_bucket, now);
        }
        let Some(index) = self.allocate() else {
            // Unreachable: a slot was freed above when the table was full.
            return outcome;
        };
        let new = FlowEntry {
            key,
            value,
            last_seen: now,
            chain_next: self.heads.get(bucket).copied().unwrap_or(NIL),
            lru_prev: NIL,
            lru_next: NIL,
            state,
            live: true,
        };
        match self.entries.get_mut(index as usize) {
            Some(slot) => *slot = new,
            None => self.entries.push(new), // index == entries.len() < capacity: no realloc
        }
        if let Some(head) = self.heads.get_mut(bucket) {
            *head = index;
        }
        self.lru_push_front(index);
        self.len += 1;
        self.stats.inserts += 1;
        if !self.deferred_growth {
            self.grow(2 * BUCKETS_PER_FLOW as usize);
        }
        outcome
    }

    /// The live entry of `key` without refreshing it (last-seen time and LRU order
    /// stay as they are); None if absent or expired. For looking at a flow from
    /// outside its packets (connection outcomes, audits).
    pub fn peek_mut(&mut self, key: &K, now: u32) -> Option<&mut FlowEntry<K, V>> {
        let bucket = self.bucket_of(self.hash_of(key));
        let (index, _) = self.find(bucket, key);
        if index == NIL || self.is_expired(index, now) {
            return None;
        }
        self.entries.get_mut(index as usize)
    }

    /// Removes a flow, returning its value (also if it had expired but was
    /// not yet reclaimed, so resources tied to it can be released).
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let bucket = self.bucket_of(self.hash_of(key));
        let (index, _) = self.find(bucket, key);
        let value = self.entries.get(index as usize)?.value;
        self.unlink(index, bucket);
        self.stats.removed += 1;
        Some(value)
    }

    /// Reclaims expired entries, examining at most `budget` entries (call it
    /// once per burst with a small budget, e.g. 8). `on_expired` sees each
    /// reclaimed flow (to release what it holds). Returns how many were
    /// reclaimed. A budget of at least `len() + capacity() + 1` reclaims every
    /// expired entry.
    pub fn expire_some(
        &mut self,
        now: u32,
        budget: usize,
        mut on_expired: impl FnMut(&K, &V),
    ) -> usize {
        let mut examined = 0;
        let mut reclaimed = 0;
        // 1. The LRU tail: the oldest entries.
        while examined < budget && self.lru_tail != NIL {
            examined += 1;
            let tail = self.lru_tail;
            if !self.is_expired(tail, now) {
                break;
            }
            if let Some(e) = self.entries.get(tail as usize) {
                on_expired(&e.key, &e.value);
            }
            let bucket = self.bucket_of_index(tail);
            self.unlink(tail, bucket);
            reclaimed += 1;
        }
        // 2. The clock hand, for expired entries behind a live LRU tail.
        let slots = self.entries.len() as u32;
        while examined < budget && slots > 0 && self.len > 0 {
            examined += 1;
            let index = if self.hand < slots { self.hand } else { 0 };
            self.hand = index + 1;
            let Some(e) = self.entries.get(index as usize) else {
                continue;
            };
            if e.live && self.is_expired(index, now) {
                on_expired(&e.key, &e.value);
                let bucket = self.bucket_of_index(index);
                self.unlink(index, bucket);
                reclaimed += 1;
            }
        }
        self.stats.expired_reclaimed += reclaimed as u64;
        reclaimed
    }

    /// The entries held, live or expired-but-not-reclaimed, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = &FlowEntry<K, V>> + '_ {
        self.entries.iter().filter(|e| e.live)
    }

    /// Keeps only the flows for which `keep` returns true (e.g. to flush a
    /// removed backend's flows). O(capacity): control side, not per packet.
    /// Returns how many were removed.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) -> usize {
        let mut removed = 0;
        for index in 0..self.entries.len() as u32 {
            let Some(e) = self.entries.get_mut(index as usize) else {
                break;
            };
            if e.live && !keep(&e.key, &mut e.value) {
                let bucket = self.bucket_of_index(index);
                self.unlink(index, bucket);
                removed += 1;
            }
        }
        self.stats.removed += removed as u64;
        removed
    }

    // ---- internals ----

    /// Splits the next bucket (`active - 2^level`) into itself and `active`, keeping
    /// each chain's order, and takes the new bucket into use.
    fn split_next(&mut self) {
        let low = self.low_mask + 1;
        let (old, new) = ((self.active - low) as usize, self.active as usize);
        let mut index = self.heads.get(old).copied().unwrap_or(NIL);
        self.active += 1;
        // The chains being rebuilt: the last entry appended to each (NIL: none yet).
        let mut tails = [NIL, NIL];
        for b in [old, new] {
            if let Some(h) = self.heads.get_mut(b) {
                *h = NIL;
            }
        }
        let mut walked = 0;
        while walked <= self.capacity {
            let Some(e) = self.entries.get(index as usize) else {
                break;
            };
            let next = e.chain_next;
            let b = self.bucket_of(self.hash_of(&e.key));
            let side = usize::from(b == new);
            match self.entries.get_mut(tails[side] as usize) {
                Some(tail) => tail.chain_next = index,
                None => {
                    if let Some(h) = self.heads.get_mut([old, new][side]) {
                        *h = index;
                    }
                }
            }
            if let Some(e) = self.entries.get_mut(index as usize) {
                e.chain_next = NIL;
            }
            tails[side] = index;
            index = next;
            walked += 1;
        }
        if self.active == 2 * low {
            self.low_mask = self.high_mask;
            self.high_mask = 2 * self.high_mask + 1;
        }
    }

    /// The entry holding `key` in `bucket` (or NIL), and the chain length
    /// walked (the full chain when the key is absent).
    #[inline]
    fn find(&self, bucket: usize, key: &K) -> (u32, usize) {
        let mut index = self.heads.get(bucket).copied().unwrap_or(NIL);
        // The chain's head first, outside the loop: it is the flow nearly always, and
        // the loop's copies of the key (hoisted to the stack) cost more than comparing
        // the head twice when it is not (7 instructions a packet; the same peel with
        // the loop starting past the head compiled to 5 more).
        if let Some(head) = self.entries.get(index as usize) {
            if head.key == *key {
                return (index, 0);
            }
        }
        let mut walked = 0;
        // A chain never exceeds `capacity` entries; the bound guards the loop
        // against a corrupted chain anyway.
        while walked <= self.capacity {
            let Some(e) = self.entries.get(index as usize) else {
                break;
            };
            if e.key == *key {
                return (index, walked);
            }
            walked += 1;
            index = e.chain_next;
        }
        (NIL, walked)
    }

    fn is_expired(&self, index: u32, now: u32) -> bool {
        match self.entries.get(index as usize) {
            Some(e) => self.entry_expired(e, now),
            None => false,
        }
    }

    /// Whether entry `e` (of this table) is idle past its timeout at `now`.
    #[inline(always)]
    fn entry_expired(&self, e: &FlowEntry<K, V>, now: u32) -> bool {
        now.wrapping_sub(e.last_seen) > self.timeouts.for_flow(e.key.is_tcp(), e.state)
    }

    fn bucket_of_index(&self, index: u32) -> usize {
        match self.entries.get(index as usize) {
            Some(e) => self.bucket_of(self.hash_of(&e.key)),
            None => 0,
        }
    }

    /// The least recently used entry of a bucket's chain (largest age at `now`).
    fn chain_oldest(&self, bucket: usize, now: u32) -> u32 {
        let mut index = self.heads.get(bucket).copied().unwrap_or(NIL);
        let mut oldest = index;
        let mut oldest_age = 0u32;
        let mut walked = 0;
        while let Some(e) = self.entries.get(index as usize) {
            let age = now.wrapping_sub(e.last_seen);
            if walked == 0 || age > oldest_age {
                oldest = index;
                oldest_age = age;
            }
            walked += 1;
            if walked > self.capacity {
                break;
            }
            index = e.chain_next;
        }
        oldest
    }

    /// Removes entry `index` (live, in `bucket`) to make room, reporting it.
    fn reclaim(&mut self, index: u32, bucket: usize, now: u32) -> InsertOutcome<K, V> {
        let Some(e) = self.entries.get(index as usize).copied() else {
            return InsertOutcome::Inserted;
        };
        let expired = self.is_expired(index, now);
        self.unlink(index, bucket);
        if expired {
            self.stats.expired_reclaimed += 1;
            InsertOutcome::ExpiredReclaimed {
                key: e.key,
                value: e.value,
            }
        } else {
            self.stats.evictions += 1;
            InsertOutcome::Evicted {
                key: e.key,
                value: e.value,
            }
        }
    }

    /// A free slot index: from the free list, else the next never-used slot.
    fn allocate(&mut self) -> Option<u32> {
        if self.free_head != NIL {
            let index = self.free_head;
            self.free_head = self.entries.get(index as usize)?.chain_next;
            return Some(index);
        }
        if self.entries.len() < self.capacity {
            return Some(self.entries.len() as u32);
        }
        None
    }

    /// Takes live entry `index` out of its bucket chain and the LRU list and
    /// puts it on the free list.
    fn unlink(&mut self, index: u32, bucket: usize) {
        let Some(e) = self.entries.get(index as usize) else {
            return;
        };
        if !e.live {
            return;
        }
        let next = e.chain_next;
        // Chain: find the predecessor.
        let mut cursor = self.heads.get(bucket).copied().unwrap_or(NIL);
        if cursor == index {
            if let Some(h) = self.heads.get_mut(bucket) {
                *h = next;
            }
        } else {
            let mut walked = 0;
            while let Some(c) = self.entries.get(cursor as usize) {
                if c.chain_next == index {
                    if let Some(c) = self.entries.get_mut(cursor as usize) {
                        c.chain_next = next;
                    }
                    break;
                }
                cursor = c.chain_next;
                walked += 1;
                if walked > self.capacity {
                    break;
                }
            }
        }
        self.lru_unlink(index);
        if let Some(e) = self.entries.get_mut(index as usize) {
            e.live = false;
            e.chain_next = self.free_head;
        }
        self.free_head = index;
        self.len -= 1;
    }

    fn lru_unlink(&mut self, index: u32) {
        let Some(e) = self.entries.get(index as usize) else {
            return;
        };
        let (prev, next) = (e.lru_prev, e.lru_next);
        match self.entries.get_mut(prev as usize) {
            Some(p) => p.lru_next = next,
            None => self.lru_head = next,
        }
        match self.entries.get_mut(next as usize) {
            Some(n) => n.lru_prev = prev,
            None => self.lru_tail = prev,
        }
    }

    fn lru_push_front(&mut self, index: u32) {
        let old_head = self.lru_head;
        if let Some(e) = self.entries.get_mut(index as usize) {
            e.lru_prev = NIL;
            e.lru_next = old_head;
        }
        match self.entries.get_mut(old_head as usize) {
            Some(h) => h.lru_prev = index,
            None => self.lru_tail = index,
        }
        self.lru_head = index;
    }

    #[inline]
    fn lru_move_to_front(&mut self, index: u32) {
        if self.lru_head != index {
            self.lru_unlink(index);
            self.lru_push_front(index);
        }
    }
}

#[cfg(test)]
mod tests;
