#!/usr/bin/env python3
"""A small JSON API server used to make the apitap capture samples.

Standard library only (http.server, HTTP/1.1, one thread per connection).
It writes its own access log, one JSON object per served request, which
logtool.py turns into the ground-truth `NAME.access.jsonl` files.

Routes
  GET    /api/health                 200 text/plain "ok"
  GET    /api/users/{int}            200 JSON user; 404 when id is 0 or > 100000
  GET    /api/orders/{uuid}          200 JSON order (content derived from the uuid)
  DELETE /api/orders/{uuid}          204 No Content
  POST   /api/orders                 201 JSON order, Location header (JSON body)
  POST   /api/login                  200 {"token":..} if password == "hunter2",
                                     401 otherwise, 400 on malformed JSON
  GET    /api/products?q=&limit=     200 JSON list (gzip if Accept-Encoding: gzip)
  GET    /api/big?kb=N               200 JSON of about N KiB, default 300
                                     (gzip if Accept-Encoding: gzip), Content-Length
  GET    /api/stream?n=&delay=&ext=1 Transfer-Encoding: chunked, one write per
                                     chunk, trailer X-Stream-Checksum;
                                     gzip (still chunked) if accepted;
                                     ext=1 adds chunk extensions;
                                     HTTP/1.0 clients get a close-delimited body
  POST   /api/upload                 200 {"bytes":n,"sha256":..}; body may be
                                     Content-Length or chunked (with trailers)
  anything else                      404 JSON; PUT/PATCH 405

Request bodies: Content-Length or Transfer-Encoding: chunked (extensions and
trailers accepted). `Expect: 100-continue` is answered with `100 Continue`,
except when the announced Content-Length exceeds --max-body: then the server
answers `413` at once, never reads the body and closes the connection.

HEAD works for every GET route: same headers, no body (a HEAD of
/api/stream announces Transfer-Encoding: chunked and sends no body).

Access log line (raw; logtool.py drops "ts" and "server"):
  {"ts": 1700000000.123456, "server": "api", "client_ip": .., "client_port": ..,
   "server_ip": .., "server_port": .., "method": .., "uri": .., "protocol": ..,
   "status": .., "req_body_bytes": .., "resp_body_bytes": .., "chunked": ..}
resp_body_bytes counts entity bytes written AFTER removing chunk framing
(still compressed when gzip was used); 0 for HEAD, 1xx, 204, 304.
"""

import argparse
import gzip
import hashlib
import http.server
import json
import random
import re
import signal
import socket
import sys
import threading
import time
import urllib.parse
import uuid
import zlib

LOG_LOCK = threading.Lock()
LOG_FILE = None
MAX_BODY = 8 * 1024 * 1024

UUID_RE = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
ORDER_NS = uuid.UUID("6f1c3c1e-3d7e-4c41-9d0a-6a7069746170")


def write_log(entry):
    line = json.dumps(entry, separators=(", ", ": "))
    with LOG_LOCK:
        LOG_FILE.write(line + "\n")
        LOG_FILE.flush()


class Response:
    """What a route returns. body is bytes, or an iterator of bytes for a
    streamed (chunked) response."""

    def __init__(self, status, body=b"", ctype="application/json", headers=None,
                 stream=None, trailer=None):
        self.status = status
        self.body = body
        self.ctype = ctype
        self.headers = headers or []
        self.stream = stream          # iterator of raw (uncompressed) pieces
        self.trailer = trailer        # callable -> list of (name, value)


def jbody(obj):
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


def jresp(status, obj, headers=None):
    return Response(status, jbody(obj), headers=headers)


# ---------------------------------------------------------------------------
# Routes (deterministic content: everything derives from the request)

def user_obj(uid):
    r = random.Random(uid)
    return {"id": uid, "name": "user%d" % uid, "email": "user%d@example.com" % uid,
            "karma": r.randint(0, 5000), "tags": r.sample(
                ["admin", "beta", "ops", "dev", "qa", "sales"], 2)}


def order_obj(oid):
    r = random.Random(str(oid))
    items = [{"sku": "SKU-%05d" % r.randint(0, 99999), "qty": r.randint(1, 5),
              "price_cents": r.randint(99, 99999)} for _ in range(r.randint(1, 4))]
    return {"id": str(oid), "status": r.choice(["new", "paid", "shipped"]),
            "items": items,
            "total_cents": sum(i["qty"] * i["price_cents"] for i in items)}


PRODUCT_WORDS = ["widget", "gadget", "sprocket", "gizmo", "doohickey", "bolt",
                 "nut", "cable", "adapter", "sensor", "lamp", "switch"]


def products(q, limit):
    out = []
    for i in range(2000):
        r = random.Random(i)
        name = "%s %s %d" % (r.choice(PRODUCT_WORDS), r.choice(PRODUCT_WORDS), i)
        if q and q.lower() not in name:
            continue
        out.append({"id": i, "name": name, "price_cents": r.randint(99, 9999),
                    "in_stock": r.random() < 0.8,
                    "description": "A fine %s for every occasion." % name})
        if len(out) >= limit:
            break
    return out


