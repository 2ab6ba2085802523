#!/usr/bin/env bash
# make-samples.sh - build every capture sample in capture-samples/ from scratch.
#
#   sudo ./capture-samples/make-samples.sh          (takes about a minute)
#
# Needs: Linux with network namespaces + veth + vxlan, root, and the Debian
# packages
#   apt-get install -y nginx tcpdump apache2-utils wrk tcpreplay ethtool curl iproute2 python3
# (tcpreplay provides tcprewrite; python3 >= 3.9, standard library only).
#
# What it does: creates two network namespaces joined by a veth pair (and a
# VXLAN overlay on top of it), runs nginx and api_server.py in the server
# namespace, drives real clients (curl, ab, wrk, clients.py) from the client
# namespace and captures with tcpdump on the server's interface. No traffic
# goes anywhere else. Each capture NAME.pcap gets NAME.access.jsonl, the
# servers' own access log turned into the ground-truth format (logtool.py).
# Derived samples (VLAN/QinQ/GRE/ERSPAN, impaired, other file formats, broken
# files) are computed from the real captures by the python helpers here.
# Set KEEP_WORK=1 to keep the scratch directory for debugging.
#
# Helpers in this folder: lib.sh (namespaces, servers, tcpdump), api_server.py
# (the JSON API), nginx.conf.template, clients.py (python clients + document
# root), wrk-api.lua, logtool.py (ground truth), encap.py, impair.py,
# convert.py, badfiles.py, verify.py (cross-checks every lossless capture
# against its log with an independent decoder), summarize.py (SUMMARY.md),
# pcaplib.py (pcap I/O shared by the python tools).
#
# Everything is rebuilt in a scratch directory and only moved into
# capture-samples/ at the end, so a failed run leaves the old samples alone.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

need_tools ip nginx tcpdump curl ab wrk tcprewrite "$PY" gzip ss timeout

WORK=$(mktemp -d /tmp/apitap-samples.XXXXXX)
CAP=$WORK/cap   # raw tcpdump output
OUT=$WORK/out   # finished samples
mkdir -p "$CAP" "$OUT"

on_exit() {
    local rc=$?
    cleanup_all
    if [ -z "${KEEP_WORK:-}" ]; then rm -rf "$WORK"; else log "scratch kept in $WORK"; fi
    exit $rc
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------
# helpers

S=http://$SRV4                  # nginx
A=http://$SRV4:$API_PORT        # api_server.py
S6="http://[$SRV6]"
A6="http://[$SRV6]:$API_PORT"
LM="Tue, 14 Nov 2023 22:13:20 GMT"   # Last-Modified of every static file (clients.py www)

# begin NAME: fresh servers (fresh access logs) for one sample
begin() {
    NAME=$1
    log "sample $NAME"
    servers_start
}

# finish EXPECTED [logtool merge options]: stop servers (flushes logs), write
# $OUT/$NAME.access.jsonl and check its transaction count ("N" or "N+")
finish() {
    local expect=$1
    shift
    servers_stop
    "$PY" "$HERE/logtool.py" merge "$OUT/$NAME.access.jsonl" \
        --nginx "$WORK/nginx-access.log" --api "$WORK/api-access.log" "$@"
    case $expect in
        *+) "$PY" "$HERE/logtool.py" count "$OUT/$NAME.access.jsonl" --min "${expect%+}" >/dev/null ;;
        *) "$PY" "$HERE/logtool.py" count "$OUT/$NAME.access.jsonl" --expect "$expect" >/dev/null ;;
    esac
}

# keep NAME...: move finished captures from $CAP to $OUT, check that tcpdump
# reads them and that they are not empty
keep() {
    local f n
    for f in "$@"; do
        tcpdump -r "$CAP/$f" -nn >/dev/null 2>&1 || die "$f: tcpdump cannot read it"
        n=$(cd "$HERE" && "$PY" -c 'import sys, pcaplib; print(len(pcaplib.read_any(sys.argv[1]).packets))' "$CAP/$f")
        [ "$n" -gt 0 ] || die "$f: empty capture"
        mv "$CAP/$f" "$OUT/$f"
        log "  $f: $n packets"
    done
}

# same_log SRC DST...: derived captures get a copy of the source's log
same_log() {
    local src=$1 d
    shift
    for d in "$@"; do cp "$OUT/$src.access.jsonl" "$OUT/$d.access.jsonl"; done
}

# deterministic request bodies
mkbody() { "$PY" -c "import random,sys; sys.stdout.buffer.write(random.Random($2).randbytes($3))" >"$1"; }

