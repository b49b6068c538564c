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
        if r.get("scenario") in ("memif", "idle", "stall"):
            continue
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
                "fulcrum": [r.get("fulcrum") for r in ok if "fulcrum" in r],
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
    w("**A 2-core VM.** Every figure below comes from a virtual machine with two CPUs: one forwarding")
    w("core (CPU 1) and one for the EAL main thread, the generator and the harness (CPU 0).")
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
    w("  the file, \"512\" a 508-byte frame. `est6-*`: Ethernet/IPv6/TCP (`--ipv6`) to VIP fd99::100:80 from")
    w("  fd01::/64, \"78\" being the smallest such frame (74 bytes in the file).")
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
    w("- fulcrum: `fulcrum run -c CONFIG` (written by `run.sh`, kept in `results/tmp/run/`) with the same")
    w("  vdev and EAL core list, one worker on core 1 (`workers.cores: [1]`, `workers.idle: poll`), the")
    w("  pool sized like testpmd's (`dpdk.mbufs` = packets + 32768) with mbufs sized for the scenario's")
    w("  frames as testpmd's are: port `mtu` = the file's IP packet + 48 (room for any encapsulation),")
    w("  `dpdk.mbuf_data_room` = mtu + 154 rounded up to 64 (256 bytes for 64-byte frames, as testpmd's;")
    w("  704 for 512, testpmd's 640), flow table capacity 2097152, VIP 10.99.0.100 tcp/80 with three backends that are")
    w("  static neighbors (`est6-*`: fd99::2/64, VIP fd99::100, backends fd99::11-13, `ipip` being")
    w("  IPv6-in-IPv6). Its forwarding thread is the worker `fulcrum-w0`. An IPv6 port's MTU is at least 1280")
    w("  (the IPv6 minimum), so `est6-*` mbufs have a 1472-byte data room, and testpmd's get the same size there.")
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
    targets = target_rows(summary, runs)
    if targets:
        w("## The issue's targets (issue 6, \"Must show\")")
        w("")
        w("| target | measured | met |")
        w("|---|---:|---|")
        for t in targets:
            w(f"| {t[0]} | {t[1]} | {t[2]} |")
        w("")
    fwd_rows = forwarding_rows(names, summary)
    if fwd_rows:
        w("## Did fulcrum forward what it was sent?")
        w("")
        w("fulcrum's own counters, printed when it stops (whole run, not just the window), next to its")
        w("ethdev port counters. `forwarded/rx` must be 100% for valid traffic; in `malformed10-64`, 10% of")
        w("the frames are malformed and must be dropped (each by its own `drop_*` counter). `port opackets`")
        w("must equal `forwarded` (every forwarded packet left through the port).")
        w("")
        w("| scenario | system | rx (engine) | forwarded | forwarded/rx | drops (by reason) | port opackets | check |")
        w("|---|---|---:|---:|---:|---|---:|---|")
        for r in fwd_rows:
            w(f"| {r['scenario']} | {r['system']} | {r['rx']} | {r['forwarded']} | {100 * r['ratio']:.2f}% | "
              f"{r['drops']} {r['drop_detail']} | {r['opackets']} | {r['verdict']} |")
        w("")
    memif = memif_rows(runs)
    if memif:
        w("## Generator over memif: lossless rate and latency")
        w("")
        w("`bench/gen` (`flcgen`, on fulcrum-dpdk) is the `net_memif` server on CPU 0 and sends TCP frames")
        w("of 10k flows to the VIP (96-byte frames + FCS; a TSC stamp in the last 16 bytes, which survives")
        w("encapsulation); the forwarder is the memif client with its forwarding thread on CPU 1 and sends")
        w("everything back over the same memif port (testpmd: `--port-topology=loop`; fulcrum: its TX to the")
        w("backends' MACs). **This is a 2-core VM**: generator and forwarder each own one of its two CPUs")
        w("(`taskset`; the forwarder's EAL main lcore and control threads are mapped to CPU 1 with")
        w("`--lcores=0@1,1@1`, so nothing of it runs beside the generator), and other engineers' compile")
        w("jobs share them (both processes run under `nice -n -10`).")
        w("")
        w(f"**Steady windows.** Every trial is cut into {fmt(memif[0].get('window_ms'), 0)} ms windows by send time. A host")
        w("stall (the vCPU off its CPU: see the stall probe below) spoils the windows it falls in: frames")
        w("queue behind it or overflow the 1024-slot memif ring, whoever the forwarder is. A forwarder that")
        w("cannot keep up spoils every window. So each figure is given twice, over all windows and over the")
        w(f"trial's *steady* {fmt(100 * float(memif[0].get('steady_share') or 0.8), 0)}% (the windows with the least loss, then the lowest worst-case")
        w("latency): a trimmed estimate of what the forwarder does while it has its CPU. Lossless rate: one")
        w("unpaced trial, then a bounded binary search; a trial is lossless when its steady windows lost at")
        w(f"most {100 * float(memif[0].get('max_loss', 0.001)):.2f}% of their frames. Latency: send-to-receive TSC delta of every returned frame,")
        w("HDR histograms per window, at 50% and 90% of the lossless rate; it includes the generator's own")
        w("RX/TX path (the testpmd rows are that floor), so fulcrum's *added* latency is its row minus")
        w("testpmd io's.")
        w("")
        stalls = [r for r in runs if r.get("scenario") == "stall" and r.get("status") == "ok"]
        if stalls:
            w("**Stall probe** (`bench/gen` `flcstall`: a thread spinning on each CPU at once, same")
            w("scheduling, tallying the gaps between two clock reads in which it did not run):")
            w("")
            w("| CPU | seconds | gaps > 10 us | > 20 us | > 100 us | > 1 ms | > 5 ms | time lost | in gaps > 20 us | longest |")
            w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for r in stalls:
                p = r["probe"]
                w(f"| {r['system']} | {p.get('secs')} | {p.get('over_10us')} | {p.get('over_20us')} | {p.get('over_100us')} | "
                  f"{p.get('over_1ms')} | {p.get('over_5ms')} | {100 * p.get('lost_share', 0):.2f}% | "
                  f"{100 * p.get('lost_share_over_20us', 0):.2f}% | {p.get('max_ns', 0) / 1e3:.0f} us |")
            w("")
            lost = " and ".join(f"{100 * r['probe'].get('lost_share_over_20us', 0):.2f}%" for r in stalls)
            w(f"A frame crosses both CPUs; here they lost {lost} of their time in gaps over 20 us. Once that")
            w("passes about 1% together, the p99 of any forwarder over a whole trial lands inside such a gap,")
            w("testpmd's too: hence the steady windows.")
            w("")
        w(f"**Read with the load average** (start {meta.get('loadavg_start')}, end {meta.get('loadavg_end', '?')}): with more")
        w("runnable compile jobs than CPUs, the forwarder is off its CPU for milliseconds at a time, and")
        w("these figures measure the scheduler more than the forwarder. Rerun on a machine nobody else")
        w("uses: `sudo bench/run.sh --only memif`. (`MEMIF_PRIO=rt` runs both under SCHED_FIFO: only")
        w("with spare CPUs, since a FIFO forwarding thread starves the forwarder's own control threads")
        w("on its CPU, and the memif link then never comes up.)")
        w("")
        if len({m["round"] for m in memif}) > 1:
            w("**Rounds.** testpmd io and fulcrum ipip (the latency target's pair) ran in "
              f"{len({m['round'] for m in memif})} rounds, back to back within each round; the other systems "
              "in round 1 only. Each round's fulcrum is compared with the same round's testpmd io, and the "
              "target is judged on the median of the rounds that were not disturbed.")
            w("")
        w("Each latency cell: all windows / steady windows (us).")
        w("")
        w("| system | lossless Mpps | /io | p50 @50% | p99 @50% | p99.9 @50% | p50 @90% | p99 @90% | p99.9 @90% | loss @50% (all / steady) | loss @90% | status |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|")
        for m in memif:
            io = memif_io(m, memif)
            if m["status"] != "ok":
                w(f"| {memif_label(m, memif)} | - | - | - | - | - | - | - | - | - | - | {m['status']} |")
                continue
            l50, l90 = m["lat"].get(0.5, {}), m["lat"].get(0.9, {})
            us = lambda d, k: fmt(d.get(k) / 1e3, 1) if d.get(k) is not None else "-"
            both = lambda d, k: f"{us(d, k)} / {us(d.get('steady', {}), k)}"
            loss = lambda d: (f"{fmt(100 * d.get('trial', {}).get('loss', 0), 3)}% / "
                              f"{fmt(100 * d.get('trial', {}).get('steady_loss', d.get('trial', {}).get('loss', 0)), 3)}%")
            r = ratio(m["lossless_mpps"], io["lossless_mpps"]) if io and io["status"] == "ok" else None
            w(f"| {memif_label(m, memif)} | {fmt(m['lossless_mpps'], 3)} | {fmt(r, 3)} | {both(l50, 'p50_ns')} | {both(l50, 'p99_ns')} | "
              f"{both(l50, 'p999_ns')} | {both(l90, 'p50_ns')} | {both(l90, 'p99_ns')} | {both(l90, 'p999_ns')} | "
              f"{loss(l50)} | {loss(l90)} | ok |")
        w("")
        added = [(m, memif_io(m, memif)) for m in memif if m["system"].startswith("fulcrum") and m["status"] == "ok"]
        added = [(m, io) for m, io in added if io and io["status"] == "ok"]
        if added:
            w("Added latency of fulcrum (its figure minus testpmd io's of the same round; all windows / steady windows):")
            w("")
            w("| system | +p50 @50% (us) | +p99 @50% (us) | +p99.9 @50% (us) |")
            w("|---|---:|---:|---:|")
            for m, io in added:
                b = io["lat"].get(0.5, {})
                l = m["lat"].get(0.5, {})
                d = lambda k: (f"{fmt((l.get(k, 0) - b.get(k, 0)) / 1e3, 1)} / "
                               f"{fmt((l.get('steady', l).get(k, 0) - b.get('steady', b).get(k, 0)) / 1e3, 1)}")
                w(f"| {memif_label(m, memif)} | {d('p50_ns')} | {d('p99_ns')} | {d('p999_ns')} |")
            w("")
        w("Search trials (rate offered -> loss) are in `results.json` (`measurements`, `gen.search`).")
        w("")
    idle = [r for r in runs if r.get("scenario") == "idle"]
    if idle:
        w("## Idle CPU: `workers.idle: poll` vs `adaptive`")
        w("")
        w("fulcrum with one worker on a `net_ring` port nobody sends to: the process's utime + stime")
        w("(`/proc/PID/stat`) over the window after a 2 s settle, in % of one CPU. `poll` spins (its share is")
        w("what the scheduler gives a spinning thread on this shared CPU, up to 100%); `adaptive` sleeps")
        w("50 us after 256 empty polls.")
        w("")
        w("| workers.idle | window (s) | utime (s) | stime (s) | CPU % of one core | status |")
        w("|---|---:|---:|---:|---:|---|")
        for r in idle:
            d = r.get("idle", {})
            w(f"| {r['system'].replace('fulcrum-idle-', '')} | {fmt(d.get('seconds'), 1)} | {fmt(d.get('utime_s'))} | "
              f"{fmt(d.get('stime_s'))} | {fmt(d.get('cpu_percent'), 1)} | {r['status']} |")
        w("")
    w("## Plots")
    w("")
    w("![packets per second](mpps.svg)")
    w("")
    w("![ns per packet](ns_per_packet.svg)")
    w("")
    if memif:
        w("![memif latency](memif_latency.svg)")
        w("")
    w("Raw per-measurement counters: `results.json`. Profiles of fulcrum's worker and proposed fixes:")
    w("[`perf-notes.md`](perf-notes.md).")
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

    if memif:
        ok_m = [m for m in memif if m["status"] == "ok"]
        lat_series = []
        for label, frac, key in (("p50 @50%", 0.5, "p50_ns"), ("p99 @50%", 0.5, "p99_ns"), ("p99 @90%", 0.9, "p99_ns")):
            lat_series.append((label, [(m["lat"].get(frac, {}).get(key) or 0) / 1e3 or None for m in ok_m]))
        plot.bar_chart(os.path.join(args.out, "memif_latency.svg"), "Round-trip latency over memif (us, lower is better)",
                       [memif_label(m, memif) for m in ok_m], lat_series, "us", note=f"2-core VM, {meta.get('date')}")

    if args.check:
        problems = check(names, summary) + check_extra(runs, fwd_rows, memif)
        for p in problems:
            print(f"bench check: {p}", file=sys.stderr)
        if problems:
            return 1
        print(f"bench check: all {len(figures)} figures present", file=sys.stderr)
    return 0


