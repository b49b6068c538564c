#!/usr/bin/env python3
"""Writes benchmark traffic as a pcap file: Ethernet / IPv4 / TCP towards one VIP.

Plain Python (struct only), fast enough for files of a million packets: header fields
are packed with one precompiled struct per packet and the checksums are computed from
the field values plus a precomputed sum of the (constant) payload, never byte by byte.

Frame sizes: ``--size`` is the Ethernet frame size on the wire *including* the 4-byte
FCS, as in RFC 2544 figures, so ``--size 64`` writes 60-byte frames and ``--size 512``
writes 508-byte frames (a pcap holds no FCS). SYN packets carry no payload and are
always minimum-size frames (60 bytes in the file, 64 on the wire), padded with zeros
after the IP datagram as Ethernet requires.

Traffic shape:
- flow ``i`` (0 <= i < --flows) is client ``10.1.0.0/16`` host ``1 + (i * 40503) % 65534``
  (a permutation spreading the flows over the whole /16, no .0.0 or .255.255), source
  port ``1024 + (k * 5 + host * 131) % 64512`` with ``k = i // 65534``: every flow index
  gives a distinct 5-tuple (up to 65534 * 64512 flows);
- packet ``j`` belongs to flow ``j % flows`` and is an ACK (+PSH) carrying payload,
  with that flow's sequence number advancing by the payload length per round;
- ``--syn-first`` writes one SYN per flow before the data packets (the SYNs count in
  ``--packets``);
- ``--syn-flood`` makes every packet a SYN of a new flow (flow index = packet index);
- ``--malformed-pct P`` replaces P% of the packets (chosen by a seeded RNG) with one of
  five malformed kinds, in rotation: IPv4 IHL below 5, IPv4 total length beyond the
  frame, a runt frame (30 bytes: Ethernet plus part of an IPv4 header), an unknown
  ethertype (0x88b5, IEEE local experimental), and a TCP header truncated to 12 bytes
  (the IPv4 total length says so; the frame is padded to the minimum size).
  Their IPv4 header checksums are valid wherever there is a full IPv4 header, so the
  malformation is the named one only.

``--ipv6`` writes Ethernet / IPv6 / TCP instead: client ``fd01::<host>`` (the same host
numbers), VIP ``--vip6``, the same ports and sequence numbers; the smallest such frame is 74
bytes in the file (78 on the wire), so ``--size 78`` is its minimum-size scenario. (Malformed
packets and SYN floods are IPv4 only.)

Every well-formed packet has valid IPv4 and TCP checksums (check with ``tcpdump -vvr``).
"""

import argparse
import ipaddress
import os
import random
import struct
import sys

PCAP_GLOBAL = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # LINKTYPE_ETHERNET
REC = struct.Struct("<IIII")  # ts_sec, ts_usec, incl_len, orig_len
# Ethernet (dst, src, type) + IPv4 (ver_ihl, tos, total_len, id, flags_frag, ttl, proto,
# csum, src, dst) + TCP (sport, dport, seq, ack, off_rsvd, flags, window, csum, urg).
HDR = struct.Struct("!6s6sHBBHHHBBHIIHHIIBBHHH")
ETH_LEN, IP_LEN, TCP_LEN = 14, 20, 20
HDRS_LEN = ETH_LEN + IP_LEN + TCP_LEN  # 54
MIN_FRAME = 60  # without FCS
ETH_IPV4 = 0x0800
ETH_UNKNOWN = 0x88B5
TCP_SYN, TCP_PSH, TCP_ACK = 0x02, 0x08, 0x10
IP_DF = 0x4000
CLIENT_NET = (10 << 24) | (1 << 16)  # 10.1.0.0/16
HOSTS = 65534
PORTS = 64512
# Ethernet + IPv6 (ver_tc_flow, payload_len, next_header, hop_limit, src, dst) + TCP.
HDR6 = struct.Struct("!6s6sHIHBB16s16sHHIIBBHHH")
IP6_LEN = 40
HDRS6_LEN = ETH_LEN + IP6_LEN + TCP_LEN  # 74
ETH_IPV6 = 0x86DD
CLIENT_NET6 = int(ipaddress.IPv6Address("fd01::"))
MALFORMED_KINDS = ("bad_ihl", "total_len_beyond_frame", "runt", "unknown_ethertype", "truncated_tcp")


def parse_mac(text):
    parts = text.split(":")
    if len(parts) != 6:
        raise argparse.ArgumentTypeError(f"not a MAC address: {text}")
    return bytes(int(p, 16) for p in parts)


def parse_ipv4(text):
    parts = [int(p) for p in text.split(".")]
    if len(parts) != 4 or any(not 0 <= p <= 255 for p in parts):
        raise argparse.ArgumentTypeError(f"not an IPv4 address: {text}")
    return (parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3]


def fold(s):
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def ones_sum(data):
    """One's-complement sum (unfolded) of 16-bit big-endian words; odd length zero-padded."""
    if len(data) % 2:
        data = bytes(data) + b"\0"
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


