"""The connector classes on their own: buffers, keys, configs, errors."""

from __future__ import annotations

import ctypes
import gc
import pickle
import tempfile
import threading
import time
import uuid
from typing import Any

import numpy as np
import pytest
from proxystore.store import Store

import proxystore_rs


def test_get_is_a_read_only_view_of_the_rust_buffer(connector: Any) -> None:
    key = connector.put(b'hello world')
    view = connector.get(key)
    assert isinstance(view, memoryview)
    assert view.readonly
    assert isinstance(view.obj, proxystore_rs.RustBuffer)
    assert len(view.obj) == 11
    with pytest.raises(TypeError):
        view[0] = 0
    with pytest.raises(TypeError, match='not writable'):
        ctypes.c_char.from_buffer(view.obj)  # asks for a writable export
    # The view owns its memory: it outlives the object and the connector.
    connector.evict(key)
    assert not connector.exists(key)
    del key
    gc.collect()
    assert view.tobytes() == b'hello world'
    assert bytes(view[6:]) == b'world'


def test_view_survives_close(make_connector: Any) -> None:
    c = make_connector('zmq')
    view = c.get(c.put(b'x' * 4096))
    c.close()
    del c
    gc.collect()
    assert view.tobytes() == b'x' * 4096


def test_put_accepts_buffers(connector: Any) -> None:
    a = np.arange(1000, dtype=np.float64)
    assert np.array_equal(np.frombuffer(connector.get(connector.put(a))), a)
    # Non-contiguous arrays are copied in C order.
    cols = np.arange(12, dtype=np.int32).reshape(3, 4)[:, ::2]
    got = np.frombuffer(connector.get(connector.put(cols)), dtype=np.int32)
    assert np.array_equal(got, cols.ravel())
    ba = bytearray(b'abc')
    key = connector.put(ba)
    ba[0] = ord('z')  # a writable buffer was copied at put
    assert bytes(connector.get(key)) == b'abc'
    mv = memoryview(b'0123456789')[2:5]
    assert bytes(connector.get(connector.put(mv))) == b'234'
    # A view from get goes back in without a copy.
    view = connector.get(connector.put(b'again'))
    assert bytes(connector.get(connector.put(view))) == b'again'
    with pytest.raises(TypeError, match='bytes-like'):
        connector.put(42)
    with pytest.raises(TypeError, match='bytes-like'):
        connector.put('text')


def test_numpy_view_of_get(connector: Any) -> None:
    a = np.linspace(0, 1, 10_000)
    out = np.frombuffer(connector.get(connector.put(a.tobytes())))
    assert np.array_equal(out, a)
    assert not out.flags.writeable


def test_keys_pickle_and_hash(connector: Any) -> None:
    key = connector.put(b'k')
    assert isinstance(key, proxystore_rs.RustKey)
    assert isinstance(key.text, str)
    again = pickle.loads(pickle.dumps(key))
    assert again == key
    assert {key: 1}[again] == 1
    # The key's text works too.
    assert bytes(connector.get(key.text)) == b'k'


def test_bad_keys(connector: Any) -> None:
    with pytest.raises(proxystore_rs.InvalidKeyError, match='malformed key'):
        connector.get(proxystore_rs.RustKey('not-a-key'))
    with pytest.raises(TypeError, match='RustKey'):
        connector.exists(12)


def test_config_round_trips_through_init(connector: Any) -> None:
    config = connector.config()
    assert all(isinstance(v, str) for v in config.values())
    cls = type(connector)
    again = cls(**config)
    assert again.config() == config
    assert cls.from_config(config).config() == config
    key = connector.put(b'shared')
    assert bytes(again.get(key)) == b'shared'
    unpickled = pickle.loads(pickle.dumps(connector))
    assert type(unpickled) is cls
    assert bytes(unpickled.get(key)) == b'shared'
    for c in (again, unpickled):
        c.close()


def test_generic_connector_options() -> None:
    with tempfile.TemporaryDirectory() as d:
        c = proxystore_rs.Connector('file', dir=d, mmap_threshold=4096)
        assert c.kind == 'file'
        assert c.config() == {
            'kind': 'file',
            'dir': d,
            'mmap_threshold': '4096',
        }
        c.close()
    assert 'file' in proxystore_rs.compiled_connectors()


def test_errors_name_what_failed() -> None:
    with pytest.raises(proxystore_rs.ConfigError, match="unknown connector 'nope'"):
        proxystore_rs.Connector('nope')
    with pytest.raises(proxystore_rs.ConfigError, match="lacks option 'url'"):
        proxystore_rs.Connector('redis')
    with pytest.raises(TypeError, match="'kind' is fixed"):
        proxystore_rs.FileConnector('/tmp', kind='shm')
    with pytest.raises(proxystore_rs.ConfigError, match='mmap_threshold'):
        proxystore_rs.ShmConnector(mmap_threshold='lots')
    assert issubclass(proxystore_rs.ForkError, proxystore_rs.ProxyStoreError)


