//! [`Codec::Python`](super::Codec::Python): Python ProxyStore's framing
//! (`proxystore.serialize`), so objects pass between the two in both
//! directions. A stored object is a two-letter serializer id, `\n`, then
//! the payload:
//!
//! - `BS`: bytes as they are, for [`Bytes`] and `Vec<u8>`;
//! - `US`: a string's UTF-8, for `String`;
//! - `NP`: `numpy.save`'s `.npy` data (see [`npy`](super::npy)), for
//!   vectors of plain numbers (1-D) and [`NdArray`]s.
//!
//! Python-only forms (`PK` pickle, `CP` cloudpickle, `PD` pandas, `PL`
//! polars) and Rust types with no Python form are [`Error::Codec`]
//! naming the id or the type.

use std::any::{Any, TypeId};

use bytes::Bytes;

use super::cast;
use super::npy::{self, Element, NdArray};
use crate::error::{Error, Result};

const NAME: &str = "python";

fn codec_error(op: &'static str, type_name: &'static str, reason: String) -> Error {
    Error::Codec {
        codec: NAME,
        op,
        type_name,
        reason,
    }
}

fn framed(id: &[u8; 2], payload_len: usize, write: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    let mut out = Vec::with_capacity(3 + payload_len);
    out.extend_from_slice(id);
    out.push(b'\n');
    write(&mut out);
    Bytes::from(out)
}

fn array<T: Element>(shape: &[usize], data: &[T]) -> Bytes {
    framed(b"NP", 128 + std::mem::size_of_val(data), |out| {
        npy::write(out, shape, data)
    })
}

macro_rules! numeric {
    ($($t:ty),*) => {
        /// `NP` data for a vector or [`NdArray`] of a numpy element type.
        fn encode_array<T: 'static>(value: &T) -> Option<Bytes> {
            let any = value as &dyn Any;
            $(
                if let Some(v) = any.downcast_ref::<Vec<$t>>() {
                    return Some(array::<$t>(&[v.len()], v));
                }
                if let Some(a) = any.downcast_ref::<NdArray<$t>>() {
                    return Some(array::<$t>(a.shape(), a.data()));
                }
            )*
            None
        }

        /// A vector (1-D arrays only) or [`NdArray`] from `NP` data; `None`
        /// if `T` is neither.
        fn decode_array<T: 'static>(npy: &[u8]) -> Option<std::result::Result<T, String>> {
            $(
                if TypeId::of::<T>() == TypeId::of::<Vec<$t>>() {
                    return Some(npy::read::<$t>(npy).and_then(|a| match a.shape() {
                        [_] => Ok(cast(a.into_data()).expect("same type")),
                        shape => Err(format!(
                            "the array has shape {shape:?}; a Vec reads 1-D arrays (use NdArray)"
                        )),
                    }));
                }
                if TypeId::of::<T>() == TypeId::of::<NdArray<$t>>() {
                    return Some(npy::read::<$t>(npy).map(|a| cast(a).expect("same type")));
                }
            )*
            None
        }
    };
}

numeric!(f64, f32, i64, u64, i32, u32, i16, u16, i8, u8);

/// Encodes `value` in Python ProxyStore's framing.
pub(crate) fn encode<T: 'static>(value: &T) -> Result<Bytes> {
    let any = value as &dyn Any;
    if let Some(b) = any.downcast_ref::<Bytes>() {
        return Ok(framed(b"BS", b.len(), |out| out.extend_from_slice(b)));
    }
    if let Some(v) = any.downcast_ref::<Vec<u8>>() {
        return Ok(framed(b"BS", v.len(), |out| out.extend_from_slice(v)));
    }
    if let Some(s) = any.downcast_ref::<String>() {
        return Ok(framed(b"US", s.len(), |out| {
            out.extend_from_slice(s.as_bytes())
        }));
    }
    encode_array(value).ok_or_else(|| {
        codec_error(
            "encode",
            std::any::type_name::<T>(),
            "the type has no Python ProxyStore form (python stores Bytes and Vec<u8> as bytes, \
             String as str, numeric Vecs and NdArrays as numpy arrays); use Codec::Bincode"
                .into(),
        )
    })
}

/// What Python serializer wrote an object: its id and payload.
fn split(data: &Bytes) -> std::result::Result<([u8; 2], Bytes), String> {
    match data.get(..3) {
        Some([a, b, b'\n']) => Ok(([*a, *b], data.slice(3..))),
        _ => Err("not Python ProxyStore data (no two-letter serializer id and newline)".into()),
    }
}

