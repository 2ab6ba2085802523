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
    Arc::new(Batch { bytes, events: n })
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

    let conf = |prefix: &str| {
        let p = dir.path().join(format!("{prefix}.toml"));
        std::fs::write(
            &p,
            format!(
                "[fleet]\nredis = \"redis://127.0.0.1:{}\"\nprefix = \"{prefix}\"\n",
                r.port
            ),
        )
        .unwrap();
        p.to_str().unwrap().to_string()
    };
    let c1 = conf("t1");
    // Two sensors at once, each given one half.
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
    let mut alerts = Vec::new();
    let mut fleet_stats = Vec::new();
    for s in [sa, sb] {
        let o = s.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let ev: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        alerts.extend(stuffing_alerts(&ev).into_iter().cloned());
        let st = ev.iter().rfind(|e| e["event_type"] == "stats").unwrap();
        fleet_stats.push(st["stats"]["fleet"].clone());
    }
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
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut r.con()).unwrap();
    assert!(!keys.is_empty());
    assert!(
        keys.iter().all(|k| !k.contains("user") && !k.contains("10.9.0.5")),
        "{keys:?}"
    );
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
    for url in ["127.0.0.1:6379", "redis://nohost", "redis://:s3cret@h:0"] {
        let conf = dir.path().join("f.toml");
        std::fs::write(&conf, format!("[fleet]\nredis = \"{url}\"\n")).unwrap();
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
    std::thread::sleep(Duration::from_millis(300));
    let running_at_kill = procs.iter_mut().all(|p| p.try_wait().unwrap().is_none());
    r.down();
    std::thread::sleep(Duration::from_millis(700));
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
        // Shared before the kill and after the restart.
        assert!(
            f["shared"].as_u64().unwrap() > f["unavailable"].as_u64().unwrap(),
            "{f}"
        );
        assert_eq!(err.matches("unavailable").count(), 1, "logged once: {err}");
    }
}
