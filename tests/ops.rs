//! What operators look at (issue 16): Prometheus metrics scraped by a real Prometheus from a
//! live sensor, the forensic HTML report opened in a real browser, and the command line's
//! answers at the end of a replay.
//!
//! The live test needs root, iproute2, python3, curl and prometheus; the report test needs
//! chromium. Without them each test prints why it is skipped and passes.

mod common;
use common::have;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_apitap");

fn test_name() -> String {
    std::thread::current().name().unwrap_or("test").to_string()
}

fn skip_unless(root: bool, tools: &[&str]) -> bool {
    if root && unsafe { libc::geteuid() } != 0 {
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

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    assert!(
        out.status.success(),
        "command failed: {cmd}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sh_quiet(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Poll `f` until it gives a value, at most `secs` seconds.
fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(secs) {
        if let Some(v) = f() {
            return v;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}

/// Namespaces `op-<tag>-s` (10.77.<n>.1) and `op-<tag>-c` (10.77.<n>.2) joined by a veth pair,
/// removed on drop.
struct Lab {
    tag: String,
    n: u8,
    dir: PathBuf,
}

impl Lab {
    fn new(tag: &str, n: u8) -> Lab {
        let lab = Lab {
            tag: tag.into(),
            n,
            dir: tempfile::tempdir().expect("tmp").keep(),
        };
        lab.down();
        let (s, c) = (lab.srv(), lab.cli());
        sh(&format!(
            "ip netns add {s} && ip netns add {c} && \
             ip link add op{tag}s0 type veth peer name op{tag}c0 && \
             ip link set op{tag}s0 netns {s} && ip link set op{tag}c0 netns {c} && \
             ip -n {s} addr add 10.77.{n}.1/24 dev op{tag}s0 && ip -n {c} addr add 10.77.{n}.2/24 dev op{tag}c0 && \
             ip -n {s} link set op{tag}s0 up && ip -n {c} link set op{tag}c0 up && \
             ip -n {s} link set lo up && ip -n {c} link set lo up"
        ));
        for (ns, dev) in [(&s, format!("op{tag}s0")), (&c, format!("op{tag}c0"))] {
            sh_quiet(&format!(
                "ip netns exec {ns} ethtool -K {dev} tso off gso off gro off tx off"
            ));
        }
        lab
    }

    fn srv(&self) -> String {
        format!("op-{}-s", self.tag)
    }

    fn cli(&self) -> String {
        format!("op-{}-c", self.tag)
    }

    fn srv_ip(&self) -> String {
        format!("10.77.{}.1", self.n)
    }

    fn iface(&self) -> String {
        format!("op{}s0", self.tag)
    }

    fn down(&self) {
        sh_quiet(&format!("ip netns del {}; ip netns del {}", self.srv(), self.cli()));
    }

    fn spawn(&self, ns: &str, args: &[&str], log: &str) -> Proc {
        let out = std::fs::File::create(self.dir.join(log)).expect("log");
        Proc(
            Command::new("ip")
                .args(["netns", "exec", ns])
                .args(args)
                .current_dir(&self.dir)
                .stdout(out.try_clone().expect("log"))
                .stderr(out)
                .spawn()
                .expect("spawn"),
        )
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `apitap live` in namespace `ns`; returns once it says it is capturing.
fn start_live(ns: &str, args: &[&str]) -> Proc {
    let mut c = Command::new("ip")
        .args(["netns", "exec", ns, BIN, "live"])
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
        let mut sent = false;
        while r.read_line(&mut line).is_ok_and(|n| n > 0) {
            eprint!("apitap: {line}");
            if !sent && line.contains("capturing on") {
                let _ = tx.send(());
                sent = true;
            }
            line.clear();
        }
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

fn events(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .expect("events")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line ({e}): {l}")))
        .collect()
}

/// One instant-vector value from Prometheus' HTTP query API, run inside namespace `ns`.
fn prom_query(ns: &str, q: &str) -> Option<f64> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-s", "--max-time", "3", "-G"])
        .arg("http://127.0.0.1:9090/api/v1/query")
        .arg("--data-urlencode")
        .arg(format!("query={q}"))
        .output()
        .ok()?;
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn prometheus_scrapes_live_packet_and_transaction_counts() {
    if skip_unless(true, &["ip", "curl", "python3", "prometheus"]) {
        return;
    }
    let lab = Lab::new("m", 157);
    let (srv, cli) = (lab.srv(), lab.cli());
    std::fs::create_dir_all(lab.dir.join("www/api")).expect("mkdir");
    std::fs::write(lab.dir.join("www/api/users.json"), "{\"users\":[1,2,3]}\n".repeat(50)).expect("write");
    let www = lab.dir.join("www");
    let ip = lab.srv_ip();
    let _web = lab.spawn(
        &srv,
        &[
            "python3",
            "-m",
            "http.server",
            "--bind",
            &ip,
            "--directory",
            www.to_str().unwrap_or_default(),
            "80",
        ],
        "web.log",
    );
    wait_for(15, "web server up", || {
        sh_quiet(&format!(
            "ip netns exec {cli} curl -sf -o /dev/null http://{ip}/api/users.json"
        ))
        .then_some(())
    });
    let prom_yml = lab.dir.join("prometheus.yml");
    std::fs::write(
        &prom_yml,
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: apitap\n    static_configs:\n      - targets: ['127.0.0.1:9157']\n",
    )
    .expect("prometheus.yml");
    let tsdb = lab.dir.join("tsdb");
    let _prom = lab.spawn(
        &srv,
        &[
            "prometheus",
            &format!("--config.file={}", prom_yml.display()),
            &format!("--storage.tsdb.path={}", tsdb.display()),
            "--web.listen-address=127.0.0.1:9090",
        ],
        "prometheus.log",
    );
    let out = lab.dir.join("eve.json");
    let iface = lab.iface();
    let mut ap = start_live(
        &srv,
        &[
            "-i",
            &iface,
            "-o",
            out.to_str().unwrap_or_default(),
            "--metrics",
            "127.0.0.1:9157",
            "--no-rules",
        ],
    );
    // The endpoint answers directly too, in the text format.
    let direct = sh(&format!("ip netns exec {srv} curl -s http://127.0.0.1:9157/metrics"));
    assert!(
        direct.contains("# TYPE apitap_capture_packets_total counter"),
        "{direct}"
    );
    const N: usize = 25;
    for i in 0..N {
        sh(&format!(
            "ip netns exec {cli} curl -s -o /dev/null 'http://{ip}/api/users.json?page={i}'"
        ));
    }
    // The preflight request above came before apitap started: only these N count.
    let tx = wait_for(30, "Prometheus to have scraped N transactions", || {
        prom_query(&srv, "apitap_http_transactions_total").filter(|v| *v as usize == N)
    });
    assert_eq!(tx as usize, N);
    // Packets: once the wire is quiet, Prometheus' value equals the final stats event's.
    std::thread::sleep(Duration::from_millis(2500));
    let packets = prom_query(&srv, "apitap_capture_packets_total").expect("packets from Prometheus");
    let up = prom_query(&srv, "up{job=\"apitap\"}").expect("up");
    assert_eq!(up, 1.0);
    let drops = prom_query(&srv, "sum(apitap_interface_dropped_packets_total)").expect("drops");
    assert_eq!(drops, 0.0);
    // Every metric the sample Grafana dashboard plots is served.
    let direct = sh(&format!("ip netns exec {srv} curl -s http://127.0.0.1:9157/metrics"));
    let dash = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/grafana-dashboard.json"))
        .expect("dashboard");
    let dash: Value = serde_json::from_str(&dash).expect("dashboard json");
    let mut names = 0;
    for p in dash["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            let expr = t["expr"].as_str().unwrap_or("");
            for w in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if w.starts_with("apitap_") || w.starts_with("process_") {
                    assert!(direct.contains(&format!("\n{w}")), "dashboard metric {w} not served");
                    names += 1;
                }
            }
        }
    }
    assert!(names >= 10);
    assert_eq!(sigterm_and_wait(&mut ap.0), 0);
    let ev = events(&out);
    let last = ev
        .iter()
        .rev()
        .find(|e| e["event_type"] == "stats")
        .expect("final stats");
    assert_eq!(
        packets as u64,
        last["stats"]["capture"]["packets"].as_u64().unwrap_or(0),
        "{last}"
    );
    assert_eq!(ev.iter().filter(|e| e["event_type"] == "http").count(), N);
    assert!(
        packets as usize >= N * 6,
        "a curl connection is at least 6 packets: {packets}"
    );
}

#[test]
fn busy_metrics_port_is_one_line_and_exit_2() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    let out = Command::new(BIN)
        .args(["live", "-i", "lo", "--metrics", &addr, "-o", "/dev/null"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("apitap: metrics {addr}: cannot listen")),
        "{err}"
    );
}

#[test]
fn config_check_rejects_a_bad_metrics_listen_address() {
    let d = tempfile::tempdir().expect("tmp");
    let p = d.path().join("c.toml");
    std::fs::write(&p, "[metrics]\nlisten = \"localhost\"\n").expect("write");
    let out = Command::new(BIN)
        .args(["config", "check", p.to_str().unwrap_or_default()])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("metrics.listen"), "{err}");
    std::fs::write(&p, "[metrics]\nlisten = \"127.0.0.1:9157\"\n").expect("write");
    let out = Command::new(BIN)
        .args(["config", "check", p.to_str().unwrap_or_default()])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The text of the element with `id` in a DOM dump.
fn by_id(dom: &str, id: &str) -> Option<String> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let rest = &dom[at..];
    let start = rest.find('>')? + 1;
    let end = rest[start..].find('<')?;
    Some(rest[start..start + end].trim().to_string())
}

fn lab1() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("capture-samples/lab/lab-1.pcap.gz")
}

const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--enable-logging=stderr",
    "--v=0",
];

/// Run headless chromium on `page` with `extra` flags and a fresh profile; (stdout, stderr).
fn chromium(dir: &Path, page: &Path, extra: &[&str]) -> (String, String) {
    let profile = dir.join(format!("chrome-{}", extra.len()));
    let out = Command::new("timeout")
        .arg("120")
        .arg("chromium")
        .args(CHROMIUM_FLAGS)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn report_of_a_lab_capture_opens_in_chromium_with_the_json_counts() {
    if skip_unless(false, &["chromium"]) {
        return;
    }
    let d = tempfile::tempdir().expect("tmp");
    let (eve, html) = (d.path().join("eve.json"), d.path().join("report.html"));
    let st = Command::new(BIN)
        .args(["replay", "-q", "--no-progress"])
        .arg(lab1())
        .args([
            "-o",
            eve.to_str().unwrap_or_default(),
            "--report",
            html.to_str().unwrap_or_default(),
        ])
        .status()
        .expect("replay");
    assert!(st.success());
    let ev = events(&eve);
    let count = |t: &str| ev.iter().filter(|e| e["event_type"] == t).count();
    let (http, alerts) = (count("http"), count("alert"));
    assert!(alerts > 50, "the lab capture has attacks: {alerts} alerts");
    let clients: std::collections::BTreeSet<&str> = ev
        .iter()
        .filter(|e| e["event_type"] == "http")
        .filter_map(|e| e["src_ip"].as_str())
        .collect();
    let mut by_type = std::collections::BTreeMap::<String, usize>::new();
    let mut attackers = std::collections::BTreeSet::<String>::new();
    for e in ev.iter().filter(|e| e["event_type"] == "alert") {
        *by_type
            .entry(e["indicator"]["type"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
        let en = &e["indicator"]["entity"];
        attackers.insert(format!(
            "{}:{}",
            en["type"].as_str().unwrap_or(""),
            en["value"].as_str().unwrap_or("")
        ));
    }
    for e in ev.iter().filter(|e| e["event_type"] == "entity") {
        let en = &e["entity"];
        attackers.insert(format!(
            "{}:{}",
            en["type"].as_str().unwrap_or(""),
            en["value"].as_str().unwrap_or("")
        ));
    }
    let stats = ev.iter().rev().find(|e| e["event_type"] == "stats").expect("stats");

    // Self-contained: no resource is loaded from anywhere, and the policy forbids it.
    let page = std::fs::read_to_string(&html).expect("report");
    assert!(page.contains("Content-Security-Policy\" content=\"default-src 'none'"));
    for bad in [" src=\"", " href=\"", "<link", "<img", "<iframe", "url(", "@import"] {
        assert!(!page.contains(bad), "report loads something: {bad}");
    }
    assert!(page.len() < 2_000_000, "report too big: {} bytes", page.len());

    // The DOM after the page's script ran.
    let (dom, log) = chromium(d.path(), &html, &["--dump-dom"]);
    assert!(
        dom.contains("data-ready=\"1\""),
        "the page's script did not finish:\n{log}"
    );
    for l in log.lines() {
        assert!(
            !l.contains("CONSOLE") && !l.contains("Uncaught") && !l.contains("Refused to"),
            "console error or blocked request: {l}"
        );
    }
    let num = |id: &str| -> u64 {
        by_id(&dom, id)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no number in #{id}"))
    };
    assert_eq!(num("n-http") as usize, http);
    assert_eq!(num("n-alerts") as usize, alerts);
    assert_eq!(num("n-clients") as usize, clients.len());
    assert_eq!(num("n-attackers") as usize, attackers.len());
    assert_eq!(
        num("n-packets"),
        stats["stats"]["capture"]["packets"].as_u64().unwrap_or(0)
    );
    assert!(
        dom.contains(&format!("data-alert-sum=\"{alerts}\"")),
        "alert-type rows do not add up"
    );
    for (t, n) in &by_type {
        let row = format!("data-alert-type=\"{t}\"><td>{t}</td><td class=\"n count\">{n}</td>");
        assert!(dom.contains(&row), "alert type {t}: want {n}");
    }
    let shown = dom.matches("<details class=\"attacker\"").count();
    assert_eq!(shown, attackers.len().min(50), "attackers shown");

    // A screenshot for a person to look at.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-lab-1.png");
    chromium(
        d.path(),
        &html,
        &["--window-size=1300,2400", &format!("--screenshot={}", shot.display())],
    );
    let png = std::fs::read(&shot).expect("screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 50_000,
        "screenshot too small"
    );
    eprintln!("report screenshot: {}", shot.display());
}

#[test]
fn report_command_writes_the_same_numbers_and_refuses_an_unwritable_path() {
    let d = tempfile::tempdir().expect("tmp");
    let html = d.path().join("r.html");
    let out = Command::new(BIN)
        .args(["report", "-q", "--no-progress"])
        .arg(lab1())
        .args(["-o", html.to_str().unwrap_or_default()])
        .output()
        .expect("report");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty(), "report writes nothing on stdout");
    let page = std::fs::read_to_string(&html).expect("report");
    let n = by_id(&page, "n-http").expect("n-http");
    let eve = Command::new(BIN)
        .args(["replay", "-q", "--no-progress", "--types", "http"])
        .arg(lab1())
        .output()
        .expect("replay");
    assert_eq!(n, String::from_utf8_lossy(&eve.stdout).lines().count().to_string());
    assert!(page.contains("lab-1.pcap.gz"), "the report names its capture");

    let out = Command::new(BIN)
        .args(["report", "-q", "--no-progress"])
        .arg(lab1())
        .args(["-o", "/nonexistent-dir/r.html"])
        .output()
        .expect("report");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("apitap: report /nonexistent-dir/r.html: cannot write"),
        "{err}"
    );
}

/// Replay lab-1 with extra arguments; (events, stderr).
fn replay_lab1(args: &[&str]) -> (Vec<Value>, String) {
    let out = Command::new(BIN)
        .args(["replay", "--no-progress"])
        .arg(lab1())
        .args(args)
        .output()
        .expect("replay");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    let ev = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    (ev, err)
}

#[test]
fn replay_ends_with_final_entity_profiles_carrying_true_totals() {
    let (ev, _) = replay_lab1(&["-q"]);
    let finals: Vec<&Value> = ev
        .iter()
        .filter(|e| e["event_type"] == "entity" && e["entity"]["reason"] == "final")
        .collect();
    assert!(finals.len() >= 10, "final entity profiles: {}", finals.len());
    let thresholds = ev
        .iter()
        .filter(|e| e["event_type"] == "entity" && e["entity"]["reason"] == "threshold")
        .count();
    assert!(thresholds > 0);
    // The final events come after every http event of the run.
    let last_http = ev.iter().rposition(|e| e["event_type"] == "http").expect("http");
    let first_final = ev
        .iter()
        .position(|e| e["event_type"] == "entity" && e["entity"]["reason"] == "final")
        .expect("final");
    assert!(first_final > last_http);
    let mut checked = 0;
    for f in finals.iter().filter(|f| f["entity"]["type"] == "ip") {
        let ip = f["entity"]["value"].as_str().unwrap_or("");
        let http: Vec<&Value> = ev
            .iter()
            .filter(|e| e["event_type"] == "http" && e["src_ip"] == ip)
            .collect();
        assert_eq!(
            f["entity"]["requests"].as_u64(),
            Some(http.len() as u64),
            "{ip}: requests"
        );
        let last = http.iter().filter_map(|e| e["timestamp"].as_str()).max().unwrap_or("");
        assert_eq!(f["entity"]["last_seen"].as_str(), Some(last), "{ip}: last seen");
        // Larger than the snapshot taken when risk first crossed a threshold.
        let first_snap = ev
            .iter()
            .find(|e| e["event_type"] == "entity" && e["entity"]["value"] == ip)
            .expect("snapshot");
        assert!(first_snap["entity"]["requests"].as_u64() <= f["entity"]["requests"].as_u64());
        checked += 1;
    }
    assert!(checked >= 10, "{checked} ip entities checked");
}

#[test]
fn exit_summary_counts_alerts_by_type_and_names_top_entities() {
    let (ev, err) = replay_lab1(&[]);
    let mut by_type = std::collections::BTreeMap::<String, u64>::new();
    for e in ev.iter().filter(|e| e["event_type"] == "alert") {
        *by_type
            .entry(e["indicator"]["type"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
    }
    let total: u64 = by_type.values().sum();
    let line = err
        .lines()
        .find(|l| l.starts_with(&format!("apitap: {total} alerts: ")))
        .unwrap_or_else(|| panic!("no alert line in:\n{err}"));
    for (t, n) in &by_type {
        assert!(line.contains(&format!("{t} {n}")), "{t} {n} missing: {line}");
    }
    let stats = ev.iter().rev().find(|e| e["event_type"] == "stats").expect("stats");
    assert_eq!(
        stats["stats"]["events"]["alert_types"]["scanner"].as_u64(),
        by_type.get("scanner").copied()
    );
    let top: Vec<&str> = err.lines().filter(|l| l.starts_with("apitap: top entity #")).collect();
    assert_eq!(top.len(), 5, "{err}");
    // The riskiest final profile is named first.
    let best = ev
        .iter()
        .filter(|e| e["event_type"] == "entity" && e["entity"]["reason"] == "final")
        .max_by(|a, b| {
            a["entity"]["risk"]
                .as_f64()
                .unwrap_or(0.0)
                .total_cmp(&b["entity"]["risk"].as_f64().unwrap_or(0.0))
        })
        .expect("final entity");
    let v = best["entity"]["value"].as_str().unwrap_or("");
    assert!(top[0].contains(&format!(" {v} risk ")), "{} vs {v}", top[0]);
}

#[test]
fn replay_bpf_and_time_range_leave_frames_out_and_count_them() {
    let (all, _) = replay_lab1(&["-q", "--types", "http"]);
    let want = all.iter().filter(|e| e["src_ip"] == "10.77.0.53").count();
    assert!(want > 10);
    let (ev, _) = replay_lab1(&["-q", "--types", "http,stats", "--bpf", "host 10.77.0.53"]);
    let http: Vec<&Value> = ev.iter().filter(|e| e["event_type"] == "http").collect();
    assert_eq!(http.len(), want);
    assert!(http.iter().all(|e| e["src_ip"] == "10.77.0.53"));
    let stats = ev.iter().rev().find(|e| e["event_type"] == "stats").expect("stats");
    assert!(
        stats["stats"]["capture"]["filtered"].as_u64().unwrap_or(0) > 1000,
        "{stats}"
    );

    // A time window: every transaction inside it, fewer than all, none lost inside.
    let (since, until) = ("2026-11-29T09:05:10Z", "2026-11-29 09:05:30");
    let inside = |e: &&Value| {
        let t = e["timestamp"].as_str().unwrap_or("");
        ("2026-11-29T09:05:10.5".."2026-11-29T09:05:29.5").contains(&t)
    };
    let (ev, _) = replay_lab1(&["-q", "--types", "http", "--since", since, "--until", until]);
    assert!(!ev.is_empty() && ev.len() < all.len(), "{} of {}", ev.len(), all.len());
    for e in &ev {
        let t = e["timestamp"].as_str().unwrap_or("");
        assert!(
            ("2026-11-29T09:05:10".."2026-11-29T09:05:30.000001").contains(&t),
            "{t}"
        );
    }
    // Transactions well inside the window are all there (edges may cut a connection).
    assert_eq!(ev.iter().filter(inside).count(), all.iter().filter(inside).count());

    for (flag, v) in [("--bpf", "tcp port"), ("--since", "yesterday")] {
        let out = Command::new(BIN)
            .args(["replay", "-q"])
            .arg(lab1())
            .args([flag, v])
            .output()
            .expect("replay");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with(&format!("apitap: {flag}")), "{err}");
    }
}

#[test]
fn replay_into_a_closed_pipe_exits_quietly_and_types_suggest_the_singular() {
    let mut c = Command::new(BIN)
        .args(["replay", "--no-progress"])
        .arg(lab1())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("replay");
    // Read one line, then close the pipe, as `| head -1` does.
    let mut out = BufReader::new(c.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("line");
    drop(out);
    let o = c.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(!err.contains("Broken pipe"), "{err}");

    let o = Command::new(BIN)
        .args(["replay", "--types", "alerts"])
        .arg(lab1())
        .output()
        .expect("replay");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("(did you mean \"alert\"?)"), "{err}");
}
