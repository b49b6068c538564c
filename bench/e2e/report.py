#!/usr/bin/env python3
"""Writes e2e.md and two SVG bar charts from the rows bench/e2e/run.sh measured.

Rows (tab-separated): key, group, label, client, req/s, p50 us, p99 us, errors, backend split,
CPU ("busy%/softirq%" of core 0, then of core 1), the load balancer process's CPU (% of a
core, "-" for none), round, quiet (1/0).
Each table compares fulcrum with the best baseline (highest req/s) of the same table.
No third-party packages.
"""

import argparse
import datetime
import os
import platform
import subprocess
import sys
from xml.sax.saxutils import escape

# (title, client description, the protocol as the plots label it, keys in order, keys
# that are baselines)
TABLES = [
    ("L4: TCP load balancers", "wrk, HTTP/1.1 keep-alive", "HTTP/1.1",
     ["fulcrum-nat", "fulcrum-dsr", "fulcrum-dsr-poll", "nft", "haproxy-tcp", "direct"],
     {"nft", "haproxy-tcp"}),
    ("L7: HTTP/1.1 keep-alive", "wrk", "HTTP/1.1",
     ["fulcrum-l7-h1", "fulcrum-l7-h2up-h1", "fulcrum-l7-base-h1", "haproxy-http-h1", "nginx-h1"],
     {"haproxy-http-h1", "nginx-h1"}),
    ("L7: HTTP/2 cleartext (h2c, prior knowledge)", "h2load", "h2c",
     ["fulcrum-l7-h2", "fulcrum-l7-h2up-h2", "fulcrum-l7-base-h2", "haproxy-http-h2", "nginx-h2"],
     {"haproxy-http-h2", "nginx-h2"}),
    ("L7: HTTPS, HTTP/1.1 keep-alive over TLS (termination at the proxy)", "wrk", "HTTPS/1.1",
     ["fulcrum-l7-h1tls", "fulcrum-l7-h2up-h1tls", "fulcrum-l7-base-h1tls", "haproxy-http-h1tls", "nginx-h1tls"],
     {"haproxy-http-h1tls", "nginx-h1tls"}),
    ("L7: HTTP/2 over TLS (ALPN h2, termination at the proxy)", "h2load", "h2 over TLS",
     ["fulcrum-l7-h2tls", "fulcrum-l7-h2up-h2tls", "fulcrum-l7-base-h2tls", "haproxy-http-h2tls", "nginx-h2tls"],
     {"haproxy-http-h2tls", "nginx-h2tls"}),
]

COLOURS = {"fulcrum": "#4e79a7", "baseline": "#f28e2b", "ref": "#9c9c9c"}


def read_rows(path):
    """Every round's row of each key: {key: [row, ...]}."""
    rounds = {}
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 9:
                continue
            key, group, label, client, rps, p50, p99, errors, split = parts[:9]
            rounds.setdefault(key, []).append({
                "key": key, "group": group, "label": label, "client": client,
                "rps": float(rps or 0), "p50": int(p50 or 0), "p99": int(p99 or 0),
                "errors": int(errors or 0), "split": split,
                "cpu": parts[9] if len(parts) > 9 else "",
                "lbcpu": parts[10] if len(parts) > 10 else "-",
                "round": parts[11] if len(parts) > 11 else "1",
                "quiet": parts[12] == "1" if len(parts) > 12 else True,
            })
    return rounds


