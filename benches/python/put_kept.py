#!/usr/bin/env python3
"""Puts of a 64 MiB float64 array while the last KEEP objects stay alive
(docs/benchmarks.md, "Against Ray's object store"): Ray's `ray.put` (1 GiB
object store, Ray's startup untimed) against Python ProxyStore's
`Store.put` over `proxystore_rs.ShmConnector(arena_bytes=1 GiB)` with the
zero-copy serializer pair (the arena made by an untimed first put). With
objects kept alive a put cannot reuse the block the last one freed, so it
lands on memory it has not written before. Usage: put_kept.py [KEEP]."""
import os, sys, time, statistics, shutil, uuid
import numpy as np
KEEP = int(sys.argv[1]) if len(sys.argv) > 1 else 8
N = 16
SIZE = 64 << 20
arr = np.ones(SIZE // 8)
def ray_case():
    os.environ['RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER'] = '0'
    import ray
    ray.init(object_store_memory=1 << 30, num_cpus=1, include_dashboard=False, logging_level='ERROR')
    kept, ts = [], []
    for i in range(N):
        t = time.perf_counter(); ref = ray.put(arr); ts.append(time.perf_counter() - t)
        kept.append(ref)
        if len(kept) > KEEP: kept.pop(0)
    kept.clear(); ray.shutdown()
    return ts
def rs_case():
    import proxystore_rs
    from proxystore.store import Store
    d = f'/dev/shm/keep-probe-{uuid.uuid4().hex}'
    store = Store('keep-probe', proxystore_rs.ShmConnector(d, arena_bytes=1 << 30), serializer=proxystore_rs.serialize, deserializer=proxystore_rs.deserialize)
    store.put(np.ones(8))  # makes the arena (prefaulted), untimed
    kept, ts = [], []
    for i in range(N):
        t = time.perf_counter(); k = store.put(arr); ts.append(time.perf_counter() - t)
        kept.append(k)
        if len(kept) > KEEP: store.evict(kept.pop(0))
    store.close(); shutil.rmtree(d, ignore_errors=True)
    return ts
for name, f in [('proxystore_rs shm arena', rs_case), ('ray', ray_case)]:
    ts = f()
    print(f'{name:24s} keep {KEEP}: first {ts[0]*1e3:.1f} ms, median {statistics.median(ts)*1e3:.1f} ms, all ' + ' '.join(f'{t*1e3:.0f}' for t in ts))
