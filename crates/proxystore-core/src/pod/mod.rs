//! [`PodArray<T>`]: a typed, read-only view of an array of plain-old-data
//! elements over the bytes a connector returned, with no copy.
//!
//! `store.get::<Vec<f64>>()` copies the transport's buffer into a new
//! vector, and on a large array the new pages' first-touch faults cost more
//! than the copy. `store.get::<PodArray<f64>>()` keeps the connector's
//! `Bytes` (an mmap of `/dev/shm`, a received ZeroMQ message, a pooled UCX
//! buffer) and derefs to `&[f64]` over it. The stored layout (see
//! [`POD_HEADER_LEN`] and docs/codec.md) puts the elements 64-byte aligned;
//! a buffer whose elements are misaligned for `T` anyway (data written in
//! the older `Vec` layout, a transport that returns an unaligned slice) is
//! copied once into an aligned buffer and counted in
//! [`MetricsSnapshot::realigned`](crate::MetricsSnapshot::realigned), never
//! read through an unaligned reference.

pub(crate) mod layout;
pub(crate) mod probe;

use std::fmt;
use std::marker::PhantomData;
use std::mem::size_of;
use std::ops::Deref;

use bytemuck::Pod;
use bytes::Bytes;
use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use layout::POD_HEADER_LEN;
pub(crate) use layout::{concat_aligned, header as header_for};

/// The serde name that marks a [`PodArray`] to the store codec's probe.
const WIRE_NAME: &str = "$proxystore::PodArray";

/// A read-only array of `T` over shared, reference-counted bytes: what a
/// connector returned, or a buffer built by [`PodArray::from_slice`].
///
/// Cloning is a reference count. `put` of a `PodArray` hands its bytes to
/// the connector as they are (no encode copy), and `get::<PodArray<T>>`
/// wraps the connector's bytes (no decode copy when the elements are
/// aligned, which the stored layout ensures). `T` is any
/// [`bytemuck::Pod`] type: the numbers, and `#[repr(C)]` records of them.
pub struct PodArray<T> {
    /// The whole stored object: header and elements.
    bytes: Bytes,
    /// Where the elements start in `bytes`; aligned for `T`.
    offset: usize,
    /// Number of elements.
    len: usize,
    _elem: PhantomData<T>,
}

impl<T: Pod> PodArray<T> {
    /// An array holding a copy of `values` (one copy, into a 64-byte-aligned
    /// buffer laid out as the store keeps it).
    pub fn from_slice(values: &[T]) -> Self {
        Self::from_fn_bytes(values.len(), |out| {
            out.copy_from_slice(bytemuck::cast_slice(values));
        })
    }

    /// An array of `len` elements that `fill` writes in place (they are
    /// zero before), so a producer builds its data where the store will
    /// send it from, with no copy.
    pub fn build(len: usize, fill: impl FnOnce(&mut [T])) -> Self {
        Self::from_fn_bytes(len, |out| fill(bytemuck::cast_slice_mut(out)))
    }

    fn from_fn_bytes(len: usize, fill: impl FnOnce(&mut [u8])) -> Self {
        // Zero-sized elements carry no data and cannot be counted from a
        // byte length.
        const { assert!(size_of::<T>() > 0, "PodArray of a zero-sized type") };
        let bytes = layout::aligned_bytes(&layout::header::<T>(len), len * size_of::<T>(), fill);
        PodArray {
            bytes,
            offset: POD_HEADER_LEN,
            len,
            _elem: PhantomData,
        }
    }

    /// Reads stored bytes as an array of `T`: either the array layout or a
    /// `Vec<T>`'s bincode layout. Zero-copy when the elements are aligned
    /// for `T`; otherwise copied once (the `bool` says so). A type or
    /// length that does not fit is an [`Error::Codec`].
    pub(crate) fn from_stored(bytes: Bytes) -> Result<(Self, bool)> {
        const { assert!(size_of::<T>() > 0, "PodArray of a zero-sized type") };
        let payload = layout::parse::<T>(&bytes).map_err(|reason| Error::Codec {
            codec: "bincode",
            op: "decode",
            type_name: std::any::type_name::<Self>(),
            reason,
        })?;
        if layout::aligned_for::<T>(&bytes, payload.offset) {
            let array = PodArray {
                bytes,
                offset: payload.offset,
                len: payload.len,
                _elem: PhantomData,
            };
            return Ok((array, false));
        }
        let elems = &bytes[payload.offset..payload.offset + payload.len * size_of::<T>()];
        let copy = Self::from_fn_bytes(payload.len, |out| out.copy_from_slice(elems));
        Ok((copy, true))
    }

