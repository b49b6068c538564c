#!/usr/bin/env python3
"""Measures a running DPDK process's packet rate from its ethdev counters.

Talks to the process's telemetry socket (``/var/run/dpdk/<prefix>/dpdk_telemetry.v2``,
the same one ``dpdk-telemetry.py -f <prefix>`` uses) and reads ``/ethdev/stats,<port>``:

1. waits until the socket exists and ``ipackets`` grows (the PMD has loaded its pcap
   and the forwarding core runs), or gives up after ``--timeout`` seconds;
2. lets it run ``--warmup`` seconds more;
3. reads the counters, sleeps ``--duration`` seconds, reads them again, timing both
   reads with a monotonic clock, and prints one JSON object with the deltas and rates.

With ``--pid`` it also reads, at both ends of the window, the CPU time the forwarding
thread really ran (``/proc/PID/task/TID/schedstat``, nanoseconds on CPU; the thread whose
name matches ``--thread`` -- DPDK 22.11 names lcore threads ``rte-worker-N`` -- or else the
busiest thread). A poll-mode thread spins whenever it is scheduled, so packets divided by
its CPU time is the per-core rate even when other processes share the core: the figure
stays comparable on a machine busy compiling, where the wall-clock rate does not.

Exit status 0 with the JSON on stdout; 1 (and a message on stderr) when the process
never came up or never received a packet. Only the Python standard library is used.
"""

import argparse
import json
import os
import re
import socket
import sys
import time

RUNTIME_DIR = "/var/run/dpdk"


class Telemetry:
    """A connection to one DPDK process's telemetry v2 socket."""

    def __init__(self, prefix):
        path = os.path.join(RUNTIME_DIR, prefix, "dpdk_telemetry.v2")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.connect(path)
        info = json.loads(self.sock.recv(16384).decode())
        self.max_len = int(info.get("max_output_len", 16384))
        self.pid = info.get("pid")

    def query(self, cmd):
        self.sock.send(cmd.encode())
        return json.loads(self.sock.recv(self.max_len).decode())

    def close(self):
        self.sock.close()


def port_stats(tel, port):
    reply = tel.query(f"/ethdev/stats,{port}")
    stats = reply.get("/ethdev/stats")
    if not isinstance(stats, dict):
        raise RuntimeError(f"no /ethdev/stats for port {port}: {reply}")
    return stats


def thread_cpu_ns(pid):
    """{tid: (name, ns on CPU)} for every thread of pid."""
    out = {}
    base = f"/proc/{pid}/task"
    for tid in os.listdir(base):
        try:
            with open(f"{base}/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"{base}/{tid}/schedstat") as f:
                ns = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        out[tid] = (name, ns)
    return out


def pick_thread(before, after, pattern):
    """The tid matching pattern, else the one that ran most between the two samples."""
    common = [t for t in after if t in before]
    named = [t for t in common if re.search(pattern, after[t][0])]
    pool = named or common
    if not pool:
        return None
    return max(pool, key=lambda t: after[t][1] - before[t][1])


def connect(prefix, deadline, pid=None):
    last = None
    while time.monotonic() < deadline:
        if pid is not None and not os.path.exists(f"/proc/{pid}"):
            raise RuntimeError(f"process {pid} exited before its telemetry socket answered")
        try:
            return Telemetry(prefix)
        except (OSError, ValueError) as e:
            last = e
            time.sleep(0.2)
    raise RuntimeError(f"telemetry socket of '{prefix}' never answered: {last}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prefix", required=True, help="the process's EAL --file-prefix")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--duration", type=float, default=3.0, help="measurement window, seconds")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds to run after traffic starts, before measuring")
    p.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for the process and its first packets")
    p.add_argument("--pid", type=int, help="the process: give up early when it exits, and read its forwarding thread's CPU time")
    p.add_argument("--thread", default=r"^(rte|lcore)-worker-1$", help="regex naming the forwarding thread")
    args = p.parse_args(argv)

    deadline = time.monotonic() + args.timeout
    try:
        tel = connect(args.prefix, deadline, args.pid)
        first = port_stats(tel, args.port)["ipackets"]
        while True:
            time.sleep(0.1)
            if port_stats(tel, args.port)["ipackets"] > first:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("no packet received before the timeout")
            if args.pid is not None and not os.path.exists(f"/proc/{args.pid}"):
                raise RuntimeError(f"process {args.pid} exited")
        time.sleep(args.warmup)
        proc = tel.pid or args.pid
        cpu0 = thread_cpu_ns(proc) if proc else {}
        t0 = time.monotonic()
        s0 = port_stats(tel, args.port)
        t0 = (t0 + time.monotonic()) / 2
        time.sleep(args.duration)
        t1 = time.monotonic()
        s1 = port_stats(tel, args.port)
        t1 = (t1 + time.monotonic()) / 2
        cpu1 = thread_cpu_ns(proc) if proc else {}
        tel.close()
    except (RuntimeError, OSError, KeyError, ValueError) as e:
        print(f"ethstats: {e}", file=sys.stderr)
        return 1

    seconds = t1 - t0
    out = {"seconds": round(seconds, 4)}
    for key in ("ipackets", "opackets", "ibytes", "obytes", "imissed", "ierrors", "oerrors", "rx_nombuf"):
        out[key] = s1.get(key, 0) - s0.get(key, 0)
    out["rx_pps"] = out["ipackets"] / seconds
    out["tx_pps"] = out["opackets"] / seconds
    tid = pick_thread(cpu0, cpu1, args.thread) if cpu1 else None
    if tid is not None:
        cpu_s = (cpu1[tid][1] - cpu0[tid][1]) / 1e9
        out["thread"] = cpu1[tid][0]
        out["cpu_seconds"] = round(cpu_s, 4)
        out["cpu_share"] = round(cpu_s / seconds, 4)
        if cpu_s > 0:
            out["rx_pps_cpu"] = out["ipackets"] / cpu_s
            out["tx_pps_cpu"] = out["opackets"] / cpu_s
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
