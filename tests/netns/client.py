#!/usr/bin/env python3
"""A test client: N HTTP/1.1 requests, each on a new TCP connection, counted by backend.

usage: client.py URL_HOST PORT N [--sport P] [--timeout S] [--path /]
Prints one JSON object: {"backends": {name: count}, "failed": k, "seen_as": {addr: count}}
--sport P binds every connection to source port P (the same 5-tuple each time); the
connection is closed with RST (SO_LINGER 0) so the tuple can be reused at once.
"""
import argparse
import json
import socket
import struct
import time

ap = argparse.ArgumentParser()
ap.add_argument("host")
ap.add_argument("port", type=int)
ap.add_argument("n", type=int)
ap.add_argument("--sport", type=int, default=0)
ap.add_argument("--sport-base", type=int, default=0, help="connection i binds source port BASE+i (distinct 5-tuples)")
ap.add_argument("--timeout", type=float, default=2.0)
ap.add_argument("--path", default="/")
ap.add_argument("--deadline", type=float, default=120.0, help="stop after this many seconds")
a = ap.parse_args()

fam = socket.AF_INET6 if ":" in a.host else socket.AF_INET
backends, seen_as, failed, errors = {}, {}, 0, {}
start = time.monotonic()
for i in range(a.n):
    if time.monotonic() - start > a.deadline:
        failed += a.n - i
        errors["deadline"] = errors.get("deadline", 0) + a.n - i
        break
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(a.timeout)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if a.sport or a.sport_base:
            port = a.sport or (a.sport_base + i)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", port))
        s.connect((a.host, a.port))
        host = f"[{a.host}]" if fam == socket.AF_INET6 else a.host
        s.sendall(f"GET {a.path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data:
                head, body = data.split(b"\r\n\r\n", 1)
                clen = 0
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        clen = int(v)
                if len(body) >= clen:
                    break
        body = data.split(b"\r\n\r\n", 1)[1].decode().split()
        backends[body[0]] = backends.get(body[0], 0) + 1
        if len(body) > 1:
            seen_as[body[1]] = seen_as.get(body[1], 0) + 1
    except Exception as e:  # a failed request is counted, not fatal
        failed += 1
        k = type(e).__name__
        errors[k] = errors.get(k, 0) + 1
    finally:
        s.close()
print(json.dumps({"backends": backends, "failed": failed, "seen_as": seen_as, "errors": errors}))
