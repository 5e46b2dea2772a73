#!/usr/bin/env python3
"""Baseline benchmark of Ray's object store (``pip install ray numpy``).

Measures ``ray.put`` / ``ray.get`` / put+get round trips of ``bytes``
payloads (records ``ray-bytes``) and of float64 numpy arrays (records
``ray-numpy``) from one driver process, so the numbers can be set beside the
Rust ``proxystore bench`` with ``compare.py --ray``. Written against Ray
2.60.0 and numpy 2.4.6.

How it runs:

* ``ray.init(object_store_memory=1 GiB, num_cpus=1, include_dashboard=False,
  _node_ip_address='127.0.0.1', _temp_dir=<fresh temporary directory>)``.
  On Linux Ray replaces a loopback ``_node_ip_address`` with the host's
  address unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is in the
  environment when ``ray`` is imported, so the script sets it (and
  ``RAY_USAGE_STATS_ENABLED=0``) first: every Ray server then listens on
  127.0.0.1 only. Ray's startup (a few seconds: GCS, raylet, plasma store,
  a worker) is not timed; ``ray.shutdown()`` ends the processes it started
  and the temporary directory is removed.
* ``ray.put`` copies the object into the plasma store (shared memory, one
  pre-allocated arena). A numpy array's data is written as an out-of-band
  pickle-5 buffer (one copy); ``bytes`` are pickled in band.
* ``ray.get`` of an object this driver owns reads it from plasma. A numpy
  array comes back as a read-only view of plasma memory (no copy); ``bytes``
  come back as a new ``bytes`` object (a copy). Each timed get then touches
  one byte (``bytes``) or one element (numpy, ``arr[::512]`` for float64) of
  every 4 KiB page of the result, as ``bench_proxystore.py`` and the Rust
  bench do, so a zero-copy view pays for paging its memory in.
* Every object is freed between iterations (the ``ObjectRef`` and any value
  read from it are deleted, untimed), so the store never fills; if Ray spilled
  objects to disk all the same, the script says so and exits 1.

Records have the fields of ``proxystore bench --json``: ``connector``,
``op``, ``size_bytes``, ``iterations``, ``median_ns``, ``p99_ns``,
``gib_per_s``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import tempfile
import time

# Before `import ray`: keep every Ray server on loopback, send no usage stats.
os.environ.setdefault('RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER', '0')
os.environ.setdefault('RAY_USAGE_STATS_ENABLED', '0')

from units import fmt_ns, fmt_size, parse_size, record  # noqa: E402

DEFAULT_SIZES = '1KiB,64KiB,1MiB,16MiB,64MiB'
DEFAULT_CONNECTORS = 'bytes,numpy'
KINDS = ('bytes', 'numpy')
OPS = ('put', 'get', 'roundtrip')
WARMUP = 2
# As the Rust bench: iterations move ~512 MiB, within [8, 2000].
ADAPTIVE_BYTES = 512 * 2**20
MIN_ITERS, MAX_ITERS = 8, 2000
PAGE = 4096
OBJECT_STORE_BYTES = 2**30


def touch(value) -> int:
    """Read one byte (or element) every 4096 bytes so mapped data is paged in."""
    if isinstance(value, bytes):
        return len(value[::PAGE])
    # numpy: one element per page; sum() reads them all.
    return int(value[::max(1, PAGE // value.itemsize)].sum() != 0)


def same(out, data) -> bool:
    if isinstance(data, bytes):
        return out == data
    import numpy as np
    return out.dtype == data.dtype and np.array_equal(out, data)


def make_payload(kind: str, size: int):
    if kind == 'bytes':
        return os.urandom(size)
    import numpy as np
    # Finite values (random bytes could be NaNs, which never compare equal).
    return np.random.default_rng(size).random(size // 8, dtype=np.float64)


def run_op(ray, op: str, data, iters: int) -> list[int]:
    """Return ``iters`` timed samples (ns) after ``WARMUP`` untimed ones."""
    clock = time.perf_counter_ns
    samples: list[int] = []
    if op == 'get':
        ref = ray.put(data)  # untimed
        for i in range(WARMUP + iters):
            t0 = clock()
            out = ray.get(ref)
            touch(out)
            t1 = clock()
            if i == 0 and not same(out, data):
                raise RuntimeError('get returned wrong data')
            del out
            if i >= WARMUP:
                samples.append(t1 - t0)
        del ref
        return samples
    for i in range(WARMUP + iters):
        t0 = clock()
        ref = ray.put(data)
        if op == 'roundtrip':
            out = ray.get(ref)
            touch(out)
        t1 = clock()
        if op == 'roundtrip':
            if i == 0 and not same(out, data):
                raise RuntimeError('roundtrip returned wrong data')
            del out
        del ref  # untimed: frees the object in the store
        if i >= WARMUP:
            samples.append(t1 - t0)
    return samples


def summarize(kind: str, op: str, size: int, samples: list[int]) -> dict:
    """The record of one case, named ``ray-<kind>``."""
    return record(f'ray-{kind}', op, size, samples)


def spilled(temp_dir: str) -> list[str]:
    """Ray's spill directories under ``temp_dir`` (created on the first spill)."""
    return glob.glob(os.path.join(temp_dir, 'session_*', 'ray_spilled_objects*'))


