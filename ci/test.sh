#!/usr/bin/env bash
# The whole test suite, as README gives it: installs what the tests need
# (when run as root), then formatting, lints, every test of the workspace
# with every connector feature on, the Python bindings' tests (pytest over
# a release wheel), the Python benchmark scripts' tests, the
# README's runnable shell blocks, and the API docs (broken links fail).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ]; then
    ci/install-deps.sh
else
    echo "test.sh: not root, skipping ci/install-deps.sh (tests needing missing libraries will say so)"
fi

echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings
echo "== cargo test"
cargo test --workspace --all-features
echo "== Python bindings (wheel, pytest through Python ProxyStore)"
ci/python-tests.sh
echo "== benchmark scripts (compare.py, bench_ray.py helpers; no Ray needed)"
python3 benches/python/test_compare.py
echo "== README runnable blocks"
ci/readme-blocks.sh
echo "== cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features
