//! Bytes across the Python boundary.
//!
//! Out (`get`): a `memoryview` over a [`RustBuffer`], a read-only exporter
//! of the connector's `Bytes` (mmap, received or stored memory): no copy.
//!
//! In (`put`): an immutable `bytes` (what Python ProxyStore's serializer
//! hands a connector) is held, not copied: the `Bytes` owns a reference to
//! it. So is a `RustBuffer` or a contiguous `memoryview` over either.
//! Any other buffer (bytearray, numpy array, writable memoryview) is copied
//! once, into a pooled buffer (reused, and faulted in 2 MiB at a time
//! when new: `proxystore_peer::pool`), with the GIL held: its exporter may
//! change it after `put` returns,
//! and keeping its `Py_buffer` would need the GIL to release it, which a
//! connector thread (a data server dropping an evicted object) must never
//! wait for. Dropping a held `bytes` needs no GIL: PyO3 defers the decref.

use std::ffi::{c_int, c_void};
use std::ptr::null_mut;

use bytes::Bytes;
use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{PyBufferError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyMemoryView};

/// A read-only buffer over bytes a proxystore-rs connector returned.
///
/// `get` returns `memoryview(RustBuffer)`; the memory stays valid while any
/// view of it is alive, whatever happens to the stored object.
#[pyclass(module = "proxystore_rs", frozen)]
pub struct RustBuffer {
    bytes: Bytes,
}

#[pymethods]
impl RustBuffer {
    fn __len__(&self) -> usize {
        self.bytes.len()
    }

    fn __repr__(&self) -> String {
        format!("RustBuffer(<{} bytes>)", self.bytes.len())
    }

    /// Exports the bytes as a one-dimensional, read-only buffer of `B`.
    ///
    /// # Safety
    ///
    /// `view` is null or a `Py_buffer` the interpreter lets us fill.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("RustBuffer: null Py_buffer"));
        }
        if flags & ffi::PyBUF_WRITABLE == ffi::PyBUF_WRITABLE {
            return Err(PyBufferError::new_err(
                "RustBuffer is read-only: stored objects cannot be written in place",
            ));
        }
        let data: &[u8] = &slf.get().bytes;
        let len = isize::try_from(data.len())
            .map_err(|_| PyBufferError::new_err("RustBuffer larger than isize::MAX"))?;
        let buf = data.as_ptr().cast_mut().cast::<c_void>();
        // SAFETY: `view` is non-null and ours to fill (the caller's
        // contract). `obj` takes a strong reference to `slf`, a frozen
        // class whose `Bytes` never changes or moves its memory, so `buf`
        // stays valid until the consumer releases the view. The exporter
        // is read-only (WRITABLE refused above), so nothing writes through
        // `buf`. `format` points at a static string; `shape` and `strides`
        // point into the `Py_buffer` itself, which CPython allows.
        unsafe {
            (*view).obj = slf.into_any().into_ptr();
            (*view).buf = buf;
            (*view).len = len;
            (*view).readonly = 1;
            (*view).itemsize = 1;
            (*view).format = if flags & ffi::PyBUF_FORMAT == ffi::PyBUF_FORMAT {
                c"B".as_ptr().cast_mut()
            } else {
                null_mut()
            };
            (*view).ndim = 1;
            (*view).shape = if flags & ffi::PyBUF_ND == ffi::PyBUF_ND {
                &raw mut (*view).len
            } else {
                null_mut()
            };
            (*view).strides = if flags & ffi::PyBUF_STRIDES == ffi::PyBUF_STRIDES {
                &raw mut (*view).itemsize
            } else {
                null_mut()
            };
            (*view).suboffsets = null_mut();
            (*view).internal = null_mut();
        }
        Ok(())
    }
}

