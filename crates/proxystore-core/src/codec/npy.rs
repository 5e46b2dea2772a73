//! numpy's `.npy` format (what `numpy.save` writes, and so what Python
//! ProxyStore stores for an array after its `NP\n` tag), for arrays of
//! plain numbers: versions 1.0 to 3.0 read, 1.0 written as numpy writes
//! it (the header padded with spaces and a newline so the data starts at
//! a multiple of 64 bytes), C order, little endian.
//!
//! Layout: `\x93NUMPY`, major and minor version bytes, the header length
//! (u16 LE in 1.0, u32 LE in 2.0 and 3.0), then the header, a Python dict
//! literal: `{'descr': '<f8', 'fortran_order': False, 'shape': (5,), }`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

const MAGIC: &[u8] = b"\x93NUMPY";
/// numpy aligns the data to this.
const ALIGN: usize = 64;
/// Largest header read (numpy's own default limit is 10,000 bytes).
const MAX_HEADER: usize = 100_000;
/// Most dimensions read (numpy 2 allows 64).
const MAX_DIMS: usize = 64;

/// An n-dimensional array of plain numbers in C (row-major) order: the
/// Rust form of a numpy array under [`Codec::Python`](super::Codec::Python)
/// (and an ordinary serde value under the other codecs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NdArray<T> {
    shape: Vec<usize>,
    data: Vec<T>,
}

impl<T> NdArray<T> {
    /// An array of `shape` holding `data` in C order; the element count
    /// must be the product of the shape (a `Config` error otherwise).
    pub fn new(shape: Vec<usize>, data: Vec<T>) -> Result<Self> {
        let count = element_count(&shape).ok_or_else(|| {
            Error::Config(format!("array shape {shape:?} overflows the address space"))
        })?;
        if count != data.len() {
            return Err(Error::Config(format!(
                "array shape {shape:?} holds {count} elements, the data has {}",
                data.len()
            )));
        }
        Ok(NdArray { shape, data })
    }

    /// The length of each dimension.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The elements in C order.
    pub fn data(&self) -> &[T] {
        &self.data
    }

    /// The elements in C order, taken out.
    pub fn into_data(self) -> Vec<T> {
        self.data
    }
}

fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// A plain number type with a numpy dtype.
pub(crate) trait Element: bytemuck::Pod {
    /// numpy's `descr` for it, little endian (`<f8`, `|u1`).
    const DESCR: &'static str;
}

macro_rules! elements {
    ($($t:ty => $d:literal),*) => {
        $(impl Element for $t { const DESCR: &'static str = $d; })*
    };
}

elements!(f64 => "<f8", f32 => "<f4", i64 => "<i8", u64 => "<u8", i32 => "<i4",
    u32 => "<u4", i16 => "<i2", u16 => "<u2", i8 => "|i1", u8 => "|u1");

/// Appends the `.npy` (version 1.0) form of `data` with `shape` to `out`.
pub(crate) fn write<T: Element>(out: &mut Vec<u8>, shape: &[usize], data: &[T]) {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape_text}, }}",
        T::DESCR
    );
    // Padded so magic + version + length + header (with its newline) is a
    // multiple of 64, measured from the start of the .npy data.
    let fixed = MAGIC.len() + 2 + 2;
    let unpadded = fixed + header.len() + 1;
    header.extend(std::iter::repeat_n(
        ' ',
        unpadded.next_multiple_of(ALIGN) - unpadded,
    ));
    header.push('\n');
    let payload: &[u8] = bytemuck::cast_slice(data);
    out.reserve(fixed + header.len() + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    // A header of a few dims is far below u16::MAX; more dims than fit
    // cannot be built (MAX_DIMS is enforced on read, and 64 dims of 20
    // digits still fit).
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(payload);
}

/// A parsed header, and where the elements start.
#[derive(Debug, PartialEq)]
pub(crate) struct Header {
    pub(crate) descr: String,
    pub(crate) shape: Vec<usize>,
    pub(crate) data_offset: usize,
}