def memif_loss(m, frac):
    """The loss share of the steady windows of a memif row's latency trial at `frac` of its
    lossless rate (the whole trial's for results from before steady windows)."""
    trial = m["lat"].get(frac, {}).get("trial", {})
    loss = trial.get("steady_loss", trial.get("loss"))
    return float(loss) if loss is not None else None


def target_rows(summary, runs):
    rows = []
    for scenario, want, label in (("est-10k-64", 0.40, "ipip, 10k established flows: >= 40% of testpmd io"),
                                  ("est-1m-64", 0.25, "ipip, 1M established flows: >= 25% of testpmd io"),
                                  ("synflood-64", 0.20, "ipip, SYN flood: >= 20% of testpmd io")):
        f, io = summary.get((scenario, "fulcrum-ipip"), {}), summary.get((scenario, "testpmd-io"), {})
        r = ratio(f.get("core_mpps"), io.get("core_mpps"))
        if r is not None:
            rows.append((label + f" ({scenario}, 64-byte frames)", f"{100 * r:.1f}% ({fmt(f.get('core_mpps'))} vs {fmt(io.get('core_mpps'))} Mpps)",
                         "yes" if r >= want else "**no**"))
    rows.extend(memif_target_rows(memif_rows(runs)))
    return rows


def memif_added(by):
    """The latency target's figures for one round (`by`: its ok rows by system), or None."""
    if "fulcrum-ipip" not in by or "testpmd-io" not in by:
        return None
    # Judged on the steady windows (see the memif section); the whole trial's figure beside it.
    la, lb = by["fulcrum-ipip"]["lat"].get(0.5, {}), by["testpmd-io"]["lat"].get(0.5, {})
    a, b = la.get("steady", la).get("p99_ns"), lb.get("steady", lb).get("p99_ns")
    if a is None or b is None:
        return None
    raw = ""
    if la.get("p99_ns") is not None and lb.get("p99_ns") is not None and "steady" in la:
        raw = f"; all windows {(la['p99_ns'] - lb['p99_ns']) / 1e3:.1f} us"
    # Steady windows that still lost more than the search called lossless were
    # disturbed throughout (or the rate was too high): not judged, whichever way it points.
    disturbed = [f"{s} lost {100 * l:.3f}%" for s in ("fulcrum-ipip", "testpmd-io")
                 for l in [memif_loss(by[s], 0.5)]
                 if l is not None and l > float(by[s].get("max_loss") or 0.001)]
    return {"added": (a - b) / 1e3, "detail": f"{a / 1e3:.1f} - {b / 1e3:.1f}{raw}", "disturbed": disturbed}


