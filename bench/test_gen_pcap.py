#!/usr/bin/env python3
"""Tests of bench/gen_pcap.py: parse what it writes, independently of the writer.

    python3 bench/test_gen_pcap.py [-q]
"""

import io
import os
import struct
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_pcap  # noqa: E402


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s  # 0xFFFF when the embedded checksum is right


def generate(*argv):
    """Runs the generator in memory: (pcap bytes, counts)."""
    args = gen_pcap.parse_args([*argv, "-o", "-", "-q"])
    buf = io.BytesIO()
    counts = gen_pcap.generate(args, buf)
    return buf.getvalue(), counts


def records(data):
    magic, vmaj, vmin, _, _, snap, link = struct.unpack("<IHHiIII", data[:24])
    assert (magic, vmaj, vmin, link) == (0xA1B2C3D4, 2, 4, 1)
    off = 24
    while off < len(data):
        _, _, incl, orig = struct.unpack("<IIII", data[off:off + 16])
        assert incl == orig
        yield data[off + 16:off + 16 + incl]
        off += 16 + incl


def well_formed(frame):
    """(src, sport, flags, payload_len) of a well-formed frame, or None; asserts its checksums."""
    if len(frame) < 54 or frame[12:14] != b"\x08\x00" or frame[14] != 0x45:
        return None
    total = struct.unpack("!H", frame[16:18])[0]
    if total + 14 > len(frame) or total < 40:
        return None
    ip = frame[14:34]
    assert csum(ip) == 0xFFFF, "IPv4 checksum"
    tcp = frame[34:14 + total]
    if (tcp[12] >> 4) * 4 < 20:
        return None
    src, dst = ip[12:16], ip[16:20]
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    assert csum(pseudo + tcp) == 0xFFFF, "TCP checksum"
    sport, dport = struct.unpack("!HH", tcp[:4])
    return struct.unpack("!I", src)[0], sport, dport, dst, tcp[13], len(tcp) - 20


class GenPcapTest(unittest.TestCase):
    def test_established_64(self):
        data, counts = generate("--flows", "1000", "--packets", "3000", "--size", "64")
        frames = list(records(data))
        self.assertEqual(len(frames), 3000)
        self.assertEqual(counts["data"], 3000)
        tuples = set()
        for f in frames:
            self.assertEqual(len(f), 60)
            self.assertEqual(f[:6], bytes.fromhex("027063617000"))
            src, sport, dport, dst, flags, plen = well_formed(f)
            self.assertEqual((dport, dst), (80, bytes([10, 99, 0, 100])))
            self.assertEqual(src >> 16, (10 << 8) | 1)  # 10.1.0.0/16
            self.assertEqual(flags, 0x18)
            self.assertEqual(plen, 6)
            tuples.add((src, sport))
        self.assertEqual(len(tuples), 1000)

    def test_512_and_syn_first(self):
        data, counts = generate("--flows", "50", "--packets", "200", "--size", "512", "--syn-first",
                                "--dst-mac", "02:00:00:00:00:aa")
        frames = list(records(data))
        self.assertEqual((counts["syn"], counts["data"]), (50, 150))
        for f in frames[:50]:
            self.assertEqual(len(f), 60)
            self.assertEqual(well_formed(f)[4], 0x02)
        for f in frames[50:]:
            self.assertEqual(len(f), 508)
            self.assertEqual(f[:6], bytes.fromhex("0200000000aa"))
            self.assertEqual(well_formed(f)[5], 508 - 54)

    def test_ipv6_established(self):
        for size in (78, 512):
            data, counts = generate("--ipv6", "--flows", "500", "--packets", "1500", "--size", str(size))
            frames = list(records(data))
            self.assertEqual((len(frames), counts["data"]), (1500, 1500))
            tuples, seqs = set(), {}
            for f in frames:
                self.assertEqual(len(f), size - 4)
                self.assertEqual(f[12:14], b"\x86\xdd")
                self.assertEqual(f[14] >> 4, 6)
                plen = struct.unpack("!H", f[18:20])[0]
                self.assertEqual(plen, len(f) - 54)
                self.assertEqual(f[20], 6)  # next header TCP
                src, dst = f[22:38], f[38:54]
                self.assertEqual(dst, bytes.fromhex("fd990000000000000000000000000100"))
                self.assertEqual(src[:8], bytes.fromhex("fd01000000000000"))
                tcp = f[54:]
                pseudo = src + dst + struct.pack("!IxxxB", len(tcp), 6)
                self.assertEqual(csum(pseudo + tcp), 0xFFFF, "TCP checksum")
                sport, dport, seq = struct.unpack("!HHI", tcp[:8])
                self.assertEqual((dport, tcp[13]), (80, 0x18))
                # a flow's next packet carries the next sequence number
                key = (src, sport)
                if key in seqs:
                    self.assertEqual(seq, (seqs[key] + len(tcp) - 20) & 0xFFFFFFFF)
                seqs[key] = seq
                tuples.add(key)
            self.assertEqual(len(tuples), 500)
        with self.assertRaises(SystemExit):
            generate("--ipv6", "--size", "64")
        with self.assertRaises(SystemExit):
            generate("--ipv6", "--size", "78", "--syn-flood")

    def test_syn_flood_distinct(self):
        data, _ = generate("--syn-flood", "--packets", "70000")
        seen = set()
        for f in records(data):
            src, sport, _, _, flags, _ = well_formed(f)
            self.assertEqual(flags, 0x02)
            seen.add((src, sport))
        self.assertEqual(len(seen), 70000)  # crosses the 65534-host wrap

    def test_malformed(self):
        data, counts = generate("--flows", "100", "--packets", "5000", "--malformed-pct", "10")
        frames = list(records(data))
        bad = [f for f in frames if well_formed(f) is None]
        self.assertEqual(len(bad), counts["malformed"])
        self.assertTrue(400 <= len(bad) <= 600, len(bad))
        kinds = set()
        for f in bad:
            if len(f) < 34:
                kinds.add("runt")
            elif f[12:14] != b"\x08\x00":
                kinds.add("ethertype")
            elif f[14] & 0x0F < 5:
                kinds.add("ihl")
                self.assertEqual(csum(f[14:34]), 0xFFFF)
            elif struct.unpack("!H", f[16:18])[0] + 14 > len(f):
                kinds.add("total_len")
                self.assertEqual(csum(f[14:34]), 0xFFFF)
            elif struct.unpack("!H", f[16:18])[0] < 40:
                kinds.add("truncated_tcp")
                self.assertEqual(len(f), 60)
        self.assertEqual(kinds, {"runt", "ethertype", "ihl", "total_len", "truncated_tcp"})

    def test_flow_tuples_unique_across_port_rounds(self):
        # Flows i and i + 65534 share a host and must differ by port.
        a = gen_pcap.flow_tuple(7)
        b = gen_pcap.flow_tuple(7 + gen_pcap.HOSTS)
        self.assertEqual(a[0], b[0])
        self.assertNotEqual(a[1], b[1])


if __name__ == "__main__":
    quiet = "-q" in sys.argv
    argv = [a for a in sys.argv if a != "-q"]
    unittest.main(argv=argv, verbosity=0 if quiet else 2)
