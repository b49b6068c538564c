#!/usr/bin/env python3
"""A long download: GET /bytes/N on one connection. Prints "backend NAME" as soon as the
response headers arrive, then at the end "done BYTES" (or "failed REASON").

usage: transfer.py HOST PORT N
"""
import socket
import sys

host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
try:
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(f"GET /bytes/{n} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed before headers")
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    backend = "?"
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"x-backend":
            backend = v.strip().decode()
    print(f"backend {backend}", flush=True)
    got = len(body)
    while got < n:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        got += len(chunk)
    print(f"done {got}", flush=True)
except Exception as e:
    print(f"failed {type(e).__name__}: {e}", flush=True)
