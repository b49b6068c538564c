//! Primality of the table size.

/// Whether `n` is prime.
///
/// Deterministic for every `usize` (Miller–Rabin with the first twelve prime
/// bases, which is exact below 3.3 * 10^24), and fast: a hostile size from a
/// configuration file cannot make it loop for long.
pub fn is_prime(n: usize) -> bool {
    // usize is at most 64 bits on every platform Rust supports.
    let n = n as u64;
    const BASES: [u64; 12] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37];
    if n < 2 {
        return false;
    }
    for p in BASES {
        if n.is_multiple_of(p) {
            return n == p;
        }
    }
    // n is odd and > 37: n - 1 = d * 2^s with d odd.
    let s = (n - 1).trailing_zeros();
    let d = (n - 1) >> s;
    'bases: for a in BASES {
        let mut x = pow_mod(a, d, n);
        if x == 1 || x == n - 1 {
            continue;
        }
        for _ in 1..s {
            x = mul_mod(x, x, n);
            if x == n - 1 {
                continue 'bases;
            }
        }
        return false;
    }
    true
}

fn mul_mod(a: u64, b: u64, m: u64) -> u64 {
    ((u128::from(a) * u128::from(b)) % u128::from(m)) as u64
}

fn pow_mod(mut base: u64, mut exp: u64, m: u64) -> u64 {
    let mut acc = 1u64;
    base %= m;
    while exp > 0 {
        if exp & 1 == 1 {
            acc = mul_mod(acc, base, m);
        }
        base = mul_mod(base, base, m);
        exp >>= 1;
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_prime_by_trial_division(n: usize) -> bool {
        n >= 2
            && (2..)
                .take_while(|d| d * d <= n)
                .all(|d| !n.is_multiple_of(d))
    }

    #[test]
    fn agrees_with_trial_division_below_100k() {
        for n in 0..100_000 {
            assert_eq!(is_prime(n), is_prime_by_trial_division(n), "n = {n}");
        }
    }

    #[test]
    fn known_sizes() {
        assert!(is_prime(65537));
        assert!(is_prime(655_373));
        assert!(!is_prime(65536));
        assert!(!is_prime(65535));
        // Strong pseudoprimes to small bases and a large prime / composite.
        assert!(!is_prime(3_215_031_751)); // spsp to bases 2, 3, 5, 7
        assert!(!is_prime(3_825_123_056_546_413_051)); // spsp to bases 2..=23
        assert!(is_prime(18_446_744_073_709_551_557)); // largest prime below 2^64
        assert!(!is_prime(usize::MAX));
    }
}