def memif_target_rows(memif):
    """The memif latency target: fulcrum ipip's steady p99 at 50% minus testpmd io's, each
    round's fulcrum against the same round's baseline (the two run back to back). With
    several rounds the verdict is the median of the rounds that were not disturbed: one
    round on a shared VM says more about the host than about the forwarder."""
    label = ("added p99 latency at 50% of the lossless rate over memif < 20 us "
             "(fulcrum ipip minus testpmd io, steady windows)")
    ok_rows = [m for m in memif if m["status"] == "ok"]
    rounds = []
    for rd in sorted({m["round"] for m in ok_rows}):
        r = memif_added({m["system"]: m for m in ok_rows if m["round"] == rd})
        if r is not None:
            rounds.append(dict(r, round=rd))
    if not rounds:
        return []
    if len(rounds) == 1:
        r = rounds[0]
        verdict = "yes" if r["added"] < 20 else "**no**"
        if r["disturbed"]:
            verdict = f"not judged: disturbed window ({', '.join(r['disturbed'])} at 50%)"
        return [(label, f"{r['added']:.1f} us ({r['detail']})", verdict)]
    each = "; ".join(f"round {r['round']}: {r['added']:.1f} us ({r['detail']})"
                     + (f", not judged: {', '.join(r['disturbed'])}" if r["disturbed"] else "") for r in rounds)
    judged = [r["added"] for r in rounds if not r["disturbed"]]
    if not judged:
        return [(label, each, "not judged: every round had a disturbed window at 50%")]
    med = statistics.median(judged)
    return [(label, f"{med:.1f} us, median of {len(judged)} judged round(s) of {len(rounds)} ({each})",
             "yes" if med < 20 else "**no**")]


