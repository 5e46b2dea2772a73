#!/usr/bin/env bash
# Five rounds of `mpirun -n 2 proxystore bench --connector mpi` (rank 1
# owns, rank 0 gets), then per size: the mpi and mpi-raw get medians of
# each round, their ratio (mpi-raw / mpi) and the median ratio: the
# figures in docs/benchmarks.md ("MPI"). Needs a release build:
#   cargo build --release -p proxystore-cli --features mpi
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-5}
SIZES=${SIZES:-1KiB,1MiB,64MiB}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
for r in $(seq "$ROUNDS"); do
    mpirun -n 2 target/release/proxystore bench --connector mpi --sizes "$SIZES" \
        --json "$out/round$r.json" >/dev/null
done
python3 - "$out" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
runs = []
for r in range(1, rounds + 1):
    with open(f"{out}/round{r}.json") as f:
        runs.append({(x["connector"], x["op"], x["size_bytes"]): x["median_ns"] for x in json.load(f)})
for size in sorted({k[2] for k in runs[0] if k[0] == "mpi-raw"}):
    mpi = [run[("mpi", "get", size)] for run in runs]
    raw = [run[("mpi-raw", "get", size)] for run in runs]
    ratio = [r / m for r, m in zip(raw, mpi)]
    fmt = lambda v: " / ".join(f"{x / 1e3:.1f}" for x in v)
    print(f"{size} B: mpi get us {fmt(mpi)} | mpi-raw get us {fmt(raw)} | "
          f"ratio {' / '.join(f'{x:.2f}' for x in ratio)} | median ratio {statistics.median(ratio):.2f}")
PY
