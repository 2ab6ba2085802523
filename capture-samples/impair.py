#!/usr/bin/env python3
"""Seeded impairment of a real capture: what a suffering mirror port or
overloaded capture box delivers. Standard library only.

  impair.py --seed N [--loss P] [--reorder P] [--dup P] IN.pcap OUT.pcap

Steps, each with its own random stream derived from --seed (so e.g. the
losses of seed 7 are the same whatever --reorder/--dup are):
  1. loss:    every packet is dropped with probability P.
  2. reorder: walking the surviving packets, a packet is delayed with
              probability P by 1..3 positions (it now follows the packet(s)
              that were behind it). A packet is moved at most once.
  3. dup:     every surviving packet is emitted twice with probability P
              (the copy immediately follows the original, same timestamp).
Timestamps stay non-decreasing: the k-th output record gets the k-th
timestamp of the surviving packets (a duplicate repeats its original's).

Sidecar OUT minus extension + ".impair.json":
  {"source": .., "seed": .., "loss": P, "reorder": P, "dup": P,
   "input_packets": n, "output_packets": n,
   "dropped":   [{"index": i, "src_ip", "src_port", "dst_ip", "dst_port",
                  "seq", "payload_len", "flags"}, ...],   (non-TCP frames
                  carry {"index", "proto"} only)
   "reordered": [i, ...],                       delayed packets
   "reorder_moves": [{"index": i, "now_after": j}, ...],
   "duplicated": [i, ...]}
All indices are 0-based positions in the ORIGINAL capture.
"""

import argparse
import json
import os
import random

from pcaplib import Packet, PcapFile, decode_tcp


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--loss", type=float, default=0.0)
    ap.add_argument("--reorder", type=float, default=0.0)
    ap.add_argument("--dup", type=float, default=0.0)
    ap.add_argument("inp")
    ap.add_argument("out")
    a = ap.parse_args()

    src = PcapFile.read(a.inp)
    n = len(src.packets)
    r_loss = random.Random("%d-loss" % a.seed)
    r_reorder = random.Random("%d-reorder" % a.seed)
    r_dup = random.Random("%d-dup" % a.seed)

    # 1. loss
    kept, dropped = [], []
    for i in range(n):
        if a.loss > 0 and r_loss.random() < a.loss:
            info = decode_tcp(src.linktype, src.packets[i].data)
            d = {"index": i}
            if info.get("proto") == "tcp":
                for k in ("src_ip", "src_port", "dst_ip", "dst_port", "seq", "payload_len",
                          "flags"):
                    d[k] = info[k]
            else:
                d["proto"] = info.get("proto")
            dropped.append(d)
        else:
            kept.append(i)
    slots = [src.ts_ns(src.packets[i]) for i in kept]

    # 2. reorder
    order = kept[:]
    moved, moves = set(), []
    j = 0
    while a.reorder > 0 and j < len(order) - 1:
        if order[j] not in moved and r_reorder.random() < a.reorder:
            k = r_reorder.randint(1, min(3, len(order) - 1 - j))
            p = order.pop(j)
            order.insert(j + k, p)
            moved.add(p)
            moves.append({"index": p, "now_after": order[j + k - 1]})
            continue  # a new packet now sits at position j
        j += 1

    # 3. duplication, and output with monotonic timestamps
    out = PcapFile(linktype=src.linktype, snaplen=src.snaplen, nanosec=src.nanosec,
                   big_endian=src.big_endian)
    duplicated = []
    for pos, i in enumerate(order):
        pk = src.packets[i]
        copies = 1
        if a.dup > 0 and r_dup.random() < a.dup:
            copies = 2
            duplicated.append(i)
        for _ in range(copies):
            q = Packet(0, 0, pk.data, pk.origlen)
            out.set_ts_ns(q, slots[pos])
            out.packets.append(q)
    out.write(a.out)

    side = os.path.splitext(a.out)[0] + ".impair.json"
    with open(side, "w") as f:
        json.dump({"source": os.path.basename(a.inp), "seed": a.seed, "loss": a.loss,
                   "reorder": a.reorder, "dup": a.dup, "input_packets": n,
                   "output_packets": len(out.packets), "dropped": dropped,
                   "reordered": sorted(moved), "reorder_moves": moves,
                   "duplicated": duplicated}, f, indent=1)
        f.write("\n")
    print("%s: %d -> %d packets, %d dropped, %d reordered, %d duplicated"
          % (a.out, n, len(out.packets), len(dropped), len(moved), len(duplicated)))


if __name__ == "__main__":
    main()
