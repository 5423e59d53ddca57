//! Small, fast, deterministic hashing for the flat tables (no randomness: the same bytes give
//! the same table layout in every process that maps them).

const K0: u64 = 0x9E37_79B9_7F4A_7C15;
const K1: u64 = 0x2D35_8DCC_AA6C_78A5;

/// Multiply-fold: the 128-bit product folded to 64 bits.
#[inline]
pub fn fold_mul(a: u64, b: u64) -> u64 {
    let r = (a as u128).wrapping_mul(b as u128);
    (r as u64) ^ ((r >> 64) as u64)
}

/// Hashes a byte string.
#[inline]
pub fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    hash_or(seed, bytes, 0)
}

/// Hashes a domain name case-insensitively: every byte with bit `0x20` set, which for the
/// hostname alphabet (letters, digits, `-`, `.`) is exactly ASCII lower-casing.
#[inline]
pub fn hash_domain(seed: u64, bytes: &[u8]) -> u64 {
    hash_or(seed, bytes, 0x20)
}

/// Hashes `bytes` with `or` set in each of them (the padding of the last word stays zero).
#[inline(always)]
fn hash_or(seed: u64, bytes: &[u8], or: u8) -> u64 {
    let or_word = u64::from_le_bytes([or; 8]);
    let mut h = seed ^ K0 ^ (bytes.len() as u64).wrapping_mul(K1);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        h = fold_mul(h ^ (word(c) | or_word), K1);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        // The last 1..=7 bytes as a little-endian word padded with zeros, `or` set in each.
        let n = rest.len();
        let pad = 8 * (8 - n) as u32;
        let w = if bytes.len() >= 8 {
            // One read of the last 8 bytes (overlapping the previous chunk), shifted down.
            word(&bytes[bytes.len() - 8..]) >> pad
        } else if n >= 4 {
            // Two 4-byte reads that overlap when `n < 8`; the shared bytes are equal.
            half(&rest[..4]) | half(&rest[n - 4..]) << (8 * (n - 4))
        } else {
            rest[0] as u64
                | (rest[n / 2] as u64) << (8 * (n / 2))
                | (rest[n - 1] as u64) << (8 * (n - 1))
        };
        h = fold_mul(h ^ (w | or_word >> pad), K0);
    }
    fold_mul(h, K1)
}

/// Eight bytes as a little-endian word.
#[inline(always)]
fn word(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(b);
    u64::from_le_bytes(w)
}

/// Four bytes as a little-endian word.
#[inline(always)]
fn half(b: &[u8]) -> u64 {
    let mut w = [0u8; 4];
    w.copy_from_slice(b);
    u32::from_le_bytes(w) as u64
}

/// Whether a stored (lower-case) domain equals a validated one in any case.
#[inline]
pub fn eq_domain(stored: &[u8], query: &[u8]) -> bool {
    eq_or(stored, query, 0x20)
}

/// Whether two byte strings are equal (names are short: eight bytes at a time beats a
/// `memcmp` call).
#[inline]
pub fn eq_bytes(a: &[u8], b: &[u8]) -> bool {
    eq_or(a, b, 0)
}

/// Whether `a` equals `b` with `or` set in each byte of `b`, compared eight bytes at a time.
#[inline(always)]
fn eq_or(a: &[u8], b: &[u8], or: u8) -> bool {
    let or_word = u64::from_le_bytes([or; 8]);
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a.iter().zip(b).all(|(&x, &y)| x == y | or);
    }
    // The last word overlaps the one before it when `n % 8 != 0`.
    let same = |i: usize| word(&a[i..i + 8]) == word(&b[i..i + 8]) | or_word;
    (0..n / 8).all(|k| same(8 * k)) && same(n - 8)
}

/// Hashes a 128-bit key with two extra small words.
#[inline]
pub fn hash_u128(seed: u64, v: u128, a: u32, b: u32) -> u64 {
    let h = fold_mul(seed ^ (v as u64) ^ K0, K1);
    let h = fold_mul(h ^ ((v >> 64) as u64), K0);
    fold_mul(h ^ (((a as u64) << 32) | b as u64), K1)
}

/// Maps a hash onto `0..n` without division.
#[inline]
pub fn reduce(h: u64, n: usize) -> usize {
    (((h as u128) * (n as u128)) >> 64) as usize
}

