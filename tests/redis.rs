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
