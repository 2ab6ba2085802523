#!/usr/bin/env python3
"""Write deliberately broken capture files, byte by byte, from a real
capture (standard library only). A reader must report an error (or stop
cleanly at the damage) without crashing, hanging or allocating gigabytes.

  badfiles.py SOURCE.pcap OUTDIR

  bad-truncated.pcap         valid header and records, then a record whose
                             data is cut in the middle (file ends there)
  bad-truncated-header.pcap  valid records, then only 7 bytes of the next
                             16-byte record header
  bad-magic.pcap             a real capture whose magic is 0xdeadbeef
  bad-empty.pcap             zero bytes
  bad-short-header.pcap      the first 10 bytes of a pcap global header
  bad-huge-caplen.pcap       two good records, then a record header claiming
                             caplen = origlen = 0x7ffffff0, followed by 64
                             bytes and EOF
(bad-snaplen.pcap is a real tcpdump -s 96 capture made by make-samples.sh.)
"""

import os
import struct
import sys

from pcaplib import PcapFile


def main():
    src_path, outdir = sys.argv[1], sys.argv[2]
    src = PcapFile.read(src_path)
    hdr = src.header_bytes()
    recs = [src.record_bytes(p) for p in src.packets]

    def write(name, data):
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(data)
        print("%s: %d bytes" % (name, len(data)))

    # cut inside the data of the first record >= 200 bytes after 60% of the file
    k = next(i for i in range(int(len(recs) * 0.6), len(recs)) if src.packets[i].caplen >= 200)
    cut = 16 + src.packets[k].caplen // 2
    write("bad-truncated.pcap", hdr + b"".join(recs[:k]) + recs[k][:cut])
    write("bad-truncated-header.pcap", hdr + b"".join(recs[:k]) + recs[k][:7])
    write("bad-magic.pcap", struct.pack("<I", 0xDEADBEEF) + hdr[4:] + b"".join(recs[:20]))
    write("bad-empty.pcap", b"")
    write("bad-short-header.pcap", hdr[:10])
    p = src.packets[2]
    huge = struct.pack("<IIII", p.ts_sec, p.ts_frac, 0x7FFFFFF0, 0x7FFFFFF0)
    write("bad-huge-caplen.pcap", hdr + recs[0] + recs[1] + huge + p.data[:64])


if __name__ == "__main__":
    main()
