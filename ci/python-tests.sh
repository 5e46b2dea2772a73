#!/usr/bin/env bash
# The Python bindings' tests: builds the proxystore_rs wheel once (release,
# abi3, maturin), pip installs it, and runs crates/proxystore-py/tests with
# pytest (the Redis tests start their own redis-server on a free loopback
# port). Needs what ci/install-deps.sh installs: maturin, proxystore,
# proxystore-ex, numpy, dask, distributed, pytest. Honours
# CARGO_TARGET_DIR; the wheel goes under it.
set -euo pipefail
cd "$(dirname "$0")/.."

for module in maturin pytest proxystore proxystore_ex numpy dask distributed; do
    if ! python3 -c "import $module" 2>/dev/null; then
        echo "python-tests: python3 cannot import $module; run ci/install-deps.sh" >&2
        exit 1
    fi
done

wheels="${CARGO_TARGET_DIR:-target}/wheels-ci"
rm -rf "$wheels"
# UcxConnector where UCX is installed (ci/install-deps.sh installs it, so
# CI always builds it); elsewhere the wheel goes without, and says so.
features=()
if pkg-config --exists ucx 2>/dev/null; then
    features=(--features ucx)
else
    echo "python-tests: SKIP UcxConnector: pkg-config finds no ucx (ci/install-deps.sh installs libucx-dev)" >&2
fi
start=$SECONDS
python3 -m maturin build --release --quiet -m crates/proxystore-py/Cargo.toml -o "$wheels" "${features[@]}"
echo "python-tests: wheel built in $((SECONDS - start)) s"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --force-reinstall --no-deps "$wheels"/proxystore_rs-*.whl
python3 -m pytest -q -p no:cacheprovider crates/proxystore-py/tests
