//! Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable
//! Software Network Load Balancer", NSDI 2016, section 3.4).
//!
//! [`MaglevTable::build`] turns a backend set into a lookup table of prime
//! size `M` (default [`DEFAULT_TABLE_SIZE`] = 65537). Each backend `i` with
//! name `n` has a permutation of the table slots:
//!
//! ```text
//! offset = offset_hash(n) % M
//! skip   = skip_hash(n) % (M - 1) + 1
//! permutation[i][j] = (offset + j * skip) % M
//! ```
//!
//! Backends take turns; on its turn a backend claims its next preferred slot
//! that is still free, until every slot is taken. With equal weights this is
//! the paper's algorithm exactly (one turn per backend per round, in the order
//! of the `backends` slice). Weights are "weighted rounds of turns": each round
//! every backend adds its weight to a credit and takes a turn when the credit
//! reaches the largest weight, so a backend of weight `w` takes `w / w_max`
//! turns per round and ends up with a share of `w / sum(w)` of the slots (to
//! within one slot per backend). A backend of weight 0 takes no turns and no
//! slots.
//!
//! The hashes ([`offset_hash`], [`skip_hash`]) are fixed functions of the
//! name bytes, so every fulcrum instance with the same configuration builds the
//! same table. Tables are built off the hot path (a control thread) and
//! published to workers, which only call [`MaglevTable::lookup`].
//!
//! The golden trace in `src/maglev/test-data/golden-3-backends.txt` pins the
//! table contents across releases; see the test `golden_trace` for how to
//! regenerate it (only ever on purpose).

mod hash;
mod prime;
mod table;

pub use hash::{offset_hash, skip_hash};
pub use prime::is_prime;
pub use table::{
    MaglevBackend, MaglevError, MaglevTable, DEFAULT_TABLE_SIZE, EMPTY, MAX_TABLE_SIZE,
    MIN_TABLE_SIZE,
};
