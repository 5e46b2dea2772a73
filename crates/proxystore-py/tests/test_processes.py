"""Other processes: a fresh one rebuilding the store from its config, and
forked children, which must not reuse a connector's threads."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import uuid
from typing import Any

import numpy as np
import pytest
from proxystore.store import Store
from proxystore.store.config import StoreConfig

import proxystore_rs


def _read_in_fresh_process(config: StoreConfig, key: Any, proxy: bytes) -> Any:
    """Runs in a spawned interpreter: what the parent stored, two ways."""
    store = Store.from_config(config)
    by_key = store.get(key)
    by_proxy = pickle.loads(proxy)  # resolves through the store's config
    return by_key, float(np.sum(by_proxy)), type(store.connector).__name__


@pytest.fixture(scope='module')
def spawn_pool() -> Any:
    ctx = multiprocessing.get_context('spawn')
    with ctx.Pool(1) as pool:
        yield pool


def test_fresh_process_reads_from_store_config(
    connector: Any, spawn_pool: Any,
) -> None:
    name = f'test-{uuid.uuid4().hex}'
    with Store(name, connector, register=True) as store:
        key = store.put({'from': 'parent'})
        proxy = store.proxy(np.arange(100.0))
        got = spawn_pool.apply(
            _read_in_fresh_process,
            (store.config(), key, pickle.dumps(proxy)),
        )
        assert got == ({'from': 'parent'}, 4950.0, type(connector).__name__)


def _in_forked_child(connector: Any, key: Any) -> int:
    """Fork; the child tries `get`. 0: it read the object, 1: ForkError."""
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            code = 0 if bytes(connector.get(key)) == b'data' else 2
        except proxystore_rs.ForkError as e:
            code = 1 if 'fork() child' in str(e) else 4
        except BaseException:
            code = 5
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize('kind', ['zmq', 'redis'])
def test_fork_child_raises(make_connector: Any, kind: str) -> None:
    c = make_connector(kind)
    key = c.put(b'data')
    assert _in_forked_child(c, key) == 1
    # The parent's connector is untouched.
    assert bytes(c.get(key)) == b'data'


@pytest.mark.parametrize('kind', ['file', 'shm'])
def test_fork_child_may_use_file_connectors(
    make_connector: Any, kind: str,
) -> None:
    c = make_connector(kind)
    assert _in_forked_child(c, c.put(b'data')) == 0