/// Decodes `data` written in Python ProxyStore's framing as a `T`.
pub(crate) fn decode<T: 'static>(data: Bytes) -> Result<T> {
    let type_name = std::any::type_name::<T>();
    let err = |reason: String| codec_error("decode", type_name, reason);
    let (id, payload) = split(&data).map_err(err)?;
    let mismatch = |what: &str| {
        err(format!(
            "the object is {what} ({}); it does not read as this type",
            String::from_utf8_lossy(&id)
        ))
    };
    match &id {
        b"BS" => {
            if TypeId::of::<T>() == TypeId::of::<Bytes>() {
                return Ok(cast(payload).expect("same type"));
            }
            if TypeId::of::<T>() == TypeId::of::<Vec<u8>>() {
                return Ok(cast(payload.to_vec()).expect("same type"));
            }
            Err(mismatch("bytes"))
        }
        b"US" => {
            if TypeId::of::<T>() != TypeId::of::<String>() {
                return Err(mismatch("a str"));
            }
            let s = String::from_utf8(payload.to_vec())
                .map_err(|e| err(format!("the str is not UTF-8: {e}")))?;
            Ok(cast(s).expect("same type"))
        }
        b"NP" => match decode_array::<T>(&payload) {
            Some(result) => result.map_err(err),
            None => Err(mismatch("a numpy array")),
        },
        b"PK" | b"CP" | b"PD" | b"PL" => {
            let what = match &id {
                b"PK" => "pickle",
                b"CP" => "cloudpickle",
                b"PD" => "a pandas DataFrame",
                _ => "a polars DataFrame",
            };
            Err(err(format!(
                "the object is {what} ({}), which only Python can read",
                String::from_utf8_lossy(&id)
            )))
        }
        _ => Err(err(format!(
            "unknown Python ProxyStore serializer id {:?}",
            String::from_utf8_lossy(&id)
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    /// What Python ProxyStore 1.1's `serialize` returns (numpy 2.4).
    const PY_BYTES: &[u8] = b"BS\nabc";
    const PY_STR: &[u8] = b"US\nh\xc3\xa9llo";

    #[test]
    fn reads_and_writes_what_python_does() {
        let b: Bytes = decode(Bytes::from_static(PY_BYTES)).unwrap();
        assert_eq!(&b[..], b"abc");
        assert_eq!(&encode(&b).unwrap()[..], PY_BYTES);
        let s: String = decode(Bytes::from_static(PY_STR)).unwrap();
        assert_eq!(s, "héllo");
        assert_eq!(&encode(&s).unwrap()[..], PY_STR);
        // numpy.arange(5, dtype='<f8'): 3 + 128 + 40 bytes.
        let np = encode(&vec![0.0f64, 1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(np.len(), 171);
        assert!(np.starts_with(
            b"NP\n\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (5,), }"
        ));
        let back: Vec<f64> = decode(np.clone()).unwrap();
        assert_eq!(back, vec![0.0, 1.0, 2.0, 3.0, 4.0]);
        let nd: NdArray<f64> = decode(np).unwrap();
        assert_eq!(nd.shape(), &[5]);
    }

    #[test]
    fn python_only_forms_and_mismatches_are_errors_naming_them() {
        let pickle = Bytes::from_static(b"PK\n\x80\x05K\x01.");
        let e = decode::<Vec<f64>>(pickle).unwrap_err();
        assert!(e.to_string().contains("pickle (PK)"), "{e}");
        let e = decode::<String>(Bytes::from_static(PY_BYTES)).unwrap_err();
        assert!(e.to_string().contains("bytes (BS)"), "{e}");
        let e = decode::<Vec<f64>>(Bytes::from_static(b"XX\n")).unwrap_err();
        assert!(e.to_string().contains("unknown"), "{e}");
        let e = decode::<Bytes>(Bytes::from_static(b"ab")).unwrap_err();
        assert!(e.to_string().contains("not Python ProxyStore data"), "{e}");
        let nd = NdArray::new(vec![2, 2], vec![1i32, 2, 3, 4]).unwrap();
        let e = decode::<Vec<i32>>(encode(&nd).unwrap()).unwrap_err();
        assert!(e.to_string().contains("use NdArray"), "{e}");
        assert_eq!(decode::<NdArray<i32>>(encode(&nd).unwrap()).unwrap(), nd);
        let e = encode(&(1u8, 2u8)).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Codec {
                    codec: "python",
                    op: "encode",
                    ..
                }
            ),
            "{e}"
        );
    }

    proptest! {
        #[test]
        fn round_trips(f: Vec<f64>, i: Vec<i16>, s: String, raw: Vec<u8>, rows in 0usize..5) {
            let back: Vec<f64> = decode(encode(&f).unwrap()).unwrap();
            prop_assert_eq!(back.len(), f.len());
            prop_assert!(back.iter().zip(&f).all(|(a, b)| a.to_bits() == b.to_bits()));
            prop_assert_eq!(decode::<Vec<i16>>(encode(&i).unwrap()).unwrap(), i.clone());
            prop_assert_eq!(decode::<String>(encode(&s).unwrap()).unwrap(), s);
            prop_assert_eq!(decode::<Vec<u8>>(encode(&raw).unwrap()).unwrap(), raw.clone());
            let cols = i.len().checked_div(rows).unwrap_or(0);
            let nd = NdArray::new(vec![rows, cols], i[..rows * cols].to_vec()).unwrap();
            prop_assert_eq!(decode::<NdArray<i16>>(encode(&nd).unwrap()).unwrap(), nd);
        }

        #[test]
        fn garbage_never_panics(data: Vec<u8>, id in 0usize..4) {
            let mut framed = [b"NP\n", b"BS\n", b"US\n", b"PK\n"][id].to_vec();
            framed.extend_from_slice(&data);
            for b in [Bytes::from(data), Bytes::from(framed)] {
                let _ = decode::<Vec<f64>>(b.clone());
                let _ = decode::<NdArray<u8>>(b.clone());
                let _ = decode::<String>(b.clone());
                let _ = decode::<Bytes>(b);
            }
        }
    }
}