# ---------------------------------------------------------------------------
log "setup: namespaces, document root, nginx config"
ns_setup
"$PY" "$HERE/clients.py" www "$WORK/www"
nginx_conf "$WORK" "$WORK/www" "$WORK/nginx-access.log" ""
mkbody "$WORK/body-20k.bin" 20 20000
mkbody "$WORK/body-1m.bin" 1 1048576
mkbody "$WORK/body-3m.bin" 3 $((3 * 1024 * 1024))
printf '{"username":"ab","password":"hunter2"}' >"$WORK/login.json"
ETAG_1M=$(printf '"%x-%x"' 1700000000 1048576)

# ---------------------------------------------------------------------------
# 1. keep-alive, recorded five times at once: Ethernet/us (the reference),
#    Ethernet/ns, Linux cooked v1 and v2 on "any", and snaplen 96.
begin http-keepalive
cap_start "$CAP/http-keepalive.pcap" "$SRV_IF"
cap_start "$CAP/http-nanosec.pcap" "$SRV_IF" --time-stamp-precision=nano
cap_start "$CAP/http-sll.pcap" any -y LINUX_SLL
cap_start "$CAP/http-sll2.pcap" any -y LINUX_SLL2
SNAP=96 cap_start "$CAP/bad-snaplen.pcap" "$SRV_IF"
curl_many -- "$S/" "$S/index.html" "$S/static/small.txt" "$S/static/data-4k.json?cache=1" \
    "$S/static/logo.svg" "$S/static/missing.png"
curl_many -- "$A/api/health" "$A/api/users/1" "$A/api/products?q=widget&limit=3" "$A/api/users/0"
cli "$PY" "$HERE/clients.py" keepalive "$SRV4"
cap_stop "$CAP/http-keepalive.pcap" "$CAP/http-nanosec.pcap" "$CAP/http-sll.pcap" \
    "$CAP/http-sll2.pcap" "$CAP/bad-snaplen.pcap"
finish 37
keep http-keepalive.pcap http-nanosec.pcap http-sll.pcap http-sll2.pcap bad-snaplen.pcap
same_log http-keepalive http-nanosec http-sll http-sll2 bad-snaplen

# 2. pipelining (one send() per batch), to nginx and to the API
begin http-pipelined
cap_start "$CAP/http-pipelined.pcap" "$SRV_IF"
cli "$PY" "$HERE/clients.py" pipelined "$SRV4"
cap_stop "$CAP/http-pipelined.pcap"
finish 24
keep http-pipelined.pcap

# 3. chunked responses (trailer, extensions, gzip+chunked, nginx on-the-fly
#    gzip) and chunked request bodies (curl, hand-written with trailer)
begin http-chunked
rm -f "$WORK/sizes.json"
cap_start "$CAP/http-chunked.pcap" "$SRV_IF"
curl_many -- "$A/api/stream?n=12"
curl_many -H 'Accept-Encoding: gzip' -- "$A/api/stream?n=8&ext=1"
# curl adds "Expect: 100-continue" to a chunked upload by itself ...
cli curl -sS -H 'Transfer-Encoding: chunked' -H 'Content-Type: application/octet-stream' \
    --data-binary @"$WORK/body-20k.bin" -o /dev/null -w '  %{http_code} %{url_effective}\n' "$A/api/upload"
# ... and not when told so
cli curl -sS -H 'Transfer-Encoding: chunked' -H 'Expect:' \
    --data-binary @"$WORK/body-20k.bin" -o /dev/null -w '  %{http_code} %{url_effective}\n' \
    "$A/api/upload?expect=no"
cli "$PY" "$HERE/clients.py" chunked-upload "$SRV4"
gzip_fetch "$WORK/sizes.json" "$S/static/style-16k.css" "$S/index.html"
cap_stop "$CAP/http-chunked.pcap"
finish 8 --chunked-sizes "$WORK/sizes.json"
keep http-chunked.pcap

# 4. gzip: nginx gzip_static (Content-Length), nginx on-the-fly (chunked),
#    nginx on-the-fly without chunking (close-delimited), API gzip
begin http-gzip
rm -f "$WORK/sizes.json"
cap_start "$CAP/http-gzip.pcap" "$SRV_IF"
gzip_fetch "$WORK/sizes.json" "$S/static/app-64k.js" "$S/static/style-16k.css" "$S/static/logo.svg" \
    "$S/index.html" "$S/static/data-4k.json" "$S/static/tiny.txt"
