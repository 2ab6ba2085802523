#!/usr/bin/env python3
"""lab_api.py - the JSON API of the attack lab (runs behind nginx).

  lab_api.py --port 8081 [--bind 127.0.0.1] [--seed N] [--dump-users FILE]

Standard library only: http.server.ThreadingHTTPServer speaking HTTP/1.1
with keep-alive. Every response carries a Content-Length (so nginx never
has to chunk). The data set is deterministic for a seed; tokens are random.

Routes (all JSON):
  POST /api/v1/login            {"username","password"} or form-encoded
                                -> 200 {"token"} | 401 {"error":"invalid credentials"}
                                (403 instead of 401 for form-encoded bodies)
  GET  /api/v1/users/lookup?email=E   -> account for e-mail | 404 (no token needed)
  GET  /api/v1/users/{id}       ids 1..5000, ~8% deleted (404); Bearer token required
  GET  /api/v1/products?q=&limit=     search; a quote in q -> 500 "SQL syntax error"
  GET  /api/v1/products/{id}
  GET  /api/v1/orders/{uuid}    token required
  POST /api/v1/orders           token required, JSON {"product_id","quantity"}
  GET  /api/v1/export?format=csv      bulk user data (e-mails, phones); token required
  GET  /api/v1/admin/stats      admin token -> 200, other token -> 403, none -> 401
  GET  /api/v1/reports/{id}     BUG: 200 with or without a token (ids 1..300)
  POST /api/v1/webhooks         {"url"} stored, never fetched -> 201; token required
  GET  /api/v1/webhooks, DELETE /api/v1/webhooks/{id}   the caller's own hooks
  GET  /api/v1/health
  POST /api/v1/oauth/token      form: grant_type=password (username, password, client_id) or
                                grant_type=refresh_token (refresh_token); the mobile app's login.
                                Access tokens live TOKEN_TTL s; expired -> 401 invalid_token
                                (RFC 6750); a bad grant -> 400 {"error":"invalid_grant"} (RFC 6749)
  GET  /api/v1/users/search?name=     support/admin token: name search (parameterized, no SQL error)
  PATCH /api/v1/users/{id}      own record (or support/admin): name, address, company, website
  GET  /api/v1/products?page=&per_page=  catalogue pages (an empty page after the last)
  POST /api/v1/products/{id}/reviews  token: {"rating","title","text"} free text -> 201
  POST /api/v1/contact          form or JSON free text -> 202
  OPTIONS any path              CORS preflight -> 204 with Access-Control-Allow-*
plus a few non-API paths (/, /login, /robots.txt, /admin, /api) so directory
scanners find something. Anything else: 404 {"error":"not found"}.

--dump-users FILE writes the seeded login accounts and e-mail list as JSON
(used by the lab clients) and exits.
"""

import argparse
import json
import random
import re
import secrets
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FIRST = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
         "mallory", "nina", "oscar", "peggy", "quentin", "rupert", "sybil", "trent", "ursula",
         "victor", "walter", "xena", "yusuf", "zoe", "liam", "emma", "noah", "olivia", "mia", "lucas"]
LAST = ["smith", "jones", "brown", "taylor", "wilson", "davies", "evans", "thomas", "johnson",
        "roberts", "walker", "wright", "robinson", "thompson", "white", "hughes", "edwards",
        "green", "hall", "wood", "harris", "lewis", "martin", "jackson", "clarke"]
DOMAINS = ["example.com", "mail.example.org", "corp.example.net", "example.io"]
PRODUCT_WORDS = ["phone", "laptop", "cable", "charger", "case", "headphones", "speaker", "mouse",
                 "keyboard", "monitor", "camera", "tablet", "watch", "router", "drive", "adapter",
                 "lamp", "desk", "chair", "bag"]
ODD_LAST = ["O'Brien", "D'Angelo", "O'Neil", "Müller", "García-López", "N'Diaye", "Smith & Sons", "O'Hara"]
ADJ = ["basic", "pro", "mini", "max", "ultra", "lite", "classic", "smart", "wireless", "eco"]
PASSWORDS = ["Summer2023!", "correct-horse-battery", "Tr0ub4dor&3", "blue.Falcon.77", "Pa55word!x",
             "mango-river-42", "Qwerty!2024", "hunter2hunter2", "N0rthWind#", "ilovecats99",
             "Gr33nTea!", "Rocket-Launch-9", "s3cure-as-ever", "Winter#2022", "plum.Tree.81",
             "Orbit!Orbit!", "k4ng4roo-jump", "Velvet&Moon", "zebra-crossing-7", "Admin#Lab2024"]