def big_obj(kb):
    rows, size, i = [], 0, 0
    while size < kb * 1024:
        r = random.Random(i)
        row = {"row": i, "user": user_obj(r.randint(1, 1000)),
               "value": r.random(), "note": "x" * r.randint(10, 80)}
        size += len(json.dumps(row)) + 1
        rows.append(row)
        i += 1
    return {"rows": rows, "count": len(rows)}


def route(h, method, path, query, body):
    qs = urllib.parse.parse_qs(query)

    def qint(name, default, lo, hi):
        try:
            return max(lo, min(hi, int(qs.get(name, [default])[0])))
        except ValueError:
            return default

    if method in ("PUT", "PATCH"):
        return jresp(405, {"error": "method not allowed"}, [("Allow", "GET, HEAD, POST, DELETE")])
    if path == "/api/health" and method == "GET":
        return Response(200, b"ok\n", ctype="text/plain")
    m = re.fullmatch(r"/api/users/(\d+)", path)
    if m and method == "GET":
        uid = int(m.group(1))
        if uid == 0 or uid > 100000:
            return jresp(404, {"error": "no such user", "id": uid})
        return jresp(200, user_obj(uid))
    m = re.fullmatch(r"/api/orders/(%s)" % UUID_RE, path)
    if m and method == "GET":
        return jresp(200, order_obj(uuid.UUID(m.group(1))))
    if m and method == "DELETE":
        return Response(204, b"", ctype=None)
    if path == "/api/orders" and method == "POST":
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            return jresp(400, {"error": "bad json"})
        oid = uuid.uuid5(ORDER_NS, hashlib.sha256(body).hexdigest())
        obj = {"id": str(oid), "status": "new", "request": req}
        return jresp(201, obj, [("Location", "/api/orders/%s" % oid)])
    if path == "/api/login" and method == "POST":
        try:
            req = json.loads(body)
            user, pw = str(req["username"]), str(req["password"])
        except (ValueError, KeyError, TypeError):
            return jresp(400, {"error": "bad json"})
        if pw != "hunter2":
            return jresp(401, {"error": "invalid credentials"},
                         [("WWW-Authenticate", 'Bearer realm="apitap"')])
        tok = hashlib.sha256(("token:" + user).encode()).hexdigest()
        return jresp(200, {"token": tok, "user": user, "expires_in": 3600})
    if path == "/api/products" and method == "GET":
        q = qs.get("q", [""])[0]
        return jresp(200, {"q": q, "items": products(q, qint("limit", 10, 1, 500))})
    if path == "/api/big" and method == "GET":
        return jresp(200, big_obj(qint("kb", 300, 1, 8192)))
    if path == "/api/stream" and method == "GET":
        n = qint("n", 20, 1, 10000)
        delay = qint("delay", 10, 0, 1000) / 1000.0

        def gen():
            for i in range(n):
                if delay:
                    time.sleep(delay)
                yield jbody({"event": i, "user": user_obj(i + 1)})
        return Response(200, ctype="application/x-ndjson", stream=gen())
    if path == "/api/upload" and method == "POST":
        return jresp(200, {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()})
    return jresp(404, {"error": "not found", "path": path})