/// Reads the header of the `.npy` data in `npy`; every problem is a
/// sentence for an `Error::Codec`.
pub(crate) fn parse_header(npy: &[u8]) -> std::result::Result<Header, String> {
    let rest = npy
        .strip_prefix(MAGIC)
        .ok_or("not .npy data (no \\x93NUMPY magic)")?;
    let (version, rest) = rest
        .split_first_chunk::<2>()
        .ok_or("truncated .npy version")?;
    let [major, minor] = *version;
    let (len, rest) = match major {
        1 => rest
            .split_first_chunk::<2>()
            .map(|(l, r)| (usize::from(u16::from_le_bytes(*l)), r)),
        2 | 3 => rest
            .split_first_chunk::<4>()
            .map(|(l, r)| (u32::from_le_bytes(*l) as usize, r)),
        _ => {
            return Err(format!(
                ".npy version {major}.{minor} is not supported (1.0 to 3.0 are)"
            ))
        }
    }
    .ok_or("truncated .npy header length")?;
    if len > MAX_HEADER {
        return Err(format!(".npy header of {len} bytes exceeds {MAX_HEADER}"));
    }
    let text = rest.get(..len).ok_or("truncated .npy header")?;
    let text = std::str::from_utf8(text).map_err(|_| ".npy header is not text")?;
    let descr = string_value(text, "descr")?;
    if bool_value(text, "fortran_order")? {
        return Err("Fortran-order arrays are not supported (C order only)".into());
    }
    let shape = shape_value(text)?;
    Ok(Header {
        descr,
        shape,
        data_offset: npy.len() - rest.len() + len,
    })
}

/// The text after `'key':` (or `"key":`) in the header dict.
fn after_key<'a>(text: &'a str, key: &str) -> std::result::Result<&'a str, String> {
    for quote in ['\'', '"'] {
        let needle = format!("{quote}{key}{quote}");
        if let Some(i) = text.find(&needle) {
            let rest = text[i + needle.len()..].trim_start();
            if let Some(value) = rest.strip_prefix(':') {
                return Ok(value.trim_start());
            }
        }
    }
    Err(format!(".npy header has no '{key}'"))
}

fn string_value(text: &str, key: &str) -> std::result::Result<String, String> {
    let v = after_key(text, key)?;
    let quote = v
        .chars()
        .next()
        .filter(|c| *c == '\'' || *c == '"')
        .ok_or_else(|| {
            format!(".npy header's '{key}' is not a string (structured dtypes are not supported)")
        })?;
    let end = v[1..]
        .find(quote)
        .ok_or_else(|| format!(".npy header's '{key}' is not terminated"))?;
    Ok(v[1..1 + end].to_string())
}

fn bool_value(text: &str, key: &str) -> std::result::Result<bool, String> {
    let v = after_key(text, key)?;
    if v.starts_with("True") {
        Ok(true)
    } else if v.starts_with("False") {
        Ok(false)
    } else {
        Err(format!(".npy header's '{key}' is not True or False"))
    }
}

fn shape_value(text: &str) -> std::result::Result<Vec<usize>, String> {
    let v = after_key(text, "shape")?;
    let inner = v
        .strip_prefix('(')
        .and_then(|v| v.split_once(')'))
        .map(|(inner, _)| inner)
        .ok_or(".npy header's 'shape' is not a tuple")?;
    let dims: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.trim_end_matches('L').parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| format!(".npy shape ({inner}) is not a tuple of whole numbers"))?;
    if dims.len() > MAX_DIMS {
        return Err(format!(
            ".npy array of {} dimensions exceeds {MAX_DIMS}",
            dims.len()
        ));
    }
    Ok(dims)
}