def test_closed_connector_raises(make_connector: Any) -> None:
    c = make_connector('zmq')
    key = c.put(b'x')
    c.close()
    c.close()
    with pytest.raises(proxystore_rs.ConnectorClosedError, match='ZmqConnector.get'):
        c.get(key)


def test_unreachable_peer_names_its_address() -> None:
    c = proxystore_rs.ZmqConnector(timeout_ms=300)
    key = c.put(b'x')
    c.close()
    reader = proxystore_rs.ZmqConnector(timeout_ms=300)
    with pytest.raises(
        proxystore_rs.PeerUnreachableError,
        match=r'ZmqConnector.get: peer tcp://127\.0\.0\.1:\d+ unreachable',
    ):
        reader.get(key)
    reader.close()


def test_blocking_calls_release_the_gil() -> None:
    # A get from a vanished peer waits its whole timeout (2 s) in Rust;
    # meanwhile this thread must get the GIL back at once.
    c = proxystore_rs.ZmqConnector()
    key = c.put(b'x')
    c.close()
    reader = proxystore_rs.ZmqConnector(timeout_ms=2000)
    waiting = threading.Thread(target=_get_ignoring_errors, args=(reader, key))
    start = time.monotonic()
    waiting.start()
    time.sleep(0.1)
    resumed = time.monotonic() - start
    assert waiting.is_alive()
    assert resumed < 1.0, f'main thread blocked {resumed:.2f} s'
    waiting.join()
    reader.close()


def _get_ignoring_errors(c: Any, key: Any) -> None:
    try:
        c.get(key)
    except proxystore_rs.ProxyStoreError:
        pass


def test_put_of_a_released_memoryview_keeps_its_bytes(make_connector: Any) -> None:
    c = make_connector('zmq')  # keeps what it puts in this process
    data = bytes(range(256)) * 64
    mv = memoryview(data)[16:1040]
    key = c.put(mv)
    mv.release()
    del data
    gc.collect()
    assert bytes(c.get(key)) == (bytes(range(256)) * 64)[16:1040]


def test_redis_interop_with_python_proxystore(redis_url: str) -> None:
    """With prefix='' and key_format='uuid' the Rust connector reads what
    Python ProxyStore's RedisConnector wrote, given Python's key, and the
    reverse; and so do Stores over them."""
    from proxystore.connectors.redis import RedisConnector as PyRedis
    from proxystore.connectors.redis import RedisKey

    host, port = redis_url.removeprefix('redis://').split(':')
    theirs = PyRedis(host, int(port))
    ours = proxystore_rs.RedisConnector(redis_url, prefix='', key_format='uuid')
    # Python wrote it; Rust reads it by Python's key.
    their_key = theirs.put(b'written by python')
    assert bytes(ours.get(their_key)) == b'written by python'
    assert ours.exists(their_key)
    # Rust wrote it; Python reads it by the same UUID.
    our_key = ours.put(b'written by rust')
    uuid_text = str(uuid.UUID(hex=our_key.text.split('.')[0].split('@')[0]))
    assert theirs.get(RedisKey(redis_key=uuid_text)) == b'written by rust'
    # Stores over either connector share objects (Python's serializer both ways).
    py_store = Store('interop-py', theirs, cache_size=0)
    rs_store = Store('interop-rs', ours, cache_size=0)
    key = py_store.put({'a': [1, 2, 3]})
    assert rs_store.get(key) == {'a': [1, 2, 3]}
    ours.evict(their_key)
    assert theirs.get(their_key) is None
    with pytest.raises(TypeError, match='not a UUID'):
        ours.get(RedisKey(redis_key='proxystore:abc'))
    theirs.evict(RedisKey(redis_key=uuid_text))
    py_store.close()
    rs_store.close()


def test_file_interop_with_python_proxystore(tmp_path: Any) -> None:
    """With layout='python' the Rust file connector and Python ProxyStore's
    FileConnector share one directory both ways, by Python's FileKey, and
    Stores over them share objects."""
    from proxystore.connectors.file import FileConnector as PyFile
    from proxystore.connectors.file import FileKey

    store_dir = str(tmp_path / 'shared')
    theirs = PyFile(store_dir, clear=False)
    ours = proxystore_rs.FileConnector(store_dir, layout='python')
    their_key = theirs.put(b'written by python')
    assert bytes(ours.get(their_key)) == b'written by python'
    assert ours.exists(their_key)
    our_key = ours.put(b'written by rust')
    uuid_text = str(uuid.UUID(hex=our_key.text.split('.')[0].split('@')[0]))
    assert theirs.get(FileKey(filename=uuid_text)) == b'written by rust'
    py_store = Store('file-interop-py', theirs, cache_size=0)
    rs_store = Store('file-interop-rs', ours, cache_size=0)
    key = py_store.put(np.arange(10.0))
    assert np.array_equal(rs_store.get(key), np.arange(10.0))
    ours.evict(their_key)
    assert theirs.get(their_key) is None
    with pytest.raises(TypeError, match='not a UUID'):
        ours.get(FileKey(filename='not-a-uuid'))
    assert ours.config()['layout'] == 'python'
    py_store.close(clear=False)
    rs_store.close(clear=True)
