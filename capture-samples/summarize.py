#!/usr/bin/env python3
"""Print a Markdown table describing every capture in a directory:
file, bytes, link type, packets, transactions in NAME.access.jsonl.

  summarize.py DIR > DIR/SUMMARY.md
"""

import gzip
import os
import struct
import sys

from pcaplib import LINKTYPE_NAMES, PcapFile

CAPTURE_EXT = (".pcap", ".pcapng", ".pcap.gz")


def pcapng_info(raw):
    off, linktypes, n = 0, [], 0
    while off + 12 <= len(raw):
        btype, blen = struct.unpack_from("<II", raw, off)
        if btype == 1:
            linktypes.append(struct.unpack_from("<H", raw, off + 8)[0])
        elif btype in (3, 6):
            n += 1
        off += blen
    return linktypes[0] if linktypes else None, n


def info(path):
    with open(path, "rb") as f:
        raw = f.read()
    if path.endswith(".gz"):
        raw = gzip.decompress(raw)
    if raw[:4] == b"\x0a\x0d\x0d\x0a":
        lt, n = pcapng_info(raw)
        return "pcapng, " + LINKTYPE_NAMES.get(lt, str(lt)), n
    try:
        pf = PcapFile.parse(raw)
    except ValueError as e:
        return "unreadable (%s)" % e, None
    prec = "ns" if pf.nanosec else "us"
    end = "BE" if pf.big_endian else "LE"
    cut = sum(1 for p in pf.packets if p.caplen < p.origlen)
    extra = ", %d cut by snaplen %d" % (cut, pf.snaplen) if cut else ""
    return "%s (%s, %s%s)" % (LINKTYPE_NAMES.get(pf.linktype, pf.linktype), prec, end,
                              extra), len(pf.packets)


def base_name(fn):
    for ext in CAPTURE_EXT[::-1]:
        if fn.endswith(ext):
            return fn[:-len(ext)]
    return fn


def main():
    d = sys.argv[1]
    print("| file | bytes | link type | packets | transactions |")
    print("|---|---:|---|---:|---:|")
    for fn in sorted(os.listdir(d)):
        if not fn.endswith(CAPTURE_EXT):
            continue
        lt, n = info(os.path.join(d, fn))
        logp = os.path.join(d, base_name(fn) + ".access.jsonl")
        tx = "-"
        if os.path.exists(logp):
            with open(logp) as f:
                tx = str(sum(1 for line in f if line.strip()))
        print("| %s | %d | %s | %s | %s |" % (fn, os.path.getsize(os.path.join(d, fn)), lt,
                                             "-" if n is None else n, tx))


if __name__ == "__main__":
    main()
