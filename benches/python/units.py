"""Size and time formatting shared by the benchmark scripts."""

from __future__ import annotations

import argparse
import math
import re
import statistics

_UNITS = {'': 1, 'b': 1, 'kib': 2**10, 'mib': 2**20, 'gib': 2**30}


def parse_size(text: str) -> int:
    """Parse ``'64KiB'``, ``'1MiB'``, ``'2GiB'`` or a plain byte count."""
    m = re.fullmatch(r'\s*(\d+)\s*([A-Za-z]*)\s*', text)
    if m is None or m.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f'invalid size: {text!r}')
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def fmt_size(n: int) -> str:
    """``1048576`` as ``'1MiB'``."""
    for unit, mult in (('GiB', 2**30), ('MiB', 2**20), ('KiB', 2**10)):
        if n >= mult and n % mult == 0:
            return f'{n // mult}{unit}'
    return f'{n}B'


def fmt_ns(ns: float) -> str:
    """Nanoseconds in the largest unit that keeps them >= 1."""
    for unit, div in (('s', 1e9), ('ms', 1e6), ('us', 1e3)):
        if ns >= div:
            return f'{ns / div:.2f} {unit}'
    return f'{ns:.0f} ns'


def record(connector: str, op: str, size: int, samples: list[int]) -> dict:
    """One case in ``proxystore bench --json``'s record format: median,
    nearest-rank 99th percentile and bandwidth of ``samples`` (ns)."""
    ordered = sorted(samples)
    median = int(round(statistics.median(ordered)))
    p99 = ordered[max(1, math.ceil(0.99 * len(ordered))) - 1]  # nearest rank
    return {
        'connector': connector,
        'op': op,
        'size_bytes': size,
        'iterations': len(samples),
        'median_ns': median,
        'p99_ns': p99,
        'gib_per_s': size / (median / 1e9) / 2**30 if median else 0.0,
    }
