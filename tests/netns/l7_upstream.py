#!/usr/bin/env python3
"""An upstream for the L7 pool's namespace tests: HTTP/1.1 with keep-alive, one mode.

usage: l7_upstream.py NAME PORT MODE [DELAY_MS]
  ok          200, body "NAME path=PATH xff=X-FORWARDED-FOR proto=X-FORWARDED-PROTO\\n",
              header X-Backend: NAME; waits DELAY_MS first when given
  garbage     answers bytes that are not HTTP, then closes
  hang        reads the request and never answers
  reset-once  resets (RST) the first connection after reading its request, then as ok
Every response carries Content-Length; requests are read up to the blank line (the
tests send no bodies). Listens on 0.0.0.0:PORT.
"""
import asyncio
import socket
import struct
import sys

NAME = sys.argv[1]
PORT = int(sys.argv[2])
MODE = sys.argv[3]
DELAY = int(sys.argv[4]) / 1000.0 if len(sys.argv) > 4 else 0.0
resets_left = 1 if MODE == "reset-once" else 0


def header(head: bytes, name: bytes) -> str:
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == name:
            return v.strip().decode("latin-1")
    return "-"


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
    global resets_left
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            if MODE == "hang":
                await asyncio.sleep(3600)
                return
            if MODE == "garbage":
                writer.write(b"SPLORK 42 what\r\n\x00\x01garbage\r\n\r\n")
                await writer.drain()
                return
            if resets_left > 0:
                resets_left -= 1
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return
            if DELAY:
                await asyncio.sleep(DELAY)
            path = head.split(b" ", 2)[1].decode("latin-1")
            body = (
                f"{NAME} path={path} xff={header(head, b'x-forwarded-for')} "
                f"proto={header(head, b'x-forwarded-proto')}\n"
            ).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Backend: "
                + NAME.encode()
                + b"\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            await writer.drain()
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def main():
    server = await asyncio.start_server(serve, "0.0.0.0", PORT, reuse_address=True, backlog=1024)
    async with server:
        await server.serve_forever()


asyncio.run(main())