curl_many --compressed -- "$S/static/app-64k.js" "$S/static/style-16k.css"
curl_many -H 'Accept-Encoding: gzip' -- "$S/nochunk/data-8k.json"
curl_many -- "$S/static/app-64k.js"
curl_many -H 'Accept-Encoding: gzip' -- "$A/api/products?q=&limit=100" "$A/api/big?kb=64" \
    "$A/api/stream?n=10" "$A/api/users/1"
cap_stop "$CAP/http-gzip.pcap"
finish 14 --chunked-sizes "$WORK/sizes.json"
keep http-gzip.pcap

# 5. Expect: 100-continue (API server answers 100 Continue; a too-large
#    announced body gets 413 at once and is never sent). Note: curl 7.88
#    adds Expect by itself only above 1 MiB, so it is set explicitly.
begin http-100-continue
cap_start "$CAP/http-100-continue.pcap" "$SRV_IF"
cli curl -sS -H 'Expect: 100-continue' -H 'Content-Type: application/octet-stream' \
    --data-binary @"$WORK/body-20k.bin" -w '  %{http_code} %{url_effective}\n' \
    -o /dev/null "$A/api/upload?n=1" -o /dev/null "$A/api/upload?n=2"
cli curl -sS -H 'Expect: 100-continue' -H 'Content-Type: application/json' \
    -d '{"username":"dave","password":"hunter2"}' -o /dev/null -w '  %{http_code} %{url_effective}\n' \
    "$A/api/login"
# a client that sends the body without waiting for 100 Continue
cli "$PY" "$HERE/clients.py" expect-nowait "$SRV4"
cli curl -sS -H 'Expect: 100-continue' --data-binary @"$WORK/body-3m.bin" -o /dev/null \
    -w '  %{http_code} %{url_effective}\n' "$A/api/upload?too=big"
cap_stop "$CAP/http-100-continue.pcap"
finish 5
keep http-100-continue.pcap

# 6. HTTP/1.0: ab without and with -k, curl -0 (close-delimited stream,
#    1.0 keep-alive, POST)
begin http10
cap_start "$CAP/http10.pcap" "$SRV_IF"
cli ab -q -n 20 -c 2 "$S/static/small.txt" >"$WORK/ab.log"
cli ab -q -n 10 -c 1 "$A/api/users/3" >>"$WORK/ab.log"
cli ab -q -k -n 10 -c 1 "$S/index.html" >>"$WORK/ab.log"
curl_many -0 -- "$S/index.html" "$S/static/data-4k.json"
curl_many -0 -- "$A/api/stream?n=3"
curl_many -0 -H 'Connection: keep-alive' -- "$A/api/users/1" "$A/api/users/2"
curl_many -0 -H 'Content-Type: application/json' -d '{"username":"eve","password":"hunter2"}' -- "$A/api/login"
cap_stop "$CAP/http10.pcap"
finish 46
keep http10.pcap

# 7. HEAD, 304 (If-Modified-Since / If-None-Match, HEAD and GET), 204
begin http-head
cap_start "$CAP/http-head.pcap" "$SRV_IF"
curl_many -I -- "$S/index.html" "$S/static/blob-1m.bin"
curl_many -I -H 'Accept-Encoding: gzip' -- "$S/static/app-64k.js" "$S/static/style-16k.css"
curl_many -I -H "If-Modified-Since: $LM" -- "$S/static/blob-1m.bin"
curl_many -I -H "If-None-Match: $ETAG_1M" -- "$S/static/blob-1m.bin"
curl_many -H "If-None-Match: $ETAG_1M" -- "$S/static/blob-1m.bin"
curl_many -H "If-Modified-Since: $LM" -- "$S/static/app-64k.js"
curl_many -H "If-Modified-Since: Mon, 01 Jan 2001 00:00:00 GMT" -- "$S/static/tiny.txt"
curl_many -- "$S/nocontent"
curl_many -I -- "$A/api/users/1" "$A/api/stream" "$A/api/big?kb=256" "$A/api/nothing"
curl_many -X DELETE -- "$A/api/orders/0b7c7e6e-2f0a-4f43-9d4c-1c1f8a3e9e01"
cap_stop "$CAP/http-head.pcap"
finish 15
keep http-head.pcap