/// A read-only `memoryview` over `bytes`, without copying them.
pub(crate) fn memoryview_of(py: Python<'_>, bytes: Bytes) -> PyResult<Bound<'_, PyAny>> {
    let owner = Bound::new(py, RustBuffer { bytes })?;
    Ok(PyMemoryView::from(owner.as_any())?.into_any())
}

/// Keeps a Python `bytes` alive while a `Bytes` views part of it.
struct HeldBytes {
    _owner: Py<PyAny>,
    ptr: *const u8,
    len: usize,
}

// SAFETY: `ptr..ptr+len` lies inside the data of a `bytes` object that
// `_owner` keeps alive (directly or through a memoryview); a `bytes` never
// changes or moves its data, so reading it from any thread is sound.
// `Py<PyAny>` itself is Send + Sync (its drop defers the decref when the
// thread is not attached to the interpreter).
unsafe impl Send for HeldBytes {}
// SAFETY: as for Send: shared access only reads immutable memory.
unsafe impl Sync for HeldBytes {}

impl AsRef<[u8]> for HeldBytes {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: see `impl Send for HeldBytes`: the range is inside live,
        // immutable memory for as long as `self` exists.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// What `put` stores for `obj`: the object itself where it is immutable
/// (see the module docs), else one copy of its buffer.
pub(crate) fn bytes_from_py(obj: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        let data = b.as_bytes();
        return Ok(Bytes::from_owner(HeldBytes {
            ptr: data.as_ptr(),
            len: data.len(),
            _owner: b.clone().into_any().unbind(),
        }));
    }
    if let Ok(rb) = obj.cast::<RustBuffer>() {
        return Ok(rb.get().bytes.clone());
    }
    if let Ok(mv) = obj.cast::<PyMemoryView>() {
        if let Some(bytes) = view_of_immutable(mv)? {
            return Ok(bytes);
        }
    }
    copy_buffer(obj)
}

/// A contiguous memoryview over a `bytes` or a `RustBuffer`, as a `Bytes`
/// holding that exporter; `None` for any other memoryview.
fn view_of_immutable(mv: &Bound<'_, PyMemoryView>) -> PyResult<Option<Bytes>> {
    let base = mv.getattr("obj")?;
    let immutable = base.is_instance_of::<PyBytes>() || base.is_instance_of::<RustBuffer>();
    if !immutable {
        return Ok(None);
    }
    let view = PyUntypedBuffer::get(mv.as_any())?;
    if !view.is_c_contiguous() {
        return Ok(None);
    }
    let (ptr, len) = (view.buf_ptr().cast::<u8>().cast_const(), view.len_bytes());
    view.release(mv.py());
    if let Ok(rb) = base.cast::<RustBuffer>() {
        let whole = &rb.get().bytes;
        let start = (ptr as usize).wrapping_sub(whole.as_ptr() as usize);
        if start.checked_add(len).is_some_and(|end| end <= whole.len()) {
            return Ok(Some(whole.slice(start..start + len)));
        }
        return Ok(None);
    }
    // The view's range lies inside `base`'s data: a memoryview of a bytes
    // object can only narrow it. Hold `base` itself, not `mv`: the caller
    // may `mv.release()`, which drops the view's reference to `base`.
    Ok(Some(Bytes::from_owner(HeldBytes {
        _owner: base.unbind(),
        ptr,
        len,
    })))
}

/// One copy of any object with the buffer protocol, in C order: into a
/// pooled buffer when it is C-contiguous, else `memoryview(obj).tobytes()`.
fn copy_buffer(obj: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    let Ok(view) = PyUntypedBuffer::get(obj) else {
        let type_name = obj
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into());
        return Err(PyTypeError::new_err(format!(
            "expected a bytes-like object (bytes, bytearray, memoryview, numpy array), got {type_name}"
        )));
    };
    if !view.is_c_contiguous() {
        view.release(obj.py());
        let copy = PyMemoryView::from(obj)?.call_method0("tobytes")?;
        return bytes_from_py(&copy);
    }
    // SAFETY: a C-contiguous buffer of `len_bytes()` bytes, exported (and
    // so kept alive and unmoved) until `release` below; the GIL is held
    // throughout, as every writer of it needs.
    let data = unsafe { exported_bytes(&view) };
    let copied = pooled_concat(&[data]);
    view.release(obj.py());
    copied
}