    /// The elements.
    pub fn as_slice(&self) -> &[T] {
        let elems = &self.bytes[self.offset..self.offset + self.len * size_of::<T>()];
        // Alignment and length were checked when the array was made, so
        // the cast cannot fail; an empty slice is returned rather than a
        // panic should that invariant ever break.
        bytemuck::try_cast_slice(elems).unwrap_or_default()
    }

    /// The stored bytes (header and elements): what `put` hands the
    /// connector.
    pub fn stored_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// A view of the elements with a shape (row-major), the Rust form of a
    /// numpy array over shared memory. An error if the shape does not hold
    /// exactly `self.len()` elements.
    #[cfg(feature = "ndarray")]
    pub fn view<D: ndarray::Dimension>(
        &self,
        shape: impl Into<ndarray::StrideShape<D>>,
    ) -> Result<ndarray::ArrayView<'_, T, D>> {
        ndarray::ArrayView::from_shape(shape, self.as_slice()).map_err(|e| Error::Codec {
            codec: "bincode",
            op: "view",
            type_name: std::any::type_name::<Self>(),
            reason: format!("{} elements: {e}", self.len),
        })
    }

    /// A copy of an ndarray's elements in row-major order.
    #[cfg(feature = "ndarray")]
    pub fn from_array<S, D>(array: &ndarray::ArrayBase<S, D>) -> Self
    where
        S: ndarray::Data<Elem = T>,
        D: ndarray::Dimension,
    {
        match array.as_slice() {
            Some(s) => Self::from_slice(s),
            None => Self::build(array.len(), |out| {
                out.iter_mut().zip(array.iter()).for_each(|(o, v)| *o = *v);
            }),
        }
    }
}

impl<T: Pod> Deref for PodArray<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: Pod> AsRef<[T]> for PodArray<T> {
    fn as_ref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T> Clone for PodArray<T> {
    fn clone(&self) -> Self {
        PodArray {
            bytes: self.bytes.clone(),
            offset: self.offset,
            len: self.len,
            _elem: PhantomData,
        }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for PodArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 8;
        let s = self.as_slice();
        let mut list = f.debug_list();
        list.entries(s.iter().take(SHOWN));
        if s.len() > SHOWN {
            list.entry(&format_args!("... {} elements", s.len()));
        }
        list.finish()
    }
}

impl<T: Pod + PartialEq> PartialEq for PodArray<T> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<T: Pod> From<&[T]> for PodArray<T> {
    fn from(values: &[T]) -> Self {
        Self::from_slice(values)
    }
}

/// The stored bytes as one serde byte string, for serializers other than
/// the store's codec (an array nested in a struct, JSON).
struct Wire<'a>(&'a [u8]);

impl Serialize for Wire<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl<T: Pod> Serialize for PodArray<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        // The store codec's probe takes the bytes themselves (no copy);
        // any other serializer sees a newtype around a byte string.
        probe::offer(&self.bytes);
        s.serialize_newtype_struct(WIRE_NAME, &Wire(&self.bytes))
    }
}

impl<'de, T: Pod> Deserialize<'de> for PodArray<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_newtype_struct(WIRE_NAME, ArrayVisitor(PhantomData))
    }
}

struct ArrayVisitor<T>(PhantomData<T>);

impl<T: Pod> ArrayVisitor<T> {
    fn finish<E: de::Error>(bytes: Bytes) -> std::result::Result<PodArray<T>, E> {
        match PodArray::from_stored(bytes) {
            Ok((array, realigned)) => {
                probe::note_realigned(realigned);
                Ok(array)
            }
            Err(e) => Err(probe::reject(e)),
        }
    }
}

impl<'de, T: Pod> Visitor<'de> for ArrayVisitor<T> {
    type Value = PodArray<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a stored array of plain-old-data elements")
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_bytes(self)
    }

    // The store codec's probe hands over the transport's `Bytes` this way.
    fn visit_unit<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
        match probe::take_input() {
            Some(bytes) => Self::finish(bytes),
            None => Err(E::invalid_type(de::Unexpected::Unit, &self)),
        }
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> std::result::Result<Self::Value, E> {
        Self::finish(Bytes::copy_from_slice(v))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> std::result::Result<Self::Value, E> {
        Self::finish(Bytes::from(v))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(b) = seq.next_element::<u8>()? {
            v.push(b);
        }
        Self::finish(Bytes::from(v))
    }
}

#[cfg(test)]
mod tests;