def flow_tuple(i):
    """(client address, client port) of flow index i; distinct for every i below 65534 * 64512."""
    host = 1 + (i * 40503) % HOSTS
    k = i // HOSTS
    port = 1024 + (k * 5 + host * 131) % PORTS
    return CLIENT_NET | host, port


class Writer:
    """Builds frames for one VIP; `frame()` returns the bytes of one well-formed packet."""

    def __init__(self, dst_mac, src_mac, vip, vport, frame_len):
        self.dst_mac, self.src_mac = dst_mac, src_mac
        self.vip, self.vport = vip, vport
        self.frame_len = frame_len
        self.payload = bytes((0x41 + n % 26) for n in range(frame_len - HDRS_LEN))
        self.payload_sum = ones_sum(self.payload)
        self.syn_pad = bytes(MIN_FRAME - HDRS_LEN)

    def frame(self, src, sport, seq, ack, ip_id, syn):
        if syn:
            flags, payload, payload_sum, tail = TCP_SYN, b"", 0, self.syn_pad
        else:
            flags, payload, payload_sum, tail = TCP_ACK | TCP_PSH, self.payload, self.payload_sum, b""
        tcp_len = TCP_LEN + len(payload)
        total_len = IP_LEN + tcp_len
        dst, dport = self.vip, self.vport
        # IPv4 header checksum from the field values (ver_ihl|tos, total, id, flags, ttl|proto, src, dst).
        ip_sum = 0x4500 + total_len + ip_id + IP_DF + 0x4006 + (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF)
        ip_csum = ~fold(ip_sum) & 0xFFFF
        # TCP checksum: pseudo header (src, dst, proto, tcp length) + header fields + payload.
        window = 65535
        tcp_sum = (
            (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + 6 + tcp_len
            + sport + dport + (seq >> 16) + (seq & 0xFFFF) + (ack >> 16) + (ack & 0xFFFF)
            + ((0x50 << 8) | flags) + window + payload_sum
        )
        tcp_csum = ~fold(tcp_sum) & 0xFFFF
        hdr = HDR.pack(
            self.dst_mac, self.src_mac, ETH_IPV4,
            0x45, 0, total_len, ip_id, IP_DF, 64, 6, ip_csum, src, dst,
            sport, dport, seq, ack, 0x50, flags, window, tcp_csum, 0,
        )
        return hdr + payload + tail


class Writer6:
    """Writer's IPv6 twin: Ethernet / IPv6 / TCP frames for one IPv6 VIP."""

    def __init__(self, dst_mac, src_mac, vip6, vport, frame_len):
        self.dst_mac, self.src_mac = dst_mac, src_mac
        self.vip, self.vport = vip6, vport
        self.payload = bytes((0x41 + n % 26) for n in range(frame_len - HDRS6_LEN))
        self.payload_sum = ones_sum(self.payload)
        self.vip_sum = ones_sum(vip6.to_bytes(16, "big"))

    def frame(self, host, sport, seq, ack):
        src = (CLIENT_NET6 | host).to_bytes(16, "big")
        flags, payload = TCP_ACK | TCP_PSH, self.payload
        tcp_len = TCP_LEN + len(payload)
        window, dport = 65535, self.vport
        # TCP checksum: the IPv6 pseudo header (src, dst, length, next header) + header + payload.
        tcp_sum = (
            ones_sum(src) + self.vip_sum + tcp_len + 6
            + sport + dport + (seq >> 16) + (seq & 0xFFFF) + (ack >> 16) + (ack & 0xFFFF)
            + ((0x50 << 8) | flags) + window + self.payload_sum
        )
        tcp_csum = ~fold(tcp_sum) & 0xFFFF
        hdr = HDR6.pack(
            self.dst_mac, self.src_mac, ETH_IPV6,
            6 << 28, tcp_len, 6, 64, src, self.vip.to_bytes(16, "big"),
            sport, dport, seq, ack, 0x50, flags, window, tcp_csum, 0,
        )
        return hdr + payload


def ip_checksum_fix(frame, ihl_bytes):
    """Rewrites the IPv4 header checksum of `frame` (a bytearray) over `ihl_bytes` header bytes."""
    end = min(ETH_LEN + ihl_bytes, len(frame))
    frame[ETH_LEN + 10:ETH_LEN + 12] = b"\0\0"
    csum = ~fold(ones_sum(frame[ETH_LEN:end])) & 0xFFFF
    frame[ETH_LEN + 10:ETH_LEN + 12] = struct.pack("!H", csum)


def malform(good, kind):
    """Returns a malformed variant of the well-formed frame `good`."""
    f = bytearray(good)
    if kind == "bad_ihl":
        f[ETH_LEN] = 0x44  # IHL 4: a header shorter than the minimum 20 bytes
        ip_checksum_fix(f, IP_LEN)
    elif kind == "total_len_beyond_frame":
        struct.pack_into("!H", f, ETH_LEN + 2, len(f) - ETH_LEN + 100)
        ip_checksum_fix(f, IP_LEN)
    elif kind == "runt":
        f = f[:30]
    elif kind == "unknown_ethertype":
        struct.pack_into("!H", f, 12, ETH_UNKNOWN)
    elif kind == "truncated_tcp":
        f = f[:ETH_LEN + IP_LEN + 12]
        struct.pack_into("!H", f, ETH_LEN + 2, IP_LEN + 12)
        ip_checksum_fix(f, IP_LEN)
        f += bytes(MIN_FRAME - len(f))
    else:
        raise ValueError(kind)
    return bytes(f)


def generate(args, out):
    if args.ipv6:
        if args.size not in (78, 512):
            raise SystemExit("--size must be 78 or 512 with --ipv6")
        if args.syn_flood or args.syn_first or args.malformed_pct:
            raise SystemExit("--ipv6 writes established flows only")
    elif args.size not in (64, 512):
        raise SystemExit("--size must be 64 or 512")
    frame_len = args.size - 4
    w = Writer(args.dst_mac, args.src_mac, args.vip, args.vport, frame_len)
    w6 = Writer6(args.dst_mac, args.src_mac, int(args.vip6), args.vport, frame_len) if args.ipv6 else None
    rng = random.Random(args.seed)
    flows = args.packets if args.syn_flood else args.flows
    if flows < 1:
        raise SystemExit("--flows must be at least 1")
    if flows > HOSTS * PORTS:
        raise SystemExit(f"at most {HOSTS * PORTS} distinct flows")
    n_syn = flows if args.syn_first and not args.syn_flood else 0
    if n_syn > args.packets:
        raise SystemExit("--syn-first needs --packets >= --flows")
    payload_len = frame_len - (HDRS6_LEN if args.ipv6 else HDRS_LEN)
    out.write(PCAP_GLOBAL)
    chunk = []
    counts = {"packets": 0, "syn": 0, "data": 0, "malformed": 0}
    kind_index = 0
    for j in range(args.packets):
        if args.syn_flood:
            i, syn, rnd = j, True, 0
        elif j < n_syn:
            i, syn, rnd = j, True, 0
        else:
            d = j - n_syn
            i, syn, rnd = d % flows, False, d // flows
        src, sport = flow_tuple(i)
        isn = (i * 2654435761) & 0xFFFFFFFF
        seq = isn if syn else (isn + 1 + rnd * payload_len) & 0xFFFFFFFF
        ack = 0 if syn else (i * 40503 + 1) & 0xFFFFFFFF
        if w6:
            frame = w6.frame(src & 0xFFFF, sport, seq, ack)
        else:
            frame = w.frame(src, sport, seq, ack, j & 0xFFFF, syn)
        if args.malformed_pct and rng.random() * 100 < args.malformed_pct:
            frame = malform(frame, MALFORMED_KINDS[kind_index % len(MALFORMED_KINDS)])
            kind_index += 1
            counts["malformed"] += 1
        elif syn:
            counts["syn"] += 1
        else:
            counts["data"] += 1
        chunk.append(REC.pack(1_700_000_000 + j // 1_000_000, j % 1_000_000, len(frame), len(frame)))
        chunk.append(frame)
        if len(chunk) >= 131072:
            out.write(b"".join(chunk))
            chunk.clear()
    out.write(b"".join(chunk))
    counts["packets"] = args.packets
    counts["flows"] = flows
    counts["frame_len"] = frame_len
    return counts


def parse_args(argv=None):
    """Parses the command line; --packets defaults to --flows."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-o", "--out", required=True, help="pcap file to write ('-' for stdout)")
    p.add_argument("--flows", type=int, default=10000, help="distinct 5-tuples (default 10000)")
    p.add_argument("--size", type=int, default=64, help="frame size on the wire with FCS: 64 or 512 (file frames are 4 bytes shorter)")
    p.add_argument("--packets", type=int, help="total packets (default: --flows)")
    p.add_argument("--syn-first", action="store_true", help="one SYN per flow before the data packets")
    p.add_argument("--syn-flood", action="store_true", help="every packet a SYN of a new flow (ignores --flows)")
    p.add_argument("--malformed-pct", type=float, default=0.0, help="percentage of malformed packets")
    p.add_argument("--dst-mac", type=parse_mac, default=parse_mac("02:70:63:61:70:00"), help="destination MAC (default: net_pcap port 0)")
    p.add_argument("--src-mac", type=parse_mac, default=parse_mac("02:00:00:00:00:01"), help="source MAC (the client-side router)")
    p.add_argument("--vip", type=parse_ipv4, default=parse_ipv4("10.99.0.100"))
    p.add_argument("--vport", type=int, default=80)
    p.add_argument("--ipv6", action="store_true", help="Ethernet/IPv6/TCP frames from fd01::/64 clients (established flows only)")
    p.add_argument("--vip6", type=ipaddress.IPv6Address, default=ipaddress.IPv6Address("fd99::100"))
    p.add_argument("--seed", type=int, default=1, help="seed for choosing malformed packets")
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.packets is None:
        args.packets = args.flows
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.out == "-":
        counts = generate(args, sys.stdout.buffer)
    else:
        tmp = args.out + ".tmp"
        with open(tmp, "wb", buffering=1 << 20) as out:
            counts = generate(args, out)
        os.replace(tmp, args.out)
    if not args.quiet:
        print(" ".join(f"{k}={v}" for k, v in counts.items()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
