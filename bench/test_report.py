#!/usr/bin/env python3
"""Tests of bench/report.py: the summary, the ratios and the --check rule, on made-up runs.

    python3 bench/test_report.py [-q]
"""

import contextlib
import io
import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402


def ok(scenario, system, core_pps, wall_pps=None, share=0.5):
    wall = core_pps * share if wall_pps is None else wall_pps
    return {"scenario": scenario, "system": system, "status": "ok",
            "stats": {"seconds": 3.0, "ipackets": int(wall * 3), "opackets": int(wall * 3),
                      "rx_pps": wall, "tx_pps": wall, "rx_pps_cpu": core_pps, "tx_pps_cpu": core_pps,
                      "cpu_share": share}}


def write_work(d, runs, scenarios=("s1",)):
    with open(os.path.join(d, "results.jsonl"), "w") as f:
        for s in scenarios:
            f.write(json.dumps({"scenario_def": s, "gen_args": "--flows 1", "description": s}) + "\n")
        for r in runs:
            f.write(json.dumps(r) + "\n")
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump({"mode": "quick", "cpu_model": "test", "git_commit": "abc"}, f)


class ReportTest(unittest.TestCase):
    def run_report(self, runs, check=True):
        with tempfile.TemporaryDirectory() as d:
            write_work(d, runs)
            with contextlib.redirect_stderr(io.StringIO()):
                rc = report.main(["report", "--work", d, "--out", d] + (["--check"] if check else []))
            with open(os.path.join(d, "RESULTS.md")) as f:
                md = f.read()
            with open(os.path.join(d, "results.json")) as f:
                js = json.load(f)
            for svg in ("mpps.svg", "ns_per_packet.svg"):
                with open(os.path.join(d, svg)) as f:
                    self.assertTrue(f.read().startswith("<svg"))
            return rc, md, js

    def test_ratios_and_median(self):
        runs = [ok("s1", "testpmd-io", 40e6), ok("s1", "testpmd-io", 20e6), ok("s1", "testpmd-io", 30e6),
                ok("s1", "testpmd-macswap", 24e6),
                ok("s1", "fulcrum-ipip", 12e6)]
        rc, md, js = self.run_report(runs)
        self.assertEqual(rc, 0)
        figs = {f["system"]: f for f in js["figures"]}
        self.assertAlmostEqual(figs["testpmd-io"]["core_mpps"], 30.0)
        self.assertAlmostEqual(figs["testpmd-macswap"]["ratio_to_testpmd_io"], 0.8)
        self.assertAlmostEqual(figs["fulcrum-ipip"]["ratio_to_testpmd_io"], 0.4)
        self.assertAlmostEqual(figs["fulcrum-ipip"]["ratio_to_testpmd_macswap"], 0.5)
        self.assertAlmostEqual(figs["fulcrum-ipip"]["ns_per_packet"], 1000 / 12)
        self.assertIn("| s1 | fulcrum-ipip | 12.00 | 83.3 | 0.400 | 0.500 | 50.0 |", md)
        self.assertAlmostEqual(figs["fulcrum-ipip"]["extra_ns_vs_testpmd_io"], 1000 / 12 - 1000 / 30)

    def test_not_ready_fulcrum_passes_check(self):
        runs = [ok("s1", "testpmd-io", 30e6), ok("s1", "testpmd-macswap", 25e6),
                {"scenario": "s1", "system": "fulcrum-nat", "status": report.NOT_READY}]
        rc, md, _ = self.run_report(runs)
        self.assertEqual(rc, 0)
        self.assertIn(report.NOT_READY, md)

    def test_check_fails_on_zero_missing_or_failed(self):
        self.assertEqual(self.run_report([ok("s1", "testpmd-io", 30e6), ok("s1", "testpmd-macswap", 0.0, 0.0)])[0], 1)
        self.assertEqual(self.run_report([ok("s1", "testpmd-io", 30e6)])[0], 1)
        self.assertEqual(self.run_report([ok("s1", "testpmd-io", 30e6), ok("s1", "testpmd-macswap", 25e6),
                                          {"scenario": "s1", "system": "fulcrum-dsr", "status": "failed: see x.log"}])[0], 1)
        self.assertEqual(self.run_report([ok("s1", "testpmd-io", 30e6), ok("s1", "testpmd-macswap", 25e6),
                                          ok("s1", "fulcrum-dsr", 0.0, 0.0)])[0], 1)

    def test_forwarding_rule(self):
        c = {"engine_rx_packets": 1000, "engine_forwarded": 1000, "port_opackets": 1000, "drops": 0, "drop_counters": {}}
        self.assertEqual(report.forwarding_row("est-10k-64", "fulcrum-ipip", c)["verdict"], "ok")
        short = dict(c, engine_forwarded=990, port_opackets=990)
        self.assertNotEqual(report.forwarding_row("est-10k-64", "fulcrum-ipip", short)["verdict"], "ok")
        lost_on_tx = dict(c, port_opackets=999)
        self.assertNotEqual(report.forwarding_row("est-10k-64", "fulcrum-ipip", lost_on_tx)["verdict"], "ok")
        mal = dict(c, engine_forwarded=900, port_opackets=900, drops=100, drop_counters={"drop_runt": 100})
        self.assertEqual(report.forwarding_row("malformed10-64", "fulcrum-ipip", mal)["verdict"], "ok")
        self.assertNotEqual(report.forwarding_row("malformed10-64", "fulcrum-ipip", c)["verdict"], "ok")
        self.assertNotEqual(report.forwarding_row("est-10k-64", "fulcrum-ipip", {})["verdict"], "ok")

    def test_check_fails_when_fulcrum_counters_disagree(self):
        good = {"engine_rx_packets": 10, "engine_forwarded": 10, "port_opackets": 10, "drops": 0, "drop_counters": {}}
        base = [ok("s1", "testpmd-io", 30e6), ok("s1", "testpmd-macswap", 25e6)]
        self.assertEqual(self.run_report(base + [dict(ok("s1", "fulcrum-ipip", 5e6), fulcrum=good)])[0], 0)
        bad = dict(good, engine_forwarded=5, port_opackets=5)
        self.assertEqual(self.run_report(base + [dict(ok("s1", "fulcrum-ipip", 5e6), fulcrum=bad)])[0], 1)

    def test_memif_check(self):
        gen = {"max_loss": 0.001, "lossless_pps": 1e6, "search": [],
               "latency": [{"fraction": 0.5, "p50_ns": 1000, "p99_ns": 5000, "p999_ns": 9000, "samples": 10,
                            "trial": {"loss": 0.0}}],
               "totals": {"received": 1000}}
        base = [ok("s1", "testpmd-io", 30e6), ok("s1", "testpmd-macswap", 25e6)]
        fl = {"engine_rx_packets": 1000, "engine_forwarded": 1000, "worker_tx_packets": 1000}
        good = {"scenario": "memif", "system": "fulcrum-ipip", "status": "ok", "gen": gen, "fulcrum": fl}
        self.assertEqual(self.run_report(base + [good])[0], 0)
        lost = dict(good, fulcrum=dict(fl, engine_forwarded=500))
        self.assertEqual(self.run_report(base + [lost])[0], 1)
        empty = dict(good, gen=dict(gen, latency=[dict(gen["latency"][0], samples=0)]))
        self.assertEqual(self.run_report(base + [empty])[0], 1)

    def test_memif_latency_target_needs_an_undisturbed_window(self):
        def memif(system, p99_us, loss):
            gen = {"max_loss": 0.001, "lossless_pps": 1e6, "search": [],
                   "latency": [{"fraction": 0.5, "p50_ns": 1000, "p99_ns": p99_us * 1000, "p999_ns": 9e6,
                                "samples": 10, "trial": {"loss": loss}}],
                   "totals": {"received": 1000}}
            return {"scenario": "memif", "system": system, "status": "ok", "gen": gen}
        base = [ok("s1", "testpmd-io", 30e6), ok("s1", "testpmd-macswap", 25e6)]
        row = lambda md: next(l for l in md.splitlines() if l.startswith("| added p99 latency"))
        _, md, _ = self.run_report(base + [memif("testpmd-io", 30, 0.0), memif("fulcrum-ipip", 40, 0.0)], check=False)
        self.assertIn("10.0 us", row(md))
        self.assertTrue(row(md).endswith("| yes |"), row(md))
        _, md, _ = self.run_report(base + [memif("testpmd-io", 30, 0.0), memif("fulcrum-ipip", 55, 0.0)], check=False)
        self.assertTrue(row(md).endswith("| **no** |"), row(md))
        # a baseline window that lost more than the search's lossless share is not judged
        _, md, _ = self.run_report(base + [memif("testpmd-io", 30, 0.0026), memif("fulcrum-ipip", 40, 0.0)], check=False)
        self.assertIn("not judged: disturbed window (testpmd-io lost 0.260% at 50%)", row(md))

    def test_memif_latency_target_is_judged_on_steady_windows(self):
        def memif(system, p99_us, steady_p99_us, loss, steady_loss):
            steady = {"windows": 40, "of": 50, "p50_ns": 1000, "p99_ns": steady_p99_us * 1000, "p999_ns": 9e5,
                      "samples": 8}
            gen = {"max_loss": 0.001, "lossless_pps": 1e6, "search": [], "window_ms": 100, "steady_share": 0.8,
                   "latency": [{"fraction": 0.5, "p50_ns": 1000, "p99_ns": p99_us * 1000, "p999_ns": 9e6,
                                "samples": 10, "steady": steady,
                                "trial": {"loss": loss, "steady_loss": steady_loss}}],
                   "totals": {"received": 1000}}
            return {"scenario": "memif", "system": system, "status": "ok", "gen": gen}
        stall = {"scenario": "stall", "system": "cpu1", "status": "ok",
                 "probe": {"secs": 5, "gaps_over_1us": 900, "over_10us": 300, "over_20us": 200, "over_100us": 12,
                           "over_1ms": 2, "over_5ms": 0, "lost_share": 0.0123, "lost_share_over_20us": 0.0101,
                           "max_ns": 2500000}}
        base = [ok("s1", "testpmd-io", 30e6), ok("s1", "testpmd-macswap", 25e6), stall]
        row = lambda md: next(l for l in md.splitlines() if l.startswith("| added p99 latency"))
        # stalls spoil the whole trial (raw +300 us) but the steady windows add 12 us: judged yes
        _, md, _ = self.run_report(base + [memif("testpmd-io", 500, 30, 0.004, 0.0),
                                           memif("fulcrum-ipip", 800, 42, 0.005, 0.0005)], check=False)
        self.assertIn("12.0 us (42.0 - 30.0; all windows 300.0 us)", row(md))
        self.assertTrue(row(md).endswith("| yes |"), row(md))
        self.assertIn("| cpu1 | 5 | 300 | 200 | 12 | 2 | 0 | 1.23% | 1.01% | 2500 us |", md)
        self.assertIn("| 800.0 / 42.0 |", md)
        self.assertIn("here they lost 1.01% of their time in gaps over 20 us", md)
        # steady windows that still lost too much: not judged
        _, md, _ = self.run_report(base + [memif("testpmd-io", 500, 30, 0.004, 0.0),
                                           memif("fulcrum-ipip", 800, 42, 0.005, 0.002)], check=False)
        self.assertIn("not judged: disturbed window (fulcrum-ipip lost 0.200% at 50%)", row(md))
        # steady windows 25 us apart: no
        _, md, _ = self.run_report(base + [memif("testpmd-io", 500, 30, 0.0, 0.0),
                                           memif("fulcrum-ipip", 40, 55, 0.0, 0.0)], check=False)
        self.assertTrue(row(md).endswith("| **no** |"), row(md))

    def test_memif_latency_target_is_the_median_of_rounds(self):
        def memif(system, rd, steady_p99_us, steady_loss=0.0):
            steady = {"windows": 40, "of": 50, "p50_ns": 1000, "p99_ns": steady_p99_us * 1000, "p999_ns": 9e5,
                      "samples": 8}
            gen = {"max_loss": 0.001, "lossless_pps": 1e6, "search": [], "window_ms": 100, "steady_share": 0.8,
                   "latency": [{"fraction": 0.5, "p50_ns": 1000, "p99_ns": 900e3, "p999_ns": 9e6,
                                "samples": 10, "steady": steady,
                                "trial": {"loss": 0.0, "steady_loss": steady_loss}}],
                   "totals": {"received": 1000}}
            return {"scenario": "memif", "system": system, "round": rd, "status": "ok", "gen": gen}
        base = [ok("s1", "testpmd-io", 30e6), ok("s1", "testpmd-macswap", 25e6)]
        row = lambda md: next(l for l in md.splitlines() if l.startswith("| added p99 latency"))
        # each round against its own baseline: +5, +60, +8 -> median 8: yes (one bad round does not decide)
        rounds = [memif("testpmd-io", 1, 10), memif("fulcrum-ipip", 1, 15),
                  memif("testpmd-io", 2, 10), memif("fulcrum-ipip", 2, 70),
                  memif("testpmd-io", 3, 40), memif("fulcrum-ipip", 3, 48)]
        _, md, _ = self.run_report(base + rounds, check=False)
        self.assertIn("8.0 us, median of 3 judged round(s) of 3", row(md))
        self.assertIn("round 2: 60.0 us", row(md))
        self.assertTrue(row(md).endswith("| yes |"), row(md))
        self.assertIn("| fulcrum-ipip (round 3) |", md)
        # a disturbed round is left out of the median: +60 and +30 judged -> 45: no
        rounds[1] = memif("fulcrum-ipip", 1, 15, steady_loss=0.01)
        rounds[5] = memif("fulcrum-ipip", 3, 70)
        _, md, _ = self.run_report(base + rounds, check=False)
        self.assertIn("45.0 us, median of 2 judged round(s) of 3", row(md))
        self.assertIn("round 1: 5.0 us (15.0 - 10.0; all windows 0.0 us), not judged: fulcrum-ipip lost 1.000%", row(md))
        self.assertTrue(row(md).endswith("| **no** |"), row(md))

    def test_nice_max(self):
        import plot
        self.assertEqual(plot.nice_max(37), 50)
        self.assertEqual(plot.nice_max(7.2), 10)
        self.assertEqual(plot.nice_max(0.3), 0.5)


if __name__ == "__main__":
    quiet = "-q" in sys.argv
    unittest.main(argv=[a for a in sys.argv if a != "-q"], verbosity=0 if quiet else 2)
