#!/usr/bin/env python3
"""Tests of bench/e2e/report.py: --splice-reading (a reading edited after a run replaces
the report's reading section, the tables stay as the run wrote them) and the placement
the report states for the backends.

    python3 bench/test_e2e_report.py [-q]
"""

import importlib.util
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "e2e", "report.py")
# loaded under its own name: bench/report.py is `report` for the per-core tests
_spec = importlib.util.spec_from_file_location("e2e_report", SCRIPT)
e2e_report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(e2e_report)

REPORT = """# End-to-end benchmark

| system | req/s |
|---|---:|
| fulcrum | 30,116 |

## Reading

- The old reading.

## How each figure was made

- Load: wrk.
"""


class SpliceReading(unittest.TestCase):
    def test_replaces_only_the_reading(self):
        out = e2e_report.splice_reading(REPORT, "## Reading\n\n- The new reading.\n\n\n")
        self.assertIn("- The new reading.\n\n## How each figure was made", out)
        self.assertNotIn("old reading", out)
        self.assertTrue(out.startswith(REPORT[:REPORT.index("## Reading")]))
        self.assertTrue(out.endswith("## How each figure was made\n\n- Load: wrk.\n"))
        # splicing twice is splicing once
        self.assertEqual(e2e_report.splice_reading(out, "## Reading\n\n- The new reading.\n"), out)

    def test_a_report_without_a_reading_is_refused(self):
        quick = REPORT.replace("## Reading\n\n- The old reading.\n\n", "")
        with self.assertRaises(ValueError):
            e2e_report.splice_reading(quick, "## Reading\n")

    def test_the_command_rewrites_the_file_with_the_repository_reading(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "e2e.md")
            with open(path, "w") as f:
                f.write(REPORT)
            subprocess.run([sys.executable, SCRIPT, "--splice-reading", path], check=True)
            with open(path) as f:
                out = f.read()
            with open(os.path.join(HERE, "e2e", "reading.md")) as f:
                reading = f.read().rstrip()
            self.assertIn(reading + "\n\n## How each figure was made", out)
            self.assertTrue(out.startswith("# End-to-end benchmark\n\n| system | req/s |"))
            # a report with no reading section: an error, the file untouched
            with open(path, "w") as f:
                f.write("# quick\n")
            r = subprocess.run([sys.executable, SCRIPT, "--splice-reading", path],
                               capture_output=True, text=True)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("no '## Reading' section", r.stderr)
            with open(path) as f:
                self.assertEqual(f.read(), "# quick\n")


class Placement(unittest.TestCase):
    def args(self, l7_backend_core):
        import argparse
        return argparse.Namespace(lb_core=1, client_core=0, l7_backend_core=l7_backend_core)

    def test_backends_beside_the_load_balancer_for_the_l7_tables(self):
        text = e2e_report.placement(self.args(1))
        self.assertIn("on core 1, beside the load balancer, for the L7 tables", text)
        self.assertIn("`E2E_L7_BACKEND_CORE=1`", text)
        self.assertIn("core 0 for the reference and the L4 tables", text)

    def test_backends_beside_the_client_throughout(self):
        for core in (0, None):  # None: a report of a run from before the option
            text = e2e_report.placement(self.args(core))
            self.assertIn("the client and the backends on **core 0**", text)
            self.assertNotIn("L7 tables", text)


if __name__ == "__main__":
    unittest.main()
