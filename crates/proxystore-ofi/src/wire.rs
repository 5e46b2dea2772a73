//! The message header every engine message starts with:
//!
//! ```text
//! magic u8 | kind u8 | addr_len u16 | to_route u64 | reply_route u64 |
//! tag u64 | count u32 | count × len u64 | sender address | frames (inline)
//! ```
//!
//! all little endian. An inline message carries its frames after the
//! header; an announcement carries none: its frames follow as tagged
//! messages `tag`, `tag + 1`, ... Everything read from a peer is checked
//! (lengths, counts, sums) before it is used.

use bytes::{BufMut, Bytes};

const MAGIC: u8 = 0xF1;

/// The route a data server listens on (see
/// [`Engine::listen`](crate::Engine::listen)).
pub const SERVER_ROUTE: u64 = 0;
/// The route releases of one-sided reads go to; handled by the endpoint
/// itself (see [`Engine::accept_releases`](crate::Engine::accept_releases)),
/// never by a route's reader.
pub const RELEASE_ROUTE: u64 = u64::MAX;
/// Fixed part of the header.
pub(crate) const FIXED: usize = 32;
/// Most frames one message may have.
pub(crate) const MAX_FRAMES: usize = 1024;

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Frames follow the header.
    Inline = 1,
    /// Frames follow as tagged messages.
    Announce = 2,
    /// The announcement of `tag` was refused: `lens` holds its size, the
    /// receiver's limit and its frame count; no frames.
    Refused = 3,
}

/// A parsed header.
#[derive(Debug)]
pub(crate) struct Header {
    pub(crate) kind: Kind,
    pub(crate) to_route: u64,
    pub(crate) reply_route: u64,
    pub(crate) tag: u64,
    pub(crate) lens: Vec<usize>,
    pub(crate) from: Vec<u8>,
    /// Where the inline frames start.
    pub(crate) body: usize,
}

/// Bytes a header for `frames` frames from an `addr_len`-byte address takes.
pub(crate) fn header_len(addr_len: usize, frames: usize) -> usize {
    FIXED + 8 * frames + addr_len
}

/// The header (and for inline messages the frames) in one buffer.
pub(crate) fn encode(
    kind: Kind,
    from: &[u8],
    to_route: u64,
    reply_route: u64,
    tag: u64,
    frames: &[Bytes],
) -> Vec<u8> {
    let body: usize = match kind {
        Kind::Inline => frames.iter().map(Bytes::len).sum(),
        Kind::Announce | Kind::Refused => 0,
    };
    let mut out = Vec::with_capacity(header_len(from.len(), frames.len()) + body);
    out.put_u8(MAGIC);
    out.put_u8(kind as u8);
    // Callers check both against the limits first (addresses are short).
    out.put_u16_le(from.len() as u16);
    out.put_u64_le(to_route);
    out.put_u64_le(reply_route);
    out.put_u64_le(tag);
    out.put_u32_le(frames.len() as u32);
    for f in frames {
        out.put_u64_le(f.len() as u64);
    }
    out.put_slice(from);
    if kind == Kind::Inline {
        for f in frames {
            out.put_slice(f);
        }
    }
    out
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The refusal of announcement `tag` (of `frames` frames, `size` bytes,
/// over `limit`), sent back to the announcer's route `to_route`.
pub(crate) fn refusal(
    from: &[u8],
    to_route: u64,
    tag: u64,
    [size, limit, frames]: [u64; 3],
) -> Vec<u8> {
    let mut out = encode(Kind::Refused, from, to_route, to_route, tag, &[]);
    // Three "lengths" after the fixed part: size, limit, frame count.
    out[28..32].copy_from_slice(&3u32.to_le_bytes());
    let mut numbers = Vec::with_capacity(24);
    for n in [size, limit, frames] {
        numbers.put_u64_le(n);
    }
    out.splice(FIXED..FIXED, numbers);
    out
}

/// Parses a received message; `None` if it is malformed (inline frames
/// must fill the message exactly).
pub(crate) fn decode(msg: &[u8]) -> Option<Header> {
    if msg.len() < FIXED || msg[0] != MAGIC {
        return None;
    }
    let kind = match msg[1] {
        1 => Kind::Inline,
        2 => Kind::Announce,
        3 => Kind::Refused,
        _ => return None,
    };
    let addr_len = usize::from(u16::from_le_bytes([msg[2], msg[3]]));
    let to_route = u64_at(msg, 4)?;
    let reply_route = u64_at(msg, 12)?;
    let tag = u64_at(msg, 20)?;
    let count = u32::from_le_bytes(msg.get(28..32)?.try_into().ok()?) as usize;
    if count > MAX_FRAMES {
        return None;
    }
    let mut lens = Vec::with_capacity(count);
    for i in 0..count {
        lens.push(usize::try_from(u64_at(msg, FIXED + 8 * i)?).ok()?);
    }
    let at = FIXED + 8 * count;
    let from = msg.get(at..at + addr_len)?.to_vec();
    let body = at + addr_len;
    if kind == Kind::Inline {
        let total = lens.iter().try_fold(0usize, |a, &l| a.checked_add(l))?;
        if body.checked_add(total)? != msg.len() {
            return None;
        }
    } else if body != msg.len() {
        return None;
    }
    Some(Header {
        kind,
        to_route,
        reply_route,
        tag,
        lens,
        from,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_damage_is_refused() {
        let frames = vec![
            Bytes::from_static(b"abc"),
            Bytes::new(),
            Bytes::from(vec![7; 9]),
        ];
        let msg = encode(Kind::Inline, b"addr", 3, 4, 0, &frames);
        let h = decode(&msg).unwrap();
        assert_eq!((h.kind, h.to_route, h.reply_route), (Kind::Inline, 3, 4));
        assert_eq!(h.lens, vec![3, 0, 9]);
        assert_eq!(h.from, b"addr");
        assert_eq!(&msg[h.body..h.body + 3], b"abc");
        for cut in 0..msg.len() {
            assert!(decode(&msg[..cut]).is_none(), "cut at {cut}");
        }
        let mut longer = msg.clone();
        longer.push(0);
        assert!(decode(&longer).is_none());
        let mut huge = msg.clone();
        huge[FIXED..FIXED + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode(&huge).is_none());
        let ann = encode(Kind::Announce, b"a", 1, 2, 99, &frames);
        let h = decode(&ann).unwrap();
        assert_eq!((h.kind, h.tag, h.lens.len()), (Kind::Announce, 99, 3));
        let no = refusal(b"addr", 5, 99, [3 << 20, 1 << 20, 2]);
        let h = decode(&no).unwrap();
        assert_eq!((h.kind, h.to_route, h.tag), (Kind::Refused, 5, 99));
        assert_eq!(h.lens, vec![3 << 20, 1 << 20, 2]);
        assert_eq!(h.from, b"addr");
    }
}
