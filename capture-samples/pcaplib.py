"""Tiny standard-library-only helpers to read and write classic pcap files
and to pull the TCP/IP 5-tuple out of a frame.

Used by encap.py, impair.py, convert.py, badfiles.py and summarize.py.
No third-party modules (no scapy) so the scripts run on a fresh machine.
"""

import gzip
import ipaddress
import struct

# Link types (https://www.tcpdump.org/linktypes.html)
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276

LINKTYPE_NAMES = {
    0: "NULL (BSD loopback)",
    1: "EN10MB (Ethernet)",
    101: "RAW (IP)",
    113: "LINUX_SLL",
    276: "LINUX_SLL2",
    105: "IEEE802_11",
    127: "IEEE802_11_RADIOTAP",
}

MAGIC_USEC = 0xA1B2C3D4
MAGIC_NSEC = 0xA1B23C4D


class Packet:
    """One pcap record. ts_frac is in microseconds or nanoseconds, see
    PcapFile.nanosec."""

    __slots__ = ("ts_sec", "ts_frac", "caplen", "origlen", "data")

    def __init__(self, ts_sec, ts_frac, data, origlen=None):
        self.ts_sec = ts_sec
        self.ts_frac = ts_frac
        self.data = data
        self.caplen = len(data)
        self.origlen = len(data) if origlen is None else origlen


class PcapFile:
    """A whole classic pcap file in memory (the samples are small)."""

    def __init__(self, linktype=LINKTYPE_ETHERNET, snaplen=262144,
                 nanosec=False, big_endian=False, packets=None):
        self.linktype = linktype
        self.snaplen = snaplen
        self.nanosec = nanosec
        self.big_endian = big_endian
        self.packets = packets if packets is not None else []

    # -- reading ---------------------------------------------------------
    @classmethod
    def read(cls, path):
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as f:
            raw = f.read()
        return cls.parse(raw)

    @classmethod
    def parse(cls, raw):
        if len(raw) < 24:
            raise ValueError("pcap: file shorter than the 24-byte header")
        magic_le = struct.unpack("<I", raw[:4])[0]
        magic_be = struct.unpack(">I", raw[:4])[0]
        if magic_le in (MAGIC_USEC, MAGIC_NSEC):
            end, magic = "<", magic_le
        elif magic_be in (MAGIC_USEC, MAGIC_NSEC):
            end, magic = ">", magic_be
        else:
            raise ValueError("pcap: bad magic %08x" % magic_le)
        _vmaj, _vmin, _tz, _sig, snaplen, linktype = struct.unpack(
            end + "HHiIII", raw[4:24])
        pf = cls(linktype=linktype & 0x0FFFFFFF, snaplen=snaplen,
                 nanosec=(magic == MAGIC_NSEC), big_endian=(end == ">"))
        off = 24
        hdr = struct.Struct(end + "IIII")
        while off + 16 <= len(raw):
            ts_sec, ts_frac, caplen, origlen = hdr.unpack_from(raw, off)
            off += 16
            if off + caplen > len(raw):
                raise ValueError("pcap: truncated record at offset %d" % (off - 16))
            pf.packets.append(Packet(ts_sec, ts_frac, raw[off:off + caplen], origlen))
            off += caplen
        if off != len(raw):
            raise ValueError("pcap: %d trailing bytes" % (len(raw) - off))
        return pf

    # -- writing ---------------------------------------------------------
    def header_bytes(self):
        end = ">" if self.big_endian else "<"
        magic = MAGIC_NSEC if self.nanosec else MAGIC_USEC
        return struct.pack(end + "IHHiIII", magic, 2, 4, 0, 0,
                           self.snaplen, self.linktype)

    def record_bytes(self, p):
        end = ">" if self.big_endian else "<"
        return struct.pack(end + "IIII", p.ts_sec, p.ts_frac, p.caplen,
                           p.origlen) + p.data

    def to_bytes(self):
        parts = [self.header_bytes()]
        for p in self.packets:
            parts.append(self.record_bytes(p))
        return b"".join(parts)

    def write(self, path):
        with open(path, "wb") as f:
            f.write(self.to_bytes())

    # -- time helpers ----------------------------------------------------
    def ts_ns(self, p):
        """Record timestamp in nanoseconds since the epoch."""
        return p.ts_sec * 1_000_000_000 + p.ts_frac * (1 if self.nanosec else 1000)

    def set_ts_ns(self, p, ns):
        p.ts_sec, rem = divmod(ns, 1_000_000_000)
        p.ts_frac = rem if self.nanosec else rem // 1000


# ---------------------------------------------------------------------------
# Frame decoding (just enough for sidecars and conversions)

