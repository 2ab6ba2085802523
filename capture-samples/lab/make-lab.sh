#!/usr/bin/env bash
# make-lab.sh SEED [OUTDIR] - run the attack lab for one seed and write
#   OUTDIR/lab-SEED.pcap.gz          capture on the server's client-facing veth (gzip'd)
#   OUTDIR/lab-SEED.access.jsonl.gz  nginx access log (JSON lines), ground truth (gzip'd)
#   OUTDIR/lab-SEED.labels.json   benign/attacker addresses, attack windows
# (OUTDIR defaults to capture-samples/lab). Takes about two minutes.
#
# Needs root, Linux network namespaces/veth/bridge, and the Debian packages
#   nginx tcpdump iproute2 ethtool python3 wrk hydra gobuster ffuf nmap sqlmap wfuzz dirb
# (dirb for /usr/share/dirb/wordlists/common.txt, nmap for passwords.lst).
#
# Topology (all in namespaces created here; nothing else is addressed):
#
#   atlab-srv                 atlab-sw                    clients
#   atl-srv0 10.77.0.1/24 <-> atl-br0 (bridge) <-> atl-ben0 in atlab-ben: 20 benign addresses
#   nginx :80 -> lab_api.py                    <-> atl-a01 in atlab-a01: one attacker address
#   127.0.0.1:8081                             <-> ...  atl-a16 in atlab-a16
#   tcpdump -i atl-srv0
#
# Set KEEP_WORK=1 to keep the scratch directory.
set -euo pipefail

LAB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SEED=${1:?usage: make-lab.sh SEED [OUTDIR]}
OUTDIR=${2:-$LAB}
PY=${PYTHON:-python3}
API_PORT=8081
SRV_NS=atlab-srv
SW_NS=atlab-sw
BEN_NS=atlab-ben
export PYTHONDONTWRITEBYTECODE=1

log() { printf '\033[1m[%s] %s\033[0m\n' "$(date +%T)" "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

for t in ip nginx tcpdump ethtool "$PY" wrk hydra gobuster ffuf nmap sqlmap wfuzz timeout ss; do
    command -v "$t" >/dev/null || die "missing tool $t"
done
[ "$(id -u)" -eq 0 ] || die "run as root"
[ -f /usr/share/dirb/wordlists/common.txt ] || die "dirb word list missing (apt-get install dirb)"
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)

WORK=$(mktemp -d /tmp/atlab.XXXXXX)
TCPDUMP_PID=
API_PID=
NSLIST=()

all_ns() { ip netns list | awk '{print $1}' | grep -E '^atlab-(srv|sw|ben|a[0-9]+)$' || true; }

teardown() {
    if [ -n "$TCPDUMP_PID" ]; then kill -INT "$TCPDUMP_PID" 2>/dev/null || true; wait "$TCPDUMP_PID" 2>/dev/null || true; fi
    if [ -f "$WORK/nginx.pid" ]; then kill -QUIT "$(cat "$WORK/nginx.pid")" 2>/dev/null || true; sleep 0.5; fi
    if [ -n "$API_PID" ]; then kill -TERM "$API_PID" 2>/dev/null || true; wait "$API_PID" 2>/dev/null || true; fi
    local ns
    for ns in $(all_ns); do ip netns del "$ns" 2>/dev/null || true; done
}
on_exit() {
    local rc=$?
    teardown
    if [ -z "${KEEP_WORK:-}" ]; then rm -rf "$WORK"; else log "scratch kept in $WORK"; fi
    exit $rc
}
trap on_exit EXIT
trap 'exit 130' INT TERM

offloads_off() { ip netns exec "$1" ethtool -K "$2" tx off tso off gso off gro off >/dev/null 2>&1 || log "warning: ethtool $2"; }

newns() {
    ip netns add "$1"
    ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$1" link set lo up
}

# attach NS IFNAME MAC: veth IFNAME in NS, peer in the switch bridge
attach() {
    local ns=$1 ifn=$2 mac=$3 peer=s-$2
    ip link add "$ifn" netns "$ns" mtu 1500 type veth peer name "$peer" netns "$SW_NS" mtu 1500
    ip netns exec "$ns" sysctl -qw "net.ipv6.conf.$ifn.disable_ipv6=1" 2>/dev/null || true
    ip -n "$ns" link set "$ifn" address "$mac"
    offloads_off "$ns" "$ifn"
    offloads_off "$SW_NS" "$peer"
    ip -n "$SW_NS" link set "$peer" master atl-br0 up
    ip -n "$ns" link set "$ifn" up
}

mac_of() { printf '02:77:00:00:00:%02x' "${1##*.}"; }

# --- plan -----------------------------------------------------------------
log "seed $SEED: planning (work dir $WORK)"
for ns in $(all_ns); do ip netns del "$ns"; done
"$PY" "$LAB/lab_driver.py" plan "$SEED" "$WORK"

