#!/usr/bin/env bash
# A stand-in for `fulcrum run -c CONFIG` that checks bench/run.sh's fulcrum hook end to end
# before the real data plane runs: it reads dpdk.eal_args from the generated config and
# runs dpdk-testpmd (macswap, one forwarding core) with exactly those EAL arguments, so the
# hook's vdev, file prefix, telemetry reading and process handling are exercised.
#
# usage: FULCRUM_BIN=bench/tools/fulcrum-standin.sh bench/run.sh --quick --only est-10k-64
set -euo pipefail
[ "${1-}" = run ] && [ "${2-}" = -c ] && [ -n "${3-}" ] || { echo "usage: $0 run -c CONFIG" >&2; exit 2; }
mapfile -t eal < <(python3 - "$3" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
m = re.search(r"eal_args:\s*(\[.*?\])", text, re.S)
for a in json.loads(m.group(1)):
    print(a)
PY
)
pcap=$(printf '%s\n' "${eal[@]}" | sed -n 's/.*rx_pcap=\([^,]*\).*/\1/p')
# infinite_rx loads the whole file into the pool: size it for the packets in the file.
packets=$(python3 - "$pcap" <<'PY'
import struct, sys
n = 0
with open(sys.argv[1], "rb") as f:
    f.read(24)
    while len(h := f.read(16)) == 16:
        f.seek(struct.unpack("<IIII", h)[2], 1)
        n += 1
print(n)
PY
)
mbufs=$(( packets + 32768 ))
exec dpdk-testpmd "${eal[@]}" -- --forward-mode=macswap --nb-cores=1 --no-mlockall --no-flush-rx \
  --total-num-mbufs="$mbufs" --mbuf-size=640 --stats-period 100000
