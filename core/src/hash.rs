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
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = fold_mul(h ^ (u64::from_le_bytes(w) | or_word), K1);
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

/// Whether a stored (lower-case) domain equals a validated one in any case.
#[inline]
pub fn eq_domain(stored: &[u8], query: &[u8]) -> bool {
    stored.len() == query.len() && stored.iter().zip(query).all(|(&s, &q)| s == q | 0x20)
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
