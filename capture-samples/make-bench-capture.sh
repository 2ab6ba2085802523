#!/usr/bin/env bash
# make-bench-capture.sh - a LARGE mixed HTTP capture for throughput benchmarks.
# NOT committed (it is a few hundred MB): regenerate it when needed.
#
#   sudo ./capture-samples/make-bench-capture.sh [OUT.pcap]
#        default OUT: target/bench/mixed.pcap (relative to the repository)
#
# Writes OUT and, beside it, OUT-without-.pcap + .access.jsonl (ground truth in
# the same format as the samples: nginx + API logs merged by time).
# Needs the same packages as make-samples.sh:
#   apt-get install -y nginx tcpdump apache2-utils wrk tcpreplay ethtool curl iproute2 python3
#
# Traffic (all inside two network namespaces joined by a veth pair with MTU
# 1500 and TSO/GSO/GRO off, so frames are <= 1514 bytes), run concurrently:
#   * wrk -t2 -c16 (wrk-static.lua): nginx static objects of 0.5 KiB..1 MiB,
#     weighted towards small ones, half of the JSON ones gzip'd (chunked);
#     BENCH_STATIC requests in total (default 20000)
#   * ab -k -c 4 -n BENCH_AB (default 8000): API GET /api/users/42 (HTTP/1.0
#     keep-alive)
#   * wrk -t1 -c4 (wrk-api.lua): API GETs and JSON POSTs, BENCH_API requests
#     (default 5000)
#   * curl: 40 URLs on one connection (static + API)
# Every load generator is bounded by count and by time (wrk -d BENCH_SECONDS,
# default 15 s; timeout BENCH_SECONDS + 75); the whole script takes about a
# minute with the defaults. A ~1.5 GB capture (as issue 13 measures):
#   BENCH_STATIC=150000 BENCH_AB=30000 BENCH_API=20000 BENCH_SECONDS=120
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
need_tools ip nginx tcpdump curl ab wrk "$PY" ss timeout

OUTPCAP=${1:-$HERE/../target/bench/mixed.pcap}
mkdir -p "$(dirname "$OUTPCAP")"
OUTPCAP=$(cd "$(dirname "$OUTPCAP")" && pwd)/$(basename "$OUTPCAP")
OUTLOG=${OUTPCAP%.pcap}.access.jsonl
BENCH_STATIC=${BENCH_STATIC:-20000}
BENCH_AB=${BENCH_AB:-8000}
BENCH_API=${BENCH_API:-5000}
BENCH_SECONDS=${BENCH_SECONDS:-15}
CLI_T=$((BENCH_SECONDS + 75))

WORK=$(mktemp -d /tmp/apitap-bench.XXXXXX)
on_exit() {
    local rc=$?
    cleanup_all
    rm -rf "$WORK"
    exit $rc
}
trap on_exit EXIT
trap 'exit 130' INT TERM

S=http://$SRV4
A=http://$SRV4:$API_PORT

log "setup"
ns_setup
"$PY" "$HERE/clients.py" www "$WORK/www"
# buffered access log: flushed when nginx quits
nginx_conf "$WORK" "$WORK/www" "$WORK/nginx-access.log" "buffer=256k flush=5s"

# nginx's on-the-fly gzip is chunked and $body_bytes_sent then counts the
# chunk framing: measure the de-chunked gzip sizes first (separate server run,
# not captured, not logged).
servers_start
GZ_URLS=()
for s in 0.5 1 2 4 8 16 32 64 128 256 512 1024; do GZ_URLS+=("$S/bench/f-${s}k.json"); done
gzip_fetch "$WORK/sizes.json" "${GZ_URLS[@]}" >/dev/null
servers_stop

log "capturing into $OUTPCAP"
servers_start
# no immediate mode at this rate: a 256 MiB ring and block delivery; the
# linger before SIGINT lets libpcap hand over the last partial block.
CAP_OPTS="-B 262144" cap_start "$OUTPCAP" "$SRV_IF"
START=$(date +%s)
CLI_TIMEOUT=$CLI_T cli env WRK_LIMIT=$((BENCH_STATIC / 2)) WRK_SEED=1 \
    wrk -t2 -c16 -d${BENCH_SECONDS}s -s "$HERE/wrk-static.lua" "$S" >"$WORK/wrk-static.log" &
P1=$!
CLI_TIMEOUT=$CLI_T cli ab -q -k -c 4 -n "$BENCH_AB" "$A/api/users/42" >"$WORK/ab.log" &
P2=$!
CLI_TIMEOUT=$CLI_T cli env WRK_LIMIT="$BENCH_API" wrk -t1 -c4 -d${BENCH_SECONDS}s -s "$HERE/wrk-api.lua" "$A" \
    >"$WORK/wrk-api.log" &
P3=$!
URLS=()
SIZES=(1 4 16 64 256 1024)
for i in $(seq 20); do
    URLS+=("$S/bench/f-${SIZES[i % 6]}k.bin" "$S/static/data-4k.json?i=$i")
done
curl_many -- "${URLS[@]}" >/dev/null
wait $P1 $P2 $P3
CAP_LINGER=2 cap_stop "$OUTPCAP"
servers_stop
log "traffic took $(($(date +%s) - START)) s"
cat "$WORK/wrk-static.log" "$WORK/wrk-api.log"
grep -E 'Complete requests|Failed requests' "$WORK/ab.log"

"$PY" "$HERE/logtool.py" merge "$OUTLOG" --nginx "$WORK/nginx-access.log" \
    --api "$WORK/api-access.log" --chunked-sizes "$WORK/sizes.json"
grep "dropped by kernel" "$OUTPCAP.tcpdump.log" || true
rm -f "$OUTPCAP.tcpdump.log"
[ "$CAP_DROPS" -eq 0 ] || log "WARNING: the kernel dropped packets: the capture is incomplete"
ls -l "$OUTPCAP" "$OUTLOG"
