#!/usr/bin/env bash
# The highest drop-free tcpreplay rate and the CPU per packet of `apitap live`, per capture
# method: libpcap, af_packet with 1 ring, af_packet with 2 rings (fanout). tcpreplay sends PCAP
# through a veth pair between two network namespaces this script creates, at each rate in turn
# (packets/s, or "top" for --topspeed), until a run drops; a run that drops ends that method.
#
# A drop is anything lost on the way, from the final stats event: kernel drops (pcap_stats, or
# the rings' tp_drops), reader queue drops, worker queue drops and sink drops. CPU per packet is
# the apitap process's user + system CPU time (/proc/PID/stat: every thread, workers included)
# over the packets it read. Each row carries the 1-minute load average at the end of the run.
#
# Usage (root): benches/live-capture-rates.sh PCAP [RATES...]
#   METHODS="pcap af1 af2"   methods to run (af<K>: af_packet with K threads)
#   REPEAT=2                 runs of the best rate again (the rate counts only if all are clean)
#   APITAP_ARGS="..."        more `apitap live` options (e.g. --no-rules, --workers 1)
#   NS_PREFIX=lcr            namespace and interface name prefix
#   RUN_TIMEOUT=120          seconds a tcpreplay run may take (bounded)
# PCAP: e.g. `BENCH_API_COUNT=60000 capture-samples/make-api-bench-capture.sh /tmp/api.pcap`, or
# the mixed capture of capture-samples/make-bench-capture.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PCAP=${1:?usage: $0 PCAP [RATES...]}; shift
RATES=${*:-"20000 30000 40000 50000 70000 100000 top"}
METHODS=${METHODS:-"pcap af1 af2"}
REPEAT=${REPEAT:-2}
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
BIN=$(readlink -f "${APITAP:-target/release/apitap}")
P=${NS_PREFIX:-lcr}
[ -f "$PCAP" ] || { echo "no $PCAP" >&2; exit 2; }
[ -x "$BIN" ] || { echo "no $BIN: cargo build --release" >&2; exit 2; }
command -v tcpreplay >/dev/null || { echo "tcpreplay is not installed" >&2; exit 2; }
A=$P-a; B=$P-b; OUT=$(mktemp -d)
cleanup() { ip netns del "$A" 2>/dev/null || true; ip netns del "$B" 2>/dev/null || true; }
trap 'cleanup; rm -rf "$OUT"' EXIT
cleanup
ip netns add "$A"; ip netns add "$B"
ip link add "${P}a0" type veth peer name "${P}b0"
ip link set "${P}a0" netns "$A"; ip link set "${P}b0" netns "$B"
for x in "$A ${P}a0" "$B ${P}b0"; do
  set -- $x
  ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 || true
  ip -n "$1" link set "$2" up mtu 9000
  ip netns exec "$1" ethtool -K "$2" tso off gso off gro off tx off >/dev/null 2>&1 || true
done
TCK=$(getconf CLK_TCK)

# run METHOD RATE: one bounded run; prints a table row (pps: what tcpreplay achieved); exit
# status 0 if nothing was dropped.
run() {
  local m=$1 r=$2 args
  case $m in
    pcap) args="--method pcap" ;;
    af*) args="--method af_packet --threads ${m#af}" ;;
  esac
  rm -f "$OUT/eve.json"
  # shellcheck disable=SC2086
  ip netns exec "$A" "$BIN" live -i "${P}a0" $args ${APITAP_ARGS:-} -o "$OUT/eve.json" \
    --stats-interval 0 --no-progress 2>"$OUT/err" &
  local ap=$!
  for _ in $(seq 100); do grep -q "capturing on" "$OUT/err" 2>/dev/null && break; sleep 0.1; done
  local opt="--pps=$r"; [ "$r" = top ] && opt=--topspeed
  local sent pps
  timeout "$RUN_TIMEOUT" ip netns exec "$B" tcpreplay -q -i "${P}b0" $opt "$PCAP" >"$OUT/replay" 2>&1 || true
  sent=$(awk '/Actual:/{print $2; exit}' "$OUT/replay")
  # "Rated: B Bps, M Mbps, N pps": the rate tcpreplay achieved.
  pps=$(awk '/Rated:/{for (i = 1; i <= NF; i++) if ($i ~ /^pps/) {print int($(i-1)); exit}}' "$OUT/replay")
  sleep 1
  local cpu
  cpu=$(awk -v t="$TCK" '{print ($14 + $15) / t}' "/proc/$ap/stat")
  local load
  load=$(cut -d' ' -f1 /proc/loadavg)
  kill -TERM "$ap"; timeout 30 tail --pid="$ap" -f /dev/null || kill -KILL "$ap"
  wait "$ap" || true
  python3 - "$OUT/eve.json" "$m" "$r" "${sent:-0}" "${pps:-0}" "$cpu" "$load" <<'PY'
import json, sys
path, m, rate, sent, pps, cpu, load = sys.argv[1:]
stats = None
for l in open(path):
    if '"event_type":"stats"' in l:
        stats = json.loads(l)["stats"]
i = next(iter(stats["interfaces"].values()))
kd, qd = i["kernel_dropped"], i["queue_dropped"]
wd = stats["drops"]["worker_queue"]
sd = sum(s["dropped"] for s in stats["drops"]["sinks"].values())
pk = stats["capture"]["packets"]
us = float(cpu) / pk * 1e6 if pk else 0.0
tx = stats["http"]["transactions"]
drops = kd + qd + wd + sd
print(f"{m:<5} {rate:>7} {pps:>8} {sent:>8} {pk:>8} {kd:>8} {qd:>6} {wd:>8} {sd:>6} {tx:>7} {float(cpu):>7.2f} {us:>7.2f} {load:>5}", flush=True)
sys.exit(1 if drops else 0)
PY
}

printf '%-5s %7s %8s %8s %8s %8s %6s %8s %6s %7s %7s %7s %5s\n' method rate pps sent captured kern_drop q_drop wrk_drop sink_d http cpu_s us/pkt load
for m in $METHODS; do
  best=none
  for r in $RATES; do
    if run "$m" "$r"; then best=$r; else break; fi
  done
  # The best rate again: it stands only if every repeat is clean.
  verdict=$best
  if [ "$best" != none ]; then
    for _ in $(seq "$REPEAT"); do run "$m" "$best" || verdict="$best, but it dropped on a repeat"; done
  fi
  echo "# $m: highest drop-free rate: $verdict"
done
