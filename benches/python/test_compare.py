#!/usr/bin/env python3
"""Tests of compare.py and of bench_ray.py's and bench_dask.py's helpers
(no Ray, no Dask cluster needed).

    python3 benches/python/test_compare.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_dask  # noqa: E402  (imports neither dask nor numpy at load)
import bench_ray  # noqa: E402  (imports neither ray nor numpy at load)

MIB = 2**20


def rec(conn: str, op: str, size: int, ns: int) -> dict:
    return {'connector': conn, 'op': op, 'size_bytes': size, 'iterations': 8,
            'median_ns': ns, 'p99_ns': ns, 'gib_per_s': 1.0}


RUST = [
    rec('memcpy', 'copy', MIB, 50_000),
    rec('shm', 'put', MIB, 400_000),
    rec('shm', 'get', MIB, 100_000),
    rec('shm', 'get-view', MIB, 100_000),
    rec('shm', 'get-owned', MIB, 600_000),
    rec('shm-arena', 'put', MIB, 60_000),
    rec('shm-arena', 'get-view', MIB, 20_000),
    rec('shm', 'put', 1024, 20_000),
]
PY = [rec('py-shm', 'put', MIB, 800_000), rec('py-shm', 'get', MIB, 1_000_000)]
RAY = [
    rec('ray-numpy', 'put', MIB, 3_000_000), rec('ray-numpy', 'get', MIB, 200_000),
    rec('ray-bytes', 'put', MIB, 4_000_000), rec('ray-bytes', 'get', MIB, 300_000),
]


class CompareTest(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        for name, data in (('rs', RUST), ('py', PY), ('ray', RAY)):
            with open(self.path(name), 'w') as f:
                json.dump(data, f)

    def path(self, name: str) -> str:
        return os.path.join(self.dir.name, f'{name}.json')

    def run_compare(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, os.path.join(HERE, 'compare.py'), *args],
            capture_output=True, text=True, cwd=self.dir.name,
        )

    def table(self, *args: str) -> list[list[str]]:
        out = self.run_compare(*args, '--markdown')
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = out.stdout.splitlines()
        return [[c.strip() for c in ln.strip('|').split('|')] for ln in lines
                if not ln.startswith('|:')]

    def test_python_only_is_unchanged(self) -> None:
        rows = self.table('rs.json', 'py.json')
        self.assertEqual(rows[0], ['connector', 'op', 'size', 'rust', 'python',
                                   'speedup', 'vs memcpy'])
        self.assertEqual(rows[1:], [
            ['shm', 'put', '1MiB', '400.00 us', '800.00 us', '2.0x', '8.0x'],
            ['shm', 'get', '1MiB', '100.00 us', '1.00 ms', '10.0x', '2.0x'],
        ])

    def test_ray_matches_typed_gets_to_ray_get(self) -> None:
        rows = self.table('rs.json', '--ray', 'ray.json')
        self.assertEqual(rows[0], ['connector', 'op', 'size', 'rust', 'ray-numpy',
                                   'ray-numpy/rust', 'vs memcpy'])
        got = {(r[0], r[1]): r[4:6] for r in rows[1:]}
        self.assertEqual(got, {
            ('shm', 'put'): ['3.00 ms', '7.5x'],
            ('shm', 'get'): ['200.00 us', '2.0x'],
            ('shm', 'get-owned'): ['200.00 us', '0.33x'],
            ('shm', 'get-view'): ['200.00 us', '2.0x'],
            ('shm-arena', 'put'): ['3.00 ms', '50.0x'],
            ('shm-arena', 'get-view'): ['200.00 us', '10.0x'],
        })
        # Rust file order: shm, then shm-arena; ops put, get, get-owned, get-view.
        self.assertEqual([r[1] for r in rows[1:5]], ['put', 'get', 'get-owned', 'get-view'])

    def test_python_and_two_ray_connectors(self) -> None:
        rows = self.table('rs.json', 'py.json', '--ray', 'ray.json',
                          '--ray-connector', 'ray-numpy,ray-bytes')
        self.assertEqual(rows[0], ['connector', 'op', 'size', 'rust', 'python', 'speedup',
                                   'ray-numpy', 'ray-numpy/rust', 'ray-bytes',
                                   'ray-bytes/rust', 'vs memcpy'])
        by = {(r[0], r[1]): r for r in rows[1:]}
        self.assertEqual(by[('shm', 'put')][4:10],
                         ['800.00 us', '2.0x', '3.00 ms', '7.5x', '4.00 ms', '10.0x'])
        # No Python record for get-view: dashes, the Ray cells still filled.
        self.assertEqual(by[('shm', 'get-view')][4:10],
                         ['-', '-', '200.00 us', '2.0x', '300.00 us', '3.0x'])

    def test_exit_codes(self) -> None:
        with open(self.path('other'), 'w') as f:
            json.dump([rec('x', 'put', 3, 1)], f)
        with open(self.path('bad'), 'w') as f:
            f.write('{')
        self.assertEqual(self.run_compare('rs.json', 'other.json').returncode, 1)
        self.assertEqual(self.run_compare('rs.json', '--ray', 'other.json').returncode, 1)
        self.assertEqual(self.run_compare('rs.json', 'bad.json').returncode, 2)
        self.assertEqual(self.run_compare('rs.json', '--ray', 'bad.json').returncode, 2)
        self.assertEqual(self.run_compare('rs.json', 'missing.json').returncode, 2)
        self.assertEqual(self.run_compare('rs.json').returncode, 2)
        self.assertEqual(self.run_compare('rs.json', 'py.json', '--sizes', '3Q').returncode, 2)
        # --sizes keeps only the sizes asked for.
        self.assertEqual(
            self.run_compare('rs.json', '--ray', 'ray.json', '--sizes', '1KiB').returncode, 1)


class BenchRayHelpersTest(unittest.TestCase):
    def test_summarize_fields(self) -> None:
        r = bench_ray.summarize('numpy', 'get', MIB, [30, 10, 20, 40])
        self.assertEqual(list(r), ['connector', 'op', 'size_bytes', 'iterations',
                                   'median_ns', 'p99_ns', 'gib_per_s'])
        self.assertEqual((r['connector'], r['median_ns'], r['p99_ns'], r['iterations']),
                         ('ray-numpy', 25, 40, 4))

    def test_touch_reads_one_item_per_page(self) -> None:
        self.assertEqual(bench_ray.touch(bytes(3 * 4096)), 3)
        try:
            import numpy as np
        except ImportError:
            self.skipTest('numpy not installed')

        arr = np.ones(3 * 512, dtype=np.float64)
        # One element per 4096 bytes: 512 float64s apart.
        self.assertEqual(arr[::4096 // arr.itemsize].size, 3)
        self.assertEqual(bench_ray.touch(arr), 1)
        self.assertTrue(bench_ray.same(bench_ray.make_payload('numpy', 64),
                                       bench_ray.make_payload('numpy', 64)))


class BenchDaskHelpersTest(unittest.TestCase):
    def test_parse_sizes(self) -> None:
        self.assertEqual(bench_dask.parse_sizes('10kB, 1MB,100000000,8'),
                         [10_000, 1_000_000, 100_000_000, 8])
        for bad in ('', '12', '10KiB', 'x', '0', '1.5MB'):
            with self.assertRaises(Exception, msg=bad):
                bench_dask.parse_sizes(bad)
        self.assertEqual(bench_dask.fmt_dec(10_000_000), '10 MB')
        self.assertEqual(bench_dask.fmt_dec(12), '12 B')

    def test_cases_and_names(self) -> None:
        got = bench_dask.cases(['dask-value', 'dask-rs-shm'], ['ex', 'rs'])
        self.assertEqual(got, [('dask-value', 'plain'), ('dask-rs-shm', 'ex'),
                               ('dask-rs-shm', 'rs')])
        self.assertEqual([bench_dask.record_name(c, k) for c, k in got],
                         ['dask-value', 'dask-rs-shm', 'dask-rs-shm/rsclient'])

    def test_ratio_rows(self) -> None:
        recs = [rec('dask-value', 'task', 10, 100), rec('dask-value', 'task', 20, 0),
                rec('dask-rs-zmq', 'task', 10, 50), rec('dask-rs-zmq', 'task', 20, 9),
                rec('dask-rs-zmq', 'task', 30, 9)]
        # No base median (0) or no base record: no row.
        self.assertEqual(bench_dask.ratio_rows(recs), [('dask-rs-zmq', 10, 0.5)])


if __name__ == '__main__':
    unittest.main()
