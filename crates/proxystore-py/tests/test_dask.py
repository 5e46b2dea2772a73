"""Dask with proxystore_rs connectors: the three integration models of
issue 14 (by hand, proxystore-ex's Client, StoreExecutor) and
`proxystore_rs.dask.Client`, on one two-process LocalCluster per module.

Workers are separate (spawned) processes: they rebuild each connector from
the store's config. A zmq object lives in the process that put it (this
one for arguments, a worker for results), so the other side fetches it.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from distributed import Client as DaskClient
from distributed import LocalCluster
from proxystore.connectors.file import FileConnector as PyFileConnector
from proxystore.proxy import Proxy
from proxystore.store import Store
from proxystore.store import unregister_store
from proxystore.store.executor import ProxyType
from proxystore.store.executor import StoreExecutor
from proxystore.store.utils import get_key

import proxystore_rs
from proxystore_rs.dask import Client as RsClient
from proxystore_rs.dask import known_nbytes

with warnings.catch_warnings():
    warnings.simplefilter('ignore')  # its ExperimentalWarning
    from proxystore_ex.plugins.distributed import Client as ExClient

RUST_KINDS = ['shm', 'zmq', 'redis']
THRESHOLD = 1000
BIG = np.arange(1000.0)  # 8000 bytes: above THRESHOLD
SMALL = np.arange(10.0)  # 80 bytes: below


@pytest.fixture(scope='module')
def cluster() -> Iterator[LocalCluster]:
    """Two worker processes, one thread each, no dashboard."""
    with LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        dashboard_address=None,
        host='127.0.0.1',
    ) as c:
        yield c


@pytest.fixture(scope='module')
def dask_client(cluster: LocalCluster) -> Iterator[DaskClient]:
    """A plain distributed.Client on the cluster."""
    with DaskClient(cluster) as c:
        yield c


@pytest.fixture(params=RUST_KINDS)
def store(
    request: pytest.FixtureRequest, make_connector: Callable[[str], Any],
) -> Iterator[Store[Any]]:
    """A registered Store over a Rust connector of each kind."""
    s = Store(
        f'dask-{uuid.uuid4().hex}', make_connector(request.param),
        register=True,
    )
    yield s
    unregister_store(s.name)  # the connector is closed by make_connector


def describe(x: Any) -> tuple[Any, float]:
    """The key `x` proxies (None if `x` came by value) and its sum."""
    key = get_key(x) if isinstance(x, Proxy) else None
    return key, float(np.sum(x))


def double(x: Any) -> Any:
    """Twice `x` (a new array: the result, not the argument)."""
    return x * 2


def wait_evicted(store: Store[Any], key: Any, timeout: float = 10.0) -> bool:
    """Whether `key` is gone within `timeout` (done-callbacks run later)."""
    deadline = time.monotonic() + timeout
    while store.exists(key):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# (a) By hand: proxies passed to a plain client.submit.


def test_by_hand(store: Store[Any], dask_client: DaskClient) -> None:
    evicting = store.proxy(BIG, evict=True)
    kept = store.proxy(BIG)
    k1, k2 = get_key(evicting), get_key(kept)
    assert store.exists(k1) and store.exists(k2)
    f1 = dask_client.submit(describe, evicting, pure=False)
    f2 = dask_client.submit(describe, kept, pure=False)
    assert f1.result() == (k1, float(BIG.sum()))
    assert f2.result() == (k2, float(BIG.sum()))
    # evict=True: the worker resolving it evicted the object.
    assert not store.exists(k1)
    assert not store.connector.exists(k1)
    # evict=False: it stays until the caller evicts it.
    assert store.exists(k2)
    store.evict(k2)
    assert not store.exists(k2)


# (b) proxystore-ex's Client with a registered store.


def test_proxystore_ex_client(store: Store[Any], cluster: LocalCluster) -> None:
    with ExClient(cluster, ps_store=store, ps_threshold=THRESHOLD) as client:
        key, total = client.submit(describe, BIG).result()
        assert total == float(BIG.sum())
        assert key is not None  # the worker got a proxy
        # Arguments are evicted by a done-callback on the future.
        assert wait_evicted(store, key)
        assert client.submit(describe, SMALL).result() == (
            None, float(SMALL.sum()),
        )
        result = client.submit(double, BIG).result()
        assert isinstance(result, Proxy)
        rkey = get_key(result)
        assert store.exists(rkey)
        assert np.array_equal(result, BIG * 2)  # resolves: evict=True
        assert not store.exists(rkey)


# (c) StoreExecutor around a Dask client, ownership=False.


def test_store_executor(store: Store[Any], dask_client: DaskClient) -> None:
    executor = StoreExecutor(
        dask_client, store, should_proxy=ProxyType(np.ndarray),
        ownership=False, close_store=False,
    )
    key, total = executor.submit(describe, BIG).result()
    assert total == float(BIG.sum()) and key is not None
    assert wait_evicted(store, key)  # inputs: evicted by a done-callback
    result = executor.submit(double, BIG).result()
    assert isinstance(result, Proxy)
    assert np.array_equal(result, BIG * 2)
    # ownership=False: results are plain proxies the caller evicts.
    rkey = get_key(result)
    assert store.exists(rkey)
    store.evict(rkey)
    assert not store.exists(rkey)
    # Not proxied (should_proxy says no): by value.
    assert executor.submit(describe, [1.0, 2.0]).result() == (None, 3.0)


# proxystore_rs.dask.Client


def same(x: Any) -> Any:
    """Returns its argument (a proxy, when it came as one)."""
    return x


def fail(x: Any) -> None:
    """Raises, naming the key `x` proxies."""
    raise ValueError(get_key(x) if isinstance(x, Proxy) else None)


class Counted:
    """Counts how often it is pickled (in this process)."""

    pickled = 0

    def __init__(self, n: int) -> None:
        self.values = list(range(n))

    def __reduce__(self) -> tuple[Any, ...]:
        Counted.pickled += 1
        return (_rebuild_counted, (self.values,))


def _rebuild_counted(values: list[int]) -> Counted:
    c = Counted(0)
    c.values = values
    return c


def count(c: Any) -> tuple[Any, int]:
    """The key `c` proxies (None if by value) and its length."""
    key = get_key(c) if isinstance(c, Proxy) else None
    return key, len(c.values)


@contextlib.contextmanager
def counting_resolves() -> Iterator[list[int]]:
    """Counts the proxies resolved in this process meanwhile."""
    import proxystore.store.factory as factory_module

    calls = [0]
    original = factory_module.StoreFactory.resolve

    def resolve(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(self, *args, **kwargs)

    factory_module.StoreFactory.resolve = resolve  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        factory_module.StoreFactory.resolve = original  # type: ignore[method-assign]


def check_rs_client(store: Store[Any], cluster: LocalCluster) -> None:
    """proxystore_rs.dask.Client's promises over `store`."""
    with RsClient(cluster, ps_store=store, ps_threshold=THRESHOLD) as client:
        # Submitting never fetches the argument back in this process (the
        # scheduler of a LocalCluster is here too): pickling a Proxy would,
        # when the task goes through cloudpickle (a lambda, or a function
        # of a script's __main__, as bench_dask.py's).
        with counting_resolves() as resolved:
            future = client.submit(lambda x: describe(x), BIG)
            key, total = future.result()
        assert resolved[0] == 0
        assert key is not None and total == float(BIG.sum())
        del future
        # A large argument is proxied and evicted by the worker before the
        # result comes back: no waiting.
        key, total = client.submit(describe, BIG).result()
        assert key is not None and total == float(BIG.sum())
        assert not store.exists(key)
        # Keyword arguments too.
        key, total = client.submit(describe, x=BIG).result()
        assert key is not None and not store.exists(key)
        # Small arguments by value.
        assert client.submit(describe, SMALL).result() == (
            None, float(SMALL.sum()),
        )
        assert client.submit(len, b'x' * 10).result() == 10
        # Unknown size: serialized once, put if large, by value if small.
        Counted.pickled = 0
        key, n = client.submit(count, Counted(2000)).result()
        assert key is not None and n == 2000 and not store.exists(key)
        assert client.submit(count, Counted(3)).result() == (None, 3)
        assert Counted.pickled == 2  # once per object
        # A large result comes back as a proxy, evicted when resolved.
        result = client.submit(double, BIG).result()
        assert isinstance(result, Proxy)
        rkey = get_key(result)
        assert store.exists(rkey)
        assert np.array_equal(result, BIG * 2)
        assert not store.exists(rkey)
        # A small one by value.
        small = client.submit(double, SMALL).result()
        assert type(small) is np.ndarray
        assert np.array_equal(small, SMALL * 2)
        # A function returning its argument's proxy: that object is kept.
        back = client.submit(same, BIG).result()
        assert isinstance(back, Proxy) and store.exists(get_key(back))
        assert np.array_equal(back, BIG)
        store.evict(get_key(back))
        # A failing task's arguments are evicted too (no retries).
        with pytest.raises(ValueError) as err:
            client.submit(fail, BIG).result()
        failed_key = err.value.args[0]
        assert failed_key is not None and not store.exists(failed_key)
        # map: one task per item, each handled as submit.
        got = client.gather(client.map(describe, [BIG, SMALL]))
        assert got[0][0] is not None and not store.exists(got[0][0])
        assert got[1] == (None, float(SMALL.sum()))
        # Switched off per call.
        assert client.submit(describe, BIG, proxy_args=False).result() == (
            None, float(BIG.sum()),
        )
        plain = client.submit(double, BIG, proxy_result=False).result()
        assert type(plain) is np.ndarray