def strip_l2(linktype, data):
    """Return (ethertype, l3_bytes) for a frame, skipping Ethernet and any
    number of 802.1Q / 802.1ad tags. (None, None) if not decodable."""
    if linktype == LINKTYPE_ETHERNET:
        if len(data) < 14:
            return None, None
        et = struct.unpack("!H", data[12:14])[0]
        off = 14
        if et <= 1500 and data[14:17] == b"\xaa\xaa\x03":   # 802.3 + LLC/SNAP
            et, off = struct.unpack("!H", data[20:22])[0], 22
        while et in (0x8100, 0x88A8, 0x9100) and len(data) >= off + 4:
            et = struct.unpack("!H", data[off + 2:off + 4])[0]
            off += 4
        return et, data[off:]
    if linktype == LINKTYPE_RAW:
        if not data:
            return None, None
        v = data[0] >> 4
        return (0x0800 if v == 4 else 0x86DD if v == 6 else None), data
    if linktype == LINKTYPE_LINUX_SLL:
        return struct.unpack("!H", data[14:16])[0], data[16:]
    if linktype == LINKTYPE_LINUX_SLL2:
        return struct.unpack("!H", data[0:2])[0], data[20:]
    if linktype in (105, 127):   # IEEE 802.11, bare or under radiotap
        if linktype == 127:
            rlen = struct.unpack("<H", data[2:4])[0]
            present = struct.unpack("<I", data[4:8])[0]
            flags = data[16] if present & 3 == 3 else data[8] if present & 2 else 0
            data = data[rlen:-4] if flags & 0x10 else data[rlen:]
        if len(data) < 24 or (data[0] >> 2) & 3 != 2 or data[1] & 0x40:
            return None, None           # not a data frame, or encrypted
        hl = 24 + (6 if data[1] & 3 == 3 else 0) + (2 if data[0] & 0x80 else 0)
        body = data[hl:]
        if body[:3] != b"\xaa\xaa\x03":
            return None, None
        return struct.unpack("!H", body[6:8])[0], body[8:]
    if linktype == LINKTYPE_NULL:
        af = struct.unpack("<I", data[:4])[0]
        return (0x0800 if af == 2 else 0x86DD), data[4:]
    return None, None


TCP_FLAG_NAMES = [(0x01, "F"), (0x02, "S"), (0x04, "R"), (0x08, "P"),
                  (0x10, "."), (0x20, "U"), (0x40, "E"), (0x80, "C")]


def tcp_flags_str(flags):
    """tcpdump-style flag string, e.g. 'S', 'S.', 'P.', 'F.', 'R'."""
    s = ""
    for bit, ch in TCP_FLAG_NAMES:
        if bit != 0x10 and flags & bit:
            s += ch
    if flags & 0x10:
        s += "."
    return s or "none"


def decode_tcp(linktype, data):
    """Decode a frame down to TCP. Returns a dict with src_ip, src_port,
    dst_ip, dst_port, seq, ack, flags, payload_len; or a dict with only
    'proto' set for non-TCP frames."""
    et, l3 = strip_l2(linktype, data)
    if et == 0x0800 and l3 and len(l3) >= 20:
        ihl = (l3[0] & 0x0F) * 4
        total = struct.unpack("!H", l3[2:4])[0]
        proto = l3[9]
        src = str(ipaddress.IPv4Address(l3[12:16]))
        dst = str(ipaddress.IPv4Address(l3[16:20]))
        l4 = l3[ihl:total]
    elif et == 0x86DD and l3 and len(l3) >= 40:
        plen = struct.unpack("!H", l3[4:6])[0]
        proto = l3[6]
        src = str(ipaddress.IPv6Address(l3[8:24]))
        dst = str(ipaddress.IPv6Address(l3[24:40]))
        l4 = l3[40:40 + plen]  # no extension headers in these samples
    else:
        return {"proto": "ethertype-0x%04x" % (et or 0)}
    if proto != 6 or len(l4) < 20:
        return {"proto": "ip-proto-%d" % proto, "src_ip": src, "dst_ip": dst}
    sport, dport, seq, ack, off_flags = struct.unpack("!HHIIH", l4[:14])
    doff = (off_flags >> 12) * 4
    return {
        "proto": "tcp",
        "src_ip": src, "src_port": sport, "dst_ip": dst, "dst_port": dport,
        "seq": seq, "ack": ack, "flags": tcp_flags_str(off_flags & 0xFF),
        "payload_len": max(0, len(l4) - doff),
    }


def inet_checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def read_pcapng(raw):
    """Minimal pcapng reader (one or more sections, EPB/SPB/PB blocks) into a
    PcapFile. Timestamps are converted to ns precision when if_tsresol is
    9, else to us. Only what the samples use; not a general library."""
    pf = None
    off = 0
    end = "<"
    ifaces = []
    while off + 12 <= len(raw):
        btype = struct.unpack_from(end + "I", raw, off)[0]
        if btype == 0x0A0D0D0A:
            bom = raw[off + 8:off + 12]
            end = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
            ifaces = []
        blen = struct.unpack_from(end + "I", raw, off + 4)[0]
        body = raw[off + 8:off + blen - 4]
        if btype == 1:
            linktype, _, snaplen = struct.unpack_from(end + "HHI", body, 0)
            tsresol = 6
            o = 8
            while o + 4 <= len(body):
                code, olen = struct.unpack_from(end + "HH", body, o)
                if code == 0:
                    break
                if code == 9:
                    tsresol = body[o + 4]
                o += 4 + olen + (4 - olen % 4) % 4
            ifaces.append((linktype, tsresol))
            if pf is None:
                pf = PcapFile(linktype=linktype, snaplen=snaplen, nanosec=(tsresol == 9))
        elif btype == 6:
            iface, hi, lo, caplen, origlen = struct.unpack_from(end + "IIIII", body, 0)
            res = ifaces[iface][1]
            ts = (hi << 32) | lo
            sec, frac = divmod(ts, 10 ** res)
            if pf.nanosec:
                frac = frac * 10 ** (9 - res) if res <= 9 else frac // 10 ** (res - 9)
            else:
                frac = frac * 10 ** (6 - res) if res <= 6 else frac // 10 ** (res - 6)
            pf.packets.append(Packet(sec, frac, body[20:20 + caplen], origlen))
        off += blen
    if pf is None:
        raise ValueError("pcapng: no interface description block")
    return pf


def read_any(path):
    """Classic pcap (either byte order, us/ns), pcapng, optionally gzip'd."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if raw[:4] == b"\x0a\x0d\x0d\x0a":
        return read_pcapng(raw)
    return PcapFile.parse(raw)