def median_rows(rounds):
    """Each key's median round by req/s (the lower middle of an even count), with the
    req/s of every round and the errors of all rounds added up."""
    rows = {}
    for key, rs in rounds.items():
        by_rps = sorted(rs, key=lambda r: r["rps"])
        pick = dict(by_rps[(len(by_rps) - 1) // 2])
        pick["all_rps"] = [r["rps"] for r in rs]
        pick["errors"] = sum(r["errors"] for r in rs)
        pick["busy_rounds"] = sum(1 for r in rs if not r["quiet"])
        rows[key] = pick
    return rows


def fmt_us(us):
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us} µs"


def lb_text(r):
    """'LB process CPU | req/s per LB core' cells."""
    try:
        pct = int(r["lbcpu"])
    except ValueError:
        return "— | —"
    per_core = f"{r['rps'] / (pct / 100):,.0f}" if pct > 0 else "—"
    return f"{pct}% | {per_core}"


def rounds_text(r):
    text = " · ".join(f"{v / 1000:.1f}k" for v in r["all_rps"])
    if r["busy_rounds"]:
        text += f" ({r['busy_rounds']} busy)"
    return text


def fmt_cpu(cpu):
    """'92/30 61/40' -> '92% (30%) · 61% (40%)'."""
    parts = []
    for core in cpu.split():
        busy, _, soft = core.partition("/")
        parts.append(f"{busy}% ({soft}%)")
    return " · ".join(parts) or "—"


def kind(key, baselines):
    if key == "direct":
        return "ref"
    return "baseline" if key in baselines else "fulcrum"


def table_md(title, client, keys, baselines, rows):
    present = [rows[k] for k in keys if k in rows]
    if not present:
        return []
    base = [r for r in present if r["key"] in baselines]
    best = max(base, key=lambda r: r["rps"]) if base else None
    out = [f"### {title} ({client})", ""]
    if best:
        out.append(f"Best baseline: **{best['label']}**. Ratios are to it (req/s: higher is "
                   "better; p99: lower is better).")
        out.append("")
    out.append("| system | req/s | p50 | p99 | req/s vs best baseline | p99 vs best baseline "
               "| req/s of each round | LB process CPU | req/s per LB core | requests per backend | errors "
               "| CPU busy (softirq) core 0 · core 1 |")
    out.append("|---|---:|---:|---:|---:|---:|---|---:|---:|---|---:|---|")
    for r in present:
        name = r["label"]
        if r["key"] in baselines:
            name += " *(baseline)*"
        elif r["key"] == "direct":
            name += " *(reference)*"
        else:
            name = f"**{name}**"
        if best and best["rps"] > 0 and best["p99"] > 0:
            ratio = f"{r['rps'] / best['rps']:.2f}×"
            p99r = f"{r['p99'] / best['p99']:.2f}×"
        else:
            ratio = p99r = "—"
        out.append(f"| {name} | {r['rps']:,.0f} | {fmt_us(r['p50'])} | {fmt_us(r['p99'])} | "
                   f"{ratio} | {p99r} | {rounds_text(r)} | {lb_text(r)} | {r['split'].replace('/', ' / ')} "
                   f"| {r['errors']} | "
                   f"{fmt_cpu(r['cpu'])} |")
    out.append("")
    return out


def svg_bars(path, title, note, entries, unit):
    """Horizontal bars: entries = [(label, [(value, colour, sublabel)])]."""
    width = 980
    left, right, top = 330, 90, 56
    bar_h, gap = 16, 12
    rows = sum(len(vals) for _, vals in entries)
    height = top + rows * bar_h + len(entries) * gap + 30
    vmax = max((v for _, vals in entries for v, _, _ in vals), default=1.0) or 1.0
    plot_w = width - left - right
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>',
           f'<text x="{width / 2}" y="40" text-anchor="middle" fill="#666" font-size="10">{escape(note)}</text>']
    y = top
    for label, vals in entries:
        for i, (v, colour, sub) in enumerate(vals):
            w = plot_w * v / vmax
            text = label if i == 0 else ""
            if text:
                out.append(f'<text x="{left - 8}" y="{y + bar_h - 4}" text-anchor="end">{escape(text)}</text>')
            out.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h - 2}" fill="{colour}"/>')
            out.append(f'<text x="{left + w + 4:.1f}" y="{y + bar_h - 4}" font-size="11">'
                       f'{escape(sub)} {v:,.0f} {escape(unit)}</text>')
            y += bar_h
        y += gap
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def l7_backend_core(a):
    return a.client_core if a.l7_backend_core is None else a.l7_backend_core


