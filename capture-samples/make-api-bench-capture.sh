#!/usr/bin/env bash
# make-api-bench-capture.sh - a LARGE capture of small JSON API calls, for throughput benchmarks.
# NOT committed (a couple of hundred MB): regenerate it when needed.
#
#   sudo ./capture-samples/make-api-bench-capture.sh [OUT.pcap]
#        default OUT: target/bench/api.pcap (relative to the repository)
#
# nginx answers a small JSON API (bodies of 50-250 bytes, 401 without a
# token, 404 elsewhere); api_bench_client.py sends BENCH_API_COUNT requests
# (default 300000) over 128 keep-alive connections from 64 client addresses,
# each with its own users and bearer tokens. Veth MTU 1500, offloads off.
# Writes OUT and OUT-without-.pcap + .access.log (nginx's own log: ground
# truth, one JSON object per request). Bounded: count, and 150 s.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
need_tools ip nginx tcpdump "$PY" ss timeout

OUTPCAP=${1:-$HERE/../target/bench/api.pcap}
mkdir -p "$(dirname "$OUTPCAP")"
OUTPCAP=$(cd "$(dirname "$OUTPCAP")" && pwd)/$(basename "$OUTPCAP")
OUTLOG=${OUTPCAP%.pcap}.access.log
COUNT=${BENCH_API_COUNT:-300000}

WORK=$(mktemp -d /tmp/apitap-apibench.XXXXXX)
on_exit() {
    local rc=$?
    [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
    cleanup_all
    rm -rf "$WORK"
    exit $rc
}
trap on_exit EXIT
trap 'exit 130' INT TERM

log "setup"
ns_setup
SOURCES=()
for i in $(seq 100 163); do
    ip -n "$CLI_NS" addr add "10.0.0.$i/24" dev "$CLI_IF"
    SOURCES+=("10.0.0.$i")
done
mkdir -p "$WORK/nginx-tmp"
cat >"$WORK/nginx.conf" <<NGINX
user root;
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log notice;
events { worker_connections 4096; }
http {
    default_type application/json;
    client_body_temp_path $WORK/nginx-tmp/body;
    proxy_temp_path $WORK/nginx-tmp/proxy;
    fastcgi_temp_path $WORK/nginx-tmp/fastcgi;
    uwsgi_temp_path $WORK/nginx-tmp/uwsgi;
    scgi_temp_path $WORK/nginx-tmp/scgi;
    log_format apitap escape=json '{"ts":\$msec,"client_ip":"\$remote_addr","client_port":\$remote_port,'
        '"method":"\$request_method","uri":"\$request_uri","status":\$status,'
        '"request_length":\$request_length,"body_bytes_sent":\$body_bytes_sent}';
    access_log $WORK/access.log apitap buffer=256k flush=5s;
    keepalive_timeout 60s;
    keepalive_requests 1000000;
    server {
        listen 80 default_server;
        server_name _;
        if (\$http_authorization = "") { return 401 '{"error":"unauthorized","detail":"a bearer token is required"}'; }
        location ~ ^/api/v1/users/(\d+)$ {
            return 200 '{"id":\$1,"name":"Customer \$1","email":"customer\$1@mail.example","phone":"+1-555-01\$1","plan":"pro"}';
        }
        location ~ ^/api/v1/users/(\d+)/orders$ {
            return 200 '{"user":\$1,"page":"\$arg_page","orders":[{"id":"o-\$1-1","total":"19.90"},{"id":"o-\$1-2","total":"5.00"}],"next":true}';
        }
        location ~ ^/api/v1/users/(\d+)/settings$ {
            return 200 '{"user":\$1,"saved":true}';
        }
        location = /api/v1/products {
            return 200 '{"category":"\$arg_category","page":"\$arg_page","items":[{"sku":"SKU-00001","price":"9.99"},{"sku":"SKU-00002","price":"24.50"},{"sku":"SKU-00003","price":"3.10"}]}';
        }
        location ~ ^/api/v1/products/(SKU-\d+)$ {
            return 200 '{"sku":"\$1","name":"Thing \$1","price":"12.00","stock":7}';
        }
        location ~ ^/api/v1/orders/([0-9a-f-]+)$ {
            return 200 '{"id":"\$1","status":"shipped","total":"42.00","items":2}';
        }
        location = /api/v1/orders {
            return 201 '{"id":"\$request_id","status":"created"}';
        }
        location ~ ^/api/v1/carts/\d+/items/\d+$ {
            return 204;
        }
        location = /api/v1/auth/refresh {
            return 200 '{"access_token":"\$request_id","expires_in":30}';
        }
        location / {
            return 404 '{"error":"not found"}';
        }
    }
}
NGINX
nginx -t -q -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" || die "bad nginx config"
srv nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log"
wait_listen 80

log "capturing into $OUTPCAP ($COUNT requests)"
CAP_OPTS="-B 262144" cap_start "$OUTPCAP" "$SRV_IF"
START=$(date +%s)
CLI_TIMEOUT=160 cli "$PY" "$HERE/api_bench_client.py" --server "$SRV4" --port 80 \
    --sources "$(IFS=,; echo "${SOURCES[*]}")" --conns 128 --count "$COUNT" --seconds 150
CAP_LINGER=2 cap_stop "$OUTPCAP"
kill -QUIT "$(cat "$WORK/nginx.pid")"
for _ in $(seq 50); do [ -f "$WORK/nginx.pid" ] || break; sleep 0.1; done
log "traffic took $(($(date +%s) - START)) s"
cp "$WORK/access.log" "$OUTLOG"
rm -f "$OUTPCAP.tcpdump.log"
[ "$CAP_DROPS" -eq 0 ] || log "WARNING: the kernel dropped packets: the capture is incomplete"
log "$(wc -l <"$OUTLOG") requests in nginx's log"
ls -l "$OUTPCAP" "$OUTLOG"
