//! The live sensor, with real parts: network namespaces joined by a veth pair, nginx in one,
//! curl and ab in the other, `apitap live` on the server's interface, stopped by SIGTERM. Every
//! request in nginx's access log must appear as an `http` event (none lost at shutdown).
//! Also: the file sink survives logrotate (rename + SIGHUP), a sink nobody reads does not
//! stall capture, and syslog goes through a real rsyslog over UDP and TCP, surviving a restart.
//!
//! Needs root and the tools `.ci/run` installs (iproute2, nginx, curl, apache2-utils,
//! rsyslog). Without them each test prints why it is skipped and passes.

mod common;
use common::have;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// The running test's name (the test harness names each test's thread after it).
fn test_name() -> String {
    std::thread::current().name().unwrap_or("test").to_string()
}

fn skip_unless(tools: &[&str]) -> bool {
    if !is_root() {
        eprintln!("SKIPPED: {}: needs root (network namespaces, capture)", test_name());
        return true;
    }
    for t in tools {
        if !have(t) {
            eprintln!(
                "SKIPPED: {}: {t} not installed (the README's second command installs it)",
                test_name()
            );
            return true;
        }
    }
    false
}

/// A child process killed when the test ends, even by a failed assertion.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    assert!(
        out.status.success(),
        "command failed: {cmd}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sh_ok(cmd: &str) {
    let _ = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Two namespaces `<tag>-s` (10.77.<n>.1) and `<tag>-c` (10.77.<n>.2) joined by a veth pair;
/// removed on drop.
struct Lab {
    tag: String,
    dir: PathBuf,
    children: Vec<Child>,
}

impl Lab {
    fn new(tag: &str, n: u8) -> Lab {
        let lab = Lab {
            tag: tag.to_string(),
            dir: tempfile::tempdir().expect("tmp").keep(),
            children: Vec::new(),
        };
        lab.down();
        let (s, c) = (lab.srv(), lab.cli());
        sh(&format!(
            "ip netns add {s} && ip netns add {c} && \
             ip link add {tag}s0 type veth peer name {tag}c0 && \
             ip link set {tag}s0 netns {s} && ip link set {tag}c0 netns {c} && \
             ip -n {s} addr add 10.77.{n}.1/24 dev {tag}s0 && ip -n {c} addr add 10.77.{n}.2/24 dev {tag}c0 && \
             ip -n {s} link set {tag}s0 up && ip -n {c} link set {tag}c0 up && \
             ip -n {s} link set lo up && ip -n {c} link set lo up"
        ));
        for (ns, dev) in [(&s, format!("{tag}s0")), (&c, format!("{tag}c0"))] {
            sh_ok(&format!(
                "ip netns exec {ns} ethtool -K {dev} tso off gso off gro off tx off"
            ));
        }
        lab
    }

    fn srv(&self) -> String {
        format!("{}-s", self.tag)
    }

    fn cli(&self) -> String {
        format!("{}-c", self.tag)
    }

    fn down(&self) {
        sh_ok(&format!("ip netns del {}-s; ip netns del {}-c", self.tag, self.tag));
    }