def placement(a):
    """Where the run put the load balancer, the client and the backends."""
    if l7_backend_core(a) == a.client_core:
        return (f"The load balancer runs on **core {a.lb_core}** (taskset); the client and the "
                f"backends on **core {a.client_core}**.")
    return (f"The load balancer runs on **core {a.lb_core}** (taskset), the client on **core "
            f"{a.client_core}**. The backends run on core {a.client_core} for the reference "
            f"and the L4 tables and **on core {a.lb_core}, beside the load balancer, for the L7 "
            f"tables** (`E2E_L7_BACKEND_CORE={l7_backend_core(a)}`): the client's core then "
            "has time to spare and the load balancer's core, where every proxy shares the CPU "
            "with the same three backends, limits each L7 figure, so req/s ranks the proxies "
            "by what a request costs each (the backends' share being the same for all). "
            "The L4 tables cannot be run that way (fulcrum's L4 worker polls its core); "
            "their client core is the limit and their column req/s per LB core compares "
            "the load balancers.")


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


READING_START = "## Reading"
READING_END = "## How each figure was made"


def splice_reading(report_md, reading_md):
    """report_md with its reading section (from READING_START up to READING_END) replaced
    by reading_md, as a new run would have written it; ValueError without one."""
    i = report_md.find(READING_START)
    j = report_md.find(READING_END)
    if i < 0 or j < i:
        raise ValueError(f"no '{READING_START}' section before '{READING_END}'")
    return report_md[:i] + reading_md.rstrip() + "\n\n" + report_md[j:]


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--splice-reading":
        # bench/e2e/reading.md edited after a run: put it into that run's report
        path = sys.argv[2]
        reading = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reading.md")
        try:
            with open(path) as f, open(reading) as r:
                text = splice_reading(f.read(), r.read())
        except (OSError, ValueError) as e:
            sys.exit(f"report.py --splice-reading: {path}: {e}")
        with open(path, "w") as f:
            f.write(text)
        return
    ap = argparse.ArgumentParser(
        epilog="report.py --splice-reading E2E_MD: replace the reading section of an "
               "existing report with bench/e2e/reading.md (the tables stay the run's)")
    ap.add_argument("--results", required=True)
    ap.add_argument("--counters")
    ap.add_argument("--out", required=True)
    ap.add_argument("--duration", type=int, required=True)
    ap.add_argument("--conns", type=int, required=True)
    ap.add_argument("--h2-conns", type=int, required=True)
    ap.add_argument("--h2-streams", type=int, required=True)
    ap.add_argument("--lb-core", type=int, required=True)
    ap.add_argument("--client-core", type=int, required=True)
    ap.add_argument("--l7-backend-core", type=int, default=None,
                    help="E2E_L7_BACKEND_CORE: the backends' core during the L7 figures "
                         "(default: the client's, as in the reference and L4 figures)")
    ap.add_argument("--elapsed", type=int, default=0)
    ap.add_argument("--quick", type=int, default=0)
    ap.add_argument("--root", required=True)
    ap.add_argument("--nft-ruleset")
    ap.add_argument("--load", default="")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--autogroup", default="")
    ap.add_argument("--lb-cpu", default="", help="E2E_LB_CPU: the load balancers' CPU cap (%%)")
    ap.add_argument("--backend-nopush", required=True, choices=("on", "off"),
                    help="E2E_BACKEND_NOPUSH: the nginx backends' tcp_nopush")
    ap.add_argument("--tls-sessions", help="KEY TAB protocol and cipher suite, one line a system")
    a = ap.parse_args()

    rounds = read_rows(a.results)
    rows = median_rows(rounds)
    busy = sum(r["busy_rounds"] for r in rows.values())
    figures = sum(len(rs) for rs in rounds.values())
    here = os.path.dirname(os.path.abspath(__file__))
    commit = sh(f"git -C {a.root} rev-parse --short HEAD")
    dirty = sh(f"git -C {a.root} status --porcelain -- src dpdk Cargo.toml")
    cpu = sh("lscpu | sed -n 's/^Model name: *//p'") or platform.processor()
    versions = {
        "kernel": platform.release(),
        "nginx": sh("nginx -v 2>&1 | sed 's/.*nginx\\///'"),
        "HAProxy": sh("haproxy -v | head -1 | awk '{print $3}'"),
        "wrk": sh("wrk -v 2>&1 | head -1 | awk '{print $2}'"),
        "h2load": sh("h2load --version | awk '{print $2}'"),
        "nft": sh("nft --version | awk '{print $2}'"),
    }

    md = ["# End-to-end benchmark: fulcrum, nftables, HAProxy, nginx", ""]
    md.append(f"Produced by `bench/e2e/run.sh{' --quick' if a.quick else ''}` on "
              f"{datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, "
              f"commit `{commit}`{' (with uncommitted changes under src/)' if dirty else ''}; "
              f"measured in {a.elapsed} s.")
    md.append("")
    md.append(f"Machine: {cpu}, {os.cpu_count()} cores (a VM shared with other work), Linux "
              f"{versions['kernel']}. " + ", ".join(f"{k} {v}" for k, v in versions.items()
                                                      if k != "kernel" and v) + ". "
              f"Load average (1, 5, 15 min) before → after the run: {a.load}.")
    md.append("")
    md.append("Topology (`tests/netns/topo.sh`, one Linux bridge): client `10.99.0.10`, load "
              "balancer namespace with veth `lb0` (`10.99.0.2`, VIP `10.99.0.100`), three nginx "
              "backends `10.99.0.11-13` each serving a 78-byte static file (one worker, "
              "keep-alive, no access log, `sendfile on`, "
              + ("`tcp_nopush on` as in Debian's nginx.conf: a response's head and file in "
                 "one segment" if a.backend_nopush == "on" else
                 "`tcp_nopush off` (`E2E_BACKEND_NOPUSH=off`): a response's head (writev) "
                 "and file (sendfile) in two segments")
              + "). Every system balances over the same three backends, "
              f"in the same run. {placement(a)} Every figure is "
              f"{a.duration} s of load; the run went {a.rounds} time(s) over all systems and each "
              "table shows a system's median round (its p50 and p99 are that round's), with "
              "every round's req/s beside it.")
    md.append("")
    if a.lb_cpu:
        md.append(f"**Every load balancer process was capped at {a.lb_cpu}% of one CPU** "
                  "(`E2E_LB_CPU`: a cgroup's CFS quota over 10 ms periods; the client and the "
                  "backends were not), so the load balancer, not the client core, limits each "
                  "figure and req/s compares what each serves on the same CPU budget. Latency "
                  "then includes the waits of a throttled process (up to the rest of a 10 ms "
                  "period). nftables runs in the kernel's softirq and is not capped; the "
                  "kernel's network work on the load balancer's core (softirq) is not charged "
                  "to the cap for any system.")
        md.append("")
    if a.autogroup:
        md.append(f"Every process of the run (client, backends, load balancer) ran at the same niceness "
                  f"in a session of its own whose scheduler autogroup had niceness "
                  f"`{a.autogroup.split()[-1]}` (`{a.autogroup}`), so that other sessions' work "
                  "on the VM took little of the cores while figures were taken.")
        md.append("")
    md.append(f"Before starting each system the run waited (within a budget) for both cores to "
              f"be at least 80% idle; {busy} of {figures} figures were still taken while other "
              "work kept a core busy (marked \"busy\"): this VM is shared with other builds "
              "and benchmarks, so the spread between rounds is the noise to read the ratios "
              "against.")
    md.append("")
    for title, client, _, keys, baselines in TABLES:
        md += table_md(title, client, keys, baselines, rows)
    md.append("Plots: [req/s](e2e-rps.svg), [latency p50/p99](e2e-latency.svg).")
    md.append("")

    if a.counters and os.path.exists(a.counters):
        lines = [l.strip() for l in open(a.counters) if l.strip()]
        if lines:
            md.append("fulcrum L4's final counters per round (ports' ethdev counters and the "
                      "worker's):")
            md.append("")
            md.append("```")
            md += lines
            md.append("```")
            md.append("")

    reading = os.path.join(here, "reading.md")
    if os.path.exists(reading) and not a.quick:
        md.append(open(reading).read().rstrip())
        md.append("")

    md.append("## How each figure was made")
    md.append("")
    md.append(f"- Load: `wrk -t1 -c{a.conns} -d{a.duration}s --timeout 2s -s bench/e2e/report.lua "
              "http://10.99.0.100/index.html` (HTTP/1.1 keep-alive; latency percentiles from "
              f"wrk's histogram) and `h2load -t1 -c{a.h2_conns} -m{a.h2_streams} -D{a.duration} "
              "--log-file=… http://10.99.0.100:81/index.html` (h2c prior knowledge, "
              f"{a.h2_conns * a.h2_streams} streams in flight, percentiles computed from the "
              "per-request log), both as `taskset -c "
              f"{a.client_core} ip netns exec flb-cl …`. The TLS tables run the same two "
              "clients against `https://10.99.0.100:443/index.html`: wrk over HTTP/1.1 (it "
              "offers no ALPN), h2load over h2 by ALPN; each connection's handshake happens "
              "once, at the start, so the figures measure TLS records on keep-alive "
              "connections, not handshakes.")
    md.append("- TLS: every proxy serves the same self-signed ECDSA P-256 certificate the run "
              "makes with `openssl req`; the proxy terminates TLS and speaks cleartext HTTP/1.1 "
              "to the backends. fulcrum's pool uses rustls (aws-lc-rs provider); HAProxy and nginx "
              "use Debian's OpenSSL " + (sh("openssl version | awk '{print $2}'") or "3") + ".")
    if a.tls_sessions and os.path.exists(a.tls_sessions):
        got = [l.rstrip("\n").split("\t") for l in open(a.tls_sessions) if "\t" in l]
        if got:
            md.append("  What each listener picked for an OpenSSL client (`openssl s_client "
                      "-brief`): " + "; ".join(f"{k}: {v or 'no answer'}" for k, v in got) + ".")
    md.append("- Requests per backend: the difference of each backend nginx's `stub_status` "
              "request count before and after the run.")
    md.append("- LB process CPU: the load balancer process's user + system time over the run "
              "(`/proc/PID/stat`, all threads; nginx: its one worker) as a share of one core, and "
              "req/s divided by it. The kernel's softirq work for the LB's sockets is counted "
              "only when it ran in the LB's own context; nftables has no process (it runs in the "
              "softirq of whichever core sent the packet).")
    md.append("- CPU: each core's busy share (user + system + irq + softirq + steal) and its "
              "softirq share over the run, from `/proc/stat`; it includes whatever else ran on "
              "the VM at the time.")
    md.append("- Reference: the client straight to one backend, no load balancer.")
    md.append(f"- fulcrum L4: `taskset -c {a.lb_core} ip netns exec flb-lb fulcrum run -c fulcrum.yaml` "
              "with `--vdev=net_af_packet0,iface=lb0`, `workers.cores: "
              f"[{a.lb_core}]`, `--no-huge -m 512`, one service on the VIP with the three "
              "backends, `forwarding: nat` (SNAT to 10.99.0.2) or `dsr` (backends hold the VIP on "
              "`lo`); `workers.idle` adaptive (default) or `poll`. lb0 has no kernel address "
              "while fulcrum drives it.")
    md.append("- nftables: lb0 holds 10.99.0.2/24 and the VIP /32, `net.ipv4.ip_forward=1`, "
              "and kube-proxy's nftables shape:")
    md.append("")
    md.append("  ```")
    if a.nft_ruleset and os.path.exists(a.nft_ruleset):
        md += ["  " + l.rstrip() for l in open(a.nft_ruleset) if l.strip()]
    md.append("  ```")
    md.append("")
    md.append(f"- HAProxy: `taskset -c {a.lb_core} haproxy -db -f …`, `nbthread 1`, `listen` on "
              "VIP:80, `balance roundrobin` over the three backends; TCP mode for L4, HTTP mode "
              "(`option http-keep-alive`, `option forwardfor`, `http-reuse safe`, h2c on "
              "`bind VIP:81 proto h2`, TLS on `bind VIP:443 ssl crt … alpn h2,http/1.1`) for "
              "L7, adding the headers fulcrum adds: X-Request-Id "
              "(`unique-id-format %[uuid]`), X-Forwarded-Proto and a random `traceparent`.")
    md.append(f"- nginx reverse proxy: `worker_processes 1` under `taskset -c {a.lb_core}`, an "
              "upstream with `keepalive 128`, `proxy_http_version 1.1`, `listen VIP:81 http2` "
              "for h2c, `listen VIP:443 ssl http2` with `ssl_protocols TLSv1.2 TLSv1.3` for TLS "
              "(1.22's default leaves TLS 1.3 out), adding the headers fulcrum adds: X-Forwarded-For, X-Forwarded-Proto, "
              "X-Request-Id (`$request_id`) and `traceparent` (`00-$request_id-<its first 16 "
              "hex>-01`).")
    md.append(f"- fulcrum L7: `taskset -c {a.lb_core} fulcrum-l7-standalone l7.yaml` "
              "(bench/e2e/l7-standalone: `fulcrum::l7::run_standalone`), "
              f"`l7.cores: [{a.lb_core}]` (one pinned tokio worker), services on VIP:80, "
              "VIP:81 and VIP:443 (`tls: certificates: [...]`), one route to a `round_robin` HTTP/1.1 cluster of the three backends. "
              "fulcrum also adds X-Forwarded-For, X-Forwarded-Proto, X-Request-Id and "
              "`traceparent` to every request.")
    md.append("")
    md.append("Rerun: `sudo bench/e2e/run.sh` (about 11 minutes for its 3 rounds, plus the build and any wait "
              "for a quiet machine), or "
              "`--quick` (3 s per figure, results in `${TMPDIR:-/tmp}/fulcrum-e2e-quick/`).")
    md.append("")

    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "e2e.md"), "w") as f:
        f.write("\n".join(md))

    rps_entries, lat_entries = [], []
    for _, _, proto, keys, baselines in TABLES:
        for k in keys:
            if k not in rows:
                continue
            r = rows[k]
            colour = COLOURS[kind(k, baselines)]
            label = f"{r['label']} [{proto}]"
            rps_entries.append((label, [(r["rps"], colour, "")]))
            lat_entries.append((label, [(r["p50"], colour, "p50"), (r["p99"], "#e15759", "p99")]))
    if l7_backend_core(a) == a.client_core:
        where = f"LB on core {a.lb_core}, client+backends on core {a.client_core}"
    else:
        where = (f"LB on core {a.lb_core}, client on core {a.client_core}, backends on core "
                 f"{a.client_core} (L4), {a.lb_core} (L7)")
    note = f"{a.duration} s per figure, {where}; blue: fulcrum, orange: baselines, grey: no LB"
    svg_bars(os.path.join(a.out, "e2e-rps.svg"), "End to end: requests per second", note,
             rps_entries, "req/s")
    svg_bars(os.path.join(a.out, "e2e-latency.svg"), "End to end: latency p50 / p99", note,
             lat_entries, "µs")


if __name__ == "__main__":
    main()