# ---------------------------------------------------------------------------

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "apitap-demo-api/1.0"
    sys_version = ""

    def version_string(self):
        return self.server_version

    timeout = 60  # idle keep-alive connections are closed after this
    # Headers and body are separate send()s; without TCP_NODELAY Nagle +
    # delayed ACK would stall every response by ~40 ms.
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):  # silence the default stderr log
        pass

    # -- access log ------------------------------------------------------
    def _log(self, status, req_body, resp_body, chunked):
        ip = self.client_address[0]
        try:
            srv = self.connection.getsockname()
        except OSError:
            srv = ("", 0)
        write_log({"ts": round(time.time(), 6), "server": "api",
                   "client_ip": ip, "client_port": self.client_address[1],
                   "server_ip": srv[0], "server_port": srv[1],
                   "method": self.command or "", "uri": self.path or "",
                   "protocol": self.request_version or "",
                   "status": status, "req_body_bytes": req_body,
                   "resp_body_bytes": resp_body, "chunked": chunked})

    # -- 100-continue ----------------------------------------------------
    def handle_expect_100(self):
        """Called by parse_request() for `Expect: 100-continue`."""
        try:
            cl = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            cl = 0
        if cl > MAX_BODY:
            # Final answer without reading the body; the client must not
            # send it. We close the connection since the body is unread.
            body = jbody({"error": "payload too large", "limit": MAX_BODY})
            self.close_connection = True
            self.send_response(413)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self._log(413, 0, len(body), False)
            return False
        self.send_response_only(100)
        self.end_headers()
        return True

    # -- body ------------------------------------------------------------
    def _read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            body = bytearray()
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailer fields
                    return bytes(body)
                body += self.rfile.read(size)
                self.rfile.readline(65537)  # CRLF after chunk data
        cl = int(self.headers.get("Content-Length", "0") or 0)
        return self.rfile.read(cl) if cl else b""

    # -- dispatch --------------------------------------------------------
    def _handle(self, method):
        head = method == "HEAD"
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return self._send(Response(400, jbody({"error": "bad body"})), False, 0)
        u = urllib.parse.urlsplit(self.path)
        resp = route(self, "GET" if head else method, u.path, u.query, body)
        self._send(resp, head, len(body))

    def do_GET(self):
        self._handle("GET")

    def do_HEAD(self):
        self._handle("HEAD")

    def do_POST(self):
        self._handle("POST")

    def do_DELETE(self):
        self._handle("DELETE")

    def do_PUT(self):
        self._handle("PUT")

    def do_PATCH(self):
        self._handle("PATCH")

    def send_error(self, code, message=None, explain=None):
        """Errors raised inside BaseHTTPRequestHandler (400, 414, 501 ...)."""
        self.close_connection = True
        body = jbody({"error": message or "error", "status": code})
        try:
            self.send_response(code, message)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:
            pass
        self._log(code, 0, 0 if self.command == "HEAD" else len(body), False)

    def _send(self, resp, head, req_body_len):
        accepts_gzip = "gzip" in self.headers.get("Accept-Encoding", "").lower()
        http10 = self.request_version == "HTTP/1.0"
        gzip_ok = accepts_gzip and resp.status == 200 and (
            resp.stream is not None or len(resp.body) >= 256)
        self.send_response(resp.status)
        if resp.ctype:
            self.send_header("Content-Type", resp.ctype)
        for k, v in resp.headers:
            self.send_header(k, v)
        if gzip_ok:
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Vary", "Accept-Encoding")

        if resp.stream is not None:
            return self._send_stream(resp, head, req_body_len, gzip_ok, http10)

        body = resp.body
        if gzip_ok:
            body = gzip.compress(body, compresslevel=6, mtime=0)
        if resp.status not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        self._conn_header(http10)
        self.end_headers()
        sent = 0
        if not head and resp.status not in (204, 304):
            self.wfile.write(body)
            sent = len(body)
        self._log(resp.status, req_body_len, sent, False)

    def _conn_header(self, http10):
        if self.close_connection:
            self.send_header("Connection", "close")
        elif http10:
            self.send_header("Connection", "keep-alive")
            self.send_header("Keep-Alive", "timeout=60")

    def _send_stream(self, resp, head, req_body_len, gzip_ok, http10):
        u = urllib.parse.urlsplit(self.path)
        ext = urllib.parse.parse_qs(u.query).get("ext", ["0"])[0] == "1"
        chunked = not http10
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Trailer", "X-Stream-Checksum")
        else:
            # HTTP/1.0 has no chunking: the body ends when we close.
            self.close_connection = True
        self._conn_header(http10)
        self.end_headers()
        if head:
            self._log(resp.status, req_body_len, 0, chunked)
            return
        comp = zlib.compressobj(6, zlib.DEFLATED, 31) if gzip_ok else None
        crc = 0
        sent = 0
        for i, piece in enumerate(resp.stream):
            data = piece
            if comp:
                data = comp.compress(piece) + comp.flush(zlib.Z_SYNC_FLUSH)
            if not data:
                continue
            crc = zlib.crc32(data, crc)
            sent += len(data)
            if chunked:
                extstr = (";seq=%d;note=\"chunk %d\"" % (i, i)) if ext else ""
                self.wfile.write(b"%x%s\r\n%s\r\n" % (len(data), extstr.encode(), data))
            else:
                self.wfile.write(data)
        if comp:
            tail = comp.flush()
            if tail:
                crc = zlib.crc32(tail, crc)
                sent += len(tail)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(tail), tail) if chunked else tail)
        if chunked:
            self.wfile.write(b"0\r\nX-Stream-Checksum: crc32=%08x\r\n\r\n" % crc)
        self._log(resp.status, req_body_len, sent, chunked)


class Server4(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class Server6(Server4):
    address_family = socket.AF_INET6

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        super().server_bind()


def main():
    global LOG_FILE, MAX_BODY
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--log", required=True, help="access log (JSON lines), appended")
    ap.add_argument("--no-ipv6", action="store_true")
    ap.add_argument("--max-body", type=int, default=MAX_BODY)
    args = ap.parse_args()
    MAX_BODY = args.max_body
    LOG_FILE = open(args.log, "a", encoding="utf-8")

    servers = [Server4(("0.0.0.0", args.port), Handler)]
    if not args.no_ipv6:
        servers.append(Server6(("::", args.port), Handler))
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("api_server listening on port %d" % args.port, flush=True)
    stop.wait()
    for s in servers:
        s.shutdown()
        s.server_close()
    LOG_FILE.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
