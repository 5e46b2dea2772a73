//! Deterministic filler bytes: the one generator behind benchmark payloads
//! and test data, so every measurement and test moves the same kind of
//! bytes (incompressible, not all equal).

use bytes::Bytes;

/// `len` bytes from a xorshift64 generator seeded by `seed`; the same
/// `(len, seed)` always gives the same bytes, different seeds differ.
pub fn pattern(len: usize, seed: u64) -> Bytes {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&state.to_le_bytes()[..take]);
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        assert_eq!(pattern(1000, 3), pattern(1000, 3));
        assert_ne!(pattern(1000, 3), pattern(1000, 4));
        assert_eq!(pattern(13, 0).len(), 13);
        assert!(pattern(0, 9).is_empty());
    }

    #[test]
    fn bytes_are_not_all_equal() {
        let p = pattern(4096, 0);
        assert!(p.iter().any(|&b| b != p[0]));
    }
}
