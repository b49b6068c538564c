#!/usr/bin/env python3
"""One long-lived HTTP/1.1 keep-alive connection: a request every INTERVAL seconds for
DURATION seconds, all on the same TCP connection. Prints a line "ready" once connected,
then at the end one JSON object: {"requests", "failed", "backends": {name: n}}.

usage: longconn.py HOST PORT DURATION [INTERVAL]
"""
import json
import socket
import sys
import time

host, port, duration = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
interval = float(sys.argv[4]) if len(sys.argv) > 4 else 0.1
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.create_connection((host, port), timeout=3)
print("ready", flush=True)
reqs, failed, backends, errors = 0, 0, {}, []
end = time.monotonic() + duration
buf = b""
while time.monotonic() < end:
    reqs += 1
    try:
        s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        head, buf = buf.split(b"\r\n\r\n", 1)
        clen = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                clen = int(v)
        while len(buf) < clen:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        body, buf = buf[:clen], buf[clen:]
        name = body.decode().split()[0]
        backends[name] = backends.get(name, 0) + 1
    except Exception as e:
        failed += 1
        errors.append(type(e).__name__)
        break
    time.sleep(interval)
print(json.dumps({"requests": reqs, "failed": failed, "backends": backends, "errors": errors}), flush=True)
