#!/usr/bin/env python3
"""Dask bag of tasks by value and by proxy (issue 14's reference experiment).

A TaPS-style synthetic bag of tasks run sequentially on one worker
(``LocalCluster(n_workers=1, threads_per_worker=1, processes=True)``): each
task gets a float64 numpy array of the payload size and returns a new one of
the same size (``x * 1.0``). One sample is ``submit`` → ``result()`` → one
float64 read per 4 KiB page of the result (so a proxy is resolved and a
mapped array paged in). Configurations (``--configs``):

* ``dask-value``: a plain ``distributed.Client``, arguments and results by
  value (through the scheduler's graph and Dask's own transfers).
* ``dask-py-redis``, ``dask-py-file``: Python ProxyStore's
  ``RedisConnector`` (a ``redis-server`` the script starts on a free
  loopback port) and ``FileConnector`` (a temporary directory),
* ``dask-rs-shm``, ``dask-rs-shm-arena`` (``shm`` with a 1 GiB arena per
  producing process, ``arena_bytes``), ``dask-rs-zmq`` (and ``dask-rs-ucx``
  when the wheel has ucx): ``proxystore_rs`` connectors,

each of the proxied ones through proxystore-ex's ``Client`` (record
``<config>``) and through ``proxystore_rs.dask.Client`` (record
``<config>/rsclient``), both with ``ps_threshold=--threshold`` (default
100 kB: the 10 kB payload goes by value). Each task's payload differs (its
first element is the task's index, set untimed) so Dask's pure-task cache
never answers; 2 warm-up tasks per case are untimed. Each case gets a
fresh cluster (untimed startup), so nothing one case leaves in the worker
or the scheduler (memory, mappings, pinned blocks) weighs on the next;
``--shared-cluster`` runs every case on one cluster instead.

Records have the fields of ``proxystore bench --json`` (``connector``,
``op`` = ``task``, ``size_bytes``, ``iterations``, ``median_ns``,
``p99_ns``, ``gib_per_s``). Written against dask/distributed 2026.8.0,
proxystore 1.1.0, proxystore-ex 0.1.5, numpy 2.4.6.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

from units import fmt_ns, record

DEFAULT_SIZES = '10000,1000000,10000000,100000000'
PROXIED = ('dask-py-redis', 'dask-py-file', 'dask-rs-shm', 'dask-rs-shm-arena',
           'dask-rs-zmq', 'dask-rs-ucx')
# Arena of each producing process in dask-rs-shm-arena: objects up to a
# quarter of it (256 MiB) go into it, so 100 MB arguments and results do.
ARENA_BYTES = 1 << 30
CONFIGS = ('dask-value',) + PROXIED


def _wheel_has_ucx() -> bool:
    try:
        import proxystore_rs
    except ImportError:
        return False
    return 'ucx' in proxystore_rs.compiled_connectors()


# Every configuration this machine can run: ucx when the wheel has it.
DEFAULT_CONFIGS = ','.join(
    c for c in CONFIGS if c != 'dask-rs-ucx' or _wheel_has_ucx()
)
CLIENTS = ('ex', 'rs')
WARMUP = 2
PAGE = 4096


def parse_sizes(text: str) -> list[int]:
    """Comma-separated byte counts (``10000`` or ``10kB``, ``1MB``: decimal
    units), each a positive multiple of 8 (float64 payloads)."""
    mult = {'': 1, 'b': 1, 'kb': 10**3, 'mb': 10**6, 'gb': 10**9}
    sizes = []
    for part in (p.strip() for p in text.split(',') if p.strip()):
        num = part.rstrip('kKmMgGbB')
        unit = part[len(num):].lower()
        if not num.isdigit() or unit not in mult:
            raise argparse.ArgumentTypeError(f'invalid size: {part!r}')
        n = int(num) * mult[unit]
        if n <= 0 or n % 8:
            raise argparse.ArgumentTypeError(
                f'size {part!r} is not a positive multiple of 8')
        sizes.append(n)
    if not sizes:
        raise argparse.ArgumentTypeError('no sizes')
    return sizes


def fmt_dec(n: int) -> str:
    """``1000000`` as ``'1 MB'`` (decimal units, as the issue writes)."""
    for unit, mult in (('GB', 10**9), ('MB', 10**6), ('kB', 10**3)):
        if n >= mult and n % mult == 0:
            return f'{n // mult} {unit}'
    return f'{n} B'


def record_name(config: str, client: str) -> str:
    """The record's ``connector``: ``<config>`` for proxystore-ex's client,
    ``<config>/rsclient`` for ``proxystore_rs.dask.Client``."""
    if config == 'dask-value':
        return config
    return config if client == 'ex' else f'{config}/rsclient'


def cases(configs: list[str], clients: list[str]) -> list[tuple[str, str]]:
    """(config, client) pairs to run, ``dask-value`` once."""
    out = []
    for config in configs:
        if config == 'dask-value':
            out.append((config, 'plain'))
        else:
            out.extend((config, c) for c in clients)
    return out


def ratio_rows(
    records: list[dict], base: str = 'dask-value',
) -> list[tuple[str, int, float]]:
    """(record, size, median / ``base``'s median of that size) for every
    record but ``base`` whose size ``base`` has."""
    base_ns = {r['size_bytes']: r['median_ns'] for r in records
               if r['connector'] == base}
    return [
        (r['connector'], r['size_bytes'], r['median_ns'] / base_ns[r['size_bytes']])
        for r in records
        if r['connector'] != base and base_ns.get(r['size_bytes'])
    ]


def task(x: Any) -> Any:
    """The synthetic task: reads its input, returns a new array as large."""
    return x * 1.0


def touch(value: Any) -> float:
    """One float64 per 4 KiB page (resolves a proxy, pages a view in)."""
    return float(value[::PAGE // 8].sum())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def redis_server() -> Iterator[int]:
    """A ``redis-server`` on a free loopback port, no persistence."""
    exe = shutil.which('redis-server')
    if exe is None:
        raise SystemExit('bench_dask.py: redis-server not on PATH')
    port = _free_port()
    proc = subprocess.Popen(
        [exe, '--bind', '127.0.0.1', '--port', str(port), '--save', '',
         '--appendonly', 'no'],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(('127.0.0.1', port), 0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f'redis-server did not start on {port}')
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextlib.contextmanager
def make_store(
    config: str, redis_port: int | None, zero_copy: bool = False,
    cache_size: int | None = None,
) -> Iterator[Any]:
    """A registered Store for a proxied configuration; removed after.
    ``zero_copy``: Rust connectors' stores use ``proxystore_rs.serialize``
    and ``deserialize`` instead of Python ProxyStore's serializer."""
    from proxystore.store import Store

    name = f'bench-dask-{uuid.uuid4().hex}'
    cleanup: list[str] = []
    if config == 'dask-py-redis':
        from proxystore.connectors.redis import RedisConnector
        assert redis_port is not None
        connector: Any = RedisConnector('127.0.0.1', redis_port)
    elif config == 'dask-py-file':
        from proxystore.connectors.file import FileConnector
        d = tempfile.mkdtemp(prefix='bench-dask-')
        cleanup.append(d)
        connector = FileConnector(d)
    elif config in ('dask-rs-shm', 'dask-rs-shm-arena'):
        import proxystore_rs
        d = f'/dev/shm/bench-dask-{uuid.uuid4().hex}'
        cleanup.append(d)
        arena = {'arena_bytes': ARENA_BYTES} if config == 'dask-rs-shm-arena' else {}
        connector = proxystore_rs.ShmConnector(d, **arena)
    elif config == 'dask-rs-zmq':
        import proxystore_rs
        connector = proxystore_rs.ZmqConnector('tcp://127.0.0.1:*')
    elif config == 'dask-rs-ucx':
        import proxystore_rs
        connector = proxystore_rs.UcxConnector()
    else:
        raise ValueError(config)
    kwargs: dict[str, Any] = {}
    if zero_copy and config.startswith('dask-rs'):
        import proxystore_rs
        kwargs = {'serializer': proxystore_rs.serialize,
                  'deserializer': proxystore_rs.deserialize}
    if cache_size is not None:
        kwargs['cache_size'] = cache_size
    store = Store(name, connector, register=True, **kwargs)
    try:
        yield store
    finally:
        store.close()
        for d in cleanup:
            shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def make_client(cluster: Any, client: str, store: Any, threshold: int) -> Iterator[Any]:
    """The Dask client of a case."""
    if client == 'plain':
        from distributed import Client
        c = Client(cluster)
    elif client == 'ex':
        from proxystore_ex.plugins.distributed import Client as ExClient
        c = ExClient(cluster, ps_store=store, ps_threshold=threshold)
    else:
        from proxystore_rs.dask import Client as RsClient
        c = RsClient(cluster, ps_store=store, ps_threshold=threshold)
    try:
        yield c
    finally:
        c.close()


def run_case(client: Any, size: int, tasks: int) -> list[int]:
    """``tasks`` timed samples (ns) after ``WARMUP`` untimed ones."""
    import numpy as np

    payload = np.random.default_rng(size).random(size // 8)
    expect = float(payload[::PAGE // 8].sum()) - payload[0]
    clock = time.perf_counter_ns
    samples: list[int] = []
    for i in range(WARMUP + tasks):
        payload[0] = i  # a new task for Dask's pure-function cache
        t0 = clock()
        future = client.submit(task, payload)
        result = future.result()
        got = touch(result)
        t1 = clock()
        if abs(got - (expect + i)) > 1e-6 * max(1.0, abs(expect)):
            raise RuntimeError(f'task returned wrong data ({got} != {expect + i})')
        del future, result
        if i >= WARMUP:
            samples.append(t1 - t0)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', default=DEFAULT_SIZES,
                        help=f'payload bytes, comma-separated (default: {DEFAULT_SIZES})')
    parser.add_argument('--configs', default=DEFAULT_CONFIGS,
                        help=f'comma-separated, of {", ".join(CONFIGS)} '
                        f'(default: {DEFAULT_CONFIGS})')
    parser.add_argument('--clients', default='ex,rs',
                        help='proxied configs through: ex (proxystore-ex Client), '
                        'rs (proxystore_rs.dask.Client); default ex,rs')
    parser.add_argument('--tasks', type=int, default=100,
                        help='timed tasks per case (default 100)')
    parser.add_argument('--threshold', type=int, default=100_000,
                        help='ps_threshold in bytes (default 100000)')
    parser.add_argument('--zero-copy', action='store_true',
                        help='also run the dask-rs-* configs with proxystore_rs.serialize/'
                        'deserialize (records suffixed +zc)')
    parser.add_argument('--cache-size', type=int, default=None,
                        help="every store's cache_size (objects each process keeps "
                        "deserialized; default: Python ProxyStore's, 16)")
    parser.add_argument('--shared-cluster', action='store_true',
                        help='run every case on one cluster (default: a fresh '
                        'cluster per case)')
    parser.add_argument('--json', metavar='FILE', help='write the records as JSON')
    parser.add_argument('--markdown', action='store_true',
                        help='print a markdown table (medians, ratio to dask-value)')
    args = parser.parse_args()
    try:
        sizes = parse_sizes(args.sizes)
    except argparse.ArgumentTypeError as e:
        parser.error(str(e))
    configs = [c.strip() for c in args.configs.split(',') if c.strip()]
    clients = [c.strip() for c in args.clients.split(',') if c.strip()]
    if bad := [c for c in configs if c not in CONFIGS]:
        parser.error(f'unknown configs: {bad}')
    if bad := [c for c in clients if c not in CLIENTS]:
        parser.error(f'unknown clients: {bad}')
    if args.tasks < 1:
        parser.error('--tasks must be at least 1')
    if 'dask-rs-ucx' in configs:
        # A UCX data server off loopback needs a shared secret; set here,
        # before any cluster starts, so every worker inherits it.
        os.environ.setdefault('PROXYSTORE_UCX_SECRET', secrets.token_hex(16))

    warnings.simplefilter('ignore')  # large graphs, ExperimentalWarning
    import logging
    logging.getLogger('distributed').setLevel(logging.ERROR)
    from distributed import LocalCluster

    results: list[dict] = []
    with contextlib.ExitStack() as stack:
        redis_port = None
        if 'dask-py-redis' in configs:
            redis_port = stack.enter_context(redis_server())

        def new_cluster() -> Any:
            return LocalCluster(
                n_workers=1, threads_per_worker=1, processes=True,
                dashboard_address=None, host='127.0.0.1',
            )

        shared = stack.enter_context(new_cluster()) if args.shared_cluster else None
        print(f'{"record":<26} {"size":>7} {"median":>11} {"p99":>11}')
        runs = [(c, k, False) for c, k in cases(configs, clients)]
        if args.zero_copy:
            runs += [(c, k, True) for c, k in cases(configs, clients)
                     if c.startswith('dask-rs')]
        for config, client_kind, zero_copy in runs:
            with contextlib.ExitStack() as case:
                cluster = shared or case.enter_context(new_cluster())
                store = None
                if config != 'dask-value':
                    store = case.enter_context(
                        make_store(config, redis_port, zero_copy, args.cache_size))
                client = case.enter_context(
                    make_client(cluster, client_kind, store, args.threshold))
                for size in sizes:
                    samples = run_case(client, size, args.tasks)
                    name = record_name(config, client_kind) + ('+zc' if zero_copy else '')
                    r = record(name, 'task', size, samples)
                    results.append(r)
                    print(f'{r["connector"]:<26} {fmt_dec(size):>7} '
                          f'{fmt_ns(r["median_ns"]):>11} {fmt_ns(r["p99_ns"]):>11}',
                          flush=True)

    if args.markdown:
        ratios = {(n, s): x for n, s, x in ratio_rows(results)}
        print('\n| record | size | median | p99 | / dask-value |')
        print('|:--|--:|--:|--:|--:|')
        for r in results:
            x = ratios.get((r['connector'], r['size_bytes']))
            print(f'| `{r["connector"]}` | {fmt_dec(r["size_bytes"])} | '
                  f'{fmt_ns(r["median_ns"])} | {fmt_ns(r["p99_ns"])} | '
                  f'{"-" if x is None else f"{x:.2f}x"} |')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2)
            f.write('\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
