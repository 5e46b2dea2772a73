//! Self-checking objects: a 32-byte header (magic, object id, seed,
//! checksum of the body) before a body generated from the seed, so any
//! reader can tell a whole, right object from a truncated, stale or
//! foreign one without keeping a copy.

use proxystore::Bytes;

/// The header's length: every object is at least this long.
pub(crate) const HEADER: usize = 32;
const MAGIC: u64 = u64::from_le_bytes(*b"PSLOAD01");

/// What is wrong with an object read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Damage {
    /// Not the length put.
    Length,
    /// No header, or another object's.
    Header,
    /// The body does not match its checksum.
    Checksum,
}

/// splitmix64: one step of a fast generator good enough for payloads.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A 64-bit checksum of `body`, eight bytes at a time (the tail padded).
fn checksum(body: &[u8]) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325 ^ body.len() as u64;
    let mut words = body.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        h = (h.rotate_left(23) ^ u64::from_le_bytes(b)).wrapping_mul(0x100_0000_01B3);
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    (h.rotate_left(23) ^ u64::from_le_bytes(tail)).wrapping_mul(0x100_0000_01B3)
}

/// Object `id` of `size` bytes (at least [`HEADER`]), its body from `seed`.
pub(crate) fn make(id: u64, seed: u64, size: usize) -> Bytes {
    let mut out = vec![0u8; size.max(HEADER)];
    let (head, body) = out.split_at_mut(HEADER);
    let mut state = seed;
    let mut words = body.chunks_exact_mut(8);
    for w in &mut words {
        w.copy_from_slice(&next(&mut state).to_le_bytes());
    }
    let tail = words.into_remainder();
    let last = next(&mut state).to_le_bytes();
    let n = tail.len();
    tail.copy_from_slice(&last[..n]);
    let sum = checksum(body);
    for (i, v) in [MAGIC, id, seed, sum].into_iter().enumerate() {
        head[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    Bytes::from(out)
}

/// Checks that `data` is object `id`, whole, `size` bytes long.
pub(crate) fn check(data: &[u8], id: u64, size: usize) -> Result<(), Damage> {
    if data.len() != size.max(HEADER) {
        return Err(Damage::Length);
    }
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&data[i * 8..i * 8 + 8]);
        u64::from_le_bytes(b)
    };
    if word(0) != MAGIC || word(1) != id {
        return Err(Damage::Header);
    }
    if word(3) != checksum(&data[HEADER..]) {
        return Err(Damage::Checksum);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_check_and_damage_is_named() {
        for size in [0, 32, 33, 100, 4096, 65_537] {
            let data = make(7, 42, size);
            assert_eq!(check(&data, 7, size), Ok(()), "{size}");
            assert_eq!(check(&data, 8, size), Err(Damage::Header));
            assert_eq!(check(&data[1..], 7, size), Err(Damage::Length));
            if size > HEADER {
                let mut bad = data.to_vec();
                bad[size - 1] ^= 1;
                assert_eq!(check(&bad, 7, size), Err(Damage::Checksum), "{size}");
            }
        }
        // Two seeds give two bodies.
        assert_ne!(make(1, 1, 64)[HEADER..], make(1, 2, 64)[HEADER..]);
    }
}
