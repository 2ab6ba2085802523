#!/usr/bin/env bash
# make-h2-samples.sh - build the HTTP/2 (h2c) and gRPC capture samples from real servers.
#
#   sudo ./capture-samples/make-h2-samples.sh        (about 30 seconds)
#
# Needs, besides make-samples.sh's tools: apt nghttp2-client (h2load, nghttp) and pip h2 and
# grpcio (the README's second command installs them).
#
# Samples (each with NAME.access.jsonl from the servers' own logs, compared by tests/samples.rs
# and tests/http2.rs):
#   h2c-nginx.pcap     nginx (listen ... http2, cleartext) and curl --http2-prior-knowledge
#                      (a GET, a PUT with a body), nghttp (GETs and a 404 on one connection)
#   h2c-h2load.pcap    h2load against nginx: 2 connections, 8 concurrent streams each
#   h2c-upgrade.pcap   curl --http2 (Upgrade: h2c, 101, then HTTP/2 on the same connection)
#                      against h2c_server.py; nghttp (prior knowledge) with a server push
#   grpc.pcap          grpc_lab.py server and client: unary, a trailers-only error, an error
#                      after a message, server and client streaming
# Namespaces h2-srv / h2-cli (veth h2-s0 / h2-c0), nothing else is addressed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
SRV_NS=h2-srv
CLI_NS=h2-cli
SRV_IF=h2-s0
CLI_IF=h2-c0
VX_IF=h2vx0
need_tools ip nginx tcpdump curl h2load nghttp "$PY" timeout
"$PY" -c "import h2, grpc" 2>/dev/null || die "python packages h2 and grpcio needed"

