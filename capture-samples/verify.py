#!/usr/bin/env python3
"""Independent cross-check of a capture against its ground-truth log: a tiny
reference decoder (standard library only) that unwraps VLAN/QinQ, GRE,
ERSPAN II/III, VXLAN, GTP-U, Teredo, AYIYA, GRE in UDP, LLC/SNAP and 802.11
(plain or radiotap), strips SOCKS4/4a/5 handshakes, reassembles TCP (sorting by sequence number,
dropping duplicates), parses HTTP/1.x (Content-Length, chunked, HEAD,
1xx, 204/304, close-delimited bodies) and compares the transactions it finds
with NAME.access.jsonl as a multiset.

  verify.py CAPTURE [LOG]        exit 1 on any difference

make-samples.sh runs it on every lossless capture, so a ground-truth file
that does not describe its capture is caught at build time. It is not meant
for impaired, truncated or mid-stream captures.
"""

import collections
import ipaddress
import json
import os
import struct
import sys

from pcaplib import LINKTYPE_ETHERNET, read_any, strip_l2

KEYS = ["client_ip", "client_port", "server_ip", "server_port", "method", "uri",
        "protocol", "status", "req_body_bytes", "resp_body_bytes", "chunked"]
SERVER_PORTS = {80, 8080}


def unwrap(et, l3, depth=0):
    """(ethertype, packet) after removing GRE / ERSPAN / VXLAN wrappers."""
    if depth > 4 or et != 0x0800 or len(l3) < 20:
        return et, l3
    ihl = (l3[0] & 0x0F) * 4
    total = struct.unpack("!H", l3[2:4])[0]
    proto, pay = l3[9], l3[ihl:total]
    if proto == 47 and len(pay) >= 4:  # GRE
        flags, ptype = struct.unpack("!HH", pay[:4])
        off = 4 + 4 * bool(flags & 0x8000) + 4 * bool(flags & 0x2000) + 4 * bool(flags & 0x1000)
        inner = pay[off:]
        if ptype == 0x88BE:
            inner = inner[8:]
        elif ptype == 0x22EB:
            inner = inner[12 + (8 if inner[11] & 1 else 0):]
        elif ptype in (0x0800, 0x86DD):
            return unwrap(ptype, inner, depth + 1)
        elif ptype != 0x6558:
            return et, l3
        return unwrap(*strip_l2(LINKTYPE_ETHERNET, inner), depth + 1)
    if proto == 17 and len(pay) >= 16 and struct.unpack("!H", pay[2:4])[0] == 4789:
        return unwrap(*strip_l2(LINKTYPE_ETHERNET, pay[16:]), depth + 1)
    if proto == 17 and len(pay) >= 8:
        sport, dport, ulen = struct.unpack("!HHH", pay[:6])
        u = pay[8:ulen]
        ports = (sport, dport)
        inner = None
        if 2152 in ports and len(u) >= 8 and u[1] == 0xFF:           # GTP-U G-PDU
            i = 8
            if u[0] & 0x07:
                nxt, i = u[11], 12
                while nxt:
                    n = u[i] * 4
                    nxt, i = u[i + n - 1], i + n
            inner = u[i:]
        elif dport == 4754:                                           # GRE in UDP
            # the GRE packet as if it were IP protocol 47 (the branch above reads it)
            total = ihl + len(u)
            outer = l3[:2] + struct.pack("!H", total) + l3[4:9] + bytes([47]) + l3[10:ihl]
            return unwrap(et, outer + u, depth + 1)
        elif 5072 in ports and len(u) >= 8:                           # AYIYA
            inner = u[8 + (1 << (u[0] >> 4)) + (u[1] >> 4) * 4:]
        elif 3544 in ports:                                           # Teredo
            if u[:2] == b"\x00\x01":
                u = u[4 + u[2] + u[3] + 9:]
            if u[:2] == b"\x00\x00":
                u = u[8:]
            inner = u
        if inner:
            return unwrap(0x0800 if inner[0] >> 4 == 4 else 0x86DD, inner, depth + 1)
    return et, l3



def tcp_of(et, l3):
    if et == 0x0800:
        ihl = (l3[0] & 0x0F) * 4
        total = struct.unpack("!H", l3[2:4])[0]
        if l3[9] != 6:
            return None
        src, dst, l4 = ipaddress.IPv4Address(l3[12:16]), ipaddress.IPv4Address(l3[16:20]), l3[ihl:total]
    elif et == 0x86DD:
        if l3[6] != 6:
            return None
        plen = struct.unpack("!H", l3[4:6])[0]
        src, dst, l4 = ipaddress.IPv6Address(l3[8:24]), ipaddress.IPv6Address(l3[24:40]), l3[40:40 + plen]
    else:
        return None
    sport, dport, seq, _ack, offfl = struct.unpack("!HHIIH", l4[:14])
    return (str(src), sport, str(dst), dport, seq, offfl & 0xFF, l4[(offfl >> 12) * 4:])


class Conn:
    def __init__(self):
        self.segs = {0: [], 1: []}   # direction 0: client->server
        self.isn = {}
        self.client = None


def reassemble(segs, isn):
    if not segs:
        return b""
    base = isn if isn is not None else min(s for s, _ in segs)
    out = bytearray()
    for rel, data in sorted(((s - base) % (1 << 32), d) for s, d in segs):
        if rel > len(out):
            raise ValueError("gap of %d bytes in TCP stream" % (rel - len(out)))
        out += data[len(out) - rel:]
    return bytes(out)


