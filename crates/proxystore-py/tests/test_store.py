"""The conformance cases through Python ProxyStore's own Store."""

from __future__ import annotations

import os
import pickle
import uuid
from typing import Any

import numpy as np
import pytest
from proxystore.connectors.protocols import Connector as ConnectorProtocol
from proxystore.connectors.protocols import DeferrableConnector
from proxystore.proxy import Proxy
from proxystore.store import Store
from proxystore.store.utils import get_key

import proxystore_rs


def _store(connector: Any, **kwargs: Any) -> Store[Any]:
    return Store(f'test-{uuid.uuid4().hex}', connector, **kwargs)


def test_protocols(connector: Any) -> None:
    assert isinstance(connector, ConnectorProtocol)
    assert isinstance(connector, DeferrableConnector)


def test_put_get_exists_evict(connector: Any) -> None:
    store = _store(connector, cache_size=0)
    key = store.put({'a': [1, 2, 3]})
    assert isinstance(key, proxystore_rs.RustKey)
    assert store.exists(key)
    assert store.get(key) == {'a': [1, 2, 3]}
    store.evict(key)
    assert not store.exists(key)
    assert store.get(key) is None
    assert store.get(key, default='gone') == 'gone'
    store.evict(key)  # twice is fine


def test_empty_and_large(connector: Any) -> None:
    store = _store(connector, cache_size=0)
    assert store.get(store.put(b'')) == b''
    big = np.random.default_rng(0).random(2_000_000)  # 16 MB
    assert np.array_equal(store.get(store.put(big)), big)


def test_batch(connector: Any) -> None:
    store = _store(connector, cache_size=0)
    objs = ['x', b'y', 3, None, list(range(100))]
    keys = store.put_batch(objs)
    assert [store.get(k) for k in keys] == objs
    raw = connector.get_batch([*keys, connector.new_key()])
    assert raw[-1] is None
    assert all(isinstance(v, memoryview) for v in raw[:-1])


def test_missing_key(connector: Any) -> None:
    store = _store(connector)
    # A key naming no object (zmq keys also name the owning server).
    missing = connector.new_key()
    assert not store.exists(missing)
    assert store.get(missing) is None
    assert connector.get(missing) is None


def test_proxy_resolves(connector: Any) -> None:
    store = _store(connector, register=True)
    try:
        proxy = store.proxy(np.arange(1000.0))
        assert isinstance(proxy, Proxy)
        # Unpickling in this process finds the registered store.
        again = pickle.loads(pickle.dumps(proxy))
        assert float(again.sum()) == 499500.0
        assert store.exists(get_key(proxy))
        # Resolving elsewhere (here: after a pickle round trip, without the
        # target the store populated) evicts an evict=True proxy's object.
        owned = pickle.loads(pickle.dumps(store.proxy([1, 2], evict=True)))
        assert owned == [1, 2]
        assert not store.exists(get_key(owned))
    finally:
        store.close()


def test_future(connector: Any) -> None:
    store = _store(connector)
    future = store.future()
    future.set_result({'done': True})
    assert future.result() == {'done': True}


def test_config_round_trip(connector: Any) -> None:
    store = _store(connector)
    config = store.config()
    assert config.connector.kind == (
        f'proxystore_rs.{type(connector).__name__}'
    )
    key = store.put('shared')
    other = Store.from_config(config)
    assert type(other.connector) is type(connector)
    assert other.connector.config() == connector.config()
    assert other.get(key) == 'shared'
    other.connector.close()


def test_close_forwards_arguments(make_connector: Any) -> None:
    store = _store(make_connector('file'))
    key = store.put(1)
    directory = store.connector.config()['dir']
    store.close()  # nothing deleted without clear
    assert os.path.isdir(directory)
    with pytest.raises(proxystore_rs.ConnectorClosedError, match='closed'):
        store.connector.get(key)


def test_close_with_clear_deletes_the_directory(make_connector: Any) -> None:
    for kind, how in (('file', 'keyword'), ('shm', 'positional')):
        connector = make_connector(kind)
        key = connector.put(b'payload')
        directory = connector.config()['dir']
        assert os.path.isdir(directory)
        if how == 'keyword':
            Store('clear-' + kind, connector, cache_size=0).close(clear=True)
        else:
            connector.close(True)
        assert not os.path.exists(directory), kind
        # Closing again, or a directory already gone, is not an error.
        connector.close(clear=True)
        with pytest.raises(proxystore_rs.ConnectorClosedError):
            connector.get(key)