def print_markdown(results: list[dict]) -> None:
    print('| connector | op | size | median | p99 | GiB/s |')
    print('|:---|:---|---:|---:|---:|---:|')
    for r in results:
        print(f'| {r["connector"]} | {r["op"]} | {fmt_size(r["size_bytes"])} | '
              f'{fmt_ns(r["median_ns"])} | {fmt_ns(r["p99_ns"])} | '
              f'{r["gib_per_s"]:.3f} |')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--sizes', default=DEFAULT_SIZES,
        help=f'comma-separated payload sizes (default: {DEFAULT_SIZES}); '
        'multiples of 8 for numpy',
    )
    parser.add_argument(
        '--connector', default=DEFAULT_CONNECTORS,
        help='comma-separated payload kinds: bytes, numpy (records ray-bytes, '
        f'ray-numpy; default: {DEFAULT_CONNECTORS})',
    )
    parser.add_argument(
        '--iterations', type=int, default=None,
        help=f'timed iterations per case (default: clamp(512MiB/size, '
        f'{MIN_ITERS}, {MAX_ITERS}))',
    )
    parser.add_argument('--json', metavar='FILE', help='write results as JSON')
    parser.add_argument('--markdown', action='store_true',
                        help='print the results as a GitHub markdown table at the end')
    args = parser.parse_args()

    try:
        sizes = [parse_size(s) for s in args.sizes.split(',') if s.strip()]
    except argparse.ArgumentTypeError as e:
        parser.error(str(e))
    if not sizes or min(sizes) <= 0:
        parser.error('sizes must be positive')
    kinds = []
    for k in (c.strip() for c in args.connector.split(',') if c.strip()):
        k = k.removeprefix('ray-')
        if k not in KINDS:
            parser.error(f'unknown connector: {k!r} (bytes, numpy)')
        kinds.append(k)
    if 'numpy' in kinds and any(s % 8 for s in sizes):
        parser.error('numpy payloads are float64: sizes must be multiples of 8')
    if args.iterations is not None and args.iterations < 1:
        parser.error('--iterations must be at least 1')
    # The largest case holds at most two copies of an object in the store.
    if 2 * max(sizes) > OBJECT_STORE_BYTES // 2:
        parser.error(f'sizes above {fmt_size(OBJECT_STORE_BYTES // 4)} '
                     'would crowd the 1 GiB object store')

    import ray

    temp_dir = tempfile.mkdtemp(prefix='ray-bench-')
    results: list[dict] = []
    spills: list[str] = []
    try:
        ray.init(
            object_store_memory=OBJECT_STORE_BYTES,
            num_cpus=1,
            include_dashboard=False,
            _node_ip_address='127.0.0.1',
            _temp_dir=temp_dir,
            log_to_driver=False,
            configure_logging=False,
        )
        header = f'{"connector":<10} {"op":<10} {"size":>7} {"median":>11} ' \
            f'{"p99":>11} {"GiB/s":>8}'
        print(header)
        print('-' * len(header))
        for kind in kinds:
            for op in OPS:
                for size in sizes:
                    iters = args.iterations or min(
                        max(ADAPTIVE_BYTES // size, MIN_ITERS), MAX_ITERS,
                    )
                    data = make_payload(kind, size)
                    samples = run_op(ray, op, data, iters)
                    del data
                    r = summarize(kind, op, size, samples)
                    results.append(r)
                    print(
                        f'{r["connector"]:<10} {op:<10} {fmt_size(size):>7} '
                        f'{fmt_ns(r["median_ns"]):>11} '
                        f'{fmt_ns(r["p99_ns"]):>11} {r["gib_per_s"]:>8.3f}',
                        flush=True,
                    )
        spills = spilled(temp_dir)
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)

    if args.markdown:
        print()
        print_markdown(results)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2)
            f.write('\n')
    if spills:
        print('bench_ray.py: Ray spilled objects to disk; the figures include '
              'spilling', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
