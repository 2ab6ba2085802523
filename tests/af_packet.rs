//! `capture.method = "af_packet"` with real parts: two network namespaces (`afp<N>-s`,
//! `afp<N>-c`) joined by a veth pair; tcpreplay sends a bundled capture from the client side at
//! a bounded rate, `apitap live` reads the server side with 1 or 2 ring threads. The
//! transactions must be those of an offline replay of the same file, whatever the thread count.
//!
//! Needs root, iproute2 and tcpreplay (the README's second command installs them); without
//! them each test prints SKIPPED and passes.

mod common;
use common::have;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn test_name() -> String {
    std::thread::current().name().unwrap_or("test").to_string()
}

fn skip_unless_root_with(tools: &[&str]) -> bool {
    if unsafe { libc::geteuid() } != 0 {
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

fn sh(cmd: &str) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    assert!(
        out.status.success(),
        "command failed: {cmd}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sh_quiet(cmd: &str) {
    let _ = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// `afp<n>-s` and `afp<n>-c` joined by veth `afp<n>s0` / `afp<n>c0` (no addresses: tcpreplay
/// writes frames as they are); removed on drop.
struct Lab {
    tag: String,
}

impl Lab {
    fn new(n: u8) -> Lab {
        let lab = Lab { tag: format!("afp{n}") };
        lab.down();
        let t = &lab.tag;
        sh(&format!(
            "ip netns add {t}-s && ip netns add {t}-c && ip link add {t}s0 type veth peer name {t}c0 && \
             ip link set {t}s0 netns {t}-s && ip link set {t}c0 netns {t}-c && \
             ip -n {t}-s link set {t}s0 up && ip -n {t}-c link set {t}c0 up && \
             ip -n {t}-s link set lo up && ip -n {t}-c link set lo up"
        ));
        for (ns, dev) in [
            (format!("{t}-s"), format!("{t}s0")),
            (format!("{t}-c"), format!("{t}c0")),
        ] {
            sh_quiet(&format!(
                "ip netns exec {ns} ethtool -K {dev} tso off gso off gro off tx off"
            ));
        }
        lab
    }

    fn down(&self) {
        sh_quiet(&format!("ip netns del {0}-s; ip netns del {0}-c", self.tag));
    }

    /// Run `apitap live` on the server end with `args`, send `pcap` with tcpreplay at `pps`,
    /// stop it with SIGTERM; returns the events written.
    fn capture(&self, pcap: &Path, pps: u32, args: &[&str]) -> Vec<Value> {
        self.capture_and(pcap, pps, args, || ())
    }

    /// [`Lab::capture`], calling `during` once tcpreplay is done, before apitap is stopped.
    fn capture_and(&self, pcap: &Path, pps: u32, args: &[&str], during: impl FnOnce()) -> Vec<Value> {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("eve.json");
        let t = &self.tag;
        let mut child = Proc(
            Command::new("ip")
                .args(["netns", "exec", &format!("{t}-s"), env!("CARGO_BIN_EXE_apitap"), "live"])
                .args(["-i", &format!("{t}s0"), "--method", "af_packet", "-o"])
                .arg(&out)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("apitap live"),
        );
        // Wait for "capturing on" (the rings are set up), at most 20 s.
        let err = child.0.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if !sent && line.contains("capturing on") {
                    sent = true;
                    let _ = tx.send(());
                }
                eprintln!("apitap: {line}");
            }
        });
        rx.recv_timeout(Duration::from_secs(20))
            .expect("apitap live did not start");
        let r = Command::new("timeout")
            .args(["120", "ip", "netns", "exec", &format!("{t}-c"), "tcpreplay", "-q"])
            .args(["-i", &format!("{t}c0"), "--pps", &pps.to_string()])
            .arg(pcap)
            .output()
            .unwrap();
        assert!(r.status.success(), "tcpreplay: {}", String::from_utf8_lossy(&r.stderr));
        std::thread::sleep(Duration::from_millis(500));
        during();
        unsafe {
            libc::kill(child.0.id() as i32, libc::SIGTERM);
        }
        let t0 = Instant::now();
        loop {
            if let Some(st) = child.0.try_wait().unwrap() {
                assert!(st.success(), "apitap live exited with {st}");
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "apitap live did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.down();
    }
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sample(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("capture-samples")
        .join(rel)
}

/// The lab capture, unzipped for tcpreplay.
fn lab_pcap(dir: &Path) -> PathBuf {
    let p = dir.join("lab-1.pcap");
    let gz = std::fs::File::open(sample("lab/lab-1.pcap.gz")).unwrap();
    let mut d = flate2::read::GzDecoder::new(gz);
    let mut f = std::fs::File::create(&p).unwrap();
    std::io::copy(&mut d, &mut f).unwrap();
    p
}

/// Transactions as a multiset of (client, client port, method, url, status).
fn transactions(events: &[Value]) -> BTreeMap<String, u32> {
    let mut m = BTreeMap::new();
    for e in events.iter().filter(|e| e["event_type"] == "http") {
        let k = format!(
            "{} {} {} {} {}",
            e["src_ip"], e["src_port"], e["http"]["http_method"], e["http"]["url"], e["http"]["status"]
        );
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

fn offline(pcap: &Path) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .args(["replay", "-q", "--no-progress"])
        .arg(pcap)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn last_stats(events: &[Value]) -> &Value {
    &events.iter().rev().find(|e| e["event_type"] == "stats").expect("stats")["stats"]
}

fn iface<'a>(events: &'a [Value], name: &str) -> &'a Value {
    &last_stats(events)["interfaces"][name]
}

/// `key` of each ring of an interface's stats.
fn per_ring(st: &Value, key: &str) -> Vec<u64> {
    st["rings"]
        .as_array()
        .expect("rings")
        .iter()
        .map(|r| r[key].as_u64().expect(key))
        .collect()
}

#[test]
fn af_packet_two_threads_give_the_same_transactions_as_one() {
    if skip_unless_root_with(&["ip", "tcpreplay"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pcap = lab_pcap(dir.path());
    let off = offline(&pcap);
    let want = transactions(&off);
    assert!(want.values().sum::<u32>() > 4000);
    let off_flow = &last_stats(&off)["flow"];
    let lab = Lab::new(1);
    for k in ["1", "2"] {
        let ev = lab.capture(&pcap, 10_000, &["--threads", k]);
        let st = iface(&ev, "afp1s0");
        assert_eq!(st["kernel_dropped"], 0, "k={k}: {st}");
        assert_eq!(st["threads"].as_u64(), Some(k.parse().unwrap()));
        assert_eq!(per_ring(st, "kernel_dropped").iter().sum::<u64>(), 0, "k={k}: {st}");
        // Both directions of every connection reached one ring: the rings together saw the
        // flows the offline replay sees, and no more seen from one direction only (a flow
        // whose directions the fanout split would be two one-way flows on two rings).
        assert_eq!(
            per_ring(st, "one_way_flows").iter().sum::<u64>(),
            off_flow["one_way"].as_u64().unwrap(),
            "k={k}: one-way flows per ring {:?}",
            per_ring(st, "one_way_flows")
        );
        assert_eq!(
            per_ring(st, "flows").iter().sum::<u64>(),
            off_flow["created"].as_u64().unwrap(),
            "k={k}: flows per ring {:?}",
            per_ring(st, "flows")
        );
        if k == "2" {
            // The fanout hash spread the flows over both rings.
            let per = per_ring(st, "packets");
            assert!(per.iter().all(|n| *n > 1000), "k=2 spread {per:?}");
            assert!(per_ring(st, "flows").iter().all(|n| *n > 10), "k=2 flows {st}");
        }
        let got = transactions(&ev);
        assert_eq!(
            got.values().sum::<u32>(),
            want.values().sum::<u32>(),
            "k={k}: transaction count"
        );
        assert!(got == want, "k={k}: transactions differ from the offline replay");
        assert_eq!(last_stats(&ev)["drops"]["worker_queue"], 0);
    }
}

#[test]
fn af_packet_puts_stripped_vlan_tags_back() {
    if skip_unless_root_with(&["ip", "tcpreplay"]) {
        return;
    }
    let lab = Lab::new(2);
    for name in ["vlan-http.pcap", "qinq-http.pcap"] {
        let pcap = sample(name);
        let want = transactions(&offline(&pcap));
        assert!(!want.is_empty());
        let ev = lab.capture(&pcap, 2_000, &["--threads", "2"]);
        // The kernel strips the (outer) tag into tp_vlan_tci on receive; put back, the decoder
        // counts it as it does offline.
        assert!(last_stats(&ev)["decoder"]["vlan"].as_u64().unwrap() > 0, "{name}");
        assert!(
            transactions(&ev) == want,
            "{name}: transactions differ from the offline replay"
        );
    }
}

#[test]
fn af_packet_applies_the_bpf_filter() {
    if skip_unless_root_with(&["ip", "tcpreplay"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pcap = lab_pcap(dir.path());
    let all = offline(&pcap);
    let want: BTreeMap<String, u32> = transactions(&all)
        .into_iter()
        .filter(|(k, _)| k.starts_with("\"10.77.0.19\" "))
        .collect();
    assert!(!want.is_empty());
    let lab = Lab::new(3);
    let ev = lab.capture(&pcap, 10_000, &["--threads", "2", "--bpf", "host 10.77.0.19"]);
    assert!(transactions(&ev) == want, "only host 10.77.0.19's transactions");
}

#[test]
fn af_packet_ring_settings_are_checked_by_config_check() {
    let dir = tempfile::tempdir().unwrap();
    for (toml, key) in [
        (
            "[capture]\nmethod = \"af_packet\"\nblock_size = 1000000\n",
            "capture.block_size",
        ),
        (
            "[capture]\nmethod = \"af_packet\"\nblock_count = 1\n",
            "capture.block_count",
        ),
        (
            "[capture]\nmethod = \"af_packet\"\nblock_timeout = 0\n",
            "capture.block_timeout",
        ),
        ("[capture]\nthreads = 0\n", "capture.threads"),
        (
            "[capture]\nmethod = \"af_packet\"\nblock_size = \"3MiB\"\n",
            "capture.block_size: 3MiB is not a power of two",
        ),
        (
            "[capture]\nmethod = \"af_packet\"\nblock_size = \"4 MB/s\"\n",
            "capture.block_size: \"4 MB/s\": unknown unit",
        ),
        (
            "[capture]\nmethod = \"af_packet\"\nblock_size = \"1GiB\"\n",
            "capture.block_size: 1GiB is too large",
        ),
        (
            "[capture]\nmethod = \"af_packet\"\nblock_size = \"32KiB\"\n",
            "capture.block_size: 32KiB cannot hold a 65535-byte packet",
        ),
        (
            "[capture]\nmethod = \"af_packet\"\nblock_timeout = \"1h\"\n",
            "capture.block_timeout: \"1h\": unknown unit",
        ),
        (
            "[capture]\nmethod = \"af_packet\"\nblock_timeout = \"0ms\"\n",
            "capture.block_timeout: must be more than 0",
        ),
        ("[capture]\nmethod = \"netmap\"\n", "capture.method"),
    ] {
        let f = dir.path().join("a.toml");
        std::fs::write(&f, toml).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_apitap"))
            .args(["config", "check"])
            .arg(&f)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{toml}: {err}");
        assert!(err.contains(key) && err.trim().lines().count() == 1, "{toml}: {err}");
    }
    let f = dir.path().join("ok.toml");
    std::fs::write(
        &f,
        "[capture]\nmethod = \"af_packet\"\nthreads = 4\nblock_size = 4194304\nblock_count = 16\nblock_timeout = 50\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .args(["config", "check"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(
        &f,
        "[capture]\nmethod = \"af_packet\"\nblock_size = \"4 MiB\"\nblock_timeout = \"1s\"\nsnaplen = 1514\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .args(["config", "check"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// One scrape of the metrics endpoint inside namespace `ns`.
fn scrape(ns: &str, addr: &str) -> String {
    let out = Command::new("timeout")
        .args(["10", "ip", "netns", "exec", ns, "curl", "-s", "--max-time", "5"])
        .arg(format!("http://{addr}/metrics"))
        .output()
        .unwrap();
    assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of the sample `series` (name with its labels, as written) in a scrape.
fn sample_value(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn af_packet_serves_prometheus_metrics_during_the_run() {
    if skip_unless_root_with(&["ip", "tcpreplay", "curl"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pcap = lab_pcap(dir.path());
    let lab = Lab::new(4);
    let addr = "127.0.0.1:9157";
    let mut page = String::new();
    let ev = lab.capture_and(&pcap, 10_000, &["--threads", "2", "--metrics", addr], || {
        // The wire has been quiet for 0.5 s; the snapshot is at most a second old: wait for it.
        std::thread::sleep(Duration::from_millis(2500));
        page = scrape("afp4-s", addr);
    });
    let st = last_stats(&ev);
    // The same series as with libpcap, from the same numbers as the stats events.
    let packets = sample_value(&page, "apitap_capture_packets_total").expect("packets series");
    assert!(packets > 0, "{page}");
    // The wire is quiet but for the kernel's own few (IPv6 neighbour discovery on the veth).
    let fin = st["capture"]["packets"].as_u64().unwrap();
    assert!(packets <= fin && fin - packets < 20, "scraped {packets}, final {fin}");
    assert!(sample_value(&page, "apitap_http_transactions_total").expect("transactions series") > 0);
    assert!(
        sample_value(&page, "apitap_events_total{type=\"http\"}").unwrap_or(0) > 0,
        "{page}"
    );
    // The interface's count is read from the rings, the capture's from the flow side, a moment
    // apart in one scrape: a kernel packet arriving between the two reads shows in the first
    // only (seen once in CI: 19,081 against 19,080).
    let iface = sample_value(&page, "apitap_interface_packets_total{interface=\"afp4s0\"}").expect("interface series");
    assert!(
        iface >= packets && iface - packets < 20,
        "interface {iface}, capture {packets}"
    );
    for w in ["kernel", "interface", "queue"] {
        let s = format!("apitap_interface_dropped_packets_total{{interface=\"afp4s0\",where=\"{w}\"}}");
        assert_eq!(sample_value(&page, &s), Some(0), "{s} in\n{page}");
    }
    // Per ring: packets read, tp_drops and tp_freeze_q_cnt.
    let mut ring_packets = 0;
    for r in ["0", "1"] {
        let l = format!("{{interface=\"afp4s0\",ring=\"{r}\"}}");
        let p = sample_value(&page, &format!("apitap_ring_packets_total{l}")).expect("ring packets");
        assert!(p > 0, "ring {r}: {page}");
        ring_packets += p;
        assert_eq!(
            sample_value(&page, &format!("apitap_ring_dropped_packets_total{l}")),
            Some(0)
        );
        assert!(sample_value(&page, &format!("apitap_ring_queue_freezes_total{l}")).is_some());
    }
    assert_eq!(ring_packets, packets);
    assert!(page.contains("# TYPE apitap_flows_active gauge"), "{page}");
}
