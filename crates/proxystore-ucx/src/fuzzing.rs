//! Entry points for the fuzz target in `fuzz/` and for the test that
//! replays its corpus on stable, with the seeds the target starts from.
//! Not part of the API.

use bytes::Bytes;

use crate::am::{decode_header, encode_header, split_frames, INLINE_HEAD_MAX};

/// Messages whose frames add up to more than this are checked without
/// building them.
const BUILD_MAX: u128 = 1 << 16;

/// Parses the active-message header in `data` (a little-endian `u16`
/// length, that many header bytes, then the AM data) and checks: parsing
/// never panics; a parsed header says exactly what its bytes say (frame
/// count and lengths, the inline head filling the rest); the data length
/// it asks for is the sum of the lengths not inline, `None` only when that
/// overflows; the data of that length splits into frames of the header's
/// lengths, in order; and encoding those frames gives the header back
/// (up to flag bits other than bit 0) whenever the encoder would make the
/// same inline choice.
pub fn ucx_am_header(data: &[u8]) {
    let [a, b, rest @ ..] = data else {
        return;
    };
    let header_len = usize::from(u16::from_le_bytes([*a, *b])).min(rest.len());
    let (header, body) = rest.split_at(header_len);
    let Some(head) = decode_header(header) else {
        return;
    };
    let word = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().unwrap_or([0; 8]));
    let count = u32::from_le_bytes(header[8..12].try_into().unwrap_or([0; 4])) as usize;
    assert_eq!(head.conn, word(0));
    assert_eq!(head.lens.len(), count);
    for (i, &len) in head.lens.iter().enumerate() {
        assert_eq!(len as u64, word(16 + 8 * i));
    }
    let lens_end = 16 + 8 * count;
    match &head.inline {
        Some(inline) => {
            assert_eq!(inline.len(), head.lens[0]);
            assert_eq!(&header[lens_end..], &inline[..]);
        }
        None => assert_eq!(header.len(), lens_end),
    }
    let skip = usize::from(head.inline.is_some());
    let sum: u128 = head.lens.iter().skip(skip).map(|&l| l as u128).sum();
    let data_len = head.data_len();
    assert_eq!(
        data_len.map(|n| n as u128),
        usize::try_from(sum).ok().map(|n| n as u128)
    );
    let total: u128 = head.lens.iter().map(|&l| l as u128).sum();
    let Some(data_len) = data_len.filter(|_| total <= BUILD_MAX) else {
        return;
    };
    let all = if body.len() == data_len {
        Bytes::copy_from_slice(body)
    } else {
        Bytes::from(vec![0x5a; data_len])
    };
    let (conn, lens, inline) = (head.conn, head.lens.clone(), head.inline.clone());
    let frames = split_frames(head, &all);
    assert_eq!(frames.iter().map(Bytes::len).collect::<Vec<_>>(), lens);
    if let Some(inline) = &inline {
        assert_eq!(&frames[0], inline);
    }
    assert_eq!(frames[skip..].concat(), all);
    let (encoded, was_inline) = encode_header(conn, &frames);
    if was_inline == inline.is_some() {
        let mut normalized = header.to_vec();
        normalized[12..16].copy_from_slice(&u32::from(was_inline).to_le_bytes());
        assert_eq!(encoded, normalized);
    } else {
        assert_eq!(
            was_inline,
            lens.first().is_some_and(|&l| l <= INLINE_HEAD_MAX)
        );
    }
}

/// Headers the sender makes (with and without an inline head, no frames,
/// empty frames) followed by their data, and a few damaged ones.
pub fn ucx_am_header_seeds() -> Vec<Vec<u8>> {
    let frames = |lens: &[usize]| -> Vec<Bytes> {
        lens.iter()
            .enumerate()
            .map(|(i, &n)| Bytes::from(vec![i as u8; n]))
            .collect()
    };
    let mut seeds = Vec::new();
    for lens in [
        &[][..],
        &[24],
        &[24, 5, 0, 7],
        &[0, 0],
        &[1500, 3],
        &[INLINE_HEAD_MAX, 1],
        &[INLINE_HEAD_MAX + 1],
    ] {
        let f = frames(lens);
        let (header, inline) = encode_header(0x0123_4567_89ab_cdef, &f);
        let mut seed = (header.len() as u16).to_le_bytes().to_vec();
        seed.extend_from_slice(&header);
        for frame in &f[usize::from(inline)..] {
            seed.extend_from_slice(frame);
        }
        seeds.push(seed.clone());
        if header.len() > 16 {
            let mut cut = seed.clone();
            cut[0] = cut[0].wrapping_sub(1);
            seeds.push(cut);
            let mut flagged = seed;
            flagged[2 + 12] ^= 1;
            seeds.push(flagged);
        }
    }
    seeds
}
