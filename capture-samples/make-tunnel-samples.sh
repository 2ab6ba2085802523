#!/usr/bin/env bash
# Real SOCKS and TLS captures, with their ground truth:
#
#   socks-http.pcap  curl through real SOCKS servers to nginx: SOCKS5 with an IP target
#                    (curl --socks5), with a host name (--socks5-hostname) and with
#                    RFC 1929 user/password (microsocks -u/-P), SOCKS4 (--socks4) and SOCKS4a
#                    (--socks4a) through socks4_server.py (Debian's Dante refused 4a). One
#                    request per connection.
#   tls-openssl.pcap curl -k to `openssl s_server -www` with a self-signed certificate
#                    (CN api.lab, serial 0x1234ABCD): one TLS 1.2 and one TLS 1.3
#                    connection, SNI api.lab; and one TLS 1.2 connection through SOCKS5.
#
# Ground truth: socks-http.access.jsonl is nginx's log (logtool.py) with the client address
# replaced by the address of the client's connection to the proxy (curl -w
# %{local_ip}/%{local_port}) and the server address by the proxy's, as the capture shows the
# connection. tls-openssl.expected.json: SNI and version per client port, the JA3/JA3S
# strings and hashes as tshark computes them from the capture, and the certificate fields as
# `openssl x509` prints them.
#
# Runs as root; namespaces tu-srv and tu-cli (see lib.sh for the topology); nothing else is
# addressed. Needs: nginx tcpdump curl openssl microsocks tshark python3.
#   sudo ./capture-samples/make-tunnel-samples.sh

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lib.sh"
SRV_NS=tu-srv
CLI_NS=tu-cli
SRV_IF=tu-srv0
CLI_IF=tu-cli0
VX_IF=tuvx0

need_tools ip nginx tcpdump curl openssl microsocks tshark "$PY" ss timeout

WORK=$(mktemp -d /tmp/apitap-tunnels.XXXXXX)
CAP=$WORK/cap
OUT=$WORK/out
mkdir -p "$CAP" "$OUT"
PIDS=()
on_exit() {
    local rc=$? p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    cleanup_all
    rm -rf /etc/netns/tu-srv
    if [ -z "${KEEP_WORK:-}" ]; then rm -rf "$WORK"; else log "scratch kept in $WORK"; fi
    exit $rc
}
trap on_exit EXIT
trap 'exit 130' INT TERM

ns_setup
# api.lab resolves to the server inside the server's namespace (SOCKS4a/5 host names)
mkdir -p /etc/netns/tu-srv
printf '127.0.0.1 localhost\n%s api.lab\n' "$SRV4" >/etc/netns/tu-srv/hosts
"$PY" "$HERE/clients.py" www "$WORK/www"
nginx_conf "$WORK" "$WORK/www" "$WORK/nginx-access.log" ""

bg() { ip netns exec "$SRV_NS" "$@" >>"$WORK/bg.log" 2>&1 & PIDS+=($!); }

# ---------------------------------------------------------------------------
log "socks-http"
servers_start
bg microsocks -i "$SRV4" -p 1080
bg microsocks -i "$SRV4" -p 1082 -u bob -P s3cret-pass
bg "$PY" "$HERE/socks4_server.py" "$SRV4" 1081
wait_listen 1080
wait_listen 1082
wait_listen 1081
cap_start "$CAP/socks-http.pcap" "$SRV_IF" tcp port 1080 or tcp port 1081 or tcp port 1082
: >"$WORK/ports"
via() { # curl options... URL
    cli curl -sS -o /dev/null -w '%{local_ip} %{local_port} %{http_code}\n' "$@" >>"$WORK/ports"
}
via --socks5 "$SRV4:1080" "http://$SRV4/index.html"
via --socks5-hostname "$SRV4:1080" "http://api.lab/static/data-4k.json"
via --socks5-hostname "$SRV4:1080" -H 'Content-Type: application/json' -d '{"q":1}' "http://api.lab:$API_PORT/api/orders"
via --socks5-hostname "$SRV4:1082" --proxy-user bob:s3cret-pass "http://api.lab/static/tiny.txt"
via --socks4 "$SRV4:1081" "http://$SRV4/nope"
via --socks4a "$SRV4:1081" "http://api.lab:$API_PORT/api/users/7"
cap_stop "$CAP/socks-http.pcap"
servers_stop
"$PY" "$HERE/logtool.py" merge "$WORK/socks.raw.jsonl" --nginx "$WORK/nginx-access.log" --api "$WORK/api-access.log"
# nginx/API saw the proxy; the capture sees curl's connection to it
"$PY" - "$WORK/socks.raw.jsonl" "$WORK/ports" "$OUT/socks-http.access.jsonl" <<'EOF'
import json, sys
log = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ports = [l.split() for l in open(sys.argv[2]) if l.strip()]
assert len(log) == len(ports), (len(log), len(ports))
proxy = {0: 1080, 1: 1080, 2: 1080, 3: 1082, 4: 1081, 5: 1081}
with open(sys.argv[3], "w") as f:
    for i, (e, (ip, port, code)) in enumerate(zip(log, ports)):
        assert int(code) == e["status"], (e, code)
        e["client_ip"], e["client_port"] = ip, int(port)
        e["server_ip"], e["server_port"] = "10.0.0.1", proxy[i]
        f.write(json.dumps(e) + "\n")
EOF
for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
PIDS=()

# ---------------------------------------------------------------------------
log "tls-openssl"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$WORK/key.pem" -out "$WORK/cert.pem" \
    -days 3650 -subj "/C=DE/O=apitap test/CN=api.lab" -set_serial 0x1234ABCD 2>/dev/null
