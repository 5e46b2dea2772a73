//! Entry points for the fuzz targets in `fuzz/` and for the tests that
//! replay their corpus on stable, with the seeds the targets start from.
//! Not part of the API.

use bytes::Bytes;
use proxystore_core::{Error, ObjectId};

use crate::address;
use crate::wire::{parse_head, Item, Limits, Message, Op, Status, Value, ACCEPTS_REMOTE};

/// Splits a fuzz input into frames: each frame is a little-endian `u16`
/// length and that many bytes (fewer if the input ends first).
pub fn frames_of(mut data: &[u8]) -> Vec<Bytes> {
    let mut frames = Vec::new();
    while !data.is_empty() {
        let len = match data {
            [a, b, ..] => usize::from(u16::from_le_bytes([*a, *b])),
            _ => usize::from(data[0]),
        };
        data = data.get(2..).unwrap_or_default();
        let len = len.min(data.len());
        frames.push(Bytes::copy_from_slice(&data[..len]));
        data = &data[len..];
    }
    frames
}

/// The fuzz input [`frames_of`] splits into `frames` (each at most
/// 65535 bytes).
pub fn input_of(frames: &[Bytes]) -> Vec<u8> {
    let mut data = Vec::new();
    for f in frames {
        let len = u16::try_from(f.len()).unwrap_or(u16::MAX);
        data.extend_from_slice(&len.to_le_bytes());
        data.extend_from_slice(&f[..usize::from(len)]);
    }
    data
}

/// Limits small enough that fuzz inputs reach them.
const TIGHT: Limits = Limits {
    max_object: 64,
    max_items: 4,
    max_aux: 16,
};

/// Decodes the frames in `data` ([`frames_of`]) as a peer message and
/// checks: decoding never panics; [`parse_head`] agrees with a decoded
/// head and accepts every head that fails only later; a decoded message
/// encodes to frames that decode to the same message, with the same
/// payload frames and a head of the same length; and tighter limits only
/// ever turn a success into an error.
pub fn peer_wire(data: &[u8]) {
    let frames = frames_of(data);
    let head = frames.first().map(|h| parse_head(h));
    let decoded = Message::decode(frames.clone(), &Limits::default());
    match &decoded {
        Ok(message) => {
            let info = match head {
                Some(Ok(info)) => info,
                other => panic!("decoded, but parse_head gave {other:?}"),
            };
            assert_eq!(
                (info.op, info.response, info.status, info.request_id),
                (
                    message.op,
                    message.response,
                    message.status,
                    message.request_id
                )
            );
            let encoded = message.encode();
            assert_eq!(encoded.len(), frames.len(), "frame count");
            assert_eq!(encoded[0].len(), frames[0].len(), "head length");
            assert_eq!(encoded[1..], frames[1..], "payload frames");
            let again = Message::decode(encoded, &Limits::default());
            assert_eq!(again.as_ref(), Ok(message), "decode of the encoding");
        }
        Err(e) => {
            let _ = e.to_string();
            use crate::wire::WireError as W;
            if !matches!(
                e,
                W::NoFrames | W::Short(_) | W::BadMagic | W::BadOp(_) | W::BadVersion { .. }
            ) {
                assert!(
                    matches!(head, Some(Ok(_))),
                    "{e:?} after parse_head gave {head:?}"
                );
            }
        }
    }
    if let Ok(tight) = Message::decode(frames, &TIGHT) {
        assert_eq!(decoded, Ok(tight), "accepted under tight limits only");
    }
}

/// Valid encoded messages (in the [`frames_of`] form): every op, both
/// directions, every item value, error responses.
pub fn peer_wire_seeds() -> Vec<Vec<u8>> {
    let id = |n: u128| ObjectId::from_u128(n * 0x0123_4567_89ab_cdef);
    let item = |n, value| Item { id: id(n), value };
    let data = |s: &'static [u8]| Value::Data(Bytes::from_static(s));
    let auth = Bytes::from_static(b"secret");
    let mut get = Message::request(
        Op::Get,
        7,
        auth.clone(),
        vec![item(1, Value::Id), item(2, Value::Id)],
    );
    get.flags = ACCEPTS_REMOTE;
    let messages = [
        Message::request(
            Op::Put,
            1,
            auth.clone(),
            vec![item(1, data(b"hello")), item(2, data(b""))],
        ),
        Message::ok(Op::Put, 1, vec![item(1, Value::Id), item(2, Value::Id)]),
        get,
        Message::ok(
            Op::Get,
            7,
            vec![
                item(1, data(b"world")),
                item(2, Value::Absent),
                item(3, Value::Remote(Bytes::from_static(&[9; 40]))),
            ],
        ),
        Message::request(Op::Exists, 3, Bytes::new(), vec![item(5, Value::Id)]),
        Message::ok(
            Op::Exists,
            3,
            vec![item(5, Value::Flag(true)), item(6, Value::Flag(false))],
        ),
        Message::request(Op::Evict, 4, auth.clone(), vec![item(5, Value::Id)]),
        Message::ok(Op::Evict, 4, vec![item(5, Value::Id)]),
        Message::request(Op::Ping, u64::MAX, auth, Vec::new()),
        Message::ok(Op::Ping, u64::MAX, Vec::new()),
        Message::error(Op::Get, 9, Status::Unauthorized, "bad token"),
        Message::error(Op::Put, 9, Status::TooLarge, "object of 9 bytes"),
    ];
    messages.iter().map(|m| input_of(&m.encode())).collect()
}

/// Schemes the address fuzz target picks from with its first byte.
const SCHEMES: [&str; 4] = ["ucx://", "ofi://tcp;ofi_rxm/", "ofi://cxi/", ""];

/// Decodes `data` (first byte: which scheme; the rest: the address text)
/// as a peer address and checks: malformed text is an
/// [`Error::InvalidKey`]; an address that decodes is the one encoding
/// (base64url, no padding) of what it decodes to; any bytes encode to an
/// address that decodes back to them; the helpers that show and classify
/// addresses never panic.
pub fn peer_address(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let scheme = SCHEMES[usize::from(pick) % SCHEMES.len()];
    if !rest.is_empty() {
        let text = address::encode(scheme, rest);
        assert_eq!(address::decode(scheme, &text).ok().as_deref(), Some(rest));
    }
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match address::decode(scheme, text) {
        Ok(raw) => {
            assert!(!raw.is_empty());
            assert_eq!(address::encode(scheme, &raw), text, "not canonical");
        }
        Err(Error::InvalidKey { .. }) => {}
        Err(other) => panic!("{text:?}: not an InvalidKey error: {other:?}"),
    }
    assert!(address::abbreviate(text).chars().count() <= 51);
    let _ = address::is_local_endpoint(text);
}

/// Intact addresses of each scheme, and a few damaged ones.
pub fn peer_address_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for (pick, scheme) in SCHEMES.iter().enumerate() {
        for raw in [&b"\x01"[..], b"worker address", &[0xa5; 300]] {
            let mut seed = vec![pick as u8];
            seed.extend_from_slice(address::encode(scheme, raw).as_bytes());
            seeds.push(seed.clone());
            seed.pop();
            seeds.push(seed);
        }
    }
    seeds.push(b"\x00tcp://127.0.0.1:5555".to_vec());
    seeds
}
