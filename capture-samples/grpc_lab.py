#!/usr/bin/env python3
"""A gRPC server and client for the capture samples (grpcio, generic handlers: no .proto, the
messages are raw bytes, so their sizes are exact).

  grpc_lab.py server --port P --log FILE
  grpc_lab.py client --target HOST:PORT

Service lab.Echo: Say (unary: echoes), Fail (unary: NOT_FOUND before any message, so a
trailers-only response), Stream (server streaming: N replies), Collect (client streaming),
Boom (unary: one reply message then INTERNAL in the trailers).

Server log: one JSON line per call in the ground-truth format of logtool.py plus
grpc_status, grpc_message, request_messages, response_messages (body bytes count the 5-byte
prefix of each message, as they appear in DATA frames).
"""

import argparse
import json
import sys
import threading
import time
from concurrent import futures

import grpc

LOCK = threading.Lock()
LOG = None


def log(ctx, method, status, message, reqs, resps):
    peer = ctx.peer()  # ipv4:10.0.0.2:40000
    _, ip, port = peer.rsplit(":", 2) if peer.count(":") >= 2 else ("", "", "0")
    line = {"client_ip": ip, "client_port": int(port), "server_ip": "10.0.0.1", "server_port": ARGS.port,
            "method": "POST", "uri": "/lab.Echo/" + method, "protocol": "HTTP/2", "status": 200,
            "req_body_bytes": sum(5 + len(m) for m in reqs), "resp_body_bytes": sum(5 + len(m) for m in resps),
            "chunked": False, "grpc_status": status, "grpc_message": message,
            "request_messages": len(reqs), "response_messages": len(resps)}
    with LOCK, open(LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")


def say(req, ctx):
    resp = b"hello " + req
    log(ctx, "Say", 0, None, [req], [resp])
    return resp


def fail(req, ctx):
    log(ctx, "Fail", grpc.StatusCode.NOT_FOUND.value[0], "no such thing: 42", [req], [])
    ctx.abort(grpc.StatusCode.NOT_FOUND, "no such thing: 42")


def boom(req, ctx):
    # one message, then an error in the trailers
    ctx.set_code(grpc.StatusCode.INTERNAL)
    ctx.set_details("it broke")
    resp = b"partial"
    log(ctx, "Boom", grpc.StatusCode.INTERNAL.value[0], "it broke", [req], [resp])
    return resp


def stream(req, ctx):
    n = int(req.decode() or "3")
    out = [("item %d " % i).encode() * (i + 1) for i in range(n)]
    log(ctx, "Stream", 0, None, [req], out)
    yield from out


def collect(reqs, ctx):
    got = list(reqs)
    resp = b"got %d" % len(got)
    log(ctx, "Collect", 0, None, got, [resp])
    return resp


def server(args):
    global LOG
    LOG = args.log
    h = grpc.method_handlers_generic_handler("lab.Echo", {
        "Say": grpc.unary_unary_rpc_method_handler(say),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Boom": grpc.unary_unary_rpc_method_handler(boom),
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
        "Collect": grpc.stream_unary_rpc_method_handler(collect),
    })
    s = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[h],
                    options=[("grpc.so_reuseport", 0)])
    s.add_insecure_port("%s:%d" % (args.host, args.port))
    s.start()
    s.wait_for_termination()


def client(args):
    opts = [("grpc.enable_retries", 0), ("grpc.primary_user_agent", "apitap-lab")]
    with grpc.insecure_channel(args.target, options=opts) as ch:
        say_ = ch.unary_unary("/lab.Echo/Say")
        for i in range(args.calls):
            print("Say", say_(b"world %d" % i, timeout=10))
        try:
            ch.unary_unary("/lab.Echo/Fail")(b"x", timeout=10)
        except grpc.RpcError as e:
            print("Fail", e.code(), e.details())
        try:
            ch.unary_unary("/lab.Echo/Boom")(b"y", timeout=10)
        except grpc.RpcError as e:
            print("Boom", e.code(), e.details())
        for r in ch.unary_stream("/lab.Echo/Stream")(b"4", timeout=10):
            print("Stream", r)
        print("Collect", ch.stream_unary("/lab.Echo/Collect")(iter([b"a", b"bb", b"ccc"]), timeout=10))
        time.sleep(0.2)


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("server")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--host", default="0.0.0.0")
    s.add_argument("--log", required=True)
    c = sub.add_parser("client")
    c.add_argument("--target", required=True)
    c.add_argument("--calls", type=int, default=3)
    ARGS = ap.parse_args()
    if ARGS.cmd == "server":
        server(ARGS)
    else:
        client(ARGS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
