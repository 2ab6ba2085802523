//! Redis, with a real `redis-server` (apt package redis-server) started on a free loopback port
//! by each test and killed when it ends: the stream sink (`-o redis://HOST:PORT/STREAM`).
//! Without redis-server each test prints SKIPPED and passes.

mod common;
use common::have;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use apitap::sink::{Batch, SinkHandle, SinkOptions, SinkSpec};

fn test_name() -> String {
    std::thread::current().name().unwrap_or("test").to_string()
}

fn skip_without_redis() -> bool {
    if !have("redis-server") {
        eprintln!(
            "SKIPPED: {}: redis-server not installed (the README's second command installs it)",
            test_name()
        );
        return true;
    }
    false
}

/// A redis-server on 127.0.0.1, no persistence, killed on drop.
struct Redis {
    port: u16,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Redis {
    fn start() -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Redis {
            port: free_port(),
            child: None,
            _dir: dir,
        };
        r.up();
        r
    }

    fn up(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(self._dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        self.child = Some(child);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(mut c) = self.client().get_connection_with_timeout(Duration::from_millis(200))
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not come up on port {}", self.port);
    }

    fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn client(&self) -> redis::Client {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port)).unwrap()
    }

    fn con(&self) -> redis::Connection {
        self.client().get_connection().unwrap()
    }

    /// The `event` field of every entry of `stream`, in order.
    fn stream_events(&self, stream: &str) -> Vec<String> {
        let mut c = self.con();
        let v: redis::Value = redis::cmd("XRANGE")
            .arg(stream)
            .arg("-")
            .arg("+")
            .query(&mut c)
            .unwrap();
        let redis::Value::Array(entries) = v else {
            panic!("XRANGE: {v:?}")
        };
        entries
            .into_iter()
            .map(|e| {
                let redis::Value::Array(mut idf) = e else {
                    panic!("entry {e:?}")
                };
                let fields = idf.pop().unwrap();
                let (name, value): (String, String) = redis::from_redis_value(fields).unwrap();
                assert_eq!(name, "event");
                value
            })
            .collect()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.down();
    }
}

fn skip_without_redis_cluster() -> bool {
    for tool in ["redis-server", "redis-cli"] {
        if !have(tool) {
            eprintln!(
                "SKIPPED: {}: {tool} not installed (the README's second command installs redis-server, which brings redis-cli)",
                test_name()
            );
            return true;
        }
    }
    false
}

/// A free loopback port P whose cluster bus port (P + 10000) is free too.
fn free_cluster_port() -> u16 {
    for _ in 0..100 {
        let p = free_port();
        if p <= 55535 && TcpListener::bind(("127.0.0.1", p + 10000)).is_ok() {
            return p;
        }
    }
    panic!("no free port pair for a cluster node");
}