def forwarding_rows(names, summary):
    """One row per fulcrum figure with counters: what it received, forwarded and dropped."""
    rows = []
    for name in names:
        for system in systems_in(summary, name):
            if not system.startswith("fulcrum"):
                continue
            for c in summary[(name, system)].get("fulcrum") or []:
                rows.append(forwarding_row(name, system, c))
    return rows


def forwarding_row(name, system, c):
    rx, fwd = c.get("engine_rx_packets", 0), c.get("engine_forwarded", 0)
    opk = c.get("port_opackets", 0)
    r = fwd / rx if rx else 0.0
    lo, hi = (0.85, 0.95) if "malformed10" in name else (0.9999, 1.0)
    ok = bool(c) and rx > 0 and lo <= r <= hi and opk == fwd
    detail = ", ".join(f"{k[5:]} {v}" for k, v in sorted(c.get("drop_counters", {}).items()))
    return {"scenario": name, "system": system, "rx": rx, "forwarded": fwd, "ratio": r, "drops": c.get("drops", 0),
            "drop_detail": f"({detail})" if detail else "", "opackets": opk,
            "verdict": "ok" if ok else f"FAIL (want forwarded/rx in [{lo}, {hi}] and port opackets = forwarded)"}


def memif_label(m, memif):
    """A memif row's name: the system, and its round when the run had more than one."""
    if len({x["round"] for x in memif}) > 1:
        return f"{m['system']} (round {m['round']})"
    return m["system"]