# --- namespaces -------------------------------------------------------------
newns "$SW_NS"
ip -n "$SW_NS" link add atl-br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
ip netns exec "$SW_NS" sysctl -qw net.ipv6.conf.atl-br0.disable_ipv6=1 2>/dev/null || true
ip -n "$SW_NS" link set atl-br0 up
newns "$SRV_NS"
attach "$SRV_NS" atl-srv0 02:77:00:00:00:01
ip -n "$SRV_NS" addr add 10.77.0.1/24 dev atl-srv0
newns "$BEN_NS"
attach "$BEN_NS" atl-ben0 02:77:00:00:00:fe
for a in $("$PY" -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["benign"]))' "$WORK/plan.json"); do
    ip -n "$BEN_NS" addr add "$a/24" dev atl-ben0
done
while read -r ns ifn addr; do
    newns "$ns"
    attach "$ns" "$ifn" "$(mac_of "$addr")"
    ip -n "$ns" addr add "$addr/24" dev "$ifn"
done < <("$PY" -c 'import json,sys
for a in json.load(open(sys.argv[1]))["attacks"]: print(a["ns"], a["ifname"], a["address"])' "$WORK/plan.json")

# --- servers ------------------------------------------------------------------
mkdir -p "$WORK/nginx-tmp"
sed -e "s|@WORK@|$WORK|g" -e "s|@LOG@|$WORK/access.log|g" -e "s|@API_PORT@|$API_PORT|g" \
    "$LAB/nginx-lab.conf.template" >"$WORK/nginx.conf"
nginx -t -q -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" || die "bad nginx config"
ip netns exec "$SRV_NS" "$PY" "$LAB/lab_api.py" --port "$API_PORT" --seed "$SEED" >"$WORK/api.out" 2>&1 &
API_PID=$!
ip netns exec "$SRV_NS" nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log"
for port in 80 $API_PORT; do
    for _ in $(seq 100); do [ -n "$(ip netns exec "$SRV_NS" ss -Htln "sport = :$port")" ] && break; sleep 0.1; done
    [ -n "$(ip netns exec "$SRV_NS" ss -Htln "sport = :$port")" ] || die "nothing listens on :$port"
done
# warm the nginx->api upstream from inside the server namespace (not captured: lo)
ip netns exec "$SRV_NS" timeout 5 curl -s -o /dev/null http://127.0.0.1:$API_PORT/api/v1/health

# reachability of every client namespace: a TCP connect to :80 without a
# request (nginx logs nothing for it); before the capture starts
reach() { ip netns exec "$1" timeout 5 "$PY" -c 'import socket; socket.create_connection(("10.77.0.1", 80), 3).close()' ||
    die "$1 cannot reach the server"; }
reach "$BEN_NS"
for ns in $(all_ns | grep -E '^atlab-a'); do reach "$ns"; done

# --- capture + lab --------------------------------------------------------------
PCAP=$WORK/lab.pcap
ip netns exec "$SRV_NS" tcpdump -i atl-srv0 -n -Z root --immediate-mode -U -B 65536 -w "$PCAP" \
    2>"$WORK/tcpdump.log" &
TCPDUMP_PID=$!
for _ in $(seq 100); do grep -q "listening on" "$WORK/tcpdump.log" && break; sleep 0.1; done
grep -q "listening on" "$WORK/tcpdump.log" || die "tcpdump did not start"

log "seed $SEED: running the lab (~2 minutes)"
"$PY" "$LAB/lab_driver.py" run "$WORK" | tee "$WORK/driver.out"

sleep 1
kill -QUIT "$(cat "$WORK/nginx.pid")"   # graceful: flushes the access log
for _ in $(seq 100); do [ -f "$WORK/nginx.pid" ] || break; sleep 0.1; done
sleep 1
kill -INT "$TCPDUMP_PID"; wait "$TCPDUMP_PID" || true; TCPDUMP_PID=
cat "$WORK/tcpdump.log" >&2
grep -q "^0 packets dropped by kernel" "$WORK/tcpdump.log" || die "tcpdump dropped packets"

# --- outputs --------------------------------------------------------------------
cp "$PCAP" "$OUTDIR/lab-$SEED.pcap"
cp "$WORK/access.log" "$OUTDIR/lab-$SEED.access.jsonl"
rc=0
"$PY" "$LAB/lab_driver.py" finish "$WORK" "$OUTDIR/lab-$SEED.access.jsonl" "$OUTDIR/lab-$SEED.pcap" \
    "$OUTDIR/lab-$SEED.labels.json" || rc=$?
# kept small in the repository: apitap reads gzip'd captures, the scorer gzip'd logs
gzip -9 -f "$OUTDIR/lab-$SEED.pcap" "$OUTDIR/lab-$SEED.access.jsonl"
mkdir -p "$OUTDIR/logs-$SEED"
cp "$WORK"/logs/*.out "$WORK/driver.out" "$WORK/plan.json" "$WORK/nginx-error.log" "$OUTDIR/logs-$SEED/" 2>/dev/null || true
ls -l "$OUTDIR/lab-$SEED".* >&2
[ $rc -eq 0 ] || log "seed $SEED: plausibility check reported problems (see labels check_problems)"
exit $rc
