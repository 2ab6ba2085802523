#!/usr/bin/env python3
"""Python HTTP clients (and the document-root generator) used by
make-samples.sh / make-bench-capture.sh. Standard library only.

Subcommands
  www DIR                 write the nginx document root (deterministic)
  keepalive HOST          http.client reusing one connection per server
  pipelined HOST          several requests written with ONE send() per batch
  chunked-upload HOST     raw chunked request bodies with extensions + trailers
  expect-nowait HOST      Expect: 100-continue with the body sent at once
  upload HOST             ~1 MB uploads with Content-Length via http.client
  mixed HOST              seeded mix of logins/users/orders/products
  midstream HOST          keep-alive conversation that waits for the capture
                          to start in the middle (see --ready/--go/--exclude)

Every client checks each response status it expects and exits non-zero on a
surprise, so a broken sample run fails loudly.
"""

import argparse
import gzip
import hashlib
import http.client
import json
import os
import random
import socket
import sys
import time

API_PORT = 8080
FIXED_MTIME = 1700000000  # Tue, 14 Nov 2023 22:13:20 GMT: stable Last-Modified/ETag


def fail(msg):
    print("clients.py: " + msg, file=sys.stderr)
    sys.exit(1)


# ---------------------------------------------------------------------------
# Document root

def text_blob(rng, size, words):
    out, n = [], 0
    while n < size:
        w = rng.choice(words)
        out.append(w)
        n += len(w) + 1
    return (" ".join(out))[:size]


def cmd_www(a):
    rng = random.Random(1234)
    root = a.dir
    words = ["alpha", "beta", "gamma", "delta", "http", "tcp", "packet", "sensor",
             "latency", "request", "response", "header", "body", "chunk", "gzip"]
    files = {}
    links = "".join('<li><a href="/static/%s">%s</a></li>\n' % (n, n) for n in
                    ["small.txt", "data-4k.json", "style-16k.css", "app-64k.js", "logo.svg",
                     "blob-256k.bin", "blob-1m.bin"])
    html = ("<!doctype html>\n<html><head><title>apitap sample site</title>"
            '<link rel="stylesheet" href="/static/style-16k.css"></head>\n<body>\n'
            "<h1>apitap sample site</h1>\n<ul>\n%s</ul>\n<p>%s</p>\n</body></html>\n"
            % (links, text_blob(rng, 1500, words)))
    files["index.html"] = html.encode()
    files["static/tiny.txt"] = b"tiny file, below gzip_min_length\n"
    files["static/small.txt"] = (text_blob(rng, 511, words) + "\n").encode()
    files["static/data-4k.json"] = json.dumps(
        [{"id": i, "word": rng.choice(words), "v": rng.random()} for i in range(80)]
    ).encode()[:4096].ljust(4096, b" ")
    css = "".join(".c%d { color: #%06x; margin: %dpx; }\n" % (i, rng.randrange(1 << 24), i % 17)
                  for i in range(600))
    files["static/style-16k.css"] = css.encode()[:16384]
    js = "".join("function f%d(a, b) { return a * %d + b; /* %s */ }\n"
                 % (i, i, rng.choice(words)) for i in range(1500))
    files["static/app-64k.js"] = js.encode()[:65536]
    # precompressed twin: served by gzip_static with a Content-Length
    files["static/app-64k.js.gz"] = gzip.compress(files["static/app-64k.js"], 9, mtime=0)
    svg = '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">%s</svg>\n' % "".join(
        '<circle cx="%d" cy="%d" r="%d"/>' % (rng.randrange(64), rng.randrange(64), rng.randrange(9))
        for _ in range(100))
    files["static/logo.svg"] = svg.encode()
    files["static/blob-256k.bin"] = rng.randbytes(256 * 1024)
    files["static/blob-1m.bin"] = rng.randbytes(1024 * 1024)
    files["nochunk/data-8k.json"] = json.dumps(
        [{"n": i, "w": rng.choice(words)} for i in range(400)]).encode()[:8192]
    # benchmark objects, 512 B .. 1 MiB (mostly text so gzip has work too)
    for kb in ["0.5", "1", "2", "4", "8", "16", "32", "64", "128", "256", "512", "1024"]:
        size = int(float(kb) * 1024)
        files["bench/f-%sk.json" % kb] = text_blob(rng, size, words).encode()
        files["bench/f-%sk.bin" % kb] = rng.randbytes(size)
    for rel, data in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        os.utime(path, (FIXED_MTIME, FIXED_MTIME))