def memif_io(m, memif):
    """testpmd io's row of the same round as `m` (its baseline), if measured."""
    return next((x for x in memif if x["system"] == "testpmd-io" and x["round"] == m["round"]), None)


def memif_rows(runs):
    rows = []
    for r in runs:
        if r.get("scenario") != "memif":
            continue
        g = r.get("gen") or {}
        rd = int(r.get("round", 1))
        if r.get("status") != "ok" or not g:
            rows.append({"system": r["system"], "round": rd, "status": r.get("status", "failed")})
            continue
        rows.append({"system": r["system"], "round": rd, "status": "ok", "max_loss": g.get("max_loss"),
                     "window_ms": g.get("window_ms"), "steady_share": g.get("steady_share"),
                     "lossless_mpps": g.get("lossless_pps", 0) / 1e6,
                     "lat": {round(l["fraction"], 3): l for l in g.get("latency", [])},
                     "totals": g.get("totals", {}), "fulcrum": r.get("fulcrum") or {}})
    return rows


def check_extra(runs, fwd_rows, memif):
    """fulcrum forwarded what it was sent (pcap and memif); memif and idle figures exist."""
    problems = [f"{r['scenario']} {r['system']}: {r['verdict']}" for r in fwd_rows if r["verdict"] != "ok"]
    for m in memif:
        if m["status"] != "ok":
            problems.append(f"memif {m['system']}: {m['status']}")
            continue
        if not all(l.get("samples", 0) > 0 for l in m["lat"].values()) or not m["lat"]:
            problems.append(f"memif {m['system']}: no latency samples")
        if m["system"].startswith("fulcrum"):
            c, t = m["fulcrum"], m["totals"]
            rx, fwd, tx = c.get("engine_rx_packets", 0), c.get("engine_forwarded", 0), c.get("worker_tx_packets", 0)
            back = t.get("received", 0)
            if not (rx > 0 and fwd == rx and abs(back - tx) <= 0.001 * tx + 64):
                problems.append(f"memif {m['system']}: fulcrum rx {rx}, forwarded {fwd}, sent {tx}, "
                                f"generator got back {back}: want forwarded = rx and got back = sent")
    for r in runs:
        if r.get("scenario") == "idle" and r.get("status") != "ok" and NOT_READY not in r.get("status", ""):
            problems.append(f"idle {r['system']}: {r.get('status')}")
    return problems


def check(names, summary):
    problems = []
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
