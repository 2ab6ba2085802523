#!/usr/bin/env bash
# Live capture throughput: tcpreplay pushes a large capture through a veth pair between two
# network namespaces this script creates; `apitap live` listens on the far end. For each rate
# (packets/s, or "top" for --topspeed) it reports what apitap saw and every drop counter.
# Usage (root): [APITAP_ARGS="--buffer-size 268435456"] benches/live-throughput.sh [PCAP] [RATES...]
#   PCAP defaults to target/bench/mixed.pcap (capture-samples/make-bench-capture.sh makes it).
set -euo pipefail
cd "$(dirname "$0")/.."
PCAP=${1:-target/bench/mixed.pcap}; shift || true
RATES=${*:-"50000 100000 200000 top"}
BIN=${APITAP:-target/release/apitap}
[ -f "$PCAP" ] || { echo "no $PCAP: run capture-samples/make-bench-capture.sh first" >&2; exit 2; }
command -v tcpreplay >/dev/null || { echo "tcpreplay is not installed" >&2; exit 2; }
A=atlt-a; B=atlt-b; OUT=$(mktemp -d)
cleanup() { ip netns del $A 2>/dev/null || true; ip netns del $B 2>/dev/null || true; rm -rf "$OUT"; }
trap cleanup EXIT
cleanup; OUT=$(mktemp -d)
ip netns add $A; ip netns add $B
ip link add atlta0 type veth peer name atltb0
ip link set atlta0 netns $A; ip link set atltb0 netns $B
ip -n $A link set atlta0 up mtu 9000; ip -n $B link set atltb0 up mtu 9000
printf '%-8s %10s %10s %10s %12s %12s %10s %10s %8s\n' rate sent captured kernel_drop queue_drop worker_drop http_events elapsed_s pps
for r in $RATES; do
  ip netns exec $A "$BIN" live -i atlta0 ${APITAP_ARGS:-} -o "$OUT/eve.json" --stats-interval 0 --no-progress -q 2>"$OUT/err" &
  AP=$!
  sleep 1.5
  if [ "$r" = top ]; then opt=--topspeed; else opt="--pps=$r"; fi
  t0=$(date +%s.%N)
  sent=$(ip netns exec $B tcpreplay -q -i atltb0 $opt "$PCAP" 2>&1 | awk '/Actual:/{print $2}')
  t1=$(date +%s.%N)
  sleep 1
  kill -TERM $AP; wait $AP || true
  python3 - "$OUT/eve.json" "$r" "$sent" "$t0" "$t1" <<'PY'
import json, sys
path, rate, sent, t0, t1 = sys.argv[1:]
http = 0; stats = None
for l in open(path):
    e = json.loads(l)
    if e["event_type"] == "http": http += 1
    elif e["event_type"] == "stats": stats = e["stats"]
i = next(iter(stats["interfaces"].values()))
el = float(t1) - float(t0)
wq = stats.get("drops", {}).get("worker_queue", 0)
print(f"{rate:<8} {sent:>10} {i['packets']:>10} {i['kernel_dropped']:>10} {i['queue_dropped']:>12} {wq:>12} {http:>10} {el:>10.2f} {int(int(sent)/el):>8}")
PY
  rm -f "$OUT/eve.json"
done