/// The array in `npy` as `T`s: the dtype must be `T`'s, the data exactly
/// the shape's size. One copy (the data is rarely aligned for `T`).
pub(crate) fn read<T: Element>(npy: &[u8]) -> std::result::Result<NdArray<T>, String> {
    let header = parse_header(npy)?;
    let native = T::DESCR.replacen('<', "=", 1);
    if header.descr != T::DESCR && header.descr != native {
        return Err(format!(
            "the array's dtype is '{}', not '{}' ({})",
            header.descr,
            T::DESCR,
            std::any::type_name::<T>()
        ));
    }
    let count = element_count(&header.shape).ok_or("the array's shape overflows")?;
    let size = std::mem::size_of::<T>();
    let expected = count
        .checked_mul(size)
        .ok_or("the array's size overflows")?;
    let bytes = &npy[header.data_offset..];
    if bytes.len() != expected {
        return Err(format!(
            "the array's shape {:?} needs {expected} bytes of data, there are {}",
            header.shape,
            bytes.len()
        ));
    }
    let mut data: Vec<T> = vec![T::zeroed(); count];
    bytemuck::cast_slice_mut::<T, u8>(&mut data).copy_from_slice(bytes);
    Ok(NdArray {
        shape: header.shape,
        data,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// `numpy.save` of `numpy.arange(5, dtype='<f8')` (numpy 2.4), header
    /// text and padding as numpy writes them.
    fn numpy_arange5() -> Vec<u8> {
        let mut v = b"\x93NUMPY\x01\x00v\x00".to_vec();
        let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (5,), }";
        v.extend_from_slice(header.as_bytes());
        v.extend(std::iter::repeat_n(b' ', 118 - 1 - header.len()));
        v.push(b'\n');
        for i in 0..5 {
            v.extend_from_slice(&f64::from(i).to_le_bytes());
        }
        v
    }

    #[test]
    fn writes_what_numpy_writes() {
        let mut out = Vec::new();
        write(&mut out, &[5], &[0.0f64, 1.0, 2.0, 3.0, 4.0]);
        assert_eq!(out, numpy_arange5());
        let a = read::<f64>(&out).unwrap();
        assert_eq!(a.shape(), &[5]);
        assert_eq!(a.data(), &[0.0, 1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn reads_versions_two_and_three_and_nd_shapes() {
        let mut v1 = Vec::new();
        write(&mut v1, &[2, 3], &[1i32, 2, 3, 4, 5, 6]);
        let header_len = usize::from(u16::from_le_bytes([v1[8], v1[9]]));
        for major in [2u8, 3] {
            let mut v = b"\x93NUMPY".to_vec();
            v.extend_from_slice(&[major, 0]);
            v.extend_from_slice(&(header_len as u32).to_le_bytes());
            v.extend_from_slice(&v1[10..]);
            let a = read::<i32>(&v).unwrap();
            assert_eq!(a.shape(), &[2, 3]);
            assert_eq!(a.data(), &[1, 2, 3, 4, 5, 6]);
        }
        let mut scalar = Vec::new();
        write(&mut scalar, &[], &[7u8]);
        assert!(String::from_utf8_lossy(&scalar).contains("'shape': ()"));
        assert_eq!(read::<u8>(&scalar).unwrap().data(), &[7]);
    }

    #[test]
    fn wrong_dtype_order_size_and_garbage_are_errors() {
        let good = numpy_arange5();
        assert!(read::<f32>(&good).unwrap_err().contains("'<f8'"));
        let fortran = String::from_utf8_lossy(&good).replace("False", "True ");
        assert!(read::<f64>(fortran.as_bytes()).is_err());
        assert!(read::<f64>(&good[..good.len() - 1])
            .unwrap_err()
            .contains("needs 40 bytes"));
        let big_endian = String::from_utf8_lossy(&good).replace("<f8", ">f8");
        assert!(read::<f64>(big_endian.as_bytes()).is_err());
        for cut in 0..good.len() {
            let _ = read::<f64>(&good[..cut]);
        }
        assert!(read::<f64>(b"\x93NUMPY\x09\x00")
            .unwrap_err()
            .contains("version 9.0"));
        let mut huge = b"\x93NUMPY\x02\x00".to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(read::<f64>(&huge).unwrap_err().contains("exceeds"));
        let overflow =
            String::from_utf8_lossy(&good).replace("(5,), }", "(99999999999,99999999999,)");
        assert!(read::<f64>(overflow.as_bytes()).is_err());
    }

    #[test]
    fn nd_array_checks_its_shape() {
        assert!(NdArray::new(vec![2, 2], vec![1.0f64; 4]).is_ok());
        assert!(matches!(
            NdArray::new(vec![2, 3], vec![1.0f64; 4]),
            Err(Error::Config(m)) if m.contains("6 elements")
        ));
        assert!(NdArray::new(vec![usize::MAX, 2], Vec::<u8>::new()).is_err());
    }
}
