#!/usr/bin/env bash
# Runs every shell block of README.md whose first line starts with
# `# runnable` (inside a ```sh fence), each in a fresh temporary directory
# with the freshly built `proxystore` (target/debug, every connector
# feature: what `cargo test --workspace --all-features` builds) first on
# PATH, so README commands cannot drift from the binary. A block fails the
# check if any of its commands fails (bash -euo pipefail) or it runs over
# 120 s.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$PWD/target/debug"
if [ ! -x "$bin/proxystore" ]; then
    echo "readme-blocks: no $bin/proxystore; build it first (cargo build -p proxystore-cli --all-features)" >&2
    exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Split the runnable blocks into block-1.sh, block-2.sh, ...
awk -v dir="$work" '
    /^```sh$/ { fence = 1; n_lines = 0; next }
    fence && n_lines == 0 && /^# runnable/ { count++; file = dir "/block-" count ".sh"; inside = 1 }
    /^```$/ { fence = 0; inside = 0; next }
    fence { n_lines++ }
    inside { print > file }
' README.md
blocks=("$work"/block-*.sh)
if [ ! -e "${blocks[0]}" ]; then
    echo "readme-blocks: README.md has no runnable block" >&2
    exit 1
fi
for block in "${blocks[@]}"; do
    title=$(head -1 "$block")
    dir=$(mktemp -d "$work/run.XXXXXX")
    echo "readme-blocks: $title"
    if ! (cd "$dir" && PATH="$bin:$PATH" timeout 120 bash -euo pipefail "$block"); then
        echo "readme-blocks: FAILED: $title" >&2
        cat -n "$block" >&2
        exit 1
    fi
done
echo "readme-blocks: ${#blocks[@]} blocks ran"