/// A 64-bit checksum over bytes (for snapshots): not cryptographic, catches corruption.
pub fn checksum(bytes: &[u8]) -> u64 {
    hash_bytes(0x6f75_7467_7561_7264, bytes)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn eq_bytes_is_equality() {
        let a: std::vec::Vec<u8> = (0..40u8).collect();
        for n in 0..=24 {
            for m in 0..=24 {
                assert_eq!(eq_bytes(&a[..n], &a[..m]), n == m);
            }
            for k in 0..n {
                let mut b = a[..n].to_vec();
                b[k] ^= 1;
                assert!(!eq_bytes(&a[..n], &b), "{n} {k}");
            }
        }
    }

    /// The hash as first written: the tail copied byte by byte into a zeroed word. Table
    /// layouts in policy images and state files depend on these values never changing.
    fn reference(seed: u64, bytes: &[u8], or: u8) -> u64 {
        let mut h = seed ^ K0 ^ (bytes.len() as u64).wrapping_mul(K1);
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            for (o, &b) in w.iter_mut().zip(c) {
                *o = b | or;
            }
            h = fold_mul(h ^ u64::from_le_bytes(w), K1);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            for (o, &b) in w.iter_mut().zip(rest) {
                *o = b | or;
            }
            h = fold_mul(h ^ u64::from_le_bytes(w), K0);
        }
        fold_mul(h, K1)
    }

    /// Computed apart from this code, from the algorithm's description.
    const PIN: [u64; 3] = [
        0x188f_0a29_0e28_f665,
        0x1f40_58e8_498c_68f1,
        0x1087_bfd0_bde6_c3f3,
    ];

    #[test]
    fn hash_values_never_change() {
        // Every length up to 40 at every offset of a buffer of distinct, high-bit bytes.
        let buf: [u8; 48] = core::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0xa5);
        for len in 0..=40 {
            for off in 0..=(buf.len() - len) {
                let b = &buf[off..off + len];
                for seed in [0, 1, 0x6f75_7467_7561_7264] {
                    assert_eq!(hash_bytes(seed, b), reference(seed, b, 0), "{len} {off}");
                    assert_eq!(
                        hash_domain(seed, b),
                        reference(seed, b, 0x20),
                        "{len} {off}"
                    );
                }
            }
        }
        // Values pinned from the first format (a tenant id, a domain, a checksum input).
        for (got, want) in [
            (hash_bytes(7, b"tenant-0000000"), PIN[0]),
            (hash_domain(7, b"Mail.Contoso.COM"), PIN[1]),
            (checksum(b"outguard"), PIN[2]),
        ] {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn eq_domain_compares_every_byte() {
        let reference = |s: &[u8], q: &[u8]| {
            s.len() == q.len() && s.iter().zip(q).all(|(&a, &b)| a == b | 0x20)
        };
        let stored: [u8; 40] = core::array::from_fn(|i| b'a' + (i % 26) as u8);
        for len in 0..=stored.len() {
            let s = &stored[..len];
            let mut q = [0u8; 40];
            q[..len].copy_from_slice(s);
            assert!(eq_domain(s, &q[..len]));
            // Upper case anywhere matches; any other change at any position does not.
            for i in 0..len {
                for (c, want) in [
                    (s[i] & !0x20, true),
                    (s[i] ^ 0x01, false),
                    (s[i] ^ 0x80, false),
                ] {
                    q[i] = c;
                    assert_eq!(eq_domain(s, &q[..len]), want, "{len} {i}");
                    assert_eq!(reference(s, &q[..len]), want);
                    q[i] = s[i];
                }
            }
            assert!(len == 0 || !eq_domain(s, &q[..len - 1]));
        }
    }

    proptest::proptest! {
        #[test]
        fn eq_domain_matches_the_reference(s in proptest::collection::vec(proptest::sample::select(&b"aAbB.-0"[..]), 0..40), flip: proptest::sample::Index) {
            let q: std::vec::Vec<u8> = s.iter().map(|c| c & !0x20).collect();
            let lower: std::vec::Vec<u8> = s.iter().map(|c| c | 0x20).collect();
            proptest::prop_assert!(eq_domain(&lower, &q));
            let mut r = lower.clone();
            if !r.is_empty() {
                let i = flip.index(r.len());
                r[i] ^= 0x02;
                proptest::prop_assert!(!eq_domain(&r, &q));
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn hash_matches_the_reference(seed: u64, bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..100), or in proptest::sample::select(&[0u8, 0x20][..])) {
            proptest::prop_assert_eq!(hash_or(seed, &bytes, or), reference(seed, &bytes, or));
        }
    }
}
