#!/usr/bin/env python3
"""Python put path of a 100 MB float64 array, before/after rows in one run
(docs/benchmarks.md, "Rust-owned serializer buffers and the arena").
before: serialize = bytearray + copy (the old proxystore_rs.serialize),
        put copy  = memoryview(buf).tobytes() (the old put of a bytearray).
after:  serialize = proxystore_rs.serialize (concat into a pooled Rust buffer),
        put holds it (no copy) and the connector writes it."""
import shutil, statistics, sys, time, uuid
import numpy as np
import proxystore_rs
from proxystore_rs import serialize, deserialize
N = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000_000
a = np.random.default_rng(1).random(N // 8)
def med(f, reps=9):
    xs = []
    for _ in range(reps):
        t0 = time.perf_counter(); f(); xs.append(time.perf_counter() - t0)
    return statistics.median(xs) * 1e3
def old_serialize():
    out = bytearray(N + 128); out[128:] = memoryview(a).cast('B'); return out
rows = {}
rows['before: serialize (bytearray + copy)'] = med(old_serialize)
ba = old_serialize()
rows['before: put copy (tobytes of it)'] = med(lambda: memoryview(ba).tobytes())
rows['after:  serialize (concat, pooled)'] = med(lambda: serialize(a))
for kind in ('shm', 'shm-arena'):
    d = f'/dev/shm/comp-{uuid.uuid4().hex}'
    c = proxystore_rs.ShmConnector(d) if kind == 'shm' else proxystore_rs.ShmConnector(d, arena_bytes=1 << 30)
    s = serialize(a)
    def put():
        k = c.put(s); c.evict(k)
    put()
    rows[f'after:  {kind} put of it + evict'] = med(put)
    k = c.put(s)
    rows[f'after:  {kind} get + view + touch'] = med(lambda: float(deserialize(c.get(k))[::512].sum()))
    c.evict(k); c.close(); shutil.rmtree(d, ignore_errors=True)
dst = np.empty_like(a)
rows['memcpy (into a warm array)'] = med(lambda: np.copyto(dst, a))
for k, v in rows.items():
    print(f'{k:42s} {v:8.1f} ms')