def build_data(seed):
    rnd = random.Random(seed * 7919 + 17)
    users = {}
    for uid in range(1, 5001):
        if rnd.random() < 0.08:
            continue  # deleted account -> 404
        fn, ln = rnd.choice(FIRST), rnd.choice(LAST)
        users[uid] = {
            "id": uid, "username": "%s.%s%d" % (fn, ln, uid), "name": "%s %s" % (fn.title(), ln.title()),
            "email": "%s.%s%d@%s" % (fn, ln, uid, rnd.choice(DOMAINS)),
            "phone": "+1-555-%03d-%04d" % (rnd.randrange(1000), rnd.randrange(10000)),
            "created": "2023-%02d-%02dT%02d:%02d:00Z" % (rnd.randint(1, 12), rnd.randint(1, 28),
                                                       rnd.randrange(24), rnd.randrange(60)),
            "role": "user",
        }
    ids = sorted(users)
    # 20 real login accounts with passwords; the last one is the admin
    acct_ids = rnd.sample(ids[:2000], 20)
    accounts = {}
    for i, uid in enumerate(acct_ids):
        u = users[uid]
        if i == 19:
            u["role"] = "admin"
        elif i == 18:  # a customer support agent (looks customers up all day)
            u["role"] = "support"
        accounts[u["username"]] = {"password": PASSWORDS[i], "id": uid, "role": u["role"],
                                   "email": u["email"]}
    products = {}
    for pid in range(1, 201):
        products[pid] = {"id": pid, "name": "%s %s %d" % (rnd.choice(ADJ), rnd.choice(PRODUCT_WORDS), pid),
                         "price": round(rnd.uniform(3, 900), 2), "stock": rnd.randrange(0, 500)}
    # names with apostrophes, accents and ampersands for the support agent's searches; set after
    # every draw from rnd so the rest of the data set is the same as before for a seed
    for uid, u in users.items():
        if uid % 41 == 3:
            u["name"] = "%s %s" % (u["name"].split()[0], ODD_LAST[uid % len(ODD_LAST)])
    return users, accounts, products


class State:
    def __init__(self, seed):
        self.users, self.accounts, self.products = build_data(seed)
        self.by_email = {u["email"]: u for u in self.users.values()}
        self.tokens = {}  # token -> username
        self.expiry = {}  # token -> expiry time (OAuth access tokens only)
        self.refresh = {}  # refresh token -> username
        self.orders = {}
        self.webhooks = []
        self.hook_seq = 0
        self.lock = threading.Lock()
        self.started = time.time()
        self.hits = 0


STATE = None
TOKEN_TTL = 30  # seconds an OAuth (mobile app) access token lives; /login tokens never expire in the lab
SQL_BAD = re.compile(r"['\"`;\\]|--|/\*")