def dechunk(buf, i):
    n = 0
    while True:
        j = buf.index(b"\r\n", i)
        size = int(buf[i:j].split(b";")[0], 16)
        i = j + 2
        if size == 0:
            while True:
                j = buf.index(b"\r\n", i)
                empty = j == i
                i = j + 2
                if empty:
                    return n, i
        n += size
        i += size + 2


def head(buf, i):
    j = buf.find(b"\r\n\r\n", i)
    if j < 0:
        return None
    lines = buf[i:j].decode("latin-1").split("\r\n")
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return lines[0], hdrs, j + 4


def unsocks(rq, rs):
    """The tunnelled bytes after a SOCKS4/4a/5 handshake (RFC 1928/1929)."""
    if rq[:1] == b"\x04" and len(rs) >= 8:
        i = rq.index(b"\0", 8) + 1
        if rq[4:7] == b"\0\0\0" and rq[7]:
            i = rq.index(b"\0", i) + 1
        return rq[i:], rs[8:]
    if rq[:1] == b"\x05" and len(rs) >= 2:
        i = 2 + rq[1]
        j = 2
        if rs[1] == 2:                       # user/password
            i += 3 + rq[i + 1] + rq[i + 2 + rq[i + 1]]
            j += 2
        alen = {1: 4, 4: 16}.get(rq[i + 3], 1 + rq[i + 4] if len(rq) > i + 4 else 0)
        i += 6 + alen
        blen = {1: 4, 4: 16}.get(rs[j + 3], 1 + rs[j + 4])
        return rq[i:], rs[j + 6 + blen:]
    return rq, rs


def transactions(path):
    pf = read_any(path)
    conns = collections.OrderedDict()
    for pk in pf.packets:
        t = tcp_of(*unwrap(*strip_l2(pf.linktype, pk.data)))
        if not t:
            continue
        src, sport, dst, dport, seq, flags, pay = t
        a, b = (src, sport), (dst, dport)
        key = (min(a, b), max(a, b))
        c = conns.get(key)
        if flags & 0x02 and not flags & 0x10:   # SYN: a new connection
            if c is not None and c.segs[0]:
                conns[(key, len(conns))] = conns.pop(key)
            c = conns[key] = Conn()
            c.client = a
            c.isn[0] = (seq + 1) % (1 << 32)
            continue
        if c is None:
            c = conns[key] = Conn()
            c.client = b if sport in SERVER_PORTS else a
        d = 0 if a == c.client else 1
        if flags & 0x02:                        # SYN-ACK
            c.isn[1] = (seq + 1) % (1 << 32)
            continue
        if pay:
            c.segs[d].append((seq, pay))
    out = []
    for c in conns.values():
        rq = reassemble(c.segs[0], c.isn.get(0))
        rs = reassemble(c.segs[1], c.isn.get(1))
        rq, rs = unsocks(rq, rs)
        reqs, i = [], 0
        while i < len(rq):
            h = head(rq, i)
            if h is None:
                break
            line, hd, i = h
            method, uri, proto = line.split(" ")
            if "chunked" in hd.get("transfer-encoding", "").lower():
                n, i = dechunk(rq, i)
            else:
                n = min(int(hd.get("content-length", 0)), len(rq) - i)
                i += n
            reqs.append((method, uri, proto, n))
        k, i = 0, 0
        while i < len(rs) and k < len(reqs):
            line, hd, i = head(rs, i)
            status = int(line.split(" ")[1])
            if 100 <= status < 200:
                continue
            method, uri, proto, qn = reqs[k]
            k += 1
            chunked = "chunked" in hd.get("transfer-encoding", "").lower()
            if method == "HEAD" or status in (204, 304):
                n = 0
            elif chunked:
                n, i = dechunk(rs, i)
            elif "content-length" in hd:
                n = int(hd["content-length"])
                i += n
            else:
                n = len(rs) - i
                i = len(rs)
            cl_ip, cl_port = c.client
            out.append({"client_ip": cl_ip, "client_port": cl_port, "method": method,
                        "uri": uri, "protocol": proto, "status": status,
                        "req_body_bytes": qn, "resp_body_bytes": n, "chunked": chunked})
    return out


def main():
    cap = sys.argv[1]
    if len(sys.argv) > 2:
        logp = sys.argv[2]
    else:
        base = os.path.basename(cap)
        for ext in (".pcap.gz", ".pcapng", ".pcap"):
            if base.endswith(ext):
                base = base[:-len(ext)]
                break
        logp = os.path.join(os.path.dirname(cap), base + ".access.jsonl")
    cmp_keys = ["client_ip", "client_port", "method", "uri", "protocol", "status",
                "req_body_bytes", "resp_body_bytes", "chunked"]
    with open(logp) as f:
        truth = [json.loads(line) for line in f if line.strip()]
    for e in truth:
        if list(e.keys()) != KEYS:
            sys.exit("verify: %s: unexpected keys %s" % (logp, list(e.keys())))
    got = transactions(cap)
    a = collections.Counter(tuple(e[k] for k in cmp_keys) for e in truth)
    b = collections.Counter(tuple(e[k] for k in cmp_keys) for e in got)
    if a != b:
        print("verify: %s: MISMATCH (log %d, capture %d)" % (cap, len(truth), len(got)))
        for t in (a - b):
            print("  only in log:     ", dict(zip(cmp_keys, t)))
        for t in (b - a):
            print("  only in capture: ", dict(zip(cmp_keys, t)))
        sys.exit(1)
    print("verify: %s: %d transactions match the log" % (os.path.basename(cap), len(got)))


if __name__ == "__main__":
    main()
