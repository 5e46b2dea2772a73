//! The stored layout of a [`PodArray`](super::PodArray): a 64-byte header,
//! then the elements as in memory, so the payload starts 64-byte aligned
//! wherever the transport's buffer is (page-aligned mmap, pooled or
//! registered memory).
//!
//! | bytes | field |
//! |:--|:--|
//! | 0..8 | magic `PSPODv1\0` |
//! | 8..24 | element type, numpy's `descr` text (`<f8`, `<i4`, `\|V24`), NUL padded |
//! | 24..32 | element count, u64 little endian |
//! | 32..40 | element size in bytes, u64 little endian |
//! | 40..64 | zero (reserved) |
//! | 64.. | `count * size` bytes of elements, little endian |
//!
//! Readers also accept the older layout every `Vec<T>` of numbers has
//! (bincode's u64 length, then the elements; payload at offset 8).

use std::any::TypeId;
use std::mem::{align_of, size_of};

use bytes::Bytes;

/// Bytes before the elements in the stored layout; also the alignment the
/// layout keeps the payload at.
pub const POD_HEADER_LEN: usize = 64;

const MAGIC: [u8; 8] = *b"PSPODv1\0";
const DTYPE_LEN: usize = 16;

/// Where the elements of a stored array are, once its layout is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Payload {
    /// Offset of the first element in the stored bytes.
    pub offset: usize,
    /// Number of elements.
    pub len: usize,
}

/// numpy's `descr` text for `T`: its byte order, kind and size for the
/// numbers numpy knows, `|V<size>` (opaque records) for anything else.
pub(crate) fn dtype<T: 'static>() -> String {
    let id = TypeId::of::<T>();
    let known: [(TypeId, &str); 10] = [
        (TypeId::of::<f64>(), "<f8"),
        (TypeId::of::<f32>(), "<f4"),
        (TypeId::of::<i64>(), "<i8"),
        (TypeId::of::<u64>(), "<u8"),
        (TypeId::of::<i32>(), "<i4"),
        (TypeId::of::<u32>(), "<u4"),
        (TypeId::of::<i16>(), "<i2"),
        (TypeId::of::<u16>(), "<u2"),
        (TypeId::of::<i8>(), "|i1"),
        (TypeId::of::<u8>(), "|u1"),
    ];
    match known.iter().find(|(t, _)| *t == id) {
        Some((_, d)) => (*d).to_owned(),
        None => format!("|V{}", size_of::<T>()),
    }
}

/// The 64-byte header of an array of `len` elements of `T`.
pub(crate) fn header<T: 'static>(len: usize) -> [u8; POD_HEADER_LEN] {
    let mut h = [0u8; POD_HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    let d = dtype::<T>();
    // `dtype` texts are at most "|V" + 20 digits; a record wider than
    // 10^13 bytes cannot exist, so 16 bytes always hold it.
    let n = d.len().min(DTYPE_LEN);
    h[8..8 + n].copy_from_slice(&d.as_bytes()[..n]);
    h[24..32].copy_from_slice(&(len as u64).to_le_bytes());
    h[32..40].copy_from_slice(&(size_of::<T>() as u64).to_le_bytes());
    h
}

/// Whether `data` starts with the array header's magic.
pub(crate) fn has_header(data: &[u8]) -> bool {
    data.len() >= POD_HEADER_LEN && data[..8] == MAGIC
}