def jdump(o):
    return json.dumps(o, separators=(",", ":")).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LabAPI/1.0"
    sys_version = ""

    def log_message(self, fmt, *args):  # nginx logs; keep quiet
        pass

    # -- helpers -----------------------------------------------------------
    def send(self, status, body, ctype="application/json", extra=None):
        if isinstance(body, (dict, list)):
            body = jdump(body)
        elif isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n > 1 << 20:
            raise ValueError("body too large")
        return self.rfile.read(n) if n > 0 else b""

    def user(self):
        a = self.headers.get("Authorization", "")
        if a.startswith("Bearer "):
            tok = a[7:].strip()
            exp = STATE.expiry.get(tok)
            if exp is not None and time.time() > exp:
                return None
            return STATE.tokens.get(tok)
        return None

    def unauthorized(self):
        a = self.headers.get("Authorization", "")
        if a.startswith("Bearer ") and a[7:].strip() in STATE.expiry:
            return self.send(401, {"error": "invalid_token", "error_description": "The access token expired"},
                             extra={"WWW-Authenticate": 'Bearer error="invalid_token", '
                                                        'error_description="The access token expired"'})
        return self.send(401, {"error": "authentication required"}, extra={"WWW-Authenticate": "Bearer"})

    def role(self, who):
        return STATE.accounts[who]["role"] if who in STATE.accounts else "user"

    # -- dispatch ------------------------------------------------------------
    def do_GET(self):
        self.dispatch("GET")

    def do_HEAD(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def do_OPTIONS(self):
        self.dispatch("OPTIONS")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def dispatch(self, method):
        try:
            body = self.read_body()
        except Exception:
            self.close_connection = True
            return self.send(413, {"error": "bad body"})
        try:
            self.route(method, body)
        except Exception as e:  # never die on odd input (sqlmap, fuzzers)
            try:
                self.send(500, {"error": "internal error", "detail": type(e).__name__})
            except Exception:
                self.close_connection = True

    def route(self, method, body):
        with STATE.lock:
            STATE.hits += 1
        sp = urllib.parse.urlsplit(self.path)
        path = sp.path
        qs = urllib.parse.parse_qs(sp.query, keep_blank_values=True)
        q1 = lambda k, d="": (qs.get(k) or [d])[0]  # noqa: E731
        parts = [p for p in path.split("/") if p]

        if method == "OPTIONS":  # CORS preflight (the back office SPA is on another origin)
            origin = self.headers.get("Origin", "*")
            return self.send(204, b"", extra={
                "Access-Control-Allow-Origin": origin, "Vary": "Origin",
                "Access-Control-Allow-Methods": "GET, POST, PATCH, DELETE, OPTIONS",
                "Access-Control-Allow-Headers": "authorization, content-type, x-requested-with",
                "Access-Control-Max-Age": "600"})

        if path in ("/", "/index.html"):
            return self.send(200, "<!doctype html><title>Shop</title><h1>Shop</h1><a href=/login>login</a>",
                             "text/html")
        if path == "/login":
            return self.send(200, "<!doctype html><form method=post action=/api/v1/login>"
                                  "<input name=username><input name=password type=password></form>",
                             "text/html")
        if path == "/robots.txt":
            return self.send(200, "User-agent: *\nDisallow: /admin\nDisallow: /api/v1/export\n", "text/plain")
        if path in ("/admin", "/admin/"):
            return self.send(403, {"error": "forbidden"})
        if path in ("/api", "/api/", "/api/v1", "/api/v1/"):
            return self.send(200, {"version": "v1", "docs": "/api/v1/health"})

        if len(parts) < 3 or parts[0] != "api" or parts[1] != "v1":
            return self.send(404, {"error": "not found"})
        res = parts[2:]

        if res == ["health"]:
            return self.send(200, {"status": "ok", "uptime": round(time.time() - STATE.started, 1)})

        if res == ["oauth", "token"]:
            if method != "POST":
                return self.send(405, {"error": "method not allowed"}, extra={"Allow": "POST"})
            f = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode("utf-8", "replace")).items()}
            g = f.get("grant_type")
            who = None
            if g == "password":
                acct = STATE.accounts.get(f.get("username", ""))
                if acct and f.get("password") == acct["password"]:
                    who = f["username"]
                else:
                    time.sleep(0.02)
            elif g == "refresh_token":
                with STATE.lock:
                    who = STATE.refresh.pop(f.get("refresh_token", ""), None)
            else:
                return self.send(400, {"error": "unsupported_grant_type"})
            if not who:
                return self.send(400, {"error": "invalid_grant"})
            tok, rt = secrets.token_hex(20), secrets.token_hex(24)
            with STATE.lock:
                STATE.tokens[tok] = who
                STATE.expiry[tok] = time.time() + TOKEN_TTL
                STATE.refresh[rt] = who
            return self.send(200, {"access_token": tok, "token_type": "Bearer", "expires_in": TOKEN_TTL,
                                   "refresh_token": rt, "user_id": STATE.accounts[who]["id"]})

        if res == ["login"]:
            if method != "POST":
                return self.send(405, {"error": "method not allowed"}, extra={"Allow": "POST"})
            ct = self.headers.get("Content-Type", "")
            creds = {}
            try:
                if "json" in ct:
                    creds = json.loads(body or b"{}")
                else:
                    creds = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode("utf-8", "replace")).items()}
            except Exception:
                return self.send(400, {"error": "malformed body"})
            if not isinstance(creds, dict):
                return self.send(400, {"error": "malformed body"})
            u, p = creds.get("username"), creds.get("password")
            acct = STATE.accounts.get(u) if isinstance(u, str) else None
            if acct and isinstance(p, str) and p == acct["password"]:
                tok = secrets.token_hex(20)
                with STATE.lock:
                    STATE.tokens[tok] = u
                return self.send(200, {"token": tok, "user_id": acct["id"], "expires_in": 3600})
            time.sleep(0.02)
            if "json" in ct:
                return self.send(401, {"error": "invalid credentials"})
            # form posts (HTML login form, hydra http-post-form) get 403: hydra
            # refuses to treat a 401 as a form failure ("target is using HTTP auth")
            return self.send(403, {"error": "invalid credentials"})

        if res[0] == "users":
            if res == ["users", "lookup"]:
                email = q1("email").strip().lower()
                u = STATE.by_email.get(email)
                if not u:
                    return self.send(404, {"error": "no account for this email"})
                return self.send(200, {"id": u["id"], "username": u["username"], "name": u["name"]})
            if res == ["users", "search"]:
                who = self.user()
                if not who:
                    return self.unauthorized()
                if self.role(who) not in ("support", "admin"):
                    return self.send(403, {"error": "support staff only"})
                name = q1("name").strip().lower()
                hits = [{"id": u["id"], "name": u["name"], "email": u["email"]}
                        for u in STATE.users.values() if name and name in u["name"].lower()][:20]
                return self.send(200, {"count": len(hits), "items": hits})
            if len(res) == 2:
                who = self.user()
                if not who:
                    return self.unauthorized()
                try:
                    uid = int(res[1])
                except ValueError:
                    return self.send(400, {"error": "bad id"})
                u = STATE.users.get(uid)
                if not u:
                    return self.send(404, {"error": "user not found"})
                if method == "PATCH":
                    if uid != STATE.accounts[who]["id"] and self.role(who) not in ("support", "admin"):
                        return self.send(403, {"error": "not your account"})
                    try:
                        ch = json.loads(body or b"{}")
                        assert isinstance(ch, dict)
                    except Exception:
                        return self.send(400, {"error": "bad body"})
                    with STATE.lock:
                        for k in ("name", "address", "company", "website", "note"):
                            if isinstance(ch.get(k), str):
                                u[k] = ch[k][:200]
                    return self.send(200, u)
                return self.send(200, u)  # BOLA: any user's record, not just one's own
            return self.send(404, {"error": "not found"})

        if res[0] == "products":
            if len(res) == 1:
                q = q1("q")
                if SQL_BAD.search(q):
                    return self.send(500, {"error": "database error",
                                           "detail": "You have an error in your SQL syntax; check the manual that "
                                                     "corresponds to your MySQL server version for the right "
                                                     "syntax to use near '%s' at line 1" % q[:60]})
                try:
                    limit = max(1, min(50, int(q1("limit", "10"))))
                    page = int(q1("page", "0"))
                    per_page = max(1, min(50, int(q1("per_page", "20"))))
                except ValueError:
                    return self.send(400, {"error": "bad limit"})
                ql = q.lower()
                if page > 0:  # catalogue pages, with an absolute next link like many APIs
                    allp = [p for p in STATE.products.values() if ql in p["name"]]
                    items = allp[(page - 1) * per_page: page * per_page]
                    nxt = None
                    if page * per_page < len(allp):
                        nxt = "http://%s/api/v1/products?page=%d&per_page=%d" % (
                            self.headers.get("Host", "localhost"), page + 1, per_page)
                    return self.send(200, {"page": page, "per_page": per_page, "total": len(allp),
                                           "count": len(items), "items": items, "next": nxt})
                items = [p for p in STATE.products.values() if ql in p["name"]][:limit]
                return self.send(200, {"count": len(items), "items": items})
            if len(res) == 3 and res[2] == "reviews":
                if method != "POST":
                    return self.send(405, {"error": "method not allowed"})
                if not self.user():
                    return self.unauthorized()
                try:
                    rv = json.loads(body or b"{}")
                    assert isinstance(rv, dict) and isinstance(rv.get("text"), str)
                except Exception:
                    return self.send(400, {"error": "text required"})
                return self.send(201, {"id": secrets.randbelow(10 ** 6), "status": "pending moderation"})
            if len(res) == 2:
                try:
                    pid = int(res[1])
                except ValueError:
                    return self.send(400, {"error": "bad id"})
                p = STATE.products.get(pid)
                return self.send(200, p) if p else self.send(404, {"error": "product not found"})
            return self.send(404, {"error": "not found"})

        if res == ["contact"]:
            if method != "POST":
                return self.send(405, {"error": "method not allowed"})
            return self.send(202, {"status": "received", "ticket": secrets.randbelow(10 ** 6)})

        if res[0] == "orders":
            who = self.user()
            if not who:
                return self.unauthorized()
            if len(res) == 1 and method == "POST":
                try:
                    o = json.loads(body or b"{}")
                    pid, qty = int(o["product_id"]), int(o.get("quantity", 1))
                except Exception:
                    return self.send(400, {"error": "bad order"})
                if pid not in STATE.products or not 0 < qty < 100:
                    return self.send(422, {"error": "invalid product or quantity"})
                oid = str(uuid.uuid4())
                order = {"id": oid, "user": who, "product_id": pid, "quantity": qty,
                         "total": round(STATE.products[pid]["price"] * qty, 2), "status": "placed"}
                if isinstance(o.get("callback_url"), str):
                    order["callback_url"] = o["callback_url"][:300]  # stored only; never fetched
                with STATE.lock:
                    STATE.orders[oid] = order
                return self.send(201, order, extra={"Location": "/api/v1/orders/" + oid})
            if len(res) == 2 and method == "GET":
                o = STATE.orders.get(res[1])
                return self.send(200, o) if o else self.send(404, {"error": "order not found"})
            return self.send(405, {"error": "method not allowed"})

        if res == ["export"]:
            if not self.user():
                return self.send(401, {"error": "authentication required"})
            fmt = q1("format", "csv")
            rows = [u for uid, u in sorted(STATE.users.items()) if uid <= 220]
            if fmt == "json":
                return self.send(200, rows)
            out = ["id,name,email,phone,created"] + [
                "%d,%s,%s,%s,%s" % (u["id"], u["name"], u["email"], u["phone"], u["created"]) for u in rows]
            return self.send(200, "\n".join(out) + "\n", "text/csv",
                             extra={"Content-Disposition": "attachment; filename=users.csv"})

        if res == ["admin", "stats"]:
            who = self.user()
            if not who:
                return self.send(401, {"error": "authentication required"})
            if STATE.accounts[who]["role"] != "admin":
                return self.send(403, {"error": "admin only"})
            return self.send(200, {"users": len(STATE.users), "orders": len(STATE.orders),
                                   "webhooks": len(STATE.webhooks), "requests": STATE.hits,
                                   "sessions": len(STATE.tokens)})

        if res[0] == "reports" and len(res) == 2:
            # auth bug: the token is never checked
            try:
                rid = int(res[1])
            except ValueError:
                return self.send(400, {"error": "bad id"})
            if not 1 <= rid <= 300:
                return self.send(404, {"error": "report not found"})
            r = random.Random(rid)
            return self.send(200, {"id": rid, "title": "Quarterly report %d" % rid,
                                   "revenue": r.randrange(10 ** 5, 10 ** 7),
                                   "customers": [STATE.users[u]["email"] for u in
                                                 r.sample(sorted(STATE.users), 3)]})

        if res[0] == "webhooks" and len(res) == 2 and method == "DELETE":
            who = self.user()
            if not who:
                return self.unauthorized()
            with STATE.lock:
                n = len(STATE.webhooks)
                STATE.webhooks = [h for h in STATE.webhooks if not (str(h["id"]) == res[1] and h.get("owner") == who)]
                gone = n != len(STATE.webhooks)
            return self.send(204, b"") if gone else self.send(404, {"error": "webhook not found"})
        if res == ["webhooks"] and method == "GET":
            who = self.user()
            if not who:
                return self.unauthorized()
            return self.send(200, [h for h in STATE.webhooks if h.get("owner") == who])
        if res == ["webhooks"]:
            if method != "POST":
                return self.send(405, {"error": "method not allowed"})
            if not self.user():
                return self.unauthorized()
            try:
                url = json.loads(body or b"{}")["url"]
                assert isinstance(url, str)
            except Exception:
                return self.send(400, {"error": "url required"})
            # stored only; never fetched
            with STATE.lock:
                STATE.hook_seq += 1
                hook = {"id": STATE.hook_seq, "url": url, "active": True, "owner": self.user()}
                STATE.webhooks.append(hook)
            return self.send(201, hook)

        return self.send(404, {"error": "not found"})


def main():
    global STATE
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8081)
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dump-users")
    a = ap.parse_args()
    STATE = State(a.seed)
    if a.dump_users:
        emails = [u["email"] for u in STATE.users.values()]
        json.dump({"accounts": STATE.accounts, "emails": emails, "user_ids": sorted(STATE.users),
                   "names": {str(k): u["name"] for k, u in STATE.users.items()}}, open(a.dump_users, "w"))
        return
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 256
    srv = ThreadingHTTPServer((a.bind, a.port), Handler)
    print("lab_api listening on %s:%d" % (a.bind, a.port), flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
