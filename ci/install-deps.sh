#!/usr/bin/env bash
# Installs the system packages the test suite needs. Idempotent: packages
# already present are skipped, and `apt-get update` runs once, only when
# something is missing. Connector issues add their packages to the list.
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
    echo "install-deps: all ${#APT_PACKAGES[@]} packages present"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: need root to install: ${missing[*]}" >&2
    exit 1
fi
echo "install-deps: installing ${missing[*]}"
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
