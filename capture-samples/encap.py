#!/usr/bin/env python3
"""Re-encapsulate the Ethernet frames of a real capture the way a mirror
(SPAN / RSPAN / ERSPAN) or tunnel would deliver them. Standard library only.

  encap.py vlan    IN OUT [--vid 100] [--pcp 0]
  encap.py qinq    IN OUT [--outer-tpid 0x88a8] [--outer-vid 200] [--inner-vid 100]
  encap.py gre     IN OUT [--mode teb|ip]
  encap.py erspan2 IN OUT [--session 1] [--index 5]
  encap.py erspan3 IN OUT [--session 2] [--hwid 1]

All output records keep the original timestamps. Outer headers of the
GRE/ERSPAN modes (the "collector" side of the tunnel):
  Ethernet 02:00:c0:00:02:01 -> 02:00:c0:00:02:02, IPv4 192.0.2.1 -> 192.0.2.2
  (RFC 5737 documentation addresses; the frames only ever exist in the file),
  TTL 64, DF, IP ID incrementing, header checksum computed, proto 47 (GRE).

GRE (RFC 2784/2890):
  teb:  4-byte GRE header, flags 0, protocol 0x6558 (Transparent Ethernet
        Bridging), then the whole original Ethernet frame.
  ip:   4-byte GRE header, protocol = inner ethertype (0x0800 / 0x86DD), then
        the inner IP packet (Ethernet header removed; non-IP frames skipped).

ERSPAN (draft-foschiano-erspan-03; Wireshark "erspan" dissector):
  Both use an 8-byte GRE header with only the S (sequence number present)
  bit set: 0x1000, protocol, 32-bit sequence number (starts at 0, +1 per
  packet), like Linux ip_gre/erspan and Cisco routers do.
  Type II  (GRE protocol 0x88BE), 8-byte header:
     | Ver=1 (4) | VLAN (12) | COS (3) | En (2) | T (1) | Session ID (10) |
     | Reserved = 0 (12)     | Index (20)                                  |
  Type III (GRE protocol 0x22EB), 12-byte header (no optional subheader):
     | Ver=2 (4) | VLAN (12) | COS (3) | BSO (2) | T (1) | Session ID (10) |
     | Timestamp (32)                                                      |
     | SGT (16) | P (1) | FT (5) | Hw ID (6) | D (1) | Gra (2) | O (1)     |
     Timestamp: packet time in units of 100 microseconds, modulo 2^32
     (Gra = 00, as Linux does); FT = 0 (Ethernet frame follows); P = 0; O = 0.
  VLAN = 0, COS = 0, En/BSO = 0, T = 0, D = 0 (ingress).
"""

import argparse
import struct
import sys

from pcaplib import LINKTYPE_ETHERNET, Packet, PcapFile, inet_checksum

OUTER_SRC_MAC = bytes.fromhex("0200c0000201")
OUTER_DST_MAC = bytes.fromhex("0200c0000202")
OUTER_SRC_IP = bytes([192, 0, 2, 1])
OUTER_DST_IP = bytes([192, 0, 2, 2])


def vlan_tag(tpid, pcp, vid):
    return struct.pack("!HH", tpid, (pcp << 13) | (vid & 0x0FFF))


def add_tags(frame, tags):
    """Insert 802.1Q/802.1ad tags (outermost first) after the MAC addresses."""
    return frame[:12] + b"".join(tags) + frame[12:]


class Outer:
    def __init__(self):
        self.ip_id = 0

    def wrap(self, gre_and_payload):
        total = 20 + len(gre_and_payload)
        if total > 0xFFFF:
            raise ValueError("frame too large for an IPv4 packet")
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, self.ip_id, 0x4000, 64, 47, 0,
                          OUTER_SRC_IP, OUTER_DST_IP)
        hdr = hdr[:10] + struct.pack("!H", inet_checksum(hdr)) + hdr[12:]
        self.ip_id = (self.ip_id + 1) & 0xFFFF
        return OUTER_DST_MAC + OUTER_SRC_MAC + b"\x08\x00" + hdr + gre_and_payload


