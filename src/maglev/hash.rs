//! The two backend-name hashes Maglev's permutations are built from.
//!
//! Several fulcrum instances behind one ECMP group must build the same lookup
//! table from the same configuration, so these hashes are part of fulcrum's
//! external behaviour: they must give the same values on every platform, in
//! every process and in every release. They are therefore fixed functions,
//! written out here, with no per-process key and no dependency on `std`'s
//! unspecified hashers.
//!
//! Both are "maglev name hash v1":
//!
//! ```text
//! h(seed, name) = fmix64(fnv1a64(seed, name))
//! fnv1a64(seed, bytes): h = seed; for b in bytes { h = (h ^ b) * 0x0000_0100_0000_01b3 }   (wrapping)
//! fmix64(k): MurmurHash3's 64-bit finaliser
//!            k ^= k >> 33; k *= 0xff51_afd7_ed55_8ccd; k ^= k >> 33;
//!            k *= 0xc4ce_b9fe_1a85_ec53; k ^= k >> 33
//! offset_hash(name) = h(0xcbf2_9ce4_8422_2325, name)   (the standard FNV-1a offset basis)
//! skip_hash(name)   = h(0x84222325_cbf29ce4, name)     (the basis with its halves swapped)
//! ```
//!
//! FNV-1a alone mixes the last bytes of a name poorly (names like `be-1`,
//! `be-2` differ only in low bits); the Murmur finaliser spreads every input
//! bit over the whole word, so `offset % M` and `skip % (M - 1)` look
//! independent. Changing any constant here changes every table: don't.

/// The FNV-1a 64-bit prime.
const FNV1A64_PRIME: u64 = 0x0000_0100_0000_01b3;
/// Seed of [`offset_hash`]: the standard FNV-1a 64-bit offset basis.
const OFFSET_SEED: u64 = 0xcbf2_9ce4_8422_2325;
/// Seed of [`skip_hash`]: the FNV offset basis with its 32-bit halves swapped.
const SKIP_SEED: u64 = 0x8422_2325_cbf2_9ce4;

/// FNV-1a over `bytes`, starting from `seed` instead of the offset basis.
pub(crate) fn fnv1a64(seed: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(seed, |h, &b| (h ^ u64::from(b)).wrapping_mul(FNV1A64_PRIME))
}

/// MurmurHash3's 64-bit finaliser (a bijection with full avalanche).
pub(crate) const fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// The paper's `h1`: a backend's `offset` is `offset_hash(name) % M`.
pub fn offset_hash(name: &[u8]) -> u64 {
    fmix64(fnv1a64(OFFSET_SEED, name))
}

/// The paper's `h2`: a backend's `skip` is `skip_hash(name) % (M - 1) + 1`.
pub fn skip_hash(name: &[u8]) -> u64 {
    fmix64(fnv1a64(SKIP_SEED, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_published_vectors() {
        // Vectors from the FNV reference test suite (Noll), FNV-1a 64-bit.
        assert_eq!(fnv1a64(OFFSET_SEED, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(OFFSET_SEED, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(OFFSET_SEED, b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn fmix64_matches_murmur3_reference() {
        assert_eq!(fmix64(0), 0);
        // fmix64(1) from the MurmurHash3 reference implementation.
        assert_eq!(fmix64(1), 0xb456_bcfc_34c2_cb2c);
    }

    #[test]
    fn name_hashes_are_frozen() {
        // Frozen values: if this fails, every Maglev table built by this
        // release differs from the tables of earlier releases. The values were
        // cross-checked with an independent Python implementation.
        assert_eq!(offset_hash(b"backend-a"), 0x30fb_157b_f569_5a01);
        assert_eq!(skip_hash(b"backend-a"), 0x1716_d017_9cba_38b0);
    }

    #[test]
    fn the_two_hashes_differ() {
        for name in [&b""[..], b"a", b"10.0.0.1:80", b"backend-2"] {
            assert_ne!(offset_hash(name), skip_hash(name));
        }
    }
}
