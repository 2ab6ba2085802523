#!/usr/bin/env python3
"""API-mix load client for make-api-bench-capture.sh: many clients, small JSON calls.

Opens CONNS keep-alive connections spread over the source addresses given
(each address is one client machine), and sends COUNT requests in all, each
connection one at a time (send, read the whole response, next). Every client
address has its own users, each with a bearer token; a token is refreshed
now and then (POST /api/v1/auth/refresh). The mix (seeded, so the same
arguments give the same requests):

  GET    /api/v1/users/{id}                 personal data (email, phone)
  GET    /api/v1/users/{id}/orders?page=N   a page of a user's orders
  GET    /api/v1/products?category=C&page=N catalogue pages
  GET    /api/v1/products/{sku}
  GET    /api/v1/orders/{uuid}
  POST   /api/v1/orders                     JSON body, 201
  PUT    /api/v1/users/{id}/settings        JSON body
  DELETE /api/v1/carts/{id}/items/{n}       204
  POST   /api/v1/auth/refresh               a new token
  some 4xx: calls without a token (401), unknown paths (404)

Bounded in count (--count) and in time (--seconds): it stops at whichever
comes first and prints how many requests got a response.
"""

import argparse
import asyncio
import json
import random
import sys
import time
import uuid

CATEGORIES = ["books", "garden", "kitchen", "toys", "audio", "tools", "sports", "office"]


def make_request(rng, host, user, token):
    r = rng.random()
    auth = f"Authorization: Bearer {token}\r\n"
    if r < 0.02:
        auth = ""  # forgot the token: 401
    body = None
    if r < 0.22:
        m, path = "GET", f"/api/v1/users/{user}"
    elif r < 0.34:
        m, path = "GET", f"/api/v1/users/{user}/orders?page={rng.randint(1, 9)}"
    elif r < 0.52:
        m, path = "GET", f"/api/v1/products?category={rng.choice(CATEGORIES)}&page={rng.randint(1, 40)}"
    elif r < 0.64:
        m, path = "GET", f"/api/v1/products/SKU-{rng.randint(1, 5000):05d}"
    elif r < 0.74:
        m, path = "GET", f"/api/v1/orders/{uuid.UUID(int=rng.getrandbits(128), version=4)}"
    elif r < 0.84:
        m, path = "POST", "/api/v1/orders"
        items = [{"sku": f"SKU-{rng.randint(1, 5000):05d}", "qty": rng.randint(1, 4)} for _ in range(rng.randint(1, 3))]
        body = json.dumps({"items": items, "note": rng.choice(["", "leave at door", "gift, don't open"])})
    elif r < 0.91:
        m, path = "PUT", f"/api/v1/users/{user}/settings"
        body = json.dumps({"newsletter": rng.random() < 0.5, "language": rng.choice(["en", "de", "fr"])})
    elif r < 0.96:
        m, path = "DELETE", f"/api/v1/carts/{user}/items/{rng.randint(1, 20)}"
    elif r < 0.98:
        m, path = "POST", "/api/v1/auth/refresh"
        body = json.dumps({"refresh_token": f"rt-{user}-{rng.getrandbits(32):08x}"})
    else:
        m, path = "GET", rng.choice(["/api/v1/usrs/1", "/api/v2/users", "/api/v1/products/"])
    head = f"{m} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: shop-client/2.{user % 7}\r\nAccept: application/json\r\n{auth}"
    if body is not None:
        b = body.encode()
        return (head + f"Content-Type: application/json\r\nContent-Length: {len(b)}\r\n\r\n").encode() + b
    return (head + "\r\n").encode()


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    status = int(head[9:12])
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def connection(args, src, seed, budget, deadline, done):
    rng = random.Random(seed)
    users = [rng.randint(1, 200000) for _ in range(4)]
    tokens = {u: f"tok{u:06d}{rng.getrandbits(64):016x}" for u in users}
    reader, writer = await asyncio.open_connection(args.server, args.port, local_addr=(src, 0))
    try:
        while budget[0] > 0 and time.monotonic() < deadline:
            budget[0] -= 1
            u = rng.choice(users)
            if rng.random() < 0.01:
                tokens[u] = f"tok{u:06d}{rng.getrandbits(64):016x}"
            writer.write(make_request(rng, args.host, u, tokens[u]))
            await read_response(reader)
            done[0] += 1
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--port", type=int, default=80)
    ap.add_argument("--host", default="api.shop.example")
    ap.add_argument("--sources", required=True, help="comma-separated client addresses")
    ap.add_argument("--conns", type=int, default=128)
    ap.add_argument("--count", type=int, default=300000)
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    sources = args.sources.split(",")
    budget, done = [args.count], [0]
    deadline = time.monotonic() + args.seconds
    tasks = [
        connection(args, sources[i % len(sources)], args.seed * 100003 + i, budget, deadline, done)
        for i in range(args.conns)
    ]
    t = time.monotonic()
    await asyncio.gather(*tasks)
    print(f"{done[0]} responses in {time.monotonic() - t:.1f} s", file=sys.stderr)


asyncio.run(main())
