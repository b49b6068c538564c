#!/usr/bin/env python3
"""Machine facts and the results report of bench/run.sh.

    report.py machine --mode M --warmup S --duration S --repeat N --repo DIR  > meta.json
    report.py machine-end                                                      > meta-end.json
    report.py report --work DIR --out DIR [--check]

`report` reads WORK/results.jsonl (one JSON object per measurement, written by run.sh)
and WORK/meta.json, and writes OUT/RESULTS.md, OUT/results.json, OUT/mpps.svg and
OUT/ns_per_packet.svg. The headline figure is "core Mpps": packets per CPU-second of the
forwarding thread (see ethstats.py). Every figure is given with its baseline from the same
run as a ratio: against testpmd io of the same scenario, and for fulcrum also against
testpmd macswap (the closest testpmd equivalent: it rewrites headers).

With --check it exits 1 unless every testpmd figure was produced and is nonzero (rx and
tx), and every fulcrum figure is either nonzero or "not measured (binary not ready)".
No timing assertion is made.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import plot  # noqa: E402

NOT_READY = "not measured (binary not ready)"


def sh(cmd, cwd=None):
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def machine(args):
    commit = sh(["git", "rev-parse", "HEAD"], cwd=args.repo)
    dirty = sh(["git", "status", "--porcelain", "--untracked-files=no"], cwd=args.repo)
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "nproc": os.cpu_count(),
        "nproc_cmd": sh(["nproc"]),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "os": sh(["sh", "-c", ". /etc/os-release && echo \"$PRETTY_NAME\""]),
        "dpdk": sh(["dpkg-query", "-W", "-f=${Version}", "dpdk"]) or sh(["pkg-config", "--modversion", "libdpdk"]),
        "python": platform.python_version(),
        "git_commit": commit,
        "git_branch": sh(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=args.repo),
        "git_dirty": bool(dirty),
        "mode": args.mode,
        "warmup_s": float(args.warmup),
        "duration_s": float(args.duration),
        "repeat": int(args.repeat),
        "loadavg_start": loadavg(),
    }
    print(json.dumps(meta))


def machine_end(_args):
    print(json.dumps({"loadavg_end": loadavg(),
                      "date_end": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")}))


def load(work):
    meta = {}
    for name in ("meta.json", "meta-end.json"):
        path = os.path.join(work, name)
        if os.path.exists(path):
            with open(path) as f:
                meta.update(json.load(f))
    scenarios, runs = [], []
    with open(os.path.join(work, "results.jsonl")) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            obj = json.loads(line)
            if "scenario_def" in obj:
                scenarios.append(obj)
            else:
                runs.append(obj)
    return meta, scenarios, runs


def summarise(runs):
    """Groups measurements by (scenario, system); each figure is the median over repetitions.

    The headline rate is per core: packets divided by the CPU time the forwarding thread
    ran in the window (rx_pps_cpu). The wall-clock rate and the share of the window the
    thread was on its CPU are kept next to it.
    """
    groups = {}
    for r in runs:
        groups.setdefault((r["scenario"], r["system"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        ok = [r for r in rs if r.get("status") == "ok"]
        if ok:
            def med(field, scale=1e6):
                vals = [r["stats"][field] for r in ok if r["stats"].get(field) is not None]
                return statistics.median(vals) / scale if vals else None
            core = med("rx_pps_cpu")
            out[key] = {
                "status": "ok" if len(ok) == len(rs) else f"ok in {len(ok)} of {len(rs)}",
                "core_mpps": core,
                "core_tx_mpps": med("tx_pps_cpu"),
                "ns_per_packet": 1e3 / core if core else None,
                "wall_rx_mpps": med("rx_pps"),
                "wall_tx_mpps": med("tx_pps"),
                "cpu_share": med("cpu_share", 1),
                "samples_core_mpps": [round(r["stats"].get("rx_pps_cpu", 0) / 1e6, 3) for r in ok],
                "rx_nombuf": sum(r["stats"].get("rx_nombuf", 0) for r in ok),
                "oerrors": sum(r["stats"].get("oerrors", 0) for r in ok),
                "seconds": sum(r["stats"]["seconds"] for r in ok),
                "packets_in_file": ok[0].get("packets_in_file"),
                "mbuf_size": ok[0].get("mbuf_size"),
            }
        else:
            out[key] = {"status": rs[0].get("status", "failed")}
    return out


def fmt(x, digits=2):
    return "-" if x is None else f"{x:.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def systems_in(summary, scenario):
    order = ["testpmd-io", "testpmd-macswap", "fulcrum-ipip", "fulcrum-dsr", "fulcrum-nat"]
    present = [s for (sc, s) in summary if sc == scenario and not s.startswith("tx-")]
    return [s for s in order if s in present] + sorted(s for s in present if s not in order)


def report(args):
    meta, scenarios, runs = load(args.work)
    summary = summarise(runs)
    names = [s["scenario_def"] for s in scenarios]
    lines = []
    w = lines.append
    w("# fulcrum benchmarks: per-core packet processing")
    w("")
    w(f"Generated by `bench/run.sh{' --quick' if meta.get('mode') == 'quick' else ''}` on {meta.get('date', '?')}"
      f" (finished {meta.get('date_end', '?')}).")
    w("")
    w("## Machine and build")
    w("")
    w("| | |")
    w("|---|---|")
    w(f"| CPUs (`nproc`) | {meta.get('nproc_cmd') or meta.get('nproc')} |")
    w(f"| CPU model (/proc/cpuinfo) | {meta.get('cpu_model')} |")
    w(f"| kernel | {meta.get('kernel')} |")
    w(f"| OS | {meta.get('os')} |")
    w(f"| DPDK (Debian package) | {meta.get('dpdk')} |")
    w(f"| git commit | `{meta.get('git_commit')}`{' (with uncommitted changes)' if meta.get('git_dirty') else ''} on `{meta.get('git_branch')}` |")
    w(f"| mode | {meta.get('mode')}: {meta.get('warmup_s')} s warm-up, {meta.get('duration_s')} s measured per figure, "
      f"{meta.get('repeat')} repetition(s) (median) |")
    w(f"| load average (1/5/15 min) | start {meta.get('loadavg_start')}, end {meta.get('loadavg_end', '?')} |")
    w("")
    w("**Shared machine.** Other engineers compile on this 2-CPU VM while the benchmarks run, so")
    w("absolute figures move from run to run (see the load averages above). Compare figures only")
    w("with the baseline measured in the same run: that is what the ratio columns do. Baseline and")
    w("fulcrum runs alternate within each repetition of each scenario so both see the same load.")
    w("Dividing by the forwarding thread's CPU time (core Mpps, below) removes most of the effect of")
    w("losing the core, but not all of it: a compile job on the other CPU (possibly an SMT sibling) and")
    w("in the caches still slows the thread while it runs. Read `core share` (the part of the window the")
    w("thread was on its CPU) before comparing figures of *different* scenarios; ratios within one")
    w("scenario are measured back to back and are the figures to quote.")
    w("")
    w("## Method")
    w("")
    w("- Traffic: `bench/gen_pcap.py` pcaps, Ethernet/IPv4/TCP to VIP 10.99.0.100:80 from clients")
    w("  spread over 10.1.0.0/16, destination MAC 02:70:63:61:70:00 (net_pcap port 0), valid IPv4 and TCP")
    w("  checksums. Frame sizes are given on the wire *with* the 4-byte FCS: \"64\" is a 60-byte frame in")
    w("  the file, \"512\" a 508-byte frame.")
    w("- Port: `--vdev=net_pcap0,rx_pcap=FILE,infinite_rx=1` with no tx stream, so transmit goes to the")
    w("  PMD's drop queue (frees the mbufs, counts opackets); see the transmit comparison below.")
    w("  `infinite_rx` loads the whole file into mbufs of the RX queue's pool at queue setup and copies")
    w("  each replayed packet into a fresh mbuf, so every packet costs one ~60-508 byte memcpy in the")
    w("  PMD for every system alike; the pool is sized for the file (`--total-num-mbufs` = packets + 32768).")
    w("- One forwarding core: EAL `-l 0,1`, main lcore 0 (idle), forwarding lcore 1; one RX and one TX")
    w("  queue. testpmd: `--forward-mode=io|macswap --nb-cores=1 --no-mlockall --no-flush-rx`.")
    w("- Figures: ethdev counters of port 0 (`/ethdev/stats,0`) read over the telemetry socket at the start")
    w("  and the end of the window (`bench/ethstats.py`), and the CPU time the forwarding thread ran in")
    w("  that window (`/proc/PID/task/TID/schedstat`). A poll-mode thread spins whenever it is scheduled,")
    w("  so **core Mpps** = received packets / forwarding-thread CPU seconds is the per-core rate even")
    w("  when compile jobs take part of the core; **ns/packet** = 1000 / core Mpps. The wall-clock rate")
    w("  and the thread's share of the window (`core share`) are shown too: on this busy machine the")
    w("  wall rate is roughly core Mpps x core share. Ratios use core Mpps.")
    w("- Replay caveat: the file loops, so a SYN-flood file of 1M distinct tuples repeats its tuples every")
    w("  1M packets; the first pass is all new flows, later passes hit entries (or, for a load balancer,")
    w("  SYNs of known flows) unless the flow table evicts them.")
    w("")
    w("## Scenarios")
    w("")
    w("| scenario | traffic | gen_pcap.py arguments |")
    w("|---|---|---|")
    for s in scenarios:
        w(f"| {s['scenario_def']} | {s['description']} | `{s['gen_args']}` |")
    w("")
    w("## Results")
    w("")
    w("Ratios: core Mpps against testpmd io (`/io`) and testpmd macswap (`/macswap`) of the same scenario")
    w("in this run. `+ns vs io`: CPU time per packet on top of testpmd io, i.e. the work a system adds")
    w("to the harness's own cost (the PMD's replay copy and the drop queue, which every system pays).")
    w("")
    w("| scenario | system | core Mpps | ns/packet | /io | /macswap | +ns vs io | wall rx Mpps | wall tx Mpps | core share | status |")
    w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    figures = []
    for name in names:
        io = summary.get((name, "testpmd-io"), {})
        ms = summary.get((name, "testpmd-macswap"), {})
        for system in systems_in(summary, name):
            f = summary[(name, system)]
            core = f.get("core_mpps")
            r_io = ratio(core, io.get("core_mpps"))
            r_ms = ratio(core, ms.get("core_mpps")) if system.startswith("fulcrum") else None
            ns, io_ns = f.get("ns_per_packet"), io.get("ns_per_packet")
            extra = ns - io_ns if ns is not None and io_ns is not None and system != "testpmd-io" else None
            w(f"| {name} | {system} | {fmt(core)} | {fmt(ns, 1)} | {fmt(r_io, 3)} | {fmt(r_ms, 3)} | {fmt(extra, 1)} | "
              f"{fmt(f.get('wall_rx_mpps'))} | {fmt(f.get('wall_tx_mpps'))} | {fmt(f.get('cpu_share'), 2)} | {f['status']} |")
            figures.append({"scenario": name, "system": system, **f, "ratio_to_testpmd_io": r_io,
                            "ratio_to_testpmd_macswap": r_ms, "extra_ns_vs_testpmd_io": extra})
    w("")
    tx_rows = [(s, summary[("est-10k-64", s)]) for s in ("tx-drop", "tx-pcap-devnull", "tx-iface-veth")
               if ("est-10k-64", s) in summary]
    if tx_rows:
        base = summary.get(("est-10k-64", "tx-drop"), {}).get("core_mpps")
        w("## Transmit side of the net_pcap port (testpmd io, est-10k-64)")
        w("")
        w("| tx devargs | core Mpps | ns/packet | /tx-drop | wall rx Mpps | wall tx Mpps | core share | status |")
        w("|---|---:|---:|---:|---:|---:|---:|---|")
        label = {"tx-drop": "none (drop queue)", "tx-pcap-devnull": "`tx_pcap=/dev/null`",
                 "tx-iface-veth": "`tx_iface=` veth (no dummy module here)"}
        for s, f in tx_rows:
            w(f"| {label[s]} | {fmt(f.get('core_mpps'))} | {fmt(f.get('ns_per_packet'), 1)} | "
              f"{fmt(ratio(f.get('core_mpps'), base), 3)} | {fmt(f.get('wall_rx_mpps'))} | {fmt(f.get('wall_tx_mpps'))} | "
              f"{fmt(f.get('cpu_share'), 2)} | {f['status']} |")
        w("")
        w("Measured back to back at the end of the run (so against each other only, not against the")
        w("table above, whose load differed). The harness uses the drop queue (no tx stream): it is the cheapest, as the DPDK pcap guide")
        w("recommends for `infinite_rx`; `tx_pcap=/dev/null` still formats every packet through libpcap's")
        w("writer and `tx_iface` sends through the kernel.")
        w("")
    w("## Plots")
    w("")
    w("![packets per second](mpps.svg)")
    w("")
    w("![ns per packet](ns_per_packet.svg)")
    w("")
    w("Raw per-measurement counters: `results.json`.")
    w("")

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "RESULTS.md"), "w") as f:
        f.write("\n".join(lines))
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"meta": meta, "scenarios": scenarios, "figures": figures, "measurements": runs}, f, indent=1)

    series = []
    for system in ["testpmd-io", "testpmd-macswap", "fulcrum-ipip", "fulcrum-dsr", "fulcrum-nat"]:
        vals = [summary.get((n, system), {}).get("core_mpps") for n in names]
        if any(v is not None for v in vals):
            series.append((system, vals))
    plot.bar_chart(os.path.join(args.out, "mpps.svg"), "Packets per CPU-second of the forwarding core (Mpps, higher is better)",
                   names, series, "Mpps", note=f"{meta.get('cpu_model')}, {meta.get('date')}, commit {str(meta.get('git_commit'))[:10]}")
    ns_series = [(s, [1e3 / v if v else None for v in vals]) for s, vals in series]
    plot.bar_chart(os.path.join(args.out, "ns_per_packet.svg"), "CPU time per packet on the forwarding core (ns, lower is better)",
                   names, ns_series, "ns/packet", note=f"{meta.get('cpu_model')}, {meta.get('date')}")

    if args.check:
        problems = check(names, summary)
        for p in problems:
            print(f"bench check: {p}", file=sys.stderr)
        if problems:
            return 1
        print(f"bench check: all {len(figures)} figures present", file=sys.stderr)
    return 0


def check(names, summary):
    problems = []
    if not names:
        problems.append("no scenario ran")
    for name in names:
        for system in ("testpmd-io", "testpmd-macswap"):
            f = summary.get((name, system))
            if f is None:
                problems.append(f"{name} {system}: missing")
            elif f["status"] != "ok":
                problems.append(f"{name} {system}: {f['status']}")
            elif not ((f["core_mpps"] or 0) > 0 and (f["wall_rx_mpps"] or 0) > 0 and (f["wall_tx_mpps"] or 0) > 0):
                problems.append(f"{name} {system}: missing or zero rate (core {f['core_mpps']}, "
                                f"wall rx {f['wall_rx_mpps']}, wall tx {f['wall_tx_mpps']})")
        for (sc, system), f in summary.items():
            if sc != name or not system.startswith("fulcrum"):
                continue
            if f["status"] == NOT_READY:
                continue
            if f["status"] != "ok":
                problems.append(f"{name} {system}: {f['status']}")
            elif not ((f["core_mpps"] or 0) > 0 and (f["wall_rx_mpps"] or 0) > 0):
                problems.append(f"{name} {system}: missing or zero rate")
    return problems


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("machine")
    m.add_argument("--mode", required=True)
    m.add_argument("--warmup", required=True)
    m.add_argument("--duration", required=True)
    m.add_argument("--repeat", default="1")
    m.add_argument("--repo", default=".")
    sub.add_parser("machine-end")
    r = sub.add_parser("report")
    r.add_argument("--work", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--check", action="store_true")
    args = p.parse_args(argv)
    if args.cmd == "machine":
        machine(args)
        return 0
    if args.cmd == "machine-end":
        machine_end(args)
        return 0
    return report(args)


if __name__ == "__main__":
    sys.exit(main())
