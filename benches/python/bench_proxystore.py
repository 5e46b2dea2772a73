#!/usr/bin/env python3
"""Baseline benchmark of Python ProxyStore 1.1.0 (``pip install proxystore==1.1.0``).

Measures ``Store.put`` / ``Store.get`` / put+get round trips of ``bytes``
payloads so the numbers can be compared with the Rust ``proxystore bench``.
Connectors: ``local``, ``file``, ``shm`` (ProxyStore 1.1) and ``zmq``
(proxystore-ex 0.1.5's ``ZeroMQConnector`` on loopback, which spawns its
data server process) and ``redis`` (ProxyStore 1.1's ``RedisConnector``,
``pip install redis``, on a ``redis-server`` this script starts).

Notes on the ProxyStore 1.1.0 API (checked against the installed source):

* ``Store(name, connector, *, serializer=None, deserializer=None,
  cache_size=16, metrics=False, populate_target=True, register=False)``.
  ``register`` already defaults to False and ``metrics`` to False (no metric
  bookkeeping); we pass ``cache_size=0`` so every ``get`` hits the connector
  (``LRUCache.set`` is a no-op when ``maxsize == 0``).
* ``Store.put(obj)`` runs ``proxystore.serialize.serialize``: for ``bytes``
  (exactly ``bytes``; a ``bytearray``/``memoryview`` would be *pickled*) it
  writes the 3-byte header ``b'BS\\n'`` followed by the payload into an
  ``io.BytesIO`` and returns ``getvalue()`` (so at least one full copy), then
  calls ``connector.put(serialized)`` under the store's RLock.
* ``Store.get(key)`` calls ``connector.get(key)`` (``LocalConnector``: dict
  lookup, no copy; ``FileConnector``: ``open(path, 'rb').read()`` after
  checking a ``<key>.ready`` marker file) and then ``deserialize``, which
  ``readline()``s the header and ``read()``s the rest (another full copy).
* ``Store.evict(key)`` removes the object (``FileConnector``: data file and
  marker). ``Store.close()`` closes the connector; ``FileConnector`` (default
  ``clear=True``) then deletes its ``store_dir``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

from proxystore.connectors.file import FileConnector
from proxystore.connectors.local import LocalConnector
from proxystore.store import Store
from units import fmt_ns, fmt_size, parse_size, record

DEFAULT_SIZES = '1KiB,64KiB,1MiB,16MiB,64MiB'
DEFAULT_CONNECTORS = 'local,file,shm'
OPS = ('put', 'get', 'roundtrip')
WARMUP = 2
ADAPTIVE_BYTES = 256 * 2**20
PAGE = 4096
def touch(buf: bytes) -> int:
    """Read one byte every 4096 bytes so lazily mapped data is paged in."""
    return len(buf[::PAGE])


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


_SERVERS: list = []


def start_redis() -> int:
    """Start a throwaway redis-server on a free loopback port; stopped at exit."""
    import atexit
    import subprocess
    import redis
    port = free_port()
    proc = subprocess.Popen(
        ['redis-server', '--port', str(port), '--bind', '127.0.0.1',
         '--save', '', '--appendonly', 'no'],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    _SERVERS.append(proc)
    atexit.register(proc.kill)
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis(host='127.0.0.1', port=port).ping()
            return port
        except redis.exceptions.ConnectionError:
            if time.monotonic() > deadline:
                raise RuntimeError('redis-server did not start') from None
            time.sleep(0.02)


def make_store(kind: str) -> tuple[Store, str | None]:
    """Create a cache-less Store for ``kind``; returns (store, temp dir)."""
    if kind == 'local':
        return Store('bench-local', LocalConnector(), cache_size=0), None
    if kind == 'zmq':
        # proxystore-ex 0.1.5 (`pip install proxystore-ex==0.1.5`): the
        # connector spawns its node's data server process on first use.
        from proxystore_ex.connectors.dim.zmq import ZeroMQConnector
        connector = ZeroMQConnector(port=free_port(), address='127.0.0.1', timeout=5)
        return Store('bench-zmq', connector, cache_size=0), None
    if kind == 'redis':
        # ProxyStore 1.1's RedisConnector (`pip install redis`) on a
        # redis-server this script starts.
        from proxystore.connectors.redis import RedisConnector
        connector = RedisConnector('127.0.0.1', start_redis())
        return Store('bench-redis', connector, cache_size=0), None
    base = None if kind == 'file' else '/dev/shm'
    tmp = tempfile.mkdtemp(prefix='proxystore-py-bench-', dir=base)
    return Store(f'bench-{kind}', FileConnector(tmp), cache_size=0), tmp


def run_op(store: Store, op: str, data: bytes, iters: int) -> list[int]:
    """Return ``iters`` timed samples (ns) after ``WARMUP`` untimed ones."""
    clock = time.perf_counter_ns
    samples: list[int] = []
    if op == 'get':
        key = store.put(data)  # untimed
        for i in range(WARMUP + iters):
            t0 = clock()
            out = store.get(key)
            touch(out)
            t1 = clock()
            if i == 0 and out != data:
                raise RuntimeError('get returned wrong data')
            del out
            if i >= WARMUP:
                samples.append(t1 - t0)
        store.evict(key)
        return samples
    for i in range(WARMUP + iters):
        t0 = clock()
        key = store.put(data)
        if op == 'roundtrip':
            out = store.get(key)
            touch(out)
        t1 = clock()
        if op == 'roundtrip':
            if i == 0 and out != data:
                raise RuntimeError('roundtrip returned wrong data')
            del out
        store.evict(key)  # untimed
        if i >= WARMUP:
            samples.append(t1 - t0)
    return samples


def summarize(kind: str, op: str, size: int, samples: list[int]) -> dict:
    """The record of one case, named ``py-<kind>``."""
    return record(f'py-{kind}', op, size, samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--sizes', default=DEFAULT_SIZES,
        help=f'comma-separated payload sizes (default: {DEFAULT_SIZES})',
    )
    parser.add_argument(
        '--connector', default=DEFAULT_CONNECTORS,
        help='comma-separated connectors: local, file, shm '
        f'(default: {DEFAULT_CONNECTORS})',
    )
    parser.add_argument(
        '--iterations', type=int, default=None,
        help='timed iterations per case (default: clamp(256MiB/size, 5, 1000))',
    )
    parser.add_argument('--json', metavar='FILE', help='write results as JSON')
    args = parser.parse_args()

    try:
        sizes = [parse_size(s) for s in args.sizes.split(',') if s.strip()]
    except argparse.ArgumentTypeError as e:
        parser.error(str(e))
    kinds = [c.strip() for c in args.connector.split(',') if c.strip()]
    for kind in kinds:
        if kind not in ('local', 'file', 'shm', 'zmq', 'redis'):
            parser.error(f'unknown connector: {kind!r}')
    if 'shm' in kinds and not os.path.isdir('/dev/shm'):
        print('warning: /dev/shm not available, skipping shm', file=sys.stderr)
        kinds.remove('shm')

    payloads = {size: os.urandom(size) for size in sizes}
    results: list[dict] = []
    header = f'{"connector":<10} {"op":<10} {"size":>7} {"median":>11} ' \
        f'{"p99":>11} {"GiB/s":>8}'
    print(header)
    print('-' * len(header))
    for kind in kinds:
        store, tmp = make_store(kind)
        try:
            for op in OPS:
                for size in sizes:
                    iters = args.iterations or min(
                        max(ADAPTIVE_BYTES // size, 5), 1000,
                    )
                    samples = run_op(store, op, payloads[size], iters)
                    r = summarize(kind, op, size, samples)
                    results.append(r)
                    print(
                        f'{r["connector"]:<10} {op:<10} {fmt_size(size):>7} '
                        f'{fmt_ns(r["median_ns"]):>11} '
                        f'{fmt_ns(r["p99_ns"]):>11} {r["gib_per_s"]:>8.3f}',
                        flush=True,
                    )
        finally:
            store.close()
            for proc in _SERVERS:
                proc.kill()
                proc.wait()
            _SERVERS.clear()
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)

    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2)
            f.write('\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
