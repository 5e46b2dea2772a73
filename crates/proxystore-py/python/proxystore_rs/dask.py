"""A Dask `Client` that passes large arguments and results by proxy.

`proxystore_rs.dask.Client` takes `ps_store` and `ps_threshold` like
proxystore-ex's `proxystore_ex.plugins.distributed.Client`, so code switches
by changing the import:

    from proxystore.store import Store
    from proxystore_rs import ShmConnector
    from proxystore_rs.dask import Client

    with Store('data', ShmConnector(), register=True) as store:
        client = Client(cluster, ps_store=store, ps_threshold=100_000)
        y = client.submit(numpy.sum, big_array).result()

How it differs from proxystore-ex's client (see docs/python.md):

* Sizes are measured without serializing: `nbytes` of numpy arrays and
  other buffers, `len` of `bytes` and `str`. An object of unknown size is
  serialized once with the store's serializer and those bytes are used
  either way: put in the store when large, sent by value inside the task
  (and deserialized on the worker) when small.
* A task's key is `<function name>-<uuid4>` unless given (tasks are never
  tokenized: tokenizing hashes or pickles every argument).
* The task runs inside a wrapper on the worker that evicts the argument
  proxies this client created once the function returned (no done-callback,
  no extra message) and proxies the result (`evict=True`) when its size
  (`nbytes`, `len`, else `dask.sizeof`) reaches the threshold.

Only the `Store` API is used, so any ProxyStore store works (Python
ProxyStore's connectors as well as `proxystore_rs`'s).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any
from typing import TypeVar

from dask.sizeof import sizeof
from dask.utils import funcname
from distributed import Client as DaskClient
from distributed import Future as DaskFuture
from proxystore.proxy import Proxy
from proxystore.proxy import get_factory
from proxystore.store import get_or_create_store
from proxystore.store import get_store
from proxystore.store.base import Store
from proxystore.store.config import StoreConfig
from proxystore.store.utils import get_key

__all__ = ['Client', 'known_nbytes']

T = TypeVar('T')

_SCALARS = (bool, int, float, complex, type(None))


def known_nbytes(obj: Any) -> int | None:
    """The size of `obj` in bytes if known without serializing, else `None`.

    `len` for `bytes`, `bytearray` and `str` (code points: a lower bound of
    its UTF-8 size), `nbytes` for `memoryview` and numeric numpy arrays
    (and other objects whose `nbytes` is an `int`, except object arrays),
    0 for scalars and `None`.
    """
    if isinstance(obj, (Proxy, DaskFuture)):
        return 0  # checked first: other checks would resolve a proxy
    if isinstance(obj, (bytes, bytearray, str)):
        return len(obj)
    if isinstance(obj, memoryview):
        return obj.nbytes
    if isinstance(obj, _SCALARS):
        return 0
    nbytes = getattr(type(obj), 'nbytes', None)
    if nbytes is None:
        return None
    dtype = getattr(obj, 'dtype', None)
    if dtype is not None and getattr(dtype, 'hasobject', False):
        return None  # object arrays: nbytes counts pointers only
    value = getattr(obj, 'nbytes', None)
    return value if isinstance(value, int) else None


def _identity(data: bytes) -> bytes:
    """Serializer of bytes that are already serialized."""
    return data


def _holds_futures(obj: Any) -> bool:
    """Whether a container holds Dask futures at its top level."""
    if isinstance(obj, dict):
        obj = obj.values()
    elif not isinstance(obj, (list, tuple, set, frozenset)):
        return False
    return any(isinstance(x, DaskFuture) for x in obj)


class _ProxyArg:
    """An argument this client put in the store: the worker passes a proxy
    of `factory` to the function, then evicts `key`.

    It carries the proxy's factory, not a `Proxy`: pickling a `Proxy` in
    this process resolves it (cloudpickle's `reducer_override` asks
    `isinstance(obj, FunctionType)`, which reads the proxy's `__class__`),
    so the client fetched every argument it had just put, and kept it for
    as long as Dask keeps the task message (the scheduler's recent-message
    log): on the `shm` arena that pinned every input's block until the
    arena was full and puts fell back to files."""

    __slots__ = ('factory', 'key')

    def __init__(self, factory: Any, key: Any) -> None:
        self.factory = factory
        self.key = key

    def __reduce__(self) -> tuple[Any, ...]:
        return (_ProxyArg, (self.factory, self.key))


class _Serialized:
    """A small argument of unknown size, already serialized by the store's
    serializer: sent by value, deserialized on the worker."""

    __slots__ = ('data',)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Serialized, (self.data,))


def _pack(
    obj: Any,
    store: Store[Any],
    threshold: int | None,
) -> Any:
    """`obj` as it travels in the task: by value, `_Serialized` or
    `_ProxyArg`."""
    if (
        threshold is None
        or isinstance(obj, (Proxy, DaskFuture))
        or hasattr(type(obj), '__dask_graph__')
        or _holds_futures(obj)
    ):
        return obj
    size = known_nbytes(obj)
    if size is not None:
        if size < threshold:
            return obj
        proxy = store.proxy(obj, evict=False, populate_target=False)
        return _ProxyArg(get_factory(proxy), get_key(proxy))
    data = store.serializer(obj)
    if len(data) < threshold:
        return _Serialized(data)
    proxy = store.proxy(
        data, evict=False, serializer=_identity, populate_target=False,
    )
    return _ProxyArg(get_factory(proxy), get_key(proxy))


def _worker_store(config: StoreConfig) -> Store[Any]:
    """The store named in `config` in this process (built once)."""
    store = get_store(config.name)
    if store is None:
        store = get_or_create_store(config, register=True)
    return store


class _TaskWrapper:
    """Runs a task on the worker: unpacks its arguments, calls the function,
    evicts the argument proxies and proxies a large result."""

    def __init__(
        self,
        func: Callable[..., Any],
        store_config: StoreConfig,
        threshold: int | None,
        evict_on_error: bool,
    ) -> None:
        self.func = func
        self.store_config = store_config
        self.threshold = threshold
        self.evict_on_error = evict_on_error
        self.__name__ = funcname(func)

    def _evict(self, keys: list[Any]) -> None:
        store = _worker_store(self.store_config)
        for key in keys:
            store.evict(key)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        store: Store[Any] | None = None
        keys: list[Any] = []

        def unpack(x: Any) -> Any:
            nonlocal store
            if isinstance(x, _ProxyArg):
                keys.append(x.key)
                return Proxy(x.factory)
            if isinstance(x, _Serialized):
                if store is None:
                    store = _worker_store(self.store_config)
                return store.deserializer(x.data)
            return x

        args = tuple(unpack(a) for a in args)
        kwargs = {k: unpack(v) for k, v in kwargs.items()}
        try:
            result = self.func(*args, **kwargs)
        except BaseException:
            if keys and self.evict_on_error:
                self._evict(keys)
            raise
        if isinstance(result, Proxy):
            # A function returning its argument's proxy keeps that object.
            returned = get_key(result)
            keys = [k for k in keys if k != returned]
        if keys:
            self._evict(keys)
        if self.threshold is None or isinstance(result, Proxy):
            return result
        size = known_nbytes(result)
        if size is None:
            size = sizeof(result)
        if size < self.threshold:
            return result
        store = store or _worker_store(self.store_config)
        # populate_target: the worker measures the proxy it keeps
        # (dask.sizeof); resolving it through the store would evict it.
        return store.proxy(result, evict=True, populate_target=True)


class Client(DaskClient):
    """`distributed.Client` passing large arguments and results by proxy.

    Args:
        args: Positional arguments of `distributed.Client`.
        ps_store: Store to put large objects in (`None`: a plain client).
            Register it (`register=True`) so workers in this process and
            the results resolved here use this instance.
        ps_threshold: Objects of at least this many bytes are proxied.
        kwargs: Keyword arguments of `distributed.Client`.
    """

    def __init__(
        self,
        *args: Any,
        ps_store: Store[Any] | None = None,
        ps_threshold: int = 100_000,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._ps_store = ps_store
        self._ps_threshold = ps_threshold
        self._ps_config = ps_store.config() if ps_store is not None else None
        self._ps_wrappers: dict[Any, _TaskWrapper] = {}

    def _wrapper(
        self, func: Callable[..., Any], proxy_result: bool, evict_on_error: bool,
    ) -> _TaskWrapper:
        """The wrapper of `func`, one per function and flags, so Dask's
        cache of pickled functions serves repeated submissions."""
        assert self._ps_config is not None
        threshold = self._ps_threshold if proxy_result else None
        try:
            cache_key: Any = (func, threshold, evict_on_error)
            hash(cache_key)
        except TypeError:
            cache_key = None
        wrapper = self._ps_wrappers.get(cache_key) if cache_key else None
        if wrapper is None:
            wrapper = _TaskWrapper(
                func, self._ps_config, threshold, evict_on_error,
            )
            if cache_key is not None:
                if len(self._ps_wrappers) >= 256:
                    self._ps_wrappers.clear()
                self._ps_wrappers[cache_key] = wrapper
        return wrapper

    def submit(  # type: ignore[override]
        self,
        func: Callable[..., T],
        *args: Any,
        key: str | None = None,
        pure: bool = True,
        retries: int | None = None,
        proxy_args: bool = True,
        proxy_result: bool = True,
        **kwargs: Any,
    ) -> DaskFuture:
        """`distributed.Client.submit`, proxying large arguments and result.

        With a store, arguments of at least `ps_threshold` bytes are put
        and replaced by proxies the worker evicts once `func` returned (or
        raised, unless `retries` is set); a result of at least `ps_threshold`
        bytes comes back as a proxy evicted when resolved. The task key is
        `<name>-<uuid4>` unless `key` is given (`pure` is ignored: results
        holding evicting proxies are not cached). `proxy_args=False` or
        `proxy_result=False` turn either side off for this call.
        """
        store = self._ps_store
        if store is None or self._ps_config is None:
            return super().submit(
                func, *args, key=key, pure=pure, retries=retries, **kwargs,
            )
        options = {k: kwargs.pop(k) for k in _SUBMIT_OPTIONS if k in kwargs}
        threshold = self._ps_threshold if proxy_args else None
        packed = tuple(_pack(a, store, threshold) for a in args)
        packed_kwargs = {k: _pack(v, store, threshold) for k, v in kwargs.items()}
        wrapper = self._wrapper(func, proxy_result, not retries)
        if key is None:
            key = f'{funcname(func)}-{uuid.uuid4().hex}'
        return super().submit(
            wrapper, *packed, key=key, pure=False, retries=retries,
            **options, **packed_kwargs,
        )

    def map(  # type: ignore[override]
        self,
        func: Callable[..., T],
        *iterables: Iterable[Any],
        key: str | list[str] | None = None,
        pure: bool = True,
        batch_size: int | None = None,
        proxy_args: bool = True,
        proxy_result: bool = True,
        **kwargs: Any,
    ) -> list[DaskFuture]:
        """`distributed.Client.map` as one `submit` per item.

        With a store, each call's arguments and result are handled as in
        `submit` (keyword arguments are proxied once per call, and evicted
        after it). `key` is a prefix or a list of keys; `batch_size` is
        ignored.
        """
        if self._ps_store is None:
            return super().map(
                func, *iterables, key=key, pure=pure, batch_size=batch_size,
                **kwargs,
            )
        calls = list(zip(*iterables))
        if isinstance(key, list):
            if len(key) != len(calls):
                raise ValueError(f'{len(key)} keys for {len(calls)} calls')
            keys = key
        else:
            prefix = key or funcname(func)
            keys = [f'{prefix}-{uuid.uuid4().hex}' for _ in calls]
        return [
            self.submit(
                func, *call, key=k, proxy_args=proxy_args,
                proxy_result=proxy_result, **kwargs,
            )
            for k, call in zip(keys, calls)
        ]


# Keyword arguments of `distributed.Client.submit` that are not the task's.
_SUBMIT_OPTIONS = (
    'workers',
    'resources',
    'priority',
    'allow_other_workers',
    'fifo_timeout',
    'actor',
    'actors',
)
