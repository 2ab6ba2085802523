//! Parser parity with a real server (issue 12): request shapes nginx accepts are sent over real
//! TCP to nginx in a network namespace (a veth pair, MTU 1500, offloads off, so segments are
//! what a mirror port sees), captured by tcpdump, replayed through apitap, and every request
//! nginx logged must be an apitap `http` event with the same method, target and status (on the
//! same client port). Shapes: an unusual first method, HTTP/1.2, 1.9 and 1.01, spaces after
//! the version, a HEAD over HTTP/1.2 before a run of logins, chunk sizes with leading zeros,
//! a control byte in a header value, a head over 32 KiB, HTTP/0.9, 100 pipelined requests, a
//! Content-Length above 2^63-1.
//!
//! A second test generates request shapes from a small grammar (the habit of HTTP Garden and
//! T-Reqs) and runs them against nginx and, as a second server family, Apache httpd: 300
//! cases on a fixed seed by default; `HTTP_PARITY_CASES=5000 HTTP_PARITY_SEED=N` to run long,
//! `HTTP_PARITY_KEEP=DIR` to keep the captures and the servers' logs.
//!
//! Needs root, iproute2, nginx, apache2 and tcpdump (`.ci/run` installs them); without them
//! it prints `SKIPPED: ...` and passes.

mod common;
use common::have;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const PORT: u16 = 80;
const SRV: &str = "10.231.7.1";

/// Two namespaces (`ph<pid><x>-s`, `ph<pid><x>-c`) joined by a veth pair; removed on drop.
struct Net {
    tag: String,
}

impl Net {
    fn up(which: char) -> Net {
        let tag = format!("ph{}{which}", std::process::id() % 100_000);
        let net = Net { tag };
        net.down();
        let (s, c, t) = (net.srv(), net.cli(), &net.tag);
        sh(&format!(
            "ip netns add {s} && ip netns add {c} && \
             ip link add {t}s0 mtu 1500 type veth peer name {t}c0 mtu 1500 && \
             ip link set {t}s0 netns {s} && ip link set {t}c0 netns {c} && \
             ip -n {s} addr add {SRV}/24 dev {t}s0 && ip -n {c} addr add 10.231.7.2/24 dev {t}c0 && \
             ip -n {s} link set {t}s0 up && ip -n {c} link set {t}c0 up && \
             ip -n {s} link set lo up && ip -n {c} link set lo up"
        ));
        for (ns, dev) in [(&s, format!("{t}s0")), (&c, format!("{t}c0"))] {
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "ip netns exec {ns} ethtool -K {dev} tso off gso off gro off tx off"
                ))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        net
    }

    fn srv(&self) -> String {
        format!("{}-s", self.tag)
    }

    fn cli(&self) -> String {
        format!("{}-c", self.tag)
    }

    fn down(&self) {
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ip netns del {}-s 2>/dev/null; ip netns del {}-c 2>/dev/null",
                self.tag, self.tag
            ))
            .status();
    }

    /// Run `f` on a thread inside the client namespace.
    fn in_cli<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.cli());
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("netns file");
            let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns into the client namespace");
            f()
        })
        .join()
        .expect("client thread")
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.down();
    }
}

fn sh(cmd: &str) {
    let st = Command::new("sh").arg("-c").arg(cmd).status().expect("sh");
    assert!(st.success(), "failed: {cmd}");
}

