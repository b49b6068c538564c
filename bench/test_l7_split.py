"""Tests of tools/l7_split.py on samples in `perf script`'s text format."""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "tools"))

from l7_split import split  # noqa: E402

# Four samples as `perf script` prints a dwarf call graph: a header line, frames leaf
# first (address, symbol+offset, object), a blank line between samples.
SCRIPT = """fulcrum-l7-0 16949 44324.100863:     333444 cpu-clock:
\t          36377b fulcrum::l7::proxy::handle::{{closure}}+0x50b (/x/fulcrum-l7-standalone)
\t          3830a0 hyper::proto::h2::server::H2Stream<F,B,Ex>::poll2+0x60 (inlined)

fulcrum-l7-0 16949 44324.100900:     333444 cpu-clock:
\tffffffff81a0 _raw_spin_unlock_irqrestore+0x1d ([kernel.kallsyms])
\tffffffff81b0 tcp_recvmsg+0x60 ([kernel.kallsyms])
\tffffffff81c0 __sys_recvfrom+0x90 ([kernel.kallsyms])
\t          5000 __libc_recv+0x10 (/usr/lib/x86_64-linux-gnu/libc.so.6)
\t          6000 fulcrum::l7::upstream::H1Conn::poll_fill+0x20 (/x/fulcrum-l7-standalone)

fulcrum-l7-0 16949 44324.100950:     333444 cpu-clock:
\t          7000 h2::frame::headers::HeaderBlock::into_encoding+0x10 (/x/fulcrum-l7-standalone)
\t          7100 h2::proto::streams::streams::Streams<B,P>::poll_complete+0x10 (/x/fulcrum-l7-standalone)

fulcrum-l7-0 16949 44324.101000:     333444 cpu-clock:
\t          8000 __memmove_avx512_unaligned_erms+0x10 (/usr/lib/x86_64-linux-gnu/libc.so.6)
"""


class SplitTest(unittest.TestCase):
    def test_each_sample_lands_in_one_kind(self):
        counts = split(SCRIPT.splitlines())
        self.assertEqual(sum(counts.values()), 4)
        self.assertEqual(counts["user: request handler"], 1)
        self.assertEqual(counts["kernel: recvfrom"], 1)
        self.assertEqual(counts["user: HTTP/2 crate"], 1)
        self.assertEqual(counts["user: other"], 1)

    def test_the_upstream_exchange_wins_over_the_handler_that_called_it(self):
        lines = [
            "t 1 1.0: 1 cpu-clock:",
            "\t 10 fulcrum::l7::upstream::H1Conn::exchange+0x1 (/x/bin)",
            "\t 20 fulcrum::l7::proxy::forward::{{closure}}+0x1 (/x/bin)",
            "",
        ]
        self.assertEqual(split(lines), {"user: upstream exchange": 1})

    def test_kernel_time_outside_a_system_call(self):
        lines = [
            "t 1 1.0: 1 cpu-clock:",
            "\tffff10 net_rx_action+0x1 ([kernel.kallsyms])",
            "\tffff20 irq_exit_rcu+0x1 ([kernel.kallsyms])",
        ]
        self.assertEqual(split(lines), {"kernel: no system call": 1})


if __name__ == "__main__":
    unittest.main()
