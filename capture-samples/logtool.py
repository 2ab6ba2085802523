#!/usr/bin/env python3
"""Turn the raw server access logs into ground-truth NAME.access.jsonl files.

  logtool.py merge OUT [--nginx RAW] [--api RAW] [--chunked-sizes JSON]
                       [--exclude JSON]
  logtool.py count FILE [--expect N | --min N]

Output: one JSON object per served request, ordered by the time the server
logged it (two servers are merged by log timestamp; ties keep file order),
with exactly these keys, in this order:

  client_ip, client_port, server_ip, server_port, method, uri, protocol,
  status, req_body_bytes, resp_body_bytes, chunked

nginx mapping:
  uri             = $request_uri (request target as sent)
  req_body_bytes  = $content_length (0 if absent); a chunked request body
                    to nginx is rejected here, we never send one
  resp_body_bytes = $body_bytes_sent when the response was not chunked.
                    When it was chunked (on-the-fly gzip), $body_bytes_sent
                    includes the chunk framing, so the de-chunked size must
                    be given by --chunked-sizes {"uri": bytes} (measured by
                    curl saving the still-compressed body); missing => error
  chunked         = ($sent_http_transfer_encoding == "chunked")
The API server (api_server.py) already logs the exact values.

--exclude: [{"client_port": p, "uri": u}, ...] entries to drop (one log line
per item); used for requests sent before a capture started (midstream).
"""

import argparse
import json
import sys

KEYS = ["client_ip", "client_port", "server_ip", "server_port", "method", "uri",
        "protocol", "status", "req_body_bytes", "resp_body_bytes", "chunked"]


def load(path):
    out = []
    if not path:
        return out
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except ValueError as e:
                    sys.exit("logtool: %s:%d: %s" % (path, n, e))
    return out


def from_nginx(e, sizes):
    chunked = e["te"].lower() == "chunked"
    if "chunked" in e.get("req_te", "").lower():
        sys.exit("logtool: chunked request body to nginx is not supported: %s" % e["uri"])
    body = e["body_bytes_sent"]
    if chunked and e["method"] != "HEAD":
        if e["uri"] not in sizes:
            sys.exit("logtool: nginx sent a chunked response for %s but no de-chunked size "
                     "is known (pass it with --chunked-sizes)" % e["uri"])
        body = sizes[e["uri"]]
    return {
        "client_ip": e["client_ip"], "client_port": int(e["client_port"]),
        "server_ip": e["server_ip"], "server_port": int(e["server_port"]),
        "method": e["method"], "uri": e["uri"], "protocol": e["protocol"],
        "status": int(e["status"]),
        "req_body_bytes": int(e["content_length"] or 0),
        "resp_body_bytes": int(body), "chunked": chunked,
    }


def from_api(e):
    return {k: e[k] for k in KEYS}


def cmd_merge(a):
    sizes = {}
    if a.chunked_sizes:
        with open(a.chunked_sizes) as f:
            sizes = json.load(f)
    rows = [(e["ts"], 0, i, from_nginx(e, sizes)) for i, e in enumerate(load(a.nginx))]
    rows += [(e["ts"], 1, i, from_api(e)) for i, e in enumerate(load(a.api))]
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    out = [r[3] for r in rows]
    if a.exclude:
        with open(a.exclude) as f:
            excl = json.load(f)
        for x in excl:
            for i, e in enumerate(out):
                if e["client_port"] == x["client_port"] and e["uri"] == x["uri"]:
                    del out[i]
                    break
            else:
                sys.exit("logtool: exclude entry not found in log: %r" % x)
    with open(a.out, "w", encoding="utf-8") as f:
        for e in out:
            f.write(json.dumps({k: e[k] for k in KEYS}) + "\n")
    print("%s: %d transactions" % (a.out, len(out)))


def cmd_count(a):
    n = len(load(a.file))
    if a.expect is not None and n != a.expect:
        sys.exit("logtool: %s has %d transactions, expected %d" % (a.file, n, a.expect))
    if a.min is not None and n < a.min:
        sys.exit("logtool: %s has %d transactions, expected at least %d" % (a.file, n, a.min))
    print(n)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sp = ap.add_subparsers(dest="cmd", required=True)
    p = sp.add_parser("merge")
    p.add_argument("out")
    p.add_argument("--nginx")
    p.add_argument("--api")
    p.add_argument("--chunked-sizes")
    p.add_argument("--exclude")
    p = sp.add_parser("count")
    p.add_argument("file")
    p.add_argument("--expect", type=int)
    p.add_argument("--min", type=int)
    a = ap.parse_args()
    {"merge": cmd_merge, "count": cmd_count}[a.cmd](a)


if __name__ == "__main__":
    main()
