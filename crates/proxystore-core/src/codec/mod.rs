//! Codecs: how typed values become the bytes a connector stores.
//!
//! The codec is named in every proxy's factory, so a consumer decodes with
//! the codec the producer used, and new codecs (for example Python
//! ProxyStore's framing) can be added without touching connectors or data
//! already stored.
//!
//! [`Codec::Bincode`] (the default) stores:
//! - [`Bytes`] and `Vec<u8>` as they are: no header, no copy of a `Bytes`;
//! - a [`PodArray`](crate::PodArray) as its stored bytes (a 64-byte header,
//!   then the elements 64-byte aligned): no copy either way;
//! - every other `T: Serialize` in bincode 1.x's fixed-int little-endian
//!   format. Vectors of primitive numbers (`Vec<f64>`, `Vec<i32>`, ...) are
//!   laid out there as a u64 length then the elements as in memory, so on
//!   little-endian machines they are encoded and decoded with one `memcpy`
//!   (same bytes as the generic path, only faster). See docs/codec.md for
//!   the measurements behind the choice.
//!
//! [`Codec::Python`] stores what Python ProxyStore's `serialize` stores
//! (bytes, str, numpy arrays), so each side reads what the
//! other wrote.

mod npy;
mod python;

pub use npy::NdArray;

use std::any::{Any, TypeId};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How values are turned into bytes and back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Codec {
    /// Raw pass-through for bytes, bincode 1.x (fixint, little endian) for
    /// everything else.
    #[default]
    Bincode,
    /// Python ProxyStore's framing: `BS\n` + bytes for [`Bytes`] and
    /// `Vec<u8>`, `US\n` + UTF-8 for `String`, `NP\n` + `numpy.save` data
    /// for numeric vectors and [`NdArray`]s. Other types are
    /// [`Error::Codec`].
    Python,
}

/// Moves `value` into a `B` if `A` and `B` are the same type.
fn cast<A: 'static, B: 'static>(value: A) -> Option<B> {
    let mut slot = Some(value);
    (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<B>>()
        .and_then(Option::take)
}

/// Length prefix + elements: the bincode layout of a `Vec<P>`.
#[cfg(target_endian = "little")]
fn encode_pod_vec<P: bytemuck::Pod>(v: &[P]) -> Bytes {
    let payload: &[u8] = bytemuck::cast_slice(v);
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&(v.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// The elements of a stored `Vec<P>`: bincode's layout, or a
/// [`PodArray`](crate::PodArray)'s (so an array put as a view can be read
/// back as an owned vector).
#[cfg(target_endian = "little")]
fn decode_pod_vec<P: bytemuck::Pod>(data: &[u8]) -> Result<Vec<P>> {
    let payload = crate::pod::layout::parse::<P>(data).map_err(|reason| Error::Codec {
        codec: "bincode",
        op: "decode",
        type_name: std::any::type_name::<Vec<P>>(),
        reason,
    })?;
    let len = payload.len;
    let bytes = &data[payload.offset..payload.offset + len * std::mem::size_of::<P>()];
    // One pass over memory: the copy into uninitialized capacity (a zeroed
    // `vec!` would memset first whenever the allocator reuses memory).
    let mut v: Vec<P> = Vec::with_capacity(len);
    // SAFETY: the vector has capacity for `len` elements, which is exactly
    // `bytes.len()` bytes (checked by `parse`); the regions cannot overlap
    // (one is freshly allocated); every byte pattern is a valid `P`
    // (`Pod`), so the first `len` elements are initialized after the copy.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), v.as_mut_ptr().cast::<u8>(), bytes.len());
        v.set_len(len);
    }
    Ok(v)
}

macro_rules! pod_fast_paths {
    ($($t:ty),*) => {
        #[cfg(target_endian = "little")]
        fn encode_fast<T: 'static>(value: &T) -> Option<Bytes> {
            let any = value as &dyn Any;
            $(if let Some(v) = any.downcast_ref::<Vec<$t>>() {
                return Some(encode_pod_vec::<$t>(v));
            })*
            None
        }

        #[cfg(target_endian = "little")]
        fn decode_fast<T: 'static>(data: &[u8]) -> Option<Result<T>> {
            $(if TypeId::of::<T>() == TypeId::of::<Vec<$t>>() {
                return Some(decode_pod_vec::<$t>(data).map(|v| cast(v).expect("same type")));
            })*
            None
        }
    };
}

