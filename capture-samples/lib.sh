# shellcheck shell=bash
# Shared helpers for make-samples.sh and make-bench-capture.sh (sourced).
#
# Topology (all inside network namespaces created here; nothing else is
# ever addressed):
#
#   netns apitap-srv                          netns apitap-cli
#   +---------------------------+   veth      +---------------------------+
#   | at-srv0 10.0.0.1/24       |<----------->| at-cli0 10.0.0.2/24       |
#   |         fd00::1/64        |             |         fd00::2/64        |
#   | atvx0 (vxlan 42, udp 4789 over at-srv0) | atvx0 (vxlan 42)          |
#   |         10.1.0.1/24       |             |         10.1.0.2/24       |
#   | nginx :80, api_server :8080             | curl, ab, wrk, clients.py |
#   | tcpdump on at-srv0 / any  |             |                           |
#   +---------------------------+             +---------------------------+
#
# Offloads (TSO/GSO/GRO, tx checksum) are turned off on every device so the
# captured frames are MTU-sized with valid checksums, as on a real wire.

SRV_NS=apitap-srv
CLI_NS=apitap-cli
SRV_IF=at-srv0
CLI_IF=at-cli0
VX_IF=atvx0
SRV4=10.0.0.1
CLI4=10.0.0.2
SRV6=fd00::1
CLI6=fd00::2
VX_SRV4=10.1.0.1
VX_CLI4=10.1.0.2
API_PORT=8080
PY=${PYTHON:-python3}
export PYTHONDONTWRITEBYTECODE=1   # no __pycache__ in the source folder

CAP_PIDS=()
API_PID=
# shellcheck disable=SC2034  # read by the calling scripts
CAP_DROPS=0

