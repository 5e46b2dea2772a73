#!/usr/bin/env python3
"""Compare ``proxystore bench --json`` (Rust) with bench_proxystore.py and bench_ray.py.

Inputs: the Rust file, ``bench_proxystore.py --json`` output and/or
``bench_ray.py --json`` output.

Every file holds a JSON list of records with ``connector``, ``op``,
``size_bytes`` and ``median_ns`` (other fields are ignored). Rust connector
``X`` is matched with Python connector ``py-X`` (same op); one row is printed
for every (connector, op, size) present in both files. Columns: Rust and
Python median, speedup (Python median / Rust median) and the Rust median over
the Rust ``memcpy``/``copy`` median of the same size (how far from a bare
copy).

With ``--ray RAY.json`` (the Python file then becomes optional), every Rust
row is also set against Ray's record of the same size and op in each Ray
connector chosen with ``--ray-connector`` (default ``ray-numpy``; e.g.
``ray-numpy,ray-bytes`` for both), whatever the Rust connector: Ray is one
store, so ``shm``, ``shm-arena``, ``local``... rows all face the same Ray
figure. Rust ops ``get-view`` (zero-copy ``PodArray<f64>``) and ``get-owned``
(``Vec<f64>``) are set against Ray's ``get`` (``ray-numpy``: a zero-copy,
read-only array over plasma memory); ``put``, ``get`` and ``roundtrip``
against the Ray op of the same name. Each Ray connector adds two columns:
its median and ``<ray connector>/rust`` (Ray median / Rust median; above 1,
Rust is faster). A row is printed if the Python file or any chosen Ray
connector has its case; a missing cell is ``-``.

Examples::

    python3 benches/python/compare.py rs.json py.json --sizes 1KiB,1MiB --markdown
    python3 benches/python/compare.py rs.json --ray ray.json --markdown
    python3 benches/python/compare.py rs.json py.json --ray ray.json \
        --ray-connector ray-numpy,ray-bytes

Exit status: 0 on success, 1 if the files have no case in common,
2 on bad arguments or an unreadable / malformed file.
"""

from __future__ import annotations

import argparse
import json
import sys

from units import fmt_ns, fmt_size, parse_size

_OPS = ('put', 'get', 'get-owned', 'get-view', 'roundtrip')
# Rust op -> the Ray op it is set against (bench_ray.py: put, get, roundtrip).
RAY_OP = {'put': 'put', 'get': 'get', 'roundtrip': 'roundtrip',
          'get-view': 'get', 'get-owned': 'get'}


def ratio(num: float, den: float | None) -> str:
    """``num / den`` as ``'104.3x'`` (2 significant digits below 1, ``'-'`` if no den)."""
    if not den:
        return '-'
    v = num / den
    return f'{v:.1f}x' if v >= 1 else f'{v:.2g}x'


def cell(ns: float | None) -> str:
    """A median, or ``'-'`` when the other file has no such case."""
    return '-' if ns is None else fmt_ns(ns)


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
        '<ray connector>/rust = ray median / rust median (rust get-view and '
        'get-owned face ray get); '
        'vs memcpy = rust median / rust memcpy median (same size)',
    )
    p.add_argument('rust', metavar='RUST.json', help='proxystore bench --json output')
    p.add_argument('python', metavar='PYTHON.json', nargs='?',
                   help='bench_proxystore.py --json output (optional with --ray)')
    p.add_argument('--ray', metavar='RAY.json', help='bench_ray.py --json output')
    p.add_argument('--ray-connector', default='ray-numpy',
                   help='comma-separated Ray connectors to show, one column pair each '
                   '(default: ray-numpy; bench_ray.py writes ray-numpy and ray-bytes)')
    p.add_argument('--sizes', help='comma-separated sizes, e.g. 1KiB,1MiB,64MiB '
                   '(default: every size present in both files)')
    p.add_argument('--markdown', action='store_true', help='print a GitHub markdown table')
    args = p.parse_args()
    if args.python is None and args.ray is None:
        p.error('give PYTHON.json, --ray RAY.json or both')
    try:
        sizes = None if args.sizes is None else {
            parse_size(s) for s in args.sizes.split(',') if s.strip()}
    except argparse.ArgumentTypeError as e:
        p.error(str(e))
    ray_conns = [c.strip() for c in args.ray_connector.split(',') if c.strip()]
    if args.ray is not None and not ray_conns:
        p.error('--ray-connector names no connector')
    rs = load(args.rust)
    py = None if args.python is None else load(args.python)
    ray = None if args.ray is None else load(args.ray)
    if ray is not None:
        present = {conn for conn, _, _ in ray}
        for conn in ray_conns:
            if conn not in present:
                print(f'compare.py: warning: {args.ray} has no {conn!r} records',
                      file=sys.stderr)

    rows = []
    for (conn, op, size), rs_ns in rs.items():  # keep the Rust file's order
        if sizes is not None and size not in sizes:
            continue
        py_ns = None if py is None else py.get((f'py-{conn}', op, size))
        ray_ns = [] if ray is None else [
            ray.get((rc, RAY_OP[op], size)) if op in RAY_OP else None
            for rc in ray_conns]
        if py_ns is None and all(v is None for v in ray_ns):
            continue
        memcpy = rs.get(('memcpy', 'copy', size))
        row = [conn, op, fmt_size(size), fmt_ns(rs_ns)]
        if py is not None:
            row += [cell(py_ns), ratio(py_ns, rs_ns) if py_ns is not None else '-']
        for v in ray_ns:
            row += [cell(v), ratio(v, rs_ns) if v is not None else '-']
        row.append(ratio(rs_ns, memcpy))
        rows.append(((conn, _OPS.index(op) if op in _OPS else len(_OPS), size), row))
    if not rows:
        print('compare.py: no (connector, op, size) in common', file=sys.stderr)
        return 1
    order = list(dict.fromkeys(conn for conn, _, _ in rs))  # connector order
    rows = [r for _, r in sorted(rows, key=lambda kr: (order.index(kr[0][0]), *kr[0][1:]))]

    head = ['connector', 'op', 'size', 'rust']
    if py is not None:
        head += ['python', 'speedup']
    for rc in (ray_conns if ray is not None else []):
        head += [rc, f'{rc}/rust']
    head.append('vs memcpy')
    if args.markdown:
        print('| ' + ' | '.join(head) + ' |')
        print('|' + '|'.join([':---'] * 2 + ['---:'] * (len(head) - 2)) + '|')
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
