#!/usr/bin/python3
"""A real gRPC peer (Debian's python3-grpcio) for tests/l7_pool.rs.

  grpc_peer.py serve NAME    serves t.Echo on 127.0.0.1:<free port>, prints the port
                             (Say answers NAME:<request> and sets the trailing metadata
                             x-served-by: NAME; Fail aborts with NOT_FOUND; Chat, a
                             bidirectional stream, answers each message NAME:<message>)
  grpc_peer.py call ADDR N   N unary calls to t.Echo/Say on ONE channel, one to
                             t.Echo/Fail, and a Chat that sends its second message only
                             after the answer to its first; prints a JSON summary
"""
import json
import queue
import sys
from concurrent import futures

import grpc


def serve(name):
    def say(req, ctx):
        ctx.set_trailing_metadata((("x-served-by", name),))
        return name.encode() + b":" + req

    def fail(req, ctx):
        ctx.abort(grpc.StatusCode.NOT_FOUND, "no such thing")

    def chat(messages, ctx):
        for m in messages:
            yield name.encode() + b":" + m

    handler = grpc.method_handlers_generic_handler("t.Echo", {
        "Say": grpc.unary_unary_rpc_method_handler(say),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Chat": grpc.stream_stream_rpc_method_handler(chat),
    })
    server = grpc.server(futures.ThreadPoolExecutor(4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


def call(addr, n):
    out = {"served": {}, "ok": 0, "trailers_match": 0, "errors": []}
    with grpc.insecure_channel(addr) as ch:
        say = ch.unary_unary("/t.Echo/Say")
        for i in range(n):
            try:
                resp, c = say.with_call(b"hi%d" % i, timeout=5)
            except grpc.RpcError as e:
                out["errors"].append("%s %s" % (e.code(), e.details()))
                continue
            name, _, echoed = resp.partition(b":")
            name = name.decode()
            out["served"][name] = out["served"].get(name, 0) + 1
            out["ok"] += echoed == b"hi%d" % i
            out["trailers_match"] += dict(c.trailing_metadata()).get("x-served-by") == name
        try:
            ch.unary_unary("/t.Echo/Fail")(b"x", timeout=5)
            out["fail"] = "OK"
        except grpc.RpcError as e:
            out["fail"] = "%s %s" % (e.code().name, e.details())
        # a conversation: the second message waits for the first answer, so a proxy
        # that buffers the request body until its end never answers (deadline exceeded)
        outbox = queue.Queue()

        def messages():
            while True:
                m = outbox.get()
                if m is None:
                    return
                yield m

        out["chat"] = []
        try:
            answers = ch.stream_stream("/t.Echo/Chat")(messages(), timeout=5)
            outbox.put(b"one")
            out["chat"].append(next(answers).decode())
            outbox.put(b"two")
            out["chat"].append(next(answers).decode())
            outbox.put(None)
            out["chat"].extend(a.decode() for a in answers)
        except grpc.RpcError as e:
            outbox.put(None)
            out["chat"].append("%s %s" % (e.code().name, e.details()))
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:
        call(sys.argv[2], int(sys.argv[3]))