/// A child process stopped when the test ends, even by a failed assertion.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nginx(net: &Net, dir: &Path) -> (Proc, PathBuf) {
    let root = dir.join("www");
    std::fs::create_dir_all(root.join("api")).expect("mkdir");
    std::fs::write(root.join("index.html"), "<html>hello</html>\n".repeat(20)).expect("write");
    std::fs::write(root.join("api/users.json"), "{\"users\":[1,2,3]}\n".repeat(10)).expect("write");
    let log = dir.join("access.jsonl");
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            r#"daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
worker_processes 1;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fcgi;
  uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
  large_client_header_buffers 8 16k;
  keepalive_requests 1000;
  log_format j escape=json '{{"client_port":$remote_port,"method":"$request_method","uri":"$request_uri","status":$status}}';
  server {{
    listen {SRV}:{PORT};
    access_log {log} j;
    root {root};
    location / {{ }}
  }}
}}
"#,
            dir = dir.display(),
            log = log.display(),
            root = root.display()
        ),
    )
    .expect("conf");
    let p = Proc(
        Command::new("ip")
            .args(["netns", "exec", &net.srv(), "nginx", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx"),
    );
    wait_up(net, "nginx");
    (p, log)
}

/// Apache httpd (event MPM, its default HttpProtocolOptions) in the server namespace, the
/// same files, a JSON access log with the request line (its target is taken from it).
fn apache(net: &Net, dir: &Path) -> (Proc, PathBuf) {
    let root = dir.join("www");
    std::fs::create_dir_all(root.join("api")).expect("mkdir");
    std::fs::write(root.join("index.html"), "<html>hello</html>\n".repeat(20)).expect("write");
    std::fs::write(root.join("api/users.json"), "{\"users\":[1,2,3]}\n".repeat(10)).expect("write");
    for p in [dir, root.as_path(), root.join("api").as_path()] {
        let _ = std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755));
    }
    let log = dir.join("access.jsonl");
    let conf = dir.join("apache.conf");
    let m = "/usr/lib/apache2/modules";
    std::fs::write(
        &conf,
        format!(
            r#"LoadModule mpm_event_module {m}/mod_mpm_event.so
LoadModule authz_core_module {m}/mod_authz_core.so
ServerName parity
Listen {SRV}:{PORT}
PidFile {dir}/apache.pid
DefaultRuntimeDir {dir}
ErrorLog {dir}/apache-error.log
User nobody
Group nogroup
KeepAlive On
MaxKeepAliveRequests 1000
LimitRequestFieldSize 16384
DocumentRoot {root}
<Directory {root}>
  Require all granted
</Directory>
LogFormat "{{\"client_port\":%{{remote}}p,\"method\":\"%m\",\"request\":\"%r\",\"status\":%>s}}" j
CustomLog {log} j
"#,
            dir = dir.display(),
            log = log.display(),
            root = root.display()
        ),
    )
    .expect("conf");
    let p = Proc(
        Command::new("ip")
            .args(["netns", "exec", &net.srv(), "apache2", "-X", "-f"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("apache2"),
    );
    wait_up(net, "apache2");
    (p, log)
}

fn wait_up(net: &Net, what: &str) {
    let up = net.in_cli(|| {
        let t = Instant::now();
        while TcpStream::connect((SRV, PORT)).is_err() {
            if t.elapsed() > Duration::from_secs(10) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    });
    assert!(up, "{what} did not come up");
}

/// An absolute-form target as its path (nginx logs it so, Apache and apitap as sent).
fn path_form(url: &str) -> String {
    match url.strip_prefix("http://").and_then(|r| r.find('/').map(|i| &r[i..])) {
        Some(path) => path.to_string(),
        None => url.to_string(),
    }
}

/// The target in a logged request line: between the method and a trailing ` HTTP/x.y`.
fn target_of(request: &str) -> String {
    let rest = request.split_once(' ').map_or("", |(_, r)| r).trim();
    match rest.rsplit_once(' ') {
        Some((t, v)) if v.to_ascii_uppercase().starts_with("HTTP/") => t.trim().to_string(),
        _ => rest.to_string(),
    }
}

/// Send `segs` on one connection as separate segments (no Nagle, a short pause between
/// them), half-close, and read until nginx closes (bounded in time); returns the client port.
fn send(segs: &[Vec<u8>]) -> u16 {
    let mut s = TcpStream::connect((SRV, PORT)).expect("connect");
    let port = s.local_addr().expect("addr").port();
    let _ = s.set_nodelay(true);
    s.set_read_timeout(Some(Duration::from_millis(1500))).expect("timeout");
    for seg in segs {
        if s.write_all(seg).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut buf = [0u8; 65536];
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(3) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    port
}

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn cases() -> Vec<(String, Vec<Vec<u8>>)> {
    let mut v: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "two-letter first method",
            vec![
                b("AB / HTTP/1.1\r\nHost: a\r\n\r\n"),
                b("GET /api/users.json?id=1'%20OR%201=1-- HTTP/1.1\r\nHost: a\r\n\r\n"),
            ],
        ),
        (
            "21-letter first method",
            vec![
                b("ABCDEFGHIJKLMNOPQRSTU / HTTP/1.1\r\nHost: a\r\n\r\n"),
                b("GET /index.html?after HTTP/1.1\r\nHost: a\r\n\r\n"),
            ],
        ),
        (
            "versions",
            vec![
                b("GET /index.html?v=12'%20UNION%20SELECT%201 HTTP/1.2\r\nHost: a\r\n\r\n"),
                b("GET /index.html?v=19 HTTP/1.9\r\nHost: a\r\n\r\n"),
                b("GET /index.html?v=101 HTTP/1.01\r\nHost: a\r\n\r\n"),
                b("GET /index.html?v=trailing HTTP/1.1  \r\nHost: a\r\n\r\n"),
            ],
        ),
        (
            "chunk sizes with leading zeros",
            vec![
                b("POST /index.html HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
                b("00000000000000023\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n\r\n0\r\n\r\n"),
                b("GET /index.html?after-chunked HTTP/1.1\r\nHost: a\r\n\r\n"),
            ],
        ),
        (
            "control byte in a header value",
            vec![b(
                "GET /api/v?jndi HTTP/1.1\r\nHost: a\r\nX-Api-Version: ${jndi:ldap://127.0.0.1/a}\x7f\r\n\r\n",
            )],
        ),
        ("HTTP/0.9", vec![b("GET /index.html\r\n")]),
        (
            "Content-Length above 2^63-1",
            vec![b(
                "POST /index.html HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n",
            )],
        ),
    ];
    let mut login = vec![b("HEAD /index.html HTTP/1.2\r\nHost: a\r\n\r\n")];
    for i in 0..30 {
        let body = format!("user=admin&password=guess{i}");
        login.push(b(&format!(
            "POST /login HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )));
    }
    v.push(("HEAD over HTTP/1.2 then 30 logins", login));
    let mut big = b("GET /index.html?big=1 HTTP/1.1\r\nHost: a\r\n");
    for i in 0..12 {
        big.extend(format!("X-Pad-{i}: {}\r\n", "p".repeat(4000)).as_bytes());
    }
    big.extend(b"\r\n");
    v.push(("head over 32 KiB", vec![big]));
    let mut pipe = Vec::new();
    for i in 0..100 {
        pipe.extend(format!("GET /index.html?pipelined={i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
    }
    v.push(("100 pipelined requests", vec![pipe]));
    v.into_iter().map(|(n, c)| (n.to_string(), c)).collect()
}

fn skip() -> bool {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: http_parity needs root (network namespaces, tcpdump)");
        return true;
    }
    for t in ["nginx", "tcpdump", "ip"] {
        if !have(t) {
            eprintln!("SKIPPED: http_parity needs {t} (.ci/run installs it)");
            return true;
        }
    }
    false
}

struct Outcome {
    /// Requests the server logged with a method (it could read the request line).
    logged: usize,
    /// Log lines without one (junk the server refused before reading a method).
    unparsed: usize,
    /// Requests nginx logged that apitap did not report, with their case.
    missing: Vec<String>,
    events: Vec<Value>,
}

/// Send every case (on `threads` client threads) to nginx in namespaces `which`, capture,
/// replay, and match nginx's log against apitap's `http` events.
#[derive(Clone, Copy, PartialEq)]
enum Server {
    Nginx,
    Apache,
}

fn run_parity(server: Server, which: char, cases: Vec<(String, Vec<Vec<u8>>)>, threads: usize, keep: &str) -> Outcome {
    let dir = tempfile::tempdir().expect("tmp");
    let net = Net::up(which);
    let (_server, log) = match server {
        Server::Nginx => nginx(&net, dir.path()),
        Server::Apache => apache(&net, dir.path()),
    };
    let cap = dir.path().join("parity.pcap");
    let mut dump = Proc(
        Command::new("ip")
            .args(["netns", "exec", &net.srv(), "tcpdump", "-i", &format!("{}s0", net.tag)])
            .args(["--immediate-mode", "-U", "-n", "-s", "0", "-B", "16384", "-w"])
            .arg(&cap)
            .arg(format!("tcp port {PORT}"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump"),
    );
    // tcpdump says "listening on" once its capture is open
    let mut err = dump.0.stderr.take().expect("stderr");
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("listening on") {
        match err.read(&mut buf) {
            Ok(0) | Err(_) => panic!("tcpdump did not start: {}", String::from_utf8_lossy(&seen)),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    let _ = std::fs::write(&log, "");
    let names: Vec<String> = cases.iter().map(|c| c.0.clone()).collect();
    let shared = std::sync::Arc::new(std::sync::Mutex::new(cases.into_iter().enumerate().collect::<Vec<_>>()));
    let ports: Vec<(u16, usize)> = net.in_cli(move || {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                let q = shared.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    loop {
                        let next = q.lock().map(|mut v| v.pop()).unwrap_or(None);
                        let Some((i, (_, segs))) = next else { break };
                        got.push((send(&segs), i));
                    }
                    got
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap_or_default()).collect()
    });
    std::thread::sleep(Duration::from_millis(1000));
    unsafe { libc::kill(dump.0.id() as i32, libc::SIGINT) };
    let _ = dump.0.wait();

    if let Some(k) = std::env::var_os("HTTP_PARITY_KEEP") {
        // to compare another build by hand: the capture and nginx's log
        let k = PathBuf::from(k);
        let _ = std::fs::copy(&cap, k.join(format!("{keep}.pcap")));
        let _ = std::fs::copy(&log, k.join(format!("{keep}.access.jsonl")));
    }
    let logged: Vec<Value> = std::fs::read_to_string(&log)
        .expect("access log")
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .args([
            "replay",
            "-q",
            "--no-progress",
            "--log-headers",
            "--types",
            "http,anomaly",
        ])
        .arg(&cap)
        .output()
        .expect("apitap");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut http: Vec<(u64, String, String, u64)> = events
        .iter()
        .filter(|e| e["event_type"] == "http")
        .map(|e| {
            (
                e["src_port"].as_u64().unwrap_or(0),
                e["http"]["http_method"].as_str().unwrap_or("").to_string(),
                path_form(e["http"]["url"].as_str().unwrap_or("")),
                e["http"]["status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let h09_ports: Vec<u64> = events
        .iter()
        .filter(|e| e["event_type"] == "http" && e["http"]["protocol"] == "HTTP/0.9")
        .filter_map(|e| e["src_port"].as_u64())
        .collect();
    let mut missing = Vec::new();
    let mut unparsed = 0;
    for l in &logged {
        let (m, u) = (l["method"].as_str().unwrap_or(""), l["uri"].as_str());
        if m.is_empty() || (m == "-" && u.is_none() && target_of(l["request"].as_str().unwrap_or("")).is_empty()) {
            // the server could not read a request line (it logs no method): nothing to compare
            unparsed += 1;
            continue;
        }
        let want = (
            l["client_port"].as_u64().unwrap_or(0),
            l["method"].as_str().unwrap_or("").to_string(),
            path_form(&match u {
                Some(u) => u.to_string(),
                None => target_of(l["request"].as_str().unwrap_or("")),
            }),
            l["status"].as_u64().unwrap_or(0),
        );
        // an HTTP/0.9 reply has no status line: apitap reports status 0 (unknown), nginx its own
        let h09 = |h: &(u64, String, String, u64)| {
            h.3 == 0 && (h.0, &h.1, &h.2) == (want.0, &want.1, &want.2) && h09_ports.contains(&h.0)
        };
        // Apache logs "-" for the method of a request it rejected early
        let any_method =
            |h: &(u64, String, String, u64)| want.1 == "-" && (h.0, &h.2, h.3) == (want.0, &want.2, want.3);
        match http
            .iter()
            .position(|h| *h == want)
            .or_else(|| http.iter().position(h09))
            .or_else(|| http.iter().position(any_method))
        {
            Some(i) => {
                http.remove(i);
            }
            None => {
                let case = ports
                    .iter()
                    .find(|(p, _)| u64::from(*p) == want.0)
                    .map_or("?", |c| names[c.1].as_str());
                let got: Vec<_> = http.iter().filter(|h| h.0 == want.0).collect();
                missing.push(format!(
                    "{case}: {want:?}; apitap on that connection: {:?}",
                    &got[..got.len().min(4)]
                ));
            }
        }
    }
    Outcome {
        logged: logged.len() - unparsed,
        unparsed,
        missing,
        events,
    }
}

#[test]
fn every_request_nginx_logged_is_an_apitap_transaction() {
    if skip() {
        return;
    }
    let n = cases().len();
    let o = run_parity(Server::Nginx, 'a', cases(), 1, "parity");
    eprintln!(
        "http_parity: nginx logged {} requests over {n} connections; apitap matched {}",
        o.logged,
        o.logged - o.missing.len()
    );
    assert!(o.logged >= 140, "nginx logged only {} requests", o.logged);
    assert!(
        o.missing.is_empty(),
        "requests nginx logged that apitap did not report:\n{}",
        o.missing.join("\n")
    );
    // the JNDI payload behind a control byte reached the transaction's headers
    assert!(
        o.events
            .iter()
            .any(|e| e["http"]["request_headers"].as_array().is_some_and(|h| h
                .iter()
                .any(|h| h["value"].as_str().is_some_and(|v| v.contains("${jndi:"))))),
        "X-Api-Version with a trailing DEL is in the event's headers"
    );
}

/// xorshift64*: a fixed seed gives the same cases on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// One generated connection: 1-5 requests from a small grammar (methods, versions, spaces,
/// line ends, control bytes in values, padded heads, Content-Length or chunked bodies with
/// leading zeros, upper-case hex and extensions, HTTP/0.9), cut into segments at random points.
fn generated_case(r: &mut Rng, n: usize) -> (String, Vec<Vec<u8>>) {
    const METHODS: &[&str] = &[
        "GET",
        "GET",
        "GET",
        "POST",
        "POST",
        "HEAD",
        "PUT",
        "DELETE",
        "OPTIONS",
        "PATCH",
        "AB",
        "PROPFIND",
        "XYZZYXYZZYXYZZYXYZZYX",
    ];
    const TARGETS: &[&str] = &[
        "/index.html",
        "/api/users.json",
        "/missing",
        "/index.html?q=1'%20OR%201=1--",
        "/api/users.json?u=${jndi:ldap://x/a}",
        "/a%20b",
    ];
    const VERSIONS: &[&str] = &[
        "HTTP/1.1",
        "HTTP/1.1",
        "HTTP/1.1",
        "HTTP/1.1",
        "HTTP/1.0",
        "HTTP/1.2",
        "HTTP/1.9",
        "HTTP/1.01",
    ];
    let mut wire = Vec::new();
    let mut what = Vec::new();
    for k in 0..1 + r.below(5) {
        let method = *r.pick(METHODS);
        let target = format!("{}{}g{n}k{k}", r.pick(TARGETS), if r.chance(50) { "?" } else { "#" });
        let target = target.replace('#', if target.contains('?') { "&" } else { "?" });
        if k == 0 && r.chance(2) {
            wire.extend(b"\r\n\r\n");
            what.push("blank lines first".into());
        }
        if k == 0 && r.chance(3) {
            // HTTP/0.9: nginx answers and closes
            wire.extend(format!("GET {target}\r\n").as_bytes());
            what.push("0.9".to_string());
            break;
        }
        let version = if r.chance(3) { "HTTP/2.0" } else { *r.pick(VERSIONS) };
        let method = if r.chance(3) { "get" } else { method };
        let target = match r.below(40) {
            0 => "*".to_string(),
            1 => format!("http://a{target}"),
            _ => target,
        };
        let sp = match r.below(20) {
            0..=2 => "  ",
            3 => "\t",
            _ => " ",
        };
        let trail = if r.chance(10) { " " } else { "" };
        let eol = if r.chance(10) { "\n" } else { "\r\n" };
        wire.extend(format!("{method}{sp}{target}{sp}{version}{trail}{eol}Host: a{eol}").as_bytes());
        let mut tags = vec![method.to_string(), version.to_string()];
        if r.chance(10) {
            let c = *r.pick(&[0x01u8, 0x07, 0x0b, 0x1f, 0x7f]);
            wire.extend(b"X-Api-Version: ${jndi:ldap://x/a}");
            wire.push(c);
            wire.extend(eol.as_bytes());
            tags.push(format!("ctl{c:02x}"));
        }
        if r.chance(8) {
            let pad = 1000 + r.below(40_000);
            for i in 0..pad / 4000 + 1 {
                wire.extend(format!("X-Pad-{i}: {}{eol}", "p".repeat(pad.min(4000))).as_bytes());
            }
            tags.push(format!("pad{pad}"));
        }
        if r.chance(3) {
            wire.extend(format!("X-Folded: a{eol} b{eol}").as_bytes());
            tags.push("obs-fold".into());
        }
        if r.chance(3) {
            wire.extend(format!("Expect: 100-continue{eol}").as_bytes());
            tags.push("expect".into());
        }
        let body: Vec<u8> = (0..r.below(300)).map(|i| b'a' + (i % 26) as u8).collect();
        if matches!(method, "POST" | "PUT") && r.chance(8) {
            // framing a server may refuse: both CL and TE, two CLs, a signed or huge CL
            let (h, tag) = match r.below(4) {
                0 => (
                    format!("Content-Length: {}{eol}Transfer-Encoding: chunked{eol}", body.len()),
                    "cl+te",
                ),
                1 => (
                    format!("Content-Length: {0}{eol}Content-Length: {0}9{eol}", body.len()),
                    "cl,cl",
                ),
                2 => (format!("Content-Length: +{}{eol}", body.len()), "cl+"),
                _ => (format!("Content-Length: 18446744073709551615{eol}"), "cl-max"),
            };
            wire.extend(h.as_bytes());
            wire.extend(eol.as_bytes());
            wire.extend(format!("{:x}\r\n", body.len()).as_bytes());
            wire.extend(&body);
            wire.extend(b"\r\n0\r\n\r\n");
            tags.push(tag.into());
            what.push(tags.join(","));
            continue;
        }
        let has_body = matches!(method, "POST" | "PUT" | "PATCH") && version != "HTTP/1.0";
        if has_body && r.chance(50) {
            wire.extend(format!("Transfer-Encoding: chunked{eol}{eol}").as_bytes());
            let mut rest = &body[..];
            while !rest.is_empty() {
                let take = 1 + r.below(rest.len());
                let zeros = "0".repeat(r.below(14));
                let hex = if r.chance(50) {
                    format!("{take:X}")
                } else {
                    format!("{take:x}")
                };
                let ext = if r.chance(20) { ";ext=1" } else { "" };
                wire.extend(format!("{zeros}{hex}{ext}\r\n").as_bytes());
                wire.extend(&rest[..take]);
                wire.extend(b"\r\n");
                rest = &rest[take..];
            }
            let trailer = if r.chance(10) { "X-Trailer: t\r\n" } else { "" };
            wire.extend(format!("{}0\r\n{trailer}\r\n", "0".repeat(r.below(5))).as_bytes());
            tags.push("chunked".into());
        } else if has_body {
            wire.extend(format!("Content-Length: {}{eol}{eol}", body.len()).as_bytes());
            wire.extend(&body);
            tags.push("cl".into());
        } else {
            wire.extend(eol.as_bytes());
        }
        what.push(tags.join(","));
    }
    let mut cuts: Vec<usize> = (0..r.below(5)).map(|_| r.below(wire.len())).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut segs = Vec::new();
    let mut at = 0;
    for c in cuts.into_iter().chain([wire.len()]) {
        if c > at {
            segs.push(wire[at..c].to_vec());
            at = c;
        }
    }
    (format!("case {n} [{}]", what.join(" | ")), segs)
}

/// The differential harness: generated request shapes (HTTP_PARITY_CASES, default 300;
/// HTTP_PARITY_SEED, default fixed) against nginx; every request nginx logged must be an
/// apitap transaction with the same method, target and status.
#[test]
fn generated_request_shapes_match_what_nginx_logged() {
    if skip() {
        return;
    }
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let n = env("HTTP_PARITY_CASES", 300) as usize;
    let seed = env("HTTP_PARITY_SEED", 0x5eed_0012);
    let mut r = Rng(seed | 1);
    let cases: Vec<_> = (0..n).map(|i| generated_case(&mut r, i)).collect();
    let t = Instant::now();
    let o = run_parity(Server::Nginx, 'b', cases, 8, "generated");
    let anomalies = o.events.iter().filter(|e| e["event_type"] == "anomaly").count();
    eprintln!(
        "http_parity generated: seed {seed:#x}, {n} connections, nginx logged {} requests (+{} it could not \
         read), apitap matched {}, {} anomaly events, {:.1} s",
        o.logged,
        o.unparsed,
        o.logged - o.missing.len(),
        anomalies,
        t.elapsed().as_secs_f64()
    );
    assert!(o.logged >= n, "nginx logged only {} requests", o.logged);
    assert!(
        o.missing.is_empty(),
        "{} requests nginx logged that apitap did not report:\n{}",
        o.missing.len(),
        o.missing[..o.missing.len().min(30)].join("\n")
    );
}

/// The same generated shapes against a second server family, Apache httpd.
#[test]
fn generated_request_shapes_match_what_apache_logged() {
    if skip() {
        return;
    }
    if !have("apache2") {
        eprintln!("SKIPPED: http_parity needs apache2 (.ci/run installs it)");
        return;
    }
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let n = env("HTTP_PARITY_CASES", 300) as usize;
    let seed = env("HTTP_PARITY_SEED", 0x5eed_0012);
    let mut r = Rng(seed | 1);
    let cases: Vec<_> = (0..n).map(|i| generated_case(&mut r, i)).collect();
    let t = Instant::now();
    let o = run_parity(Server::Apache, 'c', cases, 8, "generated-apache");
    let anomalies = o.events.iter().filter(|e| e["event_type"] == "anomaly").count();
    eprintln!(
        "http_parity generated (apache): seed {seed:#x}, {n} connections, apache logged {} requests (+{} it could \
         not read), apitap matched {}, {} anomaly events, {:.1} s",
        o.logged,
        o.unparsed,
        o.logged - o.missing.len(),
        anomalies,
        t.elapsed().as_secs_f64()
    );
    assert!(o.logged >= n / 2, "apache logged only {} requests", o.logged);
    assert!(
        o.missing.is_empty(),
        "{} requests apache logged that apitap did not report:\n{}",
        o.missing.len(),
        o.missing[..o.missing.len().min(30)].join("\n")
    );
}
