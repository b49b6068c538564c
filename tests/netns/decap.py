#!/usr/bin/env python3
"""Userspace tunnel decapsulation for test backends (the test kernel has no ipip or fou module).

Reads IPIP (IPv4 proto 4), IPv6-in-IPv6 / IPv4-in-IPv6 (IPv6 next header 41 / 4) from raw
sockets and GUE (direct-IP variant: UDP port 6080 whose payload is the inner IP packet),
and writes each inner packet to a TUN device, where the kernel receives it as if it had
arrived on the wire. A real backend uses the kernel's ipip/ip6tnl/fou instead
(scripts/backend-setup.sh without --userspace-decap).

usage: decap.py TUN_NAME [GUE_PORT]
"""
import fcntl
import os
import select
import socket
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000

tun_name = sys.argv[1]
gue_port = int(sys.argv[2]) if len(sys.argv) > 2 else 6080

tun = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", tun_name.encode(), IFF_TUN | IFF_NO_PI))

# (socket, strip_outer_ipv4_header)
socks = []
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)  # IPv4-in-IPv4: data starts at the outer header
socks.append((s, True))
for proto in (41, 4):  # IPv6-in-IPv6 and IPv4-in-IPv6: raw IPv6 sockets deliver the payload only
    s6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, proto)
    socks.append((s6, False))
g = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
g.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
g.bind(("::", gue_port))
socks.append((g, False))

print(f"decap: {tun_name} ready (ipip, ip6ip6, ip4ip6, gue/{gue_port})", flush=True)
by_fd = {s.fileno(): (s, strip) for s, strip in socks}
count = 0
while True:
    ready, _, _ = select.select(list(by_fd), [], [])
    for fd in ready:
        s, strip = by_fd[fd]
        data = s.recv(65535)
        if strip:
            ihl = (data[0] & 0x0F) * 4
            data = data[ihl:]
        if not data or (data[0] >> 4) not in (4, 6):
            continue
        os.write(tun, data)
        count += 1
