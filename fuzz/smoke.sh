#!/bin/sh
# Runs the `engine` fuzz target for N seconds (default 60) from the committed corpus,
# without adding to it. Exits non-zero on a crash (the input lands in fuzz/artifacts/).
#   fuzz/smoke.sh [SECONDS]
# Needs cargo-fuzz (`cargo install cargo-fuzz`); on a stable toolchain RUSTC_BOOTSTRAP=1
# lets it pass its -Z flags.
set -eu
secs="${1:-60}"
cd "$(dirname "$0")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
RUSTC_BOOTSTRAP=1 cargo fuzz run -s none ${CARGO_TARGET_DIR:+--target-dir "$CARGO_TARGET_DIR"} engine "$work" corpus/engine -- \
    -max_total_time="$secs" -max_len=8192 -print_final_stats=1
