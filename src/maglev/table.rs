//! The Maglev lookup table and its build.

use super::hash::{offset_hash, skip_hash};
use super::prime::is_prime;

/// The table size the paper uses and fulcrum defaults to (a prime).
pub const DEFAULT_TABLE_SIZE: usize = 65537;
/// The smallest table size accepted (`skip` needs `M - 1 >= 1`).
pub const MIN_TABLE_SIZE: usize = 2;
/// The largest table size accepted: 2^24 slots, 64 MiB of entries.
pub const MAX_TABLE_SIZE: usize = 1 << 24;
/// The entry value of a slot no backend owns (only when no backend has a weight above 0).
pub const EMPTY: u32 = u32::MAX;

/// One backend as the table builder sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaglevBackend<'a> {
    /// The stable name the permutation is derived from (e.g. `"10.0.0.7:80"` or
    /// a configured backend id). Two instances agree on a table only if they
    /// agree on the names.
    pub name: &'a [u8],
    /// Relative weight; 0 takes no table entries.
    pub weight: u32,
}

/// Why a table could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MaglevError {
    /// The table size is not a prime number (the permutations need a prime `M`).
    #[error("maglev table size {0} is not prime")]
    SizeNotPrime(usize),
    /// The table size is below the minimum: [`MIN_TABLE_SIZE`], or fewer slots
    /// than backends with a weight above 0.
    #[error("maglev table size {size} is too small (minimum {min})")]
    SizeTooSmall {
        /// The size asked for.
        size: usize,
        /// The smallest size that would be accepted for this backend set.
        min: usize,
    },
    /// The table size is above [`MAX_TABLE_SIZE`].
    #[error("maglev table size {size} is too large (maximum {max})")]
    SizeTooLarge {
        /// The size asked for.
        size: usize,
        /// [`MAX_TABLE_SIZE`].
        max: usize,
    },
    /// More backends than a `u32` index can name (`u32::MAX` is [`EMPTY`]).
    #[error("{0} backends is more than a maglev table can index")]
    TooManyBackends(usize),
}

/// A built Maglev lookup table: slot `i` holds the index (into the `backends`
/// slice given to [`MaglevTable::build`]) of the backend owning it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaglevTable {
    /// `entries.len()` is the prime table size `M`; never empty.
    entries: Box<[u32]>,
}

/// A backend's progress through its permutation during a build.
struct Turn {
    /// Index into the caller's `backends` slice.
    index: u32,
    /// The slot the backend prefers next: `permutation[index][next]`.
    position: u32,
    /// The permutation's stride, `1..M`.
    skip: u32,
    /// The backend's weight (> 0).
    weight: u64,
    /// Weight accumulated since the backend's last turn.
    credit: u64,
}

impl MaglevTable {
    /// Builds the table of `size` slots for `backends`.
    ///
    /// Off the hot path: it allocates the table and one small record per
    /// backend. Cost: about `M * ln M` probes for equal weights; with very
    /// uneven weights up to `M` rounds over the backend list.
    ///
    /// If no backend has a weight above 0 the table is all [`EMPTY`] and
    /// [`lookup`](Self::lookup) always returns `None`.
    pub fn build(backends: &[MaglevBackend<'_>], size: usize) -> Result<MaglevTable, MaglevError> {
        if size < MIN_TABLE_SIZE {
            return Err(MaglevError::SizeTooSmall {
                size,
                min: MIN_TABLE_SIZE,
            });
        }
        if size > MAX_TABLE_SIZE {
            return Err(MaglevError::SizeTooLarge {
                size,
                max: MAX_TABLE_SIZE,
            });
        }
        if !is_prime(size) {
            return Err(MaglevError::SizeNotPrime(size));
        }
        if backends.len() >= EMPTY as usize {
            return Err(MaglevError::TooManyBackends(backends.len()));
        }
        let active = backends.iter().filter(|b| b.weight > 0).count();
        if active > size {
            return Err(MaglevError::SizeTooSmall { size, min: active });
        }

        // size <= MAX_TABLE_SIZE < 2^32, so it and every slot index fit in u32,
        // and `position + skip < 2 * M` cannot overflow.
        let m = size as u64;
        let m32 = size as u32;
        let mut turns: Vec<Turn> = backends
            .iter()
            .zip(0u32..)
            .filter(|(b, _)| b.weight > 0)
            .map(|(b, index)| Turn {
                index,
                position: (offset_hash(b.name) % m) as u32,
                skip: (skip_hash(b.name) % (m - 1) + 1) as u32,
                weight: u64::from(b.weight),
                credit: 0,
            })
            .collect();
        let mut entries = vec![EMPTY; size].into_boxed_slice();
        let Some(max_weight) = turns.iter().map(|t| t.weight).max() else {
            return Ok(MaglevTable { entries });
        };

        let mut filled = 0usize;
        'rounds: loop {
            for turn in turns.iter_mut() {
                // Weighted round of turns: a backend takes a turn each time its
                // credit reaches the largest weight (so at most once a round;
                // the heaviest backends every round).
                turn.credit += turn.weight;
                if turn.credit < max_weight {
                    continue;
                }
                turn.credit -= max_weight;
                // Walk the permutation to the next free slot. The walk visits
                // every slot within M steps (skip is coprime with the prime M)
                // and a free slot exists (filled < M), so it ends.
                let mut slot = turn.position;
                while entries[slot as usize] != EMPTY {
                    slot += turn.skip;
                    if slot >= m32 {
                        slot -= m32;
                    }
                }
                entries[slot as usize] = turn.index;
                slot += turn.skip;
                if slot >= m32 {
                    slot -= m32;
                }
                turn.position = slot;
                filled += 1;
                if filled == size {
                    break 'rounds;
                }
            }
        }
        Ok(MaglevTable { entries })
    }

    /// The backend (index into the slice given to [`build`](Self::build)) for
    /// a flow hash: `entries[hash % M]`. `None` when no backend has weight > 0.
    #[inline]
    pub fn lookup(&self, hash: u64) -> Option<u32> {
        let slot = hash % self.entries.len() as u64;
        match self.entries.get(slot as usize) {
            Some(&EMPTY) | None => None,
            Some(&index) => Some(index),
        }
    }

    /// All slots: entry `i` is a backend index, or [`EMPTY`].
    pub fn entries(&self) -> &[u32] {
        &self.entries
    }

    /// The table size `M` (a prime).
    pub fn size(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests;