OUT=${OUT:-$HERE}
WORK=$(mktemp -d /tmp/apitap-h2-samples.XXXXXX)
CAP=$WORK/cap
mkdir -p "$CAP" "$WORK/www/static"
chmod 755 "$WORK"   # nginx workers (nobody) read the document root
PIDS=()
on_exit() {
    for p in ${PIDS[@]+"${PIDS[@]}"}; do kill "$p" 2>/dev/null || true; done
    [ -f "$WORK/nginx.pid" ] && kill -QUIT "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
    ns_teardown
    [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap on_exit EXIT

H2_PORT=8081   # nginx, HTTP/2 cleartext
PY_PORT=8082   # h2c_server.py
GRPC_PORT=50051

log "setup: namespaces, nginx ($(nginx -v 2>&1 | sed 's/.*\///'))"
ns_setup
printf '<html>h2c index</html>\n' >"$WORK/www/index.html"
"$PY" -c "import sys; sys.stdout.write(''.join('line %05d of a static text file\n' % i for i in range(900)))" \
    >"$WORK/www/static/big.txt"
printf '{"ok":true,"items":[1,2,3]}\n' >"$WORK/www/static/api.json"
mkdir -p "$WORK/nginx-tmp" "$WORK/www/upload"
chmod 777 "$WORK/www/upload"
cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 256; }
http {
    client_body_temp_path $WORK/nginx-tmp/body;
    proxy_temp_path $WORK/nginx-tmp/proxy;
    fastcgi_temp_path $WORK/nginx-tmp/fastcgi;
    uwsgi_temp_path $WORK/nginx-tmp/uwsgi;
    scgi_temp_path $WORK/nginx-tmp/scgi;
    log_format h2 escape=json
        '{"client_ip":"\$remote_addr","client_port":\$remote_port,'
        '"server_ip":"\$server_addr","server_port":\$server_port,'
        '"method":"\$request_method","uri":"\$request_uri","protocol":"\$server_protocol",'
        '"status":\$status,"req_body_bytes":"\$content_length","resp_body_bytes":\$body_bytes_sent}';
    access_log $WORK/nginx-access.log h2;
    gzip off;
    server {
        listen $SRV4:$H2_PORT http2;
        root $WORK/www;
        # PUT stores the body (nginx reads all of it: no early RST_STREAM racing the upload)
        location /upload/ { dav_methods PUT; create_full_put_path on; client_max_body_size 1m; }
    }
}
EOF
srv nginx -t -q -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" || die "bad nginx config"

# nginx's log -> ground truth (content_length "" is 0; no chunking in HTTP/2)
nginx_truth() { # out
    "$PY" - "$WORK/nginx-access.log" "$1" <<'EOF'
import json, sys
with open(sys.argv[1]) as f, open(sys.argv[2], "w") as o:
    for l in f:
        e = json.loads(l)
        e["req_body_bytes"] = int(e["req_body_bytes"] or 0)
        e["chunked"] = False
        o.write(json.dumps(e) + "\n")
EOF
}

nginx_start() { rm -f "$WORK/nginx-access.log"; srv nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log"; wait_listen $H2_PORT; }
nginx_stop() {
    local pid
    pid=$(cat "$WORK/nginx.pid")
    kill -QUIT "$pid"
    wait_gone "$pid" || kill -TERM "$pid"
}

# --- h2c-nginx: curl with prior knowledge, one connection -----------------------------
log "h2c-nginx"
nginx_start
cap_start "$CAP/h2c-nginx.pcap" "$SRV_IF" "tcp port $H2_PORT"
U=http://$SRV4:$H2_PORT
# (curl 7.88 fails reusing a prior-knowledge connection to nginx 1.22 for a second URL:
# "Error in the HTTP2 framing layer"; nghttp takes several URLs on one connection)
cli curl -sS --http2-prior-knowledge -o /dev/null "$U/" -w '%{http_code} %{http_version}\n'
cli nghttp -n "$U/static/api.json?x=1" "$U/static/big.txt" "$U/missing/thing" "$U/index.html"
cli curl -sS --http2-prior-knowledge -o /dev/null -X PUT -d 'name=apitap&kind=h2c' "$U/upload/a.txt" -w '%{http_code}\n'
cap_stop "$CAP/h2c-nginx.pcap"
nginx_stop
nginx_truth "$CAP/h2c-nginx.access.jsonl"

# --- h2c-h2load: a short load, many concurrent streams ---------------------------------
log "h2c-h2load"
nginx_start
cap_start "$CAP/h2c-h2load.pcap" "$SRV_IF" "tcp port $H2_PORT"
cli h2load -n 64 -c 2 -m 8 "$U/static/api.json" "$U/index.html" >"$WORK/h2load.out"
cap_stop "$CAP/h2c-h2load.pcap"
nginx_stop
nginx_truth "$CAP/h2c-h2load.access.jsonl"

# --- h2c-upgrade: Upgrade: h2c, and a server push ------------------------------------
log "h2c-upgrade"
rm -f "$WORK/py-access.log"
ip netns exec "$SRV_NS" "$PY" "$HERE/h2c_server.py" --port $PY_PORT --log "$WORK/py-access.log" >"$WORK/py.out" 2>&1 &
PIDS+=($!)
wait_listen $PY_PORT
cap_start "$CAP/h2c-upgrade.pcap" "$SRV_IF" "tcp port $PY_PORT"
P=http://$SRV4:$PY_PORT
cli curl -sS --http2 -o /dev/null -o /dev/null -o /dev/null "$P/h2/size/100" "$P/h2/size/40000" "$P/nope" \
    -w '%{http_code} %{http_version}\n'
cli curl -sS --http2-prior-knowledge -o /dev/null -d @"$WORK/www/static/big.txt" "$P/h2/echo" -w '%{http_code}\n'
cli nghttp -n "$P/h2/push"
sleep 0.5
cap_stop "$CAP/h2c-upgrade.pcap"
kill "${PIDS[-1]}"
cp "$WORK/py-access.log" "$CAP/h2c-upgrade.access.jsonl"

# --- grpc ------------------------------------------------------------------------------
log "grpc"
rm -f "$WORK/grpc-access.log"
ip netns exec "$SRV_NS" "$PY" "$HERE/grpc_lab.py" server --port $GRPC_PORT --log "$WORK/grpc-access.log" \
    >"$WORK/grpc.out" 2>&1 &
PIDS+=($!)
wait_listen $GRPC_PORT
cap_start "$CAP/grpc.pcap" "$SRV_IF" "tcp port $GRPC_PORT"
cli "$PY" "$HERE/grpc_lab.py" client --target "$SRV4:$GRPC_PORT"
cap_stop "$CAP/grpc.pcap"
kill "${PIDS[-1]}"
cp "$WORK/grpc-access.log" "$CAP/grpc.access.jsonl"

for n in h2c-nginx h2c-h2load h2c-upgrade grpc; do
    tcpdump -r "$CAP/$n.pcap" -nn >/dev/null 2>&1 || die "$n.pcap unreadable"
    log "$n: $(wc -l <"$CAP/$n.access.jsonl") logged, $(stat -c %s "$CAP/$n.pcap") bytes"
    mv "$CAP/$n.pcap" "$CAP/$n.access.jsonl" "$OUT/"
done
log "done"