    /// nginx in the server namespace, JSON access log; returns the log path.
    fn nginx(&mut self, n: u8) -> PathBuf {
        let (conf, log) = nginx_conf(&self.dir, &format!("10.77.{n}.1:80"));
        let child = Command::new("ip")
            .args(["netns", "exec", &self.srv(), "nginx", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx");
        self.children.push(child);
        wait_for(
            || {
                sh_ok_status(&format!(
                    "ip netns exec {} curl -s -o /dev/null http://10.77.{n}.1/",
                    self.cli()
                ))
            },
            "nginx up",
        );
        // that probe request is in the log too; start the comparison from an empty log
        std::thread::sleep(Duration::from_millis(200));
        let _ = std::fs::write(&log, "");
        log
    }
}

/// nginx configuration serving a few files on `listen`, JSON access log; (config, log).
fn nginx_conf(dir: &Path, listen: &str) -> (PathBuf, PathBuf) {
    let root = dir.join("www");
    std::fs::create_dir_all(root.join("api")).expect("mkdir");
    std::fs::write(root.join("index.html"), "<html>hello</html>\n".repeat(40)).expect("write");
    std::fs::write(root.join("api/users.json"), "{\"users\":[1,2,3]}\n".repeat(200)).expect("write");
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
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fcgi;
  uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
  log_format j escape=json '{{"client_ip":"$remote_addr","client_port":$remote_port,"method":"$request_method","uri":"$request_uri","status":$status,"resp_body_bytes":$body_bytes_sent}}';
  server {{
    listen {listen};
    access_log {log} j;
    root {root};
    location / {{ }}
  }}
}}
"#,
            dir = dir.display(),
            listen = listen,
            log = log.display(),
            root = root.display()
        ),
    )
    .expect("conf");
    (conf, log)
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sh_ok_status(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn wait_for(mut f: impl FnMut() -> bool, what: &str) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(15) {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// nginx on 127.0.0.1:`port` in this namespace, up and with an empty access log; the guard
/// stops it even when the test fails, so it never holds the port for the next run.
fn loopback_nginx(dir: &Path, port: u16) -> (Proc, PathBuf) {
    let (conf, log) = nginx_conf(dir, &format!("127.0.0.1:{port}"));
    let p = Proc(
        Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx"),
    );
    wait_for(
        || sh_ok_status(&format!("curl -s -o /dev/null http://127.0.0.1:{port}/")),
        "nginx up",
    );
    std::thread::sleep(Duration::from_millis(200));
    let _ = std::fs::write(&log, "");
    (p, log)
}

/// Wait until `f` reaches `n`; on timeout, say what it got.
fn wait_for_count(mut f: impl FnMut() -> usize, n: usize, what: &str) {
    let t = Instant::now();
    let mut got = 0;
    while t.elapsed() < Duration::from_secs(20) {
        got = f();
        if got >= n {
            assert_eq!(got, n, "{what}: more than expected");
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}: {got} of {n}");
}

/// Start `apitap live` in the server namespace; returns once it reports capturing.
fn start_apitap(ns: &str, args: &[&str]) -> Proc {
    let mut c = Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_apitap"), "live"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("apitap live");
    let err = c.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(err);
        let mut line = String::new();
        let mut all = String::new();
        let mut sent = false;
        while r.read_line(&mut line).is_ok_and(|n| n > 0) {
            all.push_str(&line);
            if !sent && line.contains("capturing on") {
                let _ = tx.send(());
                sent = true;
            }
            line.clear();
        }
        eprint!("{all}");
    });
    rx.recv_timeout(Duration::from_secs(15))
        .expect("apitap did not start capturing");
    std::thread::sleep(Duration::from_millis(300));
    Proc(c)
}

fn sigterm_and_wait(c: &mut Child) -> i32 {
    unsafe {
        libc::kill(c.id() as i32, libc::SIGTERM);
    }
    let t = Instant::now();
    loop {
        if let Some(s) = c.try_wait().expect("wait") {
            return s.code().unwrap_or(-1);
        }
        assert!(t.elapsed() < Duration::from_secs(20), "apitap did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read_events(p: &Path) -> Vec<Value> {
    let mut s = String::new();
    std::fs::File::open(p)
        .and_then(|mut f| f.read_to_string(&mut s))
        .expect("read events");
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("split or bad line ({e}): {l}")))
        .collect()
}

fn access_log(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .expect("access log")
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).expect("log json"))
        .collect()
}

