"""proxystore-rs connectors for Python ProxyStore.

Each connector follows ProxyStore 1.1's connector protocol, so it plugs
into `proxystore.store.Store`:

    from proxystore.store import Store
    from proxystore_rs import ZmqConnector

    with Store('data', ZmqConnector()) as store:
        proxy = store.proxy([1, 2, 3])

`get` returns a read-only `memoryview` over the Rust buffer (no copy);
`serialize`/`deserialize` (for `Store(..., serializer=serialize,
deserializer=deserialize)`) keep Python ProxyStore's framing and read
numpy arrays and bytes as views over it.
See docs/python.md in the repository.
"""

from __future__ import annotations

from typing import NamedTuple


class RustKey(NamedTuple):
    """Key of an object in a proxystore-rs connector.

    Holds the Rust key's text form (`<id>[.<size>][@<location>]`), so it
    pickles inside proxies and hashes in a store's cache.
    """

    text: str


# The extension needs RustKey defined above when it builds keys.
from proxystore_rs import _native  # noqa: E402
from proxystore_rs._native import *  # noqa: E402,F403
from proxystore_rs._native import __version__  # noqa: E402

from proxystore_rs._serialize import deserialize  # noqa: E402
from proxystore_rs._serialize import serialize  # noqa: E402

__all__ = ['RustKey', '__version__', 'serialize', 'deserialize'] + [
    name for name in dir(_native) if not name.startswith('_')
]