# 8. ~1 MB bodies both ways
begin http-large-bodies
cap_start "$CAP/http-large-bodies.pcap" "$SRV_IF"
curl_many -- "$S/static/blob-1m.bin" "$A/api/big?kb=1024"
cli curl -sS -H 'Expect:' -H 'Content-Type: application/octet-stream' --data-binary @"$WORK/body-1m.bin" \
    -o /dev/null -w '  %{http_code} %{url_effective}\n' "$A/api/upload?via=curl"
cli "$PY" "$HERE/clients.py" upload "$SRV4"
cap_stop "$CAP/http-large-bodies.pcap"
finish 5
keep http-large-bodies.pcap

# 9. mixed API load: curl, ab -k, ab POST, wrk (bounded), python client
begin http-mixed-api
cap_start "$CAP/http-mixed-api.pcap" "$SRV_IF"
curl_many -- "$A/api/health" "$A/api/users/1" "$A/api/users/2" "$A/api/products?q=nut&limit=4"
cli ab -q -k -n 200 -c 2 "$A/api/users/7" >"$WORK/ab.log"
cli ab -q -n 50 -c 2 -p "$WORK/login.json" -T application/json "$A/api/login" >>"$WORK/ab.log"
cli env WRK_LIMIT=300 wrk -t1 -c2 -d5s -s "$HERE/wrk-api.lua" "$A" >"$WORK/wrk.log"
cli "$PY" "$HERE/clients.py" mixed --seed 42 -n 150 "$SRV4"
cap_stop "$CAP/http-mixed-api.pcap"
finish 704+
keep http-mixed-api.pcap

# 10. IPv6 between the namespaces
begin http-ipv6
cap_start "$CAP/http-ipv6.pcap" "$SRV_IF"
curl_many -g -- "$S6/index.html" "$S6/static/data-4k.json" "$S6/static/app-64k.js" "$S6/nope"
curl_many -g -H 'Accept-Encoding: gzip' -- "$A6/api/products?q=bolt&limit=20" "$A6/api/stream?n=5"
cli curl -g -sS -H 'Transfer-Encoding: chunked' -H 'Expect:' --data-binary @"$WORK/body-20k.bin" \
    -o /dev/null -w '  %{http_code} %{url_effective}\n' "$A6/api/upload"
cli ab -q -n 10 -c 1 "$S6/static/small.txt" >"$WORK/ab.log"
cli "$PY" "$HERE/clients.py" keepalive "$SRV6"
cap_stop "$CAP/http-ipv6.pcap"
finish 44
keep http-ipv6.pcap

# 11. HTTP over the VXLAN overlay, captured on the underlay veth
begin vxlan-http
cap_start "$CAP/vxlan-http.pcap" "$SRV_IF"
curl_many -- "http://$VX_SRV4/index.html" "http://$VX_SRV4/static/small.txt" \
    "http://$VX_SRV4/static/app-64k.js"
cli "$PY" "$HERE/clients.py" keepalive "$VX_SRV4"
cap_stop "$CAP/vxlan-http.pcap"
finish 30
keep vxlan-http.pcap

# 12. capture started in the middle of keep-alive connections, while a
#     512 KiB response is still being delivered
begin http-midstream
rm -f "$WORK/ms.ready" "$WORK/ms.go" "$WORK/ms.exclude.json"
ip netns exec "$CLI_NS" timeout 60 "$PY" "$HERE/clients.py" midstream "$SRV4" \
    --ready "$WORK/ms.ready" --go "$WORK/ms.go" --exclude "$WORK/ms.exclude.json" &
MS_PID=$!
for _ in $(seq 300); do [ -e "$WORK/ms.ready" ] && break; sleep 0.1; done
[ -e "$WORK/ms.ready" ] || die "midstream client never got ready"
cap_start "$CAP/http-midstream.pcap" "$SRV_IF"
touch "$WORK/ms.go"
wait "$MS_PID" || die "midstream client failed"
cap_stop "$CAP/http-midstream.pcap"
finish 6 --exclude "$WORK/ms.exclude.json"
keep http-midstream.pcap

# ---------------------------------------------------------------------------
# derived samples (from the real captures above)
log "derived samples"
SRC=$OUT/http-keepalive.pcap

# 802.1Q as a mirror port adds it (tcprewrite), and QinQ (802.1ad 0x88a8
# outer tag 200 + 802.1Q inner tag 100; tcprewrite can only add one tag)
tcprewrite --enet-vlan=add --enet-vlan-tag=100 --enet-vlan-cfi=0 --enet-vlan-pri=0 \
    --infile="$SRC" --outfile="$OUT/vlan-http.pcap"
