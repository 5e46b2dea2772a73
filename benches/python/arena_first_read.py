#!/usr/bin/env python3
"""A long-lived reader process gets the first object of fresh arenas made by
this process (new directory each round, as bench_dask.py's cases), right
after the put; counts misses. Also evicts from the reader (foreign evict)."""
import multiprocessing as mp, shutil, sys, uuid
import numpy as np

def reader(q, out):
    import proxystore_rs
    conns = []
    while True:
        item = q.get()
        if item is None:
            return
        d, key, size = item
        c = proxystore_rs.ShmConnector(d, arena_bytes=1 << 28)
        conns.append(c)   # keep connectors (a Dask worker keeps its stores)
        got = c.get(proxystore_rs.RustKey(key))
        ok = got is not None and len(got) == size
        if ok:
            c.evict(proxystore_rs.RustKey(key))
        out.put((ok, key))

if __name__ == '__main__':
    import proxystore_rs
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    ctx = mp.get_context('spawn')
    q, out = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=reader, args=(q, out)); p.start()
    keep = []
    misses = 0
    for r in range(rounds):
        d = f'/dev/shm/stress-{uuid.uuid4().hex}'
        c = proxystore_rs.ShmConnector(d, arena_bytes=1 << 28)
        keep.append(c)
        for i in range(3):
            data = np.full(1_000_128, r % 251, dtype=np.uint8)
            k = c.put(proxystore_rs.concat(data))
            q.put((d, k.text, len(data)))
            ok, key = out.get(timeout=60)
            if not ok:
                misses += 1
                print('MISS', r, i, key, flush=True)
        shutil.rmtree(d, ignore_errors=True)
    q.put(None); p.join()
    print(f'rounds={rounds} misses={misses}')
