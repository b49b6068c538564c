#!/usr/bin/env python3
"""A test backend: an HTTP/1.1 server that answers with its own name.

GET /            -> "<name> <client-ip>\n"   (the client address the backend saw)
GET /healthz     -> "ok\n"
GET /bytes/N     -> N bytes, sent in 64 KiB chunks (long transfers for drain tests)
GET /slow/MS     -> "<name>\n" after MS milliseconds
Listens on [::]:PORT dual-stack, so it also answers on a VIP held on lo.
"""
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = sys.argv[1]
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 80


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # keep the logs quiet
        pass

    def _send(self, body: bytes, status: int = 200):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Backend", NAME)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        client = self.client_address[0]
        if client.startswith("::ffff:"):
            client = client[7:]
        if self.path == "/healthz":
            return self._send(b"ok\n")
        if self.path.startswith("/bytes/"):
            n = int(self.path[len("/bytes/"):])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.send_header("X-Backend", NAME)
            self.end_headers()
            chunk = b"x" * 65536
            while n > 0:
                k = min(n, len(chunk))
                self.wfile.write(chunk[:k])
                n -= k
                time.sleep(0.01)
            return
        if self.path.startswith("/slow/"):
            time.sleep(int(self.path[len("/slow/"):]) / 1000.0)
        self._send(f"{NAME} {client}\n".encode())


class Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


Server(("::", PORT), Handler).serve_forever()
