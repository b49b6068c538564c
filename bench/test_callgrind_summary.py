"""Tests of callgrind_summary.py on a small dump in callgrind's format."""

import io
import unittest

from callgrind_summary import summarize

# A dump as `callgrind_control -d` writes it mid-run: compressed names defined on first
# use and referred to by id after, calls whose next cost line is their inclusive cost.
DUMP = """# callgrind format
version: 1
positions: line
events: Ir
summary: 10000

ob=(1) /usr/lib/x86_64-linux-gnu/dpdk/pmds-23.0/librte_net_pcap.so.23.0
fl=(1) ???
fn=(1) 0x0000000000003f70
0 1000
cob=(2) /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
cfi=(2) tls_get_addr.S
cfn=(2) __tls_get_addr
calls=10 0
0 50
0 100

fn=(3) 0x0000000000006330
0 700

ob=(2)
fl=(2)
fn=(2)
0 50

ob=(3) /work/main/target/release/fulcrum
fl=(3) src/runtime/worker.rs
fn=(4) fulcrum::runtime::worker::Worker::run
0 5000
cob=(1)
cfi=(1)
cfn=(1)
calls=4 0
0 1150
cfn=(3)
calls=4 0
0 700
cfn=(5) fulcrum::runtime::worker::Worker::publish
calls=2 0
0 300
+2 100

fn=(5)
0 300
"""


class SummaryTest(unittest.TestCase):
    def test_reads_totals_pmd_share_receive_calls_and_exclusions(self):
        s = summarize(io.StringIO(DUMP), r"librte_net_pcap", r"Worker::publish")
        self.assertEqual(s["total"], 10000)
        # PMD self: 1000 + 100 (rx, its own lines) + 700 (tx), plus __tls_get_addr's 50
        self.assertEqual(s["pmd_self"], 1850)
        # the PMD function with the most self cost is the receive burst, called 4 times
        # from the worker (a name given once, then by id alone)
        self.assertEqual(s["rx_function"], "0x0000000000003f70")
        self.assertEqual(s["rx_calls"], 4)
        # publish's inclusive cost, as its caller's call line says
        self.assertEqual(s["excluded"], 300)

    def test_an_empty_dump_counts_nothing(self):
        s = summarize(io.StringIO("events: Ir\nsummary: 0\n"), r"librte_net_pcap", "")
        self.assertEqual((s["total"], s["pmd_self"], s["rx_function"], s["rx_calls"]), (0, 0, None, 0))


if __name__ == "__main__":
    unittest.main()
