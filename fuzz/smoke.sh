#!/bin/sh
# Runs fuzz targets for N seconds each (default 60) from the committed corpus, without
# adding to it. Exits non-zero on the first crash or broken invariant (the input lands
# in fuzz/artifacts/TARGET/).
#   fuzz/smoke.sh [SECONDS [TARGET...]]      (default: every target)
# Needs cargo-fuzz (`cargo install cargo-fuzz`); on a stable toolchain RUSTC_BOOTSTRAP=1
# lets it pass its -Z flags.
set -eu
secs="${1:-60}"
[ $# -gt 0 ] && shift
cd "$(dirname "$0")"
targets="${*:-engine config upstream_response request_framing request_path}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for t in $targets; do
  [ -d "corpus/$t" ] || { echo "smoke: no corpus/$t" >&2; exit 2; }
  echo "== fuzz $t, ${secs} s"
  mkdir -p "$work/$t"
  # the largest repository config is 5.4 KB; room to grow it, and for its edits
  case "$t" in config) max_len=16384 ;; *) max_len=8192 ;; esac
  RUSTC_BOOTSTRAP=1 cargo fuzz run -s none ${CARGO_TARGET_DIR:+--target-dir "$CARGO_TARGET_DIR"} "$t" "$work/$t" "corpus/$t" -- \
      -max_total_time="$secs" -max_len="$max_len" -print_final_stats=1
done