def erspan2_header(session, index, vlan=0, cos=0, en=0, t=0):
    w0 = (1 << 28) | ((vlan & 0xFFF) << 16) | ((cos & 7) << 13) | ((en & 3) << 11) \
        | ((t & 1) << 10) | (session & 0x3FF)
    w1 = index & 0xFFFFF
    return struct.pack("!II", w0, w1)


def erspan3_header(session, timestamp, hwid, vlan=0, cos=0, bso=0, t=0, sgt=0, p=0,
                   ft=0, d=0, gra=0, o=0):
    w0 = (2 << 28) | ((vlan & 0xFFF) << 16) | ((cos & 7) << 13) | ((bso & 3) << 11) \
        | ((t & 1) << 10) | (session & 0x3FF)
    w2 = ((sgt & 0xFFFF) << 16) | ((p & 1) << 15) | ((ft & 0x1F) << 10) | ((hwid & 0x3F) << 4) \
        | ((d & 1) << 3) | ((gra & 3) << 1) | (o & 1)
    return struct.pack("!III", w0, timestamp & 0xFFFFFFFF, w2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sp = ap.add_subparsers(dest="mode", required=True)
    for m in ("vlan", "qinq", "gre", "erspan2", "erspan3"):
        p = sp.add_parser(m)
        p.add_argument("inp")
        p.add_argument("out")
        if m == "vlan":
            p.add_argument("--vid", type=int, default=100)
            p.add_argument("--pcp", type=int, default=0)
        if m == "qinq":
            p.add_argument("--outer-tpid", type=lambda s: int(s, 0), default=0x88A8)
            p.add_argument("--outer-vid", type=int, default=200)
            p.add_argument("--inner-vid", type=int, default=100)
        if m == "gre":
            p.add_argument("--mode", choices=["teb", "ip"], default="teb", dest="gre_mode")
        if m == "erspan2":
            p.add_argument("--session", type=int, default=1)
            p.add_argument("--index", type=int, default=5)
        if m == "erspan3":
            p.add_argument("--session", type=int, default=2)
            p.add_argument("--hwid", type=int, default=1)
    a = ap.parse_args()

    src = PcapFile.read(a.inp)
    if src.linktype != LINKTYPE_ETHERNET:
        sys.exit("encap.py: input must be an Ethernet capture")
    out = PcapFile(linktype=LINKTYPE_ETHERNET, snaplen=max(src.snaplen, 262144),
                   nanosec=src.nanosec)
    outer = Outer()
    seq = 0
    skipped = 0
    for pk in src.packets:
        if pk.caplen != pk.origlen:
            sys.exit("encap.py: input has truncated packets")
        f = pk.data
        if a.mode == "vlan":
            new = add_tags(f, [vlan_tag(0x8100, a.pcp, a.vid)])
        elif a.mode == "qinq":
            new = add_tags(f, [vlan_tag(a.outer_tpid, 0, a.outer_vid),
                               vlan_tag(0x8100, 0, a.inner_vid)])
        elif a.mode == "gre" and a.gre_mode == "teb":
            new = outer.wrap(struct.pack("!HH", 0, 0x6558) + f)
        elif a.mode == "gre":
            et = struct.unpack("!H", f[12:14])[0]
            if et not in (0x0800, 0x86DD):
                skipped += 1
                continue
            new = outer.wrap(struct.pack("!HH", 0, et) + f[14:])
        elif a.mode == "erspan2":
            gre = struct.pack("!HHI", 0x1000, 0x88BE, seq)
            new = outer.wrap(gre + erspan2_header(a.session, a.index) + f)
            seq += 1
        else:  # erspan3
            ts100us = src.ts_ns(pk) // 100_000
            gre = struct.pack("!HHI", 0x1000, 0x22EB, seq)
            new = outer.wrap(gre + erspan3_header(a.session, ts100us, a.hwid) + f)
            seq += 1
        out.packets.append(Packet(pk.ts_sec, pk.ts_frac, new))
    out.write(a.out)
    print("%s: %d packets%s" % (a.out, len(out.packets),
                                " (%d non-IP frames skipped)" % skipped if skipped else ""))


if __name__ == "__main__":
    main()