# ---------------------------------------------------------------------------
# helpers

def conn(host, port):
    return http.client.HTTPConnection(host, port, timeout=20)


def do(c, method, url, body=None, headers=None, expect=200):
    c.request(method, url, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    if expect is not None and r.status != expect:
        fail("%s %s -> %d (expected %d)" % (method, url, r.status, expect))
    return r, data


def read_until_close(s):
    s.settimeout(20)
    out = bytearray()
    while True:
        b = s.recv(65536)
        if not b:
            return bytes(out)
        out += b


def connect(host, port, rcvbuf=None):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(20)
    s.connect((host, port))
    return s


def hosthdr(host, port):
    h = "[%s]" % host if ":" in host else host
    return h if port == 80 else "%s:%d" % (h, port)


# ---------------------------------------------------------------------------

def cmd_keepalive(a):
    """One connection to nginx and one to the API, each reused for many
    requests (http.client keeps the socket open between requests)."""
    n = conn(a.host, 80)
    r, _ = do(n, "GET", "/index.html")
    etag, lm = r.getheader("ETag"), r.getheader("Last-Modified")
    do(n, "GET", "/static/small.txt")
    do(n, "GET", "/static/data-4k.json?v=2&lang=en")
    do(n, "GET", "/static/logo.svg")
    do(n, "GET", "/index.html", headers={"If-None-Match": etag}, expect=304)
    do(n, "GET", "/static/tiny.txt", headers={"If-Modified-Since": lm}, expect=304)
    do(n, "GET", "/no/such/page", expect=404)
    do(n, "GET", "/static/style-16k.css")            # identity: Content-Length
    do(n, "GET", "/static/app-64k.js")
    do(n, "GET", "/static/blob-256k.bin", headers={"Range": "bytes=0-999"}, expect=206)
    do(n, "HEAD", "/static/blob-256k.bin")
    do(n, "GET", "/nocontent", expect=204)
    do(n, "GET", "/old-home", expect=302)
    n.close()

    api = conn(a.host, API_PORT)
    do(api, "GET", "/api/health")
    do(api, "POST", "/api/login", json.dumps({"username": "alice", "password": "hunter2"}),
       {"Content-Type": "application/json"})
    do(api, "POST", "/api/login", json.dumps({"username": "mallory", "password": "guess"}),
       {"Content-Type": "application/json"}, expect=401)
    for uid in (1, 7, 42, 99999):
        do(api, "GET", "/api/users/%d" % uid)
    do(api, "GET", "/api/users/0", expect=404)
    r, body = do(api, "POST", "/api/orders",
                 json.dumps({"items": [{"sku": "SKU-00001", "qty": 2}]}),
                 {"Content-Type": "application/json"}, expect=201)
    loc = r.getheader("Location")
    do(api, "GET", loc)
    do(api, "GET", "/api/products?q=bolt&limit=5")
    do(api, "GET", "/api/products?q=lamp%20switch&limit=3&sort=-price")
    do(api, "DELETE", loc, expect=204)
    do(api, "GET", "/api/nope", expect=404)
    api.close()


def cmd_pipelined(a):
    """Pipelining: each batch is written with a single sendall() before any
    response is read; the last request of a batch says Connection: close and
    the client reads until the server closes."""
    def batch(port, reqs):
        s = connect(a.host, port)
        wire = b"".join(reqs)
        s.sendall(wire)
        data = read_until_close(s)
        s.close()
        got = data.count(b"HTTP/1.1 ")
        if got < len(reqs):
            fail("pipelined batch to port %d: %d responses for %d requests"
                 % (port, got, len(reqs)))
        return len(wire)

    h80 = hosthdr(a.host, 80)

    def get(path, host, close=False):
        return ("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: apitap-pipeline/1\r\n%s\r\n"
                % (path, host, "Connection: close\r\n" if close else "")).encode()

    # batch 1: 5 small GETs to nginx, all in one TCP segment
    paths = ["/index.html", "/static/tiny.txt", "/static/small.txt", "/static/data-4k.json",
             "/no/such/file"]
    batch(80, [get(p, h80, i == len(paths) - 1) for i, p in enumerate(paths)])
    # batch 2: 14 GETs (~2.4 KB) in one send(): spans two TCP segments, one
    # request is cut by the segment boundary
    paths = ["/static/tiny.txt?i=%d&pad=%s" % (i, "p" * 60) for i in range(13)] + ["/index.html"]
    n = batch(80, [get(p, h80, i == len(paths) - 1) for i, p in enumerate(paths)])
    if n <= 1448:
        fail("batch 2 should exceed one segment")
    # batch 3: API, GETs and POSTs with bodies, one send()
    h = hosthdr(a.host, API_PORT)
    login = json.dumps({"username": "bob", "password": "hunter2"}).encode()
    order = json.dumps({"items": [{"sku": "SKU-00042", "qty": 1}]}).encode()
    reqs = [get("/api/users/5", h),
            b"POST /api/login HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (h.encode(), len(login), login),
            get("/api/products?q=gizmo&limit=2", h),
            b"POST /api/orders HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (h.encode(), len(order), order),
            get("/api/users/6", h, close=True)]
    batch(API_PORT, reqs)


def cmd_chunked_upload(a):
    """Chunked request bodies written by hand: chunk extensions, a trailer,
    then a second request on the same connection."""
    h = hosthdr(a.host, API_PORT).encode()
    rng = random.Random(7)
    body = rng.randbytes(3000)
    chunks = [body[:1000], body[1000:1001], body[1001:2500], body[2500:]]
    wire = bytearray(b"POST /api/upload HTTP/1.1\r\nHost: " + h +
                     b"\r\nContent-Type: application/octet-stream\r\n"
                     b"Transfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n")
    s = connect(a.host, API_PORT)
    s.sendall(bytes(wire))
    for i, c in enumerate(chunks):
        ext = b";idx=%d" % i if i % 2 == 0 else b""
        s.sendall(b"%X%s\r\n%s\r\n" % (len(c), ext, c))   # upper-case hex on purpose
        time.sleep(0.02)
    s.sendall(b"0\r\nX-Checksum: sha256=%s\r\n\r\n" % hashlib.sha256(body).hexdigest().encode())
    s.sendall(b"GET /api/health HTTP/1.1\r\nHost: " + h + b"\r\nConnection: close\r\n\r\n")
    data = read_until_close(s)
    if hashlib.sha256(body).hexdigest().encode() not in data:
        fail("chunked upload: server did not echo the right digest")
    s.close()


def cmd_expect_nowait(a):
    """`Expect: 100-continue` from a client that does not wait: headers and
    body leave in one send(), so the server's 100 Continue arrives after the
    whole body; then the final 200. One request, Connection: close."""
    body = random.Random(11).randbytes(5000)
    s = connect(a.host, API_PORT)
    s.sendall(b"POST /api/upload?nowait=1 HTTP/1.1\r\nHost: %s\r\nExpect: 100-continue\r\n"
              b"Content-Type: application/octet-stream\r\nContent-Length: %d\r\n"
              b"Connection: close\r\n\r\n%s" % (hosthdr(a.host, API_PORT).encode(), len(body), body))
    data = read_until_close(s)
    s.close()
    if not data.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 "):
        fail("expect-nowait: unexpected answer %r" % data[:60])


def cmd_upload(a):
    """1 MiB POST with Content-Length (http.client never sends Expect), then
    a 700 KiB chunked upload (http.client chunking) on the same connection."""
    rng = random.Random(99)
    c = conn(a.host, API_PORT)
    for size in (1024 * 1024,):
        body = rng.randbytes(size)
        _, resp = do(c, "POST", "/api/upload?name=blob%d" % size, body,
                     {"Content-Type": "application/octet-stream"})
        if json.loads(resp)["bytes"] != size:
            fail("upload size mismatch")
    body = rng.randbytes(700 * 1024)

    def pieces():
        for i in range(0, len(body), 64 * 1024):
            yield body[i:i + 64 * 1024]
    c.request("POST", "/api/upload?name=chunked", body=pieces(),
              headers={"Content-Type": "application/octet-stream"}, encode_chunked=True)
    r = c.getresponse()
    if json.loads(r.read())["bytes"] != len(body):
        fail("chunked upload size mismatch")
    c.close()


def cmd_mixed(a):
    """Seeded random API workload over two keep-alive connections."""
    rng = random.Random(a.seed)
    conns = [conn(a.host, API_PORT), conn(a.host, API_PORT)]
    orders = []
    for i in range(a.n):
        c = rng.choice(conns)
        op = rng.random()
        js = {"Content-Type": "application/json"}
        if op < 0.15:
            good = rng.random() < 0.7
            do(c, "POST", "/api/login", json.dumps({
                "username": "user%d" % rng.randint(1, 50),
                "password": "hunter2" if good else "wrong%d" % i}), js,
               expect=200 if good else 401)
        elif op < 0.45:
            uid = rng.choice([rng.randint(1, 1000), 0, 123456]) if rng.random() < 0.2 \
                else rng.randint(1, 1000)
            do(c, "GET", "/api/users/%d" % uid, expect=200 if 0 < uid <= 100000 else 404)
        elif op < 0.60:
            r, _ = do(c, "POST", "/api/orders", json.dumps({
                "items": [{"sku": "SKU-%05d" % rng.randint(0, 99999),
                           "qty": rng.randint(1, 9)} for _ in range(rng.randint(1, 3))],
                "note": "order %d" % i}), js, expect=201)
            orders.append(r.getheader("Location"))
        elif op < 0.72 and orders:
            do(c, "GET", rng.choice(orders))
        elif op < 0.78 and orders:
            do(c, "DELETE", orders.pop(rng.randrange(len(orders))), expect=204)
        elif op < 0.93:
            q = rng.choice(["bolt", "lamp", "widget", "sensor", "", "nut"])
            hdrs = {"Accept-Encoding": "gzip"} if rng.random() < 0.5 else {}
            do(c, "GET", "/api/products?q=%s&limit=%d" % (q, rng.randint(1, 40)), headers=hdrs)
        else:
            do(c, "GET", "/api/v0/legacy/%d" % i, expect=404)
    for c in conns:
        c.close()


def cmd_midstream(a):
    """Runs a conversation in two parts. Part 1 happens before the capture
    starts; then the client writes --ready and waits for the --go file, and
    part 2 happens while tcpdump is running. Requests sent in part 1 are
    written to --exclude as [{"client_port":..,"uri":..}] so logtool.py can
    drop them from the ground truth.

      conn A (SO_RCVBUF 8 KiB): 2 requests, then GET /api/big?kb=512 of which
             it reads only 32 KiB before the capture starts (the rest of the
             response is still in flight / queued at the server); after 'go'
             it reads the remainder slowly and sends 3 more requests.
      conn B: 1 request, idle across the capture start, then 2 more.
      conn C: opened after the capture started (has a SYN), 1 request.
    """
    pre = []
    h = hosthdr(a.host, API_PORT).encode()

    def send_req(s, method, path, body=b""):
        hdr = b"%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: apitap-midstream/1\r\n" % (
            method.encode(), path.encode(), h)
        if body:
            hdr += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        s.sendall(hdr + b"\r\n" + body)

    def recv_more(s, buf, slow=False):
        b = s.recv(16384 if slow else 65536)
        if not b:
            fail("midstream: connection closed early")
        buf += b
        if slow:
            time.sleep(0.002)

    def readline(s, buf):
        while b"\r\n" not in buf:
            recv_more(s, buf)
        line, _, rest = bytes(buf).partition(b"\r\n")
        buf[:] = rest
        return line

    def read_resp(s, buf, slow=False):
        """Minimal response reader (Content-Length or chunked)."""
        while b"\r\n\r\n" not in buf:
            recv_more(s, buf)
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        buf[:] = rest
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        hd = {k.strip().lower(): v.strip() for k, _, v in
              (ln.partition(b":") for ln in lines[1:])}
        if b"content-length" in hd:
            n = int(hd[b"content-length"])
            while len(buf) < n:
                recv_more(s, buf, slow)
            del buf[:n]
        elif hd.get(b"transfer-encoding") == b"chunked":
            while True:
                size = int(readline(s, buf).split(b";")[0], 16)
                if size == 0:
                    while readline(s, buf):
                        pass  # trailer fields, then the empty line
                    break
                while len(buf) < size + 2:
                    recv_more(s, buf)
                del buf[:size + 2]
        return status

    def req(s, buf, name, method, path, body=b"", record=False, expect=200):
        send_req(s, method, path, body)
        if record:
            pre.append({"client_port": s.getsockname()[1], "uri": path})
        st = read_resp(s, buf)
        if st != expect:
            fail("midstream %s %s -> %d" % (name, path, st))

    A = connect(a.host, API_PORT, rcvbuf=8192)
    bufA = bytearray()
    B = connect(a.host, API_PORT)
    bufB = bytearray()
    req(A, bufA, "A", "GET", "/api/users/11", record=True)
    req(A, bufA, "A", "GET", "/api/products?q=bolt&limit=3", record=True)
    req(B, bufB, "B", "GET", "/api/health", record=True)
    send_req(A, "GET", "/api/big?kb=512")
    pre.append({"client_port": A.getsockname()[1], "uri": "/api/big?kb=512"})
    while len(bufA) < 32 * 1024:
        bufA += A.recv(4096)
    with open(a.exclude, "w") as f:
        json.dump(pre, f, indent=1)
    open(a.ready, "w").close()
    deadline = time.time() + 30
    while not os.path.exists(a.go):
        if time.time() > deadline:
            fail("midstream: no go signal")
        time.sleep(0.05)
    # part 2 (captured)
    st = read_resp(A, bufA, slow=True)   # finishes the big response, slowly
    if st != 200:
        fail("midstream big -> %d" % st)
    req(B, bufB, "B", "GET", "/api/users/12")
    req(A, bufA, "A", "GET", "/api/users/13")
    req(A, bufA, "A", "POST", "/api/login",
        json.dumps({"username": "carol", "password": "hunter2"}).encode())
    req(B, bufB, "B", "GET", "/api/stream?n=4&delay=5")
    Cc = connect(a.host, API_PORT)
    req(Cc, bytearray(), "C", "GET", "/api/users/14")
    req(A, bufA, "A", "GET", "/api/orders/0b7c7e6e-2f0a-4f43-9d4c-1c1f8a3e9e01")
    for s in (A, B, Cc):
        s.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sp = ap.add_subparsers(dest="cmd", required=True)
    p = sp.add_parser("www")
    p.add_argument("dir")
    for name in ("keepalive", "pipelined", "chunked-upload", "expect-nowait", "upload", "mixed",
                 "midstream"):
        p = sp.add_parser(name)
        p.add_argument("host")
        if name == "mixed":
            p.add_argument("--seed", type=int, default=1)
            p.add_argument("-n", type=int, default=80)
        if name == "midstream":
            p.add_argument("--ready", required=True)
            p.add_argument("--go", required=True)
            p.add_argument("--exclude", required=True)
    a = ap.parse_args()
    {"www": cmd_www, "keepalive": cmd_keepalive, "pipelined": cmd_pipelined,
     "chunked-upload": cmd_chunked_upload, "expect-nowait": cmd_expect_nowait,
     "upload": cmd_upload, "mixed": cmd_mixed,
     "midstream": cmd_midstream}[a.cmd](a)


if __name__ == "__main__":
    main()