def test_rs_client(store: Store[Any], cluster: LocalCluster) -> None:
    check_rs_client(store, cluster)


def test_rs_client_python_store(cluster: LocalCluster) -> None:
    """It only uses the Store API: Python ProxyStore's FileConnector works."""
    d = tempfile.mkdtemp(prefix='psrs-dask-')
    try:
        with Store(
            f'dask-{uuid.uuid4().hex}', PyFileConnector(d), register=True,
        ) as store:
            check_rs_client(store, cluster)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_rs_client_without_store(cluster: LocalCluster) -> None:
    with RsClient(cluster) as client:
        assert client.submit(describe, BIG).result() == (None, float(BIG.sum()))


def test_known_nbytes() -> None:
    assert known_nbytes(b'abc') == 3
    assert known_nbytes(bytearray(5)) == 5
    assert known_nbytes('héllo') == 5
    assert known_nbytes(memoryview(b'x' * 7)) == 7
    assert known_nbytes(np.zeros((4, 4))) == 128
    assert known_nbytes(7) == 0 and known_nbytes(None) == 0
    assert known_nbytes(np.array([object()] * 3)) is None
    assert known_nbytes([1, 2, 3]) is None
    assert known_nbytes({'a': 1}) is None


def _unresolvable() -> Any:
    raise AssertionError('resolved')


def test_known_nbytes_does_not_resolve_proxies() -> None:
    assert known_nbytes(Proxy(_unresolvable)) == 0