fn le_u64(data: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&data[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Checks `data` as a stored array of `T` (either layout) and says where
/// its elements are; the error says what does not fit.
pub(crate) fn parse<T: 'static>(data: &[u8]) -> Result<Payload, String> {
    let elem = size_of::<T>();
    if has_header(data) {
        let stored = &data[8..24];
        let stored = &stored[..stored.iter().position(|&b| b == 0).unwrap_or(DTYPE_LEN)];
        let wanted = dtype::<T>();
        if stored != wanted.as_bytes() {
            return Err(format!(
                "stored elements are {}, not {wanted}",
                String::from_utf8_lossy(stored)
            ));
        }
        let size = le_u64(data, 32);
        if size != elem as u64 {
            return Err(format!("stored elements are {size} bytes wide, not {elem}"));
        }
        let count = le_u64(data, 24);
        let body = (data.len() - POD_HEADER_LEN) as u64;
        return match count.checked_mul(elem as u64) {
            Some(n) if n == body => Ok(Payload {
                offset: POD_HEADER_LEN,
                len: count as usize,
            }),
            _ => Err(format!(
                "header says {count} elements of {elem} bytes but {body} bytes follow it"
            )),
        };
    }
    let Some(prefix) = data.get(..8) else {
        return Err(format!(
            "{} bytes is too short for an array header or length prefix",
            data.len()
        ));
    };
    let count = le_u64(prefix, 0);
    let body = (data.len() - 8) as u64;
    match count.checked_mul(elem as u64) {
        Some(n) if n == body => Ok(Payload {
            offset: 8,
            len: count as usize,
        }),
        _ => Err(format!(
            "neither an array header nor a length prefix: the first 8 bytes say \
             {count} elements of {elem} bytes but {body} bytes follow"
        )),
    }
}

/// Whether the elements at `offset` of `data` are aligned for `T`.
pub(crate) fn aligned_for<T>(data: &[u8], offset: usize) -> bool {
    (data.as_ptr() as usize).wrapping_add(offset) % align_of::<T>() == 0
}

/// One cache line: the unit an aligned buffer is allocated in.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; POD_HEADER_LEN]);

// SAFETY: `Line` is a `repr(C)` array of bytes with no padding (size 64,
// align 64); every bit pattern is valid and all-zero is a valid value.
unsafe impl bytemuck::Zeroable for Line {}
// SAFETY: as above; it is `Copy` and `'static`.
unsafe impl bytemuck::Pod for Line {}

/// Heap memory whose first byte is 64-byte aligned, holding `len` bytes.
struct AlignedBuf {
    lines: Vec<Line>,
    len: usize,
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        &bytemuck::cast_slice::<Line, u8>(&self.lines)[..self.len]
    }
}

/// A 64-byte-aligned buffer of `len` bytes that `fill` writes (zeroed
/// before).
fn aligned_with(len: usize, fill: impl FnOnce(&mut [u8])) -> Bytes {
    // Zeroed lines come from calloc: fresh pages are not written twice.
    let mut lines = vec![Line([0; POD_HEADER_LEN]); len.div_ceil(POD_HEADER_LEN)];
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut lines);
    fill(&mut bytes[..len]);
    Bytes::from_owner(AlignedBuf { lines, len })
}

/// A 64-byte-aligned buffer of `header` followed by `payload_len` bytes that
/// `fill` writes (zeroed before).
pub(crate) fn aligned_bytes(
    header: &[u8; POD_HEADER_LEN],
    payload_len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> Bytes {
    aligned_with(POD_HEADER_LEN + payload_len, |out| {
        let (head, payload) = out.split_at_mut(POD_HEADER_LEN);
        head.copy_from_slice(header);
        fill(payload);
    })
}

/// The concatenation of `parts` in one 64-byte-aligned buffer (one copy).
pub(crate) fn concat_aligned(parts: &[&[u8]]) -> Bytes {
    let len = parts.iter().map(|p| p.len()).sum();
    aligned_with(len, |out| {
        let mut at = 0;
        for part in parts {
            out[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_names_the_type() {
        let h = header::<f64>(3);
        let mut data = h.to_vec();
        data.extend_from_slice(&[0u8; 24]);
        assert_eq!(parse::<f64>(&data), Ok(Payload { offset: 64, len: 3 }));
        let err = parse::<i64>(&data).unwrap_err();
        assert!(err.contains("<f8") && err.contains("<i8"), "{err}");
        assert!(parse::<f32>(&data).is_err());
        data.pop();
        assert!(parse::<f64>(&data).unwrap_err().contains("23 bytes follow"));
    }

    #[test]
    fn vec_layout_is_read_too() {
        let v = vec![1.5f64, 2.5];
        let data = bincode::serialize(&v).unwrap();
        assert_eq!(parse::<f64>(&data), Ok(Payload { offset: 8, len: 2 }));
        assert!(parse::<f64>(&data[..12]).is_err());
        assert!(parse::<f64>(&data[..3]).is_err());
    }

    #[test]
    fn records_are_opaque_by_size() {
        assert_eq!(dtype::<[u32; 6]>(), "|V24");
        assert_eq!(dtype::<u8>(), "|u1");
    }

    #[test]
    fn parts_are_joined_aligned() {
        let b = concat_aligned(&[b"ab", b"", b"cde"]);
        assert_eq!(&b[..], b"abcde");
        assert_eq!(b.as_ptr() as usize % 64, 0);
        assert!(concat_aligned(&[]).is_empty());
    }

    #[test]
    fn aligned_bytes_are_aligned() {
        for n in [0usize, 1, 63, 64, 65, 4096] {
            let b = aligned_bytes(&header::<u8>(n), n, |p| p.fill(7));
            assert_eq!(b.as_ptr() as usize % 64, 0);
            assert_eq!(b.len(), 64 + n);
            assert!(b[64..].iter().all(|&x| x == 7));
        }
    }
}
