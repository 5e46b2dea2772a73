"""proxystore_rs.serialize / deserialize: Python ProxyStore's framing,
arrays and bytes read as read-only, aligned views over the Rust buffer."""

from __future__ import annotations

import tempfile

import numpy as np
import pytest
from proxystore import serialize as ps
from proxystore.store import Store

import proxystore_rs
from proxystore_rs import deserialize
from proxystore_rs import serialize

ARRAYS = [
    np.arange(1000, dtype=np.float64),
    np.arange(24, dtype=np.int32).reshape(2, 3, 4),
    np.arange(10, dtype=np.uint8),
    np.array([], dtype=np.float32),
    np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    np.array(3.5),
]


@pytest.mark.parametrize('array', ARRAYS, ids=lambda a: f'{a.dtype}{a.shape}')
def test_byte_compatible_with_python_proxystore_both_ways(array: np.ndarray) -> None:
    ours = serialize(array)
    assert bytes(ours[:3]) == b'NP\n'
    # Data on a 64-byte boundary from the start of the object.
    assert (len(ours) - array.nbytes) % 64 == 0
    np.testing.assert_array_equal(ps.deserialize(bytes(ours)), array)
    np.testing.assert_array_equal(deserialize(ours), array)
    theirs = ps.serialize(array)
    np.testing.assert_array_equal(deserialize(theirs), array)


def test_other_objects_fall_back_to_python_proxystore() -> None:
    for obj in ['text', {'a': [1, 2]}, np.array([object(), 1], dtype=object)[1:], 7]:
        out = deserialize(serialize(obj))
        if isinstance(obj, np.ndarray):
            assert list(out) == list(obj)
        else:
            assert out == obj
    raw = deserialize(serialize(b'raw bytes'))
    assert isinstance(raw, memoryview) and raw.readonly and bytes(raw) == b'raw bytes'


def test_arrays_are_aligned_read_only_views_of_the_rust_buffer() -> None:
    with tempfile.TemporaryDirectory(dir='/dev/shm') as d:
        connector = proxystore_rs.ShmConnector(d)
        store = Store(
            'zero-copy-serialize',
            connector,
            serializer=serialize,
            deserializer=deserialize,
            cache_size=0,
        )
        big = np.arange(1 << 20, dtype=np.float64)  # 8 MiB: mapped, not read
        key = store.put(big)
        got = store.get(key)
        np.testing.assert_array_equal(got, big)
        assert not got.flags.writeable
        assert not got.flags.owndata
        assert got.flags.aligned and got.ctypes.data % 64 == 0
        # The array is a view of the buffer get returned, not a copy of it.
        buffer = got.base
        while isinstance(buffer, np.ndarray):
            buffer = buffer.base
        assert isinstance(buffer, memoryview)
        assert np.frombuffer(buffer, dtype=np.uint8).ctypes.data + (
            len(buffer) - big.nbytes
        ) == got.ctypes.data
        # Python ProxyStore's own serializer reads the same object.
        np.testing.assert_array_equal(store.get(key, deserializer=ps.deserialize), big)
        store.close(clear=True)


def test_garbage_is_an_error_not_a_crash() -> None:
    for junk in [b'NP\n\x93NUMPY\x09\x00', b'NP\nnot npy', b'XX\nstuff']:
        with pytest.raises(Exception):
            deserialize(junk)


def test_arrays_are_framed_in_one_rust_buffer_that_a_put_holds() -> None:
    array = np.arange(1 << 18, dtype=np.float64)  # 2 MiB: a huge-page buffer
    ours = serialize(array)
    assert isinstance(ours, memoryview) and ours.readonly
    assert type(ours.obj).__name__ == 'RustBuffer'
    np.testing.assert_array_equal(deserialize(ours), array)
    # A connector that keeps objects in this process holds it: the bytes it
    # returns are the serializer's own.
    c = proxystore_rs.ZmqConnector()
    key = c.put(ours)
    got = c.get(key)
    assert np.frombuffer(got, dtype=np.uint8).ctypes.data == np.frombuffer(
        ours, dtype=np.uint8
    ).ctypes.data
    c.close()


def test_concat_joins_buffers_and_refuses_strided_ones() -> None:
    joined = proxystore_rs.concat(b'ab', bytearray(b'cd'), np.array([1, 2], dtype=np.uint8))
    assert joined.readonly
    assert bytes(joined) == b'abcd\x01\x02'
    assert bytes(proxystore_rs.concat()) == b''
    assert bytes(proxystore_rs.concat(b'', np.empty(0), bytearray())) == b''
    with pytest.raises(BufferError):
        proxystore_rs.concat(b'x', np.arange(10, dtype=np.uint8)[::2])
    with pytest.raises(TypeError):
        proxystore_rs.concat(3)
