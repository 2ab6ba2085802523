#!/usr/bin/env python3
"""Write a real capture in other file formats / link types. Standard library only.

  convert.py pcapng    IN OUT   pcapng: SHB (with shb_userappl, shb_os),
                                IDB (if_name, if_tsresol = 6 or 9 following
                                the input's precision), one EPB per packet
                                (the first carries an opt_comment), and an
                                ISB (if_recv/if_drop) at the end, like dumpcap.
                                Little-endian.
  convert.py bigendian IN OUT   classic pcap written big-endian: magic
                                a1b2c3d4 (or a1b23c4d for ns) stored as bytes
                                a1 b2 c3 d4, every header field big-endian.
  convert.py rawip     IN OUT   LINKTYPE_RAW (101): the Ethernet header is
                                removed, records start with the IP header;
                                non-IP frames (ARP) are dropped.
  convert.py null      IN OUT   LINKTYPE_NULL (0): 4-byte address family in
                                little-endian host order (2 = IPv4,
                                30 = IPv6 as on macOS/FreeBSD) + IP packet;
                                non-IP frames are dropped.
Input: classic pcap, Ethernet link type.
"""

import argparse
import struct
import sys

from pcaplib import (LINKTYPE_ETHERNET, LINKTYPE_NULL, LINKTYPE_RAW, Packet, PcapFile,
                     strip_l2)


def opt(code, value):
    pad = (4 - len(value) % 4) % 4
    return struct.pack("<HH", code, len(value)) + value + b"\0" * pad


def block(btype, body):
    total = 12 + len(body)
    return struct.pack("<II", btype, total) + body + struct.pack("<I", total)


def to_pcapng(src, out_path):
    tsresol = 9 if src.nanosec else 6
    parts = []
    shb_opts = (opt(2, b"x86_64 (apitap capture-samples)") + opt(3, b"Linux") +
                opt(4, b"apitap capture-samples convert.py") + opt(0, b""))
    parts.append(block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + shb_opts))
    idb_opts = opt(2, b"at-srv0") + opt(9, bytes([tsresol])) + opt(0, b"")
    parts.append(block(1, struct.pack("<HHI", src.linktype, 0, src.snaplen) + idb_opts))
    last_ts = 0
    for n, pk in enumerate(src.packets):
        ts = pk.ts_sec * 10 ** tsresol + pk.ts_frac
        last_ts = ts
        pad = (4 - pk.caplen % 4) % 4
        body = struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, pk.caplen, pk.origlen) \
            + pk.data + b"\0" * pad
        if n == 0:
            body += opt(1, b"converted from a tcpdump capture by convert.py") + opt(0, b"")
        parts.append(block(6, body))
    isb_opts = (opt(4, struct.pack("<Q", len(src.packets))) + opt(5, struct.pack("<Q", 0))
                + opt(0, b""))
    parts.append(block(5, struct.pack("<III", 0, last_ts >> 32, last_ts & 0xFFFFFFFF)
                       + isb_opts))
    with open(out_path, "wb") as f:
        f.write(b"".join(parts))
    return len(src.packets)


def to_l3(src, out_path, linktype):
    out = PcapFile(linktype=linktype, snaplen=src.snaplen, nanosec=src.nanosec)
    skipped = 0
    for pk in src.packets:
        et, l3 = strip_l2(src.linktype, pk.data)
        if et not in (0x0800, 0x86DD):
            skipped += 1
            continue
        if linktype == LINKTYPE_NULL:
            l3 = struct.pack("<I", 2 if et == 0x0800 else 30) + l3
        # origlen shrinks (or grows, for NULL) by the header change
        out.packets.append(Packet(pk.ts_sec, pk.ts_frac, l3,
                                  pk.origlen - (len(pk.data) - len(l3))))
    out.write(out_path)
    return len(out.packets), skipped


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["pcapng", "bigendian", "rawip", "null"])
    ap.add_argument("inp")
    ap.add_argument("out")
    a = ap.parse_args()
    src = PcapFile.read(a.inp)
    if src.linktype != LINKTYPE_ETHERNET:
        sys.exit("convert.py: input must be an Ethernet capture")
    if a.mode == "pcapng":
        n = to_pcapng(src, a.out)
        print("%s: %d packets (pcapng)" % (a.out, n))
    elif a.mode == "bigendian":
        src.big_endian = True
        src.write(a.out)
        print("%s: %d packets (big-endian)" % (a.out, len(src.packets)))
    else:
        n, skipped = to_l3(src, a.out, LINKTYPE_RAW if a.mode == "rawip" else LINKTYPE_NULL)
        print("%s: %d packets (%d non-IP frames dropped)" % (a.out, n, skipped))


if __name__ == "__main__":
    main()
