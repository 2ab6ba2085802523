#!/usr/bin/env python3
"""A small cleartext HTTP/2 server (h2c) for the capture samples, on the `h2` package.

Speaks HTTP/2 with prior knowledge (client preface) and by `Upgrade: h2c` (the HTTP/1.1 request
answered 101 becomes stream 1). Routes:
  GET  /h2/size/N      200, N bytes of text
  POST /h2/echo        200, a JSON line with the body length received
  GET  /h2/push        200, and (when the client allows push) a PUSH_PROMISE for
                       /h2/pushed.css, then that response
  anything else        404
One JSON line per response in the ground-truth format of logtool.py (protocol "HTTP/2").

  h2c_server.py --port P --log FILE
"""

import argparse
import json
import socket
import threading

import h2.config
import h2.connection
import h2.events

LOG_LOCK = threading.Lock()


def log(args, sock, method, uri, status, req_len, resp_len):
    (cip, cport), (sip, sport) = sock.getpeername()[:2], sock.getsockname()[:2]
    line = {"client_ip": cip, "client_port": cport, "server_ip": sip, "server_port": sport,
            "method": method, "uri": uri, "protocol": "HTTP/2", "status": status,
            "req_body_bytes": req_len, "resp_body_bytes": resp_len, "chunked": False}
    with LOG_LOCK, open(args.log, "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")


def route(method, path, body_len):
    if path.startswith("/h2/size/") and method == "GET":
        try:
            n = int(path.rsplit("/", 1)[1])
        except ValueError:
            n = 0
        return 200, "text/plain", (b"abcdefghij" * (n // 10 + 1))[:n]
    if path == "/h2/echo" and method == "POST":
        return 200, "application/json", json.dumps({"received": body_len}).encode() + b"\n"
    if path == "/h2/push" and method == "GET":
        return 200, "text/html", b"<html><link rel=stylesheet href=/h2/pushed.css></html>\n"
    if path == "/h2/pushed.css":
        return 200, "text/css", b"body { color: teal }\n" * 20
    return 404, "text/plain", b"not found\n"


def send_response(conn, sock, args, sid, method, path, body_len):
    status, ctype, body = route(method, path, body_len)
    if path == "/h2/push" and conn.remote_settings.enable_push:
        pid = conn.get_next_available_stream_id()
        conn.push_stream(sid, pid, [(":method", "GET"), (":scheme", "http"), (":path", "/h2/pushed.css"),
                                    (":authority", "10.0.0.1")])
        ps, pc, pb = route("GET", "/h2/pushed.css", 0)
        conn.send_headers(pid, [(":status", str(ps)), ("content-type", pc), ("content-length", str(len(pb)))])
        send_body(conn, sock, pid, pb)
        log(args, sock, "GET", "/h2/pushed.css", ps, 0, len(pb))
    conn.send_headers(sid, [(":status", str(status)), ("content-type", ctype), ("content-length", str(len(body))),
                            ("server", "h2c-lab")])
    send_body(conn, sock, sid, body)
    log(args, sock, method, path, status, body_len, len(body))


def send_body(conn, sock, sid, body):
    off = 0
    while True:
        n = min(len(body) - off, conn.local_flow_control_window(sid) if body else 0, conn.max_outbound_frame_size)
        if off >= len(body):
            conn.send_data(sid, b"", end_stream=True)
            break
        if n <= 0:
            # wait for a WINDOW_UPDATE
            sock.sendall(conn.data_to_send())
            data = sock.recv(65536)
            if not data:
                return
            conn.receive_data(data)
            continue
        conn.send_data(sid, body[off:off + n])
        off += n
    sock.sendall(conn.data_to_send())


def read_http1_head(sock):
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = sock.recv(65536)
        if not d:
            return None, b""
        buf += d
        if len(buf) > 65536:
            return None, b""
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head.decode("latin-1"), rest


def serve(sock, args):
    cfg = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
    conn = h2.connection.H2Connection(config=cfg)
    first = sock.recv(24, socket.MSG_PEEK)
    streams = {}
    rest = b""
    if first.startswith(b"PRI * HTTP/2.0"):
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
    else:
        head, rest = read_http1_head(sock)
        if head is None:
            return
        lines = head.split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        hdrs = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
        if hdrs.get("upgrade", "").lower() != "h2c":
            sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
        conn.initiate_upgrade_connection(hdrs.get("http2-settings", ""))
        sock.sendall(conn.data_to_send())
        send_response(conn, sock, args, 1, method, target, int(hdrs.get("content-length", "0") or 0))
    while True:
        data = rest or sock.recv(65536)
        rest = b""
        if not data:
            return
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.RequestReceived):
                h = dict(ev.headers)
                streams[ev.stream_id] = [h.get(":method", ""), h.get(":path", ""), 0]
                if ev.stream_ended:
                    m, p, n = streams.pop(ev.stream_id)
                    send_response(conn, sock, args, ev.stream_id, m, p, n)
            elif isinstance(ev, h2.events.DataReceived):
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                if ev.stream_id in streams:
                    streams[ev.stream_id][2] += len(ev.data)
                if ev.stream_ended and ev.stream_id in streams:
                    m, p, n = streams.pop(ev.stream_id)
                    send_response(conn, sock, args, ev.stream_id, m, p, n)
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id in streams:
                m, p, n = streams.pop(ev.stream_id)
                send_response(conn, sock, args, ev.stream_id, m, p, n)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                sock.sendall(conn.data_to_send())
                return
        sock.sendall(conn.data_to_send())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="0.0.0.0")
    ap.add_argument("--log", required=True)
    args = ap.parse_args()
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((args.host, args.port))
    ls.listen(64)
    while True:
        s, _ = ls.accept()

        def run(s=s):
            try:
                serve(s, args)
            except Exception as e:  # a broken client must not stop the lab server
                print("h2c_server:", repr(e), flush=True)
            finally:
                s.close()

        threading.Thread(target=run, daemon=True).start()


if __name__ == "__main__":
    main()
