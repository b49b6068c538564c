#!/usr/bin/env bash
# Runs every fulcrum test on a fresh Debian 12 machine: installs what is missing,
# reserves hugepages, builds, then runs the unit, property, DPDK-device, pcap
# conformance and network-namespace integration tests, the library without DPDK,
# every fuzz target for a short while from its corpus (FULCRUM_FUZZ_SECONDS, 30 each),
# and the quick mode of both benchmark harnesses (which check that figures are
# produced and that fulcrum forwarded what it was sent; they assert no timing).
#
# usage: sudo scripts/test.sh            (FULCRUM_SKIP_BENCH=1 leaves the benchmark smoke runs out)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
need_root
install_packages
setup_hugepages
export FULCRUM_EAL_MEM

echo "== build (release)"
cargo build --release --workspace --all-targets

echo "== unit, property, DPDK device, pcap conformance and namespace tests"
# Integration tests that build namespace topologies share names, so they run one at a time.
cargo test --release --workspace -- --test-threads=1

echo "== library without DPDK (what the fuzzers build)"
cargo test --release --no-default-features --lib

echo "== fuzz targets from the committed corpus, ${FULCRUM_FUZZ_SECONDS:-30} s each (fuzz/README.md)"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz --version 0.13.2
bash fuzz/smoke.sh "${FULCRUM_FUZZ_SECONDS:-30}"

if [ "${FULCRUM_SKIP_BENCH:-0}" != 1 ]; then
  echo "== benchmark harness, quick mode (per-core, memif, idle)"
  python3 -m unittest discover -s bench -p 'test_*.py'
  bash bench/run.sh --quick
  echo "== instructions per packet under callgrind, quick (fulcrum ipip and testpmd io, est-10k-64)"
  bash bench/instructions.sh --seconds 5 --only '^est-10k-64$' --out bench/results/quick/instructions.md
  echo "== end-to-end benchmark harness, quick mode"
  bash bench/e2e/run.sh --quick
  echo "== the L7 pool's and HAProxy's instructions a request under callgrind, quick (loopback)"
  bash bench/tools/l7-loopback.sh -i -n 2000 -m h1 fulcrum haproxy
  bash bench/tools/l7-loopback.sh -i -n 2000 -m h2 fulcrum haproxy
  echo "== full TLS handshakes by key exchange group: fulcrum's pool, nginx, HAProxy (quick)"
  bash bench/tools/tls-handshakes.sh -n 300
fi

echo "== leftovers"
left=$(ip netns list | grep -E '^(flc|flb)' || true)
if [ -n "$left" ]; then echo "namespaces left behind: $left" >&2; exit 1; fi
echo "all tests passed"
