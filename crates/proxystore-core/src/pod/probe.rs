//! How the store codec recognizes a [`PodArray`](super::PodArray) of any
//! element type without knowing the type: it first runs the value's own
//! serde impl against a serializer (or deserializer) that accepts only the
//! array's marker newtype and refuses everything else at the first call.
//! The array's impl hands its `Bytes` over through a thread-local slot, so
//! neither direction copies. (serde_json's `RawValue` uses the same
//! marker-name device.) Any other type fails the probe immediately and is
//! encoded as before.

use std::cell::{Cell, RefCell};
use std::fmt;

use bytes::Bytes;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::ser::{self, Impossible, Serialize, Serializer};

use super::WIRE_NAME;
use crate::error::Error;

thread_local! {
    /// Set while the encode probe runs, so arrays serialized any other way
    /// do not leave their bytes in `OFFERED`.
    static ENCODING: Cell<bool> = const { Cell::new(false) };
    static OFFERED: RefCell<Option<Bytes>> = const { RefCell::new(None) };
    /// The stored bytes the decode probe hands to the array's visitor.
    static INPUT: RefCell<Option<Bytes>> = const { RefCell::new(None) };
    /// Arrays decoded on this thread that had to be copied to align them.
    static REALIGNED: Cell<u64> = const { Cell::new(0) };
    /// Why an array's bytes were refused (wrong type, wrong length).
    static REJECTED: RefCell<Option<Error>> = const { RefCell::new(None) };
}

/// The array's `Serialize` impl: hand over its bytes if the probe runs.
pub(super) fn offer(bytes: &Bytes) {
    if ENCODING.with(Cell::get) {
        OFFERED.with(|o| *o.borrow_mut() = Some(bytes.clone()));
    }
}

/// The array's visitor: the bytes the decode probe is reading, once.
pub(super) fn take_input() -> Option<Bytes> {
    INPUT.with(|i| i.borrow_mut().take())
}

/// The array's visitor: count a copy made to align the elements.
pub(super) fn note_realigned(realigned: bool) {
    if realigned {
        REALIGNED.with(|r| r.set(r.get() + 1));
    }
}

/// The array's visitor: keep the typed error and return serde's form of it.
pub(super) fn reject<E: de::Error>(error: Error) -> E {
    let message = error.to_string();
    REJECTED.with(|r| *r.borrow_mut() = Some(error));
    E::custom(message)
}

/// The bytes of `value` if it is a `PodArray` (a reference count, no copy).
pub(crate) fn try_encode<T: Serialize + ?Sized>(value: &T) -> Option<Bytes> {
    ENCODING.with(|e| e.set(true));
    let probed = value.serialize(EncodeProbe);
    ENCODING.with(|e| e.set(false));
    let offered = OFFERED.with(|o| o.borrow_mut().take());
    probed.ok().and(offered)
}

/// Runs `decode` (the codec's whole decode of one value) counting the
/// arrays it had to copy to align.
pub(crate) fn counting_realigned<R>(decode: impl FnOnce() -> R) -> (R, u64) {
    let before = REALIGNED.with(Cell::get);
    let out = decode();
    (out, REALIGNED.with(Cell::get).wrapping_sub(before))
}

/// `data` decoded as `T` if `T` is a `PodArray` (`None` if it is not);
/// an array whose bytes do not fit is the array's typed error.
pub(crate) fn try_decode<T: DeserializeOwned>(data: &Bytes) -> Option<crate::Result<T>> {
    INPUT.with(|i| *i.borrow_mut() = Some(data.clone()));
    let decoded = T::deserialize(DecodeProbe);
    INPUT.with(|i| i.borrow_mut().take());
    let rejected = REJECTED.with(|r| r.borrow_mut().take());
    match (decoded, rejected) {
        (Ok(v), _) => Some(Ok(v)),
        (Err(_), Some(e)) => Some(Err(e)),
        (Err(_), None) => None,
    }
}

/// Clears a refusal left by an array decoded inside another value (the
/// error travelled out as serde's message).
pub(crate) fn clear_rejected() {
    REJECTED.with(|r| r.borrow_mut().take());
}

/// The probe's only error: "not a `PodArray`".
#[derive(Debug)]
pub(crate) struct NotArray;

impl fmt::Display for NotArray {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a PodArray")
    }
}

impl std::error::Error for NotArray {}

impl ser::Error for NotArray {
    fn custom<M: fmt::Display>(_: M) -> Self {
        NotArray
    }
}

impl de::Error for NotArray {
    fn custom<M: fmt::Display>(_: M) -> Self {
        NotArray
    }
}

struct EncodeProbe;

type No = Impossible<(), NotArray>;

macro_rules! refuse {
    ($($name:ident($($arg:ty),*)),* $(,)?) => {
        $(fn $name(self, $(_: $arg),*) -> Result<(), NotArray> {
            Err(NotArray)
        })*
    };
}

impl Serializer for EncodeProbe {
    type Ok = ();
    type Error = NotArray;
    type SerializeSeq = No;
    type SerializeTuple = No;
    type SerializeTupleStruct = No;
    type SerializeTupleVariant = No;
    type SerializeMap = No;
    type SerializeStruct = No;
    type SerializeStructVariant = No;

    refuse!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );

    fn serialize_some<V: Serialize + ?Sized>(self, _: &V) -> Result<(), NotArray> {
        Err(NotArray)
    }

    fn serialize_newtype_struct<V: Serialize + ?Sized>(
        self,
        name: &'static str,
        _: &V,
    ) -> Result<(), NotArray> {
        if name == WIRE_NAME {
            Ok(())
        } else {
            Err(NotArray)
        }
    }

    fn serialize_newtype_variant<V: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &V,
    ) -> Result<(), NotArray> {
        Err(NotArray)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<No, NotArray> {
        Err(NotArray)
    }

    fn serialize_tuple(self, _: usize) -> Result<No, NotArray> {
        Err(NotArray)
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<No, NotArray> {
        Err(NotArray)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<No, NotArray> {
        Err(NotArray)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<No, NotArray> {
        Err(NotArray)
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<No, NotArray> {
        Err(NotArray)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<No, NotArray> {
        Err(NotArray)
    }
}

struct DecodeProbe;

impl<'de> Deserializer<'de> for DecodeProbe {
    type Error = NotArray;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, NotArray> {
        Err(NotArray)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, NotArray> {
        if name == WIRE_NAME {
            // The array's visitor takes the bytes from `INPUT`.
            visitor.visit_unit()
        } else {
            Err(NotArray)
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}
