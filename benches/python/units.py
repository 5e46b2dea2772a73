"""Size and time formatting shared by the benchmark scripts."""

from __future__ import annotations

import argparse
import re

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