/// A 3-node Redis Cluster on 127.0.0.1 (no replicas, no persistence), every node killed on
/// drop.
struct Cluster {
    ports: Vec<u16>,
    children: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cluster {
            ports: Vec::new(),
            children: Vec::new(),
            _dir: dir,
        };
        while c.ports.len() < 3 {
            let p = free_cluster_port();
            if c.ports.contains(&p) {
                continue;
            }
            let conf = c._dir.path().join(format!("nodes-{p}.conf"));
            let child = Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &p.to_string()])
                .args(["--cluster-enabled", "yes", "--cluster-config-file"])
                .arg(&conf)
                .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
                .arg("--dir")
                .arg(c._dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server");
            c.ports.push(p);
            c.children.push(child);
        }
        for p in c.ports.clone() {
            c.wait_node(p, "PING", "PONG");
        }
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(c.ports.iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for p in c.ports.clone() {
            c.wait_node(p, "CLUSTER INFO", "cluster_state:ok");
        }
        c
    }

    /// Wait (10 s at most) until node `port` answers `cmd` with a reply holding `want`.
    fn wait_node(&self, port: u16, cmd: &str, want: &str) {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if let Ok(mut con) = self.node(port).get_connection_with_timeout(Duration::from_millis(200)) {
                let mut words = cmd.split(' ');
                let mut c = redis::cmd(words.next().unwrap());
                for w in words {
                    c.arg(w);
                }
                if let Ok(v) = c.query::<String>(&mut con)
                    && v.contains(want)
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("cluster node {port}: no {want:?} to {cmd}");
    }

    fn node(&self, port: u16) -> redis::Client {
        redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap()
    }

    /// The `[fleet] redis` value: the nodes as a TOML array.
    fn toml(&self) -> String {
        let urls: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("\"redis://127.0.0.1:{p}\""))
            .collect();
        format!("[{}]", urls.join(", "))
    }

    /// Every key on every node.
    fn keys(&self) -> Vec<String> {
        let mut all = Vec::new();
        for p in &self.ports {
            let mut con = self.node(*p).get_connection().unwrap();
            let k: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
            all.extend(k);
        }
        all
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn sample(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("capture-samples")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn redis_stream_holds_the_same_events_as_the_file_sink() {
    if skip_without_redis() {
        return;
    }
    let r = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("eve.json");
    let out = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .args(["replay", "-q", "--no-progress", "--workers", "2", "-o"])
        .arg(&file)
        .args(["-o", &format!("redis://127.0.0.1:{}/eve", r.port)])
        .arg(sample("http-mixed-api.pcap"))
        .arg(sample("http-keepalive.pcap"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert!(lines.iter().filter(|l| l.contains("\"event_type\":\"http\"")).count() > 10);
    let got = r.stream_events("eve");
    assert_eq!(got.len(), lines.len());
    assert_eq!(got, lines, "the stream holds the file's lines, in the same order");
}

#[test]
fn redis_stream_is_trimmed_to_about_maxlen() {
    if skip_without_redis() {
        return;
    }
    let r = Redis::start();
    let out = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .args(["replay", "-q", "--no-progress", "-o"])
        .arg(format!("redis://127.0.0.1:{}/short?maxlen=5", r.port))
        .arg(sample("http-mixed-api.pcap"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut c = r.con();
    let added: u64 = redis::cmd("XINFO")
        .arg("STREAM")
        .arg("short")
        .query::<redis::Value>(&mut c)
        .ok()
        .and_then(|v| {
            let m: std::collections::HashMap<String, redis::Value> = redis::from_redis_value(v).ok()?;
            redis::from_redis_value(m.get("entries-added")?.clone()).ok()
        })
        .unwrap_or(0);
    let len: u64 = redis::cmd("XLEN").arg("short").query(&mut c).unwrap();
    assert!(added > 20, "entries added {added}");
    // `MAXLEN ~` trims whole macro nodes (100 entries by default): about, never all.
    assert!(len < added && len <= 200, "len {len} of {added}");
}

#[test]
fn bad_redis_url_is_one_line_and_exit_2() {
    for url in [
        "redis://127.0.0.1:6379",
        "redis://127.0.0.1/x",
        "redis://h:1/x?maxlen=0",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_apitap"))
            .args(["replay", "-q", "--no-progress", "-o", url])
            .arg(sample("http-keepalive.pcap"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{url}: {err}");
        assert!(err.contains("redis"), "{url}: {err}");
    }
}

#[test]
fn redis_unreachable_in_replay_is_exit_2() {
    let port = free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .args(["replay", "-q", "--no-progress", "-o"])
        .arg(format!("redis://127.0.0.1:{port}/eve"))
        .arg(sample("http-keepalive.pcap"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot open"), "{err}");
}

fn batch(n: u64, tag: &str) -> Arc<Batch> {
    let mut bytes = Vec::new();
    for i in 0..n {
        bytes.extend(format!("{{\"event_type\":\"http\",\"tag\":\"{tag}\",\"i\":{i}}}\n").as_bytes());
    }
    Arc::new(Batch {
        bytes,
        events: n,
        back: None,
    })
}

/// Live: a Redis that goes away costs the events sent meanwhile (counted), and the sink
/// reconnects on its own once it is back.
#[test]
fn redis_sink_counts_drops_while_down_and_reconnects() {
    if skip_without_redis() {
        return;
    }
    let mut r = Redis::start();
    let spec: SinkSpec = format!("redis://127.0.0.1:{}/live", r.port).parse().unwrap();
    let opts = SinkOptions {
        sensor_name: "s1".into(),
        facility: 16,
        queue: 8,
        fatal_errors: false,
        truncate_files: false,
    };
    let h = SinkHandle::start(&spec, &opts, Arc::new(AtomicU64::new(0))).unwrap();
    let wait = |cond: &dyn Fn() -> bool| {
        let t = Instant::now();
        while !cond() && t.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(50));
        }
        cond()
    };
    assert!(h.send(&batch(10, "a"), false));
    assert!(wait(&|| h.stats.written.load(Ordering::Relaxed) == 10));
    r.down();
    // Keep sending while it is down: every event is either written before the failure showed
    // (impossible here: the server is gone) or counted as dropped.
    for _ in 0..5 {
        h.send(&batch(3, "b"), false);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(wait(&|| h.stats.dropped.load(Ordering::Relaxed) == 15), "{:?}", h.stats);
    assert!(h.stats.errors.load(Ordering::Relaxed) >= 1);
    r.up();
    // The sink retries with backoff (100 ms doubling): within a few seconds it is back.
    let t = Instant::now();
    while h.stats.reconnects.load(Ordering::Relaxed) == 0 && t.elapsed() < Duration::from_secs(20) {
        h.send(&batch(1, "probe"), false);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(h.stats.reconnects.load(Ordering::Relaxed) >= 1, "{:?}", h.stats);
    h.send(&batch(4, "c"), false);
    assert!(wait(&|| r
        .stream_events("live")
        .iter()
        .filter(|e| e.contains("\"c\""))
        .count()
        == 4));
    let st = h.stats.clone();
    h.finish(Some(Instant::now() + Duration::from_secs(5))).unwrap();
    // The restarted server (no persistence) holds exactly what was written since.
    let in_stream = r.stream_events("live").len() as u64;
    assert_eq!(in_stream + 10, st.written.load(Ordering::Relaxed), "{st:?}");
}

// ---- fleet state ----

use common::{Conv, PcapWriter};

/// Failed JSON logins from `client` to `server` (Host `site`), one connection, user names
/// `user{from}..user{to}`.
fn failed_logins(
    w: &mut PcapWriter,
    client: [u8; 4],
    cport: u16,
    server: [u8; 4],
    site: &str,
    users: std::ops::Range<u32>,
) {
    let mut c = Conv::open(w, client, server, cport, 80);
    for u in users {
        let body = format!("{{\"username\":\"user{u}@corp.example\",\"password\":\"Winter2024!\"}}");
        let req = format!(
            "POST /api/login HTTP/1.1\r\nHost: {site}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        c.client(w, req.as_bytes());
        c.server(
            w,
            b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n{\"error\":\"bad credentials\"}",
        );
    }
}

fn write_pcap(p: &std::path::Path, f: impl FnOnce(&mut PcapWriter)) {
    let mut w = PcapWriter::create(p);
    f(&mut w);
    w.finish();
}

fn replay_events(args: &[&str]) -> (std::process::Output, Vec<serde_json::Value>) {
    let out = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .args(["replay", "-q", "--no-progress"])
        .args(args)
        .output()
        .unwrap();
    let ev = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (out, ev)
}

fn stuffing_alerts(ev: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    ev.iter()
        .filter(|e| e["event_type"] == "alert" && e["indicator"]["type"] == "credential_stuffing")
        .collect()
}

#[test]
fn fleet_two_sensors_each_below_threshold_raise_one_alert() {
    if skip_without_redis() {
        return;
    }
    let r = Redis::start();
    two_sensors_one_alert(&format!("\"redis://127.0.0.1:{}\"", r.port), &|| {
        redis::cmd("KEYS").arg("*").query(&mut r.con()).unwrap()
    });
}

/// The same two sensors against a real 3-node Redis Cluster: the keys of one rule and entity
/// share a hash tag, so the two-bucket `PFCOUNT` and the claim script run on one node.
#[test]
fn fleet_two_sensors_raise_one_alert_through_a_redis_cluster() {
    if skip_without_redis_cluster() {
        return;
    }
    let c = Cluster::start();
    two_sensors_one_alert(&c.toml(), &|| c.keys());
    // Every key carries the hash tag after the prefix.
    for k in c.keys() {
        assert!(k.contains(":{") && k.contains("}:"), "{k}");
    }
}

/// Two sensors each given half of a credential-stuffing run (each half under the threshold)
/// raise exactly one alert fleet-wide naming both, and the merged capture on one sensor gives
/// the same alert. `redis` is the `[fleet] redis` value; `keys` lists what is in Redis.
fn two_sensors_one_alert(redis: &str, keys: &dyn Fn() -> Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, all) = (
        dir.path().join("a.pcap"),
        dir.path().join("b.pcap"),
        dir.path().join("all.pcap"),
    );
    let attacker = [10, 9, 0, 5];
    // One client stuffing credentials into two sites, 8 user names each: under the rule's
    // threshold (more than 10 distinct user names) on either site, 16 together.
    write_pcap(&a, |w| {
        failed_logins(w, attacker, 40001, [10, 1, 0, 1], "shop-a.example", 0..8)
    });
    write_pcap(&b, |w| {
        failed_logins(w, attacker, 40002, [10, 2, 0, 1], "shop-b.example", 8..16)
    });
    write_pcap(&all, |w| {
        failed_logins(w, attacker, 40001, [10, 1, 0, 1], "shop-a.example", 0..8);
        failed_logins(w, attacker, 40002, [10, 2, 0, 1], "shop-b.example", 8..16);
    });
    let (ap, bp, allp) = (a.to_str().unwrap(), b.to_str().unwrap(), all.to_str().unwrap());
    // Alone, each half stays under the threshold; the whole capture crosses it.
    for half in [ap, bp] {
        let (o, ev) = replay_events(&[half]);
        assert!(o.status.success());
        assert_eq!(stuffing_alerts(&ev).len(), 0, "{half} alone");
    }
    let (_, ev) = replay_events(&[allp]);
    assert_eq!(stuffing_alerts(&ev).len(), 1, "the whole capture on one sensor");

    let conf = |prefix: &str| fleet_conf(dir.path(), redis, prefix, "");
    let c1 = conf("t1");
    let (alerts, fleet_stats) = two_sensors(&c1, ap, bp, stuffing_alerts);
    assert_eq!(alerts.len(), 1, "one alert fleet-wide: {alerts:?}");
    let f = &alerts[0]["indicator"]["fleet"];
    assert_eq!(f["sensors"], serde_json::json!(["sensor-a", "sensor-b"]), "{f}");
    // Raised when the fleet-wide count crossed the threshold (more than 10 user names).
    assert!(f["distinct"].as_u64().unwrap() > 10, "{f}");
    for s in &fleet_stats {
        assert_eq!(s["unavailable"], 0, "{s}");
        assert!(s["shared"].as_u64().unwrap() >= 8, "{s}");
    }
    // The merged capture on one sensor of a fresh fleet: the same single alert.
    let c2 = conf("t2");
    let (o, ev) = replay_events(&["--config", &c2, "--sensor-name", "solo", allp]);
    assert!(o.status.success());
    let al = stuffing_alerts(&ev);
    assert_eq!(al.len(), 1);
    assert_eq!(al[0]["indicator"]["fleet"]["sensors"], serde_json::json!(["solo"]));
    // No user name, address or host in Redis keys.
    let keys = keys();
    assert!(!keys.is_empty());
    assert!(
        keys.iter().all(|k| !k.contains("user") && !k.contains("10.9.0.5")),
        "{keys:?}"
    );
}

/// A config file with `[fleet] redis = REDIS` and `prefix`, plus `extra` TOML at its end.
fn fleet_conf(dir: &std::path::Path, redis: &str, prefix: &str, extra: &str) -> String {
    let p = dir.join(format!("{prefix}.toml"));
    std::fs::write(&p, format!("[fleet]\nredis = {redis}\nprefix = \"{prefix}\"\n{extra}")).unwrap();
    p.to_str().unwrap().to_string()
}

/// Two sensors at once (`sensor-a` replays `a`, `sensor-b` replays `b`, both with config
/// `conf`): the alerts `pick` picks from both outputs, and each one's final `stats.fleet`.
fn two_sensors(
    conf: &str,
    a: &str,
    b: &str,
    pick: fn(&[serde_json::Value]) -> Vec<&serde_json::Value>,
) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let run = |pcap: &str, name: &str| {
        Command::new(env!("CARGO_BIN_EXE_apitap"))
            .args([
                "replay",
                "-q",
                "--no-progress",
                "--config",
                conf,
                "--sensor-name",
                name,
                pcap,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (sa, sb) = (run(a, "sensor-a"), run(b, "sensor-b"));
    let mut alerts = Vec::new();
    let mut fleet_stats = Vec::new();
    for s in [sa, sb] {
        let o = s.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let ev: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        alerts.extend(pick(&ev).into_iter().cloned());
        let st = ev.iter().rfind(|e| e["event_type"] == "stats").unwrap();
        fleet_stats.push(st["stats"]["fleet"].clone());
    }
    (alerts, fleet_stats)
}

#[test]
fn fleet_without_redis_goes_on_with_local_state() {
    let dir = tempfile::tempdir().unwrap();
    let all = dir.path().join("all.pcap");
    write_pcap(&all, |w| {
        failed_logins(w, [10, 9, 0, 5], 40001, [10, 1, 0, 1], "shop-a.example", 0..16);
    });
    let conf = dir.path().join("f.toml");
    std::fs::write(
        &conf,
        format!("[fleet]\nredis = \"redis://127.0.0.1:{}\"\n", free_port()),
    )
    .unwrap();
    let (o, ev) = replay_events(&["--config", conf.to_str().unwrap(), all.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    // The local alert still comes; the loss is counted and logged once.
    assert_eq!(stuffing_alerts(&ev).len(), 1);
    let st = &ev.iter().rfind(|e| e["event_type"] == "stats").unwrap()["stats"]["fleet"];
    assert!(st["unavailable"].as_u64().unwrap() >= 16, "{st}");
    assert_eq!(st["shared"], 0);
    assert_eq!(err.matches("unavailable").count(), 1, "{err}");
}

#[test]
fn fleet_bad_redis_url_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        "\"127.0.0.1:6379\"",
        "\"redis://nohost\"",
        "\"redis://:s3cret@h:0\"",
        // a cluster: every node URL is checked
        "[\"redis://127.0.0.1:7000\", \"redis://:s3cret@nohost\"]",
        "[\"redis://127.0.0.1:7000\", 7001]",
        "[\"redis://127.0.0.1:7000/2\"]",
        "[]",
        "6379",
    ] {
        let conf = dir.path().join("f.toml");
        std::fs::write(&conf, format!("[fleet]\nredis = {url}\n")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_apitap"))
            .args(["config", "check"])
            .arg(&conf)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {err}");
        assert!(
            err.contains("fleet.redis") && err.trim().lines().count() == 1,
            "{url}: {err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
    }
}

/// Redis killed while two sensors replay a long capture: both keep running to the end, count
/// what they could not share, and share again once it is back.
#[test]
fn fleet_redis_killed_mid_run_both_sensors_keep_running() {
    if skip_without_redis() {
        return;
    }
    let mut r = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let caps: Vec<PathBuf> = (0..2u8)
        .map(|s| {
            let p = dir.path().join(format!("s{s}.pcap"));
            write_pcap(&p, |w| {
                // many clients, 10 user names each (at the stuffing threshold, not over): a
                // long run of fleet messages
                for c in 0..3000u32 {
                    let ip = [10, 20 + s, (c >> 8) as u8, c as u8];
                    failed_logins(w, ip, 30000 + (c % 20000) as u16, [10, 1, 0, 1], "shop.example", 0..10);
                }
            });
            p
        })
        .collect();
    let conf = dir.path().join("f.toml");
    std::fs::write(&conf, format!("[fleet]\nredis = \"redis://127.0.0.1:{}\"\n", r.port)).unwrap();
    let t0 = Instant::now();
    let mut procs: Vec<Child> = caps
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Command::new(env!("CARGO_BIN_EXE_apitap"))
                .args(["replay", "-q", "--no-progress", "--config"])
                .arg(&conf)
                .args(["--sensor-name", &format!("s{i}")])
                .arg(p)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Kill Redis once both share (each sensor's keys are there), bring it back 500 ms later:
    // the sensors' retries (100 ms doubling) find it within a second.
    // Which sensors' names the keys in Redis hold.
    let sharing = |r: &Redis| {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*sensors*")
            .query(&mut r.con())
            .unwrap_or_default();
        let mut c = r.con();
        let mut seen = std::collections::BTreeSet::new();
        for k in keys.iter().take(500) {
            let m: Vec<String> = redis::cmd("SMEMBERS").arg(k).query(&mut c).unwrap_or_default();
            seen.extend(m);
        }
        seen.contains("s0") && seen.contains("s1")
    };
    let t = Instant::now();
    let mut shared_before_kill = false;
    while t.elapsed() < Duration::from_secs(10) {
        if sharing(&r) {
            shared_before_kill = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(shared_before_kill, "both sensors shared within 10 s of their start");
    let running_at_kill = procs.iter_mut().all(|p| p.try_wait().unwrap().is_none());
    r.down();
    std::thread::sleep(Duration::from_millis(500));
    let running_at_restart = procs.iter_mut().all(|p| p.try_wait().unwrap().is_none());
    r.up();
    assert!(
        running_at_kill && running_at_restart,
        "the replays ended before Redis was killed and restarted ({:?}): the capture is too short for this machine",
        t0.elapsed()
    );
    for p in procs {
        let o = p.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        let ev: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let st = &ev.iter().rfind(|e| e["event_type"] == "stats").unwrap()["stats"];
        let f = &st["fleet"];
        assert_eq!(st["http"]["transactions"], 30000, "every transaction of the run");
        assert!(f["unavailable"].as_u64().unwrap() > 0, "{f}");
        assert!(f["reconnects"].as_u64().unwrap() >= 1, "{f}");
        assert!(f["shared"].as_u64().unwrap() > 0, "{f}");
        assert_eq!(err.matches("unavailable").count(), 1, "logged once: {err}");
    }
    // The restarted Redis started empty (no persistence): keys naming both sensors were
    // written after the restart, so both went back to sharing. (How much of a run falls in
    // the outage depends on the machine's speed: the counts alone cannot say it.)
    assert!(sharing(&r), "both sensors shared again after the restart");
}

/// One GET from `client` to `server` (Host `site`) answered 200.
fn get(w: &mut PcapWriter, client: [u8; 4], cport: u16, server: [u8; 4], site: &str, target: &str) {
    let mut c = Conv::open(w, client, server, cport, 80);
    let req = format!("GET {target} HTTP/1.1\r\nHost: {site}\r\nAccept: application/json\r\n\r\n");
    c.client(w, req.as_bytes());
    c.server(
        w,
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}",
    );
}

fn alerts_of<'a>(ev: &'a [serde_json::Value], itype: &str) -> Vec<&'a serde_json::Value> {
    ev.iter()
        .filter(|e| e["event_type"] == "alert" && e["indicator"]["type"] == itype)
        .collect()
}

fn risk_alerts(ev: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    alerts_of(ev, "risk_threshold")
}

/// Entity risk is shared with its decay: one client injects on one site (risk 25) and probes
/// SSRF on another (risk 30). Each sensor's own risk stays under the first level (50); the
/// fleet-wide score crosses it, and exactly one `risk_threshold` alert is raised, with an
/// `entity` event naming both sensors.
#[test]
fn fleet_two_sensors_share_entity_risk_and_raise_one_risk_alert() {
    if skip_without_redis() {
        return;
    }
    let r = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, b, all) = (
        dir.path().join("a.pcap"),
        dir.path().join("b.pcap"),
        dir.path().join("all.pcap"),
    );
    let attacker = [10, 9, 0, 7];
    let inject = |w: &mut PcapWriter| {
        get(
            w,
            attacker,
            41001,
            [10, 1, 0, 1],
            "shop-a.example",
            "/api/items?q=1%27%20OR%20%271%27=%271",
        )
    };
    let ssrf = |w: &mut PcapWriter| {
        get(
            w,
            attacker,
            41002,
            [10, 2, 0, 1],
            "shop-b.example",
            "/api/fetch?url=http://169.254.169.254/latest/meta-data/",
        )
    };
    write_pcap(&a, inject);
    write_pcap(&b, ssrf);
    write_pcap(&all, |w| {
        inject(w);
        ssrf(w);
    });
    let (ap, bp, allp) = (a.to_str().unwrap(), b.to_str().unwrap(), all.to_str().unwrap());
    // Alone, each half raises its own alert and no risk alert; together they cross 50.
    for (half, t) in [(ap, "injection"), (bp, "ssrf")] {
        let (o, ev) = replay_events(&[half]);
        assert!(o.status.success());
        assert_eq!(alerts_of(&ev, t).len(), 1, "{half}: {ev:?}");
        assert_eq!(risk_alerts(&ev).len(), 0, "{half} alone");
    }
    let (_, ev) = replay_events(&[allp]);
    assert_eq!(risk_alerts(&ev).len(), 1, "the whole capture on one sensor");

    let redis = format!("\"redis://127.0.0.1:{}\"", r.port);
    let c1 = fleet_conf(dir.path(), &redis, "r1", "");
    let run = |pcap: &str, name: &str| {
        Command::new(env!("CARGO_BIN_EXE_apitap"))
            .args([
                "replay",
                "-q",
                "--no-progress",
                "--config",
                &c1,
                "--sensor-name",
                name,
                pcap,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (sa, sb) = (run(ap, "sensor-a"), run(bp, "sensor-b"));
    let mut ev = Vec::new();
    for s in [sa, sb] {
        let o = s.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        ev.extend(
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()),
        );
    }
    let ra = risk_alerts(&ev);
    assert_eq!(ra.len(), 1, "one risk alert fleet-wide: {ra:?}");
    let f = &ra[0]["indicator"]["fleet"];
    assert_eq!(f["sensors"], serde_json::json!(["sensor-a", "sensor-b"]), "{f}");
    let score = f["risk"].as_f64().unwrap();
    assert!((54.9..=55.1).contains(&score), "25 + 30, barely decayed: {f}");
    assert_eq!(ra[0]["indicator"]["entity"]["value"], "10.9.0.7");
    // Its entity event names both sensors (under entity.fleet: the event is apitap's own shape).
    let ent: Vec<&serde_json::Value> = ev
        .iter()
        .filter(|e| e["event_type"] == "entity" && e["entity"]["reason"] == "threshold")
        .collect();
    assert_eq!(ent.len(), 1, "{ent:?}");
    assert_eq!(
        ent[0]["entity"]["fleet"]["sensors"],
        serde_json::json!(["sensor-a", "sensor-b"])
    );
    assert_eq!(ent[0]["entity"]["level"], 1);
    // It carries the merged attacker profile: the injection one sensor saw and the SSRF probe
    // the other saw, each with its sensor, and the requests of both.
    let fp = &ent[0]["entity"]["fleet"];
    let types: Vec<(&str, &serde_json::Value)> = fp["indicators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["type"].as_str().unwrap(), &i["sensors"]))
        .collect();
    assert!(types.contains(&("injection", &serde_json::json!(["sensor-a"]))), "{fp}");
    assert!(types.contains(&("ssrf", &serde_json::json!(["sensor-b"]))), "{fp}");
    assert!(
        fp["requests"].as_u64().unwrap() > ent[0]["entity"]["requests"].as_u64().unwrap(),
        "{fp}"
    );
    // Every final profile names the sensors that had seen the entity by then, itself first.
    let finals: Vec<&serde_json::Value> = ev
        .iter()
        .filter(|e| e["event_type"] == "entity" && e["entity"]["reason"] == "final")
        .collect();
    assert_eq!(finals.len(), 2, "{finals:?}");
    for e in finals {
        let s = e["entity"]["fleet"]["sensors"].as_array().unwrap();
        assert!(s.iter().any(|n| *n == e["host"]), "{e}");
    }
    // The merged capture on one sensor of a fresh fleet: the same single risk alert.
    let c2 = fleet_conf(dir.path(), &redis, "r2", "");
    let (o, ev) = replay_events(&["--config", &c2, "--sensor-name", "solo", allp]);
    assert!(o.status.success());
    assert_eq!(risk_alerts(&ev).len(), 1, "{ev:?}");
    let threshold_profiles = ev
        .iter()
        .filter(|e| e["event_type"] == "entity" && e["entity"]["reason"] == "threshold")
        .count();
    assert_eq!(threshold_profiles, 1, "the risk alert's profile, once");
    // The stored score and sensors carry no address.
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut r.con()).unwrap();
    assert!(keys.iter().any(|k| k.ends_with(":risk")), "{keys:?}");
    assert!(keys.iter().all(|k| !k.contains("10.9.0.7")), "{keys:?}");
}

fn brute_force_alerts(ev: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    alerts_of(ev, "brute_force")
}

/// Count-only windows are shared too: one client fails 5 logins on each of two sites. The
/// brute-force rule (more than 8 failed POST logins in 60 s) stays quiet on either sensor;
/// fleet-wide the two windows add up to 10, and exactly one alert is raised.
#[test]
fn fleet_two_sensors_share_count_windows_and_raise_one_brute_force_alert() {
    if skip_without_redis() {
        return;
    }
    let r = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, b, all) = (
        dir.path().join("a.pcap"),
        dir.path().join("b.pcap"),
        dir.path().join("all.pcap"),
    );
    let attacker = [10, 9, 0, 9];
    write_pcap(&a, |w| {
        failed_logins(w, attacker, 42001, [10, 1, 0, 1], "shop-a.example", 0..5)
    });
    write_pcap(&b, |w| {
        failed_logins(w, attacker, 42002, [10, 2, 0, 1], "shop-b.example", 5..10)
    });
    write_pcap(&all, |w| {
        failed_logins(w, attacker, 42001, [10, 1, 0, 1], "shop-a.example", 0..5);
        failed_logins(w, attacker, 42002, [10, 2, 0, 1], "shop-b.example", 5..10);
    });
    let (ap, bp, allp) = (a.to_str().unwrap(), b.to_str().unwrap(), all.to_str().unwrap());
    for half in [ap, bp] {
        let (o, ev) = replay_events(&[half]);
        assert!(o.status.success());
        assert_eq!(brute_force_alerts(&ev).len(), 0, "{half} alone");
    }
    let (_, ev) = replay_events(&[allp]);
    assert_eq!(brute_force_alerts(&ev).len(), 1, "the whole capture on one sensor");

    let redis = format!("\"redis://127.0.0.1:{}\"", r.port);
    let c1 = fleet_conf(dir.path(), &redis, "c1", "");
    let (alerts, stats) = two_sensors(&c1, ap, bp, brute_force_alerts);
    assert_eq!(alerts.len(), 1, "one alert fleet-wide: {alerts:?}");
    let f = &alerts[0]["indicator"]["fleet"];
    assert_eq!(f["sensors"], serde_json::json!(["sensor-a", "sensor-b"]), "{f}");
    assert_eq!(f["count"], 10, "{f}");
    for s in &stats {
        assert_eq!(s["unavailable"], 0, "{s}");
    }
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut r.con()).unwrap();
    assert!(keys.iter().any(|k| k.contains(":cnt:")), "{keys:?}");
}

/// `clients` addresses (10.C.0.x) each call `path`/0..3 on Host `site`, with a bearer token
/// when `token`, and get a 200.
fn calls(w: &mut PcapWriter, net: u8, clients: u8, site: &str, path: &str, token: bool) {
    let ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"id\":1234}";
    for c in 0..clients {
        let mut conv = Conv::open(w, [10, net, 0, c + 1], [10, 0, 0, 1], 5000, 80);
        for i in 0..3 {
            let auth = if token {
                format!("Authorization: Bearer tok{net}x{c}\r\n")
            } else {
                String::new()
            };
            let req = format!("GET {path}/{} HTTP/1.1\r\nHost: {site}\r\n{auth}\r\n", 1000 + i);
            conv.client(w, req.as_bytes());
            conv.server(w, ok);
        }
    }
}

fn bypass_alerts(ev: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    alerts_of(ev, "auth_bypass")
}

/// One sensor's replay with config `conf` under the name `name`: its events.
fn sensor(conf: &str, name: &str, pcap: &str) -> Vec<serde_json::Value> {
    let (o, ev) = replay_events(&["--config", conf, "--sensor-name", name, pcap]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ev
}

/// The endpoint auth profiles behind auth-bypass are shared: two sensors behind one load
/// balancer each see 6 calls with credentials on `GET /api/orders/{id}` (the detector wants
/// 10), and sensor B then sees a client get a 200 there without any. Alone neither sensor
/// knows the endpoint well enough; fleet-wide it is protected, and B raises the alert. The
/// merged capture on one sensor gives the same alert. The other way round too: an endpoint
/// sensor A saw many clients use without credentials is public fleet-wide, so B's call without
/// credentials there is no bypass, though B alone (only calls with credentials) would say so.
#[test]
fn fleet_sensors_share_endpoint_auth_profiles_for_auth_bypass() {
    if skip_without_redis() {
        return;
    }
    let r = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let (a, b, all) = (p("a.pcap"), p("b.pcap"), p("all.pcap"));
    let site = "api.shop.example";
    let sensor_a = |w: &mut PcapWriter| calls(w, 1, 2, site, "/api/orders", true);
    let sensor_b = |w: &mut PcapWriter| {
        calls(w, 2, 2, site, "/api/orders", true);
        calls(w, 9, 1, site, "/api/orders", false);
    };
    write_pcap(a.as_ref(), sensor_a);
    write_pcap(b.as_ref(), sensor_b);
    write_pcap(all.as_ref(), |w| {
        sensor_a(w);
        sensor_b(w);
    });
    for half in [&a, &b] {
        let (o, ev) = replay_events(&[half]);
        assert!(o.status.success());
        assert_eq!(bypass_alerts(&ev).len(), 0, "{half} alone");
    }
    let (_, ev) = replay_events(&[&all]);
    assert_eq!(bypass_alerts(&ev).len(), 1, "the whole capture on one sensor");

    let redis = format!("\"redis://127.0.0.1:{}\"", r.port);
    let conf = fleet_conf(dir.path(), &redis, "ab", "");
    // A has learned the profile before B sees the call without credentials.
    let ev_a = sensor(&conf, "sensor-a", &a);
    assert_eq!(bypass_alerts(&ev_a).len(), 0);
    let ev_b = sensor(&conf, "sensor-b", &b);
    let al = bypass_alerts(&ev_b);
    assert_eq!(al.len(), 1, "{al:?}");
    assert_eq!(al[0]["src_ip"], "10.9.0.1");
    assert_eq!(al[0]["indicator"]["endpoint"], "GET /api/orders/{id}");
    let st = ev_b.iter().rfind(|e| e["event_type"] == "stats").unwrap();
    assert_eq!(st["stats"]["fleet"]["unavailable"], 0, "{st}");
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut r.con()).unwrap();
    assert!(keys.iter().any(|k| k.ends_with(":auth:n")), "{keys:?}");
    assert!(
        keys.iter().all(|k| !k.contains("orders") && !k.contains("10.")),
        "{keys:?}"
    );

    // The public endpoint: A sees 8 clients use /api/products without credentials; B sees
    // 4 clients use it with a token (12 calls) and then one without.
    let (pa, pb) = (p("pa.pcap"), p("pb.pcap"));
    write_pcap(pa.as_ref(), |w| calls(w, 3, 8, site, "/api/products", false));
    write_pcap(pb.as_ref(), |w| {
        calls(w, 4, 4, site, "/api/products", true);
        calls(w, 9, 1, site, "/api/products", false);
    });
    let (_, ev) = replay_events(&[&pb]);
    assert_eq!(
        bypass_alerts(&ev).len(),
        1,
        "B alone takes the endpoint for a protected one"
    );
    let conf = fleet_conf(dir.path(), &redis, "pub", "");
    // Calls without credentials are only counted on an endpoint known as one called with
    // them (as on one sensor): B's calls with a token come first here, then A's 8 clients
    // without, then B's call without. A's first client is a bypass by what the fleet knew
    // then, as it is on one sensor given the same calls in that order; the next ones make the
    // endpoint public, and B's call is not one.
    let (pb1, pb2, pall) = (p("pb1.pcap"), p("pb2.pcap"), p("pall.pcap"));
    write_pcap(pb1.as_ref(), |w| calls(w, 4, 4, site, "/api/products", true));
    write_pcap(pb2.as_ref(), |w| calls(w, 9, 1, site, "/api/products", false));
    write_pcap(pall.as_ref(), |w| {
        calls(w, 4, 4, site, "/api/products", true);
        calls(w, 3, 8, site, "/api/products", false);
        calls(w, 9, 1, site, "/api/products", false);
    });
    let (_, ev) = replay_events(&[&pall]);
    let one = bypass_alerts(&ev);
    assert_eq!(one.len(), 1, "{one:?}");
    assert_eq!(one[0]["src_ip"], "10.3.0.1");
    assert_eq!(bypass_alerts(&sensor(&conf, "sensor-b", &pb1)).len(), 0);
    let ev = sensor(&conf, "sensor-a", &pa);
    let al = bypass_alerts(&ev);
    assert_eq!(al.len(), 1, "{al:?}");
    assert_eq!(al[0]["src_ip"], "10.3.0.1");
    let ev = sensor(&conf, "sensor-b", &pb2);
    assert_eq!(
        bypass_alerts(&ev).len(),
        0,
        "public fleet-wide: {:?}",
        bypass_alerts(&ev)
    );
}

/// Live, the capture thread never waits for Redis: a 2xx without credentials on an endpoint it
/// does not know is judged locally, and its ask for the fleet's profile is answered in the
/// background. Sensor A (a replay) has learned `GET /api/orders/{id}` as protected (12 calls
/// with a token from 4 clients); sensor B runs `apitap live` on loopback in front of a real
/// HTTP server and sees a client call it without credentials: the first call asks (and is
/// judged locally: no profile), the three a second later are judged with the fleet's profile
/// and are the bypass (the rule alerts past two in five minutes).
#[test]
fn fleet_auth_profiles_reach_a_live_sensor_without_blocking_capture() {
    if skip_without_redis() {
        return;
    }
    if !have("python3") || !have("curl") || unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "SKIPPED: {}: needs root (live capture on lo), python3 and curl",
            test_name()
        );
        return;
    }
    let r = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let redis = format!("\"redis://127.0.0.1:{}\"", r.port);
    let conf = fleet_conf(dir.path(), &redis, "live", "");
    let site = "api.shop.example";
    let a = dir.path().join("a.pcap");
    write_pcap(&a, |w| calls(w, 1, 4, site, "/api/orders", true));
    let ev = sensor(&conf, "sensor-a", a.to_str().unwrap());
    assert_eq!(bypass_alerts(&ev).len(), 0);

    // A real HTTP server on loopback answering 200 for /api/orders/1001.
    let www = dir.path().join("www");
    std::fs::create_dir_all(www.join("api/orders")).unwrap();
    std::fs::write(www.join("api/orders/1001"), "{\"id\":1001,\"total\":12}").unwrap();
    let port = free_port();
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Kill(
        Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
                "--directory",
            ])
            .arg(&www)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let get = || {
        Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                &format!("Host: {site}"),
            ])
            .arg(format!("http://127.0.0.1:{port}/api/orders/1001"))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default()
    };
    let t = Instant::now();
    while get() != "200" {
        assert!(t.elapsed() < Duration::from_secs(10), "http.server did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let eve = dir.path().join("eve.json");
    let mut ap = Kill(
        Command::new(env!("CARGO_BIN_EXE_apitap"))
            .args([
                "live",
                "-i",
                "lo",
                "--bpf",
                &format!("tcp port {port}"),
                "--stats-interval",
                "0",
            ])
            .args(["--config", &conf, "--sensor-name", "sensor-b", "-o"])
            .arg(&eve)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(get(), "200");
    std::thread::sleep(Duration::from_millis(1000));
    for _ in 0..3 {
        assert_eq!(get(), "200");
    }
    std::thread::sleep(Duration::from_millis(1000));
    unsafe { libc::kill(ap.0.id() as i32, libc::SIGTERM) };
    let st = ap.0.wait().unwrap();
    assert!(st.success(), "{st:?}");
    let ev: Vec<serde_json::Value> = std::fs::read_to_string(&eve)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let http = ev.iter().filter(|e| e["event_type"] == "http").count();
    assert_eq!(http, 4, "every call captured");
    // the rule alerts on the third bypass in 5 minutes: the three calls after the answer came
    let al = bypass_alerts(&ev);
    assert_eq!(al.len(), 1, "the calls judged with the fleet's profile: {al:?}");
    assert_eq!(al[0]["indicator"]["endpoint"], "GET /api/orders/{id}");
    let st = ev.iter().rfind(|e| e["event_type"] == "stats").unwrap();
    assert_eq!(st["stats"]["fleet"]["unavailable"], 0, "{st}");
}
