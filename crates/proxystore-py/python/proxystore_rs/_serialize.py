"""A serializer pair for `Store(..., serializer=..., deserializer=...)`
that reads numpy arrays and bytes as views over the connector's buffer.

The framing is Python ProxyStore's (`proxystore.serialize`): a two-letter
id, `\\n`, then the payload, so `proxystore.serialize.deserialize` reads
what `serialize` writes and the reverse. What differs:

* `serialize` of a numeric numpy array writes `NP\\n` + `.npy` 1.0 in one
  read-only Rust buffer (`proxystore_rs.concat`; one copy of the data,
  where `numpy.save` into a `BytesIO` makes two, and a proxystore-rs
  connector's `put` holds it without another), with the header padded so the data starts at a multiple of 64
  bytes *from the start of the object*: in a page-aligned connector buffer
  (a mapped file, a pooled receive buffer) the array is aligned.
* `deserialize` of `NP` data returns `numpy.frombuffer` over the buffer it
  is given: a read-only view, no copy (ProxyStore copies at least twice:
  `BytesIO(buffer)`, `read()`, `numpy.load`). `BS` data comes back as a
  read-only `memoryview` over the buffer. Anything else (str, pickle,
  object arrays, ...) goes to `proxystore.serialize`.

The view keeps the connector's buffer alive as long as the array lives.
"""

from __future__ import annotations

import ast
from typing import Any

import numpy
from proxystore import serialize as _ps

from proxystore_rs import _native

__all__ = ['serialize', 'deserialize']

_MAGIC = b'\x93NUMPY'
_ALIGN = 64
# 'NP\n' + magic + version (2) + header length (2, version 1.0).
_PREFIX = 3 + len(_MAGIC) + 2 + 2


def _plain_array(obj: Any) -> bool:
    return (
        isinstance(obj, numpy.ndarray)
        and not obj.dtype.hasobject
        and obj.dtype.fields is None
        and obj.dtype.byteorder in ('<', '|', '=')
    )


def serialize(obj: Any) -> bytes | memoryview:
    """Python ProxyStore's framing; numeric arrays in one aligned buffer."""
    if not _plain_array(obj):
        return _ps.serialize(obj)
    array = numpy.ascontiguousarray(obj)
    fortran = False
    header = (
        f"{{'descr': {numpy.lib.format.dtype_to_descr(array.dtype)!r}, "
        f"'fortran_order': {fortran}, 'shape': {array.shape!r}, }}"
    )
    # Spaces, then the newline, so the data starts on a 64-byte boundary
    # counted from the 'NP' tag.
    unpadded = _PREFIX + len(header) + 1
    header += ' ' * (-unpadded % _ALIGN) + '\n'
    head = (
        b'NP\n'
        + _MAGIC
        + b'\x01\x00'
        + len(header).to_bytes(2, 'little')
        + header.encode('latin1')
    )
    # One copy, into a Rust buffer (pooled; new ones fault in 2 MiB pages)
    # that a proxystore-rs connector's put holds instead of copying again.
    return _native.concat(head, array)


def _npy_view(buffer: memoryview) -> numpy.ndarray:
    """A read-only array over the `.npy` data in `buffer` (after `NP\\n`)."""
    npy = buffer[3:]
    if bytes(npy[: len(_MAGIC)]) != _MAGIC or len(npy) < len(_MAGIC) + 4:
        raise ValueError('not .npy data')
    major = npy[len(_MAGIC)]
    if major == 1:
        hlen = int.from_bytes(npy[8:10], 'little')
        start = 10
    elif major in (2, 3):
        hlen = int.from_bytes(npy[8:12], 'little')
        start = 12
    else:
        raise ValueError(f'.npy version {major} is not supported')
    header = ast.literal_eval(bytes(npy[start : start + hlen]).decode('latin1'))
    dtype = numpy.lib.format.descr_to_dtype(header['descr'])
    if dtype.hasobject:
        raise ValueError('object arrays are read by proxystore.serialize')
    shape = tuple(header['shape'])
    count = 1
    for d in shape:
        count *= d
    offset = 3 + start + hlen
    order = 'F' if header['fortran_order'] else 'C'
    flat = numpy.frombuffer(buffer, dtype=dtype, count=count, offset=offset)
    return flat.reshape(shape, order=order)


def deserialize(buffer: Any) -> Any:
    """Reads what `serialize` (or Python ProxyStore's) wrote; arrays and
    bytes as read-only views over `buffer`."""
    view = memoryview(buffer)
    if view.ndim != 1 or view.format not in ('B', 'b', 'c'):
        view = view.cast('B')
    tag = bytes(view[:3])
    if tag == b'BS\n':
        return view[3:].toreadonly()
    if tag == b'NP\n':
        try:
            array = _npy_view(view.toreadonly())
        except (ValueError, KeyError, SyntaxError):
            return _ps.deserialize(bytes(view))
        return array
    return _ps.deserialize(buffer)
