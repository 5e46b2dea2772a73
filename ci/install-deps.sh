#!/usr/bin/env bash
# Installs what the test suite needs: Debian packages, then pinned PyPI
# packages for the Python tests. Idempotent: packages already present (at
# the pinned version) are skipped, and `apt-get update` runs once, only when
# something is missing. Connector issues add their packages to the lists.
set -euo pipefail

# Debian packages the tests need (each connector adds its own here).
APT_PACKAGES=(
    pkg-config      # how zmq-sys finds libzmq
    libzmq3-dev     # proxystore-zmq: real libzmq tests
    redis-server    # proxystore-redis: real tests against a loopback server
    libucx-dev      # sys/ucx-sys, proxystore-ucx: UCP headers and libraries
    ucx-utils       # ucx_info, ucx_perftest: the raw UCX baseline
    libclang-dev    # bindgen (build-support) parses the C headers
    iproute2        # ip netns: proxystore-ucx's two-host test (tests/hosts.rs)
    libfabric-dev   # sys/libfabric-sys: libfabric headers and library (tcp, shm providers)
    libfabric-bin   # fi_info, fi_pingpong: the raw libfabric baseline
    libopenmpi-dev  # proxystore-mpi: mpicc and the headers rsmpi's build script reads
    openmpi-bin     # mpirun: proxystore-mpi's 2- and 4-rank tests
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} == 0)); then
    echo "install-deps: all ${#APT_PACKAGES[@]} Debian packages present"
elif [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: need root to install: ${missing[*]}" >&2
    exit 1
else
    echo "install-deps: installing ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# PyPI packages of the Python tests (ci/python-tests.sh), pinned.
PIP_PACKAGES=(
    maturin==1.16.0       # builds the proxystore_rs wheel (crates/proxystore-py)
    proxystore==1.1.0     # the Store the bindings are tested through
    proxystore-ex==0.1.5  # its Dask plugin (issue 14's Dask models)
    dask==2026.8.0        # the Dask models (tests/test_dask.py), bench_dask.py
    distributed==2026.8.0 # LocalCluster, Client; proxystore_rs.dask.Client
    numpy==2.4.6          # array payloads
    redis==8.1.0          # Python ProxyStore's RedisConnector
    pytest==9.2.0         # runs crates/proxystore-py/tests
)

# The pinned packages not installed at their pinned version.
mapfile -t pip_missing < <(python3 - "${PIP_PACKAGES[@]}" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version

for spec in sys.argv[1:]:
    name, _, pinned = spec.partition('==')
    try:
        if version(name) == pinned:
            continue
    except PackageNotFoundError:
        pass
    print(spec)
PY
)
if ((${#pip_missing[@]} == 0)); then
    echo "install-deps: all ${#PIP_PACKAGES[@]} PyPI packages present"
else
    echo "install-deps: pip installing ${pip_missing[*]}"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        "${pip_missing[@]}"
fi
