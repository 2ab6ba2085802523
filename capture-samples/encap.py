#!/usr/bin/env python3
"""Re-encapsulate the Ethernet frames of a real capture the way a mirror
(SPAN / RSPAN / ERSPAN) or tunnel would deliver them. Standard library only.

  encap.py vlan    IN OUT [--vid 100] [--pcp 0]
  encap.py qinq    IN OUT [--outer-tpid 0x88a8] [--outer-vid 200] [--inner-vid 100]
  encap.py gre     IN OUT [--mode teb|ip]
  encap.py erspan2 IN OUT [--session 1] [--index 5]
  encap.py erspan3 IN OUT [--session 2] [--hwid 1]
  encap.py gtpu    IN OUT [--teid 0x1234]
  encap.py teredo  IN OUT
  encap.py ayiya   IN OUT
  encap.py greudp  IN OUT
  encap.py llcsnap IN OUT
  encap.py wifi    IN OUT [--plain]

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

UDP tunnels (outer IPv4 as above, proto 17, UDP checksum 0 as RFC 768
allows over IPv4; the inner IP packet is the original frame without its
Ethernet header; non-IP frames skipped):
  gtpu:    UDP 2152 -> 2152, GTPv1-U G-PDU (TS 29.281): flags 0x34 (version
           1, PT 1, E), type 0xFF, length, TEID; sequence 0, N-PDU 0, next
           extension 0x85 (PDU Session Container, 4 bytes: length 1, PDU
           type 0, QFI 9, next 0), then the packet.
  teredo:  IPv6 frames only, UDP 40000 <-> 3544 (RFC 4380): packets from
           the server (the first packet's destination) carry an origin
           indication (0x0000, obfuscated port and address, 8 bytes);
           SYNs carry an authentication indication (0x0001, id-len 0,
           au-len 0, 8-byte nonce, confirmation 0) before it.
  ayiya:   UDP 5072 -> 5072, AYIYA header (8 bytes: idlen 4 / idtype 1,
           siglen 5 / hash SHA-1, auth 1 / opcode 1 forward, next header
           4 or 41, epoch = packet time), 16-byte identity, 20-byte
           signature (zeros), then the packet.
  greudp:  UDP 49152+flow-hash -> 4754 (RFC 8086), 4-byte GRE header with
           protocol = inner ethertype, then the packet.
Link layers:
  llcsnap: each Ethernet II frame rewritten as IEEE 802.3 (length field)
           + LLC/SNAP (AA AA 03, OUI 000000, original ethertype); frames
           whose payload does not fit 1500 bytes are refused.
  wifi:    IEEE 802.11 QoS data frames (FC 0x88, ToDS for frames to the
           first packet's destination, FromDS back; QoS TID 0) + LLC/SNAP,
           under a radiotap header (TSFT, Flags with FCS-at-end; the FCS is
           the frame's CRC-32) on linktype 127, or with --plain bare on
           linktype 105 (no FCS). A beacon opens the file and one protected
           (encrypted) data frame follows the first packet: both are to be
           skipped and counted by a decoder.
"""

import argparse
import struct
import sys
import zlib

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

    def wrap(self, gre_and_payload, proto=47):
        total = 20 + len(gre_and_payload)
        if total > 0xFFFF:
            raise ValueError("frame too large for an IPv4 packet")
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, self.ip_id, 0x4000, 64, proto, 0,
                          OUTER_SRC_IP, OUTER_DST_IP)
        hdr = hdr[:10] + struct.pack("!H", inet_checksum(hdr)) + hdr[12:]
        self.ip_id = (self.ip_id + 1) & 0xFFFF
        return OUTER_DST_MAC + OUTER_SRC_MAC + b"\x08\x00" + hdr + gre_and_payload


    def udp(self, sport, dport, payload):
        return self.wrap(struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload, proto=17)


LINKTYPE_IEEE802_11 = 105
LINKTYPE_RADIOTAP = 127


def gtpu(teid, pkt):
    ext = bytes([1, 0x00, 0x09, 0x00])
    body = struct.pack("!HBB", 0, 0, 0x85) + ext + pkt
    return struct.pack("!BBHI", 0x34, 0xFF, len(body), teid) + body


def ayiya(pkt, ts_sec):
    nh = 4 if pkt[0] >> 4 == 4 else 41
    return bytes([0x41, 0x52, 0x11, nh]) + struct.pack("!I", ts_sec & 0xFFFFFFFF) \
        + bytes(range(16)) + bytes(20) + pkt


def tcp_flags_of(et, l3):
    if et == 0x86DD and len(l3) > 53 and l3[6] == 6:
        return l3[53]
    if et == 0x0800 and len(l3) > 20 and l3[9] == 6:
        return l3[(l3[0] & 0x0F) * 4 + 13]
    return 0


def teredo(pkt, from_server, syn):
    pre = b""
    if syn:
        pre += bytes([0, 1, 0, 0]) + bytes(range(8)) + b"\x00"
    if from_server:
        # port 80 and 10.0.0.1 obfuscated (bits inverted), as a relay writes them
        pre += struct.pack("!HH", 0, 80 ^ 0xFFFF) + bytes(b ^ 0xFF for b in (10, 0, 0, 1))
    return pre + pkt