bg openssl s_server -accept "$SRV4:443" -cert "$WORK/cert.pem" -key "$WORK/key.pem" -www -quiet
wait_listen 443
bg microsocks -i "$SRV4" -p 1080
wait_listen 1080
cap_start "$CAP/tls-openssl.pcap" "$SRV_IF" tcp port 443 or tcp port 1080
: >"$WORK/tls-ports"
tls() { # label curl-options...
    local l=$1
    shift
    cli curl -sS -k -o /dev/null -w "$l %{local_port}\n" "$@" >>"$WORK/tls-ports"
}
tls "TLS 1.2" --tls-max 1.2 --resolve "api.lab:443:$SRV4" https://api.lab/
tls "TLS 1.3" --tlsv1.3 --resolve "api.lab:443:$SRV4" https://api.lab/
tls "TLS 1.2" --tls-max 1.2 --socks5-hostname "$SRV4:1080" https://api.lab/
cap_stop "$CAP/tls-openssl.pcap"
for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
PIDS=()
tshark -r "$CAP/tls-openssl.pcap" -d tcp.port==1080,socks -Y 'tls.handshake.type == 1 || tls.handshake.type == 2' \
    -T fields -E separator='|' -e tcp.srcport -e tcp.dstport -e tls.handshake.type \
    -e tls.handshake.extensions_server_name -e tls.handshake.ja3_full -e tls.handshake.ja3 \
    -e tls.handshake.ja3s_full -e tls.handshake.ja3s >"$WORK/tshark.txt"
# JA4 inputs (tshark 4.0 has no ja4 field): ciphers, extension types, signature algorithms,
# supported versions and ALPN of each ClientHello, hashed below per the JA4 spec
tshark -r "$CAP/tls-openssl.pcap" -d tcp.port==1080,socks -Y 'tls.handshake.type == 1' \
    -T fields -E separator='|' -E aggregator=',' -e tcp.srcport -e tls.handshake.ciphersuite \
    -e tls.handshake.extension.type -e tls.handshake.sig_hash_alg \
    -e tls.handshake.extensions.supported_version -e tls.handshake.extensions_alpn_str >"$WORK/ja4.txt"
openssl x509 -in "$WORK/cert.pem" -noout -subject -issuer -serial -startdate -enddate \
    -nameopt RFC2253 >"$WORK/x509.txt"
"$PY" - "$WORK/tshark.txt" "$WORK/tls-ports" "$WORK/x509.txt" "$OUT/tls-openssl.expected.json" "$WORK/ja4.txt" <<'EOF'
import hashlib, json, sys, datetime
def grease(v):
    return v & 0x0F0F == 0x0A0A and v >> 8 == v & 0xFF
def ja4(line):
    _, cs, ex, sig, sv, alpn = line.split("|")
    num = lambda s: [int(x, 0) for x in s.split(",") if x]
    cs = [c for c in num(cs) if not grease(c)]
    ex = [e for e in num(ex) if not grease(e)]
    sig = [x for x in num(sig) if not grease(x)]
    sv = [x for x in num(sv) if not grease(x)]
    ver = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10"}[max(sv) if sv else 0x0303]
    a = alpn.split(",")[0] if alpn else ""
    a = a[0] + a[-1] if a else "00"
    h = lambda l: hashlib.sha256(",".join("%04x" % x for x in l).encode()).hexdigest()[:12]
    part_a = "t%s%s%02d%02d%s" % (ver, "d" if 0 in ex else "i", min(len(cs), 99), min(len(ex), 99), a)
    rest = sorted(e for e in ex if e not in (0, 16))
    c = ",".join("%04x" % x for x in rest) + ("_" + ",".join("%04x" % x for x in sig) if sig else "")
    return "%s_%s_%s" % (part_a, h(sorted(cs)), hashlib.sha256(c.encode()).hexdigest()[:12])
ja4s = {int(l.split("|")[0]): ja4(l.rstrip("\n")) for l in open(sys.argv[5]) if l.strip()}
rows = [l.rstrip("\n").split("|") for l in open(sys.argv[1]) if l.strip()]
labels = {int(l.split()[-1]): " ".join(l.split()[:-1]) for l in open(sys.argv[2]) if l.strip()}
x = dict(l.strip().split("=", 1) for l in open(sys.argv[3]) if "=" in l)
def date(s):
    return datetime.datetime.strptime(s, "%b %d %H:%M:%S %Y GMT").strftime("%Y-%m-%dT%H:%M:%S")
conns = []
for port, version in labels.items():
    c = {"client_port": port, "version": version}
    for r in rows:
        sp, dp, t = int(r[0]), int(r[1]), r[2].split(",")
        if "1" in t and sp == port:
            c.update(sni=r[3], ja3_string=r[4], ja3_hash=r[5], ja4=ja4s[port])
        if "2" in t and dp == port:
            c.update(ja3s_string=r[6], ja3s_hash=r[7])
    conns.append(c)
# RFC 2253 lists the most specific RDN first; EVE (and apitap) write them in certificate order
rev = lambda s: ", ".join(reversed(s.split(",")))
cert = {"subject": rev(x["subject"]), "issuerdn": rev(x["issuer"]), "serial": x["serial"],
        "notbefore": date(x["notBefore"]), "notafter": date(x["notAfter"])}
json.dump({"connections": conns, "certificate": cert}, open(sys.argv[4], "w"), indent=1)
EOF
cat "$OUT/tls-openssl.expected.json"

"$PY" "$HERE/verify.py" "$CAP/socks-http.pcap" "$OUT/socks-http.access.jsonl"
for f in socks-http.pcap tls-openssl.pcap; do mv "$CAP/$f" "$OUT/$f"; done
cp "$OUT"/* "$HERE/"
log "installed: $(cd "$OUT" && echo *)"
