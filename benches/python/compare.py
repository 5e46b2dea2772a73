#!/usr/bin/env python3
"""Compare ``proxystore bench --json`` (Rust) with ``bench_proxystore.py --json``.

Both files hold a JSON list of records with ``connector``, ``op``,
``size_bytes`` and ``median_ns`` (other fields are ignored). Rust connector
``X`` is matched with Python connector ``py-X``; one row is printed for every
(connector, op, size) present in both files. Columns: Rust and Python median,
speedup (Python median / Rust median) and the Rust median over the Rust
``memcpy``/``copy`` median of the same size (how far from a bare copy).

Example::

    python3 benches/python/compare.py rs.json py.json --sizes 1KiB,1MiB --markdown

Exit status: 0 on success, 1 if the files have no case in common,
2 on bad arguments or an unreadable / malformed file.
"""

from __future__ import annotations

import argparse
import json
import sys

from units import fmt_ns, fmt_size, parse_size

_OPS = ('put', 'get', 'roundtrip')


def ratio(num: float, den: float | None) -> str:
    """``num / den`` as ``'104.3x'`` (2 significant digits below 1, ``'-'`` if no den)."""
    if not den:
        return '-'
    v = num / den
    return f'{v:.1f}x' if v >= 1 else f'{v:.2g}x'


def die(msg: str) -> None:
    print(f'compare.py: {msg}', file=sys.stderr)
    sys.exit(2)


def load(path: str) -> dict[tuple[str, str, int], float]:
    """Read one results file into ``{(connector, op, size): median_ns}``."""
    try:
        with open(path, encoding='utf-8') as f:
            records = json.load(f)
        if not isinstance(records, list):
            raise ValueError('top level is not a list')
        return {
            (str(r['connector']), str(r['op']), int(r['size_bytes'])):
                float(r['median_ns'])
            for r in records
        }
    except OSError as e:
        die(f'cannot read {path}: {e.strerror or e}')
    except (ValueError, KeyError, TypeError) as e:
        # json.JSONDecodeError is a ValueError; Key/TypeError = bad records.
        die(f'bad JSON in {path}: {e}')


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        epilog='speedup = python median / rust median; '
        'vs memcpy = rust median / rust memcpy median (same size)',
    )
    p.add_argument('rust', metavar='RUST.json', help='proxystore bench --json output')
    p.add_argument('python', metavar='PYTHON.json', help='bench_proxystore.py --json output')
    p.add_argument('--sizes', help='comma-separated sizes, e.g. 1KiB,1MiB,64MiB '
                   '(default: every size present in both files)')
    p.add_argument('--markdown', action='store_true', help='print a GitHub markdown table')
    args = p.parse_args()
    try:
        sizes = None if args.sizes is None else {
            parse_size(s) for s in args.sizes.split(',') if s.strip()}
    except argparse.ArgumentTypeError as e:
        p.error(str(e))
    rs, py = load(args.rust), load(args.python)

    rows = []
    for (conn, op, size), rs_ns in rs.items():  # keep the Rust file's order
        py_ns = py.get((f'py-{conn}', op, size))
        if py_ns is None or (sizes is not None and size not in sizes):
            continue
        memcpy = rs.get(('memcpy', 'copy', size))
        rows.append(((conn, _OPS.index(op) if op in _OPS else len(_OPS), size),
                     [conn, op, fmt_size(size), fmt_ns(rs_ns), fmt_ns(py_ns),
                      ratio(py_ns, rs_ns), ratio(rs_ns, memcpy)]))
    if not rows:
        print('compare.py: no (connector, op, size) in common', file=sys.stderr)
        return 1
    order = list(dict.fromkeys(conn for conn, _, _ in rs))  # connector order
    rows = [r for _, r in sorted(rows, key=lambda kr: (order.index(kr[0][0]), *kr[0][1:]))]

    head = ['connector', 'op', 'size', 'rust', 'python', 'speedup', 'vs memcpy']
    if args.markdown:
        print('| ' + ' | '.join(head) + ' |')
        print('|' + '|'.join([':---'] * 2 + ['---:'] * 5) + '|')
        for r in rows:
            print('| ' + ' | '.join(r) + ' |')
    else:
        w = [max(len(x) for x in col) for col in zip(head, *rows)]

        def line(r: list[str]) -> str:  # text columns left, numbers right
            return '  '.join(c.ljust(n) if i < 2 else c.rjust(n)
                             for i, (c, n) in enumerate(zip(r, w)))

        print(line(head))
        print('-' * len(line(head)))
        for r in rows:
            print(line(r))
    return 0


if __name__ == '__main__':
    sys.exit(main())