pod_fast_paths!(f64, f32, i64, u64, i32, u32, i16, u16, i8);

#[cfg(not(target_endian = "little"))]
fn encode_fast<T: 'static>(_: &T) -> Option<Bytes> {
    None
}

#[cfg(not(target_endian = "little"))]
fn decode_fast<T: 'static>(_: &[u8]) -> Option<Result<T>> {
    None
}

impl Codec {
    /// The codec's name, as written in proxy factories.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Bincode => "bincode",
            Codec::Python => "python",
        }
    }

    /// Encodes a value. A `Bytes` is returned as is (a reference count, no
    /// copy); a `Vec<u8>` is copied once, unencoded.
    pub fn encode<T: Serialize + 'static>(self, value: &T) -> Result<Bytes> {
        if self == Codec::Python {
            return python::encode(value);
        }
        let any = value as &dyn Any;
        if let Some(b) = any.downcast_ref::<Bytes>() {
            return Ok(b.clone());
        }
        if let Some(v) = any.downcast_ref::<Vec<u8>>() {
            return Ok(Bytes::copy_from_slice(v));
        }
        if let Some(b) = encode_fast(value) {
            return Ok(b);
        }
        if let Some(b) = crate::pod::probe::try_encode(value) {
            return Ok(b);
        }
        bincode::serialize(value)
            .map(Bytes::from)
            .map_err(|e| Error::Codec {
                codec: self.name(),
                op: "encode",
                type_name: std::any::type_name::<T>(),
                reason: e.to_string(),
            })
    }

    /// Encodes a value it may consume: a `Vec<u8>` becomes `Bytes` without a
    /// copy.
    pub fn encode_owned<T: Serialize + 'static>(self, value: T) -> Result<Bytes> {
        if self == Codec::Bincode && TypeId::of::<T>() == TypeId::of::<Vec<u8>>() {
            return Ok(Bytes::from(cast::<T, Vec<u8>>(value).expect("same type")));
        }
        self.encode(&value)
    }

    /// Decodes a value. `Bytes` comes back as is; a `Vec<u8>` reuses the
    /// buffer when this is its only reference, else it is one copy.
    pub fn decode<T: DeserializeOwned + 'static>(self, data: Bytes) -> Result<T> {
        if self == Codec::Python {
            return python::decode(data);
        }
        if TypeId::of::<T>() == TypeId::of::<Bytes>() {
            return Ok(cast(data).expect("same type"));
        }
        if TypeId::of::<T>() == TypeId::of::<Vec<u8>>() {
            return Ok(cast(Vec::<u8>::from(data)).expect("same type"));
        }
        if let Some(result) = decode_fast::<T>(&data) {
            return result;
        }
        if let Some(result) = crate::pod::probe::try_decode::<T>(&data) {
            return result;
        }
        let decoded = bincode::deserialize(&data).map_err(|e| Error::Codec {
            codec: self.name(),
            op: "decode",
            type_name: std::any::type_name::<T>(),
            reason: e.to_string(),
        });
        crate::pod::probe::clear_rejected();
        decoded
    }

    /// [`decode`](Self::decode), also saying how many
    /// [`PodArray`](crate::PodArray)s in the value had misaligned elements
    /// and were copied once to align them.
    pub fn decode_counting_realigned<T: DeserializeOwned + 'static>(
        self,
        data: Bytes,
    ) -> Result<(T, u64)> {
        let (decoded, realigned) = crate::pod::probe::counting_realigned(|| self.decode(data));
        decoded.map(|v| (v, realigned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Record {
        name: String,
        values: Vec<f64>,
        tags: BTreeMap<String, i64>,
        nested: Option<Box<Record>>,
    }

    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug + 'static>(v: &T) {
        let bytes = Codec::Bincode.encode(v).unwrap();
        let back: T = Codec::Bincode.decode(bytes).unwrap();
        assert_eq!(&back, v);
    }

    #[test]
    fn bytes_pass_through_without_copy() {
        let b = Bytes::from(vec![1u8; 1 << 16]);
        let enc = Codec::Bincode.encode(&b).unwrap();
        assert_eq!(enc.as_ptr(), b.as_ptr());
        let dec: Bytes = Codec::Bincode.decode(enc).unwrap();
        assert_eq!(dec.as_ptr(), b.as_ptr());
    }

    #[test]
    fn owned_vec_u8_moves_without_copy() {
        let v = vec![3u8; 1 << 16];
        let ptr = v.as_ptr();
        let enc = Codec::Bincode.encode_owned(v).unwrap();
        assert_eq!(enc.as_ptr(), ptr);
        let dec: Vec<u8> = Codec::Bincode.decode(enc).unwrap();
        assert_eq!(dec.as_ptr(), ptr);
    }

    #[test]
    fn truncated_input_is_a_codec_error() {
        let enc = Codec::Bincode.encode(&vec![1.5f64; 10]).unwrap();
        let cut = enc.slice(..enc.len() - 3);
        assert!(matches!(
            Codec::Bincode.decode::<Vec<f64>>(cut),
            Err(Error::Codec { .. })
        ));
        let rec = Record {
            name: "x".into(),
            values: vec![1.0],
            tags: BTreeMap::new(),
            nested: None,
        };
        let enc = Codec::Bincode.encode(&rec).unwrap();
        let cut = enc.slice(..enc.len() / 2);
        assert!(matches!(
            Codec::Bincode.decode::<Record>(cut),
            Err(Error::Codec { .. })
        ));
        assert!(Codec::Bincode
            .decode::<Vec<i32>>(Bytes::from_static(b"abc"))
            .is_err());
        // A length prefix claiming more than there is must not allocate it.
        let huge = Bytes::from((u64::MAX / 2).to_le_bytes().to_vec());
        assert!(Codec::Bincode.decode::<Vec<f64>>(huge).is_err());
    }

    proptest! {
        #[test]
        fn pod_fast_path_matches_bincode(v: Vec<f64>, w: Vec<i32>, x: Vec<u16>) {
            prop_assert_eq!(Codec::Bincode.encode(&v).unwrap().to_vec(), bincode::serialize(&v).unwrap());
            prop_assert_eq!(Codec::Bincode.encode(&w).unwrap().to_vec(), bincode::serialize(&w).unwrap());
            prop_assert_eq!(Codec::Bincode.encode(&x).unwrap().to_vec(), bincode::serialize(&x).unwrap());
        }

        #[test]
        fn typed_round_trips(
            f in proptest::collection::vec(proptest::num::f64::NORMAL, 0..200),
            i: Vec<i64>,
            s: String,
            raw: Vec<u8>,
            tags: BTreeMap<String, i64>,
        ) {
            round_trip(&f);
            round_trip(&i);
            round_trip(&s);
            round_trip(&raw);
            round_trip(&(s.clone(), i.clone(), Some(3u8)));
            round_trip(&Record {
                name: s.clone(),
                values: f.clone(),
                tags: tags.clone(),
                nested: Some(Box::new(Record { name: s, values: f, tags, nested: None })),
            });
            round_trip(&Bytes::from(raw));
        }

        #[test]
        fn garbage_never_panics(data: Vec<u8>) {
            let b = Bytes::from(data);
            let _ = Codec::Bincode.decode::<Record>(b.clone());
            let _ = Codec::Bincode.decode::<Vec<f64>>(b.clone());
            let _ = Codec::Bincode.decode::<String>(b);
        }
    }
}