#[test]
fn live_capture_reports_every_request_nginx_logged() {
    if skip_unless(&["ip", "nginx", "curl", "ab"]) {
        return;
    }
    let mut lab = Lab::new("atl1", 41);
    let log = lab.nginx(41);
    let out = lab.dir.join("eve.json");
    let mut ap = start_apitap(
        &lab.srv(),
        &[
            "-i",
            "atl1s0",
            "-o",
            out.to_str().unwrap_or_default(),
            "--stats-interval",
            "1",
        ],
    );
    let cli = lab.cli();
    for i in 0..10 {
        sh(&format!(
            "ip netns exec {cli} curl -s -o /dev/null 'http://10.77.41.1/api/users.json?page={i}'"
        ));
    }
    sh(&format!(
        "ip netns exec {cli} curl -s -o /dev/null http://10.77.41.1/index.html http://10.77.41.1/nope http://10.77.41.1/api/users.json"
    ));
    sh(&format!(
        "ip netns exec {cli} ab -q -k -n 300 -c 4 http://10.77.41.1/index.html > /dev/null"
    ));
    sh(&format!(
        "ip netns exec {cli} ab -q -n 100 -c 2 http://10.77.41.1/api/users.json > /dev/null"
    ));
    // SIGTERM right after the last response: flows still open must be flushed, not lost.
    assert_eq!(sigterm_and_wait(&mut ap), 0);
    lab.children.iter_mut().for_each(|c| {
        let _ = c.kill();
        let _ = c.wait();
    });
    lab.children.clear();
    let logged = access_log(&log);
    assert_eq!(logged.len(), 10 + 3 + 300 + 100);
    let events = read_events(&out);
    let mut http: Vec<(u64, String, u64, u64)> = events
        .iter()
        .filter(|e| e["event_type"] == "http")
        .map(|e| {
            (
                e["src_port"].as_u64().unwrap_or(0),
                e["http"]["url"].as_str().unwrap_or("").to_string(),
                e["http"]["status"].as_u64().unwrap_or(0),
                e["http"]["length"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let mut want: Vec<(u64, String, u64, u64)> = logged
        .iter()
        .map(|e| {
            (
                e["client_port"].as_u64().unwrap_or(0),
                e["uri"].as_str().unwrap_or("").to_string(),
                e["status"].as_u64().unwrap_or(0),
                e["resp_body_bytes"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    http.sort();
    want.sort();
    assert_eq!(http, want, "http events vs nginx access log");
    let stats: Vec<&Value> = events.iter().filter(|e| e["event_type"] == "stats").collect();
    assert!(!stats.is_empty());
    let last = stats[stats.len() - 1];
    assert_eq!(last["stats"]["interfaces"]["atl1s0"]["kernel_dropped"], 0, "{last}");
    assert_eq!(last["stats"]["drops"]["worker_queue"], 0);
    // every byte the capture thread counted against the workers' queue budget came back: the
    // budget cannot leak until a live sensor drops everything
    assert_eq!(last["stats"]["memory"]["worker_queue_bytes"], 0, "{last}");
}

#[test]
fn file_sink_survives_rotation_by_rename_and_sighup() {
    if skip_unless(&["ip", "nginx", "curl"]) {
        return;
    }
    let mut lab = Lab::new("atl2", 42);
    let log = lab.nginx(42);
    let out = lab.dir.join("eve.json");
    let rotated = lab.dir.join("eve.json.1");
    let mut ap = start_apitap(
        &lab.srv(),
        &[
            "-i",
            "atl2s0",
            "-o",
            out.to_str().unwrap_or_default(),
            "--stats-interval",
            "0",
        ],
    );
    let cli = lab.cli();
    let burst = |k: usize| {
        for i in 0..k {
            sh(&format!(
                "ip netns exec {cli} curl -s -o /dev/null 'http://10.77.42.1/index.html?n={i}'"
            ));
        }
    };
    burst(30);
    std::thread::sleep(Duration::from_millis(700));
    std::fs::rename(&out, &rotated).expect("rotate");
    unsafe {
        libc::kill(ap.id() as i32, libc::SIGHUP);
    }
    std::thread::sleep(Duration::from_millis(1200));
    burst(30);
    assert_eq!(sigterm_and_wait(&mut ap), 0);
    let a = read_events(&rotated);
    let b = read_events(&out);
    assert!(
        b.iter().any(|e| e["event_type"] == "http"),
        "new file gets events after SIGHUP"
    );
    let n = a.iter().chain(b.iter()).filter(|e| e["event_type"] == "http").count();
    assert_eq!(n, access_log(&log).len(), "no event lost across the rotation");
}

#[test]
fn a_sink_nobody_reads_does_not_stall_capture() {
    if skip_unless(&["ip", "nginx", "curl", "ab"]) {
        return;
    }
    let mut lab = Lab::new("atl3", 43);
    let log = lab.nginx(43);
    // stdout is a pipe nobody reads: the stdout sink blocks once the pipe is full, and its
    // queue (8 batches of up to 256 here: less than the 3,000 events) soon after. The queue
    // is per sink; with 2 the file sink itself could drop a burst on a busy 2-core machine.
    let conf = lab.dir.join("small-queue.toml");
    std::fs::write(&conf, "[output]\nqueue = 8\n").expect("conf");
    let mut ap = Proc(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.srv(),
                env!("CARGO_BIN_EXE_apitap"),
                "live",
                "-i",
                "atl3s0",
                "-o",
                "-",
            ])
            .args([
                "-o",
                lab.dir.join("eve.json").to_str().unwrap_or_default(),
                "--stats-interval",
                "0",
                "--log-headers",
            ])
            .args(["--config", conf.to_str().unwrap_or_default()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("apitap"),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let cli = lab.cli();
    sh(&format!(
        "ip netns exec {cli} ab -q -k -n 3000 -c 8 http://10.77.43.1/index.html > /dev/null"
    ));
    assert_eq!(sigterm_and_wait(&mut ap), 0);
    drop(ap.stdout.take());
    let events = read_events(&lab.dir.join("eve.json"));
    let http = events.iter().filter(|e| e["event_type"] == "http").count();
    let stats = events.iter().rfind(|e| e["event_type"] == "stats").expect("stats");
    // The file sink got every transaction although the stdout sink was stuck.
    assert_eq!(http, access_log(&log).len(), "{}", stats["stats"]["drops"]);
    let stdout = &stats["stats"]["drops"]["sinks"]["stdout"];
    assert!(
        stdout["dropped"].as_u64().unwrap_or(0) > 0,
        "drops counted for the stuck sink: {stats}"
    );
}

/// rsyslog listening on loopback UDP and TCP, writing each message's text on its own line.
struct Rsyslog {
    child: Child,
}

fn start_rsyslog(dir: &Path, udp: u16, tcp: u16, out: &Path) -> Rsyslog {
    let conf = dir.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{dir}" maxMessageSize="64k")
module(load="imudp")
module(load="imtcp")
input(type="imudp" address="127.0.0.1" port="{udp}")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
template(name="msgonly" type="string" string="%msg%\n")
if $programname == "apitap" then {{ action(type="omfile" file="{out}" template="msgonly") stop }}
"#,
            dir = dir.display(),
            out = out.display()
        ),
    )
    .expect("rsyslog conf");
    let child = Command::new("rsyslogd")
        .args(["-n", "-f"])
        .arg(&conf)
        .arg("-i")
        .arg(dir.join("rsyslog.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rsyslogd");
    wait_for(
        || std::net::TcpStream::connect(("127.0.0.1", tcp)).is_ok(),
        "rsyslog tcp",
    );
    Rsyslog { child }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json_lines(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l.trim()).unwrap_or_else(|e| panic!("rsyslog line is not one JSON object ({e}): {l}"))
        })
        .collect()
}

#[test]
fn syslog_over_udp_and_tcp_through_rsyslog() {
    if skip_unless(&["rsyslogd"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let (u, t) = (25514, 25601);
    let udp_out = dir.path().join("udp.log");
    let tcp_out = dir.path().join("tcp.log");
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("capture-samples/http-keepalive.pcap");
    // one rsyslog per transport so each output file has one source
    let rs_dir_u = dir.path().join("u");
    let rs_dir_t = dir.path().join("t");
    std::fs::create_dir_all(&rs_dir_u).expect("mkdir");
    std::fs::create_dir_all(&rs_dir_t).expect("mkdir");
    let _ru = start_rsyslog(&rs_dir_u, u, u + 1, &udp_out);
    let _rt = start_rsyslog(&rs_dir_t, t + 1, t, &tcp_out);
    let st = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .args(["replay", sample.to_str().unwrap_or_default(), "-q", "--log-headers"])
        .args([
            "-o",
            &format!("syslog+udp://127.0.0.1:{u}"),
            "-o",
            &format!("syslog+tcp://127.0.0.1:{t}"),
        ])
        .status()
        .expect("apitap");
    assert!(st.success());
    let direct = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .args(["replay", sample.to_str().unwrap_or_default(), "-q", "--log-headers"])
        .output()
        .expect("apitap");
    let want = String::from_utf8_lossy(&direct.stdout).lines().count();
    wait_for(
        || json_lines(&tcp_out).len() >= want && json_lines(&udp_out).len() >= want,
        "rsyslog to write every event",
    );
    for p in [&udp_out, &tcp_out] {
        let got = json_lines(p);
        assert_eq!(got.len(), want, "{}", p.display());
        assert_eq!(got.iter().filter(|e| e["event_type"] == "http").count(), 37.min(want));
    }
}

#[test]
fn syslog_sink_survives_rsyslog_restart_and_counts_the_loss() {
    if skip_unless(&["nginx", "curl", "rsyslogd"]) {
        return;
    }
    // All on loopback in this namespace: nginx on 127.0.0.1:28080, rsyslog on 127.0.0.1:25701.
    let dir = tempfile::tempdir().expect("tmp");
    let (mut nginx, log) = loopback_nginx(dir.path(), 28080);
    let rs_dir = dir.path().join("rs");
    std::fs::create_dir_all(&rs_dir).expect("mkdir");
    let syslog_out = dir.path().join("syslog.log");
    let mut rs = start_rsyslog(&rs_dir, 25702, 25701, &syslog_out);
    let eve = dir.path().join("eve.json");
    let mut ap = Proc(
        Command::new(env!("CARGO_BIN_EXE_apitap"))
            .args(["live", "-i", "lo", "--bpf", "tcp port 28080", "--stats-interval", "0"])
            .args([
                "-o",
                "syslog+tcp://127.0.0.1:25701",
                "-o",
                eve.to_str().unwrap_or_default(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("apitap"),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let burst = |tag: &str| {
        for i in 0..20 {
            sh(&format!(
                "curl -s -o /dev/null 'http://127.0.0.1:28080/index.html?{tag}={i}'"
            ));
        }
    };
    let count = |tag: &str| {
        json_lines(&syslog_out)
            .iter()
            .filter(|e| {
                e["http"]["url"]
                    .as_str()
                    .is_some_and(|u| u.contains(&format!("?{tag}=")))
            })
            .count()
    };
    burst("a");
    wait_for_count(|| count("a"), 20, "burst a in rsyslog");
    // rsyslog goes away; apitap keeps capturing (the file sink gets everything)
    drop(rs);
    std::thread::sleep(Duration::from_millis(300));
    burst("b");
    std::thread::sleep(Duration::from_millis(1500));
    rs = start_rsyslog(&rs_dir, 25702, 25701, &syslog_out);
    // reconnect backoff is at most a few seconds after a short outage
    std::thread::sleep(Duration::from_secs(4));
    burst("c");
    wait_for_count(|| count("c"), 20, "burst c in rsyslog after the restart");
    assert_eq!(sigterm_and_wait(&mut ap), 0);
    drop(rs);
    let _ = nginx.kill();
    let _ = nginx.wait();
    let events = read_events(&eve);
    assert_eq!(
        events.iter().filter(|e| e["event_type"] == "http").count(),
        access_log(&log).len(),
        "capture never stopped"
    );
    let stats = events.iter().rfind(|e| e["event_type"] == "stats").expect("stats");
    let s = &stats["stats"]["drops"]["sinks"]["syslog+tcp://127.0.0.1:25701"];
    assert!(s["reconnects"].as_u64().unwrap_or(0) >= 1, "{s}");
    assert!(
        s["dropped"].as_u64().unwrap_or(0) + s["errors"].as_u64().unwrap_or(0) > 0 || count("b") == 20,
        "loss counted: {s}"
    );
}

/// The shipped unit passes `systemd-analyze verify` (with ExecStart pointed at this build).
#[test]
fn systemd_unit_verifies() {
    if !have("systemd-analyze") {
        eprintln!("SKIPPED: systemd_unit_verifies: systemd-analyze not installed (package systemd)");
        return;
    }
    let unit =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/apitap.service")).expect("unit");
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("apitap.service");
    std::fs::write(&p, unit.replace("/usr/local/bin/apitap", env!("CARGO_BIN_EXE_apitap"))).expect("write");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&p)
        .output()
        .expect("systemd-analyze");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "systemd-analyze verify: {err}"
    );
    // and the sample config beside it is valid
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/apitap.toml");
    let st = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .args(["config", "check"])
        .arg(&conf)
        .status()
        .expect("apitap");
    assert!(st.success());
}

/// Started as root, `--user nobody` drops to that user once the interface and the output are
/// open, and still captures and writes.
#[test]
fn live_drops_privileges_after_opening_capture_and_outputs() {
    if skip_unless(&["curl", "nginx"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let (_nginx, log) = loopback_nginx(dir.path(), 28090);
    let eve = dir.path().join("eve.json");
    let mut ap = Proc(
        Command::new(env!("CARGO_BIN_EXE_apitap"))
            .args([
                "live",
                "-i",
                "lo",
                "--bpf",
                "tcp port 28090",
                "--user",
                "nobody",
                "--stats-interval",
                "0",
            ])
            .args(["-o", eve.to_str().unwrap_or_default()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("apitap"),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let status = std::fs::read_to_string(format!("/proc/{}/status", ap.id())).expect("status");
    let uid_line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap_or_default()
        .to_string();
    let cap_eff = status
        .lines()
        .find(|l| l.starts_with("CapEff:"))
        .unwrap_or_default()
        .to_string();
    for i in 0..5 {
        sh(&format!(
            "curl -s -o /dev/null 'http://127.0.0.1:28090/index.html?u={i}'"
        ));
    }
    assert_eq!(sigterm_and_wait(&mut ap), 0);
    assert!(uid_line.split_whitespace().skip(1).all(|u| u == "65534"), "{uid_line}");
    assert!(cap_eff.ends_with("0000000000000000"), "no capability left: {cap_eff}");
    let n = read_events(&eve).iter().filter(|e| e["event_type"] == "http").count();
    assert_eq!(n, access_log(&log).len());
}

/// SIGHUP reloads the rule file without losing state: a rule that keeps its id keeps its
/// window (three matches before the reload and three after make six), a new rule starts
/// working, and a broken file keeps the running rules.
#[test]
fn sighup_reloads_rules_and_keeps_their_windows() {
    if skip_unless(&["ip", "nginx", "curl"]) {
        return;
    }
    let mut lab = Lab::new("atl8", 48);
    lab.nginx(48);
    let out = lab.dir.join("eve.json");
    let rules = lab.dir.join("rules.toml");
    let rule = |sig: &str| {
        format!(
            "[[rule]]\nid = \"probe\"\nsid = 7000001\nsignature = \"{sig}\"\ntype = \"scanner\"\nmatch = {{ path = \"/index.html\" }}\nthreshold = {{ count = 4, window = 600 }}\n"
        )
    };
    std::fs::write(&rules, rule("before")).expect("rules");
    let mut ap = start_apitap(
        &lab.srv(),
        &[
            "-i",
            "atl8s0",
            "-o",
            out.to_str().unwrap_or_default(),
            "--stats-interval",
            "0",
            "--rules",
            rules.to_str().unwrap_or_default(),
        ],
    );
    let cli = lab.cli();
    let burst = |k: usize| {
        for i in 0..k {
            sh(&format!(
                "ip netns exec {cli} curl -s -o /dev/null 'http://10.77.48.1/index.html?n={i}'"
            ));
        }
    };
    let hup = |ap: &Proc| unsafe {
        libc::kill(ap.id() as i32, libc::SIGHUP);
    };
    burst(3);
    std::thread::sleep(Duration::from_millis(700));
    std::fs::write(
        &rules,
        rule("after")
            + "[[rule]]\nid = \"new\"\nsid = 7000002\ntype = \"scanner\"\nmatch = { path = \"/index.html\" }\n",
    )
    .expect("rules");
    hup(&ap);
    std::thread::sleep(Duration::from_millis(1200));
    burst(3);
    std::thread::sleep(Duration::from_millis(700));
    std::fs::write(&rules, "[[rule]]\nid = \"broken\"\n").expect("rules");
    hup(&ap);
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        ap.try_wait().expect("wait").is_none(),
        "a bad rule file does not stop the sensor"
    );
    assert_eq!(sigterm_and_wait(&mut ap), 0);
    let alerts: Vec<Value> = read_events(&out)
        .into_iter()
        .filter(|e| e["event_type"] == "alert")
        .collect();
    let probe: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["alert"]["signature_id"] == 7000001)
        .collect();
    assert_eq!(probe.len(), 1, "{alerts:?}");
    assert_eq!(probe[0]["alert"]["signature"], "after");
    assert_eq!(probe[0]["indicator"]["count"], 5, "the window survived the reload");
    assert!(
        alerts.iter().any(|a| a["alert"]["signature_id"] == 7000002),
        "the new rule works"
    );
}

/// The rule engine runs live: a client probing 30 missing paths on a real nginx gets the seed
/// rule's alert (more than ten 404s in ten seconds) once, and again when the count doubles;
/// the real page it fetched is in the catalog, the guesses are not.
#[test]
fn live_alerts_on_a_burst_of_404s() {
    if skip_unless(&["ip", "nginx", "curl"]) {
        return;
    }
    let mut lab = Lab::new("atl9", 49);
    lab.nginx(49);
    let out = lab.dir.join("eve.json");
    let mut ap = start_apitap(
        &lab.srv(),
        &[
            "-i",
            "atl9s0",
            "-o",
            out.to_str().unwrap_or_default(),
            "--stats-interval",
            "0",
            "--workers",
            "3",
        ],
    );
    let cli = lab.cli();
    sh(&format!(
        "ip netns exec {cli} curl -s -o /dev/null http://10.77.49.1/index.html"
    ));
    sh(&format!(
        "ip netns exec {cli} sh -c 'for i in $(seq 1 50); do curl -s -o /dev/null http://10.77.49.1/probe-$i.php; done'"
    ));
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(sigterm_and_wait(&mut ap), 0);
    let ev = read_events(&out);
    let seed: Vec<&Value> = ev
        .iter()
        .filter(|e| e["event_type"] == "alert" && e["alert"]["signature_id"] == 9100001)
        .collect();
    // the 11th 404 opens the episode, the 44th is four times that (escalation); 50 raise
    // nothing more
    let counts: Vec<u64> = seed
        .iter()
        .map(|a| a["indicator"]["count"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(counts, [11, 44], "{seed:?}");
    assert_eq!(seed[0]["src_ip"], "10.77.49.2");
    assert_eq!(seed[0]["indicator"]["type"], "forced_browsing");
    assert!(
        ev.iter()
            .any(|e| e["event_type"] == "endpoint" && e["endpoint"]["endpoint"] == "GET /index.html")
    );
    assert!(
        !ev.iter().any(|e| e["event_type"] == "endpoint"
            && e["endpoint"]["endpoint"].as_str().is_some_and(|x| x.contains("probe")))
    );
}
