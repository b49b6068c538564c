#!/usr/bin/env python3
"""Reads the counters `fulcrum run` prints when it stops (`counter NAME VALUE` lines).

    fulcrum_counters.py LOG           -> JSON: the counters that show what fulcrum forwarded
    fulcrum_counters.py --line LOG    -> one human line for the harness log

Kept: engine_rx_packets, engine_forwarded, engine_new_flows, worker_tx_packets,
worker_tx_dropped, port_ipackets/port_opackets (summed over ports), and drops (the sum of
every drop_* counter) with the non-zero drop_* counters by name. `{}` when the log holds
no counter (fulcrum did not stop cleanly).
"""

import json
import re
import sys

LINE = re.compile(r"^counter ([a-z_0-9]+)(\{[^}]*\})? (\d+)$")
KEEP = ("engine_rx_packets", "engine_forwarded", "engine_new_flows", "engine_replies",
        "worker_rx_packets", "worker_tx_packets", "worker_tx_dropped")


def parse(text):
    out, drops = {}, {}
    for line in text.splitlines():
        m = LINE.match(line.strip())
        if not m:
            continue
        name, value = m.group(1), int(m.group(3))
        if name in KEEP:
            out[name] = out.get(name, 0) + value
        elif name in ("port_ipackets", "port_opackets", "port_oerrors", "port_imissed"):
            out[name] = out.get(name, 0) + value
        elif name.startswith("drop_"):
            if value:
                drops[name] = value
    if not out:
        return {}
    out["drops"] = sum(drops.values())
    out["drop_counters"] = drops
    return out


def line(c):
    if not c:
        return "no fulcrum counters in the log"
    rx = c.get("engine_rx_packets", 0)
    fwd = c.get("engine_forwarded", 0)
    return (f"fulcrum counters: rx {rx}, forwarded {fwd} ({100.0 * fwd / rx if rx else 0:.2f}%), "
            f"drops {c.get('drops', 0)}, port opackets {c.get('port_opackets', 0)}")


def main(argv):
    as_line = argv[:1] == ["--line"]
    path = argv[1] if as_line else argv[0]
    with open(path, errors="replace") as f:
        c = parse(f.read())
    print(line(c) if as_line else json.dumps(c))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