log() { printf '\033[1m[%s] %s\033[0m\n' "$(date +%T)" "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

srv() { ip netns exec "$SRV_NS" "$@"; }
# every client command is bounded in time
cli() { ip netns exec "$CLI_NS" timeout "${CLI_TIMEOUT:-60}" "$@"; }

need_tools() {
    local t missing=()
    for t in "$@"; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
    [ ${#missing[@]} -eq 0 ] || die "missing tools: ${missing[*]} (see the header of $0)"
    [ "$(id -u)" -eq 0 ] || die "run as root (network namespaces, tcpdump)"
}

# ---------------------------------------------------------------------------
# namespaces

ns_teardown() {
    ip netns del "$SRV_NS" 2>/dev/null || true
    ip netns del "$CLI_NS" 2>/dev/null || true
}

offloads_off() { # ns dev
    if command -v ethtool >/dev/null 2>&1; then
        ip netns exec "$1" ethtool -K "$2" tx off tso off gso off gro off >/dev/null 2>&1 ||
            log "warning: ethtool -K $2 failed; frames may be larger than the MTU"
    fi
}

ns_setup() {
    ns_teardown
    ip netns add "$SRV_NS"
    ip netns add "$CLI_NS"
    local ns
    for ns in "$SRV_NS" "$CLI_NS"; do
        # fewer unsolicited IPv6 control packets (RS/DAD) in the captures
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.router_solicitations=0 \
            net.ipv6.conf.default.dad_transmits=0 net.ipv6.conf.all.router_solicitations=0
        ip -n "$ns" link set lo up
    done
    ip link add "$SRV_IF" netns "$SRV_NS" mtu 1500 type veth peer name "$CLI_IF" netns "$CLI_NS" mtu 1500
    ip -n "$SRV_NS" link set "$SRV_IF" address 02:00:0a:00:00:01
    ip -n "$CLI_NS" link set "$CLI_IF" address 02:00:0a:00:00:02
    ip -n "$SRV_NS" addr add "$SRV4/24" dev "$SRV_IF"
    ip -n "$CLI_NS" addr add "$CLI4/24" dev "$CLI_IF"
    ip -n "$SRV_NS" -6 addr add "$SRV6/64" dev "$SRV_IF" nodad
    ip -n "$CLI_NS" -6 addr add "$CLI6/64" dev "$CLI_IF" nodad
    offloads_off "$SRV_NS" "$SRV_IF"
    offloads_off "$CLI_NS" "$CLI_IF"
    ip -n "$SRV_NS" link set "$SRV_IF" up
    ip -n "$CLI_NS" link set "$CLI_IF" up

    # VXLAN overlay (VNI 42, UDP 4789) between the two namespaces
    ip -n "$SRV_NS" link add "$VX_IF" type vxlan id 42 local "$SRV4" remote "$CLI4" dstport 4789 dev "$SRV_IF"
    ip -n "$CLI_NS" link add "$VX_IF" type vxlan id 42 local "$CLI4" remote "$SRV4" dstport 4789 dev "$CLI_IF"
    ip -n "$SRV_NS" link set "$VX_IF" address 02:00:0a:01:00:01
    ip -n "$CLI_NS" link set "$VX_IF" address 02:00:0a:01:00:02
    for ns in "$SRV_NS" "$CLI_NS"; do
        ip netns exec "$ns" sysctl -qw "net.ipv6.conf.$VX_IF.disable_ipv6=1"
        offloads_off "$ns" "$VX_IF"
    done
    ip -n "$SRV_NS" addr add "$VX_SRV4/24" dev "$VX_IF"
    ip -n "$CLI_NS" addr add "$VX_CLI4/24" dev "$VX_IF"
    ip -n "$SRV_NS" link set "$VX_IF" up
    ip -n "$CLI_NS" link set "$VX_IF" up
}

# ---------------------------------------------------------------------------
# servers

wait_listen() { # port
    local i
    for i in $(seq 100); do
        if [ -n "$(srv ss -Htln "sport = :$1")" ]; then return 0; fi
        sleep 0.1
    done
    die "nothing listens on port $1 in $SRV_NS"
}

nginx_conf() { # workdir wwwroot accesslog logbuf
    mkdir -p "$1/nginx-tmp"
    sed -e "s|@WORK@|$1|g" -e "s|@WWW@|$2|g" -e "s|@LOG@|$3|g" -e "s|@LOGBUF@|$4|g" \
        "$HERE/nginx.conf.template" >"$1/nginx.conf"
    nginx -t -q -c "$1/nginx.conf" -e "$1/nginx-error.log" || die "bad nginx config"
}

# servers_start: nginx (config in $WORK/nginx.conf) and the API server, with
# fresh access logs $WORK/nginx-access.log and $WORK/api-access.log
servers_start() {
    rm -f "$WORK/nginx-access.log" "$WORK/api-access.log"
    srv nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log"
    # (background jobs call `ip netns exec` directly, not via srv(), so that
    # $! is the server's own pid: `ip netns exec` execs the command)
    ip netns exec "$SRV_NS" "$PY" "$HERE/api_server.py" --port "$API_PORT" --log "$WORK/api-access.log" \
        --max-body $((2 * 1024 * 1024)) >"$WORK/api.out" 2>&1 &
    API_PID=$!
    wait_listen 80
    wait_listen "$API_PORT"
}

wait_gone() { # pid
    local i
    for i in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    return 1
}

# servers_stop: graceful nginx quit (flushes the access log), SIGTERM api
servers_stop() {
    local pid
    if [ -f "$WORK/nginx.pid" ]; then
        pid=$(cat "$WORK/nginx.pid")
        kill -QUIT "$pid" 2>/dev/null || true
        wait_gone "$pid" || { kill -TERM "$pid" 2>/dev/null || true; wait_gone "$pid" || true; }
        rm -f "$WORK/nginx.pid"
    fi
    if [ -n "$API_PID" ]; then
        kill -TERM "$API_PID" 2>/dev/null || true
        wait "$API_PID" 2>/dev/null || true
        API_PID=
    fi
}

# ---------------------------------------------------------------------------
# capture

# cap_start FILE IFACE [extra tcpdump args]; SNAP (default 0 = whole frame).
# --immediate-mode: without it libpcap (TPACKET_V3) hands packets over in
# blocks, and the last partial block can be lost when tcpdump is stopped.
# -B 65536: 64 MiB kernel ring so that bursts (1 MB bodies at veth speed)
# are not dropped. Set CAP_OPTS to override.
cap_start() {
    local f=$1 ifc=$2 i opts
    shift 2
    read -r -a opts <<<"${CAP_OPTS:---immediate-mode -U -B 65536}"
    rm -f "$f" "$f.tcpdump.log"
    ip netns exec "$SRV_NS" tcpdump -i "$ifc" -s "${SNAP:-0}" -n -Z root "${opts[@]}" -w "$f" "$@" 2>"$f.tcpdump.log" &
    CAP_PIDS+=($!)
    for i in $(seq 100); do
        grep -q "listening on" "$f.tcpdump.log" 2>/dev/null && break
        sleep 0.1
    done
    grep -q "listening on" "$f.tcpdump.log" || die "tcpdump did not start: $(cat "$f.tcpdump.log")"
}

# cap_stop: SIGINT every running tcpdump, wait, check kernel drops
cap_stop() {
    local pid f
    sleep "${CAP_LINGER:-1}"
    for pid in "${CAP_PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
    for pid in "${CAP_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    CAP_PIDS=()
    for f in "$@"; do
        if ! grep -q "^0 packets dropped by kernel" "$f.tcpdump.log"; then
            log "warning: $f: $(grep 'dropped by kernel' "$f.tcpdump.log" || echo 'no tcpdump stats')"
            # shellcheck disable=SC2034
            CAP_DROPS=1
        fi
    done
}

# ---------------------------------------------------------------------------
# clients

# curl_many [curl options] -- URL...: all URLs in one curl run, hence on one
# keep-alive connection per host:port; bodies discarded, status printed.
curl_many() {
    local opts=() urls=() u
    while [ "$1" != "--" ]; do opts+=("$1"); shift; done
    shift
    for u in "$@"; do urls+=(-o /dev/null "$u"); done
    cli curl -sS ${opts[@]+"${opts[@]}"} -w '  %{http_code} %{url_effective}\n' "${urls[@]}"
}

# gzip_fetch MAP URL...: GET the URLs on one connection with
# "Accept-Encoding: gzip" and add {request-target: body size} to the JSON
# file MAP. curl writes the body de-chunked but still compressed, which is
# exactly resp_body_bytes; logtool.py needs it for nginx's chunked responses.
gzip_fetch() {
    local map=$1 args=() i=0 u
    shift
    for u in "$@"; do args+=(-o "$WORK/gz.$i" "$u"); i=$((i + 1)); done
    cli curl -sS -H 'Accept-Encoding: gzip' -w '  %{http_code} %{url_effective}\n' "${args[@]}"
    "$PY" - "$map" "$WORK/gz" "$@" <<'EOF'
import json, os, sys, urllib.parse
m, pre, urls = sys.argv[1], sys.argv[2], sys.argv[3:]
d = json.load(open(m)) if os.path.exists(m) else {}
for i, u in enumerate(urls):
    s = urllib.parse.urlsplit(u)
    d[s.path + ("?" + s.query if s.query else "")] = os.path.getsize("%s.%d" % (pre, i))
json.dump(d, open(m, "w"), indent=1)
EOF
}

# ---------------------------------------------------------------------------

cleanup_all() {
    local pid
    for pid in "${CAP_PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
    for pid in "${CAP_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    CAP_PIDS=()
    if [ -n "${WORK:-}" ]; then servers_stop; fi
    ns_teardown
}