/// The bytes of a C-contiguous exported buffer (none for an empty one,
/// whose pointer may be null).
///
/// # Safety
///
/// `view` is C-contiguous and stays exported, unchanged, while the slice
/// lives (the GIL held, so no Python code writes it).
unsafe fn exported_bytes(view: &PyUntypedBuffer) -> &[u8] {
    let len = view.len_bytes();
    if len == 0 || view.buf_ptr().is_null() {
        return &[];
    }
    // SAFETY: the caller's contract; non-null and `len` bytes long.
    unsafe { std::slice::from_raw_parts(view.buf_ptr().cast::<u8>().cast_const(), len) }
}

/// `parts` one after the other in one pooled buffer.
fn pooled_concat(parts: &[&[u8]]) -> PyResult<Bytes> {
    let len = parts.iter().map(|p| p.len()).sum();
    let mut buf = proxystore_peer::pool::take(len)
        .ok_or_else(|| PyBufferError::new_err(format!("cannot allocate {len} bytes")))?;
    let mut at = 0;
    for part in parts {
        // SAFETY: the buffer holds at least `len` bytes, the sum of the
        // parts' lengths, and does not overlap them (it is fresh or idle).
        unsafe {
            std::ptr::copy_nonoverlapping(part.as_ptr(), buf.as_mut_ptr().add(at), part.len())
        };
        at += part.len();
    }
    Ok(proxystore_peer::pool::into_bytes(buf, len))
}

/// `concat(*buffers)`: the buffers' bytes one after the other in one
/// read-only, Rust-owned buffer, as a `memoryview` (no intermediate
/// `bytes`). A connector's `put` holds it without copying again;
/// `proxystore_rs.serialize` frames arrays with it.
#[pyfunction]
#[pyo3(signature = (*buffers))]
pub(crate) fn concat<'py>(
    py: Python<'py>,
    buffers: Vec<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let mut views = Vec::with_capacity(buffers.len());
    for b in &buffers {
        let view = PyUntypedBuffer::get(b)?;
        if !view.is_c_contiguous() {
            for v in views {
                PyUntypedBuffer::release(v, py);
            }
            view.release(py);
            return Err(PyBufferError::new_err(
                "concat: buffers must be C-contiguous",
            ));
        }
        views.push(view);
    }
    // SAFETY: each view is C-contiguous and exported until released below;
    // the GIL is held throughout.
    let parts: Vec<&[u8]> = views.iter().map(|v| unsafe { exported_bytes(v) }).collect();
    let joined = pooled_concat(&parts);
    drop(parts);
    for v in views {
        v.release(py);
    }
    memoryview_of(py, joined?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_views_and_put_holds_without_copying() {
        Python::initialize();
        Python::attach(|py| {
            let stored = Bytes::from_static(b"0123456789");
            let mv = memoryview_of(py, stored.clone()).unwrap();
            let view = mv.cast::<PyMemoryView>().unwrap();
            assert!(view.getattr("readonly").unwrap().is_truthy().unwrap());
            // A slice of the view goes back in as a slice of the same Bytes.
            let part = mv.get_item(pyo3::types::PySlice::new(py, 2, 5, 1)).unwrap();
            let back = bytes_from_py(&part).unwrap();
            assert_eq!(&back[..], b"234");
            assert_eq!(back.as_ptr(), stored[2..].as_ptr());
            // A bytes object is held, not copied.
            let b = PyBytes::new(py, b"abc");
            let held = bytes_from_py(b.as_any()).unwrap();
            assert_eq!(held.as_ptr(), b.as_bytes().as_ptr());
            // A bytearray is copied.
            let ba = pyo3::types::PyByteArray::new(py, b"xyz");
            assert_eq!(&bytes_from_py(ba.as_any()).unwrap()[..], b"xyz");
            assert!(bytes_from_py(&3i32.into_pyobject(py).unwrap()).is_err());
        });
    }
}