"$PY" "$HERE/encap.py" qinq "$SRC" "$OUT/qinq-http.pcap" --outer-tpid 0x88a8 --outer-vid 200 --inner-vid 100
"$PY" "$HERE/encap.py" gre "$SRC" "$OUT/gre-http.pcap" --mode teb
"$PY" "$HERE/encap.py" gre "$SRC" "$OUT/gre-ip-http.pcap" --mode ip
"$PY" "$HERE/encap.py" erspan2 "$SRC" "$OUT/erspan2-http.pcap" --session 1 --index 5
"$PY" "$HERE/encap.py" erspan3 "$SRC" "$OUT/erspan3-http.pcap" --session 2 --hwid 1
same_log http-keepalive vlan-http qinq-http gre-http gre-ip-http erspan2-http erspan3-http
# the tunnels and link layers a mirror brings besides those (see encap.py)
"$PY" "$HERE/encap.py" gtpu "$SRC" "$OUT/gtpu-http.pcap"
"$PY" "$HERE/encap.py" ayiya "$SRC" "$OUT/ayiya-http.pcap"
"$PY" "$HERE/encap.py" greudp "$SRC" "$OUT/greudp-http.pcap"
"$PY" "$HERE/encap.py" wifi "$SRC" "$OUT/radiotap-http.pcap"
"$PY" "$HERE/encap.py" wifi --plain "$SRC" "$OUT/wifi-http.pcap"
same_log http-keepalive gtpu-http ayiya-http greudp-http radiotap-http wifi-http
"$PY" "$HERE/encap.py" teredo "$OUT/http-ipv6.pcap" "$OUT/teredo-http.pcap"
same_log http-ipv6 teredo-http
"$PY" "$HERE/encap.py" llcsnap "$OUT/http-head.pcap" "$OUT/llcsnap-http.pcap"
same_log http-head llcsnap-http

# file formats / link types
"$PY" "$HERE/convert.py" pcapng "$OUT/http-nanosec.pcap" "$OUT/http-pcapng.pcapng"
"$PY" "$HERE/convert.py" bigendian "$SRC" "$OUT/http-bigendian.pcap"
"$PY" "$HERE/convert.py" rawip "$SRC" "$OUT/http-rawip.pcap"
"$PY" "$HERE/convert.py" null "$SRC" "$OUT/http-null.pcap"
same_log http-keepalive http-pcapng http-bigendian http-rawip http-null
# a gzip-compressed capture file; NAME is http-gzip, so it shares
# http-gzip.access.jsonl with the plain http-gzip.pcap
gzip -n -9 -c "$OUT/http-gzip.pcap" >"$OUT/http-gzip.pcap.gz"

# a suffering mirror: seeded loss / reordering / duplication
"$PY" "$HERE/impair.py" --seed 1 --loss 0.03 "$SRC" "$OUT/tcp-loss.pcap"
"$PY" "$HERE/impair.py" --seed 2 --reorder 0.05 "$SRC" "$OUT/tcp-reorder.pcap"
"$PY" "$HERE/impair.py" --seed 3 --dup 0.05 "$SRC" "$OUT/tcp-dup.pcap"
"$PY" "$HERE/impair.py" --seed 4 --loss 0.02 --reorder 0.03 --dup 0.03 "$SRC" "$OUT/tcp-impaired.pcap"
same_log http-keepalive tcp-loss tcp-reorder tcp-dup tcp-impaired

# broken files
"$PY" "$HERE/badfiles.py" "$OUT/http-head.pcap" "$OUT"

# ---------------------------------------------------------------------------
log "cross-checking every lossless capture against its log (verify.py)"
for f in "$OUT"/*.pcap "$OUT"/*.pcapng "$OUT"/*.pcap.gz; do
    case $(basename "$f") in
        bad-* | tcp-loss.pcap | tcp-impaired.pcap | http-midstream.pcap) continue ;;
    esac
    "$PY" "$HERE/verify.py" "$f"
done
"$PY" "$HERE/summarize.py" "$OUT" >"$OUT/SUMMARY.md"
[ "$CAP_DROPS" -eq 0 ] || log "warning: tcpdump reported kernel drops (see above)"

log "installing samples into $HERE"
find "$HERE" -maxdepth 1 -type f \( -name '*.pcap' -o -name '*.pcapng' -o -name '*.pcap.gz' \
    -o -name '*.access.jsonl' -o -name '*.impair.json' -o -name SUMMARY.md \) -delete
mv "$OUT"/* "$HERE"/
cat "$HERE/SUMMARY.md"
du -sh "$HERE"
