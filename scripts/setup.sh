#!/usr/bin/env bash
# Installs what fulcrum needs on Debian 12 and prepares hugepages.
# Sourced by scripts/test.sh and scripts/demo.sh; safe to run again.
# Exports FULCRUM_EAL_MEM: the EAL memory arguments the tests and the demo use
# ("" with hugepages, "--no-huge -m 1024" without).
set -euo pipefail

FULCRUM_PACKAGES=(
  # DPDK 22.11 LTS: headers, shared libraries and PMD plugins, dpdk-testpmd / dpdk-dumpcap
  libdpdk-dev dpdk dpdk-dev
  # bindgen needs libclang; the C shim needs a compiler; pkg-config finds libdpdk
  libclang-dev clang pkg-config build-essential
  # the namespace topologies, traffic and captures of the integration tests and the demo
  iproute2 iputils-ping curl ethtool procps python3 tcpdump
  # the L7 namespace tests make a self-signed certificate
  openssl
  # the L7 pool's gRPC test: real gRPC servers and client (tests/l7/grpc_peer.py)
  python3-grpcio
  # the L7 pool's interop test with real HTTP/2 upstreams: nginx (h2c, GOAWAY after 3 streams)
  nginx
  # bench/instructions.sh counts the data plane's instructions per packet with callgrind
  valgrind
)

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "fulcrum setup: run as root (DPDK, hugepages and network namespaces need it)" >&2
    exit 1
  fi
}

# install_debs PACKAGE...: installs the Debian packages of the list that are not installed
# (root). nginx and haproxy services Debian starts on install, where an init system runs,
# are stopped and disabled: the tests and benchmarks start their own instances.
install_debs() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "fulcrum setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
    if command -v systemctl >/dev/null 2>&1; then
      for svc in nginx haproxy; do
        if [[ " ${missing[*]} " == *" $svc "* ]]; then
          systemctl disable --now "$svc" >/dev/null 2>&1 || true
        fi
      done
    fi
  fi
}

install_packages() {
  install_debs "${FULCRUM_PACKAGES[@]}"
  if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
      export PATH="$HOME/.cargo/bin:$PATH"
    else
      echo "fulcrum setup: no Rust toolchain (cargo) found; install rustup first" >&2
      exit 1
    fi
  fi
  # Cargo.toml's rust-version, said plainly instead of as a compile error
  local need have
  need=$(sed -nE 's/^rust-version = "([0-9.]+)"/\1/p' Cargo.toml | head -1)
  have=$(rustc --version | awk '{print $2}')
  if [ -n "$need" ] && [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" != "$need" ]; then
    echo "fulcrum setup: rustc $have is older than the $need fulcrum needs (rustup update stable)" >&2
    exit 1
  fi
  pkg-config --atleast-version=22.11 libdpdk || { echo "fulcrum setup: libdpdk >= 22.11 not found" >&2; exit 1; }
}

# Reserve 2 MiB hugepages (FULCRUM_HUGEPAGES, default 1024 = 2 GiB) and mount hugetlbfs.
setup_hugepages() {
  local want="${FULCRUM_HUGEPAGES:-1024}"
  FULCRUM_EAL_MEM=""
  local have
  have=$(awk '/HugePages_Total/ {print $2}' /proc/meminfo)
  if [ "${have:-0}" -lt "$want" ]; then
    echo "$want" > /proc/sys/vm/nr_hugepages 2>/dev/null || true
    have=$(awk '/HugePages_Total/ {print $2}' /proc/meminfo)
  fi
  if ! mount | grep -q "type hugetlbfs"; then
    mkdir -p /dev/hugepages
    mount -t hugetlbfs nodev /dev/hugepages 2>/dev/null || true
  fi
  if [ "${have:-0}" -lt 256 ] || ! mount | grep -q "type hugetlbfs"; then
    echo "fulcrum setup: WARNING: could not reserve hugepages (have ${have:-0}); falling back to --no-huge -m 1024" >&2
    FULCRUM_EAL_MEM="--no-huge -m 1024"
  else
    echo "fulcrum setup: ${have} hugepages of 2 MiB reserved, hugetlbfs mounted"
  fi
  export FULCRUM_EAL_MEM
}