def llc_snap(et):
    return bytes([0xAA, 0xAA, 0x03, 0, 0, 0]) + struct.pack("!H", et)


def wifi_frame(f, to_ds, seq):
    dst, src, et, body = f[0:6], f[6:12], struct.unpack("!H", f[12:14])[0], f[14:]
    bssid = bytes.fromhex("0200c0000aaa")
    if to_ds:
        fc, a1, a2, a3 = bytes([0x88, 0x01]), bssid, src, dst
    else:
        fc, a1, a2, a3 = bytes([0x88, 0x02]), dst, bssid, src
    hdr = fc + b"\x00\x00" + a1 + a2 + a3 + struct.pack("<H", (seq & 0xFFF) << 4) + b"\x00\x00"
    return hdr + llc_snap(et) + body


def beacon():
    bssid = bytes.fromhex("0200c0000aaa")
    return bytes([0x80, 0, 0, 0]) + b"\xff" * 6 + bssid + bssid + b"\x00\x00" + bytes(12) \
        + b"\x00\x06apitap"


def protected_data(seq):
    bssid = bytes.fromhex("0200c0000aaa")
    sta = bytes.fromhex("0200c0000bbb")
    return bytes([0x88, 0x41, 0, 0]) + bssid + sta + bssid + struct.pack("<H", seq << 4) \
        + b"\x00\x00" + bytes(range(8)) + bytes(range(64))


def radiotap(frame, ts_us):
    # present: TSFT (bit 0) | Flags (bit 1); flags 0x10 = FCS at end
    hdr = struct.pack("<BBHI", 0, 0, 17, 0x03) + struct.pack("<Q", ts_us) + b"\x10"
    return hdr + frame + struct.pack("<I", zlib.crc32(frame) & 0xFFFFFFFF)


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
    for m in ("vlan", "qinq", "gre", "erspan2", "erspan3", "gtpu", "teredo", "ayiya", "greudp",
              "llcsnap", "wifi"):
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
        if m == "gtpu":
            p.add_argument("--teid", type=lambda s: int(s, 0), default=0x1234)
        if m == "wifi":
            p.add_argument("--plain", action="store_true")
    a = ap.parse_args()

    src = PcapFile.read(a.inp)
    if src.linktype != LINKTYPE_ETHERNET:
        sys.exit("encap.py: input must be an Ethernet capture")
    lt = LINKTYPE_ETHERNET
    if a.mode == "wifi":
        lt = LINKTYPE_IEEE802_11 if a.plain else LINKTYPE_RADIOTAP
    out = PcapFile(linktype=lt, snaplen=max(src.snaplen, 262144), nanosec=src.nanosec)
    outer = Outer()
    seq = 0
    skipped = 0
    first_dst = None
    for pk in src.packets:
        if pk.caplen != pk.origlen:
            sys.exit("encap.py: input has truncated packets")
        f = pk.data
        et = struct.unpack("!H", f[12:14])[0]
        is_ip = et in (0x0800, 0x86DD)
        if a.mode in ("gtpu", "ayiya", "greudp") and not is_ip or a.mode == "teredo" and et != 0x86DD:
            skipped += 1
            continue
        if first_dst is None and is_ip:
            first_dst = f[0:6]
        if a.mode == "gtpu":
            new = outer.udp(2152, 2152, gtpu(a.teid, f[14:]))
        elif a.mode == "teredo":
            from_server = f[0:6] != first_dst
            syn = tcp_flags_of(et, f[14:]) & 0x12 == 0x02
            new = outer.udp(3544 if from_server else 40000, 40000 if from_server else 3544,
                            teredo(f[14:], from_server, syn))
        elif a.mode == "ayiya":
            new = outer.udp(5072, 5072, ayiya(f[14:], pk.ts_sec))
        elif a.mode == "greudp":
            h = zlib.crc32(f[14 + 12:14 + 24] if et == 0x0800 else f[14 + 8:14 + 44])
            new = outer.udp(49152 + h % 16384, 4754, struct.pack("!HH", 0, et) + f[14:])
        elif a.mode == "llcsnap":
            body = llc_snap(et) + f[14:]
            if len(body) > 1500:
                sys.exit("encap.py: frame too large for 802.3 (%d bytes)" % len(body))
            new = f[0:12] + struct.pack("!H", len(body)) + body
        elif a.mode == "wifi":
            if not out.packets:
                b = beacon()
                out.packets.append(Packet(pk.ts_sec, pk.ts_frac, b if a.plain else radiotap(b, 0)))
            w = wifi_frame(f, f[0:6] == first_dst, seq)
            seq += 1
            new = w if a.plain else radiotap(w, src.ts_ns(pk) // 1000)
            if seq == 1:
                out.packets.append(Packet(pk.ts_sec, pk.ts_frac, new))
                pd = protected_data(seq)
                new = pd if a.plain else radiotap(pd, src.ts_ns(pk) // 1000)
        elif a.mode == "vlan":
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
